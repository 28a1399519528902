//! Lamoda Tags' project layout: where the routing table, the etalon pools,
//! the split and the data live, loaded and validated in one place for every
//! developer command (`cargo xtask`) and the end-to-end tests in `tests/`. `predict-tags`
//! needs none of it: it reads a model bundle.

use std::path::{Path, PathBuf};

use lamoda_data::{
    CarefulSet, Category, DataError, EtalonPool, LabeledSet, Routing, SplitConfig,
    UnknownTagPolicy, load_careful, load_labeled,
};

/// The environment variable that names the data directory (same layout as
/// the reference data: `labeled/<category>.csv`, `reviews_sampled*.csv`, …).
pub const DATA_ENV: &str = "LAMODA_DATA";

/// Errors of the project layout.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A data or config file is wrong.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The split configuration is inconsistent.
    #[error("{path}: {reason}")]
    Split {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data directory has no `labeled/<category>.csv` at all.
    #[error("{path}: no labeled/<category>.csv files (expected one of {expected})")]
    NoLabeledData {
        /// The directory.
        path: PathBuf,
        /// The file names looked for.
        expected: String,
    },
}

/// The project checkout: configs, pools, shipped models.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// A project rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Project { root: root.into() }
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `adapters/`: the trained adapters shipped with the project, one directory per
    /// category.
    pub fn adapters_dir(&self) -> PathBuf {
        self.root.join("adapters")
    }

    /// `models/e5-small/`: where `cargo xtask fetch-base e5-small` puts the base model.
    pub fn base_dir(&self) -> PathBuf {
        self.root.join("models").join("e5-small")
    }

    /// `etalon_tags/`.
    pub fn etalon_dir(&self) -> PathBuf {
        self.root.join("etalon_tags")
    }

    /// `configs/routing.toml`.
    pub fn routing_path(&self) -> PathBuf {
        self.root.join("configs").join("routing.toml")
    }

    /// `configs/split.toml`.
    pub fn split_path(&self) -> PathBuf {
        self.root.join("configs").join("split.toml")
    }

    /// `configs/careful.toml`: the careful dev split.
    pub fn careful_split_path(&self) -> PathBuf {
        self.root.join("configs").join("careful.toml")
    }

    /// The careful dev split's configuration (fold `dev_fold` of the careful products),
    /// validated.
    pub fn careful_split(&self) -> Result<SplitConfig, ProjectError> {
        read_split(self.careful_split_path())
    }

    /// The routing table.
    pub fn routing(&self) -> Result<Routing, ProjectError> {
        Ok(Routing::load(&self.routing_path())?)
    }

    /// A category's etalon pool.
    pub fn pool(&self, category: Category) -> Result<EtalonPool, ProjectError> {
        Ok(EtalonPool::load(&self.etalon_dir(), category)?)
    }

    /// The train/dev split configuration, validated.
    pub fn split(&self) -> Result<SplitConfig, ProjectError> {
        read_split(self.split_path())
    }
}

/// A split configuration file, read and validated.
fn read_split(path: PathBuf) -> Result<SplitConfig, ProjectError> {
    let config: SplitConfig = lamoda_data::read_toml(&path)?;
    config
        .validate()
        .map_err(|reason| ProjectError::Split { path, reason })?;
    Ok(config)
}

/// A data directory laid out like the reference data.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `labeled/<category>.csv`.
    pub fn labeled_path(&self, category: Category) -> PathBuf {
        LabeledSet::path_in(&self.root, category)
    }

    /// The categories that have a `labeled/<category>.csv`; an error when none has.
    pub fn categories(&self) -> Result<Vec<Category>, ProjectError> {
        let present: Vec<Category> = Category::ALL
            .into_iter()
            .filter(|c| self.labeled_path(*c).is_file())
            .collect();
        if present.is_empty() {
            return Err(ProjectError::NoLabeledData {
                path: self.root.clone(),
                expected: Category::ALL.map(|c| format!("{c}.csv")).join(", "),
            });
        }
        Ok(present)
    }

    /// A category's labeled rows checked against `pool`.
    pub fn labeled(
        &self,
        category: Category,
        pool: &EtalonPool,
        policy: UnknownTagPolicy,
    ) -> Result<LabeledSet, ProjectError> {
        Ok(load_labeled(
            &self.labeled_path(category),
            category,
            Some(pool),
            policy,
        )?)
    }

    /// `careful/<category>.jsonl`.
    pub fn careful_path(&self, category: Category) -> PathBuf {
        CarefulSet::path_in(&self.root, category)
    }

    /// A category's careful labels, checked against its labeled file and `pool`; `None`
    /// when the directory has no `careful/<category>.jsonl`.
    pub fn careful(
        &self,
        category: Category,
        pool: &EtalonPool,
    ) -> Result<Option<CarefulSet>, ProjectError> {
        let path = self.careful_path(category);
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some(load_careful(
            &path,
            &self.labeled_path(category),
            category,
            pool,
        )?))
    }

    /// The rows adapters are fitted and chosen on: every labeled row of the category
    /// except the carefully labelled ones (which the careful calibration fits on and the
    /// careful dev split scores, so the adapters must never have seen them).
    pub fn fitting_rows(
        &self,
        category: Category,
        pool: &EtalonPool,
    ) -> Result<LabeledSet, ProjectError> {
        let mut set = self.labeled(category, pool, UnknownTagPolicy::Error)?;
        if let Some(careful) = self.careful(category, pool)? {
            let held = careful.rows();
            set.rows.retain(|r| !held.contains(&r.row));
        }
        Ok(set)
    }
}

/// `text` with every run of white space (newlines too) folded into one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `err` and its causes on one line ([`one_line`]), each cause once: a cause whose text an
/// outer message already quotes is not repeated. What the binaries print for a failure.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    one_line(&line)
}
