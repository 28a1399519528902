//! The lexical branch of an adapter at run time: bags of word stems and character n-grams → logistic
//! regressions per tag, whose probabilities are averaged with the encoder's.
//!
//! Reviews are lower-cased (`ё` read as `е`) and split into words (runs of letters and
//! digits). Two *views* count them:
//! - **stems**: each word cut to its first `stem_chars` characters, a crude stemmer that
//!   folds most Russian inflections together (`удобные`, `удобная` → `удобн`);
//! - **character n-grams** (`char_ngrams = [min, max]`, off when empty): the n-grams of
//!   each word padded with a space on both sides (` удобн`, `обны`, `ые `…), which also
//!   match misspellings, compounds and endings the stems cut off.
//!
//! In each view a product is the TF-IDF vector of **all** its reviews (sublinear term
//! frequency, smoothed idf, L2-normalised), so the branch also reads what the encoder's
//! caps (reviews per product, tokens per review) leave out. A view's vocabulary is what at
//! least `min_df` (`char_min_df`) training products use. Each view's *first stage* is one
//! regression per tag minimising `C · Σ log-loss + ½‖w‖²` (the intercept is not
//! penalised), fitted by the trainer (`lamoda_trainer::lexical_fit`, Newton–CG).
//!
//! A *second stage* (on by default, needed by the n-gram view) reads every tag's logit in
//! every view and gives each tag a second regression over all of them, so a tag's
//! probability also depends on which other tags the reviews suggest (labels come in
//! typical combinations, and some exclude each other), the views are weighed per tag, and
//! each tag is recalibrated. It is fitted on out-of-fold logits of the training products
//! (row `i` in fold `i mod folds`, each fold scored by first stages fitted without it), so
//! it learns from logits like those of unseen products.
//!
//! The second stage may also read a third, non-lexical view (`frozen_view`): the logits
//! of the untouched base encoder's review vectors ([`crate::frozen`]), so the
//! semantic signal is weighed against the lexical one per tag, on out-of-fold logits too.
//!
//! Files: `lexical.json` (settings, tags, vocabularies, the frozen view's width) and
//! `lexical.safetensors` (per view `idf` `[F]`, `weight` `[T, F]`, `bias` `[T]`, prefixed
//! `char_` for the n-gram view; the frozen view's `frozen_mean`, `frozen_std` `[H]`,
//! `frozen_weight` `[T, H]`, `frozen_bias` `[T]`; with the second stage `second_weight`
//! `[T, V·T]` and `second_bias` `[T]` for V views).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::InferenceError;
use crate::frozen::{FrozenView, ProductVectors};

/// The lexical branch's settings (`[lexical]` in `configs/<category>.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LexicalSettings {
    /// Words are cut to this many characters (default 5).
    pub stem_chars: usize,
    /// A stem enters the vocabulary when at least this many training products use it
    /// (default 2).
    pub min_df: usize,
    /// The character n-gram view's lengths, `[min, max]`; empty (the default) leaves the
    /// view out. It needs the second stage.
    pub char_ngrams: Vec<usize>,
    /// An n-gram enters the vocabulary when at least this many training products use it
    /// (default 3).
    pub char_min_df: usize,
    /// Inverse strength of the first stages' L2 penalty, as in scikit-learn's `C`
    /// (default 4).
    pub c: f64,
    /// Share of the lexical probability in the adapter's probability:
    /// `p = (1 − weight) · p_encoder + weight · p_lexical` (default 0.5).
    pub weight: f64,
    /// Newton iterations per tag at most (default 30).
    pub max_iterations: usize,
    /// Fit the second stage over all tags' first-stage logits (default true).
    pub second_stage: bool,
    /// `C` of the second stage's regressions (default 0.3).
    pub second_stage_c: f64,
    /// Folds of the out-of-fold logits the second stage learns from (default 5).
    pub folds: usize,
    /// Let the second stage also read the frozen view, the base encoder's review vectors
    /// (default false; see [`crate::frozen_view`]). It needs the second stage.
    pub frozen_view: bool,
    /// Adam iterations of the frozen view's fit (default 150; fewer is a stronger
    /// regulariser).
    pub frozen_iterations: usize,
    /// Adam's step size in the frozen view's fit (default 3e-3).
    pub frozen_lr: f64,
    /// L2 penalty on the frozen view's weights (default 1e-3).
    pub frozen_weight_decay: f64,
}

impl Default for LexicalSettings {
    fn default() -> Self {
        Self {
            stem_chars: 5,
            min_df: 2,
            char_ngrams: Vec::new(),
            char_min_df: 3,
            c: 4.0,
            weight: 0.5,
            max_iterations: 30,
            second_stage: true,
            second_stage_c: 0.3,
            folds: 5,
            frozen_view: false,
            frozen_iterations: 150,
            frozen_lr: 3e-3,
            frozen_weight_decay: 1e-3,
        }
    }
}

impl LexicalSettings {
    /// Check every field; `path` names the config file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), InferenceError> {
        let bad = |field: &'static str, value: String, reason: &str| InferenceError::Config {
            path: path.to_path_buf(),
            field,
            value,
            reason: reason.to_string(),
        };
        for (field, value) in [
            ("lexical.stem_chars", self.stem_chars),
            ("lexical.min_df", self.min_df),
            ("lexical.char_min_df", self.char_min_df),
            ("lexical.max_iterations", self.max_iterations),
            ("lexical.frozen_iterations", self.frozen_iterations),
        ] {
            if value == 0 {
                return Err(bad(field, "0".into(), "must be at least 1"));
            }
        }
        match self.char_ngrams[..] {
            [] => {}
            [lo, hi] if (1..=hi).contains(&lo) && hi <= 8 => {
                if !self.second_stage {
                    return Err(bad(
                        "lexical.char_ngrams",
                        format!("{:?}", self.char_ngrams),
                        "the n-gram view needs `second_stage = true`",
                    ));
                }
            }
            _ => {
                return Err(bad(
                    "lexical.char_ngrams",
                    format!("{:?}", self.char_ngrams),
                    "must be empty or [min, max] with 1 ≤ min ≤ max ≤ 8",
                ));
            }
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(bad("lexical.c", self.c.to_string(), "must be positive"));
        }
        if !(self.second_stage_c.is_finite() && self.second_stage_c > 0.0) {
            return Err(bad(
                "lexical.second_stage_c",
                self.second_stage_c.to_string(),
                "must be positive",
            ));
        }
        if self.folds < 2 {
            return Err(bad(
                "lexical.folds",
                self.folds.to_string(),
                "must be at least 2",
            ));
        }
        if self.frozen_view && !self.second_stage {
            return Err(bad(
                "lexical.frozen_view",
                "true".into(),
                "the frozen view needs `second_stage = true`",
            ));
        }
        if !(self.frozen_lr.is_finite() && self.frozen_lr > 0.0) {
            return Err(bad(
                "lexical.frozen_lr",
                self.frozen_lr.to_string(),
                "must be positive",
            ));
        }
        if !(self.frozen_weight_decay.is_finite() && self.frozen_weight_decay >= 0.0) {
            return Err(bad(
                "lexical.frozen_weight_decay",
                self.frozen_weight_decay.to_string(),
                "must be zero or positive",
            ));
        }
        if !(0.0..=1.0).contains(&self.weight) {
            return Err(bad(
                "lexical.weight",
                self.weight.to_string(),
                "must be within [0, 1]",
            ));
        }
        Ok(())
    }

    /// The views these settings ask for: stems, then n-grams when on.
    pub fn views(&self) -> Vec<View> {
        let mut views = vec![View::Stems(self.stem_chars)];
        if let [lo, hi] = self.char_ngrams[..] {
            views.push(View::CharNgrams(lo, hi));
        }
        views
    }
}

/// `lexical.json`: everything of a [`LexicalModel`] but its numbers.
pub const LEXICAL_CONFIG_FILE: &str = "lexical.json";
/// `lexical.safetensors`: idf, weights and biases of a [`LexicalModel`].
pub const LEXICAL_WEIGHTS_FILE: &str = "lexical.safetensors";
/// The format `lexical.json` and `lexical.safetensors` declare.
pub const LEXICAL_FORMAT: &str = "lamoda-lexical/2";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexicalFile {
    format: String,
    settings: LexicalSettings,
    tags: Vec<String>,
    vocabulary: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    char_vocabulary: Vec<String>,
    /// The frozen view's input width (0: no frozen view).
    #[serde(default, skip_serializing_if = "is_zero")]
    frozen_dim: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a first stage counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// Words cut to this many characters.
    Stems(usize),
    /// Character n-grams of space-padded words, of these lengths (inclusive).
    CharNgrams(usize, usize),
}

impl View {
    /// Its tensors' name prefix in `lexical.safetensors`.
    pub fn prefix(self) -> &'static str {
        match self {
            View::Stems(_) => "",
            View::CharNgrams(..) => "char_",
        }
    }
}

/// The words of `text`, lower-cased with `ё` read as `е`.
fn words(text: &str) -> impl Iterator<Item = impl Iterator<Item = char> + '_> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.chars()
                .flat_map(char::to_lowercase)
                .map(|c| if c == 'ё' { 'е' } else { c })
        })
}

/// The stems of `text`, in order (see the module doc).
pub fn stems(text: &str, stem_chars: usize) -> impl Iterator<Item = String> + '_ {
    words(text).map(move |w| w.take(stem_chars).collect())
}

/// The character n-grams of `text`'s words padded with a space on both sides, lengths
/// `lo..=hi`, word by word. A padded word no longer than `n` is one n-gram, and longer
/// lengths are not tried on it.
pub fn char_ngrams(text: &str, lo: usize, hi: usize) -> Vec<String> {
    let mut out = Vec::new();
    for word in words(text) {
        let padded: Vec<char> = std::iter::once(' ')
            .chain(word)
            .chain(std::iter::once(' '))
            .collect();
        for n in lo..=hi {
            if padded.len() <= n {
                out.push(padded.iter().collect());
                break;
            }
            out.extend(padded.windows(n).map(|w| w.iter().collect::<String>()));
        }
    }
    out
}

/// Feature counts of a product's reviews in one view.
pub fn counts(reviews: &[String], view: View) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let mut add = |s: String| *out.entry(s).or_insert(0) += 1;
    for review in reviews {
        match view {
            View::Stems(chars) => stems(review, chars).for_each(&mut add),
            View::CharNgrams(lo, hi) => char_ngrams(review, lo, hi).into_iter().for_each(&mut add),
        }
    }
    out
}

/// A sparse row: `(feature, value)` sorted by feature.
pub type SparseRow = Vec<(usize, f64)>;

/// One view's first stage: its vocabulary and idf, and one regression per tag.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstStage {
    /// The features, sorted; feature `i` is `vocabulary[i]`.
    pub vocabulary: Vec<String>,
    /// Inverse document frequency per feature.
    pub idf: Vec<f32>,
    /// Weights `[tag][feature]`.
    pub weights: Vec<Vec<f32>>,
    /// Intercept per tag.
    pub bias: Vec<f32>,
    index: HashMap<String, usize>,
}

impl FirstStage {
    /// A first stage of these parts (its feature index is built here).
    pub fn new(
        vocabulary: Vec<String>,
        idf: Vec<f32>,
        weights: Vec<Vec<f32>>,
        bias: Vec<f32>,
    ) -> Self {
        let index = vocabulary
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        Self {
            vocabulary,
            idf,
            weights,
            bias,
            index,
        }
    }

    /// The TF-IDF row of a feature bag (unknown features dropped).
    pub fn vectorise(&self, bag: &HashMap<String, u32>) -> SparseRow {
        let mut row: SparseRow = bag
            .iter()
            .filter_map(|(s, &c)| {
                let i = *self.index.get(s)?;
                Some((i, (1.0 + f64::from(c).ln()) * f64::from(self.idf[i])))
            })
            .collect();
        row.sort_unstable_by_key(|&(i, _)| i);
        let norm = row.iter().map(|&(_, v)| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        row
    }

    /// The logit per tag for a feature bag.
    pub fn logits(&self, bag: &HashMap<String, u32>) -> Vec<f64> {
        let row = self.vectorise(bag);
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, &b)| affine(&row, w, b))
            .collect()
    }
}

/// A fitted lexical branch.
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalModel {
    /// Its settings (the fusion weight among them).
    pub settings: LexicalSettings,
    /// The tags, in pool order.
    pub tags: Vec<String>,
    /// The first stage of each view: stems, then character n-grams when on.
    pub first: Vec<FirstStage>,
    /// The frozen view, when the settings ask for it (its logits follow the first
    /// stages' in the second stage's input).
    pub frozen: Option<FrozenView>,
    /// The second stage, when the settings ask for one.
    pub second: Option<SecondStage>,
}

/// The second stage: per tag, a logistic regression over every view's first-stage logits.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondStage {
    /// Weights `[tag][view · T + first-stage tag]` (views: stems, n-grams, frozen).
    pub weights: Vec<Vec<f32>>,
    /// Intercept per tag.
    pub bias: Vec<f32>,
}

/// First-stage logits are clipped to `±LOGIT_CLIP` (probabilities 1e-4 … 1 − 1e-4) before
/// the second stage reads them.
pub const LOGIT_CLIP: f64 = 9.21024;

impl LexicalModel {
    /// Features in all views' vocabularies (the frozen view's width included).
    pub fn n_features(&self) -> usize {
        self.first.iter().map(|s| s.vocabulary.len()).sum::<usize>()
            + self.frozen.as_ref().map_or(0, FrozenView::dim)
    }

    /// Views the second stage reads: the first stages and the frozen view.
    pub fn n_views(&self) -> usize {
        self.first.len() + usize::from(self.frozen.is_some())
    }

    /// Probabilities `[product][tag]` for review stacks (through the second stage when
    /// there is one); `vectors` are the products' frozen review vectors, needed when the
    /// branch has the frozen view.
    pub fn probabilities(
        &self,
        docs: &[&[String]],
        vectors: Option<&[ProductVectors]>,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let vectors = frozen_input(self.frozen.is_some(), vectors, docs.len())?;
        let views = self.settings.views();
        Ok(docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut logits: Vec<Vec<f64>> = self
                    .first
                    .iter()
                    .zip(&views)
                    .map(|(stage, &view)| stage.logits(&counts(d, view)))
                    .collect();
                if let (Some(view), Some(vectors)) = (&self.frozen, vectors) {
                    logits.push(view.logits(&vectors[i]));
                }
                match &self.second {
                    None => logits[0].iter().map(|&z| sigmoid(z) as f32).collect(),
                    Some(second) => {
                        let row = second_stage_row(&logits);
                        second
                            .weights
                            .iter()
                            .zip(&second.bias)
                            .map(|(w, &b)| sigmoid(affine(&row, w, b)) as f32)
                            .collect()
                    }
                }
            })
            .collect())
    }

    /// `(1 − weight) · encoder + weight · lexical`, element-wise.
    pub fn fuse(&self, encoder: &[Vec<f32>], lexical: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let w = self.settings.weight as f32;
        encoder
            .iter()
            .zip(lexical)
            .map(|(e, l)| {
                e.iter()
                    .zip(l)
                    .map(|(&e, &l)| (1.0 - w) * e + w * l)
                    .collect()
            })
            .collect()
    }

    /// Write `lexical.json` and `lexical.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), InferenceError> {
        std::fs::create_dir_all(dir).map_err(|source| InferenceError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = LexicalFile {
            format: LEXICAL_FORMAT.into(),
            settings: self.settings.clone(),
            tags: self.tags.clone(),
            vocabulary: self.first[0].vocabulary.clone(),
            char_vocabulary: self
                .first
                .get(1)
                .map(|s| s.vocabulary.clone())
                .unwrap_or_default(),
            frozen_dim: self.frozen.as_ref().map_or(0, FrozenView::dim),
        };
        let path = dir.join(LEXICAL_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&file).map_err(|source| InferenceError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| InferenceError::Io { path, source })?;
        let t = self.tags.len();
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (stage, view) in self.first.iter().zip(self.settings.views()) {
            let (f, prefix) = (stage.vocabulary.len(), view.prefix());
            let flat = stage.weights.iter().flatten().copied().collect();
            tensors.push((format!("{prefix}idf"), vec![f], stage.idf.clone()));
            tensors.push((format!("{prefix}weight"), vec![t, f], flat));
            tensors.push((format!("{prefix}bias"), vec![t], stage.bias.clone()));
        }
        if let Some(frozen) = &self.frozen {
            let h = frozen.dim();
            let flat = frozen.weights.iter().flatten().copied().collect();
            tensors.push(("frozen_mean".into(), vec![h], frozen.mean.clone()));
            tensors.push(("frozen_std".into(), vec![h], frozen.std.clone()));
            tensors.push(("frozen_weight".into(), vec![t, h], flat));
            tensors.push(("frozen_bias".into(), vec![t], frozen.bias.clone()));
        }
        if let Some(second) = &self.second {
            let flat = second.weights.iter().flatten().copied().collect();
            let width = self.n_views() * t;
            tensors.push(("second_weight".into(), vec![t, width], flat));
            tensors.push(("second_bias".into(), vec![t], second.bias.clone()));
        }
        lamoda_model::hf::write_safetensors(
            &dir.join(LEXICAL_WEIGHTS_FILE),
            tensors
                .iter()
                .map(|(name, shape, data)| (name.as_str(), shape.as_slice(), data.as_slice())),
            BTreeMap::from([("format".to_string(), LEXICAL_FORMAT.to_string())]),
        )?;
        Ok(())
    }

    /// Whether `dir` holds a lexical branch.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(LEXICAL_CONFIG_FILE).is_file()
    }

    /// Read the branch [`LexicalModel::save`] wrote into `dir`.
    pub fn load(dir: &Path) -> Result<Self, InferenceError> {
        let path = dir.join(LEXICAL_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| InferenceError::Io {
            path: path.clone(),
            source,
        })?;
        let file: LexicalFile =
            serde_json::from_str(&text).map_err(|source| InferenceError::Json {
                path: path.clone(),
                source,
            })?;
        let bad = |path: &Path, reason: String| InferenceError::Format {
            path: path.to_path_buf(),
            reason,
        };
        if file.format != LEXICAL_FORMAT {
            return Err(bad(
                &path,
                format!(
                    "format {:?}, expected {LEXICAL_FORMAT:?} (refit it with `lamoda-tags train \
                     --keep-encoder`)",
                    file.format
                ),
            ));
        }
        file.settings.validate(&path)?;
        let weights_path = dir.join(LEXICAL_WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(|source| InferenceError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(&weights_path, e.to_string()))?;
        let t = file.tags.len();
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, InferenceError> {
            let view = st
                .tensor(name)
                .map_err(|e| bad(&weights_path, format!("tensor `{name}`: {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
                return Err(bad(
                    &weights_path,
                    format!(
                        "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                        view.dtype(),
                        view.shape()
                    ),
                ));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let rows_of = |flat: Vec<f32>, width: usize| -> Vec<Vec<f32>> {
            if width == 0 {
                vec![Vec::new(); t]
            } else {
                flat.chunks_exact(width).map(<[f32]>::to_vec).collect()
            }
        };
        let views = file.settings.views();
        if views.len() == 1 && !file.char_vocabulary.is_empty() {
            return Err(bad(
                &path,
                "a character n-gram vocabulary, but `char_ngrams` is empty".into(),
            ));
        }
        let mut vocabularies = [file.vocabulary, file.char_vocabulary].into_iter();
        let mut first = Vec::new();
        for view in &views {
            let vocabulary = vocabularies.next().unwrap_or_default();
            let (f, prefix) = (vocabulary.len(), view.prefix());
            let idf = read(&format!("{prefix}idf"), &[f])?;
            let weights = rows_of(read(&format!("{prefix}weight"), &[t, f])?, f);
            let bias = read(&format!("{prefix}bias"), &[t])?;
            first.push(FirstStage::new(vocabulary, idf, weights, bias));
        }
        let frozen = match (file.settings.frozen_view, file.frozen_dim) {
            (false, 0) => None,
            (true, h) if h > 0 => Some(FrozenView {
                mean: read("frozen_mean", &[h])?,
                std: read("frozen_std", &[h])?,
                weights: rows_of(read("frozen_weight", &[t, h])?, h),
                bias: read("frozen_bias", &[t])?,
            }),
            (on, h) => {
                return Err(bad(
                    &path,
                    format!("`frozen_view` = {on} but the frozen view's width is {h}"),
                ));
            }
        };
        let mut model = Self {
            settings: file.settings,
            tags: file.tags,
            first,
            frozen,
            second: None,
        };
        if model.settings.second_stage {
            let width = model.n_views() * t;
            model.second = Some(SecondStage {
                weights: rows_of(read("second_weight", &[t, width])?, width),
                bias: read("second_bias", &[t])?,
            });
        }
        Ok(model)
    }

    /// Remove a branch's files from `dir` (none there is fine).
    pub fn remove_from(dir: &Path) -> Result<(), InferenceError> {
        for name in [LEXICAL_CONFIG_FILE, LEXICAL_WEIGHTS_FILE] {
            let path: PathBuf = dir.join(name);
            if path.is_file() {
                std::fs::remove_file(&path)
                    .map_err(|source| InferenceError::Io { path, source })?;
            }
        }
        Ok(())
    }
}

/// The frozen review vectors of `n` products when `wanted`, checked: present, one entry
/// per product.
pub fn frozen_input(
    wanted: bool,
    vectors: Option<&[ProductVectors]>,
    n: usize,
) -> Result<Option<&[ProductVectors]>, InferenceError> {
    if !wanted {
        return Ok(None);
    }
    let bad = |reason: String| InferenceError::Format {
        path: PathBuf::from("<frozen view>"),
        reason,
    };
    match vectors {
        None => Err(bad(
            "the frozen view needs the products' review vectors from the base encoder".into(),
        )),
        Some(v) if v.len() != n => Err(bad(format!(
            "review vectors of {} products for {n} products",
            v.len()
        ))),
        Some(v) => Ok(Some(v)),
    }
}

/// The logistic function, without overflow for large negative `z`.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `b + x·w` for a sparse row and `f32` weights.
pub fn affine(row: &SparseRow, w: &[f32], b: f32) -> f64 {
    f64::from(b) + row.iter().map(|&(i, v)| f64::from(w[i]) * v).sum::<f64>()
}

/// The second stage's (dense) input: every view's first-stage logits, view after view,
/// clipped to `±LOGIT_CLIP`.
pub fn second_stage_row(logits: &[Vec<f64>]) -> SparseRow {
    logits
        .iter()
        .flatten()
        .map(|z| z.clamp(-LOGIT_CLIP, LOGIT_CLIP))
        .enumerate()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_fold_case_yo_and_endings() {
        let s: Vec<String> = stems("Удобные, ЁЛКИ-палки: удобная 42!", 5).collect();
        assert_eq!(s, ["удобн", "елки", "палки", "удобн", "42"]);
    }

    #[test]
    fn char_ngrams_pad_words_and_stop_at_short_ones() {
        // " еж " has 4 characters: its 3-grams, then itself once as the 4-gram.
        assert_eq!(
            char_ngrams("Ёж, бег", 3, 4),
            [" еж", "еж ", " еж ", " бе", "бег", "ег ", " бег", "бег "]
        );
        // A padded word shorter than the smallest length is one n-gram.
        assert_eq!(char_ngrams("я", 4, 5), [" я "]);
    }

    #[test]
    fn char_ngram_settings_are_checked() {
        let path = Path::new("configs/bags.toml");
        let check = |char_ngrams: Vec<usize>, second_stage: bool| {
            LexicalSettings {
                char_ngrams,
                second_stage,
                ..LexicalSettings::default()
            }
            .validate(path)
        };
        assert!(check(vec![3, 4], true).is_ok());
        assert!(check(vec![], false).is_ok());
        assert_eq!(
            check(vec![4, 3], true).expect_err("4 > 3").to_string(),
            "configs/bags.toml: `lexical.char_ngrams` = [4, 3]: must be empty or [min, max] \
             with 1 ≤ min ≤ max ≤ 8"
        );
        assert!(check(vec![3], true).is_err());
        assert!(
            check(vec![3, 4], false)
                .expect_err("needs the second stage")
                .to_string()
                .contains("needs `second_stage = true`")
        );
    }
}
