//! Helpers shared by the developer commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lamoda_data::Project;

pub use lamoda_cli::common::DataRootArgs;

/// The project this xtask was built from.
pub fn project() -> Project {
    // xtask/ sits directly under the project root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Project::at(root.parent().map(PathBuf::from).unwrap_or(root))
}

/// Creates the virtual environment `venv` with `$PYTHON` (default `python3`) `-m venv` and
/// pip-installs `packages` into it; `needed_for` names what wants it in the errors.
pub fn make_venv(venv: &Path, packages: &[&str], needed_for: &str) -> anyhow::Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .with_context(|| format!("cannot run {python} ({needed_for} needs Python 3)"))?;
    if !ok.success() {
        bail!("{python} -m venv {} failed", venv.display());
    }
    let ok = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(packages)
        .status()
        .context("cannot run pip")?;
    if !ok.success() {
        bail!(
            "pip install {} failed (is the package registry reachable?)",
            packages.join(" ")
        );
    }
    Ok(())
}

/// `cargo xtask` is a dev build, slower than release for the encoder's passes (bags'
/// training cache was 39.7 s against 9.4 s; docs/experiments.md §14): runs `cargo run
/// --release` with `cargo_args` and then this process's arguments after `skip` of them,
/// and exits with its status. `command` names it in the one line printed.
pub fn rerun_release(command: &str, cargo_args: &[&str], skip: usize) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("{command}: building and running the release build");
    let status = std::process::Command::new(cargo)
        .args(["run", "--release", "--quiet"])
        .args(cargo_args)
        .arg("--")
        .args(std::env::args_os().skip(skip))
        .status()
        .context("cannot run cargo")?;
    // The release run printed its own output or its one error line.
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("the release {command} was stopped ({status})"),
    }
}
