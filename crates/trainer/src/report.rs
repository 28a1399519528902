//! What a training run records: `metrics.json` (the best epoch's dev figures beside the
//! prior, each branch alone, the history: the runtime's
//! [`lamoda_inference::format::AdapterMetrics`], its figures converted from
//! [`lamoda_metrics::Metrics`] by [`set_metrics`]) and the choice of thresholds on dev.

use std::path::Path;

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack};
use lamoda_inference::Thresholds;
use lamoda_inference::format::{SetMetrics, THRESHOLDS_FILE, TagMetrics, write_json};
use lamoda_metrics::{
    Metrics, evaluate_probabilities, gold_vectors, tune_global_threshold, tune_thresholds,
};

use crate::error::{TrainError, io_err};
use crate::train_config::TrainConfig;

/// `k` of precision@k / recall@k in training reports.
pub const REPORT_K: usize = 3;

/// `m` as `metrics.json` records it.
pub fn set_metrics(m: &Metrics) -> SetMetrics {
    SetMetrics {
        n: m.n,
        micro_f1: m.micro_f1,
        micro_precision: m.micro_precision,
        micro_recall: m.micro_recall,
        macro_f1: m.macro_f1,
        samples_f1: m.samples_f1,
        k: m.k,
        precision_at_k: m.precision_at_k,
        recall_at_k: m.recall_at_k,
        per_tag: m
            .per_tag
            .iter()
            .map(|t| TagMetrics {
                label: t.label,
                support: t.support,
                predicted: t.predicted,
                true_positives: t.true_positives,
                precision: t.precision,
                recall: t.recall,
                f1: t.f1,
            })
            .collect(),
    }
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
