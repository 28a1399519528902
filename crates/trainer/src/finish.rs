//! What follows the encoder's training: the lexical branch's fit, the fusion with the
//! encoder's dev probabilities, and the thresholds chosen on the result.

use std::path::Path;
use std::time::Instant;

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack};
use lamoda_inference::format::{AdapterMetrics, BranchMetrics};
use lamoda_inference::frozen::ProductVectors;
use lamoda_inference::lexical::LexicalModel;
use lamoda_metrics::{Metrics, evaluate_probabilities, gold_vectors};

use crate::error::TrainError;
use crate::lexical_fit::fit_lexical;
use crate::report::{REPORT_K, tune_and_save_thresholds};
use crate::train_config::TrainConfig;

/// What [`finish_adapter`] decided and measured.
#[derive(Debug)]
pub struct Finished {
    /// Dev metrics of the adapter's probabilities at threshold 0.5.
    pub dev: Metrics,
    /// Dev metrics with the tuned thresholds, when asked for.
    pub tuned: Option<Metrics>,
    /// The tuned thresholds, when asked for.
    pub thresholds: Option<Vec<f32>>,
    /// Each branch alone, when the lexical branch is on (as `metrics.json` records them).
    pub branches: Option<BranchMetrics>,
    /// The fitted lexical branch, when asked for.
    pub lexical: Option<LexicalModel>,
}

impl Finished {
    /// Records these figures in `metrics` (its `dev`, `tuned` and `branches`), as a refit
    /// of what follows the encoder changes them.
    pub fn record_into(&self, metrics: &mut AdapterMetrics) {
        metrics.dev = self.dev.clone();
        metrics.tuned = self.tuned.clone();
        metrics.branches = self.branches.clone();
    }
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
            let model = fit_lexical(
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
