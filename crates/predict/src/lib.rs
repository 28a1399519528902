//! The `predict-tags` command line: tags a product's reviews, or a whole product table, with a model bundle.
//!
//! `predict-tags --text "Отличные кроссовки, легкие и удобные" --good-type Shoes` prints
//! `category: shoes` (with ` (fallback)` when the good type has no route of its own),
//! then one `tag<TAB>probability<TAB>mentions` line per predicted tag (mentions: how many
//! reviews support it on their own), most probable first; `--json`
//! prints one JSON object instead. `predict-tags --input products.csv --out tags.jsonl`
//! tags a table (CSV, JSON lines or Parquet in; JSON lines, or a Parquet dataset directory
//! when `--out` ends in `.parquet`, out; see `lamoda_inference::batch`), resumably.
//!
//! `--rerank-url URL --rerank-model NAME` (off by default; one product only) re-ranks the
//! answer with an LLM behind an OpenAI-compatible chat API (`lamoda_llm::rerank`): our
//! `--rerank-top-k` most probable tags and the product's reviews are sent, and only the tags
//! the model confirms are kept. On a timeout or a malformed answer the output is our own
//! tags and stderr says why; `--json` then has `"reranked": false` and the `rerank_error`.
//!
//! The bundle is `--model DIR`, else `$LAMODA_MODEL`, else the `adapters/` bundle of the
//! project checkout the command runs in (looked for above the current directory, then
//! above the executable). The base is `--base DIR`, else `$LAMODA_BASE`, else the bundle's
//! recorded default. Errors are one line on stderr: exit code 2 for usage errors, 1 for
//! everything else.

//!
//! [`main`] is the whole `predict-tags` binary; `lamoda-tags predict` runs [`run`] with the
//! same [`PredictArgs`]. This crate links the runtime (`lamoda-inference`) and the optional
//! re-ranking (`lamoda-llm`), never the trainer or the curation pipeline. It also holds
//! what every binary shares on the terminal: [`error_line`] and the [`progress`] display.

pub mod progress;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser};
use lamoda_inference::batch::{
    BatchOptions, BatchProgress, OnError, Shard, errors_path, tag_table,
};
use lamoda_inference::{
    DecodeOptions, InferenceError, Precision, Prediction, Progress as _, Request, Tagger,
};
use lamoda_llm::{RerankConfig, RerankInput, Reranker, apply_rerank};
use serde::Serialize;

/// Tags a product's reviews: the good type picks the category's adapter, which gives a
/// probability for every tag of the category's pool; the tags that pass are printed.
#[derive(Parser, Debug)]
#[command(name = "predict-tags", version)]
#[command(group(ArgGroup::new("source").required(true).args(["text", "reviews", "input"])))]
pub struct PredictArgs {
    /// One review text.
    #[arg(long, value_parser = non_blank)]
    text: Option<String>,
    /// A file of reviews: a JSON list of strings, or one review per line.
    #[arg(long, value_name = "FILE")]
    reviews: Option<PathBuf>,
    /// A product table to tag: CSV in the reviews_sampled.csv layout (product_sku,
    /// comment_text as a JSON list, good_type), Parquet (a .parquet file: columns sku,
    /// good_type, reviews as list<utf8>) or JSON lines of {"sku", "good_type", "reviews"};
    /// needs --out.
    #[arg(
        long,
        value_name = "FILE",
        requires = "out",
        conflicts_with = "good_type"
    )]
    input: Option<PathBuf>,
    /// Where --input's tags go: one JSON line per product, or, for a path ending in
    /// .parquet, a directory of Parquet part files (one per batch; a Parquet dataset). A
    /// rerun skips the products already there (and redoes a last line, or a part file, cut
    /// by a kill).
    #[arg(long, value_name = "FILE", requires = "input")]
    out: Option<PathBuf>,
    /// Products per encoder batch with --input.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// With --input: tag only shard I of N (0-based), split by a stable hash of the SKU,
    /// so N machines' outputs concatenate (or, Parquet, read together) to one row per
    /// product.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// With --input: what a bad row does: `fail` stops the run, `skip` lists it in
    /// <out>.errors.jsonl and goes on.
    #[arg(long, value_name = "fail|skip", default_value = "fail", value_parser = parse_on_error)]
    on_error: OnError,
    /// The product's Lamoda good type (Shoes, Clothes, Bags, Beauty_Accs, Accs,
    /// Home_Accs; others fall back to accs). Needed with --text and --reviews.
    #[arg(long, required_unless_present = "input")]
    good_type: Option<String>,
    /// The model bundle [default: $LAMODA_MODEL, else the adapters/ of the checkout this
    /// runs in].
    #[arg(long, value_name = "DIR", env = "LAMODA_MODEL")]
    model: Option<PathBuf>,
    /// The base model's HF directory [default: $LAMODA_BASE, else the bundle's recorded
    /// default].
    #[arg(long, value_name = "DIR", env = "LAMODA_BASE")]
    base: Option<PathBuf>,
    /// One threshold for every tag (0..=1), instead of the adapters' saved per-tag
    /// thresholds (or 0.5 where none were saved).
    #[arg(long, value_parser = probability)]
    threshold: Option<f32>,
    /// How the encoder multiplies: fp32, or int8 (faster; its figures are in
    /// docs/experiments.md §19) [default: each adapter's runtime.json].
    #[arg(long, value_name = "fp32|int8")]
    precision: Option<Precision>,
    /// Keep a tag only when at least N of the reviews support it on their own (0: off;
    /// then a product may get no tag).
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_mentions: usize,
    /// Print one JSON object: good_type, category, fallback, tags, probabilities (with
    /// --input every line is JSON anyway).
    #[arg(long, conflicts_with = "input")]
    json: bool,
    /// Re-rank the answer with an LLM: the base URL of an OpenAI-compatible chat API
    /// (plain http, e.g. http://127.0.0.1:8000/v1). The product's reviews are sent there.
    /// Off by default; not with --input.
    #[arg(
        long,
        value_name = "URL",
        requires = "rerank_model",
        conflicts_with = "input"
    )]
    rerank_url: Option<String>,
    /// The chat model that re-ranks (needed with --rerank-url).
    #[arg(long, value_name = "NAME", requires = "rerank_url")]
    rerank_model: Option<String>,
    /// The API key of the re-ranking server, sent as a bearer token; prefer the variable
    /// to the flag (a flag shows in the process list). Unused without --rerank-url.
    #[arg(
        long,
        value_name = "KEY",
        env = "LAMODA_RERANK_KEY",
        hide_env_values = true
    )]
    rerank_key: Option<String>,
    /// Candidates sent to the re-ranking model: our N most probable tags (1..=100).
    #[arg(long, value_name = "N", default_value_t = 20, requires = "rerank_url",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    rerank_top_k: u32,
    /// The most the re-ranking may take, retries included; then our own tags are printed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, requires = "rerank_url",
          value_parser = positive_seconds)]
    rerank_timeout_s: f64,
}

fn non_blank(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the review text is empty".into());
    }
    Ok(text.to_owned())
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
}

fn parse_on_error(text: &str) -> Result<OnError, String> {
    text.parse()
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

fn positive_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(value > 0.0 && value <= 86_400.0) {
        return Err(format!("{value} is not within (0, 86400] seconds"));
    }
    Ok(value)
}

/// The `predict-tags` binary: parses the command line, runs it, prints one error line on
/// failure (exit code 2 for usage errors, 1 for the rest).
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {}", one_line(&info.to_string()));
    }));
    let cli = match PredictArgs::try_parse() {
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
            eprintln!("error: {}", error_line(&err));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Clap's message up to its usage section, as one line.
pub fn clap_error_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    message.join(" ")
}

/// Runs `predict-tags` (and `lamoda-tags predict`/`tag`) with parsed flags: one product
/// printed, or a table tagged into `--out`.
pub fn run(cli: PredictArgs) -> anyhow::Result<()> {
    // Checked first: a bad --rerank-* setting fails before the model loads.
    let reranker = reranker(&cli)?;
    let model_dir = match &cli.model {
        Some(dir) => dir.clone(),
        None => find_checkout_bundle()?,
    };
    let mut tagger = match Tagger::open(&model_dir, cli.base.as_deref()) {
        Ok(tagger) => tagger,
        Err(err @ InferenceError::NoModelDir { .. }) => {
            bail!("{err} (give the bundle with --model DIR or LAMODA_MODEL)")
        }
        Err(err) => return Err(err.into()),
    };
    tagger.set_threshold(cli.threshold)?;
    if let Some(precision) = cli.precision {
        tagger.set_precision(precision);
    }
    if let (Some(input), Some(out)) = (&cli.input, &cli.out) {
        return tag_file(&tagger, input, out, &cli);
    }
    let reviews = match (&cli.text, &cli.reviews) {
        (Some(text), _) => vec![text.clone()],
        (None, Some(file)) => read_reviews(file)?,
        (None, None) => bail!("give --text TEXT, --reviews FILE or --input FILE"),
    };
    let good_type = cli
        .good_type
        .clone()
        .context("--good-type is needed with --text and --reviews")?;
    let mut request = Request::new(good_type, reviews);
    request.options = decode_options(&cli);
    let mut prediction = tagger
        .predict(std::slice::from_ref(&request))?
        .pop()
        .context("no prediction came back")?;
    let Some(reranker) = reranker else {
        return print(&prediction, None, cli.json);
    };
    let pool = tagger
        .pool(prediction.category)
        .with_context(|| format!("the bundle has no pool for {}", prediction.category))?;
    let outcome = reranker.rerank_blocking(RerankInput::from_prediction(
        pool,
        &request.reviews,
        &prediction,
    ));
    if let Some(error) = &outcome.rerank_error {
        eprintln!(
            "rerank: not re-ranked, our own tags follow: {}",
            one_line(error)
        );
    }
    apply_rerank(&mut prediction, &outcome);
    print(&prediction, Some(&outcome.rerank_error), cli.json)
}

/// The re-ranker the `--rerank-*` flags ask for (`None` without `--rerank-url`): the whole
/// re-ranking is held to `--rerank-timeout-s`, each request too, with up to 2 retries.
fn reranker(cli: &PredictArgs) -> anyhow::Result<Option<Reranker>> {
    let (Some(url), Some(model)) = (&cli.rerank_url, &cli.rerank_model) else {
        return Ok(None);
    };
    let config = RerankConfig::from_flags(
        url,
        model,
        cli.rerank_key.clone(),
        cli.rerank_top_k as usize,
        Duration::from_secs_f64(cli.rerank_timeout_s),
    );
    Ok(Some(Reranker::new(config)?))
}

/// The per-product decoding the flags ask for (the threshold is set on the tagger).
fn decode_options(cli: &PredictArgs) -> DecodeOptions {
    DecodeOptions {
        min_mentions: cli.min_mentions,
        ..DecodeOptions::default()
    }
}

/// The `adapters/` bundle of the project checkout this runs in: the first
/// `adapters/bundle.json` above the current directory, else above the executable.
fn find_checkout_bundle() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let starts: Vec<&Path> = cwd.iter().chain(exe.iter()).map(PathBuf::as_path).collect();
    if let Some(dir) = lamoda_inference::find_checkout_bundle(&starts) {
        return Ok(dir);
    }
    bail!(
        "no model bundle: give --model DIR or set LAMODA_MODEL (a project checkout has one in \
         adapters/; none is above {})",
        starts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// `--input FILE --out FILE`: tags the table, with a progress bar on a terminal and a
/// progress line every 10 s otherwise, then a summary line on stderr.
fn tag_file(tagger: &Tagger, input: &Path, out: &Path, cli: &PredictArgs) -> anyhow::Result<()> {
    let options = BatchOptions {
        batch_size: cli.batch_size as usize,
        shard: cli.shard,
        on_error: cli.on_error,
        decode: decode_options(cli),
    };
    let display = progress::Display::new();
    display.start("tagging rows", 0);
    let started = Instant::now();
    let summary = tag_table(tagger, input, out, &options, |p: BatchProgress| {
        let rate = p.tagged as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let message = format!("{rate:.1} products/s");
        display.set(p.rows_done as u64, p.rows_total as u64, &message);
        display.log_line(p.rows_done == p.rows_total, || {
            format!(
                "tagged {} products, {}/{} rows read ({rate:.1} products/s)",
                p.tagged, p.rows_done, p.rows_total
            )
        });
    });
    display.finish();
    let summary = summary?;
    let mut line = format!(
        "tagged {} products in {:.1} s ({:.1} products/s) into {}",
        summary.tagged,
        summary.seconds,
        summary.tagged as f64 / summary.seconds.max(1e-9),
        out.display()
    );
    if summary.already_done > 0 {
        line += &format!("; {} already there", summary.already_done);
    }
    if summary.repaired_tail {
        line += "; a last line cut short was redone";
    }
    if summary.removed_temp_parts > 0 {
        line += &format!(
            "; {} part file{} cut short removed and redone",
            summary.removed_temp_parts,
            if summary.removed_temp_parts == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    if summary.bad_rows > 0 {
        line += &format!(
            "; {} bad rows listed in {}",
            summary.bad_rows,
            errors_path(out).display()
        );
    }
    if summary.other_shards > 0 {
        line += &format!("; {} rows of other shards", summary.other_shards);
    }
    if summary.duplicates > 0 {
        line += &format!("; {} repeated SKUs skipped", summary.duplicates);
    }
    eprintln!("{line}");
    Ok(())
}

/// `--reviews FILE`: a JSON list of strings, or one review per line (blank ones skipped).
fn read_reviews(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read reviews file {}", path.display()))?;
    let mut reviews = lamoda_data::parse_reviews(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a JSON list of strings: {e}", path.display()))?;
    // Blank reviews are never read; dropping them here numbers the evidence alike for a
    // JSON list and for lines.
    reviews.retain(|r| !r.trim().is_empty());
    if reviews.is_empty() {
        bail!(
            "{}: no reviews (expected a JSON list of strings or one review per line)",
            path.display()
        );
    }
    Ok(reviews)
}

/// Prints the answer; `rerank` is `Some(error)` when re-ranking was asked for (`--json`
/// then adds `reranked` and `rerank_error`).
fn print(
    prediction: &Prediction,
    rerank: Option<&Option<String>>,
    json: bool,
) -> anyhow::Result<()> {
    /// The answer with the re-ranking's fields after the prediction's own.
    #[derive(Serialize)]
    struct Reranked<'a> {
        #[serde(flatten)]
        prediction: &'a Prediction,
        reranked: bool,
        rerank_error: &'a Option<String>,
    }
    let text = match (json, rerank) {
        (true, None) => serde_json::to_string_pretty(prediction)?,
        (true, Some(error)) => serde_json::to_string_pretty(&Reranked {
            prediction,
            reranked: error.is_none(),
            rerank_error: error,
        })?,
        (false, _) => {
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
                    .map(|t| format!("{}\t{:.2}\t{}", t.tag, t.probability, t.mentions)),
            );
            if prediction.tags.is_empty() {
                if matches!(rerank, Some(None)) {
                    eprintln!("no tag: the re-ranking model confirmed none of our candidates");
                } else {
                    eprintln!("no tag: no review clearly states a property of the pool");
                }
            }
            lines.join("\n")
        }
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        // `| head`: a closed pipe ends the output quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub use lamoda_inference::one_line;

/// `err` and its causes on one line, each cause once (see
/// [`lamoda_inference::error_line`]). What the binaries print for a failure.
pub fn error_line(err: &anyhow::Error) -> String {
    lamoda_inference::error_line(err.as_ref())
}
