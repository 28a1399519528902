//! The speed benchmark, `cargo xtask bench` (apart from the tests; it prints figures): how fast the encoder, the tagger and training run here, beside
//! PyTorch and ONNX Runtime on the same weights, tokens and threads.
//!
//! The sample is a seeded draw of real products from `reviews_sampled.csv`, read with the
//! runtime's caps (its reviews and token lengths as they are). Four figures, each the
//! median of `--repeats` runs after one warm-up:
//! (a) the frozen encoder's real (unpadded) tokens/s, every layer, mean-pooled, per engine:
//!     ours in fp32 and in int8 ([`Precision::ALL`]), PyTorch fp32, ONNX Runtime fp32 and
//!     int8, all on the same token ids in the same run; with the ratio of each of our two
//!     precisions to each engine, the fraction of the fp32 peak and of the int8 peak, and
//!     the cosine of each engine's pooled vectors to ours in fp32 (median and min);
//! (b) the tagger's products/s end to end (tokenize → encode → lexical branch → decode) in
//!     batches of `--batch` products, at each adapter's `runtime.json` precision or
//!     `--precision`;
//! (c) one LoRA training step of a category's config over its cache;
//! (d) the cache pass (the frozen lower layers of that config) per 1,000 reviews, in fp32
//!     as training runs it, or at `--precision`.
//!
//! The peers run in one Python virtual environment the bench installs (`target/torch-venv`,
//! [`PEER_PACKAGES`]), on the token ids it writes, in length-sorted batches of 64 padded to
//! their longest review:
//! - PyTorch (`crates/bench/torch_encode.py`) runs (a) and (d) in fp32;
//! - ONNX Runtime (`crates/bench/ort_encode.py`) runs (a) on the encoder exported from
//!   PyTorch once per weights (cached in `target/bench/onnx`) and passed through its
//!   transformer optimizer, in fp32, and in int8 after its dynamic quantization (int8
//!   weights, activations quantized per batch), in a session of `--threads` intra-op
//!   threads with every graph optimisation.
//!
//! A peer that cannot run (`--no-torch`, `--no-ort`, no Python, a failed install or run) is
//! reported as skipped with its reason.

use std::collections::BTreeMap;
use std::ffi::OsString;
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
use lamoda_inference::{Precision, Request, RuntimeSettings, Tagger};
use lamoda_trainer::{TrainConfig, bench_steps};

use lamoda_cli::common::{DataRootArgs, emit};
use lamoda_data::Project;

/// Makes a Python virtual environment at the path with the packages; the last argument
/// names what needs it (the developer tools' helper, given by `cargo xtask`).
pub type MakeVenv<'a> = &'a dyn Fn(&Path, &[&str], &str) -> anyhow::Result<()>;

/// What the peers need besides Python itself: PyTorch (its own peer, and the export of
/// ONNX Runtime's model) and ONNX Runtime. On Linux x86-64 the default index's `torch`
/// is its CUDA build and pulls about 3 GB of `nvidia-*` wheels (the venv is about 5.5 GB);
/// a CPU-only wheel index set in pip's own configuration (`pip config`, `PIP_INDEX_URL`)
/// avoids them.
pub const PEER_PACKAGES: &[&str] = &["torch", "numpy", "safetensors", "onnx", "onnxruntime"];

/// The import that tells whether [`PEER_PACKAGES`] are installed.
const PEER_IMPORTS: &str = "import torch, numpy, safetensors, onnx, onnxruntime";

/// Reviews per padded batch on the peers' side.
const PEER_BATCH: usize = 64;

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
    /// Threads, ours and the peers'.
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
    /// How our encoder multiplies in (b) and (d) [default: (b) each adapter's
    /// runtime.json, (d) fp32 as training runs it]; (a) times every precision.
    #[arg(long, value_name = "fp32|int8")]
    pub precision: Option<Precision>,
    /// The fp32 peak of the threads used, in GFLOP/s (default: an estimate from the CPU's
    /// clock and vector width, printed); the int8 peak is estimated from it.
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// Skip the PyTorch side.
    #[arg(long)]
    pub no_torch: bool,
    /// Skip the ONNX Runtime side.
    #[arg(long)]
    pub no_ort: bool,
    /// Virtual environment of the peers (installed there when missing).
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

/// One of figures (b)–(d), ours beside PyTorch's.
#[derive(Debug, Serialize)]
struct Figure {
    what: &'static str,
    unit: Unit,
    ours: f64,
    ours_runs: Vec<f64>,
    torch: Option<f64>,
    /// ours / PyTorch, for rates (higher is better for us); PyTorch / ours for seconds.
    speedup_vs_torch: Option<f64>,
    /// Of the peak of the precision it ran at.
    fraction_of_peak: Option<f64>,
}

/// Who ran an engine of figure (a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Runner {
    #[serde(rename = "ours")]
    Ours,
    #[serde(rename = "PyTorch")]
    Torch,
    #[serde(rename = "ONNX Runtime")]
    Ort,
}

impl Runner {
    /// Its name in the table.
    fn name(self) -> &'static str {
        match self {
            Runner::Ours => "ours",
            Runner::Torch => "PyTorch",
            Runner::Ort => "ONNX Runtime",
        }
    }
}

/// Median and smallest cosine between matching pooled vectors of two engines.
#[derive(Debug, Clone, Copy, Serialize)]
struct Cosines {
    median: f64,
    min: f64,
}

/// One engine of figure (a): the frozen encoder's real tokens/s.
#[derive(Debug, Serialize)]
struct Engine {
    engine: Runner,
    precision: Precision,
    /// Our kernel, or the peer's version.
    detail: Option<String>,
    /// Median real tokens/s; none when skipped.
    tokens_per_s: Option<f64>,
    /// Real tokens/s of each timed run.
    runs: Vec<f64>,
    /// Why it did not run.
    skipped: Option<String>,
    /// Ours in fp32 ÷ this engine, in tokens/s (above 1: ours is faster).
    ours_fp32_over: Option<f64>,
    /// Ours in int8 ÷ this engine.
    ours_int8_over: Option<f64>,
    fraction_of_fp32_peak: Option<f64>,
    /// For int8 engines, where an int8 peak is estimated.
    fraction_of_int8_peak: Option<f64>,
    /// Of its pooled vectors against ours in fp32, over the sample's reviews.
    cosine_vs_ours_fp32: Option<Cosines>,
}

impl Engine {
    /// Its name in the table: `ours int8 (kernel)`, `PyTorch 2.x fp32`.
    fn label(&self) -> String {
        match (self.engine, &self.detail) {
            (Runner::Ours, Some(k)) => format!("ours {} ({k})", self.precision),
            (_, Some(v)) => format!("{} {v} {}", self.engine.name(), self.precision),
            (_, None) => format!("{} {}", self.engine.name(), self.precision),
        }
    }
}

/// Figure (a), every engine.
#[derive(Debug, Serialize)]
struct EncoderFigure {
    what: &'static str,
    unit: Unit,
    engines: Vec<Engine>,
}

/// The precision (b) and (d) ran at.
#[derive(Debug, Serialize)]
struct PrecisionUse {
    /// `--precision`; without it (b) runs each adapter's `runtime.json` precision and (d)
    /// training's fp32.
    flag: Option<Precision>,
    /// (b): each loaded adapter's.
    tagger: BTreeMap<Category, PrecisionKernel>,
    /// (d).
    cache: PrecisionKernel,
}

/// A precision and the kernel its projections run on here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct PrecisionKernel {
    precision: Precision,
    kernel: &'static str,
}

impl From<Precision> for PrecisionKernel {
    fn from(precision: Precision) -> Self {
        Self {
            precision,
            kernel: precision.kernel(),
        }
    }
}

impl std::fmt::Display for PrecisionKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.precision, self.kernel)
    }
}

#[derive(Debug, Serialize)]
struct Report {
    sample: Sample,
    threads: usize,
    repeats: usize,
    peak_gflops: f64,
    peak_source: String,
    /// Int8 operations/s; none where the CPU has no VNNI.
    int8_peak_gops: Option<f64>,
    int8_peak_source: String,
    precision: PrecisionUse,
    /// Figure (a).
    encoder: EncoderFigure,
    /// Figures (b)–(d).
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
/// `project`, installing the peers with `make_venv` when needed.
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
    let mut tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    eprintln!(
        "bench: loaded {} in {:.1} s",
        model_dir.display(),
        t_load.elapsed().as_secs_f64()
    );
    if let Some(p) = args.precision {
        tagger.set_precision(p);
    }
    let tagger = tagger;
    let base = tagger.base();
    let packed = &base.packed;
    let cache_precision = args.precision.unwrap_or(Precision::Fp32);
    let precision = PrecisionUse {
        flag: args.precision,
        tagger: tagger
            .precisions()
            .into_iter()
            .map(|(c, p)| (c, p.into()))
            .collect(),
        cache: cache_precision.into(),
    };
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
    let (int8_peak_gops, int8_peak_source) = estimate_int8_peak(peak_gflops);
    let peak_of = |p: Precision| match p {
        Precision::Fp32 => Some(peak_gflops),
        Precision::Int8 => int8_peak_gops,
    };
    let ops_per_token = |layers: std::ops::Range<usize>| packed.flops_per_token(layers, mean_len);
    let all_layers = 0..packed.num_layers();

    // (a) the frozen encoder, ours at each precision.
    eprintln!(
        "bench: (a) encoder over {} reviews, {tokens} tokens",
        reviews.len()
    );
    let mut ours = Vec::new();
    for p in Precision::ALL {
        eprintln!("bench: (a) ours, {p}");
        let encoder = packed.with_precision(p);
        let mut pooled = Vec::new();
        let runs = timed(args.repeats, || {
            pooled = encoder.forward(&reviews)?.mean_pooled();
            Ok(())
        })?;
        ours.push(OursRun {
            precision: p,
            rates: runs.iter().map(|s| tokens as f64 / s).collect(),
            pooled,
        });
    }

    // (d) the cache pass of the category's frozen lower layers.
    eprintln!("bench: (d) cache pass through layers 0..{first_layer} in {cache_precision}");
    let cache_encoder = packed.with_precision(cache_precision);
    let cache_runs = timed(args.repeats, || {
        FeatureCache::build(&cache_encoder, &ids, first_layer, &lamoda_inference::Silent)?;
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

    // The peers.
    let root = project.root().to_path_buf();
    let peers = Peers::run(
        &root,
        &base_dir_of(&tagger, args.base.as_deref()),
        &reviews,
        first_layer,
        packed.hidden(),
        &args,
        make_venv,
    );

    let engines = engines(
        &ours,
        &peers,
        tokens,
        packed.hidden(),
        ops_per_token(all_layers),
        (peak_gflops, int8_peak_gops),
    );
    let torch = peers.torch.as_ref().ok();
    let mut figures = vec![
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
            torch: torch.map(|t| per_1000(t.cache_seconds)),
            speedup_vs_torch: None,
            fraction_of_peak: peak_of(cache_precision).map(|peak| {
                1000.0 / median(&cache_per_1000) * mean_len * ops_per_token(0..first_layer)
                    / (peak * 1e9)
            }),
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
        int8_peak_gops,
        int8_peak_source,
        precision,
        encoder: EncoderFigure {
            what: "(a) frozen encoder, real tokens/s",
            unit: Unit::TokensPerSecond,
            engines,
        },
        figures,
    };
    if args.json {
        emit(&serde_json::to_string_pretty(&report)?)?;
    } else {
        emit(&table(&report))?;
    }
    Ok(())
}

/// Our timed runs of (a) at one precision.
struct OursRun {
    precision: Precision,
    /// Real tokens/s of each timed run.
    rates: Vec<f64>,
    /// Pooled vectors, in review order.
    pooled: Vec<f32>,
}

impl Engine {
    /// A row of `engine` at `precision` with nothing measured.
    fn new(engine: Runner, precision: Precision) -> Self {
        Self {
            engine,
            precision,
            detail: None,
            tokens_per_s: None,
            runs: Vec::new(),
            skipped: None,
            ours_fp32_over: None,
            ours_int8_over: None,
            fraction_of_fp32_peak: None,
            fraction_of_int8_peak: None,
            cosine_vs_ours_fp32: None,
        }
    }
}

/// Figure (a)'s rows: ours at each precision, then each peer (skipped ones with their
/// reason), with the ratios to ours, the fractions of `peaks` (fp32 GFLOP/s, int8 GOP/s)
/// at `ops_per_token`, and the cosines to ours in fp32.
fn engines(
    ours: &[OursRun],
    peers: &Peers,
    tokens: usize,
    hidden: usize,
    ops_per_token: f64,
    peaks: (f64, Option<f64>),
) -> Vec<Engine> {
    let ours_at = |p: Precision| ours.iter().find(|o| o.precision == p);
    let reference = ours_at(Precision::Fp32).map(|o| o.pooled.as_slice());
    let cosine_to_ours = |pooled: &[f32]| reference.map(|r| cosines(r, pooled, hidden));
    let mut rows: Vec<Engine> = ours
        .iter()
        .map(|o| Engine {
            detail: Some(o.precision.kernel().to_owned()),
            tokens_per_s: Some(median(&o.rates)),
            runs: o.rates.clone(),
            cosine_vs_ours_fp32: (o.precision != Precision::Fp32)
                .then(|| cosine_to_ours(&o.pooled))
                .flatten(),
            ..Engine::new(Runner::Ours, o.precision)
        })
        .collect();
    for (engine, precision, outcome) in [
        (
            Runner::Torch,
            Precision::Fp32,
            peers.torch.as_ref().map(|t| &t.encode),
        ),
        (Runner::Ort, Precision::Fp32, peers.ort_fp32.as_ref()),
        (Runner::Ort, Precision::Int8, peers.ort_int8.as_ref()),
    ] {
        rows.push(match outcome {
            Ok(run) => Engine {
                detail: Some(run.version.clone()),
                tokens_per_s: Some(tokens as f64 / run.seconds),
                runs: run.runs.iter().map(|s| tokens as f64 / s).collect(),
                cosine_vs_ours_fp32: cosine_to_ours(&run.pooled),
                ..Engine::new(engine, precision)
            },
            Err(why) => Engine {
                skipped: Some(why.clone()),
                ..Engine::new(engine, precision)
            },
        });
    }
    let (fp32_peak, int8_peak) = peaks;
    let ours_rate = |p: Precision| ours_at(p).map(|o| median(&o.rates));
    for e in &mut rows {
        let Some(rate) = e.tokens_per_s else { continue };
        let is_ours_at = |p: Precision| e.engine == Runner::Ours && e.precision == p;
        e.ours_fp32_over = ours_rate(Precision::Fp32)
            .filter(|_| !is_ours_at(Precision::Fp32))
            .map(|r| r / rate);
        e.ours_int8_over = ours_rate(Precision::Int8)
            .filter(|_| !is_ours_at(Precision::Int8))
            .map(|r| r / rate);
        e.fraction_of_fp32_peak = Some(rate * ops_per_token / (fp32_peak * 1e9));
        e.fraction_of_int8_peak = int8_peak
            .filter(|_| e.precision == Precision::Int8)
            .map(|peak| rate * ops_per_token / (peak * 1e9));
    }
    rows
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

/// int8 peak in GOP/s (a multiply-add counted as 2, as in FLOP/s) from the fp32 peak: 4 ×
/// where the CPU has VNNI, whose `u8 × i8` dot-product instruction does 4 multiply-adds
/// per 32-bit lane where an FMA does 1; none without (an estimate: the same units and
/// clock assumed; AMX tiles, where present, not counted).
fn estimate_int8_peak(fp32_peak: f64) -> (Option<f64>, String) {
    let amx = if cpu_flag("amx_int8") {
        "; this CPU's AMX not counted"
    } else {
        ""
    };
    match vnni() {
        Some(isa) => (
            Some(4.0 * fp32_peak),
            format!(
                "estimate: 4 × the fp32 peak {fp32_peak:.0} GFLOP/s, {isa} doing 4 u8 × i8 multiply-adds per 32-bit lane where an FMA does 1 f32{amx}"
            ),
        ),
        None => (
            None,
            "not estimated: the CPU has neither AVX512-VNNI nor AVX-VNNI".to_owned(),
        ),
    }
}

/// Whether `/proc/cpuinfo` lists `flag` (false where it cannot be read).
fn cpu_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
    })
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

/// The VNNI extension the CPU has, if any.
#[cfg(target_arch = "x86_64")]
fn vnni() -> Option<&'static str> {
    if std::is_x86_feature_detected!("avx512vnni") {
        Some("AVX512-VNNI")
    } else if std::is_x86_feature_detected!("avxvnni") {
        Some("AVX-VNNI")
    } else {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni() -> Option<&'static str> {
    None
}

/// The base directory the tagger loaded.
fn base_dir_of(tagger: &Tagger, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| tagger.base().info.dir.clone(), Path::to_path_buf)
}

/// What a peer's script measured over the whole encoder.
struct PeerRun {
    /// The engine's version.
    version: String,
    /// Median seconds.
    seconds: f64,
    /// Seconds of each timed run.
    runs: Vec<f64>,
    /// Pooled vectors, in review order.
    pooled: Vec<f32>,
}

/// What PyTorch measured.
struct TorchSide {
    encode: PeerRun,
    /// Median seconds of (d).
    cache_seconds: f64,
}

/// Each peer's figures, or why it did not run.
struct Peers {
    torch: Result<TorchSide, String>,
    ort_fp32: Result<PeerRun, String>,
    ort_int8: Result<PeerRun, String>,
}

impl Peers {
    /// Runs the peers that are not switched off on the same token ids, installing them
    /// first when needed; a failure skips that peer (or all, for a failed install).
    fn run(
        root: &Path,
        base_dir: &Path,
        reviews: &[&[u32]],
        first_layer: usize,
        hidden: usize,
        args: &BenchArgs,
        make_venv: MakeVenv<'_>,
    ) -> Self {
        let mut peers = Self {
            torch: Err("--no-torch".to_owned()),
            ort_fp32: Err("--no-ort".to_owned()),
            ort_int8: Err("--no-ort".to_owned()),
        };
        if args.no_torch && args.no_ort {
            return peers;
        }
        let venv = args
            .torch_venv
            .clone()
            .unwrap_or_else(|| root.join("target/torch-venv"));
        let side = match PeerSide::new(root, &venv, base_dir, reviews, hidden, args, make_venv) {
            Ok(side) => side,
            Err(e) => {
                let why = format!("{e:#}");
                if !args.no_torch {
                    peers.torch = Err(why.clone());
                }
                if !args.no_ort {
                    peers.ort_fp32 = Err(why.clone());
                    peers.ort_int8 = Err(why);
                }
                return peers;
            }
        };
        if !args.no_torch {
            peers.torch = side.torch(first_layer).map_err(|e| format!("{e:#}"));
        }
        if !args.no_ort {
            peers.ort_fp32 = side.ort("fp32").map_err(|e| format!("{e:#}"));
            peers.ort_int8 = side.ort("int8").map_err(|e| format!("{e:#}"));
        }
        peers
    }
}

/// The peers' shared ground: the venv's Python and the token ids written for them.
struct PeerSide<'a> {
    python: PathBuf,
    root: &'a Path,
    base_dir: &'a Path,
    dir: PathBuf,
    ids_path: PathBuf,
    reviews: usize,
    hidden: usize,
    args: &'a BenchArgs,
}

impl<'a> PeerSide<'a> {
    /// Installs the peers when needed and writes the token ids, one JSON list a line.
    fn new(
        root: &'a Path,
        venv: &Path,
        base_dir: &'a Path,
        reviews: &[&[u32]],
        hidden: usize,
        args: &'a BenchArgs,
        make_venv: MakeVenv<'_>,
    ) -> anyhow::Result<Self> {
        let python = install_peers(venv, make_venv)?;
        let dir = root.join("target/bench");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ids_path = dir.join("ids.jsonl");
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&ids_path)
                .with_context(|| format!("cannot write {}", ids_path.display()))?,
        );
        for r in reviews {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        out.flush()
            .with_context(|| format!("cannot write {}", ids_path.display()))?;
        Ok(Self {
            python,
            root,
            base_dir,
            dir,
            ids_path,
            reviews: reviews.len(),
            hidden,
            args,
        })
    }

    /// Runs `crates/bench/<script>` over the ids with `extra` arguments; the JSON line it
    /// printed last.
    fn script(&self, script: &str, extra: &[OsString]) -> anyhow::Result<serde_json::Value> {
        let path = self.root.join("crates/bench").join(script);
        let output = Command::new(&self.python)
            .arg(&path)
            .arg("--model")
            .arg(self.base_dir)
            .arg("--ids")
            .arg(&self.ids_path)
            .args(["--threads", &self.args.threads.to_string()])
            .args(["--repeats", &self.args.repeats.to_string()])
            .args(["--batch", &PEER_BATCH.to_string()])
            .args(extra)
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            bail!(
                "{script} failed ({}): {}",
                output.status,
                err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("{script} printed `{line}`"))
    }

    /// The whole encoder through `script`, its pooled vectors written to `pooled_name`.
    fn encode(
        &self,
        script: &str,
        version_key: &str,
        pooled_name: &str,
        extra: &[OsString],
    ) -> anyhow::Result<PeerRun> {
        let pooled_path = self.dir.join(pooled_name);
        let mut all = extra.to_vec();
        all.extend(["--out-f32".into(), pooled_path.clone().into_os_string()]);
        let v = self.script(script, &all)?;
        let pooled = read_f32(&pooled_path, self.reviews * self.hidden)
            .with_context(|| format!("the pooled vectors of {script}"))?;
        Ok(PeerRun {
            version: v[version_key].as_str().unwrap_or("?").to_owned(),
            seconds: seconds(&v, script)?,
            runs: v["runs"]
                .as_array()
                .map(|r| r.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default(),
            pooled,
        })
    }

    /// (a) and (d) in PyTorch.
    fn torch(&self, first_layer: usize) -> anyhow::Result<TorchSide> {
        const SCRIPT: &str = "torch_encode.py";
        eprintln!("bench: PyTorch (a)");
        let encode = self.encode(SCRIPT, "torch", "torch-pooled.f32", &[])?;
        eprintln!("bench: PyTorch (d)");
        let d = self.script(SCRIPT, &["--layers".into(), first_layer.to_string().into()])?;
        Ok(TorchSide {
            encode,
            cache_seconds: seconds(&d, SCRIPT)?,
        })
    }

    /// (a) in ONNX Runtime at `quant` (`fp32` or `int8`).
    fn ort(&self, quant: &str) -> anyhow::Result<PeerRun> {
        eprintln!("bench: ONNX Runtime {quant} (a)");
        let onnx_dir = self.dir.join("onnx");
        self.encode(
            "ort_encode.py",
            "onnxruntime",
            &format!("ort-{quant}-pooled.f32"),
            &[
                "--quant".into(),
                quant.into(),
                "--onnx-dir".into(),
                onnx_dir.into_os_string(),
            ],
        )
    }
}

/// The median seconds a script printed.
fn seconds(v: &serde_json::Value, script: &str) -> anyhow::Result<f64> {
    v["seconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .with_context(|| format!("{script} printed no seconds"))
}

/// Raw little-endian f32 values from `path`, `expected` of them.
fn read_f32(path: &Path, expected: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() != expected * 4 {
        bail!(
            "{} holds {} bytes, not {expected} f32 values",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The venv's Python with the peers importable, installing [`PEER_PACKAGES`] when they are
/// not.
fn install_peers(venv: &Path, make_venv: MakeVenv<'_>) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let check = |python: &Path| {
        Command::new(python)
            .args(["-c", PEER_IMPORTS])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.is_file() && check(&python) {
        return Ok(python);
    }
    eprintln!(
        "bench: installing PyTorch and ONNX Runtime into {} (a large download, once)",
        venv.display()
    );
    make_venv(venv, PEER_PACKAGES, "the PyTorch and ONNX Runtime side")?;
    if !check(&python) {
        bail!(
            "{} cannot import {} after installing them",
            python.display(),
            PEER_PACKAGES.join(", ")
        );
    }
    Ok(python)
}

/// Median and smallest cosine between matching `hidden`-wide rows of `a` and `b` (NaN
/// where they do not match in size).
fn cosines(a: &[f32], b: &[f32], hidden: usize) -> Cosines {
    if a.len() != b.len() || a.is_empty() || hidden == 0 {
        return Cosines {
            median: f64::NAN,
            min: f64::NAN,
        };
    }
    let all: Vec<f64> = a
        .chunks_exact(hidden)
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
        .collect();
    Cosines {
        median: median(&all),
        min: all.iter().copied().fold(f64::INFINITY, f64::min),
    }
}

/// A fraction as a whole percentage, or `—`.
fn percent(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{:.0}%", 100.0 * x))
}

fn table(r: &Report) -> String {
    let s = &r.sample;
    let p = &r.precision;
    // (b)'s precisions, each with the adapters that run it.
    let mut groups: Vec<(PrecisionKernel, Vec<&str>)> = Vec::new();
    for (c, pk) in &p.tagger {
        match groups.iter_mut().find(|(q, _)| q == pk) {
            Some((_, cs)) => cs.push(c.name()),
            None => groups.push((*pk, vec![c.name()])),
        }
    }
    let tagger = match groups.as_slice() {
        [] => "no adapter".to_owned(),
        [(pk, _)] => format!("{pk} in every adapter"),
        _ => groups
            .iter()
            .map(|(pk, cs)| format!("{pk} in {}", cs.join(", ")))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let (tagger_from, cache_from) = match p.flag {
        Some(_) => ("from --precision", "from --precision"),
        None => ("from runtime.json", "as training runs it"),
    };
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
        match r.int8_peak_gops {
            Some(g) => format!("int8 peak {g:.0} GOP/s ({})", r.int8_peak_source),
            None => format!("int8 peak {}", r.int8_peak_source),
        },
        format!(
            "precision: (b) {tagger}, {tagger_from}; (d) {}, {cache_from}",
            p.cache
        ),
        format!(
            "peers: CPU, same weights and token ids, length-sorted batches of {PEER_BATCH} padded to their longest; ONNX Runtime: exported from PyTorch, transformer-optimised, int8 by dynamic quantization (int8 weights, activations per batch)"
        ),
        String::new(),
        format!(
            "{:<40} {:>10} {:>10} {:>10} {:>8} {:>8} {:>18}",
            r.encoder.what,
            "",
            "ours fp32",
            "ours int8",
            "of fp32",
            "of int8",
            "cosine to ours fp32"
        ),
        format!(
            "{:<40} {:>10} {:>10} {:>10} {:>8} {:>8} {:>18}",
            "", "tokens/s", "÷ it", "÷ it", "peak", "peak", "median / min"
        ),
    ];
    for e in &r.encoder.engines {
        let Some(rate) = e.tokens_per_s else {
            out.push(format!(
                "{:<40} skipped: {}",
                e.label(),
                e.skipped.as_deref().unwrap_or("?")
            ));
            continue;
        };
        out.push(format!(
            "{:<40} {:>10} {:>10} {:>10} {:>8} {:>8} {:>18}",
            e.label(),
            r.encoder.unit.show(rate),
            e.ours_fp32_over.map_or("—".into(), |x| format!("{x:.2}")),
            e.ours_int8_over.map_or("—".into(), |x| format!("{x:.2}")),
            percent(e.fraction_of_fp32_peak),
            percent(e.fraction_of_int8_peak),
            e.cosine_vs_ours_fp32
                .map_or("—".into(), |c| format!("{:.5} / {:.5}", c.median, c.min)),
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{:<40} {:>12} {:>12} {:>14} {:>12}",
        "", "ours", "PyTorch", "ours/PyTorch", "of peak"
    ));
    for f in &r.figures {
        out.push(format!(
            "{:<40} {:>12} {:>12} {:>14} {:>12}",
            f.what,
            f.unit.show(f.ours),
            f.torch.map_or("—".into(), |t| f.unit.show(t)),
            f.speedup_vs_torch.map_or("—".into(), |x| format!("{x:.2}")),
            percent(f.fraction_of_peak),
        ));
    }
    out.push(String::new());
    out.push(
        "(a): ours ÷ it is the rate ratio (above 1: ours is faster); of peak: its operations/s over the estimated peak. (d): ours/PyTorch is the time ratio PyTorch/ours (above 1: ours is faster); of peak: of its precision's peak".into(),
    );
    out.join("\n")
}
