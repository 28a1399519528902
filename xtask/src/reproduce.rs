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
use lamoda_data::{Category, train_dev_split};
use lamoda_inference::format::{CAREFUL_FILE, SourceMetrics, THRESHOLDS_FILE};
use lamoda_inference::{AdapterMetrics, Tagger};
use lamoda_trainer::{Progress, REPORT_K, TrainConfig, train_category_with};

use crate::common::{DataRootArgs, project};
use lamoda_eval::{CarefulRows, Figures, careful_dev, tagger_metrics};
use lamoda_predict::progress::Display;

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
    let metrics = AdapterMetrics::read(dir)?;
    if !dir.join(THRESHOLDS_FILE).is_file() {
        return Ok(metrics.dev.micro_f1);
    }
    let tuned = metrics.tuned.as_ref().with_context(|| {
        format!(
            "{}: no `tuned` figures beside its {THRESHOLDS_FILE}",
            AdapterMetrics::path(dir).display()
        )
    })?;
    Ok(tuned.micro_f1)
}

/// Runs `cargo xtask reproduce`.
pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    let project = project();
    let data = args.train_data.resolve()?;
    let split = project.split()?;
    let careful_split = project.careful_split()?;
    let model_dir = args.model.clone().unwrap_or_else(|| project.adapters_dir());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| project.root().join("target").join("reproduce"));
    let tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    let present = tagger.categories();
    let base = tagger.base();
    let progress = Display::new();
    let mut failures = Vec::new();

    for &category in &present {
        let dir = model_dir.join(category.name());
        let recorded = recorded_micro_f1(&dir)?;
        let pool = project.pool(category)?;
        let training = data
            .fitting_rows(category, &pool)
            .with_context(|| format!("training data of `{category}`"))?;
        let s = train_dev_split(&training.rows, &split);
        let dev: Vec<_> = s.dev.iter().map(|&i| &training.rows[i]).collect();
        let t0 = Instant::now();
        let m = tagger_metrics(&tagger, &pool, &dev, REPORT_K, &progress)?;
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

    // The careful-dev figures of every calibrated adapter (careful.json), against the
    // recorded ones.
    for &category in &present {
        let dir = model_dir.join(category.name());
        let Some(recorded) = recorded_careful(&dir)? else {
            continue;
        };
        let pool = project.pool(category)?;
        let rows = CarefulRows::load(&data, category, &pool, &careful_split)?;
        let t0 = Instant::now();
        let (figures, _) = careful_dev(&tagger, &pool, &rows, &progress)?;
        let m = figures.model;
        let ok = (m.micro_f1 - recorded.micro_f1).abs() <= args.eval_tolerance
            && (m.precision - recorded.precision).abs() <= args.eval_tolerance;
        println!(
            "careful {category:<8} careful-dev precision {:.4} (recorded {:.4}), micro-F1 {:.4} (recorded {:.4}) {} [{:.0} s]",
            m.precision,
            recorded.precision,
            m.micro_f1,
            recorded.micro_f1,
            if ok { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            failures.push(format!(
                "{category}: careful-dev precision {:.4} / micro-F1 {:.4} differ from the recorded {:.4} / {:.4} by more than {}",
                m.precision, m.micro_f1, recorded.precision, recorded.micro_f1, args.eval_tolerance
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
                .fitting_rows(category, &pool)
                .with_context(|| format!("training data of `{category}`"))?;
            let scratch = out.join(category.name());
            if scratch.exists() {
                std::fs::remove_dir_all(&scratch)
                    .with_context(|| format!("clearing {}", scratch.display()))?;
            }
            // As `lamoda-tags train` does: the careful training products join with their
            // careful tags, cross-fitted (one adapter per careful fold left out).
            let careful = if data.careful_path(category).is_file() {
                Some(CarefulRows::load(&data, category, &pool, &careful_split)?)
            } else {
                None
            };
            let t0 = Instant::now();
            let report = train_category_with(
                base,
                &pool,
                &training.rows,
                careful.as_ref().map_or(&[][..], |c| &c.train[..]),
                &split,
                &config,
                &out,
                Progress::Lines,
                false,
            )
            .with_context(|| format!("retraining `{category}`"))?;
            let m = report.metrics.shipped();
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
            if let (Some(recorded), Some(careful)) = (recorded_careful(&shipped)?, &careful) {
                for fold in (0..careful_split.folds).filter(|&f| f != careful_split.dev_fold) {
                    train_category_with(
                        base,
                        &pool,
                        &training.rows,
                        &careful.train_without_fold(fold),
                        &split,
                        &config,
                        &out.join("crossfit").join(format!("fold{fold}")),
                        Progress::Lines,
                        false,
                    )
                    .with_context(|| {
                        format!("retraining `{category}` without careful fold {fold}")
                    })?;
                }
                let figures = recalibrate(&model_dir, &out, careful, &args, &project)?;
                let diff = figures.micro_f1 - recorded.micro_f1;
                let ok = diff >= -args.train_tolerance
                    && figures.precision - recorded.precision >= -args.train_tolerance;
                println!(
                    "retrain {category:<8} calibrated again: careful-dev precision {:.4} (recorded {:.4}), micro-F1 {:.4} (recorded {:.4}, {diff:+.4}) {}",
                    figures.precision,
                    recorded.precision,
                    figures.micro_f1,
                    recorded.micro_f1,
                    if ok { "ok" } else { "FAILED" },
                );
                if !ok {
                    failures.push(format!(
                        "{category}: retrained and calibrated, careful-dev precision {:.4} / micro-F1 {:.4} fall more than {} below the recorded {:.4} / {:.4}",
                        figures.precision, figures.micro_f1, args.train_tolerance, recorded.precision, recorded.micro_f1
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// The careful-dev figures of the shipped answer an adapter directory records (`careful.dev.model`
/// of its `metrics.json`), when it is calibrated (has a `careful.json`).
fn recorded_careful(dir: &Path) -> anyhow::Result<Option<SourceMetrics>> {
    if !dir.join(CAREFUL_FILE).is_file() {
        return Ok(None);
    }
    let metrics = AdapterMetrics::read(dir)?;
    let figures = metrics.careful_dev().copied().with_context(|| {
        format!(
            "{}: no `careful.dev.model` beside its {CAREFUL_FILE} (run `lamoda-tags calibrate`)",
            AdapterMetrics::path(dir).display()
        )
    })?;
    Ok(Some(figures))
}

/// Calibrates the adapter retrained into `out/<category>` as the shipped one was: copies
/// of the shipped bundle with the retrained adapter in its place (`out/bundle/`) and with
/// each cross-fitted one (`out/crossfit-bundles/fold<F>/`, from `out/crossfit/fold<F>/`),
/// the calibration fitted with the project's settings, then its careful-dev figures.
fn recalibrate(
    shipped: &Path,
    out: &Path,
    rows: &CarefulRows,
    args: &ReproduceArgs,
    project: &lamoda_data::Project,
) -> anyhow::Result<Figures> {
    let category = rows.category;
    let split = project.careful_split()?;
    let bundle = out.join("bundle");
    replaced_bundle(shipped, &out.join(category.name()), category, &bundle)?;
    let crossfit = out.join("crossfit-bundles");
    for fold in (0..split.folds).filter(|&f| f != split.dev_fold) {
        let name = format!("fold{fold}");
        replaced_bundle(
            shipped,
            &out.join("crossfit").join(&name).join(category.name()),
            category,
            &crossfit.join(&name),
        )?;
    }
    let base_dir = match &args.base {
        Some(dir) => dir.clone(),
        None => lamoda_inference::Bundle::open(shipped)?.default_base_dir(),
    };
    let tagger = Tagger::open(&bundle, Some(&base_dir))?;
    let progress = Display::new();
    let settings = lamoda_cli::calibrate::load_settings(project, None)?;
    let pool = project.pool(category)?;
    lamoda_cli::calibrate::calibrate_category(
        &tagger,
        Some(&crossfit),
        Some(&base_dir),
        &pool,
        rows,
        &settings,
        &split,
        &progress,
    )?;
    let tagger = Tagger::open(&bundle, Some(&base_dir))?;
    Ok(careful_dev(&tagger, &pool, rows, &progress)?.0.model)
}

/// A copy of the bundle `shipped` in `to` with `category`'s adapter taken from `adapter`
/// (its pool file stays the shipped one).
fn replaced_bundle(
    shipped: &Path,
    adapter: &Path,
    category: Category,
    to: &Path,
) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("clearing {}", to.display()))?;
    }
    copy_dir(shipped, to)?;
    let target = to.join(category.name());
    std::fs::remove_dir_all(&target).with_context(|| format!("clearing {}", target.display()))?;
    copy_dir(adapter, &target)?;
    let pool = lamoda_inference::format::POOL_FILE;
    std::fs::copy(shipped.join(category.name()).join(pool), target.join(pool))
        .with_context(|| format!("copying {pool} into {}", target.display()))?;
    // The shipped calibration is not the retrained adapter's.
    let careful = target.join(CAREFUL_FILE);
    if careful.is_file() {
        std::fs::remove_file(&careful)
            .with_context(|| format!("removing {}", careful.display()))?;
    }
    Ok(())
}

/// Copies the files of `from` (recursively) into `to`, skipping checkpoints.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            if entry.file_name() != "checkpoint" {
                copy_dir(&path, &dest)?;
            }
        } else {
            std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
        }
    }
    Ok(())
}
