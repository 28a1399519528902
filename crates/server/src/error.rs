//! The API's errors: a status and a JSON [`ErrorBody`] naming the field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in one line.
    pub error: String,
    /// Its kind: `invalid_json`, `invalid_input`, `too_large`, `unsupported_media_type`,
    /// `unauthorized`, `overloaded`, `not_found`, `method_not_allowed`, `not_ready`,
    /// `internal`.
    pub kind: String,
    /// The request field at fault (`reviews`, `items[2].good_type`, …), when one is.
    #[serde(default)]
    pub field: Option<String>,
}

/// The OpenAPI descriptions of the error answers several endpoints share.
const NO_KEY: &str = "No or a wrong API key";
const LOADING: &str = "The model is still loading";
const BUSY: &str = "Too many requests in flight";

/// The OpenAPI error answers of an endpoint behind the API key that reads only the
/// tables: `responses(KeyErrors, …)` in a handler's `#[utoipa::path]`.
#[derive(utoipa::IntoResponses)]
pub enum KeyErrors {
    /// 401: no or a wrong API key.
    #[response(status = 401, description = NO_KEY)]
    Unauthorized(ErrorBody),
}

/// The OpenAPI error answers of an endpoint behind the API key that needs the model.
#[derive(utoipa::IntoResponses)]
pub enum ModelErrors {
    /// 401: no or a wrong API key.
    #[response(status = 401, description = NO_KEY)]
    Unauthorized(ErrorBody),
    /// 503: the model is still loading.
    #[response(status = 503, description = LOADING)]
    NotReady(ErrorBody),
}

/// The OpenAPI error answers of an endpoint behind the API key that runs the encoder
/// through the bounded queue ([`crate::queue`]).
#[derive(utoipa::IntoResponses)]
pub enum TaggingErrors {
    /// 401: no or a wrong API key.
    #[response(status = 401, description = NO_KEY)]
    Unauthorized(ErrorBody),
    /// 429: too many requests in flight.
    #[response(status = 429, description = BUSY)]
    Overloaded(ErrorBody),
    /// 503: the model is still loading.
    #[response(status = 503, description = LOADING)]
    NotReady(ErrorBody),
}

/// The OpenAPI error answers of an endpoint that takes a JSON body (its 413 and 422,
/// which name its own limits and fields, stay with it).
#[derive(utoipa::IntoResponses)]
pub enum JsonBodyErrors {
    /// 400: the body is not JSON.
    #[response(status = 400, description = "The body is not JSON")]
    BadJson(ErrorBody),
    /// 415: not `application/json`.
    #[response(status = 415, description = "Not application/json")]
    MediaType(ErrorBody),
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: ErrorBody,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &str,
        error: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                kind: kind.into(),
                field,
            },
        }
    }

    /// 422: a field's value is not accepted.
    pub fn invalid(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            error,
            Some(field.into()),
        )
    }

    /// 422 without a single field (e.g. an unreadable query string).
    pub fn invalid_request(error: impl Into<String>, field: Option<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            error,
            field,
        )
    }

    /// 400: the body is not JSON.
    pub fn bad_json(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", error, None)
    }

    /// 413: beyond a limit.
    pub fn too_large(field: Option<String>, error: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", error, field)
    }

    /// 415: not `application/json`.
    pub fn media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON: send Content-Type: application/json",
            None,
        )
    }

    /// 401: no or a wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this API needs a key: send Authorization: Bearer <key>",
            None,
        )
    }

    /// 429: too many requests in flight.
    pub fn overloaded(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!("more than {limit} tagging requests in flight: retry shortly"),
            None,
        )
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what, None)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method",
            None,
        )
    }

    /// 503: the model is still loading.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the model is still loading: see /health",
            None,
        )
    }

    /// 500: a fault of ours (logged).
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        let auth = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if auth {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
