//! What a training run records: `metrics.json` (the best epoch's dev figures beside the
//! prior, each branch alone, the history) and the choice of thresholds on dev.

use std::path::Path;

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack};
use lamoda_inference::Thresholds;
use lamoda_inference::format::{THRESHOLDS_FILE, write_json};
use lamoda_metrics::{
    Metrics, evaluate_probabilities, gold_vectors, tune_global_threshold, tune_thresholds,
};
use serde::{Deserialize, Serialize};

use crate::error::{TrainError, io_err};
use crate::train_config::TrainConfig;

/// `k` of precision@k / recall@k in training reports.
pub const REPORT_K: usize = 3;

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
