//! The encoder's forward pass over review stacks, shared by training and tagging.
//!
//! A product is its reviews, each tokenised on its own ([`tokenize_stacks`]). Every review
//! runs through the frozen lower layers once ([`FeatureCache::build`], on the packed fast
//! path: no padding), then through the adapted top layers and a token mean; the head turns
//! the review vectors into a product's tag logits as the [`Pooling`] says. Every pass
//! without gradients (the cache, evaluation, tagging, the frozen view) runs the top layers
//! on a [`PackedEncoder`] with the LoRA merged ([`packed_review_vectors`]); only the
//! training step runs them in Burn on the autodiff device ([`review_vectors`],
//! [`product_logits`]).

use lamoda_model::burn::tensor::activation::sigmoid;
use lamoda_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lamoda_model::{Encoder, Packed, PackedEncoder, TagModel, mean_pool};

use crate::InferenceError;
use crate::frozen::ProductVectors;
use crate::progress::Progress;
use crate::settings::{Pooling, RuntimeSettings};

/// A tensor's values, row-major.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, InferenceError> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| InferenceError::Tensor {
            detail: format!("{e:?}"),
        })
}

/// Token ids of each product's reviews, as the model reads them: `settings`' prefix, at
/// most `max_reviews_per_product` reviews, each cut to `max_tokens_per_review` tokens
/// (within the encoder's positions) with its closing special token kept.
pub fn tokenize_stacks(
    base_tokenizer: &lamoda_model::TextTokenizer,
    stacks: &[&[String]],
    config: &RuntimeSettings,
) -> Result<Vec<Vec<Vec<u32>>>, InferenceError> {
    stacks
        .iter()
        .enumerate()
        .map(|(index, reviews)| {
            if reviews.is_empty() {
                return Err(InferenceError::NoReviews {
                    index,
                    good_type: String::new(),
                });
            }
            reviews
                .iter()
                .take(config.max_reviews_per_product)
                .map(|r| {
                    let mut ids = base_tokenizer.encode(&format!("{}{r}", config.text_prefix))?;
                    // The configured cap, within what the encoder's positions allow.
                    let max = config
                        .max_tokens_per_review
                        .min(base_tokenizer.max_len())
                        .max(2);
                    if ids.len() > max {
                        let last = ids[ids.len() - 1];
                        ids.truncate(max - 1);
                        ids.push(last);
                    }
                    Ok(ids)
                })
                .collect()
        })
        .collect()
}

/// One review's hidden states after the frozen lower layers: `len × hidden` values.
#[derive(Debug, Clone)]
pub struct CachedReview {
    /// Tokens (rows of `values`).
    pub len: usize,
    /// Row-major `[len, hidden]`.
    pub values: Vec<f32>,
}

/// The frozen lower layers' output for every review of a set of products, kept in memory
/// as f32 (e5-small: 384 floats per token).
#[derive(Debug, Clone)]
pub struct FeatureCache {
    /// Hidden width.
    pub hidden: usize,
    /// Index of the first layer *not* cached (the first adapted one).
    pub first_layer: usize,
    /// Per product, its reviews.
    pub products: Vec<Vec<CachedReview>>,
}

/// Reviews per call of the packed encoder when building the cache (about 5,000 tokens of
/// real reviews: one or two passes of its token budget).
const CACHE_CHUNK: usize = 256;
/// Reviews per chunk of the trainable forward pass.
const TRAIN_CHUNK: usize = 64;

impl FeatureCache {
    /// Run every review of `products` (token ids) through the encoder's embeddings and
    /// layers `0..first_layer` on the packed fast path, reporting each chunk to `progress`.
    pub fn build(
        encoder: &PackedEncoder,
        products: &[Vec<Vec<u32>>],
        first_layer: usize,
        progress: &dyn Progress,
    ) -> Result<Self, InferenceError> {
        let hidden = encoder.hidden();
        let order: Vec<(usize, usize)> = products
            .iter()
            .enumerate()
            .flat_map(|(p, reviews)| (0..reviews.len()).map(move |r| (p, r)))
            .collect();
        let mut out: Vec<Vec<CachedReview>> = products
            .iter()
            .map(|reviews| {
                reviews
                    .iter()
                    .map(|_| CachedReview {
                        len: 0,
                        values: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        progress.start("caching lower layers", order.len() as u64);
        for chunk in order.chunks(CACHE_CHUNK) {
            let rows: Vec<&[u32]> = chunk
                .iter()
                .map(|&(p, r)| products[p][r].as_slice())
                .collect();
            let x = encoder.forward_layers(encoder.embed(&rows)?, 0..first_layer);
            for (i, &(p, r)) in chunk.iter().enumerate() {
                out[p][r] = CachedReview {
                    len: rows[i].len(),
                    values: x.review(i).to_vec(),
                };
            }
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        Ok(Self {
            hidden,
            first_layer,
            products: out,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.products
            .iter()
            .flatten()
            .map(|r| r.values.len() * 4)
            .sum()
    }

    /// Number of cached reviews.
    pub fn n_reviews(&self) -> usize {
        self.products.iter().map(Vec::len).sum()
    }
}

/// Which review a row of [`review_vectors`] is: the slot (index into the `products`
/// asked for) and the review's index within its product.
pub type ReviewSlot = (usize, usize);

/// Each review's vector `[n_reviews, hidden]` after `encoder`'s layers above the cache
/// (token mean), for cached `products`, and which review each row is (rows are sorted by
/// length, so short reviews share little padding).
pub fn review_vectors(
    encoder: &Encoder,
    cache: &FeatureCache,
    products: &[usize],
    device: &Device,
) -> (Tensor<2>, Vec<ReviewSlot>) {
    let h = cache.hidden;
    let n_layers = encoder.num_layers();
    let mut reviews: Vec<(ReviewSlot, &CachedReview)> = products
        .iter()
        .enumerate()
        .flat_map(|(slot, &p)| {
            cache.products[p]
                .iter()
                .enumerate()
                .map(move |(i, r)| ((slot, i), r))
        })
        .collect();
    reviews.sort_by_key(|(_, r)| r.len);
    let mut pooled = Vec::new();
    for chunk in reviews.chunks(TRAIN_CHUNK) {
        let b = chunk.len();
        let l = chunk.iter().map(|(_, r)| r.len).max().unwrap_or(1).max(1);
        let mut values = vec![0f32; b * l * h];
        let mut mask = vec![0i64; b * l];
        for (i, (_, r)) in chunk.iter().enumerate() {
            values[i * l * h..i * l * h + r.len * h].copy_from_slice(&r.values);
            mask[i * l..i * l + r.len].iter_mut().for_each(|m| *m = 1);
        }
        let x = Tensor::<3>::from_data(TensorData::new(values, [b, l, h]), device);
        let mask = Tensor::<2, Int>::from_data(TensorData::new(mask, [b, l]), device);
        let top = encoder.forward_layers(x, &mask, cache.first_layer..n_layers);
        pooled.push(mean_pool(top, &mask));
    }
    (
        Tensor::cat(pooled, 0),
        reviews.iter().map(|(slot, _)| *slot).collect(),
    )
}

/// Each review's vector (token mean after `encoder`'s layers above the cache) for cached
/// `products`, on the packed fast path: row-major `[n_reviews, hidden]`, and which review
/// each row is (products in order, each product's reviews in their order).
pub fn packed_review_vectors(
    encoder: &PackedEncoder,
    cache: &FeatureCache,
    products: &[usize],
) -> (Vec<f32>, Vec<ReviewSlot>) {
    let mut slots = Vec::new();
    let mut rows: Vec<&[f32]> = Vec::new();
    for (slot, &p) in products.iter().enumerate() {
        for (i, r) in cache.products[p].iter().enumerate() {
            slots.push((slot, i));
            rows.push(&r.values);
        }
    }
    let x = Packed::from_reviews(cache.hidden, rows);
    let top = encoder.forward_layers(x, cache.first_layer..encoder.num_layers());
    (top.mean_pooled(), slots)
}

/// The frozen view's input: every review vector of each of `products` (in `products`
/// order, each product's reviews in their own order), from the base `encoder`'s layers
/// above the cache, in chunks of 64 products.
pub fn frozen_review_vectors(
    encoder: &PackedEncoder,
    cache: &FeatureCache,
    products: &[usize],
) -> Result<Vec<ProductVectors>, InferenceError> {
    let h = cache.hidden;
    let mut out: Vec<ProductVectors> = Vec::with_capacity(products.len());
    for chunk in products.chunks(64) {
        let (vectors, slots) = packed_review_vectors(encoder, cache, chunk);
        let mut per_product: Vec<ProductVectors> = chunk
            .iter()
            .map(|&p| vec![Vec::new(); cache.products[p].len()])
            .collect();
        for (row, &(slot, review)) in vectors.chunks_exact(h).zip(&slots) {
            per_product[slot][review] = row.to_vec();
        }
        out.extend(per_product);
    }
    Ok(out)
}

/// Logits `[products.len(), n_tags]` of head `head` for cached products: the adapted layers
/// per review, token mean per review, then the reviews combined by `pooling`.
pub fn product_logits(
    model: &TagModel,
    head: usize,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    device: &Device,
) -> Tensor<2> {
    scored_logits(model, head, cache, products, pooling, device).products
}

/// What one pass of the adapted layers and the head gives: each product's logits and each
/// review's own logits, the logits the head gives a product of that one review.
#[derive(Debug)]
pub struct ScoredLogits {
    /// `[products, n_tags]`.
    pub products: Tensor<2>,
    /// `[reviews, n_tags]`, one row per review in `slots` order.
    pub reviews: Tensor<2>,
    /// Which review each row of `reviews` is.
    pub slots: Vec<ReviewSlot>,
}

/// [`product_logits`] with every review's own logits beside (Burn's top layers: the
/// training path).
pub fn scored_logits(
    model: &TagModel,
    head: usize,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    device: &Device,
) -> ScoredLogits {
    let (pooled, slots) = review_vectors(&model.encoder, cache, products, device);
    head_logits(model, head, pooled, slots, products.len(), pooling, device)
}

/// [`scored_logits`] with the top layers on the packed fast path: `encoder` is `model`'s
/// encoder packed, LoRA merged.
pub fn packed_scored_logits(
    model: &TagModel,
    encoder: &PackedEncoder,
    head: usize,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    device: &Device,
) -> ScoredLogits {
    let (values, slots) = packed_review_vectors(encoder, cache, products);
    let pooled =
        Tensor::<2>::from_data(TensorData::new(values, [slots.len(), cache.hidden]), device);
    head_logits(model, head, pooled, slots, products.len(), pooling, device)
}

/// The head over review vectors `pooled` (`slots` says whose): each review's own logits
/// and each of the `p` products' logits combined by `pooling`.
fn head_logits(
    model: &TagModel,
    head: usize,
    pooled: Tensor<2>,
    slots: Vec<ReviewSlot>,
    p: usize,
    pooling: Pooling,
    device: &Device,
) -> ScoredLogits {
    let n = slots.len();
    // Product vector = mean of its reviews' vectors: a [products, reviews] averaging matrix.
    let mut counts = vec![0usize; p];
    for &(slot, _) in &slots {
        counts[slot] += 1;
    }
    let mut avg = vec![0f32; p * n];
    for (j, &(slot, _)) in slots.iter().enumerate() {
        avg[slot * n + j] = 1.0 / counts[slot].max(1) as f32;
    }
    let avg = Tensor::<2>::from_data(TensorData::new(avg, [p, n]), device);
    // Per-review logits, bounded so exp stays finite in f32 (a product of one review
    // gets exactly its review's logits under either pooling).
    let reviews = model.heads[head]
        .forward(pooled.clone())
        .clamp(-LOGIT_BOUND, LOGIT_BOUND);
    let products = match pooling {
        Pooling::Mean => model.heads[head].forward(avg.matmul(pooled)),
        // log(mean_r exp(z_r)) per product and tag.
        Pooling::LogMeanExp => avg.matmul(reviews.clone().exp()).log(),
    };
    ScoredLogits {
        products,
        reviews,
        slots,
    }
}

/// Per-review logits are clamped to ±this before log-mean-exp pooling (e^30 ≈ 1e13 keeps
/// f32 sums exact enough; sigmoid(±30) is already 0/1).
const LOGIT_BOUND: f32 = 30.0;

/// Sigmoid probabilities `[product][tag]` for cached products, in batches, the top
/// layers on `encoder` (`model`'s encoder packed).
pub fn cached_probabilities(
    model: &TagModel,
    encoder: &PackedEncoder,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    Ok(
        cached_stack_probabilities(model, encoder, cache, products, pooling, batch_size, device)?
            .into_iter()
            .map(|s| s.product)
            .collect(),
    )
}

/// One product's encoder probabilities, and each of its reviews' own, `[review][tag]` in
/// the product's review order.
#[derive(Debug, Clone, PartialEq)]
pub struct StackProbabilities {
    /// The product's, per tag.
    pub product: Vec<f32>,
    /// Each review's own, per tag.
    pub reviews: Vec<Vec<f32>>,
}

/// [`cached_probabilities`] with each review's own probabilities beside, from the same
/// pass.
pub fn cached_stack_probabilities(
    model: &TagModel,
    encoder: &PackedEncoder,
    cache: &FeatureCache,
    products: &[usize],
    pooling: Pooling,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<StackProbabilities>, InferenceError> {
    let mut out = Vec::with_capacity(products.len());
    for chunk in products.chunks(batch_size.max(1)) {
        let scored = packed_scored_logits(model, encoder, 0, cache, chunk, pooling, device);
        let n_tags = scored.products.dims()[1];
        let product = to_vec(sigmoid(scored.products))?;
        let reviews = to_vec(sigmoid(scored.reviews))?;
        let mut rows: Vec<StackProbabilities> = chunk
            .iter()
            .zip(product.chunks(n_tags))
            .map(|(&p, row)| StackProbabilities {
                product: row.to_vec(),
                reviews: vec![Vec::new(); cache.products[p].len()],
            })
            .collect();
        for (row, &(slot, review)) in reviews.chunks(n_tags).zip(&scored.slots) {
            rows[slot].reviews[review] = row.to_vec();
        }
        out.extend(rows);
    }
    Ok(out)
}

/// The device `encoder`'s parameters live on.
pub fn encoder_device(encoder: &Encoder) -> Device {
    encoder.embeddings.word_embeddings.weight.val().device()
}
