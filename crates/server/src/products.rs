//! The explorer's product table in memory: lookup by SKU, filter by good type, search by
//! name or SKU, pages.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lamoda_data::Product;

use crate::api::{ProductPage, ProductSummary};

/// Products per page unless asked otherwise.
pub const PER_PAGE: usize = 50;
/// The most products per page.
pub const MAX_PER_PAGE: usize = 200;

/// The product table.
#[derive(Debug, Default)]
pub struct Products {
    rows: Vec<Product>,
    /// Lower-cased `name sku` per row, for search.
    haystack: Vec<String>,
    by_sku: HashMap<String, usize>,
    good_types: BTreeMap<String, usize>,
}

impl Products {
    /// Reads a table (`reviews_sampled.csv` layout); a repeated SKU keeps its first row.
    pub fn load(path: &Path) -> Result<Self, lamoda_data::DataError> {
        let rows = lamoda_data::load_products(path)?;
        Ok(Self::from_rows(rows))
    }

    /// A table of `rows`.
    pub fn from_rows(rows: Vec<Product>) -> Self {
        let mut table = Self::default();
        for p in rows {
            if table.by_sku.contains_key(&p.sku) {
                continue;
            }
            table.by_sku.insert(p.sku.clone(), table.rows.len());
            *table.good_types.entry(p.good_type.clone()).or_default() += 1;
            table
                .haystack
                .push(format!("{} {}", p.name, p.sku).to_lowercase());
            table.rows.push(p);
        }
        table
    }

    /// Products in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every product, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &Product> {
        self.rows.iter()
    }

    /// Every SKU, in table order.
    pub fn skus(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|p| p.sku.as_str())
    }

    /// The product of `sku`.
    pub fn get(&self, sku: &str) -> Option<&Product> {
        self.by_sku.get(sku).map(|&i| &self.rows[i])
    }

    /// Page `page` (from 1, clamped to the last) of the products of `good_type` (any when
    /// `None` or empty) whose name or SKU holds `query` (any case).
    pub fn page(
        &self,
        good_type: Option<&str>,
        query: Option<&str>,
        page: usize,
        per_page: usize,
    ) -> ProductPage {
        let good_type = good_type.map(str::trim).filter(|g| !g.is_empty());
        let query = query
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        let matching: Vec<usize> = (0..self.rows.len())
            .filter(|&i| good_type.is_none_or(|g| self.rows[i].good_type == g))
            .filter(|&i| query.as_ref().is_none_or(|q| self.haystack[i].contains(q)))
            .collect();
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let pages = matching.len().div_ceil(per_page).max(1);
        let page = page.clamp(1, pages);
        let items = matching
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|&i| {
                let p = &self.rows[i];
                ProductSummary {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    good_type: p.good_type.clone(),
                    good_subtype: p.good_subtype.clone(),
                    reviews: p.reviews.len(),
                }
            })
            .collect();
        ProductPage {
            total: matching.len(),
            page,
            pages,
            per_page,
            items,
            good_types: self.good_types.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, name: &str, good_type: &str) -> Product {
        Product {
            row: 0,
            sku: sku.into(),
            comment_ids: vec![],
            reviews: vec!["ok".into()],
            name: name.into(),
            good_type: good_type.into(),
            good_subtype: String::new(),
            tags: None,
        }
    }

    #[test]
    fn filters_searches_and_pages() {
        let rows: Vec<Product> = (0..7)
            .map(|i| {
                product(
                    &format!("SKU{i}"),
                    if i % 2 == 0 {
                        "Кроссовки"
                    } else {
                        "Сумка"
                    },
                    if i % 2 == 0 { "Shoes" } else { "Bags" },
                )
            })
            .chain([product("SKU0", "repeated", "Toys")])
            .collect();
        let table = Products::from_rows(rows);
        assert_eq!(table.len(), 7, "a repeated SKU keeps its first row");
        assert_eq!(
            table.page(None, None, 1, 50).good_types.get("Shoes"),
            Some(&4)
        );
        let shoes = table.page(Some("Shoes"), None, 1, 3);
        assert_eq!((shoes.total, shoes.pages, shoes.items.len()), (4, 2, 3));
        let last = table.page(Some("Shoes"), None, 9, 3);
        assert_eq!((last.page, last.items.len()), (2, 1));
        assert_eq!(last.items[0].sku, "SKU6");
        let found = table.page(None, Some("кросс"), 1, 50);
        assert_eq!(found.total, 4);
        let found = table.page(None, Some("sku3"), 1, 50);
        assert_eq!(
            found.items.iter().map(|p| &p.sku).collect::<Vec<_>>(),
            ["SKU3"]
        );
        assert_eq!(table.page(Some("Shoes"), Some("сумка"), 1, 50).total, 0);
        assert_eq!(table.get("SKU5").map(|p| p.name.as_str()), Some("Сумка"));
    }
}
