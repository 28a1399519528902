//! Per-category LoRA adapter training on CPU.
//!
//! A product is represented by its reviews, each tokenised on its own (cut to
//! `max_tokens_per_review`, at most `max_reviews_per_product` of them): every review runs
//! through the frozen lower layers **once** ([`FeatureCache`]), then, at each step, through
//! the LoRA-adapted top `trainable_layers` layers with gradients, is mean-pooled over its
//! tokens; the head turns those review vectors into a product's tag logits as `pooling`
//! says (the mean of the review vectors, or the log-mean-exp of per-review logits).
//! Reviews of a batch are sorted by length and run in chunks padded to the longest review
//! of the chunk, so short reviews cost little.
//!
//! [`train_category`] trains one category's adapter + head with AdamW (linear warm-up, then
//! linear decay), evaluates on dev after every epoch (micro-F1 at threshold 0.5 with the
//! pool's decoding, beside the frequency prior), keeps the best epoch's adapter in
//! `<out>/<category>/` with `metrics.json`, then [`finish_adapter`] fits the lexical branch
//! (when the config has `[lexical]`, see [`crate::lexical`]; its frozen view reads the
//! base's own review vectors, [`frozen_review_vectors`], from the same cache), averages it
//! with the encoder's probabilities and tunes the thresholds the config asks for on the
//! average.
//! [`load_trained`] + [`TrainedAdapter::probabilities`] serve any review stacks afterwards
//! ([`predict_probabilities`] for the encoder alone).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use lamoda_data::{DataError, DecodeConfig, EtalonPool, ReviewStack, SplitConfig, train_dev_split};
use lamoda_model::burn::module::{Module, Param};
use lamoda_model::burn::optim::{AdamWConfig, GradientsParams};
use lamoda_model::burn::tensor::activation::sigmoid;
use lamoda_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lamoda_model::tokenize::pad_batch;
use lamoda_model::{BaseInfo, Encoder, HeadSpec, LoadedBase, ModelError, TagModel, mean_pool};

use crate::evaluate::{evaluate_prior, evaluate_probabilities, gold_indices};
use crate::frozen_view::ProductVectors;
use crate::lexical::{LexicalModel, LexicalSettings};
use crate::metrics::Metrics;
use crate::moments::Moments;
use crate::prior::FrequencyPrior;
use crate::train_config::{Loss, Pooling, TrainConfig};

/// `k` of precision@k / recall@k in training reports.
pub const REPORT_K: usize = 3;
/// Dev figures of the best epoch, beside the prior, in the adapter directory.
pub const METRICS_FILE: &str = "metrics.json";
/// The training config an adapter was trained with (predicting reuses its text settings).
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";
/// Per-tag thresholds tuned on dev, when asked for.
pub const THRESHOLDS_FILE: &str = "thresholds.json";
/// Per-epoch checkpoint directory (inside the adapter directory) used by `resume`.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Progress of a run, inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_STATE_FILE: &str = "state.json";

/// Why training or prediction failed; every variant names the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training setting is out of range.
    #[error("{}: `{field}` = {value}: {reason}", path.display())]
    Config {
        /// The config file (or `<config>` when built in code).
        path: PathBuf,
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A training row carries a tag outside the category's pool.
    #[error("training row {row}: tag {tag:?} is not in the {category} pool")]
    UnknownTag {
        /// The row number in the labeled file.
        row: usize,
        /// The tag.
        tag: String,
        /// The category.
        category: String,
    },
    /// The split left nothing to train on or to evaluate.
    #[error(
        "{category}: the split gives {n_train} training and {n_dev} dev rows; both must be non-empty"
    )]
    EmptySplit {
        /// The category.
        category: String,
        /// Training rows.
        n_train: usize,
        /// Dev rows.
        n_dev: usize,
    },
    /// A product has no review to read.
    #[error("product {index}: no reviews")]
    NoReviews {
        /// Its index among the stacks given.
        index: usize,
    },
    /// The adapter directory's head does not fit the pool.
    #[error("{}: the adapter's tags do not match the {category} pool ({reason})", path.display())]
    WrongAdapter {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: String,
        /// What differs.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file could not be written or parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Reading a data or config file failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model crate failed (tokeniser, adapter files, LoRA settings).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A lexical branch's files are not what [`crate::lexical::LexicalModel::save`] writes.
    #[error("{}: {reason}", path.display())]
    Lexical {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor could not be read back.
    #[error("tensor: {detail}")]
    Tensor {
        /// What happened.
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(io_err(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Tensor {
            detail: format!("{e:?}"),
        })
}

/// Token ids of each product's reviews, as the model reads them.
pub fn tokenize_stacks(
    base_tokenizer: &lamoda_model::TextTokenizer,
    stacks: &[&[String]],
    config: &TrainConfig,
) -> Result<Vec<Vec<Vec<u32>>>, TrainError> {
    stacks
        .iter()
        .enumerate()
        .map(|(index, reviews)| {
            if reviews.is_empty() {
                return Err(TrainError::NoReviews { index });
            }
            reviews
                .iter()
                .take(config.max_reviews_per_product)
                .map(|r| {
                    let mut ids = base_tokenizer.encode(&format!("{}{r}", config.text_prefix))?;
                    // The configured cap, within what the encoder's positions allow.
                    let max = config
                        .max_tokens_per_review
                        .min(base_tokenizer.max_len())
                        .max(2);
                    if ids.len() > max {
                        let last = ids[ids.len() - 1];
                        ids.truncate(max - 1);
                        ids.push(last);
                    }
                    Ok(ids)
                })
                .collect()
        })
        .collect()
}

/// What [`train_category`] tells the user on stderr while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Nothing.
    #[default]
    Quiet,
    /// One line when the cache is built and one per epoch (for logs, or several
    /// categories trained at once).
    Lines,
    /// The lines, plus progress bars for the cache and each epoch (a terminal).
    Bars,
}

impl Progress {
    fn lines(self) -> bool {
        self != Progress::Quiet
    }
    fn bars(self) -> bool {
        self == Progress::Bars
    }
}

/// One review's hidden states after the frozen lower layers: `len × hidden` values.
#[derive(Debug, Clone)]
pub struct CachedReview {
    /// Tokens (rows of `values`).
    pub len: usize,
    /// Row-major `[len, hidden]`.
    pub values: Vec<f32>,
}

/// The frozen lower layers' output for every review of a set of products, kept in memory
/// as f32 (e5-small: 384 floats per token).
#[derive(Debug, Clone)]
pub struct FeatureCache {
    /// Hidden width.
    pub hidden: usize,
    /// Index of the first layer *not* cached (the first adapted one).
    pub first_layer: usize,
    /// Per product, its reviews.
    pub products: Vec<Vec<CachedReview>>,
}

/// Reviews per chunk when building the cache.
const CACHE_CHUNK: usize = 64;
/// Reviews per chunk of the trainable forward pass.
const TRAIN_CHUNK: usize = 64;

impl FeatureCache {
    /// Run every review of `products` (token ids) through the encoder's embeddings and
    /// layers `0..first_layer` on `encoder`'s device (sorted by length, padded per chunk).
    pub fn build(
        encoder: &Encoder,
        pad_id: u32,
        products: &[Vec<Vec<u32>>],
        first_layer: usize,
        device: &Device,
        progress: bool,
    ) -> Result<Self, TrainError> {
        let hidden = encoder.config().hidden_size;
        let mut order: Vec<(usize, usize)> = products
            .iter()
            .enumerate()
            .flat_map(|(p, reviews)| (0..reviews.len()).map(move |r| (p, r)))
            .collect();
        order.sort_by_key(|&(p, r)| products[p][r].len());
        let mut out: Vec<Vec<CachedReview>> = products
            .iter()
            .map(|reviews| {
                reviews
                    .iter()
                    .map(|_| CachedReview {
                        len: 0,
                        values: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let bar = progress_bar(progress, order.len() as u64, "caching lower layers");
        for chunk in order.chunks(CACHE_CHUNK) {
            let rows: Vec<Vec<u32>> = chunk.iter().map(|&(p, r)| products[p][r].clone()).collect();
            let batch = pad_batch(&rows, pad_id, device);
            let x = encoder.embed(batch.input_ids, &batch.attention_mask);
            let x = encoder.forward_layers(x, &batch.attention_mask, 0..first_layer);
            let [_, l, _] = x.dims();
            let values = to_vec(x)?;
            for (i, &(p, r)) in chunk.iter().enumerate() {
                let len = rows[i].len();
                let start = i * l * hidden;
                out[p][r] = CachedReview {
                    len,
                    values: values[start..start + len * hidden].to_vec(),
                };
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(Self {
            hidden,
            first_layer,
            products: out,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.products
            .iter()
            .flatten()
            .map(|r| r.values.len() * 4)
            .sum()
    }

    /// Number of cached reviews.
    pub fn n_reviews(&self) -> usize {
        self.products.iter().map(Vec::len).sum()
    }
}

fn progress_bar(show: bool, len: u64, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// Each review's vector `[n_reviews, hidden]` after `encoder`'s layers above the cache
/// (token mean), for cached `products`, and the slot (index into `products`) each row
/// belongs to.
pub fn review_vectors(
    encoder: &Encoder,
    cache: &FeatureCache,
    products: &[usize],
    device: &Device,
) -> (Tensor<2>, Vec<usize>) {
    let h = cache.hidden;
    let n_layers = encoder.num_layers();
    let mut reviews: Vec<(usize, &CachedReview)> = products
        .iter()
        .enumerate()
        .flat_map(|(slot, &p)| cache.products[p].iter().map(move |r| (slot, r)))
        .collect();
    reviews.sort_by_key(|(_, r)| r.len);
    let mut pooled = Vec::new();
    for chunk in reviews.chunks(TRAIN_CHUNK) {
        let b = chunk.len();
        let l = chunk.iter().map(|(_, r)| r.len).max().unwrap_or(1).max(1);
        let mut values = vec![0f32; b * l * h];
        let mut mask = vec![0i64; b * l];
        for (i, (_, r)) in chunk.iter().enumerate() {
            values[i * l * h..i * l * h + r.len * h].copy_from_slice(&r.values);
            mask[i * l..i * l + r.len].iter_mut().for_each(|m| *m = 1);
        }
        let x = Tensor::<3>::from_data(TensorData::new(values, [b, l, h]), device);
        let mask = Tensor::<2, Int>::from_data(TensorData::new(mask, [b, l]), device);
        let top = encoder.forward_layers(x, &mask, cache.first_layer..n_layers);
        pooled.push(mean_pool(top, &mask));
    }
    (
        Tensor::cat(pooled, 0),
        reviews.iter().map(|(slot, _)| *slot).collect(),
    )
}

/// Per-dimension mean and standard deviation of the review vectors of `products`, computed
/// in chunks on the plain device (for the head's standardisation).
pub fn review_statistics(
    model: &TagModel,
    cache: &FeatureCache,
    products: &[usize],
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let h = cache.hidden;
    let mut moments = Moments::new(h);
    for chunk in products.chunks(64) {
        let (vectors, _) = review_vectors(&model.encoder, cache, chunk, device);
        for row in to_vec(vectors)?.chunks(h) {
            moments.add(row);
        }
    }
    Ok((moments.mean(), moments.std(0.0)))
}

/// The frozen view's input: every review vector of each of `products` (in `products`
/// order), from the base `encoder`'s layers above the cache, in chunks of 64 products.
pub fn frozen_review_vectors(
    encoder: &Encoder,
    cache: &FeatureCache,
    products: &[usize],
    device: &Device,
) -> Result<Vec<ProductVectors>, TrainError> {
    let h = cache.hidden;
    let mut out: Vec<ProductVectors> = Vec::with_capacity(products.len());
    for chunk in products.chunks(64) {
        let (vectors, slots) = review_vectors(encoder, cache, chunk, device);
        let mut per_product: Vec<ProductVectors> = vec![Vec::new(); chunk.len()];
        for (row, &slot) in to_vec(vectors)?.chunks_exact(h).zip(&slots) {
            per_product[slot].push(row.to_vec());
        }
        out.extend(per_product);
    }
    Ok(out)
}

/// Logits `[products.len(), n_tags]` of head `head` for cached products: the adapted layers
/// per review, token mean per review, then the reviews combined by `pooling`.
pub fn product_logits(
    model: &TagModel,
    head: usize,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    device: &Device,
) -> Tensor<2> {
    let (pooled, slots) = review_vectors(&model.encoder, cache, products, device);
    let n = slots.len();
    // Product vector = mean of its reviews' vectors: a [products, reviews] averaging matrix.
    let p = products.len();
    let mut counts = vec![0usize; p];
    for &slot in &slots {
        counts[slot] += 1;
    }
    let mut avg = vec![0f32; p * n];
    for (j, &slot) in slots.iter().enumerate() {
        avg[slot * n + j] = 1.0 / counts[slot].max(1) as f32;
    }
    let avg = Tensor::<2>::from_data(TensorData::new(avg, [p, n]), device);
    match pooling {
        Pooling::Mean => model.heads[head].forward(avg.matmul(pooled)),
        Pooling::LogMeanExp => {
            // Per-review logits, bounded so exp stays finite in f32; then
            // log(mean_r exp(z_r)) per product and tag.
            let z = model.heads[head]
                .forward(pooled)
                .clamp(-LOGIT_BOUND, LOGIT_BOUND);
            avg.matmul(z.exp()).log()
        }
    }
}

/// Per-review logits are clamped to ±this before log-mean-exp pooling (e^30 ≈ 1e13 keeps
/// f32 sums exact enough; sigmoid(±30) is already 0/1).
const LOGIT_BOUND: f32 = 30.0;

/// The configured loss of `logits` against 0/1 `targets`, averaged over products × tags.
pub fn loss(kind: Loss, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    match kind {
        Loss::Bce => lamoda_model::bce_with_logits(logits, targets),
        Loss::Focal { gamma } => {
            let x = logits;
            let y = targets;
            let bce = x.clone().clamp_min(0.0) - x.clone() * y.clone()
                + x.clone().abs().neg().exp().add_scalar(1.0).log();
            let p = sigmoid(x);
            let pt = p.clone() * y.clone() + p.neg().add_scalar(1.0) * y.neg().add_scalar(1.0);
            let w = pt.neg().add_scalar(1.0).clamp_min(0.0).powf_scalar(gamma);
            (bce * w).mean()
        }
    }
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over the first
/// `warmup_ratio · total` steps, then linear decay to 0.
pub fn learning_rate(config: &TrainConfig, step: usize, total: usize) -> f64 {
    let total = total.max(1) as f64;
    let warmup = (config.warmup_ratio * total).round();
    let s = step as f64 + 1.0;
    if warmup > 0.0 && s <= warmup {
        config.lr * s / warmup
    } else {
        config.lr * ((total - s + 1.0) / (total - warmup).max(1.0)).clamp(0.0, 1.0)
    }
}

/// Sigmoid probabilities `[product][tag]` for cached products, in batches.
pub fn cached_probabilities(
    model: &TagModel,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out = Vec::with_capacity(products.len());
    for chunk in products.chunks(batch_size.max(1)) {
        let logits = product_logits(model, 0, cache, chunk, pooling, device);
        let n_tags = logits.dims()[1];
        let values = to_vec(sigmoid(logits))?;
        out.extend(values.chunks(n_tags).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Dev micro-F1 at threshold 0.5.
    pub dev_micro_f1: f64,
    /// Seconds the epoch's training steps took.
    pub seconds: f64,
}

/// What `metrics.json` holds: the best epoch's dev figures beside the prior's.
#[derive(Debug, Clone, Serialize)]
pub struct TrainMetrics {
    /// The category.
    pub category: String,
    /// The best epoch (1-based).
    pub epoch: usize,
    /// Dev metrics of the model at threshold 0.5.
    pub dev: Metrics,
    /// Dev metrics of the frequency prior fitted on the training rows.
    pub prior: Metrics,
    /// Dev metrics with per-tag thresholds tuned on the same dev rows (optimistic).
    pub tuned: Option<Metrics>,
    /// Training rows.
    pub n_train: usize,
    /// Dev rows.
    pub n_dev: usize,
    /// Reviews cached (train + dev, after the per-product cap).
    pub n_reviews: usize,
    /// Seconds spent caching the lower layers.
    pub cache_seconds: f64,
    /// Seconds spent in training steps and dev evaluation (this run; resumed epochs excluded).
    pub train_seconds: f64,
    /// Every epoch run (including resumed ones).
    pub history: Vec<EpochRecord>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Each branch alone, when the lexical branch is on (`dev` and `tuned` are then of
    /// their average).
    pub branches: Option<BranchMetrics>,
}

/// Dev figures of an adapter's two branches, each alone at threshold 0.5.
#[derive(Debug, Clone, Serialize)]
pub struct BranchMetrics {
    /// The encoder (adapter + head) alone.
    pub encoder: Metrics,
    /// The lexical branch alone.
    pub lexical: Metrics,
    /// Features (stems and character n-grams) in the lexical branch's vocabularies.
    pub vocabulary: usize,
    /// Seconds spent fitting the lexical branch.
    pub lexical_seconds: f64,
}

/// What [`finish_adapter`] decided and measured.
#[derive(Debug)]
pub struct Finished {
    /// Dev metrics of the adapter's probabilities at threshold 0.5.
    pub dev: Metrics,
    /// Dev metrics with the tuned thresholds, when asked for.
    pub tuned: Option<Metrics>,
    /// The tuned thresholds, when asked for.
    pub thresholds: Option<Vec<f32>>,
    /// Each branch alone, when the lexical branch is on.
    pub branches: Option<BranchMetrics>,
    /// The fitted lexical branch, when asked for.
    pub lexical: Option<LexicalModel>,
}

/// Each row's gold tags as a 0/1 vector in pool order (tags outside the pool dropped).
fn gold_vectors(pool: &EtalonPool, rows: &[&ReviewStack]) -> Vec<Vec<f32>> {
    gold_indices(pool, rows)
        .into_iter()
        .map(|tags| {
            let mut v = vec![0f32; pool.len()];
            tags.into_iter()
                .filter(|&i| i < pool.len())
                .for_each(|i| v[i] = 1.0);
            v
        })
        .collect()
}

/// The base encoder's review vectors of the training and dev rows, for the frozen view.
#[derive(Debug, Clone, Copy)]
pub struct FrozenVectors<'a> {
    /// One entry per training row.
    pub train: &'a [ProductVectors],
    /// One entry per dev row.
    pub dev: &'a [ProductVectors],
}

/// What follows the encoder's training, in the adapter directory `dir`: fit the lexical
/// branch on `train_rows` when `config` asks for one (else remove a stale one), average it
/// with the encoder's dev probabilities `encoder_dev`, then tune and save the thresholds
/// on the result. `frozen` are needed when the branch has the frozen view. Takes seconds
/// to a minute, so it can be rerun on a trained adapter.
pub fn finish_adapter(
    dir: &Path,
    pool: &EtalonPool,
    train_rows: &[&ReviewStack],
    dev_rows: &[&ReviewStack],
    encoder_dev: &[Vec<f32>],
    frozen: Option<FrozenVectors<'_>>,
    config: &TrainConfig,
) -> Result<Finished, TrainError> {
    let decoding = DecodeConfig::default();
    let (probs, branches, lexical) = match &config.lexical {
        None => {
            LexicalModel::remove_from(dir)?;
            (encoder_dev.to_vec(), None, None)
        }
        Some(settings) => {
            let t0 = Instant::now();
            let targets = gold_vectors(pool, train_rows);
            let docs: Vec<&[String]> = train_rows.iter().map(|r| r.reviews.as_slice()).collect();
            let model = LexicalModel::fit(
                settings,
                &pool.tags,
                &docs,
                frozen.map(|f| f.train),
                &targets,
            )?;
            let lexical_seconds = t0.elapsed().as_secs_f64();
            let dev_docs: Vec<&[String]> = dev_rows.iter().map(|r| r.reviews.as_slice()).collect();
            let lexical_dev = model.probabilities(&dev_docs, frozen.map(|f| f.dev))?;
            let branches = BranchMetrics {
                encoder: evaluate_probabilities(encoder_dev, pool, dev_rows, &decoding, REPORT_K),
                lexical: evaluate_probabilities(&lexical_dev, pool, dev_rows, &decoding, REPORT_K),
                vocabulary: model.n_features(),
                lexical_seconds,
            };
            model.save(dir)?;
            (
                model.fuse(encoder_dev, &lexical_dev),
                Some(branches),
                Some(model),
            )
        }
    };
    let dev = evaluate_probabilities(&probs, pool, dev_rows, &decoding, REPORT_K);
    let (thresholds, tuned) = tune_and_save_thresholds(dir, pool, dev_rows, &probs, config)?;
    Ok(Finished {
        dev,
        tuned,
        thresholds,
        branches,
        lexical,
    })
}

/// The result of [`train_category`].
#[derive(Debug)]
pub struct TrainReport {
    /// The figures written to `metrics.json`.
    pub metrics: TrainMetrics,
    /// The adapter directory (`<out>/<category>`).
    pub dir: PathBuf,
    /// The best epoch's model, on the plain (non-autodiff) device.
    pub model: TagModel,
    /// Tuned per-tag thresholds, when asked for.
    pub thresholds: Option<Vec<f32>>,
}

/// Per-tag thresholds in the adapter directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// The tags, in pool order.
    pub tags: Vec<String>,
    /// One threshold per tag.
    pub thresholds: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    best_epoch: usize,
    best_micro_f1: f64,
    history: Vec<EpochRecord>,
}

/// Train `pool.category`'s adapter and head on the training split of `rows` and keep the
/// best epoch (by dev micro-F1) in `out/<category>/`.
///
/// `base` may live on any device; training runs on its autodiff form. With `resume`, a
/// checkpoint left in `out/<category>/checkpoint/` by an interrupted run is continued
/// (adapter weights and progress; AdamW's moments restart).
#[allow(clippy::too_many_arguments)]
pub fn train_category(
    base: &LoadedBase,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    split: &SplitConfig,
    config: &TrainConfig,
    out: &Path,
    progress: Progress,
    resume: bool,
) -> Result<TrainReport, TrainError> {
    let category = pool.category.name().to_string();
    let n_layers = base.encoder.num_layers();
    config.validate(Path::new("<config>"), Some(n_layers))?;
    split.validate().map_err(|reason| TrainError::Config {
        path: PathBuf::from("<split>"),
        field: "split",
        value: format!("{split:?}"),
        reason,
    })?;
    let s = train_dev_split(rows, split);
    if s.train.is_empty() || s.dev.is_empty() {
        return Err(TrainError::EmptySplit {
            category,
            n_train: s.train.len(),
            n_dev: s.dev.len(),
        });
    }
    let n_tags = pool.len();
    let targets_of = |row: &ReviewStack| -> Result<Vec<f32>, TrainError> {
        let mut t = vec![0f32; n_tags];
        for tag in &row.tags {
            let i = pool.index_of(tag).ok_or_else(|| TrainError::UnknownTag {
                row: row.row,
                tag: tag.clone(),
                category: category.clone(),
            })?;
            t[i] = 1.0;
        }
        Ok(t)
    };
    let train_targets: Vec<Vec<f32>> = s
        .train
        .iter()
        .map(|&i| targets_of(&rows[i]))
        .collect::<Result<_, _>>()?;
    let train_rows: Vec<&ReviewStack> = s.train.iter().map(|&i| &rows[i]).collect();
    let dev_rows: Vec<&ReviewStack> = s.dev.iter().map(|&i| &rows[i]).collect();
    let prior = FrequencyPrior::fit(pool, train_rows.iter().copied());
    let prior_metrics = evaluate_prior(&prior, pool, &dev_rows, REPORT_K);

    // Devices: the cache and evaluation on the plain device, training on autodiff.
    let plain = encoder_device(&base.encoder).inner();
    let ad = plain.clone().autodiff();
    let frozen = base.encoder.valid();

    // Cache: products 0..n_train are training rows, then dev rows.
    let lora = config.lora_config(n_layers);
    let stacks: Vec<&[String]> = s
        .train
        .iter()
        .chain(&s.dev)
        .map(|&i| rows[i].reviews.as_slice())
        .collect();
    let ids = tokenize_stacks(&base.tokenizer, &stacks, config)?;
    let t0 = Instant::now();
    let cache = FeatureCache::build(
        &frozen,
        base.tokenizer.pad_id(),
        &ids,
        lora.first_layer,
        &plain,
        progress.bars(),
    )?;
    let cache_seconds = t0.elapsed().as_secs_f64();
    if progress.lines() {
        eprintln!(
            "{category}: cached {} reviews of {} products ({:.0} MB) in {cache_seconds:.1} s",
            cache.n_reviews(),
            cache.products.len(),
            cache.bytes() as f64 / 1e6
        );
    }
    let train_idx: Vec<usize> = (0..s.train.len()).collect();
    let dev_idx: Vec<usize> = (s.train.len()..stacks.len()).collect();

    let dir = out.join(&category);
    let ckpt = dir.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&ckpt).map_err(io_err(&ckpt))?;
    let heads = vec![HeadSpec {
        name: category.clone(),
        tags: pool.tags.clone(),
    }];
    let ckpt_state_path = ckpt.join(CHECKPOINT_STATE_FILE);
    let mut state = CheckpointState {
        epochs_done: 0,
        best_epoch: 0,
        best_micro_f1: f64::NEG_INFINITY,
        history: Vec::new(),
    };
    ad.seed(config.seed);
    let mut model = if resume && ckpt_state_path.is_file() {
        state = read_json(&ckpt_state_path)?;
        let (model, _) =
            TagModel::load_adapter(&ckpt, base.encoder.clone().to_device(&ad), &base.info, &ad)?;
        check_head(&model, pool, &ckpt)?;
        model
    } else {
        let mut model = TagModel::new(base.encoder.clone().to_device(&ad), lora, heads, &ad)?;
        // Standardise the head's input with the training reviews' statistics under the
        // initial adapter (LoRA starts as the identity, so this is the base's output).
        let (mean, std) = review_statistics(&model.valid(), &cache, &train_idx, &plain)?;
        model.heads[0].set_standardisation(
            Tensor::<1>::from_data(TensorData::new(mean, [cache.hidden]), &ad),
            Tensor::<1>::from_data(TensorData::new(std, [cache.hidden]), &ad),
        );
        if config.prior_bias_init {
            let logits: Vec<f32> = prior
                .frequencies
                .iter()
                .map(|&f| {
                    let f = f.clamp(1e-3, 1.0 - 1e-3);
                    (f / (1.0 - f)).ln()
                })
                .collect();
            model.heads[0].linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(logits, [n_tags]),
                &ad,
            )));
        }
        model
    };
    let mut best: Option<TagModel> = if state.best_epoch > 0 {
        let (m, _) = TagModel::load_adapter(&dir, frozen.clone(), &base.info, &plain)?;
        Some(m)
    } else {
        None
    };

    let steps_per_epoch = train_idx.len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let adamw = AdamWConfig::new().with_weight_decay(config.weight_decay as f32);
    let mut optim = adamw.init();
    let mut optim_head = adamw.init();
    let decoding = DecodeConfig::default();
    let dev_probabilities = |m: &TagModel| {
        cached_probabilities(
            m,
            &cache,
            &dev_idx,
            config.pooling,
            config.eval_batch_size,
            &plain,
        )
    };
    let t_train = Instant::now();
    let mut stopped_early = false;
    for epoch in state.epochs_done + 1..=config.epochs {
        let t_epoch = Instant::now();
        let mut order = train_idx.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed.wrapping_add(epoch as u64),
        ));
        let bar = progress_bar(progress.bars(), steps_per_epoch as u64, "training");
        let mut loss_sum = 0f64;
        for (b, batch) in order.chunks(config.batch_size).enumerate() {
            let step = (epoch - 1) * steps_per_epoch + b;
            let logits = product_logits(&model, 0, &cache, batch, config.pooling, &ad);
            let targets: Vec<f32> = batch
                .iter()
                .flat_map(|&i| train_targets[i].iter().copied())
                .collect();
            let targets =
                Tensor::<2>::from_data(TensorData::new(targets, [batch.len(), n_tags]), &ad);
            let l = loss(config.loss, logits, targets);
            loss_sum += f64::from(to_vec(l.clone())?.first().copied().unwrap_or(f32::NAN));
            let lr = learning_rate(config, step, total_steps);
            let mut grads = l.backward();
            model = match config.head_lr {
                None => {
                    let grads = GradientsParams::from_grads(grads, &model);
                    optim.step(lr, model, grads)
                }
                Some(head_lr) => {
                    let head = GradientsParams::from_module(&mut grads, &model.heads);
                    let encoder = GradientsParams::from_module(&mut grads, &model.encoder);
                    let model = optim.step(lr, model, encoder);
                    optim_head.step(lr / config.lr * head_lr, model, head)
                }
            };
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = t_epoch.elapsed().as_secs_f64();
        let eval_model = model.valid();
        let probs = dev_probabilities(&eval_model)?;
        let m = evaluate_probabilities(&probs, pool, &dev_rows, &decoding, REPORT_K);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / steps_per_epoch.max(1) as f64,
            dev_micro_f1: m.micro_f1,
            seconds,
        };
        if progress.lines() {
            eprintln!(
                "{category} epoch {epoch}: loss {:.4}, dev micro-F1 {:.4} (prior {:.4}), {seconds:.1} s",
                record.train_loss, m.micro_f1, prior_metrics.micro_f1
            );
        }
        state.history.push(record);
        state.epochs_done = epoch;
        if m.micro_f1 > state.best_micro_f1 {
            state.best_micro_f1 = m.micro_f1;
            state.best_epoch = epoch;
            eval_model.save_adapter(&dir, &base.info)?;
            best = Some(eval_model);
        }
        model.save_adapter(&ckpt, &base.info)?;
        write_json(&ckpt_state_path, &state)?;
        if config.patience > 0 && epoch - state.best_epoch >= config.patience {
            stopped_early = true;
            break;
        }
    }
    let train_seconds = t_train.elapsed().as_secs_f64();
    let best = match best {
        Some(b) => b,
        None => model.valid(),
    };
    let best_probs = dev_probabilities(&best)?;
    let vectors = match &config.lexical {
        Some(lexical) if lexical.frozen_view => {
            let all: Vec<usize> = (0..stacks.len()).collect();
            Some(frozen_review_vectors(&frozen, &cache, &all, &plain)?)
        }
        _ => None,
    };
    let frozen_vectors = vectors.as_ref().map(|v| {
        let (train, dev) = v.split_at(s.train.len());
        FrozenVectors { train, dev }
    });
    let finished = finish_adapter(
        &dir,
        pool,
        &train_rows,
        &dev_rows,
        &best_probs,
        frozen_vectors,
        config,
    )?;
    let metrics = TrainMetrics {
        category: category.clone(),
        epoch: state.best_epoch,
        dev: finished.dev,
        prior: prior_metrics,
        tuned: finished.tuned,
        n_train: s.train.len(),
        n_dev: s.dev.len(),
        n_reviews: cache.n_reviews(),
        cache_seconds,
        train_seconds,
        history: state.history,
        stopped_early,
        branches: finished.branches,
    };
    write_json(&dir.join(METRICS_FILE), &metrics)?;
    write_json(&dir.join(TRAIN_CONFIG_FILE), config)?;
    Ok(TrainReport {
        metrics,
        dir,
        model: best,
        thresholds: finished.thresholds,
    })
}

fn check_head(model: &TagModel, pool: &EtalonPool, dir: &Path) -> Result<(), TrainError> {
    let wrong = |reason: String| TrainError::WrongAdapter {
        path: dir.to_path_buf(),
        category: pool.category.name().to_string(),
        reason,
    };
    let head = model.heads.first().ok_or_else(|| wrong("no head".into()))?;
    if head.tags() != pool.tags.as_slice() {
        return Err(wrong(format!(
            "adapter has {} tags, pool {}",
            head.tags().len(),
            pool.len()
        )));
    }
    Ok(())
}

/// The thresholds `config` asks for, chosen on the dev rows' probabilities `probs` and
/// written to `<dir>/thresholds.json` (a stale file is removed when none are asked for);
/// returns them with the dev metrics they give.
pub fn tune_and_save_thresholds(
    dir: &Path,
    pool: &EtalonPool,
    dev_rows: &[&ReviewStack],
    probs: &[Vec<f32>],
    config: &TrainConfig,
) -> Result<(Option<Vec<f32>>, Option<Metrics>), TrainError> {
    let path = dir.join(THRESHOLDS_FILE);
    let thresholds = if config.tune_thresholds {
        tune_thresholds(probs, &gold_vectors(pool, dev_rows))
    } else if config.tune_global_threshold {
        vec![tune_global_threshold(probs, pool, dev_rows); pool.len()]
    } else {
        if path.is_file() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        return Ok((None, None));
    };
    let decoding = DecodeConfig {
        per_tag_thresholds: Some(thresholds.clone()),
        ..DecodeConfig::default()
    };
    let m = evaluate_probabilities(probs, pool, dev_rows, &decoding, REPORT_K);
    write_json(
        &path,
        &Thresholds {
            tags: pool.tags.clone(),
            thresholds: thresholds.clone(),
        },
    )?;
    Ok((Some(thresholds), Some(m)))
}

/// The global thresholds [`tune_global_threshold`] tries: 0.20, 0.25, …, 0.50.
pub const GLOBAL_THRESHOLDS: [f32; 7] = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5];

/// One threshold for every tag: the one of [`GLOBAL_THRESHOLDS`] with the best micro-F1 of
/// `probs` on `rows` (ties: the higher threshold). A single number chosen on dev is only
/// slightly optimistic; the F1-optimal threshold of calibrated probabilities is about half
/// the F1 reached, which is why the grid stops at 0.5.
pub fn tune_global_threshold(probs: &[Vec<f32>], pool: &EtalonPool, rows: &[&ReviewStack]) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for &t in GLOBAL_THRESHOLDS.iter().rev() {
        let decoding = DecodeConfig {
            threshold: t,
            ..DecodeConfig::default()
        };
        let f1 = evaluate_probabilities(probs, pool, rows, &decoding, REPORT_K).micro_f1;
        if f1 > best.0 + 1e-12 {
            best = (f1, t);
        }
    }
    best.1
}

/// Per tag, the threshold in 0.05..=0.95 (step 0.05) with the best F1 of that tag alone on
/// `probs` against 0/1 `gold` (ties: the one closest to 0.5; a tag never gold keeps 0.5).
pub fn tune_thresholds(probs: &[Vec<f32>], gold: &[Vec<f32>]) -> Vec<f32> {
    let n_tags = probs.first().map_or(0, Vec::len);
    (0..n_tags)
        .map(|t| {
            let mut best = (f64::NEG_INFINITY, 0.5f32);
            for step in 1..=19 {
                let th = step as f32 * 0.05;
                let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
                for (p, g) in probs.iter().zip(gold) {
                    match (p[t] >= th, g[t] > 0.5) {
                        (true, true) => tp += 1,
                        (true, false) => fp += 1,
                        (false, true) => fn_ += 1,
                        _ => {}
                    }
                }
                if tp + fn_ == 0 {
                    return 0.5;
                }
                let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_).max(1) as f64;
                let closer = (th - 0.5).abs() < (best.1 - 0.5).abs();
                if f1 > best.0 + 1e-12 || ((f1 - best.0).abs() <= 1e-12 && closer) {
                    best = (f1, th);
                }
            }
            best.1
        })
        .collect()
}

/// A trained adapter ready to predict: the model on the plain device, its training config
/// (text prefix and caps) and tuned thresholds if any.
#[derive(Debug)]
pub struct TrainedAdapter {
    /// Base + adapter + head.
    pub model: TagModel,
    /// The settings it was trained with.
    pub config: TrainConfig,
    /// Per-tag thresholds, when tuned.
    pub thresholds: Option<Thresholds>,
    /// Its base's identity.
    pub base: BaseInfo,
    /// The lexical branch, when the adapter has one.
    pub lexical: Option<LexicalModel>,
    /// The base encoder (no LoRA), when the lexical branch reads the frozen view.
    pub frozen: Option<Encoder>,
}

impl TrainedAdapter {
    /// Probabilities `[stack][tag]` (pool order) for review stacks, read the way training
    /// read them: the encoder's, averaged with the lexical branch's when there is one.
    pub fn probabilities(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        let outputs = self.encoder_outputs(tokenizer, stacks, false)?;
        Ok(match &self.lexical {
            Some(lexical) => {
                let lex = lexical.probabilities(stacks, outputs.vectors.as_deref())?;
                lexical.fuse(&outputs.probabilities, &lex)
            }
            None => outputs.probabilities,
        })
    }

    /// The encoder's probabilities alone.
    pub fn encoder_probabilities(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        predict_probabilities(&self.model, tokenizer, &self.config, stacks)
    }

    /// The encoder's probabilities and, when [`TrainedAdapter::frozen`] is set, the base
    /// encoder's review vectors (the frozen view's input), from one pass of the lower
    /// layers (with a progress bar when `progress`).
    pub fn encoder_outputs(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: bool,
    ) -> Result<EncoderOutputs, TrainError> {
        let cache = cache_stacks(&self.model, tokenizer, &self.config, stacks, progress)?;
        Ok(EncoderOutputs {
            probabilities: all_probabilities(&self.model, &self.config, &cache)?,
            vectors: self.frozen_vectors(&cache)?,
        })
    }

    /// The base encoder's review vectors alone (the frozen view's input), when
    /// [`TrainedAdapter::frozen`] is set: one pass of the lower layers and the base's top
    /// layers, without the adapted layers and head.
    pub fn base_vectors(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: bool,
    ) -> Result<Option<Vec<ProductVectors>>, TrainError> {
        if self.frozen.is_none() {
            return Ok(None);
        }
        let cache = cache_stacks(&self.model, tokenizer, &self.config, stacks, progress)?;
        self.frozen_vectors(&cache)
    }

    /// Keep `base` (the encoder without LoRA) exactly when a lexical branch with
    /// `settings` reads the frozen view; drop it otherwise.
    pub fn keep_base_for(&mut self, settings: Option<&LexicalSettings>, base: &LoadedBase) {
        self.frozen = settings
            .is_some_and(|s| s.frozen_view)
            .then(|| base.encoder.valid());
    }

    /// The base's review vectors of every cached stack, when the adapter keeps the base.
    fn frozen_vectors(
        &self,
        cache: &FeatureCache,
    ) -> Result<Option<Vec<ProductVectors>>, TrainError> {
        match &self.frozen {
            Some(base) => {
                let all: Vec<usize> = (0..cache.products.len()).collect();
                let device = encoder_device(&self.model.encoder);
                Ok(Some(frozen_review_vectors(base, cache, &all, &device)?))
            }
            None => Ok(None),
        }
    }
}

/// What [`TrainedAdapter::encoder_outputs`] reads off one pass of the lower layers.
#[derive(Debug)]
pub struct EncoderOutputs {
    /// The encoder's probabilities `[stack][tag]`.
    pub probabilities: Vec<Vec<f32>>,
    /// The base's review vectors per stack, when the adapter keeps the base for the
    /// frozen view.
    pub vectors: Option<Vec<ProductVectors>>,
}

/// Load an adapter directory written by [`train_category`] onto `base` (refused if it was
/// trained on another base); a missing `train_config.json` means defaults.
pub fn load_trained(dir: &Path, base: &LoadedBase) -> Result<TrainedAdapter, TrainError> {
    let mut adapter = load_trained_encoder(dir, base)?;
    if LexicalModel::exists_in(dir) {
        let lexical = LexicalModel::load(dir)?;
        if adapter.model.heads.first().map(|h| h.tags()) != Some(lexical.tags.as_slice()) {
            return Err(TrainError::Lexical {
                path: dir.join(crate::lexical::LEXICAL_CONFIG_FILE),
                reason: "its tags differ from the adapter head's".into(),
            });
        }
        adapter.keep_base_for(Some(&lexical.settings), base);
        adapter.lexical = Some(lexical);
    }
    Ok(adapter)
}

/// [`load_trained`] without the lexical branch (which is not read, so one written by an
/// older format does not stop `cargo xtask train --keep-encoder` from refitting it).
pub fn load_trained_encoder(dir: &Path, base: &LoadedBase) -> Result<TrainedAdapter, TrainError> {
    let plain = encoder_device(&base.encoder).inner();
    let (model, _) = TagModel::load_adapter(dir, base.encoder.valid(), &base.info, &plain)?;
    let config_path = dir.join(TRAIN_CONFIG_FILE);
    let config = if config_path.is_file() {
        read_json(&config_path)?
    } else {
        TrainConfig::default()
    };
    let th_path = dir.join(THRESHOLDS_FILE);
    let thresholds = if th_path.is_file() {
        Some(read_json(&th_path)?)
    } else {
        None
    };
    Ok(TrainedAdapter {
        model,
        config,
        thresholds,
        base: base.info.clone(),
        lexical: None,
        frozen: None,
    })
}

/// Probabilities `[stack][tag]` of `model`'s head 0 for arbitrary review stacks, read the
/// way training read them (`config`'s prefix and caps). `model` must be on a plain device.
pub fn predict_probabilities(
    model: &TagModel,
    tokenizer: &lamoda_model::TextTokenizer,
    config: &TrainConfig,
    stacks: &[&[String]],
) -> Result<Vec<Vec<f32>>, TrainError> {
    let cache = cache_stacks(model, tokenizer, config, stacks, false)?;
    all_probabilities(model, config, &cache)
}

/// The encoder's probabilities of every stack in `cache`, in order.
fn all_probabilities(
    model: &TagModel,
    config: &TrainConfig,
    cache: &FeatureCache,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let all: Vec<usize> = (0..cache.products.len()).collect();
    cached_probabilities(
        model,
        cache,
        &all,
        config.pooling,
        config.eval_batch_size,
        &encoder_device(&model.encoder),
    )
}

/// `stacks` tokenised as `config` says and run through `model`'s lower (non-adapted)
/// layers, on the model's device.
fn cache_stacks(
    model: &TagModel,
    tokenizer: &lamoda_model::TextTokenizer,
    config: &TrainConfig,
    stacks: &[&[String]],
    progress: bool,
) -> Result<FeatureCache, TrainError> {
    let ids = tokenize_stacks(tokenizer, stacks, config)?;
    FeatureCache::build(
        &model.encoder,
        tokenizer.pad_id(),
        &ids,
        model.lora().first_layer,
        &encoder_device(&model.encoder),
        progress,
    )
}

/// The device `encoder`'s parameters live on.
fn encoder_device(encoder: &Encoder) -> Device {
    encoder.embeddings.word_embeddings.weight.val().device()
}
