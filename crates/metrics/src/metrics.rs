//! Multilabel metrics over whole evaluation sets: micro-, macro- and
//! samples-F1, precision@k, recall@k and per-tag scores.
//!
//! Labels are indices. Gold sets may hold labels beyond the scored ones (tags
//! of held-out data that are not in the pool): they count as missed.
//!
//! Conventions, for the edge cases:
//! - F1 of a set with no gold and no predicted label is 0 for micro/per-tag
//!   (nothing to score), but a row with empty gold *and* empty prediction
//!   scores samples-F1 = 1 (it was answered exactly).
//! - Macro-F1 averages the labels that occur in gold or prediction.
//! - precision@k averages over every row; recall@k over rows with gold labels.
//!   Ranking ties go to the lower label index.

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TagScore {
    /// Label index.
    pub label: usize,
    /// Gold occurrences.
    pub support: usize,
    /// Predicted occurrences.
    pub predicted: usize,
    /// True positives.
    pub true_positives: usize,
    /// TP / predicted (0 when nothing was predicted).
    pub precision: f64,
    /// TP / support (0 when there is no support).
    pub recall: f64,
    /// Harmonic mean (0 when both are 0).
    pub f1: f64,
}

/// Scores of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows scored.
    pub n: usize,
    /// F1 over all (row, label) decisions pooled.
    pub micro_f1: f64,
    /// Pooled precision.
    pub micro_precision: f64,
    /// Pooled recall.
    pub micro_recall: f64,
    /// Mean of per-label F1 over labels seen in gold or prediction.
    pub macro_f1: f64,
    /// Mean of per-row F1.
    pub samples_f1: f64,
    /// The k of precision@k / recall@k.
    pub k: usize,
    /// Mean share of the k best-ranked labels that are gold.
    pub precision_at_k: f64,
    /// Mean share of gold labels among the k best-ranked (rows with gold only).
    pub recall_at_k: f64,
    /// Per-label scores, for labels seen in gold or prediction, by index.
    pub per_tag: Vec<TagScore>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    ratio(2 * tp, 2 * tp + fp + fn_)
}

/// The `k` best labels of a score vector (descending score, ties to the lower
/// index; NaN ranks last).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order = lamoda_data::rank(scores);
    order.truncate(k);
    order
}

/// Scores `predicted` label sets (and `scores`, for @k) against `gold`.
///
/// `gold`, `predicted` and `scores` are parallel, one entry per row; label
/// sets must not repeat a label.
///
/// # Panics
/// When the three slices differ in length (a programming error).
pub fn evaluate(
    gold: &[Vec<usize>],
    predicted: &[Vec<usize>],
    scores: &[Vec<f32>],
    k: usize,
) -> Metrics {
    assert_eq!(
        gold.len(),
        predicted.len(),
        "gold and predictions differ in length"
    );
    assert_eq!(gold.len(), scores.len(), "gold and scores differ in length");
    let n_labels = gold
        .iter()
        .chain(predicted)
        .flat_map(|s| s.iter().map(|&l| l + 1))
        .chain(scores.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    let (mut support, mut pred_count, mut tp) = (
        vec![0usize; n_labels],
        vec![0usize; n_labels],
        vec![0usize; n_labels],
    );
    let mut samples_sum = 0.0;
    let (mut p_at_k, mut r_at_k, mut r_rows) = (0.0, 0.0, 0usize);
    for ((g, p), s) in gold.iter().zip(predicted).zip(scores) {
        let hits = p.iter().filter(|l| g.contains(l)).count();
        for &l in g {
            support[l] += 1;
        }
        for &l in p {
            pred_count[l] += 1;
            if g.contains(&l) {
                tp[l] += 1;
            }
        }
        samples_sum += if g.is_empty() && p.is_empty() {
            1.0
        } else {
            ratio(2 * hits, g.len() + p.len())
        };
        let ranked = top_k(s, k);
        let k_hits = ranked.iter().filter(|l| g.contains(l)).count();
        p_at_k += ratio(k_hits, k);
        if !g.is_empty() {
            r_at_k += ratio(k_hits, g.len());
            r_rows += 1;
        }
    }
    let (tp_all, pred_all, gold_all): (usize, usize, usize) = (
        tp.iter().sum(),
        pred_count.iter().sum(),
        support.iter().sum(),
    );
    let per_tag: Vec<TagScore> = (0..n_labels)
        .filter(|&l| support[l] > 0 || pred_count[l] > 0)
        .map(|l| TagScore {
            label: l,
            support: support[l],
            predicted: pred_count[l],
            true_positives: tp[l],
            precision: ratio(tp[l], pred_count[l]),
            recall: ratio(tp[l], support[l]),
            f1: f1(tp[l], pred_count[l] - tp[l], support[l] - tp[l]),
        })
        .collect();
    let rows = gold.len();
    Metrics {
        n: rows,
        micro_f1: f1(tp_all, pred_all - tp_all, gold_all - tp_all),
        micro_precision: ratio(tp_all, pred_all),
        micro_recall: ratio(tp_all, gold_all),
        macro_f1: if per_tag.is_empty() {
            0.0
        } else {
            per_tag.iter().map(|t| t.f1).sum::<f64>() / per_tag.len() as f64
        },
        samples_f1: if rows == 0 {
            0.0
        } else {
            samples_sum / rows as f64
        },
        k,
        precision_at_k: if rows == 0 { 0.0 } else { p_at_k / rows as f64 },
        recall_at_k: if r_rows == 0 {
            0.0
        } else {
            r_at_k / r_rows as f64
        },
        per_tag,
    }
}

/// Micro-F1 from pooled counts, `2·TP / (2·TP + FP + FN)`, where agreeing on nothing
/// (all three 0) scores 1: the convention of comparisons with reference labels (a mapping
/// against reference tags, [`micro_f1_top_gold`]), unlike [`evaluate`]'s 0.
pub fn micro_f1_from_counts(tp: usize, fp: usize, fn_: usize) -> f64 {
    let d = 2 * tp + fp + fn_;
    if d == 0 {
        1.0
    } else {
        2.0 * tp as f64 / d as f64
    }
}

/// Micro-F1 of predicting each row's `k` best labels, `k` = the row's number of gold labels
/// (at least 1): with `order` `None` the `k` highest of the row's `scores` (descending by
/// [`f32::total_cmp`], ties to the lower index), with `Some(order)` the first `k` of that
/// fixed order for every row (e.g. most frequent first: the frequency prior). A
/// threshold-free comparison of a model with the prior. `gold[i][t]`: row `i` carries label
/// `t`; rows are `scores` and `gold` zipped. 1 when there is nothing to score
/// ([`micro_f1_from_counts`]).
pub fn micro_f1_top_gold(scores: &[Vec<f32>], gold: &[Vec<bool>], order: Option<&[usize]>) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (p, row) in scores.iter().zip(gold) {
        let carried = row.iter().filter(|&&b| b).count();
        let k = carried.max(1);
        let ranked: Vec<usize> = match order {
            Some(order) => order.iter().copied().take(k).collect(),
            None => {
                let mut o: Vec<usize> = (0..p.len()).collect();
                o.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                o.truncate(k);
                o
            }
        };
        let hit = ranked
            .iter()
            .filter(|&&t| row.get(t).copied().unwrap_or(false))
            .count();
        tp += hit;
        fp += ranked.len() - hit;
        fn_ += carried - hit;
    }
    micro_f1_from_counts(tp, fp, fn_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn hand_computed_example() {
        // row 0: gold {0,1}, pred {0,2}    row 1: gold {1}, pred {1}
        // row 2: gold {},   pred {2}      row 3: gold {0,2}, pred {}
        let gold = vec![vec![0, 1], vec![1], vec![], vec![0, 2]];
        let pred = vec![vec![0, 2], vec![1], vec![2], vec![]];
        let scores = vec![
            vec![0.9, 0.1, 0.8],
            vec![0.2, 0.7, 0.1],
            vec![0.1, 0.2, 0.6],
            vec![0.4, 0.3, 0.35],
        ];
        let m = evaluate(&gold, &pred, &scores, 2);
        // TP = 2 (0 in row 0, 1 in row 1); predicted 4; gold 5.
        close(m.micro_precision, 2.0 / 4.0);
        close(m.micro_recall, 2.0 / 5.0);
        close(m.micro_f1, 4.0 / 9.0);
        // label 0: tp1 pred1 sup2 -> f1 2/3; label 1: tp1 pred1 sup2 -> 2/3; label 2: tp0 -> 0
        close(m.macro_f1, (2.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0);
        // rows: 2*1/4, 1, 0 (gold empty, pred not), 0
        close(m.samples_f1, (0.5 + 1.0 + 0.0 + 0.0) / 4.0);
        // top-2: row0 {0,2}: 1 hit; row1 {1,0}: 1; row2 {2,1}: 0; row3 {0,2}: 2
        close(m.precision_at_k, (0.5 + 0.5 + 0.0 + 1.0) / 4.0);
        // recall@2 over rows with gold: 1/2, 1/1, 2/2
        close(m.recall_at_k, (0.5 + 1.0 + 1.0) / 3.0);
        assert_eq!(m.per_tag.len(), 3);
        assert_eq!(
            (
                m.per_tag[2].support,
                m.per_tag[2].predicted,
                m.per_tag[2].true_positives
            ),
            (1, 2, 0)
        );
    }

    #[test]
    fn empty_gold_and_empty_prediction() {
        let m = evaluate(&[vec![]], &[vec![]], &[vec![0.1, 0.2]], 1);
        close(m.micro_f1, 0.0);
        close(m.samples_f1, 1.0);
        close(m.macro_f1, 0.0);
        close(m.precision_at_k, 0.0);
        close(m.recall_at_k, 0.0);
        assert!(m.per_tag.is_empty());
    }

    #[test]
    fn unscored_gold_labels_count_as_missed() {
        // Label 5 is beyond the 2 scored labels (an unknown held-out tag).
        let m = evaluate(&[vec![0, 5]], &[vec![0]], &[vec![0.9, 0.1]], 1);
        close(m.micro_recall, 0.5);
        close(m.micro_f1, 2.0 / 3.0);
        close(m.recall_at_k, 0.5);
        assert_eq!(
            m.per_tag.iter().map(|t| t.label).collect::<Vec<_>>(),
            [0, 5]
        );
    }

    #[test]
    fn perfect_predictions() {
        let gold = vec![vec![0], vec![1, 2]];
        let m = evaluate(&gold, &gold, &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.9]], 1);
        close(m.micro_f1, 1.0);
        close(m.macro_f1, 1.0);
        close(m.samples_f1, 1.0);
        close(m.precision_at_k, 1.0);
        close(m.recall_at_k, 0.75);
    }

    #[test]
    fn no_rows() {
        let m = evaluate(&[], &[], &[], 3);
        assert_eq!(m.n, 0);
        close(m.micro_f1, 0.0);
    }

    #[test]
    fn top_k_ties_and_nan() {
        assert_eq!(top_k(&[0.5, f32::NAN, 0.5, 0.7], 3), [3, 0, 2]);
    }

    #[test]
    fn f1_from_counts_scores_agreeing_on_nothing_as_one() {
        close(micro_f1_from_counts(0, 0, 0), 1.0);
        close(micro_f1_from_counts(1, 0, 1), 2.0 / 3.0);
        close(micro_f1_from_counts(0, 2, 0), 0.0);
    }

    #[test]
    fn top_gold_takes_as_many_labels_as_each_row_has() {
        let scores = vec![
            vec![0.6, 0.9, 0.1],
            vec![0.1, 0.2, 0.3],
            vec![0.5, 0.5, 0.0],
        ];
        let gold = vec![
            vec![true, false, true],
            vec![false, false, false],
            vec![false, true, false],
        ];
        // By score. Row 0: gold {0, 2}, top-2 {1, 0}: TP 1, FP 1, FN 1. Row 1: no gold, so
        // k = 1, top-1 {2}: FP 1. Row 2: gold {1}, the 0.5/0.5 tie goes to the lower index,
        // {0}: FP 1, FN 1. TP 1, FP 3, FN 2.
        close(micro_f1_top_gold(&scores, &gold, None), 2.0 / 7.0);
        // A fixed order [1, 0, 2] for every row. Row 0 {1, 0}: TP 1, FP 1, FN 1. Row 1 {1}:
        // FP 1. Row 2 {1}: TP 1. TP 2, FP 2, FN 1.
        close(
            micro_f1_top_gold(&scores, &gold, Some(&[1, 0, 2])),
            4.0 / 7.0,
        );
        close(micro_f1_top_gold(&[], &[], None), 1.0);
    }
}
