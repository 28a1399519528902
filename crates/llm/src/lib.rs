//! Talking to an LLM behind any OpenAI-compatible chat API, and the one runtime use of it.
//!
//! - [`client`]: one chat completion (`POST {base}/chat/completions`) per attempt, each
//!   failure classified (retry, refuse the item, stop the run) with backoff and
//!   `Retry-After`;
//! - [`answer`]: the strict `{"tags": [...]}` answer format;
//! - [`ask_tags`]: a prompt's tags, retried and parsed (the curation pipeline's labeler and
//!   namer and the re-ranker all ask this way);
//! - [`rerank`]: the optional LLM re-ranking of the runtime's answer (`predict-tags
//!   --rerank-url`, the server's `rerank: true`).
//!
//! Invariant: this crate links the runtime's types (`lamoda-inference`) and nothing of the
//! trainer or the curation pipeline, so the runtime's binaries can offer re-ranking without
//! them.

pub mod answer;
mod ask;
pub mod client;
mod error;
pub mod rerank;

pub use answer::{AnswerError, parse_answer};
pub use ask::{AskError, ask_tags};
pub use client::{ChatClient, ChatConfig};
pub use error::{LlmError, excerpt};
pub use rerank::{DroppedTag, RerankConfig, RerankInput, RerankOutcome, Reranker, apply_rerank};
