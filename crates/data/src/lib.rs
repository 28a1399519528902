//! Reads everything Lamoda Tags learns from: labeled review stacks, product
//! tables with the LLM's raw tags, the curated etalon tag pools, the
//! good_type → category routing, and deterministic train/dev splits.
//!
//! Every malformed input is a typed [`DataError`] that names the file, the
//! row, the field and the offending value; nothing is dropped silently.

mod category;
mod decode;
mod error;
mod etalon;
mod labeled;
mod products;
mod routing;
mod split;
mod table;

pub use category::Category;
pub use decode::{DecodeConfig, Decoded, decode};
pub use error::DataError;
pub use etalon::{EtalonPool, NearDuplicate, PoolCheck, TagGroup};
pub use labeled::{LabeledSet, ReviewStack, UnknownTagPolicy, load_labeled, parse_reviews};
pub use products::{
    Product, TagMapping, TagPool, load_products, load_tag_mappings, load_tag_pools,
    load_test_examples,
};
pub use routing::{Route, Routing};
pub use split::{Split, SplitConfig, kfold, train_dev_split};

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;
