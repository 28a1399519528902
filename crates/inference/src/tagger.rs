//! [`Tagger`]: one base encoder with every category's adapter of a [`Bundle`]; routed,
//! batched prediction.
//!
//! ```text
//! Request { good_type, reviews } ─ routing ─▶ category ─▶ its adapter (one call per
//! category, all its products' reviews batched together) ─▶ probabilities in pool order
//! ─ decode ─▶ Prediction { tags, probabilities }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use lamoda_data::{Category, DecodeConfig, EtalonPool, Route, decode};
use lamoda_model::LoadedBase;
use serde::Serialize;

use crate::InferenceError;
use crate::adapter::Adapter;
use crate::bundle::Bundle;

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
    adapter: Adapter,
    decoding: DecodeConfig,
}

/// One base encoder with every category's adapter of a bundle.
#[derive(Debug)]
pub struct Tagger {
    base: LoadedBase,
    bundle: Bundle,
    models: BTreeMap<Category, CategoryModel>,
    threshold: Option<f32>,
}

impl Tagger {
    /// Opens the bundle in `bundle_dir`, loads the base from `base_dir` (default: the
    /// bundle's recorded default) on the default device, checks that it is the bundle's
    /// base, then loads every adapter ([`Tagger::load`]).
    pub fn open(bundle_dir: &Path, base_dir: Option<&Path>) -> Result<Self, InferenceError> {
        let bundle = Bundle::open(bundle_dir)?;
        let base_dir = base_dir.map_or_else(|| bundle.default_base_dir(), Path::to_path_buf);
        let base = load_base(&bundle, &base_dir)?;
        Self::load(base, bundle)
    }

    /// Loads every adapter of `bundle` onto `base`, each checked against its pool: one
    /// head output per pool tag, in pool order, and saved per-tag thresholds (if any) for
    /// the same tags.
    pub fn load(base: LoadedBase, bundle: Bundle) -> Result<Self, InferenceError> {
        bundle.check_base(&base.info)?;
        let mut models = BTreeMap::new();
        for category in bundle.categories() {
            let Some(pool) = bundle.pool(category).cloned() else {
                continue; // `categories` are the pools' keys
            };
            let dir = bundle.category_dir(category);
            let adapter = Adapter::load(&dir, &base).map_err(|e| InferenceError::Adapter {
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
            bundle,
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
    pub fn adapter(&self, category: Category) -> Option<&Adapter> {
        self.models.get(&category).map(|m| &m.adapter)
    }

    /// The base model.
    pub fn base(&self) -> &LoadedBase {
        &self.base
    }

    /// The bundle the adapters were loaded from.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Where a good type is routed.
    pub fn route(&self, good_type: &str) -> Route {
        self.bundle.routing().route(good_type)
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
            let route = self.route(&request.good_type);
            if !self.models.contains_key(&route.category) {
                return Err(InferenceError::NoAdapter {
                    index,
                    good_type: request.good_type.clone(),
                    category: route.category,
                    model_dir: self.bundle.dir().to_path_buf(),
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
    adapter: &Adapter,
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

/// Loads the base in `base_dir` for `bundle`; a missing base names the command that
/// provides it. Whether it is the bundle's base is checked by [`Tagger::load`].
pub fn load_base(bundle: &Bundle, base_dir: &Path) -> Result<LoadedBase, InferenceError> {
    if !base_dir.join(lamoda_model::hf::CONFIG_FILE).is_file() {
        return Err(InferenceError::NoBase {
            path: base_dir.to_path_buf(),
            name: bundle.manifest().base.name.clone(),
            provide: bundle.manifest().base.provide.clone(),
        });
    }
    Ok(lamoda_model::load_hf_dir(
        base_dir,
        &lamoda_model::default_device(),
    )?)
}
