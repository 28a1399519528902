//! The crate's errors.

/// A setting of the chat client or the re-ranking that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
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
}

/// `text` cut to 200 characters (with `…`), for error messages.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}
