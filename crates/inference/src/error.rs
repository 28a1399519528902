//! [`InferenceError`]: every way loading a bundle or tagging can fail, each naming the
//! file, category, request, field or value at fault.

use std::path::PathBuf;

use lamoda_data::{Category, DataError};
use lamoda_model::ModelError;

/// Why loading or predicting failed; every variant names the path, category, request or
/// value at fault.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The model directory does not exist.
    #[error("no model bundle at {}: the directory does not exist", path.display())]
    NoModelDir {
        /// The directory.
        path: PathBuf,
    },
    /// A directory is not a model bundle (no `bundle.json`).
    #[error(
        "{} is not a model bundle: {} is missing (write one with `lamoda-tags bundle`)",
        path.display(), manifest.display()
    )]
    NotABundle {
        /// The directory.
        path: PathBuf,
        /// The manifest looked for.
        manifest: PathBuf,
    },
    /// The bundle was written by a newer (or unknown) format.
    #[error(
        "{}: bundle format {found:?}, but this build reads {expected:?} (update predict-tags, \
         or re-export the bundle with this version's `lamoda-tags bundle`)",
        path.display()
    )]
    FormatVersion {
        /// The manifest.
        path: PathBuf,
        /// The format it declares.
        found: String,
        /// The format this build reads.
        expected: String,
    },
    /// The base model loaded is not the one the bundle was trained on.
    #[error(
        "{}: the bundle was trained on base {expected_name:?} (weights sha256 {expected_sha}) but \
         the base at {} has sha256 {found_sha}; give the right base with --base DIR",
        path.display(), base_dir.display()
    )]
    WrongBase {
        /// The manifest.
        path: PathBuf,
        /// The base directory given.
        base_dir: PathBuf,
        /// The bundle's base name.
        expected_name: String,
        /// The bundle's base sha256.
        expected_sha: String,
        /// The loaded base's sha256.
        found_sha: String,
    },
    /// The bundle names a category whose directory is missing or incomplete.
    #[error("{}: the bundle lists `{category}` but {} is missing", path.display(), missing.display())]
    MissingCategory {
        /// The manifest.
        path: PathBuf,
        /// The category.
        category: Category,
        /// The file or directory that is missing.
        missing: PathBuf,
    },
    /// The routing table sends good types to a category the bundle has no adapter for.
    #[error(
        "{}: the routing table sends {good_type:?} to `{category}`, which the bundle has no adapter for",
        path.display()
    )]
    UnroutedCategory {
        /// The routing file.
        path: PathBuf,
        /// A good type routed there (or `(fallback)`).
        good_type: String,
        /// The category.
        category: Category,
    },
    /// The base model directory holds no base.
    #[error(
        "no base model at {} (the bundle needs {name:?}): run `{provide}` in the project \
         the bundle came from, or give the base with --base DIR (or LAMODA_BASE)",
        path.display()
    )]
    NoBase {
        /// The directory looked in.
        path: PathBuf,
        /// The bundle's base name.
        name: String,
        /// The command that provides it.
        provide: String,
    },
    /// The base model could not be loaded, or an adapter's model files are wrong.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A data or config file of the bundle (pool, routing table) is wrong.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A category's adapter could not be loaded.
    #[error("{category} adapter: {source}")]
    Adapter {
        /// The category.
        category: Category,
        /// Why.
        source: Box<InferenceError>,
    },
    /// An adapter's head does not have one output per pool tag.
    #[error(
        "{}: the {category} head has {head} outputs but the {category} pool has {pool} tags",
        path.display()
    )]
    HeadWidth {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// Outputs of the head.
        head: usize,
        /// Tags in the pool.
        pool: usize,
    },
    /// An adapter's head names other tags (or another order) than its pool.
    #[error(
        "{}: the {category} head's tag {index} is {head:?} but the pool's is {pool:?} \
         (retrain the adapter after changing the pool)",
        path.display()
    )]
    TagMismatch {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// Position of the first difference.
        index: usize,
        /// The head's tag there.
        head: String,
        /// The pool's tag there.
        pool: String,
    },
    /// A careful calibration does not fit its pool or is malformed.
    #[error("{}: careful calibration of {category}: {reason}", path.display())]
    Careful {
        /// The `careful.json` file.
        path: PathBuf,
        /// The category.
        category: Category,
        /// What is wrong.
        reason: String,
    },
    /// Saved per-tag thresholds do not fit the pool.
    #[error("{}: per-tag thresholds of {category}: {reason}", path.display())]
    Thresholds {
        /// The adapter directory.
        path: PathBuf,
        /// The category.
        category: Category,
        /// What is wrong.
        reason: String,
    },
    /// A setting (runtime, lexical, decoding) is out of range.
    #[error("{}: `{field}` = {value}: {reason}", path.display())]
    Config {
        /// The file (or `<…>` when built in code).
        path: PathBuf,
        /// The field at fault.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A decoding setting is out of range.
    #[error("decoding: {reason}")]
    Decode {
        /// What is wrong.
        reason: String,
    },
    /// A file of the format is not what the writer writes.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
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
    /// A JSON file could not be written or parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A request routes to a category that has no adapter loaded.
    #[error(
        "request {index} (good type {good_type:?}) routes to {category}, which has no adapter in {}",
        model_dir.display()
    )]
    NoAdapter {
        /// The request's index.
        index: usize,
        /// Its good type.
        good_type: String,
        /// The category it routes to.
        category: Category,
        /// The model directory that lacks it.
        model_dir: PathBuf,
    },
    /// A request (or product) has no non-blank review.
    #[error("request {index} (good type {good_type:?}) has no review text")]
    NoReviews {
        /// The request's index.
        index: usize,
        /// Its good type.
        good_type: String,
    },
    /// The adapter failed while predicting.
    #[error("predicting {category}: {source}")]
    Predict {
        /// The category.
        category: Category,
        /// Why.
        source: Box<InferenceError>,
    },
    /// The adapter returned another number of rows or columns than asked for.
    #[error("predicting {category}: {detail}")]
    Shape {
        /// The category.
        category: Category,
        /// What differs.
        detail: String,
    },
    /// A row of a product table cannot be read or tagged (or its header has not the
    /// columns needed).
    #[error("{} row {row}: `{field}`: {reason}", path.display())]
    Table {
        /// The table.
        path: PathBuf,
        /// The row (CSV line, header = 1; JSONL line; or Parquet row, 1-based).
        row: usize,
        /// The field (column) at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A product table has not the columns needed, or one of a type that cannot be read
    /// (a Parquet table's schema; a CSV header's are [`InferenceError::Table`] row 1).
    #[error("{}: column `{field}`: {reason}", path.display())]
    TableColumns {
        /// The table.
        path: PathBuf,
        /// The column at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A Parquet file could not be read or written.
    #[error("{}: {what}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The Parquet or Arrow error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A product table or output is Parquet, but this build reads and writes no Parquet.
    #[error(
        "{}: a Parquet table, but this build has no Parquet (lamoda-inference's `parquet` \
         feature is off; predict-tags turns it on)",
        path.display()
    )]
    NoParquet {
        /// The table or output.
        path: PathBuf,
    },
    /// An output directory (a Parquet dataset) cannot be written into.
    #[error("{}: {reason}", path.display())]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An output file to resume holds a line that is not ours.
    #[error("{} line {line}: {reason}", path.display())]
    Output {
        /// The output file.
        path: PathBuf,
        /// Its 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A tensor could not be read back.
    #[error("tensor: {detail}")]
    Tensor {
        /// What happened.
        detail: String,
    },
}

/// The [`InferenceError::Io`] of `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> InferenceError + '_ {
    move |source| InferenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `text` with every run of white space (newlines too) folded into one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `err` and its causes on one line ([`one_line`]), each cause once: a cause whose text an
/// outer message already quotes is not repeated. What the binaries print for a failure,
/// and the Python package's exception messages.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = err.source();
    }
    one_line(&line)
}
