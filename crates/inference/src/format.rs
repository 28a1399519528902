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
//!     metrics.json              the training record (AdapterMetrics: dev, prior and tuned
//!                               figures, branches, history, careful; read by xtask and
//!                               shown by the server, never needed to tag)
//!     train_config.json         the training config (the trainer's record)
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

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
/// A category's training record ([`AdapterMetrics`]): figures on dev beside the prior, the
/// careful-dev figures once calibrated (xtask and the server read it).
pub const METRICS_FILE: &str = "metrics.json";
/// The careful calibration of an adapter, optional ([`crate::careful::CarefulCalibration`]).
pub const CAREFUL_FILE: &str = "careful.json";
/// A category's training config (the trainer's record; not read at run time).
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";

/// What an adapter directory's `metrics.json` records: the training run's figures (the
/// best epoch's dev figures beside the prior's, each branch alone, the history), written
/// by the trainer, updated by `lamoda-tags train --keep-encoder` (dev, tuned, branches) and
/// `lamoda-tags calibrate` (careful). `xtask reproduce` compares the shipped adapters with
/// it; the server shows a view of it ([`RecordedMetrics`]).
///
/// Field names are those of the file. `tuned` and `branches` are written as `null` when
/// absent (and read as absent when missing: records older than the lexical branch have no
/// `branches`); `careful` is left out until the adapter is calibrated. Fields this type
/// does not know are ignored on reading and not written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterMetrics {
    /// The category.
    pub category: String,
    /// The best epoch (1-based).
    pub epoch: usize,
    /// Dev figures of the adapter's probabilities at threshold 0.5.
    pub dev: SetMetrics,
    /// Dev figures of the frequency prior fitted on the training rows.
    pub prior: SetMetrics,
    /// Dev figures at the thresholds tuned on the same dev rows (optimistic), when tuned.
    #[serde(default)]
    pub tuned: Option<SetMetrics>,
    /// Training rows.
    pub n_train: usize,
    /// Dev rows.
    pub n_dev: usize,
    /// Reviews cached (train + dev, after the per-product cap).
    pub n_reviews: usize,
    /// Seconds spent caching the lower layers.
    pub cache_seconds: f64,
    /// Seconds spent in training steps and dev evaluation (that run; resumed epochs
    /// excluded).
    pub train_seconds: f64,
    /// Every epoch run (including resumed ones).
    pub history: Vec<EpochRecord>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Each branch alone, when the lexical branch is on (`dev` and `tuned` are then of
    /// their average).
    #[serde(default)]
    pub branches: Option<BranchMetrics>,
    /// The careful-label figures and how the calibration was fitted, once calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub careful: Option<CarefulMetrics>,
}

impl AdapterMetrics {
    /// `<adapter_dir>/metrics.json`.
    pub fn path(adapter_dir: &Path) -> PathBuf {
        adapter_dir.join(METRICS_FILE)
    }

    /// Reads `<adapter_dir>/metrics.json`; a missing or malformed file is an error naming
    /// it.
    pub fn read(adapter_dir: &Path) -> Result<Self, InferenceError> {
        read_json(&Self::path(adapter_dir))
    }

    /// Reads `<adapter_dir>/metrics.json`; `Ok(None)` when the adapter has none.
    pub fn read_if_present(adapter_dir: &Path) -> Result<Option<Self>, InferenceError> {
        let path = Self::path(adapter_dir);
        if !path.is_file() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Writes the record to `<adapter_dir>/metrics.json` (pretty JSON), naming the file on
    /// failure.
    pub fn write(&self, adapter_dir: &Path) -> Result<(), InferenceError> {
        write_json(&Self::path(adapter_dir), self)
    }

    /// The dev figures of the adapter as it decodes: at its tuned thresholds when it has
    /// them, else at threshold 0.5.
    pub fn shipped(&self) -> &SetMetrics {
        self.tuned.as_ref().unwrap_or(&self.dev)
    }

    /// The careful-dev figures of the shipped answer (`careful.dev.model`), once
    /// calibrated.
    pub fn careful_dev(&self) -> Option<&SourceMetrics> {
        self.careful.as_ref().map(|c| &c.dev.model)
    }
}

/// The figures of one scored set of products (`lamoda_metrics::Metrics` as recorded):
/// `dev`, `prior`, `tuned` and each branch of `metrics.json`: the scores
/// `lamoda-metrics` computes, recorded as they are.
pub use lamoda_metrics::Metrics as SetMetrics;

/// One label's figures in [`SetMetrics::per_tag`].
pub use lamoda_metrics::TagScore as TagMetrics;

/// One epoch's figures in [`AdapterMetrics::history`] (also the trainer's checkpoint
/// record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Dev micro-F1 at threshold 0.5.
    pub dev_micro_f1: f64,
    /// Seconds the epoch's training steps took.
    pub seconds: f64,
}

/// Dev figures of an adapter's two branches, each alone at threshold 0.5
/// ([`AdapterMetrics::branches`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchMetrics {
    /// The encoder (adapter + head) alone.
    pub encoder: SetMetrics,
    /// The lexical branch alone.
    pub lexical: SetMetrics,
    /// Features (stems and character n-grams) in the lexical branch's vocabularies.
    pub vocabulary: usize,
    /// Seconds spent fitting the lexical branch.
    pub lexical_seconds: f64,
}

/// What `lamoda-tags calibrate` records ([`AdapterMetrics::careful`]): the careful-dev
/// figures and how the calibration was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarefulMetrics {
    /// Each tag source against the careful labels of the careful dev products.
    pub dev: CarefulDevMetrics,
    /// How the calibration (`careful.json`) was fitted.
    pub calibration: CalibrationRecord,
}

/// A category's careful-dev figures: each tag source against the careful labels, and the
/// shipped answer against the data set's own labels on the same products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarefulDevMetrics {
    /// The shipped answer (careful calibration when the bundle has one).
    pub model: SourceMetrics,
    /// The adapter's own decoding, before calibration (saved thresholds, at least 1 tag).
    pub uncalibrated: SourceMetrics,
    /// The data set's own labels of the same products.
    pub noisy_labels: SourceMetrics,
    /// The frequency prior of the careful training products.
    pub prior: SourceMetrics,
    /// The shipped answer against the data set's labels of the same products.
    pub model_vs_noisy: SourceMetrics,
    /// Reliability of the shipped probabilities: per bin of 0.1, (mean probability, share
    /// a careful reader agrees with, pairs), over every (product, pool tag); empty bins are
    /// left out.
    pub reliability: Vec<(f64, f64, usize)>,
}

/// Micro figures of one tag source on a set of products ([`CarefulDevMetrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceMetrics {
    /// Micro precision.
    pub precision: f64,
    /// Micro recall.
    pub recall: f64,
    /// Micro-F1.
    pub micro_f1: f64,
    /// Products.
    pub n: usize,
    /// Tags shown.
    pub shown: usize,
    /// Products shown no tag.
    pub empty: usize,
}

/// How an adapter's careful calibration was fitted ([`CarefulMetrics::calibration`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// The settings it was fitted with.
    pub settings: CalibrationSettingsRecord,
    /// Careful training products it was fitted on.
    pub careful_train_products: usize,
    /// The out-of-fold figures at each threshold tried (the threshold curve).
    pub out_of_fold: Vec<ThresholdMetrics>,
}

/// The calibration settings (`configs/calibration.toml`, the trainer's
/// `CalibrationSettings`) as recorded; its single-precision values are recorded widened to
/// `f64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSettingsRecord {
    /// L2 penalty on every weight but the intercept.
    pub l2: f64,
    /// A review supports a tag when its own raw probability reaches this.
    pub review_threshold: f64,
    /// Folds of the out-of-fold threshold choice.
    pub folds: usize,
    /// Seed of the folds.
    pub seed: u64,
    /// The thresholds tried.
    pub thresholds: Vec<f64>,
    /// The out-of-fold micro precision a threshold must reach to be chosen.
    pub min_precision: f64,
    /// Fill up to this many tags when fewer pass (0: an answer may hold none).
    pub min_tags: usize,
    /// Show a tag only with this many supporting reviews (0: no rule).
    pub min_mentions: usize,
}

/// Out-of-fold figures of the calibration at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdMetrics {
    /// The threshold (single precision, recorded widened to `f64`).
    pub threshold: f64,
    /// Micro precision.
    pub precision: f64,
    /// Micro recall.
    pub recall: f64,
    /// Micro-F1.
    pub micro_f1: f64,
}

/// One set of figures the runtime shows (`/v1/model`), from [`AdapterMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordedFigures {
    /// Micro-F1.
    pub micro_f1: Option<f64>,
    /// Micro precision.
    pub precision: Option<f64>,
    /// Micro recall.
    pub recall: Option<f64>,
}

impl From<&SetMetrics> for RecordedFigures {
    fn from(m: &SetMetrics) -> Self {
        Self {
            micro_f1: Some(m.micro_f1),
            precision: Some(m.micro_precision),
            recall: Some(m.micro_recall),
        }
    }
}

impl From<&SourceMetrics> for RecordedFigures {
    fn from(m: &SourceMetrics) -> Self {
        Self {
            micro_f1: Some(m.micro_f1),
            precision: Some(m.precision),
            recall: Some(m.recall),
        }
    }
}

/// What the runtime shows of an adapter's [`AdapterMetrics`] (`/v1/model`): its dev
/// figures (tuned as shipped) beside the prior's, its split sizes and its careful-dev
/// figures. A view derived from the record (`From<&AdapterMetrics>`), not a schema of its
/// own; the default (every figure absent) stands for an adapter without `metrics.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordedMetrics {
    /// Dev figures at the tuned thresholds, when tuned.
    pub tuned: Option<RecordedFigures>,
    /// The frequency prior's dev figures.
    pub prior: Option<RecordedFigures>,
    /// Training products.
    pub n_train: Option<u64>,
    /// Dev products.
    pub n_dev: Option<u64>,
    /// The shipped answer's careful-dev figures, once calibrated.
    pub careful: Option<RecordedFigures>,
}

impl From<&AdapterMetrics> for RecordedMetrics {
    fn from(m: &AdapterMetrics) -> Self {
        Self {
            tuned: m.tuned.as_ref().map(RecordedFigures::from),
            prior: Some(RecordedFigures::from(&m.prior)),
            n_train: u64::try_from(m.n_train).ok(),
            n_dev: u64::try_from(m.n_dev).ok(),
            careful: m.careful_dev().map(RecordedFigures::from),
        }
    }
}

impl RecordedMetrics {
    /// The careful-dev figures of the shipped answer, when recorded.
    pub fn careful_dev(&self) -> Option<RecordedFigures> {
        self.careful
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

    /// The shipped adapters' directories (`adapters/<category>/` with a `metrics.json`).
    fn shipped_adapter_dirs() -> Vec<PathBuf> {
        let adapters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../adapters");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&adapters)
            .expect("adapters/")
            .map(|e| e.expect("entry").path())
            .filter(|d| d.join(METRICS_FILE).is_file())
            .collect();
        dirs.sort();
        dirs
    }

    fn figures(micro_f1: f64) -> SetMetrics {
        SetMetrics {
            n: 80,
            micro_f1,
            micro_precision: 0.5,
            micro_recall: 0.75,
            macro_f1: 0.25,
            samples_f1: 0.6,
            k: 3,
            precision_at_k: 0.4,
            recall_at_k: 0.7,
            per_tag: vec![TagMetrics {
                label: 2,
                support: 4,
                predicted: 3,
                true_positives: 1,
                precision: 1.0 / 3.0,
                recall: 0.25,
                f1: 2.0 / 7.0,
            }],
        }
    }

    fn source(precision: f64) -> SourceMetrics {
        SourceMetrics {
            precision,
            recall: 0.6,
            micro_f1: 0.7,
            n: 80,
            shown: 103,
            empty: 11,
        }
    }

    fn record() -> AdapterMetrics {
        AdapterMetrics {
            category: "bags".into(),
            epoch: 6,
            dev: figures(0.61),
            prior: figures(0.52),
            tuned: Some(figures(0.647)),
            n_train: 286,
            n_dev: 80,
            n_reviews: 2344,
            cache_seconds: 14.5,
            train_seconds: 30.25,
            history: vec![EpochRecord {
                epoch: 1,
                train_loss: 0.29,
                dev_micro_f1: 0.58,
                seconds: 3.7,
            }],
            stopped_early: true,
            branches: Some(BranchMetrics {
                encoder: figures(0.62),
                lexical: figures(0.6),
                vocabulary: 8054,
                lexical_seconds: 2.7,
            }),
            careful: Some(CarefulMetrics {
                dev: CarefulDevMetrics {
                    model: source(0.797),
                    uncalibrated: source(0.5),
                    noisy_labels: source(0.43),
                    prior: source(0.5),
                    model_vs_noisy: source(0.79),
                    reliability: vec![(0.02, 0.015, 1381), (0.95, 1.0, 34)],
                },
                calibration: CalibrationRecord {
                    settings: CalibrationSettingsRecord {
                        l2: 1.0,
                        review_threshold: 0.5,
                        folds: 5,
                        seed: 0,
                        thresholds: vec![f64::from(0.2f32), 0.25],
                        min_precision: 0.75,
                        min_tags: 0,
                        min_mentions: 0,
                    },
                    careful_train_products: 240,
                    out_of_fold: vec![ThresholdMetrics {
                        threshold: f64::from(0.2f32),
                        precision: 0.6,
                        recall: 0.78,
                        micro_f1: 0.68,
                    }],
                },
            }),
        }
    }

    #[test]
    fn every_shipped_metrics_json_loads_and_writes_back_the_same_json() {
        let dirs = shipped_adapter_dirs();
        assert!(dirs.len() >= 5, "shipped adapters: {dirs:?}");
        let out = tempfile::tempdir().expect("tempdir");
        for dir in dirs {
            let path = dir.join(METRICS_FILE);
            let original: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            let m = AdapterMetrics::read(&dir).expect("typed read");
            assert!(
                m.careful.is_some() && m.branches.is_some(),
                "{}",
                path.display()
            );
            m.write(out.path()).expect("write");
            let written: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out.path().join(METRICS_FILE)).expect("read back"),
            )
            .expect("json");
            assert_eq!(
                written,
                original,
                "{} changed in a round trip",
                path.display()
            );
        }
    }

    #[test]
    fn a_written_record_reads_back_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            AdapterMetrics::read_if_present(dir.path())
                .expect("none")
                .is_none()
        );
        let m = record();
        m.write(dir.path()).expect("write");
        assert_eq!(AdapterMetrics::read(dir.path()).expect("read"), m);
        assert_eq!(
            AdapterMetrics::read_if_present(dir.path()).expect("read"),
            Some(m.clone())
        );
        // Before calibration there is no `careful` section; without thresholds or the
        // lexical branch, `tuned` and `branches` are null.
        let bare = AdapterMetrics {
            tuned: None,
            branches: None,
            careful: None,
            ..m
        };
        bare.write(dir.path()).expect("write");
        let value: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(METRICS_FILE)).expect("read"),
        )
        .expect("json");
        assert!(value.get("careful").is_none());
        assert!(value["tuned"].is_null() && value["branches"].is_null());
        assert_eq!(AdapterMetrics::read(dir.path()).expect("read"), bare);
        assert_eq!(bare.shipped().micro_f1, 0.61);
    }

    #[test]
    fn records_without_branches_read_and_bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A record of a trainer before the lexical branch: no `branches` field.
        let mut value = serde_json::to_value(record()).expect("value");
        let object = value.as_object_mut().expect("object");
        object.remove("branches");
        object.remove("careful");
        std::fs::write(dir.path().join(METRICS_FILE), value.to_string()).expect("write");
        let m = AdapterMetrics::read(dir.path()).expect("read");
        assert!(m.branches.is_none() && m.careful.is_none());

        std::fs::write(dir.path().join(METRICS_FILE), "{\"n_train\": \"many\"}").expect("write");
        let e = AdapterMetrics::read(dir.path())
            .expect_err("bad")
            .to_string();
        assert!(e.contains(METRICS_FILE), "{e}");
        let empty = tempfile::tempdir().expect("tempdir");
        let e = AdapterMetrics::read(empty.path())
            .expect_err("missing")
            .to_string();
        assert!(e.contains(METRICS_FILE), "{e}");
    }

    #[test]
    fn the_runtime_view_shows_tuned_prior_sizes_and_careful_dev() {
        let m = record();
        let view = RecordedMetrics::from(&m);
        assert_eq!(view.n_train, Some(286));
        assert_eq!(view.n_dev, Some(80));
        assert_eq!(view.tuned.and_then(|f| f.micro_f1), Some(0.647));
        assert_eq!(view.tuned.and_then(|f| f.recall), Some(0.75));
        assert_eq!(view.prior.and_then(|f| f.micro_f1), Some(0.52));
        let careful = view.careful_dev().expect("careful dev");
        assert_eq!(
            (careful.precision, careful.recall, careful.micro_f1),
            (Some(0.797), Some(0.6), Some(0.7))
        );
        let bare = RecordedMetrics::from(&AdapterMetrics {
            tuned: None,
            careful: None,
            ..m
        });
        assert_eq!((bare.tuned, bare.careful_dev()), (None, None));
        assert_eq!(RecordedMetrics::default().n_train, None);
    }
}
