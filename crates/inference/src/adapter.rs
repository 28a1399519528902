//! [`Adapter`]: one category's trained model, loaded from its directory of the bundle
//! (see [`crate::format`] for the files) onto a base already in memory, and its
//! probabilities for any review stacks.

use std::path::Path;

use lamoda_model::burn::module::Module;
use lamoda_model::{BaseInfo, LoadedBase, PackedEncoder, Precision, TagModel};
use serde::{Deserialize, Serialize};

use crate::InferenceError;
use crate::format::{RUNTIME_FILE, THRESHOLDS_FILE, read_json};
use crate::forward::{
    FeatureCache, StackProbabilities, cached_probabilities, cached_stack_probabilities,
    encoder_device, frozen_review_vectors, tokenize_stacks,
};
use crate::frozen::ProductVectors;
use crate::lexical::{LEXICAL_CONFIG_FILE, LexicalModel, LexicalSettings};
use crate::progress::{Progress, Silent};
use crate::settings::RuntimeSettings;

/// Per-tag decoding thresholds chosen on the dev split (`thresholds.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The tags, in pool order.
    pub tags: Vec<String>,
    /// One threshold per tag.
    pub thresholds: Vec<f32>,
}

/// A trained adapter ready to predict: the model on the plain device, how it reads reviews,
/// its thresholds, its lexical branch and (for the branch's frozen view) the base.
#[derive(Debug)]
pub struct Adapter {
    /// Base + LoRA adapter + head.
    pub model: TagModel,
    /// The same encoder on the packed fast path (LoRA merged; the layers below the
    /// adapted ones shared with the base's).
    pub packed: PackedEncoder,
    /// How it reads reviews.
    pub runtime: RuntimeSettings,
    /// Per-tag thresholds, when tuned.
    pub thresholds: Option<Thresholds>,
    /// Its base's identity.
    pub base: BaseInfo,
    /// The lexical branch, when the adapter has one.
    pub lexical: Option<LexicalModel>,
    /// The base encoder (no LoRA, packed), when the lexical branch reads the frozen view.
    pub frozen: Option<PackedEncoder>,
}

/// What [`Adapter::encoder_outputs`] reads off one pass of the lower layers.
#[derive(Debug)]
pub struct EncoderOutputs {
    /// The encoder's probabilities `[stack][tag]`.
    pub probabilities: Vec<Vec<f32>>,
    /// The base's review vectors per stack, when the adapter keeps the base for the
    /// frozen view.
    pub vectors: Option<Vec<ProductVectors>>,
}

impl Adapter {
    /// Loads an adapter directory onto `base` (refused if it was trained on another base):
    /// the encoder adapter and head, `runtime.json`, `thresholds.json` when present, and
    /// the lexical branch when present (checked to have the head's tags).
    pub fn load(dir: &Path, base: &LoadedBase) -> Result<Self, InferenceError> {
        let mut adapter = Self::load_encoder(dir, base)?;
        if LexicalModel::exists_in(dir) {
            let lexical = LexicalModel::load(dir)?;
            if adapter.model.heads.first().map(|h| h.tags()) != Some(lexical.tags.as_slice()) {
                return Err(InferenceError::Format {
                    path: dir.join(LEXICAL_CONFIG_FILE),
                    reason: "its tags differ from the adapter head's".into(),
                });
            }
            adapter.keep_base_for(Some(&lexical.settings), base);
            adapter.lexical = Some(lexical);
        }
        Ok(adapter)
    }

    /// [`Adapter::load`] without the lexical branch (which is not read, so one written by
    /// an older format does not stop `lamoda-tags train --keep-encoder` from refitting it).
    pub fn load_encoder(dir: &Path, base: &LoadedBase) -> Result<Self, InferenceError> {
        let plain = encoder_device(&base.encoder).inner();
        let (model, _) = TagModel::load_adapter(dir, base.encoder.valid(), &base.info, &plain)?;
        let runtime_path = dir.join(RUNTIME_FILE);
        let runtime: RuntimeSettings = read_json(&runtime_path)?;
        runtime.validate(&runtime_path)?;
        let packed = adapted_packed(base, &model)?.with_precision(runtime.precision);
        let th_path = dir.join(THRESHOLDS_FILE);
        let thresholds = if th_path.is_file() {
            Some(read_json(&th_path)?)
        } else {
            None
        };
        Ok(Self {
            model,
            packed,
            runtime,
            thresholds,
            base: base.info.clone(),
            lexical: None,
            frozen: None,
        })
    }

    /// The tags of its head, in output order.
    pub fn tags(&self) -> &[String] {
        self.model.heads.first().map(|h| h.tags()).unwrap_or(&[])
    }

    /// Probabilities `[stack][tag]` (pool order) for review stacks, read the way training
    /// read them: the encoder's, averaged with the lexical branch's when there is one.
    pub fn probabilities(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        self.probabilities_with_progress(tokenizer, stacks, &Silent)
    }

    /// [`Adapter::probabilities`], reporting the lower layers' pass to `progress` (for
    /// long evaluations).
    pub fn probabilities_with_progress(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let outputs = self.encoder_outputs(tokenizer, stacks, progress)?;
        Ok(match &self.lexical {
            Some(lexical) => {
                let lex = lexical.probabilities(stacks, outputs.vectors.as_deref())?;
                lexical.fuse(&outputs.probabilities, &lex)
            }
            None => outputs.probabilities,
        })
    }

    /// Each stack's probabilities ([`Adapter::probabilities`]) and, beside them, each review's
    /// own: the probabilities the same adapter gives a product of that review alone, for
    /// the reviews the encoder reads (the first `max_reviews_per_product`). One pass of the
    /// encoder serves both; the lexical branch reads each review on its own.
    pub fn stack_probabilities(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
    ) -> Result<Vec<StackProbabilities>, InferenceError> {
        let cache = self.cache(tokenizer, stacks, &Silent)?;
        let all: Vec<usize> = (0..cache.products.len()).collect();
        let encoder = cached_stack_probabilities(
            &self.model,
            &self.packed,
            &cache,
            &all,
            self.runtime.pooling,
            self.runtime.batch_size,
            &encoder_device(&self.model.encoder),
        )?;
        let Some(lexical) = &self.lexical else {
            return Ok(encoder);
        };
        let vectors = self.frozen_vectors(&cache)?;
        let products: Vec<Vec<f32>> = encoder.iter().map(|e| e.product.clone()).collect();
        let lexical_products = lexical.probabilities(stacks, vectors.as_deref())?;
        let fused = lexical.fuse(&products, &lexical_products);
        encoder
            .into_iter()
            .zip(fused)
            .enumerate()
            .map(|(i, (enc, product))| {
                // Each review read by the encoder, as a stack of its own.
                let singles: Vec<&[String]> = (0..enc.reviews.len())
                    .map(|r| std::slice::from_ref(&stacks[i][r]))
                    .collect();
                let single_vectors: Option<Vec<_>> = vectors
                    .as_ref()
                    .map(|v| v[i].iter().map(|r| vec![r.clone()]).collect());
                let lex = lexical.probabilities(&singles, single_vectors.as_deref())?;
                Ok(StackProbabilities {
                    product,
                    reviews: lexical.fuse(&enc.reviews, &lex),
                })
            })
            .collect()
    }

    /// The encoder's probabilities alone.
    pub fn encoder_probabilities(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let cache = self.cache(tokenizer, stacks, &Silent)?;
        all_probabilities(&self.model, &self.packed, &self.runtime, &cache)
    }

    /// The encoder's probabilities and, when [`Adapter::frozen`] is set, the base
    /// encoder's review vectors (the frozen view's input), from one pass of the lower
    /// layers (reported to `progress`).
    pub fn encoder_outputs(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: &dyn Progress,
    ) -> Result<EncoderOutputs, InferenceError> {
        let cache = self.cache(tokenizer, stacks, progress)?;
        Ok(EncoderOutputs {
            probabilities: all_probabilities(&self.model, &self.packed, &self.runtime, &cache)?,
            vectors: self.frozen_vectors(&cache)?,
        })
    }

    /// The base encoder's review vectors alone (the frozen view's input), when
    /// [`Adapter::frozen`] is set: one pass of the lower layers and the base's top
    /// layers, without the adapted layers and head.
    pub fn base_vectors(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: &dyn Progress,
    ) -> Result<Option<Vec<ProductVectors>>, InferenceError> {
        if self.frozen.is_none() {
            return Ok(None);
        }
        let cache = self.cache(tokenizer, stacks, progress)?;
        self.frozen_vectors(&cache)
    }

    /// Keep `base` (the encoder without LoRA) exactly when a lexical branch with
    /// `settings` reads the frozen view; drop it otherwise.
    pub fn keep_base_for(&mut self, settings: Option<&LexicalSettings>, base: &LoadedBase) {
        self.frozen = settings
            .is_some_and(|s| s.frozen_view)
            .then(|| base.packed.with_precision(self.runtime.precision));
    }

    /// Runs every encoder pass (its own and the frozen view's) at `precision` from now on.
    pub fn set_precision(&mut self, precision: Precision) {
        self.runtime.precision = precision;
        self.packed = self.packed.with_precision(precision);
        if let Some(frozen) = &mut self.frozen {
            *frozen = frozen.with_precision(precision);
        }
    }

    /// `stacks` read as the adapter's runtime settings say, through its lower
    /// (non-adapted) layers.
    fn cache(
        &self,
        tokenizer: &lamoda_model::TextTokenizer,
        stacks: &[&[String]],
        progress: &dyn Progress,
    ) -> Result<FeatureCache, InferenceError> {
        cache_stacks(
            &self.model,
            &self.packed,
            tokenizer,
            &self.runtime,
            stacks,
            progress,
        )
    }

    /// The base's review vectors of every cached stack, when the adapter keeps the base.
    fn frozen_vectors(
        &self,
        cache: &FeatureCache,
    ) -> Result<Option<Vec<ProductVectors>>, InferenceError> {
        match &self.frozen {
            Some(base) => {
                let all: Vec<usize> = (0..cache.products.len()).collect();
                Ok(Some(frozen_review_vectors(base, cache, &all)?))
            }
            None => Ok(None),
        }
    }
}

/// `model`'s encoder on the packed fast path: `base`'s packed layers, with the adapted
/// ones (LoRA merged) taken from `model`.
pub fn adapted_packed(
    base: &LoadedBase,
    model: &TagModel,
) -> Result<PackedEncoder, InferenceError> {
    let n = model.encoder.num_layers();
    Ok(base
        .packed
        .with_layers_of(&model.encoder, model.lora().first_layer..n)?)
}

/// Probabilities `[stack][tag]` of `model`'s head 0 for arbitrary review stacks, read as
/// `runtime` says. `model` must be on a plain device; its encoder is packed (every layer
/// copied) for the pass, so prefer [`Adapter::encoder_probabilities`] for repeated calls.
pub fn predict_probabilities(
    model: &TagModel,
    tokenizer: &lamoda_model::TextTokenizer,
    runtime: &RuntimeSettings,
    stacks: &[&[String]],
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let packed = PackedEncoder::new(&model.encoder)?;
    let cache = cache_stacks(model, &packed, tokenizer, runtime, stacks, &Silent)?;
    all_probabilities(model, &packed, runtime, &cache)
}

/// The encoder's probabilities of every stack in `cache`, in order.
fn all_probabilities(
    model: &TagModel,
    packed: &PackedEncoder,
    runtime: &RuntimeSettings,
    cache: &FeatureCache,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let all: Vec<usize> = (0..cache.products.len()).collect();
    cached_probabilities(
        model,
        packed,
        cache,
        &all,
        runtime.pooling,
        runtime.batch_size,
        &encoder_device(&model.encoder),
    )
}

/// `stacks` tokenised as `runtime` says and run through the lower (non-adapted) layers of
/// `packed` (`model`'s encoder packed).
fn cache_stacks(
    model: &TagModel,
    packed: &PackedEncoder,
    tokenizer: &lamoda_model::TextTokenizer,
    runtime: &RuntimeSettings,
    stacks: &[&[String]],
    progress: &dyn Progress,
) -> Result<FeatureCache, InferenceError> {
    let ids = tokenize_stacks(tokenizer, stacks, runtime)?;
    FeatureCache::build(packed, &ids, model.lora().first_layer, progress)
}
