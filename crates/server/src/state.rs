//! The server's state: the loaded model (with its recorded metrics, read once), the
//! product table, the review store, the score cache and the in-flight limit; tagging
//! through the inference queue; what the server's startup can fail with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use lamoda_data::Category;
use lamoda_inference::AdapterMetrics;
use lamoda_inference::format::RecordedMetrics;
use lamoda_inference::{Scores, Tagger};
use lru::LruCache;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::api::{ListQuery, ModelRef, ProductPage, TagResponse};
use crate::config::{Limits, ServerConfig};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::products::{PER_PAGE, Products};
use crate::queue::{Job, spawn_worker};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The product table could not be read.
    #[error(transparent)]
    Products(#[from] lamoda_data::DataError),
    /// The review store could not be opened or read.
    #[error(transparent)]
    Reviews(#[from] lamoda_reviews::StoreError),
    /// The model could not be loaded.
    #[error("cannot load the model: {0}")]
    Model(Box<lamoda_inference::InferenceError>),
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<lamoda_inference::InferenceError> for ServerError {
    fn from(e: lamoda_inference::InferenceError) -> Self {
        Self::Model(Box::new(e))
    }
}

/// The loaded model.
pub(crate) struct Loaded {
    pub tagger: Arc<Tagger>,
    pub model: ModelRef,
    pub queue: mpsc::Sender<Job>,
    /// What `/v1/model` shows of each category's `metrics.json` ([`AdapterMetrics`]), read
    /// once at load (absent when the adapter has none or it is unreadable; the load logs
    /// why).
    pub recorded: std::collections::BTreeMap<Category, RecordedMetrics>,
}

/// Everything a handler reads.
pub(crate) struct Inner {
    pub config: ServerConfig,
    pub model: OnceLock<Loaded>,
    pub products: Products,
    pub metrics: Metrics,
    /// The reviewers' judgments.
    pub reviews: Arc<lamoda_reviews::ReviewStore>,
    /// The review queue's ranking.
    pub ranking: Ranking,
    /// The LLM re-ranker, when offered.
    pub reranker: Option<lamoda_llm::Reranker>,
    permits: Arc<Semaphore>,
    cache: Mutex<LruCache<(String, Vec<String>), Scores>>,
}

/// The handlers' state.
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<Inner>);

/// A tagging request in flight: holds its permit and keeps the gauge right, also when the
/// client goes away and the handler is dropped.
struct InFlight {
    state: AppState,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl InFlight {
    fn new(state: AppState, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        let guard = Self {
            state,
            permit: Some(permit),
        };
        guard.update();
        guard
    }

    fn update(&self) {
        let limits = self.state.limits();
        let free = self.state.0.permits.available_permits();
        self.state
            .0
            .metrics
            .set_in_flight(limits.max_in_flight.saturating_sub(free));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.update();
    }
}

impl AppState {
    pub(crate) fn new(
        config: ServerConfig,
        products: Products,
        reviews: lamoda_reviews::ReviewStore,
    ) -> Result<Self, ServerError> {
        let cache = NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN);
        let permits = Arc::new(Semaphore::new(config.limits.max_in_flight));
        let metrics = Metrics::new();
        metrics.stored_judgments(&reviews.counts()?);
        let reranker = match &config.rerank {
            Some(c) => Some(
                lamoda_llm::Reranker::new(c.clone()).map_err(|e| ServerError::Config(e.into()))?,
            ),
            None => None,
        };
        Ok(Self(Arc::new(Inner {
            config,
            model: OnceLock::new(),
            products,
            metrics,
            reviews: Arc::new(reviews),
            ranking: Ranking::default(),
            reranker,
            permits,
            cache: Mutex::new(LruCache::new(cache)),
        })))
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.0.config.limits
    }

    pub(crate) fn loaded(&self) -> Result<&Loaded, ApiError> {
        self.0.model.get().ok_or_else(ApiError::not_ready)
    }

    /// Installs a loaded tagger and starts its queue's thread.
    pub(crate) fn install(&self, tagger: Tagger) -> Result<(), ServerError> {
        let tagger = Arc::new(tagger);
        let (tx, rx) = mpsc::channel(self.limits().max_in_flight);
        let state = self.clone();
        spawn_worker(
            tagger.clone(),
            rx,
            self.limits().max_batch_products,
            move |n| state.0.metrics.batch(n),
        )?;
        let (bundle, base) = tagger.model_names();
        let model = ModelRef { bundle, base };
        let mut recorded = std::collections::BTreeMap::new();
        for category in tagger.categories() {
            match AdapterMetrics::read_if_present(&tagger.bundle().category_dir(category)) {
                Ok(Some(m)) => {
                    recorded.insert(category, RecordedMetrics::from(&m));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("`{category}`: its recorded metrics are not shown: {e}"),
            }
        }
        let _ = self.0.model.set(Loaded {
            tagger,
            model,
            queue: tx,
            recorded,
        });
        self.0.metrics.loaded();
        Ok(())
    }

    /// Scores `requests` (cached ones from the cache, the rest through the queue), in order.
    pub(crate) async fn score(
        &self,
        requests: Vec<lamoda_inference::Request>,
    ) -> Result<Vec<Scores>, ApiError> {
        let loaded = self.loaded()?;
        let mut out: Vec<Option<Scores>> = vec![None; requests.len()];
        let mut missing = Vec::new();
        if let Ok(mut cache) = self.0.cache.lock() {
            for (i, r) in requests.iter().enumerate() {
                match cache.get(&(r.good_type.clone(), r.reviews.clone())) {
                    Some(s) => out[i] = Some(s.clone()),
                    None => missing.push(i),
                }
            }
        } else {
            missing = (0..requests.len()).collect();
        }
        if !missing.is_empty() {
            let todo: Vec<lamoda_inference::Request> =
                missing.iter().map(|&i| requests[i].clone()).collect();
            let (reply, answer) = oneshot::channel();
            loaded
                .queue
                .send(Job {
                    requests: todo,
                    reply,
                })
                .await
                .map_err(|_| ApiError::internal("the inference queue has stopped"))?;
            let scores = answer
                .await
                .map_err(|_| ApiError::internal("the inference queue dropped the request"))?
                .map_err(|e| {
                    tracing::error!("scoring failed: {e}");
                    ApiError::internal(format!("the model could not tag these reviews: {e}"))
                })?;
            let mut cache = self.0.cache.lock().ok();
            for (&i, s) in missing.iter().zip(scores) {
                if let Some(cache) = cache.as_mut() {
                    let r = &requests[i];
                    cache.put((r.good_type.clone(), r.reviews.clone()), s.clone());
                }
                out[i] = Some(s);
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| ApiError::internal("a product was not scored")))
            .collect()
    }

    /// 422 when `rerank` is asked of a server without a re-ranker; `field` names it.
    pub(crate) fn check_rerank(&self, asked: Option<bool>, field: &str) -> Result<bool, ApiError> {
        match asked {
            Some(true) if self.0.reranker.is_none() => Err(ApiError::invalid(
                field,
                "this server offers no re-ranking: start it with --rerank-url URL --rerank-model NAME",
            )),
            Some(true) => Ok(true),
            _ => Ok(false),
        }
    }

    /// Tags `requests` (checked) and answers them, with their SKUs, in order; those with
    /// `rerank` set are re-ranked by the LLM.
    pub(crate) async fn tag(
        &self,
        skus: Vec<Option<String>>,
        requests: Vec<lamoda_inference::Request>,
        rerank: Vec<bool>,
    ) -> Result<Vec<TagResponse>, ApiError> {
        let reviews: Vec<Option<Vec<String>>> = requests
            .iter()
            .zip(&rerank)
            .map(|(r, &asked)| asked.then(|| r.reviews.clone()))
            .collect();
        let (predictions, mut answers) = self.tag_with_predictions(skus, requests).await?;
        let Some(reranker) = &self.0.reranker else {
            return Ok(answers);
        };
        let loaded = self.loaded()?;
        let mut jobs = tokio::task::JoinSet::new();
        for (i, (mut prediction, reviews)) in predictions.into_iter().zip(reviews).enumerate() {
            let Some(reviews) = reviews else { continue };
            let reranker = reranker.clone();
            let tagger = loaded.tagger.clone();
            jobs.spawn(async move {
                let outcome = match tagger.pool(prediction.category) {
                    Some(pool) => {
                        reranker
                            .rerank(lamoda_llm::RerankInput::from_prediction(
                                pool,
                                &reviews,
                                &prediction,
                            ))
                            .await
                    }
                    None => return (i, None),
                };
                lamoda_llm::apply_rerank(&mut prediction, &outcome);
                (
                    i,
                    Some((prediction, outcome.reranked, outcome.rerank_error)),
                )
            });
        }
        while let Some(done) = jobs.join_next().await {
            let (i, Some((prediction, reranked, error))) =
                done.map_err(|e| ApiError::internal(format!("re-ranking failed: {e}")))?
            else {
                continue;
            };
            if let Some(e) = &error {
                tracing::warn!("re-ranking fell back to our own tags: {e}");
            }
            let answer = &mut answers[i];
            let fresh = TagResponse::new(answer.sku.take(), prediction, answer.model.clone());
            *answer = TagResponse {
                reranked,
                rerank_error: error,
                ..fresh
            };
        }
        Ok(answers)
    }

    /// Tags `requests` (checked) with the model alone and answers them, with their SKUs,
    /// in order, the decoded predictions beside the answers.
    pub(crate) async fn tag_with_predictions(
        &self,
        skus: Vec<Option<String>>,
        requests: Vec<lamoda_inference::Request>,
    ) -> Result<(Vec<lamoda_inference::Prediction>, Vec<TagResponse>), ApiError> {
        let loaded = self.loaded()?;
        let Ok(permit) = self.0.permits.clone().try_acquire_owned() else {
            self.0.metrics.rejection("overloaded");
            return Err(ApiError::overloaded(self.limits().max_in_flight));
        };
        let _in_flight = InFlight::new(self.clone(), permit);
        let options: Vec<_> = requests.iter().map(|r| r.options).collect();
        let scores = self.score(requests).await?;
        let mut predictions = Vec::with_capacity(scores.len());
        let mut answers = Vec::with_capacity(scores.len());
        for ((s, o), sku) in scores.iter().zip(options).zip(skus) {
            let prediction = loaded
                .tagger
                .decode(s, &o)
                .map_err(|e| ApiError::invalid_request(e.to_string(), None))?;
            answers.push(TagResponse::new(
                sku,
                prediction.clone(),
                loaded.model.clone(),
            ));
            predictions.push(prediction);
        }
        Ok((predictions, answers))
    }
}

/// The threshold a category decodes at by default: its tuned one when all its tags share
/// it (the trainer tunes one per category), else 0.5.
pub(crate) fn default_threshold(tagger: &Tagger, category: Category) -> f32 {
    match tagger.decoding(category) {
        Some(d) => match d.per_tag_thresholds {
            Some(t) if t.windows(2).all(|w| w[0] == w[1]) => t.first().copied().unwrap_or(0.5),
            Some(_) => 0.5,
            None => d.threshold,
        },
        None => 0.5,
    }
}

pub(crate) fn product_page(state: &AppState, query: &ListQuery) -> Result<ProductPage, ApiError> {
    let per_page = match query.per_page {
        None => PER_PAGE,
        Some(n @ 1..=200) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "per_page",
                format!("per_page {n} is not within 1..=200"),
            ));
        }
    };
    let page = match query.page {
        None => 1,
        Some(0) => return Err(ApiError::invalid("page", "pages count from 1")),
        Some(n) if n > crate::api::MAX_PAGE => {
            return Err(ApiError::invalid(
                "page",
                format!("page {n} is above {}", crate::api::MAX_PAGE),
            ));
        }
        Some(n) => n as usize,
    };
    Ok(state.0.products.page(
        query.good_type.as_deref(),
        query.q.as_deref(),
        page,
        per_page,
    ))
}

/// The queue's ranking: a priority per scored SKU, filled in the background.
#[derive(Debug, Default)]
pub(crate) struct Ranking {
    pub(crate) started: AtomicBool,
    scored: Mutex<HashMap<String, (f32, String)>>,
}

impl Ranking {
    pub(crate) fn get(&self, sku: &str) -> Option<(f32, String)> {
        self.scored.lock().ok()?.get(sku).cloned()
    }

    pub(crate) fn put(&self, sku: &str, value: (f32, String)) {
        if let Ok(mut scored) = self.scored.lock() {
            scored.insert(sku.to_owned(), value);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.scored.lock().map_or(0, |s| s.len())
    }
}
