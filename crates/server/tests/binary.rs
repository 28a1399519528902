//! The `lamoda-server` binary: it prints where it listens, SIGTERM lets the request in
//! flight finish before it exits 0, and a bundle that cannot be loaded is one error line
//! and exit 1.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

fn server(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lamoda-server"));
    cmd.args(args)
        .env_remove("LAMODA_DATA")
        .env_remove("LAMODA_API_KEY")
        .env(
            "LAMODA_REVIEWS_DB",
            std::env::temp_dir().join("lamoda-server-binary-test.sqlite"),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[cfg(unix)]
#[test]
fn sigterm_finishes_the_request_in_flight() {
    let f = common::fixture();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut child = server(&[
        "--port",
        &port.to_string(),
        "--model",
        &f.bundle.display().to_string(),
        "--max-batch-items",
        "64",
        "--max-body-bytes",
        "33554432",
    ])
    .spawn()
    .expect("start lamoda-server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(
        first.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{first}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("http://127.0.0.1:{port}");
    let status = runtime.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..500 {
            if let Ok(r) = client.get(format!("{url}/health")).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let review = "лёгкие удобные кроссовки, сидят отлично ".repeat(8);
        let items: Vec<_> = (0..64)
            .map(|_| json!({"good_type": "Shoes", "reviews": vec![review.clone(); 256]}))
            .collect();
        let slow = tokio::spawn({
            let client = client.clone();
            let url = format!("{url}/v1/tags/batch");
            async move {
                client
                    .post(url)
                    .json(&json!({ "items": items }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        });
        // Once it is in flight, SIGTERM.
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
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        slow.await.expect("join")
    });
    assert_eq!(status.expect("the request in flight is answered"), 200);
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{exit}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
}

#[test]
fn a_bundle_that_cannot_load_is_one_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = server(&[
        "--port",
        "0",
        "--model",
        &dir.path().join("nothing").display().to_string(),
    ])
    .output()
    .expect("run lamoda-server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("nothing"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = server(&["--max-reviews", "0", "--model", "x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: --max-reviews must be at least 1"
    );
}
