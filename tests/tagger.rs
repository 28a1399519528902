//! The Tagger on tiny random bundles written to a temp dir: batching across categories
//! changes nothing, routing and its fallback flag, typed errors for empty reviews, unfit
//! adapters and every bundle mismatch (wrong base, newer format, missing category, pool and
//! head disagreeing, unrouted categories), and decoding (threshold, max 6, min 1,
//! exclusive groups, saved per-tag thresholds).

use std::collections::BTreeMap;
use std::path::Path;

use lamoda_data::{Category, EtalonPool, Routing, TagGroup};
use lamoda_inference::{Bundle, DecodeOptions, InferenceError, Prediction, Request, Tagger};
use lamoda_model::{LoadedBase, default_device, load_hf_dir};
use lamoda_testkit::{
    bundle_tiny, routing_toml, train_tiny_adapter, write_fixed_adapter, write_tiny_base,
};

fn tiny_base(dir: &Path) -> LoadedBase {
    let base_dir = dir.join("base");
    write_tiny_base(&base_dir, 7).expect("write tiny base");
    load_hf_dir(&base_dir, &default_device()).expect("load tiny base")
}

fn pool(category: Category, tags: &[&str]) -> EtalonPool {
    EtalonPool::new(category, tags.iter().map(|t| t.to_string()).collect()).expect("pool")
}

fn pools() -> BTreeMap<Category, EtalonPool> {
    [
        pool(Category::Accs, &["a1", "a2", "a3", "a4"]),
        pool(Category::Bags, &["b1", "b2", "b3"]),
        pool(Category::Shoes, &["s1", "s2", "s3", "s4", "s5"]),
    ]
    .into_iter()
    .map(|p| (p.category, p))
    .collect()
}

/// The shipped routing table (Toys, Jewellery and unknown types fall back to accs), with
/// only the good types of `categories` (the others fall back too; to the first of
/// `categories` when accs is not among them).
fn routing(categories: &[Category]) -> String {
    let shipped =
        Routing::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/routing.toml"))
            .expect("configs/routing.toml");
    let kept: Vec<(&str, Category)> = shipped
        .good_types
        .iter()
        .filter(|(_, c)| categories.contains(c))
        .map(|(g, &c)| (g.as_str(), c))
        .collect();
    let fallback = if categories.contains(&shipped.fallback) {
        shipped.fallback
    } else {
        categories[0]
    };
    routing_toml(fallback, &kept)
}

/// Bundles the adapters in `model_dir` with their `pools` and the shipped routing.
fn bundle(base: &LoadedBase, model_dir: &Path, pools: &BTreeMap<Category, EtalonPool>) -> Bundle {
    let present: Vec<&EtalonPool> = pools
        .values()
        .filter(|p| model_dir.join(p.category.name()).is_dir())
        .collect();
    let categories: Vec<Category> = present.iter().map(|p| p.category).collect();
    bundle_tiny(model_dir, base, &routing(&categories), &present).expect("bundle")
}

fn load(base: LoadedBase, model_dir: &Path, pools: &BTreeMap<Category, EtalonPool>) -> Tagger {
    let bundle = bundle(&base, model_dir, pools);
    Tagger::load(base, bundle).expect("load tagger")
}

fn request(good_type: &str, reviews: &[&str]) -> Request {
    Request::new(good_type, reviews.iter().map(|r| r.to_string()).collect())
}

fn tags(p: &Prediction) -> Vec<&str> {
    p.tags.iter().map(|t| t.tag.as_str()).collect()
}

#[test]
fn mixed_batch_matches_one_request_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let pools = pools();
    for (seed, p) in pools.values().enumerate() {
        train_tiny_adapter(&base, &model_dir, p, seed as u64 + 1).expect("train tiny adapter");
    }
    let tagger = load(base, &model_dir, &pools);
    assert_eq!(
        tagger.categories(),
        [Category::Accs, Category::Bags, Category::Shoes]
    );
    for category in tagger.categories() {
        let adapter = tagger.adapter(category).expect("adapter");
        let lexical = adapter.lexical.as_ref().expect("lexical branch loaded");
        assert!(
            lexical.first.len() == 2 && lexical.frozen.is_some() && lexical.second.is_some(),
            "{category}: both lexical views, the frozen view and the second stage loaded"
        );
        assert!(
            adapter.frozen.is_some(),
            "{category}: the base kept for the frozen view"
        );
    }

    let requests = [
        request("Shoes", &["a b c", "d e f g h i j k", "z z z"]),
        request("Bags", &["q w e r t y"]),
        request("Toys", &["m n o"]),
        request("Shoes", &["k"]),
        request("Bags", &["u i o p", "", "a s d f g h j k l z x c v b n m"]),
        request("Home_Accs", &["l l l l l l l l l l l l l l l l l l l"]),
        request("Shoes", &["Отличные кроссовки, легкие и удобные"]),
    ];
    let batch = tagger.predict(&requests).expect("batch");
    assert_eq!(batch.len(), requests.len());
    for (i, (r, b)) in requests.iter().zip(&batch).enumerate() {
        let single = tagger
            .predict(std::slice::from_ref(r))
            .expect("single")
            .remove(0);
        assert_eq!(b.good_type, r.good_type, "request {i} order");
        assert_eq!((b.category, b.fallback), (single.category, single.fallback));
        assert_eq!(
            b.probabilities.len(),
            tagger.pool(b.category).expect("pool").len()
        );
        for (x, y) in b.probabilities.iter().zip(&single.probabilities) {
            assert_eq!(x.tag, y.tag);
            let d = (x.probability - y.probability).abs();
            assert!(d < 1e-5, "request {i}, tag {}: |Δp| = {d}", x.tag);
        }
        assert_eq!(tags(b), tags(&single), "request {i}");
    }
    // The adapters read the text: different reviews of one category differ.
    let shoes: Vec<f32> = [0, 3, 6]
        .iter()
        .map(|&i| batch[i].probabilities[0].probability)
        .collect();
    assert!(
        (shoes[0] - shoes[1]).abs() > 1e-6 || (shoes[0] - shoes[2]).abs() > 1e-6,
        "{shoes:?}"
    );
}

#[test]
fn routing_sets_category_and_fallback_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let pools = pools();
    for p in pools.values() {
        write_fixed_adapter(&base, &model_dir, p, &vec![0.7; p.len()], None).expect("adapter");
    }
    let tagger = load(base, &model_dir, &pools);
    let cases = [
        ("Shoes", Category::Shoes, false),
        ("Bags", Category::Bags, false),
        ("Accs", Category::Accs, false),
        ("Home_Accs", Category::Accs, false),
        ("Toys", Category::Accs, true),
        ("Jewellery", Category::Accs, true),
        ("Spaceships", Category::Accs, true),
        (" Shoes ", Category::Shoes, false),
    ];
    let requests: Vec<Request> = cases.iter().map(|(g, _, _)| request(g, &["a"])).collect();
    let answers = tagger.predict(&requests).expect("predict");
    for ((good_type, category, fallback), a) in cases.iter().zip(&answers) {
        assert_eq!(a.good_type, *good_type);
        assert_eq!(
            (a.category, a.fallback),
            (*category, *fallback),
            "{good_type}"
        );
        let pool = &pools[category];
        assert_eq!(
            a.probabilities.iter().map(|t| &t.tag).collect::<Vec<_>>(),
            pool.tags.iter().collect::<Vec<_>>()
        );
    }
    assert!(tagger.predict(&[]).expect("no requests").is_empty());
}

#[test]
fn missing_adapter_and_empty_reviews_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let pools = pools();
    write_fixed_adapter(
        &base,
        &model_dir,
        &pools[&Category::Bags],
        &[0.9, 0.2, 0.1],
        None,
    )
    .expect("adapter");
    // The shipped routing falls back to accs, which this bundle lacks: refused on load.
    let present = [&pools[&Category::Bags]];
    let shipped_routing = routing(&[Category::Bags, Category::Accs]);
    let err = bundle_tiny(&model_dir, &base, &shipped_routing, &present)
        .expect_err("accs is routed to but missing");
    assert!(
        err.to_string()
            .contains("sends \"(fallback)\" to `accs`, which the bundle has no adapter for"),
        "{err}"
    );
    let routing = routing_toml(Category::Bags, &[("Bags", Category::Bags)]);
    let bundle = bundle_tiny(&model_dir, &base, &routing, &present).expect("bundle");
    let tagger = Tagger::load(base, bundle).expect("load");
    assert_eq!(tagger.categories(), [Category::Bags]);

    for empty in [vec![], vec!["", "  \n "]] {
        let err = tagger
            .predict(&[request("Bags", &["a"]), request("Bags", &empty)])
            .expect_err("no reviews");
        assert!(
            matches!(&err, InferenceError::NoReviews { index: 1, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("request 1"), "{err}");
    }
}

#[test]
fn decoding_threshold_limits_and_exclusive_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let names = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    let mut shoes = pool(Category::Shoes, &names);
    shoes.exclusive = vec![TagGroup {
        name: "size".into(),
        tags: vec!["t1".into(), "t2".into()],
    }];
    let probs = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.4, 0.3];
    write_fixed_adapter(&base, &model_dir, &shoes, &probs, None).expect("adapter");
    let pools: BTreeMap<Category, EtalonPool> = [(Category::Shoes, shoes)].into();
    let mut tagger = load(base, &model_dir, &pools);
    let shoe = |tagger: &Tagger| {
        tagger
            .predict(&[request("Shoes", &["a b c"])])
            .expect("predict")
            .remove(0)
    };

    // Default 0.5: seven tags pass, t2 loses to t1 in its group, at most six are kept.
    let p = shoe(&tagger);
    assert_eq!(tags(&p), ["t0", "t1", "t3", "t4", "t5", "t6"]);
    for (t, expected) in p.probabilities.iter().zip(probs) {
        assert!((t.probability - expected).abs() < 1e-5, "{t:?}");
    }
    assert!((p.tags[0].probability - 0.95).abs() < 1e-5);

    // A higher threshold keeps fewer.
    tagger.set_threshold(Some(0.82)).expect("valid");
    assert_eq!(tags(&shoe(&tagger)), ["t0", "t1"]);
    // Above every probability: the most probable one still comes (min 1).
    tagger.set_threshold(Some(0.99)).expect("valid");
    assert_eq!(tags(&shoe(&tagger)), ["t0"]);
    // A low threshold: still at most six, still one of the group.
    tagger.set_threshold(Some(0.1)).expect("valid");
    assert_eq!(tags(&shoe(&tagger)), ["t0", "t1", "t3", "t4", "t5", "t6"]);

    let err = tagger.set_threshold(Some(1.5)).expect_err("out of range");
    assert!(err.to_string().contains("1.5"), "{err}");
    assert_eq!(tagger.threshold(), Some(0.1));
}

#[test]
fn saved_per_tag_thresholds_apply_unless_a_threshold_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let bags = pool(Category::Bags, &["b1", "b2", "b3"]);
    // b1 0.6 under its 0.7; b2 0.3 over its 0.2; b3 0.55 over its 0.5.
    write_fixed_adapter(
        &base,
        &model_dir,
        &bags,
        &[0.6, 0.3, 0.55],
        Some(&[0.7, 0.2, 0.5]),
    )
    .expect("adapter");
    let pools: BTreeMap<Category, EtalonPool> = [(Category::Bags, bags)].into();
    let mut tagger = load(base, &model_dir, &pools);
    let bag = |tagger: &Tagger| {
        tagger
            .predict(&[request("Bags", &["x"])])
            .expect("predict")
            .remove(0)
    };
    assert_eq!(tags(&bag(&tagger)), ["b3", "b2"]);
    tagger.set_threshold(Some(0.5)).expect("valid");
    assert_eq!(tags(&bag(&tagger)), ["b1", "b3"]);
    tagger.set_threshold(None).expect("valid");
    assert_eq!(tags(&bag(&tagger)), ["b3", "b2"]);
}

#[test]
fn loading_names_missing_dirs_and_unfit_adapters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base_dir = dir.path().join("base");
    write_tiny_base(&base_dir, 7).expect("write tiny base");
    let etalon = Path::new(env!("CARGO_MANIFEST_DIR")).join("etalon_tags");
    let open = |model_dir: &Path| Tagger::open(model_dir, Some(&base_dir)).expect_err("must fail");

    let missing = dir.path().join("no-such-dir");
    let err = open(&missing);
    assert!(matches!(err, InferenceError::NoModelDir { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("bags")).expect("mkdir");
    let err = open(&empty);
    assert!(matches!(err, InferenceError::NotABundle { .. }), "{err:?}");
    assert!(err.to_string().contains("lamoda-tags bundle"), "{err}");

    let base = load_hf_dir(&base_dir, &default_device()).expect("load tiny base");
    let bags = EtalonPool::load(&etalon, Category::Bags).expect("bags pool");
    let model_dir = dir.path().join("adapters");
    let only_bags = routing_toml(Category::Bags, &[("Bags", Category::Bags)]);
    write_fixed_adapter(&base, &model_dir, &bags, &vec![0.5; bags.len()], None).expect("adapter");
    bundle_tiny(&model_dir, &base, &only_bags, &[&bags]).expect("bundle");

    // Missing base: the message names the bundle's way to get it and --base.
    let err = Tagger::open(&model_dir, Some(&dir.path().join("no-base"))).expect_err("no base");
    assert!(matches!(err, InferenceError::NoBase { .. }), "{err:?}");
    assert!(
        err.to_string().contains("lamoda_testkit::write_tiny_base")
            && err.to_string().contains("--base DIR"),
        "{err}"
    );
    // The bundle's default base is found without --base.
    let tagger = Tagger::open(&model_dir, None).expect("loads");
    assert_eq!(tagger.categories(), [Category::Bags]);

    // Another base (other weights): refused, naming both hashes.
    let other = dir.path().join("other-base");
    write_tiny_base(&other, 8).expect("write other base");
    let err = Tagger::open(&model_dir, Some(&other)).expect_err("wrong base");
    assert!(matches!(err, InferenceError::WrongBase { .. }), "{err:?}");
    assert!(err.to_string().contains(&base.info.weights_sha256), "{err}");

    // A newer bundle format says so.
    let manifest = model_dir.join("bundle.json");
    let text = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(
        &manifest,
        text.replace("lamoda-bundle/1", "lamoda-bundle/2"),
    )
    .expect("write");
    let err = open(&model_dir);
    assert!(
        err.to_string().contains(
            "bundle format \"lamoda-bundle/2\", but this build reads \"lamoda-bundle/1\""
        ),
        "{err}"
    );
    std::fs::write(&manifest, &text).expect("write");

    // A listed category with a file missing.
    let runtime = model_dir.join("bags/runtime.json");
    let kept = std::fs::read(&runtime).expect("read");
    std::fs::remove_file(&runtime).expect("remove");
    let err = open(&model_dir);
    assert!(
        matches!(
            &err,
            InferenceError::MissingCategory {
                category: Category::Bags,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("runtime.json is missing"), "{err}");
    std::fs::write(&runtime, kept).expect("write");

    // A head one tag short of its pool.
    write_fixed_adapter(&base, &model_dir, &bags, &vec![0.5; bags.len() - 1], None)
        .expect("adapter");
    let err = open(&model_dir);
    let msg = err.to_string();
    assert!(
        matches!(&err, InferenceError::HeadWidth { category: Category::Bags, head, pool, .. }
            if *head == bags.len() - 1 && *pool == bags.len()),
        "{err:?}"
    );
    assert!(
        msg.contains("bags")
            && msg.contains(&format!("{} outputs", bags.len() - 1))
            && msg.contains(&format!("{} tags", bags.len())),
        "{msg}"
    );

    // Same width, other tags (a reordered pool): refused, naming the first difference.
    let mut reordered = bags.clone();
    reordered.tags.swap(0, 1);
    write_fixed_adapter(&base, &model_dir, &reordered, &vec![0.5; bags.len()], None)
        .expect("adapter");
    let err = open(&model_dir);
    assert!(
        matches!(&err, InferenceError::TagMismatch { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn each_review_is_scored_as_a_product_of_itself_and_mentions_count_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tiny_base(dir.path());
    let model_dir = dir.path().join("adapters");
    let pools = pools();
    for (seed, p) in pools.values().enumerate() {
        train_tiny_adapter(&base, &model_dir, p, seed as u64 + 11).expect("train tiny adapter");
    }
    let tagger = load(base, &model_dir, &pools);
    let reviews = ["a b c", "", "d e f g h", "z z z a", "b b"];
    let request = request("Shoes", &reviews);
    let scores = tagger
        .score(std::slice::from_ref(&request))
        .expect("score")
        .remove(0);
    // Blank reviews are not read; the others keep their index in the request.
    let read: Vec<usize> = scores.reviews.iter().map(|r| r.index).collect();
    assert_eq!(read, [0, 2, 3, 4]);
    // The product's probabilities are the adapter's, as before evidence existed.
    let adapter = tagger.adapter(Category::Shoes).expect("shoes");
    let texts: Vec<String> = reviews
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.to_string())
        .collect();
    let plain = adapter
        .probabilities(&tagger.base().tokenizer, &[texts.as_slice()])
        .expect("probabilities");
    assert_eq!(scores.product, plain[0]);
    // Each review's scores are what the tagger says of a product of that review alone.
    for r in &scores.reviews {
        let alone = tagger
            .score(&[Request::new("Shoes", vec![r.text.clone()])])
            .expect("score alone")
            .remove(0);
        for (a, b) in r.scores.iter().zip(&alone.product) {
            assert!((a - b).abs() < 1e-5, "review {}: {a} vs {b} alone", r.index);
        }
    }
    // Mentions count the reviews at or above the threshold; evidence is the best 3 of them.
    let options = DecodeOptions {
        threshold: Some(0.3),
        max_tags: Some(6),
        min_mentions: 0,
    };
    let prediction = tagger.decode(&scores, &options).expect("decode");
    let pool = tagger.pool(Category::Shoes).expect("pool");
    for t in &prediction.tags {
        let i = pool.index_of(&t.tag).expect("pool tag");
        let supporting: Vec<f32> = scores
            .reviews
            .iter()
            .map(|r| r.scores[i])
            .filter(|&s| s >= 0.3)
            .collect();
        assert_eq!(t.mentions, supporting.len(), "{}", t.tag);
        assert_eq!(t.evidence.len(), supporting.len().min(3));
        assert!(t.evidence.windows(2).all(|w| w[0].score >= w[1].score));
        for e in &t.evidence {
            assert_eq!(e.text, reviews[e.review]);
        }
    }
    // The rule drops the tags too few reviews support, and nothing else.
    for n in 1..=4 {
        let strict = tagger
            .decode(
                &scores,
                &DecodeOptions {
                    min_mentions: n,
                    ..options
                },
            )
            .expect("decode");
        assert!(strict.tags.iter().all(|t| t.mentions >= n));
        let kept: Vec<&str> = prediction
            .tags
            .iter()
            .filter(|t| t.mentions >= n)
            .map(|t| t.tag.as_str())
            .collect();
        for tag in kept {
            assert!(
                strict.tags.iter().any(|t| t.tag == tag),
                "N={n}: {tag} has enough mentions but was dropped"
            );
        }
    }
    // Bad options are refused.
    assert!(
        tagger
            .decode(
                &scores,
                &DecodeOptions {
                    max_tags: Some(0),
                    ..options
                }
            )
            .is_err()
    );
    assert!(
        tagger
            .decode(
                &scores,
                &DecodeOptions {
                    threshold: Some(1.5),
                    ..options
                }
            )
            .is_err()
    );
}

/// A careful calibration that passes the adapter's logit through, shifted by `tag_bias`.
fn careful_json(tags: &[&str], tag_bias: &[f32], threshold: f32) -> serde_json::Value {
    serde_json::json!({
        "format": lamoda_inference::careful::CAREFUL_FORMAT,
        "tags": tags,
        "features": lamoda_inference::careful::FEATURES,
        "review_threshold": 0.5,
        "weights": [1.0, 0.0, 0.0, 0.0, 0.0],
        "bias": 0.0,
        "tag_bias": tag_bias,
        "tag_slope": vec![0.0; tags.len()],
        "threshold": threshold,
        "min_mentions": 0,
        "min_tags": 0,
        "fitted_on": 100,
    })
}

#[test]
fn a_careful_calibration_decides_what_is_shown_and_may_show_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("adapters");
    let bags = pool(Category::Bags, &["b1", "b2", "b3"]);
    let pools: BTreeMap<Category, EtalonPool> = [(Category::Bags, bags.clone())].into();
    let base = tiny_base(&dir.path().join("a"));
    write_fixed_adapter(&base, &model_dir, &bags, &[0.6, 0.3, 0.55], None).expect("adapter");
    let tagger = load(base, &model_dir, &pools);
    let plain = tagger
        .predict(&[request("Bags", &["x", "y"])])
        .expect("predict")
        .remove(0);
    assert_eq!(tags(&plain), ["b1", "b3"]);
    assert!(!plain.calibrated);

    // b1 is over-used by the noisy labels (−3), b2 under-used (+3).
    let careful = model_dir.join("bags").join("careful.json");
    let write = |value: serde_json::Value| {
        std::fs::write(&careful, serde_json::to_string(&value).expect("json")).expect("write")
    };
    write(careful_json(&["b1", "b2", "b3"], &[-3.0, 3.0, 0.0], 0.5));
    let tagger = load(tiny_base(&dir.path().join("b")), &model_dir, &pools);
    assert_eq!(
        tagger
            .decoding(Category::Bags)
            .map(|d| (d.threshold, d.min_tags)),
        Some((0.5, 0))
    );
    let p = tagger
        .predict(&[request("Bags", &["x", "y"])])
        .expect("predict")
        .remove(0);
    assert!(p.calibrated);
    assert_eq!(tags(&p), ["b2", "b3"]);
    let sigmoid = |z: f32| 1.0 / (1.0 + (-z).exp());
    let logit = |q: f32| (q / (1.0 - q)).ln();
    assert!(
        (p.tags[0].probability - sigmoid(logit(0.3) + 3.0)).abs() < 1e-3,
        "{p:?}"
    );
    assert!((p.probabilities[0].probability - sigmoid(logit(0.6) - 3.0)).abs() < 1e-3);
    // Support stays the reviews' own raw probabilities at the calibration's 0.5: b2's 0.3
    // reviews support nothing, b3's 0.55 ones both do.
    assert_eq!((p.tags[0].mentions, p.tags[1].mentions), (0, 2));
    // A request's threshold applies to the calibrated probabilities.
    let strict = DecodeOptions {
        threshold: Some(0.8),
        ..DecodeOptions::default()
    };
    let scores = tagger.score(&[request("Bags", &["x"])]).expect("score");
    let p = tagger.decode(&scores[0], &strict).expect("decode");
    assert_eq!(tags(&p), ["b2"]);

    // Nothing a careful reader would agree with: no tag at all (min_tags 0).
    write(careful_json(&["b1", "b2", "b3"], &[-9.0, -9.0, -9.0], 0.5));
    let tagger = load(tiny_base(&dir.path().join("c")), &model_dir, &pools);
    let p = tagger
        .predict(&[request("Bags", &["x"])])
        .expect("predict")
        .remove(0);
    assert!(p.tags.is_empty(), "{p:?}");

    // A calibration for another pool is refused, naming the file.
    write(careful_json(&["b1", "b2"], &[0.0, 0.0], 0.5));
    let bundle = bundle(&tiny_base(&dir.path().join("d")), &model_dir, &pools);
    let err = Tagger::load(tiny_base(&dir.path().join("e")), bundle).expect_err("2 tags for 3");
    assert!(matches!(err, InferenceError::Careful { .. }), "{err:?}");
    assert!(err.to_string().contains("careful.json"), "{err}");
}
