//! Routed tag prediction: one base encoder with every category's adapter, batched per category.
//!
//! ```text
//! Request { good_type, reviews } ─ Routing ─▶ category ─▶ its adapter (one call per
//! category) ─▶ probabilities in pool order ─ decode ─▶ Prediction { tags, probabilities }
//! ```
//!
//! [`Tagger::open`] (or [`Tagger::load`] with a base already in memory) reads every
//! `<model_dir>/<category>/` written by `lamoda_trainer::train_category`; categories
//! without an adapter there are simply not loaded, and a request routed to one of them is
//! an [`InferenceError::NoAdapter`].

pub mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamoda_data::{Category, DataError, DecodeConfig, EtalonPool, Route, Routing, decode};
use lamoda_model::{LoadedBase, ModelError, lora::ADAPTER_CONFIG_FILE};
use lamoda_trainer::{TrainError, TrainedAdapter, load_trained};
use serde::Serialize;

/// The model crate, so callers build [`LoadedBase`]s with the same version.
pub use lamoda_model;

/// Why loading or predicting failed; every variant names the path, category or request
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The model directory does not exist.
    #[error(
        "no model directory at {}: expected trained adapters there as <category>/{ADAPTER_CONFIG_FILE}",
        path.display()
    )]
    NoModelDir {
        /// The directory.
        path: PathBuf,
    },
    /// The model directory holds no adapter of any category.
    #[error("{}: no adapters (expected <category>/{ADAPTER_CONFIG_FILE} for one of {expected})", path.display())]
    NoAdapters {
        /// The directory.
        path: PathBuf,
        /// The category names looked for.
        expected: String,
    },
    /// The base model could not be loaded (a missing base says how to fetch it).
    #[error(transparent)]
    Base(#[from] ModelError),
    /// A category's etalon pool could not be read.
    #[error("{category} pool: {source}")]
    Pool {
        /// The category.
        category: Category,
        /// Why.
        source: DataError,
    },
    /// An adapter directory could not be loaded.
    #[error("{category} adapter: {source}")]
    Adapter {
        /// The category.
        category: Category,
        /// Why.
        source: Box<TrainError>,
    },
    /// An adapter's head does not have one output per pool tag.
    #[error(
        "{}: the {category} head has {head} outputs but the {category} pool has {pool} tags",
        path.display()
    )]
    HeadWidth {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// Outputs of the head.
        head: usize,
        /// Tags in the pool.
        pool: usize,
    },
    /// An adapter's head names other tags (or another order) than its pool.
    #[error(
        "{}: the {category} head's tag {index} is {head:?} but the pool's is {pool:?} \
         (retrain the adapter after changing the pool)",
        path.display()
    )]
    TagMismatch {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// Position of the first difference.
        index: usize,
        /// The head's tag there.
        head: String,
        /// The pool's tag there.
        pool: String,
    },
    /// Saved per-tag thresholds do not fit the pool.
    #[error("{}: per-tag thresholds of {category}: {reason}", path.display())]
    Thresholds {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// What is wrong.
        reason: String,
    },
    /// A decoding setting is out of range.
    #[error("decoding: {reason}")]
    Decode {
        /// What is wrong.
        reason: String,
    },
    /// A request routes to a category that has no adapter loaded.
    #[error(
        "request {index} (good type {good_type:?}) routes to {category}, which has no adapter in {}",
        model_dir.display()
    )]
    NoAdapter {
        /// The request's index.
        index: usize,
        /// Its good type.
        good_type: String,
        /// The category it routes to.
        category: Category,
        /// The model directory that lacks it.
        model_dir: PathBuf,
    },
    /// A request has no non-blank review.
    #[error("request {index} (good type {good_type:?}) has no review text")]
    NoReviews {
        /// The request's index.
        index: usize,
        /// Its good type.
        good_type: String,
    },
    /// The adapter failed while predicting.
    #[error("predicting {category}: {source}")]
    Predict {
        /// The category.
        category: Category,
        /// Why.
        source: Box<TrainError>,
    },
    /// The adapter returned another number of rows or columns than asked for.
    #[error("predicting {category}: {detail}")]
    Shape {
        /// The category.
        category: Category,
        /// What differs.
        detail: String,
    },
}

/// One product to tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The product's Lamoda good type (`Shoes`, `Beauty_Accs`, …); unknown ones fall back.
    pub good_type: String,
    /// Its reviews; blank ones are skipped, and at least one must remain.
    pub reviews: Vec<String>,
}

impl Request {
    /// A request of `good_type` with `reviews`.
    pub fn new(good_type: impl Into<String>, reviews: Vec<String>) -> Self {
        Self {
            good_type: good_type.into(),
            reviews,
        }
    }
}

/// A tag with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagProbability {
    /// The tag.
    pub tag: String,
    /// Its probability.
    pub probability: f32,
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The request's good type, as given.
    pub good_type: String,
    /// The category whose adapter answered.
    pub category: Category,
    /// True when the good type had no route of its own and fell back.
    pub fallback: bool,
    /// The decoded tags, most probable first.
    pub tags: Vec<TagProbability>,
    /// Every pool tag with its probability, in pool order.
    pub probabilities: Vec<TagProbability>,
}

/// One category's pool and trained adapter.
#[derive(Debug)]
struct CategoryModel {
    pool: EtalonPool,
    adapter: TrainedAdapter,
    decoding: DecodeConfig,
}

/// One base encoder with every category's adapter found in a model directory.
#[derive(Debug)]
pub struct Tagger {
    base: LoadedBase,
    routing: Routing,
    model_dir: PathBuf,
    models: BTreeMap<Category, CategoryModel>,
    threshold: Option<f32>,
}

impl Tagger {
    /// The categories that have an adapter (`<model_dir>/<category>/adapter_config.json`)
    /// in `model_dir`. A directory that does not exist or holds none is an error.
    pub fn adapter_categories(model_dir: &Path) -> Result<Vec<Category>, InferenceError> {
        if !model_dir.is_dir() {
            return Err(InferenceError::NoModelDir {
                path: model_dir.to_path_buf(),
            });
        }
        let present: Vec<Category> = Category::ALL
            .into_iter()
            .filter(|c| model_dir.join(c.name()).join(ADAPTER_CONFIG_FILE).is_file())
            .collect();
        if present.is_empty() {
            return Err(InferenceError::NoAdapters {
                path: model_dir.to_path_buf(),
                expected: Category::ALL.map(Category::name).join(", "),
            });
        }
        Ok(present)
    }

    /// Checks `model_dir` for adapters, then loads the base from `base_dir` (an HF
    /// directory) on the default device, then every adapter with its pool from
    /// `etalon_dir` (`<etalon_dir>/<category>.toml`).
    pub fn open(
        base_dir: &Path,
        model_dir: &Path,
        routing: Routing,
        etalon_dir: &Path,
    ) -> Result<Self, InferenceError> {
        Self::adapter_categories(model_dir)?;
        let base = lamoda_model::load_hf_dir(base_dir, &lamoda_model::default_device())?;
        Self::load(base, model_dir, routing, |c| {
            EtalonPool::load(etalon_dir, c)
        })
    }

    /// Loads every adapter in `model_dir` onto `base`, each checked against its pool
    /// (`pool_of(category)`): one head output per pool tag, in pool order, and saved
    /// per-tag thresholds (if any) for the same tags.
    pub fn load(
        base: LoadedBase,
        model_dir: &Path,
        routing: Routing,
        mut pool_of: impl FnMut(Category) -> Result<EtalonPool, DataError>,
    ) -> Result<Self, InferenceError> {
        let mut models = BTreeMap::new();
        for category in Self::adapter_categories(model_dir)? {
            let pool =
                pool_of(category).map_err(|source| InferenceError::Pool { category, source })?;
            let dir = model_dir.join(category.name());
            let adapter = load_trained(&dir, &base).map_err(|e| InferenceError::Adapter {
                category,
                source: Box::new(e),
            })?;
            let decoding = check_adapter(&dir, category, &pool, &adapter)?;
            models.insert(
                category,
                CategoryModel {
                    pool,
                    adapter,
                    decoding,
                },
            );
        }
        Ok(Self {
            base,
            routing,
            model_dir: model_dir.to_path_buf(),
            models,
            threshold: None,
        })
    }

    /// Sets one threshold for every tag of every category (`Some`, within 0..=1), which
    /// replaces saved per-tag thresholds; `None` (the default) uses each adapter's saved
    /// per-tag thresholds where it has them, else 0.5.
    pub fn set_threshold(&mut self, threshold: Option<f32>) -> Result<(), InferenceError> {
        if let Some(t) = threshold
            && !(0.0..=1.0).contains(&t)
        {
            return Err(InferenceError::Decode {
                reason: format!("threshold {t} is not within 0..=1"),
            });
        }
        self.threshold = threshold;
        Ok(())
    }

    /// The threshold set with [`Tagger::set_threshold`].
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// The categories with an adapter loaded, in [`Category::ALL`] order.
    pub fn categories(&self) -> Vec<Category> {
        self.models.keys().copied().collect()
    }

    /// The pool of a loaded category.
    pub fn pool(&self, category: Category) -> Option<&EtalonPool> {
        self.models.get(&category).map(|m| &m.pool)
    }

    /// The loaded adapter of a category.
    pub fn adapter(&self, category: Category) -> Option<&TrainedAdapter> {
        self.models.get(&category).map(|m| &m.adapter)
    }

    /// The base model.
    pub fn base(&self) -> &LoadedBase {
        &self.base
    }

    /// The directory the adapters were loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// Where a good type is routed.
    pub fn route(&self, good_type: &str) -> Route {
        self.routing.route(good_type)
    }

    /// The decoding rules `category` is decoded with (its saved per-tag thresholds, or the
    /// threshold set), `None` when it has no adapter.
    pub fn decoding(&self, category: Category) -> Option<DecodeConfig> {
        let m = self.models.get(&category)?;
        Some(match self.threshold {
            Some(threshold) => DecodeConfig {
                threshold,
                per_tag_thresholds: None,
                ..m.decoding.clone()
            },
            None => m.decoding.clone(),
        })
    }

    /// Tags every request. Requests are checked first (each must route to a loaded
    /// adapter and have a non-blank review), then each category's requests run through
    /// its adapter in one call; the answers come back in request order.
    pub fn predict(&self, requests: &[Request]) -> Result<Vec<Prediction>, InferenceError> {
        let mut routes = Vec::with_capacity(requests.len());
        let mut reviews: Vec<Vec<String>> = Vec::with_capacity(requests.len());
        let mut groups: BTreeMap<Category, Vec<usize>> = BTreeMap::new();
        for (index, request) in requests.iter().enumerate() {
            let route = self.routing.route(&request.good_type);
            if !self.models.contains_key(&route.category) {
                return Err(InferenceError::NoAdapter {
                    index,
                    good_type: request.good_type.clone(),
                    category: route.category,
                    model_dir: self.model_dir.clone(),
                });
            }
            let texts: Vec<String> = request
                .reviews
                .iter()
                .map(|r| r.trim())
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            if texts.is_empty() {
                return Err(InferenceError::NoReviews {
                    index,
                    good_type: request.good_type.clone(),
                });
            }
            routes.push(route);
            reviews.push(texts);
            groups.entry(route.category).or_default().push(index);
        }

        let mut probs: Vec<Option<Vec<f32>>> = vec![None; requests.len()];
        for (&category, members) in &groups {
            let Some(model) = self.models.get(&category) else {
                continue; // checked above
            };
            let stacks: Vec<&[String]> = members.iter().map(|&i| reviews[i].as_slice()).collect();
            let rows = model
                .adapter
                .probabilities(&self.base.tokenizer, &stacks)
                .map_err(|e| InferenceError::Predict {
                    category,
                    source: Box::new(e),
                })?;
            if rows.len() != members.len() {
                return Err(InferenceError::Shape {
                    category,
                    detail: format!("{} rows for {} requests", rows.len(), members.len()),
                });
            }
            for (&i, row) in members.iter().zip(rows) {
                if row.len() != model.pool.len() {
                    return Err(InferenceError::Shape {
                        category,
                        detail: format!(
                            "{} probabilities for {} tags",
                            row.len(),
                            model.pool.len()
                        ),
                    });
                }
                probs[i] = Some(row);
            }
        }

        requests
            .iter()
            .zip(routes)
            .zip(probs)
            .map(|((request, route), row)| {
                let category = route.category;
                let (Some(model), Some(decoding), Some(row)) =
                    (self.models.get(&category), self.decoding(category), row)
                else {
                    return Err(InferenceError::Shape {
                        category,
                        detail: "no probabilities came back".into(),
                    });
                };
                let decoded = decode(&row, &model.pool, &decoding);
                let tag = |i: usize, probability: f32| TagProbability {
                    tag: model.pool.tags[i].clone(),
                    probability,
                };
                Ok(Prediction {
                    good_type: request.good_type.clone(),
                    category,
                    fallback: route.fallback,
                    tags: decoded.tags.iter().map(|&(i, p)| tag(i, p)).collect(),
                    probabilities: row.iter().enumerate().map(|(i, &p)| tag(i, p)).collect(),
                })
            })
            .collect()
    }
}

/// Checks a loaded adapter against its pool; returns its decoding rules (saved per-tag
/// thresholds when present).
fn check_adapter(
    dir: &Path,
    category: Category,
    pool: &EtalonPool,
    adapter: &TrainedAdapter,
) -> Result<DecodeConfig, InferenceError> {
    let width = adapter
        .model
        .heads
        .first()
        .map_or(0, |h| h.linear.weight.val().dims()[1]);
    if width != pool.len() {
        return Err(InferenceError::HeadWidth {
            path: dir.to_path_buf(),
            category,
            head: width,
            pool: pool.len(),
        });
    }
    let head_tags = adapter.model.heads.first().map(|h| h.tags()).unwrap_or(&[]);
    if let Some((index, (head, pool_tag))) = head_tags
        .iter()
        .zip(&pool.tags)
        .enumerate()
        .find(|(_, (h, p))| h != p)
    {
        return Err(InferenceError::TagMismatch {
            path: dir.to_path_buf(),
            category,
            index,
            head: head.clone(),
            pool: pool_tag.clone(),
        });
    }
    let mut decoding = DecodeConfig::default();
    if let Some(saved) = &adapter.thresholds {
        let bad = |reason: String| InferenceError::Thresholds {
            path: dir.to_path_buf(),
            category,
            reason,
        };
        if saved.tags != pool.tags {
            return Err(bad(format!(
                "they are for {} tags that differ from the pool's {}",
                saved.tags.len(),
                pool.len()
            )));
        }
        decoding.per_tag_thresholds = Some(saved.thresholds.clone());
        decoding.validate(pool.len()).map_err(bad)?;
    }
    Ok(decoding)
}
