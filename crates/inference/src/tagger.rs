//! [`Tagger`]: one base encoder with every category's adapter of a [`Bundle`]; routed,
//! batched prediction with evidence.
//!
//! ```text
//! Request { good_type, reviews, options } ─ routing ─▶ category ─▶ its adapter (one call
//! per category, all its products' reviews batched together) ─▶ Scores { product and
//! per-review probabilities in pool order } ─ decode(options) ─▶ Prediction { tags with
//! mentions and evidence, probabilities }
//! ```
//!
//! [`Tagger::score`] is the expensive half (the encoder); [`Tagger::decode`] is cheap, so
//! a caller holding [`Scores`] re-decodes at another threshold without the model.

use std::collections::BTreeMap;
use std::path::Path;

use lamoda_data::{Category, DecodeConfig, EtalonPool, Route, decode_eligible};
use lamoda_model::{LoadedBase, Precision};
use serde::Serialize;

use crate::InferenceError;
use crate::adapter::Adapter;
use crate::bundle::Bundle;
use crate::careful::CarefulCalibration;

/// Supporting reviews returned per tag, the highest scores first.
pub const EVIDENCE_PER_TAG: usize = 3;

/// The most tags an answer may hold (the product's promise: up to 6 tags; a careful-
/// calibrated answer may hold none).
pub const MAX_TAGS: usize = 6;

/// How one request is decoded, over the tagger's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecodeOptions {
    /// One threshold (0..=1) for every tag, for the product's probabilities and for its
    /// reviews' support alike; replaces the saved per-tag thresholds and the tagger's own.
    pub threshold: Option<f32>,
    /// At most this many tags (1..=[`MAX_TAGS`]; default [`MAX_TAGS`]).
    pub max_tags: Option<usize>,
    /// Keep a tag only when at least this many reviews support it on their own (0, the
    /// default, keeps every tag). With it, an answer may hold no tag at all.
    pub min_mentions: usize,
}

impl DecodeOptions {
    /// Checks the options: `Err` names the field and says what is wrong.
    pub fn validate(&self) -> Result<(), InferenceError> {
        if let Some(t) = self.threshold
            && !(0.0..=1.0).contains(&t)
        {
            return Err(InferenceError::Decode {
                reason: format!("threshold {t} is not within 0..=1"),
            });
        }
        if let Some(m) = self.max_tags
            && !(1..=MAX_TAGS).contains(&m)
        {
            return Err(InferenceError::Decode {
                reason: format!("max_tags {m} is not within 1..={MAX_TAGS}"),
            });
        }
        Ok(())
    }
}

/// One product to tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The product's Lamoda good type (`Shoes`, `Beauty_Accs`, …); unknown ones fall back.
    pub good_type: String,
    /// Its reviews; blank ones are skipped, and at least one must remain.
    pub reviews: Vec<String>,
    /// How its answer is decoded.
    pub options: DecodeOptions,
}

impl Request {
    /// A request of `good_type` with `reviews`, decoded with the tagger's defaults.
    pub fn new(good_type: impl Into<String>, reviews: Vec<String>) -> Self {
        Self {
            good_type: good_type.into(),
            reviews,
            options: DecodeOptions::default(),
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

/// A review that supports a tag on its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Its index in the request's reviews (as given, blank ones counted).
    pub review: usize,
    /// Its text (trimmed).
    pub text: String,
    /// The tag's probability for a product of this review alone.
    pub score: f32,
}

/// A decoded tag with the reviews behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictedTag {
    /// The tag.
    pub tag: String,
    /// Its probability for the product: with a careful calibration (see
    /// [`Prediction::calibrated`]) the probability that a careful reader of the reviews
    /// would agree, else the adapter's.
    pub probability: f32,
    /// How many of the reviews read support it on their own (their own probability for
    /// it reaches the support threshold: the calibration's, else the decoding threshold).
    pub mentions: usize,
    /// Up to [`EVIDENCE_PER_TAG`] supporting reviews, the highest scores first.
    pub evidence: Vec<Evidence>,
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
    pub tags: Vec<PredictedTag>,
    /// Every pool tag with its probability, in pool order.
    pub probabilities: Vec<TagProbability>,
    /// True when the probabilities are careful-calibrated (the category's adapter has a
    /// `careful.json`): each is the chance that a careful reader would agree.
    pub calibrated: bool,
    /// The reviews scored for evidence: the first non-blank ones, up to the adapter's cap.
    pub reviews_read: usize,
}

/// A review of a request with its own probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredReview {
    /// Its index in the request's reviews.
    pub index: usize,
    /// Its text (trimmed).
    pub text: String,
    /// Per pool tag, the probability for a product of this review alone.
    pub scores: Vec<f32>,
}

/// What the model says of one request before decoding: the product's probabilities and
/// each read review's own. Decoding it ([`Tagger::decode`]) is cheap, so a caller can
/// re-decode at other thresholds without running the model again.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The request's good type, as given.
    pub good_type: String,
    /// Where it was routed.
    pub route: Route,
    /// Per pool tag, the product's probability.
    pub product: Vec<f32>,
    /// The reviews read, in request order.
    pub reviews: Vec<ScoredReview>,
}

/// One category's pool and trained adapter.
#[derive(Debug)]
struct CategoryModel {
    pool: EtalonPool,
    adapter: Adapter,
    decoding: DecodeConfig,
    careful: Option<CarefulCalibration>,
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
            let careful = load_careful(&dir, category, &pool)?;
            models.insert(
                category,
                CategoryModel {
                    pool,
                    adapter,
                    decoding,
                    careful,
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

    /// Runs every adapter's encoder passes at `precision` from now on, whatever their
    /// `runtime.json` says (int8 weights are quantised on first use).
    pub fn set_precision(&mut self, precision: Precision) {
        for m in self.models.values_mut() {
            m.adapter.set_precision(precision);
        }
    }

    /// The precision of each loaded adapter's encoder passes, in category order.
    pub fn precisions(&self) -> Vec<(Category, Precision)> {
        self.models
            .iter()
            .map(|(c, m)| (*c, m.adapter.runtime.precision))
            .collect()
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

    /// How an answer names the model: `(bundle, base)`, the bundle's format and directory
    /// name (`lamoda-bundle/1 adapters`), and the base's name with the first 12 hex digits
    /// of its weights' sha256 (`e5-small 4adc522b…`).
    pub fn model_names(&self) -> (String, String) {
        let manifest = self.bundle.manifest();
        let sha = &self.base.info.weights_sha256;
        let dir_name = self
            .bundle
            .dir()
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        (
            format!("{} {dir_name}", manifest.format),
            format!("{} {}", manifest.base.name, sha.get(..12).unwrap_or(sha)),
        )
    }

    /// Where a good type is routed.
    pub fn route(&self, good_type: &str) -> Route {
        self.bundle.routing().route(good_type)
    }

    /// The decoding rules `category` is decoded with by default: its careful
    /// calibration's (threshold on the calibrated probabilities, `min_tags`) when it has
    /// one, else its saved per-tag thresholds; the threshold set with
    /// [`Tagger::set_threshold`] replaces either. `None` when it has no adapter.
    pub fn decoding(&self, category: Category) -> Option<DecodeConfig> {
        let m = self.models.get(&category)?;
        let saved = match &m.careful {
            Some(careful) => careful.decode_config(),
            None => m.decoding.clone(),
        };
        Some(match self.threshold {
            Some(threshold) => DecodeConfig {
                threshold,
                per_tag_thresholds: None,
                ..saved
            },
            None => saved,
        })
    }

    /// The adapter's own decoding rules for `category`, before any careful calibration
    /// (its saved per-tag thresholds, else 0.5, at least one tag).
    pub fn raw_decoding(&self, category: Category) -> Option<DecodeConfig> {
        self.models.get(&category).map(|m| m.decoding.clone())
    }

    /// The careful calibration of `category`, when its adapter has one.
    pub fn careful(&self, category: Category) -> Option<&CarefulCalibration> {
        self.models.get(&category)?.careful.as_ref()
    }

    /// Tags every request: [`Tagger::score`], then [`Tagger::decode`] with each request's
    /// options.
    pub fn predict(&self, requests: &[Request]) -> Result<Vec<Prediction>, InferenceError> {
        for request in requests {
            request.options.validate()?;
        }
        self.score(requests)?
            .iter()
            .zip(requests)
            .map(|(scores, request)| self.decode(scores, &request.options))
            .collect()
    }

    /// Checks request number `index` as [`Tagger::predict`] does before any encoding: its
    /// options, a loaded adapter for its good type's route, and a non-blank review. A
    /// caller that must not fail a whole batch for one bad product checks each first.
    pub fn check(&self, index: usize, request: &Request) -> Result<(), InferenceError> {
        request.options.validate()?;
        self.check_route(index, request).map(|_| ())
    }

    /// The route of request `index`, when it has an adapter and a non-blank review.
    fn check_route(&self, index: usize, request: &Request) -> Result<Route, InferenceError> {
        let route = self.route(&request.good_type);
        if !self.models.contains_key(&route.category) {
            return Err(InferenceError::NoAdapter {
                index,
                good_type: request.good_type.clone(),
                category: route.category,
                model_dir: self.bundle.dir().to_path_buf(),
            });
        }
        if request.reviews.iter().all(|r| r.trim().is_empty()) {
            return Err(InferenceError::NoReviews {
                index,
                good_type: request.good_type.clone(),
            });
        }
        Ok(route)
    }

    /// Scores every request. Requests are checked first (each must route to a loaded
    /// adapter and have a non-blank review), then each category's requests run through
    /// its adapter in one call; the answers come back in request order.
    pub fn score(&self, requests: &[Request]) -> Result<Vec<Scores>, InferenceError> {
        let mut routes = Vec::with_capacity(requests.len());
        let mut reviews: Vec<Vec<(usize, String)>> = Vec::with_capacity(requests.len());
        let mut groups: BTreeMap<Category, Vec<usize>> = BTreeMap::new();
        for (index, request) in requests.iter().enumerate() {
            let route = self.check_route(index, request)?;
            let texts: Vec<(usize, String)> = request
                .reviews
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.trim()))
                .filter(|(_, r)| !r.is_empty())
                .map(|(i, r)| (i, r.to_owned()))
                .collect();
            routes.push(route);
            reviews.push(texts);
            groups.entry(route.category).or_default().push(index);
        }

        let mut out: Vec<Option<Scores>> = vec![None; requests.len()];
        for (&category, members) in &groups {
            let Some(model) = self.models.get(&category) else {
                continue; // checked above
            };
            let texts: Vec<Vec<String>> = members
                .iter()
                .map(|&i| reviews[i].iter().map(|(_, t)| t.clone()).collect())
                .collect();
            let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
            let rows = model
                .adapter
                .stack_probabilities(&self.base.tokenizer, &stacks)
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
            let n_tags = model.pool.len();
            for (&i, row) in members.iter().zip(rows) {
                if row.product.len() != n_tags || row.reviews.iter().any(|r| r.len() != n_tags) {
                    return Err(InferenceError::Shape {
                        category,
                        detail: format!("probabilities of another width than {n_tags} tags"),
                    });
                }
                out[i] = Some(Scores {
                    good_type: requests[i].good_type.clone(),
                    route: routes[i],
                    product: row.product,
                    reviews: reviews[i]
                        .iter()
                        .zip(row.reviews)
                        .map(|((index, text), scores)| ScoredReview {
                            index: *index,
                            text: text.clone(),
                            scores,
                        })
                        .collect(),
                });
            }
        }
        out.into_iter()
            .zip(routes)
            .map(|(scores, route)| {
                scores.ok_or(InferenceError::Shape {
                    category: route.category,
                    detail: "no probabilities came back".into(),
                })
            })
            .collect()
    }

    /// Decodes scores with `options` over the tagger's defaults: the threshold (the
    /// option's, else the tagger's, else the category's saved per-tag ones, else 0.5) both
    /// passes tags and counts each tag's supporting reviews; `min_mentions` keeps only the
    /// tags enough reviews support; an exclusive group never gives two tags.
    pub fn decode(
        &self,
        scores: &Scores,
        options: &DecodeOptions,
    ) -> Result<Prediction, InferenceError> {
        options.validate()?;
        let category = scores.route.category;
        let (Some(model), Some(mut decoding)) =
            (self.models.get(&category), self.decoding(category))
        else {
            return Err(InferenceError::Shape {
                category,
                detail: "no adapter for these scores".into(),
            });
        };
        if let Some(threshold) = options.threshold {
            decoding.threshold = threshold;
            decoding.per_tag_thresholds = None;
        }
        decoding.max_tags = options.max_tags.unwrap_or(MAX_TAGS);
        decoding.min_tags = decoding.min_tags.min(decoding.max_tags);
        let n_tags = model.pool.len();
        if scores.product.len() != n_tags {
            return Err(InferenceError::Shape {
                category,
                detail: format!("{} probabilities for {n_tags} tags", scores.product.len()),
            });
        }
        // With a careful calibration, tags are decoded on its probabilities and a review
        // supports a tag at its fixed support threshold; without one, on the adapter's, and
        // the decoding threshold is also the support threshold.
        let calibrated: Option<Vec<f32>> = model.careful.as_ref().map(|careful| {
            let reviews: Vec<&[f32]> = scores.reviews.iter().map(|r| r.scores.as_slice()).collect();
            careful.probabilities(&scores.product, &reviews)
        });
        let probabilities: &[f32] = calibrated.as_deref().unwrap_or(&scores.product);
        let min_mentions = options
            .min_mentions
            .max(model.careful.as_ref().map_or(0, |c| c.min_mentions));
        let support_threshold = |i: usize| match &model.careful {
            Some(careful) => careful.review_threshold,
            None => decoding.threshold_of(i),
        };
        let supporting = |i: usize| {
            let mut support: Vec<&ScoredReview> = scores
                .reviews
                .iter()
                .filter(|r| r.scores.get(i).is_some_and(|&s| s >= support_threshold(i)))
                .collect();
            support.sort_by(|a, b| b.scores[i].total_cmp(&a.scores[i]));
            support
        };
        let mentions: Vec<usize> = (0..n_tags).map(|i| supporting(i).len()).collect();
        let decoded = decode_eligible(probabilities, &model.pool, &decoding, |i| {
            mentions[i] >= min_mentions
        });
        let tag = |i: usize, probability: f32| TagProbability {
            tag: model.pool.tags[i].clone(),
            probability,
        };
        Ok(Prediction {
            good_type: scores.good_type.clone(),
            category,
            fallback: scores.route.fallback,
            tags: decoded
                .tags
                .iter()
                .map(|&(i, probability)| PredictedTag {
                    tag: model.pool.tags[i].clone(),
                    probability,
                    mentions: mentions[i],
                    evidence: supporting(i)
                        .into_iter()
                        .take(EVIDENCE_PER_TAG)
                        .map(|r| Evidence {
                            review: r.index,
                            text: r.text.clone(),
                            score: r.scores[i],
                        })
                        .collect(),
                })
                .collect(),
            probabilities: probabilities
                .iter()
                .enumerate()
                .map(|(i, &p)| tag(i, p))
                .collect(),
            calibrated: calibrated.is_some(),
            reviews_read: scores.reviews.len(),
        })
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

/// Reads `dir`'s `careful.json`, when there is one, checked against `pool`.
fn load_careful(
    dir: &Path,
    category: Category,
    pool: &EtalonPool,
) -> Result<Option<CarefulCalibration>, InferenceError> {
    let path = dir.join(crate::format::CAREFUL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let careful: CarefulCalibration = crate::format::read_json(&path)?;
    careful
        .validate(&pool.tags)
        .map_err(|reason| InferenceError::Careful {
            path: path.clone(),
            category,
            reason,
        })?;
    Ok(Some(careful))
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
