//! The optional LLM re-ranking through the server, against a scripted OpenAI-compatible
//! chat server: tags the LLM confirms stay (never one outside the pool), a malformed or
//! slow answer falls back to our own tags and says why, `rerank: true` on a server that
//! offers none is a 422 naming the field, and it is off unless asked.

mod common;

#[path = "../../llm/tests/support/chat_server.rs"]
mod chat_server;

use std::time::{Duration, Instant};

use chat_server::{ChatServer, Reply};
use lamoda_server::config::RerankArgs;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

fn rerank(chat: &ChatServer, timeout_s: u64) -> Option<lamoda_llm::RerankConfig> {
    RerankArgs {
        rerank_url: Some(chat.base_url()),
        rerank_model: Some("test-model".into()),
        rerank_key: None,
        rerank_top_k: 20,
        rerank_timeout_s: timeout_s,
    }
    .config()
}

async fn tags(client: &Client, url: &str, rerank: Option<bool>) -> (StatusCode, Value) {
    let mut body = json!({
        "good_type": "Bags",
        "reviews": ["Вместительная и удобная сумка", "Лёгкая, ношу каждый день"],
    });
    if let Some(r) = rerank {
        body["rerank"] = json!(r);
    }
    let r = client
        .post(format!("{url}/v1/tags"))
        .json(&body)
        .send()
        .await
        .expect("send");
    (r.status(), r.json().await.expect("JSON"))
}

fn names(answer: &Value) -> Vec<String> {
    answer["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["tag"].as_str().expect("tag").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_tags_stay_and_outside_ones_never_appear() {
    let f = common::fixture();
    // Our own answer first, without a re-ranker, to script the LLM against it.
    let (server, url) = common::start(common::config(&f)).await;
    let client = Client::new();
    let (_, own) = tags(&client, &url, None).await;
    let own = names(&own);
    assert!(own.len() >= 3, "{own:?}");
    let (status, refused) = tags(&client, &url, Some(true)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["field"], "rerank", "{refused}");
    server.stop().await.expect("stop");

    let keep = vec![own[2].clone(), own[0].clone(), "Невидимая сумка".to_owned()];
    let script = keep.clone();
    let chat = ChatServer::start(move |_| {
        Reply::tags(&script.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let mut config = common::config(&f);
    config.rerank = rerank(&chat, 10);
    let (server, url) = common::start(config).await;
    let (status, answer) = tags(&client, &url, Some(true)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reranked"], true, "{answer}");
    assert_eq!(answer["rerank_error"], Value::Null);
    // In our probability order; the invented tag is gone.
    assert_eq!(names(&answer), vec![own[0].clone(), own[2].clone()]);
    let prompt = &chat.requests()[0].prompt;
    assert!(prompt.contains("Вместительная и удобная сумка"), "{prompt}");
    assert!(
        prompt.contains(&own[1]),
        "the candidates are sent: {prompt}"
    );

    // Off unless asked: our own tags, no call.
    let calls = chat.requests().len();
    let (_, plain) = tags(&client, &url, None).await;
    assert_eq!(names(&plain), own);
    assert_eq!(plain["reranked"], false);
    assert_eq!(chat.requests().len(), calls);

    // The product page's query string and the batch ask too.
    let detail: Value = client
        .get(format!("{url}/v1/products/SKU-BAG-1?rerank=true"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["prediction"]["reranked"], true, "{detail}");
    let batch: Value = client
        .post(format!("{url}/v1/tags/batch"))
        .json(&json!({"items": [
            {"good_type": "Bags", "reviews": ["Вместительная"], "rerank": true},
            {"good_type": "Bags", "reviews": ["Вместительная"]},
        ]}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(batch["items"][0]["reranked"], true, "{batch}");
    assert_eq!(batch["items"][1]["reranked"], false, "{batch}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_slow_answer_falls_back_to_our_tags() {
    let f = common::fixture();
    let client = Client::new();
    let malformed = ChatServer::start(|_| Reply::Content("Теги: Вместительная".to_owned()));
    let mut config = common::config(&f);
    config.rerank = rerank(&malformed, 5);
    let (server, url) = common::start(config).await;
    let (_, own) = tags(&client, &url, None).await;
    let (status, answer) = tags(&client, &url, Some(true)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reranked"], false);
    assert!(
        answer["rerank_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    assert_eq!(names(&answer), names(&own));
    server.stop().await.expect("stop");

    let slow = ChatServer::start(|_| {
        Reply::Delay(Duration::from_secs(30), Box::new(Reply::tags(&["Удобная"])))
    });
    let mut config = common::config(&f);
    config.rerank = rerank(&slow, 1);
    let (server, url) = common::start(config).await;
    let started = Instant::now();
    let (status, answer) = tags(&client, &url, Some(true)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["reranked"], false);
    assert!(answer["rerank_error"].as_str().is_some(), "{answer}");
    assert_eq!(names(&answer), names(&own));
    server.stop().await.expect("stop");
}
