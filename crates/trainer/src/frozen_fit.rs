//! Fitting the frozen view ([`lamoda_inference::frozen`]): one log-mean-exp-pooled
//! regression per tag over the base encoder's standardised review vectors, by full-batch
//! Adam from zero (biases from the tag frequencies) for a fixed, small number of
//! iterations with an L2 penalty: stopping early is the regulariser.
//!
//! The view needs no training of the encoder, so, unlike the fine-tuned encoder, it can be
//! refitted per fold and give the second stage honest out-of-fold logits: that is how the
//! semantic signal enters the second stage beside the lexical one.

use lamoda_inference::forward::to_vec;
use lamoda_inference::frozen::{FrozenView, LOGIT_BOUND, ProductVectors, max_and_exp_sum};
use lamoda_inference::lexical::sigmoid;
use lamoda_metrics::prior::frequency_logit;
use lamoda_model::burn::tensor::{Tensor, TensorData};

use crate::error::TrainError;
use crate::moments::Moments;

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

/// Fits a [`FrozenView`] on the products `rows` of `vectors` and their 0/1 `targets` (`n_tags` each).
/// Products without reviews are left out of the fit.
pub fn fit_frozen_view(
    vectors: &[ProductVectors],
    targets: &[Vec<f32>],
    rows: &[usize],
    n_tags: usize,
    fit: &FrozenFit,
) -> Result<FrozenView, TrainError> {
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
    let problem = Problem {
        x: &x,
        xt: &xt,
        owner: &owner,
        y: &y,
        n_tags,
        weight_decay: fit.weight_decay,
    };
    for step in 1..=fit.iterations {
        let (gw, gb) = problem.gradient(&w, &b)?;
        adam_w.step(&mut w, &gw, fit.lr, step);
        adam_b.step(&mut b, &gb, fit.lr, step);
    }
    Ok(FrozenView {
        mean,
        std,
        weights: (0..n_tags)
            .map(|t| (0..dim).map(|j| w[j * n_tags + t] as f32).collect())
            .collect(),
        bias: b.into_iter().map(|v| v as f32).collect(),
    })
}

/// The frozen view's training problem: standardised review vectors `x` `[reviews, dim]`
/// (and `xt`, its transpose), each review's product (`owner`, products in runs), the
/// products' 0/1 targets `y`, and the L2 penalty. Its loss is the mean over products of the
/// summed binary cross-entropy of each tag's log-mean-exp-pooled logit, plus
/// `½ · weight_decay · ‖w‖²`.
struct Problem<'a> {
    x: &'a Tensor<2>,
    xt: &'a Tensor<2>,
    owner: &'a [usize],
    y: &'a [Vec<f64>],
    n_tags: usize,
    weight_decay: f64,
}

impl Problem<'_> {
    /// The loss's gradient in the weights `w` (`[dim, n_tags]`, row-major) and the
    /// intercepts `b`, derived by hand: for product `p` and tag `t`, the pooled logit's
    /// derivative in review `r`'s logit is its softmax weight within the product.
    fn gradient(&self, w: &[f64], b: &[f64]) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
        let n_tags = self.n_tags;
        let n_reviews = self.owner.len();
        let dim = w.len() / n_tags.max(1);
        let n_products = self.y.len() as f64;
        let device = lamoda_model::default_device();
        let wt = Tensor::<2>::from_data(
            TensorData::new(w.iter().map(|&v| v as f32).collect(), [dim, n_tags]),
            &device,
        );
        let z = to_vec(self.x.clone().matmul(wt))?;
        let mut s = vec![0f64; n_reviews * n_tags];
        for (r, row) in z.chunks_exact(n_tags).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                s[r * n_tags + t] = (f64::from(v) + b[t]).clamp(-LOGIT_BOUND, LOGIT_BOUND);
            }
        }
        let mut gs = vec![0f32; n_reviews * n_tags];
        let mut gb = vec![0f64; n_tags];
        let mut start = 0;
        while start < n_reviews {
            let p = self.owner[start];
            let end = start + self.owner[start..].iter().take_while(|&&o| o == p).count();
            for t in 0..n_tags {
                let col = (start..end).map(|r| s[r * n_tags + t]);
                // A product's reviews are never an empty run.
                let Some((max, den)) = max_and_exp_sum(col) else {
                    continue;
                };
                let logit = max + (den / (end - start) as f64).ln();
                let g = (sigmoid(logit) - self.y[p][t]) / n_products;
                for r in start..end {
                    let a = (s[r * n_tags + t] - max).exp() / den;
                    gs[r * n_tags + t] = (a * g) as f32;
                    gb[t] += a * g;
                }
            }
            start = end;
        }
        let g = Tensor::<2>::from_data(TensorData::new(gs, [n_reviews, n_tags]), &device);
        let gw: Vec<f64> = to_vec(self.xt.clone().matmul(g))?
            .into_iter()
            .zip(w)
            .map(|(g, &w)| f64::from(g) + self.weight_decay * w)
            .collect();
        Ok((gw, gb))
    }
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
        let view = fit_frozen_view(&vectors, &targets, &rows, 2, &fit_of(200)).expect("fit");
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
        let view = fit_frozen_view(&vectors, &targets, &rows, 2, &fit_of(0)).expect("fit");
        let logit = |f: f64| (f / (1.0 - f)).ln();
        assert!((f64::from(view.bias[0]) - logit(10.0 / 30.0)).abs() < 1e-6);
        assert!((f64::from(view.bias[1]) - logit(15.0 / 30.0)).abs() < 1e-6);
        // With zero weights every product gets the prior, reviews or none.
        assert!((view.logits(&vectors[4])[0] - f64::from(view.bias[0])).abs() < 1e-9);
        assert!((view.logits(&[])[0] - f64::from(view.bias[0])).abs() < 1e-9);
    }

    /// The loss [`Problem::gradient`] differentiates, written out from its definition
    /// (mean over products of the summed BCE of the log-mean-exp-pooled logits, plus the
    /// L2 penalty), in f64 throughout.
    fn reference_loss(
        x: &[Vec<f64>],
        owner: &[usize],
        y: &[Vec<f64>],
        w: &[f64],
        b: &[f64],
        wd: f64,
    ) -> f64 {
        let n_tags = b.len();
        let mut total = 0.0;
        for (p, targets) in y.iter().enumerate() {
            for t in 0..n_tags {
                let z: Vec<f64> = x
                    .iter()
                    .zip(owner)
                    .filter(|(_, o)| **o == p)
                    .map(|(x, _)| {
                        b[t] + x
                            .iter()
                            .enumerate()
                            .map(|(j, v)| v * w[j * n_tags + t])
                            .sum::<f64>()
                    })
                    .collect();
                let pooled = (z.iter().map(|v| v.exp()).sum::<f64>() / z.len() as f64).ln();
                let q = 1.0 / (1.0 + (-pooled).exp());
                total -= targets[t] * q.ln() + (1.0 - targets[t]) * (1.0 - q).ln();
            }
        }
        total / y.len() as f64 + 0.5 * wd * w.iter().map(|v| v * v).sum::<f64>()
    }

    #[test]
    fn the_hand_derived_gradient_matches_finite_differences() {
        // 3 products of 2, 1 and 3 reviews, 2 dimensions, 2 tags.
        let x = vec![
            vec![0.5, -1.0],
            vec![1.5, 0.25],
            vec![-0.75, 1.0],
            vec![0.25, 0.5],
            vec![-1.25, -0.5],
            vec![1.0, 1.0],
        ];
        let owner = [0, 0, 1, 2, 2, 2];
        let y = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]];
        let w = [0.3, -0.2, 0.1, 0.4];
        let b = [-0.1, 0.2];
        let wd = 0.05;
        let device = lamoda_model::default_device();
        let flat: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
        let xs = Tensor::<2>::from_data(TensorData::new(flat, [6, 2]), &device);
        let problem = Problem {
            x: &xs,
            xt: &xs.clone().transpose(),
            owner: &owner,
            y: &y,
            n_tags: 2,
            weight_decay: wd,
        };
        let (gw, gb) = problem.gradient(&w, &b).expect("gradient");
        let h = 1e-6;
        let loss = |w: &[f64], b: &[f64]| reference_loss(&x, &owner, &y, w, b, wd);
        for i in 0..w.len() {
            let (mut up, mut down) = (w.to_vec(), w.to_vec());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, &b) - loss(&down, &b)) / (2.0 * h);
            assert!((fd - gw[i]).abs() < 1e-5, "w[{i}]: {fd} vs {}", gw[i]);
        }
        for t in 0..b.len() {
            let (mut up, mut down) = (b.to_vec(), b.to_vec());
            up[t] += h;
            down[t] -= h;
            let fd = (loss(&w, &up) - loss(&w, &down)) / (2.0 * h);
            assert!((fd - gb[t]).abs() < 1e-5, "b[{t}]: {fd} vs {}", gb[t]);
        }
    }

    #[test]
    fn refuses_products_without_vectors_or_of_mixed_width() {
        let targets = vec![vec![1.0], vec![0.0]];
        let err = fit_frozen_view(&[vec![], vec![]], &targets, &[0, 1], 1, &fit_of(5))
            .expect_err("no vectors");
        assert!(
            err.to_string()
                .contains("no training product has a review vector"),
            "{err}"
        );
        let mixed = vec![vec![vec![1.0, 2.0]], vec![vec![1.0]]];
        let err =
            fit_frozen_view(&mixed, &targets, &[0, 1], 1, &fit_of(5)).expect_err("mixed widths");
        assert!(
            err.to_string()
                .contains("product 1: a review vector of 1 values, expected 2"),
            "{err}"
        );
    }
}
