//! The review API on a real server on localhost: judgments stored and read back newest
//! first, every refusal's status and named field, the API key, the queue (ranked, filtered
//! by category, judged products leaving it, progress per category), two reviewers posting
//! at once, /metrics counting judgments, and judgments surviving `kill -9` of the binary.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use lamoda_server::error::ErrorBody;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = request.send().await.expect("send");
    let status = r.status();
    (status, r.json().await.expect("JSON body"))
}

fn error(body: &Value) -> ErrorBody {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {body}"))
}

fn judgment(reviewer: &str, accepted: &[&str], rejected: &[&str], added: &[&str]) -> Value {
    json!({
        "sku": "SKU-BAG-1",
        "good_type": "Bags",
        "reviewer": reviewer,
        "accepted": accepted,
        "rejected": rejected,
        "added": added,
        "missing": ["Кожа приятная на ощупь"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judgments_are_stored_checked_and_read_back_newest_first() {
    let f = common::fixture();
    let mut config = common::config(&f);
    config.reviews_db = Some(f.dir.path().join("reviews.sqlite"));
    let (server, url) = common::start(config).await;
    let client = Client::new();
    let reviews = format!("{url}/v1/reviews");

    let (status, first) = send(client.post(&reviews).json(&judgment(
        "anna",
        &["Вместительная"],
        &["Лёгкая"],
        &["Удобная"],
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["category"], "bags");
    assert_eq!(first["reviewer"], "anna");
    assert_eq!(first["added"], json!(["Удобная"]));
    assert_eq!(first["superseded"], false);
    let (status, _) = send(client.post(&reviews).json(&judgment(
        "boris",
        &["Вместительная"],
        &[],
        &[],
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(client.post(&reviews).json(&judgment(
        "anna",
        &["Вместительная", "Удобная"],
        &[],
        &[],
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, list) = send(client.get(&reviews).query(&[("sku", "SKU-BAG-1")])).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let seen: Vec<(String, bool)> = list["judgments"]
        .as_array()
        .expect("judgments")
        .iter()
        .map(|j| {
            (
                j["reviewer"].as_str().expect("reviewer").to_owned(),
                j["superseded"].as_bool().expect("superseded"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("anna".to_owned(), false),
            ("boris".to_owned(), false),
            ("anna".to_owned(), true)
        ]
    );

    // Every refusal: its status, kind and field.
    let cases = [
        (
            judgment("anna", &["Мягкие"], &[], &[]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("accepted[0]"),
        ),
        (
            judgment("anna", &["Удобная"], &["Удобная"], &[]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("rejected[0]"),
        ),
        (
            judgment("anna", &["Лёгкая"], &[], &["Тяжёлая"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("added"),
        ),
        (
            judgment("  ", &["Удобная"], &[], &[]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("reviewer"),
        ),
        (
            json!({"sku": "SKU-BAG-1", "good_type": "Shoes", "reviewer": "anna"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("good_type"),
        ),
        (
            json!({"sku": "NO-SUCH", "good_type": "Bags", "reviewer": "anna"}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            json!({"sku": "SKU-BAG-1", "good_type": "Bags"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = send(client.post(&reviews).json(&body)).await;
        assert_eq!(got, status, "{body} → {answer}");
        let e = error(&answer);
        if let Some(field) = field {
            assert_eq!(e.field.as_deref(), Some(field), "{body} → {answer}");
        }
        assert!(!e.error.is_empty());
    }
    let (status, answer) = send(client.get(&reviews)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error(&answer).field.as_deref(), Some("sku"));
    let (status, _) = send(client.get(&reviews).query(&[("sku", "NO-SUCH")])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The refusals stored nothing; /metrics counts the three judgments.
    let (_, list) = send(client.get(&reviews).query(&[("sku", "SKU-BAG-1")])).await;
    assert_eq!(list["judgments"].as_array().map(Vec::len), Some(3));
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lamoda_review_judgments_total{category=\"bags\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lamoda_review_verdicts_total{category=\"bags\",verdict=\"accepted\"} 4"),
        "{metrics}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_ranks_filters_and_drops_judged_products() {
    let f = common::fixture();
    let (server, url) = common::start(common::config(&f)).await;
    let client = Client::new();
    let queue = format!("{url}/v1/reviews/queue");

    let (status, answer) = send(client.get(&queue).query(&[("category", "bags")])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{answer}");
    assert_eq!(items[0]["sku"], "SKU-BAG-1");
    assert!(!items[0]["reviews"].as_array().expect("reviews").is_empty());
    assert!(items[0]["prediction"]["probabilities"].is_object());
    assert!(
        items[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("uncertain")
    );
    let bags = |answer: &Value| {
        answer["progress"]
            .as_array()
            .expect("progress")
            .iter()
            .find(|p| p["category"] == "bags")
            .map(|p| (p["done"].as_u64(), p["left"].as_u64()))
    };
    assert_eq!(bags(&answer), Some((Some(0), Some(1))));
    assert_eq!(answer["total"], 123);

    let (status, answer) = send(client.get(&queue).query(&[("limit", "5")])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(5));

    let tag = items[0]["prediction"]["tags"][0]["tag"]
        .as_str()
        .expect("a suggested tag")
        .to_owned();
    let body =
        json!({"sku": "SKU-BAG-1", "good_type": "Bags", "reviewer": "vera", "accepted": [tag]});
    let (status, _) = send(client.post(format!("{url}/v1/reviews")).json(&body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, answer) = send(client.get(&queue).query(&[("category", "bags")])).await;
    assert_eq!(
        answer["items"].as_array().map(Vec::len),
        Some(0),
        "{answer}"
    );
    assert_eq!(bags(&answer), Some((Some(1), Some(0))));

    for (query, field) in [
        (("category", "toys"), "category"),
        (("limit", "0"), "limit"),
        (("limit", "51"), "limit"),
    ] {
        let (status, answer) = send(client.get(&queue).query(&[query])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query:?}");
        assert_eq!(error(&answer).field.as_deref(), Some(field));
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_posting_at_once_are_both_kept_and_the_key_guards_reviews() {
    let f = common::fixture();
    let mut config = common::config(&f);
    config.api_key = Some("s3cret".into());
    config.reviews_db = Some(f.dir.path().join("reviews.sqlite"));
    let (server, url) = common::start(config).await;
    let client = Client::new();
    let reviews = format!("{url}/v1/reviews");
    let (status, answer) = send(client.post(&reviews).json(&judgment("anna", &[], &[], &[]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&answer).kind, "unauthorized");
    let (status, _) = send(client.get(format!("{url}/v1/reviews/queue"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let posts = (0..40).map(|i| {
        let client = client.clone();
        let reviews = reviews.clone();
        let who = if i % 2 == 0 { "anna" } else { "boris" };
        async move {
            client
                .post(reviews)
                .bearer_auth("s3cret")
                .json(&judgment(who, &["Вместительная"], &[], &[]))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    let handles: Vec<_> = posts.map(tokio::spawn).collect();
    for h in handles {
        assert_eq!(h.await.expect("task").expect("send"), StatusCode::CREATED);
    }
    let (_, list) = send(
        client
            .get(&reviews)
            .bearer_auth("s3cret")
            .query(&[("sku", "SKU-BAG-1")]),
    )
    .await;
    let judgments = list["judgments"].as_array().expect("judgments");
    assert_eq!(judgments.len(), 40);
    let current: Vec<&str> = judgments
        .iter()
        .filter(|j| j["superseded"] == false)
        .map(|j| j["reviewer"].as_str().expect("reviewer"))
        .collect();
    assert_eq!(current.len(), 2, "{current:?}");
    assert!(current.contains(&"anna") && current.contains(&"boris"));
    server.stop().await.expect("stop");
}

/// Starts the binary on `db`; returns it and its URL once healthy.
fn spawn_server(f: &common::Fixture, db: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(env!("CARGO_BIN_EXE_lamoda-server"))
        .args(["--port", &port.to_string(), "--model"])
        .arg(&f.bundle)
        .arg("--products")
        .arg(&f.products)
        .arg("--reviews-db")
        .arg(db)
        .env_remove("LAMODA_DATA")
        .env_remove("LAMODA_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lamoda-server");
    (child, format!("http://127.0.0.1:{port}"))
}

async fn wait_healthy(client: &Client, url: &str) {
    for _ in 0..1500 {
        if let Ok(r) = client.get(format!("{url}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} did not become healthy");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judgments_survive_kill_9_of_the_server() {
    let f = common::fixture();
    let db = f.dir.path().join("store/reviews.sqlite");
    let client = Client::new();
    let (mut child, url) = spawn_server(&f, &db);
    wait_healthy(&client, &url).await;
    let (status, _) = send(client.post(format!("{url}/v1/reviews")).json(&judgment(
        "anna",
        &["Вместительная"],
        &[],
        &[],
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let (mut child, url) = spawn_server(&f, &db);
    wait_healthy(&client, &url).await;
    let (status, _) = send(client.post(format!("{url}/v1/reviews")).json(&judgment(
        "boris",
        &[],
        &["Вместительная"],
        &[],
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let (mut child, url) = spawn_server(&f, &db);
    wait_healthy(&client, &url).await;
    let (_, list) = send(
        client
            .get(format!("{url}/v1/reviews"))
            .query(&[("sku", "SKU-BAG-1")]),
    )
    .await;
    let who: Vec<&str> = list["judgments"]
        .as_array()
        .expect("judgments")
        .iter()
        .map(|j| j["reviewer"].as_str().expect("reviewer"))
        .collect();
    assert_eq!(who, vec!["boris", "anna"], "{list}");
    child.kill().expect("kill");
    child.wait().expect("reaped");
}
