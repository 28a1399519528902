//! The frequency prior: every product gets the k most frequent tags of its
//! category's training rows, k = round(mean tags per training row).
//!
//! It is the floor every model is compared with: tag frequencies are very
//! skewed (e.g. `Удобные` is on 93 % of shoes), so a model that does not beat
//! this has learned nothing from the reviews.

use serde::{Deserialize, Serialize};

use lamoda_data::{Category, EtalonPool, ReviewStack};

/// A fitted frequency prior of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrequencyPrior {
    /// The category.
    pub category: Category,
    /// How many tags it predicts.
    pub k: usize,
    /// Share of training rows carrying each pool tag (pool order): its "probability".
    pub frequencies: Vec<f32>,
    /// Training rows it was fitted on.
    pub n_train: usize,
}

impl FrequencyPrior {
    /// Fits on `rows`; tags outside the pool are ignored (training data is
    /// validated against its pool before it gets here).
    pub fn fit<'a>(pool: &EtalonPool, rows: impl IntoIterator<Item = &'a ReviewStack>) -> Self {
        let mut counts = vec![0usize; pool.len()];
        let (mut n, mut total_tags) = (0usize, 0usize);
        for row in rows {
            n += 1;
            total_tags += row.tags.len();
            for tag in &row.tags {
                if let Some(i) = pool.index_of(tag) {
                    counts[i] += 1;
                }
            }
        }
        let mean = if n == 0 {
            0.0
        } else {
            total_tags as f64 / n as f64
        };
        FrequencyPrior {
            category: pool.category,
            // round() is half away from zero; at least one tag, at most the pool.
            k: (mean.round() as usize).clamp(1, pool.len().max(1)),
            frequencies: counts
                .iter()
                .map(|&c| if n == 0 { 0.0 } else { c as f32 / n as f32 })
                .collect(),
            n_train: n,
        }
    }

    /// The predicted tag indices: the k most frequent (ties to the earlier pool tag).
    pub fn predict(&self) -> Vec<usize> {
        crate::metrics::top_k(&self.frequencies, self.k)
    }
}

/// The logit of a frequency `f`, clamped into `[eps, 1 − eps]` first so that a tag seen
/// always or never gets a finite intercept.
pub fn frequency_logit(f: f64, eps: f64) -> f64 {
    let p = f.clamp(eps, 1.0 - eps);
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_logit_inverts_the_sigmoid_and_clamps_the_ends() {
        assert_eq!(frequency_logit(0.5, 1e-3), 0.0);
        // ln(0.2 / 0.8) = −ln 4.
        assert!((frequency_logit(0.2, 1e-3) + 4f64.ln()).abs() < 1e-12);
        for f in [0.01, 0.3, 0.9] {
            assert!((1.0 / (1.0 + (-frequency_logit(f, 1e-4)).exp()) - f).abs() < 1e-12);
        }
        // A tag never or always seen gets ±ln((1 − ε) / ε), not an infinity.
        let end = (0.999f64 / 0.001).ln();
        assert!((frequency_logit(0.0, 1e-3) + end).abs() < 1e-9);
        assert!((frequency_logit(1.0, 1e-3) - end).abs() < 1e-9);
    }

    fn stack(tags: &[&str]) -> ReviewStack {
        ReviewStack {
            row: 1,
            reviews: vec!["r".into()],
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn k_is_the_rounded_mean_and_tags_the_most_frequent() {
        let pool = EtalonPool::new(Category::Bags, vec!["a".into(), "b".into(), "c".into()])
            .expect("pool");
        // mean tags = (2 + 2 + 1 + 1) / 4 = 1.5 -> k = 2
        let rows = [
            stack(&["c", "b"]),
            stack(&["c", "b"]),
            stack(&["c"]),
            stack(&["a"]),
        ];
        let prior = FrequencyPrior::fit(&pool, &rows);
        assert_eq!(prior.k, 2);
        assert_eq!(prior.frequencies, [0.25, 0.5, 0.75]);
        assert_eq!(prior.predict(), [2, 1]);
    }

    #[test]
    fn empty_training_set_still_predicts_one_tag() {
        let pool = EtalonPool::new(Category::Bags, vec!["a".into()]).expect("pool");
        let prior = FrequencyPrior::fit(&pool, &[]);
        assert_eq!((prior.k, prior.predict()), (1, vec![0]));
    }
}
