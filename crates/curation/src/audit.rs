//! The label audit of a training set: likely label errors (confident learning on
//! out-of-fold probabilities), near-duplicate etalon tags (embedding cosine and
//! co-occurrence), contradictory tags (two of one exclusive group) and tags too rare to
//! learn.
//!
//! The out-of-fold model ([`out_of_fold`]) is a one-vs-rest logistic regression per tag on
//! fixed product vectors (in `lamoda-tags audit`: the frozen base's mean review vectors),
//! fitted by full-batch L-BFGS on standardised features with an L2 penalty, from zero
//! weights: deterministic, so only the folds need a seed.
//!
//! The workflow of `lamoda-tags audit` is [`run_audit`] (settings and training files in,
//! an [`AuditReport`] out), rendered by [`AuditReport::write_csv`],
//! [`AuditReport::summary_markdown`] and [`AuditReport::sample_markdown`].

use std::collections::BTreeMap;

use lamoda_data::EtalonPool;

mod workflow;

pub use workflow::{
    AUDIT_COLUMNS, AuditConfig, AuditInput, AuditProgress, AuditReport, AuditVectors,
    CategoryAudit, pool_tag_texts, prior_ranking, review_texts, run_audit,
};

/// A one-vs-rest logistic model on standardised features.
#[derive(Debug, Clone)]
pub struct Logistic {
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// `[tags][dim]`.
    weights: Vec<Vec<f32>>,
    bias: Vec<f32>,
}

/// Settings of the logistic fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticConfig {
    /// The L2 penalty on the weights (of the mean loss).
    pub l2: f32,
    /// L-BFGS steps at most.
    pub iterations: usize,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            l2: 1e-2,
            iterations: 100,
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Logistic {
    /// Fits one logistic regression per tag (`y[i][t]`) on rows `x[i]`.
    pub fn fit(x: &[&[f32]], y: &[&[bool]], config: LogisticConfig) -> Self {
        let n = x.len();
        let d = x.first().map_or(0, |r| r.len());
        let tags = y.first().map_or(0, |r| r.len());
        let mut mean = vec![0f32; d];
        for row in x {
            for (m, v) in mean.iter_mut().zip(*row) {
                *m += v / n.max(1) as f32;
            }
        }
        let mut scale = vec![0f32; d];
        for row in x {
            for ((s, v), m) in scale.iter_mut().zip(*row).zip(&mean) {
                *s += (v - m) * (v - m) / n.max(1) as f32;
            }
        }
        scale
            .iter_mut()
            .for_each(|s| *s = if *s > 1e-12 { 1.0 / s.sqrt() } else { 0.0 });
        let z: Vec<Vec<f32>> = x
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((v, m), s)| (v - m) * s)
                    .collect()
            })
            .collect();
        // One regression per tag, the tags spread over the cores.
        use rayon::prelude::*;
        let (weights, bias): (Vec<Vec<f32>>, Vec<f32>) = (0..tags)
            .into_par_iter()
            .map(|t| fit_one(&z, y, t, config))
            .unzip();
        Self {
            mean,
            scale,
            weights,
            bias,
        }
    }

    /// The probability of every tag for the row `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let z: Vec<f32> = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) * s)
            .collect();
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| sigmoid(w.iter().zip(&z).map(|(a, c)| a * c).sum::<f32>() + b))
            .collect()
    }
}

/// The mean logistic loss of tag `t` with an L2 penalty on the weights, and its gradient,
/// at `theta` = weights then bias.
fn loss_and_grad(
    z: &[Vec<f32>],
    y: &[&[bool]],
    t: usize,
    l2: f64,
    theta: &[f64],
) -> (f64, Vec<f64>) {
    let d = theta.len() - 1;
    let n = z.len().max(1) as f64;
    let mut grad = vec![0f64; d + 1];
    let mut loss = 0f64;
    for (row, labels) in z.iter().zip(y) {
        let logit: f64 = row
            .iter()
            .zip(&theta[..d])
            .map(|(a, w)| f64::from(*a) * w)
            .sum::<f64>()
            + theta[d];
        let target = if labels[t] { 1.0 } else { 0.0 };
        // log(1 + e^x) - target·x, stably.
        loss += logit.max(0.0) + (-logit.abs()).exp().ln_1p() - target * logit;
        let r = 1.0 / (1.0 + (-logit).exp()) - target;
        for (g, a) in grad[..d].iter_mut().zip(row) {
            *g += r * f64::from(*a);
        }
        grad[d] += r;
    }
    loss /= n;
    grad.iter_mut().for_each(|g| *g /= n);
    for (g, w) in grad[..d].iter_mut().zip(&theta[..d]) {
        *g += l2 * w;
        loss += 0.5 * l2 * w * w;
    }
    (loss, grad)
}

/// One tag's regression by L-BFGS (memory 10, backtracking Armijo line search) from zero
/// weights and the base-rate bias; at most `config.iterations` steps, stopping when the
/// gradient's largest entry is below 1e-5. Full-batch and deterministic.
fn fit_one(z: &[Vec<f32>], y: &[&[bool]], t: usize, config: LogisticConfig) -> (Vec<f32>, f32) {
    const MEMORY: usize = 10;
    let d = z.first().map_or(0, Vec::len);
    let n = z.len().max(1) as f64;
    let l2 = f64::from(config.l2);
    let positives = y.iter().filter(|r| r[t]).count() as f64;
    let rate = ((positives + 0.5) / (n + 1.0)).clamp(1e-4, 1.0 - 1e-4);
    let mut theta = vec![0f64; d + 1];
    theta[d] = (rate / (1.0 - rate)).ln();
    let (mut loss, mut grad) = loss_and_grad(z, y, t, l2, &theta);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    let dotf = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for _ in 0..config.iterations {
        if grad.iter().fold(0f64, |m, g| m.max(g.abs())) < 1e-5 {
            break;
        }
        // Two-loop recursion: direction = -H·grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, yv, rho) in history.iter().rev() {
            let alpha = rho * dotf(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= alpha * yi);
            alphas.push(alpha);
        }
        let gamma = history
            .back()
            .map_or(1.0, |(s, yv, _)| dotf(s, yv) / dotf(yv, yv).max(1e-300));
        q.iter_mut().for_each(|qi| *qi *= gamma);
        for ((s, yv, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dotf(yv, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, si)| *qi += (alpha - beta) * si);
        }
        let mut direction: Vec<f64> = q.iter().map(|x| -x).collect();
        let mut slope = dotf(&direction, &grad);
        if slope >= 0.0 {
            // Not a descent direction: fall back to the gradient.
            direction = grad.iter().map(|g| -g).collect();
            slope = dotf(&direction, &grad);
            history.clear();
        }
        let mut step = if history.is_empty() {
            1.0 / dotf(&grad, &grad).sqrt().max(1e-12)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..30 {
            let candidate: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(x, p)| x + step * p)
                .collect();
            let (l, g) = loss_and_grad(z, y, t, l2, &candidate);
            if l <= loss + 1e-4 * step * slope {
                accepted = Some((candidate, l, g));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_loss, next_grad)) = accepted else {
            break;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dotf(&s, &yv);
        if sy > 1e-12 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, yv, 1.0 / sy));
        }
        theta = next;
        loss = next_loss;
        grad = next_grad;
    }
    let b = theta[d] as f32;
    (theta[..d].iter().map(|&w| w as f32).collect(), b)
}

/// Out-of-fold probabilities: for each fold `f` of `folds` (values `0..k`), a model fitted
/// on the other folds predicts the rows of `f`. `progress(fold)` after each fold.
pub fn out_of_fold(
    x: &[Vec<f32>],
    y: &[Vec<bool>],
    folds: &[usize],
    config: LogisticConfig,
    mut progress: impl FnMut(usize),
) -> Vec<Vec<f32>> {
    let k = folds.iter().copied().max().map_or(0, |m| m + 1);
    let tags = y.first().map_or(0, Vec::len);
    let mut probs = vec![vec![0f32; tags]; x.len()];
    for fold in 0..k {
        let train: Vec<usize> = (0..x.len()).filter(|&i| folds[i] != fold).collect();
        let xs: Vec<&[f32]> = train.iter().map(|&i| x[i].as_slice()).collect();
        let ys: Vec<&[bool]> = train.iter().map(|&i| y[i].as_slice()).collect();
        let model = Logistic::fit(&xs, &ys, config);
        for i in (0..x.len()).filter(|&i| folds[i] == fold) {
            probs[i] = model.predict(&x[i]);
        }
        progress(fold);
    }
    probs
}

/// Which way a label is disputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IssueKind {
    /// The product carries the tag; the model confidently says it should not.
    Given,
    /// The product lacks the tag; the model confidently says it should have it.
    Missing,
}

impl IssueKind {
    /// `given` or `missing`.
    pub fn name(self) -> &'static str {
        match self {
            IssueKind::Given => "given",
            IssueKind::Missing => "missing",
        }
    }
}

/// A disputed label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIssue {
    /// The row (index into the inputs).
    pub row: usize,
    /// The tag (index).
    pub tag: usize,
    /// Given or missing.
    pub kind: IssueKind,
    /// The out-of-fold probability of the tag.
    pub p: f32,
    /// The threshold it was compared with: for `Missing`, `t1` (mean p of the products
    /// carrying the tag); for `Given`, `1 - t0` (`t0`: mean 1-p of those without it).
    pub threshold: f32,
    /// How far past the threshold: `p - t1` (missing) or `(1-p) - t0` (given); ≥ 0.
    pub margin: f32,
    /// The margin on a common 0–1 scale, the ranking key: `(p - t1) / (1 - t1)` (missing:
    /// the share of the way from the threshold to certainty), `(p0 - p) / p0` with
    /// `p0 = 1 - t0` (given: the share below the mean p of the products without the tag).
    pub strength: f32,
}

/// The per-tag thresholds of confident learning: `t1` = mean p over the products carrying
/// the tag, `t0` = mean (1-p) over the others (`None` when a side is empty).
pub fn class_thresholds(
    probs: &[Vec<f32>],
    labels: &[Vec<bool>],
) -> Vec<(Option<f32>, Option<f32>)> {
    let tags = labels.first().map_or(0, Vec::len);
    (0..tags)
        .map(|t| {
            let (mut s1, mut n1, mut s0, mut n0) = (0f64, 0usize, 0f64, 0usize);
            for (p, y) in probs.iter().zip(labels) {
                if y[t] {
                    s1 += f64::from(p[t]);
                    n1 += 1;
                } else {
                    s0 += 1.0 - f64::from(p[t]);
                    n0 += 1;
                }
            }
            (
                (n1 > 0).then(|| (s1 / n1 as f64) as f32),
                (n0 > 0).then(|| (s0 / n0 as f64) as f32),
            )
        })
        .collect()
}

/// Confident learning (Northcutt et al.), one binary problem per tag: a label is counted
/// in the confident joint under the class whose probability reaches that class's
/// threshold (the larger probability when both do). An issue is a label counted under the
/// other class than given: a given tag with `1-p ≥ t0` (and not `p ≥ t1` with `p > 1-p`),
/// a missing tag with `p ≥ t1` (and not `1-p ≥ t0` with `1-p ≥ p`). Ranked by strength
/// (the normalised margin), largest first (ties: row, then tag).
pub fn confident_learning(probs: &[Vec<f32>], labels: &[Vec<bool>]) -> Vec<LabelIssue> {
    let thresholds = class_thresholds(probs, labels);
    let mut issues = Vec::new();
    for (row, (p_row, y_row)) in probs.iter().zip(labels).enumerate() {
        for (tag, &(t1, t0)) in thresholds.iter().enumerate() {
            let (Some(t1), Some(t0)) = (t1, t0) else {
                continue;
            };
            let p = p_row[tag];
            let q = 1.0 - p;
            let says_one = p >= t1;
            let says_zero = q >= t0;
            let counted_one = says_one && (!says_zero || p > q);
            let counted_zero = says_zero && (!says_one || q >= p);
            if y_row[tag] && counted_zero {
                issues.push(LabelIssue {
                    row,
                    tag,
                    kind: IssueKind::Given,
                    p,
                    threshold: 1.0 - t0,
                    margin: q - t0,
                    strength: if t0 < 1.0 {
                        ((1.0 - t0 - p) / (1.0 - t0)).max(0.0)
                    } else {
                        0.0
                    },
                });
            } else if !y_row[tag] && counted_one {
                issues.push(LabelIssue {
                    row,
                    tag,
                    kind: IssueKind::Missing,
                    p,
                    threshold: t1,
                    margin: p - t1,
                    strength: if t1 < 1.0 {
                        ((p - t1) / (1.0 - t1)).max(0.0)
                    } else {
                        0.0
                    },
                });
            }
        }
    }
    issues.sort_by(|a, b| {
        b.strength
            .total_cmp(&a.strength)
            .then(a.row.cmp(&b.row))
            .then(a.tag.cmp(&b.tag))
    });
    issues
}

/// Two pool tags that may be one.
#[derive(Debug, Clone, PartialEq)]
pub struct NearDuplicatePair {
    /// The first tag (pool index; the lower one).
    pub a: usize,
    /// The second tag.
    pub b: usize,
    /// Cosine of their embeddings.
    pub cosine: f32,
    /// Products carrying both.
    pub both: usize,
    /// Products carrying both / products carrying either.
    pub jaccard: f64,
    /// `P(a, b) / (P(a) P(b))` over the products.
    pub lift: f64,
}

/// Every pair of pool tags whose embeddings have cosine ≥ `min_cosine` or whose products
/// overlap with Jaccard ≥ `min_jaccard`, highest cosine first.
pub fn near_duplicates(
    vectors: &[Vec<f32>],
    labels: &[Vec<bool>],
    min_cosine: f32,
    min_jaccard: f64,
) -> Vec<NearDuplicatePair> {
    let n = labels.len().max(1) as f64;
    let tags = vectors.len();
    let count = |t: usize| labels.iter().filter(|y| y[t]).count();
    let counts: Vec<usize> = (0..tags).map(count).collect();
    let mut out = Vec::new();
    for a in 0..tags {
        for b in a + 1..tags {
            let cosine = crate::embed::dot(&vectors[a], &vectors[b]);
            let both = labels.iter().filter(|y| y[a] && y[b]).count();
            let either = counts[a] + counts[b] - both;
            let jaccard = if either == 0 {
                0.0
            } else {
                both as f64 / either as f64
            };
            let lift = if counts[a] == 0 || counts[b] == 0 {
                0.0
            } else {
                (both as f64 / n) / ((counts[a] as f64 / n) * (counts[b] as f64 / n))
            };
            if cosine >= min_cosine || jaccard >= min_jaccard {
                out.push(NearDuplicatePair {
                    a,
                    b,
                    cosine,
                    both,
                    jaccard,
                    lift,
                });
            }
        }
    }
    out.sort_by(|x, y| {
        y.cosine
            .total_cmp(&x.cosine)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });
    out
}

/// Rows carrying two or more tags of one exclusive group: `(row index, group name, the
/// group's tags on the row)`.
pub fn contradictions(
    tags: &[Vec<String>],
    pool: &EtalonPool,
) -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (row, row_tags) in tags.iter().enumerate() {
        for group in &pool.exclusive {
            let on: Vec<String> = row_tags
                .iter()
                .filter(|t| group.tags.contains(t))
                .cloned()
                .collect();
            if on.len() > 1 {
                out.push((row, group.name.clone(), on));
            }
        }
    }
    out
}

/// Pool tags carried by fewer than `min_products` rows, with their counts, rarest first.
pub fn rare_tags(
    tags: &[Vec<String>],
    pool: &EtalonPool,
    min_products: usize,
) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = pool.tags.iter().map(|t| (t.as_str(), 0)).collect();
    for row in tags {
        for t in row {
            if let Some(c) = counts.get_mut(t.as_str()) {
                *c += 1;
            }
        }
    }
    let mut rare: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, c)| *c < min_products)
        .map(|(t, c)| (t.to_owned(), c))
        .collect();
    rare.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    rare
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lamoda_data::{Category, TagGroup};

    #[test]
    fn confident_learning_flags_what_the_thresholds_say() {
        // One tag. Carriers: rows 0–2 (p 0.9, 0.8, 0.1): t1 = 0.6. Others: rows 3–5
        // (p 0.2, 0.7, 0.0): t0 = mean(0.8, 0.3, 1.0) = 0.7.
        let probs: Vec<Vec<f32>> = [0.9, 0.8, 0.1, 0.2, 0.7, 0.0]
            .iter()
            .map(|&p| vec![p])
            .collect();
        let labels: Vec<Vec<bool>> = [true, true, true, false, false, false]
            .iter()
            .map(|&y| vec![y])
            .collect();
        let thresholds = class_thresholds(&probs, &labels);
        let (t1, t0) = (
            thresholds[0].0.unwrap_or(-1.0),
            thresholds[0].1.unwrap_or(-1.0),
        );
        assert!(
            (t1 - 0.6).abs() < 1e-6 && (t0 - 0.7).abs() < 1e-6,
            "{t1} {t0}"
        );
        let issues = confident_learning(&probs, &labels);
        let found: Vec<(usize, IssueKind)> = issues.iter().map(|i| (i.row, i.kind)).collect();
        // Row 2 carries it at p 0.1 (1-p 0.9 ≥ 0.7): given, margin 0.2. Row 4 lacks it at
        // p 0.7 ≥ 0.6 (1-p 0.3 < 0.7): missing, margin 0.1. Row 3 (p 0.2) is a sure
        // negative; rows 0, 1 sure positives.
        assert_eq!(found, [(2, IssueKind::Given), (4, IssueKind::Missing)]);
        assert!((issues[0].margin - 0.2).abs() < 1e-6);
        assert!((issues[1].margin - 0.1).abs() < 1e-6);
        // Strength: (0.3 - 0.1) / 0.3 for the given tag, (0.7 - 0.6) / 0.4 for the missing.
        assert!((issues[0].strength - 2.0 / 3.0).abs() < 1e-6);
        assert!((issues[1].strength - 0.25).abs() < 1e-6);
    }

    #[test]
    fn a_tag_nobody_carries_is_not_judged() {
        let probs = vec![vec![0.9], vec![0.8]];
        let labels = vec![vec![false], vec![false]];
        assert!(confident_learning(&probs, &labels).is_empty());
    }

    #[test]
    fn the_logistic_fit_separates_a_separable_tag() {
        let x: Vec<Vec<f32>> = (0..40)
            .map(|i| vec![i as f32 / 40.0, ((i * 7) % 5) as f32])
            .collect();
        let y: Vec<Vec<bool>> = (0..40).map(|i| vec![i >= 20]).collect();
        let folds: Vec<usize> = (0..40).map(|i| i % 4).collect();
        let probs = out_of_fold(&x, &y, &folds, LogisticConfig::default(), |_| {});
        let right = probs
            .iter()
            .zip(&y)
            .filter(|(p, y)| (p[0] >= 0.5) == y[0])
            .count();
        assert!(right >= 36, "{right} of 40 right");
    }

    /// A shoes pool of three tags, two of them one exclusive group (the audit's and its
    /// workflow's tests share it).
    pub(crate) fn pool() -> EtalonPool {
        let mut pool = EtalonPool::new(
            Category::Shoes,
            vec!["Маломерят".into(), "Большемерки".into(), "Удобные".into()],
        )
        .expect("pool");
        pool.exclusive.push(TagGroup {
            name: "size".into(),
            tags: vec!["Маломерят".into(), "Большемерки".into()],
        });
        pool
    }

    #[test]
    fn two_tags_of_a_group_contradict_and_rare_tags_are_counted() {
        let rows = vec![
            vec![
                "Маломерят".to_owned(),
                "Большемерки".to_owned(),
                "Удобные".to_owned(),
            ],
            vec!["Удобные".to_owned()],
            vec!["Маломерят".to_owned()],
        ];
        let found = contradictions(&rows, &pool());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 0);
        assert_eq!(found[0].1, "size");
        assert_eq!(
            rare_tags(&rows, &pool(), 2),
            [("Большемерки".to_owned(), 1)]
        );
    }

    #[test]
    fn co_occurring_tags_are_near_duplicates_by_jaccard() {
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        let labels = vec![
            vec![true, true, false],
            vec![true, true, false],
            vec![false, false, true],
        ];
        let pairs = near_duplicates(&vectors, &labels, 0.79, 0.9);
        let found: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        // (1, 2) by cosine 0.8; (0, 1) by Jaccard 1.
        assert_eq!(found, [(1, 2), (0, 1)]);
        assert!((pairs[1].lift - 1.5).abs() < 1e-9);
    }
}
