//! LoRA: identity at init, frozen base, training moves only adapters and heads, adapters
//! save / load exactly and refuse another base.

mod common;

use common::*;
use lamoda_model::burn::optim::{AdamWConfig, GradientsParams};
use lamoda_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lamoda_model::lora::{ADAPTER_WEIGHTS_FILE, TagModel};
use lamoda_model::{
    BaseInfo, HeadSpec, LoraConfig, ModelError, ModelType, bce_with_logits, default_device,
    load_hf_dir,
};

fn ids(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, l) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, l]), device)
}

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    (
        ids(&[vec![0, 5, 6, 7, 2], vec![0, 9, 2, 0, 0]], device),
        ids(&[vec![1, 1, 1, 1, 1], vec![1, 1, 1, 0, 0]], device),
    )
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec {
            name: "shoes".into(),
            tags: vec!["Удобные".into(), "Маломерят".into(), "Красивые".into()],
        },
        HeadSpec {
            name: "bags".into(),
            tags: vec!["Вместительная".into(), "Прочная".into()],
        },
    ]
}

fn base_info(sha: &str) -> BaseInfo {
    BaseInfo {
        dir: "tiny".into(),
        id: "tiny".into(),
        weights_sha256: sha.into(),
    }
}

/// One AdamW step on head 0 against fixed targets.
fn train_step(model: TagModel, device: &Device) -> TagModel {
    let (input, mask) = batch(device);
    let logits = model.forward(0, input, mask).expect("head 0");
    let targets = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0], [2, 3]),
        device,
    );
    let loss = bce_with_logits(logits, targets);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new().init();
    optim.step(1e-2, model, grads)
}

#[test]
fn lora_at_init_equals_base_and_targets_only_chosen_weights() {
    let device = default_device();
    let c = tiny_config(ModelType::XlmRoberta);
    let enc = c.init(&device);
    let (input, mask) = batch(&device);
    let before = to_vec(enc.forward(input.clone(), mask.clone()));
    let lora = LoraConfig::default();
    assert_eq!(
        lora.weight_paths(2),
        vec![
            "layers.0.attention.query.weight",
            "layers.0.attention.value.weight",
            "layers.1.attention.query.weight",
            "layers.1.attention.value.weight",
        ]
    );
    let adapted = lora.apply(enc).expect("apply");
    let after = to_vec(adapted.forward(input, mask));
    assert!(max_diff(&before, &after) < 1e-6);
    let bad = LoraConfig {
        targets: vec!["qeury".into()],
        ..LoraConfig::default()
    };
    let err = bad
        .apply(c.init(&device))
        .expect_err("unknown target")
        .to_string();
    assert!(err.contains("qeury"), "{err}");
}

#[test]
fn training_moves_adapters_and_heads_only_and_adapters_round_trip() {
    let device = default_device().autodiff();
    let c = tiny_config(ModelType::Bert);
    let weights = random_weights(&c, 3, "");
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_hf_dir(&dir.path().join("base"), &c, &weights);
    let base = load_hf_dir(&dir.path().join("base"), &device).expect("load base");
    let (input, mask) = batch(&device);
    let base_out = to_vec(base.encoder.forward(input.clone(), mask.clone()));

    let lora = LoraConfig {
        first_layer: 1,
        ..LoraConfig::default()
    };
    let mut model = TagModel::new(base.encoder, lora, heads(), &device).expect("tag model");
    // A non-trivial standardisation of head 0's input: fixed, saved, never trained.
    let hidden = model.heads[0].shift.val().dims()[0];
    let mean: Vec<f32> = (0..hidden).map(|i| 0.01 * i as f32 - 0.1).collect();
    let std: Vec<f32> = (0..hidden).map(|i| 0.5 + 0.05 * i as f32).collect();
    model.heads[0].set_standardisation(
        Tensor::<1>::from_data(TensorData::new(mean.clone(), [hidden]), &device),
        Tensor::<1>::from_data(TensorData::new(std.clone(), [hidden]), &device),
    );
    let base_q0 = to_vec(model.encoder.layers[0].attention.query.weight.val());
    let model = train_step(model, &device);
    let model = train_step(model, &device);
    let shift: Vec<f32> = model.heads[0]
        .shift
        .val()
        .into_data()
        .try_to_vec()
        .expect("shift");
    let scale: Vec<f32> = model.heads[0]
        .scale
        .val()
        .into_data()
        .try_to_vec()
        .expect("scale");
    assert_eq!(shift, mean, "the standardisation must not train");
    for (s, d) in scale.iter().zip(&std) {
        assert!((s * d - 1.0).abs() < 1e-6, "scale {s} for std {d}");
    }
    // Frozen base: an un-adapted weight is untouched; the adapted encoder now differs.
    assert_eq!(
        base_q0,
        to_vec(model.encoder.layers[0].attention.query.weight.val())
    );
    let tuned_out = to_vec(model.encoder.forward(input.clone(), mask.clone()));
    assert!(max_diff(&base_out, &tuned_out) > 1e-6, "LoRA did not train");

    // Cached lower layers + adapted upper layers == full forward.
    let lower = model.encoder.embed(input.clone(), &mask);
    let lower = model.encoder.forward_layers(lower, &mask, 0..1);
    let cached = to_vec(
        model
            .forward_from_cache(0, lower, mask.clone())
            .expect("head"),
    );
    let full = to_vec(model.forward(0, input.clone(), mask.clone()).expect("head"));
    assert!(max_diff(&cached, &full) < 1e-5);

    // Save only trained parts, reload onto a fresh copy of the base.
    let info = load_hf_dir(&dir.path().join("base"), &device)
        .expect("reload")
        .info;
    let adapter_dir = dir.path().join("adapter");
    model.save_adapter(&adapter_dir, &info).expect("save");
    let bytes = std::fs::read(adapter_dir.join(ADAPTER_WEIGHTS_FILE)).expect("read adapter");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n.contains(".lora.") || n.starts_with("heads.")),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.contains(".lora.")).count(),
        4,
        "{names:?}"
    );

    let fresh = load_hf_dir(&dir.path().join("base"), &device).expect("fresh base");
    let (loaded, config) =
        TagModel::load_adapter(&adapter_dir, fresh.encoder, &fresh.info, &device)
            .expect("load adapter");
    assert_eq!(config.heads, heads());
    for head in 0..2 {
        let a = to_vec(
            model
                .forward(head, input.clone(), mask.clone())
                .expect("head"),
        );
        let b = to_vec(
            loaded
                .forward(head, input.clone(), mask.clone())
                .expect("head"),
        );
        assert!(max_diff(&a, &b) < 1e-6, "head {head} differs after reload");
    }

    // Another base: refused, naming both hashes.
    let other = load_hf_dir(&dir.path().join("base"), &device).expect("base");
    let err = TagModel::load_adapter(&adapter_dir, other.encoder, &base_info("00ff"), &device)
        .expect_err("wrong base");
    assert!(matches!(err, ModelError::WrongBase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&info.weights_sha256) && msg.contains("00ff"),
        "{msg}"
    );
}
