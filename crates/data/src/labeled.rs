//! `labeled/<category>.csv`: one product's review stack and its etalon tags per row.

use std::path::{Path, PathBuf};

use crate::table::{Row, Table};
use crate::{Category, DataError, EtalonPool};

/// One product: its reviews and its gold etalon tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewStack {
    /// 1-based data row in the source file.
    pub row: usize,
    /// The reviews, in file order, each trimmed; never empty strings.
    pub reviews: Vec<String>,
    /// The gold tags, in file order, without duplicates (possibly empty).
    pub tags: Vec<String>,
}

impl ReviewStack {
    /// The reviews joined by newlines, as the encoder reads a whole stack.
    pub fn text(&self) -> String {
        self.reviews.join("\n")
    }
}

/// What to do with a tag that is not in the category's etalon pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTagPolicy {
    /// Fail with [`DataError::UnknownTag`] (training data must match its pool).
    Error,
    /// Keep the tag as a gold label and list it in [`LabeledSet::unknown_tags`]
    /// (evaluation: a tag the model cannot predict still counts as missed).
    Report,
}

/// A parsed `labeled/<category>.csv`.
#[derive(Debug, Clone)]
pub struct LabeledSet {
    /// The category the file belongs to.
    pub category: Category,
    /// The file it was read from.
    pub path: PathBuf,
    /// Every row, in file order.
    pub rows: Vec<ReviewStack>,
    /// `(row, tag)` for each tag not in the pool (only with [`UnknownTagPolicy::Report`]).
    pub unknown_tags: Vec<(usize, String)>,
}

impl LabeledSet {
    /// The path of a category's file under a data root: `<root>/labeled/<category>.csv`.
    pub fn path_in(root: &Path, category: Category) -> PathBuf {
        root.join("labeled")
            .join(format!("{}.csv", category.name()))
    }
}

/// Splits a review-stack field into reviews.
///
/// A field whose first non-blank character is `[` must be a JSON list of
/// strings; anything else is newline-joined reviews. Reviews are trimmed and
/// blank lines (separators, not reviews) are skipped. `Err` carries the JSON
/// parser's message.
pub fn parse_reviews(text: &str) -> Result<Vec<String>, String> {
    let trimmed = text.trim_start();
    let raw: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<String>>(trimmed).map_err(|e| e.to_string())?
    } else {
        text.lines().map(str::to_owned).collect()
    };
    Ok(raw
        .into_iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect())
}

/// Reads `labeled/<category>.csv` (columns `text`, `tags`).
///
/// With a `pool`, every tag is checked against it according to `policy`;
/// without one, tags are taken as they are (used to generate pools).
pub fn load_labeled(
    path: &Path,
    category: Category,
    pool: Option<&EtalonPool>,
    policy: UnknownTagPolicy,
) -> Result<LabeledSet, DataError> {
    let table = Table::read(path, b',')?;
    table.require(&["text", "tags"])?;
    let mut rows = Vec::new();
    let mut unknown_tags = Vec::new();
    for row in table.rows() {
        let stack = parse_row(&row)?;
        if let Some(pool) = pool {
            for tag in &stack.tags {
                if !pool.contains(tag) {
                    match policy {
                        UnknownTagPolicy::Error => {
                            return Err(DataError::UnknownTag {
                                path: table.path().to_owned(),
                                row: row.number,
                                tag: tag.clone(),
                                category: category.name().to_owned(),
                            });
                        }
                        UnknownTagPolicy::Report => unknown_tags.push((row.number, tag.clone())),
                    }
                }
            }
        }
        rows.push(stack);
    }
    Ok(LabeledSet {
        category,
        path: path.to_owned(),
        rows,
        unknown_tags,
    })
}

fn parse_row(row: &Row<'_>) -> Result<ReviewStack, DataError> {
    let text = row.get("text")?;
    let reviews = parse_reviews(text).map_err(|reason| DataError::BadJson {
        path: row.path().to_owned(),
        row: row.number,
        field: "text".to_owned(),
        expected: "a JSON list of strings (the field starts with `[`)",
        reason,
        value: crate::error::excerpt(text),
    })?;
    if reviews.is_empty() {
        return Err(row.bad_value("text", text, "no review text in the stack"));
    }
    let raw_tags: Vec<String> = row.json("tags", "a JSON list of tag strings")?;
    let mut tags: Vec<String> = Vec::with_capacity(raw_tags.len());
    for tag in raw_tags {
        let tag = tag.trim().to_owned();
        if tag.is_empty() {
            return Err(row.bad_value("tags", row.get("tags")?, "empty tag in the list"));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(ReviewStack {
        row: row.number,
        reviews,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    fn load(bytes: &[u8]) -> Result<LabeledSet, DataError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "bags.csv", bytes);
        load_labeled(&path, Category::Bags, None, UnknownTagPolicy::Error)
    }

    #[test]
    fn parses_json_lists_newlines_bom_and_empty_tags() {
        let csv = "\u{feff}text,tags\n\
                   \"[\"\"Удобная\"\", \"\" Красивая \"\"]\",\"[\"\"Удобная\"\"]\"\n\
                   \"Первый отзыв\nВторой отзыв\n\n\",[]\n";
        let set = load(csv.as_bytes()).expect("valid file");
        assert_eq!(set.rows.len(), 2);
        assert_eq!(set.rows[0].reviews, ["Удобная", "Красивая"]);
        assert_eq!(set.rows[0].tags, ["Удобная"]);
        assert_eq!(set.rows[1].reviews, ["Первый отзыв", "Второй отзыв"]);
        assert!(set.rows[1].tags.is_empty());
        assert_eq!(set.rows[1].row, 2);
    }

    #[test]
    fn bad_json_names_file_row_field_and_value() {
        let err = load("text,tags\nok,[]\nfine,\"[\"\"a\"\",\"\n".as_bytes())
            .expect_err("broken tags JSON");
        let msg = err.to_string();
        assert!(matches!(err, DataError::BadJson { row: 2, .. }), "{msg}");
        assert!(
            msg.contains("bags.csv") && msg.contains("row 2") && msg.contains("`tags`"),
            "{msg}"
        );
        assert!(msg.contains("[\\\"a\\\","), "{msg}");
    }

    #[test]
    fn missing_column_lists_the_header() {
        let err = load(b"text,labels\nx,[]\n").expect_err("no tags column");
        assert_eq!(
            err.to_string().split_once(": ").map(|x| x.1),
            Some("missing column `tags` (header has: text, labels)")
        );
    }

    #[test]
    fn empty_file_and_header_only_are_errors() {
        assert!(matches!(load(b""), Err(DataError::EmptyFile { .. })));
        assert!(matches!(
            load(b"\xEF\xBB\xBF\n"),
            Err(DataError::EmptyFile { .. })
        ));
        assert!(matches!(
            load(b"text,tags\n"),
            Err(DataError::NoRows { .. })
        ));
    }

    #[test]
    fn invalid_utf8_names_row_and_field() {
        let err = load(b"text,tags\nok,[]\n\"bad \xff\xfe text\",[]\n").expect_err("invalid utf-8");
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::InvalidUtf8 { row: 2, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("`text`") && msg.contains("bad \u{fffd}"),
            "{msg}"
        );
    }

    #[test]
    fn ragged_row_is_a_csv_error_with_row() {
        let err = load(b"text,tags\nok,[],extra\n").expect_err("three fields");
        assert!(matches!(err, DataError::Csv { row: 1, .. }), "{err}");
    }

    #[test]
    fn text_json_must_be_strings_and_nonempty() {
        let err = load(b"text,tags\n\"[1, 2]\",[]\n").expect_err("numbers, not strings");
        assert!(
            matches!(err, DataError::BadJson { ref field, .. } if field == "text"),
            "{err}"
        );
        let err = load(b"text,tags\n\"[\"\" \"\"]\",[]\n").expect_err("only blank reviews");
        assert!(err.to_string().contains("no review text"), "{err}");
    }

    #[test]
    fn unknown_tags_error_or_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            &dir,
            "bags.csv",
            "text,tags\nx,\"[\"\"Лёгкая\"\",\"\"Новая\"\"]\"\n".as_bytes(),
        );
        let pool = EtalonPool::new(Category::Bags, vec!["Лёгкая".into()]).expect("pool");
        let err = load_labeled(&path, Category::Bags, Some(&pool), UnknownTagPolicy::Error)
            .expect_err("Новая is unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("row 1") && msg.contains("\"Новая\"") && msg.contains("`bags`"),
            "{msg}"
        );
        let set = load_labeled(&path, Category::Bags, Some(&pool), UnknownTagPolicy::Report)
            .expect("report mode keeps going");
        assert_eq!(set.unknown_tags, [(1, "Новая".to_owned())]);
        assert_eq!(set.rows[0].tags, ["Лёгкая", "Новая"]);
    }
}
