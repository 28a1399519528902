//! The `predict-tags` binary: exit codes and one-line messages for usage and runtime
//! errors, and real answers (text and JSON) from a tiny random base with adapters for the
//! repository's bags and accs pools, written by the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lamoda_data::Category;
use lamoda_inference::lamoda_model::{default_device, load_hf_dir};
use lamoda_inference::testing::{write_fixed_adapter, write_tiny_base};
use lamoda_tags::Project;

const BIN: &str = env!("CARGO_BIN_EXE_predict-tags");

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("predict_tags_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A tiny base in `dir/base` and adapters in `dir/adapters` for bags (first tags 0.93,
/// 0.81, 0.64, the rest 0.1) and accs (0.7, the rest 0.2), on the repository's pools.
fn tiny_model(dir: &Path) -> (PathBuf, PathBuf) {
    let base_dir = dir.join("base");
    write_tiny_base(&base_dir, 3).expect("write tiny base");
    let base = load_hf_dir(&base_dir, &default_device()).expect("load tiny base");
    let model_dir = dir.join("adapters");
    let project = Project::from_build();
    for (category, head) in [
        (Category::Bags, vec![0.93, 0.81, 0.64]),
        (Category::Accs, vec![0.7]),
    ] {
        let pool = project.pool(category).expect("pool");
        let rest = if category == Category::Bags { 0.1 } else { 0.2 };
        let mut probs = vec![rest; pool.len()];
        probs[..head.len()].copy_from_slice(&head);
        write_fixed_adapter(&base, &model_dir, &pool, &probs, None).expect("write adapter");
    }
    (base_dir, model_dir)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run predict-tags")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit `code`, nothing on stdout, one line on stderr containing every `needle`.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let out = run(&["--text", "   ", "--good-type", "Shoes"]);
    assert_fails(&out, 2, &["--text", "empty"]);
    let out = run(&["--text", "", "--good-type", "Shoes"]);
    assert_fails(&out, 2, &["empty"]);
    let out = run(&["--good-type", "Shoes"]);
    assert_fails(&out, 2, &["--text", "--reviews"]);
    let out = run(&["--text", "ok"]);
    assert_fails(&out, 2, &["--good-type"]);
    let out = run(&["--text", "ok", "--good-type", "Bags", "--threshold", "1.5"]);
    assert_fails(&out, 2, &["--threshold", "1.5"]);
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("--good-type"));
}

#[test]
fn unknown_model_dir_exits_1_naming_it() {
    let dir = scratch("unknown_model_dir");
    let missing = dir.join("no-such-adapters");
    let missing_s = missing.to_string_lossy().into_owned();
    let out = run(&[
        "--text",
        "Отличные кроссовки",
        "--good-type",
        "Shoes",
        "--model",
        &missing_s,
    ]);
    assert_fails(&out, 1, &["no-such-adapters", "--model"]);

    // A directory without any adapter is named too.
    let dir_s = dir.to_string_lossy().into_owned();
    let out = run(&["--text", "x", "--good-type", "Shoes", "--model", &dir_s]);
    assert_fails(&out, 1, &["unknown_model_dir", "no adapters"]);
}

#[test]
fn missing_base_exits_1_saying_how_to_fetch() {
    let dir = scratch("missing_base");
    let (_, model_dir) = tiny_model(&dir);
    let no_base = dir.join("no-base").to_string_lossy().into_owned();
    let model = model_dir.to_string_lossy().into_owned();
    let out = run(&[
        "--text",
        "Вместительная сумка",
        "--good-type",
        "Bags",
        "--model",
        &model,
        "--base",
        &no_base,
    ]);
    assert_fails(&out, 1, &["no-base", "cargo xtask fetch-base e5-small"]);
}

#[test]
fn runtime_errors_exit_1() {
    let dir = scratch("runtime_errors");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    // No shoes adapter in the model dir.
    let out = run(&[
        "--text",
        "x",
        "--good-type",
        "Shoes",
        "--model",
        &model,
        "--base",
        &base,
    ]);
    assert_fails(&out, 1, &["shoes", "no adapter"]);
    // A reviews file without reviews, and one that does not exist.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").expect("write");
    let empty_s = empty.to_string_lossy().into_owned();
    let out = run(&[
        "--reviews",
        &empty_s,
        "--good-type",
        "Bags",
        "--model",
        &model,
        "--base",
        &base,
    ]);
    assert_fails(&out, 1, &["empty.txt", "no reviews"]);
    let out = run(&["--reviews", "/no/such/file.txt", "--good-type", "Bags"]);
    assert_fails(&out, 1, &["/no/such/file.txt"]);
}

#[test]
fn tags_reviews_with_a_tiny_model() {
    let dir = scratch("tags_reviews");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    let project = Project::from_build();
    let bags = project.pool(Category::Bags).expect("bags pool");
    let accs = project.pool(Category::Accs).expect("accs pool");
    let with_model = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--model", &model, "--base", &base]);
        run(&all)
    };

    // Text: the category line, then tag<TAB>probability above 0.5, most probable first.
    let out = with_model(&["--text", "Вместительная сумка", "--good-type", "Bags"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "category: bags", "{text}");
    let expected: Vec<String> = [0.93, 0.81, 0.64]
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}\t{p:.2}", bags.tags[i]))
        .collect();
    assert_eq!(lines[1..], expected, "{text}");

    // --threshold 0.7 drops the third tag.
    let out = with_model(&[
        "--text",
        "Вместительная сумка",
        "--good-type",
        "Bags",
        "--threshold",
        "0.7",
    ]);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));

    // Fallback: Toys → accs, flagged.
    let out = with_model(&["--text", "Милая игрушка", "--good-type", "Toys"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "category: accs (fallback)",
            &format!("{}\t0.70", accs.tags[0])
        ],
        "{text}"
    );

    // JSON, reviews from a file (a JSON list, then one review per line: same answer).
    let list = dir.join("reviews.json");
    std::fs::write(&list, r#"["Вместительная", "", "Удобная и лёгкая"]"#).expect("write");
    let lines_file = dir.join("reviews.txt");
    std::fs::write(&lines_file, "Вместительная\n\nУдобная и лёгкая\n").expect("write");
    let mut answers = Vec::new();
    for file in [&list, &lines_file] {
        let f = file.to_string_lossy().into_owned();
        let out = with_model(&["--reviews", &f, "--good-type", "Bags", "--json"]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        answers.push(v);
    }
    assert_eq!(answers[0], answers[1]);
    let v = &answers[0];
    assert_eq!(v["good_type"], "Bags");
    assert_eq!(v["category"], "bags");
    assert_eq!(v["fallback"], false);
    let tags = v["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 3);
    assert_eq!(tags[0]["tag"], bags.tags[0].as_str());
    let p = tags[0]["probability"].as_f64().expect("probability");
    assert!((p - 0.93).abs() < 1e-4, "{p}");
    let probs = v["probabilities"].as_array().expect("probabilities");
    assert_eq!(probs.len(), bags.len());
    for (entry, tag) in probs.iter().zip(&bags.tags) {
        assert_eq!(entry["tag"], tag.as_str());
    }
}
