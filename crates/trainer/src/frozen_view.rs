//! The frozen view: what the untouched base encoder says about each review, as a third
//! first stage beside the lexical branch's stems and character n-grams.
//!
//! Each review's vector is the base's (no LoRA) token mean of its last layer, read with
//! the encoder's caps (tokens per review, reviews per product), standardised per dimension
//! with the training reviews' mean and deviation. A product's logit for tag `t` is the
//! log-mean-exp of its reviews' logits `b_t + w_t · x_r`, the pooling the encoder's head
//! uses. The weights are fitted by full-batch Adam from zero (biases from the tag
//! frequencies) for a fixed, small number of iterations with an L2 penalty: stopping
//! early is the regulariser.
//!
//! The view needs no training of the encoder, so, unlike the fine-tuned encoder, it can be
//! refitted per fold and give the second stage honest out-of-fold logits: that is how the
//! semantic signal enters the second stage beside the lexical one.

use lamoda_model::burn::tensor::{Tensor, TensorData};

use crate::lexical::{frequency_logit, sigmoid};
use crate::moments::Moments;
use crate::train::{TrainError, to_vec};

/// One product's review vectors, each of the encoder's hidden width.
pub type ProductVectors = Vec<Vec<f32>>;

/// Per-review logits are clamped to ±this before log-mean-exp pooling.
const LOGIT_BOUND: f64 = 30.0;

/// How a [`FrozenView`] is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrozenFit {
    /// Adam iterations over all training products.
    pub iterations: usize,
    /// Adam's step size.
    pub lr: f64,
    /// L2 penalty on the weights (added to the gradient).
    pub weight_decay: f64,
}

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
    /// Fit on the products `rows` of `vectors` and their 0/1 `targets` (`n_tags` each).
    /// Products without reviews are left out of the fit.
    pub fn fit(
        vectors: &[ProductVectors],
        targets: &[Vec<f32>],
        rows: &[usize],
        n_tags: usize,
        fit: &FrozenFit,
    ) -> Result<Self, TrainError> {
        let used: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| !vectors[i].is_empty())
            .collect();
        let dim = used
            .first()
            .and_then(|&i| vectors[i].first())
            .map_or(0, Vec::len);
        if used.is_empty() || dim == 0 {
            return Err(TrainError::Lexical {
                path: "<frozen view>".into(),
                reason: "no training product has a review vector".into(),
            });
        }
        // Standardisation over every training review.
        let mut moments = Moments::new(dim);
        for &i in &used {
            for v in &vectors[i] {
                if v.len() != dim {
                    return Err(TrainError::Lexical {
                        path: "<frozen view>".into(),
                        reason: format!(
                            "product {i}: a review vector of {} values, expected {dim}",
                            v.len()
                        ),
                    });
                }
                moments.add(v);
            }
        }
        let n_reviews = moments.count();
        let (mean, std) = (moments.mean(), moments.std(1e-6));
        let mut x = Vec::with_capacity(n_reviews * dim);
        let mut owner = Vec::with_capacity(n_reviews);
        for (p, &i) in used.iter().enumerate() {
            for v in &vectors[i] {
                x.extend(v.iter().zip(&mean).zip(&std).map(|((x, m), s)| (x - m) / s));
                owner.push(p);
            }
        }
        let device = lamoda_model::default_device();
        let x = Tensor::<2>::from_data(TensorData::new(x, [n_reviews, dim]), &device);
        let xt = x.clone().transpose();
        let y: Vec<Vec<f64>> = used
            .iter()
            .map(|&i| {
                (0..n_tags)
                    .map(|t| f64::from(targets[i].get(t).copied().unwrap_or(0.0)))
                    .collect()
            })
            .collect();
        let n_products = used.len() as f64;
        // Parameters: w `[dim, n_tags]` row-major (so x · w gives per-review logits), b.
        let mut w = vec![0f64; dim * n_tags];
        let mut b: Vec<f64> = (0..n_tags)
            .map(|t| frequency_logit(y.iter().map(|row| row[t]).sum::<f64>() / n_products, 1e-3))
            .collect();
        let mut adam_w = Adam::new(w.len());
        let mut adam_b = Adam::new(n_tags);
        let mut s = vec![0f64; n_reviews * n_tags];
        let mut gs = vec![0f32; n_reviews * n_tags];
        for step in 1..=fit.iterations {
            let wt = Tensor::<2>::from_data(
                TensorData::new(w.iter().map(|&v| v as f32).collect(), [dim, n_tags]),
                &device,
            );
            let z = to_vec(x.clone().matmul(wt))?;
            for (r, row) in z.chunks_exact(n_tags).enumerate() {
                for (t, &v) in row.iter().enumerate() {
                    s[r * n_tags + t] = (f64::from(v) + b[t]).clamp(-LOGIT_BOUND, LOGIT_BOUND);
                }
            }
            let mut gb = vec![0f64; n_tags];
            let mut start = 0;
            while start < n_reviews {
                let p = owner[start];
                let end = start + owner[start..].iter().take_while(|&&o| o == p).count();
                for t in 0..n_tags {
                    let col = (start..end).map(|r| s[r * n_tags + t]);
                    // A product's reviews are never an empty run.
                    let Some((max, den)) = max_and_exp_sum(col) else {
                        continue;
                    };
                    let logit = max + (den / (end - start) as f64).ln();
                    let g = (sigmoid(logit) - y[p][t]) / n_products;
                    for r in start..end {
                        let a = (s[r * n_tags + t] - max).exp() / den;
                        gs[r * n_tags + t] = (a * g) as f32;
                        gb[t] += a * g;
                    }
                }
                start = end;
            }
            let g =
                Tensor::<2>::from_data(TensorData::new(gs.clone(), [n_reviews, n_tags]), &device);
            let gw: Vec<f64> = to_vec(xt.clone().matmul(g))?
                .into_iter()
                .zip(&w)
                .map(|(g, &w)| f64::from(g) + fit.weight_decay * w)
                .collect();
            adam_w.step(&mut w, &gw, fit.lr, step);
            adam_b.step(&mut b, &gb, fit.lr, step);
        }
        Ok(Self {
            mean,
            std,
            weights: (0..n_tags)
                .map(|t| (0..dim).map(|j| w[j * n_tags + t] as f32).collect())
                .collect(),
            bias: b.into_iter().map(|v| v as f32).collect(),
        })
    }

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
fn log_mean_exp(z: &[f64]) -> Option<f64> {
    let (max, den) = max_and_exp_sum(z.iter().copied())?;
    Some(max + (den / z.len() as f64).ln())
}

/// The largest value `m` and `Σ e^(z − m)`: the overflow-safe parts of a log-sum-exp,
/// whose softmax weights are `e^(z − m) / Σ`. `None` for no values.
fn max_and_exp_sum(z: impl Iterator<Item = f64> + Clone) -> Option<(f64, f64)> {
    let max = z.clone().reduce(f64::max)?;
    Some((max, z.map(|v| (v - max).exp()).sum()))
}

/// Adam's moments for one parameter vector (β₁ 0.9, β₂ 0.999, ε 1e-8, bias-corrected).
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One update of `params` by gradient `grad` at 1-based `step`.
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64, step: usize) {
        let (b1, b2) = (0.9f64, 0.999f64);
        let c1 = 1.0 - b1.powi(step as i32);
        let c2 = 1.0 - b2.powi(step as i32);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products whose first review dimension says whether tag 0 is on; tag 1 is noise.
    fn planted(n: usize) -> (Vec<ProductVectors>, Vec<Vec<f32>>) {
        let mut vectors = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let on = i % 3 == 0;
            let reviews = 1 + i % 4;
            let product: ProductVectors = (0..reviews)
                .map(|r| {
                    let signal = if on && r == 0 { 2.0 } else { -0.5 };
                    vec![signal, ((i * 7 + r * 3) % 5) as f32 * 0.1, (i % 2) as f32]
                })
                .collect();
            vectors.push(product);
            targets.push(vec![if on { 1.0 } else { 0.0 }, (i % 2) as f32]);
        }
        (vectors, targets)
    }

    fn fit_of(iterations: usize) -> FrozenFit {
        FrozenFit {
            iterations,
            lr: 0.05,
            weight_decay: 1e-3,
        }
    }

    #[test]
    fn learns_a_tag_one_review_signals() {
        let (vectors, targets) = planted(60);
        let rows: Vec<usize> = (0..60).collect();
        let view = FrozenView::fit(&vectors, &targets, &rows, 2, &fit_of(200)).expect("fit");
        assert_eq!(view.dim(), 3);
        for (v, t) in vectors.iter().zip(&targets) {
            let z = view.logits(v);
            // Tag 0 is on exactly when one review carries the signal, however many
            // reviews dilute it: the log-mean-exp pooling keeps it.
            assert_eq!(z[0] > 0.0, t[0] > 0.5, "logits {z:?} for targets {t:?}");
            assert_eq!(z[1] > 0.0, t[1] > 0.5, "logits {z:?} for targets {t:?}");
        }
    }

    #[test]
    fn zero_iterations_give_the_frequency_prior() {
        let (vectors, targets) = planted(30);
        let rows: Vec<usize> = (0..30).collect();
        let view = FrozenView::fit(&vectors, &targets, &rows, 2, &fit_of(0)).expect("fit");
        let logit = |f: f64| (f / (1.0 - f)).ln();
        assert!((f64::from(view.bias[0]) - logit(10.0 / 30.0)).abs() < 1e-6);
        assert!((f64::from(view.bias[1]) - logit(15.0 / 30.0)).abs() < 1e-6);
        // With zero weights every product gets the prior, reviews or none.
        assert!((view.logits(&vectors[4])[0] - f64::from(view.bias[0])).abs() < 1e-9);
        assert!((view.logits(&[])[0] - f64::from(view.bias[0])).abs() < 1e-9);
    }

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
    }

    #[test]
    fn refuses_products_without_vectors_or_of_mixed_width() {
        let targets = vec![vec![1.0], vec![0.0]];
        let err = FrozenView::fit(&[vec![], vec![]], &targets, &[0, 1], 1, &fit_of(5))
            .expect_err("no vectors");
        assert!(
            err.to_string()
                .contains("no training product has a review vector"),
            "{err}"
        );
        let mixed = vec![vec![vec![1.0, 2.0]], vec![vec![1.0]]];
        let err =
            FrozenView::fit(&mixed, &targets, &[0, 1], 1, &fit_of(5)).expect_err("mixed widths");
        assert!(
            err.to_string()
                .contains("product 1: a review vector of 1 values, expected 2"),
            "{err}"
        );
    }
}
