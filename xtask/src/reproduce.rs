//! `cargo xtask reproduce`: what CI runs to show the shipped adapters' figures are real.
//!
//! 1. Every adapter in the model directory is evaluated on its dev split and must match
//!    the micro-F1 recorded in its `metrics.json` within `--eval-tolerance`.
//! 2. The `--retrain` categories are trained again from scratch (seeded, with the shipped
//!    adapter's own `train_config.json`) into a scratch directory, and each must reach its
//!    recorded dev micro-F1 minus `--train-tolerance`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Category, UnknownTagPolicy, train_dev_split};
use lamoda_inference::Tagger;
use lamoda_inference::format::{METRICS_FILE, THRESHOLDS_FILE};
use lamoda_trainer::{Progress, REPORT_K, TrainConfig, train_category};

use crate::common::{DataRootArgs, project};
use crate::eval::tagger_metrics;

/// Arguments of `cargo xtask reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// The shipped adapters. Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The base model directory. Default: the bundle's recorded default.
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// Categories to retrain from scratch and compare (repeatable).
    #[arg(long, value_name = "CATEGORY", default_value = "bags")]
    retrain: Vec<Category>,
    /// Skip retraining.
    #[arg(long)]
    no_retrain: bool,
    /// Largest allowed |evaluated − recorded| dev micro-F1 of a shipped adapter.
    #[arg(long, default_value_t = 0.005)]
    eval_tolerance: f64,
    /// Largest allowed shortfall of a retrained adapter's dev micro-F1 below the recorded.
    #[arg(long, default_value_t = 0.02)]
    train_tolerance: f64,
    /// Where retrained adapters go. Default: the project's `target/reproduce/`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    train_data: DataRootArgs,
}

/// The dev micro-F1 an adapter directory records: with its saved thresholds when it has
/// them (that is how it predicts), else at the default threshold.
fn recorded_micro_f1(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join(METRICS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let key = if dir.join(THRESHOLDS_FILE).is_file() {
        "tuned"
    } else {
        "dev"
    };
    value[key]["micro_f1"]
        .as_f64()
        .with_context(|| format!("{}: no `{key}.micro_f1`", path.display()))
}

/// Runs `cargo xtask reproduce`.
pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    let project = project();
    let data = args.train_data.resolve()?;
    let split = project.split()?;
    let model_dir = args.model.clone().unwrap_or_else(|| project.adapters_dir());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| project.root().join("target").join("reproduce"));
    let tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    let present = tagger.categories();
    let base = tagger.base();
    let mut failures = Vec::new();

    for &category in &present {
        let dir = model_dir.join(category.name());
        let recorded = recorded_micro_f1(&dir)?;
        let pool = project.pool(category)?;
        let training = data
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .with_context(|| format!("training data of `{category}`"))?;
        let s = train_dev_split(&training.rows, &split);
        let dev: Vec<_> = s.dev.iter().map(|&i| &training.rows[i]).collect();
        let t0 = Instant::now();
        let m = tagger_metrics(&tagger, &pool, &dev, REPORT_K)?;
        let diff = m.micro_f1 - recorded;
        let ok = diff.abs() <= args.eval_tolerance;
        println!(
            "eval    {category:<8} dev micro-F1 {:.4}, recorded {recorded:.4} ({diff:+.4}) {} [{:.0} s]",
            m.micro_f1,
            if ok { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            failures.push(format!(
                "{category}: evaluated dev micro-F1 {:.4} differs from the recorded {recorded:.4} by more than {}",
                m.micro_f1, args.eval_tolerance
            ));
        }
    }

    if !args.no_retrain {
        for &category in &args.retrain {
            let shipped = model_dir.join(category.name());
            if !shipped.is_dir() {
                bail!(
                    "--retrain {category}: no shipped adapter at {}",
                    shipped.display()
                );
            }
            let recorded = recorded_micro_f1(&shipped)?;
            let config = TrainConfig::read_record(&shipped)?;
            let pool = project.pool(category)?;
            let training = data
                .labeled(category, &pool, UnknownTagPolicy::Error)
                .with_context(|| format!("training data of `{category}`"))?;
            let scratch = out.join(category.name());
            if scratch.exists() {
                std::fs::remove_dir_all(&scratch)
                    .with_context(|| format!("clearing {}", scratch.display()))?;
            }
            let t0 = Instant::now();
            let report = train_category(
                base,
                &pool,
                &training.rows,
                &split,
                &config,
                &out,
                Progress::Lines,
                false,
            )
            .with_context(|| format!("retraining `{category}`"))?;
            let m = report.metrics.tuned.as_ref().unwrap_or(&report.metrics.dev);
            let diff = m.micro_f1 - recorded;
            let ok = diff >= -args.train_tolerance;
            println!(
                "retrain {category:<8} dev micro-F1 {:.4}, recorded {recorded:.4} ({diff:+.4}) {} [{:.0} s]",
                m.micro_f1,
                if ok { "ok" } else { "FAILED" },
                t0.elapsed().as_secs_f64()
            );
            if !ok {
                failures.push(format!(
                    "{category}: retrained dev micro-F1 {:.4} is more than {} below the recorded {recorded:.4}",
                    m.micro_f1, args.train_tolerance
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
