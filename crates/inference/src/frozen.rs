//! The frozen view at run time: what the untouched base encoder says about each review,
//! read by the lexical branch's second stage beside the stems and character n-grams.
//!
//! Each review's vector is the base's (no LoRA) token mean of its last layer, read with
//! the adapter's caps, standardised per dimension with the training reviews' mean and
//! deviation. A product's logit for tag `t` is the log-mean-exp of its reviews' logits
//! `b_t + w_t · x_r`, the pooling the encoder's head uses. The trainer fits it
//! (`lamoda_trainer::frozen_fit`).

/// One product's review vectors, each of the encoder's hidden width.
pub type ProductVectors = Vec<Vec<f32>>;

/// Per-review logits are clamped to ±this before log-mean-exp pooling.
pub const LOGIT_BOUND: f64 = 30.0;

/// A fitted frozen view: standardisation and one log-mean-exp-pooled regression per tag.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenView {
    /// Per-dimension mean of the training reviews.
    pub mean: Vec<f32>,
    /// Per-dimension divisor (standard deviation + 1e-6).
    pub std: Vec<f32>,
    /// Weights `[tag][dimension]`.
    pub weights: Vec<Vec<f32>>,
    /// Intercept per tag.
    pub bias: Vec<f32>,
}

impl FrozenView {
    /// The hidden width it reads.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The logit per tag of a product with these review vectors (the intercepts when it
    /// has none).
    pub fn logits(&self, reviews: &[Vec<f32>]) -> Vec<f64> {
        let x: Vec<Vec<f64>> = reviews
            .iter()
            .map(|v| {
                v.iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .map(|((&x, &m), &s)| f64::from((x - m) / s))
                    .collect()
            })
            .collect();
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, &b)| {
                let z: Vec<f64> = x
                    .iter()
                    .map(|x| {
                        let dot: f64 = x.iter().zip(w).map(|(x, &w)| x * f64::from(w)).sum();
                        (f64::from(b) + dot).clamp(-LOGIT_BOUND, LOGIT_BOUND)
                    })
                    .collect();
                log_mean_exp(&z).unwrap_or(f64::from(b))
            })
            .collect()
    }
}

/// `log(mean(e^z))`, or `None` for no values.
pub fn log_mean_exp(z: &[f64]) -> Option<f64> {
    let (max, den) = max_and_exp_sum(z.iter().copied())?;
    Some(max + (den / z.len() as f64).ln())
}

/// The largest value `m` and `Σ e^(z − m)`: the overflow-safe parts of a log-sum-exp,
/// whose softmax weights are `e^(z − m) / Σ`. `None` for no values.
pub fn max_and_exp_sum(z: impl Iterator<Item = f64> + Clone) -> Option<(f64, f64)> {
    let max = z.clone().reduce(f64::max)?;
    Some((max, z.map(|v| (v - max).exp()).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_are_the_log_mean_exp_of_review_logits() {
        let view = FrozenView {
            mean: vec![1.0, 0.0],
            std: vec![2.0, 1.0],
            weights: vec![vec![1.0, -1.0]],
            bias: vec![0.5],
        };
        let reviews = vec![vec![3.0, 1.0], vec![1.0, -2.0]];
        // Standardised: [1, 1] → 0.5 + 0 = 0.5; [0, −2] → 0.5 + 2 = 2.5.
        let expected = ((0.5f64.exp() + 2.5f64.exp()) / 2.0).ln();
        assert!((view.logits(&reviews)[0] - expected).abs() < 1e-9);
        // No reviews: the intercept.
        assert!((view.logits(&[])[0] - 0.5).abs() < 1e-9);
    }
}
