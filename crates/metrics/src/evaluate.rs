//! Scoring a category's predictions against gold rows, beside the prior.

use serde::Serialize;

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack, decode};

use crate::metrics::{Metrics, evaluate};
use crate::prior::FrequencyPrior;

/// Gold tags of each row as label indices. Tags outside the pool get indices
/// from `pool.len()` on (one per distinct unknown tag) so they count as missed.
pub fn gold_indices(pool: &EtalonPool, rows: &[&ReviewStack]) -> Vec<Vec<usize>> {
    let mut unknown: Vec<&str> = Vec::new();
    rows.iter()
        .map(|row| {
            row.tags
                .iter()
                .map(|tag| match pool.index_of(tag) {
                    Some(i) => i,
                    None => {
                        let j = unknown.iter().position(|u| u == tag).unwrap_or_else(|| {
                            unknown.push(tag);
                            unknown.len() - 1
                        });
                        pool.len() + j
                    }
                })
                .collect()
        })
        .collect()
}

/// A model's scores on a category beside the prior's.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryReport {
    /// The model's metrics.
    pub model: Metrics,
    /// The frequency prior's metrics on the same rows.
    pub prior: Metrics,
}

/// Metrics of the prior on `rows`.
pub fn evaluate_prior(
    prior: &FrequencyPrior,
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    k: usize,
) -> Metrics {
    let gold = gold_indices(pool, rows);
    let predicted = vec![prior.predict(); rows.len()];
    let scores = vec![prior.frequencies.clone(); rows.len()];
    evaluate(&gold, &predicted, &scores, k)
}

/// Metrics of per-row probabilities (pool order), decoded with `decoding`.
pub fn evaluate_probabilities(
    probabilities: &[Vec<f32>],
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    decoding: &DecodeConfig,
    k: usize,
) -> Metrics {
    let gold = gold_indices(pool, rows);
    let predicted: Vec<Vec<usize>> = probabilities
        .iter()
        .map(|p| {
            decode(p, pool, decoding)
                .tags
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    evaluate(&gold, &predicted, probabilities, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_data::Category;

    #[test]
    fn unknown_gold_tags_get_distinct_indices_past_the_pool() {
        let pool = EtalonPool::new(Category::Bags, vec!["a".into()]).expect("pool");
        let rows = [
            ReviewStack {
                row: 1,
                reviews: vec!["r".into()],
                tags: vec!["x".into(), "a".into()],
            },
            ReviewStack {
                row: 2,
                reviews: vec!["r".into()],
                tags: vec!["y".into(), "x".into()],
            },
        ];
        let refs: Vec<&ReviewStack> = rows.iter().collect();
        assert_eq!(gold_indices(&pool, &refs), [vec![1, 0], vec![2, 1]]);
    }

    #[test]
    fn prior_on_its_own_training_rows() {
        let pool = EtalonPool::new(Category::Bags, vec!["a".into(), "b".into()]).expect("pool");
        let rows = [
            ReviewStack {
                row: 1,
                reviews: vec!["r".into()],
                tags: vec!["a".into()],
            },
            ReviewStack {
                row: 2,
                reviews: vec!["r".into()],
                tags: vec!["a".into(), "b".into()],
            },
            ReviewStack {
                row: 3,
                reviews: vec!["r".into()],
                tags: vec!["b".into()],
            },
        ];
        let refs: Vec<&ReviewStack> = rows.iter().collect();
        let prior = FrequencyPrior::fit(&pool, refs.iter().copied());
        // k = round(4/3) = 1, tie a/b -> a. TP 2, predicted 3, gold 4.
        let m = evaluate_prior(&prior, &pool, &refs, 1);
        assert!((m.micro_f1 - 4.0 / 7.0).abs() < 1e-12, "{}", m.micro_f1);
    }
}
