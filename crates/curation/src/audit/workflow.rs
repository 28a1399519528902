//! The audit workflow (`lamoda-tags audit`): for each category's training file, product
//! vectors (the mean of the first reviews' unit vectors), out-of-fold probabilities, the
//! disputed labels, contradictions, near-duplicate pool tags and rare tags ([`run_audit`]);
//! the report as a CSV of every finding, a Markdown summary and a seeded Markdown sample of
//! products to check by hand ([`AuditReport`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use lamoda_data::{Category, EtalonPool, LabeledSet, ReviewStack, normalize_tag};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;

use super::{
    IssueKind, LabelIssue, LogisticConfig, NearDuplicatePair, confident_learning, contradictions,
    near_duplicates, out_of_fold, rare_tags,
};
use crate::CurationError;
use crate::embed::normalize;
use crate::error::{create_csv, csv_error, flush_csv};

/// The columns of `audit.csv` ([`AuditReport::write_csv`]).
pub const AUDIT_COLUMNS: [&str; 11] = [
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
];

/// Reviews quoted per product in the sample, and characters per review.
const SAMPLE_REVIEWS: usize = 40;
const SAMPLE_REVIEW_CHARS: usize = 300;

/// Settings of the audit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditConfig {
    /// Folds of the out-of-fold model (at least 2).
    pub folds: usize,
    /// The seed of the folds and of the sample.
    pub seed: u64,
    /// A tag on fewer products is too rare to learn.
    pub min_products: usize,
    /// Pool tags at or above this cosine are near-duplicates.
    pub min_cosine: f32,
    /// Pool tags whose products overlap at or above this Jaccard are near-duplicates.
    pub min_jaccard: f64,
    /// Products drawn into the sample ([`AuditReport::sample_markdown`]).
    pub sample: usize,
    /// Reviews read per product for its vector (the first ones; at least 1).
    pub max_reviews: usize,
    /// The L2 penalty of the out-of-fold logistic regressions.
    pub l2: f32,
    /// A disputed label is strong at or above this strength (0–1).
    pub strong: f32,
    /// Tokens per review, with the boundary tokens (at least 3): the review vectors'
    /// setting, named in the summary.
    pub max_tokens: usize,
}

impl AuditConfig {
    /// Checks the settings: at least 2 folds, 1 review and 3 tokens.
    pub fn check(&self) -> Result<(), CurationError> {
        if self.folds < 2 {
            return Err(CurationError::Setting {
                field: "--folds",
                value: self.folds.to_string(),
                message: "--folds must be at least 2".to_owned(),
            });
        }
        if self.max_reviews == 0 || self.max_tokens < 3 {
            let (field, value) = if self.max_reviews == 0 {
                ("--max-reviews", self.max_reviews)
            } else {
                ("--max-tokens", self.max_tokens)
            };
            return Err(CurationError::Setting {
                field,
                value: value.to_string(),
                message: "--max-reviews must be at least 1 and --max-tokens at least 3".to_owned(),
            });
        }
        Ok(())
    }
}

/// A category's training file and its pool.
#[derive(Debug, Clone)]
pub struct AuditInput {
    /// The pool (tags outside it are not allowed in `set`).
    pub pool: EtalonPool,
    /// The training file.
    pub set: LabeledSet,
}

/// The reviews whose vectors the audit reads: the first `max_reviews` of every row,
/// distinct, sorted.
pub fn review_texts(inputs: &[AuditInput], max_reviews: usize) -> Vec<String> {
    let mut reviews: BTreeSet<String> = BTreeSet::new();
    for input in inputs {
        for row in &input.set.rows {
            reviews.extend(row.reviews.iter().take(max_reviews).cloned());
        }
    }
    reviews.into_iter().collect()
}

/// The tags whose vectors the audit reads: every pool tag, normalised, pool by pool.
pub fn pool_tag_texts(inputs: &[AuditInput]) -> Vec<String> {
    inputs
        .iter()
        .flat_map(|input| input.pool.tags.iter().map(|t| normalize_tag(t)))
        .collect()
}

/// The vectors the audit reads (unit vectors of the base).
#[derive(Debug, Clone, Copy)]
pub struct AuditVectors<'a> {
    /// Review text → vector ([`review_texts`]); a review without one is left out of its
    /// product's mean.
    pub reviews: &'a HashMap<String, Vec<f32>>,
    /// Normalised pool tag → vector ([`pool_tag_texts`]).
    pub tags: &'a HashMap<String, Vec<f32>>,
    /// The vectors' dimension.
    pub dim: usize,
}

/// What [`run_audit`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuditProgress {
    /// Folds of a category's out-of-fold model fitted so far (first with `done` 0).
    Folds {
        /// The category.
        category: Category,
        /// Folds done.
        done: usize,
        /// Folds in all.
        total: usize,
    },
    /// A category is audited.
    Fitted {
        /// The category.
        category: Category,
        /// Its products.
        products: usize,
        /// Seconds it took.
        seconds: f64,
        /// Disputed labels found.
        disputed: usize,
    },
}

/// The findings of one category.
#[derive(Debug, Clone)]
pub struct CategoryAudit {
    /// The category.
    pub category: Category,
    /// Its pool.
    pub pool: EtalonPool,
    /// The training rows (issue rows index into them).
    pub rows: Vec<ReviewStack>,
    /// Disputed labels, strongest first.
    pub issues: Vec<LabelIssue>,
    /// Rows with two tags of one exclusive group: `(row index, group, its tags there)`.
    pub contradictions: Vec<(usize, String, Vec<String>)>,
    /// Near-duplicate pool tags.
    pub near: Vec<NearDuplicatePair>,
    /// Tags too rare to learn, with their counts.
    pub rare: Vec<(String, usize)>,
    /// Micro-F1 of the out-of-fold model's top-k (k = the product's number of tags).
    pub oof_f1: f64,
    /// The same of the frequency prior.
    pub prior_f1: f64,
}

/// The audit of every category, with its settings.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The settings it ran with.
    pub config: AuditConfig,
    /// Category by category, in input order.
    pub categories: Vec<CategoryAudit>,
}

/// Tags of a category by frequency in `y` (`y[row][tag]`), most frequent first (ties:
/// lower index).
pub fn prior_ranking(y: &[Vec<bool>]) -> Vec<usize> {
    let tags = y.first().map_or(0, Vec::len);
    let mut order: Vec<usize> = (0..tags).collect();
    let count = |t: usize| y.iter().filter(|r| r[t]).count();
    order.sort_by_key(|&t| (std::cmp::Reverse(count(t)), t));
    order
}

/// Audits each input: product vectors (mean of the first `max_reviews` reviews' vectors,
/// unit length), out-of-fold probabilities of a `folds`-fold logistic model (folds by
/// [`lamoda_data::kfold`] with `seed`), the disputed labels ([`confident_learning`]),
/// contradictions, near-duplicate pool tags and rare tags, and the model's and the prior's
/// top-k micro-F1. A pool tag without a vector is an error naming it.
pub fn run_audit(
    config: &AuditConfig,
    inputs: Vec<AuditInput>,
    vectors: &AuditVectors<'_>,
    mut progress: impl FnMut(AuditProgress),
) -> Result<AuditReport, CurationError> {
    config.check()?;
    let logistic = LogisticConfig {
        l2: config.l2,
        ..LogisticConfig::default()
    };
    let mut categories = Vec::new();
    for AuditInput { pool, set } in inputs {
        let started = Instant::now();
        let x: Vec<Vec<f32>> = set
            .rows
            .iter()
            .map(|row| {
                let mut mean = vec![0f32; vectors.dim];
                let read: Vec<&String> = row.reviews.iter().take(config.max_reviews).collect();
                for r in &read {
                    if let Some(v) = vectors.reviews.get(*r) {
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
        let folds = lamoda_data::kfold(&set.rows, config.folds, config.seed);
        let category = set.category;
        progress(AuditProgress::Folds {
            category,
            done: 0,
            total: config.folds,
        });
        let probs = out_of_fold(&x, &y, &folds, logistic, |f| {
            progress(AuditProgress::Folds {
                category,
                done: f + 1,
                total: config.folds,
            })
        });
        let issues = confident_learning(&probs, &y);
        let tags: Vec<Vec<String>> = set.rows.iter().map(|r| r.tags.clone()).collect();
        let tag_vectors = pool
            .tags
            .iter()
            .map(|t| {
                let key = normalize_tag(t);
                vectors
                    .tags
                    .get(&key)
                    .cloned()
                    .ok_or(CurationError::MissingVector {
                        what: "pool tag",
                        text: key,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let oof_f1 = lamoda_metrics::metrics::micro_f1_top_gold(&probs, &y, None);
        let prior_f1 =
            lamoda_metrics::metrics::micro_f1_top_gold(&probs, &y, Some(&prior_ranking(&y)));
        progress(AuditProgress::Fitted {
            category,
            products: set.rows.len(),
            seconds: started.elapsed().as_secs_f64(),
            disputed: issues.len(),
        });
        categories.push(CategoryAudit {
            category,
            contradictions: contradictions(&tags, &pool),
            near: near_duplicates(&tag_vectors, &y, config.min_cosine, config.min_jaccard),
            rare: rare_tags(&tags, &pool, config.min_products),
            pool,
            rows: set.rows,
            issues,
            oof_f1,
            prior_f1,
        });
    }
    Ok(AuditReport {
        config: *config,
        categories,
    })
}

impl AuditReport {
    /// Writes every finding to `path` ([`AUDIT_COLUMNS`]): the disputed labels
    /// (`label_given`, `label_missing`), contradictions, near-duplicate pairs and rare
    /// tags, category by category; numbers to 4 decimals.
    pub fn write_csv(&self, path: &Path) -> Result<(), CurationError> {
        let mut w = create_csv(path)?;
        let mut write =
            |record: [String; 11]| w.write_record(record).map_err(|e| csv_error(path, e));
        write(AUDIT_COLUMNS.map(str::to_owned))?;
        for a in &self.categories {
            for issue in &a.issues {
                let row = &a.rows[issue.row];
                write([
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
                        IssueKind::Missing => {
                            "missing tag the out-of-fold model predicts".to_owned()
                        }
                    },
                ])?;
            }
            for (i, group, tags) in &a.contradictions {
                let row = &a.rows[*i];
                let (first, others) = tags.split_first().map_or(("", &[][..]), |(f, o)| (f, o));
                write([
                    "contradiction".to_owned(),
                    a.category.to_string(),
                    row.row.to_string(),
                    first.to_owned(),
                    others.join("; "),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    row.tags.join("; "),
                    format!("two tags of the exclusive group {group:?}"),
                ])?;
            }
            for pair in &a.near {
                write([
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
                write([
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
        flush_csv(path, &mut w)
    }

    /// The summary (Markdown): the method and settings, a table of counts per category
    /// and in all, then per category the most disputed tags, near-duplicates,
    /// contradictions and rare tags.
    pub fn summary_markdown(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(s, "# Label audit\n");
        let _ = writeln!(
            s,
            "Out-of-fold model: {}-fold (seed {}) one-vs-rest logistic regressions on the frozen \
             e5-small mean review vectors (`passage: `, ≤ {} tokens, the first {} reviews). \
             Disputed labels by confident learning (per-tag thresholds t1 = mean p of carriers, \
             t0 = mean 1-p of the others). Near-duplicates: cosine ≥ {} (`query: ` + tag) or \
             Jaccard ≥ {}. Rare: fewer than {} products.\n",
            c.folds,
            c.seed,
            c.max_tokens,
            c.max_reviews,
            c.min_cosine,
            c.min_jaccard,
            c.min_products
        );
        let _ = writeln!(
            s,
            "Counts: disputed labels (all / strong, strength ≥ {}), products with a strong one.\n",
            c.strong
        );
        let _ = writeln!(
            s,
            "| category | products | labels | model top-k micro-F1 (prior) | disputed given | disputed missing | products with a strong dispute | contradictions | near-duplicate pairs | rare tags |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let mut totals = [0usize; 10];
        for a in &self.categories {
            let count = |kind: IssueKind, strong: bool| {
                a.issues
                    .iter()
                    .filter(|i| i.kind == kind && (!strong || i.strength >= c.strong))
                    .count()
            };
            let flagged: BTreeSet<usize> = a
                .issues
                .iter()
                .filter(|i| i.strength >= c.strong)
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
        for a in &self.categories {
            let _ = writeln!(s, "## {}\n", a.category);
            let mut by_tag: BTreeMap<(&str, &str), usize> = BTreeMap::new();
            for i in a.issues.iter().filter(|i| i.strength >= c.strong) {
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

    /// The sample (Markdown): `config.sample` products drawn (seeded by `config.seed`) from
    /// those with a strong disputed label, each with its given tags, its strong disputes and
    /// its first reviews (40, each cut to 300 characters).
    pub fn sample_markdown(&self) -> String {
        let (n, seed, strong) = (self.config.sample, self.config.seed, self.config.strong);
        let mut flagged: Vec<(usize, usize)> = Vec::new();
        for (ai, a) in self.categories.iter().enumerate() {
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
            let a = &self.categories[*ai];
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
            for review in row.reviews.iter().take(SAMPLE_REVIEWS) {
                let cut: String = review.chars().take(SAMPLE_REVIEW_CHARS).collect();
                let _ = writeln!(s, "> {}", cut.replace('\n', " "));
            }
            if row.reviews.len() > SAMPLE_REVIEWS {
                let _ = writeln!(s, "> … {} more reviews", row.reviews.len() - SAMPLE_REVIEWS);
            }
            let _ = writeln!(s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuditConfig {
        AuditConfig {
            folds: 2,
            seed: 0,
            min_products: 3,
            min_cosine: 0.95,
            min_jaccard: 0.9,
            sample: 5,
            max_reviews: 2,
            l2: 0.3,
            strong: 0.0,
            max_tokens: 48,
        }
    }

    fn input() -> AuditInput {
        let pool = crate::audit::tests::pool();
        let rows = (0..8)
            .map(|i| ReviewStack {
                row: i + 1,
                reviews: vec![format!("review {}", i % 2), "common".to_owned()],
                tags: if i == 0 {
                    vec!["Маломерят".into(), "Большемерки".into()]
                } else if i % 2 == 0 {
                    vec!["Маломерят".into(), "Удобные".into()]
                } else {
                    vec!["Удобные".into()]
                },
            })
            .collect();
        AuditInput {
            pool,
            set: LabeledSet {
                category: Category::Shoes,
                path: "labeled/shoes.csv".into(),
                rows,
                unknown_tags: Vec::new(),
            },
        }
    }

    fn vectors() -> (HashMap<String, Vec<f32>>, HashMap<String, Vec<f32>>) {
        let reviews = HashMap::from([
            ("review 0".to_owned(), vec![1.0, 0.0]),
            ("review 1".to_owned(), vec![0.0, 1.0]),
            ("common".to_owned(), vec![0.6, 0.8]),
        ]);
        let tags = HashMap::from([
            ("маломерят".to_owned(), vec![1.0, 0.0]),
            ("большемерки".to_owned(), vec![0.0, 1.0]),
            ("удобные".to_owned(), vec![0.6, 0.8]),
        ]);
        (reviews, tags)
    }

    #[test]
    fn the_texts_are_the_first_reviews_and_the_normalised_pool_tags() {
        let inputs = [input()];
        assert_eq!(
            review_texts(&inputs, 1),
            ["review 0".to_owned(), "review 1".to_owned()]
        );
        assert_eq!(review_texts(&inputs, 2).len(), 3);
        assert_eq!(
            pool_tag_texts(&inputs),
            ["маломерят", "большемерки", "удобные"]
        );
    }

    #[test]
    fn the_audit_reports_every_finding_and_renders_them() {
        let (reviews, tags) = vectors();
        let vectors = AuditVectors {
            reviews: &reviews,
            tags: &tags,
            dim: 2,
        };
        let mut events = Vec::new();
        let report =
            run_audit(&config(), vec![input()], &vectors, |p| events.push(p)).expect("audit");
        assert_eq!(events.len(), 4, "{events:?}");
        assert!(matches!(
            events[3],
            AuditProgress::Fitted { products: 8, .. }
        ));
        let a = &report.categories[0];
        assert_eq!(a.contradictions.len(), 1);
        assert_eq!(a.rare, [("Большемерки".to_owned(), 1)]);
        assert!((0.0..=1.0).contains(&a.oof_f1) && (0.0..=1.0).contains(&a.prior_f1));
        let summary = report.summary_markdown();
        assert!(summary.starts_with("# Label audit\n\nOut-of-fold model: 2-fold (seed 0)"));
        assert!(summary.contains("| shoes | 8 | 12 |"), "{summary}");
        assert!(
            summary.contains("- contradiction: row 1 has Маломерят + Большемерки (group size)")
        );
        let sample = report.sample_markdown();
        assert!(sample.starts_with("# Audit sample: "), "{sample}");
        assert_eq!(sample, report.sample_markdown(), "the sample is seeded");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.csv");
        report.write_csv(&path).expect("csv");
        let csv = std::fs::read_to_string(&path).expect("read");
        assert!(csv.starts_with("kind,category,row,tag,other_tag,score,"));
        assert!(csv.contains(
            "contradiction,shoes,1,Маломерят,Большемерки,,,,,Маломерят; Большемерки,\"two tags of the exclusive group \"\"size\"\"\"\n"
        ), "{csv}");
        assert!(csv.contains("rare_tag,shoes,,Большемерки,,1,,,,,on 1 products\n"));
    }

    #[test]
    fn bad_settings_and_a_missing_tag_vector_are_named() {
        let (reviews, mut tags) = vectors();
        let bad = AuditConfig {
            folds: 1,
            ..config()
        };
        assert_eq!(
            bad.check().expect_err("folds").to_string(),
            "--folds must be at least 2"
        );
        let bad = AuditConfig {
            max_tokens: 2,
            ..config()
        };
        assert_eq!(
            bad.check().expect_err("tokens").to_string(),
            "--max-reviews must be at least 1 and --max-tokens at least 3"
        );
        tags.remove("удобные");
        let vectors = AuditVectors {
            reviews: &reviews,
            tags: &tags,
            dim: 2,
        };
        let err = run_audit(&config(), vec![input()], &vectors, |_| {}).expect_err("no vector");
        assert_eq!(err.to_string(), "no vector for pool tag \"удобные\"");
    }

    #[test]
    fn the_prior_ranks_by_frequency_then_index() {
        let y = vec![
            vec![false, true, true],
            vec![false, true, false],
            vec![true, false, true],
        ];
        assert_eq!(prior_ranking(&y), [1, 2, 0]);
        assert!(prior_ranking(&[]).is_empty());
    }
}
