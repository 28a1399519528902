//! Per-category training of LoRA adapters and heads (plus each adapter's lexical
//! branch), the metrics every evaluation reports, and the frequency prior they are
//! compared with.

pub mod evaluate;
pub mod frozen_view;
pub mod lexical;
pub mod metrics;
pub mod moments;
pub mod prior;
pub mod train;
pub mod train_config;

pub use evaluate::{CategoryReport, evaluate_prior, evaluate_probabilities, gold_indices};
pub use frozen_view::{FrozenView, ProductVectors};
pub use lexical::{FirstStage, LexicalModel, LexicalSettings, SecondStage};
pub use metrics::{Metrics, TagScore, evaluate, top_k};
pub use prior::FrequencyPrior;
pub use train::{
    BranchMetrics, EncoderOutputs, FeatureCache, Finished, FrozenVectors, Progress, TrainError,
    TrainMetrics, TrainReport, TrainedAdapter, finish_adapter, load_trained, load_trained_encoder,
    predict_probabilities, train_category,
};
pub use train_config::{LoraSettings, Loss, Pooling, TrainConfig};
