//! The lexical branch of an adapter: bags of word stems and character n-grams → logistic
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
//! penalised), solved by Newton's method with conjugate-gradient steps, so the fit is
//! exact and deterministic.
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
//! of the untouched base encoder's review vectors ([`crate::frozen_view`]), so the
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

use crate::frozen_view::{FrozenFit, FrozenView, ProductVectors};
use crate::train::TrainError;

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
    pub fn validate(&self, path: &Path) -> Result<(), TrainError> {
        let bad = |field: &'static str, value: String, reason: &str| TrainError::Config {
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
    fn views(&self) -> Vec<View> {
        let mut views = vec![View::Stems(self.stem_chars)];
        if let [lo, hi] = self.char_ngrams[..] {
            views.push(View::CharNgrams(lo, hi));
        }
        views
    }

    /// The document frequency a feature of `view` needs.
    fn min_df_of(&self, view: View) -> usize {
        match view {
            View::Stems(_) => self.min_df,
            View::CharNgrams(..) => self.char_min_df,
        }
    }

    /// How the frozen view is fitted.
    fn frozen_fit(&self) -> FrozenFit {
        FrozenFit {
            iterations: self.frozen_iterations,
            lr: self.frozen_lr,
            weight_decay: self.frozen_weight_decay,
        }
    }
}

/// `lexical.json`: everything of a [`LexicalModel`] but its numbers.
pub const LEXICAL_CONFIG_FILE: &str = "lexical.json";
/// `lexical.safetensors`: idf, weights and biases of a [`LexicalModel`].
pub const LEXICAL_WEIGHTS_FILE: &str = "lexical.safetensors";
const LEXICAL_FORMAT: &str = "lamoda-lexical/2";

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
enum View {
    /// Words cut to this many characters.
    Stems(usize),
    /// Character n-grams of space-padded words, of these lengths (inclusive).
    CharNgrams(usize, usize),
}

impl View {
    /// Its tensors' name prefix in `lexical.safetensors`.
    fn prefix(self) -> &'static str {
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
fn counts(reviews: &[String], view: View) -> HashMap<String, u32> {
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
type SparseRow = Vec<(usize, f64)>;

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
    /// Fit on the products `rows` of `bags` (one view's counts) and `targets`.
    fn fit(
        bags: &[HashMap<String, u32>],
        targets: &[Vec<f32>],
        rows: &[usize],
        n_tags: usize,
        min_df: usize,
        settings: &LexicalSettings,
    ) -> Self {
        let mut df: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in rows {
            for feature in bags[i].keys() {
                *df.entry(feature.as_str()).or_insert(0) += 1;
            }
        }
        let n = rows.len() as f64;
        let (vocabulary, idf): (Vec<String>, Vec<f32>) = df
            .into_iter()
            .filter(|&(_, d)| d >= min_df)
            .map(|(s, d)| {
                (
                    s.to_string(),
                    ((1.0 + n) / (1.0 + d as f64)).ln() as f32 + 1.0,
                )
            })
            .unzip();
        let mut stage = Self::new(vocabulary, idf, Vec::new(), Vec::new());
        let x: Vec<SparseRow> = rows.iter().map(|&i| stage.vectorise(&bags[i])).collect();
        (stage.weights, stage.bias) = fit_tags(
            &x,
            targets,
            rows,
            n_tags,
            stage.vocabulary.len(),
            settings.c,
            settings.max_iterations,
        );
        stage
    }

    fn new(vocabulary: Vec<String>, idf: Vec<f32>, weights: Vec<Vec<f32>>, bias: Vec<f32>) -> Self {
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
    fn vectorise(&self, bag: &HashMap<String, u32>) -> SparseRow {
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
    fn logits(&self, bag: &HashMap<String, u32>) -> Vec<f64> {
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
const LOGIT_CLIP: f64 = 9.21024;

impl LexicalModel {
    /// Fit on training products (`docs[i]` its reviews, `vectors[i]` their frozen review
    /// vectors when the frozen view is on, `targets[i]` its 0/1 tags in `tags` order): each
    /// view's first stage on all of them, then (when the settings ask) the second stage on
    /// their out-of-fold first-stage logits.
    pub fn fit(
        settings: &LexicalSettings,
        tags: &[String],
        docs: &[&[String]],
        vectors: Option<&[ProductVectors]>,
        targets: &[Vec<f32>],
    ) -> Result<Self, TrainError> {
        settings.validate(Path::new("<lexical>"))?;
        let vectors = frozen_input(settings.frozen_view, vectors, docs.len())?;
        let folds = settings.folds.min(docs.len());
        if docs.len() != targets.len() || docs.is_empty() || (settings.second_stage && folds < 2) {
            return Err(TrainError::Lexical {
                path: PathBuf::from("<training rows>"),
                reason: format!(
                    "cannot fit on {} products with {} target rows{}",
                    docs.len(),
                    targets.len(),
                    if settings.second_stage {
                        " (the second stage needs at least 2 products)"
                    } else {
                        ""
                    }
                ),
            });
        }
        let views = settings.views();
        let bags: Vec<Vec<HashMap<String, u32>>> = views
            .iter()
            .map(|&view| docs.iter().map(|d| counts(d, view)).collect())
            .collect();
        let fit_views = |rows: &[usize]| -> Vec<FirstStage> {
            views
                .iter()
                .zip(&bags)
                .map(|(&view, bags)| {
                    FirstStage::fit(
                        bags,
                        targets,
                        rows,
                        tags.len(),
                        settings.min_df_of(view),
                        settings,
                    )
                })
                .collect()
        };
        let fit_frozen = |rows: &[usize]| -> Result<Option<FrozenView>, TrainError> {
            vectors
                .map(|v| FrozenView::fit(v, targets, rows, tags.len(), &settings.frozen_fit()))
                .transpose()
        };
        let all: Vec<usize> = (0..docs.len()).collect();
        let mut model = Self {
            settings: settings.clone(),
            tags: tags.to_vec(),
            first: fit_views(&all),
            frozen: fit_frozen(&all)?,
            second: None,
        };
        if settings.second_stage {
            let mut rows = vec![SparseRow::new(); docs.len()];
            for k in 0..folds {
                let (held, kept): (Vec<usize>, Vec<usize>) =
                    all.iter().partition(|&&i| i % folds == k);
                let stages = fit_views(&kept);
                let frozen = fit_frozen(&kept)?;
                for i in held {
                    let mut logits: Vec<Vec<f64>> = stages
                        .iter()
                        .zip(&bags)
                        .map(|(stage, bags)| stage.logits(&bags[i]))
                        .collect();
                    if let (Some(view), Some(vectors)) = (&frozen, vectors) {
                        logits.push(view.logits(&vectors[i]));
                    }
                    rows[i] = second_stage_row(&logits);
                }
            }
            let (weights, bias) = fit_tags(
                &rows,
                targets,
                &all,
                tags.len(),
                model.n_views() * tags.len(),
                settings.second_stage_c,
                settings.max_iterations,
            );
            model.second = Some(SecondStage { weights, bias });
        }
        Ok(model)
    }

    /// Features in all views' vocabularies (the frozen view's width included).
    pub fn n_features(&self) -> usize {
        self.first.iter().map(|s| s.vocabulary.len()).sum::<usize>()
            + self.frozen.as_ref().map_or(0, FrozenView::dim)
    }

    /// Views the second stage reads: the first stages and the frozen view.
    fn n_views(&self) -> usize {
        self.first.len() + usize::from(self.frozen.is_some())
    }

    /// Probabilities `[product][tag]` for review stacks (through the second stage when
    /// there is one); `vectors` are the products' frozen review vectors, needed when the
    /// branch has the frozen view.
    pub fn probabilities(
        &self,
        docs: &[&[String]],
        vectors: Option<&[ProductVectors]>,
    ) -> Result<Vec<Vec<f32>>, TrainError> {
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
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
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
        let text = serde_json::to_string_pretty(&file).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| TrainError::Io { path, source })?;
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
    pub fn load(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(LEXICAL_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let file: LexicalFile = serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
        let bad = |path: &Path, reason: String| TrainError::Lexical {
            path: path.to_path_buf(),
            reason,
        };
        if file.format != LEXICAL_FORMAT {
            return Err(bad(
                &path,
                format!(
                    "format {:?}, expected {LEXICAL_FORMAT:?} (refit it with `cargo xtask train \
                     --keep-encoder`)",
                    file.format
                ),
            ));
        }
        file.settings.validate(&path)?;
        let weights_path = dir.join(LEXICAL_WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(|source| TrainError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(&weights_path, e.to_string()))?;
        let t = file.tags.len();
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, TrainError> {
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
    pub fn remove_from(dir: &Path) -> Result<(), TrainError> {
        for name in [LEXICAL_CONFIG_FILE, LEXICAL_WEIGHTS_FILE] {
            let path: PathBuf = dir.join(name);
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|source| TrainError::Io { path, source })?;
            }
        }
        Ok(())
    }
}

/// The frozen review vectors of `n` products when `wanted`, checked: present, one entry
/// per product.
fn frozen_input(
    wanted: bool,
    vectors: Option<&[ProductVectors]>,
    n: usize,
) -> Result<Option<&[ProductVectors]>, TrainError> {
    if !wanted {
        return Ok(None);
    }
    let bad = |reason: String| TrainError::Lexical {
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

/// The logit of a frequency `f`, clamped into `[eps, 1 − eps]` first so that a tag seen
/// always or never gets a finite intercept.
pub(crate) fn frequency_logit(f: f64, eps: f64) -> f64 {
    let p = f.clamp(eps, 1.0 - eps);
    (p / (1.0 - p)).ln()
}

/// The logistic function, without overflow for large negative `z`.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// `b + x·w` for a sparse row and `f32` weights.
fn affine(row: &SparseRow, w: &[f32], b: f32) -> f64 {
    f64::from(b) + row.iter().map(|&(i, v)| f64::from(w[i]) * v).sum::<f64>()
}

/// One regression per tag on `x` (the rows of the products `rows`, in that order), as
/// `f32` weights `[tag][feature]` and intercepts.
fn fit_tags(
    x: &[SparseRow],
    targets: &[Vec<f32>],
    rows: &[usize],
    n_tags: usize,
    n_features: usize,
    c: f64,
    max_iterations: usize,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    (0..n_tags)
        .map(|t| {
            let y = column(targets, t, rows);
            let (w, b) = fit_logistic(x, &y, n_features, c, max_iterations);
            (w.into_iter().map(|v| v as f32).collect(), b as f32)
        })
        .unzip()
}

/// Tag `t`'s 0/1 targets of the products `rows`.
fn column(targets: &[Vec<f32>], t: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .map(|&i| f64::from(targets[i].get(t).copied().unwrap_or(0.0)))
        .collect()
}

/// The second stage's (dense) input: every view's first-stage logits, view after view,
/// clipped to `±LOGIT_CLIP`.
fn second_stage_row(logits: &[Vec<f64>]) -> SparseRow {
    logits
        .iter()
        .flatten()
        .map(|z| z.clamp(-LOGIT_CLIP, LOGIT_CLIP))
        .enumerate()
        .collect()
}

/// Each row's margin `z = b + x·w`.
fn margins(rows: &[SparseRow], w: &[f64], b: f64) -> Vec<f64> {
    rows.iter().map(|row| b + dot(row, w)).collect()
}

/// The regularised objective `C · Σ log-loss + ½‖w‖²` at weights `w` with margins `z`.
fn objective(z: &[f64], y: &[f64], c: f64, w: &[f64]) -> f64 {
    // −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y·z
    let loss: f64 = z.iter().zip(y).map(|(&z, &y)| softplus(z) - y * z).sum();
    c * loss + 0.5 * w.iter().map(|v| v * v).sum::<f64>()
}

fn dot(row: &SparseRow, w: &[f64]) -> f64 {
    row.iter().map(|&(i, v)| w[i] * v).sum()
}

/// Gradient of [`objective`]: `(w + C·Xᵀr, C·Σr)` with `r = σ(z) − y`.
fn gradient_at(rows: &[SparseRow], z: &[f64], y: &[f64], c: f64, w: &[f64]) -> (Vec<f64>, f64) {
    let mut g = w.to_vec();
    let mut gb = 0.0;
    for ((row, &z), &y) in rows.iter().zip(z).zip(y) {
        let r = c * (sigmoid(z) - y);
        gb += r;
        for &(i, v) in row {
            g[i] += r * v;
        }
    }
    (g, gb)
}

/// [`gradient_at`] the margins of `(w, b)`.
#[cfg(test)]
fn gradient(rows: &[SparseRow], y: &[f64], c: f64, w: &[f64], b: f64) -> (Vec<f64>, f64) {
    gradient_at(rows, &margins(rows, w, b), y, c, w)
}

/// One tag's logistic regression by Newton–CG with a backtracking line search.
fn fit_logistic(
    rows: &[SparseRow],
    y: &[f64],
    n_features: usize,
    c: f64,
    max_iterations: usize,
) -> (Vec<f64>, f64) {
    let mut w = vec![0.0; n_features];
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let mut b = frequency_logit(mean, 1e-4);
    if mean <= 0.0 || mean >= 1.0 {
        // A tag always (or never) present: nothing to learn beyond the intercept.
        return (w, b);
    }
    let norm = |g: &[f64], gb: f64| (g.iter().map(|v| v * v).sum::<f64>() + gb * gb).sqrt();
    // Margins and objective of the current point, carried over from the line search.
    let mut z = margins(rows, &w, b);
    let mut f = objective(&z, y, c, &w);
    let mut tolerance = None;
    for _ in 0..max_iterations {
        let (g, gb) = gradient_at(rows, &z, y, c, &w);
        let g_norm = norm(&g, gb);
        // Converged once the gradient is 1e-5 of the starting one.
        if g_norm <= *tolerance.get_or_insert(1e-5 * g_norm.max(1.0)) {
            break;
        }
        // Curvature weights C·σ(1 − σ) at the current point.
        let d: Vec<f64> = z
            .iter()
            .map(|&z| {
                let s = sigmoid(z);
                c * s * (1.0 - s)
            })
            .collect();
        let hess = |v: &[f64], vb: f64| -> (Vec<f64>, f64) {
            let mut out = v.to_vec();
            let mut out_b = 0.0;
            for (row, &d) in rows.iter().zip(&d) {
                let u = d * (vb + dot(row, v));
                out_b += u;
                for &(i, x) in row {
                    out[i] += u * x;
                }
            }
            (out, out_b)
        };
        // Conjugate gradient on H s = −g, to a relative residual of 0.1.
        let (mut s, mut sb) = (vec![0.0; n_features], 0.0);
        let (mut r, mut rb): (Vec<f64>, f64) = (g.iter().map(|v| -v).collect(), -gb);
        let (mut p, mut pb) = (r.clone(), rb);
        let mut rr = norm(&r, rb).powi(2);
        for _ in 0..100 {
            if rr.sqrt() <= 0.1 * g_norm {
                break;
            }
            let (hp, hpb) = hess(&p, pb);
            let php = p.iter().zip(&hp).map(|(a, b)| a * b).sum::<f64>() + pb * hpb;
            if php <= 0.0 {
                break;
            }
            let alpha = rr / php;
            s.iter_mut().zip(&p).for_each(|(s, p)| *s += alpha * p);
            sb += alpha * pb;
            r.iter_mut().zip(&hp).for_each(|(r, h)| *r -= alpha * h);
            rb -= alpha * hpb;
            let rr_new = norm(&r, rb).powi(2);
            let beta = rr_new / rr;
            p.iter_mut().zip(&r).for_each(|(p, r)| *p = r + beta * *p);
            pb = rb + beta * pb;
            rr = rr_new;
        }
        // Backtracking (Armijo) along s.
        let slope = g.iter().zip(&s).map(|(g, s)| g * s).sum::<f64>() + gb * sb;
        let mut step = 1.0;
        let mut moved = false;
        for _ in 0..30 {
            let w_new: Vec<f64> = w.iter().zip(&s).map(|(w, s)| w + step * s).collect();
            let b_new = b + step * sb;
            let z_new = margins(rows, &w_new, b_new);
            let f_new = objective(&z_new, y, c, &w_new);
            if f_new <= f + 1e-4 * step * slope {
                (w, b, z, f) = (w_new, b_new, z_new, f_new);
                moved = true;
                break;
            }
            step *= 0.5;
        }
        if !moved {
            break;
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(texts: &[&str]) -> Vec<Vec<String>> {
        texts.iter().map(|t| vec![t.to_string()]).collect()
    }

    #[test]
    fn frequency_logit_inverts_the_sigmoid_and_clamps_the_ends() {
        assert_eq!(frequency_logit(0.5, 1e-3), 0.0);
        // ln(0.2 / 0.8) = −ln 4.
        assert!((frequency_logit(0.2, 1e-3) + 4f64.ln()).abs() < 1e-12);
        for f in [0.01, 0.3, 0.9] {
            assert!((sigmoid(frequency_logit(f, 1e-4)) - f).abs() < 1e-12);
        }
        // A tag never or always seen gets ±ln((1 − ε) / ε), not an infinity.
        let end = (0.999f64 / 0.001).ln();
        assert!((frequency_logit(0.0, 1e-3) + end).abs() < 1e-9);
        assert!((frequency_logit(1.0, 1e-3) - end).abs() < 1e-9);
    }

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

    #[test]
    fn fit_reaches_the_optimum_and_separates_the_words() {
        let texts = docs(&[
            "просторная сумка",
            "сумка просторная и легкая",
            "маленькая сумка",
            "легкая маленькая",
            "просторная вместительная",
            "очень маленькая но легкая",
        ]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets = vec![
            vec![1.0, 0.0],
            vec![1.0, 1.0],
            vec![0.0, 0.0],
            vec![0.0, 1.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
        ];
        let settings = LexicalSettings {
            min_df: 1,
            c: 4.0,
            second_stage: false,
            ..LexicalSettings::default()
        };
        let tags = vec!["Вместительная".to_string(), "Легкая".to_string()];
        let model = LexicalModel::fit(&settings, &tags, &stacks, None, &targets).expect("fit");
        // First-order optimality of every tag's objective.
        let bags: Vec<_> = stacks.iter().map(|d| counts(d, View::Stems(5))).collect();
        let stage = &model.first[0];
        let rows: Vec<SparseRow> = bags.iter().map(|b| stage.vectorise(b)).collect();
        for t in 0..tags.len() {
            let y: Vec<f64> = targets.iter().map(|r| f64::from(r[t])).collect();
            let w: Vec<f64> = stage.weights[t].iter().map(|&v| f64::from(v)).collect();
            let (g, gb) = gradient(&rows, &y, 4.0, &w, f64::from(stage.bias[t]));
            let g_norm = (g.iter().map(|v| v * v).sum::<f64>() + gb * gb).sqrt();
            assert!(g_norm < 1e-3, "tag {t}: gradient norm {g_norm}");
        }
        let probe = docs(&["просторный рюкзак", "легкая ноша"]);
        let probe: Vec<&[String]> = probe.iter().map(Vec::as_slice).collect();
        let p = model.probabilities(&probe, None).expect("probabilities");
        assert!(p[0][0] > 0.5 && p[0][1] < 0.5, "{p:?}");
        assert!(p[1][1] > 0.5 && p[1][0] < 0.5, "{p:?}");
    }

    #[test]
    fn the_second_stage_is_optimal_on_out_of_fold_logits_and_round_trips() {
        let words = ["легкая", "просторная", "маленькая", "прочная", "мягкая"];
        // 30 products of two or three words; tag t is on a product that names word t
        // (tag 2 never: "маленькая" is the opposite of "Вместительная").
        let texts: Vec<Vec<String>> = (0..30)
            .map(|i| {
                let picked = [i % 5, (i * 3 + 1) % 5, (i * 7 + 2) % 5];
                let n = 2 + i % 2;
                vec![
                    picked[..n]
                        .iter()
                        .map(|&w| words[w])
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect();
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| {
                (0..3)
                    .map(|k| {
                        let named = t[0].contains(words[k]);
                        // The label misses every fourth mention: noisy, as the real ones.
                        f32::from(u8::from(named && t[0].len() % 4 != 0 && k != 2))
                    })
                    .collect()
            })
            .collect();
        let tags: Vec<String> = ["Легкая", "Вместительная", "Маленькая"]
            .map(String::from)
            .to_vec();
        let settings = LexicalSettings {
            min_df: 1,
            char_ngrams: vec![3, 4],
            char_min_df: 2,
            folds: 3,
            ..LexicalSettings::default()
        };
        let model = LexicalModel::fit(&settings, &tags, &stacks, None, &targets).expect("fit");
        let second = model.second.as_ref().expect("second stage");
        // The out-of-fold logits, rebuilt here: product i is scored by a first stage
        // fitted on the other folds.
        let views = [View::Stems(5), View::CharNgrams(3, 4)];
        let bags: Vec<Vec<_>> = views
            .iter()
            .map(|&v| stacks.iter().map(|d| counts(d, v)).collect())
            .collect();
        let rows: Vec<SparseRow> = (0..stacks.len())
            .map(|i| {
                let kept: Vec<usize> = (0..stacks.len()).filter(|j| j % 3 != i % 3).collect();
                let logits: Vec<Vec<f64>> = views
                    .iter()
                    .zip(&bags)
                    .map(|(&v, bags)| {
                        let min_df = settings.min_df_of(v);
                        FirstStage::fit(bags, &targets, &kept, 3, min_df, &settings)
                            .logits(&bags[i])
                    })
                    .collect();
                second_stage_row(&logits)
            })
            .collect();
        assert_eq!(rows[0].len(), 6, "two views of three tags");
        // Tag 2 is never on: it keeps only its intercept (see `a_tag_never_seen_…`).
        for t in 0..2 {
            let y: Vec<f64> = targets.iter().map(|r| f64::from(r[t])).collect();
            let w: Vec<f64> = second.weights[t].iter().map(|&v| f64::from(v)).collect();
            let (g, gb) = gradient(&rows, &y, 0.3, &w, f64::from(second.bias[t]));
            let g_norm = (g.iter().map(|v| v * v).sum::<f64>() + gb * gb).sqrt();
            assert!(g_norm < 1e-3, "tag {t}: gradient norm {g_norm}");
        }
        // It changes the probabilities, and save → load keeps them exactly.
        let p = model.probabilities(&stacks, None).expect("probabilities");
        let first_only = LexicalModel {
            second: None,
            ..model.clone()
        };
        assert_ne!(
            first_only
                .probabilities(&stacks, None)
                .expect("probabilities"),
            p
        );
        assert!(p[0][0] > p[2][0], "{p:?}");
        assert!(p.iter().all(|row| row[2] < 1e-3), "{p:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(
            loaded.probabilities(&stacks, None).expect("probabilities"),
            p
        );
        // A branch written by the previous format asks to be refitted.
        let config = dir.path().join(LEXICAL_CONFIG_FILE);
        let text = std::fs::read_to_string(&config).expect("read");
        std::fs::write(&config, text.replace(LEXICAL_FORMAT, "lamoda-lexical/1")).expect("write");
        let err = LexicalModel::load(dir.path()).expect_err("old format");
        assert!(err.to_string().contains("--keep-encoder"), "{err}");
        // One product cannot be split into folds.
        let err = LexicalModel::fit(&settings, &tags, &stacks[..1], None, &targets[..1])
            .expect_err("one product");
        assert!(err.to_string().contains("at least 2 products"), "{err}");
    }

    #[test]
    fn a_tag_never_seen_keeps_a_tiny_probability_and_save_load_is_identity() {
        let texts = docs(&["мягкая", "мягкая кожа", "жесткая"]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let targets = vec![vec![1.0, 0.0], vec![1.0, 0.0], vec![0.0, 0.0]];
        let tags = vec!["Мягкая".to_string(), "Редкий".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            ..LexicalSettings::default()
        };
        let model = LexicalModel::fit(&settings, &tags, &stacks, None, &targets).expect("fit");
        let p = model.probabilities(&stacks, None).expect("probabilities");
        assert!(p.iter().all(|row| row[1] < 1e-3), "{p:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        assert!(LexicalModel::exists_in(dir.path()));
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(
            loaded.probabilities(&stacks, None).expect("probabilities"),
            p
        );
        LexicalModel::remove_from(dir.path()).expect("remove");
        assert!(!LexicalModel::exists_in(dir.path()));
    }

    #[test]
    fn fuse_mixes_by_the_weight_and_bad_settings_are_named() {
        let model = LexicalModel {
            settings: LexicalSettings {
                weight: 0.25,
                ..LexicalSettings::default()
            },
            tags: vec![],
            first: vec![],
            frozen: None,
            second: None,
        };
        let fused = model.fuse(&[vec![0.8, 0.0]], &[vec![0.4, 1.0]]);
        assert!((fused[0][0] - 0.7).abs() < 1e-6 && (fused[0][1] - 0.25).abs() < 1e-6);
        let err = LexicalSettings {
            weight: 1.5,
            ..LexicalSettings::default()
        }
        .validate(Path::new("configs/bags.toml"))
        .expect_err("weight 1.5");
        assert_eq!(
            err.to_string(),
            "configs/bags.toml: `lexical.weight` = 1.5: must be within [0, 1]"
        );
    }

    #[test]
    fn the_frozen_view_joins_the_second_stage_and_round_trips() {
        // Tag 0 is said by the words, tag 1 only by the review vectors' first dimension
        // (on every fourth product, so each of the 3 folds holds some).
        let n = 24;
        let texts: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let word = if i % 2 == 0 {
                    "мягкая"
                } else {
                    "жесткая"
                };
                vec![format!("{word} сумка"), "обычная".to_string()]
            })
            .collect();
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let vectors: Vec<ProductVectors> = (0..n)
            .map(|i| {
                let signal = if i % 4 == 0 { 1.5 } else { -1.5 };
                vec![vec![signal, (i % 5) as f32 * 0.1], vec![-1.0, 0.3]]
            })
            .collect();
        let targets: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                vec![
                    f32::from(u8::from(i % 2 == 0)),
                    f32::from(u8::from(i % 4 == 0)),
                ]
            })
            .collect();
        let tags = vec!["Мягкая".to_string(), "Скрытый".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            folds: 3,
            frozen_view: true,
            frozen_iterations: 100,
            frozen_lr: 0.05,
            ..LexicalSettings::default()
        };
        let err =
            LexicalModel::fit(&settings, &tags, &stacks, None, &targets).expect_err("no vectors");
        assert!(err.to_string().contains("review vectors"), "{err}");
        let err = LexicalModel::fit(&settings, &tags, &stacks, Some(&vectors[1..]), &targets)
            .expect_err("one product short");
        assert!(
            err.to_string()
                .contains("review vectors of 23 products for 24 products"),
            "{err}"
        );
        let model =
            LexicalModel::fit(&settings, &tags, &stacks, Some(&vectors), &targets).expect("fit");
        let second = model.second.as_ref().expect("second stage");
        assert_eq!(second.weights[0].len(), 4, "two views of two tags");
        assert_eq!(model.n_features(), model.first[0].vocabulary.len() + 2);
        let p = model
            .probabilities(&stacks, Some(&vectors))
            .expect("probabilities");
        for (row, t) in p.iter().zip(&targets) {
            assert_eq!(row[0] > 0.5, t[0] > 0.5, "{row:?} for {t:?}");
            assert_eq!(row[1] > 0.5, t[1] > 0.5, "{row:?} for {t:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = LexicalModel::load(dir.path()).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(loaded.probabilities(&stacks, Some(&vectors)).expect("p"), p);
        // The view needs the second stage.
        let err = LexicalSettings {
            second_stage: false,
            ..settings
        }
        .validate(Path::new("configs/bags.toml"))
        .expect_err("frozen view without the second stage");
        assert_eq!(
            err.to_string(),
            "configs/bags.toml: `lexical.frozen_view` = true: the frozen view needs \
             `second_stage = true`"
        );
    }

    #[test]
    fn a_corrupt_weights_file_names_the_file() {
        let texts = docs(&["мягкая", "жесткая"]);
        let stacks: Vec<&[String]> = texts.iter().map(Vec::as_slice).collect();
        let tags = vec!["Мягкая".to_string()];
        let settings = LexicalSettings {
            min_df: 1,
            ..LexicalSettings::default()
        };
        let model = LexicalModel::fit(&settings, &tags, &stacks, None, &[vec![1.0], vec![0.0]])
            .expect("fit");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        std::fs::write(dir.path().join(LEXICAL_WEIGHTS_FILE), b"not safetensors").expect("write");
        let err = LexicalModel::load(dir.path()).expect_err("corrupt");
        assert!(err.to_string().contains(LEXICAL_WEIGHTS_FILE), "{err}");
    }
}
