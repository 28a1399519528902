//! `lamoda-tags eval`: a model's metrics per category, always beside the
//! frequency prior.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Category, EtalonPool, ReviewStack, UnknownTagPolicy, train_dev_split};
use lamoda_data::{DataDir, Project};
use lamoda_inference::{DecodeOptions, Tagger};
use lamoda_metrics::{
    FrequencyPrior, Metrics, evaluate, evaluate_prior, evaluate_probabilities, gold_indices,
};
use serde::Serialize;

use crate::common::{DataRootArgs, emit};

/// Arguments of `lamoda-tags eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Evaluate one category only (default: every category with data).
    #[arg(long, value_name = "CATEGORY")]
    category: Option<Category>,
    /// Evaluate on every row of this held-out data directory (same layout as the
    /// training data; the prior is then fitted on all training rows). Without it, the dev
    /// split of the training data (`--data`) is used.
    #[arg(long, value_name = "DIR")]
    test_data: Option<PathBuf>,
    /// The model: a bundle (as written by `lamoda-tags train` or `lamoda-tags bundle`) or
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
    /// Also decode with the minimum-evidence rule at each N of this list (e.g. 1,2,3:
    /// keep a tag only when at least N reviews support it on their own) and report
    /// micro-F1 per N beside the plain figure (N = 0).
    #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
    min_mentions: Vec<usize>,
    /// Which labels to score against: `noisy`, the data set's own (`labeled/`, on the noisy
    /// dev split), or `careful`, the careful labels (`careful/`, on the careful dev split,
    /// beside the data set's labels of the same products and the prior).
    #[arg(long, value_enum, default_value_t = Labels::Noisy)]
    labels: Labels,
    /// With `--labels careful`: also score the bundle on team-reviewed labels
    /// (`lamoda-tags review export` files; repeat for several), beside the prior. Products
    /// the bundle was trained on (`train --reviewed`) score in-sample there.
    #[arg(long, value_name = "FILE")]
    reviewed: Vec<PathBuf>,
    #[command(flatten)]
    train_data: DataRootArgs,
}

/// The labels `eval` scores against.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// The data set's own labels.
    Noisy,
    /// The careful labels.
    Careful,
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
    /// micro-F1 with the minimum-evidence rule, per N (with --min-mentions).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    micro_f1_by_min_mentions: BTreeMap<usize, f64>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    rows: &'static str,
    categories: BTreeMap<String, CategoryFigures>,
    mean_micro_f1: f64,
    mean_prior_micro_f1: f64,
}

/// Runs `lamoda-tags eval`.
pub fn run(args: EvalArgs, project: &Project) -> anyhow::Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    if args.labels == Labels::Careful {
        return careful(&args, project);
    }
    if !args.reviewed.is_empty() {
        bail!("--reviewed scores team-reviewed labels: add --labels careful");
    }
    let model_name = args.model.clone().unwrap_or_else(|| "adapters".to_owned());
    let model_dir = match args.model.as_deref() {
        Some("prior") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(project.adapters_dir()),
    };
    // A directory of adapters that is not a bundle (one `train --category` run) is read
    // through a temporary bundle, kept while `_guard` lives.
    let (tagger, _guard): (Option<Tagger>, _) = match &model_dir {
        Some(dir) => {
            let (tagger, guard) = crate::common::open_model(dir, args.base.as_deref(), project)?;
            (Some(tagger), guard)
        }
        None => (None, None),
    };
    let train = args.train_data.resolve()?;
    let split = project.split()?;
    let eval_dir = args.test_data.as_ref().map(|d| DataDir::new(d.clone()));
    let categories = match (args.category, &eval_dir) {
        (Some(c), _) => vec![c],
        (None, Some(dir)) => dir.categories()?,
        (None, None) => train.categories()?,
    };
    let mut report = Report {
        model: model_name,
        rows: if eval_dir.is_some() {
            "all rows of --test-data; prior fitted on all training rows"
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
            .fitting_rows(category, &pool)
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
        let mut by_min_mentions = BTreeMap::new();
        let model: Metrics = match &tagger {
            Some(tagger) if !args.min_mentions.is_empty() => {
                let mut levels = args.min_mentions.clone();
                levels.push(0);
                levels.sort_unstable();
                levels.dedup();
                // Per N, the answer the runtime gives (careful-calibrated where the bundle
                // is); the main figure stays the adapter's own decoding, as without N.
                let metrics = evidence_metrics(tagger, &pool, &eval_rows, args.k, &levels)?;
                for (&n, m) in levels.iter().zip(&metrics) {
                    by_min_mentions.insert(n, m.micro_f1);
                }
                tagger_metrics(tagger, &pool, &eval_rows, args.k)?
            }
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
                micro_f1_by_min_mentions: by_min_mentions,
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

/// `eval --labels careful`: every source's figures on the careful dev split.
fn careful(args: &EvalArgs, project: &Project) -> anyhow::Result<()> {
    use crate::careful::{CarefulRows, careful_dev, pooled, print_careful_table};
    if args.test_data.is_some() || !args.min_mentions.is_empty() {
        bail!(
            "--labels careful scores the careful dev split of the data: drop --test-data and --min-mentions"
        );
    }
    let data = args.train_data.resolve()?;
    let split = project.careful_split()?;
    let model_name = args.model.clone().unwrap_or_else(|| "adapters".to_owned());
    let model_dir = match args.model.as_deref() {
        Some("prior") => bail!(
            "--labels careful scores a bundle; the prior is in every row of its table already"
        ),
        Some(dir) => PathBuf::from(dir),
        None => project.adapters_dir(),
    };
    let (tagger, _guard) = crate::common::open_model(&model_dir, args.base.as_deref(), project)?;
    let categories = match args.category {
        Some(c) => vec![c],
        None => tagger.categories(),
    };
    let mut reviewed = crate::careful::reviewed_rows(project, &args.reviewed)?;
    let mut table = BTreeMap::new();
    let mut parts = Vec::new();
    let mut team = BTreeMap::new();
    for category in categories {
        let pool = project.pool(category)?;
        let rows = CarefulRows::load(&data, category, &pool, &split)?;
        let (figures, part) = careful_dev(&tagger, &pool, &rows)?;
        table.insert(category, figures);
        parts.push(part);
        if let Some(products) = reviewed.remove(&category).filter(|r| !r.is_empty()) {
            let prior = lamoda_metrics::FrequencyPrior::fit(&pool, rows.train.iter());
            let (model, prior) =
                crate::careful::reviewed_figures(&tagger, &pool, &products, &prior)?;
            team.insert(category, (model, prior));
        }
    }
    if args.json {
        let all: BTreeMap<&str, crate::careful::Figures> = pooled(&parts).into_iter().collect();
        let report = serde_json::json!({
            "model": model_name,
            "rows": "careful dev split; prior fitted on the careful training products",
            "categories": table.iter().map(|(c, f)| (c.name(), f)).collect::<BTreeMap<_, _>>(),
            "all": all,
            "reviewed": team.iter().map(|(c, (m, p))| (c.name(), serde_json::json!({"model": m, "prior": p}))).collect::<BTreeMap<_, _>>(),
        });
        emit(&serde_json::to_string_pretty(&report)?)?;
    } else {
        print_careful_table(&model_name, &table, &parts);
        if !team.is_empty() {
            println!();
            println!(
                "team-reviewed products ({}):",
                args.reviewed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "{:<8} {:>4}  {:<19} {:<19}",
                "category", "n", "model P / R / F1", "prior"
            );
            let cell = |f: &crate::careful::Figures| {
                format!("{:.3} {:.3} {:.3}", f.precision, f.recall, f.micro_f1)
            };
            for (category, (model, prior)) in &team {
                println!(
                    "{:<8} {:>4}  {:<19} {:<19}",
                    category.name(),
                    model.n,
                    cell(model),
                    cell(prior)
                );
            }
        }
    }
    Ok(())
}

/// Metrics of `tagger`'s adapter of `pool.category` on `rows`, its own probabilities
/// decoded as training chose (saved per-tag thresholds, else 0.5), before any careful
/// calibration: the figure training records and `reproduce` checks. The bundle's pool must be `pool` (the
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
        tagger.raw_decoding(category),
    ) else {
        bail!(
            "{}: no `{category}` adapter in the bundle",
            tagger.bundle().dir().display()
        );
    };
    if bundled.tags != pool.tags {
        bail!(
            "{}: the bundle's `{category}` pool differs from etalon_tags/{category}.toml \
             (retrain the adapter, or rewrite the bundle with `lamoda-tags bundle` if only \
             the groups changed)",
            tagger.bundle().category_dir(category).display()
        );
    }
    let started = Instant::now();
    let display = lamoda_predict::progress::Display::new();
    if !display.is_terminal() {
        eprintln!("eval {category}: scoring {} products", rows.len());
    }
    let stacks: Vec<&[String]> = rows.iter().map(|r| r.reviews.as_slice()).collect();
    let probabilities = adapter
        .probabilities_with_progress(&tagger.base().tokenizer, &stacks, &display)
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

/// Metrics of `tagger` on `rows` decoded with the minimum-evidence rule at each of
/// `levels` (0: off), from one scoring pass (`Tagger::score`, the server's path).
fn evidence_metrics(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    k: usize,
    levels: &[usize],
) -> anyhow::Result<Vec<Metrics>> {
    let category = pool.category;
    if tagger.pool(category).map(|p| &p.tags) != Some(&pool.tags) {
        bail!(
            "{}: the bundle's `{category}` pool differs from etalon_tags/{category}.toml",
            tagger.bundle().dir().display()
        );
    }
    let scores = crate::careful::score_rows(tagger, category, rows, "scored with evidence")?;
    let gold = gold_indices(pool, rows);
    let probabilities: Vec<Vec<f32>> = scores.iter().map(|s| s.product.clone()).collect();
    levels
        .iter()
        .map(|&min_mentions| {
            let options = DecodeOptions {
                min_mentions,
                ..DecodeOptions::default()
            };
            let predicted = scores
                .iter()
                .map(|s| {
                    Ok(tagger
                        .decode(s, &options)?
                        .tags
                        .iter()
                        .filter_map(|t| pool.index_of(&t.tag))
                        .collect())
                })
                .collect::<anyhow::Result<Vec<Vec<usize>>>>()?;
            Ok(evaluate(&gold, &predicted, &probabilities, k))
        })
        .collect()
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
    let levels: Vec<usize> = report
        .categories
        .values()
        .flat_map(|c| c.micro_f1_by_min_mentions.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !levels.is_empty() {
        println!("micro-F1 with the minimum-evidence rule (a tag needs N supporting reviews):");
        let header: Vec<String> = levels.iter().map(|n| format!("N={n}")).collect();
        println!(
            "{:<8} {}",
            "category",
            header.iter().map(|h| format!("{h:>7}")).collect::<String>()
        );
        for (name, c) in &report.categories {
            let row: String = levels
                .iter()
                .map(|n| {
                    c.micro_f1_by_min_mentions
                        .get(n)
                        .map_or("      -".to_owned(), |f| format!("{f:>7.3}"))
                })
                .collect();
            println!("{name:<8} {row}");
        }
        let means: String = levels
            .iter()
            .map(|n| {
                let v: Vec<f64> = report
                    .categories
                    .values()
                    .filter_map(|c| c.micro_f1_by_min_mentions.get(n).copied())
                    .collect();
                format!("{:>7.3}", v.iter().sum::<f64>() / v.len().max(1) as f64)
            })
            .collect();
        println!("{:<8} {means}", "mean");
    }
}
