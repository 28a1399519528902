//! Etalon tag pools: `etalon_tags/<category>.toml`.
//!
//! A pool lists the category's curated tags (most frequent first), optional
//! groups of mutually exclusive tags (at most one of a group is predicted),
//! and notes on near-duplicates kept apart on purpose or awaiting a merge.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Category, DataError, LabeledSet};

/// Tags of which at most one may be predicted for a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagGroup {
    /// A short name for messages, e.g. `size`.
    pub name: String,
    /// The tags, each in the pool.
    pub tags: Vec<String>,
}

/// Tags that mean (nearly) the same, with the curator's note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDuplicate {
    /// The tags, each in the pool.
    pub tags: Vec<String>,
    /// Why they are kept apart, or what should happen to them.
    pub note: String,
}

/// The curated pool of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtalonPool {
    /// The category.
    pub category: Category,
    /// The tags; their order is the order of model outputs.
    pub tags: Vec<String>,
    /// Mutually exclusive groups.
    #[serde(default)]
    pub exclusive: Vec<TagGroup>,
    /// Near-duplicate notes.
    #[serde(default)]
    pub near_duplicates: Vec<NearDuplicate>,
}

/// How a pool and a labeled file agree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolCheck {
    /// Tags in the data but not in the pool, with their counts.
    pub unknown: Vec<(String, usize)>,
    /// Pool tags that never occur in the data.
    pub unused: Vec<String>,
    /// Rows whose gold tags break an exclusive group: `(row, group name)`.
    pub exclusive_violations: Vec<(usize, String)>,
}

impl EtalonPool {
    /// A pool of plain tags, validated.
    pub fn new(category: Category, tags: Vec<String>) -> Result<Self, DataError> {
        let pool = EtalonPool {
            category,
            tags,
            exclusive: Vec::new(),
            near_duplicates: Vec::new(),
        };
        pool.validate(Path::new("<in memory>"))?;
        Ok(pool)
    }

    /// The file of a category's pool under a directory: `<dir>/<category>.toml`.
    pub fn path_in(dir: &Path, category: Category) -> PathBuf {
        dir.join(format!("{}.toml", category.name()))
    }

    /// Reads and validates `<dir>/<category>.toml`.
    pub fn load(dir: &Path, category: Category) -> Result<Self, DataError> {
        let path = Self::path_in(dir, category);
        let pool = Self::load_file(&path)?;
        if pool.category != category {
            return Err(DataError::Invalid {
                path,
                reason: format!(
                    "declares category `{}` but is the file of `{category}`",
                    pool.category
                ),
            });
        }
        Ok(pool)
    }

    /// Reads and validates one pool file.
    pub fn load_file(path: &Path) -> Result<Self, DataError> {
        let pool: EtalonPool = crate::read_toml(path)?;
        pool.validate(path)?;
        Ok(pool)
    }

    fn validate(&self, path: &Path) -> Result<(), DataError> {
        let invalid = |reason: String| DataError::Invalid {
            path: path.to_owned(),
            reason,
        };
        if self.tags.is_empty() {
            return Err(invalid("the pool has no tags".into()));
        }
        let mut seen = HashSet::new();
        for tag in &self.tags {
            if tag.trim().is_empty() || tag.trim() != tag {
                return Err(invalid(format!(
                    "tag {tag:?} is blank or has surrounding spaces"
                )));
            }
            if !seen.insert(tag.as_str()) {
                return Err(invalid(format!("tag {tag:?} is listed twice")));
            }
        }
        let mut grouped = HashSet::new();
        for group in &self.exclusive {
            if group.tags.len() < 2 {
                return Err(invalid(format!(
                    "exclusive group `{}` needs at least two tags",
                    group.name
                )));
            }
            for tag in &group.tags {
                if !seen.contains(tag.as_str()) {
                    return Err(invalid(format!(
                        "exclusive group `{}` names {tag:?}, which is not in `tags`",
                        group.name
                    )));
                }
                if !grouped.insert(tag.as_str()) {
                    return Err(invalid(format!(
                        "tag {tag:?} is in more than one exclusive group"
                    )));
                }
            }
        }
        for dup in &self.near_duplicates {
            if let Some(tag) = dup.tags.iter().find(|t| !seen.contains(t.as_str())) {
                return Err(invalid(format!(
                    "near_duplicates names {tag:?}, which is not in `tags`"
                )));
            }
        }
        Ok(())
    }

    /// Whether `tag` is in the pool.
    pub fn contains(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The output index of `tag`.
    pub fn index_of(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| t == tag)
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether the pool is empty (never true for a validated pool).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// For each tag index, the index of its exclusive group, if any.
    pub fn group_of(&self) -> Vec<Option<usize>> {
        self.tags
            .iter()
            .map(|tag| self.exclusive.iter().position(|g| g.tags.contains(tag)))
            .collect()
    }

    /// Compares the pool with a labeled file.
    pub fn check(&self, data: &LabeledSet) -> PoolCheck {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut check = PoolCheck::default();
        for row in &data.rows {
            for tag in &row.tags {
                *counts.entry(tag.as_str()).or_default() += 1;
            }
            for group in &self.exclusive {
                if row.tags.iter().filter(|t| group.tags.contains(t)).count() > 1 {
                    check
                        .exclusive_violations
                        .push((row.row, group.name.clone()));
                }
            }
        }
        check.unknown = counts
            .iter()
            .filter(|(tag, _)| !self.contains(tag))
            .map(|(tag, n)| ((*tag).to_owned(), *n))
            .collect();
        check.unused = self
            .tags
            .iter()
            .filter(|t| !counts.contains_key(t.as_str()))
            .cloned()
            .collect();
        check
    }

    /// Builds a pool from a labeled file: every tag that occurs, most frequent
    /// first (ties by name), keeping the curated groups and notes of `curated`
    /// whose tags are all still present.
    pub fn generate(data: &LabeledSet, curated: Option<&EtalonPool>) -> Result<Self, DataError> {
        let counts = tag_counts(data);
        let mut pool = EtalonPool {
            category: data.category,
            tags: counts.iter().map(|(t, _)| t.clone()).collect(),
            exclusive: Vec::new(),
            near_duplicates: Vec::new(),
        };
        if let Some(curated) = curated {
            let tags = pool.tags.clone();
            let present = |group: &[String]| group.iter().all(|t| tags.contains(t));
            pool.exclusive = curated
                .exclusive
                .iter()
                .filter(|g| present(&g.tags))
                .cloned()
                .collect();
            pool.near_duplicates = curated
                .near_duplicates
                .iter()
                .filter(|d| present(&d.tags))
                .cloned()
                .collect();
        }
        pool.validate(&data.path)?;
        Ok(pool)
    }

    /// The pool as TOML, each tag annotated with its count in `data` when given.
    pub fn to_toml(&self, data: Option<&LabeledSet>) -> String {
        let counts: BTreeMap<String, usize> = data
            .map(tag_counts)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |tags: &[String]| tags.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Etalon tag pool of `{}`: the model's outputs, in this order.",
            self.category
        );
        let _ = writeln!(
            out,
            "# Regenerate with `lamoda-tags etalon --write`; groups and notes are kept."
        );
        let _ = writeln!(out, "category = {}", quote(self.category.name()));
        out.push_str("tags = [\n");
        for tag in &self.tags {
            match counts.get(tag) {
                Some(n) => {
                    let _ = writeln!(out, "    {}, # {n}", quote(tag));
                }
                None => {
                    let _ = writeln!(out, "    {},", quote(tag));
                }
            }
        }
        out.push_str("]\n");
        for group in &self.exclusive {
            let _ = write!(
                out,
                "\n[[exclusive]]\nname = {}\ntags = [{}]\n",
                quote(&group.name),
                list(&group.tags)
            );
        }
        for dup in &self.near_duplicates {
            let _ = write!(
                out,
                "\n[[near_duplicates]]\ntags = [{}]\nnote = {}\n",
                list(&dup.tags),
                quote(&dup.note)
            );
        }
        out
    }
}

/// Tag counts of a labeled file, most frequent first, ties by name.
pub(crate) fn tag_counts(data: &LabeledSet) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &data.rows {
        for tag in &row.tags {
            *counts.entry(tag.as_str()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> =
        counts.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReviewStack;

    fn data(tags: &[&[&str]]) -> LabeledSet {
        LabeledSet {
            category: Category::Shoes,
            path: "shoes.csv".into(),
            rows: tags
                .iter()
                .enumerate()
                .map(|(i, t)| ReviewStack {
                    row: i + 1,
                    reviews: vec!["r".into()],
                    tags: t.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
            unknown_tags: Vec::new(),
        }
    }

    #[test]
    fn generate_orders_by_frequency_and_round_trips_through_toml() {
        let d = data(&[&["Маломерят", "Удобные"], &["Удобные"], &["Большемерки"]]);
        let curated = EtalonPool {
            category: Category::Shoes,
            tags: vec!["Маломерят".into(), "Большемерки".into(), "Удобные".into()],
            exclusive: vec![TagGroup {
                name: "size".into(),
                tags: vec!["Маломерят".into(), "Большемерки".into()],
            }],
            near_duplicates: vec![],
        };
        let pool = EtalonPool::generate(&d, Some(&curated)).expect("valid");
        assert_eq!(pool.tags, ["Удобные", "Большемерки", "Маломерят"]);
        assert_eq!(pool.exclusive.len(), 1);
        let text = pool.to_toml(Some(&d));
        assert!(text.contains("\"Удобные\", # 2"), "{text}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("shoes.toml"), &text).expect("write");
        assert_eq!(
            EtalonPool::load(dir.path(), Category::Shoes).expect("reload"),
            pool
        );
        assert_eq!(pool.group_of(), [None, Some(0), Some(0)]);
    }

    #[test]
    fn check_reports_unknown_unused_and_violations() {
        let pool = EtalonPool {
            category: Category::Shoes,
            tags: vec!["A".into(), "B".into(), "C".into()],
            exclusive: vec![TagGroup {
                name: "ab".into(),
                tags: vec!["A".into(), "B".into()],
            }],
            near_duplicates: vec![],
        };
        let check = pool.check(&data(&[&["A", "B"], &["X"], &["X", "A"]]));
        assert_eq!(check.unknown, [("X".to_owned(), 2)]);
        assert_eq!(check.unused, ["C"]);
        assert_eq!(check.exclusive_violations, [(1, "ab".to_owned())]);
    }

    #[test]
    fn invalid_pools_are_rejected_with_reasons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                "category = \"shoes\"\ntags = [\"A\", \"A\"]\n",
                "listed twice",
            ),
            ("category = \"shoes\"\ntags = []\n", "no tags"),
            (
                "category = \"shoes\"\ntags = [\"A\"]\n[[exclusive]]\nname = \"g\"\ntags = [\"A\", \"Z\"]\n",
                "\"Z\", which is not in `tags`",
            ),
            (
                "category = \"bags\"\ntags = [\"A\"]\n",
                "declares category `bags`",
            ),
            (
                "category = \"shoes\"\ntags = [\"A\"]\ncolour = 1\n",
                "unknown field `colour`",
            ),
            (
                "category = \"toys\"\ntags = [\"A\"]\n",
                "unknown variant `toys`",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(dir.path().join("shoes.toml"), text).expect("write");
            let msg = EtalonPool::load(dir.path(), Category::Shoes)
                .expect_err(text)
                .to_string();
            assert!(
                msg.contains("shoes.toml") && msg.contains(expected),
                "{expected}: {msg}"
            );
        }
    }
}
