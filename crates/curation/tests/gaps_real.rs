//! The pool-gap report on the reference data's careful labels (`LAMODA_DATA`, by default
//! `../shared/lamoda` beside the project root) with the project's pools, plus an exported
//! team-review file: counts checked against ones made independently.

use std::path::PathBuf;

use lamoda_curation::gaps::{
    GapSettings, GapSource, PoolMatch, careful_inputs, pool_gaps, reviewed_inputs, write_csv,
    write_markdown,
};
use lamoda_data::{CarefulSet, Category, EtalonPool, LabeledSet, UnknownTagPolicy};

fn data() -> PathBuf {
    let root = std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/lamoda")
        });
    assert!(
        root.join("careful").is_dir(),
        "reference data not found at {}: set LAMODA_DATA",
        root.display()
    );
    root
}

#[test]
fn the_careful_gaps_of_beauty_and_shoes_as_counted_independently() {
    let root = data();
    let etalon = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../etalon_tags");
    let mut pools = Vec::new();
    let mut inputs = Vec::new();
    for category in [Category::Beauty, Category::Shoes] {
        let pool = EtalonPool::load(&etalon, category).expect("pool");
        let labeled_path = LabeledSet::path_in(&root, category);
        let careful = lamoda_data::load_careful(
            &CarefulSet::path_in(&root, category),
            &labeled_path,
            category,
            &pool,
        )
        .expect("careful labels");
        let labeled = lamoda_data::load_labeled(
            &labeled_path,
            category,
            Some(&pool),
            UnknownTagPolicy::Error,
        )
        .expect("labeled");
        inputs.extend(careful_inputs(&careful, &labeled).expect("joined"));
        pools.push(pool);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export.jsonl");
    let reviews = vec!["Очень мягкие и тёплые".to_owned()];
    let line = lamoda_data::ReviewedLine {
        sku: "T1".into(),
        good_type: "Shoes".into(),
        category: "shoes".into(),
        text_sha256: lamoda_data::reviews_sha256(&reviews),
        reviews,
        tags: Vec::new(),
        missing: vec!["мягкие".into()],
        note: String::new(),
        reviewers: vec!["a".into()],
        reviewed_at: String::new(),
    };
    std::fs::write(&export, serde_json::to_string(&line).expect("json")).expect("write export");
    let read = lamoda_data::load_reviewed(&export, |c| pools.iter().find(|p| p.category == c))
        .expect("export");
    inputs.extend(reviewed_inputs(&read));

    let report = pool_gaps(&inputs, &pools, GapSettings::default());
    let top = |category: Category| {
        let c = report
            .categories
            .iter()
            .find(|c| c.category == category)
            .expect("category");
        (
            c.products,
            c.with_missing,
            c.gaps
                .iter()
                .take(3)
                .map(|g| (g.phrase.as_str(), g.products, g.careful, g.reviews))
                .collect::<Vec<_>>(),
        )
    };
    // Counted with a separate script (lower case, ё → е, punctuation dropped, adjective
    // endings dropped from words of 5 letters or more, once per product).
    assert_eq!(
        top(Category::Beauty),
        (
            320,
            306,
            vec![
                ("Хорошо увлажняет", 45, 45, 0),
                ("Быстро впитывается", 34, 34, 0),
                ("Приятный аромат", 26, 26, 0)
            ]
        )
    );
    assert_eq!(
        top(Category::Shoes),
        (
            320,
            156,
            vec![
                ("Мягкие", 67, 66, 1),
                ("Не скользят", 15, 15, 0),
                ("Дышащие", 12, 12, 0)
            ]
        )
    );
    let beauty = &report.categories[0];
    assert_eq!(
        beauty.gaps[0].pool,
        PoolMatch::Near("Увлажняет надолго".into())
    );
    // Every example of "Мягкие" holds the word, the first from the first careful product
    // holding it.
    let soft = &report.categories[1].gaps[0];
    assert_eq!(soft.examples.len(), 2);
    assert!(
        soft.examples
            .iter()
            .all(|e| e.matched && e.text.to_lowercase().contains("мягк")),
        "{:?}",
        soft.examples
    );
    assert!(matches!(soft.examples[0].source, GapSource::Careful { .. }));

    let md = write_markdown(&report);
    assert!(md.contains("| Хорошо увлажняет | 45 of 320 | 14.1% | careful 45 |"));
    let csv_path = dir.path().join("pool-gaps.csv");
    write_csv(&report, &csv_path).expect("csv");
    let rows = csv::Reader::from_path(&csv_path)
        .expect("read csv")
        .records()
        .count();
    assert_eq!(
        rows,
        report
            .categories
            .iter()
            .map(|c| c.gaps.len())
            .sum::<usize>()
    );
}
