//! [`TrainError`]: every way training can fail.

use std::path::{Path, PathBuf};

use lamoda_data::DataError;
use lamoda_inference::InferenceError;
use lamoda_model::ModelError;

/// Why training failed; every variant names the file, row or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training setting is out of range.
    #[error("{}: `{field}` = {value}: {reason}", path.display())]
    Config {
        /// The config file (or `<config>` when built in code).
        path: PathBuf,
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A training row carries a tag outside the category's pool.
    #[error("training row {row}: tag {tag:?} is not in the {category} pool")]
    UnknownTag {
        /// The row number in the labeled file.
        row: usize,
        /// The tag.
        tag: String,
        /// The category.
        category: String,
    },
    /// The split left nothing to train on or to evaluate.
    #[error(
        "{category}: the split gives {n_train} training and {n_dev} dev rows; both must be non-empty"
    )]
    EmptySplit {
        /// The category.
        category: String,
        /// Training rows.
        n_train: usize,
        /// Dev rows.
        n_dev: usize,
    },
    /// A product has no review to read.
    #[error("product {index}: no reviews")]
    NoReviews {
        /// Its index among the stacks given.
        index: usize,
    },
    /// The adapter directory's head does not fit the pool.
    #[error("{}: the adapter's tags do not match the {category} pool ({reason})", path.display())]
    WrongAdapter {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: String,
        /// What differs.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading a data or config file failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model crate failed (tokeniser, adapter files, LoRA settings).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The lexical branch or the frozen view cannot be fitted on what was given.
    #[error("{}: {reason}", path.display())]
    Lexical {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One job of several (`train_many`, `refit_many`) failed.
    #[error("{what} `{category}`: {source}")]
    Job {
        /// `training` or `refitting`.
        what: &'static str,
        /// The job's category.
        category: lamoda_data::Category,
        /// What went wrong.
        source: Box<TrainError>,
    },
    /// A worker could not run (its thread pool, a panic).
    #[error("training worker: {0}")]
    Worker(String),
    /// The runtime failed (the forward pass, reading or writing the model format).
    #[error(transparent)]
    Runtime(Box<InferenceError>),
}

impl From<InferenceError> for TrainError {
    fn from(err: InferenceError) -> Self {
        Self::Runtime(Box::new(err))
    }
}

/// The [`TrainError::Io`] of `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
