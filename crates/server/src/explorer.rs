//! The product explorer: server-rendered pages (maud, escaped by construction) with a
//! little JavaScript (`static/app.js`) that asks the API for tags, so the threshold and
//! minimum-mentions controls re-decode without a reload (scores are cached server-side).
//!
//! - `/`: the product table, filtered by good type, searched by name or SKU, in pages;
//! - `/products/{sku}`: its reviews, its tags with probabilities and mentions, the
//!   evidence highlighted in the reviews, the table's own tags behind a toggle;
//! - `/tag`: tag one's own reviews for a chosen good type;
//! - `/review`: the review queue: one product at a time, each suggested tag accepted or
//!   rejected, pool tags added, missing properties named, with keyboard shortcuts; the
//!   judgments go to `POST /v1/reviews`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::api::ListQuery;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::{AppState, default_threshold, product_page};

const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");

/// The explorer's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/products/{sku}", get(product))
        .route("/tag", get(own_text))
        .route("/review", get(review))
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// What the page's script needs: the page kind, the product, the default threshold.
#[derive(Default)]
struct PageData<'a> {
    kind: &'a str,
    sku: Option<&'a str>,
    threshold: Option<String>,
}

fn page(title: &str, state: &AppState, data: PageData<'_>, content: Markup) -> Html<String> {
    let key_needed = state.0.config.api_key.is_some();
    let rerank = state.0.reranker.is_some();
    Html(
        html! {
            (DOCTYPE)
            html lang="ru" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Lamoda Tags" }
                    link rel="stylesheet" href="/static/app.css";
                }
                body data-key-needed=(if key_needed { "1" } else { "0" }) data-rerank=(if rerank { "1" } else { "0" }) data-page=(data.kind) data-sku=[data.sku] data-threshold=[data.threshold] {
                    header.top {
                        a.brand href="/" { "Lamoda Tags" }
                        nav {
                            a href="/" { "Products" }
                            a href="/tag" { "Tag your text" }
                            a href="/review" { "Review" }
                        }
                    }
                    @if key_needed {
                        form id="key-form" class="key" hidden {
                            label for="api-key" { "API key" }
                            input id="api-key" type="password" autocomplete="off";
                            button type="submit" { "Use key" }
                        }
                    }
                    main { (content) }
                    script src="/static/app.js" {}
                }
            }
        }
        .into_string(),
    )
}

fn number(params: &HashMap<String, String>, name: &str) -> Option<u64> {
    params.get(name).and_then(|v| v.trim().parse().ok())
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Html<String> {
    let query = ListQuery {
        good_type: params.get("good_type").cloned().filter(|g| !g.is_empty()),
        q: params.get("q").cloned().filter(|q| !q.is_empty()),
        page: number(&params, "page").filter(|p| (1..=crate::api::MAX_PAGE).contains(p)),
        per_page: None,
    };
    let products = &state.0.products;
    let content = if products.is_empty() {
        html! {
            h1 { "Products" }
            p.empty { "No product table is loaded: start the server with --products CSV (or set LAMODA_DATA). "
                a href="/tag" { "Tag your own text" } " meanwhile." }
        }
    } else {
        let Ok(found) = product_page(&state, &query) else {
            return page(
                "Products",
                &state,
                PageData::default(),
                html! { p { "Bad query." } },
            );
        };
        let link = |p: usize| {
            let mut url = format!("/?page={p}");
            if let Some(g) = &query.good_type {
                url.push_str(&format!("&good_type={}", encode(g)));
            }
            if let Some(q) = &query.q {
                url.push_str(&format!("&q={}", encode(q)));
            }
            url
        };
        html! {
            h1 { "Products" }
            form class="filters" id="filters" method="get" action="/" {
                select id="good-type" name="good_type" aria-label="Good type" {
                    option value="" { "All good types (" (products.len()) ")" }
                    @for (g, n) in found.good_types.iter() {
                        option value=(g) selected[query.good_type.as_deref() == Some(g.as_str())] { (g) " (" (n) ")" }
                    }
                }
                input id="search" type="search" name="q" placeholder="Name or SKU" value=[query.q.as_deref()];
                button type="submit" { "Show" }
            }
            p class="count" id="count" { (found.total) " products · page " (found.page) " of " (found.pages) }
            table class="products" id="products" {
                thead { tr { th { "SKU" } th { "Name" } th { "Good type" } th.num { "Reviews" } } }
                tbody {
                    @for p in &found.items {
                        tr {
                            td data-label="SKU" { a.sku href={ "/products/" (encode(&p.sku)) } { (p.sku) } }
                            td data-label="Name" { (p.name) }
                            td data-label="Good type" { (p.good_type) span.sub { " · " (p.good_subtype) } }
                            td.num data-label="Reviews" { (p.reviews) }
                        }
                    }
                }
            }
            nav.pager {
                @if found.page > 1 { a id="prev" href=(link(found.page - 1)) { "← Previous" } }
                @if found.page < found.pages { a id="next" href=(link(found.page + 1)) { "Next →" } }
            }
        }
    };
    page("Products", &state, PageData::default(), content)
}

async fn product(State(state): State<AppState>, ApiPath(sku): ApiPath<String>) -> Response {
    let Some(p) = state.0.products.get(&sku) else {
        let body = page(
            "Not found",
            &state,
            PageData::default(),
            html! { h1 { "No such product" } p { "The product table has no SKU " code { (sku) } ". " a href="/" { "Back to the products" } } },
        );
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    let (route, threshold) = match state.0.model.get() {
        Some(loaded) => {
            let route = loaded.tagger.route(&p.good_type);
            (
                Some(route),
                default_threshold(&loaded.tagger, route.category),
            )
        }
        None => (None, 0.5),
    };
    let data = PageData {
        kind: "product",
        sku: Some(&p.sku),
        threshold: Some(format!("{threshold:.2}")),
    };
    let content = html! {
        p.crumbs { a href="/" { "Products" } " / " (p.good_type) }
        h1 { (p.name) }
        p.meta {
            code { (p.sku) } " · " (p.good_type) " / " (p.good_subtype) " · " (p.reviews.len()) " reviews"
            @if let Some(route) = route {
                " · adapter " strong { (route.category.name()) }
                @if route.fallback { span.fallback { " (fallback: no adapter of its own)" } }
            }
        }
        section.panel {
            div.controls {
                label for="threshold" { "Threshold " output id="threshold-value" { (format!("{threshold:.2}")) } }
                input id="threshold" type="range" min="0.05" max="0.95" step="0.01" value=(format!("{threshold:.2}"));
                label for="min-mentions" { "Min. mentions" }
                select id="min-mentions" {
                    @for n in 0..=3 { option value=(n) { (if n == 0 { "off".to_owned() } else { n.to_string() }) } }
                }
                @if p.tags.is_some() {
                    label.toggle { input id="dataset-toggle" type="checkbox"; " Dataset tags" }
                }
                @if state.0.reranker.is_some() {
                    label.toggle title="Our top candidates and the reviews go to the server's LLM; only the tags it confirms stay" { input id="rerank-toggle" type="checkbox"; " LLM re-rank" }
                }
            }
            p id="status" class="status" { "Loading tags…" }
            ul id="tags" class="tags" {}
            @if let Some(tags) = &p.tags {
                div id="dataset-tags" class="dataset" hidden {
                    h2 { "Dataset tags" }
                    ul.tags.plain { @for t in tags { li.tag { span.name { (t) } } } }
                }
            }
        }
        h2 { "Reviews" }
        ol id="reviews" class="reviews" {
            @for (i, r) in p.reviews.iter().enumerate() {
                li id={ "review-" (i) } data-review=(i) { p.text { (r) } div.marks {} }
            }
        }
    };
    page(&p.name, &state, data, content).into_response()
}

async fn own_text(State(state): State<AppState>) -> Html<String> {
    let good_types: Vec<String> = match state.0.model.get() {
        Some(loaded) => loaded
            .tagger
            .bundle()
            .routing()
            .good_types
            .keys()
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let content = html! {
        h1 { "Tag your text" }
        form id="own-form" class="own" {
            label for="own-good-type" { "Good type" }
            select id="own-good-type" name="good_type" {
                @for g in &good_types { option value=(g) { (g) } }
                option value="Toys" { "Toys (falls back)" }
            }
            label for="own-text" { "Reviews, one per line" }
            textarea id="own-text" rows="6" placeholder="Легкие и удобные, на ноге сидят отлично" {}
            @if state.0.reranker.is_some() {
                label.toggle title="Our top candidates and the reviews go to the server's LLM; only the tags it confirms stay" { input id="rerank-toggle" type="checkbox"; " LLM re-rank" }
            }
            button id="own-submit" type="submit" { "Tag" }
        }
        section.panel {
            p id="status" class="status" {}
            ul id="tags" class="tags" {}
        }
        ol id="reviews" class="reviews" {}
    };
    page(
        "Tag your text",
        &state,
        PageData {
            kind: "tag",
            ..PageData::default()
        },
        content,
    )
}

async fn review(State(state): State<AppState>) -> Html<String> {
    let categories: Vec<&str> = lamoda_data::Category::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    let content = html! {
        h1 { "Review queue" }
        p.meta { "Check the model's tags against the reviews: accept what a review clearly states, reject the rest, add what it missed. Each judgment is kept and becomes training data (" code { "lamoda-tags review export" } ")." }
        form id="review-setup" class="filters" {
            label for="reviewer" { "Reviewer" }
            input id="reviewer" name="reviewer" autocomplete="nickname" placeholder="Your name" required;
            label for="review-category" { "Category" }
            select id="review-category" name="category" {
                option value="" { "All" }
                @for c in &categories { option value=(c) { (c) } }
            }
        }
        ul id="progress" class="progress" {}
        p id="status" class="status" { "Loading the queue…" }
        section id="review-product" class="panel" hidden {
            h2 id="review-name" {}
            p id="review-meta" class="meta" {}
            ul id="review-tags" class="tags review" {}
            div.add {
                label for="review-add" { "Add a pool tag" }
                select id="review-add" {}
                button id="review-add-button" type="button" { "Add" }
            }
            ul id="review-added" class="tags plain" {}
            div.add {
                label for="review-missing" { "Missing from the pool" }
                input id="review-missing" type="text" placeholder="e.g. Быстро впитывается; Мягкие";
            }
            div.actions {
                button id="review-submit" type="button" { "Save and next (Enter)" }
                button id="review-skip" type="button" class="secondary" { "Skip (s)" }
            }
            p.keys { kbd { "↑" } kbd { "↓" } " or " kbd { "j" } kbd { "k" } " choose a tag · " kbd { "a" } " accept · " kbd { "r" } " reject · " kbd { "A" } " / " kbd { "R" } " all undecided · " kbd { "Enter" } " save and next · " kbd { "s" } " skip" }
        }
        h2 { "Reviews" }
        ol id="reviews" class="reviews" {}
        h2 { "Judged in this browser" }
        ul id="review-done" class="done" {}
    };
    page(
        "Review",
        &state,
        PageData {
            kind: "review",
            ..PageData::default()
        },
        content,
    )
}

/// Percent-encodes a query value or path segment.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_escapes_what_a_url_cannot_hold() {
        assert_eq!(super::encode("MP002 x/y&z"), "MP002%20x%2Fy%26z");
        assert_eq!(super::encode("ё"), "%D1%91");
    }
}
