//! `lamoda-tags calibrate`: fits each adapter's careful calibration on the careful training
//! products (which no adapter was trained on), writes it into the bundle (`careful.json`),
//! and records the careful-dev figures in each adapter's `metrics.json`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Category, ReviewStack};
use lamoda_eval::{CarefulReport, CarefulRows, careful_dev, score_rows};
use lamoda_inference::format::{CAREFUL_FILE, CalibrationRecord, CarefulMetrics, write_json};
use lamoda_inference::{AdapterMetrics, Progress, Tagger};
use lamoda_predict::progress::Display;
use lamoda_trainer::{CalibrationSettings, fit_calibration};

use crate::careful::print_careful_table;
use crate::common::DataRootArgs;
use lamoda_data::Project;

/// Arguments of `lamoda-tags calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Calibrate one category only (default: every category of the bundle).
    #[arg(long, value_name = "CATEGORY")]
    category: Option<Category>,
    /// The bundle (default: the project's `adapters/`).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The base model directory (default: the bundle's recorded default).
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// The calibration settings (default: the project's `configs/calibration.toml`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The cross-fitted adapters of `lamoda-tags train` (`<dir>/fold<F>/`): each careful
    /// training product is scored by the one that never saw it. Default: the project's
    /// `target/crossfit/`.
    #[arg(long, value_name = "DIR", conflicts_with = "no_crossfit")]
    crossfit: Option<PathBuf>,
    /// The adapters were trained with `--careful exclude` (no careful product): score the
    /// careful training products with the bundle itself.
    #[arg(long)]
    no_crossfit: bool,
    /// Also write every careful product's raw scores as JSON lines to FILE (for analysis).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    #[command(flatten)]
    data: DataRootArgs,
}

/// Runs `lamoda-tags calibrate`.
pub fn run(args: CalibrateArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.data.resolve()?;
    let split = project.careful_split()?;
    let settings = load_settings(project, args.config.as_deref())?;
    let model_dir = args.model.clone().unwrap_or_else(|| project.adapters_dir());
    let tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    let categories = match args.category {
        Some(c) => vec![c],
        None => tagger.categories(),
    };
    let mut dump = match &args.dump {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let crossfit = if args.no_crossfit {
        None
    } else {
        Some(
            args.crossfit
                .clone()
                .unwrap_or_else(|| crate::common::default_crossfit_dir(project)),
        )
    };
    let progress = Display::new();
    let mut loaded = Vec::new();
    for &category in &categories {
        let pool = project.pool(category)?;
        let rows = CarefulRows::load(&data, category, &pool, &split)?;
        let (fit, scores) = calibrate_category(
            &tagger,
            crossfit.as_deref(),
            args.base.as_deref(),
            &pool,
            &rows,
            &settings,
            &split,
            &progress,
        )?;
        if let Some(out) = dump.as_mut() {
            let dev: Vec<&ReviewStack> = rows.dev.iter().collect();
            let dev_scores =
                score_rows(&tagger, category, &dev, "scored (careful dev)", &progress)?;
            let parts = rows
                .train
                .iter()
                .zip(&rows.train_noisy)
                .zip(&scores)
                .map(|((c, n), s)| ("train", c, n, s))
                .chain(
                    rows.dev
                        .iter()
                        .zip(&rows.dev_noisy)
                        .zip(&dev_scores)
                        .map(|((c, n), s)| ("dev", c, n, s)),
                );
            for (part, careful, noisy, s) in parts {
                let line = serde_json::json!({
                    "category": category.name(),
                    "row": careful.row,
                    "split": part,
                    "careful": careful.tags,
                    "noisy": noisy.tags,
                    "tags": pool.tags,
                    "groups": pool.exclusive.iter().map(|g| &g.tags).collect::<Vec<_>>(),
                    "product": s.product,
                    "reviews": s.reviews.iter().map(|r| &r.scores).collect::<Vec<_>>(),
                });
                writeln!(out, "{line}")?;
            }
        }
        loaded.push((category, pool, rows, fit.out_of_fold));
    }
    if let Some(mut out) = dump {
        out.flush()?;
    }
    // The careful-dev figures of the calibrated bundle, recorded beside the noisy ones.
    let tagger = Tagger::open(&model_dir, args.base.as_deref())?;
    let mut dev = Vec::new();
    for (category, pool, rows, out_of_fold) in loaded {
        let (figures, part) = careful_dev(&tagger, &pool, &rows, &progress)?;
        let dir = tagger.bundle().category_dir(category);
        let mut metrics = AdapterMetrics::read(&dir)?;
        metrics.careful = Some(CarefulMetrics {
            dev: figures.clone(),
            calibration: CalibrationRecord {
                settings: settings.record(),
                careful_train_products: rows.train.len(),
                out_of_fold: out_of_fold.iter().map(|p| p.record()).collect(),
            },
        });
        metrics.write(&dir)?;
        dev.push((category, figures, part));
    }
    let report = CarefulReport::new(model_dir.display().to_string(), dev, Default::default());
    print_careful_table(&report);
    Ok(())
}

/// The calibration settings in `path` (default: the project's `configs/calibration.toml`),
/// checked.
pub fn load_settings(
    project: &Project,
    path: Option<&std::path::Path>,
) -> anyhow::Result<CalibrationSettings> {
    let path = path.map_or_else(
        || project.root().join("configs").join("calibration.toml"),
        std::path::Path::to_path_buf,
    );
    let settings: CalibrationSettings = lamoda_data::read_toml(&path)?;
    if let Err(reason) = settings.validate() {
        bail!("{}: {reason}", path.display());
    }
    Ok(settings)
}

/// Fits `rows.category`'s careful calibration on its careful training products and writes
/// it into the tagger's bundle as `careful.json`. Each product is scored (raw scores, any
/// calibration aside) by the cross-fitted adapter of its careful fold in `crossfit`
/// (`<dir>/fold<F>/`, which never saw it), or with `crossfit` `None` by `tagger` itself
/// (adapters trained without careful products). The scoring reports to `progress`.
/// Returns the fit and the scores.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_category(
    tagger: &Tagger,
    crossfit: Option<&std::path::Path>,
    base: Option<&std::path::Path>,
    pool: &lamoda_data::EtalonPool,
    rows: &CarefulRows,
    settings: &CalibrationSettings,
    split: &lamoda_data::SplitConfig,
    progress: &dyn Progress,
) -> anyhow::Result<(
    lamoda_trainer::CalibrationFit,
    Vec<lamoda_inference::Scores>,
)> {
    let category = rows.category;
    let train: Vec<&ReviewStack> = rows.train.iter().collect();
    let scores = match crossfit {
        None => score_rows(tagger, category, &train, "scored (careful train)", progress)?,
        Some(dir) => {
            let base_dir = match base {
                Some(b) => b.to_path_buf(),
                None => tagger.bundle().default_base_dir(),
            };
            let mut scores: Vec<Option<lamoda_inference::Scores>> = vec![None; train.len()];
            for fold in (0..split.folds).filter(|&f| f != split.dev_fold) {
                let fold_dir = dir.join(format!("fold{fold}"));
                let members: Vec<usize> = (0..train.len())
                    .filter(|&i| rows.train_folds[i] == fold)
                    .collect();
                if members.is_empty() {
                    continue;
                }
                if !fold_dir.join(category.name()).is_dir() {
                    bail!(
                        "{}: no cross-fitted `{category}` adapter (train with `lamoda-tags train`, or pass --no-crossfit for adapters trained with --careful exclude)",
                        fold_dir.display()
                    );
                }
                let fold_tagger = Tagger::open(&fold_dir, Some(&base_dir)).with_context(|| {
                    format!("opening the cross-fitted bundle {}", fold_dir.display())
                })?;
                let stacks: Vec<&ReviewStack> = members.iter().map(|&i| train[i]).collect();
                let fold_scores = score_rows(
                    &fold_tagger,
                    category,
                    &stacks,
                    "scored (careful train, cross-fitted)",
                    progress,
                )?;
                for (i, s) in members.into_iter().zip(fold_scores) {
                    scores[i] = Some(s);
                }
            }
            scores
                .into_iter()
                .map(|s| s.context("a careful training product lies in no careful fold"))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let fit = fit_calibration(pool, &train, &scores, settings)
        .with_context(|| format!("calibrating `{category}`"))?;
    if let Some(p) = fit
        .out_of_fold
        .iter()
        .find(|p| p.threshold == fit.calibration.threshold)
    {
        eprintln!(
            "{category}: threshold {:.2} (out of fold on {} careful products: precision {:.3}, recall {:.3}, micro-F1 {:.3})",
            p.threshold,
            train.len(),
            p.precision,
            p.recall,
            p.micro_f1
        );
    }
    let dir = tagger.bundle().category_dir(category);
    write_json(&dir.join(CAREFUL_FILE), &fit.calibration)?;
    Ok((fit, scores))
}
