//! The agreement table of the mapping (`lamoda-tags map --agreement`): the products of the
//! reference raw-tag table (`reviews_sampled_with_tags.csv`) mapped onto their etalon pools
//! at every threshold of [`AGREEMENT_THRESHOLDS`] and top-1/top-2, compared ([`agreement`])
//! with two references of the same products:
//!
//! 1. the pooled labels (`reviews_sampled_with_pull_tags.csv`), restricted to etalon tags
//!    (by normalised form), on the products with a route of their own and at least one
//!    such tag;
//! 2. the `labeled/*.csv` rows whose review text is the product's ([`text_key`]), in the
//!    category the product routes to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use lamoda_data::{Category, EtalonPool, LabeledSet, Product, Routing, normalize_tag};

use crate::CurationError;
use crate::map::{Agreement, agreement, candidates, pool_spaces, tag_texts, text_key};
use crate::pool::RawTags;

/// The thresholds of the agreement table: the 0.6–0.9 of the original bge-m3 mapping, and
/// above, where e5-small's compressed `query:` cosines start to separate.
pub const AGREEMENT_THRESHOLDS: [f32; 10] =
    [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96];

/// The candidates per raw tag the table compares (top-1 and top-2).
pub const AGREEMENT_TOP_KS: [usize; 2] = [1, 2];

/// The name of the pooled-labels reference in the table.
pub const POOLED_REFERENCE: &str = "pooled labels (reviews_sampled_with_pull_tags.csv ∩ etalon)";

/// The name of the labeled-rows reference in the table.
pub const LABELED_REFERENCE: &str = "labeled/*.csv rows with the same text";

/// The products to map and the two references to compare the mapping with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgreementInputs {
    /// The raw tags of every product of the raw-tag table.
    pub raw_tags: Vec<RawTags>,
    /// SKU → its pooled labels that are etalon tags (the pool's spelling).
    pub pooled: HashMap<String, Vec<String>>,
    /// SKU → the tags of the `labeled/` row with the same review text.
    pub labeled: HashMap<String, Vec<String>>,
}

impl AgreementInputs {
    /// Gathers the inputs: `raw` (the raw-tag table: products with a `tags` column),
    /// `pulled` (the pooled-label table), `labeled` (the training files), the routing and
    /// the pools of every category it names.
    pub fn new(
        raw: &[Product],
        pulled: &[Product],
        labeled: &[LabeledSet],
        routing: &Routing,
        pools: &BTreeMap<Category, EtalonPool>,
    ) -> Self {
        let raw_tags = raw
            .iter()
            .map(|p| RawTags {
                sku: p.sku.clone(),
                good_type: p.good_type.clone(),
                tags: p.tags.clone().unwrap_or_default(),
            })
            .collect();
        let mut pooled: HashMap<String, Vec<String>> = HashMap::new();
        for p in pulled {
            let route = routing.route(&p.good_type);
            if route.fallback {
                continue;
            }
            let Some(pool) = pools.get(&route.category) else {
                continue;
            };
            let by_norm: HashMap<String, &String> =
                pool.tags.iter().map(|t| (normalize_tag(t), t)).collect();
            let tags: BTreeSet<String> = p
                .tags
                .iter()
                .flatten()
                .filter_map(|t| by_norm.get(&normalize_tag(t)).map(|t| (*t).clone()))
                .collect();
            if !tags.is_empty() {
                pooled.insert(p.sku.clone(), tags.into_iter().collect());
            }
        }
        let mut by_text: HashMap<String, (Category, &Vec<String>)> = HashMap::new();
        for set in labeled {
            for row in &set.rows {
                by_text.insert(text_key(&row.reviews), (set.category, &row.tags));
            }
        }
        let mut gold_labeled: HashMap<String, Vec<String>> = HashMap::new();
        for p in raw {
            let route = routing.route(&p.good_type);
            if let Some((category, tags)) = by_text.get(&text_key(&p.reviews))
                && *category == route.category
            {
                gold_labeled.insert(p.sku.clone(), (*tags).clone());
            }
        }
        Self {
            raw_tags,
            pooled,
            labeled: gold_labeled,
        }
    }

    /// The texts to embed ([`tag_texts`]): the raw tags and every etalon tag, normalised.
    pub fn texts(&self, pools: &BTreeMap<Category, EtalonPool>) -> Vec<String> {
        tag_texts(&self.raw_tags, pools)
    }
}

/// The agreement table: the mapping of `inputs.raw_tags` (tag vectors from `vectors`, by
/// normalised tag) against the pooled labels, then against the labeled rows, each at every
/// top-k of [`AGREEMENT_TOP_KS`] and threshold of [`AGREEMENT_THRESHOLDS`]. An error names
/// a tag without a vector or a category the routing names without a pool.
pub fn agreement_table(
    inputs: &AgreementInputs,
    routing: &Routing,
    pools: &BTreeMap<Category, EtalonPool>,
    vectors: &HashMap<String, Vec<f32>>,
) -> Result<Vec<Agreement>, CurationError> {
    let spaces = pool_spaces(pools, vectors)?;
    let top = AGREEMENT_TOP_KS.iter().copied().max().unwrap_or(1);
    let cands = candidates(
        &inputs.raw_tags,
        routing,
        &spaces,
        |t| vectors.get(t).cloned(),
        top,
    )?;
    let mut table = agreement(
        POOLED_REFERENCE,
        &cands,
        &spaces,
        &inputs.pooled,
        &AGREEMENT_THRESHOLDS,
        &AGREEMENT_TOP_KS,
    );
    table.extend(agreement(
        LABELED_REFERENCE,
        &cands,
        &spaces,
        &inputs.labeled,
        &AGREEMENT_THRESHOLDS,
        &AGREEMENT_TOP_KS,
    ));
    Ok(table)
}

/// The table as Markdown: per reference a heading line with its products, then one row
/// per threshold and top-k.
pub fn format_agreement(table: &[Agreement]) -> String {
    let mut out = String::new();
    let mut current = "";
    for a in table {
        if a.reference != current {
            current = &a.reference;
            let _ = writeln!(out, "\n{} ({} products)\n", a.reference, a.products);
            let _ = writeln!(
                out,
                "| threshold | top-k | precision | recall | micro-F1 | tp | fp | fn |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        }
        let _ = writeln!(
            out,
            "| {:.2} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            a.threshold,
            a.top_k,
            a.precision(),
            a.recall(),
            a.f1(),
            a.tp,
            a.fp,
            a.fn_
        );
    }
    out.trim_start().to_owned()
}

/// The table as JSON: one object per row with its counts, precision, recall and micro-F1.
pub fn agreement_json(table: &[Agreement]) -> serde_json::Value {
    serde_json::Value::Array(
        table
            .iter()
            .map(|a| {
                serde_json::json!({
                    "reference": a.reference, "threshold": a.threshold, "top_k": a.top_k,
                    "products": a.products, "tp": a.tp, "fp": a.fp, "fn": a.fn_,
                    "precision": a.precision(), "recall": a.recall(), "micro_f1": a.f1(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_data::ReviewStack;

    fn product(sku: &str, good_type: &str, reviews: &[&str], tags: &[&str]) -> Product {
        Product {
            row: 1,
            sku: sku.to_owned(),
            comment_ids: vec![0; reviews.len()],
            reviews: reviews.iter().map(|r| (*r).to_owned()).collect(),
            name: String::new(),
            good_type: good_type.to_owned(),
            good_subtype: String::new(),
            tags: Some(tags.iter().map(|t| (*t).to_owned()).collect()),
        }
    }

    #[test]
    fn the_references_keep_etalon_tags_and_rows_of_the_same_text() {
        let routing = Routing {
            fallback: Category::Shoes,
            good_types: BTreeMap::from([("Shoes".to_owned(), Category::Shoes)]),
        };
        let pool = EtalonPool::new(
            Category::Shoes,
            vec!["Удобные".to_owned(), "Маломерят".to_owned()],
        )
        .expect("pool");
        let pools = BTreeMap::from([(Category::Shoes, pool)]);
        let raw = [product("1", "Shoes", &["Отличные  Туфли"], &["удобные"])];
        let pulled = [product("1", "Shoes", &["x"], &["удобные", "красивые"])];
        let labeled = LabeledSet {
            category: Category::Shoes,
            path: "labeled.csv".into(),
            rows: vec![ReviewStack {
                row: 1,
                reviews: vec!["отличные туфли".to_owned()],
                tags: vec!["Маломерят".to_owned()],
            }],
            unknown_tags: Vec::new(),
        };
        let inputs = AgreementInputs::new(&raw, &pulled, &[labeled], &routing, &pools);
        assert_eq!(inputs.raw_tags[0].tags, ["удобные"]);
        assert_eq!(
            inputs.pooled,
            HashMap::from([("1".to_owned(), vec!["Удобные".to_owned()])])
        );
        // A good type without a route of its own is no pooled reference.
        let fallback = [product("2", "Other", &["y"], &["удобные"])];
        let other = AgreementInputs::new(&raw, &fallback, &[], &routing, &pools);
        assert!(other.pooled.is_empty() && other.labeled.is_empty());
        assert_eq!(
            inputs.labeled,
            HashMap::from([("1".to_owned(), vec!["Маломерят".to_owned()])])
        );
        assert_eq!(inputs.texts(&pools), ["маломерят", "удобные"]);
    }

    #[test]
    fn the_table_formats_one_block_per_reference() {
        let row = |reference: &str, threshold, tp| Agreement {
            reference: reference.to_owned(),
            threshold,
            top_k: 1,
            products: 2,
            tp,
            fp: 1,
            fn_: 1,
        };
        let table = [row("a", 0.6, 1), row("a", 0.7, 0), row("b", 0.6, 2)];
        let text = format_agreement(&table);
        assert!(
            text.starts_with("a (2 products)\n\n| threshold |"),
            "{text}"
        );
        assert!(text.contains("| 0.60 | 1 | 0.500 | 0.500 | 0.500 | 1 | 1 | 1 |"));
        assert!(text.contains("\nb (2 products)\n"), "{text}");
        let json = agreement_json(&table);
        assert_eq!(json[2]["reference"], "b");
        assert_eq!(json[0]["micro_f1"], 0.5);
    }
}
