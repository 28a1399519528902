//! The label-curation pipeline of Lamoda Tags, and only that: it turns product reviews into
//! training labels. Today it holds the first two steps:
//!
//! 1. **labeling** ([`label`]): an LLM behind any OpenAI-compatible chat API writes free-form
//!    tags for each product's review stack, in chunks under a token budget, with retries,
//!    strict answer parsing and tag validation, into a resumable JSONL store ([`store`]);
//! 2. **pooling** ([`pool`]): the raw tags of each good type, normalised, with their
//!    frequencies (the `tag_pulls_raw.csv` step).
//!
//! 3. **consolidation** ([`consolidate`]): each good type's pool clustered by embedding
//!    similarity (average linkage, cosine threshold), each cluster merged into one tag (the
//!    `tag_mappings.csv` step; the workflow: [`consolidate::consolidate_pool`]);
//! 4. **mapping** ([`map`]): each product's raw tags onto its category's etalon pool by
//!    cosine with a threshold and top-k, into a human-editable file and from it training
//!    files in the `labeled/` layout; agreement with reference labels ([`agreement`]: the
//!    table of `lamoda-tags map --agreement`);
//! 5. **the audit** ([`audit`]): likely label errors by confident learning on out-of-fold
//!    probabilities, near-duplicate and contradictory tags, tags too rare to learn (the
//!    workflow: [`audit::run_audit`]);
//! 6. **the pool-gap report** ([`gaps`]): the properties reviewers state that no pool tag
//!    captures (the careful labels' and team reviews' `missing`), per category, with
//!    counts and example reviews.
//!
//! The chat client, its answer format and the runtime's optional re-ranking are
//! `lamoda-llm`'s; this crate re-exports the client.
//!
//! Embeddings come from the base model (`lamoda-model`) through [`embed`], cached on disk
//! by the weights' sha256. The runtime and its binaries (`lamoda-inference`, `lamoda-server`,
//! `predict-tags`) never link this crate.
//!
//! Each workflow is a function here, settings and inputs in, a report out; the command
//! line (`lamoda-cli`) loads the files and the base, embeds through the cache with its
//! progress bars, and prints what comes back. F1 scores come from `lamoda-metrics`.
//!
//! Errors are typed ([`CurationError`]) and name the file, line, field and value at fault.

pub mod agreement;
pub mod audit;
mod chunk;
pub mod consolidate;
pub mod embed;
mod error;
pub mod gaps;
pub mod label;
pub mod map;
pub mod pool;
mod prompt;
pub mod store;
mod time;
mod validate;

pub use chunk::{
    CHARS_PER_TOKEN, TOKENS_PER_REVIEW, chunk_reviews, estimate_review_tokens, estimate_tokens,
};
pub use error::CurationError;
pub use label::{
    LabelOptions, LabelProgress, LabelSummary, label_products, name_cluster, record_key,
};
pub use lamoda_data::{normalize_tag, tidy_tag};
pub use lamoda_llm::{AnswerError, ChatClient, ChatConfig, parse_answer};
pub use pool::{
    Pool, PoolEntry, RawInput, RawTags, pool_tags, read_pool_csv, read_raw_tags, write_pool_csv,
};
pub use prompt::Prompt;
pub use store::{Loaded, Opened, Record, Rejected, Status, Store, read_store};
pub use validate::{MAX_WORDS, Validated, check_tag, size_reason, validate_tags};

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, CurationError>;
