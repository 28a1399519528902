use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// A product category: one etalon pool, one adapter, one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Accessories and home accessories (also the fallback).
    Accs,
    /// Bags.
    Bags,
    /// Beauty accessories and cosmetics.
    Beauty,
    /// Clothes.
    Clothes,
    /// Shoes.
    Shoes,
}

impl Category {
    /// Every category, in a fixed (alphabetical) order.
    pub const ALL: [Category; 5] = [
        Category::Accs,
        Category::Bags,
        Category::Beauty,
        Category::Clothes,
        Category::Shoes,
    ];

    /// The lowercase name used in file names (`labeled/<name>.csv`) and configs.
    pub fn name(self) -> &'static str {
        match self {
            Category::Accs => "accs",
            Category::Bags => "bags",
            Category::Beauty => "beauty",
            Category::Clothes => "clothes",
            Category::Shoes => "shoes",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| DataError::UnknownCategory {
                name: s.to_owned(),
                expected: Category::ALL.map(Category::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>().expect("valid name"), c);
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "toys".parse::<Category>().expect_err("not a category");
        let msg = err.to_string();
        assert!(
            msg.contains("\"toys\"") && msg.contains("accs, bags"),
            "{msg}"
        );
    }
}
