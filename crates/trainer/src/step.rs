//! The pieces of one optimisation step: the loss, the learning-rate schedule, and the
//! review statistics the head is standardised with.

use lamoda_inference::frozen::ProductVectors;
use lamoda_model::burn::tensor::Tensor;
use lamoda_model::burn::tensor::activation::sigmoid;

use crate::moments::Moments;
use crate::train_config::{Loss, TrainConfig};

/// Per-dimension mean and standard deviation of every review vector of `products` (the
/// base's own vectors of the training rows, for the head's standardisation), summed in
/// product order, each product's reviews in their order.
pub fn review_statistics(products: &[ProductVectors], hidden: usize) -> (Vec<f32>, Vec<f32>) {
    let mut moments = Moments::new(hidden);
    for review in products.iter().flatten() {
        moments.add(review);
    }
    (moments.mean(), moments.std(0.0))
}

/// The configured loss of `logits` against 0/1 `targets`, averaged over products × tags.
pub fn loss(kind: Loss, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    match kind {
        Loss::Bce => lamoda_model::bce_with_logits(logits, targets),
        Loss::Focal { gamma } => {
            let x = logits;
            let y = targets;
            let bce = x.clone().clamp_min(0.0) - x.clone() * y.clone()
                + x.clone().abs().neg().exp().add_scalar(1.0).log();
            let p = sigmoid(x);
            let pt = p.clone() * y.clone() + p.neg().add_scalar(1.0) * y.neg().add_scalar(1.0);
            let w = pt.neg().add_scalar(1.0).clamp_min(0.0).powf_scalar(gamma);
            (bce * w).mean()
        }
    }
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over the first
/// `warmup_ratio · total` steps, then linear decay to 0.
pub fn learning_rate(config: &TrainConfig, step: usize, total: usize) -> f64 {
    let total = total.max(1) as f64;
    let warmup = (config.warmup_ratio * total).round();
    let s = step as f64 + 1.0;
    if warmup > 0.0 && s <= warmup {
        config.lr * s / warmup
    } else {
        config.lr * ((total - s + 1.0) / (total - warmup).max(1.0)).clamp(0.0, 1.0)
    }
}
