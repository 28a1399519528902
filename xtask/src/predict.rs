//! `cargo xtask predict`: route a product to its category and print its tags.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use lamoda_data::UnknownTagPolicy;
use lamoda_trainer::FrequencyPrior;
use serde::Serialize;

use crate::common::{DataRootArgs, emit, project, read_reviews};

/// Arguments of `cargo xtask predict`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "reviews"])))]
pub struct PredictArgs {
    /// The product's Lamoda good type (Shoes, Clothes, Bags, Beauty_Accs, Accs, Home_Accs, …).
    #[arg(long)]
    good_type: String,
    /// One review text.
    #[arg(long)]
    text: Option<String>,
    /// A file with one review per line.
    #[arg(long, value_name = "FILE")]
    reviews: Option<PathBuf>,
    /// The model: `prior` (the frequency prior; it ignores the text).
    #[arg(long, default_value = "prior", value_name = "prior")]
    model: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataRootArgs,
}

#[derive(Serialize)]
struct Answer {
    good_type: String,
    category: String,
    fallback: bool,
    model: String,
    reviews: usize,
    tags: Vec<TagProbability>,
}

#[derive(Serialize)]
struct TagProbability {
    tag: String,
    probability: f32,
}

/// Runs `cargo xtask predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    if args.model != "prior" {
        bail!(
            "--model {}: only `prior` is available in this build",
            args.model
        );
    }
    let reviews = match (&args.text, &args.reviews) {
        (Some(text), _) if text.trim().is_empty() => bail!("--text is empty: give the review text"),
        (Some(text), _) => vec![text.trim().to_owned()],
        (None, Some(file)) => read_reviews(file)?,
        (None, None) => bail!("give --text or --reviews"),
    };
    let project = project();
    let route = project.routing()?.route(&args.good_type);
    let pool = project.pool(route.category)?;
    let training = args
        .data
        .resolve()?
        .labeled(route.category, &pool, UnknownTagPolicy::Error)?;
    let prior = FrequencyPrior::fit(&pool, &training.rows);
    // The prior's "probabilities" are tag frequencies; it predicts its top k.
    let decoded = prior.predict();
    let answer = Answer {
        good_type: args.good_type.clone(),
        category: route.category.name().to_owned(),
        fallback: route.fallback,
        model: "frequency prior (ignores the text)".into(),
        reviews: reviews.len(),
        tags: decoded
            .iter()
            .map(|&i| TagProbability {
                tag: pool.tags[i].clone(),
                probability: prior.frequencies[i],
            })
            .collect(),
    };
    if args.json {
        emit(&serde_json::to_string_pretty(&answer)?)?;
    } else {
        let note = if route.fallback {
            " (fallback: no adapter of its own)"
        } else {
            ""
        };
        println!(
            "{} → {}{note}; model: {}",
            answer.good_type, answer.category, answer.model
        );
        for t in &answer.tags {
            println!("  {:<28} {:.2}", t.tag, t.probability);
        }
    }
    Ok(())
}
