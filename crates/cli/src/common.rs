//! Arguments and helpers shared by the `lamoda-tags` commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{DATA_ENV, DataDir, Project};
use lamoda_inference::lamoda_model::lora::ADAPTER_CONFIG_FILE;

/// Where the training data lives.
#[derive(Args, Debug, Clone)]
pub struct DataRootArgs {
    /// The training data directory (layout of the reference data:
    /// `labeled/<category>.csv`, …).
    #[arg(long = "data", visible_alias = "data-root", env = DATA_ENV, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
}

impl DataRootArgs {
    /// The training data directory, checked to exist.
    pub fn resolve(&self) -> anyhow::Result<DataDir> {
        let Some(root) = &self.data_root else {
            bail!(
                "no training data: set {DATA_ENV} to the data directory (on the team's machines: \
                 ../shared/lamoda beside the project root) or pass --data DIR"
            );
        };
        if !root.is_dir() {
            bail!(
                "training data directory {} does not exist (from {DATA_ENV} or --data)",
                root.display()
            );
        }
        Ok(DataDir::new(root.clone()))
    }
}

/// Where the project comes from: `--project`, else `LAMODA_PROJECT`, else the nearest
/// directory above the current one with `configs/routing.toml` ([`Project::discover`]).
/// Commands that need no project (predict, fetch-base --out, …) never look.
#[derive(Debug, Clone)]
pub struct ProjectLookup {
    /// `--project DIR`.
    pub flag: Option<PathBuf>,
    /// `LAMODA_PROJECT`.
    pub env: Option<PathBuf>,
    /// The current directory.
    pub cwd: PathBuf,
}

impl ProjectLookup {
    /// The project, or an error saying how to name one.
    pub fn project(&self) -> anyhow::Result<Project> {
        Ok(Project::discover(
            self.flag.as_deref(),
            self.env.as_deref(),
            &self.cwd,
        )?)
    }
}

/// `target/crossfit/`: where `lamoda-tags train` puts the cross-fitted adapters and
/// `lamoda-tags calibrate` reads them by default.
pub fn default_crossfit_dir(project: &Project) -> PathBuf {
    project.root().join("target").join("crossfit")
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
/// pools (`lamoda-tags train` and `lamoda-tags bundle`): every adapter must name the same
/// base; the bundle's default base is the project's `models/e5-small/` (recorded relative
/// to the bundle when it lies inside the project).
pub fn write_project_bundle(
    model_dir: &Path,
    project: &Project,
) -> anyhow::Result<lamoda_inference::Bundle> {
    use lamoda_inference::lamoda_model::TagModel;
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
        provide: "lamoda-tags fetch-base e5-small".into(),
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
