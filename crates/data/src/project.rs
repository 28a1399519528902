//! A Lamoda Tags project: where the routing table, the etalon pools, the splits, the
//! training configs and the label prompt live, loaded and validated in one place for every
//! `lamoda-tags` workflow. A project is any directory with `configs/routing.toml`, found at
//! run time ([`Project::discover`]: `--project`, else `LAMODA_PROJECT`, else the nearest
//! directory above the current one); [`init_project`] writes one from the defaults built
//! into the binary. The data (`labeled/`, `careful/`, …) is a [`DataDir`] of its own.
//! `predict-tags` needs none of it: it reads a model bundle.

use std::path::{Path, PathBuf};

use crate::{
    CarefulSet, Category, DataError, EtalonPool, LabeledSet, Routing, SplitConfig,
    UnknownTagPolicy, load_careful, load_labeled,
};

/// The environment variable that names the project directory.
pub const PROJECT_ENV: &str = "LAMODA_PROJECT";

/// The file that marks a project directory, relative to it.
pub const PROJECT_MARKER: &str = "configs/routing.toml";

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
    /// A directory named as the project has no `configs/routing.toml`.
    #[error(
        "{path} (from {from}) is not a Lamoda Tags project: it has no {PROJECT_MARKER} \
         (lamoda-tags init DIR writes one)"
    )]
    NotAProject {
        /// The directory.
        path: PathBuf,
        /// Where it was named: `--project` or `LAMODA_PROJECT`.
        from: &'static str,
    },
    /// No project was named and none lies above the current directory.
    #[error(
        "no project: pass --project DIR, set {PROJECT_ENV}, or run inside a project (no \
         {PROJECT_MARKER} above {cwd}; lamoda-tags init DIR writes one)"
    )]
    NoProject {
        /// The directory the search started from.
        cwd: PathBuf,
    },
    /// `init` would overwrite a file.
    #[error("{path} exists: lamoda-tags init writes a new project and overwrites nothing")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing a project file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
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

    /// The project named by `flag` (`--project`), else by `env` (`LAMODA_PROJECT`), else the
    /// nearest directory at or above `cwd` with `configs/routing.toml`. A named directory
    /// without one is an error naming it and where it came from.
    pub fn discover(
        flag: Option<&Path>,
        env: Option<&Path>,
        cwd: &Path,
    ) -> Result<Project, ProjectError> {
        let named = match (flag, env) {
            (Some(dir), _) => Some((dir, "--project")),
            (None, Some(dir)) => Some((dir, PROJECT_ENV)),
            (None, None) => None,
        };
        if let Some((dir, from)) = named {
            if !dir.join(PROJECT_MARKER).is_file() {
                return Err(ProjectError::NotAProject {
                    path: dir.to_path_buf(),
                    from,
                });
            }
            return Ok(Project::at(dir));
        }
        cwd.ancestors()
            .find(|dir| dir.join(PROJECT_MARKER).is_file())
            .map(Project::at)
            .ok_or_else(|| ProjectError::NoProject {
                cwd: cwd.to_path_buf(),
            })
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

    /// `models/e5-small/`: where `lamoda-tags fetch-base e5-small` puts the base model.
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

impl Project {
    /// `configs/label_prompt.txt`: the prompt `lamoda-tags label` sends.
    pub fn label_prompt_path(&self) -> PathBuf {
        self.root.join("configs").join("label_prompt.txt")
    }

    /// `configs/<category>.toml`: a category's training configuration.
    pub fn train_config_path(&self, category: Category) -> PathBuf {
        self.root
            .join("configs")
            .join(format!("{}.toml", category.name()))
    }
}

/// The default project files built into the binary, as `(path in the project, contents)`:
/// the configs, the label prompt and the etalon pools of this checkout.
pub const DEFAULT_PROJECT_FILES: [(&str, &str); 16] = [
    (
        "configs/routing.toml",
        include_str!("../../../configs/routing.toml"),
    ),
    (
        "configs/split.toml",
        include_str!("../../../configs/split.toml"),
    ),
    (
        "configs/careful.toml",
        include_str!("../../../configs/careful.toml"),
    ),
    (
        "configs/calibration.toml",
        include_str!("../../../configs/calibration.toml"),
    ),
    (
        "configs/label_prompt.txt",
        include_str!("../../../configs/label_prompt.txt"),
    ),
    (
        "configs/accs.toml",
        include_str!("../../../configs/accs.toml"),
    ),
    (
        "configs/bags.toml",
        include_str!("../../../configs/bags.toml"),
    ),
    (
        "configs/beauty.toml",
        include_str!("../../../configs/beauty.toml"),
    ),
    (
        "configs/clothes.toml",
        include_str!("../../../configs/clothes.toml"),
    ),
    (
        "configs/shoes.toml",
        include_str!("../../../configs/shoes.toml"),
    ),
    (
        "etalon_tags/accs.toml",
        include_str!("../../../etalon_tags/accs.toml"),
    ),
    (
        "etalon_tags/bags.toml",
        include_str!("../../../etalon_tags/bags.toml"),
    ),
    (
        "etalon_tags/beauty.toml",
        include_str!("../../../etalon_tags/beauty.toml"),
    ),
    (
        "etalon_tags/clothes.toml",
        include_str!("../../../etalon_tags/clothes.toml"),
    ),
    (
        "etalon_tags/shoes.toml",
        include_str!("../../../etalon_tags/shoes.toml"),
    ),
    (".gitignore", "/models/\n/target/\n"),
];

/// Writes a new project at `dir` (created if needed) from [`DEFAULT_PROJECT_FILES`] and
/// returns it with the files written. Nothing is overwritten: when any of the files
/// exists, nothing is written and the error names it.
pub fn init_project(dir: &Path) -> Result<(Project, Vec<PathBuf>), ProjectError> {
    if let Some((path, _)) = DEFAULT_PROJECT_FILES
        .iter()
        .find(|(path, _)| dir.join(path).exists())
    {
        return Err(ProjectError::Exists {
            path: dir.join(path),
        });
    }
    let mut written = Vec::with_capacity(DEFAULT_PROJECT_FILES.len());
    for (path, contents) in DEFAULT_PROJECT_FILES {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ProjectError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| ProjectError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok((Project::at(dir), written))
}

/// A split configuration file, read and validated.
fn read_split(path: PathBuf) -> Result<SplitConfig, ProjectError> {
    let config: SplitConfig = crate::read_toml(&path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_named_or_found_above() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("p");
        let (project, written) = init_project(&root).expect("init");
        assert_eq!(written.len(), DEFAULT_PROJECT_FILES.len());
        let inside = root.join("etalon_tags");
        // Found from below, without a name.
        let found = Project::discover(None, None, &inside).expect("found");
        assert_eq!(found.root(), project.root());
        // The flag wins over the variable.
        let other = dir.path().join("q");
        init_project(&other).expect("init q");
        let named = Project::discover(Some(&other), Some(&root), &inside).expect("flag");
        assert_eq!(named.root(), other.as_path());
        let from_env = Project::discover(None, Some(&other), &inside).expect("env");
        assert_eq!(from_env.root(), other.as_path());
        // A named directory that is no project says so and where it came from.
        let err = Project::discover(None, Some(dir.path()), &inside)
            .expect_err("not a project")
            .to_string();
        assert!(
            err.contains(PROJECT_ENV) && err.contains("lamoda-tags init"),
            "{err}"
        );
        let err = Project::discover(None, None, dir.path())
            .expect_err("none above")
            .to_string();
        assert!(err.contains("--project DIR"), "{err}");
    }

    #[test]
    fn an_initialised_project_loads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (project, _) = init_project(dir.path()).expect("init");
        let routing = project.routing().expect("routing loads");
        for category in Category::ALL {
            project.pool(category).expect("pool loads");
        }
        assert!(routing.good_types.len() >= 6);
        project.split().expect("split loads");
        project.careful_split().expect("careful split loads");
        // A second init refuses and leaves the files as they are.
        std::fs::write(project.routing_path(), "edited").expect("edit");
        let err = init_project(dir.path()).expect_err("exists").to_string();
        assert!(err.contains("routing.toml exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(project.routing_path()).expect("read"),
            "edited"
        );
    }
}
