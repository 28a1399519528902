//! The labeler against a scripted OpenAI-compatible server: valid, fenced, malformed,
//! slow, rate-limited, failing and dropped answers; chunking; reruns.

#[path = "../../llm/tests/support/chat_server.rs"]
mod chat_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_server::{ChatServer, Reply};
use lamoda_curation::{
    ChatClient, ChatConfig, LabelOptions, LabelSummary, Prompt, Record, Status,
    estimate_review_tokens, label_products, name_cluster, read_store,
};
use lamoda_data::Product;

fn product(sku: &str, reviews: &[&str]) -> Product {
    Product {
        row: 1,
        sku: sku.to_owned(),
        comment_ids: (0..reviews.len() as u64).collect(),
        reviews: reviews.iter().map(|s| s.to_string()).collect(),
        name: "Кеды".to_owned(),
        good_type: "Shoes".to_owned(),
        good_subtype: "SNEAKERS".to_owned(),
        tags: None,
    }
}

fn config(url: &str) -> ChatConfig {
    ChatConfig {
        base_url: url.to_owned(),
        model: "test-model".to_owned(),
        api_key: None,
        temperature: 0.0,
        timeout: Duration::from_millis(400),
        max_retries: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
    }
}

fn options() -> LabelOptions {
    LabelOptions {
        concurrency: 4,
        retry_failed: false,
        max_chunk_tokens: 2000,
    }
}

fn prompt() -> Prompt {
    Prompt::new(Path::new("test-prompt"), "Отзывы:\n{reviews}".to_owned()).expect("prompt")
}

struct Run {
    summary: LabelSummary,
    records: HashMap<String, Record>,
}

async fn run(products: &[Product], config: ChatConfig, options: &LabelOptions, out: &Path) -> Run {
    let client = ChatClient::new(config).expect("client");
    let summary = label_products(
        products,
        Path::new("products.csv"),
        &prompt(),
        &client,
        out,
        options,
        |_| {},
    )
    .await
    .expect("labeling runs");
    let loaded = read_store(out).expect("store reads");
    assert!(!loaded.untidy, "one tidy line per product");
    let records: HashMap<String, Record> = loaded
        .records
        .into_iter()
        .map(|r| (r.sku.clone(), r))
        .collect();
    Run { summary, records }
}

fn out_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("raw.jsonl")
}

/// Per-product request counts, keyed by a marker in the reviews.
#[derive(Default)]
struct Seen(Mutex<HashMap<String, usize>>);

impl Seen {
    /// How many requests for `marker` came before this one.
    fn before(&self, prompt: &str, markers: &[&str]) -> (String, usize) {
        let marker = markers
            .iter()
            .find(|m| prompt.contains(*m))
            .map(|m| m.to_string())
            .unwrap_or_default();
        let mut seen = self.0.lock().expect("seen");
        let n = seen.entry(marker.clone()).or_default();
        *n += 1;
        (marker, *n - 1)
    }
}

#[tokio::test]
async fn valid_and_fenced_answers_are_labeled_and_validated() {
    let server = ChatServer::start(|request| {
        if request.prompt.contains("fenced") {
            Reply::Content("```json\n{\"tags\": [\"Мягкая ткань\", \"42 размер\"]}\n```".into())
        } else {
            Reply::tags(&["Удобные", "удобные!", "Очень удобные мягкие кеды", "Легкие"])
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&server.base_url());
    config.api_key = Some("sekret".to_owned());
    let products = [
        product("A", &["Удобные и легкие"]),
        product("B", &["fenced: мягкая ткань"]),
        product("C", &["  ", "\n"]),
    ];
    let run = run(&products, config, &options(), &out_path(&dir)).await;
    assert_eq!(run.summary.progress.ok, 3);
    assert_eq!(
        run.summary.requests, 2,
        "the product without reviews is not sent"
    );
    let a = &run.records["A"];
    assert_eq!((a.status, a.attempts, a.chunks), (Status::Ok, 1, 1));
    assert_eq!(a.tags, ["Удобные", "Легкие"]);
    let reasons: Vec<&str> = a.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["duplicate of \"Удобные\"", "4 words (at most 3)"]);
    assert_eq!(a.model, "test-model");
    assert!(a.reason.is_none());
    let b = &run.records["B"];
    assert_eq!(b.tags, ["Мягкая ткань"]);
    assert_eq!(b.rejected[0].tag, "42 размер");
    let c = &run.records["C"];
    assert_eq!((c.status, c.chunks, c.attempts), (Status::Ok, 0, 0));
    assert!(c.tags.is_empty());
    for request in server.requests() {
        assert_eq!(request.authorization.as_deref(), Some("Bearer sekret"));
        assert_eq!(request.body["model"], "test-model");
        assert!(
            request.prompt.starts_with("Отзывы:\n1. "),
            "{}",
            request.prompt
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_retried_then_recorded_as_failures() {
    let seen = Seen::default();
    let server = ChatServer::start(move |request| {
        let (marker, before) = seen.before(
            &request.prompt,
            &["always-bad", "bad-once", "not-a-completion"],
        );
        match (marker.as_str(), before) {
            ("always-bad", _) => Reply::Content("Конечно! Вот теги: Удобные, Легкие".into()),
            ("bad-once", 0) => Reply::Content("{\"tags\": [\"Удобные\"], \"note\": 1}".into()),
            ("not-a-completion", 0) => Reply::Status(200, Vec::new(), "<html>".into()),
            _ => Reply::tags(&["Удобные"]),
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let products = [
        product("bad", &["always-bad"]),
        product("once", &["bad-once"]),
        product("html", &["not-a-completion"]),
    ];
    let run = run(
        &products,
        config(&server.base_url()),
        &options(),
        &out_path(&dir),
    )
    .await;
    assert_eq!(
        (run.summary.progress.ok, run.summary.progress.failed),
        (2, 1)
    );
    let bad = &run.records["bad"];
    assert_eq!((bad.status, bad.attempts), (Status::Failed, 3));
    assert!(bad.tags.is_empty());
    let reason = bad.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("chunk 1/1: malformed answer (not JSON"),
        "{reason}"
    );
    assert!(reason.contains("Конечно! Вот теги"), "{reason}");
    assert!(reason.ends_with("(gave up after 3 attempts)"), "{reason}");
    let once = &run.records["once"];
    assert_eq!((once.status, once.attempts), (Status::Ok, 2));
    assert_eq!(once.tags, ["Удобные"]);
    assert_eq!(run.records["html"].attempts, 2);
    assert_eq!(server.count(), 3 + 2 + 2);
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let seen = Seen::default();
    let server = ChatServer::start(move |request| {
        let (marker, before) = seen.before(&request.prompt, &["always-slow", "slow-once"]);
        let slow = Reply::Delay(
            Duration::from_millis(1500),
            Box::new(Reply::tags(&["Поздно"])),
        );
        match (marker.as_str(), before) {
            ("always-slow", _) | ("slow-once", 0) => slow,
            _ => Reply::tags(&["Вовремя"]),
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&server.base_url());
    config.max_retries = 1;
    let products = [
        product("slow", &["always-slow"]),
        product("once", &["slow-once"]),
    ];
    let started = Instant::now();
    let run = run(&products, config, &options(), &out_path(&dir)).await;
    // Two timed-out attempts of 400 ms, not the server's 1.5 s each.
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    let once = &run.records["once"];
    assert_eq!((once.status, once.attempts), (Status::Ok, 2));
    assert_eq!(once.tags, ["Вовремя"]);
    let slow = &run.records["slow"];
    assert_eq!(slow.status, Status::Failed);
    let reason = slow.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("timed out") && reason.ends_with("(gave up after 2 attempts)"),
        "{reason}"
    );
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let seen = Seen::default();
    let server = ChatServer::start(move |request| match seen.before(&request.prompt, &[""]).1 {
        0 => Reply::Status(
            429,
            vec![("Retry-After".to_owned(), "1".to_owned())],
            "{\"error\": \"slow down\"}".into(),
        ),
        _ => Reply::tags(&["Дышат"]),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let run = run(
        &[product("A", &["отзыв"])],
        config(&server.base_url()),
        &options(),
        &out_path(&dir),
    )
    .await;
    // The backoff alone is at most 20 ms; the server asked for 1 s.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let a = &run.records["A"];
    assert_eq!((a.status, a.attempts), (Status::Ok, 2));
    assert_eq!(a.tags, ["Дышат"]);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried_then_fail_with_their_reason() {
    let seen = Seen::default();
    let server = ChatServer::start(move |request| {
        let (marker, before) = seen.before(
            &request.prompt,
            &[
                "500-once",
                "drop-once",
                "always-500",
                "always-drop",
                "bad-request",
            ],
        );
        match (marker.as_str(), before) {
            ("500-once", 0) | ("always-500", _) => {
                Reply::Status(500, Vec::new(), "{\"error\": \"overloaded\"}".into())
            }
            ("drop-once", 0) | ("always-drop", _) => Reply::Drop,
            ("bad-request", _) => {
                Reply::Status(400, Vec::new(), "{\"error\": \"context too long\"}".into())
            }
            _ => Reply::tags(&["Прочные"]),
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let products = [
        product("500", &["500-once"]),
        product("drop", &["drop-once"]),
        product("all500", &["always-500"]),
        product("alldrop", &["always-drop"]),
        product("400", &["bad-request"]),
    ];
    let run = run(
        &products,
        config(&server.base_url()),
        &options(),
        &out_path(&dir),
    )
    .await;
    for sku in ["500", "drop"] {
        let r = &run.records[sku];
        assert_eq!((r.status, r.attempts), (Status::Ok, 2), "{sku}");
        assert_eq!(r.tags, ["Прочные"]);
    }
    let reason = |sku: &str| run.records[sku].reason.clone().unwrap_or_default();
    assert!(
        reason("all500").contains("HTTP 500 Internal Server Error: {\"error\": \"overloaded\"}"),
        "{}",
        reason("all500")
    );
    assert_eq!(run.records["all500"].attempts, 3);
    assert!(
        reason("alldrop").ends_with("(gave up after 3 attempts)"),
        "{}",
        reason("alldrop")
    );
    assert!(!reason("alldrop").contains("HTTP"), "{}", reason("alldrop"));
    // A 400 is not retried: the product fails at once.
    assert_eq!(run.records["400"].attempts, 1);
    assert!(
        reason("400").contains("request refused: HTTP 400"),
        "{}",
        reason("400")
    );
    assert_eq!(run.summary.progress.failed, 3);
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_recorded() {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run(
        &[product("A", &["отзыв"])],
        config(&format!("http://127.0.0.1:{port}/v1")),
        &options(),
        &out_path(&dir),
    )
    .await;
    let a = &run.records["A"];
    assert_eq!((a.status, a.attempts), (Status::Failed, 3));
    let reason = a.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("chunk 1/1: cannot connect"), "{reason}");
}

#[tokio::test]
async fn long_stacks_are_chunked_and_their_tags_merged() {
    let server = ChatServer::start(|request| {
        let p = &request.prompt;
        // Each chunk says what its reviews say; two chunks contradict on "Жмут".
        let mut tags = Vec::new();
        if p.contains("мягкие") {
            tags.push("Мягкие");
        }
        if p.contains("жмут") && !p.contains("не жмут") {
            tags.push("Жмут");
        }
        if p.contains("не жмут") {
            tags.push("Не жмут");
        }
        Reply::tags(&tags)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let refs = [
        "мягкие, но жмут в носке, увы",
        "мягкие и совсем не жмут ногу",
        "мягкие, не жмут, беру ещё раз",
        "отличные, не жмут совершенно",
    ];
    // Each review fits the budget alone, no two together.
    let budget = refs
        .iter()
        .map(|r| estimate_review_tokens(r))
        .max()
        .unwrap_or_default();
    assert!(refs.iter().all(|r| 2 * estimate_review_tokens(r) > budget));
    let options = LabelOptions {
        max_chunk_tokens: budget,
        ..options()
    };
    let run = run(
        &[product("A", &refs)],
        config(&server.base_url()),
        &options,
        &out_path(&dir),
    )
    .await;
    let a = &run.records["A"];
    assert_eq!((a.status, a.chunks, a.attempts), (Status::Ok, 4, 4));
    // "Не жмут" in 3 chunks beats "Жмут" in 1; "Мягкие" in 3 chunks; ties by first seen.
    assert_eq!(a.tags, ["Мягкие", "Не жмут"]);
    assert_eq!(a.rejected.len(), 1);
    assert_eq!(a.rejected[0].tag, "Жмут");
    for request in server.requests() {
        assert_eq!(request.prompt.matches("\n1. ").count(), 1);
        assert!(!request.prompt.contains("\n2. "), "one review per chunk");
    }
}

#[tokio::test]
async fn a_401_stops_the_run_and_keeps_what_is_done() {
    let server = ChatServer::start(|request| {
        if request.prompt.contains("first") {
            Reply::tags(&["Теплые"])
        } else {
            Reply::Status(401, Vec::new(), "{\"error\": \"bad key\"}".into())
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(&dir);
    let client = ChatClient::new(config(&server.base_url())).expect("client");
    let options = LabelOptions {
        concurrency: 1,
        ..options()
    };
    let products = [
        product("A", &["first"]),
        product("B", &["second"]),
        product("C", &["third"]),
    ];
    let err = label_products(
        &products,
        Path::new("p.csv"),
        &prompt(),
        &client,
        &out,
        &options,
        |_| {},
    )
    .await
    .expect_err("401 stops the run");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401 Unauthorized") && text.contains("--api-key-env"),
        "{text}"
    );
    let records = read_store(&out).expect("store").records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].sku, "A");
    assert_eq!(server.count(), 2, "no retry of a 401, nothing after it");
}

#[tokio::test]
async fn reruns_skip_done_products_and_redo_failures_on_request() {
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail.clone();
    let server = ChatServer::start(move |request| {
        if request.prompt.contains("flaky") && flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(503, Vec::new(), "{}".into())
        } else {
            Reply::tags(&["Удобные"])
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(&dir);
    let products = [
        product("A", &["ok"]),
        product("B", &["flaky"]),
        product("C", &["ok too"]),
    ];
    let cfg = || config(&server.base_url());
    let first = run(&products, cfg(), &options(), &out).await;
    assert_eq!(
        (first.summary.progress.ok, first.summary.progress.failed),
        (2, 1)
    );
    let requests = server.count();
    fail.store(false, std::sync::atomic::Ordering::SeqCst);

    // Without --retry-failed nothing is redone.
    let second = run(&products, cfg(), &options(), &out).await;
    assert_eq!(server.count(), requests);
    assert_eq!(second.summary.progress.already_done, 3);
    assert_eq!(second.summary.kept_failed, 1);
    assert_eq!(second.records, first.records);

    // With it, only the failure.
    let retry = LabelOptions {
        retry_failed: true,
        ..options()
    };
    let third = run(&products, cfg(), &retry, &out).await;
    assert_eq!(server.count(), requests + 1);
    assert_eq!((third.summary.progress.ok, third.summary.redone), (1, 1));
    assert_eq!(third.records.len(), 3);
    assert!(third.records.values().all(|r| r.status == Status::Ok));
    assert_eq!(third.records["A"], first.records["A"]);

    // Another model changes every key: all is redone, still one line per product.
    let mut other = cfg();
    other.model = "other-model".to_owned();
    let fourth = run(&products, other, &options(), &out).await;
    assert_eq!((fourth.summary.progress.ok, fourth.summary.redone), (3, 3));
    assert_eq!(fourth.records.len(), 3);
    assert!(fourth.records.values().all(|r| r.model == "other-model"));
}

/// Consolidation's cluster names: a fenced answer gives the first tag that passes the tag
/// rules; a size word is skipped; an answer that stays malformed leaves the cluster
/// unnamed with the reason; a 401 is an error of the whole step.
#[tokio::test]
async fn clusters_are_named_from_the_first_usable_tag() {
    let server = ChatServer::start(|request| {
        if request.prompt.contains("мягкая кожа") {
            Reply::Content("```json\n{\"tags\": [\"42 размер\", \"Мягкая кожа\"]}\n```".into())
        } else if request.prompt.contains("не жмет") {
            Reply::Content("the tags are: не жмет".into())
        } else {
            Reply::Status(401, Vec::new(), "{\"error\": \"bad key\"}".into())
        }
    });
    let client = ChatClient::new(config(&server.base_url())).expect("client");
    let members = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();

    let named = name_cluster(&client, "Shoes", &members(&["мягкая кожа", "кожа мягкая"]))
        .await
        .expect("the server answers");
    assert_eq!(named, Ok("мягкая кожа".to_owned()));
    let first = &server.requests()[0];
    assert!(
        first.prompt.contains("Shoes") && first.prompt.contains("- кожа мягкая"),
        "{}",
        first.prompt
    );

    let before = server.count();
    let unnamed = name_cluster(&client, "Shoes", &members(&["не жмет", "не давит"]))
        .await
        .expect("the server answers");
    let reason = unnamed.expect_err("a malformed answer gives no name");
    assert!(!reason.is_empty());
    assert_eq!(
        server.count() - before,
        3,
        "a malformed answer is asked again (max_retries 2)"
    );

    let err = name_cluster(&client, "Shoes", &members(&["теплые", "греют"]))
        .await
        .expect_err("401 is an error");
    assert!(err.to_string().contains("401"), "{err}");
}

/// The consolidation workflow with LLM names: every cluster of more than one tag is asked
/// for (two at a time), a usable name replaces the most frequent member in the mapping, a
/// cluster without one keeps it; a 401 stops the step with the server's reason.
#[test]
fn a_pool_is_consolidated_with_the_llm_names_of_its_clusters() {
    use std::collections::BTreeMap;

    use lamoda_curation::consolidate::{
        ClusterNaming, ConsolidateConfig, ConsolidateEvent, ReferenceMapping, consolidate_pool,
    };
    use lamoda_curation::{Pool, PoolEntry};

    let server = ChatServer::start(|request| {
        if request.prompt.contains("мягкая кожа") {
            Reply::tags(&["Мягкая кожа"])
        } else if request.prompt.contains("не жмет") {
            Reply::Content("the tags are: не жмет".into())
        } else {
            Reply::Status(401, Vec::new(), "{\"error\": \"bad key\"}".into())
        }
    });
    let entry = |good_type: &str, tag: &str, frequency| PoolEntry {
        good_type: good_type.to_owned(),
        tag: tag.to_owned(),
        frequency,
        variants: vec![tag.to_owned()],
    };
    let pool = Pool {
        entries: vec![
            entry("Shoes", "кожа мягкая", 5),
            entry("Shoes", "мягкая кожа", 3),
            entry("Shoes", "не жмет", 4),
            entry("Shoes", "не давит", 2),
            entry("Shoes", "яркие", 1),
        ],
        products: BTreeMap::from([("Shoes".to_owned(), 10)]),
    };
    let vectors: HashMap<String, Vec<f32>> = [
        ("кожа мягкая", [1.0, 0.0, 0.0]),
        ("мягкая кожа", [1.0, 0.0, 0.0]),
        ("не жмет", [0.0, 1.0, 0.0]),
        ("не давит", [0.0, 1.0, 0.0]),
        ("яркие", [0.0, 0.0, 1.0]),
    ]
    .into_iter()
    .map(|(t, v)| (t.to_owned(), v.to_vec()))
    .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConsolidateConfig {
        threshold: 0.9,
        out: dir.path().join("mapping.csv"),
        reference: ReferenceMapping::None,
        naming: Some(ClusterNaming {
            chat: config(&server.base_url()),
            concurrency: 2,
        }),
    };
    let mut naming = Vec::new();
    let report = consolidate_pool(&config, &pool, &vectors, |event| match event {
        ConsolidateEvent::Naming { done, total } => naming.push((done, total)),
        ConsolidateEvent::Named { named, failed } => naming.push((named, failed)),
        _ => {}
    })
    .expect("consolidated");
    assert_eq!(naming, [(0, 2), (1, 2), (2, 2), (1, 1)]);
    assert_eq!(report.named, Some((1, 1)));
    assert_eq!(
        std::fs::read_to_string(&config.out).expect("mapping"),
        "good_type,old_tags,new_tag\n\
         Shoes,кожа мягкая; мягкая кожа,мягкая кожа\n\
         Shoes,не жмет; не давит,не жмет\n\
         Shoes,яркие,яркие\n"
    );

    let refused = Pool {
        entries: vec![entry("Shoes", "теплые", 2), entry("Shoes", "греют", 1)],
        products: BTreeMap::from([("Shoes".to_owned(), 2)]),
    };
    let warm: HashMap<String, Vec<f32>> = [("теплые", 1.0), ("греют", 1.0)]
        .into_iter()
        .map(|(t, x)| (t.to_owned(), vec![x, 0.0]))
        .collect();
    let err = consolidate_pool(&config, &refused, &warm, |_| {}).expect_err("401");
    assert!(err.to_string().contains("401"), "{err}");
}
