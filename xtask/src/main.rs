//! Developer automation for Lamoda Tags, run as `cargo xtask <command>`: the checks CI
//! runs, the reproduction of the shipped figures, the benchmarks, the load test,
//! Schemathesis and the OpenAPI document. Every user workflow is `lamoda-tags`
//! (`lamoda_cli`); `cargo xtask <workflow> …` forwards to it, so `lamoda-tags train
//! --category bags` works in a checkout as `lamoda-tags train --category bags` does.
//!
//! Errors are printed as one line (`error: …`) with exit code 1.

mod check;
mod common;
mod loadtest;
mod openapi;
mod python;
mod reproduce;
mod schemathesis;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Lamoda Tags developer automation; any lamoda-tags workflow (train, eval, …) is \
             forwarded to lamoda-tags"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One build of the dependencies, formatting, clippy -D warnings and the whole test
    /// suite (what CI runs).
    Check,
    /// Evaluate the shipped adapters against their recorded dev figures and retrain one
    /// from scratch (what CI runs).
    Reproduce(reproduce::ReproduceArgs),
    /// Speed of the encoder, tagger and training beside PyTorch (release build).
    Bench(lamoda_bench::BenchArgs),
    /// Load-test a running server: requests/s, p50/p99 latency and errors per concurrency.
    Loadtest(loadtest::LoadtestArgs),
    /// Run Schemathesis against the live API and its OpenAPI document (what CI runs).
    Schemathesis(schemathesis::SchemathesisArgs),
    /// Write crates/server/openapi.json from the server's handlers (--check: compare).
    Openapi(openapi::OpenApiArgs),
    /// Build the Python wheel and run its tests (pytest, Ray Data) in a cached venv (what
    /// CI runs).
    Python(python::PythonArgs),
}

/// The workflows a dev build runs from a release build (the encoder's passes are slow in
/// dev).
const RELEASE_WORKFLOWS: [&str; 1] = ["train"];

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
    if lamoda_cli::workflow_names().iter().any(|w| w == first) || first == "--project" {
        // `cargo xtask <workflow> …` is `lamoda-tags <workflow> …`.
        if cfg!(debug_assertions) && RELEASE_WORKFLOWS.contains(&first) {
            let cargo_args = ["--package", "lamoda-tags", "--bin", "lamoda-tags"];
            return exit_code(common::rerun_release(first, &cargo_args, 1));
        }
        let forwarded = std::iter::once("lamoda-tags".into()).chain(args.into_iter().skip(1));
        return lamoda_cli::main_with(forwarded);
    }
    let cli = Cli::parse();
    exit_code(match cli.command {
        Command::Check => check::run(),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Bench(_) if cfg!(debug_assertions) => {
            common::rerun_release("bench", &["--package", "xtask"], 1)
        }
        Command::Bench(args) => lamoda_bench::run(args, &common::project(), &common::make_venv),
        Command::Loadtest(args) => loadtest::run(args),
        Command::Schemathesis(args) => schemathesis::run(args),
        Command::Openapi(args) => openapi::openapi(args),
        Command::Python(args) => python::run_tests(args),
    })
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", lamoda_predict::error_line(&err));
            ExitCode::FAILURE
        }
    }
}
