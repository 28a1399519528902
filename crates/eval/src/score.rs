//! Scoring products with a bundle: the runtime's path ([`score_rows`], as the server
//! scores), the adapter's own decoding ([`tagger_metrics`], the figure training records)
//! and the minimum-evidence rule ([`evidence_metrics`]).

use lamoda_data::{Category, DecodeConfig, EtalonPool, ReviewStack};
use lamoda_inference::{Adapter, DecodeOptions, Progress, Request, Scores, Tagger};
use lamoda_metrics::{Metrics, evaluate, evaluate_probabilities, gold_indices};

use crate::error::{EvalError, Result};

/// Products per [`Tagger::score`] call of [`score_rows`].
const SCORE_CHUNK: usize = 64;

/// Progress whose stages are named after a prefix ("eval bags: caching lower layers").
struct Named<'a> {
    prefix: String,
    inner: &'a dyn Progress,
}

impl Progress for Named<'_> {
    fn start(&self, what: &str, total: u64) {
        self.inner.start(&format!("{}{what}", self.prefix), total);
    }

    fn advance(&self, steps: u64) {
        self.inner.advance(steps);
    }

    fn finish(&self) {
        self.inner.finish();
    }
}

/// Checks that `tagger` has an adapter of `pool.category` whose pool is `pool` (the
/// project's), tag for tag.
pub(crate) fn check_pool(tagger: &Tagger, pool: &EtalonPool) -> Result<()> {
    let category = pool.category;
    match tagger.pool(category) {
        None => Err(EvalError::NoAdapter {
            bundle: tagger.bundle().dir().to_path_buf(),
            category,
        }),
        Some(bundled) if bundled.tags != pool.tags => Err(EvalError::PoolMismatch {
            adapter: tagger.bundle().category_dir(category),
            category,
        }),
        Some(_) => Ok(()),
    }
}

/// The adapter of `category` in `tagger` and its own decoding (before any careful
/// calibration).
pub(crate) fn raw_adapter(tagger: &Tagger, category: Category) -> Result<(&Adapter, DecodeConfig)> {
    match (tagger.adapter(category), tagger.raw_decoding(category)) {
        (Some(adapter), Some(decoding)) => Ok((adapter, decoding)),
        _ => Err(EvalError::NoAdapter {
            bundle: tagger.bundle().dir().to_path_buf(),
            category,
        }),
    }
}

/// A good type that routes to `category` in the tagger's bundle.
pub fn good_type_of(tagger: &Tagger, category: Category) -> Result<String> {
    tagger
        .bundle()
        .routing()
        .good_types
        .iter()
        .find(|(_, c)| **c == category)
        .map(|(g, _)| g.clone())
        .ok_or_else(|| EvalError::NoGoodType {
            bundle: tagger.bundle().dir().to_path_buf(),
            category,
        })
}

/// Scores `rows` of `category` with `tagger` (product and per-review probabilities, the
/// raw ones before any careful calibration), 64 at a time, as the server does. The
/// products are one stage of `progress`, named "`category`: N products `what`" (`what`
/// such as "scored (careful dev)").
pub fn score_rows(
    tagger: &Tagger,
    category: Category,
    rows: &[&ReviewStack],
    what: &str,
    progress: &dyn Progress,
) -> Result<Vec<Scores>> {
    let good_type = good_type_of(tagger, category)?;
    progress.start(
        &format!("{category}: {} products {what}", rows.len()),
        rows.len() as u64,
    );
    let mut scores = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(SCORE_CHUNK) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|r| Request::new(good_type.clone(), r.reviews.clone()))
            .collect();
        let scored = tagger.score(&requests).map_err(|source| {
            progress.finish();
            EvalError::Scoring {
                category,
                source: Box::new(source),
            }
        })?;
        scores.extend(scored);
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(scores)
}

/// Metrics of `tagger`'s adapter of `pool.category` on `rows`, its own probabilities
/// decoded as training chose (saved per-tag thresholds, else 0.5), before any careful
/// calibration: the figure training records and `reproduce` checks. The bundle's pool
/// must be `pool` (the project's), tag for tag. `k`: of precision@k and recall@k.
pub fn tagger_metrics(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    k: usize,
    progress: &dyn Progress,
) -> Result<Metrics> {
    let category = pool.category;
    check_pool(tagger, pool)?;
    let (adapter, decoding) = raw_adapter(tagger, category)?;
    let stacks: Vec<&[String]> = rows.iter().map(|r| r.reviews.as_slice()).collect();
    let named = Named {
        prefix: format!("eval {category}: "),
        inner: progress,
    };
    let probabilities = adapter
        .probabilities_with_progress(&tagger.base().tokenizer, &stacks, &named)
        .map_err(|source| EvalError::Scoring {
            category,
            source: Box::new(source),
        })?;
    Ok(evaluate_probabilities(
        &probabilities,
        pool,
        rows,
        &decoding,
        k,
    ))
}

/// Metrics of `tagger` on `rows` decoded with the minimum-evidence rule at each of
/// `levels` (0: off), from one scoring pass ([`Tagger::score`], the server's path): one
/// [`Metrics`] per level, in the order of `levels`.
pub fn evidence_metrics(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    k: usize,
    levels: &[usize],
    progress: &dyn Progress,
) -> Result<Vec<Metrics>> {
    check_pool(tagger, pool)?;
    let scores = score_rows(
        tagger,
        pool.category,
        rows,
        "scored with evidence",
        progress,
    )?;
    let gold = gold_indices(pool, rows);
    let probabilities: Vec<Vec<f32>> = scores.iter().map(|s| s.product.clone()).collect();
    levels
        .iter()
        .map(|&min_mentions| {
            let options = DecodeOptions {
                min_mentions,
                ..DecodeOptions::default()
            };
            let predicted = decoded(tagger, pool, &scores, &options)?;
            Ok(evaluate(&gold, &predicted, &probabilities, k))
        })
        .collect()
}

/// The tags the runtime shows for each of `scores` with `options` (careful-calibrated
/// where the bundle is), as indices into `pool`.
pub(crate) fn decoded(
    tagger: &Tagger,
    pool: &EtalonPool,
    scores: &[Scores],
    options: &DecodeOptions,
) -> Result<Vec<Vec<usize>>> {
    scores
        .iter()
        .map(|s| {
            Ok(tagger
                .decode(s, options)?
                .tags
                .iter()
                .filter_map(|t| pool.index_of(&t.tag))
                .collect())
        })
        .collect()
}
