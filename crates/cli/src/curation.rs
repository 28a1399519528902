//! `lamoda-tags consolidate`, `lamoda-tags map` and `lamoda-tags audit`: the embedding steps
//! of the label-curation pipeline (`lamoda-curation`), on the project's base, pools and
//! routing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use lamoda_curation::agreement::{
    AgreementInputs, agreement_json, agreement_table, format_agreement,
};
use lamoda_curation::audit::{
    AuditConfig, AuditInput, AuditProgress, AuditVectors, pool_tag_texts, review_texts, run_audit,
};
use lamoda_curation::consolidate::{
    ClusterNaming, ConsolidateConfig, ConsolidateEvent, ReferenceMapping, consolidate_pool,
    load_pool, pool_texts,
};
use lamoda_curation::embed::{BaseEmbedder, Embedder, EmbeddingCache};
use lamoda_curation::map::{
    MapOptions, candidates, labeled_from_map, map_rows, map_summary, pool_spaces, read_map_csv,
    tag_texts, write_labeled, write_map_csv,
};
use lamoda_curation::read_raw_tags;
use lamoda_data::{Category, EtalonPool, Routing, UnknownTagPolicy};
use lamoda_inference::Progress as _;
use lamoda_model::LoadedBase;
use lamoda_predict::progress::Display;

use crate::common::{DataRootArgs, emit};
use lamoda_data::Project;

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
    let progress = Display::new();
    progress.start(what, 0);
    let (vectors, stats) = cache.embed_all(embedder, texts, 64, |done, total| {
        progress.set(done as u64, total as u64, "");
        if total > 0 {
            progress.log_line(done == total, || format!("{what}: {done}/{total} embedded"));
        }
    })?;
    progress.finish();
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
    let options = MapOptions {
        threshold: args.threshold,
        top_k: args.top_k,
    };
    options.check()?;
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
    let spaces = pool_spaces(&pools, &vectors)?;
    let cands = candidates(
        &raw.products,
        &routing,
        &spaces,
        |t| vectors.get(t).cloned(),
        args.top_k,
    )?;
    let rows = map_rows(&cands, &spaces, options);
    write_map_csv(out, &rows)?;
    let summary = map_summary(&cands, &spaces, &rows, options);
    eprintln!(
        "mapped {} products ({} by the fallback route), {} raw tags: {} rows, {} accepted \
         at cosine ≥ {} (top-{}); {} products get a tag; into {}",
        summary.products,
        summary.fallback,
        summary.raw_tags,
        summary.rows,
        summary.accepted,
        args.threshold,
        args.top_k,
        summary.products_with_tags,
        out.display()
    );
    Ok(())
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

/// `lamoda-tags map --agreement`: the agreement table on the reference data.
fn map_agreement(args: &MapArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.data.resolve()?;
    let root = data.root();
    let raw = lamoda_data::load_products(&root.join("reviews_sampled_with_tags.csv"))?;
    let pulled = lamoda_data::load_products(&root.join("reviews_sampled_with_pull_tags.csv"))?;
    let (routing, pools) = project_pools(project)?;
    let mut labeled = Vec::new();
    for category in data.categories()? {
        let Some(pool) = pools.get(&category) else {
            continue;
        };
        labeled.push(data.labeled(category, pool, UnknownTagPolicy::Report)?);
    }
    let inputs = AgreementInputs::new(&raw, &pulled, &labeled, &routing, &pools);
    let (base, cache_dir) = args.embed.load(project)?;
    let embedder = tag_embedder(&base);
    let texts = inputs.texts(&pools);
    let vectors = embed_cached(&embedder, &cache_dir, "tags", &texts, "tags")?;
    let table = agreement_table(&inputs, &routing, &pools, &vectors)?;
    if args.json {
        return emit(&serde_json::to_string_pretty(&agreement_json(&table))?);
    }
    emit(&format_agreement(&table))
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

/// `lamoda-tags audit`: the report, the summary and a sample to check by hand.
pub fn audit(args: AuditArgs, project: &Project) -> anyhow::Result<()> {
    let config = AuditConfig {
        folds: args.folds,
        seed: args.seed,
        min_products: args.min_products,
        min_cosine: args.min_cosine,
        min_jaccard: args.min_jaccard,
        sample: args.sample,
        max_reviews: args.max_reviews,
        l2: args.l2,
        strong: args.strong,
        max_tokens: args.max_tokens,
    };
    config.check()?;
    let data = args.data.resolve()?;
    let categories = match args.category {
        Some(c) => vec![c],
        None => data.categories()?,
    };
    let mut inputs = Vec::new();
    for category in &categories {
        let pool = project.pool(*category)?;
        let set = data.labeled(*category, &pool, UnknownTagPolicy::Error)?;
        inputs.push(AuditInput { pool, set });
    }
    let (base, cache_dir) = args.embed.load(project)?;
    let review_embedder = BaseEmbedder::reviews(&base, config.max_tokens);
    let reviews = review_texts(&inputs, config.max_reviews);
    let review_vectors =
        embed_cached(&review_embedder, &cache_dir, "reviews", &reviews, "reviews")?;
    let tag_emb = tag_embedder(&base);
    let tag_vectors = embed_cached(
        &tag_emb,
        &cache_dir,
        "tags",
        &pool_tag_texts(&inputs),
        "pool tags",
    )?;
    let vectors = AuditVectors {
        reviews: &review_vectors,
        tags: &tag_vectors,
        dim: base.packed.hidden(),
    };
    let progress = Display::new();
    let mut started = false;
    let report = run_audit(&config, inputs, &vectors, |event| match event {
        AuditProgress::Folds {
            category,
            done,
            total,
        } => {
            if !started {
                progress.start(&format!("{category} folds"), total as u64);
                started = true;
            }
            progress.set(done as u64, total as u64, "");
            if done == total {
                progress.finish();
                started = false;
            }
        }
        AuditProgress::Fitted {
            category,
            products,
            seconds,
            disputed,
        } => eprintln!(
            "{category}: {products} products, out-of-fold model fitted in {seconds:.1} s: {disputed} disputed labels"
        ),
    });
    progress.finish();
    let report = report?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let csv_path = args.out_dir.join("audit.csv");
    report.write_csv(&csv_path)?;
    let summary = report.summary_markdown();
    let summary_path = args.out_dir.join("summary.md");
    std::fs::write(&summary_path, &summary)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let sample_path = args.out_dir.join("sample.md");
    std::fs::write(&sample_path, report.sample_markdown())
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

/// `lamoda-tags consolidate`: clusters, the mapping, and the comparison with the reference.
pub fn consolidate(args: ConsolidateArgs, project: &Project) -> anyhow::Result<()> {
    let naming = if args.name_with_llm {
        let (Some(base_url), Some(model)) = (&args.base_url, &args.model) else {
            bail!("--name-with-llm needs --base-url URL and --model NAME");
        };
        Some(ClusterNaming {
            chat: lamoda_curation::ChatConfig {
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
            concurrency: args.concurrency,
        })
    } else {
        None
    };
    let config = ConsolidateConfig {
        threshold: args.threshold,
        out: args.out.clone(),
        reference: match (&args.reference, &args.data.data_root) {
            (Some(file), _) => ReferenceMapping::File(file.clone()),
            (None, Some(root)) => ReferenceMapping::DataDir(root.clone()),
            (None, None) => ReferenceMapping::None,
        },
        naming,
    };
    config.check()?;
    let pool = load_pool(&args.pool)?;
    let (base, cache_dir) = args.embed.load(project)?;
    let embedder = tag_embedder(&base);
    let texts = pool_texts(&pool);
    let vectors = embed_cached(&embedder, &cache_dir, "tags", &texts, "pool tags")?;
    let naming = Display::new();
    let mut naming_started = false;
    let report = consolidate_pool(&config, &pool, &vectors, |event| match event {
        ConsolidateEvent::Clustered {
            good_type,
            tags,
            clusters,
            multi_tag,
            seconds,
        } => eprintln!(
            "{good_type}: {tags} tags into {clusters} clusters ({multi_tag} of more than one tag) in {seconds:.1} s"
        ),
        ConsolidateEvent::Naming { done, total } => {
            if !naming_started {
                naming.start("naming", total as u64);
                naming_started = true;
            }
            naming.set(done as u64, total as u64, "");
        }
        ConsolidateEvent::Named { named, failed } => {
            naming.finish();
            eprintln!(
                "the LLM named {named} clusters{}",
                if failed > 0 {
                    format!("; {failed} gave no usable name and keep their most frequent tag")
                } else {
                    String::new()
                }
            );
        }
        ConsolidateEvent::Written {
            clusters,
            mapping,
            review,
        } => eprintln!(
            "wrote {clusters} clusters into {} and one row per raw tag into {}",
            mapping.display(),
            review.display()
        ),
    });
    naming.finish();
    if let Some(comparison) = report?.comparison {
        emit(&comparison)?;
    }
    Ok(())
}
