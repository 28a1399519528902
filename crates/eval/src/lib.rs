//! Scores a model bundle against labels — the data set's own on the dev split, the
//! careful labels on the careful dev split, team-reviewed labels — always beside the
//! frequency prior.
//!
//! Each workflow is one typed call, configuration in and report out:
//! [`evaluate_noisy`] (`lamoda-tags eval`) and [`evaluate_careful`] (`lamoda-tags eval
//! --labels careful`); the pieces they are made of ([`tagger_metrics`], [`careful_dev`],
//! [`score_rows`], [`CarefulRows`], …) serve `lamoda-tags calibrate`, `train` and `cargo
//! xtask reproduce` too. Every figure comes from `lamoda-metrics`; long scoring reports to
//! the caller's [`lamoda_inference::Progress`]; nothing is printed. Failures are typed
//! ([`EvalError`]) and name the file, category or value at fault.

mod careful;
mod error;
mod json;
mod noisy;
mod score;

pub use careful::{
    CarefulConfig, CarefulFigures, CarefulParts, CarefulReport, CarefulRows, Figures,
    GoldAndPredicted, PooledFigures, ReviewedFigures, careful_dev, evaluate_careful, figures_of,
    figures_pooled, pooled, reliability, reviewed_figures, reviewed_rows,
};
pub use error::{EvalError, Result};
pub use noisy::{CategoryFigures, NoisyConfig, NoisyReport, UnknownTags, evaluate_noisy};
pub use score::{evidence_metrics, good_type_of, score_rows, tagger_metrics};
