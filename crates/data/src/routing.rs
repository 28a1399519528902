//! good_type → category routing, read from `configs/routing.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Category, DataError};

/// The routing table: which category adapter answers for a good type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The category for good types not in `good_types`.
    pub fallback: Category,
    /// Good type (exactly as in the data, e.g. `Beauty_Accs`) → category.
    pub good_types: BTreeMap<String, Category>,
}

/// Where a good type was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The category whose adapter answers.
    pub category: Category,
    /// True when the good type had no route of its own and fell back.
    pub fallback: bool,
}

impl Routing {
    /// Reads and validates a routing file.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let routing: Routing = crate::read_toml(path)?;
        if let Some(bad) = routing
            .good_types
            .keys()
            .find(|k| k.trim().is_empty() || k.trim() != k.as_str())
        {
            return Err(DataError::Invalid {
                path: path.to_owned(),
                reason: format!("good type {bad:?} is blank or has surrounding spaces"),
            });
        }
        Ok(routing)
    }

    /// Routes a good type (exact match, surrounding spaces ignored).
    pub fn route(&self, good_type: &str) -> Route {
        match self.good_types.get(good_type.trim()) {
            Some(&category) => Route {
                category,
                fallback: false,
            },
            None => Route {
                category: self.fallback,
                fallback: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_routing_follows_the_card() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/routing.toml");
        let routing = Routing::load(&path).expect("configs/routing.toml is valid");
        let cases = [
            ("Bags", Category::Bags, false),
            ("Shoes", Category::Shoes, false),
            ("Clothes", Category::Clothes, false),
            ("Beauty_Accs", Category::Beauty, false),
            ("Accs", Category::Accs, false),
            ("Home_Accs", Category::Accs, false),
            ("Toys", Category::Accs, true),
            ("Jewellery", Category::Accs, true),
            ("Spaceships", Category::Accs, true),
        ];
        for (good_type, category, fallback) in cases {
            assert_eq!(
                routing.route(good_type),
                Route { category, fallback },
                "{good_type}"
            );
        }
    }

    #[test]
    fn bad_routing_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("routing.toml");
        std::fs::write(
            &path,
            "fallback = \"accs\"\n[good_types]\nToys = \"toys\"\n",
        )
        .expect("write");
        let msg = Routing::load(&path)
            .expect_err("toys is no category")
            .to_string();
        assert!(
            msg.contains("routing.toml") && msg.contains("toys"),
            "{msg}"
        );
        std::fs::write(&path, "[good_types]\nBags = \"bags\"\n").expect("write");
        let msg = Routing::load(&path).expect_err("no fallback").to_string();
        assert!(msg.contains("fallback"), "{msg}");
    }
}
