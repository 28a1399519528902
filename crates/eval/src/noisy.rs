//! The data set's own labels: a model's figures per category on the dev split (or on a
//! held-out data directory), beside the frequency prior ([`evaluate_noisy`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use lamoda_data::{
    Category, DataDir, Project, ProjectError, ReviewStack, UnknownTagPolicy, train_dev_split,
};
use lamoda_inference::{Progress, Tagger};
use lamoda_metrics::{FrequencyPrior, Metrics, evaluate_prior};
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::score::{evidence_metrics, tagger_metrics};

/// What [`evaluate_noisy`] scores.
#[derive(Debug, Clone, Copy)]
pub struct NoisyConfig<'a> {
    /// The project (pools, the split).
    pub project: &'a Project,
    /// The training data: the prior is fitted on it, and without `test_data` its dev
    /// split is scored.
    pub data: &'a DataDir,
    /// A held-out data directory to score every row of (the prior then fitted on all
    /// training rows).
    pub test_data: Option<&'a DataDir>,
    /// The bundle (`None`: the frequency prior alone is the model).
    pub tagger: Option<&'a Tagger>,
    /// How the report names the model (`adapters`, `prior`, a directory).
    pub model_name: &'a str,
    /// The categories to score (`None`: every category with data, of `test_data` when
    /// given).
    pub categories: Option<&'a [Category]>,
    /// k of precision@k and recall@k (at least 1).
    pub k: usize,
    /// Also decode with the minimum-evidence rule at each N of these (a tag needs N
    /// supporting reviews) and report micro-F1 per N beside N = 0.
    pub min_mentions: &'a [usize],
}

/// One category's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryFigures {
    /// The model's micro-F1.
    pub micro_f1: f64,
    /// Its macro-F1.
    pub macro_f1: f64,
    /// Its samples-F1.
    pub samples_f1: f64,
    /// Its precision@k.
    pub precision_at_k: f64,
    /// Its recall@k.
    pub recall_at_k: f64,
    /// The prior's micro-F1.
    pub prior_micro_f1: f64,
    /// The prior's macro-F1.
    pub prior_macro_f1: f64,
    /// The prior's samples-F1.
    pub prior_samples_f1: f64,
    /// Products scored.
    pub n: usize,
    /// k of precision@k and recall@k.
    pub k: usize,
    /// Tags the prior shows.
    pub prior_tags: usize,
    /// Gold tags of the scored data outside the pool (they count as missed).
    pub unknown_tags: usize,
    /// micro-F1 with the minimum-evidence rule, per N (with `min_mentions`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub micro_f1_by_min_mentions: BTreeMap<usize, f64>,
    /// Where the gold tags outside the pool are, when there are some (not in the JSON).
    #[serde(skip)]
    pub unknown: Option<UnknownTags>,
}

/// Gold tags of a held-out file that are not in the category's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTags {
    /// The file.
    pub path: PathBuf,
    /// How many.
    pub count: usize,
    /// The first one's row.
    pub row: usize,
    /// The first one.
    pub tag: String,
}

/// `lamoda-tags eval` on the data set's own labels: the model's figures per category
/// beside the prior's. Serialises as `eval --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoisyReport {
    /// The model's name.
    pub model: String,
    /// Which rows were scored and where the prior was fitted.
    pub rows: &'static str,
    /// Per category name, its figures.
    pub categories: BTreeMap<String, CategoryFigures>,
    /// The mean of the categories' micro-F1.
    pub mean_micro_f1: f64,
    /// The mean of the prior's micro-F1.
    pub mean_prior_micro_f1: f64,
}

impl NoisyReport {
    /// The rows of a report on the dev split.
    pub const DEV_ROWS: &'static str = "dev split; prior fitted on the train split";
    /// The rows of a report on held-out data.
    pub const TEST_ROWS: &'static str =
        "all rows of --test-data; prior fitted on all training rows";

    /// The report of `model` on `rows` from its categories' figures (the means computed
    /// here).
    pub fn new(
        model: impl Into<String>,
        rows: &'static str,
        categories: BTreeMap<String, CategoryFigures>,
    ) -> Self {
        let n = categories.len() as f64;
        let mean = |f: fn(&CategoryFigures) -> f64| categories.values().map(f).sum::<f64>() / n;
        Self {
            model: model.into(),
            rows,
            mean_micro_f1: mean(|c| c.micro_f1),
            mean_prior_micro_f1: mean(|c| c.prior_micro_f1),
            categories,
        }
    }

    /// The report as pretty JSON (as `eval --json` prints it).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Every N of the minimum-evidence rule any category was scored at, ascending.
    pub fn min_mentions_levels(&self) -> Vec<usize> {
        self.categories
            .values()
            .flat_map(|c| c.micro_f1_by_min_mentions.keys().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Scores `config.tagger` (or the prior alone) on each category's dev split of the data
/// set's own labels, or on every row of `config.test_data`, beside the frequency prior
/// fitted on the rows not scored.
pub fn evaluate_noisy(config: &NoisyConfig<'_>, progress: &dyn Progress) -> Result<NoisyReport> {
    if config.k == 0 {
        return Err(EvalError::Config {
            field: "k",
            value: config.k.to_string(),
            reason: "must be at least 1",
        });
    }
    let split = config.project.split()?;
    let categories = match (config.categories, config.test_data) {
        (Some(c), _) => c.to_vec(),
        (None, Some(dir)) => dir.categories()?,
        (None, None) => config.data.categories()?,
    };
    // Per N, the answer the runtime gives (careful-calibrated where the bundle is); the
    // main figure stays the adapter's own decoding, as without N.
    let levels: Vec<usize> = if config.min_mentions.is_empty() {
        Vec::new()
    } else {
        let mut levels = config.min_mentions.to_vec();
        levels.push(0);
        levels.sort_unstable();
        levels.dedup();
        levels
    };
    let mut figures = BTreeMap::new();
    for category in categories {
        let pool = config.project.pool(category)?;
        let training = config
            .data
            .fitting_rows(category, &pool)
            .map_err(rows_error("training data", category))?;
        let (prior, eval_set, rows): (_, _, Vec<usize>) = match config.test_data {
            Some(dir) => {
                let prior = FrequencyPrior::fit(&pool, &training.rows);
                let set = dir
                    .labeled(category, &pool, UnknownTagPolicy::Report)
                    .map_err(rows_error("held-out data", category))?;
                let all = (0..set.rows.len()).collect();
                (prior, set, all)
            }
            None => {
                let s = train_dev_split(&training.rows, &split);
                let prior = FrequencyPrior::fit(&pool, s.train.iter().map(|&i| &training.rows[i]));
                (prior, training, s.dev)
            }
        };
        let eval_rows: Vec<&ReviewStack> = rows.iter().map(|&i| &eval_set.rows[i]).collect();
        let prior_metrics = evaluate_prior(&prior, &pool, &eval_rows, config.k);
        let mut by_min_mentions = BTreeMap::new();
        let model: Metrics = match config.tagger {
            Some(tagger) => {
                if !levels.is_empty() {
                    let metrics =
                        evidence_metrics(tagger, &pool, &eval_rows, config.k, &levels, progress)?;
                    for (&n, m) in levels.iter().zip(&metrics) {
                        by_min_mentions.insert(n, m.micro_f1);
                    }
                }
                tagger_metrics(tagger, &pool, &eval_rows, config.k, progress)?
            }
            None => prior_metrics.clone(),
        };
        let unknown = eval_set.unknown_tags.first().map(|(row, tag)| UnknownTags {
            path: eval_set.path.clone(),
            count: eval_set.unknown_tags.len(),
            row: *row,
            tag: tag.clone(),
        });
        figures.insert(
            category.name().to_owned(),
            CategoryFigures {
                micro_f1: model.micro_f1,
                macro_f1: model.macro_f1,
                samples_f1: model.samples_f1,
                precision_at_k: model.precision_at_k,
                recall_at_k: model.recall_at_k,
                prior_micro_f1: prior_metrics.micro_f1,
                prior_macro_f1: prior_metrics.macro_f1,
                prior_samples_f1: prior_metrics.samples_f1,
                n: model.n,
                k: config.k,
                prior_tags: prior.k,
                unknown_tags: eval_set.unknown_tags.len(),
                micro_f1_by_min_mentions: by_min_mentions,
                unknown,
            },
        );
    }
    let rows = if config.test_data.is_some() {
        NoisyReport::TEST_ROWS
    } else {
        NoisyReport::DEV_ROWS
    };
    Ok(NoisyReport::new(config.model_name, rows, figures))
}

/// The [`EvalError::Rows`] of `category`'s `what`.
fn rows_error(what: &'static str, category: Category) -> impl FnOnce(ProjectError) -> EvalError {
    move |source| EvalError::Rows {
        what,
        category,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(micro_f1: f64, prior_micro_f1: f64) -> CategoryFigures {
        CategoryFigures {
            micro_f1,
            macro_f1: 0.25,
            samples_f1: 0.5,
            precision_at_k: 0.5,
            recall_at_k: 0.25,
            prior_micro_f1,
            prior_macro_f1: 0.125,
            prior_samples_f1: 0.25,
            n: 26,
            k: 3,
            prior_tags: 3,
            unknown_tags: 0,
            micro_f1_by_min_mentions: BTreeMap::new(),
            unknown: None,
        }
    }

    #[test]
    fn a_noisy_report_prints_the_cli_json_shape() {
        let mut categories = BTreeMap::new();
        categories.insert("shoes".to_owned(), figures(0.75, 0.5));
        let mut bags = figures(0.25, 0.0);
        bags.micro_f1_by_min_mentions.insert(0, 0.25);
        bags.micro_f1_by_min_mentions.insert(2, 0.125);
        bags.unknown = Some(UnknownTags {
            path: PathBuf::from("labeled/bags.csv"),
            count: 1,
            row: 4,
            tag: "x".into(),
        });
        categories.insert("bags".to_owned(), bags);
        let report = NoisyReport::new("adapters", NoisyReport::DEV_ROWS, categories);
        assert_eq!(report.mean_micro_f1, 0.5);
        assert_eq!(report.mean_prior_micro_f1, 0.25);
        assert_eq!(report.min_mentions_levels(), [0, 2]);
        let json = report.to_json().expect("json");
        // The fields in declaration order (not sorted), the categories by name, the
        // minimum-evidence figures only where scored, the unknown tags' place never.
        let order = [
            "\"model\"",
            "\"rows\"",
            "\"categories\"",
            "\"bags\"",
            "\"micro_f1\"",
            "\"macro_f1\"",
            "\"samples_f1\"",
            "\"precision_at_k\"",
            "\"recall_at_k\"",
            "\"prior_micro_f1\"",
            "\"prior_macro_f1\"",
            "\"prior_samples_f1\"",
            "\"n\"",
            "\"k\"",
            "\"prior_tags\"",
            "\"unknown_tags\"",
            "\"micro_f1_by_min_mentions\"",
            "\"shoes\"",
            "\"mean_micro_f1\"",
            "\"mean_prior_micro_f1\"",
        ];
        let mut at = 0;
        for key in order {
            at += json[at..]
                .find(key)
                .unwrap_or_else(|| panic!("{key} after byte {at} in {json}"));
        }
        assert_eq!(json.matches("micro_f1_by_min_mentions").count(), 1);
        assert!(json.contains(
            "\"micro_f1_by_min_mentions\": {\n        \"0\": 0.25,\n        \"2\": 0.125\n      }"
        ));
        assert!(!json.contains("labeled/bags.csv"));
        assert!(json.starts_with("{\n  \"model\": \"adapters\",\n  \"rows\": \"dev split; prior fitted on the train split\",\n"));
    }

    #[test]
    fn k_must_be_at_least_one() {
        let project = Project::at("/nonexistent");
        let data = DataDir::new("/nonexistent");
        let config = NoisyConfig {
            project: &project,
            data: &data,
            test_data: None,
            tagger: None,
            model_name: "prior",
            categories: None,
            k: 0,
            min_mentions: &[],
        };
        let err = evaluate_noisy(&config, &lamoda_inference::Silent).expect_err("k = 0");
        assert!(matches!(err, EvalError::Config { field: "k", .. }), "{err}");
        assert_eq!(err.to_string(), "`k` = 0: must be at least 1");
    }
}
