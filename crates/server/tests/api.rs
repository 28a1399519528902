//! The API's contract on a real server on localhost (a tiny bundle of every category with
//! the shipped pools and routing): answers with evidence and no contradictions, every
//! refusal's status and JSON body, the API key, /health, /metrics, the OpenAPI document
//! kept in sync with the committed file, and graceful shutdown.

mod common;

use std::collections::{BTreeMap, HashSet};

use lamoda_server::error::ErrorBody;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn post(client: &Client, url: &str, body: &Value) -> (StatusCode, Value) {
    let r = client.post(url).json(body).send().await.expect("send");
    let status = r.status();
    (status, r.json().await.expect("JSON body"))
}

fn error(body: &Value) -> ErrorBody {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {body}"))
}

/// The shipped exclusive groups: category → its groups' tag sets.
fn groups() -> BTreeMap<String, Vec<HashSet<String>>> {
    lamoda_data::Category::ALL
        .iter()
        .map(|&c| {
            let pool = lamoda_data::EtalonPool::load(&common::root().join("etalon_tags"), c)
                .expect("pool");
            let groups = pool
                .exclusive
                .iter()
                .map(|g| g.tags.iter().cloned().collect())
                .collect();
            (c.name().to_owned(), groups)
        })
        .collect()
}

fn assert_no_contradiction(answer: &Value, groups: &BTreeMap<String, Vec<HashSet<String>>>) {
    let category = answer["routed_to"].as_str().expect("routed_to");
    let tags: Vec<&str> = answer["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["tag"].as_str().expect("tag"))
        .collect();
    for group in &groups[category] {
        let n = tags.iter().filter(|t| group.contains(**t)).count();
        assert!(
            n <= 1,
            "{category}: {tags:?} holds {n} tags of one group {group:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_come_with_evidence_and_never_contradict() {
    let f = common::fixture();
    let (server, url) = common::start(common::config(&f)).await;
    let client = Client::new();
    let groups = groups();
    let reviews = ["Лёгкие, удобные", "   ", "Маломерят", "Отличные"];
    let (status, answer) = post(
        &client,
        &format!("{url}/v1/tags"),
        &json!({"sku": "A1", "good_type": "Shoes", "reviews": reviews}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sku"], "A1");
    assert_eq!(answer["good_type"], "Shoes");
    assert_eq!(answer["routed_to"], "shoes");
    assert_eq!(answer["fallback"], false);
    assert_eq!(answer["reviews_read"], 3, "the blank review is not read");
    assert!(
        answer["model"]["bundle"]
            .as_str()
            .expect("bundle")
            .starts_with("lamoda-bundle/")
    );
    let tags = answer["tags"].as_array().expect("tags");
    assert_eq!(
        tags.len(),
        6,
        "the fixed head passes many tags: at most 6 come back"
    );
    for t in tags {
        // The fixed head gives every review the product's probabilities: all 3 support.
        assert_eq!(t["mentions"], 3, "{t}");
        let evidence = t["evidence"].as_array().expect("evidence");
        assert_eq!(evidence.len(), 3);
        for e in evidence {
            let i = e["review"].as_u64().expect("index") as usize;
            assert_eq!(
                e["text"],
                reviews[i].trim(),
                "evidence quotes the product's own review"
            );
            assert!(e["score"].as_f64().expect("score") >= 0.5);
        }
    }
    let probabilities = answer["probabilities"].as_object().expect("probabilities");
    assert_eq!(probabilities.len(), 28, "every shoes pool tag");
    assert_no_contradiction(&answer, &groups);

    // Every good type, any threshold, max_tags and min_mentions: no contradiction.
    for good_type in [
        "Shoes",
        "Clothes",
        "Bags",
        "Beauty_Accs",
        "Accs",
        "Home_Accs",
        "Toys",
        "Jewellery",
        "Unknown",
    ] {
        for (threshold, max_tags, min_mentions) in
            [(0.0, 6, 0), (0.3, 4, 1), (0.9, 6, 2), (0.5, 1, 0)]
        {
            let (status, answer) = post(
                &client,
                &format!("{url}/v1/tags"),
                &json!({"good_type": good_type, "reviews": ["a", "b"], "threshold": threshold,
                        "max_tags": max_tags, "min_mentions": min_mentions}),
            )
            .await;
            assert_eq!(status, 200, "{good_type}: {answer}");
            assert!(answer["tags"].as_array().expect("tags").len() <= max_tags);
            assert_no_contradiction(&answer, &groups);
            let fallback = matches!(good_type, "Toys" | "Jewellery" | "Unknown");
            assert_eq!(answer["fallback"], fallback, "{good_type}");
        }
    }

    // min_mentions above the number of reviews keeps no tag.
    let (status, answer) = post(
        &client,
        &format!("{url}/v1/tags"),
        &json!({"good_type": "Bags", "reviews": ["a", "b"], "min_mentions": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["tags"], json!([]));

    // A batch answers in order.
    let (status, answer) = post(
        &client,
        &format!("{url}/v1/tags/batch"),
        &json!({"items": [
            {"sku": "1", "good_type": "Bags", "reviews": ["x"]},
            {"sku": "2", "good_type": "Toys", "reviews": ["y"]},
            {"good_type": "Shoes", "reviews": ["z"], "max_tags": 2},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let items = answer["items"].as_array().expect("items");
    let routed: Vec<(&Value, &str)> = items
        .iter()
        .map(|i| (&i["sku"], i["routed_to"].as_str().expect("routed")))
        .collect();
    assert_eq!(
        routed,
        [
            (&json!("1"), "bags"),
            (&json!("2"), "accs"),
            (&Value::Null, "shoes")
        ]
    );
    assert_eq!(items[2]["tags"].as_array().expect("tags").len(), 2);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_4xx_with_a_json_body_naming_the_field() {
    let f = common::fixture();
    let mut config = common::config(&f);
    config.limits.max_reviews = 5;
    config.limits.max_review_chars = 50;
    config.limits.max_batch_items = 2;
    config.limits.max_body_bytes = 4096;
    let (server, url) = common::start(config).await;
    let client = Client::new();
    let tags = format!("{url}/v1/tags");
    let batch = format!("{url}/v1/tags/batch");
    let ok = json!({"good_type": "Shoes", "reviews": ["ok"]});
    let cases: Vec<(&str, &String, Value, u16, Option<&str>)> = vec![
        (
            "no good_type",
            &tags,
            json!({"reviews": ["a"]}),
            422,
            Some("good_type"),
        ),
        (
            "empty good_type",
            &tags,
            json!({"good_type": " ", "reviews": ["a"]}),
            422,
            Some("good_type"),
        ),
        (
            "good_type a number",
            &tags,
            json!({"good_type": 3, "reviews": ["a"]}),
            422,
            Some("good_type"),
        ),
        (
            "no reviews",
            &tags,
            json!({"good_type": "Shoes"}),
            422,
            Some("reviews"),
        ),
        (
            "empty reviews",
            &tags,
            json!({"good_type": "Shoes", "reviews": []}),
            422,
            Some("reviews"),
        ),
        (
            "blank reviews",
            &tags,
            json!({"good_type": "Shoes", "reviews": [" ", ""]}),
            422,
            Some("reviews"),
        ),
        (
            "reviews a string",
            &tags,
            json!({"good_type": "Shoes", "reviews": "a"}),
            422,
            Some("reviews"),
        ),
        (
            "a review a number",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a", 1]}),
            422,
            Some("reviews[1]"),
        ),
        (
            "threshold above 1",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "threshold": 1.5}),
            422,
            Some("threshold"),
        ),
        (
            "threshold below 0",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "threshold": -0.1}),
            422,
            Some("threshold"),
        ),
        (
            "threshold a string",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "threshold": "high"}),
            422,
            Some("threshold"),
        ),
        (
            "max_tags 0",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "max_tags": 0}),
            422,
            Some("max_tags"),
        ),
        (
            "max_tags 7",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "max_tags": 7}),
            422,
            Some("max_tags"),
        ),
        (
            "min_mentions too large",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "min_mentions": 9_223_372_036_854_775_808u64}),
            422,
            Some("min_mentions"),
        ),
        (
            "min_mentions negative",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "min_mentions": -1}),
            422,
            Some("min_mentions"),
        ),
        (
            "unknown field",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a"], "colour": "red"}),
            422,
            Some("colour"),
        ),
        ("not an object", &tags, json!([1, 2]), 422, None),
        (
            "too many reviews",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a", "b", "c", "d", "e", "f"]}),
            413,
            Some("reviews"),
        ),
        (
            "too long a review",
            &tags,
            json!({"good_type": "Shoes", "reviews": ["a", "я".repeat(51)]}),
            413,
            Some("reviews[1]"),
        ),
        (
            "empty batch",
            &batch,
            json!({"items": []}),
            422,
            Some("items"),
        ),
        (
            "too many items",
            &batch,
            json!({"items": [ok, ok, ok]}),
            413,
            Some("items"),
        ),
        (
            "bad item",
            &batch,
            json!({"items": [ok, {"reviews": ["a"]}]}),
            422,
            Some("items[1].good_type"),
        ),
        (
            "bad item review",
            &batch,
            json!({"items": [ok, {"good_type": "Bags", "reviews": []}]}),
            422,
            Some("items[1].reviews"),
        ),
    ];
    for (name, url, body, status, field) in cases {
        let (got, body) = post(&client, url, &body).await;
        assert_eq!(got.as_u16(), status, "{name}: {body}");
        let e = error(&body);
        assert_eq!(e.field.as_deref(), field, "{name}: {body}");
        assert!(!e.error.is_empty(), "{name}");
    }

    // Not JSON: 400; not declared JSON: 415; too large a body: 413.
    let r = client
        .post(&tags)
        .header("content-type", "application/json")
        .body("{\"good_type\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(error(&r.json().await.expect("json")).kind, "invalid_json");
    let r = client
        .post(&tags)
        .body(ok.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    assert_eq!(
        error(&r.json().await.expect("json")).kind,
        "unsupported_media_type"
    );
    let huge = json!({"good_type": "Shoes", "reviews": ["a".repeat(5000)]});
    let (status, body) = post(&client, &tags, &huge).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error(&body).kind, "too_large");

    // Unknown routes, methods and products: JSON 404 / 405.
    let r = client
        .get(format!("{url}/v1/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    error(&r.json().await.expect("json"));
    let r = client.get(&tags).send().await.expect("send");
    assert_eq!(r.status(), 405);
    error(&r.json().await.expect("json"));
    let r = client
        .get(format!("{url}/v1/products/NOPE"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    error(&r.json().await.expect("json"));
    let r = client
        .get(format!("{url}/v1/products/SKU-SHOE-1?threshold=2"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    assert_eq!(
        error(&r.json().await.expect("json")).field.as_deref(),
        Some("threshold")
    );
    let r = client
        .get(format!("{url}/v1/products?page=1000001"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    assert_eq!(
        error(&r.json().await.expect("json")).field.as_deref(),
        Some("page")
    );
    let r = client
        .get(format!("{url}/v1/products?page=x"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    error(&r.json().await.expect("json"));

    // The refusals are counted.
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("lamoda_rejections_total{reason=\"Unprocessable Entity\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "lamoda_http_requests_total{method=\"POST\",route=\"/v1/tags\",status=\"422\"}"
        ),
        "{text}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_guards_the_api_but_not_health() {
    let f = common::fixture();
    let mut config = common::config(&f);
    config.api_key = Some("s3cret".into());
    let (server, url) = common::start(config).await;
    let client = Client::new();
    let body = json!({"good_type": "Shoes", "reviews": ["ok"]});
    let r = client
        .post(format!("{url}/v1/tags"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(error(&r.json().await.expect("json")).kind, "unauthorized");
    let r = client
        .post(format!("{url}/v1/tags"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{url}/v1/categories"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{url}/v1/tags"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    for open in ["/health", "/metrics", "/openapi.json", "/"] {
        let r = client
            .get(format!("{url}{open}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{open} needs no key");
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_model_and_products_describe_what_is_loaded() {
    let f = common::fixture();
    let (server, url) = common::start(common::config(&f)).await;
    let client = Client::new();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("{url}{path}");
        async move {
            let r = client.get(url).send().await.expect("send");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let categories = get("/v1/categories").await;
    assert_eq!(categories["routing"]["Shoes"], "shoes");
    assert_eq!(categories["routing"]["Home_Accs"], "accs");
    assert_eq!(categories["fallback"], "accs");
    let shoes = categories["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .find(|c| c["name"] == "shoes")
        .expect("shoes");
    assert!(
        shoes["exclusive_groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["tags"] == json!(["Маломерят", "Большемерки"]))
    );
    let model = get("/v1/model").await;
    assert_eq!(model["adapters"].as_array().expect("adapters").len(), 5);
    assert_eq!(model["limits"]["max_reviews"], 256);
    // The fixture's adapters carry no careful calibration, so no careful figures either.
    assert_eq!(model["adapters"][0]["calibrated"], json!(false));
    assert_eq!(model["adapters"][0]["careful_precision"], Value::Null);
    let tags = get("/v1/products/SKU-SHOE-1").await;
    assert_eq!(tags["prediction"]["calibrated"], json!(false));

    let page = get("/v1/products?good_type=Accs&per_page=50&page=3").await;
    assert_eq!(
        (page["total"].as_u64(), page["pages"].as_u64()),
        (Some(120), Some(3))
    );
    assert_eq!(page["items"].as_array().expect("items").len(), 20);
    let found = get("/v1/products?q=%D0%BA%D1%80%D0%BE%D1%81%D1%81").await; // "кросс"
    assert_eq!(found["items"][0]["sku"], "SKU-SHOE-1");
    let product = get("/v1/products/SKU-SHOE-1").await;
    assert_eq!(product["dataset_tags"], json!(["Удобные", "Лёгкие"]));
    assert_eq!(product["prediction"]["routed_to"], "shoes");
    assert_eq!(product["prediction"]["sku"], "SKU-SHOE-1");
    // Re-decoding at another threshold reuses the cached scores and changes the answer.
    let strict = get("/v1/products/SKU-SHOE-1?threshold=0.9&max_tags=6").await;
    let n = |v: &Value| v["prediction"]["tags"].as_array().map_or(0, Vec::len);
    assert!(n(&strict) < n(&product), "{strict}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_until_the_model_is_loaded() {
    // A bundle directory that does not exist yet: the server listens, answers 503, then
    // stops with the load error.
    let f = common::fixture();
    let mut config = common::config(&f);
    config.model = f.dir.path().join("missing");
    let server = lamoda_server::start(config).await.expect("start");
    let url = format!("http://{}", server.addr);
    let client = Client::new();
    let r = client.get(format!("{url}/health")).send().await;
    if let Ok(r) = r {
        // The load may already have failed and stopped the server.
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.expect("json")["status"], "loading");
    }
    // The server stops by itself once the load has failed; a stop sent before that would
    // win the race and end it cleanly, so wait for it to go away first.
    let gone = async {
        while client.get(format!("{url}/health")).send().await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), gone)
        .await
        .expect("the server stops by itself after the failed load");
    let err = server.stop().await.expect_err("the load fails");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_in_flight_than_allowed_get_429_and_shutdown_finishes_them() {
    let f = common::fixture();
    let mut config = common::config(&f);
    config.limits.max_in_flight = 1;
    config.limits.max_batch_items = 64;
    config.limits.max_body_bytes = 16 * 1024 * 1024;
    let (server, url) = common::start(config).await;
    let client = Client::new();
    // A slow request: 64 products of 256 long reviews.
    let review = "очень удобные и лёгкие кроссовки ".repeat(6);
    let items: Vec<Value> = (0..64)
        .map(|i| json!({"sku": i.to_string(), "good_type": "Shoes", "reviews": vec![review.clone(); 256]}))
        .collect();
    let slow = {
        let client = client.clone();
        let url = format!("{url}/v1/tags/batch");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"items": items}))
                .send()
                .await
                .expect("send")
                .status()
        })
    };
    // Wait until it is in flight.
    let mut in_flight = false;
    for _ in 0..2000 {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("lamoda_tagging_in_flight 1") {
            in_flight = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(in_flight, "the slow request was never seen in flight");
    let (status, body) = post(
        &client,
        &format!("{url}/v1/tags"),
        &json!({"good_type": "Shoes", "reviews": ["a"]}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(error(&body).kind, "overloaded");
    // Shutting down now still answers the request in flight.
    server.stop().await.expect("stop");
    assert_eq!(slow.await.expect("join"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_committed_one() {
    let f = common::fixture();
    let (server, url) = common::start(common::config(&f)).await;
    let served: Value = Client::new()
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    server.stop().await.expect("stop");
    let path = common::root().join("crates/server/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("crates/server/openapi.json"))
            .expect("committed JSON");
    assert!(
        served == committed,
        "{} is stale: run `cargo xtask openapi`",
        path.display()
    );
    let paths = served["paths"].as_object().expect("paths");
    for route in [
        "/v1/tags",
        "/v1/tags/batch",
        "/v1/categories",
        "/v1/model",
        "/v1/products",
        "/v1/products/{sku}",
        "/health",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    for status in ["400", "401", "413", "415", "422", "429"] {
        assert!(
            paths["/v1/tags"]["post"]["responses"].get(status).is_some(),
            "/v1/tags does not document {status}"
        );
    }
}
