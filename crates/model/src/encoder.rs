//! The BERT / XLM-R encoder: embeddings, post-LN transformer layers, mean pooling.

use std::ops::Range;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor};

use crate::config::{EncoderConfig, HiddenAct, ModelType};

/// Word + position + token-type embeddings followed by LayerNorm.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, hidden]`; only type 0 is used.
    pub token_type_embeddings: Embedding,
    /// LayerNorm over the summed embeddings.
    pub layer_norm: LayerNorm,
}

/// Multi-head self-attention with its output projection and post-LayerNorm.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection (HF `attention.output.dense`).
    pub output: Linear,
    /// Post-attention LayerNorm (HF `attention.output.LayerNorm`).
    pub layer_norm: LayerNorm,
    #[module(skip)]
    num_heads: usize,
}

/// One post-LN transformer layer.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Self-attention block.
    pub attention: SelfAttention,
    /// Feed-forward up-projection (HF `intermediate.dense`).
    pub intermediate: Linear,
    /// Feed-forward down-projection (HF `output.dense`).
    pub output: Linear,
    /// Post-FFN LayerNorm (HF `output.LayerNorm`).
    pub layer_norm: LayerNorm,
    #[module(skip)]
    act: HiddenAct,
}

/// A BERT / XLM-RoBERTa sentence encoder.
///
/// Inputs are `input_ids` and `attention_mask` (`1` = token, `0` = padding), both
/// `[batch, seq]` integer tensors; [`Encoder::forward`] returns mean-pooled `[batch, hidden]`
/// embeddings (not normalised; see [`l2_normalize`]).
#[derive(Module, Debug)]
pub struct Encoder {
    /// The embedding block.
    pub embeddings: Embeddings,
    /// The transformer layers, bottom first.
    pub layers: Vec<EncoderLayer>,
    #[module(skip)]
    config: EncoderConfig,
}

impl EncoderConfig {
    /// Build an encoder with random weights (for tests and benchmarks; real weights come
    /// from [`crate::load_hf_dir`]). Call [`EncoderConfig::validate`] first for configs not
    /// read from a file.
    pub fn init(&self, device: &Device) -> Encoder {
        let h = self.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let embeddings = Embeddings {
            word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
            position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, h).init(device),
            token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
            layer_norm: ln(),
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| EncoderLayer {
                attention: SelfAttention {
                    query: linear(h, h),
                    key: linear(h, h),
                    value: linear(h, h),
                    output: linear(h, h),
                    layer_norm: ln(),
                    num_heads: self.num_attention_heads,
                },
                intermediate: linear(h, self.intermediate_size),
                output: linear(self.intermediate_size, h),
                layer_norm: ln(),
                act: self.hidden_act,
            })
            .collect();
        Encoder {
            embeddings,
            layers,
            config: self.clone(),
        }
    }
}

impl SelfAttention {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [b, l, h] = x.dims();
        let nh = self.num_heads;
        let hd = h / nh;
        let split = |t: Tensor<3>| t.reshape([b, l, nh, hd]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt())
            + bias;
        let probs = softmax(scores, 3);
        let ctx = probs.matmul(v).swap_dims(1, 2).reshape([b, l, h]);
        self.layer_norm.forward(self.output.forward(ctx) + x)
    }
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let x = self.attention.forward(x, bias);
        let mid = self.intermediate.forward(x.clone());
        let mid = match self.act {
            HiddenAct::Gelu => gelu(mid),
            HiddenAct::GeluTanh => gelu_approximate(mid),
        };
        self.layer_norm.forward(self.output.forward(mid) + x)
    }
}

impl Encoder {
    /// The configuration this encoder was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Position ids for a batch: `0..n` for BERT; for XLM-R `cumsum(mask) * mask + pad_id`,
    /// so real tokens count from `pad_id + 1` and padding sits at `pad_id`.
    pub fn position_ids(&self, attention_mask: &Tensor<2, Int>) -> Tensor<2, Int> {
        let [b, l] = attention_mask.dims();
        match self.config.model_type {
            ModelType::Bert => Tensor::<1, Int>::arange(0..l as i64, &attention_mask.device())
                .reshape([1, l])
                .repeat_dim(0, b),
            ModelType::XlmRoberta => {
                let mask = attention_mask.clone();
                (mask.clone().cumsum(1) * mask).add_scalar(self.config.pad_token_id as i64)
            }
        }
    }

    /// The embedding block's output `[batch, seq, hidden]` (the input of layer 0).
    pub fn embed(&self, input_ids: Tensor<2, Int>, attention_mask: &Tensor<2, Int>) -> Tensor<3> {
        let positions = self.position_ids(attention_mask);
        let types = Tensor::<2, Int>::zeros(input_ids.dims(), &input_ids.device());
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input_ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        e.layer_norm.forward(x)
    }

    /// Run the layers in `layers` (e.g. `0..8`, then `8..12`) over `hidden`. Lets a trainer
    /// cache the output of frozen lower layers and run only the adapted upper ones with
    /// gradients. The range is clamped to the layers that exist.
    pub fn forward_layers(
        &self,
        hidden: Tensor<3>,
        attention_mask: &Tensor<2, Int>,
        layers: Range<usize>,
    ) -> Tensor<3> {
        let end = layers.end.min(self.layers.len());
        let start = layers.start.min(end);
        if start == end {
            return hidden;
        }
        let bias = attention_bias(attention_mask);
        self.layers[start..end]
            .iter()
            .fold(hidden, |x, layer| layer.forward(x, bias.clone()))
    }

    /// Final hidden states `[batch, seq, hidden]`.
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
    ) -> Tensor<3> {
        let x = self.embed(input_ids, attention_mask);
        self.forward_layers(x, attention_mask, 0..self.layers.len())
    }

    /// Mean-pooled sentence embeddings `[batch, hidden]` (not normalised).
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
        let hidden = self.forward_hidden(input_ids, &attention_mask);
        mean_pool(hidden, &attention_mask)
    }
}

/// Additive attention bias `[batch, 1, 1, seq]`: 0 for tokens, a large negative for padding.
fn attention_bias(attention_mask: &Tensor<2, Int>) -> Tensor<4> {
    let [b, l] = attention_mask.dims();
    attention_mask
        .clone()
        .float()
        .sub_scalar(1.0)
        .mul_scalar(1e9)
        .reshape([b, 1, 1, l])
}

/// Mean of `hidden` `[batch, seq, h]` over the tokens where `attention_mask` is 1.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: &Tensor<2, Int>) -> Tensor<2> {
    let [b, l, h] = hidden.dims();
    let mask = attention_mask.clone().float().reshape([b, l, 1]);
    let sum = (hidden * mask.clone()).sum_dim(1).reshape([b, h]);
    let count = mask.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
    sum / count
}

/// Scale each row of `x` `[batch, h]` to unit L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}
