//! Arguments and helpers shared by the xtask commands.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
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
