//! Per-category training of LoRA adapters and heads, the metrics every
//! evaluation reports, and the frequency prior they are compared with.

pub mod evaluate;
pub mod metrics;
pub mod prior;

pub use evaluate::{CategoryReport, evaluate_prior, evaluate_probabilities, gold_indices};
pub use metrics::{Metrics, TagScore, evaluate, top_k};
pub use prior::FrequencyPrior;
