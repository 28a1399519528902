//! Prometheus metrics: requests by route and status, latencies, encoder batch sizes,
//! rejections by reason, requests in flight.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    category: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    batch_products: Histogram,
    rejections: Family<ReasonLabels, Counter>,
    in_flight: Gauge,
    model_loaded: Gauge,
    judgments: Family<CategoryLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lamoda");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let batch_products = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let rejections = Family::<ReasonLabels, Counter>::default();
        let in_flight = Gauge::default();
        let model_loaded = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "encoder_batch_products",
            "Products scored per encoder call",
            batch_products.clone(),
        );
        registry.register(
            "rejections",
            "Requests refused, by reason (4xx kind)",
            rejections.clone(),
        );
        registry.register(
            "tagging_in_flight",
            "Tagging requests queued or running",
            in_flight.clone(),
        );
        registry.register(
            "model_loaded",
            "1 once the model is loaded",
            model_loaded.clone(),
        );
        let judgments = Family::<CategoryLabels, Counter>::default();
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "review_judgments",
            "Reviewers' judgments in the review store, by category",
            judgments.clone(),
        );
        registry.register(
            "review_verdicts",
            "Tag verdicts in the review store, by category and verdict (accepted, rejected, \
             added, missing)",
            verdicts.clone(),
        );
        Self {
            judgments,
            verdicts,
            registry,
            requests,
            latency,
            batch_products,
            rejections,
            in_flight,
            model_loaded,
        }
    }

    /// One answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// One refusal of `reason`.
    pub fn rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// One encoder call of `products`.
    pub fn batch(&self, products: usize) {
        self.batch_products.observe(products as f64);
    }

    /// Requests in flight.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The model is loaded.
    pub fn loaded(&self) {
        self.model_loaded.set(1);
    }

    /// The judgments already in the review store at start.
    pub fn stored_judgments(&self, counts: &lamoda_reviews::Counts) {
        for (category, n) in &counts.judgments {
            self.judgments
                .get_or_create(&CategoryLabels {
                    category: category.name().to_owned(),
                })
                .inc_by(*n);
        }
        for ((category, verdict), n) in &counts.verdicts {
            self.verdicts
                .get_or_create(&VerdictLabels {
                    category: category.name().to_owned(),
                    verdict: verdict.name().to_owned(),
                })
                .inc_by(*n);
        }
    }

    /// One judgment stored.
    pub fn judgment(&self, j: &lamoda_reviews::Judgment) {
        let category = j.category.name().to_owned();
        self.judgments
            .get_or_create(&CategoryLabels {
                category: category.clone(),
            })
            .inc();
        for (verdict, n) in j.verdict_counts() {
            self.verdicts
                .get_or_create(&VerdictLabels {
                    category: category.clone(),
                    verdict: verdict.name().to_owned(),
                })
                .inc_by(n as u64);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
