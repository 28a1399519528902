//! One reviewer's judgment of one product's tags, and its checks against the pool.

use lamoda_data::{Category, EtalonPool};
use serde::Serialize;

/// The most tags a judgment keeps (accepted and added): the careful protocol's 0–6.
pub const MAX_KEPT: usize = 6;
/// The most missing properties per judgment.
pub const MAX_MISSING: usize = 5;
/// The longest reviewer name and missing property, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// What a reviewer said of one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// A suggested tag the reviews support.
    Accepted,
    /// A suggested tag they do not.
    Rejected,
    /// A pool tag the model missed.
    Added,
    /// A property no pool tag captures.
    Missing,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 4] = [
        Verdict::Accepted,
        Verdict::Rejected,
        Verdict::Added,
        Verdict::Missing,
    ];

    /// Its name in metrics and files.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Added => "added",
            Verdict::Missing => "missing",
        }
    }
}

/// A judgment as a reviewer posts it, with what the store keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJudgment {
    /// The product.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// The category whose pool the tags are from.
    pub category: Category,
    /// Who judged.
    pub reviewer: String,
    /// Suggested tags the reviews support.
    pub accepted: Vec<String>,
    /// Suggested tags they do not support.
    pub rejected: Vec<String>,
    /// Other pool tags the reviews support.
    pub added: Vec<String>,
    /// Properties the reviews state that no pool tag captures (free text).
    pub missing: Vec<String>,
    /// The reviews the reviewer read (kept, so an export needs no product table).
    pub reviews: Vec<String>,
    /// The model that suggested the tags (bundle and base), for the record.
    pub model: String,
}

/// Why a judgment is refused: the field (`accepted[1]`, `reviewer`, …) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidJudgment {
    /// The field, as the API names it.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidJudgment {
    InvalidJudgment {
        field: field.into(),
        message: message.into(),
    }
}

impl NewJudgment {
    /// Checks the judgment against `pool` and returns it tidied (names and tags trimmed,
    /// repeats dropped, blank missing properties dropped). Refused: an empty reviewer, a
    /// tag outside the pool, a tag both kept (accepted or added) and rejected, two kept
    /// tags of one exclusive group, more than [`MAX_KEPT`] kept tags, a product without
    /// review text.
    pub fn check(mut self, pool: &EtalonPool) -> Result<Self, InvalidJudgment> {
        self.reviewer = self.reviewer.trim().to_owned();
        if self.reviewer.is_empty() {
            return Err(invalid("reviewer", "the reviewer's name is empty"));
        }
        if self.reviewer.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(
                "reviewer",
                format!("the reviewer's name is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        if self.reviewer.chars().any(char::is_control) {
            return Err(invalid(
                "reviewer",
                "the reviewer's name holds a control character",
            ));
        }
        if self.reviews.iter().all(|r| r.trim().is_empty()) {
            return Err(invalid(
                "sku",
                format!("product {} has no review text to judge", self.sku),
            ));
        }
        let category = self.category.name();
        let tidy = |name: &str, tags: Vec<String>| -> Result<Vec<String>, InvalidJudgment> {
            let mut out: Vec<String> = Vec::with_capacity(tags.len());
            for (i, tag) in tags.into_iter().enumerate() {
                let tag = tag.trim().to_owned();
                if !pool.contains(&tag) {
                    return Err(invalid(
                        format!("{name}[{i}]"),
                        format!("tag {tag:?} is not in the `{category}` pool"),
                    ));
                }
                if !out.contains(&tag) {
                    out.push(tag);
                }
            }
            Ok(out)
        };
        self.accepted = tidy("accepted", std::mem::take(&mut self.accepted))?;
        self.rejected = tidy("rejected", std::mem::take(&mut self.rejected))?;
        self.added = tidy("added", std::mem::take(&mut self.added))?;
        for (i, tag) in self.rejected.iter().enumerate() {
            if self.accepted.contains(tag) {
                return Err(invalid(
                    format!("rejected[{i}]"),
                    format!("tag {tag:?} is both accepted and rejected"),
                ));
            }
            if self.added.contains(tag) {
                return Err(invalid(
                    format!("rejected[{i}]"),
                    format!("tag {tag:?} is both added and rejected"),
                ));
            }
        }
        self.added.retain(|t| !self.accepted.contains(t));
        let kept = self.kept();
        for group in &pool.exclusive {
            let in_group: Vec<&str> = kept
                .iter()
                .copied()
                .filter(|t| group.tags.iter().any(|g| g == t))
                .collect();
            if let [first, second, ..] = in_group.as_slice() {
                let field = if self.added.iter().any(|t| t == second) {
                    "added"
                } else {
                    "accepted"
                };
                return Err(invalid(
                    field,
                    format!(
                        "{first:?} and {second:?} are both in the exclusive group `{}`: keep one",
                        group.name
                    ),
                ));
            }
        }
        if kept.len() > MAX_KEPT {
            return Err(invalid(
                "added",
                format!(
                    "{} tags kept (accepted and added): at most {MAX_KEPT}",
                    kept.len()
                ),
            ));
        }
        let mut missing: Vec<String> = Vec::new();
        for (i, m) in std::mem::take(&mut self.missing).into_iter().enumerate() {
            let m = m.split_whitespace().collect::<Vec<_>>().join(" ");
            if m.is_empty() {
                continue;
            }
            if m.chars().count() > MAX_NAME_CHARS {
                return Err(invalid(
                    format!("missing[{i}]"),
                    format!(
                        "longer than {MAX_NAME_CHARS} characters: name the property in a few words"
                    ),
                ));
            }
            if !missing.iter().any(|x| x.to_lowercase() == m.to_lowercase()) {
                missing.push(m);
            }
        }
        if missing.len() > MAX_MISSING {
            return Err(invalid(
                "missing",
                format!(
                    "{} missing properties: at most {MAX_MISSING}",
                    missing.len()
                ),
            ));
        }
        self.missing = missing;
        Ok(self)
    }

    /// The tags the reviewer keeps: accepted, then added.
    pub fn kept(&self) -> Vec<&str> {
        self.accepted
            .iter()
            .chain(&self.added)
            .map(String::as_str)
            .collect()
    }
}

/// A stored judgment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgment {
    /// Its number in the store (later judgments have larger ones).
    pub id: i64,
    /// When it was stored (RFC 3339, UTC, milliseconds).
    pub created_at: String,
    /// The product.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// The category whose pool the tags are from.
    pub category: Category,
    /// Who judged.
    pub reviewer: String,
    /// Suggested tags the reviews support.
    pub accepted: Vec<String>,
    /// Suggested tags they do not support.
    pub rejected: Vec<String>,
    /// Other pool tags the reviews support.
    pub added: Vec<String>,
    /// Properties no pool tag captures.
    pub missing: Vec<String>,
    /// The model that suggested the tags.
    pub model: String,
    /// True when the same reviewer judged the same SKU again later.
    pub superseded: bool,
}

impl Judgment {
    /// How many tags (or properties) it holds of each verdict, in [`Verdict`] order:
    /// what the store's counts and the server's metrics add up.
    pub fn verdict_counts(&self) -> [(Verdict, usize); 4] {
        [
            (Verdict::Accepted, self.accepted.len()),
            (Verdict::Rejected, self.rejected.len()),
            (Verdict::Added, self.added.len()),
            (Verdict::Missing, self.missing.len()),
        ]
    }

    /// The tags the reviewer keeps: accepted, then added.
    pub fn kept(&self) -> impl Iterator<Item = &String> {
        self.accepted.iter().chain(&self.added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pool() -> EtalonPool {
        let mut pool = EtalonPool::new(
            Category::Bags,
            vec![
                "Вместительная".into(),
                "Компактная".into(),
                "Удобная".into(),
                "Лёгкая".into(),
            ],
        )
        .expect("pool");
        pool.exclusive.push(lamoda_data::TagGroup {
            name: "size".into(),
            tags: vec!["Вместительная".into(), "Компактная".into()],
        });
        pool
    }

    fn judgment() -> NewJudgment {
        NewJudgment {
            sku: "SKU1".into(),
            good_type: "Bags".into(),
            category: Category::Bags,
            reviewer: " anna ".into(),
            accepted: vec!["Удобная".into()],
            rejected: vec!["Лёгкая".into()],
            added: vec!["Вместительная".into()],
            missing: vec!["  Не  пахнет ".into(), "не пахнет".into(), " ".into()],
            reviews: vec!["Удобная и вместительная".into()],
            model: "m".into(),
        }
    }

    #[test]
    fn a_valid_judgment_is_tidied() {
        let j = judgment().check(&pool()).expect("valid");
        assert_eq!(j.reviewer, "anna");
        assert_eq!(j.missing, vec!["Не пахнет"]);
        assert_eq!(j.kept(), vec!["Удобная", "Вместительная"]);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let field = |j: NewJudgment| j.check(&pool()).expect_err("invalid").field;
        let mut j = judgment();
        j.reviewer = "  ".into();
        assert_eq!(field(j), "reviewer");
        let mut j = judgment();
        j.accepted.push("Мягкая".into());
        assert_eq!(field(j), "accepted[1]");
        let mut j = judgment();
        j.rejected.push("Удобная".into());
        assert_eq!(field(j), "rejected[1]");
        let mut j = judgment();
        j.added.push("Компактная".into());
        let e = j.check(&pool()).expect_err("group");
        assert_eq!(e.field, "added");
        assert!(e.message.contains("size"), "{e}");
        let mut j = judgment();
        j.reviews = vec![" ".into()];
        assert_eq!(field(j), "sku");
        let mut j = judgment();
        j.missing = (0..6).map(|i| format!("свойство {i}")).collect();
        assert_eq!(field(j), "missing");
    }
}
