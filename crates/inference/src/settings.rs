//! [`RuntimeSettings`]: how an adapter reads a product's reviews (`runtime.json` in its
//! directory): the text prefix, the review caps, how reviews pool into a product, the
//! batch size and the encoder's precision. Training reads reviews with the same settings, so they are part of the
//! model, not of the training recipe.

use std::path::Path;

use lamoda_model::Precision;
use serde::{Deserialize, Serialize};

use crate::InferenceError;

/// How a product's reviews are combined into the product's tag logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The head reads each review; a tag's product logit is the log of the mean of its
    /// per-review odds, `log(mean_r exp(z_r))`: a soft maximum, so one review that
    /// clearly says "roomy" counts even among many that do not (multiple-instance
    /// learning). What the shipped adapters use.
    LogMeanExp,
    /// The head reads the mean of the reviews' vectors.
    #[default]
    Mean,
}

/// How an adapter reads reviews; `runtime.json` of each adapter directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Prepended to every review before tokenising (`"passage: "`, as e5 expects).
    pub text_prefix: String,
    /// Each review is cut to this many tokens, closing special token kept.
    pub max_tokens_per_review: usize,
    /// Only the first N reviews of a product are read by the encoder.
    pub max_reviews_per_product: usize,
    /// How reviews combine into a product.
    pub pooling: Pooling,
    /// Products per encoder batch.
    pub batch_size: usize,
    /// How the encoder's projections multiply at run time (`fp32` when the file does not
    /// say; training always runs fp32). Flags of `predict-tags`, the server, `embed` and
    /// the bench override it ([`crate::Tagger::set_precision`]).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            text_prefix: "passage: ".into(),
            max_tokens_per_review: 64,
            max_reviews_per_product: 32,
            pooling: Pooling::Mean,
            batch_size: 32,
            precision: Precision::Fp32,
        }
    }
}

impl RuntimeSettings {
    /// Checks every field; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), InferenceError> {
        let bad = |field: &'static str, value: usize, reason: &str| InferenceError::Config {
            path: path.to_path_buf(),
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if self.max_tokens_per_review < 3 {
            return Err(bad(
                "max_tokens_per_review",
                self.max_tokens_per_review,
                "must be at least 3 (two special tokens and one piece)",
            ));
        }
        if self.max_reviews_per_product == 0 {
            return Err(bad("max_reviews_per_product", 0, "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", 0, "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_defaults_to_fp32_and_names_what_it_cannot_read() {
        let old = r#"{"text_prefix": "passage: ", "max_tokens_per_review": 64,
            "max_reviews_per_product": 32, "pooling": "log_mean_exp", "batch_size": 32}"#;
        let s: RuntimeSettings = serde_json::from_str(old).expect("a file of before §19");
        assert_eq!(s.precision, Precision::Fp32);
        let int8 = old.replace("32}", r#"32, "precision": "int8"}"#);
        let s: RuntimeSettings = serde_json::from_str(&int8).expect("int8");
        assert_eq!(s.precision, Precision::Int8);
        let back: RuntimeSettings =
            serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("again");
        assert_eq!(back, s);
        let bf16 = old.replace("32}", r#"32, "precision": "bf16"}"#);
        let err = serde_json::from_str::<RuntimeSettings>(&bf16).expect_err("not offered");
        assert!(err.to_string().contains("bf16"), "{err}");
    }
}
