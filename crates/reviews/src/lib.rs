//! The review store: what a team's reviewers say of the model's tags, kept so it can be
//! trained on.
//!
//! - [`NewJudgment::check`]: one reviewer's verdict on one product (the suggested tags
//!   accepted or rejected, pool tags added, properties missing from the pool), checked
//!   against the category's pool; an invalid one names its field ([`InvalidJudgment`]).
//! - [`ReviewStore`]: the judgments in SQLite (WAL, every commit synced before it is
//!   acknowledged, the schema versioned and migrated on open). Nothing is overwritten: a
//!   later judgment of the same reviewer on the same SKU supersedes the earlier one,
//!   which stays in the history.
//! - [`export`]: the reviewed products as reviewed-label lines
//!   ([`lamoda_data::ReviewedLine`]), which training and evaluation read beside the shared
//!   careful labels.
//!
//! Invariant: this crate knows no model and no server; callers give it the pools and the
//! products' reviews.

mod export;
mod judgment;
mod store;

pub use export::{ExportError, ExportReport, export, merge, reviewed_lines};
pub use judgment::{InvalidJudgment, Judgment, NewJudgment, Verdict};
pub use store::{Counts, ReviewStore, SCHEMA_VERSION, StoreError};
