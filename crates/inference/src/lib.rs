//! The runtime of Lamoda Tags, and the owner of its model format: everything loaded and
//! run to turn a product's reviews into tag probabilities and tags.
//!
//! - [`format`]: the model bundle on disk, documented in one place (files, tensor names and
//!   shapes, JSON fields, the format version checked on load).
//! - [`Bundle`]: a bundle directory opened and checked (manifest, routing, pools).
//! - [`settings`]: how an adapter reads reviews ([`RuntimeSettings`], [`Pooling`]).
//! - [`forward`]: the encoder's pass over review stacks (tokenising, the lower layers'
//!   cache, review vectors, pooling into product logits), shared with training.
//! - [`lexical`] and [`frozen`]: the lexical branch (stems, character n-grams, the frozen
//!   base's view, the second stage) at run time.
//! - [`Adapter`]: one category's trained model; [`Tagger`]: every category's, routed and
//!   batched, scoring each product and each of its reviews alone ([`Scores`]) and decoding
//!   into tags with their mentions and evidence ([`Prediction`]); [`batch`]: tagging a
//!   product table (resumable, sharded).
//! - [`careful`]: the careful calibration (`careful.json`): per tag, the probability that a
//!   careful reader of the reviews would agree, from the adapter's scores, and its decoding.
//!
//! The trainer fits and writes this format through these types; this crate never links
//! training code.

pub mod adapter;
pub mod batch;
pub mod bundle;
pub mod careful;
mod error;
pub mod format;
pub mod forward;
pub mod frozen;
pub mod lexical;
pub mod progress;
pub mod settings;
pub mod tagger;

pub use adapter::{Adapter, EncoderOutputs, Thresholds, predict_probabilities};
pub use bundle::{BaseRef, Bundle, Manifest, find_checkout_bundle, write_bundle};
pub use careful::CarefulCalibration;
pub use error::{InferenceError, error_line, one_line};
pub use format::AdapterMetrics;
/// The encoder's precision, chosen in `runtime.json` or by [`Tagger::set_precision`].
pub use lamoda_model::Precision;
pub use progress::{Progress, Silent};
pub use settings::{Pooling, RuntimeSettings};
pub use tagger::{
    DecodeOptions, Evidence, PredictedTag, Prediction, Request, ScoredReview, Scores,
    TagProbability, Tagger, load_base,
};

/// The model crate, so callers build [`lamoda_model::LoadedBase`]s with the same version.
pub use lamoda_model;
