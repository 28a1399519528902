//! End-to-end checks on the reference data (`LAMODA_DATA`, by default
//! `../shared/lamoda` beside the project root): every file parses, every
//! etalon pool covers its data, and the frequency prior scores what an
//! independent count of the same rows gives.

use std::collections::HashMap;
use std::path::PathBuf;

use lamoda_data::{
    Category, UnknownTagPolicy, load_products, load_tag_mappings, load_tag_pools,
    load_test_examples, train_dev_split,
};
use lamoda_data::{DATA_ENV, DataDir, Project};
use lamoda_metrics::{FrequencyPrior, evaluate_prior};

fn data() -> DataDir {
    let root = std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Project::at(env!("CARGO_MANIFEST_DIR"))
                .root()
                .join("../shared/lamoda")
        });
    assert!(
        root.join("labeled").is_dir(),
        "reference data not found at {}: set {DATA_ENV}",
        root.display()
    );
    DataDir::new(root)
}

#[test]
fn every_pool_covers_its_labeled_file() {
    let project = Project::at(env!("CARGO_MANIFEST_DIR"));
    let data = data();
    assert_eq!(data.categories().expect("labeled files"), Category::ALL);
    for category in Category::ALL {
        let pool = project.pool(category).expect("pool loads");
        let set = data
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .expect("every tag is in the pool");
        let check = pool.check(&set);
        assert!(
            check.unused.is_empty(),
            "{category}: unused pool tags {:?}",
            check.unused
        );
        assert!(
            (21..=30).contains(&pool.len()),
            "{category}: {} tags",
            pool.len()
        );
        assert!(set.rows.iter().all(|r| !r.reviews.is_empty()));
    }
}

#[test]
fn row_counts_match_the_data_readme() {
    let project = Project::at(env!("CARGO_MANIFEST_DIR"));
    let data = data();
    let expected = [
        (Category::Accs, 1780),
        (Category::Bags, 446),
        (Category::Beauty, 1518),
        (Category::Clothes, 1533),
        (Category::Shoes, 1852),
    ];
    for (category, rows) in expected {
        let pool = project.pool(category).expect("pool");
        let set = data
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .expect("loads");
        assert_eq!(set.rows.len(), rows, "{category}");
    }
    let root = data.root();
    for file in [
        "reviews_sampled.csv",
        "reviews_sampled_with_tags.csv",
        "reviews_sampled_with_pull_tags.csv",
    ] {
        let products = load_products(&root.join(file)).expect(file);
        assert_eq!(products.len(), 2321, "{file}");
        assert_eq!(products[0].tags.is_some(), file != "reviews_sampled.csv");
    }
    let examples = load_test_examples(&root.join("test_examples.csv")).expect("test examples");
    // The data README says 58 reviews; the file has 59 rows of 3 products.
    assert_eq!(examples.iter().map(|p| p.reviews.len()).sum::<usize>(), 59);
    assert_eq!(examples.len(), 3);
    assert_eq!(
        load_tag_pools(&root.join("tag_pulls_raw.csv"))
            .expect("raw pools")
            .len(),
        8
    );
    assert_eq!(
        load_tag_pools(&root.join("tag_pulls_best.csv"))
            .expect("best pools")
            .len(),
        8
    );
    assert_eq!(
        load_tag_mappings(&root.join("tag_mappings.csv"))
            .expect("mappings")
            .len(),
        1016
    );
}

/// The prior's micro-F1, counted independently of the metrics module.
fn independent_prior_f1(tags: &[Vec<String>]) -> f64 {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for row in tags {
        for t in row {
            *counts.entry(t).or_default() += 1;
        }
    }
    let total: usize = tags.iter().map(Vec::len).sum();
    let k = (total as f64 / tags.len() as f64).round() as usize;
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<&str> = ranked.iter().take(k).map(|x| x.0).collect();
    let tp: usize = tags
        .iter()
        .map(|r| r.iter().filter(|t| top.contains(&t.as_str())).count())
        .sum();
    2.0 * tp as f64 / (k * tags.len() + total) as f64
}

#[test]
fn prior_matches_an_independent_count() {
    let project = Project::at(env!("CARGO_MANIFEST_DIR"));
    let data = data();
    for category in Category::ALL {
        let pool = project.pool(category).expect("pool");
        let set = data
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .expect("loads");
        let rows: Vec<_> = set.rows.iter().collect();
        let prior = FrequencyPrior::fit(&pool, set.rows.iter());
        let ours = evaluate_prior(&prior, &pool, &rows, 3).micro_f1;
        let tags: Vec<Vec<String>> = set.rows.iter().map(|r| r.tags.clone()).collect();
        let theirs = independent_prior_f1(&tags);
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{category}: {ours} vs {theirs}"
        );
        // The split's dev rows are scored by a prior fitted on the rest.
        let split = train_dev_split(&set.rows, &project.split().expect("split config"));
        assert!(
            split.dev.len() * 5 >= set.rows.len() - 5 && split.dev.len() * 5 <= set.rows.len() + 5
        );
    }
}

/// The careful labels join their rows (the text hashes match), respect the exclusive
/// groups, split 25 % to dev, and no careful product is an adapter's fitting row.
#[test]
fn careful_labels_join_split_and_stay_out_of_fitting() {
    let project = Project::at(env!("CARGO_MANIFEST_DIR"));
    let data = data();
    let split = project.careful_split().expect("configs/careful.toml");
    let mut total = 0;
    for category in Category::ALL {
        let pool = project.pool(category).expect("pool");
        let careful = data
            .careful(category, &pool)
            .expect("careful labels load")
            .expect("careful labels present");
        total += careful.labels.len();
        let groups = pool.group_of();
        for label in &careful.labels {
            let mut used = std::collections::BTreeSet::new();
            for tag in &label.tags {
                if let Some(g) = pool.index_of(tag).and_then(|i| groups[i]) {
                    assert!(
                        used.insert(g),
                        "{category} row {}: two tags of one group",
                        label.row
                    );
                }
            }
            assert!(label.tags.len() <= 6);
        }
        let s = lamoda_data::careful_split(&careful.labels, &split);
        assert_eq!(s.dev.len() + s.train.len(), careful.labels.len());
        assert!(
            (79..=81).contains(&s.dev.len()),
            "{category}: {} dev",
            s.dev.len()
        );
        let fitting = data.fitting_rows(category, &pool).expect("fitting rows");
        let held = careful.rows();
        assert!(fitting.rows.iter().all(|r| !held.contains(&r.row)));
        let all = data
            .labeled(category, &pool, UnknownTagPolicy::Error)
            .expect("labeled");
        assert_eq!(fitting.rows.len() + held.len(), all.rows.len());
    }
    assert_eq!(total, 1_599);
}
