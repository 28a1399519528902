//! `lamoda-tags eval`: a model's metrics per category, always beside the frequency prior.
//! The flags, the model opened, [`lamoda_eval::evaluate_noisy`] or
//! [`lamoda_eval::evaluate_careful`] called, and the report printed.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use lamoda_data::{Category, DataDir, Project};
use lamoda_eval::{CarefulConfig, NoisyConfig, NoisyReport, evaluate_careful, evaluate_noisy};
use lamoda_inference::{Precision, Tagger};
use lamoda_predict::progress::Display;

use crate::careful::{print_careful_table, print_reviewed_table};
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
    /// How the encoder multiplies: fp32 or int8 [default: each adapter's runtime.json].
    #[arg(long, value_name = "fp32|int8")]
    precision: Option<Precision>,
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
            let (mut tagger, guard) =
                crate::common::open_model(dir, args.base.as_deref(), project)?;
            if let Some(p) = args.precision {
                tagger.set_precision(p);
            }
            (Some(tagger), guard)
        }
        None => (None, None),
    };
    let data = args.train_data.resolve()?;
    let test_data = args.test_data.as_ref().map(|d| DataDir::new(d.clone()));
    let categories = args.category.map(|c| [c]);
    let config = NoisyConfig {
        project,
        data: &data,
        test_data: test_data.as_ref(),
        tagger: tagger.as_ref(),
        model_name: &model_name,
        categories: categories.as_ref().map(|c| &c[..]),
        k: args.k,
        min_mentions: &args.min_mentions,
    };
    let report = evaluate_noisy(&config, &Display::new())?;
    for (category, figures) in &report.categories {
        if let Some(u) = &figures.unknown {
            eprintln!(
                "warning: {}: {} gold tags are not in the `{category}` pool (they count as missed), e.g. {:?} on row {}",
                u.path.display(),
                u.count,
                u.tag,
                u.row
            );
        }
    }
    if args.json {
        emit(&report.to_json()?)?;
    } else {
        print_table(&report);
    }
    Ok(())
}

/// `eval --labels careful`: every source's figures on the careful dev split.
fn careful(args: &EvalArgs, project: &Project) -> anyhow::Result<()> {
    if args.test_data.is_some() || !args.min_mentions.is_empty() {
        bail!(
            "--labels careful scores the careful dev split of the data: drop --test-data and --min-mentions"
        );
    }
    let data = args.train_data.resolve()?;
    let model_name = args.model.clone().unwrap_or_else(|| "adapters".to_owned());
    let model_dir = match args.model.as_deref() {
        Some("prior") => bail!(
            "--labels careful scores a bundle; the prior is in every row of its table already"
        ),
        Some(dir) => PathBuf::from(dir),
        None => project.adapters_dir(),
    };
    let (mut tagger, _guard) =
        crate::common::open_model(&model_dir, args.base.as_deref(), project)?;
    if let Some(p) = args.precision {
        tagger.set_precision(p);
    }
    let categories = args.category.map(|c| [c]);
    let config = CarefulConfig {
        project,
        data: &data,
        tagger: &tagger,
        model_name: &model_name,
        categories: categories.as_ref().map(|c| &c[..]),
        reviewed: &args.reviewed,
    };
    let report = evaluate_careful(&config, &Display::new())?;
    if args.json {
        emit(&report.to_json()?)?;
    } else {
        print_careful_table(&report);
        print_reviewed_table(&report, &args.reviewed);
    }
    Ok(())
}

fn print_table(report: &NoisyReport) {
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
    let levels = report.min_mentions_levels();
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
