use std::path::PathBuf;

/// Everything that can go wrong in the curation pipeline, each naming where.
///
/// Line numbers are 1-based lines of the file named.
#[derive(Debug, thiserror::Error)]
pub enum CurationError {
    /// A file could not be read, written or synced.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("cannot read", "cannot write", …).
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of a label store (JSONL) that is not a label record. A cut last line (a
    /// kill mid-write) is not an error: it is dropped and redone.
    #[error("{path}: line {line}: not a label record: {reason}; line {value:?}")]
    StoreLine {
        /// The store.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The parser's message.
        reason: String,
        /// The line (shortened when long).
        value: String,
    },
    /// A field of an input file holds a value outside what is allowed.
    #[error("{path}: line {line}, field `{field}`: {reason}; value {value:?}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The line (for CSV: the 1-based data row).
        line: usize,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
        /// The value (shortened when long).
        value: String,
    },
    /// A product table without the `tags` column the pool reads.
    #[error(
        "{path}: no `tags` column: the pool needs raw tags (`; `-separated, as in \
         reviews_sampled_with_tags.csv) or a label store (.jsonl)"
    )]
    NoTags {
        /// The table.
        path: PathBuf,
    },
    /// The prompt file cannot be used.
    #[error("{path}: {reason}")]
    Prompt {
        /// The prompt file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range (`field` is the option's name).
    #[error("{field}: {reason}; value {value:?}")]
    Config {
        /// The option.
        field: &'static str,
        /// What is wrong.
        reason: String,
        /// The value given.
        value: String,
    },
    /// A workflow setting is out of range: `message` says which option (as on the command
    /// line), the rule and, where it helps, the value.
    #[error("{message}")]
    Setting {
        /// The option (`--threshold`, `--folds`, …).
        field: &'static str,
        /// The value given.
        value: String,
        /// The whole message, e.g. `--threshold must be a cosine in -1..1, not 2`.
        message: String,
    },
    /// A text the workflow needs a vector of is not among the vectors it was given.
    #[error("no vector for {what} {text:?}")]
    MissingVector {
        /// What the text is (`etalon tag`, `pool tag`).
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A raw-tag pool without a tag: nothing to consolidate.
    #[error("{path}: no tags")]
    EmptyPool {
        /// The pool file.
        path: PathBuf,
    },
    /// The async runtime (of the LLM requests) could not be started.
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        /// The OS error.
        source: std::io::Error,
    },
    /// The chat server refused the whole run (bad key, unknown model or route): every
    /// product would fail the same way, so labeling stops.
    #[error("{url}: {reason}")]
    Server {
        /// The endpoint.
        url: String,
        /// The status and the server's message.
        reason: String,
    },
    /// A chat-client setting.
    #[error(transparent)]
    Llm(#[from] lamoda_llm::LlmError),
    /// A data file read through `lamoda-data`.
    #[error(transparent)]
    Data(#[from] lamoda_data::DataError),
    /// The base model (loading, tokenising, encoding).
    #[error(transparent)]
    Model(#[from] lamoda_model::ModelError),
    /// A CSV file could not be parsed or written (`line` 0 when unknown).
    #[error("{path}: line {line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The line (1-based data row), 0 when the parser does not say.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A column the file must have is missing.
    #[error("{path}: no `{column}` column (expected columns: {expected})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The columns the file must have.
        expected: String,
    },
}

/// `text` cut to 200 characters (with `…`), for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

/// A CSV error of the file `path` (the line where the parser knows it, else 0).
pub(crate) fn csv_error(path: &std::path::Path, e: csv::Error) -> CurationError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    CurationError::Csv {
        path: path.to_owned(),
        line,
        reason: e.to_string(),
    }
}

/// A CSV writer on a new file at `path` (an error names the file).
pub(crate) fn create_csv(
    path: &std::path::Path,
) -> Result<csv::Writer<std::fs::File>, CurationError> {
    let file = std::fs::File::create(path).map_err(|source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot write",
        source,
    })?;
    Ok(csv::Writer::from_writer(file))
}

/// Flushes a CSV writer of the file `path`.
pub(crate) fn flush_csv<W: std::io::Write>(
    path: &std::path::Path,
    writer: &mut csv::Writer<W>,
) -> Result<(), CurationError> {
    writer.flush().map_err(|source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot write",
        source,
    })
}

/// `value` as a cosine setting: finite and in -1..1.
pub(crate) fn check_cosine(field: &'static str, value: f32) -> Result<(), CurationError> {
    if value.is_finite() && (-1.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(CurationError::Setting {
            field,
            value: value.to_string(),
            message: format!("{field} must be a cosine in -1..1, not {value}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_text_on_a_char_boundary() {
        let long = "ё".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("короткий"), "короткий");
    }

    #[test]
    fn a_cosine_setting_outside_minus_one_to_one_names_the_option_and_value() {
        assert!(check_cosine("--threshold", 0.9).is_ok());
        assert!(check_cosine("--threshold", -1.0).is_ok());
        for bad in [1.5, f32::NAN, -2.0] {
            let err = check_cosine("--threshold", bad).expect_err("out of range");
            assert_eq!(
                err.to_string(),
                format!("--threshold must be a cosine in -1..1, not {bad}")
            );
        }
    }
}
