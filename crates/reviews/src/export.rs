//! From judgments to reviewed labels: one line per judged product.
//!
//! Per SKU, each reviewer's latest judgment counts once. A tag is exported when more than
//! half of those reviewers keep it (accept or add it): one reviewer decides alone, two must
//! agree, so a disputed tag is left out, as the careful protocol leaves out what the
//! reviews do not clearly state. Missing properties are the union of theirs.

use std::collections::BTreeMap;
use std::io::Write;

use lamoda_data::{Category, ReviewedLine, reviews_sha256};

use crate::judgment::Judgment;
use crate::store::{ReviewStore, StoreError};

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Products written, per category.
    pub products: BTreeMap<Category, usize>,
    /// Judgments they were merged from (superseded ones not counted).
    pub judgments: usize,
    /// Tags written in all.
    pub tags: usize,
}

/// Merges the judgments of one SKU (any order; superseded ones are ignored) into a
/// reviewed label with `reviews`. `None` when `judgments` is empty.
pub fn merge(judgments: &[&Judgment], reviews: Vec<String>) -> Option<ReviewedLine> {
    let mut latest: BTreeMap<&str, &Judgment> = BTreeMap::new();
    for j in judgments {
        match latest.get(j.reviewer.as_str()) {
            Some(seen) if seen.id > j.id => {}
            _ => {
                latest.insert(&j.reviewer, j);
            }
        }
    }
    let newest = latest.values().max_by_key(|j| j.id)?;
    let voters = latest.len();
    let mut votes: Vec<(&String, usize)> = Vec::new();
    for j in latest.values() {
        for tag in j.kept() {
            match votes.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, n)) => *n += 1,
                None => votes.push((tag, 1)),
            }
        }
    }
    // The newest judgment's order first, so a single reviewer's tags keep their order.
    votes.sort_by_key(|(t, _)| newest.kept().position(|k| k == *t).unwrap_or(usize::MAX));
    let tags = votes
        .into_iter()
        .filter(|(_, n)| 2 * n > voters)
        .map(|(t, _)| t.clone())
        .collect();
    let mut missing: Vec<String> = Vec::new();
    for j in latest.values() {
        for m in &j.missing {
            if !missing.iter().any(|x| x.to_lowercase() == m.to_lowercase()) {
                missing.push(m.clone());
            }
        }
    }
    Some(ReviewedLine {
        sku: newest.sku.clone(),
        good_type: newest.good_type.clone(),
        category: newest.category.name().to_owned(),
        text_sha256: reviews_sha256(&reviews),
        reviews,
        tags,
        missing,
        note: String::new(),
        reviewers: latest.keys().map(|r| (*r).to_owned()).collect(),
        reviewed_at: newest.created_at.clone(),
    })
}

/// Every judged product of `store` merged into a reviewed label, ordered by category,
/// then SKU, with the judgments each was merged from (superseded ones not counted).
pub fn reviewed_lines(store: &ReviewStore) -> Result<Vec<(ReviewedLine, usize)>, StoreError> {
    let all = store.all()?;
    let mut by_sku: BTreeMap<(Category, &str), Vec<&Judgment>> = BTreeMap::new();
    for j in &all {
        by_sku.entry((j.category, &j.sku)).or_default().push(j);
    }
    let mut out = Vec::with_capacity(by_sku.len());
    for ((_, sku), judgments) in by_sku {
        let reviews = store.reviews_of(sku)?.unwrap_or_default();
        if let Some(line) = merge(&judgments, reviews) {
            out.push((line, judgments.iter().filter(|j| !j.superseded).count()));
        }
    }
    Ok(out)
}

/// Writes every judged product of `store` to `out` as reviewed-label JSON lines
/// ([`reviewed_lines`]).
pub fn export(store: &ReviewStore, out: &mut impl Write) -> Result<ExportReport, ExportError> {
    let mut report = ExportReport::default();
    for (line, judgments) in reviewed_lines(store)? {
        report.judgments += judgments;
        report.tags += line.tags.len();
        let category = line.category.parse().map_err(|_| {
            ExportError::Write(std::io::Error::other(format!(
                "stored category {:?} is not a category",
                line.category
            )))
        })?;
        *report.products.entry(category).or_default() += 1;
        let text = serde_json::to_string(&line).map_err(|e| ExportError::Write(e.into()))?;
        writeln!(out, "{text}").map_err(ExportError::Write)?;
    }
    out.flush().map_err(ExportError::Write)?;
    Ok(report)
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewJudgment;

    fn new(sku: &str, reviewer: &str, accepted: &[&str], added: &[&str]) -> NewJudgment {
        NewJudgment {
            sku: sku.into(),
            good_type: "Bags".into(),
            category: Category::Bags,
            reviewer: reviewer.into(),
            accepted: accepted.iter().map(|t| (*t).to_owned()).collect(),
            rejected: Vec::new(),
            added: added.iter().map(|t| (*t).to_owned()).collect(),
            missing: vec![format!("от {reviewer}")],
            reviews: vec![format!("отзыв о {sku}")],
            model: String::new(),
        }
    }

    #[test]
    fn one_reviewer_decides_alone_two_must_agree_and_the_latest_counts() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ReviewStore::open(&dir.path().join("r.sqlite")).expect("open");
        for j in [
            new("A", "anna", &["Удобная", "Лёгкая"], &[]),
            new("A", "anna", &["Удобная"], &["Вместительная"]),
            new("B", "anna", &["Удобная", "Лёгкая"], &[]),
            new("B", "boris", &["Удобная"], &[]),
        ] {
            store.insert(&j).expect("insert");
        }
        let mut out = Vec::new();
        let report = export(&store, &mut out).expect("export");
        assert_eq!(report.products[&Category::Bags], 2);
        assert_eq!(report.judgments, 3);
        let lines: Vec<ReviewedLine> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        assert_eq!(lines[0].sku, "A");
        assert_eq!(lines[0].tags, vec!["Удобная", "Вместительная"]);
        assert_eq!(lines[0].reviewers, vec!["anna"]);
        assert_eq!(lines[1].tags, vec!["Удобная"]);
        assert_eq!(lines[1].reviewers, vec!["anna", "boris"]);
        assert_eq!(lines[1].missing, vec!["от anna", "от boris"]);
        assert_eq!(lines[1].text_sha256, reviews_sha256(&lines[1].reviews));
    }
}
