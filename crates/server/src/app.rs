//! The router, its handlers and the server's life: bind, load the model in the background
//! (`/health` answers 503 until it is in), serve, and on SIGTERM or Ctrl-C stop taking
//! connections and finish the requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lamoda_data::Category;
use lamoda_inference::{Scores, Tagger};
use lru::LruCache;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::api::{
    AdapterOut, BatchRequest, BatchResponse, CategoriesResponse, CategoryOut, DecodeQuery,
    GroupOut, HealthResponse, ListQuery, ModelRef, ModelResponse, ProductDetail, ProductPage,
    TagRequest, TagResponse, decode_options,
};
use crate::config::{Limits, ServerConfig};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::metrics::Metrics;
use crate::products::{PER_PAGE, Products};
use crate::queue::{Job, spawn_worker};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The product table could not be read.
    #[error(transparent)]
    Products(#[from] lamoda_data::DataError),
    /// The review store could not be opened or read.
    #[error(transparent)]
    Reviews(#[from] lamoda_reviews::StoreError),
    /// The model could not be loaded.
    #[error("cannot load the model: {0}")]
    Model(Box<lamoda_inference::InferenceError>),
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<lamoda_inference::InferenceError> for ServerError {
    fn from(e: lamoda_inference::InferenceError) -> Self {
        Self::Model(Box::new(e))
    }
}

/// The loaded model.
pub(crate) struct Loaded {
    pub tagger: Arc<Tagger>,
    pub model: ModelRef,
    pub queue: mpsc::Sender<Job>,
}

/// Everything a handler reads.
pub(crate) struct Inner {
    pub config: ServerConfig,
    pub model: OnceLock<Loaded>,
    pub products: Products,
    pub metrics: Metrics,
    /// The reviewers' judgments.
    pub reviews: Arc<lamoda_reviews::ReviewStore>,
    /// The review queue's ranking.
    pub ranking: crate::reviews::Ranking,
    /// The LLM re-ranker, when offered.
    pub reranker: Option<lamoda_llm::Reranker>,
    permits: Arc<Semaphore>,
    cache: Mutex<LruCache<(String, Vec<String>), Scores>>,
}

/// The handlers' state.
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<Inner>);

/// A tagging request in flight: holds its permit and keeps the gauge right, also when the
/// client goes away and the handler is dropped.
struct InFlight {
    state: AppState,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl InFlight {
    fn new(state: AppState, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        let guard = Self {
            state,
            permit: Some(permit),
        };
        guard.update();
        guard
    }

    fn update(&self) {
        let limits = self.state.limits();
        let free = self.state.0.permits.available_permits();
        self.state
            .0
            .metrics
            .set_in_flight(limits.max_in_flight.saturating_sub(free));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.update();
    }
}

impl AppState {
    fn new(
        config: ServerConfig,
        products: Products,
        reviews: lamoda_reviews::ReviewStore,
    ) -> Result<Self, ServerError> {
        let cache = NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN);
        let permits = Arc::new(Semaphore::new(config.limits.max_in_flight));
        let metrics = Metrics::new();
        metrics.stored_judgments(&reviews.counts()?);
        let reranker = match &config.rerank {
            Some(c) => Some(
                lamoda_llm::Reranker::new(c.clone()).map_err(|e| ServerError::Config(e.into()))?,
            ),
            None => None,
        };
        Ok(Self(Arc::new(Inner {
            config,
            model: OnceLock::new(),
            products,
            metrics,
            reviews: Arc::new(reviews),
            ranking: crate::reviews::Ranking::default(),
            reranker,
            permits,
            cache: Mutex::new(LruCache::new(cache)),
        })))
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.0.config.limits
    }

    pub(crate) fn loaded(&self) -> Result<&Loaded, ApiError> {
        self.0.model.get().ok_or_else(ApiError::not_ready)
    }

    /// Installs a loaded tagger and starts its queue's thread.
    fn install(&self, tagger: Tagger) -> Result<(), ServerError> {
        let tagger = Arc::new(tagger);
        let (tx, rx) = mpsc::channel(self.limits().max_in_flight);
        let state = self.clone();
        spawn_worker(
            tagger.clone(),
            rx,
            self.limits().max_batch_products,
            move |n| state.0.metrics.batch(n),
        )?;
        let manifest = tagger.bundle().manifest();
        let info = &tagger.base().info;
        let model = ModelRef {
            bundle: format!(
                "{} {}",
                manifest.format,
                tagger
                    .bundle()
                    .dir()
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
            base: format!(
                "{} {}",
                manifest.base.name,
                info.weights_sha256
                    .get(..12)
                    .unwrap_or(&info.weights_sha256)
            ),
        };
        let _ = self.0.model.set(Loaded {
            tagger,
            model,
            queue: tx,
        });
        self.0.metrics.loaded();
        Ok(())
    }

    /// Scores `requests` (cached ones from the cache, the rest through the queue), in order.
    pub(crate) async fn score(
        &self,
        requests: Vec<lamoda_inference::Request>,
    ) -> Result<Vec<Scores>, ApiError> {
        let loaded = self.loaded()?;
        let mut out: Vec<Option<Scores>> = vec![None; requests.len()];
        let mut missing = Vec::new();
        if let Ok(mut cache) = self.0.cache.lock() {
            for (i, r) in requests.iter().enumerate() {
                match cache.get(&(r.good_type.clone(), r.reviews.clone())) {
                    Some(s) => out[i] = Some(s.clone()),
                    None => missing.push(i),
                }
            }
        } else {
            missing = (0..requests.len()).collect();
        }
        if !missing.is_empty() {
            let todo: Vec<lamoda_inference::Request> =
                missing.iter().map(|&i| requests[i].clone()).collect();
            let (reply, answer) = oneshot::channel();
            loaded
                .queue
                .send(Job {
                    requests: todo,
                    reply,
                })
                .await
                .map_err(|_| ApiError::internal("the inference queue has stopped"))?;
            let scores = answer
                .await
                .map_err(|_| ApiError::internal("the inference queue dropped the request"))?
                .map_err(|e| {
                    tracing::error!("scoring failed: {e}");
                    ApiError::internal(format!("the model could not tag these reviews: {e}"))
                })?;
            let mut cache = self.0.cache.lock().ok();
            for (&i, s) in missing.iter().zip(scores) {
                if let Some(cache) = cache.as_mut() {
                    let r = &requests[i];
                    cache.put((r.good_type.clone(), r.reviews.clone()), s.clone());
                }
                out[i] = Some(s);
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| ApiError::internal("a product was not scored")))
            .collect()
    }

    /// 422 when `rerank` is asked of a server without a re-ranker; `field` names it.
    pub(crate) fn check_rerank(&self, asked: Option<bool>, field: &str) -> Result<bool, ApiError> {
        match asked {
            Some(true) if self.0.reranker.is_none() => Err(ApiError::invalid(
                field,
                "this server offers no re-ranking: start it with --rerank-url URL --rerank-model NAME",
            )),
            Some(true) => Ok(true),
            _ => Ok(false),
        }
    }

    /// Tags `requests` (checked) and answers them, with their SKUs, in order; those with
    /// `rerank` set are re-ranked by the LLM.
    async fn tag(
        &self,
        skus: Vec<Option<String>>,
        requests: Vec<lamoda_inference::Request>,
        rerank: Vec<bool>,
    ) -> Result<Vec<TagResponse>, ApiError> {
        let reviews: Vec<Option<Vec<String>>> = requests
            .iter()
            .zip(&rerank)
            .map(|(r, &asked)| asked.then(|| r.reviews.clone()))
            .collect();
        let (predictions, mut answers) = self.tag_with_predictions(skus, requests).await?;
        let Some(reranker) = &self.0.reranker else {
            return Ok(answers);
        };
        let loaded = self.loaded()?;
        let mut jobs = tokio::task::JoinSet::new();
        for (i, (mut prediction, reviews)) in predictions.into_iter().zip(reviews).enumerate() {
            let Some(reviews) = reviews else { continue };
            let reranker = reranker.clone();
            let tagger = loaded.tagger.clone();
            jobs.spawn(async move {
                let outcome = match tagger.pool(prediction.category) {
                    Some(pool) => {
                        reranker
                            .rerank(lamoda_llm::RerankInput::from_prediction(
                                pool,
                                &reviews,
                                &prediction,
                            ))
                            .await
                    }
                    None => return (i, None),
                };
                lamoda_llm::apply_rerank(&mut prediction, &outcome);
                (
                    i,
                    Some((prediction, outcome.reranked, outcome.rerank_error)),
                )
            });
        }
        while let Some(done) = jobs.join_next().await {
            let (i, Some((prediction, reranked, error))) =
                done.map_err(|e| ApiError::internal(format!("re-ranking failed: {e}")))?
            else {
                continue;
            };
            if let Some(e) = &error {
                tracing::warn!("re-ranking fell back to our own tags: {e}");
            }
            let answer = &mut answers[i];
            let fresh = TagResponse::new(answer.sku.take(), prediction, answer.model.clone());
            *answer = TagResponse {
                reranked,
                rerank_error: error,
                ..fresh
            };
        }
        Ok(answers)
    }

    /// Tags `requests` (checked) with the model alone and answers them, with their SKUs,
    /// in order, the decoded predictions beside the answers.
    pub(crate) async fn tag_with_predictions(
        &self,
        skus: Vec<Option<String>>,
        requests: Vec<lamoda_inference::Request>,
    ) -> Result<(Vec<lamoda_inference::Prediction>, Vec<TagResponse>), ApiError> {
        let loaded = self.loaded()?;
        let Ok(permit) = self.0.permits.clone().try_acquire_owned() else {
            self.0.metrics.rejection("overloaded");
            return Err(ApiError::overloaded(self.limits().max_in_flight));
        };
        let _in_flight = InFlight::new(self.clone(), permit);
        let options: Vec<_> = requests.iter().map(|r| r.options).collect();
        let scores = self.score(requests).await?;
        let mut predictions = Vec::with_capacity(scores.len());
        let mut answers = Vec::with_capacity(scores.len());
        for ((s, o), sku) in scores.iter().zip(options).zip(skus) {
            let prediction = loaded
                .tagger
                .decode(s, &o)
                .map_err(|e| ApiError::invalid_request(e.to_string(), None))?;
            answers.push(TagResponse::new(
                sku,
                prediction.clone(),
                loaded.model.clone(),
            ));
            predictions.push(prediction);
        }
        Ok((predictions, answers))
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.limits().max_body_bytes;
    let api = Router::new()
        .route("/v1/tags", post(post_tags))
        .route("/v1/tags/batch", post(post_batch))
        .route("/v1/categories", get(get_categories))
        .route("/v1/model", get(get_model))
        .route("/v1/products", get(get_products))
        .route("/v1/products/{sku}", get(get_product))
        .route(
            "/v1/reviews",
            post(crate::reviews::post_review).get(crate::reviews::get_reviews),
        )
        .route("/v1/reviews/queue", get(crate::reviews::get_queue))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::explorer::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Counts and times every request; counts refusals by kind.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        state
            .0
            .metrics
            .rejection(status.canonical_reason().unwrap_or("client error"));
    }
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!("{method} {route} answered {status}");
    }
    state.0.metrics.request(
        &method,
        &route,
        status.as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// 401 on /v1/* without the configured key.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.0.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {}", req.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Tags one product.
#[utoipa::path(
    post, path = "/v1/tags", tag = "tags",
    request_body = TagRequest,
    responses(
        (status = 200, description = "The product's tags", body = TagResponse),
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 413, description = "Too many reviews, too long a review or too large a body", body = crate::error::ErrorBody),
        (status = 415, description = "Not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input; `field` names it", body = crate::error::ErrorBody),
        (status = 429, description = "Too many requests in flight", body = crate::error::ErrorBody),
        (status = 503, description = "The model is still loading", body = crate::error::ErrorBody),
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
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 413, description = "Too many items or reviews, too long a review or too large a body", body = crate::error::ErrorBody),
        (status = 415, description = "Not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input; `field` names it (`items[i].…`)", body = crate::error::ErrorBody),
        (status = 429, description = "Too many requests in flight", body = crate::error::ErrorBody),
        (status = 503, description = "The model is still loading", body = crate::error::ErrorBody),
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
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 503, description = "The model is still loading", body = crate::error::ErrorBody),
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

/// The threshold a category decodes at by default: its tuned one when all its tags share
/// it (the trainer tunes one per category), else 0.5.
pub(crate) fn default_threshold(tagger: &Tagger, category: Category) -> f32 {
    match tagger.decoding(category) {
        Some(d) => match d.per_tag_thresholds {
            Some(t) if t.windows(2).all(|w| w[0] == w[1]) => t.first().copied().unwrap_or(0.5),
            Some(_) => 0.5,
            None => d.threshold,
        },
        None => 0.5,
    }
}

/// The base, the bundle and every adapter with its recorded dev metrics.
#[utoipa::path(
    get, path = "/v1/model", tag = "model",
    responses(
        (status = 200, description = "The loaded model", body = ModelResponse),
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 503, description = "The model is still loading", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_model(
    State(state): State<AppState>,
) -> Result<axum::Json<ModelResponse>, ApiError> {
    let tagger = &state.loaded()?.tagger;
    let bundle = tagger.bundle();
    let adapters = tagger
        .categories()
        .into_iter()
        .map(|c| {
            let path = bundle
                .category_dir(c)
                .join(lamoda_inference::format::METRICS_FILE);
            let metrics: Option<serde_json::Value> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let read = |section: &str, key: &str| {
                metrics
                    .as_ref()
                    .and_then(|m| m.get(section)?.get(key)?.as_f64())
            };
            let count = |key: &str| metrics.as_ref().and_then(|m| m.get(key)?.as_u64());
            let careful = |key: &str| {
                metrics.as_ref().and_then(|m| {
                    m.get("careful")?
                        .get("dev")?
                        .get("model")?
                        .get(key)?
                        .as_f64()
                })
            };
            AdapterOut {
                category: c.name().to_owned(),
                tags: tagger.pool(c).map_or(0, |p| p.len()),
                dev_micro_f1: read("tuned", "micro_f1"),
                prior_micro_f1: read("prior", "micro_f1"),
                n_train: count("n_train"),
                n_dev: count("n_dev"),
                calibrated: tagger.careful(c).is_some(),
                careful_precision: careful("precision"),
                careful_recall: careful("recall"),
                careful_micro_f1: careful("micro_f1"),
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
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 422, description = "A bad query string", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_products(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<ProductPage>, ApiError> {
    Ok(axum::Json(product_page(&state, &query)?))
}

pub(crate) fn product_page(state: &AppState, query: &ListQuery) -> Result<ProductPage, ApiError> {
    let per_page = match query.per_page {
        None => PER_PAGE,
        Some(n @ 1..=200) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "per_page",
                format!("per_page {n} is not within 1..=200"),
            ));
        }
    };
    let page = match query.page {
        None => 1,
        Some(0) => return Err(ApiError::invalid("page", "pages count from 1")),
        Some(n) if n > crate::api::MAX_PAGE => {
            return Err(ApiError::invalid(
                "page",
                format!("page {n} is above {}", crate::api::MAX_PAGE),
            ));
        }
        Some(n) => n as usize,
    };
    Ok(state.0.products.page(
        query.good_type.as_deref(),
        query.q.as_deref(),
        page,
        per_page,
    ))
}

/// One product of the table with its reviews and tags.
#[utoipa::path(
    get, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU"), DecodeQuery),
    responses(
        (status = 200, description = "The product and its tags", body = ProductDetail),
        (status = 401, description = "No or a wrong API key", body = crate::error::ErrorBody),
        (status = 404, description = "No such product", body = crate::error::ErrorBody),
        (status = 422, description = "A bad query string", body = crate::error::ErrorBody),
        (status = 429, description = "Too many requests in flight", body = crate::error::ErrorBody),
        (status = 503, description = "The model is still loading", body = crate::error::ErrorBody),
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

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

/// A server that runs in the background (see [`start`]).
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Stops it gracefully and waits for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Binds `config.addr` and serves in the background until [`RunningServer::stop`] (or the
/// model fails to load).
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(config, listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves on `listener` until `shutdown` completes (then finishes the requests in flight)
/// or the model fails to load. The model loads in the background.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let products = match &config.products {
        Some(path) => Products::load(path)?,
        None => Products::default(),
    };
    let reviews = match &config.reviews_db {
        Some(path) => lamoda_reviews::ReviewStore::open(path)?,
        None => lamoda_reviews::ReviewStore::open_in_memory()?,
    };
    let state = AppState::new(config.clone(), products, reviews)?;
    let (failed_tx, failed_rx) = oneshot::channel::<ServerError>();
    let loader = state.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = Tagger::open(&config.model, config.base.as_deref())
            .map_err(ServerError::from)
            .and_then(|tagger| loader.install(tagger));
        match result {
            Ok(()) => tracing::info!(
                "model {} loaded in {:.1} s",
                config.model.display(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        }
    });
    let failure = Arc::new(Mutex::new(None));
    let failure_slot = failure.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            Ok(e) = failed_rx => {
                if let Ok(mut slot) = failure_slot.lock() {
                    *slot = Some(e);
                }
            }
        }
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await?;
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs a server with `args` until SIGTERM or Ctrl-C (the binary's and `cargo xtask
/// serve`'s body): logs to stderr, prints where it listens, finishes requests in flight.
pub fn app_main(args: &crate::config::ServeArgs) -> Result<(), ServerError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = ServerConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener.local_addr()?;
        tracing::info!(
            "listening on http://{addr} (model {}, products {}, reviews {}); loading the model",
            config.model.display(),
            config
                .products
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
            config
                .reviews_db
                .as_ref()
                .map_or_else(|| "in memory".to_owned(), |p| p.display().to_string())
        );
        serve(config, listener, shutdown_signal()).await
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
