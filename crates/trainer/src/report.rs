//! What a training run records: `metrics.json` (the best epoch's dev figures beside the
//! prior, each branch alone, the history: the runtime's
//! [`lamoda_inference::format::AdapterMetrics`], whose figures are
//! [`lamoda_metrics::Metrics`]) and the choice of thresholds on dev.

use std::path::Path;

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack};
use lamoda_inference::Thresholds;
use lamoda_inference::format::{THRESHOLDS_FILE, write_json};
use lamoda_metrics::{
    Metrics, evaluate_probabilities, gold_vectors, tune_global_threshold, tune_thresholds,
};

use crate::error::{TrainError, io_err};
use crate::train_config::TrainConfig;

/// `k` of precision@k / recall@k in training reports.
pub const REPORT_K: usize = 3;

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
