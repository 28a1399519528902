//! Scoring tag predictions, shared by training and evaluation without either's code:
//! the metrics every report gives (micro-, macro-, samples-F1, precision@k, recall@k,
//! per-tag scores), the frequency prior they are always compared with, the evaluation of
//! a category's probabilities against gold rows, and the choice of decoding thresholds.

pub mod evaluate;
pub mod metrics;
pub mod prior;
pub mod tune;

pub use evaluate::{CategoryReport, evaluate_prior, evaluate_probabilities, gold_indices};
pub use metrics::{Metrics, TagScore, evaluate, top_k};
pub use prior::FrequencyPrior;
pub use tune::{GLOBAL_THRESHOLDS, gold_vectors, tune_global_threshold, tune_thresholds};
