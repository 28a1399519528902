//! From the review queue to training data: judgments stored in the review store are
//! exported as reviewed labels, read back with the shipped pools and trained on (a tiny
//! adapter counts them among its training products).

use std::path::Path;

use lamoda_data::{Category, EtalonPool, SplitConfig, load_reviewed};
use lamoda_model::{default_device, load_hf_dir};
use lamoda_reviews::{NewJudgment, ReviewStore};
use lamoda_testkit::{synthetic_rows, tiny_train_config, write_tiny_base};
use lamoda_trainer::{Progress, train_category_with};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn judgment(sku: &str, reviewer: &str, accepted: &[&str], missing: &[&str]) -> NewJudgment {
    NewJudgment {
        sku: sku.into(),
        good_type: "Bags".into(),
        category: Category::Bags,
        reviewer: reviewer.into(),
        accepted: accepted.iter().map(|t| (*t).to_owned()).collect(),
        rejected: Vec::new(),
        added: Vec::new(),
        missing: missing.iter().map(|t| (*t).to_owned()).collect(),
        reviews: vec![
            format!("Сумка {sku} очень вместительная"),
            "Удобная, ношу каждый день".to_owned(),
        ],
        model: "test".into(),
    }
}

#[test]
fn exported_judgments_are_read_back_and_trained_on() {
    let pools: Vec<EtalonPool> = Category::ALL
        .iter()
        .map(|&c| EtalonPool::load(&root().join("etalon_tags"), c).expect("shipped pool"))
        .collect();
    let bags = pools
        .iter()
        .find(|p| p.category == Category::Bags)
        .expect("bags pool");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ReviewStore::open(&dir.path().join("reviews.sqlite")).expect("store");
    for j in [
        judgment(
            "B1",
            "anna",
            &["Вместительная", "Удобная"],
            &["Держит форму"],
        ),
        judgment("B1", "anna", &["Вместительная"], &[]),
        judgment("B2", "anna", &["Удобная"], &[]),
        judgment("B2", "boris", &["Удобная", "Лёгкая"], &[]),
    ] {
        store
            .insert(&j.check(bags).expect("valid judgment"))
            .expect("insert");
    }
    let path = dir.path().join("reviewed.jsonl");
    let mut file = std::fs::File::create(&path).expect("create");
    let report = lamoda_reviews::export(&store, &mut file).expect("export");
    drop(file);
    assert_eq!(report.products[&Category::Bags], 2);

    let read = load_reviewed(&path, |c| pools.iter().find(|p| p.category == c)).expect("read back");
    assert_eq!(read.len(), 2);
    let tags: Vec<(&str, Vec<String>)> = read
        .iter()
        .map(|l| (l.label.sku.as_str(), l.label.tags.clone()))
        .collect();
    // B1: anna's later judgment supersedes her first; B2: the tag both kept.
    assert_eq!(
        tags,
        vec![
            ("B1", vec!["Вместительная".to_owned()]),
            ("B2", vec!["Удобная".to_owned()])
        ]
    );

    let base_dir = dir.path().join("base");
    write_tiny_base(&base_dir, 3).expect("tiny base");
    let base = load_hf_dir(&base_dir, &default_device()).expect("load base");
    let rows = synthetic_rows(bags, 30, 5);
    let extra: Vec<_> = read.iter().map(|l| l.stack()).collect();
    let config = tiny_train_config();
    let split = SplitConfig::default();
    let without = train_category_with(
        &base,
        bags,
        &rows,
        &[],
        &split,
        &config,
        &dir.path().join("plain"),
        Progress::Quiet,
        false,
    )
    .expect("train without");
    let with = train_category_with(
        &base,
        bags,
        &rows,
        &extra,
        &split,
        &config,
        &dir.path().join("reviewed"),
        Progress::Quiet,
        false,
    )
    .expect("train with the reviewed products");
    assert_eq!(with.metrics.n_train, without.metrics.n_train + 2);
}
