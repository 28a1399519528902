//! The careful labels: a category's carefully labelled products dealt into the careful
//! split ([`CarefulRows`]), every tag source's figures on the careful dev products
//! ([`careful_dev`]), team-reviewed labels ([`reviewed_rows`], [`reviewed_figures`]) and
//! the whole `eval --labels careful` workflow ([`evaluate_careful`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use lamoda_data::{
    Category, DataDir, EtalonPool, Project, ReviewStack, SplitConfig, UnknownTagPolicy,
    careful_folds,
};
use lamoda_inference::{DecodeOptions, Progress, Tagger};
use lamoda_metrics::{FrequencyPrior, gold_indices};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::score::{check_pool, decoded, raw_adapter, score_rows};

/// A category's carefully labelled products, each with its noisy label, dealt into the
/// careful split.
#[derive(Debug, Clone)]
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
    ) -> Result<Self> {
        let Some(careful) = data.careful(category, pool)? else {
            return Err(EvalError::NoCarefulLabels {
                category,
                path: data.careful_path(category),
            });
        };
        let labeled = data.labeled(category, pool, UnknownTagPolicy::Error)?;
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
            let noisy = *by_row
                .get(&label.row)
                .ok_or_else(|| EvalError::CarefulRow {
                    careful: careful.path.clone(),
                    row: label.row,
                    labeled: labeled.path.clone(),
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

/// One label set (pool indices) per product.
type LabelSets = Vec<Vec<usize>>;

/// One category's gold label sets beside its predicted ones, product for product.
pub type GoldAndPredicted<'a> = (&'a [Vec<usize>], &'a [Vec<usize>]);

/// Micro figures of one tag source on a set of products: the record `metrics.json` keeps
/// (`careful.dev.<source>`), so what is scored is what is recorded.
pub use lamoda_inference::format::SourceMetrics as Figures;

/// A category's careful-dev figures: each tag source against the careful labels, and the
/// shipped answer against the data set's own labels on the same products (the record
/// `metrics.json` keeps as `careful.dev`).
pub use lamoda_inference::format::CarefulDevMetrics as CarefulFigures;

/// The figures of `predicted` tag sets against `gold` (micro, from
/// [`lamoda_metrics::evaluate()`]).
pub fn figures_of(gold: &[Vec<usize>], predicted: &[Vec<usize>]) -> Figures {
    let scores = vec![Vec::new(); gold.len()];
    let m = lamoda_metrics::evaluate(gold, predicted, &scores, 1);
    Figures {
        precision: m.micro_precision,
        recall: m.micro_recall,
        micro_f1: m.micro_f1,
        n: gold.len(),
        shown: predicted.iter().map(Vec::len).sum(),
        empty: predicted.iter().filter(|p| p.is_empty()).count(),
    }
}

/// Pools several sets' figures (micro over all their products): each part is (gold,
/// predicted) of one category, whose label indices are kept apart from the others'.
pub fn figures_pooled(parts: &[GoldAndPredicted<'_>]) -> Figures {
    // Label indices differ per category: offset each category's labels apart.
    let offset = parts
        .iter()
        .flat_map(|(g, p)| g.iter().chain(p.iter()).flatten())
        .max()
        .map_or(0, |&l| l + 1);
    let mut gold = Vec::new();
    let mut predicted = Vec::new();
    for (k, (g, p)) in parts.iter().enumerate() {
        let shift = |rows: &[Vec<usize>]| -> LabelSets {
            rows.iter()
                .map(|r| r.iter().map(|l| l + k * offset).collect())
                .collect()
        };
        gold.extend(shift(g));
        predicted.extend(shift(p));
    }
    figures_of(&gold, &predicted)
}

/// The label sets of one category's careful dev products, for pooling.
#[derive(Debug, Clone, Default)]
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
    progress: &dyn Progress,
) -> Result<(CarefulFigures, CarefulParts)> {
    let category = rows.category;
    check_pool(tagger, pool)?;
    let (_, raw_decoding) = raw_adapter(tagger, category)?;
    let dev: Vec<&ReviewStack> = rows.dev.iter().collect();
    let noisy_rows: Vec<&ReviewStack> = rows.dev_noisy.iter().collect();
    let scores = score_rows(tagger, category, &dev, "scored (careful dev)", progress)?;
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
        model: figures_of(&gold, &model),
        uncalibrated: figures_of(&gold, &uncalibrated),
        noisy_labels: figures_of(&gold, &noisy),
        prior: figures_of(&gold, &prior),
        model_vs_noisy: figures_of(&noisy, &model),
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

/// Every tag source's figures pooled over several categories' careful dev products.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PooledFigures {
    /// The shipped answer.
    pub model: Figures,
    /// The adapter's own decoding, before calibration.
    pub uncalibrated: Figures,
    /// The data set's own labels.
    pub noisy_labels: Figures,
    /// The frequency prior.
    pub prior: Figures,
    /// The shipped answer against the data set's labels.
    pub model_vs_noisy: Figures,
}

/// The pooled (micro over every category's careful dev products) figures of each source.
pub fn pooled(parts: &[CarefulParts]) -> PooledFigures {
    let of = |pick: &dyn Fn(&CarefulParts) -> GoldAndPredicted<'_>| {
        figures_pooled(&parts.iter().map(pick).collect::<Vec<_>>())
    };
    PooledFigures {
        model: of(&|p| (&p.gold, &p.model)),
        uncalibrated: of(&|p| (&p.gold, &p.uncalibrated)),
        noisy_labels: of(&|p| (&p.gold, &p.noisy)),
        prior: of(&|p| (&p.gold, &p.prior)),
        model_vs_noisy: of(&|p| (&p.noisy, &p.model)),
    }
}

/// Team-reviewed labels (`lamoda-tags review export` files) per category, as rows with
/// their reviewed tags, each line checked against the project's pool of its category.
pub fn reviewed_rows(
    project: &Project,
    files: &[PathBuf],
) -> Result<BTreeMap<Category, Vec<ReviewStack>>> {
    let mut rows: BTreeMap<Category, Vec<ReviewStack>> = BTreeMap::new();
    if files.is_empty() {
        return Ok(rows);
    }
    let pools = Category::ALL
        .iter()
        .map(|&c| project.pool(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for path in files {
        let labels = lamoda_data::load_reviewed(path, |c| pools.iter().find(|p| p.category == c))?;
        for l in &labels {
            rows.entry(l.category).or_default().push(l.stack());
        }
    }
    Ok(rows)
}

/// The shipped answer and the prior on team-reviewed products, against their reviewed
/// tags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReviewedFigures {
    /// The shipped answer.
    pub model: Figures,
    /// The frequency prior.
    pub prior: Figures,
}

/// The shipped answer of `tagger` and `prior` on team-reviewed `rows` of `pool`'s
/// category, against their reviewed tags.
pub fn reviewed_figures(
    tagger: &Tagger,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    prior: &FrequencyPrior,
    progress: &dyn Progress,
) -> Result<ReviewedFigures> {
    let refs: Vec<&ReviewStack> = rows.iter().collect();
    let scores = score_rows(
        tagger,
        pool.category,
        &refs,
        "scored (team reviews)",
        progress,
    )?;
    let gold = gold_indices(pool, &refs);
    let model = decoded(tagger, pool, &scores, &DecodeOptions::default())?;
    let prior = vec![prior.predict(); rows.len()];
    Ok(ReviewedFigures {
        model: figures_of(&gold, &model),
        prior: figures_of(&gold, &prior),
    })
}

/// What [`evaluate_careful`] scores.
#[derive(Debug, Clone, Copy)]
pub struct CarefulConfig<'a> {
    /// The project (pools, the careful split).
    pub project: &'a Project,
    /// The data directory with `careful/` and `labeled/`.
    pub data: &'a DataDir,
    /// The bundle.
    pub tagger: &'a Tagger,
    /// How the report names the model (`adapters`, a directory).
    pub model_name: &'a str,
    /// The categories to score (`None`: every category of the bundle).
    pub categories: Option<&'a [Category]>,
    /// Team-reviewed label files (`lamoda-tags review export`) to score the bundle on too.
    pub reviewed: &'a [PathBuf],
}

/// `eval --labels careful`: every source's figures on the careful dev split, per category
/// and pooled, and the bundle's on team-reviewed labels. Serialises (through
/// [`CarefulReport::to_json`]) as `lamoda-tags eval --labels careful --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CarefulReport {
    /// The model's name.
    pub model: String,
    /// Which rows were scored.
    pub rows: &'static str,
    /// Per category, its careful-dev figures.
    pub categories: BTreeMap<Category, CarefulFigures>,
    /// Every source pooled over the categories.
    pub all: PooledFigures,
    /// Per category with team-reviewed products, the bundle's and the prior's figures.
    pub reviewed: BTreeMap<Category, ReviewedFigures>,
    /// The reliability of the shipped probabilities pooled over every category (the
    /// text table's last line; not in the JSON).
    #[serde(skip)]
    pub reliability: Vec<(f64, f64, usize)>,
}

impl CarefulReport {
    /// What the `rows` field says of a careful report.
    pub const ROWS: &'static str =
        "careful dev split; prior fitted on the careful training products";

    /// The report of `model` from its categories' careful-dev figures and label sets
    /// (pooled here) and its team-reviewed figures.
    pub fn new(
        model: impl Into<String>,
        dev: Vec<(Category, CarefulFigures, CarefulParts)>,
        reviewed: BTreeMap<Category, ReviewedFigures>,
    ) -> Self {
        let mut categories = BTreeMap::new();
        let mut parts = Vec::with_capacity(dev.len());
        for (category, figures, part) in dev {
            categories.insert(category, figures);
            parts.push(part);
        }
        let pairs: Vec<(f32, bool)> = parts.iter().flat_map(|p| p.pairs.iter().copied()).collect();
        Self {
            model: model.into(),
            rows: Self::ROWS,
            categories,
            all: pooled(&parts),
            reviewed,
            reliability: reliability(&pairs),
        }
    }

    /// The report as pretty JSON with every object's keys sorted (as `eval --labels
    /// careful --json` has always printed it).
    pub fn to_json(&self) -> serde_json::Result<String> {
        let value = crate::json::sorted(serde_json::to_value(self)?);
        serde_json::to_string_pretty(&value)
    }
}

/// Scores `config.tagger` on the careful dev split of each category (and on the
/// team-reviewed labels of `config.reviewed`), beside the data set's labels and the
/// frequency prior fitted on the careful training products.
pub fn evaluate_careful(
    config: &CarefulConfig<'_>,
    progress: &dyn Progress,
) -> Result<CarefulReport> {
    let tagger = config.tagger;
    let split = config.project.careful_split()?;
    let categories = config
        .categories
        .map_or_else(|| tagger.categories(), <[Category]>::to_vec);
    let mut reviewed = reviewed_rows(config.project, config.reviewed)?;
    let mut dev = Vec::with_capacity(categories.len());
    let mut team = BTreeMap::new();
    for category in categories {
        let pool = config.project.pool(category)?;
        let rows = CarefulRows::load(config.data, category, &pool, &split)?;
        let (figures, parts) = careful_dev(tagger, &pool, &rows, progress)?;
        dev.push((category, figures, parts));
        if let Some(products) = reviewed.remove(&category).filter(|r| !r.is_empty()) {
            let prior = FrequencyPrior::fit(&pool, rows.train.iter());
            let figures = reviewed_figures(tagger, &pool, &products, &prior, progress)?;
            team.insert(category, figures);
        }
    }
    Ok(CarefulReport::new(config.model_name, dev, team))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(micro_f1: f64, n: usize) -> Figures {
        Figures {
            precision: 0.5,
            recall: 0.25,
            micro_f1,
            n,
            shown: 3,
            empty: 1,
        }
    }

    fn careful_figures() -> CarefulFigures {
        CarefulFigures {
            model: figures(0.75, 2),
            uncalibrated: figures(0.5, 2),
            noisy_labels: figures(0.25, 2),
            prior: figures(0.125, 2),
            model_vs_noisy: figures(0.0625, 2),
            reliability: vec![(0.05, 0.0, 3), (0.95, 1.0, 1)],
        }
    }

    #[test]
    fn figures_are_micro_over_products() {
        // Gold {0,1}, {2}; predicted {0}, {2,3}: 2 of 3 shown are right, 2 of 3 gold found.
        let f = figures_of(&[vec![0, 1], vec![2]], &[vec![0], vec![2, 3]]);
        assert_eq!((f.n, f.shown, f.empty), (2, 3, 0));
        assert!((f.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((f.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((f.micro_f1 - 2.0 / 3.0).abs() < 1e-12);
        let none = figures_of(&[vec![0]], &[vec![]]);
        assert_eq!((none.shown, none.empty), (0, 1));
        assert_eq!(none.recall, 0.0);
    }

    #[test]
    fn pooled_figures_are_micro_over_every_categorys_products() {
        let a = CarefulParts {
            gold: vec![vec![0]],
            model: vec![vec![0]],
            noisy: vec![vec![1]],
            uncalibrated: vec![vec![0, 1]],
            prior: vec![vec![1]],
            pairs: vec![(0.9, true), (0.1, false)],
        };
        let b = CarefulParts {
            gold: vec![vec![1], vec![0]],
            model: vec![vec![1], vec![]],
            noisy: vec![vec![1], vec![0]],
            uncalibrated: vec![vec![0], vec![0]],
            prior: vec![vec![0], vec![0]],
            pairs: vec![(0.95, true), (0.15, true)],
        };
        let all = pooled(&[a.clone(), b.clone()]);
        // The model: 2 right of 2 shown, 2 of 3 gold.
        assert_eq!(all.model.n, 3);
        assert_eq!((all.model.shown, all.model.empty), (2, 1));
        assert!((all.model.precision - 1.0).abs() < 1e-12);
        assert!((all.model.recall - 2.0 / 3.0).abs() < 1e-12);
        // Pooling is micro over the products, as one category of them would be.
        let one = figures_of(
            &[vec![0], vec![1], vec![0]],
            &[vec![0, 1], vec![0], vec![0]],
        );
        assert_eq!(all.uncalibrated.shown, one.shown);
        assert!((all.uncalibrated.micro_f1 - one.micro_f1).abs() < 1e-12);
        // The noisy labels score against the careful ones, the model against the noisy.
        assert!((all.noisy_labels.micro_f1 - 2.0 / 3.0).abs() < 1e-12);
        // (1 hit of 2 shown, of 3 noisy tags.)
        assert!((all.model_vs_noisy.precision - 0.5).abs() < 1e-12);
        assert!((all.model_vs_noisy.recall - 1.0 / 3.0).abs() < 1e-12);
        // One category alone pools to its own figures.
        let alone = pooled(std::slice::from_ref(&b));
        assert_eq!(alone.prior, figures_of(&b.gold, &b.prior));
    }

    #[test]
    fn reliability_bins_by_tenths_and_skips_empty_bins() {
        let bins = reliability(&[(0.05, false), (0.15, true), (0.12, false), (1.0, true)]);
        assert_eq!(bins.len(), 3);
        assert_eq!(bins[1].2, 2);
        assert!((bins[1].0 - 0.135).abs() < 1e-6);
        assert!((bins[1].1 - 0.5).abs() < 1e-12);
        // A probability of 1 lies in the last bin.
        assert_eq!((bins[2].1, bins[2].2), (1.0, 1));
    }

    #[test]
    fn a_careful_report_prints_the_cli_json_shape() {
        let parts = CarefulParts {
            gold: vec![vec![0], vec![1]],
            model: vec![vec![0], vec![]],
            noisy: vec![vec![0], vec![1]],
            uncalibrated: vec![vec![0], vec![0]],
            prior: vec![vec![0], vec![0]],
            pairs: vec![(0.9, true), (0.2, false)],
        };
        let mut reviewed = BTreeMap::new();
        reviewed.insert(
            Category::Bags,
            ReviewedFigures {
                model: figures(0.5, 4),
                prior: figures(0.25, 4),
            },
        );
        let report = CarefulReport::new(
            "adapters",
            vec![(Category::Bags, careful_figures(), parts)],
            reviewed,
        );
        let json = report.to_json().expect("json");
        let value: serde_json::Value = serde_json::from_str(&json).expect("parses");
        // Every object's keys sorted, at every depth, and nothing else.
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        assert_eq!(
            keys(&value),
            ["all", "categories", "model", "reviewed", "rows"]
        );
        assert!(json.find("\"all\"") < json.find("\"categories\""));
        assert_eq!(
            keys(&value["all"]),
            [
                "model",
                "model_vs_noisy",
                "noisy_labels",
                "prior",
                "uncalibrated"
            ]
        );
        let bags = &value["categories"]["bags"];
        assert_eq!(
            keys(bags),
            [
                "model",
                "model_vs_noisy",
                "noisy_labels",
                "prior",
                "reliability",
                "uncalibrated"
            ]
        );
        let model_at = json.find("\"model\": {").expect("model");
        let empty_at = json[model_at..].find("\"empty\"").expect("empty") + model_at;
        let shown_at = json[model_at..].find("\"shown\"").expect("shown") + model_at;
        assert!(empty_at < shown_at, "figures' keys are sorted in the text");
        assert_eq!(
            keys(&bags["model"]),
            ["empty", "micro_f1", "n", "precision", "recall", "shown"]
        );
        assert_eq!(
            bags["reliability"],
            serde_json::json!([[0.05, 0.0, 3], [0.95, 1.0, 1]])
        );
        assert_eq!(keys(&value["reviewed"]["bags"]), ["model", "prior"]);
        assert_eq!(value["reviewed"]["bags"]["prior"]["micro_f1"], 0.25);
        assert_eq!(value["model"], "adapters");
        assert_eq!(value["rows"], CarefulReport::ROWS);
        assert_eq!(value["all"]["model"]["n"], 2);
        // The pooled reliability is the text table's only, not the JSON's.
        assert_eq!(report.reliability.len(), 2);
    }

    #[test]
    fn training_without_a_fold_leaves_only_it_out() {
        let stack = |row| ReviewStack {
            row,
            reviews: vec!["x".into()],
            tags: Vec::new(),
        };
        let rows = CarefulRows {
            category: Category::Bags,
            train: vec![stack(1), stack(2), stack(3)],
            dev: Vec::new(),
            dev_noisy: Vec::new(),
            train_noisy: Vec::new(),
            train_folds: vec![1, 2, 1],
        };
        let kept: Vec<usize> = rows.train_without_fold(1).iter().map(|r| r.row).collect();
        assert_eq!(kept, [2]);
        assert_eq!(rows.train_without_fold(7).len(), 3);
    }
}
