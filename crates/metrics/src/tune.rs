//! Choosing decoding thresholds on labelled rows: one global threshold from a grid, or one
//! per tag.

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack};

use crate::evaluate::{evaluate_probabilities, gold_indices};

/// Each row's gold tags as a 0/1 vector in pool order (tags outside the pool dropped).
pub fn gold_vectors(pool: &EtalonPool, rows: &[&ReviewStack]) -> Vec<Vec<f32>> {
    gold_indices(pool, rows)
        .into_iter()
        .map(|tags| {
            let mut v = vec![0f32; pool.len()];
            tags.into_iter()
                .filter(|&i| i < pool.len())
                .for_each(|i| v[i] = 1.0);
            v
        })
        .collect()
}

/// The global thresholds [`tune_global_threshold`] tries: 0.20, 0.25, …, 0.50.
pub const GLOBAL_THRESHOLDS: [f32; 7] = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5];

/// One threshold for every tag: the one of [`GLOBAL_THRESHOLDS`] with the best micro-F1 of
/// `probs` on `rows` (ties: the higher threshold). A single number chosen on dev is only
/// slightly optimistic; the F1-optimal threshold of calibrated probabilities is about half
/// the F1 reached, which is why the grid stops at 0.5.
pub fn tune_global_threshold(probs: &[Vec<f32>], pool: &EtalonPool, rows: &[&ReviewStack]) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for &t in GLOBAL_THRESHOLDS.iter().rev() {
        let decoding = DecodeConfig {
            threshold: t,
            ..DecodeConfig::default()
        };
        let f1 = evaluate_probabilities(probs, pool, rows, &decoding, 1).micro_f1;
        if f1 > best.0 + 1e-12 {
            best = (f1, t);
        }
    }
    best.1
}

/// Per tag, the threshold in 0.05..=0.95 (step 0.05) with the best F1 of that tag alone on
/// `probs` against 0/1 `gold` (ties: the one closest to 0.5; a tag never gold keeps 0.5).
pub fn tune_thresholds(probs: &[Vec<f32>], gold: &[Vec<f32>]) -> Vec<f32> {
    let n_tags = probs.first().map_or(0, Vec::len);
    (0..n_tags)
        .map(|t| {
            let mut best = (f64::NEG_INFINITY, 0.5f32);
            for step in 1..=19 {
                let th = step as f32 * 0.05;
                let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
                for (p, g) in probs.iter().zip(gold) {
                    match (p[t] >= th, g[t] > 0.5) {
                        (true, true) => tp += 1,
                        (true, false) => fp += 1,
                        (false, true) => fn_ += 1,
                        _ => {}
                    }
                }
                if tp + fn_ == 0 {
                    return 0.5;
                }
                let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_).max(1) as f64;
                let closer = (th - 0.5).abs() < (best.1 - 0.5).abs();
                if f1 > best.0 + 1e-12 || ((f1 - best.0).abs() <= 1e-12 && closer) {
                    best = (f1, th);
                }
            }
            best.1
        })
        .collect()
}
