//! The OpenAPI document, generated from the handlers and bodies ([`document`]), served at
//! `/openapi.json` and committed as `crates/server/openapi.json` (a test keeps the two
//! the same; `cargo xtask openapi` rewrites the file).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::ErrorBody;

/// The API's contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lamoda Tags",
        description = "Curated tags from a product's customer reviews, with the reviews behind each tag.",
    ),
    paths(
        crate::handlers::post_tags,
        crate::handlers::post_batch,
        crate::handlers::get_categories,
        crate::handlers::get_model,
        crate::handlers::get_products,
        crate::handlers::get_product,
        crate::reviews::post_review,
        crate::reviews::get_reviews,
        crate::reviews::get_queue,
        crate::handlers::health,
        crate::handlers::metrics,
    ),
    components(schemas(
        api::TagRequest,
        api::BatchRequest,
        api::TagResponse,
        api::BatchResponse,
        api::TagOut,
        api::EvidenceOut,
        api::ModelRef,
        api::CategoriesResponse,
        api::CategoryOut,
        api::GroupOut,
        api::ModelResponse,
        api::AdapterOut,
        api::HealthResponse,
        api::ProductPage,
        api::ProductSummary,
        api::ProductDetail,
        crate::reviews::ReviewRequest,
        crate::reviews::JudgmentOut,
        crate::reviews::ReviewList,
        crate::reviews::QueueItem,
        crate::reviews::QueueProgress,
        crate::reviews::QueueResponse,
        crate::config::Limits,
        ErrorBody,
    )),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> axum::response::Response {
    axum::response::IntoResponse::into_response(axum::Json(document()))
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as the committed file holds it: pretty JSON and a final newline.
pub fn document_text() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
