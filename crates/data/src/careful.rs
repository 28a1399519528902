//! Careful labels: a second, precision-first labelling of some rows of
//! `labeled/<category>.csv` (`careful/<category>.jsonl`), and their seeded dev split.
//!
//! Each JSON line names its row of the labeled file (`row`, 0-based data row) and the
//! SHA-256 of that row's `text` field, so a label can never be joined to another product's
//! reviews: [`load_careful`] checks both. Tags must be in the category's pool.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::table::Table;
use crate::{Category, DataError, EtalonPool, ReviewStack, SplitConfig, kfold};

/// One carefully labelled product.
#[derive(Debug, Clone, PartialEq)]
pub struct CarefulLabel {
    /// 1-based data row of `labeled/<category>.csv`, as [`ReviewStack::row`] counts.
    pub row: usize,
    /// The pool tags a review clearly states (0–6, at most one per exclusive group).
    pub tags: Vec<String>,
    /// Properties reviewers state that no pool tag captures.
    pub missing: Vec<String>,
    /// The annotator's hardest call.
    pub note: String,
}

/// A parsed `careful/<category>.jsonl`.
#[derive(Debug, Clone)]
pub struct CarefulSet {
    /// The category.
    pub category: Category,
    /// The file it was read from.
    pub path: PathBuf,
    /// Every label, in file order (ascending rows).
    pub labels: Vec<CarefulLabel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    row: usize,
    text_sha256: String,
    tags: Vec<String>,
    #[serde(default)]
    missing: Vec<String>,
    #[serde(default)]
    note: String,
}

impl CarefulSet {
    /// The path of a category's file under a data root: `<root>/careful/<category>.jsonl`.
    pub fn path_in(root: &Path, category: Category) -> PathBuf {
        root.join("careful")
            .join(format!("{}.jsonl", category.name()))
    }

    /// The labelled rows (1-based, as [`ReviewStack::row`]).
    pub fn rows(&self) -> BTreeSet<usize> {
        self.labels.iter().map(|l| l.row).collect()
    }
}

/// Reads `careful`, a careful-label file of `category`, checking every line against
/// `labeled` (the category's `labeled/<category>.csv`: the row must exist and its `text`
/// hash to `text_sha256`) and every tag against `pool`. Blank lines are skipped; a leading
/// byte-order mark is allowed. Rows are reported 1-based (JSON line numbers likewise).
pub fn load_careful(
    careful: &Path,
    labeled: &Path,
    category: Category,
    pool: &EtalonPool,
) -> Result<CarefulSet, DataError> {
    let text = std::fs::read_to_string(careful).map_err(|source| DataError::Io {
        path: careful.to_owned(),
        source,
    })?;
    let table = Table::read(labeled, b',')?;
    table.require(&["text"])?;
    let hashes: Vec<String> = table
        .rows()
        .map(|row| Ok(hex(&Sha256::digest(row.get("text")?.as_bytes()))))
        .collect::<Result<_, DataError>>()?;
    let mut labels = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, reason: String| DataError::BadValue {
            path: careful.to_owned(),
            row: number,
            field: field.to_owned(),
            reason,
            value: crate::error::excerpt(line),
        };
        let parsed: Line = serde_json::from_str(line).map_err(|e| DataError::BadJson {
            path: careful.to_owned(),
            row: number,
            field: "line".to_owned(),
            expected: "a JSON object {row, text_sha256, tags, missing, note}",
            reason: e.to_string(),
            value: crate::error::excerpt(line),
        })?;
        let Some(hash) = hashes.get(parsed.row) else {
            return Err(bad(
                "row",
                format!(
                    "row {} is beyond the {} data rows of {}",
                    parsed.row,
                    hashes.len(),
                    labeled.display()
                ),
            ));
        };
        if !hash.eq_ignore_ascii_case(parsed.text_sha256.trim()) {
            return Err(bad(
                "text_sha256",
                format!(
                    "it is not the SHA-256 of the text of row {} of {} ({hash}): the files do not belong together",
                    parsed.row,
                    labeled.display()
                ),
            ));
        }
        if !seen.insert(parsed.row) {
            return Err(bad("row", format!("row {} is labelled twice", parsed.row)));
        }
        let mut tags: Vec<String> = Vec::with_capacity(parsed.tags.len());
        for tag in parsed.tags {
            let tag = tag.trim().to_owned();
            if !pool.contains(&tag) {
                return Err(DataError::UnknownTag {
                    path: careful.to_owned(),
                    row: number,
                    tag,
                    category: category.name().to_owned(),
                });
            }
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        labels.push(CarefulLabel {
            row: parsed.row + 1,
            tags,
            missing: parsed.missing,
            note: parsed.note,
        });
    }
    if labels.is_empty() {
        return Err(DataError::NoRows {
            path: careful.to_owned(),
        });
    }
    Ok(CarefulSet {
        category,
        path: careful.to_owned(),
        labels,
    })
}

/// The careful fold (0..`config.folds`) of every label: a seeded k-fold stratified by each
/// product's rarest careful tag (as [`crate::train_dev_split`] deals noisy rows).
pub fn careful_folds(labels: &[CarefulLabel], config: &SplitConfig) -> Vec<usize> {
    let stacks: Vec<ReviewStack> = labels
        .iter()
        .map(|l| ReviewStack {
            row: l.row,
            reviews: Vec::new(),
            tags: l.tags.clone(),
        })
        .collect();
    kfold(&stacks, config.folds, config.seed)
}

/// The careful dev split: indices into `labels` of the products never used for fitting,
/// fold `config.dev_fold` of [`careful_folds`], and the rest (the careful training
/// products).
pub fn careful_split(labels: &[CarefulLabel], config: &SplitConfig) -> crate::Split {
    let folds = careful_folds(labels, config);
    let (dev, train): (Vec<usize>, Vec<usize>) =
        (0..labels.len()).partition(|&i| folds[i] == config.dev_fold);
    crate::Split { train, dev }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(text: &str) -> String {
        hex(&Sha256::digest(text.as_bytes()))
    }

    fn fixture(lines: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let labeled = dir.path().join("bags.csv");
        std::fs::write(
            &labeled,
            "text,tags\n\"[\"\"Лёгкая сумка\"\"]\",[]\nПрочная и вместительная,[]\n",
        )
        .expect("write labeled");
        let careful = dir.path().join("bags.jsonl");
        std::fs::write(&careful, lines).expect("write careful");
        (dir, labeled, careful)
    }

    fn pool() -> EtalonPool {
        EtalonPool::new(Category::Bags, vec!["Лёгкая".into(), "Прочная".into()]).expect("pool")
    }

    #[test]
    fn joins_rows_by_hash_and_checks_tags() {
        let lines = format!(
            "\u{feff}{{\"row\": 1, \"text_sha256\": \"{}\", \"tags\": [\"Прочная\"], \"missing\": [\"Вместительная\"], \"note\": \"\"}}\n\n{{\"row\": 0, \"text_sha256\": \"{}\", \"tags\": []}}\n",
            sha("Прочная и вместительная"),
            sha("[\"Лёгкая сумка\"]")
        );
        let (_dir, labeled, careful) = fixture(&lines);
        let set = load_careful(&careful, &labeled, Category::Bags, &pool()).expect("valid");
        assert_eq!(set.labels.len(), 2);
        assert_eq!(set.labels[0].row, 2);
        assert_eq!(set.labels[0].tags, ["Прочная"]);
        assert_eq!(set.labels[0].missing, ["Вместительная"]);
        assert_eq!(set.rows(), BTreeSet::from([1, 2]));
    }

    #[test]
    fn a_wrong_hash_an_unknown_tag_and_a_row_beyond_the_file_are_errors() {
        let (_dir, labeled, careful) =
            fixture("{\"row\": 1, \"text_sha256\": \"00ff\", \"tags\": []}\n");
        let msg = load_careful(&careful, &labeled, Category::Bags, &pool())
            .expect_err("wrong hash")
            .to_string();
        assert!(
            msg.contains("bags.jsonl") && msg.contains("row 1") && msg.contains("text_sha256"),
            "{msg}"
        );
        let line = format!(
            "{{\"row\": 1, \"text_sha256\": \"{}\", \"tags\": [\"Новая\"]}}\n",
            sha("Прочная и вместительная")
        );
        let (_dir, labeled, careful) = fixture(&line);
        let err = load_careful(&careful, &labeled, Category::Bags, &pool()).expect_err("unknown");
        assert!(
            matches!(err, DataError::UnknownTag { ref tag, .. } if tag == "Новая"),
            "{err}"
        );
        let (_dir, labeled, careful) =
            fixture("{\"row\": 7, \"text_sha256\": \"00\", \"tags\": []}\n");
        let msg = load_careful(&careful, &labeled, Category::Bags, &pool())
            .expect_err("row 7")
            .to_string();
        assert!(msg.contains("beyond the 2 data rows"), "{msg}");
        let (_dir, labeled, careful) = fixture("{\"row\": 0, \"tags\": ");
        let err = load_careful(&careful, &labeled, Category::Bags, &pool()).expect_err("cut");
        assert!(matches!(err, DataError::BadJson { row: 1, .. }), "{err}");
    }

    #[test]
    fn the_split_is_seeded_and_disjoint() {
        let labels: Vec<CarefulLabel> = (0..40)
            .map(|i| CarefulLabel {
                row: i + 1,
                tags: if i % 3 == 0 { vec!["a".into()] } else { vec![] },
                missing: vec![],
                note: String::new(),
            })
            .collect();
        let config = SplitConfig {
            folds: 4,
            dev_fold: 0,
            seed: 7,
        };
        let a = careful_split(&labels, &config);
        assert_eq!(a, careful_split(&labels, &config));
        assert_eq!(a.dev.len(), 10);
        assert_eq!(a.train.len() + a.dev.len(), 40);
        assert!(a.dev.iter().all(|i| !a.train.contains(i)));
        // Stratified: the tagged third is spread over the folds.
        let tagged_dev = a.dev.iter().filter(|&&i| i % 3 == 0).count();
        assert!((3..=4).contains(&tagged_dev), "{tagged_dev}");
    }
}
