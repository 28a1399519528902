//! Training on a tiny random encoder and a synthetic dataset whose tags are written in
//! the reviews: the loss falls, dev micro-F1 beats the prior, the saved adapter predicts
//! exactly what the trained model did (and what the whole encoder run review by review
//! gives), and bad configs are named clearly.

use std::path::Path;

use lamoda_data::{Category, EtalonPool, ReviewStack, SplitConfig};
use lamoda_inference::format::{METRICS_FILE, RUNTIME_FILE, THRESHOLDS_FILE};
use lamoda_inference::lexical::{LEXICAL_CONFIG_FILE, LEXICAL_WEIGHTS_FILE, LexicalSettings};
use lamoda_inference::{Adapter, predict_probabilities};
use lamoda_model::burn::tensor::activation::sigmoid;
use lamoda_model::burn::tensor::{Int, Tensor, TensorData};
use lamoda_model::tokenize::{TextTokenizer, build_unigram_tokenizer, letter_pieces};
use lamoda_model::{BaseInfo, EncoderConfig, HiddenAct, LoadedBase, ModelType, default_device};
use lamoda_trainer::{Loss, Progress, TrainConfig, TrainReport, finish_adapter, train_category};

/// The encoder's probabilities computed the plain way, as a reference for the cached,
/// length-sorted, batched path: every review alone through the whole encoder (embeddings
/// and all layers, no padding), token mean, then the head on the mean of a product's
/// review vectors (mean pooling), then the sigmoid.
fn reference_probabilities(
    adapter: &Adapter,
    base: &LoadedBase,
    stacks: &[&[String]],
) -> Vec<Vec<f32>> {
    let device = default_device();
    let prefix = &adapter.runtime.text_prefix;
    stacks
        .iter()
        .map(|reviews| {
            let vectors: Vec<Tensor<2>> = reviews
                .iter()
                .map(|r| {
                    let ids = base
                        .tokenizer
                        .encode(&format!("{prefix}{r}"))
                        .expect("encode");
                    let n = ids.len();
                    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
                    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
                    let mask = Tensor::<2, Int>::from_data(
                        TensorData::new(vec![1i64; n], [1, n]),
                        &device,
                    );
                    adapter.model.encoder.forward(ids, mask)
                })
                .collect();
            let mean = Tensor::cat(vectors, 0).mean_dim(0);
            sigmoid(adapter.model.heads[0].forward(mean))
                .into_data()
                .try_to_vec::<f32>()
                .expect("probabilities")
        })
        .collect()
}

/// A 2-layer, 32-wide encoder with random weights and a letters-only tokenizer.
fn tiny_base(dir: &Path) -> LoadedBase {
    let c = EncoderConfig {
        model_type: ModelType::XlmRoberta,
        vocab_size: 40,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 40,
        type_vocab_size: 1,
        layer_norm_eps: 1e-5,
        pad_token_id: 1,
        hidden_act: HiddenAct::Gelu,
    };
    let device = default_device();
    device.seed(7);
    let encoder = c.init(&device);
    let tok = build_unigram_tokenizer(&letter_pieces(), &[], [0, 1, 2, 3]).expect("tokenizer");
    let path = dir.join("tokenizer.json");
    tok.save(&path, false).expect("save tokenizer");
    LoadedBase::new(
        encoder,
        TextTokenizer::from_file(&path, 1, 38).expect("load tokenizer"),
        BaseInfo {
            dir: dir.to_path_buf(),
            id: "tiny".into(),
            weights_sha256: "0".repeat(64),
        },
    )
    .expect("base")
}

/// Tag `x` ↔ letter `x` somewhere in a review, `y` ↔ `y`, `z` ↔ `z`; noise letters a–h.
fn dataset(n: usize) -> Vec<ReviewStack> {
    let mut state = 12345u64;
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    (0..n)
        .map(|i| {
            let mut tags: Vec<String> = Vec::new();
            for (t, share) in [("x", 60), ("y", 35), ("z", 35)] {
                if next(100) < share {
                    tags.push(t.into());
                }
            }
            if tags.is_empty() {
                tags.push("x".into());
            }
            let n_reviews = 1 + next(3) as usize;
            let mut reviews: Vec<String> = (0..n_reviews)
                .map(|_| {
                    (0..2 + next(4))
                        .map(|_| char::from(b'a' + next(8) as u8).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            for (k, tag) in tags.iter().enumerate() {
                let r = k % reviews.len();
                reviews[r] = format!("{} {tag} {tag}", reviews[r]);
            }
            ReviewStack {
                row: i + 2,
                reviews,
                tags,
            }
        })
        .collect()
}

/// The pool of [`dataset`]'s tags.
fn xyz_pool() -> EtalonPool {
    EtalonPool::new(Category::Bags, vec!["x".into(), "y".into(), "z".into()]).expect("pool")
}

/// `train_category` on the default split, quietly; an error as its message.
fn train(
    base: &LoadedBase,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    config: &TrainConfig,
    out: &Path,
    resume: bool,
) -> Result<TrainReport, String> {
    train_category(
        base,
        pool,
        rows,
        &SplitConfig::default(),
        config,
        out,
        Progress::Quiet,
        resume,
    )
    .map_err(|e| e.to_string())
}

fn config() -> TrainConfig {
    TrainConfig {
        trainable_layers: 1,
        lr: 2e-2,
        head_lr: Some(5e-2),
        warmup_ratio: 0.0,
        batch_size: 16,
        epochs: 30,
        text_prefix: String::new(),
        tune_thresholds: true,
        ..TrainConfig::default()
    }
}

#[test]
fn training_learns_tags_beats_prior_and_adapter_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let pool = xyz_pool();
    let rows = dataset(300);
    let out = dir.path().join("adapters");
    let report = train(&base, &pool, &rows, &config(), &out, false).expect("train");
    let m = &report.metrics;
    let first = m.history.first().expect("epochs").train_loss;
    let last = m.history.last().expect("epochs").train_loss;
    assert!(last < first * 0.8, "loss {first} → {last}");
    assert!(
        m.dev.micro_f1 > m.prior.micro_f1 + 0.15,
        "dev micro-F1 {} vs prior {}",
        m.dev.micro_f1,
        m.prior.micro_f1
    );
    assert_eq!((m.n_train + m.n_dev), rows.len());
    assert!(report.dir.join(METRICS_FILE).is_file());
    assert!(report.dir.join(THRESHOLDS_FILE).is_file());
    assert_eq!(report.thresholds.as_ref().map(Vec::len), Some(3));

    // Saved → loaded adapter gives the same probabilities as the in-memory best model.
    let stacks: Vec<&[String]> = rows.iter().map(|r| r.reviews.as_slice()).collect();
    let cfg = config();
    let before = predict_probabilities(&report.model, &base.tokenizer, &cfg.runtime(), &stacks)
        .expect("predict in memory");
    let trained = Adapter::load(&report.dir, &base).expect("load adapter");
    assert_eq!(trained.runtime, cfg.runtime());
    assert!(report.dir.join(RUNTIME_FILE).is_file());
    assert!(trained.thresholds.is_some());
    let after = predict_probabilities(&trained.model, &base.tokenizer, &trained.runtime, &stacks)
        .expect("predict loaded");
    let diff = before
        .iter()
        .flatten()
        .zip(after.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "max |Δp| = {diff}");
    // And they are what the plain forward pass gives, review by review.
    let reference = reference_probabilities(&trained, &base, &stacks);
    let diff = reference
        .iter()
        .flatten()
        .zip(after.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-4,
        "max |Δp| against the plain forward pass = {diff}"
    );
    // Without a frozen view there is no base kept and no vectors to read.
    assert!(trained.frozen.is_none());
    let none = trained
        .base_vectors(&base.tokenizer, &stacks, &lamoda_inference::Silent)
        .expect("base vectors");
    assert!(none.is_none());

    // Resume after the last epoch only re-evaluates: same best epoch, nothing retrained.
    let resumed = train(&base, &pool, &rows, &cfg, &out, true).expect("resume");
    assert_eq!(resumed.metrics.epoch, m.epoch);
    assert_eq!(resumed.metrics.history.len(), m.history.len());
    assert!((resumed.metrics.dev.micro_f1 - m.dev.micro_f1).abs() < 1e-9);
}

#[test]
fn the_lexical_branch_is_fitted_saved_fused_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let pool = xyz_pool();
    let rows = dataset(200);
    let out = dir.path().join("adapters");
    let cfg = TrainConfig {
        epochs: 2,
        tune_thresholds: false,
        lexical: Some(LexicalSettings {
            min_df: 1,
            weight: 0.4,
            frozen_view: true,
            frozen_iterations: 20,
            ..LexicalSettings::default()
        }),
        ..config()
    };
    let report = train(&base, &pool, &rows, &cfg, &out, false).expect("train");
    let branches = report.metrics.branches.as_ref().expect("branch figures");
    // The tags' own words are in the reviews: the stem bag finds them.
    assert!(
        branches.lexical.micro_f1 > report.metrics.prior.micro_f1 + 0.15,
        "lexical {} vs prior {}",
        branches.lexical.micro_f1,
        report.metrics.prior.micro_f1
    );
    assert!(report.dir.join(LEXICAL_CONFIG_FILE).is_file());
    assert!(report.dir.join(LEXICAL_WEIGHTS_FILE).is_file());

    let trained = Adapter::load(&report.dir, &base).expect("load adapter");
    let lexical = trained.lexical.as_ref().expect("lexical branch loaded");
    assert_eq!(lexical.settings.weight, 0.4);
    let stacks: Vec<&[String]> = rows.iter().take(20).map(|r| r.reviews.as_slice()).collect();
    let encoder = trained
        .encoder_probabilities(&base.tokenizer, &stacks)
        .expect("encoder");
    let fused = trained
        .probabilities(&base.tokenizer, &stacks)
        .expect("fused");
    // The frozen view reads the base's review vectors: one per review, of its width.
    assert!(trained.frozen.is_some() && lexical.frozen.is_some());
    let outputs = trained
        .encoder_outputs(&base.tokenizer, &stacks, &lamoda_inference::Silent)
        .expect("encoder outputs");
    // The encoder's part is what the plain forward pass gives, review by review.
    let reference = reference_probabilities(&trained, &base, &stacks);
    for (a, b) in reference
        .iter()
        .flatten()
        .zip(outputs.probabilities.iter().flatten())
    {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let vectors = outputs.vectors.expect("frozen vectors");
    // The vectors-only pass gives the same vectors.
    let alone = trained
        .base_vectors(&base.tokenizer, &stacks, &lamoda_inference::Silent)
        .expect("base vectors")
        .expect("the adapter keeps the base");
    assert_eq!(alone, vectors);
    // Settings without the frozen view (or no branch) drop the base; with it, keep it.
    let mut refit = Adapter::load(&report.dir, &base).expect("load adapter");
    let without = LexicalSettings {
        frozen_view: false,
        ..lexical.settings.clone()
    };
    refit.keep_base_for(Some(&without), &base);
    assert!(refit.frozen.is_none());
    refit.keep_base_for(Some(&lexical.settings), &base);
    assert!(refit.frozen.is_some());
    refit.keep_base_for(None, &base);
    assert!(refit.frozen.is_none());
    for (v, stack) in vectors.iter().zip(&stacks) {
        assert_eq!(v.len(), stack.len());
        assert!(
            v.iter()
                .all(|r| r.len() == base.encoder.config().hidden_size)
        );
    }
    let err = lexical
        .probabilities(&stacks, None)
        .expect_err("the frozen view needs vectors");
    assert!(err.to_string().contains("review vectors"), "{err}");
    let lex = lexical
        .probabilities(&stacks, Some(&vectors))
        .expect("lexical");
    for ((e, l), f) in encoder
        .iter()
        .flatten()
        .zip(lex.iter().flatten())
        .zip(fused.iter().flatten())
    {
        assert!((0.6 * e + 0.4 * l - f).abs() < 1e-6, "{e} {l} {f}");
    }
    assert_ne!(encoder, fused);

    // Finishing again without a lexical branch removes its files.
    let s = lamoda_data::train_dev_split(&rows, &SplitConfig::default());
    let train: Vec<&ReviewStack> = s.train.iter().map(|&i| &rows[i]).collect();
    let dev: Vec<&ReviewStack> = s.dev.iter().map(|&i| &rows[i]).collect();
    let dev_stacks: Vec<&[String]> = dev.iter().map(|r| r.reviews.as_slice()).collect();
    let encoder_dev = trained
        .encoder_probabilities(&base.tokenizer, &dev_stacks)
        .expect("encoder dev");
    let plain = TrainConfig {
        lexical: None,
        ..cfg.clone()
    };
    let finished = finish_adapter(&report.dir, &pool, &train, &dev, &encoder_dev, None, &plain)
        .expect("finish");
    assert!(finished.branches.is_none() && finished.lexical.is_none());
    assert!(!report.dir.join(LEXICAL_CONFIG_FILE).exists());
    assert!(
        Adapter::load(&report.dir, &base)
            .expect("reload")
            .lexical
            .is_none()
    );
}

#[test]
fn config_defaults_files_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Missing file → seed defaults.
    let c = TrainConfig::load(dir.path(), Category::Shoes).expect("defaults");
    assert_eq!(c, TrainConfig::default());
    assert_eq!(
        (c.lora.rank, c.lora.alpha, c.trainable_layers),
        (8, 16.0, 4)
    );
    assert_eq!((c.batch_size, c.epochs, c.lr), (8, 3, 3e-4));

    let write = |text: &str| {
        let path = dir.path().join("shoes.toml");
        std::fs::write(&path, text).expect("write");
        TrainConfig::load(dir.path(), Category::Shoes).map_err(|e| e.to_string())
    };
    let c =
        write("epochs = 5\nloss = { focal = { gamma = 2.0 } }\n[lora]\nrank = 4\n").expect("valid");
    assert_eq!((c.epochs, c.lora.rank), (5, 4));
    assert_eq!(c.loss, Loss::Focal { gamma: 2.0 });

    let err = write("epocs = 5\n").expect_err("unknown field");
    assert!(err.contains("shoes.toml") && err.contains("epocs"), "{err}");
    let err = write("lr = 0.0\n").expect_err("lr");
    assert!(
        err.contains("shoes.toml") && err.contains("`lr` = 0"),
        "{err}"
    );
    let err = write("batch_size = 0\n").expect_err("batch");
    assert!(err.contains("batch_size"), "{err}");
    let err = write("[lora]\ntargets = [\"qeury\"]\n").expect_err("target");
    assert!(err.contains("qeury"), "{err}");
    let err = write("loss = { focal = { gamma = -1.0 } }\n").expect_err("gamma");
    assert!(err.contains("gamma") && err.contains("-1"), "{err}");
    let err = write("[lexical]\nweight = 2.0\n").expect_err("lexical weight");
    assert!(err.contains("`lexical.weight` = 2"), "{err}");
    let err = write("[lexical]\nstem = 5\n").expect_err("unknown lexical field");
    assert!(err.contains("stem"), "{err}");

    // Deeper than the encoder.
    let base = tiny_base(dir.path());
    let pool = EtalonPool::new(Category::Bags, vec!["x".into()]).expect("pool");
    let rows = dataset(20);
    let too_deep = TrainConfig {
        trainable_layers: 3,
        ..TrainConfig::default()
    };
    let err = train(&base, &pool, &rows, &too_deep, dir.path(), false).expect_err("too deep");
    assert!(
        err.contains("trainable_layers") && err.contains("only 2"),
        "{err}"
    );
}

#[test]
fn every_shipped_config_is_valid() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for category in Category::ALL {
        let path = TrainConfig::path_in(&configs, category);
        assert!(path.is_file(), "{} is missing", path.display());
        let c = TrainConfig::load(&configs, category).unwrap_or_else(|e| panic!("{category}: {e}"));
        // The shipped base (e5-small) has 12 layers.
        c.validate(&path, Some(12))
            .unwrap_or_else(|e| panic!("{category}: {e}"));
    }
}

#[test]
fn schedule_warms_up_then_decays_and_thresholds_fit_each_tag() {
    use lamoda_metrics::tune_thresholds;
    use lamoda_trainer::step::learning_rate;
    let c = TrainConfig {
        lr: 1e-3,
        warmup_ratio: 0.2,
        ..TrainConfig::default()
    };
    let lrs: Vec<f64> = (0..10).map(|s| learning_rate(&c, s, 10)).collect();
    assert!(
        (lrs[0] - 5e-4).abs() < 1e-12 && (lrs[1] - 1e-3).abs() < 1e-12,
        "{lrs:?}"
    );
    assert!(lrs[2..].windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
    assert!(lrs[9] > 0.0 && lrs[9] <= 1.25e-4, "{lrs:?}");

    // Tag 0 is gold exactly when p ≥ 0.3; tag 1 is never gold and keeps 0.5.
    let probs = vec![
        vec![0.35, 0.9],
        vec![0.32, 0.1],
        vec![0.2, 0.6],
        vec![0.1, 0.2],
    ];
    let gold = vec![
        vec![1.0, 0.0],
        vec![1.0, 0.0],
        vec![0.0, 0.0],
        vec![0.0, 0.0],
    ];
    assert_eq!(tune_thresholds(&probs, &gold), vec![0.3, 0.5]);
}

#[test]
fn log_mean_exp_pooling_is_a_soft_maximum_over_reviews() {
    use lamoda_inference::Pooling;
    use lamoda_inference::forward::{FeatureCache, product_logits, tokenize_stacks};
    use lamoda_model::{HeadSpec, LoraConfig, TagModel};
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let device = default_device();
    let lora = LoraConfig {
        first_layer: 1,
        ..LoraConfig::default()
    };
    let heads = vec![HeadSpec {
        name: "bags".into(),
        tags: vec!["x".into(), "y".into()],
    }];
    let model = TagModel::new(base.encoder.clone(), lora, heads, &device).expect("model");
    let config = TrainConfig {
        text_prefix: String::new(),
        ..TrainConfig::default()
    };
    let (r1, r2) = ("a b x x".to_string(), "c d".to_string());
    let stacks: Vec<Vec<String>> = vec![
        vec![r1.clone()],
        vec![r2.clone()],
        vec![r1.clone(), r1.clone()],
        vec![r1.clone(), r2.clone()],
    ];
    let refs: Vec<&[String]> = stacks.iter().map(Vec::as_slice).collect();
    let ids = tokenize_stacks(&base.tokenizer, &refs, &config.runtime()).expect("ids");
    let packed = lamoda_model::PackedEncoder::new(&model.encoder).expect("packed");
    let cache = FeatureCache::build(&packed, &ids, 1, &lamoda_inference::Silent).expect("cache");
    let logits = |pooling| -> Vec<f32> {
        product_logits(&model, 0, &cache, &[0, 1, 2, 3], pooling, &device)
            .into_data()
            .try_to_vec::<f32>()
            .expect("logits")
    };
    let lme = logits(Pooling::LogMeanExp);
    for t in 0..2 {
        let (z1, z2) = (lme[t], lme[2 + t]);
        // A review repeated is the review alone.
        assert!((lme[4 + t] - z1).abs() < 1e-4, "{} vs {z1}", lme[4 + t]);
        // Two different reviews: log((e^z1 + e^z2) / 2), at least their mean, at most their max.
        let expected = ((z1.exp() + z2.exp()) / 2.0).ln();
        assert!(
            (lme[6 + t] - expected).abs() < 1e-4,
            "{} vs {expected}",
            lme[6 + t]
        );
        assert!(lme[6 + t] >= (z1 + z2) / 2.0 - 1e-5 && lme[6 + t] <= z1.max(z2) + 1e-5);
    }
    // Mean pooling reads the mean vector: a repeated review is still the review alone.
    let mean = logits(Pooling::Mean);
    assert!((mean[4] - mean[0]).abs() < 1e-4 && (mean[5] - mean[1]).abs() < 1e-4);
}
