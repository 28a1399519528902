//! Encoder speed on CPU: forward time for a 16 × 256 batch and one LoRA training step
//! (AdamW, BCE on a head) with e5-small-shaped random weights (vocabulary cut to 8 000
//! rows, which only affects the embedding lookup). Run with
//! `cargo bench -p lamoda-model --bench encoder [--features ndarray]`.

use std::time::{Duration, Instant};

use lamoda_model::burn::optim::{AdamWConfig, GradientsParams};
use lamoda_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lamoda_model::{EncoderConfig, HeadSpec, LoraConfig, TagModel, bce_with_logits};

const BATCH: usize = 16;
const SEQ: usize = 256;
const REPS: usize = 3;

fn inputs(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| (i * 7919 % 7_990 + 5) as i64)
        .collect();
    let mask: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| i64::from(i % SEQ < SEQ - (i / SEQ) * 8))
        .collect();
    (
        Tensor::from_data(TensorData::new(ids, [BATCH, SEQ]), device),
        Tensor::from_data(TensorData::new(mask, [BATCH, SEQ]), device),
    )
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let _ = f(); // warm-up
    let start = Instant::now();
    for _ in 0..REPS {
        let _ = f();
    }
    start.elapsed() / REPS as u32
}

fn bench(name: &str, device: Device) {
    // Backend matmul throughput, for context: [4096, 384] x [384, 1536].
    let a = Tensor::<2>::ones([BATCH * SEQ, 384], &device);
    let b = Tensor::<2>::ones([384, 1536], &device);
    let mm = time(|| {
        let out: Vec<f32> = a
            .clone()
            .matmul(b.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        out.len()
    });
    let gflop = 2.0 * (BATCH * SEQ * 384 * 1536) as f64 / 1e9;
    println!(
        "{name:8} matmul 4096x384x1536: {:8.1} ms ({:.1} GFLOP/s)",
        mm.as_secs_f64() * 1e3,
        gflop / mm.as_secs_f64()
    );

    let mut config = EncoderConfig::e5_small();
    config.vocab_size = 8_000;
    let (ids, mask) = inputs(&device);

    let encoder = config.init(&device);
    let fwd = time(|| {
        let out: Vec<f32> = encoder
            .forward(ids.clone(), mask.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        out.len()
    });
    println!(
        "{name:8} forward {BATCH}x{SEQ}: {:8.1} ms",
        fwd.as_secs_f64() * 1e3
    );

    let ad = device.clone().autodiff();
    let head = HeadSpec {
        name: "shoes".into(),
        tags: (0..24).map(|i| format!("tag{i}")).collect(),
    };
    for first_layer in [0, 8] {
        let lora = LoraConfig {
            first_layer,
            ..LoraConfig::default()
        };
        let m0 = TagModel::new(config.init(&ad), lora, vec![head.clone()], &ad)
            .unwrap_or_else(|e| panic!("{e}"));
        let (ids, mask) = inputs(&ad);
        let targets = Tensor::<2>::from_data(
            TensorData::new(
                (0..BATCH * 24)
                    .map(|i| (i % 3 == 0) as i32 as f32)
                    .collect::<Vec<_>>(),
                [BATCH, 24],
            ),
            &ad,
        );
        // With first_layer > 0 the lower layers run once, without gradients (cached).
        let cached = (first_layer > 0).then(|| {
            let h = m0.encoder.embed(ids.clone(), &mask);
            m0.encoder.forward_layers(h, &mask, 0..first_layer).detach()
        });
        let mut model = Some(m0);
        let mut optim = AdamWConfig::new().init();
        let step = time(|| {
            let Some(m) = model.take() else { return };
            let logits = match &cached {
                Some(h) => m.forward_from_cache(0, h.clone(), mask.clone()),
                None => m.forward(0, ids.clone(), mask.clone()),
            };
            let Some(logits) = logits else { return };
            let loss = bce_with_logits(logits, targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-4, m, grads));
        });
        println!(
            "{name:8} LoRA step {BATCH}x{SEQ} (layers {first_layer}..12 trained): {:8.1} ms",
            step.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    bench("flex", Device::flex());
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    bench("ndarray", Device::ndarray());
}
