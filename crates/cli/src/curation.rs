//! `lamoda-tags consolidate`, `lamoda-tags map` and `lamoda-tags audit`: the embedding steps
//! of the label-curation pipeline (`lamoda-curation`), on the project's base, pools and
//! routing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamoda_curation::audit::{
    IssueKind, LogisticConfig, confident_learning, contradictions, near_duplicates, out_of_fold,
    rare_tags,
};
use lamoda_curation::consolidate::{
    adjusted_rand, cluster_average, pair_agreement, representative,
};
use lamoda_curation::embed::{BaseEmbedder, Embedder, EmbeddingCache, dot, normalize};
use lamoda_curation::map::{
    Agreement, MapOptions, PoolSpace, ProductCandidates, agreement, candidates, labeled_from_map,
    map_rows, read_map_csv, text_key, write_labeled, write_map_csv,
};
use lamoda_curation::{normalize_tag, read_pool_csv, read_raw_tags};
use lamoda_data::{Category, EtalonPool, Routing, UnknownTagPolicy};
use lamoda_model::LoadedBase;
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;

use crate::common::{DataRootArgs, emit};
use lamoda_data::Project;

/// The thresholds of the agreement table: the issue's 0.6–0.9 (bge-m3's range), and above,
/// where e5-small's compressed `query:` cosines start to separate.
const AGREEMENT_THRESHOLDS: [f32; 10] = [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96];

/// Where embeddings are cached unless `--cache-dir` says otherwise.
fn default_cache_dir(project: &Project) -> PathBuf {
    project.root().join("target").join("curation-cache")
}

/// Base model and cache flags shared by the embedding commands.
#[derive(Args, Debug, Clone)]
pub struct EmbedFlags {
    /// The base model (an HF directory; default: the project's models/e5-small).
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
    /// The embedding cache (default: target/curation-cache), one directory per model hash.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl EmbedFlags {
    fn load(&self, project: &Project) -> anyhow::Result<(LoadedBase, PathBuf)> {
        let dir = self.base.clone().unwrap_or_else(|| project.base_dir());
        let started = Instant::now();
        let base = lamoda_model::load_hf_dir(&dir, &lamoda_model::default_device())
            .with_context(|| {
                format!(
                    "cannot load the base from {} (run `lamoda-tags fetch-base e5-small` or pass --base DIR)",
                    dir.display()
                )
            })?;
        eprintln!(
            "base {} (sha256 {}…) loaded in {:.1} s",
            base.info.id,
            &base.info.weights_sha256[..12.min(base.info.weights_sha256.len())],
            started.elapsed().as_secs_f64()
        );
        Ok((
            base,
            self.cache_dir
                .clone()
                .unwrap_or_else(|| default_cache_dir(project)),
        ))
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}]"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Embeds `texts` through the cache `name` (distinct texts; a map text → vector).
fn embed_cached(
    embedder: &dyn Embedder,
    cache_dir: &Path,
    name: &str,
    texts: &[String],
    what: &str,
) -> anyhow::Result<HashMap<String, Vec<f32>>> {
    let mut cache = EmbeddingCache::for_embedder(cache_dir, embedder, name);
    if let Some(reason) = cache.stale() {
        eprintln!(
            "embedding cache {} not used ({reason}); it is rebuilt",
            cache.path().display()
        );
    }
    let started = Instant::now();
    let progress = bar(0, what);
    let mut last_line = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (vectors, stats) = cache.embed_all(embedder, texts, 64, |done, total| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
        if !terminal && total > 0 && (last_line.elapsed().as_secs() >= 10 || done == total) {
            last_line = Instant::now();
            eprintln!("{what}: {done}/{total} embedded");
        }
    })?;
    progress.finish_and_clear();
    eprintln!(
        "{what}: {} distinct, {} from the cache, {} embedded in {:.1} s ({})",
        stats.requested,
        stats.hits,
        stats.embedded,
        started.elapsed().as_secs_f64(),
        cache.path().display()
    );
    Ok(texts.iter().cloned().zip(vectors).collect())
}

/// The pools of every category `configs/routing.toml` names (and the fallback).
fn project_pools(project: &Project) -> anyhow::Result<(Routing, BTreeMap<Category, EtalonPool>)> {
    let routing = project.routing()?;
    let mut categories: BTreeSet<Category> = routing.good_types.values().copied().collect();
    categories.insert(routing.fallback);
    let mut pools = BTreeMap::new();
    for category in categories {
        pools.insert(category, project.pool(category)?);
    }
    Ok((routing, pools))
}

/// The pool spaces (pool + unit vector of each normalised tag).
fn spaces(
    pools: &BTreeMap<Category, EtalonPool>,
    vectors: &HashMap<String, Vec<f32>>,
) -> anyhow::Result<BTreeMap<Category, PoolSpace>> {
    let mut out = BTreeMap::new();
    for (category, pool) in pools {
        let vs = pool
            .tags
            .iter()
            .map(|t| {
                vectors
                    .get(&normalize_tag(t))
                    .cloned()
                    .with_context(|| format!("no vector for etalon tag {t:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.insert(
            *category,
            PoolSpace {
                pool: pool.clone(),
                vectors: vs,
            },
        );
    }
    Ok(out)
}

fn tag_embedder(base: &LoadedBase) -> BaseEmbedder<'_> {
    BaseEmbedder::tags(base)
}

// ---------------------------------------------------------------- map

/// `lamoda-tags map`.
#[derive(Args, Debug)]
pub struct MapArgs {
    /// Raw tags: a label store (`.jsonl`) or a table with a `tags` column
    /// (`reviews_sampled_with_tags.csv`).
    #[arg(long, value_name = "RAW.jsonl|TABLE.csv", conflicts_with_all = ["from_edited", "agreement"])]
    input: Option<PathBuf>,
    /// The mapping to write (with --input), or the training files' directory (with
    /// --from-edited: --out-dir).
    #[arg(long, value_name = "MAP.csv")]
    out: Option<PathBuf>,
    /// The lowest accepted cosine (tags: `"query: "` + normalised tag). 0.9 agrees best
    /// with labeled/ on e5-small (docs/curation.md); the original 0.7 was bge-m3's.
    #[arg(long, value_name = "COS", default_value_t = 0.9)]
    threshold: f32,
    /// Candidates written per raw tag (each accepted at or above the threshold).
    #[arg(long, value_name = "K", default_value_t = 1)]
    top_k: usize,
    /// An edited mapping: write training files from its accepted rows.
    #[arg(long, value_name = "MAP.csv", requires_all = ["products", "out_dir"])]
    from_edited: Option<PathBuf>,
    /// The product table with the reviews (`reviews_sampled.csv` layout), with --from-edited.
    #[arg(long, value_name = "PRODUCTS.csv")]
    products: Option<PathBuf>,
    /// Where the training files go (`DIR/labeled/<category>.csv`), with --from-edited.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Print the agreement table on the reference data (LAMODA_DATA) instead.
    #[arg(long)]
    agreement: bool,
    /// With --agreement: the table as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    embed: EmbedFlags,
    #[command(flatten)]
    data: DataRootArgs,
}

/// `lamoda-tags map`: a mapping, training files from an edited one, or the agreement table.
pub fn map(args: MapArgs, project: &Project) -> anyhow::Result<()> {
    if !(args.threshold.is_finite() && (-1.0..=1.0).contains(&args.threshold)) {
        bail!(
            "--threshold must be a cosine in -1..1, not {}",
            args.threshold
        );
    }
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if args.agreement {
        return map_agreement(&args, project);
    }
    if let Some(edited) = &args.from_edited {
        let (Some(products), Some(out_dir)) = (&args.products, &args.out_dir) else {
            bail!("--from-edited needs --products PRODUCTS.csv and --out-dir DIR");
        };
        return from_edited(edited, products, out_dir, project);
    }
    let (Some(input), Some(out)) = (&args.input, &args.out) else {
        bail!(
            "say what to do: --input RAW --out MAP.csv (a mapping), --from-edited MAP.csv --products P.csv --out-dir DIR (training files), or --agreement"
        );
    };
    let raw = read_raw_tags(input)?;
    if raw.products.is_empty() {
        bail!("{}: no products with raw tags", input.display());
    }
    let (routing, pools) = project_pools(project)?;
    let (base, cache_dir) = args.embed.load(project)?;
    let embedder = tag_embedder(&base);
    let texts = tag_texts(&raw.products, &pools);
    let vectors = embed_cached(&embedder, &cache_dir, "tags", &texts, "tags")?;
    let spaces = spaces(&pools, &vectors)?;
    let cands = candidates(
        &raw.products,
        &routing,
        &spaces,
        |t| vectors.get(t).cloned(),
        args.top_k,
    )?;
    let options = MapOptions {
        threshold: args.threshold,
        top_k: args.top_k,
    };
    let rows = map_rows(&cands, &spaces, options);
    write_map_csv(out, &rows)?;
    let accepted = rows.iter().filter(|r| r.accepted).count();
    let products_with = cands
        .iter()
        .filter(|p| !lamoda_curation::map::select(p, &spaces[&p.category].pool, options).is_empty())
        .count();
    let fallback = cands.iter().filter(|p| p.fallback).count();
    eprintln!(
        "mapped {} products ({} by the fallback route), {} raw tags: {} rows, {accepted} accepted \
         at cosine ≥ {} (top-{}); {products_with} products get a tag; into {}",
        cands.len(),
        fallback,
        cands.iter().map(|p| p.tags.len()).sum::<usize>(),
        rows.len(),
        args.threshold,
        args.top_k,
        out.display()
    );
    Ok(())
}

/// Every normalised raw tag and etalon tag to embed.
fn tag_texts(
    products: &[lamoda_curation::RawTags],
    pools: &BTreeMap<Category, EtalonPool>,
) -> Vec<String> {
    let mut set = BTreeSet::new();
    for pool in pools.values() {
        for t in &pool.tags {
            set.insert(normalize_tag(t));
        }
    }
    for p in products {
        for t in &p.tags {
            let n = normalize_tag(t);
            if !n.is_empty() {
                set.insert(n);
            }
        }
    }
    set.into_iter().collect()
}

fn from_edited(
    edited: &Path,
    products: &Path,
    out_dir: &Path,
    project: &Project,
) -> anyhow::Result<()> {
    let (_, pools) = project_pools(project)?;
    let rows = read_map_csv(edited, &pools)?;
    let products = lamoda_data::load_products(products)?;
    let sets = labeled_from_map(&rows, &products, &pools);
    let written = write_labeled(out_dir, &sets)?;
    for (category, set) in &sets.sets {
        eprintln!("{category}: {} products", set.len());
    }
    let mut line = format!(
        "wrote {} training files into {} from {} accepted rows",
        written.len(),
        out_dir.join("labeled").display(),
        rows.iter().filter(|r| r.accepted).count()
    );
    if sets.dropped_exclusive > 0 {
        line += &format!(
            "; {} tags dropped for a more similar one of their exclusive group",
            sets.dropped_exclusive
        );
    }
    if sets.without_tags > 0 {
        line += &format!("; {} products have no accepted tag", sets.without_tags);
    }
    if !sets.unknown_skus.is_empty() {
        line += &format!(
            "; {} SKUs of the mapping are not in the product table (e.g. {})",
            sets.unknown_skus.len(),
            sets.unknown_skus[0]
        );
    }
    eprintln!("{line}");
    Ok(())
}

fn map_agreement(args: &MapArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.data.resolve()?;
    let root = data.root();
    let raw_path = root.join("reviews_sampled_with_tags.csv");
    let pulled_path = root.join("reviews_sampled_with_pull_tags.csv");
    let raw = lamoda_data::load_products(&raw_path)?;
    let pulled = lamoda_data::load_products(&pulled_path)?;
    let (routing, pools) = project_pools(project)?;
    let raw_tags: Vec<lamoda_curation::RawTags> = raw
        .iter()
        .map(|p| lamoda_curation::RawTags {
            sku: p.sku.clone(),
            good_type: p.good_type.clone(),
            tags: p.tags.clone().unwrap_or_default(),
        })
        .collect();
    // (i) the pooled labels of the same products, restricted to etalon tags (by normalised
    // form), on the products with an own route and at least one such tag.
    let mut gold_pull: HashMap<String, Vec<String>> = HashMap::new();
    for p in &pulled {
        let route = routing.route(&p.good_type);
        if route.fallback {
            continue;
        }
        let pool = &pools[&route.category];
        let by_norm: HashMap<String, &String> =
            pool.tags.iter().map(|t| (normalize_tag(t), t)).collect();
        let tags: BTreeSet<String> = p
            .tags
            .iter()
            .flatten()
            .filter_map(|t| by_norm.get(&normalize_tag(t)).map(|t| (*t).clone()))
            .collect();
        if !tags.is_empty() {
            gold_pull.insert(p.sku.clone(), tags.into_iter().collect());
        }
    }
    // (ii) labeled rows whose text matches the product's reviews.
    let mut by_text: HashMap<String, (Category, Vec<String>)> = HashMap::new();
    for category in data.categories()? {
        let Some(pool) = pools.get(&category) else {
            continue;
        };
        let set = data.labeled(category, pool, UnknownTagPolicy::Report)?;
        for row in set.rows {
            by_text.insert(text_key(&row.reviews), (category, row.tags));
        }
    }
    let mut gold_labeled: HashMap<String, Vec<String>> = HashMap::new();
    for p in &raw {
        let route = routing.route(&p.good_type);
        if let Some((category, tags)) = by_text.get(&text_key(&p.reviews))
            && *category == route.category
        {
            gold_labeled.insert(p.sku.clone(), tags.clone());
        }
    }
    let (base, cache_dir) = args.embed.load(project)?;
    let embedder = tag_embedder(&base);
    let texts = tag_texts(&raw_tags, &pools);
    let vectors = embed_cached(&embedder, &cache_dir, "tags", &texts, "tags")?;
    let spaces = spaces(&pools, &vectors)?;
    let cands: Vec<ProductCandidates> =
        candidates(&raw_tags, &routing, &spaces, |t| vectors.get(t).cloned(), 2)?;
    let mut table = agreement(
        "pooled labels (reviews_sampled_with_pull_tags.csv ∩ etalon)",
        &cands,
        &spaces,
        &gold_pull,
        &AGREEMENT_THRESHOLDS,
        &[1, 2],
    );
    table.extend(agreement(
        "labeled/*.csv rows with the same text",
        &cands,
        &spaces,
        &gold_labeled,
        &AGREEMENT_THRESHOLDS,
        &[1, 2],
    ));
    if args.json {
        let rows: Vec<serde_json::Value> = table
            .iter()
            .map(|a| {
                serde_json::json!({
                    "reference": a.reference, "threshold": a.threshold, "top_k": a.top_k,
                    "products": a.products, "tp": a.tp, "fp": a.fp, "fn": a.fn_,
                    "precision": a.precision(), "recall": a.recall(), "micro_f1": a.f1(),
                })
            })
            .collect();
        return emit(&serde_json::to_string_pretty(&rows)?);
    }
    emit(&format_agreement(&table))
}

fn format_agreement(table: &[Agreement]) -> String {
    let mut out = String::new();
    let mut current = "";
    for a in table {
        if a.reference != current {
            current = &a.reference;
            let _ = writeln!(out, "\n{} ({} products)\n", a.reference, a.products);
            let _ = writeln!(
                out,
                "| threshold | top-k | precision | recall | micro-F1 | tp | fp | fn |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        }
        let _ = writeln!(
            out,
            "| {:.2} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            a.threshold,
            a.top_k,
            a.precision(),
            a.recall(),
            a.f1(),
            a.tp,
            a.fp,
            a.fn_
        );
    }
    out.trim_start().to_owned()
}

// ---------------------------------------------------------------- audit

/// `lamoda-tags audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Where the report goes: `audit.csv`, `summary.md`, `sample.md`.
    #[arg(long, value_name = "DIR", default_value = "target/audit")]
    out_dir: PathBuf,
    /// Only this category (default: every labeled file).
    #[arg(long, value_name = "C")]
    category: Option<Category>,
    /// Folds of the out-of-fold model.
    #[arg(long, value_name = "K", default_value_t = 5)]
    folds: usize,
    /// The seed of the folds and of the sample.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// A tag on fewer products is too rare to learn.
    #[arg(long, value_name = "N", default_value_t = 20)]
    min_products: usize,
    /// Pool tags at or above this cosine are near-duplicates.
    #[arg(long, value_name = "COS", default_value_t = 0.93)]
    min_cosine: f32,
    /// Pool tags whose products overlap at or above this Jaccard are near-duplicates.
    #[arg(long, value_name = "J", default_value_t = 0.5)]
    min_jaccard: f64,
    /// Products drawn (seeded) from those with a disputed label into `sample.md`, for a
    /// check by hand.
    #[arg(long, value_name = "N", default_value_t = 30)]
    sample: usize,
    /// Reviews read per product for its vector (the first ones; the runtime reads 32, but
    /// all 67k distinct reviews of the reference data take about 25 min on 2 cores, the
    /// 20k of the first 3 about 8 min).
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_reviews: usize,
    /// The L2 penalty of the out-of-fold logistic regressions (on the mean loss; 0.3 is
    /// the best of 0.001–3 by the model's micro-F1 on the reference data).
    #[arg(long, value_name = "L", default_value_t = 0.3)]
    l2: f32,
    /// A disputed label is strong at or above this strength (the normalised margin, 0–1);
    /// the sample is drawn from the products with a strong one.
    #[arg(long, value_name = "S", default_value_t = 0.5)]
    strong: f32,
    /// Tokens per review (with the boundary tokens).
    #[arg(long, value_name = "N", default_value_t = 48)]
    max_tokens: usize,
    #[command(flatten)]
    embed: EmbedFlags,
    #[command(flatten)]
    data: DataRootArgs,
}

struct CategoryAudit {
    category: Category,
    pool: EtalonPool,
    rows: Vec<lamoda_data::ReviewStack>,
    issues: Vec<lamoda_curation::audit::LabelIssue>,
    contradictions: Vec<(usize, String, Vec<String>)>,
    near: Vec<lamoda_curation::audit::NearDuplicatePair>,
    rare: Vec<(String, usize)>,
    oof_f1: f64,
    prior_f1: f64,
}

/// `lamoda-tags audit`: the report, the summary and a sample to check by hand.
pub fn audit(args: AuditArgs, project: &Project) -> anyhow::Result<()> {
    if args.folds < 2 {
        bail!("--folds must be at least 2");
    }
    if args.max_reviews == 0 || args.max_tokens < 3 {
        bail!("--max-reviews must be at least 1 and --max-tokens at least 3");
    }
    let data = args.data.resolve()?;
    let categories = match args.category {
        Some(c) => vec![c],
        None => data.categories()?,
    };
    let mut sets = Vec::new();
    for category in &categories {
        let pool = project.pool(*category)?;
        let set = data.labeled(*category, &pool, UnknownTagPolicy::Error)?;
        sets.push((pool, set));
    }
    let (base, cache_dir) = args.embed.load(project)?;
    // Review vectors: every distinct review read (the first 32 per product), cached.
    let review_embedder = BaseEmbedder::reviews(&base, args.max_tokens);
    let mut reviews: BTreeSet<String> = BTreeSet::new();
    for (_, set) in &sets {
        for row in &set.rows {
            reviews.extend(row.reviews.iter().take(args.max_reviews).cloned());
        }
    }
    let reviews: Vec<String> = reviews.into_iter().collect();
    let review_vectors =
        embed_cached(&review_embedder, &cache_dir, "reviews", &reviews, "reviews")?;
    let tag_emb = tag_embedder(&base);
    let pool_texts: Vec<String> = sets
        .iter()
        .flat_map(|(p, _)| p.tags.iter().map(|t| normalize_tag(t)))
        .collect();
    let tag_vectors = embed_cached(&tag_emb, &cache_dir, "tags", &pool_texts, "pool tags")?;
    let config = LogisticConfig {
        l2: args.l2,
        ..LogisticConfig::default()
    };
    let mut audits = Vec::new();
    for (pool, set) in sets {
        let started = Instant::now();
        let x: Vec<Vec<f32>> = set
            .rows
            .iter()
            .map(|row| {
                let mut mean = vec![0f32; base.packed.hidden()];
                let read: Vec<&String> = row.reviews.iter().take(args.max_reviews).collect();
                for r in &read {
                    if let Some(v) = review_vectors.get(*r) {
                        for (m, x) in mean.iter_mut().zip(v) {
                            *m += x / read.len() as f32;
                        }
                    }
                }
                normalize(&mut mean);
                mean
            })
            .collect();
        let y: Vec<Vec<bool>> = set
            .rows
            .iter()
            .map(|row| pool.tags.iter().map(|t| row.tags.contains(t)).collect())
            .collect();
        let folds = lamoda_data::kfold(&set.rows, args.folds, args.seed);
        let progress = bar(args.folds as u64, &format!("{} folds", set.category));
        let probs = out_of_fold(&x, &y, &folds, config, |f| {
            progress.set_position(f as u64 + 1)
        });
        progress.finish_and_clear();
        let issues = confident_learning(&probs, &y);
        let tags: Vec<Vec<String>> = set.rows.iter().map(|r| r.tags.clone()).collect();
        let vectors: Vec<Vec<f32>> = pool
            .tags
            .iter()
            .map(|t| tag_vectors[&normalize_tag(t)].clone())
            .collect();
        let oof_f1 = micro_f1_top(&probs, &y, None);
        let prior_f1 = micro_f1_top(&probs, &y, Some(&prior_ranking(&y)));
        eprintln!(
            "{}: {} products, out-of-fold model fitted in {:.1} s: {} disputed labels",
            set.category,
            set.rows.len(),
            started.elapsed().as_secs_f64(),
            issues.len()
        );
        audits.push(CategoryAudit {
            category: set.category,
            contradictions: contradictions(&tags, &pool),
            near: near_duplicates(&vectors, &y, args.min_cosine, args.min_jaccard),
            rare: rare_tags(&tags, &pool, args.min_products),
            pool,
            rows: set.rows,
            issues,
            oof_f1,
            prior_f1,
        });
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let csv_path = args.out_dir.join("audit.csv");
    write_audit_csv(&csv_path, &audits)?;
    let summary = audit_summary(&audits, &args);
    let summary_path = args.out_dir.join("summary.md");
    std::fs::write(&summary_path, &summary)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let sample_path = args.out_dir.join("sample.md");
    std::fs::write(
        &sample_path,
        audit_sample(&audits, args.sample, args.seed, args.strong),
    )
    .with_context(|| format!("cannot write {}", sample_path.display()))?;
    emit(&summary)?;
    eprintln!(
        "wrote {}, {} and {}",
        csv_path.display(),
        summary_path.display(),
        sample_path.display()
    );
    Ok(())
}

/// Tags of the category by frequency, most frequent first.
fn prior_ranking(y: &[Vec<bool>]) -> Vec<usize> {
    let tags = y.first().map_or(0, Vec::len);
    let mut order: Vec<usize> = (0..tags).collect();
    let count = |t: usize| y.iter().filter(|r| r[t]).count();
    order.sort_by_key(|&t| (std::cmp::Reverse(count(t)), t));
    order
}

/// Micro-F1 of predicting each product's k most probable tags (k = its number of gold
/// tags, at least 1), or with `prior` the k most frequent: a threshold-free comparison of
/// the out-of-fold model with the frequency prior.
fn micro_f1_top(probs: &[Vec<f32>], y: &[Vec<bool>], prior: Option<&[usize]>) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (p, row) in probs.iter().zip(y) {
        let k = row.iter().filter(|&&b| b).count().max(1);
        let order: Vec<usize> = match prior {
            Some(order) => order.to_vec(),
            None => {
                let mut o: Vec<usize> = (0..p.len()).collect();
                o.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                o
            }
        };
        let chosen: Vec<usize> = order.into_iter().take(k).collect();
        let hit = chosen.iter().filter(|&&t| row[t]).count();
        tp += hit;
        fp += chosen.len() - hit;
        fn_ += row.iter().filter(|&&b| b).count() - hit;
    }
    let d = 2 * tp + fp + fn_;
    if d == 0 {
        1.0
    } else {
        2.0 * tp as f64 / d as f64
    }
}

fn write_audit_csv(path: &Path, audits: &[CategoryAudit]) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "kind",
        "category",
        "row",
        "tag",
        "other_tag",
        "score",
        "threshold",
        "margin",
        "strength",
        "given_tags",
        "detail",
    ])?;
    for a in audits {
        for issue in &a.issues {
            let row = &a.rows[issue.row];
            w.write_record([
                format!("label_{}", issue.kind.name()),
                a.category.to_string(),
                row.row.to_string(),
                a.pool.tags[issue.tag].clone(),
                String::new(),
                format!("{:.4}", issue.p),
                format!("{:.4}", issue.threshold),
                format!("{:.4}", issue.margin),
                format!("{:.4}", issue.strength),
                row.tags.join("; "),
                match issue.kind {
                    IssueKind::Given => "given tag the out-of-fold model disputes".to_owned(),
                    IssueKind::Missing => "missing tag the out-of-fold model predicts".to_owned(),
                },
            ])?;
        }
        for (i, group, tags) in &a.contradictions {
            let row = &a.rows[*i];
            w.write_record([
                "contradiction".to_owned(),
                a.category.to_string(),
                row.row.to_string(),
                tags[0].clone(),
                tags[1..].join("; "),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                row.tags.join("; "),
                format!("two tags of the exclusive group {group:?}"),
            ])?;
        }
        for pair in &a.near {
            w.write_record([
                "near_duplicate".to_owned(),
                a.category.to_string(),
                String::new(),
                a.pool.tags[pair.a].clone(),
                a.pool.tags[pair.b].clone(),
                format!("{:.4}", pair.cosine),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!(
                    "cosine {:.3}; on {} products together, Jaccard {:.3}, lift {:.2}",
                    pair.cosine, pair.both, pair.jaccard, pair.lift
                ),
            ])?;
        }
        for (tag, count) in &a.rare {
            w.write_record([
                "rare_tag".to_owned(),
                a.category.to_string(),
                String::new(),
                tag.clone(),
                String::new(),
                count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("on {count} products"),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

fn audit_summary(audits: &[CategoryAudit], args: &AuditArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Label audit\n");
    let _ = writeln!(
        s,
        "Out-of-fold model: {}-fold (seed {}) one-vs-rest logistic regressions on the frozen \
         e5-small mean review vectors (`passage: `, ≤ {} tokens, the first {} reviews). \
         Disputed labels by confident learning (per-tag thresholds t1 = mean p of carriers, \
         t0 = mean 1-p of the others). Near-duplicates: cosine ≥ {} (`query: ` + tag) or \
         Jaccard ≥ {}. Rare: fewer than {} products.\n",
        args.folds,
        args.seed,
        args.max_tokens,
        args.max_reviews,
        args.min_cosine,
        args.min_jaccard,
        args.min_products
    );
    let _ = writeln!(
        s,
        "Counts: disputed labels (all / strong, strength ≥ {}), products with a strong one.\n",
        args.strong
    );
    let _ = writeln!(
        s,
        "| category | products | labels | model top-k micro-F1 (prior) | disputed given | disputed missing | products with a strong dispute | contradictions | near-duplicate pairs | rare tags |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let mut totals = [0usize; 10];
    for a in audits {
        let count = |kind: IssueKind, strong: bool| {
            a.issues
                .iter()
                .filter(|i| i.kind == kind && (!strong || i.strength >= args.strong))
                .count()
        };
        let flagged: BTreeSet<usize> = a
            .issues
            .iter()
            .filter(|i| i.strength >= args.strong)
            .map(|i| i.row)
            .collect();
        let labels: usize = a.rows.iter().map(|r| r.tags.len()).sum();
        let row = [
            a.rows.len(),
            labels,
            count(IssueKind::Given, false),
            count(IssueKind::Given, true),
            count(IssueKind::Missing, false),
            count(IssueKind::Missing, true),
            flagged.len(),
            a.contradictions.len(),
            a.near.len(),
            a.rare.len(),
        ];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} ({:.3}) | {} / {} | {} / {} | {} | {} | {} | {} |",
            a.category,
            row[0],
            row[1],
            a.oof_f1,
            a.prior_f1,
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9]
        );
        for (t, v) in totals.iter_mut().zip(row) {
            *t += v;
        }
    }
    let t = totals;
    let _ = writeln!(
        s,
        "| all | {} | {} | | {} / {} | {} / {} | {} | {} | {} | {} |\n",
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9]
    );
    for a in audits {
        let _ = writeln!(s, "## {}\n", a.category);
        let mut by_tag: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for i in a.issues.iter().filter(|i| i.strength >= args.strong) {
            *by_tag
                .entry((a.pool.tags[i.tag].as_str(), i.kind.name()))
                .or_default() += 1;
        }
        let mut top: Vec<(&(&str, &str), &usize)> = by_tag.iter().collect();
        top.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        let list: Vec<String> = top
            .iter()
            .take(6)
            .map(|((t, k), n)| format!("{t} ({k}) {n}"))
            .collect();
        let _ = writeln!(s, "- most disputed (strong): {}", list.join(", "));
        for pair in &a.near {
            let _ = writeln!(
                s,
                "- near-duplicates: {} / {} (cosine {:.3}, {} together, Jaccard {:.2}, lift {:.2})",
                a.pool.tags[pair.a],
                a.pool.tags[pair.b],
                pair.cosine,
                pair.both,
                pair.jaccard,
                pair.lift
            );
        }
        for (i, group, tags) in &a.contradictions {
            let _ = writeln!(
                s,
                "- contradiction: row {} has {} (group {group})",
                a.rows[*i].row,
                tags.join(" + ")
            );
        }
        if !a.rare.is_empty() {
            let list: Vec<String> = a.rare.iter().map(|(t, c)| format!("{t} ({c})")).collect();
            let _ = writeln!(s, "- rare: {}", list.join(", "));
        }
        let _ = writeln!(s);
    }
    s
}

fn audit_sample(audits: &[CategoryAudit], n: usize, seed: u64, strong: f32) -> String {
    let mut flagged: Vec<(usize, usize)> = Vec::new();
    for (ai, a) in audits.iter().enumerate() {
        let rows: BTreeSet<usize> = a
            .issues
            .iter()
            .filter(|i| i.strength >= strong)
            .map(|i| i.row)
            .collect();
        flagged.extend(rows.into_iter().map(|r| (ai, r)));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    flagged.shuffle(&mut rng);
    flagged.truncate(n);
    let mut s = format!(
        "# Audit sample: {} products with a strong disputed label (strength ≥ {strong}; seed {seed})\n\n",
        flagged.len()
    );
    for (k, (ai, r)) in flagged.iter().enumerate() {
        let a = &audits[*ai];
        let row = &a.rows[*r];
        let _ = writeln!(s, "## {}. {} row {}\n", k + 1, a.category, row.row);
        let _ = writeln!(s, "given: {}\n", row.tags.join("; "));
        for i in a
            .issues
            .iter()
            .filter(|i| i.row == *r && i.strength >= strong)
        {
            let _ = writeln!(
                s,
                "- {} `{}`: p {:.3} (threshold {:.3}, strength {:.2})",
                i.kind.name(),
                a.pool.tags[i.tag],
                i.p,
                i.threshold,
                i.strength
            );
        }
        let _ = writeln!(s);
        for review in row.reviews.iter().take(40) {
            let cut: String = review.chars().take(300).collect();
            let _ = writeln!(s, "> {}", cut.replace('\n', " "));
        }
        if row.reviews.len() > 40 {
            let _ = writeln!(s, "> … {} more reviews", row.reviews.len() - 40);
        }
        let _ = writeln!(s);
    }
    s
}

// ---------------------------------------------------------------- consolidate

/// `lamoda-tags consolidate`.
#[derive(Args, Debug)]
pub struct ConsolidateArgs {
    /// The raw-tag pool (`lamoda-tags pool`: `good_type,tag,frequency,variants`).
    #[arg(long, value_name = "POOL.csv")]
    pool: PathBuf,
    /// The mapping in the `tag_mappings.csv` layout (`good_type,old_tags,new_tag`); the
    /// reviewable file with one row per raw tag goes beside it (`<stem>.clusters.csv`).
    #[arg(long, value_name = "MAPPING.csv")]
    out: PathBuf,
    /// The lowest average-linkage cosine at which two clusters merge (0.9 agrees best with
    /// the reference tag_mappings.csv on e5-small: docs/curation.md).
    #[arg(long, value_name = "COS", default_value_t = 0.9)]
    threshold: f32,
    /// The reference mapping to compare with (default: LAMODA_DATA/tag_mappings.csv when
    /// there is one).
    #[arg(long, value_name = "CSV")]
    reference: Option<PathBuf>,
    /// Ask an LLM (OpenAI-compatible chat API) to name each cluster of more than one tag
    /// (the most frequent member stays where it gives no usable name).
    #[arg(long, requires_all = ["base_url", "model"])]
    name_with_llm: bool,
    /// The chat API's base URL (`/chat/completions` is appended), with --name-with-llm.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The model name sent in each request, with --name-with-llm.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// The environment variable holding the API key.
    #[arg(long, value_name = "VAR", default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Clusters named at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    embed: EmbedFlags,
    #[command(flatten)]
    data: DataRootArgs,
}

/// Names of the clusters of more than one tag from the LLM: `(good type, cluster) → name`.
fn llm_names(
    args: &ConsolidateArgs,
    clusters: &[(String, usize, Vec<String>)],
) -> anyhow::Result<HashMap<(String, usize), String>> {
    let (Some(base_url), Some(model)) = (&args.base_url, &args.model) else {
        bail!("--name-with-llm needs --base-url URL and --model NAME");
    };
    let client = std::sync::Arc::new(lamoda_curation::ChatClient::new(
        lamoda_curation::ChatConfig {
            base_url: base_url.clone(),
            model: model.clone(),
            api_key: std::env::var(&args.api_key_env)
                .ok()
                .filter(|k| !k.trim().is_empty()),
            temperature: 0.0,
            timeout: std::time::Duration::from_secs(120),
            max_retries: 4,
            backoff_base: std::time::Duration::from_millis(500),
            backoff_max: std::time::Duration::from_secs(30),
        },
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let progress = bar(clusters.len() as u64, "naming");
    let result = runtime.block_on(async {
        let mut names = HashMap::new();
        let mut failed = 0usize;
        let mut set = tokio::task::JoinSet::new();
        let mut queue = clusters.iter().cloned();
        loop {
            while set.len() < args.concurrency.max(1) {
                let Some((good_type, cluster, members)) = queue.next() else {
                    break;
                };
                let client = client.clone();
                set.spawn(async move {
                    let name = lamoda_curation::name_cluster(&client, &good_type, &members).await;
                    (good_type, cluster, name)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (good_type, cluster, name) = joined.context("a naming task failed")?;
            progress.inc(1);
            match name? {
                Ok(name) => {
                    names.insert((good_type, cluster), name);
                }
                Err(_) => failed += 1,
            }
        }
        anyhow::Ok((names, failed))
    });
    progress.finish_and_clear();
    let (names, failed) = result?;
    eprintln!(
        "the LLM named {} clusters{}",
        names.len(),
        if failed > 0 {
            format!("; {failed} gave no usable name and keep their most frequent tag")
        } else {
            String::new()
        }
    );
    Ok(names)
}

/// `lamoda-tags consolidate`: clusters, the mapping, and the comparison with the reference.
pub fn consolidate(args: ConsolidateArgs, project: &Project) -> anyhow::Result<()> {
    if !(args.threshold.is_finite() && (-1.0..=1.0).contains(&args.threshold)) {
        bail!(
            "--threshold must be a cosine in -1..1, not {}",
            args.threshold
        );
    }
    let pool = read_pool_csv(&args.pool)?;
    if pool.entries.is_empty() {
        bail!("{}: no tags", args.pool.display());
    }
    let (base, cache_dir) = args.embed.load(project)?;
    let embedder = tag_embedder(&base);
    let texts: Vec<String> = pool.entries.iter().map(|e| e.tag.clone()).collect();
    let vectors = embed_cached(&embedder, &cache_dir, "tags", &texts, "pool tags")?;
    let good_types: BTreeSet<&str> = pool.entries.iter().map(|e| e.good_type.as_str()).collect();
    // good_type → [(tag, cluster, merged, similarity to merged, frequency, size)]
    let mut result: Consolidation = BTreeMap::new();
    for good_type in good_types {
        let started = Instant::now();
        let entries: Vec<_> = pool.of(good_type).collect();
        let vs: Vec<Vec<f32>> = entries.iter().map(|e| vectors[&e.tag].clone()).collect();
        let labels = cluster_average(&vs, args.threshold);
        let clusters = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters];
        for (i, &c) in labels.iter().enumerate() {
            members[c].push(i);
        }
        let mut rows = Vec::new();
        for (c, m) in members.iter().enumerate() {
            let named: Vec<(String, usize)> = m
                .iter()
                .map(|&i| (entries[i].tag.clone(), entries[i].frequency))
                .collect();
            let rep = m[representative(&named)];
            for &i in m {
                rows.push((
                    entries[i].tag.clone(),
                    c,
                    entries[rep].tag.clone(),
                    dot(&vs[i], &vs[rep]),
                    entries[i].frequency,
                    m.len(),
                ));
            }
        }
        eprintln!(
            "{good_type}: {} tags into {clusters} clusters ({} of more than one tag) in {:.1} s",
            entries.len(),
            members.iter().filter(|m| m.len() > 1).count(),
            started.elapsed().as_secs_f64()
        );
        result.insert(good_type.to_owned(), rows);
    }
    if args.name_with_llm {
        let mut clusters: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
        for (good_type, rows) in &result {
            for (tag, c, _, _, _, size) in rows {
                if *size > 1 {
                    clusters
                        .entry((good_type.clone(), *c))
                        .or_default()
                        .push(tag.clone());
                }
            }
        }
        let list: Vec<(String, usize, Vec<String>)> =
            clusters.into_iter().map(|((g, c), m)| (g, c, m)).collect();
        let names = llm_names(&args, &list)?;
        for (good_type, rows) in result.iter_mut() {
            for row in rows.iter_mut() {
                if let Some(name) = names.get(&(good_type.clone(), row.1)) {
                    row.2 = name.clone();
                }
            }
        }
    }
    write_consolidation(&args.out, &result)?;
    let reference = args.reference.clone().or_else(|| {
        args.data
            .data_root
            .as_ref()
            .map(|r| r.join("tag_mappings.csv"))
            .filter(|p| p.is_file())
    });
    if let Some(reference) = reference {
        let text = compare_with_reference(&reference, &result)?;
        emit(&text)?;
    }
    Ok(())
}

fn clusters_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mapping".to_owned());
    out.with_file_name(format!("{stem}.clusters.csv"))
}

type Consolidation = BTreeMap<String, Vec<(String, usize, String, f32, usize, usize)>>;

fn write_consolidation(out: &Path, result: &Consolidation) -> anyhow::Result<()> {
    let mut mapping =
        csv::Writer::from_path(out).with_context(|| format!("cannot write {}", out.display()))?;
    mapping.write_record(["good_type", "old_tags", "new_tag"])?;
    let review_path = clusters_path(out);
    let mut review = csv::Writer::from_path(&review_path)
        .with_context(|| format!("cannot write {}", review_path.display()))?;
    review.write_record([
        "good_type",
        "cluster",
        "raw_tag",
        "merged_tag",
        "similarity",
        "frequency",
        "cluster_size",
    ])?;
    let mut written = 0;
    for (good_type, rows) in result {
        let mut by_cluster: BTreeMap<usize, (String, Vec<&str>)> = BTreeMap::new();
        for (tag, c, merged, sim, freq, size) in rows {
            by_cluster
                .entry(*c)
                .or_insert_with(|| (merged.clone(), Vec::new()))
                .1
                .push(tag);
            review.write_record([
                good_type.clone(),
                c.to_string(),
                tag.clone(),
                merged.clone(),
                format!("{sim:.4}"),
                freq.to_string(),
                size.to_string(),
            ])?;
        }
        for (merged, members) in by_cluster.values() {
            mapping.write_record([good_type.as_str(), &members.join("; "), merged.as_str()])?;
            written += 1;
        }
    }
    mapping.flush()?;
    review.flush()?;
    eprintln!(
        "wrote {written} clusters into {} and one row per raw tag into {}",
        out.display(),
        review_path.display()
    );
    Ok(())
}

fn compare_with_reference(reference: &Path, result: &Consolidation) -> anyhow::Result<String> {
    let maps = lamoda_data::load_tag_mappings(reference)?;
    let mut reference_of: HashMap<(String, String), String> = HashMap::new();
    for m in &maps {
        let target = m
            .new_tag
            .as_deref()
            .map(normalize_tag)
            .unwrap_or_else(|| normalize_tag(&m.old_tags[0]));
        for old in &m.old_tags {
            reference_of.insert((m.good_type.clone(), normalize_tag(old)), target.clone());
        }
    }
    let mut out = format!(
        "agreement with {} over the raw tags in both (pairs of tags put together)\n\n\
         | good type | tags in both | adjusted Rand | pair precision | pair recall |\n|---|---|---|---|---|\n",
        reference.display()
    );
    let (mut all_both, mut all_a, mut all_b) = (0u64, 0u64, 0u64);
    for (good_type, rows) in result {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (tag, c, ..) in rows {
            if let Some(target) = reference_of.get(&(good_type.clone(), tag.clone())) {
                let next = ids.len();
                ours.push(*c);
                theirs.push(*ids.entry(target.clone()).or_insert(next));
            }
        }
        if ours.len() < 2 {
            continue;
        }
        let (both, only_ours, only_theirs) = pair_agreement(&ours, &theirs);
        all_both += both;
        all_a += only_ours;
        all_b += only_theirs;
        let p = both as f64 / (both + only_ours).max(1) as f64;
        let r = both as f64 / (both + only_theirs).max(1) as f64;
        let _ = writeln!(
            out,
            "| {good_type} | {} | {:.3} | {p:.3} | {r:.3} |",
            ours.len(),
            adjusted_rand(&ours, &theirs)
        );
    }
    let _ = writeln!(
        out,
        "| all | | | {:.3} | {:.3} |",
        all_both as f64 / (all_both + all_a).max(1) as f64,
        all_both as f64 / (all_both + all_b).max(1) as f64
    );
    Ok(out)
}
