//! The server's settings: its address, the model bundle and base, the product table, the
//! API key and the request limits, from command-line flags ([`ServeArgs`], shared by the
//! `lamoda-server` binary and `lamoda-tags serve`), checked on load ([`ServerConfig`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use lamoda_inference::Precision;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The product table read by default inside `LAMODA_DATA`.
pub const DEFAULT_PRODUCTS_FILE: &str = "reviews_sampled.csv";

/// Request limits; a request beyond one is refused with 413 before any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Reviews per product (the model reads the first 32 non-blank ones; the lexical
    /// branch reads them all).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_reviews: usize,
    /// Characters per review.
    #[arg(long, value_name = "N", default_value_t = 4000)]
    pub max_review_chars: usize,
    /// Products per `POST /v1/tags/batch`.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_batch_items: usize,
    /// Bytes per request body.
    #[arg(long, value_name = "BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Tagging requests in flight (queued or running); more get 429.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_in_flight: usize,
    /// Products scored together in one encoder call by the queue.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_batch_products: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_reviews: 256,
            max_review_chars: 4000,
            max_batch_items: 32,
            max_body_bytes: 2 * 1024 * 1024,
            max_in_flight: 128,
            max_batch_products: 64,
        }
    }
}

/// The flags of `lamoda-server` and `lamoda-tags serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// The port to listen on (0: any free one, printed at start).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// The model bundle [default: $LAMODA_MODEL, else the adapters/ of the checkout this
    /// runs in].
    #[arg(long, value_name = "DIR", env = "LAMODA_MODEL")]
    pub model: Option<PathBuf>,
    /// The base model's HF directory [default: $LAMODA_BASE, else the bundle's recorded
    /// default].
    #[arg(long, value_name = "DIR", env = "LAMODA_BASE")]
    pub base: Option<PathBuf>,
    /// The explorer's product table (reviews_sampled.csv layout; a `tags` column, when
    /// present, is shown beside the predictions) [default: reviews_sampled.csv in
    /// $LAMODA_DATA, when set].
    #[arg(long, value_name = "CSV")]
    pub products: Option<PathBuf>,
    /// The data directory whose product table is the default.
    #[arg(long, value_name = "DIR", env = "LAMODA_DATA", hide_env_values = true)]
    pub data: Option<PathBuf>,
    /// Require `Authorization: Bearer KEY` on /v1/* (not on /health, /metrics, the
    /// explorer's pages or /openapi.json).
    #[arg(
        long,
        value_name = "KEY",
        env = "LAMODA_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Scored products kept for re-decoding without the encoder.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub cache_entries: usize,
    /// How the encoder multiplies: fp32, or int8 (faster; its figures are in
    /// docs/experiments.md §19) [default: each adapter's runtime.json].
    #[arg(long, value_name = "fp32|int8")]
    pub precision: Option<Precision>,
    /// The review store (SQLite; created on first use) where `/review` and
    /// `POST /v1/reviews` keep the reviewers' judgments [default:
    /// $XDG_DATA_HOME/lamoda-tags/reviews.sqlite, else
    /// ~/.local/share/lamoda-tags/reviews.sqlite].
    #[arg(long, value_name = "PATH", env = "LAMODA_REVIEWS_DB")]
    pub reviews_db: Option<PathBuf>,
    /// The optional LLM re-ranking.
    #[command(flatten)]
    pub rerank: RerankArgs,
    /// The request limits.
    #[command(flatten)]
    pub limits: Limits,
}

/// The flags of the optional LLM re-ranking (asked per request with `rerank: true`).
#[derive(Debug, Clone, Default, Args)]
pub struct RerankArgs {
    /// Offer LLM re-ranking: the base URL of an OpenAI-compatible chat API (plain http,
    /// e.g. http://127.0.0.1:8000/v1). A request with `rerank: true` sends its reviews
    /// and our top candidates there. Off unless given.
    #[arg(long, value_name = "URL", requires = "rerank_model")]
    pub rerank_url: Option<String>,
    /// The chat model that re-ranks (needed with --rerank-url).
    #[arg(long, value_name = "NAME", requires = "rerank_url")]
    pub rerank_model: Option<String>,
    /// The chat API's key, sent as a bearer token.
    #[arg(
        long,
        value_name = "KEY",
        env = "LAMODA_RERANK_KEY",
        hide_env_values = true
    )]
    pub rerank_key: Option<String>,
    /// Candidates sent: our N most probable tags (1..=100).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rerank_top_k: u32,
    /// The most one re-ranking may take, retries included; then our own tags are answered
    /// with `reranked: false`.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub rerank_timeout_s: u64,
}

impl RerankArgs {
    /// The re-ranking settings the flags ask for (`None` without `--rerank-url`).
    pub fn config(&self) -> Option<lamoda_llm::RerankConfig> {
        let (url, model) = (self.rerank_url.as_ref()?, self.rerank_model.as_ref()?);
        Some(lamoda_llm::RerankConfig::from_flags(
            url,
            model,
            self.rerank_key.clone(),
            self.rerank_top_k as usize,
            std::time::Duration::from_secs(self.rerank_timeout_s),
        ))
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No bundle was given and none is in the checkout.
    #[error(
        "no model bundle: give --model DIR or set LAMODA_MODEL (a project checkout has one in \
         adapters/; none is above {searched})"
    )]
    NoBundle {
        /// Where it was looked for.
        searched: String,
    },
    /// The product table does not exist.
    #[error("product table {path}: no such file")]
    NoProducts {
        /// The path given.
        path: PathBuf,
    },
    /// A limit of zero.
    #[error("--{flag} must be at least 1")]
    ZeroLimit {
        /// The flag.
        flag: &'static str,
    },
    /// An empty API key.
    #[error("the API key is empty (give a non-blank --api-key or LAMODA_API_KEY, or none)")]
    EmptyApiKey,
    /// The re-ranking settings cannot be used.
    #[error(transparent)]
    Rerank(#[from] lamoda_llm::LlmError),
    /// No place for the review store.
    #[error(
        "no place for the review store: give --reviews-db PATH (neither XDG_DATA_HOME nor \
         HOME is set)"
    )]
    NoReviewsDb,
}

/// The review store's default file: `$XDG_DATA_HOME/lamoda-tags/reviews.sqlite`, else
/// `$HOME/.local/share/lamoda-tags/reviews.sqlite`.
pub fn default_reviews_db() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(data.join("lamoda-tags").join("reviews.sqlite"))
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The model bundle.
    pub model: PathBuf,
    /// The base, when not the bundle's default.
    pub base: Option<PathBuf>,
    /// The product table, when there is one.
    pub products: Option<PathBuf>,
    /// The API key, when the API is guarded.
    pub api_key: Option<String>,
    /// Scored products cached.
    pub cache_entries: usize,
    /// The encoder's precision, when not the bundle's.
    pub precision: Option<Precision>,
    /// The review store's file; in memory (lost at exit) when `None`.
    pub reviews_db: Option<PathBuf>,
    /// The LLM re-ranking, when offered.
    pub rerank: Option<lamoda_llm::RerankConfig>,
    /// The limits.
    pub limits: Limits,
}

impl ServerConfig {
    /// Resolves and checks the flags: the bundle (given, else the checkout's), the product
    /// table (given, else `LAMODA_DATA`'s when it exists), limits of at least 1.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let model = match &args.model {
            Some(dir) => dir.clone(),
            None => {
                let cwd = std::env::current_dir().ok();
                let exe = std::env::current_exe().ok();
                let starts: Vec<&Path> =
                    cwd.iter().chain(exe.iter()).map(PathBuf::as_path).collect();
                lamoda_inference::find_checkout_bundle(&starts).ok_or_else(|| {
                    ConfigError::NoBundle {
                        searched: starts
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                    }
                })?
            }
        };
        let products = match (&args.products, &args.data) {
            (Some(path), _) if !path.is_file() => {
                return Err(ConfigError::NoProducts { path: path.clone() });
            }
            (Some(path), _) => Some(path.clone()),
            (None, Some(data)) => Some(data.join(DEFAULT_PRODUCTS_FILE)).filter(|p| p.is_file()),
            (None, None) => None,
        };
        let api_key = match &args.api_key {
            Some(key) if key.trim().is_empty() => return Err(ConfigError::EmptyApiKey),
            other => other.clone(),
        };
        let config = Self {
            addr: SocketAddr::new(args.host, args.port),
            model,
            base: args.base.clone(),
            products,
            api_key,
            cache_entries: args.cache_entries,
            precision: args.precision,
            reviews_db: Some(match &args.reviews_db {
                Some(path) => path.clone(),
                None => default_reviews_db().ok_or(ConfigError::NoReviewsDb)?,
            }),
            rerank: args.rerank.config(),
            limits: args.limits,
        };
        config.validate()?;
        Ok(config)
    }

    /// Settings for `model` with the defaults, on a free port of localhost.
    pub fn local(model: PathBuf) -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            model,
            base: None,
            products: None,
            api_key: None,
            cache_entries: 2048,
            precision: None,
            reviews_db: None,
            rerank: None,
            limits: Limits::default(),
        }
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (flag, value) in [
            ("max-reviews", l.max_reviews),
            ("max-review-chars", l.max_review_chars),
            ("max-batch-items", l.max_batch_items),
            ("max-body-bytes", l.max_body_bytes),
            ("max-in-flight", l.max_in_flight),
            ("max-batch-products", l.max_batch_products),
            ("cache-entries", self.cache_entries),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { flag });
            }
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError::EmptyApiKey);
        }
        if let Some(rerank) = &self.rerank {
            rerank.check()?;
        }
        Ok(())
    }
}
