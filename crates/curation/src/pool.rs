//! The raw-tag pool: every good type's raw tags, normalised ([`normalize_tag`]), with how
//! many products carry each (the `tag_pulls_raw.csv` step).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::CurationError;
use crate::store::{Status, read_store};
use lamoda_data::{normalize_tag, tidy_tag};

/// One product's raw tags.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTags {
    /// The product's SKU.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// Its raw tags, as written.
    pub tags: Vec<String>,
}

/// The raw tags of an input file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawInput {
    /// One entry per product.
    pub products: Vec<RawTags>,
    /// Records of a label store that say `failed` (left out).
    pub failed: usize,
}

/// Reads raw tags from a label store (JSONL, by the extension `.jsonl`, or content that
/// starts with `{`: the `ok` records; a cut last line is ignored) or from a product table
/// in the `reviews_sampled_with_tags.csv` layout (its `tags` column, `; `-separated).
pub fn read_raw_tags(path: &Path) -> Result<RawInput, CurationError> {
    let jsonl = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("jsonl") => true,
        Some(ext) if ext.eq_ignore_ascii_case("csv") => false,
        _ => {
            let bytes = std::fs::read(path).map_err(|source| CurationError::Io {
                path: path.to_owned(),
                action: "cannot read",
                source,
            })?;
            bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        }
    };
    if jsonl {
        let loaded = read_store(path)?;
        let mut input = RawInput::default();
        for record in loaded.records {
            match record.status {
                Status::Ok => input.products.push(RawTags {
                    sku: record.sku,
                    good_type: record.good_type,
                    tags: record.tags,
                }),
                Status::Failed => input.failed += 1,
            }
        }
        return Ok(input);
    }
    let products = lamoda_data::load_products(path)?;
    let mut input = RawInput::default();
    for product in products {
        let Some(tags) = product.tags else {
            return Err(CurationError::NoTags {
                path: path.to_owned(),
            });
        };
        input.products.push(RawTags {
            sku: product.sku,
            good_type: product.good_type,
            tags,
        });
    }
    Ok(input)
}

/// One normalised tag of a good type.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEntry {
    /// The good type.
    pub good_type: String,
    /// The normalised tag.
    pub tag: String,
    /// Products of the good type that carry it (once per product, whatever its spellings).
    pub frequency: usize,
    /// The spellings seen (tidied, case kept), most frequent first, then alphabetical.
    pub variants: Vec<String>,
}

/// Every good type's pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pool {
    /// By good type (alphabetical), then frequency (highest first), then tag.
    pub entries: Vec<PoolEntry>,
    /// Products per good type.
    pub products: BTreeMap<String, usize>,
}

impl Pool {
    /// The entries of one good type.
    pub fn of<'a>(&'a self, good_type: &'a str) -> impl Iterator<Item = &'a PoolEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.good_type == good_type)
    }
}

/// Pools the products' raw tags per good type: each tag normalised, blank ones skipped,
/// a product counted once per normalised tag.
pub fn pool_tags(products: &[RawTags]) -> Pool {
    struct Counts {
        frequency: usize,
        variants: HashMap<String, usize>,
    }
    let mut by_type: BTreeMap<&str, HashMap<String, Counts>> = BTreeMap::new();
    let mut pool = Pool::default();
    for product in products {
        *pool.products.entry(product.good_type.clone()).or_default() += 1;
        let tags = by_type.entry(&product.good_type).or_default();
        let mut seen = HashSet::new();
        for raw in &product.tags {
            let tag = normalize_tag(raw);
            if tag.is_empty() {
                continue;
            }
            let counts = tags.entry(tag.clone()).or_insert_with(|| Counts {
                frequency: 0,
                variants: HashMap::new(),
            });
            *counts.variants.entry(tidy_tag(raw)).or_default() += 1;
            if seen.insert(tag) {
                counts.frequency += 1;
            }
        }
    }
    for (good_type, tags) in by_type {
        let mut entries: Vec<PoolEntry> = tags
            .into_iter()
            .map(|(tag, counts)| {
                let mut variants: Vec<(String, usize)> = counts.variants.into_iter().collect();
                variants.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                PoolEntry {
                    good_type: good_type.to_owned(),
                    tag,
                    frequency: counts.frequency,
                    variants: variants.into_iter().map(|(v, _)| v).collect(),
                }
            })
            .collect();
        entries.sort_by(|a, b| {
            b.frequency
                .cmp(&a.frequency)
                .then_with(|| a.tag.cmp(&b.tag))
        });
        pool.entries.extend(entries);
    }
    pool
}

/// Writes the pool as CSV: `good_type,tag,frequency,variants` (`variants`: the spellings,
/// `; `-separated).
pub fn write_pool_csv(path: &Path, pool: &Pool) -> Result<(), CurationError> {
    let io = |source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot write the pool",
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| io(e.into()))?;
    writer
        .write_record(["good_type", "tag", "frequency", "variants"])
        .map_err(|e| io(e.into()))?;
    for entry in &pool.entries {
        writer
            .write_record([
                entry.good_type.as_str(),
                entry.tag.as_str(),
                &entry.frequency.to_string(),
                &entry.variants.join("; "),
            ])
            .map_err(|e| io(e.into()))?;
    }
    writer.flush().map_err(io)
}

/// Reads a pool written by [`write_pool_csv`] (`good_type,tag,frequency,variants`; the
/// `variants` column may be left out). Tags are normalised again; products per good type
/// are unknown there and left empty.
pub fn read_pool_csv(path: &Path) -> Result<Pool, CurationError> {
    let bytes = std::fs::read(path).map_err(|source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot read the pool",
        source,
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::Reader::from_reader(bytes);
    let csv_error = |e: csv::Error| CurationError::Csv {
        path: path.to_owned(),
        line: e.position().map_or(0, |p| p.line() as usize),
        reason: e.to_string(),
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let expected = "good_type, tag, frequency";
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| CurationError::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
                expected: expected.to_owned(),
            })
    };
    let (gt, tg, fq) = (column("good_type")?, column("tag")?, column("frequency")?);
    let vr = headers.iter().position(|h| h.trim() == "variants");
    let mut pool = Pool::default();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(csv_error)?;
        let line = n + 1;
        let get = |i: usize| record.get(i).unwrap_or("").trim();
        let bad = |field: &str, reason: &str, value: &str| CurationError::BadValue {
            path: path.to_owned(),
            line,
            field: field.to_owned(),
            reason: reason.to_owned(),
            value: crate::error::excerpt(value),
        };
        let tag = normalize_tag(get(tg));
        if tag.is_empty() {
            return Err(bad("tag", "empty after normalisation", get(tg)));
        }
        if get(gt).is_empty() {
            return Err(bad("good_type", "empty", ""));
        }
        let frequency: usize = get(fq)
            .parse()
            .map_err(|_| bad("frequency", "expected a whole number", get(fq)))?;
        let variants = vr
            .map(|i| {
                get(i)
                    .split("; ")
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        pool.entries.push(PoolEntry {
            good_type: get(gt).to_owned(),
            tag,
            frequency,
            variants,
        });
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(sku: &str, good_type: &str, tags: &[&str]) -> RawTags {
        RawTags {
            sku: sku.to_owned(),
            good_type: good_type.to_owned(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tags_pool_per_good_type_once_per_product() {
        let pool = pool_tags(&[
            raw("1", "Shoes", &["Лёгкие", "Удобные", "легкие!"]),
            raw("2", "Shoes", &["Легкие", " "]),
            raw("3", "Bags", &["Легкие"]),
        ]);
        let rows: Vec<(&str, &str, usize, String)> = pool
            .entries
            .iter()
            .map(|e| {
                (
                    e.good_type.as_str(),
                    e.tag.as_str(),
                    e.frequency,
                    e.variants.join("|"),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("Bags", "легкие", 1, "Легкие".to_owned()),
                ("Shoes", "легкие", 2, "Легкие|Лёгкие|легкие".to_owned()),
                ("Shoes", "удобные", 1, "Удобные".to_owned()),
            ]
        );
        assert_eq!(pool.products.get("Shoes"), Some(&2));
        assert_eq!(pool.of("Bags").count(), 1);
    }

    #[test]
    fn a_table_without_tags_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("products.csv");
        std::fs::write(
            &path,
            "product_sku,comment_id,comment_text,name,good_type,good_subtype\n\
             SKU1,[1],\"[\"\"мягкие\"\"]\",Кеды,Shoes,SNEAKERS\n",
        )
        .expect("write");
        let err = read_raw_tags(&path).expect_err("no tags column");
        assert!(matches!(err, CurationError::NoTags { .. }), "{err}");
        assert!(
            err.to_string().contains("products.csv: no `tags` column"),
            "{err}"
        );
    }

    #[test]
    fn the_pool_csv_has_a_header_and_one_row_per_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pool.csv");
        let pool = pool_tags(&[raw("1", "Shoes", &["Легкие", "лёгкие, удобные"])]);
        write_pool_csv(&path, &pool).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "good_type,tag,frequency,variants\nShoes,легкие,1,Легкие\nShoes,легкие удобные,1,\"лёгкие, удобные\"\n"
        );
        let back = read_pool_csv(&path).expect("read back");
        assert_eq!(back.entries, pool.entries);
    }
}
