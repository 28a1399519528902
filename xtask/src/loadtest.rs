//! `cargo xtask loadtest`: load a running server with real products at several
//! concurrencies and report requests/s, p50/p99 latency and errors at each.
//!
//! Each request is `POST /v1/tags` with one product of the table (its good type and
//! reviews). The products are taken in a seeded shuffled order and never repeat across
//! the whole run while the table lasts, so the server's score cache does not flatter the
//! figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::common::DataRootArgs;

/// Arguments of `cargo xtask loadtest`.
#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The product table (default: reviews_sampled.csv of the data directory).
    #[arg(long, value_name = "CSV")]
    products: Option<PathBuf>,
    /// The API key, when the server has one.
    #[arg(long, env = "LAMODA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataRootArgs,
}

#[derive(Debug, Serialize)]
struct Run {
    concurrency: usize,
    seconds: f64,
    requests: usize,
    requests_per_s: f64,
    products_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ok: usize,
    rejected_429: usize,
    client_errors: usize,
    server_errors: usize,
    failed: usize,
}

/// Runs `cargo xtask loadtest`.
pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    if args.concurrency.contains(&0) || args.seconds == 0 {
        bail!("--concurrency values and --seconds must be at least 1");
    }
    let path = match &args.products {
        Some(p) => p.clone(),
        None => args.data.resolve()?.root().join("reviews_sampled.csv"),
    };
    let mut products = lamoda_data::load_products(&path)
        .with_context(|| format!("cannot read the product table {}", path.display()))?;
    products.retain(|p| p.reviews.iter().any(|r| !r.trim().is_empty()));
    if products.is_empty() {
        bail!("{}: no product with a review", path.display());
    }
    products.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(17));
    let bodies: Arc<Vec<String>> = Arc::new(
        products
            .iter()
            .map(|p| {
                serde_json::json!({"sku": p.sku, "good_type": p.good_type, "reviews": p.reviews})
                    .to_string()
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut runs = Vec::new();
    for &concurrency in &args.concurrency {
        let run = runtime.block_on(load(&args, concurrency, bodies.clone(), next.clone()))?;
        if !args.json {
            eprintln!(
                "{:>3} clients: {:>6.2} req/s  p50 {:>7.0} ms  p99 {:>7.0} ms  ok {}  429 {}  4xx {}  5xx {}  failed {}",
                run.concurrency,
                run.requests_per_s,
                run.p50_ms,
                run.p99_ms,
                run.ok,
                run.rejected_429,
                run.client_errors,
                run.server_errors,
                run.failed
            );
        }
        runs.push(run);
    }
    if next.load(Ordering::Relaxed) > bodies.len() {
        eprintln!(
            "note: {} requests for {} products: some products repeated (cached scores)",
            next.load(Ordering::Relaxed),
            bodies.len()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        println!("| clients | req/s | p50 ms | p99 ms | ok | 429 | other 4xx | 5xx | failed |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &runs {
            println!(
                "| {} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                r.concurrency,
                r.requests_per_s,
                r.p50_ms,
                r.p99_ms,
                r.ok,
                r.rejected_429,
                r.client_errors,
                r.server_errors,
                r.failed
            );
        }
    }
    if runs.iter().any(|r| r.server_errors > 0) {
        bail!("the server answered 5xx");
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    ok: usize,
    rejected: usize,
    client: usize,
    server: usize,
    failed: usize,
}

async fn load(
    args: &LoadtestArgs,
    concurrency: usize,
    bodies: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let url = format!("{}/v1/tags", args.url.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) =
            (client.clone(), url.clone(), bodies.clone(), next.clone());
        let key = args.api_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        tally.latencies.push(sent.elapsed());
                        match status.as_u16() {
                            200..=299 => tally.ok += 1,
                            429 => {
                                tally.rejected += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            400..=499 => tally.client += 1,
                            _ => tally.server += 1,
                        }
                    }
                    Err(_) => tally.failed += 1,
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.context("a client task failed")?;
        all.latencies.extend(t.latencies);
        all.ok += t.ok;
        all.rejected += t.rejected;
        all.client += t.client;
        all.server += t.server;
        all.failed += t.failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.latencies.sort_unstable();
    let quantile = |q: f64| {
        if all.latencies.is_empty() {
            return 0.0;
        }
        let i = ((all.latencies.len() as f64 - 1.0) * q).round() as usize;
        all.latencies[i].as_secs_f64() * 1000.0
    };
    let requests = all.latencies.len() + all.failed;
    Ok(Run {
        concurrency,
        seconds,
        requests,
        requests_per_s: requests as f64 / seconds,
        products_per_s: all.ok as f64 / seconds,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: quantile(1.0),
        ok: all.ok,
        rejected_429: all.rejected,
        client_errors: all.client,
        server_errors: all.server,
        failed: all.failed,
    })
}
