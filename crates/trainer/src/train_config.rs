//! Training settings of one category ([`TrainConfig`]), read from `configs/<category>.toml`.
//!
//! Every field has a default (the seed hyperparameters: LoRA r 8 / alpha 16 on query and
//! value of the top 4 layers, BCE, AdamW lr 3e-4, batch 8 products, 3 epochs); unknown
//! fields are errors, and [`TrainConfig::validate`] names the bad field and value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use lamoda_data::Category;
use lamoda_model::LoraConfig;

use lamoda_inference::lexical::LexicalSettings;
use lamoda_inference::{Pooling, RuntimeSettings};

use crate::error::TrainError;

/// LoRA settings (the layers are chosen by [`TrainConfig::trainable_layers`]).
/// Missing fields take the model crate's defaults ([`LoraConfig::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank `r` (default 8).
    pub rank: usize,
    /// Scale numerator: the update is `alpha / r · A·B` (default 16).
    pub alpha: f64,
    /// Adapted projections, names from `lamoda_model::lora::LORA_TARGETS`
    /// (default `["query", "value"]`).
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        let LoraConfig {
            rank,
            alpha,
            targets,
            ..
        } = LoraConfig::default();
        Self {
            rank,
            alpha,
            targets,
        }
    }
}

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Loss {
    /// Mean binary cross-entropy over products × tags (`loss = "bce"`).
    #[default]
    Bce,
    /// Focal loss, BCE weighted by `(1 − p_t)^gamma` (`loss = { focal = { gamma = 2.0 } }`).
    Focal {
        /// Focusing parameter (≥ 0; 0 is BCE).
        gamma: f64,
    },
}

/// Hyperparameters of one category's adapter training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// LoRA rank, alpha and targets.
    #[serde(default)]
    pub lora: LoraSettings,
    /// LoRA on the top N layers only (default 4); the layers below run once, without
    /// gradients, and their outputs are cached.
    #[serde(default = "default_trainable_layers")]
    pub trainable_layers: usize,
    /// Peak learning rate of AdamW (default 3e-4).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Peak learning rate of the head (same schedule); unset = `lr`.
    #[serde(default)]
    pub head_lr: Option<f64>,
    /// Start the head's biases at the log-odds of each tag's training frequency, so the
    /// untrained model already ranks like the prior (default true).
    #[serde(default = "default_true")]
    pub prior_bias_init: bool,
    /// AdamW decoupled weight decay (default 0.01).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Share of all steps spent warming the rate up linearly from 0; it then decays
    /// linearly to 0 (default 0.1).
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
    /// Products per optimisation step (default 8).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Passes over the training split (default 3).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Seed of the adapter/head initialisation and of the shuffling (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Each review is cut to this many tokens, closing special token kept (default 64).
    #[serde(default = "default_max_tokens")]
    pub max_tokens_per_review: usize,
    /// Only the first N reviews of a product are read (default 32).
    #[serde(default = "default_max_reviews")]
    pub max_reviews_per_product: usize,
    /// The loss (default BCE).
    #[serde(default)]
    pub loss: Loss,
    /// How reviews combine into a product (default: the mean of the review vectors).
    #[serde(default)]
    pub pooling: Pooling,
    /// Stop after this many epochs without a better dev micro-F1; 0 = never (default 0).
    #[serde(default)]
    pub patience: usize,
    /// Tune one threshold per tag on dev after training and save them (default false).
    #[serde(default)]
    pub tune_thresholds: bool,
    /// Choose one threshold for every tag on the dev split (0.20–0.50), saved like
    /// per-tag thresholds; ignored when `tune_thresholds` is set.
    #[serde(default)]
    pub tune_global_threshold: bool,
    /// Prepended to every review before tokenising (default `"passage: "`, as e5 expects).
    #[serde(default = "default_prefix")]
    pub text_prefix: String,
    /// Products per batch when only predicting (default 32; `batch_size` of the
    /// adapter's `runtime.json`).
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// The lexical branch (`[lexical]`): a stem-bag logistic regression averaged with
    /// the encoder's probabilities; absent = encoder alone.
    #[serde(default)]
    pub lexical: Option<LexicalSettings>,
}

fn default_trainable_layers() -> usize {
    4
}
fn default_lr() -> f64 {
    3e-4
}
fn default_true() -> bool {
    true
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_warmup_ratio() -> f64 {
    0.1
}
fn default_batch_size() -> usize {
    8
}
fn default_epochs() -> usize {
    3
}
fn default_seed() -> u64 {
    42
}
fn default_max_tokens() -> usize {
    64
}
fn default_max_reviews() -> usize {
    32
}
fn default_prefix() -> String {
    "passage: ".into()
}
fn default_eval_batch() -> usize {
    32
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lora: LoraSettings::default(),
            trainable_layers: default_trainable_layers(),
            lr: default_lr(),
            head_lr: None,
            prior_bias_init: true,
            weight_decay: default_weight_decay(),
            warmup_ratio: default_warmup_ratio(),
            batch_size: default_batch_size(),
            epochs: default_epochs(),
            seed: default_seed(),
            max_tokens_per_review: default_max_tokens(),
            max_reviews_per_product: default_max_reviews(),
            loss: Loss::default(),
            pooling: Pooling::default(),
            patience: 0,
            tune_thresholds: false,
            tune_global_threshold: false,
            text_prefix: default_prefix(),
            eval_batch_size: default_eval_batch(),
            lexical: None,
        }
    }
}

impl TrainConfig {
    /// `configs/<category>.toml` inside `configs_dir`.
    pub fn path_in(configs_dir: &Path, category: Category) -> PathBuf {
        configs_dir.join(format!("{}.toml", category.name()))
    }

    /// Read `configs_dir/<category>.toml` (defaults when the file does not exist) and
    /// validate it (without knowing the encoder's depth).
    pub fn load(configs_dir: &Path, category: Category) -> Result<Self, TrainError> {
        let path = Self::path_in(configs_dir, category);
        if !path.exists() {
            return Ok(Self::default());
        }
        Self::load_file(&path)
    }

    /// The config a training run recorded in the adapter directory `dir`
    /// (`train_config.json`).
    pub fn read_record(dir: &Path) -> Result<Self, TrainError> {
        Ok(lamoda_inference::format::read_json(
            &dir.join(lamoda_inference::format::TRAIN_CONFIG_FILE),
        )?)
    }

    /// Read and validate one TOML file.
    pub fn load_file(path: &Path) -> Result<Self, TrainError> {
        let config: Self = lamoda_data::read_toml(path)?;
        config.validate(path, None)?;
        Ok(config)
    }

    /// Check every field; `path` names the file in errors, `num_layers` (when known) bounds
    /// [`TrainConfig::trainable_layers`].
    pub fn validate(&self, path: &Path, num_layers: Option<usize>) -> Result<(), TrainError> {
        let bad = |field: &'static str, value: String, reason: &str| TrainError::Config {
            path: path.to_path_buf(),
            field,
            value,
            reason: reason.to_string(),
        };
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(bad(field, "0".into(), "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("lora.rank", self.lora.rank)?;
        positive("trainable_layers", self.trainable_layers)?;
        positive("batch_size", self.batch_size)?;
        positive("epochs", self.epochs)?;
        positive("max_reviews_per_product", self.max_reviews_per_product)?;
        positive("eval_batch_size", self.eval_batch_size)?;
        if self.max_tokens_per_review < 3 {
            return Err(bad(
                "max_tokens_per_review",
                self.max_tokens_per_review.to_string(),
                "must be at least 3 (two special tokens and one piece)",
            ));
        }
        if !(self.lora.alpha.is_finite() && self.lora.alpha > 0.0) {
            return Err(bad(
                "lora.alpha",
                self.lora.alpha.to_string(),
                "must be positive",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 1.0) {
            return Err(bad("lr", self.lr.to_string(), "must be within (0, 1)"));
        }
        if let Some(h) = self.head_lr
            && !(h.is_finite() && h > 0.0 && h < 1.0)
        {
            return Err(bad("head_lr", h.to_string(), "must be within (0, 1)"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                self.weight_decay.to_string(),
                "must be ≥ 0",
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(bad(
                "warmup_ratio",
                self.warmup_ratio.to_string(),
                "must be within [0, 1)",
            ));
        }
        if let Loss::Focal { gamma } = self.loss
            && !(gamma.is_finite() && gamma >= 0.0)
        {
            return Err(bad("loss.focal.gamma", gamma.to_string(), "must be ≥ 0"));
        }
        if let Some(lexical) = &self.lexical {
            lexical.validate(path)?;
        }
        if let Some(n) = num_layers
            && self.trainable_layers > n
        {
            return Err(bad(
                "trainable_layers",
                self.trainable_layers.to_string(),
                &format!("the encoder has only {n} layers"),
            ));
        }
        // Target names and rank are checked against the encoder by lamoda-model.
        self.lora_config(num_layers.unwrap_or(self.trainable_layers))
            .validate(num_layers.unwrap_or(self.trainable_layers))
            .map_err(|e| {
                bad(
                    "lora.targets",
                    format!("{:?}", self.lora.targets),
                    &e.to_string(),
                )
            })
    }

    /// The model crate's LoRA config for an encoder of `num_layers` layers: adapters on
    /// layers `num_layers − trainable_layers ..`.
    pub fn lora_config(&self, num_layers: usize) -> LoraConfig {
        LoraConfig {
            rank: self.lora.rank,
            alpha: self.lora.alpha,
            targets: self.lora.targets.clone(),
            first_layer: num_layers.saturating_sub(self.trainable_layers),
        }
    }

    /// How the trained adapter reads reviews: what `runtime.json` records.
    pub fn runtime(&self) -> RuntimeSettings {
        RuntimeSettings {
            text_prefix: self.text_prefix.clone(),
            max_tokens_per_review: self.max_tokens_per_review,
            max_reviews_per_product: self.max_reviews_per_product,
            pooling: self.pooling,
            batch_size: self.eval_batch_size,
            // Training and its figures are fp32; a bundle is switched with
            // `Tagger::set_precision` or its `runtime.json` once measured (§19).
            precision: lamoda_model::Precision::Fp32,
        }
    }
}
