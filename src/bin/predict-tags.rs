//! `predict-tags`: tags a product's reviews with the trained adapters.
//!
//! `predict-tags --text "Отличные кроссовки, легкие и удобные" --good-type Shoes` prints
//! `category: shoes` (with ` (fallback)` when the good type has no route of its own),
//! then one `tag<TAB>probability` line per predicted tag, most probable first; `--json`
//! prints one JSON object instead.
//!
//! Errors are one line on stderr: exit code 2 for usage errors, 1 for everything else.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser};
use lamoda_inference::{InferenceError, Prediction, Request, Tagger};
use lamoda_tags::Project;

/// Tags a product's reviews: the good type picks the category's adapter, which gives a
/// probability for every tag of the category's pool; the tags that pass are printed.
#[derive(Parser, Debug)]
#[command(name = "predict-tags", version)]
#[command(group(ArgGroup::new("input").required(true).args(["text", "reviews"])))]
struct Cli {
    /// One review text.
    #[arg(long, value_parser = non_blank)]
    text: Option<String>,
    /// A file of reviews: a JSON list of strings, or one review per line.
    #[arg(long, value_name = "FILE")]
    reviews: Option<PathBuf>,
    /// The product's Lamoda good type (Shoes, Clothes, Bags, Beauty_Accs, Accs,
    /// Home_Accs; others fall back to accs).
    #[arg(long)]
    good_type: String,
    /// Directory of trained adapters, `<category>/` each [default: <project>/adapters].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The base model's HF directory [default: <project>/models/e5-small].
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// One threshold for every tag (0..=1), instead of the adapters' saved per-tag
    /// thresholds (or 0.5 where none were saved).
    #[arg(long, value_parser = probability)]
    threshold: Option<f32>,
    /// Print one JSON object: good_type, category, fallback, tags, probabilities.
    #[arg(long)]
    json: bool,
}

fn non_blank(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the review text is empty".into());
    }
    Ok(text.to_owned())
}

fn probability(text: &str) -> Result<f32, String> {
    let value: f32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{value} is not within 0..=1"));
    }
    Ok(value)
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error: {}",
            lamoda_tags::one_line(&info.to_string())
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            eprintln!("{}", clap_error_line(&err.render().to_string()));
            return ExitCode::from(2);
        }
        Err(err) => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("error: {}", lamoda_tags::error_line(&err));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Clap's message up to its usage section, as one line.
fn clap_error_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    message.join(" ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let reviews = match (&cli.text, &cli.reviews) {
        (Some(text), _) => vec![text.clone()],
        (None, Some(file)) => read_reviews(file)?,
        (None, None) => bail!("give --text TEXT or --reviews FILE"),
    };
    let project = Project::from_build();
    let model_dir = cli
        .model
        .clone()
        .unwrap_or_else(|| project.root().join("adapters"));
    let base_dir = cli
        .base
        .clone()
        .unwrap_or_else(|| project.root().join("models").join("e5-small"));
    let routing = project.routing()?;
    let mut tagger = match Tagger::open(&base_dir, &model_dir, routing, &project.etalon_dir()) {
        Ok(tagger) => tagger,
        Err(err @ (InferenceError::NoModelDir { .. } | InferenceError::NoAdapters { .. })) => {
            bail!("{err} (give the adapters' directory with --model DIR)")
        }
        Err(err) => return Err(err.into()),
    };
    tagger.set_threshold(cli.threshold)?;
    let prediction = tagger
        .predict(&[Request::new(cli.good_type.clone(), reviews)])?
        .pop()
        .context("no prediction came back")?;
    print(&prediction, cli.json)
}

/// `--reviews FILE`: a JSON list of strings, or one review per line (blank lines skipped).
fn read_reviews(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read reviews file {}", path.display()))?;
    let reviews = lamoda_data::parse_reviews(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a JSON list of strings: {e}", path.display()))?;
    if reviews.is_empty() {
        bail!(
            "{}: no reviews (expected a JSON list of strings or one review per line)",
            path.display()
        );
    }
    Ok(reviews)
}

fn print(prediction: &Prediction, json: bool) -> anyhow::Result<()> {
    let text = if json {
        serde_json::to_string_pretty(prediction)?
    } else {
        let mut lines = vec![format!(
            "category: {}{}",
            prediction.category,
            if prediction.fallback {
                " (fallback)"
            } else {
                ""
            }
        )];
        lines.extend(
            prediction
                .tags
                .iter()
                .map(|t| format!("{}\t{:.2}", t.tag, t.probability)),
        );
        lines.join("\n")
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        // `| head`: a closed pipe ends the output quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
