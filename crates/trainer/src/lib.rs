//! Per-category training of LoRA adapters and heads, the metrics every
//! evaluation reports, and the frequency prior they are compared with.

pub mod evaluate;
pub mod metrics;
pub mod prior;
pub mod train;
pub mod train_config;

pub use evaluate::{CategoryReport, evaluate_prior, evaluate_probabilities, gold_indices};
pub use metrics::{Metrics, TagScore, evaluate, top_k};
pub use prior::FrequencyPrior;
pub use train::{
    FeatureCache, Progress, TrainError, TrainMetrics, TrainReport, TrainedAdapter, load_trained,
    predict_probabilities, train_category,
};
pub use train_config::{LoraSettings, Loss, Pooling, TrainConfig};
