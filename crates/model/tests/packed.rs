//! The packed fast path against the naive reference and against Burn's padded forward
//! pass: same hidden states, LoRA merged, passes of many reviews, shared layers.

mod common;

use common::*;
use lamoda_model::burn::module::Module;
use lamoda_model::burn::optim::{AdamWConfig, GradientsParams};
use lamoda_model::burn::tensor::{Device, Tensor};
use lamoda_model::tokenize::pad_batch;
use lamoda_model::{
    EncoderConfig, HeadSpec, LoadedBase, LoraConfig, ModelType, PackedEncoder, Precision, TagModel,
    bce_with_logits, default_device, load_hf_dir, packed::TOKENS_PER_PASS,
};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// Reviews of assorted lengths (special ids at both ends, as a tokenizer gives).
fn reviews(n: usize, vocab: u32, max_len: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let len = 2 + (i * 7 + 3) % (max_len - 1);
            let mut r = vec![0];
            r.extend((0..len - 2).map(|t| 3 + ((i * 13 + t * 5) as u32 % (vocab - 3))));
            r.push(2);
            r
        })
        .collect()
}

/// A tiny base of `ty` with the seeded random `weights`, written as an HF directory and
/// loaded (the directory lives as long as the returned guard).
fn tiny_base(ty: ModelType, seed: u64) -> (EncoderConfig, Weights, tempfile::TempDir, LoadedBase) {
    let c = tiny_config(ty);
    let weights = random_weights(&c, seed, "");
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_hf_dir(dir.path(), &c, &weights);
    let base = load_hf_dir(dir.path(), &default_device()).expect("load");
    (c, weights, dir, base)
}

/// Burn's padded pass: each review's token rows of the final hidden states.
fn burn_hidden(
    encoder: &lamoda_model::Encoder,
    rows: &[Vec<u32>],
    pad: u32,
    d: &Device,
) -> Vec<Vec<f32>> {
    let batch = pad_batch(rows, pad, d);
    let hidden = encoder.forward_hidden(batch.input_ids, &batch.attention_mask);
    let [_, l, h] = hidden.dims();
    let values = to_vec(hidden);
    rows.iter()
        .enumerate()
        .map(|(i, r)| values[i * l * h..i * l * h + r.len() * h].to_vec())
        .collect()
}

#[test]
fn packed_matches_the_naive_reference_and_burn_for_both_families() {
    let device = default_device();
    for ty in [ModelType::Bert, ModelType::XlmRoberta] {
        let (c, weights, _dir, base) = tiny_base(ty, 11);
        let max_len = c.max_position_embeddings - c.pad_token_id - 2;
        let rows = reviews(9, c.vocab_size as u32, max_len);
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let packed = base.packed.forward(&refs).expect("packed");
        assert_eq!(packed.len(), rows.len());
        assert_eq!(packed.tokens(), rows.iter().map(Vec::len).sum::<usize>());
        // Against Burn, token by token (padding only in Burn's batch).
        let burn = burn_hidden(&base.encoder, &rows, c.pad_token_id as u32, &device);
        for (i, b) in burn.iter().enumerate() {
            let d = max_diff(packed.review(i), b);
            assert!(d < 1e-4, "{ty:?} review {i}: max |packed − burn| = {d}");
        }
        // Against the f64 reference, pooled.
        let pooled = packed.mean_pooled();
        for (i, r) in rows.iter().enumerate() {
            let reference = reference_pooled(&weights, "", &c, r);
            let got = &pooled[i * c.hidden_size..(i + 1) * c.hidden_size];
            let d = max_diff(got, &reference);
            assert!(
                d < 1e-4,
                "{ty:?} review {i}: max |packed − reference| = {d}"
            );
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn int8_stays_close_to_the_naive_reference_for_both_families() {
    for ty in [ModelType::Bert, ModelType::XlmRoberta] {
        let (c, weights, _dir, base) = tiny_base(ty, 5);
        let int8 = base.packed.with_precision(Precision::Int8);
        assert_eq!(int8.precision(), Precision::Int8);
        assert_eq!(
            base.packed.precision(),
            Precision::Fp32,
            "the base is unchanged"
        );
        let max_len = c.max_position_embeddings - c.pad_token_id - 2;
        let rows = reviews(9, c.vocab_size as u32, max_len);
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let fp32 = base.packed.forward(&refs).expect("fp32").mean_pooled();
        let pooled = int8.forward(&refs).expect("int8").mean_pooled();
        assert_ne!(pooled, fp32, "int8 ran its own products");
        for (i, r) in rows.iter().enumerate() {
            let reference = reference_pooled(&weights, "", &c, r);
            let got = &pooled[i * c.hidden_size..(i + 1) * c.hidden_size];
            let cos = cosine(got, &reference);
            assert!(
                cos > 0.995,
                "{ty:?} review {i}: cosine to the reference {cos}"
            );
        }
        // An adapted copy keeps the precision (its new layers are quantised too).
        let adapted = int8
            .with_layers_of(&base.encoder, 1..c.num_hidden_layers)
            .expect("adapted");
        assert_eq!(adapted.precision(), Precision::Int8);
        let again = adapted.forward(&refs).expect("adapted").mean_pooled();
        assert_eq!(again, pooled, "same weights, same int8 products");
    }
}

#[test]
fn a_review_reads_the_same_alone_and_among_many_passes() {
    let (c, _, _dir, base) = tiny_base(ModelType::Bert, 5);
    // More tokens than one pass holds, so the layers run in several passes.
    let rows = reviews(2 * TOKENS_PER_PASS / 10, c.vocab_size as u32, 20);
    let total: usize = rows.iter().map(Vec::len).sum();
    assert!(total > TOKENS_PER_PASS, "{total} tokens");
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let all = base.packed.forward(&refs).expect("all");
    for i in [0, rows.len() / 2, rows.len() - 1] {
        let alone = base.packed.forward(&refs[i..=i]).expect("alone");
        let d = max_diff(all.review(i), alone.review(0));
        assert!(d < 1e-5, "review {i}: {d}");
    }
    // Lower layers, then upper layers, is the whole pass.
    let lower = base
        .packed
        .forward_layers(base.packed.embed(&refs).expect("embed"), 0..1);
    let upper = base.packed.forward_layers(lower, 1..c.num_hidden_layers);
    assert!(max_diff(&upper.values, &all.values) < 1e-6);
    // An empty set and a review too long for the positions.
    assert!(base.packed.forward(&[]).expect("empty").is_empty());
    let long = vec![3u32; c.max_position_embeddings + 1];
    let err = base
        .packed
        .forward(&[&long])
        .expect_err("too long")
        .to_string();
    assert!(err.contains("positions"), "{err}");
}

#[test]
fn trained_lora_is_merged_into_the_packed_weights() {
    let device = default_device().autodiff();
    let c = tiny_config(ModelType::XlmRoberta);
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_hf_dir(dir.path(), &c, &random_weights(&c, 8, ""));
    let base = load_hf_dir(dir.path(), &device).expect("load");
    let lora = LoraConfig {
        first_layer: 1,
        targets: vec!["query".into(), "value".into(), "intermediate".into()],
        ..LoraConfig::default()
    };
    let heads = vec![HeadSpec {
        name: "t".into(),
        tags: vec!["a".into(), "b".into()],
    }];
    let mut model = TagModel::new(base.encoder.clone(), lora, heads, &device).expect("model");
    let rows = reviews(4, c.vocab_size as u32, 12);
    let mut optim = AdamWConfig::new().init();
    for _ in 0..3 {
        let batch = pad_batch(&rows, c.pad_token_id as u32, &device);
        let logits = model
            .forward(0, batch.input_ids, batch.attention_mask)
            .expect("head");
        let targets = Tensor::<2>::from_data(
            lamoda_model::burn::tensor::TensorData::new(
                vec![1f32, 0., 0., 1., 1., 1., 0., 0.],
                [4, 2],
            ),
            &device,
        );
        let grads =
            GradientsParams::from_grads(bce_with_logits(logits, targets).backward(), &model);
        model = optim.step(5e-2, model, grads);
    }
    let plain = device.clone().inner();
    let adapted = model.encoder.valid();
    let burn = burn_hidden(&adapted, &rows, c.pad_token_id as u32, &plain);
    let before = burn_hidden(&base.encoder.clone(), &rows, c.pad_token_id as u32, &device);
    assert!(max_diff(&burn[0], &before[0]) > 1e-4, "LoRA did not move");

    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    // A copy of the whole adapted encoder, and the base with only its top layer swapped in.
    let whole = PackedEncoder::new(&adapted).expect("packed");
    let swapped = base
        .packed
        .with_layers_of(&adapted, 1..c.num_hidden_layers)
        .expect("swap");
    for packed in [&whole, &swapped] {
        let out = packed.forward(&refs).expect("forward");
        for (i, b) in burn.iter().enumerate() {
            let d = max_diff(out.review(i), b);
            assert!(d < 1e-4, "review {i}: max |packed − burn LoRA| = {d}");
        }
    }
    // The base's own packed copy is untouched by the swap.
    let base_out = base.packed.forward(&refs).expect("base");
    assert!(max_diff(base_out.review(0), &before[0]) < 1e-4);
}
