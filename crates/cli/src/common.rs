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
    routing: Option<&Path>,
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
    let routing = routing.map_or_else(|| project.routing_path(), Path::to_path_buf);
    let bundle = lamoda_inference::write_bundle(model_dir, &base, &routing, |c| {
        lamoda_data::EtalonPool::path_in(&project.etalon_dir(), c)
    })?;
    Ok(bundle)
}

/// A tagger of the model at `dir`: a bundle, or a directory of adapters that is not one
/// (a single `train --category` run), read through a temporary bundle of the categories it
/// holds, each routed from its own good types (the first one held is the fallback). The
/// temporary directory lives as long as the returned guard.
pub fn open_model(
    dir: &Path,
    base: Option<&Path>,
    project: &Project,
) -> anyhow::Result<(lamoda_inference::Tagger, Option<tempfile::TempDir>)> {
    use lamoda_inference::format::BUNDLE_FILE;
    if dir.join(BUNDLE_FILE).is_file() || !dir.is_dir() {
        return Ok((lamoda_inference::Tagger::open(dir, base)?, None));
    }
    let held: Vec<lamoda_data::Category> = lamoda_data::Category::ALL
        .into_iter()
        .filter(|c| dir.join(c.name()).join(ADAPTER_CONFIG_FILE).is_file())
        .collect();
    let Some(&first) = held.first() else {
        return Ok((lamoda_inference::Tagger::open(dir, base)?, None));
    };
    let tmp = tempfile::tempdir().context("creating a temporary bundle")?;
    for &category in &held {
        copy_dir(
            &dir.join(category.name()),
            &tmp.path().join(category.name()),
        )?;
    }
    let mut routing = project.routing()?;
    routing.good_types.retain(|_, c| held.contains(c));
    if !held.contains(&routing.fallback) {
        routing.fallback = first;
    }
    let routing_path = tmp.path().join("routing.in.toml");
    let text = toml::to_string(&routing).context("writing the temporary routing table")?;
    std::fs::write(&routing_path, text)
        .with_context(|| format!("writing {}", routing_path.display()))?;
    write_project_bundle(tmp.path(), project, Some(&routing_path))?;
    let tagger = lamoda_inference::Tagger::open(tmp.path(), base.or(Some(&project.base_dir())))?;
    Ok((tagger, Some(tmp)))
}

/// Copies the files of `from` into a new directory `to` (one level: an adapter's files).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if let Some(name) = path.file_name().filter(|_| path.is_file()) {
            std::fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
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
