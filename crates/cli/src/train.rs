//! `lamoda-tags train`: train one category's adapter (or all of them) on the train split and
//! keep the best epoch by dev micro-F1.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::Category;
use lamoda_inference::InferenceError;
use lamoda_trainer::{
    ManyOptions, Progress, Refitted, TrainConfig, TrainJob, Trained, refit_many, train_many,
};

use lamoda_eval::CarefulRows;

use crate::common::DataRootArgs;
use lamoda_data::Project;

/// Arguments of `lamoda-tags train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The category to train.
    #[arg(long, value_name = "CATEGORY", conflicts_with = "all")]
    category: Option<Category>,
    /// Train every category with training data (`--jobs` at a time).
    #[arg(long)]
    all: bool,
    /// A training config file (TOML, `lamoda_trainer::TrainConfig`) to use instead of
    /// `configs/<category>.toml`; only with `--category`.
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    config: Option<PathBuf>,
    /// Override the number of epochs of the config.
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Where adapters are written (`<out>/<category>/`). Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The base model directory (HF layout). Default: the project's `models/e5-small/`.
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// Continue an interrupted run from its last epoch checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Do not train the encoder: keep the adapters already in `--out` and redo what
    /// follows their training, as the config now asks: fit the lexical branch
    /// (`[lexical]`) and choose the thresholds (`tune_thresholds`,
    /// `tune_global_threshold`) on their split; updates `lexical.*`, `thresholds.json`,
    /// `train_config.json` and `metrics.json`. Minutes instead of an hour without the
    /// frozen view; with it, a pass of the whole base over every product (about as long
    /// as the cache of a full training run).
    #[arg(long, alias = "thresholds-only", conflicts_with_all = ["resume", "epochs"])]
    keep_encoder: bool,
    /// Categories trained at the same time, each with its own copy of the base and its
    /// share of the cores (on 2 cores, two jobs of one thread each are the fastest).
    #[arg(long, default_value_t = 2, value_name = "N")]
    jobs: usize,
    /// What the careful products (`LAMODA_DATA/careful/`) do in training: `cross-fit`
    /// (the careful training products join the training split with their careful tags;
    /// for each careful fold an adapter is also trained without that fold into
    /// `--crossfit-dir`, so `lamoda-tags calibrate` scores every careful training product
    /// with an adapter that never saw it), or `exclude` (no careful product is trained on).
    /// The careful dev products are never trained on.
    #[arg(long, value_enum, default_value_t = CarefulMode::CrossFit)]
    careful: CarefulMode,
    /// Where the cross-fitted adapters go (`<dir>/fold<F>/<category>/`). Default: the
    /// project's `target/crossfit/`.
    #[arg(long, value_name = "DIR")]
    crossfit_dir: Option<PathBuf>,
    /// Team-reviewed labels (`lamoda-tags review export` files; repeat for several): their
    /// products join every adapter's training with their reviewed tags (a product whose
    /// reviews are those of a careful dev product is left out, so the dev split stays
    /// unseen).
    #[arg(long, value_name = "FILE")]
    reviewed: Vec<PathBuf>,
    #[command(flatten)]
    train_data: DataRootArgs,
}

/// What the careful products do in training.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarefulMode {
    /// Train on the careful training products, cross-fitted.
    CrossFit,
    /// Leave every careful product out.
    Exclude,
}

/// Runs `lamoda-tags train`.
pub fn run(args: TrainArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.train_data.resolve()?;
    let categories = match (args.category, args.all) {
        (Some(c), false) => vec![c],
        (None, true) => data.categories()?,
        _ => bail!("say which adapter to train: --category CATEGORY or --all"),
    };
    let split = project.split()?;
    let root = project.root().to_path_buf();
    let base_dir = args.base.clone().unwrap_or_else(|| project.base_dir());
    let out = args.out.clone().unwrap_or_else(|| project.adapters_dir());
    // Read and validate every config before the long work starts.
    let crossfit_dir = args
        .crossfit_dir
        .clone()
        .unwrap_or_else(|| crate::common::default_crossfit_dir(project));
    let careful_split = project.careful_split()?;
    let mut reviewed = lamoda_eval::reviewed_rows(project, &args.reviewed)?;
    let mut jobs: Vec<TrainJob> = Vec::new();
    let mut fold_dirs = std::collections::BTreeSet::new();
    for &category in &categories {
        let pool = project.pool(category)?;
        let mut config = match &args.config {
            Some(path) => TrainConfig::load_file(path)?,
            None => TrainConfig::load(&root.join("configs"), category)?,
        };
        if let Some(epochs) = args.epochs {
            if epochs == 0 {
                bail!("--epochs must be at least 1");
            }
            config.epochs = epochs;
        }
        let rows = data
            .fitting_rows(category, &pool)
            .with_context(|| format!("training data of `{category}`"))?;
        let careful = match (args.careful, data.careful_path(category).is_file()) {
            (CarefulMode::CrossFit, true) => {
                Some(CarefulRows::load(&data, category, &pool, &careful_split)?)
            }
            _ => None,
        };
        let mut team = reviewed.remove(&category).unwrap_or_default();
        if !team.is_empty() {
            let dev = match &careful {
                Some(c) => c.dev.clone(),
                None if data.careful_path(category).is_file() => {
                    CarefulRows::load(&data, category, &pool, &careful_split)?.dev
                }
                None => Vec::new(),
            };
            let dev: std::collections::HashSet<String> = dev
                .iter()
                .map(|r| lamoda_data::reviews_sha256(&r.reviews))
                .collect();
            let before = team.len();
            team.retain(|r| !dev.contains(&lamoda_data::reviews_sha256(&r.reviews)));
            eprintln!(
                "`{category}`: {} team-reviewed products join the training{}",
                team.len(),
                if before > team.len() {
                    format!(" ({} left out: careful dev products)", before - team.len())
                } else {
                    String::new()
                }
            );
        }
        if let Some(careful) = &careful {
            for fold in (0..careful_split.folds).filter(|&f| f != careful_split.dev_fold) {
                let dir = crossfit_dir.join(format!("fold{fold}"));
                fold_dirs.insert(dir.clone());
                jobs.push(TrainJob {
                    category,
                    pool: pool.clone(),
                    config: config.clone(),
                    rows: rows.rows.clone(),
                    extra: careful
                        .train_without_fold(fold)
                        .into_iter()
                        .chain(team.iter().cloned())
                        .collect(),
                    out: dir,
                });
            }
        }
        jobs.push(TrainJob {
            category,
            pool,
            config,
            rows: rows.rows,
            extra: careful
                .as_ref()
                .map(|c| c.train.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(team)
                .collect(),
            out: out.clone(),
        });
    }
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if args.keep_encoder && jobs.iter().any(|job| !job.extra.is_empty()) {
        bail!(
            "--keep-encoder refits on the noisy rows only, not on the careful training products \
             (or team-reviewed ones) the adapters were trained with: pass --careful exclude and \
             no --reviewed (for adapters trained so) or train again"
        );
    }
    // Largest first, so the jobs finish close together.
    jobs.sort_by_key(|job| {
        std::cmp::Reverse(
            job.rows
                .iter()
                .chain(&job.extra)
                .map(|r| r.reviews.len())
                .sum::<usize>(),
        )
    });
    let t0 = Instant::now();
    let n_jobs = args.jobs.min(jobs.len()).max(1);
    let display = lamoda_predict::progress::Display::new();
    let progress = match (args.quiet, n_jobs) {
        (true, _) => Progress::Quiet,
        (false, 1) => Progress::Steps(&display),
        (false, _) => Progress::Lines,
    };
    let options = ManyOptions {
        base_dir: &base_dir,
        workers: n_jobs,
        progress,
        resume: args.resume,
    };
    let mut lines: Vec<String> = if args.keep_encoder {
        refit_many(jobs, &split, options, |r| eprintln!("{}", refit_line(r)))?
            .iter()
            .map(refit_line)
            .collect()
    } else {
        let on_start = |job: &TrainJob| {
            eprintln!(
                "training `{}` ({} products, {} of them careful) into {}",
                job.category,
                job.rows.len() + job.extra.len(),
                job.extra.len(),
                job.out.display()
            )
        };
        train_many(jobs, &split, options, on_start, |t| {
            eprintln!("{}", trained_line(t))
        })?
        .iter()
        .map(trained_line)
        .collect()
    };
    lines.sort();
    let trained = lines.len();
    // The cross-fitted adapters form bundles of their own once they hold every category.
    for dir in &fold_dirs {
        if crate::common::write_project_bundle(dir, project, None).is_ok() {
            lines.push(format!("cross-fitted bundle {}", dir.display()));
        }
    }
    // A bundle needs every category the routing table names; a directory of some of
    // them (a single `--category` into a fresh `--out`) stays a directory of adapters.
    match crate::common::write_project_bundle(&out, project, None) {
        Ok(bundle) => lines.push(format!(
            "bundle {} ({} categories)",
            bundle.dir().display(),
            bundle.categories().len()
        )),
        Err(err)
            if matches!(
                err.downcast_ref::<InferenceError>(),
                Some(InferenceError::UnroutedCategory { .. })
            ) =>
        {
            lines.push(format!(
                "{} is not a bundle yet: {}",
                out.display(),
                lamoda_predict::error_line(&err)
            ));
        }
        Err(err) => return Err(err),
    }
    for line in &lines {
        println!("{line}");
    }
    if trained > 1 {
        println!(
            "{trained} adapters in {:.0} s ({n_jobs} at a time)",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The summary line of a trained adapter: the figure of the saved decoding (tuned
/// thresholds when asked for) beside the prior's.
fn trained_line(t: &Trained) -> String {
    let m = &t.metrics;
    let shipped = m.shipped();
    format!(
        "{:<8} dev micro-F1 {:.4} (prior {:.4}, {:+.4}; at 0.5 {:.4}) at epoch {}; {} train / {} dev; {:.0} s → {}",
        t.category.name(),
        shipped.micro_f1,
        m.prior.micro_f1,
        shipped.micro_f1 - m.prior.micro_f1,
        m.dev.micro_f1,
        m.epoch,
        m.n_train,
        m.n_dev,
        t.seconds,
        t.dir.display()
    )
}

/// The summary line of a refitted adapter (`--keep-encoder`).
fn refit_line(r: &Refitted) -> String {
    let (category, finished) = (r.category.name(), &r.finished);
    let mut line = format!(
        "{category:<8} dev micro-F1 {:.4} at 0.5",
        finished.dev.micro_f1
    );
    if let Some(b) = &finished.branches {
        line += &format!(
            " (encoder {:.4}, lexical {:.4} over {} features)",
            b.encoder.micro_f1, b.lexical.micro_f1, b.vocabulary
        );
    }
    if let (Some(t), Some(m)) = (&finished.thresholds, &finished.tuned) {
        line += &format!(
            "; {:.4} with thresholds {:.2}–{:.2}",
            m.micro_f1,
            t.iter().copied().fold(f32::INFINITY, f32::min),
            t.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        );
    }
    line
}
