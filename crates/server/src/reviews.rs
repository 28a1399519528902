//! The review API: reviewers' judgments of the model's tags (`POST`/`GET /v1/reviews`) and
//! the queue of products to judge next (`GET /v1/reviews/queue`), on the review store
//! ([`lamoda_reviews::ReviewStore`], SQLite; its calls run off the async threads).
//!
//! The queue puts first the products whose answer a reviewer's judgment teaches most: the
//! most uncertain tag (calibrated probability nearest 0.5) and the tags whose probability
//! and evidence disagree (shown with no supporting review). Ranking needs every product
//! scored: the first queue request starts scoring the product table in the background,
//! through the same inference queue as the API; until it is done, unscored products follow
//! the scored ones in table order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use lamoda_data::Category;
use lamoda_inference::{DecodeOptions, Prediction};
use lamoda_reviews::{Judgment, NewJudgment, ReviewStore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::TagResponse;
use crate::error::{ApiError, ErrorBody, JsonBodyErrors, KeyErrors, ModelErrors, TaggingErrors};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// The most queue items per request.
pub const MAX_QUEUE_LIMIT: u32 = 50;
/// Products scored per background step while ranking the queue.
const RANK_CHUNK: usize = 16;

/// A judgment as posted.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The product, from the product table.
    pub sku: String,
    /// Its good type (must be the table's).
    pub good_type: String,
    /// Who judges (kept in the browser by the review page).
    pub reviewer: String,
    /// Suggested tags the reviews support.
    #[serde(default)]
    pub accepted: Vec<String>,
    /// Suggested tags they do not support.
    #[serde(default)]
    pub rejected: Vec<String>,
    /// Other tags of the category's pool the reviews support.
    #[serde(default)]
    pub added: Vec<String>,
    /// Properties the reviews state that no pool tag captures (free text, up to 5).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// A stored judgment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JudgmentOut {
    /// Its number (later judgments have larger ones).
    pub id: i64,
    /// When it was stored (RFC 3339, UTC).
    pub created_at: String,
    /// The product.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// The category whose pool the tags are from.
    pub category: String,
    /// Who judged.
    pub reviewer: String,
    /// Accepted tags.
    pub accepted: Vec<String>,
    /// Rejected tags.
    pub rejected: Vec<String>,
    /// Added pool tags.
    pub added: Vec<String>,
    /// Properties missing from the pool.
    pub missing: Vec<String>,
    /// The model whose tags were judged.
    pub model: String,
    /// True when the same reviewer judged this SKU again later (the later one counts).
    pub superseded: bool,
}

impl From<Judgment> for JudgmentOut {
    fn from(j: Judgment) -> Self {
        Self {
            id: j.id,
            created_at: j.created_at,
            sku: j.sku,
            good_type: j.good_type,
            category: j.category.name().to_owned(),
            reviewer: j.reviewer,
            accepted: j.accepted,
            rejected: j.rejected,
            added: j.added,
            missing: j.missing,
            model: j.model,
            superseded: j.superseded,
        }
    }
}

/// A product's judgments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewList {
    /// The product.
    pub sku: String,
    /// Its judgments, newest first.
    pub judgments: Vec<JudgmentOut>,
}

/// `GET /v1/reviews`'s query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewsQuery {
    /// The product.
    pub sku: Option<String>,
}

/// `GET /v1/reviews/queue`'s query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only products of this category (`bags`, `shoes`, `clothes`, `beauty`, `accs`).
    pub category: Option<String>,
    /// How many products (1–50, default 10).
    pub limit: Option<u32>,
}

/// A product to judge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueItem {
    /// The product.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its good type.
    pub good_type: String,
    /// The category its tags come from.
    pub category: String,
    /// Why it is here, e.g. `uncertain: "Вместительная" at 0.52`.
    pub reason: String,
    /// How much a judgment would teach (higher first), when scored.
    pub priority: Option<f32>,
    /// Its reviews.
    pub reviews: Vec<String>,
    /// The model's answer (tags with evidence, every pool tag's probability).
    pub prediction: TagResponse,
}

/// Done and left per category.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueProgress {
    /// The category.
    pub category: String,
    /// Products of the table judged at least once.
    pub done: usize,
    /// Products not judged yet.
    pub left: usize,
}

/// The next products to judge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueResponse {
    /// The products, most instructive first, none judged yet.
    pub items: Vec<QueueItem>,
    /// Per category of the table, done and left.
    pub progress: Vec<QueueProgress>,
    /// Products of the table scored for ranking so far.
    pub ranked: usize,
    /// Products in the table.
    pub total: usize,
}

/// How much judging `prediction` would teach, and why.
pub(crate) fn priority(prediction: &Prediction) -> (f32, String) {
    let mut best: Option<(f32, &str, f32)> = None;
    for p in &prediction.probabilities {
        let u = 1.0 - (2.0 * p.probability - 1.0).abs();
        if best.is_none_or(|(b, _, _)| u > b) {
            best = Some((u, &p.tag, p.probability));
        }
    }
    let unsupported: Vec<&str> = prediction
        .tags
        .iter()
        .filter(|t| t.mentions == 0)
        .map(|t| t.tag.as_str())
        .collect();
    let score = best.map_or(0.0, |b| b.0) + 0.25 * unsupported.len() as f32;
    let mut reason = match best {
        Some((_, tag, p)) => format!("uncertain: {tag:?} at {p:.2}"),
        None => "no pool tags".to_owned(),
    };
    if let Some(first) = unsupported.first() {
        reason.push_str(&format!("; {first:?} shown with no supporting review"));
    }
    (score, reason)
}

/// Starts scoring the product table for the queue (once).
fn start_ranking(state: &AppState) {
    if state.0.ranking.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let skus: Vec<String> = state.0.products.skus().map(str::to_owned).collect();
        for chunk in skus.chunks(RANK_CHUNK) {
            let todo: Vec<&String> = chunk
                .iter()
                .filter(|s| state.0.ranking.get(s).is_none())
                .collect();
            let mut requests = Vec::new();
            let mut keys = Vec::new();
            for sku in todo {
                let Some(product) = state.0.products.get(sku) else {
                    continue;
                };
                if product.reviews.iter().all(|r| r.trim().is_empty()) {
                    continue;
                }
                requests.push(lamoda_inference::Request {
                    good_type: product.good_type.clone(),
                    reviews: product.reviews.clone(),
                    options: DecodeOptions::default(),
                });
                keys.push(sku.clone());
            }
            let Ok(loaded) = state.loaded() else { return };
            let tagger = loaded.tagger.clone();
            match state.score(requests).await {
                Ok(scores) => {
                    for (sku, s) in keys.iter().zip(scores) {
                        if let Ok(p) = tagger.decode(&s, &DecodeOptions::default()) {
                            state.0.ranking.put(sku, priority(&p));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("ranking the review queue stopped: {}", e.body.error);
                    return;
                }
            }
        }
        tracing::info!("review queue ranked: {} products", state.0.ranking.len());
    });
}

async fn blocking<T: Send + 'static>(
    store: Arc<ReviewStore>,
    f: impl FnOnce(&ReviewStore) -> Result<T, lamoda_reviews::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("the review store task failed: {e}")))?
        .map_err(|e| {
            tracing::error!("{e}");
            ApiError::internal(format!("the review store failed: {e}"))
        })
}

/// Records a reviewer's judgment of a product's tags.
#[utoipa::path(
    post, path = "/v1/reviews", tag = "reviews",
    request_body = ReviewRequest,
    responses(
        (status = 201, description = "The stored judgment", body = JudgmentOut),
        ModelErrors,
        JsonBodyErrors,
        (status = 404, description = "No such product in the product table", body = ErrorBody),
        (status = 413, description = "Too large a body", body = ErrorBody),
        (status = 422, description = "Invalid judgment; `field` names it (`reviewer`, `accepted[1]`, …)", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn post_review(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ReviewRequest>,
) -> Result<(StatusCode, axum::Json<JudgmentOut>), ApiError> {
    let loaded = state.loaded()?;
    let Some(product) = state.0.products.get(&body.sku) else {
        return Err(ApiError::not_found(format!(
            "no product {} in the product table",
            body.sku
        )));
    };
    if body.good_type.trim() != product.good_type.trim() {
        return Err(ApiError::invalid(
            "good_type",
            format!(
                "product {} is {:?} in the product table, not {:?}",
                body.sku, product.good_type, body.good_type
            ),
        ));
    }
    let route = loaded.tagger.bundle().routing().route(&product.good_type);
    let Some(pool) = loaded.tagger.pool(route.category) else {
        return Err(ApiError::internal(format!(
            "the bundle has no `{}` pool",
            route.category
        )));
    };
    let judgment = NewJudgment {
        sku: product.sku.clone(),
        good_type: product.good_type.clone(),
        category: route.category,
        reviewer: body.reviewer,
        accepted: body.accepted,
        rejected: body.rejected,
        added: body.added,
        missing: body.missing,
        reviews: product.reviews.clone(),
        model: format!("{} / {}", loaded.model.bundle, loaded.model.base),
    }
    .check(pool)
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let stored = blocking(state.0.reviews.clone(), move |s| s.insert(&judgment)).await?;
    state.0.metrics.judgment(&stored);
    Ok((StatusCode::CREATED, axum::Json(stored.into())))
}

/// A product's judgments, newest first.
#[utoipa::path(
    get, path = "/v1/reviews", tag = "reviews",
    params(ReviewsQuery),
    responses(
        (status = 200, description = "The product's judgments", body = ReviewList),
        KeyErrors,
        (status = 404, description = "No such product and no judgment of it", body = ErrorBody),
        (status = 422, description = "No `sku` or a bad query string", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_reviews(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ReviewsQuery>,
) -> Result<axum::Json<ReviewList>, ApiError> {
    let Some(sku) = query.sku.filter(|s| !s.trim().is_empty()) else {
        return Err(ApiError::invalid("sku", "give the product's sku"));
    };
    let key = sku.clone();
    let judgments = blocking(state.0.reviews.clone(), move |s| s.for_sku(&key)).await?;
    if judgments.is_empty() && state.0.products.get(&sku).is_none() {
        return Err(ApiError::not_found(format!(
            "no product {sku} in the product table and no judgment of it"
        )));
    }
    Ok(axum::Json(ReviewList {
        sku,
        judgments: judgments.into_iter().map(JudgmentOut::from).collect(),
    }))
}

/// The next products to judge, with the model's tags.
#[utoipa::path(
    get, path = "/v1/reviews/queue", tag = "reviews",
    params(QueueQuery),
    responses(
        (status = 200, description = "Products not judged yet, most instructive first", body = QueueResponse),
        TaggingErrors,
        (status = 422, description = "An unknown category or a limit outside 1–50", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn get_queue(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> Result<axum::Json<QueueResponse>, ApiError> {
    let category = match query.category.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(name.parse::<Category>().map_err(|_| {
            ApiError::invalid(
                "category",
                format!(
                    "{name:?} is not a category ({})",
                    Category::ALL.map(Category::name).join(", ")
                ),
            )
        })?),
    };
    let limit = match query.limit {
        None => 10,
        Some(n @ 1..=MAX_QUEUE_LIMIT) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "limit",
                format!("limit {n} is not within 1..={MAX_QUEUE_LIMIT}"),
            ));
        }
    };
    let loaded = state.loaded()?;
    start_ranking(&state);
    let judged = blocking(state.0.reviews.clone(), |s| s.judged_skus()).await?;
    let routing = loaded.tagger.bundle().routing();
    let mut progress: Vec<QueueProgress> = Vec::new();
    let mut candidates: Vec<(Option<f32>, usize, &lamoda_data::Product)> = Vec::new();
    for (i, product) in state.0.products.iter().enumerate() {
        let c = routing.route(&product.good_type).category;
        let done = judged.contains(&product.sku);
        let entry = match progress.iter_mut().find(|p| p.category == c.name()) {
            Some(p) => p,
            None => {
                progress.push(QueueProgress {
                    category: c.name().to_owned(),
                    done: 0,
                    left: 0,
                });
                progress
                    .last_mut()
                    .ok_or_else(|| ApiError::internal("progress"))?
            }
        };
        if done {
            entry.done += 1;
            continue;
        }
        entry.left += 1;
        if category.is_some_and(|wanted| wanted != c)
            || product.reviews.iter().all(|r| r.trim().is_empty())
        {
            continue;
        }
        let priority = state.0.ranking.get(&product.sku).map(|(p, _)| p);
        candidates.push((priority, i, product));
    }
    progress.sort_by(|a, b| a.category.cmp(&b.category));
    // Scored ones by priority (highest first), then the rest in table order.
    candidates.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    candidates.truncate(limit);
    let requests = candidates
        .iter()
        .map(|(_, _, p)| lamoda_inference::Request {
            good_type: p.good_type.clone(),
            reviews: p.reviews.clone(),
            options: DecodeOptions::default(),
        })
        .collect();
    let skus = candidates
        .iter()
        .map(|(_, _, p)| Some(p.sku.clone()))
        .collect();
    let (predictions, answers) = state.tag_with_predictions(skus, requests).await?;
    let mut items = Vec::with_capacity(candidates.len());
    for (((_, _, product), prediction), answer) in candidates.iter().zip(predictions).zip(answers) {
        let (priority, reason) = priority(&prediction);
        state
            .0
            .ranking
            .put(&product.sku, (priority, reason.clone()));
        items.push(QueueItem {
            sku: product.sku.clone(),
            name: product.name.clone(),
            good_type: product.good_type.clone(),
            category: prediction.category.name().to_owned(),
            reason,
            priority: Some(priority),
            reviews: product.reviews.clone(),
            prediction: answer,
        });
    }
    items.sort_by(|a, b| {
        b.priority
            .unwrap_or(0.0)
            .total_cmp(&a.priority.unwrap_or(0.0))
    });
    Ok(axum::Json(QueueResponse {
        items,
        progress,
        ranked: state.0.ranking.len(),
        total: state.0.products.len(),
    }))
}
