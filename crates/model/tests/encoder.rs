//! Encoder shapes, masking, positions and HF safetensors loading against a naive reference.

mod common;

use common::*;
use lamoda_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lamoda_model::{ModelError, ModelType, default_device, hf, l2_normalize, load_hf_dir};

fn ids_tensor(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, l) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, l]), device)
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 data")
}

#[test]
fn random_encoder_shapes_and_normalisation() {
    let device = default_device();
    let c = tiny_config(ModelType::Bert);
    let enc = c.init(&device);
    let ids = ids_tensor(&[vec![0, 5, 6, 2], vec![0, 7, 2, 0]], &device);
    let mask = ids_tensor(&[vec![1, 1, 1, 1], vec![1, 1, 1, 0]], &device);
    let hidden = enc.forward_hidden(ids.clone(), &mask);
    assert_eq!(hidden.dims(), [2, 4, 16]);
    let pooled = enc.forward(ids, mask);
    assert_eq!(pooled.dims(), [2, 16]);
    let normed = to_vec(l2_normalize(pooled));
    for row in normed.chunks(16) {
        let n: f32 = row.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "norm² {n}");
    }
}

#[test]
fn padding_does_not_change_the_pooled_embedding() {
    let device = default_device();
    for ty in [ModelType::Bert, ModelType::XlmRoberta] {
        let c = tiny_config(ty);
        let pad = c.pad_token_id as i64;
        let enc = c.init(&device);
        let alone = to_vec(enc.forward(
            ids_tensor(&[vec![0, 9, 10, 11, 2]], &device),
            ids_tensor(&[vec![1, 1, 1, 1, 1]], &device),
        ));
        let padded = to_vec(enc.forward(
            ids_tensor(
                &[
                    vec![0, 9, 10, 11, 2, pad, pad, pad],
                    vec![0, 12, 2, pad, pad, pad, pad, pad],
                ],
                &device,
            ),
            ids_tensor(
                &[vec![1, 1, 1, 1, 1, 0, 0, 0], vec![1, 1, 1, 0, 0, 0, 0, 0]],
                &device,
            ),
        ));
        let d = max_diff(&alone, &padded[..16]);
        assert!(d < 1e-4, "{ty:?}: padding changed the embedding by {d}");
    }
}

#[test]
fn xlmr_and_bert_position_ids() {
    let device = default_device();
    let mask = ids_tensor(&[vec![1, 1, 1, 0, 0], vec![1, 1, 1, 1, 1]], &device);
    let bert = tiny_config(ModelType::Bert).init(&device);
    let xlmr = tiny_config(ModelType::XlmRoberta).init(&device);
    let b: Vec<i64> = bert
        .position_ids(&mask)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("ints");
    let x: Vec<i64> = xlmr
        .position_ids(&mask)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("ints");
    assert_eq!(b, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    // XLM-R: padding_idx (1) + cumsum(mask), padding stays at padding_idx.
    assert_eq!(x, vec![2, 3, 4, 1, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn safetensors_load_matches_reference_forward() {
    let device = default_device();
    for (ty, prefix) in [
        (ModelType::Bert, "bert."),
        (ModelType::XlmRoberta, ""),
        (ModelType::XlmRoberta, "roberta."),
    ] {
        let c = tiny_config(ty);
        let weights = random_weights(&c, 7, prefix);
        let dir = tempfile::tempdir().expect("tempdir");
        write_tiny_hf_dir(dir.path(), &c, &weights);
        let base = load_hf_dir(dir.path(), &device).expect("load");
        assert_eq!(base.info.weights_sha256.len(), 64);
        let seqs: [&[u32]; 2] = [&[0, 5, 17, 33, 2], &[0, 8, 2]];
        let rows: Vec<Vec<i64>> = seqs
            .iter()
            .map(|s| {
                let mut r: Vec<i64> = s.iter().map(|&v| v as i64).collect();
                r.resize(5, c.pad_token_id as i64);
                r
            })
            .collect();
        let masks: Vec<Vec<i64>> = seqs
            .iter()
            .map(|s| (0..5).map(|i| (i < s.len()) as i64).collect())
            .collect();
        let got = to_vec(
            base.encoder
                .forward(ids_tensor(&rows, &device), ids_tensor(&masks, &device)),
        );
        for (i, s) in seqs.iter().enumerate() {
            let want = reference_pooled(&weights, prefix, &c, s);
            let d = max_diff(&got[i * 16..(i + 1) * 16], &want);
            assert!(d < 1e-4, "{ty:?} prefix {prefix:?} row {i}: max diff {d}");
        }
        // The tokenizer came along: "<s> ▁a ▁b </s>".
        assert_eq!(
            base.tokenizer.encode("a b").expect("encode"),
            vec![0, 4, 5, 2]
        );
    }
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let device = default_device();
    let c = tiny_config(ModelType::Bert);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");

    let mut weights = random_weights(&c, 1, "");
    weights.remove("encoder.layer.1.attention.self.value.bias");
    write_weights(&path, &weights);
    let err = hf::load_weights(c.init(&device), &path).expect_err("missing key");
    assert!(matches!(err, ModelError::MissingKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("encoder.layer.1.attention.self.value.bias"),
        "{msg}"
    );

    let mut weights = random_weights(&c, 1, "");
    weights.insert(
        "encoder.layer.0.intermediate.dense.weight".into(),
        (vec![8, 16], vec![0.0; 128]),
    );
    write_weights(&path, &weights);
    let err = hf::load_weights(c.init(&device), &path).expect_err("bad shape");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err:?}");
    assert!(
        msg.contains("encoder.layer.0.intermediate.dense.weight"),
        "{msg}"
    );

    let err = load_hf_dir(&dir.path().join("nope"), &device)
        .expect_err("no dir")
        .to_string();
    assert!(
        err.contains("no base model at") && err.contains("lamoda-tags fetch-base e5-small"),
        "{err}"
    );
}
