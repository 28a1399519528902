//! Consolidation, mapping and the audit on small slices of the reference data with the real
//! base (e5-small). Needs the base (`lamoda-tags fetch-base e5-small`, or `LAMODA_BASE=DIR`)
//! and the reference data (`LAMODA_DATA`, by default `../shared/lamoda` beside the project
//! root); without the base every test here says SKIP and passes (with
//! `LAMODA_REQUIRE_BASE` set, a missing base fails).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use lamoda_curation::audit::{contradictions, near_duplicates};
use lamoda_curation::consolidate::cluster_average;
use lamoda_curation::embed::{BaseEmbedder, Embedder, EmbeddingCache};
use lamoda_curation::map::{
    MapOptions, PoolSpace, candidates, labeled_from_map, map_rows, read_map_csv, select,
    write_labeled, write_map_csv,
};
use lamoda_curation::{RawTags, normalize_tag, read_raw_tags};
use lamoda_data::{Category, EtalonPool, Routing, UnknownTagPolicy, load_labeled};
use lamoda_model::LoadedBase;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    let root = std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/lamoda"));
    assert!(
        root.join("reviews_sampled_with_tags.csv").is_file(),
        "reference data not found at {}: set LAMODA_DATA",
        root.display()
    );
    root
}

/// The base, loaded once for every test of this file; `None` (after a SKIP line) without it.
fn base(test: &str) -> Option<&'static LoadedBase> {
    static BASE: OnceLock<Option<LoadedBase>> = OnceLock::new();
    let dir = lamoda_testkit::real_base_dir(&workspace_root());
    let loaded = BASE.get_or_init(|| {
        dir.join("config.json").is_file().then(|| {
            lamoda_model::load_hf_dir(&dir, &lamoda_model::default_device())
                .expect("the base loads")
        })
    });
    if loaded.is_none() {
        lamoda_testkit::has_real_base(&dir, test);
    }
    loaded.as_ref()
}

fn embed(base: &LoadedBase, texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|t| normalize_tag(t)).collect();
    BaseEmbedder::tags(base).embed(&texts).expect("embed")
}

fn pool(category: Category) -> EtalonPool {
    EtalonPool::load(&workspace_root().join("etalon_tags"), category).expect("pool")
}

fn routing() -> Routing {
    Routing::load(&workspace_root().join("configs/routing.toml")).expect("routing")
}

fn spaces(base: &LoadedBase) -> BTreeMap<Category, PoolSpace> {
    Category::ALL
        .into_iter()
        .map(|c| {
            let pool = pool(c);
            let tags: Vec<&str> = pool.tags.iter().map(String::as_str).collect();
            let vectors = embed(base, &tags);
            (c, PoolSpace { pool, vectors })
        })
        .collect()
}

#[test]
fn synonyms_of_the_reference_mapping_cluster_together_and_apart_from_others() {
    let Some(base) = base("synonyms_cluster") else {
        return;
    };
    // From tag_mappings.csv (Accs → "качественный пошив") and an unrelated tag.
    let tags = [
        "качественные швы",
        "качественный шов",
        "яркий цвет",
        "быстро сохнет",
    ];
    let vectors = embed(base, &tags);
    let labels = cluster_average(&vectors, 0.9);
    assert_eq!(
        labels[0], labels[1],
        "the synonyms merge at 0.9: {labels:?}"
    );
    assert_ne!(labels[0], labels[2], "{labels:?}");
    assert_ne!(labels[0], labels[3], "{labels:?}");
    assert_ne!(labels[2], labels[3], "{labels:?}");
}

#[test]
fn an_exact_etalon_tag_maps_to_itself() {
    let Some(base) = base("exact_tag_maps_to_itself") else {
        return;
    };
    let spaces = spaces(base);
    let products = vec![RawTags {
        sku: "S1".into(),
        good_type: "Shoes".into(),
        tags: vec!["Маломерят".into(), "удобные!".into(), "Легкие".into()],
    }];
    let texts: Vec<String> = products[0].tags.iter().map(|t| normalize_tag(t)).collect();
    let vectors: HashMap<String, Vec<f32>> = texts
        .iter()
        .cloned()
        .zip(BaseEmbedder::tags(base).embed(&texts).expect("embed"))
        .collect();
    let cands = candidates(
        &products,
        &routing(),
        &spaces,
        |t| vectors.get(t).cloned(),
        2,
    )
    .expect("candidates");
    let shoes = &spaces[&Category::Shoes].pool;
    let best: Vec<(&str, f32)> = cands[0]
        .tags
        .iter()
        .map(|c| (shoes.tags[c.best[0].0].as_str(), c.best[0].1))
        .collect();
    assert_eq!(best[0].0, "Маломерят");
    assert_eq!(best[1].0, "Удобные");
    assert_eq!(best[2].0, "Лёгкие", "ё/е and case are normalised away");
    for (tag, sim) in &best {
        assert!(*sim > 0.999, "{tag}: similarity {sim}");
    }
    // The second candidate is another tag, less similar.
    assert!(cands[0].tags.iter().all(|c| c.best[1].1 < 0.999));
    let chosen = select(
        &cands[0],
        shoes,
        MapOptions {
            threshold: 0.99,
            top_k: 1,
        },
    );
    // In pool order.
    assert_eq!(chosen, ["Удобные", "Лёгкие", "Маломерят"]);
}

#[test]
fn the_cache_is_hit_on_rerun_and_invalidated_by_another_model_hash() {
    let Some(base) = base("cache_rerun") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let embedder = BaseEmbedder::tags(base);
    let texts: Vec<String> = ["мягкая кожа", "не жмет", "мягкая кожа"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut cache = EmbeddingCache::for_embedder(dir.path(), &embedder, "tags");
    let (first, stats) = cache
        .embed_all(&embedder, &texts, 64, |_, _| {})
        .expect("embed");
    assert_eq!((stats.requested, stats.hits, stats.embedded), (2, 0, 2));
    assert!(
        dir.path()
            .join(&base.info.weights_sha256)
            .join("tags.json")
            .is_file(),
        "the cache lives under the weights' sha256"
    );
    let mut again = EmbeddingCache::for_embedder(dir.path(), &embedder, "tags");
    let (second, stats) = again
        .embed_all(&embedder, &texts, 64, |_, _| {})
        .expect("embed");
    assert_eq!((stats.hits, stats.embedded), (2, 0), "all from the cache");
    assert_eq!(first, second);
    let other = EmbeddingCache::open(dir.path(), "0000another-model", &embedder.key(), "tags");
    assert!(other.is_empty(), "another model's hash reads nothing");
    let passages = BaseEmbedder::reviews(base, 64);
    let theirs = EmbeddingCache::open(
        dir.path(),
        &base.info.weights_sha256,
        &passages.key(),
        "tags",
    );
    assert!(
        theirs.is_empty() && theirs.stale().is_some(),
        "another prefix reads nothing"
    );
}

#[test]
fn a_real_slice_maps_into_training_files_with_one_tag_per_exclusive_group() {
    let Some(base) = base("map_real_slice") else {
        return;
    };
    let root = data();
    let raw = read_raw_tags(&root.join("reviews_sampled_with_tags.csv")).expect("raw tags");
    let slice: Vec<RawTags> = raw
        .products
        .into_iter()
        .filter(|p| p.good_type == "Bags")
        .take(40)
        .collect();
    assert_eq!(slice.len(), 40);
    let spaces = spaces(base);
    let texts: Vec<String> = slice
        .iter()
        .flat_map(|p| p.tags.iter().map(|t| normalize_tag(t)))
        .filter(|t| !t.is_empty())
        .collect();
    let vectors: HashMap<String, Vec<f32>> = texts
        .iter()
        .cloned()
        .zip(BaseEmbedder::tags(base).embed(&texts).expect("embed"))
        .collect();
    let cands = candidates(&slice, &routing(), &spaces, |t| vectors.get(t).cloned(), 2)
        .expect("candidates");
    let options = MapOptions {
        threshold: 0.85,
        top_k: 2,
    };
    let mut rows = map_rows(&cands, &spaces, options);
    assert_eq!(
        rows.len(),
        2 * cands.iter().map(|p| p.tags.len()).sum::<usize>()
    );
    assert!(
        rows.iter()
            .all(|r| r.category == Category::Bags && !r.fallback)
    );
    assert!(rows.iter().all(|r| r.accepted == (r.similarity >= 0.85)));
    // A reviewer accepts both tags of the weight group on the first product, Тяжёлая the
    // more similar: only it stays.
    let sku = rows[0].sku.clone();
    for (tag, sim) in [("Лёгкая", 0.86f32), ("Тяжёлая", 0.95)] {
        rows.push(lamoda_curation::map::MapRow {
            sku: sku.clone(),
            good_type: "Bags".into(),
            category: Category::Bags,
            fallback: false,
            raw_tag: "edited".into(),
            etalon_tag: tag.into(),
            rank: 1,
            similarity: sim,
            accepted: true,
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let map_path = dir.path().join("map.csv");
    write_map_csv(&map_path, &rows).expect("write map");
    let pools: BTreeMap<Category, EtalonPool> =
        spaces.iter().map(|(c, s)| (*c, s.pool.clone())).collect();
    let back = read_map_csv(&map_path, &pools).expect("read map");
    assert_eq!(back.len(), rows.len());
    assert!(
        back.iter()
            .zip(&rows)
            .all(|(a, b)| a.etalon_tag == b.etalon_tag
                && a.accepted == b.accepted
                && (a.similarity - b.similarity).abs() < 1e-4)
    );
    let products = lamoda_data::load_products(&root.join("reviews_sampled.csv")).expect("products");
    let sets = labeled_from_map(&back, &products, &pools);
    assert!(sets.unknown_skus.is_empty());
    assert!(sets.dropped_exclusive >= 1);
    let written = write_labeled(dir.path(), &sets).expect("write labeled");
    assert_eq!(written.len(), 1);
    let bags = pool(Category::Bags);
    let set = load_labeled(
        &written[0],
        Category::Bags,
        Some(&bags),
        UnknownTagPolicy::Error,
    )
    .expect("the training file reads back with the pool");
    assert_eq!(set.rows.len(), 40);
    assert!(bags.check(&set).exclusive_violations.is_empty());
    let first = products.iter().find(|p| p.sku == sku).expect("product");
    // The reviews as written (the labeled reader trims each one).
    let trimmed: Vec<String> = first
        .reviews
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(set.rows[0].reviews, trimmed);
    assert!(set.rows[0].tags.contains(&"Тяжёлая".to_owned()));
    assert!(!set.rows[0].tags.contains(&"Лёгкая".to_owned()));
}

#[test]
fn the_audit_finds_group_contradictions_and_a_known_near_duplicate() {
    let Some(base) = base("audit_real_slice") else {
        return;
    };
    let shoes = pool(Category::Shoes);
    let set = load_labeled(
        &data().join("labeled/shoes.csv"),
        Category::Shoes,
        Some(&shoes),
        UnknownTagPolicy::Error,
    )
    .expect("shoes");
    let mut tags: Vec<Vec<String>> = set.rows.iter().map(|r| r.tags.clone()).collect();
    tags.push(vec![
        "Маломерят".into(),
        "Большемерки".into(),
        "Удобные".into(),
    ]);
    let found = contradictions(&tags, &shoes);
    let expected = shoes.check(&set).exclusive_violations.len() + 1;
    assert_eq!(found.len(), expected, "the real ones and the added row");
    let last = found.last().expect("one");
    assert_eq!(
        (last.0, last.1.as_str()),
        (tags.len() - 1, "size"),
        "the product with two size tags is flagged"
    );
    let names: Vec<&str> = shoes.tags.iter().map(String::as_str).collect();
    let vectors = embed(base, &names);
    let y: Vec<Vec<bool>> = set
        .rows
        .iter()
        .map(|r| shoes.tags.iter().map(|t| r.tags.contains(t)).collect())
        .collect();
    let pairs = near_duplicates(&vectors, &y, 0.93, 1.1);
    let named: Vec<(&str, &str)> = pairs.iter().map(|p| (names[p.a], names[p.b])).collect();
    assert!(
        named.contains(&("Амортизируют", "Амортизирующие")),
        "the curated near-duplicate is found: {named:?}"
    );
}
