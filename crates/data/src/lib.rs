//! Reads everything Lamoda Tags learns from: labeled review stacks, product
//! tables with the LLM's raw tags, the curated etalon tag pools, the
//! good_type → category routing, and deterministic train/dev splits.
//!
//! Every malformed input is a typed [`DataError`] that names the file, the
//! row, the field and the offending value; nothing is dropped silently.

mod careful;
mod category;
mod decode;
mod error;
mod etalon;
mod labeled;
mod products;
pub mod project;
mod reviewed;
mod routing;
mod split;
mod table;
mod tag_text;

pub use careful::{CarefulLabel, CarefulSet, careful_folds, careful_split, load_careful};
pub use category::Category;
pub use decode::{DecodeConfig, Decoded, decode, decode_eligible};
pub use error::DataError;
pub use etalon::{EtalonPool, NearDuplicate, PoolCheck, TagGroup};
pub use labeled::{LabeledSet, ReviewStack, UnknownTagPolicy, load_labeled, parse_reviews};
pub use products::{
    Product, TagMapping, TagPool, load_products, load_tag_mappings, load_tag_pools,
    load_test_examples,
};
pub use project::{
    DATA_ENV, DEFAULT_PROJECT_FILES, DataDir, PROJECT_ENV, PROJECT_MARKER, Project, ProjectError,
    init_project,
};
pub use reviewed::{ReviewedLabel, ReviewedLine, load_reviewed, reviews_sha256};
pub use routing::{Route, Routing};
pub use split::{Split, SplitConfig, kfold, train_dev_split};
pub use tag_text::{normalize_tag, tidy_tag};

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

/// Reads a TOML file into `T`; parse errors carry the file, line and column.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| DataError::Toml {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Label indices ordered by descending score, ties to the lower index; NaN
/// ranks last. Decoding and precision@k rank the same way.
pub fn rank(scores: &[f32]) -> Vec<usize> {
    let key = |i: usize| {
        if scores[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}
