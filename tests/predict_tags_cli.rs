//! The `predict-tags` binary: exit codes and one-line messages for usage and runtime
//! errors, real answers (text and JSON) from a tiny random bundle with adapters for the
//! repository's bags and accs pools, written by the test; the binary and bundle copied
//! elsewhere and run from there; batch tagging of a table (batched = one by one, bad rows,
//! kill and resume, shards), also of Parquet tables into Parquet datasets (built and read
//! with the arrow and parquet crates here); LLM re-ranking against a scripted chat server (confirming,
//! falling back on a malformed or slow answer, usage errors).

#[path = "../crates/llm/tests/support/chat_server.rs"]
mod chat_server;

#[path = "support/output.rs"]
mod output;
use output::{assert_fails, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

use chat_server::{ChatServer, Reply};

use lamoda_data::Category;
use lamoda_data::Project;
use lamoda_inference::lamoda_model::{default_device, load_hf_dir};
use lamoda_testkit::{bundle_tiny, routing_toml, write_fixed_adapter, write_tiny_base};

/// The project checkout these tests run in.
fn project() -> Project {
    Project::at(env!("CARGO_MANIFEST_DIR"))
}

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
    let project = project();
    let mut pools = Vec::new();
    for (category, head) in [
        (Category::Bags, vec![0.93, 0.81, 0.64]),
        (Category::Accs, vec![0.7]),
    ] {
        let pool = project.pool(category).expect("pool");
        let rest = if category == Category::Bags { 0.1 } else { 0.2 };
        let mut probs = vec![rest; pool.len()];
        probs[..head.len()].copy_from_slice(&head);
        write_fixed_adapter(&base, &model_dir, &pool, &probs, None).expect("write adapter");
        pools.push(pool);
    }
    let routing = routing_toml(
        Category::Accs,
        &[("Bags", Category::Bags), ("Accs", Category::Accs)],
    );
    let pools: Vec<_> = pools.iter().collect();
    bundle_tiny(&model_dir, &base, &routing, &pools).expect("bundle");
    (base_dir, model_dir)
}

/// `predict-tags` with `args`, the model, base and re-ranking key variables of the caller's
/// environment removed.
fn run(args: &[&str]) -> Output {
    run_with_env(args, &[])
}

/// [`run`] with the variables `env` set.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("LAMODA_MODEL")
        .env_remove("LAMODA_BASE")
        .env_remove("LAMODA_RERANK_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run predict-tags")
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
    let out = run(&["--text", "ok", "--good-type", "Bags", "--precision", "bf16"]);
    assert_fails(&out, 2, &["--precision", "bf16", "fp32 or int8"]);
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

    // A directory that is not a bundle is named too, with the command that makes one.
    let dir_s = dir.to_string_lossy().into_owned();
    let out = run(&["--text", "x", "--good-type", "Shoes", "--model", &dir_s]);
    assert_fails(
        &out,
        1,
        &[
            "unknown_model_dir",
            "not a model bundle",
            "lamoda-tags bundle",
        ],
    );
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
    assert_fails(
        &out,
        1,
        &["no-base", "lamoda_testkit::write_tiny_base", "--base DIR"],
    );

    // The shipped bundle names the command that fetches its base.
    let shipped = project().adapters_dir().to_string_lossy().into_owned();
    let out = run(&[
        "--text",
        "Кроссовки",
        "--good-type",
        "Shoes",
        "--model",
        &shipped,
        "--base",
        &no_base,
    ]);
    assert_fails(&out, 1, &["no-base", "lamoda-tags fetch-base e5-small"]);
}

#[test]
fn runtime_errors_exit_1() {
    let dir = scratch("runtime_errors");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    // A routing table that sends Shoes to a category the bundle lacks is refused on load.
    let routing = model_dir.join("routing.toml");
    let table = std::fs::read_to_string(&routing).expect("read routing");
    std::fs::write(&routing, format!("{table}Shoes = \"shoes\"\n")).expect("write routing");
    let out = run(&[
        "--text",
        "x",
        "--good-type",
        "Bags",
        "--model",
        &model,
        "--base",
        &base,
    ]);
    assert_fails(
        &out,
        1,
        &["routing.toml", "\"Shoes\"", "`shoes`", "no adapter"],
    );
    std::fs::write(&routing, table).expect("restore routing");
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
    let project = project();
    let bags = project.pool(Category::Bags).expect("bags pool");
    let accs = project.pool(Category::Accs).expect("accs pool");
    let with_model = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--model", &model, "--base", &base]);
        run(&all)
    };

    // Text: the category line, then tag<TAB>probability<TAB>mentions above 0.5, most
    // probable first (the one review supports each).
    let out = with_model(&["--text", "Вместительная сумка", "--good-type", "Bags"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "category: bags", "{text}");
    let expected: Vec<String> = [0.93, 0.81, 0.64]
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}\t{p:.2}\t1", bags.tags[i]))
        .collect();
    assert_eq!(lines[1..], expected, "{text}");

    // --precision int8: the encoder's projections in int8. This test's heads answer fixed
    // probabilities, so the answer is the same (crates/model/tests/packed.rs holds int8's
    // hidden states to the reference).
    let out = with_model(&[
        "--text",
        "Вместительная сумка",
        "--good-type",
        "Bags",
        "--precision",
        "int8",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), text, "int8 answers as fp32 here");

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

    // --min-mentions 2: one review cannot support a tag twice, so no tag is kept.
    let out = with_model(&[
        "--text",
        "Вместительная сумка",
        "--good-type",
        "Bags",
        "--min-mentions",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "category: bags");

    // Fallback: Toys → accs, flagged.
    let out = with_model(&["--text", "Милая игрушка", "--good-type", "Toys"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "category: accs (fallback)",
            &format!("{}\t0.70\t1", accs.tags[0])
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
    // Both reviews support each tag (the tiny head ignores the text); the evidence quotes
    // them by their index among the non-blank reviews.
    assert_eq!(tags[0]["mentions"], 2);
    let quoted: Vec<(&serde_json::Value, &serde_json::Value)> = tags[0]["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| (&e["review"], &e["text"]))
        .collect();
    assert_eq!(quoted.len(), 2);
    for (index, text) in quoted {
        let expected =
            ["Вместительная", "Удобная и лёгкая"][index.as_u64().expect("index") as usize];
        assert_eq!(text, expected);
    }
    let probs = v["probabilities"].as_array().expect("probabilities");
    assert_eq!(probs.len(), bags.len());
    for (entry, tag) in probs.iter().zip(&bags.tags) {
        assert_eq!(entry["tag"], tag.as_str());
    }
}

/// A JSONL table of `n` products: SKUs `P0000`…, good types cycling through Bags, Accs
/// and Toys (a fallback), 1–3 reviews of letter words each.
fn jsonl_table(path: &Path, n: usize) {
    let good_types = ["Bags", "Accs", "Toys"];
    let mut text = String::new();
    for i in 0..n {
        let reviews: Vec<String> = (0..1 + i % 3)
            .map(|r| format!("отзыв {i} {r} {}", "абв".repeat(1 + (i + r) % 4)))
            .collect();
        let line = serde_json::json!({
            "sku": format!("P{i:04}"),
            "good_type": good_types[i % 3],
            "reviews": reviews,
        });
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(path, text).expect("write table");
}

/// The output lines of a batch run, parsed (every line must parse).
fn output_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    assert!(text.is_empty() || text.ends_with('\n'), "a cut last line");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("corrupt line {l:?}: {e}")))
        .collect()
}

fn skus(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|v| v["sku"].as_str().expect("sku").to_owned())
        .collect()
}

#[test]
fn batch_tags_a_table_like_one_product_at_a_time() {
    let dir = scratch("batch_table");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    // The CSV layout of reviews_sampled.csv (extra columns ignored), with one bad row.
    let csv = dir.join("products.csv");
    std::fs::write(
        &csv,
        "product_sku,comment_id,comment_text,name,good_type,good_subtype\n\
         S1,\"[1]\",\"[\"\"Вместительная\"\", \"\"лёгкая\"\"]\",Сумка,Bags,x\n\
         S2,\"[2]\",\"[\"\"Милая\"\"]\",Игрушка,Toys,x\n\
         S3,\"[3]\",not a list,Брошь,Jewellery,x\n\
         S4,\"[4]\",\"[\"\"Удобная\"\"]\",Ремень,Accs,x\n",
    )
    .expect("write csv");
    let csv_s = csv.to_string_lossy().into_owned();
    let out = dir.join("tags.jsonl");
    let out_s = out.to_string_lossy().into_owned();
    let batch = |extra: &[&str]| {
        let mut args = vec![
            "--input", &csv_s, "--out", &out_s, "--model", &model, "--base", &base,
        ];
        args.extend(extra);
        run(&args)
    };

    // Default: the bad row stops the run, naming file, row and field; the rows before it
    // are written.
    let failed = batch(&[]);
    assert_fails(
        &failed,
        1,
        &["products.csv row 4", "`comment_text`", "--on-error skip"],
    );
    assert_eq!(skus(&output_lines(&out)), ["S1", "S2"]);

    // With skip: listed in the side file, the rest tagged, the earlier lines kept.
    let skipped = batch(&["--on-error", "skip"]);
    assert_eq!(
        skipped.status.code(),
        Some(0),
        "stderr: {}",
        stderr(&skipped)
    );
    assert!(
        stderr(&skipped).contains("2 already there"),
        "{}",
        stderr(&skipped)
    );
    let lines = output_lines(&out);
    assert_eq!(skus(&lines), ["S1", "S2", "S4"]);
    let side = std::fs::read_to_string(dir.join("tags.jsonl.errors.jsonl")).expect("side file");
    let bad: Vec<serde_json::Value> = side
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        (bad[0]["row"].as_u64(), bad[0]["field"].as_str()),
        (Some(4), Some("comment_text"))
    );
    assert_eq!(bad[0]["sku"], "S3");

    // Each line: category, fallback, tags and every pool tag's probability in pool order,
    // equal to what the one-product command says.
    let bags = project().pool(Category::Bags).expect("bags pool");
    assert_eq!(lines[0]["category"], "bags");
    assert_eq!(lines[1]["category"], "accs");
    assert_eq!(lines[1]["fallback"], true);
    let probs = lines[0]["probabilities"]
        .as_object()
        .expect("probabilities");
    assert_eq!(probs.len(), bags.len());
    let reviews = dir.join("s1.json");
    std::fs::write(&reviews, r#"["Вместительная", "лёгкая"]"#).expect("write");
    let reviews_s = reviews.to_string_lossy().into_owned();
    let one = run(&[
        "--reviews",
        &reviews_s,
        "--good-type",
        "Bags",
        "--json",
        "--model",
        &model,
        "--base",
        &base,
    ]);
    let one: serde_json::Value = serde_json::from_slice(&one.stdout).expect("json");
    assert_eq!(one["tags"], lines[0]["tags"]);
    for entry in one["probabilities"].as_array().expect("list") {
        let tag = entry["tag"].as_str().expect("tag");
        let a = entry["probability"].as_f64().expect("p");
        let b = probs[tag].as_f64().expect("p");
        assert!((a - b).abs() < 1e-6, "{tag}: {a} vs {b}");
    }

    // An unknown column layout is one clear line.
    let wrong = dir.join("wrong.csv");
    std::fs::write(&wrong, "sku,text\nA,b\n").expect("write");
    let wrong_s = wrong.to_string_lossy().into_owned();
    let out2 = dir.join("wrong.jsonl").to_string_lossy().into_owned();
    let res = run(&[
        "--input", &wrong_s, "--out", &out2, "--model", &model, "--base", &base,
    ]);
    assert_fails(
        &res,
        1,
        &["wrong.csv row 1", "unknown column layout", "product_sku"],
    );
}

/// Runs `predict-tags` with `args` and kills it hard (SIGKILL) once `progress` holds, or
/// after 60 s, or when it ended by itself.
fn kill_when(args: &[&str], progress: impl Fn() -> bool) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("LAMODA_MODEL")
        .env_remove("LAMODA_BASE")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !progress() && started.elapsed() < Duration::from_secs(60) {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_killed_batch_run_resumes_without_loss_or_duplicates_and_shards_split_the_table() {
    let dir = scratch("batch_resume");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    let n = 400;
    let table = dir.join("table.jsonl");
    jsonl_table(&table, n);
    let table_s = table.to_string_lossy().into_owned();
    let out = dir.join("tags.jsonl");
    let out_s = out.to_string_lossy().into_owned();
    let args = [
        "--input",
        &table_s,
        "--out",
        &out_s,
        "--model",
        &model,
        "--base",
        &base,
        "--batch-size",
        "2",
    ];

    // Start, wait for some lines, kill it hard.
    kill_when(&args, || {
        std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) >= 20
    });
    let before = std::fs::read_to_string(&out).expect("output");
    let kept = before.lines().count();
    assert!(kept > 0 && kept < n, "the kill came at {kept} of {n} lines");
    // A kill in the middle of a write leaves a cut line: make sure there is one.
    let mut cut = before.trim_end_matches('\n').to_owned();
    cut.push_str("\n{\"sku\":\"P9999\",\"good_type\":\"Ba");
    std::fs::write(&out, &cut).expect("write cut line");

    let rerun = run(&args);
    assert_eq!(rerun.status.code(), Some(0), "stderr: {}", stderr(&rerun));
    let msg = stderr(&rerun);
    assert!(msg.contains(&format!("{kept} already there")), "{msg}");
    assert!(msg.contains("a last line cut short was redone"), "{msg}");
    let lines = output_lines(&out);
    let mut all = skus(&lines);
    assert_eq!(all.len(), n, "one line per product");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no SKU twice");
    // A third run has nothing to do.
    let again = run(&args);
    assert!(
        stderr(&again).contains("tagged 0 products"),
        "{}",
        stderr(&again)
    );
    assert_eq!(output_lines(&out).len(), n);

    // Two shards: disjoint, together the whole table.
    let mut union = Vec::new();
    for shard in ["0/2", "1/2"] {
        let part = dir.join(format!("shard{}.jsonl", &shard[..1]));
        let part_s = part.to_string_lossy().into_owned();
        let res = run(&[
            "--input", &table_s, "--out", &part_s, "--model", &model, "--base", &base, "--shard",
            shard,
        ]);
        assert_eq!(res.status.code(), Some(0), "stderr: {}", stderr(&res));
        let part_skus = skus(&output_lines(&part));
        assert!(
            part_skus.len() > n / 4 && part_skus.len() < 3 * n / 4,
            "{}",
            part_skus.len()
        );
        union.extend(part_skus);
    }
    assert_eq!(union.len(), n);
    union.sort();
    union.dedup();
    assert_eq!(union.len(), n, "the shards overlap");
    let res = run(&[
        "--input", &table_s, "--out", &out_s, "--shard", "2/2", "--model", &model,
    ]);
    assert_fails(&res, 2, &["--shard", "0 ≤ I < N"]);
}

/// Writes `columns` as a Parquet table at `path`, `group_rows` rows per row group.
fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, group_rows: usize) {
    let batch = RecordBatch::try_from_iter(columns).expect("record batch");
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let file = std::fs::File::create(path).expect("create table");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
    writer.write(&batch).expect("write table");
    writer.close().expect("close table");
}

/// The JSONL table `jsonl` (of [`jsonl_table`]) as a Parquet table: `sku`, `good_type`
/// (utf8) and `reviews` (list<utf8>), `group_rows` rows per row group.
fn parquet_from_jsonl(jsonl: &Path, parquet: &Path, group_rows: usize) {
    let text = std::fs::read_to_string(jsonl).expect("read table");
    let (mut skus, mut good_types) = (StringBuilder::new(), StringBuilder::new());
    let mut reviews = ListBuilder::new(StringBuilder::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        skus.append_value(v["sku"].as_str().expect("sku"));
        good_types.append_value(v["good_type"].as_str().expect("good_type"));
        for review in v["reviews"].as_array().expect("reviews") {
            reviews
                .values()
                .append_value(review.as_str().expect("review"));
        }
        reviews.append(true);
    }
    write_parquet(
        parquet,
        vec![
            ("sku", Arc::new(skus.finish())),
            ("good_type", Arc::new(good_types.finish())),
            ("reviews", Arc::new(reviews.finish())),
        ],
        group_rows,
    );
}

/// What a Parquet output directory holds.
struct ParquetOutput {
    /// The part files, in order.
    parts: Vec<String>,
    /// Temp files of parts being written (or cut by a kill).
    temps: Vec<String>,
    /// Every row, as the JSON line the JSONL output has for it.
    lines: Vec<serde_json::Value>,
    /// Every row's `probabilities` tags, in their order.
    orders: Vec<Vec<String>>,
}

/// `x` as JSON text would give it back (as the JSONL output writes it).
fn json_f32(x: f32) -> serde_json::Value {
    serde_json::from_str(&serde_json::to_string(&x).expect("f32")).expect("json")
}

fn text_at(s: &StructArray, name: &str, i: usize) -> String {
    let column = s.column_by_name(name).expect(name);
    column.as_string::<i32>().value(i).to_owned()
}

fn f32_at(s: &StructArray, name: &str, i: usize) -> serde_json::Value {
    let column = s.column_by_name(name).expect(name);
    json_f32(column.as_primitive::<Float32Type>().value(i))
}

fn i64_at(s: &StructArray, name: &str, i: usize) -> i64 {
    let column = s.column_by_name(name).expect(name);
    column.as_primitive::<Int64Type>().value(i)
}

/// Reads a Parquet output directory: every part must be a whole Parquet file in the
/// output schema; anything but parts and temp files fails the test.
fn parquet_output(dir: &Path) -> ParquetOutput {
    let schema = lamoda_inference::batch::parquet::output_schema();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut output = ParquetOutput {
        parts: Vec::new(),
        temps: Vec::new(),
        lines: Vec::new(),
        orders: Vec::new(),
    };
    for name in names {
        if name.starts_with(".part-") && name.ends_with(".parquet.tmp") {
            output.temps.push(name);
            continue;
        }
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "a stray file {name}"
        );
        let file = std::fs::File::open(dir.join(&name)).expect("open part");
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{name} is not a whole Parquet file: {e}"));
        assert_eq!(builder.schema().fields(), schema.fields(), "{name}");
        for batch in builder.build().expect("reader") {
            let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
            let rows = StructArray::from(batch);
            let tags = rows.column_by_name("tags").expect("tags").as_list::<i32>();
            let probabilities = rows
                .column_by_name("probabilities")
                .expect("probabilities")
                .as_list::<i32>();
            let flag =
                |name: &str, i: usize| rows.column_by_name(name).expect(name).as_boolean().value(i);
            for i in 0..rows.len() {
                let tags = tags.value(i);
                let tags = tags.as_struct();
                let evidence = tags
                    .column_by_name("evidence")
                    .expect("evidence")
                    .as_list::<i32>();
                let tags: Vec<serde_json::Value> = (0..tags.len())
                    .map(|t| {
                        let pieces = evidence.value(t);
                        let pieces = pieces.as_struct();
                        let pieces: Vec<serde_json::Value> = (0..pieces.len())
                            .map(|e| {
                                serde_json::json!({
                                    "review": i64_at(pieces, "review", e),
                                    "text": text_at(pieces, "text", e),
                                    "score": f32_at(pieces, "score", e),
                                })
                            })
                            .collect();
                        serde_json::json!({
                            "tag": text_at(tags, "tag", t),
                            "probability": f32_at(tags, "probability", t),
                            "mentions": i64_at(tags, "mentions", t),
                            "evidence": pieces,
                        })
                    })
                    .collect();
                let probs = probabilities.value(i);
                let probs = probs.as_struct();
                let order: Vec<String> =
                    (0..probs.len()).map(|p| text_at(probs, "tag", p)).collect();
                let map: serde_json::Map<String, serde_json::Value> = (0..probs.len())
                    .map(|p| (text_at(probs, "tag", p), f32_at(probs, "probability", p)))
                    .collect();
                output.lines.push(serde_json::json!({
                    "sku": text_at(&rows, "sku", i),
                    "good_type": text_at(&rows, "good_type", i),
                    "category": text_at(&rows, "category", i),
                    "fallback": flag("fallback", i),
                    "tags": tags,
                    "probabilities": map,
                    "calibrated": flag("calibrated", i),
                }));
                output.orders.push(order);
            }
        }
        output.parts.push(name);
    }
    output
}

#[test]
fn parquet_tables_in_and_out_give_the_jsonl_runs_answers_and_shards_split_them() {
    let dir = scratch("batch_parquet");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    let n = 30;
    let jsonl = dir.join("table.jsonl");
    jsonl_table(&jsonl, n);
    // Several row groups, so rows are numbered across them.
    let table = dir.join("table.parquet");
    parquet_from_jsonl(&jsonl, &table, 7);
    let batch = |input: &Path, out: &Path, extra: &[&str]| {
        let (input, out) = (input.to_string_lossy(), out.to_string_lossy());
        let mut args = vec![
            "--input",
            &input,
            "--out",
            &out,
            "--model",
            &model,
            "--base",
            &base,
            "--batch-size",
            "8",
        ];
        args.extend(extra);
        let res = run(&args);
        assert_eq!(res.status.code(), Some(0), "stderr: {}", stderr(&res));
        stderr(&res)
    };

    // The reference: JSONL in, JSONL out.
    let reference_out = dir.join("reference.jsonl");
    batch(&jsonl, &reference_out, &[]);
    let reference = output_lines(&reference_out);
    assert_eq!(reference.len(), n);

    // Parquet in, JSONL out: the same lines.
    let jsonl_out = dir.join("from-parquet.jsonl");
    batch(&table, &jsonl_out, &[]);
    assert_eq!(output_lines(&jsonl_out), reference);

    // Parquet in, Parquet out: a part per batch of 8, the same rows; the probabilities in
    // pool order.
    let out = dir.join("tags.parquet");
    let msg = batch(&table, &out, &[]);
    assert!(msg.contains(&format!("tagged {n} products")), "{msg}");
    let written = parquet_output(&out);
    assert_eq!(
        written.parts,
        [
            "part-000000.parquet",
            "part-000001.parquet",
            "part-000002.parquet",
            "part-000003.parquet"
        ]
    );
    assert!(written.temps.is_empty(), "{:?}", written.temps);
    assert_eq!(written.lines, reference);
    let bags = project().pool(Category::Bags).expect("bags pool");
    let accs = project().pool(Category::Accs).expect("accs pool");
    for (line, order) in written.lines.iter().zip(&written.orders) {
        let pool = if line["category"] == "bags" {
            &bags
        } else {
            &accs
        };
        assert_eq!(order, &pool.tags, "{}", line["sku"]);
    }
    // JSONL in, Parquet out: the same again.
    let from_jsonl = dir.join("from-jsonl.parquet");
    batch(&jsonl, &from_jsonl, &[]);
    assert_eq!(parquet_output(&from_jsonl).lines, reference);

    // A rerun has nothing to do and writes no part.
    let msg = batch(&table, &out, &[]);
    assert!(
        msg.contains("tagged 0 products") && msg.contains(&format!("{n} already there")),
        "{msg}"
    );
    assert_eq!(parquet_output(&out).parts.len(), 4);

    // Two shards into two datasets: disjoint, together the whole table.
    let mut union = Vec::new();
    for shard in ["0/2", "1/2"] {
        let part = dir.join(format!("shard{}.parquet", &shard[..1]));
        batch(&table, &part, &["--shard", shard]);
        let part_skus = skus(&parquet_output(&part).lines);
        assert!(
            part_skus.len() > n / 4 && part_skus.len() < 3 * n / 4,
            "{}",
            part_skus.len()
        );
        union.extend(part_skus);
    }
    assert_eq!(union.len(), n);
    union.sort();
    union.dedup();
    assert_eq!(union.len(), n, "the shards overlap");
}

#[test]
fn parquet_bad_rows_follow_on_error_and_bad_layouts_are_one_clear_line() {
    let dir = scratch("batch_parquet_errors");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    // Row 2 has a null review list, row 3 an empty good type.
    let mut reviews = ListBuilder::new(StringBuilder::new());
    reviews.values().append_value("Вместительная");
    reviews.append(true);
    reviews.append_null();
    reviews.values().append_value("Милая");
    reviews.append(true);
    reviews.values().append_value("Удобная");
    reviews.append(true);
    let table = dir.join("products.parquet");
    write_parquet(
        &table,
        vec![
            (
                "sku",
                Arc::new(StringArray::from(vec!["S1", "S2", "S3", "S4"])),
            ),
            (
                "good_type",
                Arc::new(StringArray::from(vec!["Bags", "Toys", "", "Accs"])),
            ),
            ("reviews", Arc::new(reviews.finish())),
        ],
        2,
    );
    let table_s = table.to_string_lossy().into_owned();
    let out = dir.join("tags.parquet");
    let out_s = out.to_string_lossy().into_owned();
    let batch = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "--input", input, "--out", out, "--model", &model, "--base", &base,
        ];
        args.extend(extra);
        run(&args)
    };

    // Default: the bad row stops the run, naming file, row and field; the row before it
    // is written.
    let failed = batch(&table_s, &out_s, &[]);
    assert_fails(
        &failed,
        1,
        &[
            "products.parquet row 2",
            "`reviews`",
            "null",
            "--on-error skip",
        ],
    );
    assert_eq!(skus(&parquet_output(&out).lines), ["S1"]);

    // With skip: listed in the side file beside the directory, the rest tagged.
    let skipped = batch(&table_s, &out_s, &["--on-error", "skip"]);
    assert_eq!(
        skipped.status.code(),
        Some(0),
        "stderr: {}",
        stderr(&skipped)
    );
    let msg = stderr(&skipped);
    assert!(
        msg.contains("1 already there") && msg.contains("2 bad rows listed"),
        "{msg}"
    );
    let written = parquet_output(&out);
    assert_eq!(skus(&written.lines), ["S1", "S4"]);
    assert_eq!(written.parts.len(), 2);
    let side = std::fs::read_to_string(dir.join("tags.parquet.errors.jsonl")).expect("side file");
    let bad: Vec<(u64, String, String)> = side
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|v| {
            (
                v["row"].as_u64().expect("row"),
                v["field"].as_str().expect("field").to_owned(),
                v["sku"].as_str().expect("sku").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        [
            (2, "reviews".to_owned(), "S2".to_owned()),
            (3, "good_type".to_owned(), "S3".to_owned())
        ]
    );

    // A table without the `reviews` column: one line naming the file and its columns.
    let no_reviews = dir.join("no-reviews.parquet");
    write_parquet(
        &no_reviews,
        vec![
            ("sku", Arc::new(StringArray::from(vec!["S1"]))),
            ("good_type", Arc::new(StringArray::from(vec!["Bags"]))),
            ("text", Arc::new(StringArray::from(vec!["Вместительная"]))),
        ],
        10,
    );
    let other = dir.join("other.parquet");
    let res = batch(&no_reviews.to_string_lossy(), &other.to_string_lossy(), &[]);
    assert_fails(
        &res,
        1,
        &[
            "no-reviews.parquet",
            "column `reviews`",
            "the columns are `sku`, `good_type`, `text`",
        ],
    );

    // A directory that is not ours: refused, left as it was.
    let mine = dir.join("mine.parquet");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("notes.txt"), "mine").expect("write");
    let res = batch(&table_s, &mine.to_string_lossy(), &["--on-error", "skip"]);
    assert_fails(
        &res,
        1,
        &["mine.parquet", "\"notes.txt\"", "not a part file"],
    );
    let left: Vec<_> = std::fs::read_dir(&mine).expect("read dir").collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn a_killed_parquet_run_resumes_without_loss_or_duplicates() {
    let dir = scratch("batch_parquet_resume");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    let n = 400;
    let jsonl = dir.join("table.jsonl");
    jsonl_table(&jsonl, n);
    let table = dir.join("table.parquet");
    parquet_from_jsonl(&jsonl, &table, 64);
    let table_s = table.to_string_lossy().into_owned();
    let out = dir.join("tags.parquet");
    let out_s = out.to_string_lossy().into_owned();
    let args = [
        "--input",
        &table_s,
        "--out",
        &out_s,
        "--model",
        &model,
        "--base",
        &base,
        "--batch-size",
        "2",
    ];
    let count_parts = || {
        std::fs::read_dir(&out).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                .count()
        })
    };

    // Start, wait for some part files, kill it hard.
    kill_when(&args, || count_parts() >= 10);
    // Every part the kill left is whole.
    let before = parquet_output(&out);
    let kept = before.lines.len();
    assert!(
        kept > 0 && kept < n,
        "the kill came at {kept} of {n} products"
    );
    assert_eq!(kept, 2 * before.parts.len());
    // A kill in the middle of a part leaves its temp file cut short: make sure there is
    // one (the next part's, the only one a run writes).
    let temp = out.join(format!(".part-{:06}.parquet.tmp", before.parts.len()));
    std::fs::write(&temp, b"PAR1\x15\x04").expect("write a cut temp file");

    let rerun = run(&args);
    assert_eq!(rerun.status.code(), Some(0), "stderr: {}", stderr(&rerun));
    let msg = stderr(&rerun);
    assert!(msg.contains(&format!("{kept} already there")), "{msg}");
    assert!(
        msg.contains("1 part file cut short removed and redone"),
        "{msg}"
    );
    let after = parquet_output(&out);
    assert!(after.temps.is_empty(), "{:?}", after.temps);
    assert_eq!(after.parts[..before.parts.len()], before.parts[..]);
    assert_eq!(after.lines[..kept], before.lines[..]);
    let mut all = skus(&after.lines);
    assert_eq!(all.len(), n, "one row per product");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no SKU twice");
    // A third run has nothing to do.
    let again = run(&args);
    assert!(
        stderr(&again).contains("tagged 0 products"),
        "{}",
        stderr(&again)
    );
    assert_eq!(parquet_output(&out).parts, after.parts);
}

#[test]
fn a_copied_binary_and_bundle_work_from_another_directory() {
    // Outside the checkout (whose adapters/ the binary would otherwise find above itself).
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (base_dir, model_dir) = tiny_model(dir);
    // An install: the binary in <root>/bin, the bundle in <root>/adapters, the base in
    // <root>/base, recorded relative to the bundle; nothing of the checkout is used.
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    let bin = root.join("bin").join("predict-tags");
    std::fs::copy(BIN, &bin).expect("copy binary");
    let copy_dir = |from: &Path, to: &Path| {
        for entry in walk(from) {
            let target = to.join(entry.strip_prefix(from).expect("prefix"));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&entry, &target).expect("copy");
        }
    };
    copy_dir(&model_dir, &root.join("adapters"));
    copy_dir(&base_dir, &root.join("base"));
    let manifest = root.join("adapters/bundle.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("read")).expect("json");
    m["base"]["default_dir"] = "../base".into();
    std::fs::write(&manifest, m.to_string()).expect("write");
    std::fs::remove_dir_all(&model_dir).expect("remove the originals");
    std::fs::remove_dir_all(&base_dir).expect("remove the originals");

    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let tag = |cmd: &mut Command| {
        let out = cmd
            .args(["--text", "Вместительная сумка", "--good-type", "Bags"])
            .current_dir(&elsewhere)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        stdout(&out)
    };
    // A command without the caller's model and base variables.
    let fresh = |bin: &Path| {
        let mut cmd = Command::new(bin);
        cmd.env_remove("LAMODA_MODEL").env_remove("LAMODA_BASE");
        cmd
    };
    // Found beside the executable, base from the bundle's record.
    let found = tag(&mut fresh(&bin));
    assert!(found.starts_with("category: bags\n"), "{found}");
    // The same through --model and through LAMODA_MODEL / LAMODA_BASE.
    let bundle = root.join("adapters");
    assert_eq!(tag(fresh(&bin).arg("--model").arg(&bundle)), found);
    let moved = dir.join("moved-bin");
    std::fs::create_dir_all(&moved).expect("mkdir");
    let lone = moved.join("predict-tags");
    std::fs::copy(&bin, &lone).expect("copy");
    assert_eq!(
        tag(fresh(&lone)
            .env("LAMODA_MODEL", &bundle)
            .env("LAMODA_BASE", root.join("base"))),
        found
    );
    // Nowhere to find a bundle: one line naming the ways to give one.
    let out = fresh(&lone)
        .args(["--text", "x", "--good-type", "Bags"])
        .current_dir(&elsewhere)
        .output()
        .expect("run");
    assert_fails(&out, 1, &["no model bundle", "--model DIR", "LAMODA_MODEL"]);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn rerank_usage_errors_exit_2_with_one_line() {
    let url = "http://127.0.0.1:9/v1";
    let text = ["--text", "Сумка", "--good-type", "Bags"];
    let with = |extra: &[&str]| {
        let mut args = text.to_vec();
        args.extend(extra);
        run(&args)
    };
    let out = with(&["--rerank-url", url]);
    assert_fails(&out, 2, &["--rerank-model"]);
    let out = with(&["--rerank-model", "m"]);
    assert_fails(&out, 2, &["--rerank-url"]);
    let out = with(&[
        "--rerank-url",
        url,
        "--rerank-model",
        "m",
        "--rerank-top-k",
        "0",
    ]);
    assert_fails(&out, 2, &["--rerank-top-k", "0"]);
    let out = with(&[
        "--rerank-url",
        url,
        "--rerank-model",
        "m",
        "--rerank-timeout-s",
        "0",
    ]);
    assert_fails(&out, 2, &["--rerank-timeout-s", "0"]);
    // A URL the client cannot use: one line naming the flag, before any model is loaded.
    let out = with(&[
        "--rerank-url",
        "https://example.invalid/v1",
        "--rerank-model",
        "m",
    ]);
    assert_fails(&out, 1, &["--rerank-url", "https is not built in"]);
    // Not with a table.
    let out = run(&[
        "--input",
        "t.csv",
        "--out",
        "o.jsonl",
        "--rerank-url",
        url,
        "--rerank-model",
        "m",
    ]);
    assert_fails(&out, 2, &["--rerank-url", "--input"]);
    // The key's value never shows in the help.
    let out = run_with_env(&["--help"], &[("LAMODA_RERANK_KEY", "sekret-key")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("LAMODA_RERANK_KEY"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("sekret-key"), "{}", stdout(&out));
}

#[test]
fn reranks_with_a_scripted_chat_server_or_falls_back() {
    let dir = scratch("rerank");
    let (base_dir, model_dir) = tiny_model(&dir);
    let (base, model) = (
        base_dir.to_string_lossy().into_owned(),
        model_dir.to_string_lossy().into_owned(),
    );
    let bags = project().pool(Category::Bags).expect("bags pool");
    let tag = |name: &str| {
        bags.tags
            .iter()
            .find(|t| *t == name)
            .unwrap_or_else(|| panic!("{name} not in the bags pool"))
            .clone()
    };
    // Our tags are bags.tags[0..3] (0.93, 0.81, 0.64); the rest are at 0.1.
    let (second, light, heavy) = (bags.tags[1].clone(), tag("Лёгкая"), tag("Тяжёлая"));
    let answer = vec![
        heavy.clone(),
        "Выдуманный тег".to_owned(),
        light.clone(),
        second.clone(),
    ];
    let confirming = ChatServer::start(move |_| {
        Reply::Content(serde_json::json!({ "tags": answer }).to_string())
    });
    let review = "Удобная лёгкая сумка";
    let rerank = |url: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "--text",
            review,
            "--good-type",
            "Bags",
            "--model",
            &model,
            "--base",
            &base,
            "--rerank-url",
            url,
            "--rerank-model",
            "test-model",
        ];
        args.extend(extra);
        run_with_env(&args, env)
    };

    // Confirmed: in our probability order, the invented tag dropped, one of the weight
    // group (the two tie at 0.1: the first in pool order); a tag below our threshold comes
    // with its own probability and no mentions.
    let url = confirming.base_url();
    let out = rerank(&url, &[], &[("LAMODA_RERANK_KEY", "sekret-key")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "category: bags".to_owned(),
            format!("{second}\t0.81\t1"),
            format!("{light}\t0.10\t0"),
        ],
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let requests = confirming.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer sekret-key")
    );
    assert_eq!(requests[0].body["model"], "test-model");
    let prompt = &requests[0].prompt;
    assert!(prompt.contains(review), "{prompt}");
    assert!(
        prompt.contains(&format!("- {} (0.93)", bags.tags[0])),
        "{prompt}"
    );
    // The default top 20 of the 23 bags tags.
    assert_eq!(prompt.matches(" (0.10)").count(), 17, "{prompt}");

    let out = rerank(&url, &["--json", "--rerank-top-k", "3"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["reranked"], true);
    assert_eq!(v["rerank_error"], serde_json::Value::Null);
    // Top 3: the weight tags are no candidates now.
    let tags: Vec<&str> = v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(tags, [second.as_str()]);
    assert_eq!(v["category"], "bags");
    assert_eq!(
        v["probabilities"].as_array().map(Vec::len),
        Some(bags.len())
    );
    assert_eq!(confirming.requests()[1].authorization, None);

    // The key in the environment alone turns nothing on.
    let plain = run_with_env(
        &[
            "--text",
            review,
            "--good-type",
            "Bags",
            "--model",
            &model,
            "--base",
            &base,
        ],
        &[("LAMODA_RERANK_KEY", "sekret-key")],
    );
    assert_eq!(plain.status.code(), Some(0), "stderr: {}", stderr(&plain));
    assert_eq!(stdout(&plain).lines().count(), 4, "{}", stdout(&plain));
    assert_eq!(confirming.count(), 2);

    // Malformed: our own tags, exit 0, the reason on stderr and in the JSON.
    let malformed = ChatServer::start(|_| Reply::Content("Удобная, лёгкая".to_owned()));
    let out = rerank(&malformed.base_url(), &["--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["reranked"], false);
    let error = v["rerank_error"].as_str().expect("an error");
    assert!(error.contains("malformed answer"), "{error}");
    assert_eq!(v["tags"].as_array().map(Vec::len), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rerank: not re-ranked, our own tags follow:")
            && err.contains("malformed answer"),
        "{err}"
    );
    assert_eq!(malformed.count(), 3, "two retries");

    // Slow: past --rerank-timeout-s, our own tags soon after.
    let slow =
        ChatServer::start(|_| Reply::Delay(Duration::from_secs(20), Box::new(Reply::tags(&[]))));
    let started = Instant::now();
    let out = rerank(&slow.base_url(), &["--rerank-timeout-s", "0.5"], &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "{took:?}");
}
