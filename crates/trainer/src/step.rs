//! The pieces of one optimisation step: the loss, the learning-rate schedule, and the
//! review statistics the head is standardised with.

use lamoda_inference::forward::{FeatureCache, review_vectors, to_vec};
use lamoda_model::TagModel;
use lamoda_model::burn::tensor::activation::sigmoid;
use lamoda_model::burn::tensor::{Device, Tensor};

use crate::error::TrainError;
use crate::moments::Moments;
use crate::train_config::{Loss, TrainConfig};

/// Per-dimension mean and standard deviation of the review vectors of `products`, computed
/// in chunks on the plain device (for the head's standardisation).
pub fn review_statistics(
    model: &TagModel,
    cache: &FeatureCache,
    products: &[usize],
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let h = cache.hidden;
    let mut moments = Moments::new(h);
    for chunk in products.chunks(64) {
        let (vectors, _) = review_vectors(&model.encoder, cache, chunk, device);
        for row in to_vec(vectors)?.chunks(h) {
            moments.add(row);
        }
    }
    Ok((moments.mean(), moments.std(0.0)))
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
