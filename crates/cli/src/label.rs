//! `lamoda-tags label` and `lamoda-tags pool`: the label-curation pipeline of
//! `lamoda-curation` (LLM labeling of review stacks; the raw-tag pool).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use lamoda_curation::{
    ChatClient, ChatConfig, LabelOptions, LabelProgress, Prompt, label_products, pool_tags,
    read_raw_tags, write_pool_csv,
};
use lamoda_inference::Progress as _;
use lamoda_predict::progress::Display;

use lamoda_data::Project;

/// `lamoda-tags label`.
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// The product table, in the `reviews_sampled.csv` layout (`product_sku`, `comment_id`,
    /// `comment_text` as a JSON list, `name`, `good_type`, `good_subtype`).
    #[arg(long, value_name = "PRODUCTS")]
    input: PathBuf,
    /// The label store (JSONL, one record per product): created, or resumed when it exists.
    #[arg(long, value_name = "RAW.jsonl")]
    out: PathBuf,
    /// The OpenAI-compatible API's base URL (`/chat/completions` is appended), e.g.
    /// http://127.0.0.1:8000/v1.
    #[arg(long, value_name = "URL")]
    base_url: String,
    /// The model name sent in each request.
    #[arg(long, value_name = "NAME")]
    model: String,
    /// The environment variable holding the API key (sent as a Bearer token when set).
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Products labeled at once (one request in flight each).
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    /// Redo the products the store records as failed.
    #[arg(long)]
    retry_failed: bool,
    /// The prompt template (default: the project's configs/label_prompt.txt).
    #[arg(long, value_name = "FILE")]
    prompt: Option<PathBuf>,
    /// The estimated tokens of one chunk of reviews (3 characters a token, 4 more a review).
    #[arg(long, value_name = "N", default_value_t = 3000)]
    max_chunk_tokens: usize,
    /// The limit on one request, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120.0)]
    timeout_s: f64,
    /// Retries of a chunk after its first attempt (429, 5xx, timeouts, refused or dropped
    /// connections, malformed answers).
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_retries: u32,
    /// The first backoff in milliseconds (doubled per retry, up to 30 s, with jitter).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    backoff_ms: u64,
    /// The sampling temperature sent in each request.
    #[arg(long, value_name = "T", default_value_t = 0.2)]
    temperature: f32,
    /// Label only the first N products of the table.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// `lamoda-tags pool`.
#[derive(Args, Debug)]
pub struct PoolArgs {
    /// Raw tags: a label store (`.jsonl`, from `lamoda-tags label`) or a product table with a
    /// `tags` column (`; `-separated), such as `reviews_sampled_with_tags.csv`.
    #[arg(long, value_name = "RAW.jsonl|TABLE.csv")]
    input: PathBuf,
    /// The pool: `good_type,tag,frequency,variants`.
    #[arg(long, value_name = "POOL.csv")]
    out: PathBuf,
}

/// Labels the product table into the store, with a progress bar on a terminal (a progress
/// line every 10 s otherwise) and a summary line.
pub fn label(args: LabelArgs, project: &Project) -> anyhow::Result<()> {
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        bail!(
            "--timeout-s must be a positive number of seconds, not {}",
            args.timeout_s
        );
    }
    let timeout = Duration::try_from_secs_f64(args.timeout_s)
        .with_context(|| format!("--timeout-s {} is out of range", args.timeout_s))?;
    let prompt_path = args
        .prompt
        .clone()
        .unwrap_or_else(|| project.label_prompt_path());
    let prompt = Prompt::load(&prompt_path)?;
    let mut products = lamoda_data::load_products(&args.input)?;
    if let Some(limit) = args.limit {
        products.truncate(limit);
    }
    let api_key = std::env::var(&args.api_key_env)
        .ok()
        .filter(|k| !k.trim().is_empty());
    let client = ChatClient::new(ChatConfig {
        base_url: args.base_url.clone(),
        model: args.model.clone(),
        api_key,
        temperature: args.temperature,
        timeout,
        max_retries: args.max_retries,
        backoff_base: Duration::from_millis(args.backoff_ms),
        backoff_max: Duration::from_secs(30),
    })?;
    let options = LabelOptions {
        concurrency: args.concurrency,
        retry_failed: args.retry_failed,
        max_chunk_tokens: args.max_chunk_tokens,
    };
    let bar = Display::new();
    bar.start("labeling products", 0);
    let on_progress = |p: &LabelProgress| {
        let todo = p.total - p.already_done;
        let message = format!("ok {}, failed {}", p.ok, p.failed);
        bar.set((p.ok + p.failed) as u64, todo as u64, &message);
        bar.log_line(p.remaining() == 0, || {
            format!(
                "labeled {}/{todo} products: ok {}, failed {} ({} already done)",
                p.ok + p.failed,
                p.ok,
                p.failed,
                p.already_done
            )
        });
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(label_products(
        &products,
        &args.input,
        &prompt,
        &client,
        &args.out,
        &options,
        on_progress,
    ));
    bar.finish();
    let summary = summary?;
    let p = summary.progress;
    let mut line = format!(
        "labeled {} products in {:.1} s ({} requests): ok {}, failed {}, into {}",
        p.ok + p.failed,
        summary.seconds,
        summary.requests,
        p.ok,
        p.failed,
        args.out.display()
    );
    if p.already_done > 0 {
        line += &format!("; {} already there", p.already_done);
        if summary.kept_failed > 0 {
            line += &format!(
                " ({} of them failed: --retry-failed redoes them)",
                summary.kept_failed
            );
        }
    }
    if summary.redone > 0 {
        line += &format!("; {} records redone", summary.redone);
    }
    if summary.cut_tail {
        line += "; a cut last line (an interrupted write) was dropped and its product redone";
    }
    eprintln!("{line}");
    if p.failed > 0 {
        eprintln!(
            "{} products failed: their records' `reason` says why; rerun with --retry-failed",
            p.failed
        );
    }
    Ok(())
}

/// Pools the raw tags per good type into a CSV and prints a line per good type.
pub fn pool(args: PoolArgs) -> anyhow::Result<()> {
    let input = read_raw_tags(&args.input)?;
    if input.products.is_empty() {
        bail!("{}: no products with raw tags", args.input.display());
    }
    let pool = pool_tags(&input.products);
    write_pool_csv(&args.out, &pool)?;
    for (good_type, products) in &pool.products {
        eprintln!(
            "{good_type}: {products} products, {} distinct tags",
            pool.of(good_type).count()
        );
    }
    let mut line = format!(
        "pooled {} tags of {} products into {}",
        pool.entries.len(),
        input.products.len(),
        args.out.display()
    );
    if input.failed > 0 {
        line += &format!("; {} failed records left out", input.failed);
    }
    eprintln!("{line}");
    Ok(())
}
