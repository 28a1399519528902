//! The router, its middleware (request metrics, the API key) and the server's life: bind,
//! load the model in the background (`/health` answers 503 until it is in), serve, and on
//! SIGTERM or Ctrl-C stop taking connections and finish the requests in flight.
//!
//! Modules import one way: `app` → `handlers`, `reviews`, `explorer`, `openapi` →
//! `state` → `api`, `config`, `error`, `queue`, `products`, `metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lamoda_inference::Tagger;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::handlers::{
    get_categories, get_model, get_product, get_products, health, method_not_allowed, metrics,
    not_found, post_batch, post_tags,
};
use crate::products::Products;
use crate::state::{AppState, ServerError};

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.limits().max_body_bytes;
    let api = Router::new()
        .route("/v1/tags", post(post_tags))
        .route("/v1/tags/batch", post(post_batch))
        .route("/v1/categories", get(get_categories))
        .route("/v1/model", get(get_model))
        .route("/v1/products", get(get_products))
        .route("/v1/products/{sku}", get(get_product))
        .route(
            "/v1/reviews",
            post(crate::reviews::post_review).get(crate::reviews::get_reviews),
        )
        .route("/v1/reviews/queue", get(crate::reviews::get_queue))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .merge(crate::explorer::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Counts and times every request; counts refusals by kind.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        state
            .0
            .metrics
            .rejection(status.canonical_reason().unwrap_or("client error"));
    }
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!("{method} {route} answered {status}");
    }
    state.0.metrics.request(
        &method,
        &route,
        status.as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// 401 on /v1/* without the configured key.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.0.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server that runs in the background (see [`start`]).
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Stops it gracefully and waits for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Binds `config.addr` and serves in the background until [`RunningServer::stop`] (or the
/// model fails to load).
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(config, listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves on `listener` until `shutdown` completes (then finishes the requests in flight)
/// or the model fails to load. The model loads in the background.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let products = match &config.products {
        Some(path) => Products::load(path)?,
        None => Products::default(),
    };
    let reviews = match &config.reviews_db {
        Some(path) => lamoda_reviews::ReviewStore::open(path)?,
        None => lamoda_reviews::ReviewStore::open_in_memory()?,
    };
    let state = AppState::new(config.clone(), products, reviews)?;
    let (failed_tx, failed_rx) = oneshot::channel::<ServerError>();
    let loader = state.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = Tagger::open(&config.model, config.base.as_deref())
            .map_err(ServerError::from)
            .and_then(|mut tagger| {
                if let Some(precision) = config.precision {
                    tagger.set_precision(precision);
                }
                loader.install(tagger)
            });
        match result {
            Ok(()) => tracing::info!(
                "model {} loaded in {:.1} s",
                config.model.display(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        }
    });
    let failure = Arc::new(Mutex::new(None));
    let failure_slot = failure.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            Ok(e) = failed_rx => {
                if let Ok(mut slot) = failure_slot.lock() {
                    *slot = Some(e);
                }
            }
        }
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await?;
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs a server with `args` until SIGTERM or Ctrl-C (the binary's and `cargo xtask
/// serve`'s body): logs to stderr, prints where it listens, finishes requests in flight.
pub fn app_main(args: &crate::config::ServeArgs) -> Result<(), ServerError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = ServerConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener.local_addr()?;
        tracing::info!(
            "listening on http://{addr} (model {}, products {}, reviews {}); loading the model",
            config.model.display(),
            config
                .products
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
            config
                .reviews_db
                .as_ref()
                .map_or_else(|| "in memory".to_owned(), |p| p.display().to_string())
        );
        serve(config, listener, shutdown_signal()).await
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
