//! The speed benchmark, `cargo xtask bench` (apart from the tests; it prints figures): how fast the encoder, the tagger and training run here, beside
//! PyTorch on the same weights, tokens and threads.
//!
//! The sample is a seeded draw of real products from `reviews_sampled.csv`, read with the
//! runtime's caps (its reviews and token lengths as they are). Four figures, each the
//! median of `--repeats` runs after one warm-up:
//! (a) the frozen encoder's real (unpadded) tokens/s, every layer, mean-pooled;
//! (b) the tagger's products/s end to end (tokenize → encode → lexical branch → decode) in
//!     batches of `--batch` products;
//! (c) one LoRA training step of a category's config over its cache;
//! (d) the cache pass (the frozen lower layers of that config) per 1,000 reviews.
//! PyTorch (`crates/bench/torch_encode.py`, in a virtual environment it installs) runs (a)
//! and (d) on the same token ids in length-sorted batches padded to their longest review.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use lamoda_data::{Category, UnknownTagPolicy, load_products};
use lamoda_inference::forward::{FeatureCache, tokenize_stacks};
use lamoda_inference::{Request, RuntimeSettings, Tagger};
use lamoda_trainer::{TrainConfig, bench_steps};

use lamoda_cli::common::{DataRootArgs, emit};
use lamoda_data::Project;

/// Makes a Python virtual environment at the path with the packages; the last argument
/// names what needs it (the developer tools' helper, given by `cargo xtask`).
pub type MakeVenv<'a> = &'a dyn Fn(&Path, &[&str], &str) -> anyhow::Result<()>;

/// What the PyTorch side needs besides Python itself.
const TORCH_PACKAGES: &[&str] = &["torch", "numpy", "safetensors"];

/// `cargo xtask bench` arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    /// The data directory.
    pub data: DataRootArgs,
    /// Products drawn from `reviews_sampled.csv`.
    #[arg(long, default_value_t = 150)]
    pub products: usize,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Timed runs of each figure (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Threads, ours and PyTorch's.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Products per tagger call in (b).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Category whose training config (c) and (d) use.
    #[arg(long, default_value = "bags")]
    pub category: Category,
    /// Training steps timed in (c).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Adapter bundle for (b) (default: the shipped `adapters/`).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Base model directory (default: the bundle's).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// The fp32 peak of the threads used, in GFLOP/s (default: an estimate from the CPU's
    /// clock and vector width, printed).
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// Skip the PyTorch side.
    #[arg(long)]
    pub no_torch: bool,
    /// Virtual environment of the PyTorch side (installed there when missing).
    #[arg(long, value_name = "DIR")]
    pub torch_venv: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What a figure counts; in the JSON as `tokens/s`, `products/s` or `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Unit {
    #[serde(rename = "tokens/s")]
    TokensPerSecond,
    #[serde(rename = "products/s")]
    ProductsPerSecond,
    #[serde(rename = "s")]
    Seconds,
}

impl Unit {
    /// How much faster `ours` is than `torch`: the rate ratio, or the time ratio
    /// PyTorch/ours for seconds (above 1 is faster than PyTorch either way).
    fn speedup(self, ours: f64, torch: f64) -> f64 {
        match self {
            Unit::Seconds => torch / ours,
            Unit::TokensPerSecond | Unit::ProductsPerSecond => ours / torch,
        }
    }

    /// `v` for the table.
    fn show(self, v: f64) -> String {
        match self {
            Unit::Seconds if v < 10.0 => format!("{v:.3} s"),
            Unit::Seconds => format!("{v:.1} s"),
            Unit::TokensPerSecond | Unit::ProductsPerSecond => format!("{v:.1}"),
        }
    }
}

/// One figure, ours beside PyTorch's.
#[derive(Debug, Serialize)]
struct Figure {
    what: &'static str,
    unit: Unit,
    ours: f64,
    ours_runs: Vec<f64>,
    torch: Option<f64>,
    /// ours / PyTorch, for rates (higher is better for us); PyTorch / ours for seconds.
    speedup_vs_torch: Option<f64>,
    fraction_of_peak: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    sample: Sample,
    threads: usize,
    repeats: usize,
    peak_gflops: f64,
    peak_source: String,
    torch: Option<String>,
    torch_skipped: Option<String>,
    /// Cosine between our pooled vectors and PyTorch's, over the sample's reviews.
    min_cosine_vs_torch: Option<f64>,
    figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
struct Sample {
    file: PathBuf,
    seed: u64,
    products: usize,
    reviews: usize,
    tokens: usize,
    median_review_tokens: usize,
    max_reviews_per_product: usize,
    max_tokens_per_review: usize,
    train_category: String,
    train_products: usize,
    train_reviews: usize,
    cache_layers: usize,
    batch_size: usize,
}

/// Runs `cargo xtask bench` (from a release build: `cargo xtask` reruns itself so) in
/// `project`, installing PyTorch with `make_venv` when needed.
pub fn run(args: BenchArgs, project: &Project, make_venv: MakeVenv<'_>) -> anyhow::Result<()> {
    if args.repeats == 0 || args.threads == 0 || args.batch == 0 || args.products == 0 {
        bail!("--repeats, --threads, --batch and --products must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("cannot set the thread count")?;
    let data = args.data.resolve()?;
    let file = data.root().join("reviews_sampled.csv");
    let mut products = load_products(&file)?;
    products.retain(|p| p.reviews.iter().any(|r| !r.trim().is_empty()));
    products.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
    products.truncate(args.products);

    let model_dir = args.model.clone().unwrap_or_else(|| project.adapters_dir());
    let t_load = Instant::now();
    let tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    eprintln!(
        "bench: loaded {} in {:.1} s",
        model_dir.display(),
        t_load.elapsed().as_secs_f64()
    );
    let base = tagger.base();
    let packed = &base.packed;
    let caps = RuntimeSettings::default();
    let stacks: Vec<Vec<String>> = products
        .iter()
        .map(|p| {
            p.reviews
                .iter()
                .map(|r| r.trim())
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let stack_refs: Vec<&[String]> = stacks.iter().map(Vec::as_slice).collect();
    let ids = tokenize_stacks(&base.tokenizer, &stack_refs, &caps)?;
    let reviews: Vec<&[u32]> = ids.iter().flatten().map(Vec::as_slice).collect();
    let tokens: usize = reviews.iter().map(|r| r.len()).sum();
    let mut lens: Vec<usize> = reviews.iter().map(|r| r.len()).collect();
    lens.sort_unstable();
    let mean_len = tokens as f64 / reviews.len().max(1) as f64;

    // (c) and (d): the category's training config and labelled rows.
    let pool = project.pool(args.category)?;
    let config = TrainConfig::load(&project.root().join("configs"), args.category)?;
    let rows = data
        .labeled(args.category, &pool, UnknownTagPolicy::Error)
        .with_context(|| format!("training data of `{}`", args.category))?;
    let mut train_rows = rows.rows;
    train_rows.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
    train_rows.truncate(config.batch_size * (args.steps + 1));
    let first_layer = config.lora_config(packed.num_layers()).first_layer;

    let (peak_gflops, peak_source) = match args.peak_gflops {
        Some(p) if p > 0.0 => (p, "--peak-gflops".to_owned()),
        Some(_) => bail!("--peak-gflops must be positive"),
        None => estimate_peak(args.threads),
    };
    let peak_fraction = |tokens_per_s: f64, layers: std::ops::Range<usize>| {
        tokens_per_s * packed.flops_per_token(layers, mean_len) / (peak_gflops * 1e9)
    };

    // (a) the frozen encoder.
    eprintln!(
        "bench: (a) encoder over {} reviews, {tokens} tokens",
        reviews.len()
    );
    let mut pooled = Vec::new();
    let enc_runs = timed(args.repeats, || {
        pooled = packed.forward(&reviews)?.mean_pooled();
        Ok(())
    })?;
    let enc_rates: Vec<f64> = enc_runs.iter().map(|s| tokens as f64 / s).collect();

    // (d) the cache pass of the category's frozen lower layers.
    eprintln!("bench: (d) cache pass through layers 0..{first_layer}");
    let cache_runs = timed(args.repeats, || {
        FeatureCache::build(packed, &ids, first_layer, &lamoda_inference::Silent)?;
        Ok(())
    })?;
    let per_1000 = |s: f64| s * 1000.0 / reviews.len().max(1) as f64;
    let cache_per_1000: Vec<f64> = cache_runs.iter().map(|&s| per_1000(s)).collect();

    // (b) the tagger end to end.
    eprintln!(
        "bench: (b) tagger over {} products in batches of {}",
        products.len(),
        args.batch
    );
    let requests: Vec<Request> = products
        .iter()
        .map(|p| Request::new(p.good_type.clone(), p.reviews.clone()))
        .collect();
    let tag_runs = timed(args.repeats, || {
        for chunk in requests.chunks(args.batch) {
            tagger.predict(chunk)?;
        }
        Ok(())
    })?;
    let tag_rates: Vec<f64> = tag_runs.iter().map(|s| products.len() as f64 / s).collect();

    // (c) training steps.
    eprintln!(
        "bench: (c) {} training steps of {} products ({})",
        args.steps, config.batch_size, args.category
    );
    let steps = bench_steps(base, &pool, &train_rows, &config, args.steps.max(1))?;

    // PyTorch.
    let root = project.root().to_path_buf();
    let base_dir = base_dir_of(&tagger, args.base.as_deref());
    let (torch, torch_skipped) = if args.no_torch {
        (None, Some("--no-torch".to_owned()))
    } else {
        let venv = args
            .torch_venv
            .clone()
            .unwrap_or_else(|| root.join("target/torch-venv"));
        match torch_side(
            &root,
            &venv,
            &base_dir,
            &reviews,
            first_layer,
            &args,
            make_venv,
        ) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    };
    let min_cosine = torch
        .as_ref()
        .map(|t| min_cosine(&pooled, &t.pooled, packed.hidden()));

    let mut figures = vec![
        Figure {
            what: "(a) frozen encoder, real tokens/s",
            unit: Unit::TokensPerSecond,
            ours: median(&enc_rates),
            torch: torch.as_ref().map(|t| tokens as f64 / t.encode_seconds),
            speedup_vs_torch: None,
            fraction_of_peak: Some(peak_fraction(median(&enc_rates), 0..packed.num_layers())),
            ours_runs: enc_rates,
        },
        Figure {
            what: "(b) tagger end to end, products/s",
            unit: Unit::ProductsPerSecond,
            ours: median(&tag_rates),
            ours_runs: tag_rates,
            torch: None,
            speedup_vs_torch: None,
            fraction_of_peak: None,
        },
        Figure {
            what: "(c) one LoRA training step",
            unit: Unit::Seconds,
            ours: median(&steps.step_seconds),
            ours_runs: steps.step_seconds.clone(),
            torch: None,
            speedup_vs_torch: None,
            fraction_of_peak: None,
        },
        Figure {
            what: "(d) cache pass, s per 1,000 reviews",
            unit: Unit::Seconds,
            ours: median(&cache_per_1000),
            torch: torch.as_ref().map(|t| per_1000(t.cache_seconds)),
            speedup_vs_torch: None,
            fraction_of_peak: Some(peak_fraction(
                1000.0 / median(&cache_per_1000) * mean_len,
                0..first_layer,
            )),
            ours_runs: cache_per_1000,
        },
    ];
    for f in &mut figures {
        f.speedup_vs_torch = f.torch.map(|t| f.unit.speedup(f.ours, t));
    }
    let report = Report {
        sample: Sample {
            file,
            seed: args.seed,
            products: products.len(),
            reviews: reviews.len(),
            tokens,
            median_review_tokens: lens.get(lens.len() / 2).copied().unwrap_or(0),
            max_reviews_per_product: caps.max_reviews_per_product,
            max_tokens_per_review: caps.max_tokens_per_review,
            train_category: args.category.name().to_owned(),
            train_products: steps.products,
            train_reviews: steps.reviews,
            cache_layers: first_layer,
            batch_size: steps.batch_size,
        },
        threads: args.threads,
        repeats: args.repeats,
        peak_gflops,
        peak_source,
        torch: torch.as_ref().map(|t| t.version.clone()),
        torch_skipped,
        min_cosine_vs_torch: min_cosine,
        figures,
    };
    if args.json {
        emit(&serde_json::to_string_pretty(&report)?)?;
    } else {
        emit(&table(&report))?;
    }
    Ok(())
}

/// Seconds of each of `repeats` runs of `f`, after one untimed warm-up run.
fn timed(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    f()?;
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// fp32 peak of `threads` cores: clock × FMA lanes × 2 FMA units × 2 FLOP, from
/// `/proc/cpuinfo` and the vector width the CPU reports (an estimate: the unit count and
/// the clock under load are assumed).
fn estimate_peak(threads: usize) -> (f64, String) {
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(3000.0);
    let lanes = fma_lanes();
    let cores = threads.min(std::thread::available_parallelism().map_or(1, usize::from));
    let gflops = cores as f64 * mhz / 1000.0 * lanes as f64 * 2.0 * 2.0;
    let isa = if lanes == 16 { "AVX-512" } else { "AVX2" };
    (
        gflops,
        format!(
            "estimate: {cores} cores × {mhz:.0} MHz × {lanes} f32 lanes ({isa}) × 2 FMA units × 2"
        ),
    )
}

#[cfg(target_arch = "x86_64")]
fn fma_lanes() -> usize {
    if std::is_x86_feature_detected!("avx512f") {
        16
    } else {
        8
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_lanes() -> usize {
    4
}

/// The base directory the tagger loaded.
fn base_dir_of(tagger: &Tagger, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| tagger.base().info.dir.clone(), Path::to_path_buf)
}

/// What PyTorch measured.
struct TorchSide {
    version: String,
    encode_seconds: f64,
    cache_seconds: f64,
    pooled: Vec<f32>,
}

/// Runs (a) and (d) in PyTorch on the same token ids, installing it first when needed.
fn torch_side(
    root: &Path,
    venv: &Path,
    base_dir: &Path,
    reviews: &[&[u32]],
    first_layer: usize,
    args: &BenchArgs,
    make_venv: MakeVenv<'_>,
) -> anyhow::Result<TorchSide> {
    let python = install_torch(venv, make_venv)?;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ids_path = dir.join("ids.jsonl");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&ids_path)
            .with_context(|| format!("cannot write {}", ids_path.display()))?,
    );
    for r in reviews {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    out.flush()?;
    drop(out);
    let pooled_path = dir.join("torch-pooled.f32");
    let script = root.join("crates/bench/torch_encode.py");
    let run = |layers: Option<usize>| -> anyhow::Result<serde_json::Value> {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--model")
            .arg(base_dir)
            .arg("--ids")
            .arg(&ids_path)
            .args(["--threads", &args.threads.to_string()])
            .args(["--repeats", &args.repeats.to_string()]);
        match layers {
            Some(l) => cmd.args(["--layers", &l.to_string()]),
            None => cmd.arg("--out-f32").arg(&pooled_path),
        };
        let output = cmd
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            bail!(
                "torch_encode.py failed ({}): {}",
                output.status,
                err.lines().last().unwrap_or("")
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("torch_encode.py printed `{line}`"))
    };
    eprintln!("bench: PyTorch (a)");
    let a = run(None)?;
    eprintln!("bench: PyTorch (d)");
    let d = run(Some(first_layer))?;
    let seconds = |v: &serde_json::Value| {
        v["seconds"]
            .as_f64()
            .context("torch_encode.py printed no seconds")
    };
    let bytes = std::fs::read(&pooled_path)
        .with_context(|| format!("cannot read {}", pooled_path.display()))?;
    let pooled = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(TorchSide {
        version: a["torch"].as_str().unwrap_or("?").to_owned(),
        encode_seconds: seconds(&a)?,
        cache_seconds: seconds(&d)?,
        pooled,
    })
}

/// The venv's Python with PyTorch importable, installing the packages when they are not.
fn install_torch(venv: &Path, make_venv: MakeVenv<'_>) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let check = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch, numpy, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.is_file() && check(&python) {
        return Ok(python);
    }
    eprintln!(
        "bench: installing PyTorch into {} (a large download, once)",
        venv.display()
    );
    make_venv(venv, TORCH_PACKAGES, "the PyTorch side")?;
    if !check(&python) {
        bail!(
            "{} cannot import {} after installing them",
            python.display(),
            TORCH_PACKAGES.join(", ")
        );
    }
    Ok(python)
}

/// The smallest cosine between matching `hidden`-wide rows of `a` and `b`.
fn min_cosine(a: &[f32], b: &[f32], hidden: usize) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::NAN;
    }
    a.chunks_exact(hidden)
        .zip(b.chunks_exact(hidden))
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(f64::MIN_POSITIVE)
        })
        .fold(f64::INFINITY, f64::min)
}

fn table(r: &Report) -> String {
    let s = &r.sample;
    let mut out = vec![
        format!(
            "sample: {} products (seed {}) of {}: {} reviews, {} real tokens (median {} per review); caps {} reviews × {} tokens",
            s.products,
            s.seed,
            s.file.display(),
            s.reviews,
            s.tokens,
            s.median_review_tokens,
            s.max_reviews_per_product,
            s.max_tokens_per_review
        ),
        format!(
            "training: `{}` config, {} products ({} reviews), batches of {}, cache through layers 0..{}",
            s.train_category, s.train_products, s.train_reviews, s.batch_size, s.cache_layers
        ),
        format!(
            "{} threads, median of {} runs; fp32 peak {:.0} GFLOP/s ({})",
            r.threads, r.repeats, r.peak_gflops, r.peak_source
        ),
        match (&r.torch, &r.torch_skipped) {
            (Some(v), _) => format!(
                "PyTorch {v}, CPU, same weights and token ids, length-sorted batches of 64 padded to their longest; min cosine of pooled vectors {:.5}",
                r.min_cosine_vs_torch.unwrap_or(f64::NAN)
            ),
            (None, Some(why)) => format!("PyTorch side skipped: {why}"),
            (None, None) => "PyTorch side skipped".to_owned(),
        },
        String::new(),
        format!(
            "{:<40} {:>12} {:>12} {:>14} {:>12}",
            "", "ours", "PyTorch", "ours/PyTorch", "of peak"
        ),
    ];
    for f in &r.figures {
        out.push(format!(
            "{:<40} {:>12} {:>12} {:>14} {:>12}",
            f.what,
            f.unit.show(f.ours),
            f.torch.map_or("—".into(), |t| f.unit.show(t)),
            f.speedup_vs_torch.map_or("—".into(), |x| format!("{x:.2}")),
            f.fraction_of_peak
                .map_or("—".into(), |x| format!("{:.0}%", 100.0 * x)),
        ));
    }
    out.push(String::new());
    out.push(
        "ours/PyTorch: the rate ratio for (a), the time ratio PyTorch/ours for (d); above 1 is faster than PyTorch".into(),
    );
    out.join("\n")
}
