//! The API's handlers (tags, categories, model, products, health, metrics) with their
//! OpenAPI descriptions; the review API's are in [`crate::reviews`].

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{
    AdapterOut, BatchRequest, BatchResponse, CategoriesResponse, CategoryOut, DecodeQuery,
    GroupOut, HealthResponse, ListQuery, ModelResponse, ProductDetail, ProductPage, TagRequest,
    TagResponse, decode_options,
};
use crate::error::{ApiError, ErrorBody, JsonBodyErrors, KeyErrors, ModelErrors, TaggingErrors};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::{AppState, default_threshold, product_page};

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {}", req.uri().path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Tags one product.
#[utoipa::path(
    post, path = "/v1/tags", tag = "tags",
    request_body = TagRequest,
    responses(
        (status = 200, description = "The product's tags", body = TagResponse),
        TaggingErrors,
        JsonBodyErrors,
        (status = 413, description = "Too many reviews, too long a review or too large a body", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn post_tags(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TagRequest>,
) -> Result<axum::Json<TagResponse>, ApiError> {
    let request = body.check("", state.limits())?;
    let rerank = state.check_rerank(body.rerank, "rerank")?;
    let mut answers = state
        .tag(vec![body.sku], vec![request], vec![rerank])
        .await?;
    answers
        .pop()
        .map(axum::Json)
        .ok_or_else(|| ApiError::internal("no answer"))
}

/// Tags several products, answered in order.
#[utoipa::path(
    post, path = "/v1/tags/batch", tag = "tags",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One answer per item, in order", body = BatchResponse),
        TaggingErrors,
        JsonBodyErrors,
        (status = 413, description = "Too many items or reviews, too long a review or too large a body", body = ErrorBody),
        (status = 422, description = "Invalid input; `field` names it (`items[i].…`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn post_batch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BatchRequest>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let limits = *state.limits();
    if body.items.is_empty() {
        return Err(ApiError::invalid(
            "items",
            "items is empty: give at least one product",
        ));
    }
    if body.items.len() > limits.max_batch_items {
        return Err(ApiError::too_large(
            Some("items".into()),
            format!(
                "{} items: at most {} per batch",
                body.items.len(),
                limits.max_batch_items
            ),
        ));
    }
    let mut requests = Vec::with_capacity(body.items.len());
    let mut rerank = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.iter().enumerate() {
        requests.push(item.check(&format!("items[{i}]."), &limits)?);
        rerank.push(state.check_rerank(item.rerank, &format!("items[{i}].rerank"))?);
    }
    let skus = body.items.into_iter().map(|i| i.sku).collect();
    let items = state.tag(skus, requests, rerank).await?;
    Ok(axum::Json(BatchResponse { items }))
}

/// Routing and every category's pool with its exclusive groups.
#[utoipa::path(
    get, path = "/v1/categories", tag = "model",
    responses(
        (status = 200, description = "Routing and pools", body = CategoriesResponse),
        ModelErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_categories(
    State(state): State<AppState>,
) -> Result<axum::Json<CategoriesResponse>, ApiError> {
    let tagger = &state.loaded()?.tagger;
    let routing = tagger.bundle().routing();
    Ok(axum::Json(CategoriesResponse {
        routing: routing
            .good_types
            .iter()
            .map(|(g, c)| (g.clone(), c.name().to_owned()))
            .collect(),
        fallback: routing.fallback.name().to_owned(),
        categories: tagger
            .categories()
            .into_iter()
            .filter_map(|c| {
                let pool = tagger.pool(c)?;
                Some(CategoryOut {
                    name: c.name().to_owned(),
                    tags: pool.tags.clone(),
                    exclusive_groups: pool
                        .exclusive
                        .iter()
                        .map(|g| GroupOut {
                            name: g.name.clone(),
                            tags: g.tags.clone(),
                        })
                        .collect(),
                    threshold: default_threshold(tagger, c),
                })
            })
            .collect(),
    }))
}

/// The base, the bundle and every adapter with its recorded dev metrics.
#[utoipa::path(
    get, path = "/v1/model", tag = "model",
    responses(
        (status = 200, description = "The loaded model", body = ModelResponse),
        ModelErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_model(
    State(state): State<AppState>,
) -> Result<axum::Json<ModelResponse>, ApiError> {
    let loaded = state.loaded()?;
    let tagger = &loaded.tagger;
    let bundle = tagger.bundle();
    let adapters = tagger
        .categories()
        .into_iter()
        .map(|c| {
            let recorded = loaded.recorded.get(&c).copied().unwrap_or_default();
            let careful = recorded.careful_dev().unwrap_or_default();
            AdapterOut {
                category: c.name().to_owned(),
                tags: tagger.pool(c).map_or(0, |p| p.len()),
                dev_micro_f1: recorded.tuned.and_then(|f| f.micro_f1),
                prior_micro_f1: recorded.prior.and_then(|f| f.micro_f1),
                n_train: recorded.n_train,
                n_dev: recorded.n_dev,
                calibrated: tagger.careful(c).is_some(),
                careful_precision: careful.precision,
                careful_recall: careful.recall,
                careful_micro_f1: careful.micro_f1,
            }
        })
        .collect();
    Ok(axum::Json(ModelResponse {
        format: bundle.manifest().format.clone(),
        bundle: bundle.dir().display().to_string(),
        base: bundle.manifest().base.name.clone(),
        base_sha256: tagger.base().info.weights_sha256.clone(),
        adapters,
        limits: *state.limits(),
    }))
}

/// A page of the product table.
#[utoipa::path(
    get, path = "/v1/products", tag = "products",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        KeyErrors,
        (status = 422, description = "A bad query string", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_products(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<ProductPage>, ApiError> {
    Ok(axum::Json(product_page(&state, &query)?))
}

/// One product of the table with its reviews and tags.
#[utoipa::path(
    get, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU"), DecodeQuery),
    responses(
        (status = 200, description = "The product and its tags", body = ProductDetail),
        TaggingErrors,
        (status = 404, description = "No such product", body = ErrorBody),
        (status = 422, description = "A bad query string", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_product(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    ApiQuery(query): ApiQuery<DecodeQuery>,
) -> Result<axum::Json<ProductDetail>, ApiError> {
    let options = decode_options("", query.threshold, query.max_tags, query.min_mentions)?;
    let rerank = state.check_rerank(query.rerank, "rerank")?;
    let Some(product) = state.0.products.get(&sku) else {
        return Err(ApiError::not_found(format!(
            "no product {sku} in the product table"
        )));
    };
    if product.reviews.iter().all(|r| r.trim().is_empty()) {
        return Err(ApiError::invalid(
            "reviews",
            format!("product {sku} has no review text"),
        ));
    }
    let request = lamoda_inference::Request {
        good_type: product.good_type.clone(),
        reviews: product.reviews.clone(),
        options,
    };
    let prediction = state
        .tag(vec![Some(sku.clone())], vec![request], vec![rerank])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("no answer"))?;
    Ok(axum::Json(ProductDetail {
        sku: product.sku.clone(),
        name: product.name.clone(),
        good_type: product.good_type.clone(),
        good_subtype: product.good_subtype.clone(),
        reviews: product.reviews.clone(),
        dataset_tags: product.tags.clone(),
        prediction,
    }))
}

/// 200 once the model is loaded, 503 before.
#[utoipa::path(
    get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "The model is still loading", body = HealthResponse),
    ),
)]
pub(crate) async fn health(
    State(state): State<AppState>,
) -> (StatusCode, axum::Json<HealthResponse>) {
    if state.0.model.get().is_some() {
        (
            StatusCode::OK,
            axum::Json(HealthResponse {
                status: "ok".into(),
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(HealthResponse {
                status: "loading".into(),
            }),
        )
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")),
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.0.metrics.render(),
    )
        .into_response()
}
