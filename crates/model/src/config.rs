//! The encoder's configuration, read from an HF `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which family of encoder the weights belong to; decides position-id handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelType {
    /// XLM-RoBERTa (e.g. bge-m3): positions start at `pad_token_id + 1` and skip padding.
    #[serde(rename = "xlm-roberta", alias = "roberta")]
    XlmRoberta,
    /// BERT (e.g. multilingual-e5-small): positions are `0..n`.
    #[serde(rename = "bert")]
    Bert,
}

/// The feed-forward activation (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum HiddenAct {
    /// Exact (erf) GELU.
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh-approximated GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
}

/// Sizes and variant of a BERT / XLM-R encoder. Field names follow HF `config.json`;
/// unknown fields are ignored so real configs (bge-m3, e5) deserialize as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// `"xlm-roberta"` or `"bert"`.
    pub model_type: ModelType,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Feed-forward activation.
    #[serde(default)]
    pub hidden_act: HiddenAct,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// Read and validate an HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ModelError::json(path, e))?;
        config.validate_at(path)?;
        Ok(config)
    }

    /// Write this config as JSON (HF field names).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ModelError::json(path, e))?;
        std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
    }

    /// Check that the sizes are consistent.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(Path::new("<memory>"))
    }

    fn validate_at(&self, path: &Path) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: &str| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            field,
            value,
            reason: reason.to_string(),
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(bad(field, value.to_string(), "must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(
                "num_attention_heads",
                self.num_attention_heads.to_string(),
                &format!("must divide hidden_size {}", self.hidden_size),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(bad(
                "layer_norm_eps",
                self.layer_norm_eps.to_string(),
                "must be in (0, 1)",
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(bad(
                "pad_token_id",
                self.pad_token_id.to_string(),
                &format!("must be below vocab_size {}", self.vocab_size),
            ));
        }
        if self.max_sequence_len() == 0 {
            return Err(bad(
                "max_position_embeddings",
                self.max_position_embeddings.to_string(),
                "leaves no room for a token after the XLM-R position offset",
            ));
        }
        Ok(())
    }

    /// The longest input (in tokens, specials included) the position table allows.
    pub fn max_sequence_len(&self) -> usize {
        match self.model_type {
            ModelType::Bert => self.max_position_embeddings,
            ModelType::XlmRoberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The multilingual-e5-small shape (BERT, 12 × 384, vocab 250 037).
    pub fn e5_small() -> Self {
        Self {
            model_type: ModelType::Bert,
            vocab_size: 250_037,
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            hidden_act: HiddenAct::Gelu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bge_m3_and_e5_configs_deserialize() {
        let bge = r#"{"_name_or_path":"","architectures":["XLMRobertaModel"],
            "attention_probs_dropout_prob":0.1,"bos_token_id":0,"classifier_dropout":null,
            "eos_token_id":2,"hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":1024,
            "initializer_range":0.02,"intermediate_size":4096,"layer_norm_eps":1e-05,
            "max_position_embeddings":8194,"model_type":"xlm-roberta","num_attention_heads":16,
            "num_hidden_layers":24,"output_past":true,"pad_token_id":1,
            "position_embedding_type":"absolute","torch_dtype":"float32",
            "transformers_version":"4.33.0","type_vocab_size":1,"use_cache":true,"vocab_size":250002}"#;
        let c: EncoderConfig = serde_json::from_str(bge).expect("bge-m3 config");
        c.validate().expect("valid");
        assert_eq!(c.model_type, ModelType::XlmRoberta);
        assert_eq!(c.max_sequence_len(), 8192);
        let e5 = r#"{"architectures":["BertModel"],"attention_probs_dropout_prob":0.1,
            "hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":384,
            "initializer_range":0.02,"intermediate_size":1536,"layer_norm_eps":1e-12,
            "max_position_embeddings":512,"model_type":"bert","num_attention_heads":12,
            "num_hidden_layers":12,"pad_token_id":0,"position_embedding_type":"absolute",
            "tokenizer_class":"XLMRobertaTokenizer","type_vocab_size":2,"vocab_size":250037}"#;
        let c: EncoderConfig = serde_json::from_str(e5).expect("e5 config");
        assert_eq!(c, EncoderConfig::e5_small());
    }

    #[test]
    fn heads_must_divide_hidden() {
        let mut c = EncoderConfig::e5_small();
        c.num_attention_heads = 5;
        let err = c.validate().expect_err("invalid").to_string();
        assert!(err.contains("num_attention_heads = 5"), "{err}");
    }
}
