//! `lamoda-server`: the Lamoda Tags HTTP server, on the runtime (`lamoda-inference`; no
//! training code is linked).
//!
//! One binary serves the tagging API and the product explorer:
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/tags`, `POST /v1/tags/batch` | tags with probabilities, mentions and evidence |
//! | `GET /v1/categories`, `GET /v1/model` | routing, pools with exclusive groups; base, bundle, dev metrics |
//! | `GET /v1/products`, `GET /v1/products/{sku}` | the product table, and one product with its tags |
//! | `GET /health`, `GET /metrics`, `GET /openapi.json` | readiness (503 while loading), Prometheus text, the contract |
//! | `GET /`, `/products/{sku}`, `/tag` | the explorer's pages |
//!
//! Requests are checked against [`config::Limits`] before any work (422 for invalid
//! input, 413 for too much, 429 for too many in flight, 401 without the API key), and
//! every error is a JSON [`error::ErrorBody`] naming the field. Inference runs on a
//! dedicated thread behind a bounded queue ([`queue`]) that scores the requests waiting
//! together in one encoder call; answers are decoded per request, so each keeps its own
//! threshold, `max_tags` and `min_mentions`. Scores are cached per good type and reviews,
//! so re-decoding at another threshold (the explorer's slider) costs no encoder pass.

pub mod api;
mod app;
pub mod config;
pub mod error;
mod explorer;
mod extract;
mod handlers;
mod metrics;
pub mod openapi;
mod products;
pub mod queue;
pub mod reviews;
mod state;

pub use app::{RunningServer, app_main, serve, start};
pub use config::{Limits, ServeArgs, ServerConfig};
pub use state::ServerError;
