//! No input gets a 5xx: random JSON bodies (of the request's shape and of any shape) and
//! random bytes, sent to every endpoint of a real server on localhost, get a 2xx or a 4xx
//! with a JSON error body.

mod common;

use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("good_type".to_owned()),
                    Just("reviews".to_owned()),
                    Just("threshold".to_owned()),
                    Just("max_tags".to_owned()),
                    Just("min_mentions".to_owned()),
                    Just("sku".to_owned()),
                    Just("items".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body of the request's shape with random values.
fn tag_request() -> impl Strategy<Value = Value> {
    (
        prop::option::of(".{0,20}"),
        prop_oneof![".{0,12}", Just("Shoes".to_owned()), Just("Toys".to_owned())],
        prop::collection::vec(".{0,60}", 0..5),
        prop::option::of(-1.0f64..2.0),
        prop::option::of(-2i64..9),
        prop::option::of(-2i64..5),
    )
        .prop_map(
            |(sku, good_type, reviews, threshold, max_tags, min_mentions)| {
                let mut body = json!({"good_type": good_type, "reviews": reviews});
                for (key, value) in [
                    ("sku", sku.map(Value::String)),
                    ("threshold", threshold.map(|t| json!(t))),
                    ("max_tags", max_tags.map(|m| json!(m))),
                    ("min_mentions", min_mentions.map(|m| json!(m))),
                ] {
                    if let Some(v) = value {
                        body[key] = v;
                    }
                }
                body
            },
        )
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        tag_request().prop_map(Body::Json),
        any_json().prop_map(Body::Json),
        prop::collection::vec(tag_request(), 0..4)
            .prop_map(|items| Body::Json(json!({ "items": items }))),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/v1/tags".to_owned()),
        Just("/v1/tags/batch".to_owned()),
        "[a-zA-Z0-9%&=_.-]{0,20}".prop_map(|q| format!("/v1/products?{q}")),
        "[a-zA-Z0-9%_-]{0,16}".prop_map(|s| format!("/v1/products/{s}?threshold=0.4")),
        "[a-zA-Z0-9%&=_.-]{0,20}".prop_map(|q| format!("/?{q}")),
    ]
}

#[test]
fn no_input_gets_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = common::fixture();
    let (server, url) = runtime.block_on(common::start(common::config(&f)));
    let client = reqwest::Client::new();
    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in body(), path in path(), post in any::<bool>(), json_type in any::<bool>())| {
        let (status, text) = runtime.block_on(async {
            let url = format!("{url}{path}");
            let mut request = if post { client.post(url) } else { client.get(url) };
            if json_type {
                request = request.header("content-type", "application/json");
            }
            request = match &body {
                Body::Json(v) => request.body(v.to_string()),
                Body::Bytes(b) => request.body(b.clone()),
            };
            let r = request.send().await.expect("send");
            let status = r.status();
            (status, r.text().await.expect("text"))
        });
        prop_assert!(!status.is_server_error(), "{status} for {path} {body:?}: {text}");
        if status.is_client_error() {
            let parsed: Result<lamoda_server::error::ErrorBody, _> = serde_json::from_str(&text);
            prop_assert!(parsed.is_ok(), "{status} without a JSON error body: {text}");
        }
    });
    runtime.block_on(server.stop()).expect("stop");
}
