//! [`EvalError`]: every way an evaluation can fail, each naming the file, category or
//! value at fault.

use std::path::PathBuf;

use lamoda_data::{Category, DataError, ProjectError};
use lamoda_inference::InferenceError;

/// Why an evaluation failed; every variant names the file, category or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A data file (labels, reviewed labels) is wrong.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A project file (pool, split, routing) or the data directory's layout is wrong.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// The bundle could not be read, or tagging failed.
    #[error(transparent)]
    Inference(Box<InferenceError>),
    /// A category's rows could not be read.
    #[error("{what} of `{category}`: {source}")]
    Rows {
        /// Which rows ("training data", "held-out data").
        what: &'static str,
        /// The category.
        category: Category,
        /// Why.
        source: Box<ProjectError>,
    },
    /// Scoring a category's products failed.
    #[error("scoring `{category}`: {source}")]
    Scoring {
        /// The category.
        category: Category,
        /// Why.
        source: Box<InferenceError>,
    },
    /// The bundle has no adapter for a category asked for.
    #[error("{}: no `{category}` adapter in the bundle", bundle.display())]
    NoAdapter {
        /// The bundle.
        bundle: PathBuf,
        /// The category.
        category: Category,
    },
    /// The bundle's pool of a category is not the project's.
    #[error(
        "{}: the bundle's `{category}` pool differs from etalon_tags/{category}.toml \
         (retrain the adapter, or rewrite the bundle with `lamoda-tags bundle` if only \
         the groups changed)",
        adapter.display()
    )]
    PoolMismatch {
        /// The bundle's adapter directory of the category.
        adapter: PathBuf,
        /// The category.
        category: Category,
    },
    /// No good type of the bundle's routing table leads to a category.
    #[error("{}: no good type routes to `{category}`", bundle.display())]
    NoGoodType {
        /// The bundle.
        bundle: PathBuf,
        /// The category.
        category: Category,
    },
    /// A category has no careful labels.
    #[error("no careful labels for `{category}`: {} does not exist", path.display())]
    NoCarefulLabels {
        /// The category.
        category: Category,
        /// The careful file looked for.
        path: PathBuf,
    },
    /// A careful label names a row the labeled file does not have.
    #[error("{}: row {row} is not in {}", careful.display(), labeled.display())]
    CarefulRow {
        /// The careful labels.
        careful: PathBuf,
        /// The row.
        row: usize,
        /// The labeled file.
        labeled: PathBuf,
    },
    /// A setting of the evaluation is out of range.
    #[error("`{field}` = {value}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl From<InferenceError> for EvalError {
    fn from(err: InferenceError) -> Self {
        Self::Inference(Box::new(err))
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, EvalError>;
