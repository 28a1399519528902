use std::path::PathBuf;

/// Everything that can be wrong with the data, each naming where it happened.
///
/// Row numbers are 1-based data rows (the header is row 0), as a spreadsheet
/// user counts them after the header line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file has no header and no rows.
    #[error("{path}: the file is empty")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The file has a header but no data rows.
    #[error("{path}: no data rows after the header")]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// A required column is absent from the header.
    #[error("{path}: missing column `{column}` (header has: {found})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that is required.
        column: String,
        /// The columns the header does have, comma-separated.
        found: String,
    },
    /// The CSV structure itself is broken (unbalanced quotes, wrong field count).
    #[error("{path}: row {row}: malformed CSV: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The row.
        row: usize,
        /// What the CSV reader reported.
        message: String,
    },
    /// A field is not valid UTF-8.
    #[error("{path}: row {row}, field `{field}`: invalid UTF-8 in {value:?}")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The row.
        row: usize,
        /// The column.
        field: String,
        /// The field with invalid bytes replaced by U+FFFD.
        value: String,
    },
    /// A field that must hold JSON does not parse, or has the wrong shape.
    #[error("{path}: row {row}, field `{field}`: {expected}: {reason}; value {value:?}")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The row.
        row: usize,
        /// The column.
        field: String,
        /// What the field should hold, e.g. "a JSON list of strings".
        expected: &'static str,
        /// The parser's message.
        reason: String,
        /// The offending value (shortened when long).
        value: String,
    },
    /// A field has a value outside what is allowed.
    #[error("{path}: row {row}, field `{field}`: {reason}; value {value:?}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The row.
        row: usize,
        /// The column.
        field: String,
        /// Why the value is wrong.
        reason: String,
        /// The offending value (shortened when long).
        value: String,
    },
    /// A tag in the data is not in the category's etalon pool.
    #[error(
        "{path}: row {row}, field `tags`: unknown tag {tag:?}, not in the `{category}` etalon pool"
    )]
    UnknownTag {
        /// The file.
        path: PathBuf,
        /// The row.
        row: usize,
        /// The tag.
        tag: String,
        /// The category whose pool was checked.
        category: String,
    },
    /// A TOML configuration (etalon pool, routing) does not parse.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A configuration parses but is inconsistent.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A category name that is not one of ours.
    #[error("unknown category {name:?}; expected one of: {expected}")]
    UnknownCategory {
        /// The name given.
        name: String,
        /// The valid names.
        expected: String,
    },
}

/// Shortens a long value for an error message, keeping its start.
pub(crate) fn excerpt(value: &str) -> String {
    const MAX: usize = 120;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}
