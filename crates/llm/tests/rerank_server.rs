//! The re-ranker against a scripted OpenAI-compatible server: an answer confirming our
//! candidates, one dropping some, one inventing a tag outside the pool, a malformed one, a
//! slow server (past the request timeout, past the overall deadline), a refused key.

#[path = "support/chat_server.rs"]
mod chat_server;

use std::time::{Duration, Instant};

use chat_server::{ChatServer, Reply};
use lamoda_data::{Category, EtalonPool, TagGroup};
use lamoda_inference::{PredictedTag, Prediction, TagProbability};
use lamoda_llm::{RerankConfig, RerankInput, RerankOutcome, Reranker, apply_rerank};

fn pool() -> EtalonPool {
    let mut pool = EtalonPool::new(
        Category::Bags,
        [
            "Вместительная",
            "Удобная",
            "Высокое качество",
            "Лёгкая",
            "Тяжёлая",
            "Есть дефекты",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .expect("pool");
    pool.exclusive.push(TagGroup {
        name: "weight".to_owned(),
        tags: vec!["Лёгкая".to_owned(), "Тяжёлая".to_owned()],
    });
    pool
}

/// Our answer: three tags decoded; «Лёгкая» (0.45) and «Тяжёлая» (0.40) just below the
/// threshold, «Есть дефекты» (0.02) far below.
fn prediction() -> Prediction {
    let tag = |t: &str, p: f32| PredictedTag {
        tag: t.to_owned(),
        probability: p,
        mentions: 1,
        evidence: Vec::new(),
    };
    let probabilities = [
        ("Вместительная", 0.93),
        ("Удобная", 0.81),
        ("Высокое качество", 0.64),
        ("Лёгкая", 0.45),
        ("Тяжёлая", 0.40),
        ("Есть дефекты", 0.02),
    ]
    .iter()
    .map(|(t, p)| TagProbability {
        tag: t.to_string(),
        probability: *p,
    })
    .collect();
    Prediction {
        good_type: "Bags".to_owned(),
        category: Category::Bags,
        fallback: false,
        tags: vec![
            tag("Вместительная", 0.93),
            tag("Удобная", 0.81),
            tag("Высокое качество", 0.64),
        ],
        probabilities,
        calibrated: false,
        reviews_read: 2,
    }
}

fn reviews() -> Vec<String> {
    vec![
        "Очень вместительная сумка, влезает ноутбук".to_owned(),
        "Лёгкая, но молния быстро сломалась".to_owned(),
    ]
}

fn config(server: &ChatServer) -> RerankConfig {
    let mut chat = RerankConfig::chat_config(&server.base_url(), "test-model", None);
    chat.timeout = Duration::from_millis(400);
    chat.max_retries = 2;
    chat.backoff_base = Duration::from_millis(5);
    chat.backoff_max = Duration::from_millis(20);
    let mut config = RerankConfig::new(chat);
    config.top_k = 5;
    config
}

async fn rerank(config: RerankConfig) -> (RerankOutcome, Prediction) {
    let reranker = Reranker::new(config).expect("reranker");
    let (pool, reviews, prediction) = (pool(), reviews(), prediction());
    let outcome = reranker
        .rerank(RerankInput::from_prediction(&pool, &reviews, &prediction))
        .await;
    let mut applied = prediction.clone();
    apply_rerank(&mut applied, &outcome);
    (outcome, applied)
}

fn tags(prediction: &Prediction) -> Vec<&str> {
    prediction.tags.iter().map(|t| t.tag.as_str()).collect()
}

#[tokio::test]
async fn confirming_keeps_the_candidates_in_our_order_with_the_prompt_as_sent() {
    let server = ChatServer::start(|_| Reply::tags(&["Удобная", "Вместительная", "Лёгкая"]));
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(outcome.reranked, "{outcome:?}");
    assert_eq!(outcome.rerank_error, None);
    assert_eq!(outcome.tags, ["Вместительная", "Удобная", "Лёгкая"]);
    assert!(outcome.dropped.is_empty(), "{outcome:?}");
    assert_eq!(outcome.attempts, 1);
    // A confirmed candidate below our threshold comes with its own probability.
    assert_eq!(tags(&applied), ["Вместительная", "Удобная", "Лёгкая"]);
    assert!((applied.tags[2].probability - 0.45).abs() < 1e-6);
    assert_eq!(applied.tags[2].mentions, 0);
    assert_eq!(applied.tags[0].mentions, 1);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let prompt = &requests[0].prompt;
    for review in reviews() {
        assert!(prompt.contains(&review), "{prompt}");
    }
    // The top 5 of 6 candidates, with their probabilities.
    assert!(prompt.contains("- Вместительная (0.93)"), "{prompt}");
    assert!(prompt.contains("- Тяжёлая (0.40)"), "{prompt}");
    assert!(!prompt.contains("Есть дефекты"), "{prompt}");
    assert_eq!(requests[0].body["model"], "test-model");
    assert_eq!(requests[0].body["temperature"], 0.0);
}

#[tokio::test]
async fn dropping_keeps_only_what_the_model_confirms() {
    let server = ChatServer::start(|_| {
        Reply::Content("```json\n{\"tags\": [\"Высокое качество\"]}\n```".to_owned())
    });
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(outcome.reranked);
    assert_eq!(tags(&applied), ["Высокое качество"]);

    // Confirming nothing leaves no tag: still a re-ranked answer.
    let server = ChatServer::start(|_| Reply::tags(&[]));
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(outcome.reranked);
    assert!(applied.tags.is_empty());
}

#[tokio::test]
async fn an_invented_tag_or_a_second_of_a_group_is_never_kept() {
    let server = ChatServer::start(|_| {
        Reply::tags(&[
            "Отличная сумка",
            "Тяжёлая",
            "Лёгкая",
            "Есть дефекты",
            "вместительная",
        ])
    });
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(outcome.reranked);
    // Our spelling of a case variant; the more probable of the weight group.
    assert_eq!(tags(&applied), ["Вместительная", "Лёгкая"]);
    let notes: Vec<String> = outcome
        .dropped
        .iter()
        .map(|d| format!("{}: {}", d.tag, d.reason))
        .collect();
    assert_eq!(
        notes,
        [
            "Отличная сумка: not a tag of the bags pool",
            // In the pool but not among the top 5 sent.
            "Есть дефекты: not among the candidates sent",
            "Тяжёлая: exclusive group `weight` keeps the more probable \"Лёгкая\"",
        ]
    );
}

#[tokio::test]
async fn a_malformed_answer_falls_back_after_the_retries_saying_why() {
    let server = ChatServer::start(|_| Reply::Content("Теги: Вместительная, Удобная".to_owned()));
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(!outcome.reranked);
    let error = outcome.rerank_error.as_deref().expect("an error");
    assert!(
        error.contains("malformed answer") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert!(error.contains(&server.base_url()), "{error}");
    assert_eq!(server.count(), 3);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(
        outcome.tags,
        ["Вместительная", "Удобная", "Высокое качество"]
    );
    assert_eq!(applied, prediction());

    // A malformed first answer, then a good one: re-ranked on the retry.
    let server = ChatServer::start(|r| {
        if r.n == 0 {
            Reply::Content("{\"tags\": [\"Удобная\"], \"why\": \"…\"}".to_owned())
        } else {
            Reply::tags(&["Удобная"])
        }
    });
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(outcome.reranked, "{outcome:?}");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(tags(&applied), ["Удобная"]);
}

#[tokio::test]
async fn a_slow_server_falls_back_quickly() {
    let slow = || Reply::Delay(Duration::from_secs(5), Box::new(Reply::tags(&["Удобная"])));
    // Past the request timeout (0.2 s, one retry).
    let server = ChatServer::start(move |_| slow());
    let mut config = config(&server);
    config.chat.timeout = Duration::from_millis(200);
    config.chat.max_retries = 1;
    let started = Instant::now();
    let (outcome, applied) = rerank(config).await;
    let took = started.elapsed();
    assert!(!outcome.reranked);
    let error = outcome.rerank_error.as_deref().expect("an error");
    assert!(error.contains("timed out"), "{error}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(applied, prediction());

    // Past the overall deadline, whatever the request timeout.
    let server = ChatServer::start(move |_| slow());
    let mut config = self::config(&server);
    config.chat.timeout = Duration::from_secs(10);
    config.deadline = Some(Duration::from_millis(300));
    let started = Instant::now();
    let (outcome, _) = rerank(config).await;
    let took = started.elapsed();
    assert!(!outcome.reranked);
    let error = outcome.rerank_error.as_deref().expect("an error");
    assert!(error.contains("deadline"), "{error}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_refused_key_falls_back_at_once() {
    let server = ChatServer::start(|_| {
        Reply::Status(401, Vec::new(), "{\"error\": \"bad key\"}".to_owned())
    });
    let (outcome, applied) = rerank(config(&server)).await;
    assert!(!outcome.reranked);
    let error = outcome.rerank_error.as_deref().expect("an error");
    assert!(
        error.contains("HTTP 401") && error.contains("check the API key"),
        "{error}"
    );
    assert!(!error.contains("--api-key-env"), "{error}");
    assert_eq!(server.count(), 1);
    assert_eq!(applied, prediction());
}

#[test]
fn the_blocking_wrapper_reranks_from_synchronous_code() {
    let server = ChatServer::start(|_| Reply::tags(&["Удобная"]));
    let reranker = Reranker::new(config(&server)).expect("reranker");
    let (pool, reviews, prediction) = (pool(), reviews(), prediction());
    let outcome =
        reranker.rerank_blocking(RerankInput::from_prediction(&pool, &reviews, &prediction));
    assert!(outcome.reranked, "{outcome:?}");
    assert_eq!(outcome.tags, ["Удобная"]);
}

#[tokio::test]
async fn the_blocking_wrapper_refuses_to_block_an_async_runtime() {
    let server = ChatServer::start(|_| Reply::tags(&["Удобная"]));
    let reranker = Reranker::new(config(&server)).expect("reranker");
    let (pool, reviews, prediction) = (pool(), reviews(), prediction());
    let outcome =
        reranker.rerank_blocking(RerankInput::from_prediction(&pool, &reviews, &prediction));
    assert!(!outcome.reranked);
    assert!(
        outcome
            .rerank_error
            .as_deref()
            .is_some_and(|e| e.contains("inside an async runtime")),
        "{outcome:?}"
    );
    assert_eq!(server.count(), 0);
}
