//! The model bundle on disk: the one place its format is defined.
//!
//! A bundle is a directory that holds everything the runtime needs besides the base
//! encoder. The trainer writes it (through this crate's types); [`crate::Bundle::open`]
//! and [`crate::Tagger`] read it and check every part on load.
//!
//! ```text
//! <bundle>/
//!   bundle.json                 manifest (below); its `format` is checked first
//!   routing.toml                good_type → category, with the fallback category
//!   <category>/                 one per category the manifest lists
//!     pool.toml                 the etalon pool the adapter was trained on, with its
//!                               [[exclusive]] groups (the etalon_tags/ layout)
//!     adapter_config.json       lamoda-model's adapter manifest (format "lamoda-adapter/1"):
//!                               base_id, base_sha256, lora {rank, alpha, targets,
//!                               first_layer}, heads [{name, tags}] (tags in output order)
//!     adapter.safetensors       the trained tensors only, f32 (Burn's module paths):
//!                               encoder.layers.{L}.attention.{query,value}.weight.lora.a
//!                               [hidden, r] and ….lora.b [r, hidden] for the adapted
//!                               layers L ≥ lora.first_layer; heads.0.linear.weight
//!                               [hidden, T], heads.0.linear.bias [T], heads.0.shift and
//!                               heads.0.scale [hidden] (the head's fixed standardisation);
//!                               metadata base_sha256
//!     runtime.json              RuntimeSettings: text_prefix, max_tokens_per_review,
//!                               max_reviews_per_product, pooling ("log_mean_exp" | "mean"),
//!                               batch_size
//!     thresholds.json           optional: {tags: [T], thresholds: [T]} chosen on dev
//!     lexical.json              optional lexical branch (format "lamoda-lexical/2"):
//!                               settings (LexicalSettings, the fusion `weight` among
//!                               them), tags [T], vocabulary [F], char_vocabulary [G],
//!                               frozen_dim H (0 or absent: no frozen view)
//!     lexical.safetensors       f32: idf [F], weight [T, F], bias [T]; char_idf [G],
//!                               char_weight [T, G], char_bias [T]; frozen_mean [H],
//!                               frozen_std [H], frozen_weight [T, H], frozen_bias [T];
//!                               second_weight [T, V·T], second_bias [T] (V views: stems,
//!                               n-grams, frozen, those present)
//!     careful.json              optional careful calibration (format "lamoda-careful/1",
//!                               crate::careful): tags [T], features [5], review_threshold,
//!                               weights [5], bias, tag_bias [T], tag_slope [T], threshold,
//!                               min_mentions, min_tags, fitted_on; when present, the
//!                               answer's probabilities are the calibrated ones and are
//!                               decoded at its threshold (0 tags allowed with min_tags 0)
//!     metrics.json, train_config.json   the training record (read by xtask, not here)
//! ```
//!
//! `bundle.json`:
//! ```json
//! { "format": "lamoda-bundle/1",
//!   "base": { "name": "e5-small", "sha256": "<hex of model.safetensors>",
//!             "default_dir": "../models/e5-small",
//!             "provide": "lamoda-tags fetch-base e5-small" },
//!   "categories": ["accs", "bags", "beauty", "clothes", "shoes"] }
//! ```
//! `default_dir` is relative to the bundle directory. A bundle of a newer format, a base
//! whose sha256 differs, a listed category whose files are missing, a pool that disagrees
//! with its head (or its thresholds or lexical branch), and a routing table that sends a
//! good type to a category the bundle lacks are each one clear error
//! ([`crate::InferenceError`]).
//!
//! Probabilities of a product: the encoder's (LoRA adapter + head, pooled as
//! `runtime.json` says) averaged with the lexical branch's as
//! `(1 − weight) · p_encoder + weight · p_lexical`; decoding (threshold or the saved
//! per-tag thresholds, 1–6 tags, never two of one exclusive group) is
//! [`lamoda_data::decode`].

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::InferenceError;
use crate::error::io_err;

/// The manifest of a bundle.
pub const BUNDLE_FILE: &str = "bundle.json";
/// The format this build writes and reads.
pub const BUNDLE_FORMAT: &str = "lamoda-bundle/1";
/// The routing table inside a bundle.
pub const ROUTING_FILE: &str = "routing.toml";
/// A category's pool inside its adapter directory.
pub const POOL_FILE: &str = "pool.toml";
/// A category's runtime settings inside its adapter directory.
pub const RUNTIME_FILE: &str = "runtime.json";
/// A category's tuned thresholds inside its adapter directory.
pub const THRESHOLDS_FILE: &str = "thresholds.json";
/// A category's training record: figures on dev beside the prior (xtask reads it).
pub const METRICS_FILE: &str = "metrics.json";
/// The careful calibration of an adapter, optional ([`crate::careful::CarefulCalibration`]).
pub const CAREFUL_FILE: &str = "careful.json";
/// A category's training config (the trainer's record; not read at run time).
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";

/// One set of figures in `metrics.json` (the trainer writes more fields; these are the
/// ones the runtime shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
pub struct RecordedFigures {
    /// Micro-F1.
    #[serde(default)]
    pub micro_f1: Option<f64>,
    /// Micro precision.
    #[serde(default, alias = "micro_precision")]
    pub precision: Option<f64>,
    /// Micro recall.
    #[serde(default, alias = "micro_recall")]
    pub recall: Option<f64>,
}

/// The careful-label figures `metrics.json` records (`careful.dev.model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
pub struct RecordedCareful {
    /// The careful dev split's figures.
    #[serde(default)]
    pub dev: Option<RecordedCarefulDev>,
}

/// `careful.dev` of `metrics.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
pub struct RecordedCarefulDev {
    /// The shipped answer's figures against the careful labels.
    #[serde(default)]
    pub model: Option<RecordedFigures>,
}

/// What an adapter's `metrics.json` records that the runtime shows (`/v1/model`): its
/// dev figures (tuned as shipped) beside the prior's, its split sizes and its careful-dev
/// figures. Other fields of the file are the trainer's record and are not read here.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
pub struct RecordedMetrics {
    /// Dev figures at the tuned thresholds.
    #[serde(default)]
    pub tuned: Option<RecordedFigures>,
    /// The frequency prior's dev figures.
    #[serde(default)]
    pub prior: Option<RecordedFigures>,
    /// Training products.
    #[serde(default)]
    pub n_train: Option<u64>,
    /// Dev products.
    #[serde(default)]
    pub n_dev: Option<u64>,
    /// The careful-label figures, once calibrated.
    #[serde(default)]
    pub careful: Option<RecordedCareful>,
}

impl RecordedMetrics {
    /// Reads `<adapter_dir>/metrics.json`; `Ok(None)` when the adapter has none.
    pub fn read(adapter_dir: &Path) -> Result<Option<Self>, InferenceError> {
        let path = adapter_dir.join(METRICS_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// The careful-dev figures of the shipped answer, when recorded.
    pub fn careful_dev(&self) -> Option<RecordedFigures> {
        self.careful?.dev?.model
    }
}

/// Reads a JSON file into `T`, naming the file on failure.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, InferenceError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| InferenceError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` as pretty JSON to `path`, naming the file on failure.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), InferenceError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| InferenceError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_read_what_the_runtime_shows_and_name_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(RecordedMetrics::read(dir.path()).expect("none"), None);
        // The trainer's shape, with the careful section calibrate adds.
        std::fs::write(
            dir.path().join(METRICS_FILE),
            r#"{"category": "bags", "epoch": 6, "n_train": 286, "n_dev": 80,
                "dev": {"micro_f1": 0.61, "micro_precision": 0.5},
                "tuned": {"micro_f1": 0.647, "micro_precision": 0.6, "micro_recall": 0.7},
                "prior": {"micro_f1": 0.522},
                "history": [{"epoch": 1}],
                "careful": {"dev": {"model": {"precision": 0.797, "recall": 0.785,
                            "micro_f1": 0.791, "n": 80}}}}"#,
        )
        .expect("write");
        let m = RecordedMetrics::read(dir.path())
            .expect("read")
            .expect("some");
        assert_eq!(m.n_train, Some(286));
        assert_eq!(m.tuned.and_then(|f| f.micro_f1), Some(0.647));
        assert_eq!(m.tuned.and_then(|f| f.recall), Some(0.7));
        assert_eq!(m.prior.and_then(|f| f.micro_f1), Some(0.522));
        let careful = m.careful_dev().expect("careful dev");
        assert_eq!(
            (careful.precision, careful.recall, careful.micro_f1),
            (Some(0.797), Some(0.785), Some(0.791))
        );
        std::fs::write(dir.path().join(METRICS_FILE), "{\"n_train\": \"many\"}").expect("write");
        let e = RecordedMetrics::read(dir.path())
            .expect_err("bad")
            .to_string();
        assert!(e.contains(METRICS_FILE), "{e}");
    }
}
