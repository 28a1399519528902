//! `lamoda-tags map`, `consolidate` and `gaps` as processes on small real slices: the
//! mapping file, the training files from an edited mapping, the clusters, a review store's
//! pool gaps, and one-line errors. The commands that embed need the base
//! (`models/e5-small`): without it they SKIP.

#[path = "support/output.rs"]
mod output;
use output::stderr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data() -> PathBuf {
    std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/lamoda"))
}

/// The base the commands load (the project's `models/e5-small`), or a SKIP.
fn has_base(test: &str) -> bool {
    lamoda_testkit::has_real_base(&root().join("models/e5-small"), test)
}

fn xtask(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamoda-tags"))
        .args(args)
        .args(["--cache-dir", &cache.to_string_lossy()])
        .env("LAMODA_DATA", data())
        .output()
        .expect("lamoda-tags runs")
}

/// The first `n` products of a good type from the raw-tag table, as a CSV of the same layout.
fn slice(good_type: &str, n: usize, path: &Path) {
    let mut reader =
        csv::Reader::from_path(data().join("reviews_sampled_with_tags.csv")).expect("raw table");
    let headers = reader.headers().expect("headers").clone();
    let gt = headers
        .iter()
        .position(|h| h == "good_type")
        .expect("good_type column");
    let mut writer = csv::Writer::from_path(path).expect("write slice");
    writer
        .write_record(headers.iter().map(|h| h.trim_start_matches('\u{feff}')))
        .expect("header");
    let mut kept = 0;
    for record in reader.records() {
        let record = record.expect("row");
        if &record[gt] == good_type && kept < n {
            writer.write_record(&record).expect("row");
            kept += 1;
        }
    }
    writer.flush().expect("flush");
    assert_eq!(kept, n);
}

#[test]
fn map_writes_an_editable_file_and_training_files_from_it() {
    if !has_base("map_command") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let raw = dir.path().join("raw.csv");
    slice("Shoes", 12, &raw);
    let map = dir.path().join("map.csv");
    let args = [
        "map",
        "--input",
        raw.to_str().expect("utf-8"),
        "--out",
        map.to_str().expect("utf-8"),
        "--threshold",
        "0.85",
        "--top-k",
        "2",
    ];
    let out = xtask(&args, &cache);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mapped 12 products"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&map).expect("map");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("sku,good_type,category,fallback,raw_tag,etalon_tag,rank,similarity,accepted")
    );
    let body: Vec<&str> = lines.collect();
    assert!(
        body.len() >= 24,
        "two candidates per raw tag: {}",
        body.len()
    );
    assert!(body.iter().all(|l| l.contains(",shoes,no,")));
    // Rerun: every tag from the cache.
    let again = xtask(&args, &cache);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains(" 0 embedded"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&map).expect("map"), text);
    // Accept everything a reviewer might: all rows yes; the exclusive groups still hold.
    let edited = dir.path().join("edited.csv");
    let all_yes: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{},yes\n", l.rsplit_once(',').expect("accepted column").0)
            }
        })
        .collect();
    std::fs::write(&edited, all_yes).expect("edit");
    let out_dir = dir.path().join("train");
    let out = xtask(
        &[
            "map",
            "--from-edited",
            edited.to_str().expect("utf-8"),
            "--products",
            raw.to_str().expect("utf-8"),
            "--out-dir",
            out_dir.to_str().expect("utf-8"),
        ],
        &cache,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shoes =
        lamoda_data::EtalonPool::load(&root().join("etalon_tags"), lamoda_data::Category::Shoes)
            .expect("pool");
    let set = lamoda_data::load_labeled(
        &out_dir.join("labeled/shoes.csv"),
        lamoda_data::Category::Shoes,
        Some(&shoes),
        lamoda_data::UnknownTagPolicy::Error,
    )
    .expect("training file");
    assert_eq!(set.rows.len(), 12);
    assert!(shoes.check(&set).exclusive_violations.is_empty());
    assert!(set.rows.iter().all(|r| !r.tags.is_empty()));
}

#[test]
fn an_edited_map_with_a_bad_value_is_one_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edited = dir.path().join("edited.csv");
    std::fs::write(
        &edited,
        "sku,good_type,category,raw_tag,etalon_tag,accepted\nA,Shoes,shoes,x,Удобные,yes\nB,Shoes,shoes,y,Нет такого,yes\n",
    )
    .expect("write");
    let out = xtask(
        &[
            "map",
            "--from-edited",
            edited.to_str().expect("utf-8"),
            "--products",
            data().join("reviews_sampled.csv").to_str().expect("utf-8"),
            "--out-dir",
            dir.path().join("x").to_str().expect("utf-8"),
        ],
        &dir.path().join("cache"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("line 2, field `etalon_tag`")
            && err.contains("Нет такого"),
        "{err}"
    );
    let out = xtask(&["map"], &dir.path().join("cache"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("error: say what to do"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn consolidate_clusters_a_pool_and_compares_with_the_reference() {
    if !has_base("consolidate_command") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("pool.csv");
    std::fs::write(
        &pool,
        "good_type,tag,frequency,variants\n\
         Accs,качественные швы,5,\n\
         Accs,качественный шов,9,\n\
         Accs,яркий цвет,4,\n\
         Accs,быстро сохнет,2,\n",
    )
    .expect("pool");
    let out_path = dir.path().join("mapping.csv");
    let out = xtask(
        &[
            "consolidate",
            "--pool",
            pool.to_str().expect("utf-8"),
            "--out",
            out_path.to_str().expect("utf-8"),
            "--threshold",
            "0.9",
        ],
        &dir.path().join("cache"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mapping = std::fs::read_to_string(&out_path).expect("mapping");
    assert!(
        mapping.contains("Accs,качественные швы; качественный шов,качественный шов\n"),
        "the synonyms merge into the more frequent: {mapping}"
    );
    assert_eq!(mapping.lines().count(), 4, "header + 3 clusters: {mapping}");
    let clusters =
        std::fs::read_to_string(dir.path().join("mapping.clusters.csv")).expect("clusters");
    assert!(
        clusters.starts_with(
            "good_type,cluster,raw_tag,merged_tag,similarity,frequency,cluster_size\n"
        )
    );
    assert_eq!(clusters.lines().count(), 5);
    // Both synonyms are in the reference's "качественный пошив" cluster: the comparison
    // counts their pair as agreed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| Accs |"), "{stdout}");
}

#[test]
fn gaps_counts_the_missing_answers_of_a_review_store() {
    let dir = std::env::temp_dir().join(format!("gaps-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db = dir.join("reviews.sqlite");
    let store = lamoda_reviews::ReviewStore::open(&db).expect("open store");
    // Two products whose reviewers name one property the beauty pool lacks; one of them
    // judged twice by the same reviewer (only the latest judgment counts).
    for (sku, reviewer, missing) in [
        ("GAPS-1", "ann", "Светится в темноте"),
        ("GAPS-2", "bob", "светится в темноте!"),
        ("GAPS-2", "bob", "Светится в темноте"),
    ] {
        store
            .insert(&lamoda_reviews::NewJudgment {
                sku: sku.into(),
                good_type: "Beauty_Accs".into(),
                category: lamoda_data::Category::Beauty,
                reviewer: reviewer.into(),
                accepted: Vec::new(),
                rejected: Vec::new(),
                added: Vec::new(),
                missing: vec![missing.into()],
                reviews: vec![format!("Крем {sku} светится в темноте")],
                model: "test".into(),
            })
            .expect("insert");
    }
    drop(store);
    let out = dir.join("gaps");
    let run = Command::new(env!("CARGO_BIN_EXE_lamoda-tags"))
        .args(["gaps", "--db"])
        .arg(&db)
        .arg("--out")
        .arg(&out)
        .env("LAMODA_DATA", data())
        .output()
        .expect("lamoda-tags runs");
    assert!(run.status.success(), "{}", stderr(&run));
    let mut reader = csv::Reader::from_path(out.join("pool-gaps.csv")).expect("pool-gaps.csv");
    let headers = reader.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.expect("row"))
        .filter(|r| {
            r[col("phrase")]
                .to_lowercase()
                .contains("светится в темноте")
        })
        .collect();
    assert_eq!(rows.len(), 1, "one phrase for both spellings");
    let row = &rows[0];
    assert_eq!(&row[col("category")], "beauty");
    assert_eq!(&row[col("products")], "2");
    assert_eq!(&row[col("reviews")], "2");
    assert_eq!(&row[col("careful")], "0");
    let _ = std::fs::remove_dir_all(&dir);
}
