//! `cargo xtask predict`: route a product to its category and print its tags, from the
//! trained adapters (default: the project's `adapters/`) or the frequency prior.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Route, UnknownTagPolicy};
use lamoda_inference::{
    DecodeOptions, InferenceError, PredictedTag, Request, TagProbability, Tagger,
};
use lamoda_metrics::FrequencyPrior;
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
    /// The model: a bundle or `prior` (the frequency prior, which ignores the text).
    /// Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR|prior")]
    model: Option<String>,
    /// The base model directory the adapters were trained on (HF layout). Default: the
    /// bundle's recorded default.
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// One threshold (0..=1) for every tag instead of the adapters' saved per-tag
    /// thresholds (or 0.5 where none were saved).
    #[arg(long)]
    threshold: Option<f32>,
    /// Keep a tag only when at least N reviews support it on their own (0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_mentions: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The training data (only for `--model prior`, which is fitted on it).
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
    tags: Vec<PredictedTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<Vec<TagProbability>>,
}

/// Runs `cargo xtask predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let reviews = match (&args.text, &args.reviews) {
        (Some(text), _) if text.trim().is_empty() => bail!("--text is empty: give the review text"),
        (Some(text), _) => vec![text.trim().to_owned()],
        (None, Some(file)) => read_reviews(file)?,
        (None, None) => bail!("give --text or --reviews"),
    };
    let answer = match args.model.as_deref() {
        Some("prior") => {
            if args.threshold.is_some() || args.min_mentions > 0 {
                bail!(
                    "--threshold and --min-mentions do not apply to the frequency prior (it predicts its top k)"
                );
            }
            predict_prior(&args, reviews.len())?
        }
        dir => {
            let dir = dir.map_or_else(|| project().root().join("adapters"), PathBuf::from);
            predict_adapters(&args, dir, reviews)?
        }
    };
    if args.json {
        emit(&serde_json::to_string_pretty(&answer)?)?;
    } else {
        let note = if answer.fallback {
            " (fallback: no adapter of its own)"
        } else {
            ""
        };
        let mut lines = vec![format!(
            "{} → {}{note}; model: {}",
            answer.good_type, answer.category, answer.model
        )];
        lines.extend(answer.tags.iter().map(|t| {
            format!(
                "  {:<28} {:.2}  {} mentions",
                t.tag, t.probability, t.mentions
            )
        }));
        emit(&lines.join("\n"))?;
    }
    Ok(())
}

fn predict_adapters(
    args: &PredictArgs,
    model_dir: PathBuf,
    reviews: Vec<String>,
) -> anyhow::Result<Answer> {
    let mut tagger = match Tagger::open(&model_dir, args.base.as_deref()) {
        Ok(tagger) => tagger,
        Err(err @ (InferenceError::NoModelDir { .. } | InferenceError::NotABundle { .. })) => {
            bail!("{err} (train adapters, or pass --model DIR or --model prior)")
        }
        Err(err) => return Err(err.into()),
    };
    tagger.set_threshold(args.threshold)?;
    let n_reviews = reviews.len();
    let mut request = Request::new(args.good_type.clone(), reviews);
    request.options = DecodeOptions {
        min_mentions: args.min_mentions,
        ..DecodeOptions::default()
    };
    let prediction = tagger
        .predict(&[request])?
        .pop()
        .context("no prediction came back")?;
    Ok(Answer {
        good_type: prediction.good_type,
        category: prediction.category.name().to_owned(),
        fallback: prediction.fallback,
        model: format!("adapters in {}", model_dir.display()),
        reviews: n_reviews,
        tags: prediction.tags,
        probabilities: Some(prediction.probabilities),
    })
}

fn predict_prior(args: &PredictArgs, n_reviews: usize) -> anyhow::Result<Answer> {
    let project = project();
    let route: Route = project.routing()?.route(&args.good_type);
    let pool = project.pool(route.category)?;
    let training = args
        .data
        .resolve()?
        .labeled(route.category, &pool, UnknownTagPolicy::Error)?;
    let prior = FrequencyPrior::fit(&pool, &training.rows);
    // The prior's "probabilities" are tag frequencies; it predicts its top k.
    let tag = |i: usize| PredictedTag {
        tag: pool.tags[i].clone(),
        probability: prior.frequencies[i],
        mentions: 0,
        evidence: Vec::new(),
    };
    Ok(Answer {
        good_type: args.good_type.clone(),
        category: route.category.name().to_owned(),
        fallback: route.fallback,
        model: "frequency prior (ignores the text)".into(),
        reviews: n_reviews,
        tags: prior.predict().into_iter().map(tag).collect(),
        probabilities: None,
    })
}
