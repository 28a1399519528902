//! Arguments and helpers shared by the xtask commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use lamoda_inference::lamoda_model::lora::ADAPTER_CONFIG_FILE;
use lamoda_tags::{DATA_ENV, DataDir, Project};

/// Where the training data lives.
#[derive(Args, Debug, Clone)]
pub struct DataRootArgs {
    /// The training data directory (layout of the reference data:
    /// `labeled/<category>.csv`, …).
    #[arg(long = "data-root", env = DATA_ENV, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
}

impl DataRootArgs {
    /// The training data directory, checked to exist.
    pub fn resolve(&self) -> anyhow::Result<DataDir> {
        let Some(root) = &self.data_root else {
            bail!(
                "no training data: set {DATA_ENV} to the data directory (on the team's machines: \
                 ../shared/lamoda beside the project root) or pass --data-root DIR"
            );
        };
        if !root.is_dir() {
            bail!(
                "training data directory {} does not exist (from {DATA_ENV} or --data-root)",
                root.display()
            );
        }
        Ok(DataDir::new(root.clone()))
    }
}

/// The project this xtask was built from.
pub fn project() -> Project {
    // xtask/ sits directly under the project root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Project::at(root.parent().map(PathBuf::from).unwrap_or(root))
}

/// `target/crossfit/`: where `cargo xtask train` puts the cross-fitted adapters and
/// `cargo xtask calibrate` reads them by default.
pub fn default_crossfit_dir(project: &Project) -> PathBuf {
    project.root().join("target").join("crossfit")
}

/// An adapter directory's `metrics.json` as JSON, with its path (for messages and for
/// writing it back).
pub fn read_metrics(dir: &Path) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let path = dir.join(lamoda_inference::format::METRICS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((path, value))
}

/// Reads the reviews of `--reviews FILE`: one review per line, blank lines skipped.
pub fn read_reviews(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read reviews file {}", path.display()))?;
    let reviews: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if reviews.is_empty() {
        bail!(
            "{}: no reviews (one review per line expected)",
            path.display()
        );
    }
    Ok(reviews)
}

/// Prints `text` and a newline to stdout. A closed pipe (`| head`) ends the
/// output quietly instead of failing.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Makes `model_dir` a bundle of the adapters in it, with the project's routing table and
/// pools (`cargo xtask train` and `cargo xtask bundle`): every adapter must name the same
/// base; the bundle's default base is the project's `models/e5-small/` (recorded relative
/// to the bundle when it lies inside the project).
pub fn write_project_bundle(model_dir: &Path) -> anyhow::Result<lamoda_inference::Bundle> {
    use lamoda_inference::lamoda_model::TagModel;
    let project = project();
    let first = lamoda_data::Category::ALL
        .into_iter()
        .map(|c| model_dir.join(c.name()))
        .find(|d| d.join(ADAPTER_CONFIG_FILE).is_file())
        .with_context(|| format!("{}: no adapters to bundle", model_dir.display()))?;
    let config = TagModel::read_adapter_config(&first)?;
    let base_dir = project.base_dir();
    let default_dir = relative_to(&base_dir, model_dir);
    let base = lamoda_inference::BaseRef {
        name: config.base_id,
        sha256: config.base_sha256,
        default_dir,
        provide: "cargo xtask fetch-base e5-small".into(),
    };
    let bundle = lamoda_inference::write_bundle(model_dir, &base, &project.routing_path(), |c| {
        lamoda_data::EtalonPool::path_in(&project.etalon_dir(), c)
    })?;
    Ok(bundle)
}

/// `target` relative to the directory `from` when both lie under one ancestor (as
/// `../models/e5-small` from `adapters/`), else `target` absolute.
fn relative_to(target: &Path, from: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (target, from) = (abs(target), abs(from));
    let common = target
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common <= 1 {
        return target.display().to_string();
    }
    let ups = from.components().count() - common;
    let mut rel = PathBuf::new();
    for _ in 0..ups {
        rel.push("..");
    }
    for part in target.components().skip(common) {
        rel.push(part);
    }
    rel.display().to_string()
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
/// training cache was 39.7 s against 9.4 s; docs/experiments.md §14): run the
/// same command line again from a release build, and exit with its status. `command`
/// names it in the one line printed.
pub fn rerun_release(command: &str) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("{command}: building and running the release xtask");
    let status = std::process::Command::new(cargo)
        .current_dir(project().root())
        .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .status()
        .context("cannot run cargo")?;
    // The release run printed its own output or its one error line.
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("the release {command} was stopped ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_relative_inside_one_tree() {
        assert_eq!(
            relative_to(Path::new("/p/models/e5-small"), Path::new("/p/adapters")),
            "../models/e5-small"
        );
        assert_eq!(
            relative_to(
                Path::new("/p/models/e5-small"),
                Path::new("/p/target/reproduce")
            ),
            "../../models/e5-small"
        );
        assert_eq!(
            relative_to(Path::new("/p/models/e5-small"), Path::new("/q/out")),
            "/p/models/e5-small"
        );
    }
}
