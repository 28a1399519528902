//! Careful labels in xtask: the careful products of a category with both their labels and
//! the split, and scoring them with a tagger (`calibrate`, `eval --labels careful`).

use lamoda_inference::Progress as _;
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use lamoda_data::{Category, EtalonPool, ReviewStack, SplitConfig, careful_folds};
use lamoda_data::{DataDir, Project};
use lamoda_inference::{DecodeOptions, Request, Scores, Tagger};
use lamoda_metrics::{FrequencyPrior, gold_indices};
use serde::{Deserialize, Serialize};

/// A category's carefully labelled products, each with its noisy label, dealt into the
/// careful split.
pub struct CarefulRows {
    /// The category.
    pub category: Category,
    /// Careful training products (fit the calibration): reviews with their careful tags.
    pub train: Vec<ReviewStack>,
    /// Careful dev products (never fitted on).
    pub dev: Vec<ReviewStack>,
    /// The same dev products with the data set's own (noisy) tags.
    pub dev_noisy: Vec<ReviewStack>,
    /// The same training products with their noisy tags.
    pub train_noisy: Vec<ReviewStack>,
    /// The careful fold of each training product (never the dev fold): cross-fitted
    /// adapters leave one fold out each.
    pub train_folds: Vec<usize>,
}

impl CarefulRows {
    /// The careful training products outside careful fold `left_out` (all of them for a
    /// fold no product is in): the extra training rows of an adapter, with careful tags.
    pub fn train_without_fold(&self, left_out: usize) -> Vec<ReviewStack> {
        self.train
            .iter()
            .zip(&self.train_folds)
            .filter(|(_, f)| **f != left_out)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Loads `category`'s careful labels from `data` (an error when it has none) and deals
    /// them into the careful split.
    pub fn load(
        data: &DataDir,
        category: Category,
        pool: &EtalonPool,
        split: &SplitConfig,
    ) -> anyhow::Result<Self> {
        let Some(careful) = data.careful(category, pool)? else {
            bail!(
                "no careful labels for `{category}`: {} does not exist",
                data.careful_path(category).display()
            );
        };
        let labeled = data.labeled(category, pool, lamoda_data::UnknownTagPolicy::Error)?;
        let by_row: BTreeMap<usize, &ReviewStack> =
            labeled.rows.iter().map(|r| (r.row, r)).collect();
        let folds = careful_folds(&careful.labels, split);
        let mut rows = Self {
            category,
            train: Vec::new(),
            dev: Vec::new(),
            dev_noisy: Vec::new(),
            train_noisy: Vec::new(),
            train_folds: Vec::new(),
        };
        for (label, fold) in careful.labels.iter().zip(folds) {
            let noisy = *by_row.get(&label.row).with_context(|| {
                format!(
                    "{}: row {} is not in {}",
                    careful.path.display(),
                    label.row,
                    labeled.path.display()
                )
            })?;
            let stack = ReviewStack {
                row: label.row,
                reviews: noisy.reviews.clone(),
                tags: label.tags.clone(),
            };
            if fold == split.dev_fold {
                rows.dev.push(stack);
                rows.dev_noisy.push(noisy.clone());
            } else {
                rows.train.push(stack);
                rows.train_noisy.push(noisy.clone());
                rows.train_folds.push(fold);
            }
        }
        Ok(rows)
    }
}

/// A good type that routes to `category` in the tagger's bundle.
pub fn good_type_of(tagger: &Tagger, category: Category) -> anyhow::Result<String> {
    tagger
        .bundle()
        .routing()
        .good_types
        .iter()
        .find(|(_, c)| **c == category)
        .map(|(g, _)| g.clone())
        .with_context(|| format!("no good type routes to `{category}`"))
}

/// Scores `rows` of `category` with `tagger` (product and per-review probabilities, the
/// raw ones before any careful calibration), 64 at a time, with a progress bar on a
/// terminal and the time on stderr.
pub fn score_rows(
    tagger: &Tagger,
    category: Category,
    rows: &[&ReviewStack],
    what: &'static str,
) -> anyhow::Result<Vec<Scores>> {
    let good_type = good_type_of(tagger, category)?;
    let started = Instant::now();
    let display = lamoda_predict::progress::Display::new();
    display.start(what, rows.len() as u64);
    let mut scores = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(64) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|r| Request::new(good_type.clone(), r.reviews.clone()))
            .collect();
        scores.extend(
            tagger
                .score(&requests)
                .with_context(|| format!("scoring `{category}`"))?,
        );
        display.advance(chunk.len() as u64);
    }
    display.finish();
    eprintln!(
        "{category}: {} products {what} in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(scores)
}

/// One label set (pool indices) per product.
type LabelSets = Vec<Vec<usize>>;

/// Gold label sets beside predicted ones.
type GoldAndPredicted = (LabelSets, LabelSets);

/// Micro figures of one tag source on a set of products.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Micro precision.
    pub precision: f64,
    /// Micro recall.
    pub recall: f64,
    /// Micro-F1.
    pub micro_f1: f64,
    /// Products.
    pub n: usize,
    /// Tags shown.
    pub shown: usize,
    /// Products shown no tag.
    pub empty: usize,
}

impl Figures {
    /// The figures of `predicted` tag sets against `gold`.
    pub fn of(gold: &[Vec<usize>], predicted: &[Vec<usize>]) -> Self {
        let scores = vec![Vec::new(); gold.len()];
        let m = lamoda_metrics::evaluate(gold, predicted, &scores, 1);
        Self {
            precision: m.micro_precision,
            recall: m.micro_recall,
            micro_f1: m.micro_f1,
            n: gold.len(),
            shown: predicted.iter().map(Vec::len).sum(),
            empty: predicted.iter().filter(|p| p.is_empty()).count(),
        }
    }

    /// Pools several sets' figures (micro over all their products).
    pub fn pooled(parts: &[GoldAndPredicted]) -> Self {
        // Label indices differ per category: offset each category's labels apart.
        let mut gold = Vec::new();
        let mut predicted = Vec::new();
        for (k, (g, p)) in parts.iter().enumerate() {
            let offset = k * 1_000;
            gold.extend(
                g.iter()
                    .map(|r| r.iter().map(|l| l + offset).collect::<Vec<_>>()),
            );
            predicted.extend(
                p.iter()
                    .map(|r| r.iter().map(|l| l + offset).collect::<Vec<_>>()),
            );
        }
        Self::of(&gold, &predicted)
    }
}

/// A category's careful-dev figures: each tag source against the careful labels, and the
/// shipped answer against the data set's own labels on the same products.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarefulFigures {
    /// The shipped answer (careful calibration when the bundle has one).
    pub model: Figures,
    /// The adapter's own decoding, before calibration (saved thresholds, at least 1 tag).
    pub uncalibrated: Figures,
    /// The data set's own labels of the same products.
    pub noisy_labels: Figures,
    /// The frequency prior (the k most frequent careful tags of the careful training
    /// products, k their rounded mean).
    pub prior: Figures,
    /// The shipped answer against the data set's labels of the same products.
    pub model_vs_noisy: Figures,
    /// Reliability of the shipped probabilities: per bin of 0.1, (mean probability, share
    /// a careful reader agrees with, pairs), over every (product, pool tag).
    pub reliability: Vec<(f64, f64, usize)>,
}

/// The label sets of one category's careful dev products, for pooling.
pub struct CarefulParts {
    /// Careful gold.
    pub gold: Vec<Vec<usize>>,
    /// Noisy gold.
    pub noisy: Vec<Vec<usize>>,
    /// The shipped answer.
    pub model: Vec<Vec<usize>>,
    /// Uncalibrated.
    pub uncalibrated: Vec<Vec<usize>>,
    /// The prior.
    pub prior: Vec<Vec<usize>>,
    /// (probability, agreed) of every (product, pool tag).
    pub pairs: Vec<(f32, bool)>,
}

/// Scores `rows`' careful dev products with `tagger` and measures every tag source.
pub fn careful_dev(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &CarefulRows,
) -> anyhow::Result<(CarefulFigures, CarefulParts)> {
    let category = rows.category;
    let (Some(raw_decoding), Some(bundled)) =
        (tagger.raw_decoding(category), tagger.pool(category))
    else {
        bail!(
            "{}: no `{category}` adapter in the bundle",
            tagger.bundle().dir().display()
        );
    };
    if bundled.tags != pool.tags {
        bail!(
            "{}: the bundle's `{category}` pool differs from etalon_tags/{category}.toml",
            tagger.bundle().dir().display()
        );
    }
    let dev: Vec<&ReviewStack> = rows.dev.iter().collect();
    let noisy_rows: Vec<&ReviewStack> = rows.dev_noisy.iter().collect();
    let scores = score_rows(tagger, category, &dev, "scored (careful dev)")?;
    let gold = gold_indices(pool, &dev);
    let noisy = gold_indices(pool, &noisy_rows);
    let mut model = Vec::with_capacity(dev.len());
    let mut uncalibrated = Vec::with_capacity(dev.len());
    let mut pairs = Vec::new();
    for (s, g) in scores.iter().zip(&gold) {
        let prediction = tagger.decode(s, &DecodeOptions::default())?;
        model.push(
            prediction
                .tags
                .iter()
                .filter_map(|t| pool.index_of(&t.tag))
                .collect::<Vec<_>>(),
        );
        for (i, p) in prediction.probabilities.iter().enumerate() {
            pairs.push((p.probability, g.contains(&i)));
        }
        uncalibrated.push(
            lamoda_data::decode(&s.product, pool, &raw_decoding)
                .tags
                .into_iter()
                .map(|(i, _)| i)
                .collect(),
        );
    }
    let prior_fit = FrequencyPrior::fit(pool, rows.train.iter());
    let prior = vec![prior_fit.predict(); dev.len()];
    let figures = CarefulFigures {
        model: Figures::of(&gold, &model),
        uncalibrated: Figures::of(&gold, &uncalibrated),
        noisy_labels: Figures::of(&gold, &noisy),
        prior: Figures::of(&gold, &prior),
        model_vs_noisy: Figures::of(&noisy, &model),
        reliability: reliability(&pairs),
    };
    Ok((
        figures,
        CarefulParts {
            gold,
            noisy,
            model,
            uncalibrated,
            prior,
            pairs,
        },
    ))
}

/// Per bin of 0.1 of the probability: (mean probability, share agreed, pairs); empty bins
/// are left out.
pub fn reliability(pairs: &[(f32, bool)]) -> Vec<(f64, f64, usize)> {
    let mut bins = [(0.0f64, 0usize, 0usize); 10];
    for &(p, agreed) in pairs {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += f64::from(p);
        bins[b].1 += usize::from(agreed);
        bins[b].2 += 1;
    }
    bins.iter()
        .filter(|b| b.2 > 0)
        .map(|&(sum, agreed, n)| (sum / n as f64, agreed as f64 / n as f64, n))
        .collect()
}

/// The pooled (micro over every category's careful dev products) figures of each source.
pub fn pooled(parts: &[CarefulParts]) -> [(&'static str, Figures); 5] {
    let of = |pick: &dyn Fn(&CarefulParts) -> GoldAndPredicted| {
        Figures::pooled(&parts.iter().map(pick).collect::<Vec<_>>())
    };
    [
        ("model", of(&|p| (p.gold.clone(), p.model.clone()))),
        (
            "uncalibrated",
            of(&|p| (p.gold.clone(), p.uncalibrated.clone())),
        ),
        ("noisy_labels", of(&|p| (p.gold.clone(), p.noisy.clone()))),
        ("prior", of(&|p| (p.gold.clone(), p.prior.clone()))),
        (
            "model_vs_noisy",
            of(&|p| (p.noisy.clone(), p.model.clone())),
        ),
    ]
}

/// Prints the careful-dev table: precision, recall and F1 of each source per category and
/// pooled, then the reliability of the shipped probabilities.
pub fn print_careful_table(
    model: &str,
    table: &BTreeMap<Category, CarefulFigures>,
    parts: &[CarefulParts],
) {
    println!(
        "model: {model}   rows: careful dev split (configs/careful.toml), scored against the careful labels"
    );
    println!(
        "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10}",
        "category",
        "n",
        "model P / R / F1",
        "uncalibrated",
        "data set's labels",
        "prior",
        "F1 vs noisy"
    );
    let cell = |f: &Figures| format!("{:.3} {:.3} {:.3}", f.precision, f.recall, f.micro_f1);
    for (category, f) in table {
        println!(
            "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10.3}",
            category.name(),
            f.model.n,
            cell(&f.model),
            cell(&f.uncalibrated),
            cell(&f.noisy_labels),
            cell(&f.prior),
            f.model_vs_noisy.micro_f1
        );
    }
    if parts.len() > 1 {
        let [m, u, n, p, v] = pooled(parts).map(|(_, f)| f);
        println!(
            "{:<8} {:>4}  {:<19} {:<19} {:<19} {:<19} {:>10.3}",
            "all",
            m.n,
            cell(&m),
            cell(&u),
            cell(&n),
            cell(&p),
            v.micro_f1
        );
    }
    let pairs: Vec<(f32, bool)> = parts.iter().flat_map(|p| p.pairs.iter().copied()).collect();
    let line: Vec<String> = reliability(&pairs)
        .iter()
        .map(|(p, a, n)| format!("{p:.2}→{a:.2} ({n})"))
        .collect();
    println!(
        "reliability (mean probability → share a careful reader agrees with): {}",
        line.join(", ")
    );
}

/// Team-reviewed labels (`lamoda-tags review export` files) per category, as rows with
/// their reviewed tags, each line checked against the project's pool of its category.
pub fn reviewed_rows(
    project: &Project,
    files: &[std::path::PathBuf],
) -> anyhow::Result<BTreeMap<Category, Vec<ReviewStack>>> {
    let mut rows: BTreeMap<Category, Vec<ReviewStack>> = BTreeMap::new();
    if files.is_empty() {
        return Ok(rows);
    }
    let pools = Category::ALL
        .iter()
        .map(|&c| project.pool(c))
        .collect::<Result<Vec<_>, _>>()?;
    for path in files {
        let labels = lamoda_data::load_reviewed(path, |c| pools.iter().find(|p| p.category == c))?;
        for l in &labels {
            rows.entry(l.category).or_default().push(l.stack());
        }
    }
    Ok(rows)
}

/// The shipped answer of `tagger` and the prior on team-reviewed `rows` of `pool`'s
/// category, against their reviewed tags.
pub fn reviewed_figures(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    prior: &FrequencyPrior,
) -> anyhow::Result<(Figures, Figures)> {
    let refs: Vec<&ReviewStack> = rows.iter().collect();
    let scores = score_rows(tagger, pool.category, &refs, "scored (team reviews)")?;
    let gold = gold_indices(pool, &refs);
    let mut model = Vec::with_capacity(rows.len());
    for s in &scores {
        let prediction = tagger.decode(s, &DecodeOptions::default())?;
        model.push(
            prediction
                .tags
                .iter()
                .filter_map(|t| pool.index_of(&t.tag))
                .collect::<Vec<_>>(),
        );
    }
    let prior = vec![prior.predict(); rows.len()];
    Ok((Figures::of(&gold, &model), Figures::of(&gold, &prior)))
}
