//! `lamoda-tags label` as a process against a slow scripted server that returns malformed
//! answers for some products: killed mid-run (SIGKILL), then rerun without and with
//! `--retry-failed`. Every product must end up exactly once, `ok`, with nothing lost, no
//! finished product asked again and no line a rerun cannot read. Also `lamoda-tags pool`
//! on the result, and the one-line errors on bad input.

#[path = "../crates/llm/tests/support/chat_server.rs"]
mod chat_server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_server::{ChatServer, Reply};

const PRODUCTS: usize = 24;
/// Products whose answers are malformed while the server is flaky.
const FLAKY: [&str; 3] = ["P03", "P11", "P17"];

fn sku(i: usize) -> String {
    format!("P{i:02}")
}

/// The SKU a prompt is about (its reviews carry `SKU=Pnn`).
fn sku_of(prompt: &str) -> Option<String> {
    let at = prompt.find("SKU=")? + 4;
    prompt.get(at..at + 3).map(str::to_owned)
}

fn quote(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}

fn write_products(path: &Path) {
    let mut text = "product_sku,comment_id,comment_text,name,good_type,good_subtype\n".to_owned();
    for i in 0..PRODUCTS {
        let reviews = serde_json::json!([
            format!("SKU={}: мягкая ткань, сидят хорошо", sku(i)),
            "Не жмут, легкие",
        ]);
        text += &format!(
            "{},\"[{}, {}]\",{},Кеды,Shoes,SNEAKERS\n",
            sku(i),
            2 * i,
            2 * i + 1,
            quote(&reviews.to_string())
        );
    }
    std::fs::write(path, text).expect("write the product table");
}

struct Setup {
    _dir: tempfile::TempDir,
    products: PathBuf,
    out: PathBuf,
    server: ChatServer,
    flaky: Arc<AtomicBool>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let products = dir.path().join("products.csv");
    write_products(&products);
    let flaky = Arc::new(AtomicBool::new(true));
    let flag = flaky.clone();
    let server = ChatServer::start(move |request| {
        let sku = sku_of(&request.prompt).unwrap_or_default();
        let reply = if flag.load(Ordering::SeqCst) && FLAKY.contains(&sku.as_str()) {
            Reply::Content("Теги: мягкие, легкие".to_owned())
        } else {
            Reply::tags(&["Мягкая ткань", &format!("Код {sku}")])
        };
        Reply::Delay(Duration::from_millis(120), Box::new(reply))
    });
    Setup {
        out: dir.path().join("raw.jsonl"),
        products,
        server,
        flaky,
        _dir: dir,
    }
}

fn label(s: &Setup, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lamoda-tags"));
    cmd.arg("label")
        .arg("--input")
        .arg(&s.products)
        .arg("--out")
        .arg(&s.out)
        .args(["--base-url", &s.server.base_url(), "--model", "test-model"])
        .args([
            "--concurrency",
            "2",
            "--max-retries",
            "1",
            "--backoff-ms",
            "5",
        ])
        .args(["--timeout-s", "10"])
        .args(extra)
        .env_remove("OPENAI_API_KEY");
    cmd
}

/// Runs to the end; its stderr.
fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("lamoda-tags runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lamoda-tags failed: {stderr}");
    stderr
}

/// Every line of the store, each a whole record; the file ends with a line break.
fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read the store");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a cut last line left behind"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}")))
        .collect()
}

/// The records by SKU, asserting one per product.
fn by_sku(records: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    let mut map = BTreeMap::new();
    for r in records {
        let sku = r["sku"].as_str().expect("sku").to_owned();
        assert!(map.insert(sku.clone(), r.clone()).is_none(), "{sku} twice");
    }
    map
}

/// The SKUs asked for since request `from`.
fn asked_since(server: &ChatServer, from: usize) -> Vec<String> {
    server.requests()[from..]
        .iter()
        .filter_map(|r| sku_of(&r.prompt))
        .collect()
}

#[test]
fn a_killed_run_resumes_without_loss_or_duplicates() {
    let s = setup();

    // 1. Killed (SIGKILL) once a few products are done.
    let mut child = label(&s, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lamoda-tags");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = std::fs::read_to_string(&s.out).map_or(0, |t| t.lines().count());
        if lines >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the first run wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let text = std::fs::read_to_string(&s.out).expect("store");
    let whole: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    let first: BTreeMap<String, serde_json::Value> = by_sku(
        &whole
            .iter()
            .map(|l| serde_json::from_str(l).expect("every whole line is a record"))
            .collect::<Vec<_>>(),
    );
    assert!(
        first.len() < PRODUCTS,
        "the kill came too late to test anything"
    );

    // A kill in the middle of a write leaves a cut last line.
    let mut cut = text.clone();
    cut.push_str("{\"sku\": \"P2");
    std::fs::write(&s.out, cut).expect("cut the store");

    // 2. Rerun to the end, the server still flaky.
    let from = s.server.count();
    let stderr = run_ok(label(&s, &[]));
    assert!(stderr.contains("a cut last line"), "{stderr}");
    let asked: BTreeSet<String> = asked_since(&s.server, from).into_iter().collect();
    for done in first.keys() {
        assert!(!asked.contains(done), "{done} was done and asked again");
    }
    let second = by_sku(&records(&s.out));
    assert_eq!(second.len(), PRODUCTS, "every product recorded once");
    for (sku, r) in &second {
        if FLAKY.contains(&sku.as_str()) {
            assert_eq!(r["status"], "failed", "{sku}");
            let reason = r["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("malformed answer"), "{sku}: {reason}");
            assert_eq!(r["attempts"], 2, "{sku}: first attempt and one retry");
        } else {
            assert_eq!(r["status"], "ok", "{sku}");
            assert_eq!(
                r["tags"],
                serde_json::json!(["Мягкая ткань", format!("Код {sku}")])
            );
        }
        if let Some(before) = first.get(sku) {
            assert_eq!(r, before, "{sku}: a finished record changed");
        }
    }

    // 3. Without --retry-failed the failures stay and nothing is asked.
    s.flaky.store(false, Ordering::SeqCst);
    let from = s.server.count();
    let stderr = run_ok(label(&s, &[]));
    assert_eq!(s.server.count(), from, "{stderr}");
    assert!(
        stderr.contains("24 already there (3 of them failed"),
        "{stderr}"
    );
    assert_eq!(by_sku(&records(&s.out)), second);

    // 4. With it, exactly the failures are redone.
    let from = s.server.count();
    run_ok(label(&s, &["--retry-failed"]));
    let mut asked = asked_since(&s.server, from);
    asked.sort();
    assert_eq!(asked, FLAKY);
    let last = by_sku(&records(&s.out));
    assert_eq!(last.len(), PRODUCTS);
    for (sku, r) in &last {
        assert_eq!(r["status"], "ok", "{sku}");
        if !FLAKY.contains(&sku.as_str()) {
            assert_eq!(r, &second[sku], "{sku}: an ok record changed");
        }
    }

    // The pool of the result: every product has "Мягкая ткань".
    let pool = s.out.with_file_name("pool.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_lamoda-tags"))
        .arg("pool")
        .arg("--input")
        .arg(&s.out)
        .arg("--out")
        .arg(&pool)
        .output()
        .expect("lamoda-tags pool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&pool).expect("pool");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("good_type,tag,frequency,variants"));
    assert_eq!(lines.next(), Some("Shoes,мягкая ткань,24,Мягкая ткань"));
    assert_eq!(lines.count(), PRODUCTS, "one `код pnn` tag per product");
}

#[test]
fn bad_input_is_one_error_line() {
    let s = setup();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--input", "/nonexistent/products.csv"],
            "/nonexistent/products.csv",
        ),
        (
            &["--base-url", "https://api.example.invalid/v1"],
            "https is not built in",
        ),
        (&["--timeout-s", "0"], "--timeout-s must be a positive"),
    ];
    for (args, expected) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lamoda-tags"));
        cmd.arg("label");
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in args.chunks(2) {
            given.insert(pair[0], pair[1]);
        }
        let products = s.products.to_string_lossy().into_owned();
        let out = s.out.to_string_lossy().into_owned();
        let url = s.server.base_url();
        for (flag, default) in [
            ("--input", products.as_str()),
            ("--out", out.as_str()),
            ("--base-url", url.as_str()),
            ("--model", "m"),
            ("--timeout-s", "5"),
        ] {
            cmd.args([flag, given.get(flag).copied().unwrap_or(default)]);
        }
        let output = cmd.output().expect("lamoda-tags runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.lines().count() == 1,
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(s.server.count(), 0);
    assert!(!s.out.exists(), "nothing written on bad input");
}
