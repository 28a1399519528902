//! Dev-only test fixtures (never a normal dependency): tiny random models written to disk
//! the way real ones are: a 2-layer, 32-wide BERT with random weights and an a–z tokenizer
//! as an HF directory, adapter directories for it (trained for a few steps, or with fixed
//! probabilities), and bundles of them. Nothing is downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamoda_data::Category;
use lamoda_data::{EtalonPool, ReviewStack, SplitConfig};
use lamoda_inference::format::{RUNTIME_FILE, THRESHOLDS_FILE, TRAIN_CONFIG_FILE};
use lamoda_inference::lexical::LexicalSettings;
use lamoda_inference::{BaseRef, Bundle, Thresholds, write_bundle};
use lamoda_model::burn::module::Param;
use lamoda_model::burn::tensor::{Tensor, TensorData};
use lamoda_model::hf::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, write_safetensors};
use lamoda_model::tokenize::{build_unigram_tokenizer, letter_pieces};
use lamoda_model::{
    EncoderConfig, HeadSpec, HiddenAct, LoadedBase, LoraConfig, ModelError, ModelType, TagModel,
};
use lamoda_trainer::{Progress, TrainConfig, train_category};

/// Any failure of writing a fixture (they are for tests, where any error fails the test).
pub type FixtureError = Box<dyn std::error::Error + Send + Sync>;

/// The tiny encoder's shape: BERT, 2 layers, hidden 32, 4 heads, 72 positions (more than
/// [`tiny_train_config`]'s 64 tokens per review).
pub fn tiny_encoder_config() -> EncoderConfig {
    EncoderConfig {
        model_type: ModelType::Bert,
        vocab_size: 40,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 72,
        type_vocab_size: 2,
        layer_norm_eps: 1e-5,
        pad_token_id: 1,
        hidden_act: HiddenAct::Gelu,
    }
}

/// A deterministic pseudo-random stream in `offset ± scale`.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn values(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n)
            .map(|_| offset + scale * (2.0 * (self.next() as f32 / (1u64 << 31) as f32) - 1.0))
            .collect()
    }
}

/// Writes a tiny HF directory (`config.json`, `model.safetensors` with random weights from
/// `seed`, `tokenizer.json` with the pieces `▁a`…`▁z`) into `dir`, which
/// `lamoda_model::load_hf_dir` then loads like any base.
pub fn write_tiny_base(dir: &Path, seed: u64) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let c = tiny_encoder_config();
    c.save(&dir.join(CONFIG_FILE))?;

    let mut rnd = Lcg(seed ^ 0x5eed);
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let s = 1.0 / (h as f32).sqrt();
    let mut w: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        w.insert(name, (shape, rnd.values(n, scale, offset)));
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        vec![c.vocab_size, h],
        1.0,
        0.0,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        vec![c.max_position_embeddings, h],
        0.5,
        0.0,
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        vec![c.type_vocab_size, h],
        0.5,
        0.0,
    );
    put("embeddings.LayerNorm.weight".into(), vec![h], 0.2, 1.0);
    put("embeddings.LayerNorm.bias".into(), vec![h], 0.1, 0.0);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for q in ["query", "key", "value"] {
            put(format!("{p}.attention.self.{q}.weight"), vec![h, h], s, 0.0);
            put(format!("{p}.attention.self.{q}.bias"), vec![h], 0.1, 0.0);
        }
        put(
            format!("{p}.attention.output.dense.weight"),
            vec![h, h],
            s,
            0.0,
        );
        put(
            format!("{p}.attention.output.dense.bias"),
            vec![h],
            0.1,
            0.0,
        );
        put(
            format!("{p}.attention.output.LayerNorm.weight"),
            vec![h],
            0.2,
            1.0,
        );
        put(
            format!("{p}.attention.output.LayerNorm.bias"),
            vec![h],
            0.1,
            0.0,
        );
        put(format!("{p}.intermediate.dense.weight"), vec![f, h], s, 0.0);
        put(format!("{p}.intermediate.dense.bias"), vec![f], 0.1, 0.0);
        let sf = 1.0 / (f as f32).sqrt();
        put(format!("{p}.output.dense.weight"), vec![h, f], sf, 0.0);
        put(format!("{p}.output.dense.bias"), vec![h], 0.1, 0.0);
        put(format!("{p}.output.LayerNorm.weight"), vec![h], 0.2, 1.0);
        put(format!("{p}.output.LayerNorm.bias"), vec![h], 0.1, 0.0);
    }
    write_safetensors(
        &dir.join(WEIGHTS_FILE),
        w.iter()
            .map(|(name, (shape, values))| (name.as_str(), shape.as_slice(), values.as_slice())),
        BTreeMap::new(),
    )?;

    let pieces = letter_pieces();
    let path = dir.join(TOKENIZER_FILE);
    let tokenizer_err = |detail: String| ModelError::Tokenizer {
        path: path.clone(),
        detail,
    };
    let tokenizer = build_unigram_tokenizer(&pieces, &[], [0, 1, 2, 3]).map_err(tokenizer_err)?;
    tokenizer
        .save(&path, false)
        .map_err(|e| tokenizer_err(e.to_string()))?;
    Ok(())
}

/// Training settings fit for the tiny base: no text prefix, LoRA on the top layer, high
/// rates, few steps.
pub fn tiny_train_config() -> TrainConfig {
    TrainConfig {
        trainable_layers: 1,
        lr: 2e-2,
        head_lr: Some(5e-2),
        warmup_ratio: 0.0,
        batch_size: 8,
        epochs: 1,
        text_prefix: String::new(),
        ..TrainConfig::default()
    }
}

/// Synthetic products for `pool`: 1–3 reviews of random letter words, each with one or
/// two pool tags.
pub fn synthetic_rows(pool: &EtalonPool, n: usize, seed: u64) -> Vec<ReviewStack> {
    let mut rnd = Lcg(seed ^ 0xda7a);
    let letters = |rnd: &mut Lcg| -> String {
        (0..2 + rnd.next() % 5)
            .map(|_| char::from(b'a' + (rnd.next() % 26) as u8).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    (0..n)
        .map(|i| {
            let n_reviews = 1 + (rnd.next() % 3) as usize;
            let reviews = (0..n_reviews).map(|_| letters(&mut rnd)).collect();
            let first = (rnd.next() as usize) % pool.len();
            let mut tags = vec![pool.tags[first].clone()];
            let second = (rnd.next() as usize) % pool.len();
            if second != first && rnd.next().is_multiple_of(2) {
                tags.push(pool.tags[second].clone());
            }
            ReviewStack {
                row: i + 2,
                reviews,
                tags,
            }
        })
        .collect()
}

/// Trains `pool.category`'s adapter on the tiny `base` for one epoch of synthetic rows
/// (a few steps, so LoRA and head are off their initial values), with a lexical branch as
/// the shipped adapters have, and saves it as `<model_dir>/<category>/`, like
/// `lamoda_trainer::train_category` always does.
pub fn train_tiny_adapter(
    base: &LoadedBase,
    model_dir: &Path,
    pool: &EtalonPool,
    seed: u64,
) -> Result<PathBuf, FixtureError> {
    let rows = synthetic_rows(pool, 40, seed);
    let config = TrainConfig {
        seed,
        lexical: Some(LexicalSettings {
            min_df: 1,
            char_ngrams: vec![3, 4],
            char_min_df: 2,
            frozen_view: true,
            frozen_iterations: 10,
            ..LexicalSettings::default()
        }),
        ..tiny_train_config()
    };
    let report = train_category(
        base,
        pool,
        &rows,
        &SplitConfig::default(),
        &config,
        model_dir,
        Progress::Quiet,
        false,
    )?;
    Ok(report.dir)
}

/// Writes `<model_dir>/<category>/` for `pool` on `base` whose head ignores the text and
/// always gives `probabilities` (one per pool tag; a head of another width when their
/// count differs from the pool's), with `thresholds` saved as tuned per-tag thresholds
/// when given.
pub fn write_fixed_adapter(
    base: &LoadedBase,
    model_dir: &Path,
    pool: &EtalonPool,
    probabilities: &[f32],
    thresholds: Option<&[f32]>,
) -> Result<PathBuf, FixtureError> {
    let config = tiny_train_config();
    let device = lamoda_model::default_device();
    let n_layers = base.encoder.num_layers();
    let lora = LoraConfig {
        first_layer: n_layers.saturating_sub(config.trainable_layers),
        ..LoraConfig::default()
    };
    let tags: Vec<String> = (0..probabilities.len())
        .map(|i| {
            pool.tags
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("extra {i}"))
        })
        .collect();
    let category = pool.category.name().to_string();
    let mut model = TagModel::new(
        base.encoder.clone(),
        lora,
        vec![HeadSpec {
            name: category.clone(),
            tags,
        }],
        &device,
    )?;
    let n = probabilities.len();
    let hidden = base.encoder.config().hidden_size;
    let logits: Vec<f32> = probabilities
        .iter()
        .map(|&p| {
            let p = p.clamp(1e-6, 1.0 - 1e-6);
            (p / (1.0 - p)).ln()
        })
        .collect();
    if let Some(head) = model.heads.first_mut() {
        head.linear.weight = Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(vec![0f32; hidden * n], [hidden, n]),
            &device,
        ));
        head.linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(logits, [n]),
            &device,
        )));
    }
    let dir = model_dir.join(&category);
    model.save_adapter(&dir, &base.info)?;
    let write =
        |path: PathBuf, text: Result<String, serde_json::Error>| -> Result<(), FixtureError> {
            std::fs::write(&path, text?).map_err(|e| format!("{}: {e}", path.display()).into())
        };
    write(
        dir.join(TRAIN_CONFIG_FILE),
        serde_json::to_string_pretty(&config),
    )?;
    write(
        dir.join(RUNTIME_FILE),
        serde_json::to_string_pretty(&config.runtime()),
    )?;
    if let Some(t) = thresholds {
        write(
            dir.join(THRESHOLDS_FILE),
            serde_json::to_string_pretty(&Thresholds {
                tags: pool.tags.clone(),
                thresholds: t.to_vec(),
            }),
        )?;
    }
    Ok(dir)
}

/// Makes `model_dir` (holding adapters for `base`) a bundle with the routing table
/// `routing` (TOML text) and `pools` (written as their TOML), their sources kept beside it
/// in `<model_dir>.sources/`; the bundle's default base is `base`'s directory.
pub fn bundle_tiny(
    model_dir: &Path,
    base: &LoadedBase,
    routing: &str,
    pools: &[&EtalonPool],
) -> Result<Bundle, FixtureError> {
    let sources = model_dir.with_extension("sources");
    std::fs::create_dir_all(&sources)?;
    let routing_path = sources.join("routing.toml");
    std::fs::write(&routing_path, routing)?;
    for pool in pools {
        std::fs::write(
            sources.join(format!("{}.toml", pool.category.name())),
            pool.to_toml(None),
        )?;
    }
    let base_ref = BaseRef {
        name: base.info.id.clone(),
        sha256: base.info.weights_sha256.clone(),
        default_dir: std::path::absolute(&base.info.dir)?.display().to_string(),
        provide: "lamoda_testkit::write_tiny_base".into(),
    };
    Ok(write_bundle(
        model_dir,
        &base_ref,
        &routing_path,
        |c: Category| sources.join(format!("{}.toml", c.name())),
    )?)
}

/// A whole tiny bundle in `dir`: a tiny base in `dir/base` (seed `seed`) and, in
/// `dir/adapters`, an adapter trained for a few steps on synthetic rows (so its answers
/// depend on the text: letter words, as the tiny tokenizer reads) for each of `pools`,
/// routed by `routing` (TOML text). Returns `(base_dir, model_dir)`.
pub fn write_trained_bundle(
    dir: &Path,
    pools: &[EtalonPool],
    routing: &str,
    seed: u64,
) -> Result<(PathBuf, PathBuf), FixtureError> {
    let base_dir = dir.join("base");
    write_tiny_base(&base_dir, seed)?;
    let base = lamoda_model::load_hf_dir(&base_dir, &lamoda_model::default_device())?;
    let model_dir = dir.join("adapters");
    for (i, pool) in pools.iter().enumerate() {
        train_tiny_adapter(&base, &model_dir, pool, seed + i as u64)?;
    }
    let pools: Vec<&EtalonPool> = pools.iter().collect();
    bundle_tiny(&model_dir, &base, routing, &pools)?;
    Ok((base_dir, model_dir))
}

/// A routing table's TOML text: `fallback`, and each good type to its category.
pub fn routing_toml(fallback: Category, good_types: &[(&str, Category)]) -> String {
    let mut text = format!("fallback = \"{}\"\n\n[good_types]\n", fallback.name());
    for (good_type, category) in good_types {
        text.push_str(&format!("{good_type} = \"{}\"\n", category.name()));
    }
    text
}

/// The real base's directory for tests: `LAMODA_BASE`, else `models/e5-small` under the
/// workspace `root`.
pub fn real_base_dir(root: &Path) -> PathBuf {
    std::env::var_os("LAMODA_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models").join("e5-small"))
}

/// Whether the real base is in `dir`, for a test that needs it: without it, `test` prints
/// a SKIP line and should return; with `LAMODA_REQUIRE_BASE` set (CI fetches the base
/// before the tests), a missing base fails the test instead.
pub fn has_real_base(dir: &Path, test: &str) -> bool {
    if dir.join(lamoda_model::hf::CONFIG_FILE).is_file() {
        return true;
    }
    assert!(
        std::env::var_os("LAMODA_REQUIRE_BASE").is_none(),
        "LAMODA_REQUIRE_BASE is set but there is no base at {}",
        dir.display()
    );
    eprintln!(
        "SKIP {test}: no base at {} (run `lamoda-tags fetch-base e5-small` or set LAMODA_BASE)",
        dir.display()
    );
    false
}
