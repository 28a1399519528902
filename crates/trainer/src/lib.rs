//! Per-category training: fits the runtime's model format ([`lamoda_inference::format`])
//! and writes it through the runtime's types. The LoRA adapter and head over the cached
//! lower layers ([`train`]), the lexical branch ([`lexical_fit`]) and its frozen view
//! ([`frozen_fit`]), what follows the encoder ([`finish`]: fusion and thresholds), and
//! what a run records ([`report`]: `metrics.json` is the runtime's
//! [`lamoda_inference::AdapterMetrics`]). Metrics and the frequency prior are
//! `lamoda-metrics`'; the forward pass is the runtime's.
//!
//! Module order (each uses only those above it): `error`, `moments`, `train_config`,
//! `step`, `frozen_fit`, `lexical_fit`, `report`, `finish`, `train`.

pub mod careful_fit;
pub mod error;
pub mod finish;
pub mod frozen_fit;
pub mod lexical_fit;
pub mod many;
pub mod moments;
pub mod report;
pub mod step;
pub mod train;
pub mod train_config;

pub use careful_fit::{CalibrationFit, CalibrationSettings, ThresholdPoint, fit_calibration};
pub use error::TrainError;
pub use finish::{Finished, FrozenVectors, finish_adapter};
pub use lexical_fit::fit_lexical;
pub use many::{ManyOptions, Refitted, TrainJob, Trained, refit, refit_many, run_jobs, train_many};
pub use report::{REPORT_K, tune_and_save_thresholds};
pub use train::{
    Progress, StepBench, TrainReport, bench_steps, train_category, train_category_with,
};
pub use train_config::{LoraSettings, Loss, TrainConfig};
