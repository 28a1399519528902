//! `cargo xtask eval`: a model's metrics per category, always beside the
//! frequency prior.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Category, EtalonPool, ReviewStack, UnknownTagPolicy, train_dev_split};
use lamoda_inference::Tagger;
use lamoda_metrics::{FrequencyPrior, Metrics, evaluate_prior, evaluate_probabilities};
use lamoda_tags::DataDir;
use serde::Serialize;

use crate::common::{DataRootArgs, emit, project};

/// Arguments of `cargo xtask eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Evaluate one category only (default: every category with data).
    #[arg(long, value_name = "CATEGORY")]
    category: Option<Category>,
    /// Evaluate on every row of this data directory (same layout as the
    /// training data). Without it, the dev split of the training data is used.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The model: a bundle (as written by `cargo xtask train` or `cargo xtask bundle`) or
    /// `prior` (the frequency prior alone). Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR|prior")]
    model: Option<String>,
    /// The base model directory the adapters were trained on (HF layout). Default: the
    /// bundle's recorded default (the project's `models/e5-small/`).
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// k of precision@k and recall@k.
    #[arg(long, default_value_t = 3)]
    k: usize,
    #[command(flatten)]
    train_data: DataRootArgs,
}

/// One category's figures in the JSON report.
#[derive(Serialize)]
struct CategoryFigures {
    micro_f1: f64,
    macro_f1: f64,
    samples_f1: f64,
    precision_at_k: f64,
    recall_at_k: f64,
    prior_micro_f1: f64,
    prior_macro_f1: f64,
    prior_samples_f1: f64,
    n: usize,
    k: usize,
    prior_tags: usize,
    unknown_tags: usize,
}

#[derive(Serialize)]
struct Report {
    model: String,
    rows: &'static str,
    categories: BTreeMap<String, CategoryFigures>,
    mean_micro_f1: f64,
    mean_prior_micro_f1: f64,
}

/// Runs `cargo xtask eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let project = project();
    let model_name = args.model.clone().unwrap_or_else(|| "adapters".to_owned());
    let model_dir = match args.model.as_deref() {
        Some("prior") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(project.adapters_dir()),
    };
    let tagger: Option<Tagger> = match &model_dir {
        Some(dir) => Some(Tagger::open(dir, args.base.as_deref())?),
        None => None,
    };
    let train = args.train_data.resolve()?;
    let split = project.split()?;
    let eval_dir = args.data.as_ref().map(|d| DataDir::new(d.clone()));
    let categories = match (args.category, &eval_dir) {
        (Some(c), _) => vec![c],
        (None, Some(dir)) => dir.categories()?,
        (None, None) => train.categories()?,
    };
    let mut report = Report {
        model: model_name,
        rows: if eval_dir.is_some() {
            "all rows of --data; prior fitted on all training rows"
        } else {
            "dev split; prior fitted on the train split"
        },
        categories: BTreeMap::new(),
        mean_micro_f1: 0.0,
        mean_prior_micro_f1: 0.0,
    };
    for category in categories {
        let pool = project.pool(category)?;
        let training = train
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .with_context(|| format!("training data of `{category}`"))?;
        let (prior, eval_set);
        let eval_rows: Vec<&ReviewStack> = match &eval_dir {
            Some(dir) => {
                prior = FrequencyPrior::fit(&pool, &training.rows);
                eval_set = dir.labeled(category, &pool, UnknownTagPolicy::Report)?;
                if !eval_set.unknown_tags.is_empty() {
                    eprintln!(
                        "warning: {}: {} gold tags are not in the `{category}` pool (they count as missed), e.g. {:?} on row {}",
                        eval_set.path.display(),
                        eval_set.unknown_tags.len(),
                        eval_set.unknown_tags[0].1,
                        eval_set.unknown_tags[0].0
                    );
                }
                eval_set.rows.iter().collect()
            }
            None => {
                let s = train_dev_split(&training.rows, &split);
                prior = FrequencyPrior::fit(&pool, s.train.iter().map(|&i| &training.rows[i]));
                eval_set = training.clone();
                s.dev.iter().map(|&i| &eval_set.rows[i]).collect()
            }
        };
        let prior_metrics = evaluate_prior(&prior, &pool, &eval_rows, args.k);
        let model: Metrics = match &tagger {
            Some(tagger) => tagger_metrics(tagger, &pool, &eval_rows, args.k)?,
            None => prior_metrics.clone(),
        };
        report.categories.insert(
            category.name().to_owned(),
            CategoryFigures {
                micro_f1: model.micro_f1,
                macro_f1: model.macro_f1,
                samples_f1: model.samples_f1,
                precision_at_k: model.precision_at_k,
                recall_at_k: model.recall_at_k,
                prior_micro_f1: prior_metrics.micro_f1,
                prior_macro_f1: prior_metrics.macro_f1,
                prior_samples_f1: prior_metrics.samples_f1,
                n: model.n,
                k: args.k,
                prior_tags: prior.k,
                unknown_tags: eval_set.unknown_tags.len(),
            },
        );
    }
    let n = report.categories.len() as f64;
    report.mean_micro_f1 = report.categories.values().map(|c| c.micro_f1).sum::<f64>() / n;
    report.mean_prior_micro_f1 = report
        .categories
        .values()
        .map(|c| c.prior_micro_f1)
        .sum::<f64>()
        / n;
    if args.json {
        emit(&serde_json::to_string_pretty(&report)?)?;
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Metrics of `tagger`'s adapter of `pool.category` on `rows`, decoded the way `predict`
/// decodes (saved per-tag thresholds, else 0.5). The bundle's pool must be `pool` (the
/// project's), tag for tag; the time it takes is reported on stderr (with a progress bar
/// on a terminal).
pub fn tagger_metrics(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    k: usize,
) -> anyhow::Result<Metrics> {
    let category = pool.category;
    let (Some(adapter), Some(bundled), Some(decoding)) = (
        tagger.adapter(category),
        tagger.pool(category),
        tagger.decoding(category),
    ) else {
        bail!(
            "{}: no `{category}` adapter in the bundle",
            tagger.bundle().dir().display()
        );
    };
    if bundled.tags != pool.tags {
        bail!(
            "{}: the bundle's `{category}` pool differs from etalon_tags/{category}.toml \
             (retrain the adapter, or rewrite the bundle with `cargo xtask bundle` if only \
             the groups changed)",
            tagger.bundle().category_dir(category).display()
        );
    }
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    if !terminal {
        eprintln!("eval {category}: scoring {} products", rows.len());
    }
    let stacks: Vec<&[String]> = rows.iter().map(|r| r.reviews.as_slice()).collect();
    let probabilities = adapter
        .probabilities_with_progress(&tagger.base().tokenizer, &stacks, terminal)
        .with_context(|| format!("scoring `{category}`"))?;
    eprintln!(
        "eval {category}: {} products in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(evaluate_probabilities(
        &probabilities,
        pool,
        rows,
        &decoding,
        k,
    ))
}

fn print_table(report: &Report) {
    println!("model: {}   rows: {}", report.model, report.rows);
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>10} {:>7} {:>7} {:>9}",
        "category", "n", "micro-F1", "macro-F1", "samples-F1", "P@k", "R@k", "prior-F1"
    );
    for (name, c) in &report.categories {
        println!(
            "{:<8} {:>5} {:>9.3} {:>9.3} {:>10.3} {:>7.3} {:>7.3} {:>9.3}",
            name,
            c.n,
            c.micro_f1,
            c.macro_f1,
            c.samples_f1,
            c.precision_at_k,
            c.recall_at_k,
            c.prior_micro_f1
        );
    }
    println!(
        "mean micro-F1 {:.3} (prior {:.3})",
        report.mean_micro_f1, report.mean_prior_micro_f1
    );
}
