//! The raw-tag pool on the reference data (`LAMODA_DATA`, by default `../shared/lamoda`
//! beside the project root): `reviews_sampled_with_tags.csv` pooled, checked against
//! counts made independently and against `tag_pulls_raw.csv`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use lamoda_curation::{
    Record, Status, normalize_tag, pool_tags, read_raw_tags, read_store, write_pool_csv,
};

fn data() -> PathBuf {
    let root = std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/lamoda")
        });
    assert!(
        root.join("reviews_sampled_with_tags.csv").is_file(),
        "reference data not found at {}: set LAMODA_DATA",
        root.display()
    );
    root
}

#[test]
fn the_reference_raw_tags_pool_as_counted_independently() {
    let path = data().join("reviews_sampled_with_tags.csv");
    let input = read_raw_tags(&path).expect("the reference table reads");
    assert_eq!(input.products.len(), 2321);
    let pool = pool_tags(&input.products);
    // Counted with a separate script (lower case, ё → е, one count per product).
    assert_eq!(pool.products.get("Shoes"), Some(&160));
    assert_eq!(pool.products.get("Clothes"), Some(&42));
    assert_eq!(pool.products.get("Jewellery"), Some(&15));
    assert_eq!(pool.of("Shoes").count(), 345);
    assert_eq!(pool.of("Clothes").count(), 148);
    let top: Vec<(&str, usize)> = pool
        .of("Shoes")
        .take(5)
        .map(|e| (e.tag.as_str(), e.frequency))
        .collect();
    assert_eq!(
        top,
        [
            ("удобные", 126),
            ("легкие", 60),
            ("мягкие", 41),
            ("стильные", 32),
            ("качественные", 23)
        ]
    );
    // "Лёгкие" and "Легкие" are one tag with both spellings.
    let light = pool
        .of("Shoes")
        .find(|e| e.tag == "легкие")
        .expect("легкие");
    assert!(light.variants.len() >= 2, "{:?}", light.variants);

    // An independent count of one tag: products of the good type whose raw tags, read
    // with the csv crate alone, name it in any case.
    let mut reader = csv::Reader::from_path(&path).expect("csv");
    let headers = reader.headers().expect("header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .expect(name)
    };
    let (good_type, tags) = (col("good_type"), col("tags"));
    let mut comfy = 0;
    for row in reader.records() {
        let row = row.expect("row");
        if &row[good_type] == "Shoes"
            && row[tags]
                .split("; ")
                .any(|t| t.trim().to_lowercase() == "удобные")
        {
            comfy += 1;
        }
    }
    assert_eq!(comfy, 126);
}

#[test]
fn the_pool_matches_tag_pulls_raw() {
    let root = data();
    let input = read_raw_tags(&root.join("reviews_sampled_with_tags.csv")).expect("reads");
    let pool = pool_tags(&input.products);
    let pulls = lamoda_data::load_tag_pools(&root.join("tag_pulls_raw.csv")).expect("pulls");
    for pull in &pulls {
        let theirs: BTreeSet<String> = pull.tags.iter().map(|t| normalize_tag(t)).collect();
        let ours: BTreeSet<String> = pool.of(&pull.good_type).map(|e| e.tag.clone()).collect();
        assert!(!ours.is_empty(), "{}", pull.good_type);
        // tag_pulls_raw.csv pools every labelled product, these are a sample of them.
        let missing: Vec<&String> = ours.difference(&theirs).collect();
        assert!(
            missing.is_empty(),
            "{}: not in tag_pulls_raw.csv: {missing:?}",
            pull.good_type
        );
        // For these good types the sample holds every product of the pull.
        if ["Shoes", "Clothes", "Toys", "Jewellery"].contains(&pull.good_type.as_str()) {
            assert_eq!(ours, theirs, "{}", pull.good_type);
        }
    }
}

#[test]
fn a_label_store_pools_like_the_table_it_came_from() {
    // A real slice: the Shoes rows, written as the labeler's records (one failed).
    let root = data();
    let input = read_raw_tags(&root.join("reviews_sampled_with_tags.csv")).expect("reads");
    let shoes: Vec<_> = input
        .products
        .into_iter()
        .filter(|p| p.good_type == "Shoes")
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("raw.jsonl");
    let mut text = String::new();
    for (i, p) in shoes.iter().enumerate() {
        let record = Record {
            sku: p.sku.clone(),
            key: "k".to_owned(),
            status: if i == 0 { Status::Failed } else { Status::Ok },
            good_type: p.good_type.clone(),
            tags: p.tags.clone(),
            reason: None,
            rejected: Vec::new(),
            chunks: 1,
            attempts: 1,
            model: "m".to_owned(),
            started_at: String::new(),
            finished_at: String::new(),
        };
        text += &serde_json::to_string(&record).expect("encodes");
        text.push('\n');
    }
    // A cut last line, as a kill mid-write leaves it.
    text += "{\"sku\": \"MP0";
    std::fs::write(&store, text).expect("write");
    let from_store = read_raw_tags(&store).expect("store reads");
    assert_eq!(from_store.failed, 1);
    assert_eq!(from_store.products[..], shoes[1..]);
    let pool = pool_tags(&from_store.products);
    let expected = pool_tags(&shoes[1..]);
    assert_eq!(pool, expected);

    let csv_path = dir.path().join("pool.csv");
    write_pool_csv(&csv_path, &pool).expect("write pool");
    let mut reader = csv::Reader::from_path(&csv_path).expect("pool csv");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), pool.entries.len());
    let freq: HashMap<&str, usize> = rows
        .iter()
        .map(|r| (&r[1], r[2].parse().expect("frequency")))
        .collect();
    assert_eq!(freq.len(), rows.len(), "one row per tag");
    assert!(freq["удобные"] >= 125);
    // The store itself was only read, never repaired by pooling.
    assert!(read_store(&store).expect("reads").cut_tail);
}
