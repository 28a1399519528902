//! LoRA adapters (Burn's own `apply_lora`), the multilabel [`TagHead`], and saving /
//! loading only the trained parts ([`TagModel::save_adapter`], [`TagModel::load_adapter`]).

use std::path::{Path, PathBuf};

use burn::module::{Lora, Module, Param, ParamGroup};
use burn::nn::{Linear, LinearConfig};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::{Encoder, mean_pool};
use crate::error::{ModelError, Result};
use crate::hf::BaseInfo;

/// The projections LoRA may target, by name.
pub const LORA_TARGETS: &[(&str, &str)] = &[
    ("query", "attention.query"),
    ("key", "attention.key"),
    ("value", "attention.value"),
    ("attention_output", "attention.output"),
    ("intermediate", "intermediate"),
    ("output", "output"),
];

/// Where and how big the LoRA adapters are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r`.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Scale numerator; the update is `alpha / r · A·B`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Projections to adapt, names from [`LORA_TARGETS`].
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Adapt only layers `first_layer..` (lower layers stay exactly the base, so their
    /// output can be cached).
    #[serde(default)]
    pub first_layer: usize,
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["query".into(), "value".into()]
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            targets: default_targets(),
            first_layer: 0,
        }
    }
}

impl LoraConfig {
    /// Check rank, alpha and target names against an encoder with `num_layers` layers.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: String| ModelError::InvalidConfig {
            path: PathBuf::from("<lora>"),
            field,
            value,
            reason,
        };
        if self.rank == 0 {
            return Err(bad("rank", "0".into(), "must be positive".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(bad(
                "alpha",
                self.alpha.to_string(),
                "must be positive".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(bad(
                "targets",
                "[]".into(),
                "name at least one projection".into(),
            ));
        }
        for t in &self.targets {
            if !LORA_TARGETS.iter().any(|(name, _)| name == t) {
                let known: Vec<&str> = LORA_TARGETS.iter().map(|(n, _)| *n).collect();
                return Err(bad(
                    "targets",
                    t.clone(),
                    format!("unknown; use one of {known:?}"),
                ));
            }
        }
        if self.first_layer >= num_layers {
            return Err(bad(
                "first_layer",
                self.first_layer.to_string(),
                format!("the encoder has {num_layers} layers"),
            ));
        }
        Ok(())
    }

    /// Module paths of the adapted weights.
    pub fn weight_paths(&self, num_layers: usize) -> Vec<String> {
        (self.first_layer..num_layers)
            .flat_map(|l| {
                self.targets.iter().filter_map(move |t| {
                    LORA_TARGETS
                        .iter()
                        .find(|(name, _)| name == t)
                        .map(|(_, module)| format!("layers.{l}.{module}.weight"))
                })
            })
            .collect()
    }

    /// Attach adapters (A random, B = 0, so the output is unchanged) and freeze every base
    /// parameter, using Burn's `Module::apply_lora`.
    pub fn apply(&self, encoder: Encoder) -> Result<Encoder> {
        self.validate(encoder.num_layers())?;
        let group = ParamGroup::from_paths(self.weight_paths(encoder.num_layers()));
        Ok(encoder.apply_lora(Lora::new(self.rank, self.alpha).set_param_group(group)))
    }
}

/// A multilabel head: one logit per tag (apply a sigmoid outside).
///
/// The pooled embedding is standardised first, `(x − shift) · scale`, with fixed
/// per-dimension statistics of the training embeddings (set by the trainer, saved with the
/// head, never trained; identity until set). Sentence embeddings are dominated by a few
/// large dimensions; standardising them lets the linear map learn at one rate.
#[derive(Module, Debug)]
pub struct TagHead {
    /// Subtracted from each embedding dimension (`[hidden]`, fixed).
    pub shift: Param<Tensor<1>>,
    /// Multiplies each shifted dimension (`[hidden]`, fixed).
    pub scale: Param<Tensor<1>>,
    /// `hidden → n_tags`.
    pub linear: Linear,
    #[module(skip)]
    tags: Vec<String>,
}

impl TagHead {
    /// A fresh head for `tags` over `hidden`-wide embeddings, with the identity
    /// standardisation.
    pub fn new(hidden: usize, tags: Vec<String>, device: &Device) -> Self {
        Self {
            shift: fixed(Tensor::zeros([hidden], device)),
            scale: fixed(Tensor::ones([hidden], device)),
            linear: LinearConfig::new(hidden, tags.len().max(1)).init(device),
            tags,
        }
    }

    /// Sets the standardisation from the training embeddings' per-dimension `mean` and
    /// `std` (a zero `std` leaves that dimension unscaled).
    pub fn set_standardisation(&mut self, mean: Tensor<1>, std: Tensor<1>) {
        let scale = std
            .clone()
            .recip()
            .mask_fill(std.lower_equal_elem(1e-6), 1.0);
        self.shift = fixed(mean);
        self.scale = fixed(scale);
    }

    /// Marks the standardisation as not trained (after loading, for instance).
    pub fn freeze_standardisation(mut self) -> Self {
        self.shift = self.shift.set_require_grad(false);
        self.scale = self.scale.set_require_grad(false);
        self
    }

    /// The tag names, in logit order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Logits `[batch, n_tags]` for pooled embeddings `[batch, hidden]`.
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        let shift = self.shift.val().unsqueeze::<2>();
        let scale = self.scale.val().unsqueeze::<2>();
        self.linear.forward((pooled - shift) * scale)
    }
}

fn fixed(t: Tensor<1>) -> Param<Tensor<1>> {
    Param::from_tensor(t).set_require_grad(false)
}

/// Names one head in an adapter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// The category (e.g. `shoes`).
    pub name: String,
    /// Its tags, in logit order.
    pub tags: Vec<String>,
}

/// The JSON beside an adapter's weights: which base it was trained on and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Format marker.
    pub format: String,
    /// Id of the base (directory name or hub id).
    pub base_id: String,
    /// sha256 of the base's `model.safetensors`.
    pub base_sha256: String,
    /// The LoRA settings.
    pub lora: LoraConfig,
    /// The heads, in order.
    pub heads: Vec<HeadSpec>,
}

/// The adapter format marker.
pub const ADAPTER_FORMAT: &str = "lamoda-adapter/1";
/// Adapter config file name inside an adapter directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// Adapter weights file name inside an adapter directory.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter.safetensors";

/// An encoder with LoRA adapters plus one [`TagHead`] per category.
#[derive(Module, Debug)]
pub struct TagModel {
    /// The (adapted) encoder.
    pub encoder: Encoder,
    /// One head per category.
    pub heads: Vec<TagHead>,
    #[module(skip)]
    head_names: Vec<String>,
    #[module(skip)]
    lora: LoraConfig,
}

/// Only the trained tensors: LoRA factors and heads.
const TRAINED_REGEX: &str = r"(\.lora\.|^heads\.)";

fn is_trained(path: &str) -> bool {
    path.contains(".lora.") || path.starts_with("heads.")
}

impl TagModel {
    /// Attach LoRA to `encoder` (freezing the base) and fresh heads for `heads`.
    pub fn new(
        encoder: Encoder,
        lora: LoraConfig,
        heads: Vec<HeadSpec>,
        device: &Device,
    ) -> Result<Self> {
        let encoder = lora.apply(encoder)?;
        let hidden = encoder.config().hidden_size;
        let head_names = heads.iter().map(|h| h.name.clone()).collect();
        let heads = heads
            .into_iter()
            .map(|h| TagHead::new(hidden, h.tags, device))
            .collect();
        Ok(Self {
            encoder,
            heads,
            head_names,
            lora,
        })
    }

    /// The LoRA settings.
    pub fn lora(&self) -> &LoraConfig {
        &self.lora
    }

    /// Index of the head named `name`.
    pub fn head_index(&self, name: &str) -> Option<usize> {
        self.head_names.iter().position(|n| n == name)
    }

    /// The head specs, in order.
    pub fn head_specs(&self) -> Vec<HeadSpec> {
        self.head_names
            .iter()
            .zip(&self.heads)
            .map(|(name, h)| HeadSpec {
                name: name.clone(),
                tags: h.tags().to_vec(),
            })
            .collect()
    }

    /// Logits of head `head` for a batch, through the whole encoder.
    pub fn forward(
        &self,
        head: usize,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Option<Tensor<2>> {
        let h = self.heads.get(head)?;
        Some(h.forward(self.encoder.forward(input_ids, attention_mask)))
    }

    /// Logits of head `head` from cached hidden states of layer `lora.first_layer`: runs
    /// only the adapted layers.
    pub fn forward_from_cache(
        &self,
        head: usize,
        hidden: Tensor<3>,
        attention_mask: Tensor<2, Int>,
    ) -> Option<Tensor<2>> {
        let h = self.heads.get(head)?;
        let n = self.encoder.num_layers();
        let top = self
            .encoder
            .forward_layers(hidden, &attention_mask, self.lora.first_layer..n);
        Some(h.forward(mean_pool(top, &attention_mask)))
    }

    /// Write `adapter.safetensors` (LoRA factors + heads only) and `adapter_config.json`
    /// naming `base` into `dir`.
    pub fn save_adapter(&self, dir: &Path, base: &BaseInfo) -> Result<AdapterConfig> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let config = AdapterConfig {
            format: ADAPTER_FORMAT.into(),
            base_id: base.id.clone(),
            base_sha256: base.weights_sha256.clone(),
            lora: self.lora.clone(),
            heads: self.head_specs(),
        };
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let mut store = SafetensorsStore::from_file(&weights)
            .with_regex(TRAINED_REGEX)
            .overwrite(true)
            .metadata("base_sha256", base.weights_sha256.clone());
        self.save_into(&mut store)
            .map_err(|e| ModelError::Safetensors {
                path: weights.clone(),
                detail: e.to_string(),
            })?;
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).map_err(|e| ModelError::json(&path, e))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        Ok(config)
    }

    /// Read an adapter directory's config.
    pub fn read_adapter_config(dir: &Path) -> Result<AdapterConfig> {
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let config: AdapterConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::json(&path, e))?;
        if config.format != ADAPTER_FORMAT {
            return Err(ModelError::InvalidConfig {
                path,
                field: "format",
                value: config.format,
                reason: format!("expected {ADAPTER_FORMAT}"),
            });
        }
        Ok(config)
    }

    /// Load an adapter saved by [`TagModel::save_adapter`] onto the base `encoder`
    /// described by `base`. Refuses an adapter made for a base with other weights.
    pub fn load_adapter(
        dir: &Path,
        encoder: Encoder,
        base: &BaseInfo,
        device: &Device,
    ) -> Result<(Self, AdapterConfig)> {
        let config = Self::read_adapter_config(dir)?;
        if config.base_sha256 != base.weights_sha256 {
            return Err(ModelError::WrongBase {
                path: dir.join(ADAPTER_CONFIG_FILE),
                expected_id: config.base_id,
                expected_hash: config.base_sha256,
                found_id: base.id.clone(),
                found_hash: base.weights_sha256.clone(),
            });
        }
        let mut model = Self::new(encoder, config.lora.clone(), config.heads.clone(), device)?;
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let mut store = SafetensorsStore::from_file(&weights)
            .with_regex(TRAINED_REGEX)
            .allow_partial(true)
            .validate(false);
        let result = model
            .load_from(&mut store)
            .map_err(|e| ModelError::Safetensors {
                path: weights.clone(),
                detail: e.to_string(),
            })?;
        if let Some(err) = result.errors.first() {
            return Err(ModelError::Mismatch {
                path: weights,
                key: err
                    .to_string()
                    .split('\'')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string(),
                detail: err.to_string(),
            });
        }
        // Base parameters are not in the file by design; only trained ones must be.
        if let Some((param, _)) = result.missing.iter().find(|(p, _)| is_trained(p)) {
            return Err(ModelError::MissingKey {
                path: weights,
                key: param.clone(),
                param: param.clone(),
            });
        }
        model.heads = model
            .heads
            .into_iter()
            .map(TagHead::freeze_standardisation)
            .collect();
        Ok((model, config))
    }
}

/// Mean binary cross-entropy of `logits` against 0/1 `targets` (both `[batch, n_tags]`),
/// computed stably as `max(x, 0) − x·y + ln(1 + e^−|x|)`.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let x = logits;
    let loss =
        x.clone().clamp_min(0.0) - x.clone() * targets + x.abs().neg().exp().add_scalar(1.0).log();
    loss.mean()
}
