//! [`Bundle`]: a model directory checked against its manifest (see [`crate::format`]),
//! and [`write_bundle`], which the trainer and `lamoda-tags bundle` use to write one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamoda_data::{Category, EtalonPool, Routing};
use lamoda_model::BaseInfo;
use lamoda_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use serde::{Deserialize, Serialize};

use crate::InferenceError;
use crate::error::io_err;
use crate::format::{
    BUNDLE_FILE, BUNDLE_FORMAT, POOL_FILE, ROUTING_FILE, RUNTIME_FILE, read_json, write_json,
};

/// The base a bundle was trained on, and where to find or how to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    /// Its name (e.g. `e5-small`).
    pub name: String,
    /// Lower-case hex sha256 of its `model.safetensors`.
    pub sha256: String,
    /// Where it is by default, relative to the bundle directory.
    pub default_dir: String,
    /// The command that provides it.
    pub provide: String,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `lamoda-bundle/<version>`.
    pub format: String,
    /// The base encoder.
    pub base: BaseRef,
    /// The categories with an adapter, each a `<category>/` directory.
    pub categories: Vec<Category>,
}

/// A model bundle whose manifest, routing table and pools were read and checked: every
/// listed category has its adapter files and a pool of its own category, and every good
/// type (and the fallback) routes to a listed category. Adapters are loaded by
/// [`crate::Tagger`].
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    routing: Routing,
    pools: BTreeMap<Category, EtalonPool>,
}

/// The shipped bundle of a project checkout: the first `adapters/` holding a
/// `bundle.json` in or above any of `starts` (tried in order; e.g. the current directory,
/// then the executable's path).
pub fn find_checkout_bundle(starts: &[&Path]) -> Option<PathBuf> {
    starts.iter().find_map(|start| {
        start
            .ancestors()
            .map(|dir| dir.join("adapters"))
            .find(|candidate| candidate.join(BUNDLE_FILE).is_file())
    })
}

impl Bundle {
    /// Opens and checks the bundle in `dir`.
    pub fn open(dir: &Path) -> Result<Self, InferenceError> {
        if !dir.is_dir() {
            return Err(InferenceError::NoModelDir {
                path: dir.to_path_buf(),
            });
        }
        let path = dir.join(BUNDLE_FILE);
        if !path.is_file() {
            return Err(InferenceError::NotABundle {
                path: dir.to_path_buf(),
                manifest: path,
            });
        }
        // The format first, so a newer bundle says so rather than failing on a field.
        let raw: serde_json::Value = read_json(&path)?;
        let format = raw.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != BUNDLE_FORMAT {
            return Err(InferenceError::FormatVersion {
                path,
                found: format.to_owned(),
                expected: BUNDLE_FORMAT.to_owned(),
            });
        }
        let manifest: Manifest =
            serde_json::from_value(raw).map_err(|source| InferenceError::Json {
                path: path.clone(),
                source,
            })?;
        if manifest.categories.is_empty() {
            return Err(InferenceError::Format {
                path,
                reason: "`categories` is empty".into(),
            });
        }
        let mut pools = BTreeMap::new();
        for &category in &manifest.categories {
            let cat_dir = dir.join(category.name());
            for file in [
                POOL_FILE,
                ADAPTER_CONFIG_FILE,
                ADAPTER_WEIGHTS_FILE,
                RUNTIME_FILE,
            ] {
                if !cat_dir.join(file).is_file() {
                    return Err(InferenceError::MissingCategory {
                        path: path.clone(),
                        category,
                        missing: cat_dir.join(file),
                    });
                }
            }
            let pool_path = cat_dir.join(POOL_FILE);
            let pool = EtalonPool::load_file(&pool_path)?;
            if pool.category != category {
                return Err(InferenceError::Format {
                    path: pool_path,
                    reason: format!(
                        "the pool of `{}` is in the directory of `{category}`",
                        pool.category
                    ),
                });
            }
            pools.insert(category, pool);
        }
        let routing_path = dir.join(ROUTING_FILE);
        let routing = Routing::load(&routing_path)?;
        check_routed(&routing, &routing_path, |c| pools.contains_key(&c))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            routing,
            pools,
        })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The routing table.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The categories with an adapter, in [`Category::ALL`] order.
    pub fn categories(&self) -> Vec<Category> {
        self.pools.keys().copied().collect()
    }

    /// A category's pool.
    pub fn pool(&self, category: Category) -> Option<&EtalonPool> {
        self.pools.get(&category)
    }

    /// A category's adapter directory.
    pub fn category_dir(&self, category: Category) -> PathBuf {
        self.dir.join(category.name())
    }

    /// Where the base is by default: the manifest's `default_dir` under the bundle.
    pub fn default_base_dir(&self) -> PathBuf {
        self.dir.join(&self.manifest.base.default_dir)
    }

    /// Checks that `base` is the one the bundle was trained on.
    pub fn check_base(&self, base: &BaseInfo) -> Result<(), InferenceError> {
        if base.weights_sha256 != self.manifest.base.sha256 {
            return Err(InferenceError::WrongBase {
                path: self.dir.join(BUNDLE_FILE),
                base_dir: base.dir.clone(),
                expected_name: self.manifest.base.name.clone(),
                expected_sha: self.manifest.base.sha256.clone(),
                found_sha: base.weights_sha256.clone(),
            });
        }
        Ok(())
    }
}

/// Checks that every good type of `routing` (read from `path`), and its fallback, goes to a
/// category that `has` an adapter.
fn check_routed(
    routing: &Routing,
    path: &Path,
    has: impl Fn(Category) -> bool,
) -> Result<(), InferenceError> {
    let routed = std::iter::once(("(fallback)", routing.fallback))
        .chain(routing.good_types.iter().map(|(g, &c)| (g.as_str(), c)));
    for (good_type, category) in routed {
        if !has(category) {
            return Err(InferenceError::UnroutedCategory {
                path: path.to_path_buf(),
                good_type: good_type.to_owned(),
                category,
            });
        }
    }
    Ok(())
}

/// Makes `dir` a bundle of the adapter directories it holds (`<category>/` with an
/// `adapter_config.json`): copies the routing table `routing` and each category's pool (`pool_file(category)`) in, and writes the
/// manifest naming `base`. Each adapter must have been trained on `base` and have its
/// `runtime.json`, and `routing` may send good types only to those categories: both are
/// checked before anything is written, and the result with [`Bundle::open`].
pub fn write_bundle(
    dir: &Path,
    base: &BaseRef,
    routing: &Path,
    pool_file: impl Fn(Category) -> PathBuf,
) -> Result<Bundle, InferenceError> {
    let categories: Vec<Category> = Category::ALL
        .into_iter()
        .filter(|c| dir.join(c.name()).join(ADAPTER_CONFIG_FILE).is_file())
        .collect();
    if categories.is_empty() {
        return Err(InferenceError::Format {
            path: dir.to_path_buf(),
            reason: format!("no adapters (<category>/{ADAPTER_CONFIG_FILE}) to bundle"),
        });
    }
    check_routed(&Routing::load(routing)?, routing, |c| {
        categories.contains(&c)
    })?;
    for &category in &categories {
        let config = lamoda_model::TagModel::read_adapter_config(&dir.join(category.name()))?;
        if config.base_sha256 != base.sha256 {
            return Err(InferenceError::WrongBase {
                path: dir.join(category.name()).join(ADAPTER_CONFIG_FILE),
                base_dir: PathBuf::from(&base.default_dir),
                expected_name: base.name.clone(),
                expected_sha: base.sha256.clone(),
                found_sha: config.base_sha256,
            });
        }
    }
    for &category in &categories {
        let target = dir.join(category.name()).join(POOL_FILE);
        let source = pool_file(category);
        std::fs::copy(&source, &target).map_err(io_err(&source))?;
    }
    let routing_target = dir.join(ROUTING_FILE);
    std::fs::copy(routing, &routing_target).map_err(io_err(routing))?;
    write_json(
        &dir.join(BUNDLE_FILE),
        &Manifest {
            format: BUNDLE_FORMAT.to_owned(),
            base: base.clone(),
            categories,
        },
    )?;
    Bundle::open(dir)
}
