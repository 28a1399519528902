//! Shared helpers: tiny HF-style checkpoints with known weights and a naive reference
//! forward pass to compare the Burn encoder against.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use lamoda_model::{EncoderConfig, HiddenAct, ModelType};

/// A tiny config of the given family.
pub fn tiny_config(model_type: ModelType) -> EncoderConfig {
    EncoderConfig {
        model_type,
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        max_position_embeddings: 24,
        type_vocab_size: 2,
        layer_norm_eps: 1e-5,
        pad_token_id: if model_type == ModelType::XlmRoberta {
            1
        } else {
            0
        },
        hidden_act: HiddenAct::Gelu,
    }
}

/// HF tensors: name → (shape, values).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Deterministic pseudo-random weights with HF names (and a `bert.` prefix if asked).
pub fn random_weights(c: &EncoderConfig, seed: u64, prefix: &str) -> Weights {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move |n: usize, scale: f32, offset: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((state >> 33) as f32) / (u32::MAX >> 1) as f32; // [0, 1)
                offset + scale * (2.0 * u - 1.0)
            })
            .collect()
    };
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut w = Weights::new();
    let mut put = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        w.insert(format!("{prefix}{name}"), (shape, values));
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        vec![c.vocab_size, h],
        rnd(c.vocab_size * h, 1.0, 0.0),
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        vec![c.max_position_embeddings, h],
        rnd(c.max_position_embeddings * h, 0.5, 0.0),
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        vec![c.type_vocab_size, h],
        rnd(c.type_vocab_size * h, 0.5, 0.0),
    );
    put(
        "embeddings.LayerNorm.weight".into(),
        vec![h],
        rnd(h, 0.2, 1.0),
    );
    put(
        "embeddings.LayerNorm.bias".into(),
        vec![h],
        rnd(h, 0.1, 0.0),
    );
    let s = 1.0 / (h as f32).sqrt();
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for q in ["query", "key", "value"] {
            put(
                format!("{p}.attention.self.{q}.weight"),
                vec![h, h],
                rnd(h * h, s, 0.0),
            );
            put(
                format!("{p}.attention.self.{q}.bias"),
                vec![h],
                rnd(h, 0.1, 0.0),
            );
        }
        put(
            format!("{p}.attention.output.dense.weight"),
            vec![h, h],
            rnd(h * h, s, 0.0),
        );
        put(
            format!("{p}.attention.output.dense.bias"),
            vec![h],
            rnd(h, 0.1, 0.0),
        );
        put(
            format!("{p}.attention.output.LayerNorm.weight"),
            vec![h],
            rnd(h, 0.2, 1.0),
        );
        put(
            format!("{p}.attention.output.LayerNorm.bias"),
            vec![h],
            rnd(h, 0.1, 0.0),
        );
        put(
            format!("{p}.intermediate.dense.weight"),
            vec![f, h],
            rnd(f * h, s, 0.0),
        );
        put(
            format!("{p}.intermediate.dense.bias"),
            vec![f],
            rnd(f, 0.1, 0.0),
        );
        put(
            format!("{p}.output.dense.weight"),
            vec![h, f],
            rnd(h * f, 1.0 / (f as f32).sqrt(), 0.0),
        );
        put(format!("{p}.output.dense.bias"), vec![h], rnd(h, 0.1, 0.0));
        put(
            format!("{p}.output.LayerNorm.weight"),
            vec![h],
            rnd(h, 0.2, 1.0),
        );
        put(
            format!("{p}.output.LayerNorm.bias"),
            vec![h],
            rnd(h, 0.1, 0.0),
        );
    }
    // Extra keys real checkpoints carry; the loader must ignore them.
    put("pooler.dense.weight".into(), vec![h, h], rnd(h * h, s, 0.0));
    w
}

/// Write `weights` as a safetensors file.
pub fn write_weights(path: &Path, weights: &Weights) {
    lamoda_model::hf::write_safetensors(
        path,
        weights
            .iter()
            .map(|(n, (s, v))| (n.as_str(), s.as_slice(), v.as_slice())),
        BTreeMap::new(),
    )
    .expect("write safetensors");
}

/// A tiny unigram tokenizer whose pieces are `<s> <pad> </s> <unk>`, then `▁a`…`▁z` etc.
pub fn write_tiny_hf_dir(dir: &Path, c: &EncoderConfig, weights: &Weights) {
    std::fs::create_dir_all(dir).expect("mkdir");
    c.save(&dir.join("config.json")).expect("config");
    write_weights(&dir.join("model.safetensors"), weights);
    let mut pieces = lamoda_model::tokenize::letter_pieces();
    for ch in 'a'..='j' {
        pieces.push((ch.to_string(), -3.0));
    }
    pieces.truncate(c.vocab_size);
    let tok = lamoda_model::tokenize::build_unigram_tokenizer(&pieces, &[], [0, 1, 2, 3])
        .expect("tokenizer");
    tok.save(dir.join("tokenizer.json"), false)
        .expect("save tokenizer");
}

fn get<'a>(w: &'a Weights, prefix: &str, name: &str) -> &'a [f32] {
    &w[&format!("{prefix}{name}")].1
}

fn layer_norm(x: &mut [f64], g: &[f32], b: &[f32], eps: f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, v) in x.iter_mut().enumerate() {
        *v = (*v - mean) * inv * g[i] as f64 + b[i] as f64;
    }
}

/// y = W x + b with W `[out, in]` (HF layout).
fn linear(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
    let (out, inp) = (b.len(), x.len());
    (0..out)
        .map(|o| b[o] as f64 + (0..inp).map(|i| w[o * inp + i] as f64 * x[i]).sum::<f64>())
        .collect()
}

#[rustfmt::skip] // rustfmt takes minutes on the nested polynomial below.
fn erf(x: f64) -> f64 {
    // Abramowitz–Stegun 7.1.26 is too coarse; use a series / continued fraction mix.
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { y } else { -y }
}

/// Naive reference: mean-pooled embedding of one unpadded sequence.
pub fn reference_pooled(w: &Weights, prefix: &str, c: &EncoderConfig, ids: &[u32]) -> Vec<f32> {
    let h = c.hidden_size;
    let n = ids.len();
    let eps = c.layer_norm_eps;
    let word = get(w, prefix, "embeddings.word_embeddings.weight");
    let pos = get(w, prefix, "embeddings.position_embeddings.weight");
    let typ = get(w, prefix, "embeddings.token_type_embeddings.weight");
    let mut x: Vec<Vec<f64>> = (0..n)
        .map(|t| {
            let p = match c.model_type {
                ModelType::Bert => t,
                ModelType::XlmRoberta => t + 1 + c.pad_token_id,
            };
            let mut v: Vec<f64> = (0..h)
                .map(|i| {
                    word[ids[t] as usize * h + i] as f64 + pos[p * h + i] as f64 + typ[i] as f64
                })
                .collect();
            layer_norm(
                &mut v,
                get(w, prefix, "embeddings.LayerNorm.weight"),
                get(w, prefix, "embeddings.LayerNorm.bias"),
                eps,
            );
            v
        })
        .collect();
    let nh = c.num_attention_heads;
    let hd = h / nh;
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let g = |s: &str| get(w, prefix, &format!("{p}.{s}"));
        let proj = |name: &str| -> Vec<Vec<f64>> {
            x.iter()
                .map(|v| {
                    linear(
                        v,
                        g(&format!("attention.self.{name}.weight")),
                        g(&format!("attention.self.{name}.bias")),
                    )
                })
                .collect()
        };
        let (q, k, v) = (proj("query"), proj("key"), proj("value"));
        let mut ctx = vec![vec![0f64; h]; n];
        for head in 0..nh {
            let r = head * hd..(head + 1) * hd;
            for t in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|s| r.clone().map(|e| q[t][e] * k[s][e]).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = exps.iter().sum();
                for e in r.clone() {
                    ctx[t][e] = (0..n).map(|s| exps[s] / z * v[s][e]).sum();
                }
            }
        }
        for t in 0..n {
            let ao = linear(
                &ctx[t],
                g("attention.output.dense.weight"),
                g("attention.output.dense.bias"),
            );
            let mut y: Vec<f64> = x[t].iter().zip(&ao).map(|(a, b)| a + b).collect();
            layer_norm(
                &mut y,
                g("attention.output.LayerNorm.weight"),
                g("attention.output.LayerNorm.bias"),
                eps,
            );
            let mid: Vec<f64> = linear(
                &y,
                g("intermediate.dense.weight"),
                g("intermediate.dense.bias"),
            )
            .into_iter()
            .map(|u| 0.5 * u * (1.0 + erf(u / std::f64::consts::SQRT_2)))
            .collect();
            let fo = linear(&mid, g("output.dense.weight"), g("output.dense.bias"));
            let mut z: Vec<f64> = y.iter().zip(&fo).map(|(a, b)| a + b).collect();
            layer_norm(
                &mut z,
                g("output.LayerNorm.weight"),
                g("output.LayerNorm.bias"),
                eps,
            );
            x[t] = z;
        }
    }
    (0..h)
        .map(|i| (x.iter().map(|v| v[i]).sum::<f64>() / n as f64) as f32)
        .collect()
}

/// Max absolute difference.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
