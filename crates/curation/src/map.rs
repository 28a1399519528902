//! Mapping raw tags onto the etalon pools (the step that made `labeled/`): each product's
//! raw tags, normalised, are compared by cosine with every tag of its category's pool; the
//! `top_k` most similar at or above a threshold are accepted. The result is a
//! human-editable CSV ([`write_map_csv`]); the edited file ([`read_map_csv`]) becomes
//! training files in the `labeled/` layout ([`labeled_from_map`], [`write_labeled`]),
//! never with two tags of one exclusive group on a product (the most similar stays).
//!
//! [`agreement`] measures a mapping against reference labels (micro-F1, precision, recall).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use lamoda_data::{Category, EtalonPool, Product, Routing};
use serde::Serialize;

use crate::CurationError;
use crate::embed::dot;
use crate::error::{check_cosine, csv_error, excerpt};
use crate::pool::RawTags;
use lamoda_data::normalize_tag;

/// The columns of the mapping file, in order.
pub const MAP_COLUMNS: [&str; 9] = [
    "sku",
    "good_type",
    "category",
    "fallback",
    "raw_tag",
    "etalon_tag",
    "rank",
    "similarity",
    "accepted",
];

/// A category's pool with the vector of each tag.
#[derive(Debug, Clone)]
pub struct PoolSpace {
    /// The pool.
    pub pool: EtalonPool,
    /// One unit vector per pool tag, in pool order.
    pub vectors: Vec<Vec<f32>>,
}

/// One raw tag of a product with its most similar pool tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// The raw tag, normalised ([`normalize_tag`]).
    pub raw_tag: String,
    /// `(pool tag index, cosine)`, most similar first (ties: pool order).
    pub best: Vec<(usize, f32)>,
}

/// A product's raw tags with their candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductCandidates {
    /// Its SKU.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// The category it routes to.
    pub category: Category,
    /// Whether that is the fallback route (the good type has no route of its own).
    pub fallback: bool,
    /// One entry per distinct normalised raw tag, in first-appearance order.
    pub tags: Vec<Candidates>,
}

/// The `k` most similar pool tags of every raw tag of every product. `vector(tag)` gives
/// the unit vector of a normalised tag; a tag without one is an error naming it.
pub fn candidates(
    products: &[RawTags],
    routing: &Routing,
    spaces: &BTreeMap<Category, PoolSpace>,
    vector: impl Fn(&str) -> Option<Vec<f32>>,
    k: usize,
) -> Result<Vec<ProductCandidates>, CurationError> {
    let mut out = Vec::with_capacity(products.len());
    for product in products {
        let route = routing.route(&product.good_type);
        let space = spaces
            .get(&route.category)
            .ok_or_else(|| CurationError::Config {
                field: "etalon pools",
                reason: format!(
                    "no pool of category {} (good type {} routes there)",
                    route.category, product.good_type
                ),
                value: route.category.to_string(),
            })?;
        let mut seen = BTreeSet::new();
        let mut tags = Vec::new();
        for raw in &product.tags {
            let tag = normalize_tag(raw);
            if tag.is_empty() || !seen.insert(tag.clone()) {
                continue;
            }
            let v = vector(&tag).ok_or_else(|| CurationError::Config {
                field: "tag vectors",
                reason: format!("no vector for the raw tag of product {}", product.sku),
                value: tag.clone(),
            })?;
            tags.push(Candidates {
                best: top_k(&v, &space.vectors, k),
                raw_tag: tag,
            });
        }
        out.push(ProductCandidates {
            sku: product.sku.clone(),
            good_type: product.good_type.clone(),
            category: route.category,
            fallback: route.fallback,
            tags,
        });
    }
    Ok(out)
}

/// The `k` rows of `vectors` most similar to `v`, most similar first (ties: lower index).
pub fn top_k(v: &[f32], vectors: &[Vec<f32>], k: usize) -> Vec<(usize, f32)> {
    let mut sims: Vec<(usize, f32)> = vectors
        .iter()
        .enumerate()
        .map(|(i, p)| (i, dot(v, p)))
        .collect();
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims.truncate(k);
    sims
}

/// How raw tags are accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapOptions {
    /// The lowest accepted cosine.
    pub threshold: f32,
    /// Candidates per raw tag (the most similar `top_k` at or above the threshold).
    pub top_k: usize,
}

impl MapOptions {
    /// Checks the settings: the threshold a cosine in -1..1, `top_k` at least 1.
    pub fn check(&self) -> Result<(), CurationError> {
        check_cosine("--threshold", self.threshold)?;
        if self.top_k == 0 {
            return Err(CurationError::Setting {
                field: "--top-k",
                value: self.top_k.to_string(),
                message: "--top-k must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// Every text the mapping embeds: each etalon tag of `pools` and each raw tag of
/// `products`, normalised ([`normalize_tag`]; blank raw tags skipped), distinct, sorted.
pub fn tag_texts(products: &[RawTags], pools: &BTreeMap<Category, EtalonPool>) -> Vec<String> {
    let mut set = BTreeSet::new();
    for pool in pools.values() {
        for t in &pool.tags {
            set.insert(normalize_tag(t));
        }
    }
    for p in products {
        for t in &p.tags {
            let n = normalize_tag(t);
            if !n.is_empty() {
                set.insert(n);
            }
        }
    }
    set.into_iter().collect()
}

/// The pool space of every pool: the pool with the vector of each of its tags, looked up
/// by normalised tag in `vectors`; a tag without a vector is an error naming it.
pub fn pool_spaces(
    pools: &BTreeMap<Category, EtalonPool>,
    vectors: &HashMap<String, Vec<f32>>,
) -> Result<BTreeMap<Category, PoolSpace>, CurationError> {
    let mut out = BTreeMap::new();
    for (category, pool) in pools {
        let vs = pool
            .tags
            .iter()
            .map(|t| {
                vectors.get(&normalize_tag(t)).cloned().ok_or_else(|| {
                    CurationError::MissingVector {
                        what: "etalon tag",
                        text: t.clone(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(
            *category,
            PoolSpace {
                pool: pool.clone(),
                vectors: vs,
            },
        );
    }
    Ok(out)
}

/// What a mapping holds, for its one-line report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSummary {
    /// Products mapped.
    pub products: usize,
    /// Of them, routed by the fallback route.
    pub fallback: usize,
    /// Distinct normalised raw tags over the products.
    pub raw_tags: usize,
    /// Rows of the mapping file.
    pub rows: usize,
    /// Rows accepted.
    pub accepted: usize,
    /// Products that get at least one etalon tag ([`select`]).
    pub products_with_tags: usize,
}

/// The counts of a mapping: `products` mapped into `rows` under `options`.
pub fn map_summary(
    products: &[ProductCandidates],
    spaces: &BTreeMap<Category, PoolSpace>,
    rows: &[MapRow],
    options: MapOptions,
) -> MapSummary {
    MapSummary {
        products: products.len(),
        fallback: products.iter().filter(|p| p.fallback).count(),
        raw_tags: products.iter().map(|p| p.tags.len()).sum(),
        rows: rows.len(),
        accepted: rows.iter().filter(|r| r.accepted).count(),
        products_with_tags: products
            .iter()
            .filter(|p| {
                spaces
                    .get(&p.category)
                    .is_some_and(|space| !select(p, &space.pool, options).is_empty())
            })
            .count(),
    }
}

/// A product's accepted etalon tags under `options`, in pool order, with at most one tag
/// per exclusive group (the most similar stays; ties: pool order).
pub fn select(product: &ProductCandidates, pool: &EtalonPool, options: MapOptions) -> Vec<String> {
    let mut best: BTreeMap<usize, f32> = BTreeMap::new();
    for tag in &product.tags {
        for &(i, sim) in tag.best.iter().take(options.top_k) {
            if sim >= options.threshold {
                let e = best.entry(i).or_insert(sim);
                *e = e.max(sim);
            }
        }
    }
    let scored: Vec<(String, f32)> = best
        .into_iter()
        .map(|(i, s)| (pool.tags[i].clone(), s))
        .collect();
    resolve_exclusive(scored, pool)
}

/// Keeps, of tags with scores, the best-scored one of each exclusive group (ties: pool
/// order) and returns them in pool order.
pub fn resolve_exclusive(scored: Vec<(String, f32)>, pool: &EtalonPool) -> Vec<String> {
    let index = |t: &str| pool.index_of(t).unwrap_or(usize::MAX);
    let mut kept: Vec<(String, f32)> = Vec::new();
    let mut ordered = scored;
    ordered.sort_by(|a, b| b.1.total_cmp(&a.1).then(index(&a.0).cmp(&index(&b.0))));
    for (tag, score) in ordered {
        if kept.iter().any(|(t, _)| *t == tag) {
            continue;
        }
        let group = pool.exclusive.iter().position(|g| g.tags.contains(&tag));
        let taken =
            group.is_some_and(|g| kept.iter().any(|(t, _)| pool.exclusive[g].tags.contains(t)));
        if !taken {
            kept.push((tag, score));
        }
    }
    kept.sort_by_key(|(t, _)| index(t));
    kept.into_iter().map(|(t, _)| t).collect()
}

/// One row of the mapping file: a raw tag of a product and one of its candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct MapRow {
    /// The product's SKU.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// Its category.
    pub category: Category,
    /// Whether the category is the fallback route.
    pub fallback: bool,
    /// The raw tag (normalised).
    pub raw_tag: String,
    /// The candidate etalon tag.
    pub etalon_tag: String,
    /// Its rank among the raw tag's candidates (1 = most similar).
    pub rank: usize,
    /// The cosine.
    pub similarity: f32,
    /// Whether it becomes a label (editable).
    pub accepted: bool,
}

/// The rows of the mapping file: `top_k` candidates of every raw tag, accepted when at or
/// above the threshold. (Exclusive groups are resolved when training files are made.)
pub fn map_rows(
    products: &[ProductCandidates],
    spaces: &BTreeMap<Category, PoolSpace>,
    options: MapOptions,
) -> Vec<MapRow> {
    let mut rows = Vec::new();
    for product in products {
        let Some(space) = spaces.get(&product.category) else {
            continue;
        };
        for tag in &product.tags {
            for (rank, &(i, sim)) in tag.best.iter().take(options.top_k).enumerate() {
                rows.push(MapRow {
                    sku: product.sku.clone(),
                    good_type: product.good_type.clone(),
                    category: product.category,
                    fallback: product.fallback,
                    raw_tag: tag.raw_tag.clone(),
                    etalon_tag: space.pool.tags[i].clone(),
                    rank: rank + 1,
                    similarity: sim,
                    accepted: sim >= options.threshold,
                });
            }
        }
    }
    rows
}

/// Writes the mapping file ([`MAP_COLUMNS`]; `accepted` as `yes`/`no`, similarity to 4
/// decimals).
pub fn write_map_csv(path: &Path, rows: &[MapRow]) -> Result<(), CurationError> {
    let mut writer = csv::Writer::from_path(path).map_err(|e| csv_error(path, e))?;
    writer
        .write_record(MAP_COLUMNS)
        .map_err(|e| csv_error(path, e))?;
    for row in rows {
        writer
            .write_record([
                row.sku.as_str(),
                row.good_type.as_str(),
                row.category.name(),
                if row.fallback { "yes" } else { "no" },
                row.raw_tag.as_str(),
                row.etalon_tag.as_str(),
                &row.rank.to_string(),
                &format!("{:.4}", row.similarity),
                if row.accepted { "yes" } else { "no" },
            ])
            .map_err(|e| csv_error(path, e))?;
    }
    writer.flush().map_err(|source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot write the mapping",
        source,
    })
}

fn parse_yes_no(value: &str) -> Option<bool> {
    match value.trim().to_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "да" | "x" | "+" => Some(true),
        "no" | "n" | "false" | "0" | "нет" | "" | "-" => Some(false),
        _ => None,
    }
}

/// Reads an (edited) mapping file: the columns of [`MAP_COLUMNS`] (`fallback`, `rank` and
/// `similarity` may be left out; the order is free; other columns are ignored). Each
/// accepted row's etalon tag must be in its category's pool; `accepted` is yes/no
/// (also y/n, true/false, 1/0, да/нет; blank = no).
pub fn read_map_csv(
    path: &Path,
    pools: &BTreeMap<Category, EtalonPool>,
) -> Result<Vec<MapRow>, CurationError> {
    let bytes = std::fs::read(path).map_err(|source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot read the mapping",
        source,
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let required = [
        "sku",
        "good_type",
        "category",
        "raw_tag",
        "etalon_tag",
        "accepted",
    ];
    let mut at = HashMap::new();
    for name in required {
        let i = column(name).ok_or_else(|| CurationError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            expected: required.join(", "),
        })?;
        at.insert(name, i);
    }
    let similarity_at = column("similarity");
    let rank_at = column("rank");
    let fallback_at = column("fallback");
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 1;
        let record = record.map_err(|e| csv_error(path, e))?;
        let get = |name: &str| record.get(at[name]).unwrap_or("").trim();
        let bad = |field: &str, reason: String, value: &str| CurationError::BadValue {
            path: path.to_owned(),
            line,
            field: field.to_owned(),
            reason,
            value: excerpt(value),
        };
        let accepted = parse_yes_no(get("accepted"))
            .ok_or_else(|| bad("accepted", "expected yes or no".to_owned(), get("accepted")))?;
        let category: Category = get("category")
            .parse()
            .map_err(|e: lamoda_data::DataError| bad("category", e.to_string(), get("category")))?;
        let etalon_tag = get("etalon_tag").to_owned();
        if accepted {
            let pool = pools.get(&category).ok_or_else(|| {
                bad(
                    "category",
                    "no etalon pool for this category".to_owned(),
                    category.name(),
                )
            })?;
            if !pool.contains(&etalon_tag) {
                return Err(bad(
                    "etalon_tag",
                    format!("not a tag of the {category} pool"),
                    &etalon_tag,
                ));
            }
        }
        if get("sku").is_empty() {
            return Err(bad("sku", "empty".to_owned(), ""));
        }
        let similarity = match similarity_at.and_then(|i| record.get(i)).map(str::trim) {
            None | Some("") => f32::NAN,
            Some(v) => v
                .parse::<f32>()
                .map_err(|e| bad("similarity", e.to_string(), v))?,
        };
        let rank = match rank_at.and_then(|i| record.get(i)).map(str::trim) {
            None | Some("") => 0,
            Some(v) => v
                .parse()
                .map_err(|_| bad("rank", "expected a whole number".to_owned(), v))?,
        };
        let fallback = fallback_at
            .and_then(|i| record.get(i))
            .and_then(parse_yes_no)
            .unwrap_or(false);
        rows.push(MapRow {
            sku: get("sku").to_owned(),
            good_type: get("good_type").to_owned(),
            category,
            fallback,
            raw_tag: get("raw_tag").to_owned(),
            etalon_tag,
            rank,
            similarity,
            accepted,
        });
    }
    Ok(rows)
}

/// One product of a training file made from a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledProduct {
    /// Its SKU.
    pub sku: String,
    /// Its reviews.
    pub reviews: Vec<String>,
    /// Its etalon tags, in pool order.
    pub tags: Vec<String>,
}

/// Training sets made from a mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabeledFromMap {
    /// Per category, its products in the order of the product table.
    pub sets: BTreeMap<Category, Vec<LabeledProduct>>,
    /// SKUs of the mapping that the product table does not hold (left out).
    pub unknown_skus: Vec<String>,
    /// Tags dropped because another tag of their exclusive group was more similar.
    pub dropped_exclusive: usize,
    /// Products written with no accepted tag.
    pub without_tags: usize,
}

/// Training sets from the accepted rows of a mapping: every product of the mapping found
/// in `products` (by SKU), with its accepted etalon tags (a tag's score: its highest
/// similarity; an edited row without one counts as 1), one per exclusive group.
pub fn labeled_from_map(
    rows: &[MapRow],
    products: &[Product],
    pools: &BTreeMap<Category, EtalonPool>,
) -> LabeledFromMap {
    let mut by_sku: BTreeMap<&str, (Category, BTreeMap<&str, f32>)> = BTreeMap::new();
    for row in rows {
        let entry = by_sku
            .entry(row.sku.as_str())
            .or_insert_with(|| (row.category, BTreeMap::new()));
        if row.accepted {
            let score = if row.similarity.is_nan() {
                1.0
            } else {
                row.similarity
            };
            let s = entry.1.entry(row.etalon_tag.as_str()).or_insert(score);
            *s = s.max(score);
        }
    }
    let mut out = LabeledFromMap::default();
    let mut found = BTreeSet::new();
    for product in products {
        let Some((category, tags)) = by_sku.get(product.sku.as_str()) else {
            continue;
        };
        if !found.insert(product.sku.as_str()) {
            continue;
        }
        let Some(pool) = pools.get(category) else {
            continue;
        };
        let scored: Vec<(String, f32)> = tags.iter().map(|(t, s)| (t.to_string(), *s)).collect();
        let n = scored.len();
        let kept = resolve_exclusive(scored, pool);
        out.dropped_exclusive += n - kept.len();
        if kept.is_empty() {
            out.without_tags += 1;
        }
        out.sets.entry(*category).or_default().push(LabeledProduct {
            sku: product.sku.clone(),
            reviews: product.reviews.clone(),
            tags: kept,
        });
    }
    out.unknown_skus = by_sku
        .keys()
        .filter(|s| !found.contains(*s))
        .map(|s| s.to_string())
        .collect();
    out
}

/// Writes each set as `<dir>/labeled/<category>.csv` (`text`: the reviews as a JSON list,
/// `tags`: a JSON list), the layout `lamoda-data` reads; returns the files written.
pub fn write_labeled(dir: &Path, sets: &LabeledFromMap) -> Result<Vec<PathBuf>, CurationError> {
    let labeled = dir.join("labeled");
    std::fs::create_dir_all(&labeled).map_err(|source| CurationError::Io {
        path: labeled.clone(),
        action: "cannot create",
        source,
    })?;
    let mut written = Vec::new();
    for (category, products) in &sets.sets {
        let path = lamoda_data::LabeledSet::path_in(dir, *category);
        let mut writer = csv::Writer::from_path(&path).map_err(|e| csv_error(&path, e))?;
        writer
            .write_record(["text", "tags"])
            .map_err(|e| csv_error(&path, e))?;
        for product in products {
            let text = serde_json::to_string(&product.reviews).unwrap_or_default();
            let tags = serde_json::to_string(&product.tags).unwrap_or_default();
            writer
                .write_record([text, tags])
                .map_err(|e| csv_error(&path, e))?;
        }
        writer.flush().map_err(|source| CurationError::Io {
            path: path.clone(),
            action: "cannot write",
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The key under which two review stacks are the same text: the reviews joined by spaces,
/// lower case, `ё` → `е`, every run of white space one space.
pub fn text_key<S: AsRef<str>>(reviews: &[S]) -> String {
    let joined: Vec<&str> = reviews.iter().map(AsRef::as_ref).collect();
    joined
        .join(" ")
        .to_lowercase()
        .replace('ё', "е")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Agreement of a mapping with reference labels at one setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// The reference.
    pub reference: String,
    /// The threshold.
    pub threshold: f32,
    /// Candidates per raw tag.
    pub top_k: usize,
    /// Products compared.
    pub products: usize,
    /// Tags both have.
    pub tp: usize,
    /// Tags only the mapping has.
    pub fp: usize,
    /// Tags only the reference has.
    pub fn_: usize,
}

impl Agreement {
    /// Precision (1 when the mapping gave no tag).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Recall (1 when the reference has no tag).
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Micro-F1 (1 when neither has a tag).
    pub fn f1(&self) -> f64 {
        lamoda_metrics::metrics::micro_f1_from_counts(self.tp, self.fp, self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Micro agreement of the mapping with `gold` (SKU → etalon tags) at every threshold and
/// top-k: over the products that have a gold entry.
pub fn agreement(
    reference: &str,
    products: &[ProductCandidates],
    spaces: &BTreeMap<Category, PoolSpace>,
    gold: &HashMap<String, Vec<String>>,
    thresholds: &[f32],
    top_ks: &[usize],
) -> Vec<Agreement> {
    let mut out = Vec::new();
    for &top_k in top_ks {
        for &threshold in thresholds {
            let mut a = Agreement {
                reference: reference.to_owned(),
                threshold,
                top_k,
                products: 0,
                tp: 0,
                fp: 0,
                fn_: 0,
            };
            for product in products {
                let (Some(want), Some(space)) =
                    (gold.get(&product.sku), spaces.get(&product.category))
                else {
                    continue;
                };
                let got = select(product, &space.pool, MapOptions { threshold, top_k });
                a.products += 1;
                let tp = got.iter().filter(|t| want.contains(t)).count();
                a.tp += tp;
                a.fp += got.len() - tp;
                a.fn_ += want.iter().filter(|t| !got.contains(t)).count();
            }
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_data::TagGroup;

    fn pool() -> EtalonPool {
        let mut pool = EtalonPool::new(
            Category::Shoes,
            vec!["Удобные".into(), "Маломерят".into(), "Большемерки".into()],
        )
        .expect("pool");
        pool.exclusive.push(TagGroup {
            name: "size".into(),
            tags: vec!["Маломерят".into(), "Большемерки".into()],
        });
        pool
    }

    #[test]
    fn select_honours_threshold_top_k_and_exclusive_groups() {
        let product = ProductCandidates {
            sku: "1".into(),
            good_type: "Shoes".into(),
            category: Category::Shoes,
            fallback: false,
            tags: vec![
                Candidates {
                    raw_tag: "маломерки".into(),
                    best: vec![(1, 0.91), (2, 0.80)],
                },
                Candidates {
                    raw_tag: "большие".into(),
                    best: vec![(2, 0.85), (0, 0.70)],
                },
                Candidates {
                    raw_tag: "удобная колодка".into(),
                    best: vec![(0, 0.74), (1, 0.60)],
                },
            ],
        };
        let pool = pool();
        let at = |threshold, top_k| select(&product, &pool, MapOptions { threshold, top_k });
        // Маломерят (0.91) beats Большемерки (0.85) in the size group.
        assert_eq!(at(0.72, 1), ["Удобные", "Маломерят"]);
        assert_eq!(at(0.9, 1), ["Маломерят"]);
        assert_eq!(at(0.95, 2), Vec::<String>::new());
        assert_eq!(at(0.69, 2), ["Удобные", "Маломерят"]);
    }

    #[test]
    fn agreement_counts_micro() {
        let spaces = BTreeMap::from([(
            Category::Shoes,
            PoolSpace {
                pool: pool(),
                vectors: vec![],
            },
        )]);
        let product = ProductCandidates {
            sku: "1".into(),
            good_type: "Shoes".into(),
            category: Category::Shoes,
            fallback: false,
            tags: vec![Candidates {
                raw_tag: "удобные".into(),
                best: vec![(0, 1.0), (2, 0.8)],
            }],
        };
        let gold = HashMap::from([(
            "1".to_owned(),
            vec!["Удобные".to_owned(), "Маломерят".to_owned()],
        )]);
        let table = agreement("t", &[product], &spaces, &gold, &[0.75], &[1, 2]);
        assert_eq!((table[0].tp, table[0].fp, table[0].fn_), (1, 0, 1));
        assert_eq!((table[1].tp, table[1].fp, table[1].fn_), (1, 1, 1));
        assert!((table[0].f1() - 2.0 / 3.0).abs() < 1e-9);
        assert!((table[1].precision() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_text_key_ignores_case_yo_and_white_space() {
        assert_eq!(
            text_key(&["Отличные  Ёлки\n", "ok"]),
            text_key(&["отличные елки ok"])
        );
    }

    #[test]
    fn an_edited_map_with_a_foreign_tag_names_row_and_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("map.csv");
        std::fs::write(
            &path,
            "sku,good_type,category,raw_tag,etalon_tag,similarity,accepted\n\
             A,Shoes,shoes,удобные,Удобные,1.0,yes\n\
             A,Shoes,shoes,мягкие,Мягкие,0.8,да\n",
        )
        .expect("write");
        let pools = BTreeMap::from([(Category::Shoes, pool())]);
        let err = read_map_csv(&path, &pools).expect_err("foreign tag");
        let text = err.to_string();
        assert!(text.contains("line 2, field `etalon_tag`"), "{text}");
        assert!(text.contains("\"Мягкие\""), "{text}");
        std::fs::write(
            &path,
            "sku,good_type,category,raw_tag,etalon_tag,accepted\nA,Shoes,shoes,x,Удобные,maybe\n",
        )
        .expect("write");
        let err = read_map_csv(&path, &pools).expect_err("bad accepted");
        assert!(err.to_string().contains("field `accepted`"), "{err}");
    }
}
