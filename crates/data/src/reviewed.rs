//! Team-reviewed labels: products a team's reviewers judged in the server's review queue,
//! exported (`lamoda-tags review export`) in the careful-label protocol, one JSON line per
//! product. Unlike `careful/<category>.jsonl`, whose lines point at rows of
//! `labeled/<category>.csv`, a reviewed line carries its reviews itself, so it joins
//! nothing and can be trained and evaluated on beside the shared careful labels.
//!
//! A line: `{"sku", "good_type", "category", "reviews": [...], "text_sha256", "tags": [...],
//! "missing": [...], "note", "reviewers": [...], "reviewed_at"}`; `text_sha256` is the
//! SHA-256 of the reviews as a compact JSON list ([`reviews_sha256`]), checked on load.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Category, DataError, EtalonPool, ReviewStack};

/// One line of a reviewed-label file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewedLine {
    /// The product's SKU.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// The category whose pool the tags are from.
    pub category: String,
    /// The reviews the reviewers read.
    pub reviews: Vec<String>,
    /// [`reviews_sha256`] of `reviews`.
    pub text_sha256: String,
    /// The pool tags the reviewers kept (0–6, at most one per exclusive group).
    pub tags: Vec<String>,
    /// Properties the reviewers stated that no pool tag captures.
    #[serde(default)]
    pub missing: Vec<String>,
    /// A note (empty when none).
    #[serde(default)]
    pub note: String,
    /// Who judged it.
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// When it was last judged (RFC 3339, UTC).
    #[serde(default)]
    pub reviewed_at: String,
}

/// A checked reviewed product.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewedLabel {
    /// Its 1-based line in the file.
    pub line: usize,
    /// The line.
    pub label: ReviewedLine,
    /// Its category.
    pub category: Category,
}

impl ReviewedLabel {
    /// The product as a training/evaluation row with its reviewed tags; `row` is its line.
    pub fn stack(&self) -> ReviewStack {
        ReviewStack {
            row: self.line,
            reviews: self.label.reviews.clone(),
            tags: self.label.tags.clone(),
        }
    }
}

/// The SHA-256 (lower-case hex) of `reviews` written as a compact JSON list.
pub fn reviews_sha256(reviews: &[String]) -> String {
    let json = serde_json::to_string(reviews).unwrap_or_default();
    Sha256::digest(json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a reviewed-label file, checking each line: a known category, the hash of its
/// reviews, every tag in that category's pool (from `pool_of`) and at most one tag per
/// exclusive group. Blank lines are skipped; a leading byte-order mark is allowed. A SKU
/// twice in one file is an error.
pub fn load_reviewed<'p>(
    path: &Path,
    pool_of: impl Fn(Category) -> Option<&'p EtalonPool>,
) -> Result<Vec<ReviewedLabel>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, reason: String, value: &str| DataError::BadValue {
            path: PathBuf::from(path),
            row: number,
            field: field.to_owned(),
            reason,
            value: crate::error::excerpt(value),
        };
        let parsed: ReviewedLine = serde_json::from_str(line).map_err(|e| DataError::BadJson {
            path: path.to_owned(),
            row: number,
            field: "line".to_owned(),
            expected: "a JSON object {sku, good_type, category, reviews, text_sha256, tags, missing, note, reviewers, reviewed_at}",
            reason: e.to_string(),
            value: crate::error::excerpt(line),
        })?;
        let Some(category) = Category::ALL
            .into_iter()
            .find(|c| c.name() == parsed.category.trim())
        else {
            return Err(bad(
                "category",
                "not a category (bags, shoes, clothes, beauty, accs)".to_owned(),
                &parsed.category,
            ));
        };
        if parsed.sku.trim().is_empty() {
            return Err(bad("sku", "empty".to_owned(), &parsed.sku));
        }
        if !seen.insert(parsed.sku.clone()) {
            return Err(bad(
                "sku",
                "this SKU is on an earlier line too".to_owned(),
                &parsed.sku,
            ));
        }
        if parsed.reviews.iter().all(|r| r.trim().is_empty()) {
            return Err(bad(
                "reviews",
                "no review text".to_owned(),
                &format!("{:?}", parsed.reviews),
            ));
        }
        let hash = reviews_sha256(&parsed.reviews);
        if !hash.eq_ignore_ascii_case(parsed.text_sha256.trim()) {
            return Err(bad(
                "text_sha256",
                format!(
                    "it is not the SHA-256 of the line's reviews ({hash}): the reviews were edited"
                ),
                &parsed.text_sha256,
            ));
        }
        let Some(pool) = pool_of(category) else {
            return Err(bad(
                "category",
                "no pool of this category is loaded".to_owned(),
                &parsed.category,
            ));
        };
        for tag in &parsed.tags {
            if !pool.contains(tag) {
                return Err(DataError::UnknownTag {
                    path: path.to_owned(),
                    row: number,
                    tag: tag.clone(),
                    category: category.name().to_owned(),
                });
            }
        }
        for group in &pool.exclusive {
            let kept: Vec<&String> = parsed
                .tags
                .iter()
                .filter(|t| group.tags.contains(t))
                .collect();
            if kept.len() > 1 {
                return Err(bad(
                    "tags",
                    format!("two tags of the exclusive group `{}`", group.name),
                    &format!("{kept:?}"),
                ));
            }
        }
        out.push(ReviewedLabel {
            line: number,
            label: parsed,
            category,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> EtalonPool {
        let mut pool = EtalonPool::new(
            Category::Bags,
            vec![
                "Вместительная".into(),
                "Компактная".into(),
                "Удобная".into(),
            ],
        )
        .expect("pool");
        pool.exclusive.push(crate::TagGroup {
            name: "size".into(),
            tags: vec!["Вместительная".into(), "Компактная".into()],
        });
        pool
    }

    fn line(tags: &[&str]) -> ReviewedLine {
        let reviews = vec!["Очень вместительная".to_owned(), "Удобная".to_owned()];
        ReviewedLine {
            sku: "SKU1".into(),
            good_type: "Bags".into(),
            category: "bags".into(),
            text_sha256: reviews_sha256(&reviews),
            reviews,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            missing: vec!["Не пахнет".into()],
            note: String::new(),
            reviewers: vec!["anna".into()],
            reviewed_at: "2026-12-07T15:00:00.000Z".into(),
        }
    }

    fn write(lines: &[String]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), lines.join("\n")).expect("write");
        file
    }

    #[test]
    fn a_written_line_reads_back_as_a_row() {
        let pool = pool();
        let text = serde_json::to_string(&line(&["Вместительная", "Удобная"])).expect("json");
        let file = write(&[format!("\u{feff}{text}"), String::new()]);
        let read = load_reviewed(file.path(), |_| Some(&pool)).expect("load");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].category, Category::Bags);
        let stack = read[0].stack();
        assert_eq!(stack.tags, vec!["Вместительная", "Удобная"]);
        assert_eq!(stack.reviews.len(), 2);
        assert_eq!(read[0].label.missing, vec!["Не пахнет"]);
    }

    #[test]
    fn edited_reviews_an_outside_tag_and_a_split_group_are_refused() {
        let pool = pool();
        let mut edited = line(&["Удобная"]);
        edited.reviews[0].push('!');
        let file = write(&[serde_json::to_string(&edited).expect("json")]);
        let e = load_reviewed(file.path(), |_| Some(&pool))
            .expect_err("edited")
            .to_string();
        assert!(e.contains("text_sha256") && e.contains("row 1"), "{e}");

        let file = write(&[serde_json::to_string(&line(&["Лёгкая"])).expect("json")]);
        let e = load_reviewed(file.path(), |_| Some(&pool))
            .expect_err("outside")
            .to_string();
        assert!(e.contains("Лёгкая"), "{e}");

        let both = line(&["Вместительная", "Компактная"]);
        let file = write(&[serde_json::to_string(&both).expect("json")]);
        let e = load_reviewed(file.path(), |_| Some(&pool))
            .expect_err("group")
            .to_string();
        assert!(e.contains("size"), "{e}");

        let one = serde_json::to_string(&line(&[])).expect("json");
        let file = write(&[one.clone(), one]);
        let e = load_reviewed(file.path(), |_| Some(&pool))
            .expect_err("twice")
            .to_string();
        assert!(e.contains("row 2") && e.contains("SKU1"), "{e}");
    }
}
