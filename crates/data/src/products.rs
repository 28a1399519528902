//! Product tables: `reviews_sampled*.csv`, `test_examples.csv`, and the LLM's
//! raw tag pools and mappings (`tag_pulls_*.csv`, `tag_mappings.csv`).

use std::path::Path;

use crate::DataError;
use crate::table::{Row, Table};

/// One product with its reviews, as in `reviews_sampled*.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// 1-based data row (for `test_examples.csv`: the row of its first review).
    pub row: usize,
    /// The product's SKU.
    pub sku: String,
    /// Review ids, parallel to `reviews`.
    pub comment_ids: Vec<u64>,
    /// The reviews, in file order.
    pub reviews: Vec<String>,
    /// Product name.
    pub name: String,
    /// Lamoda good type (`Shoes`, `Bags`, …): routes to a category.
    pub good_type: String,
    /// Lamoda good subtype.
    pub good_subtype: String,
    /// Tags from a `tags` column (`; `-separated), if the file has one:
    /// raw LLM tags or consolidated pool tags depending on the file.
    pub tags: Option<Vec<String>>,
}

/// Splits a `; `-separated tag list; blank entries are skipped.
fn split_tags(value: &str) -> Vec<String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn non_empty<'a>(row: &'a Row<'_>, column: &str) -> Result<&'a str, DataError> {
    let value = row.get(column)?.trim();
    if value.is_empty() {
        return Err(row.bad_value(column, value, "must not be empty"));
    }
    Ok(value)
}

/// Reads a `reviews_sampled*.csv` product table. A `tags` column is read when present.
pub fn load_products(path: &Path) -> Result<Vec<Product>, DataError> {
    let table = Table::read(path, b',')?;
    let columns = [
        "product_sku",
        "comment_id",
        "comment_text",
        "name",
        "good_type",
        "good_subtype",
    ];
    table.require(&columns)?;
    let with_tags = table.has_column("tags");
    let mut products = Vec::new();
    for row in table.rows() {
        let comment_ids: Vec<u64> = row.json("comment_id", "a JSON list of integer ids")?;
        let reviews: Vec<String> = row.json("comment_text", "a JSON list of strings")?;
        if comment_ids.len() != reviews.len() {
            return Err(row.bad_value(
                "comment_id",
                row.get("comment_id")?,
                format!(
                    "{} ids for {} reviews in `comment_text`",
                    comment_ids.len(),
                    reviews.len()
                ),
            ));
        }
        let tags = if with_tags {
            Some(split_tags(row.get("tags")?))
        } else {
            None
        };
        products.push(Product {
            row: row.number,
            sku: non_empty(&row, "product_sku")?.to_owned(),
            comment_ids,
            reviews,
            name: row.get("name")?.trim().to_owned(),
            good_type: non_empty(&row, "good_type")?.to_owned(),
            good_subtype: row.get("good_subtype")?.trim().to_owned(),
            tags,
        });
    }
    Ok(products)
}

/// Reads `test_examples.csv` (`;`-separated single reviews) and groups the
/// reviews of each SKU into one [`Product`], in order of first appearance.
/// Rows of one SKU must agree on name, good_type and good_subtype.
pub fn load_test_examples(path: &Path) -> Result<Vec<Product>, DataError> {
    let table = Table::read(path, b';')?;
    table.require(&[
        "comment_id",
        "product_sku",
        "comment_text",
        "name",
        "good_type",
        "good_subtype",
    ])?;
    let mut products: Vec<Product> = Vec::new();
    for row in table.rows() {
        let id_text = row.get("comment_id")?.trim();
        let id: u64 = id_text
            .parse()
            .map_err(|_| row.bad_value("comment_id", id_text, "not a non-negative integer"))?;
        let sku = non_empty(&row, "product_sku")?;
        let text = non_empty(&row, "comment_text")?;
        let name = row.get("name")?.trim();
        let good_type = non_empty(&row, "good_type")?;
        let subtype = row.get("good_subtype")?.trim();
        match products.iter_mut().find(|p| p.sku == sku) {
            Some(product) => {
                for (field, have, got) in [
                    ("name", &product.name, name),
                    ("good_type", &product.good_type, good_type),
                    ("good_subtype", &product.good_subtype, subtype),
                ] {
                    if have != got {
                        return Err(row.bad_value(
                            field,
                            got,
                            format!("SKU {sku} had {have:?} on row {}", product.row),
                        ));
                    }
                }
                product.comment_ids.push(id);
                product.reviews.push(text.to_owned());
            }
            None => products.push(Product {
                row: row.number,
                sku: sku.to_owned(),
                comment_ids: vec![id],
                reviews: vec![text.to_owned()],
                name: name.to_owned(),
                good_type: good_type.to_owned(),
                good_subtype: subtype.to_owned(),
                tags: None,
            }),
        }
    }
    Ok(products)
}

/// One good type's tag pool from `tag_pulls_raw.csv` / `tag_pulls_best.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TagPool {
    /// The good type.
    pub good_type: String,
    /// Its tags, in file order.
    pub tags: Vec<String>,
}

/// Reads `tag_pulls_raw.csv` or `tag_pulls_best.csv` (`good_type`, `tags`).
pub fn load_tag_pools(path: &Path) -> Result<Vec<TagPool>, DataError> {
    let table = Table::read(path, b',')?;
    table.require(&["good_type", "tags"])?;
    table
        .rows()
        .map(|row| {
            Ok(TagPool {
                good_type: non_empty(&row, "good_type")?.to_owned(),
                tags: split_tags(row.get("tags")?),
            })
        })
        .collect()
}

/// One consolidation step of `tag_mappings.csv`: raw tags merged into one.
#[derive(Debug, Clone, PartialEq)]
pub struct TagMapping {
    /// The good type.
    pub good_type: String,
    /// The raw tags that were merged.
    pub old_tags: Vec<String>,
    /// What they were merged into; `None` when the curators dropped them
    /// (an empty `new_tag`: too vague, e.g. `супер; хорошо; нравится`).
    pub new_tag: Option<String>,
}

/// Reads `tag_mappings.csv` (`good_type`, `old_tags`, `new_tag`).
pub fn load_tag_mappings(path: &Path) -> Result<Vec<TagMapping>, DataError> {
    let table = Table::read(path, b',')?;
    table.require(&["good_type", "old_tags", "new_tag"])?;
    table
        .rows()
        .map(|row| {
            let old_tags = split_tags(row.get("old_tags")?);
            if old_tags.is_empty() {
                return Err(row.bad_value("old_tags", row.get("old_tags")?, "no tags"));
            }
            Ok(TagMapping {
                good_type: non_empty(&row, "good_type")?.to_owned(),
                old_tags,
                new_tag: Some(row.get("new_tag")?.trim())
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    const HEADER: &str = "product_sku,comment_id,comment_text,name,good_type,good_subtype,tags\n";

    #[test]
    fn products_with_raw_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "p.csv",
            &format!(
                "{HEADER}SKU1,\"[1, 2]\",\"[\"\"a\"\", \"\"b\"\"]\",Сумка,Bags,BAG,\"лёгкая; вместительная; \"\n"
            ),
        );
        let products = load_products(&path).expect("valid");
        assert_eq!(products[0].comment_ids, [1, 2]);
        assert_eq!(products[0].reviews, ["a", "b"]);
        assert_eq!(
            products[0].tags.as_deref(),
            Some(&["лёгкая".to_owned(), "вместительная".to_owned()][..])
        );
    }

    #[test]
    fn products_ids_must_match_reviews() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "p.csv",
            &format!("{HEADER}S,\"[1]\",\"[\"\"a\"\", \"\"b\"\"]\",n,Bags,B,\n"),
        );
        let msg = load_products(&path)
            .expect_err("1 id, 2 reviews")
            .to_string();
        assert!(
            msg.contains("row 1") && msg.contains("1 ids for 2 reviews"),
            "{msg}"
        );
    }

    #[test]
    fn products_bad_id_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "p.csv",
            &format!("{HEADER}S,\"[1, x]\",\"[\"\"a\"\"]\",n,Bags,B,\n"),
        );
        let msg = load_products(&path).expect_err("bad id").to_string();
        assert!(
            msg.contains("`comment_id`") && msg.contains("integer ids"),
            "{msg}"
        );
    }

    #[test]
    fn test_examples_group_by_sku() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "t.csv",
            "\u{feff}comment_id;product_sku;comment_text;name;good_type;good_subtype\n\
             1;A;первый;Масло;Beauty_Accs;LIPS\n2;B;другой;Туфли;Shoes;SH\n3;A;второй;Масло;Beauty_Accs;LIPS\n",
        );
        let products = load_test_examples(&path).expect("valid");
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].reviews, ["первый", "второй"]);
        assert_eq!(products[0].comment_ids, [1, 3]);
        assert_eq!(products[1].good_type, "Shoes");
    }

    #[test]
    fn test_examples_inconsistent_good_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "t.csv",
            "comment_id;product_sku;comment_text;name;good_type;good_subtype\n\
             1;A;x;M;Beauty_Accs;L\n2;A;y;M;Shoes;L\n",
        );
        let msg = load_test_examples(&path)
            .expect_err("two good types")
            .to_string();
        assert!(
            msg.contains("row 2") && msg.contains("`good_type`") && msg.contains("\"Shoes\""),
            "{msg}"
        );
    }

    #[test]
    fn mappings_and_pools() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "m.csv",
            "good_type,old_tags,new_tag\nAccs,а; б,в\nAccs,г,\n",
        );
        let maps = load_tag_mappings(&path).expect("valid");
        assert_eq!(maps[0].old_tags, ["а", "б"]);
        assert_eq!(maps[0].new_tag.as_deref(), Some("в"));
        assert_eq!(maps[1].new_tag, None);
        let path = file(&dir, "pools.csv", "good_type,tags\nBags,а; б\n");
        assert_eq!(load_tag_pools(&path).expect("valid")[0].tags, ["а", "б"]);
    }
}
