//! The API's bodies (the OpenAPI schemas) and the checks that turn a request body into the
//! runtime's [`Request`].

use std::collections::BTreeMap;

use lamoda_inference::{DecodeOptions, Prediction, Request};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use crate::config::Limits;
use crate::error::ApiError;

/// The longest SKU accepted.
pub const MAX_SKU_CHARS: usize = 128;

/// The largest `min_mentions` accepted (more than any product has reviews).
pub const MAX_MIN_MENTIONS: u64 = 1000;

/// The last page number accepted.
pub const MAX_PAGE: u64 = 1_000_000;

/// One product to tag.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// The product's SKU, echoed back.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub sku: Option<String>,
    /// The Lamoda good type (Shoes, Clothes, Bags, Beauty_Accs, Accs, Home_Accs; others
    /// fall back to accs).
    #[schema(min_length = 1, example = "Shoes")]
    pub good_type: String,
    /// The product's reviews (at least one non-blank).
    #[schema(min_items = 1, example = json!(["Легкие и удобные, на ноге сидят отлично"]))]
    pub reviews: Vec<String>,
    /// One threshold for every tag instead of the adapter's tuned ones.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    /// At most this many tags (default 6).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 6)]
    pub max_tags: Option<u64>,
    /// Keep a tag only when at least this many reviews support it on their own (default 0:
    /// every tag). With it an answer may hold no tag.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub min_mentions: Option<u64>,
    /// Re-rank the answer with the server's LLM (started with `--rerank-url`): only the
    /// candidates it confirms stay. Off by default; 422 when the server has no re-ranker.
    #[serde(default)]
    pub rerank: Option<bool>,
}

/// Several products, answered in order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The products (at least one; at most the server's `max_batch_items`).
    #[schema(min_items = 1)]
    pub items: Vec<TagRequest>,
}

/// Decoding options of a product query string.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecodeQuery {
    /// One threshold for every tag instead of the adapter's tuned ones.
    #[param(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    /// At most this many tags (default 6).
    #[param(minimum = 1, maximum = 6)]
    pub max_tags: Option<u64>,
    /// Keep a tag only when at least this many reviews support it.
    #[param(minimum = 0, maximum = 1000)]
    pub min_mentions: Option<u64>,
    /// Re-rank the answer with the server's LLM (`--rerank-url`); off by default.
    pub rerank: Option<bool>,
}

/// Checks the decoding options; `prefix` names the body the fields are in.
pub fn decode_options(
    prefix: &str,
    threshold: Option<f64>,
    max_tags: Option<u64>,
    min_mentions: Option<u64>,
) -> Result<DecodeOptions, ApiError> {
    let threshold = match threshold {
        Some(t) if !(0.0..=1.0).contains(&t) => {
            return Err(ApiError::invalid(
                format!("{prefix}threshold"),
                format!("threshold {t} is not within 0..=1"),
            ));
        }
        other => other.map(|t| t as f32),
    };
    let max_tags = match max_tags {
        Some(m) if !(1..=lamoda_inference::tagger::MAX_TAGS as u64).contains(&m) => {
            return Err(ApiError::invalid(
                format!("{prefix}max_tags"),
                format!(
                    "max_tags {m} is not within 1..={}",
                    lamoda_inference::tagger::MAX_TAGS
                ),
            ));
        }
        other => other.map(|m| m as usize),
    };
    let min_mentions = match min_mentions {
        Some(m) if m > MAX_MIN_MENTIONS => {
            return Err(ApiError::invalid(
                format!("{prefix}min_mentions"),
                format!("min_mentions {m} is above {MAX_MIN_MENTIONS}"),
            ));
        }
        other => other.map_or(0, |m| m as usize),
    };
    Ok(DecodeOptions {
        threshold,
        max_tags,
        min_mentions,
    })
}

impl TagRequest {
    /// Checks the request against `limits`: 422 for an invalid field, 413 past a limit.
    /// `prefix` names where it is (`items[2].` in a batch).
    pub fn check(&self, prefix: &str, limits: &Limits) -> Result<Request, ApiError> {
        let field = |name: &str| format!("{prefix}{name}");
        if let Some(sku) = &self.sku
            && sku.chars().count() > MAX_SKU_CHARS
        {
            return Err(ApiError::invalid(
                field("sku"),
                format!("the SKU is longer than {MAX_SKU_CHARS} characters"),
            ));
        }
        if self.good_type.trim().is_empty() {
            return Err(ApiError::invalid(
                field("good_type"),
                "good_type is empty: give the product's Lamoda good type (e.g. Shoes)",
            ));
        }
        if self.reviews.is_empty() {
            return Err(ApiError::invalid(
                field("reviews"),
                "reviews is empty: give at least one review",
            ));
        }
        if self.reviews.len() > limits.max_reviews {
            return Err(ApiError::too_large(
                Some(field("reviews")),
                format!(
                    "{} reviews: at most {} per product",
                    self.reviews.len(),
                    limits.max_reviews
                ),
            ));
        }
        if let Some((i, r)) = self
            .reviews
            .iter()
            .enumerate()
            .find(|(_, r)| r.chars().count() > limits.max_review_chars)
        {
            return Err(ApiError::too_large(
                Some(field(&format!("reviews[{i}]"))),
                format!(
                    "review {i} has {} characters: at most {}",
                    r.chars().count(),
                    limits.max_review_chars
                ),
            ));
        }
        if self.reviews.iter().all(|r| r.trim().is_empty()) {
            return Err(ApiError::invalid(
                field("reviews"),
                "every review is blank: give at least one with text",
            ));
        }
        let options = decode_options(prefix, self.threshold, self.max_tags, self.min_mentions)?;
        Ok(Request {
            good_type: self.good_type.trim().to_owned(),
            reviews: self.reviews.clone(),
            options,
        })
    }
}

/// A review that supports a tag on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvidenceOut {
    /// Its index in the request's `reviews`.
    pub review: usize,
    /// Its text.
    pub text: String,
    /// The tag's probability for this review alone.
    pub score: f32,
}

/// A returned tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TagOut {
    /// The tag, from the category's pool.
    pub tag: String,
    /// Its probability for the product: with `calibrated`, the chance that a careful
    /// reader of the reviews would agree.
    pub probability: f32,
    /// How many of the reviews read support it on their own.
    pub mentions: usize,
    /// Up to 3 supporting reviews, the highest scores first.
    pub evidence: Vec<EvidenceOut>,
}

/// The model that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    /// The bundle's format and directory name.
    pub bundle: String,
    /// The base encoder's name and the first 12 hex digits of its sha256.
    pub base: String,
}

/// The tags of one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TagResponse {
    /// The request's SKU, if it gave one.
    pub sku: Option<String>,
    /// The request's good type.
    pub good_type: String,
    /// The category whose adapter answered.
    pub routed_to: String,
    /// True when the good type has no adapter of its own and fell back.
    pub fallback: bool,
    /// The tags, most probable first; never two of one exclusive group. Empty when the
    /// category is careful-calibrated and no review clearly supports any tag.
    pub tags: Vec<TagOut>,
    /// Every pool tag's probability, in pool order.
    #[serde(serialize_with = "in_order")]
    #[schema(value_type = BTreeMap<String, f32>)]
    pub probabilities: Vec<(String, f32)>,
    /// The reviews scored for evidence (the first non-blank ones, up to the adapter's
    /// cap).
    pub reviews_read: usize,
    /// True when the probabilities are careful-calibrated: each is the chance that a
    /// careful reader of the reviews would agree with the tag.
    pub calibrated: bool,
    /// The model.
    pub model: ModelRef,
    /// True when the server's LLM re-ranked the tags (asked with `rerank`); false when not
    /// asked or when it failed (then `rerank_error` says why and the tags are our own).
    #[serde(default)]
    pub reranked: bool,
    /// Why re-ranking was asked for but not done.
    #[serde(default)]
    pub rerank_error: Option<String>,
}

fn in_order<S: Serializer>(pairs: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

impl TagResponse {
    /// The answer for `prediction`.
    pub fn new(sku: Option<String>, prediction: Prediction, model: ModelRef) -> Self {
        Self {
            sku,
            good_type: prediction.good_type,
            routed_to: prediction.category.name().to_owned(),
            fallback: prediction.fallback,
            tags: prediction
                .tags
                .into_iter()
                .map(|t| TagOut {
                    tag: t.tag,
                    probability: t.probability,
                    mentions: t.mentions,
                    evidence: t
                        .evidence
                        .into_iter()
                        .map(|e| EvidenceOut {
                            review: e.review,
                            text: e.text,
                            score: e.score,
                        })
                        .collect(),
                })
                .collect(),
            probabilities: prediction
                .probabilities
                .into_iter()
                .map(|t| (t.tag, t.probability))
                .collect(),
            reviews_read: prediction.reviews_read,
            calibrated: prediction.calibrated,
            model,
            reranked: false,
            rerank_error: None,
        }
    }
}

/// The answers of a batch, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One answer per item.
    pub items: Vec<TagResponse>,
}

/// An exclusive group: an answer holds at most one of its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupOut {
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A category and its pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoryOut {
    /// Its name (`shoes`, …).
    pub name: String,
    /// Its pool, in the head's output order.
    pub tags: Vec<String>,
    /// Its exclusive groups.
    pub exclusive_groups: Vec<GroupOut>,
    /// The threshold its tags are decoded at by default.
    pub threshold: f32,
}

/// Routing and pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoriesResponse {
    /// Good type → category.
    pub routing: BTreeMap<String, String>,
    /// Where any other good type goes (with `fallback: true`).
    pub fallback: String,
    /// Every category with an adapter.
    pub categories: Vec<CategoryOut>,
}

/// One adapter and its recorded dev figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdapterOut {
    /// Its category.
    pub category: String,
    /// Tags in its pool.
    pub tags: usize,
    /// Dev micro-F1 at its tuned threshold, from `metrics.json`.
    pub dev_micro_f1: Option<f64>,
    /// The frequency prior's dev micro-F1.
    pub prior_micro_f1: Option<f64>,
    /// Training and dev products.
    pub n_train: Option<u64>,
    /// Dev products.
    pub n_dev: Option<u64>,
    /// Whether its answers are careful-calibrated (it has a `careful.json`).
    pub calibrated: bool,
    /// On the careful dev split, the share of its shown tags a careful reader agrees with
    /// (`metrics.json`'s `careful.dev.model`).
    pub careful_precision: Option<f64>,
    /// On the careful dev split, the share of the careful tags it shows.
    pub careful_recall: Option<f64>,
    /// On the careful dev split, micro-F1 against the careful labels.
    pub careful_micro_f1: Option<f64>,
}

/// The loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelResponse {
    /// The bundle's format version.
    pub format: String,
    /// The bundle's directory.
    pub bundle: String,
    /// The base encoder's name.
    pub base: String,
    /// Its weights' sha256.
    pub base_sha256: String,
    /// The adapters.
    pub adapters: Vec<AdapterOut>,
    /// The request limits.
    pub limits: Limits,
}

/// Health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `loading`.
    pub status: String,
}

/// A product query string.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this good type.
    pub good_type: Option<String>,
    /// A part of the name or SKU (any case).
    pub q: Option<String>,
    /// The page, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u64>,
    /// Products per page (1..=200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<u64>,
}

/// A row of the product table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductSummary {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Good type.
    pub good_type: String,
    /// Subtype.
    pub good_subtype: String,
    /// Its number of reviews.
    pub reviews: usize,
}

/// A page of products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// Products matching.
    pub total: usize,
    /// This page (from 1).
    pub page: usize,
    /// Pages.
    pub pages: usize,
    /// Products per page.
    pub per_page: usize,
    /// The rows.
    pub items: Vec<ProductSummary>,
    /// Every good type of the table with its count.
    pub good_types: BTreeMap<String, usize>,
}

/// One product with its reviews and tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductDetail {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Good type.
    pub good_type: String,
    /// Subtype.
    pub good_subtype: String,
    /// Its reviews.
    pub reviews: Vec<String>,
    /// The table's own tags, when it has a `tags` column.
    pub dataset_tags: Option<Vec<String>>,
    /// The model's answer.
    pub prediction: TagResponse,
}
