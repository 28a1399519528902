//! The careful calibration (`careful.json`): turns an adapter's raw scores into the
//! probability that a careful reader of the reviews would agree with each tag, and says how
//! those probabilities are decoded.
//!
//! The adapters learn from the data set's labels, which a careful reading contradicts about
//! half the time. The calibration is a small logistic model fitted on carefully labelled
//! products the adapter never saw: per tag, from the product's probability and its reviews'
//! own ones (the evidence), with a bias and a slope of its own per tag (a tag the noisy
//! labels over-use gets a low bias). Everything it reads comes from one scoring pass
//! ([`crate::Scores`]), so it costs no encoder work.

use lamoda_data::{DecodeConfig, EtalonPool, decode_eligible};
use serde::{Deserialize, Serialize};

/// `careful.json`'s format tag.
pub const CAREFUL_FORMAT: &str = "lamoda-careful/1";

/// The features the calibration reads per tag, in order (see [`features`]).
pub const FEATURES: [&str; 5] = [
    "product_logit",
    "max_review_logit",
    "log1p_mentions",
    "mention_share",
    "log_reviews",
];

/// Logits are clipped to ±this, so that a probability of exactly 0 or 1 stays finite.
pub const LOGIT_CLIP: f32 = 8.0;

/// One category's careful calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarefulCalibration {
    /// [`CAREFUL_FORMAT`].
    pub format: String,
    /// The pool's tags, in output order.
    pub tags: Vec<String>,
    /// The feature names, [`FEATURES`].
    pub features: Vec<String>,
    /// A review supports a tag when its own raw probability reaches this (the mentions
    /// features count such reviews).
    pub review_threshold: f32,
    /// The shared weights, one per feature.
    pub weights: Vec<f32>,
    /// The shared intercept.
    pub bias: f32,
    /// Each tag's own intercept, added to the shared one.
    pub tag_bias: Vec<f32>,
    /// Each tag's own weight on `product_logit`, added to the shared one.
    pub tag_slope: Vec<f32>,
    /// A tag is shown when its calibrated probability reaches this.
    pub threshold: f32,
    /// A tag is shown only when at least this many reviews support it (0: no rule).
    pub min_mentions: usize,
    /// When fewer tags pass, the most probable fill up to this many (0: an answer may hold
    /// no tag at all, when no review supports one).
    pub min_tags: usize,
    /// How many careful products it was fitted on.
    pub fitted_on: usize,
}

/// A tag's features from one product's raw scores: `product` is its probability for the
/// product, `reviews` its probability for each read review alone.
pub fn features(product: f32, reviews: &[f32], review_threshold: f32) -> [f32; 5] {
    let max = reviews.iter().copied().fold(0.0f32, f32::max);
    let mentions = reviews.iter().filter(|&&p| p >= review_threshold).count();
    let n = reviews.len().max(1) as f32;
    [
        logit(product),
        logit(max),
        (mentions as f32).ln_1p(),
        mentions as f32 / n,
        n.ln(),
    ]
}

/// `ln(p / (1 − p))`, clipped to ±[`LOGIT_CLIP`]; NaN maps to −[`LOGIT_CLIP`].
pub fn logit(p: f32) -> f32 {
    if p.is_nan() {
        return -LOGIT_CLIP;
    }
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln().clamp(-LOGIT_CLIP, LOGIT_CLIP)
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl CarefulCalibration {
    /// Checks it against the pool's `tags`; `Err` says what is wrong.
    pub fn validate(&self, tags: &[String]) -> Result<(), String> {
        if self.format != CAREFUL_FORMAT {
            return Err(format!(
                "format {:?}, expected {CAREFUL_FORMAT:?}",
                self.format
            ));
        }
        if self.tags != tags {
            return Err(format!(
                "it is for {} tags that differ from the pool's {}",
                self.tags.len(),
                tags.len()
            ));
        }
        if self.features != FEATURES {
            return Err(format!(
                "features {:?}, expected {FEATURES:?}",
                self.features
            ));
        }
        if self.weights.len() != FEATURES.len() {
            return Err(format!(
                "{} weights for {} features",
                self.weights.len(),
                FEATURES.len()
            ));
        }
        if self.tag_bias.len() != tags.len() || self.tag_slope.len() != tags.len() {
            return Err(format!(
                "{} tag biases and {} tag slopes for {} tags",
                self.tag_bias.len(),
                self.tag_slope.len(),
                tags.len()
            ));
        }
        let finite = self
            .weights
            .iter()
            .chain(&self.tag_bias)
            .chain(&self.tag_slope)
            .chain([&self.bias])
            .all(|w| w.is_finite());
        if !finite {
            return Err("a weight is not a finite number".into());
        }
        for (name, t) in [
            ("threshold", self.threshold),
            ("review_threshold", self.review_threshold),
        ] {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("{name} {t} is not within 0..=1"));
            }
        }
        if self.min_tags > crate::tagger::MAX_TAGS {
            return Err(format!("min_tags {} exceeds 6", self.min_tags));
        }
        Ok(())
    }

    /// The decoding rules of calibrated probabilities: its threshold, `min_tags`, at most
    /// [`crate::tagger::MAX_TAGS`].
    pub fn decode_config(&self) -> DecodeConfig {
        DecodeConfig {
            threshold: self.threshold,
            per_tag_thresholds: None,
            min_tags: self.min_tags,
            max_tags: crate::tagger::MAX_TAGS,
        }
    }

    /// The tags (pool indices, most probable first) decoded from calibrated
    /// `probabilities` at `config`, a tag eligible only with `min_mentions` of the
    /// `reviews` (each review's raw probabilities) supporting it: what
    /// [`crate::Tagger::decode`] answers, for the trainer's threshold choice.
    pub fn decode(
        &self,
        pool: &EtalonPool,
        probabilities: &[f32],
        reviews: &[&[f32]],
        config: &DecodeConfig,
    ) -> Vec<usize> {
        let mentions = |t: usize| {
            reviews
                .iter()
                .filter(|r| r.get(t).is_some_and(|&p| p >= self.review_threshold))
                .count()
        };
        decode_eligible(probabilities, pool, config, |t| {
            mentions(t) >= self.min_mentions
        })
        .tags
        .into_iter()
        .map(|(t, _)| t)
        .collect()
    }

    /// The calibrated logit of tag `tag` from its [`features`].
    pub fn logit_of(&self, tag: usize, x: &[f32; 5]) -> f32 {
        let shared: f32 = self.weights.iter().zip(x).map(|(w, x)| w * x).sum();
        self.bias + shared + self.tag_bias[tag] + self.tag_slope[tag] * x[0]
    }

    /// Each tag's calibrated probability for one product: `product` holds its raw
    /// probabilities (pool order), `reviews` each read review's own.
    pub fn probabilities(&self, product: &[f32], reviews: &[&[f32]]) -> Vec<f32> {
        (0..product.len().min(self.tags.len()))
            .map(|t| {
                let per_review: Vec<f32> = reviews
                    .iter()
                    .map(|r| r.get(t).copied().unwrap_or(0.0))
                    .collect();
                let x = features(product[t], &per_review, self.review_threshold);
                sigmoid(self.logit_of(t, &x))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration(tags: usize) -> CarefulCalibration {
        CarefulCalibration {
            format: CAREFUL_FORMAT.into(),
            tags: (0..tags).map(|i| format!("t{i}")).collect(),
            features: FEATURES.iter().map(|s| (*s).to_owned()).collect(),
            review_threshold: 0.5,
            weights: vec![1.0, 0.0, 0.0, 0.0, 0.0],
            bias: 0.0,
            tag_bias: vec![0.0; tags],
            tag_slope: vec![0.0; tags],
            threshold: 0.5,
            min_mentions: 0,
            min_tags: 0,
            fitted_on: 10,
        }
    }

    #[test]
    fn features_count_supporting_reviews() {
        let x = features(0.5, &[0.9, 0.2, 0.6, 0.1], 0.5);
        assert!(x[0].abs() < 1e-6);
        assert!((x[1] - (0.9f32 / 0.1).ln()).abs() < 1e-4);
        assert!((x[2] - 3f32.ln()).abs() < 1e-6);
        assert!((x[3] - 0.5).abs() < 1e-6);
        assert!((x[4] - 4f32.ln()).abs() < 1e-6);
        // No review: no support, and the logits stay finite.
        let x = features(1.0, &[], 0.5);
        assert_eq!(x[0], LOGIT_CLIP);
        assert_eq!(x[1], -LOGIT_CLIP);
        assert_eq!(x[2], 0.0);
    }

    #[test]
    fn identity_weights_give_back_the_raw_probability_and_tag_bias_shifts_it() {
        let mut c = calibration(2);
        let p = c.probabilities(&[0.8, 0.3], &[&[0.9, 0.1]]);
        assert!(
            (p[0] - 0.8).abs() < 1e-5 && (p[1] - 0.3).abs() < 1e-5,
            "{p:?}"
        );
        c.tag_bias[1] = -20.0;
        let p = c.probabilities(&[0.8, 0.3], &[&[0.9, 0.1]]);
        assert!(p[1] < 1e-6, "{p:?}");
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let tags: Vec<String> = vec!["t0".into(), "t1".into()];
        assert!(calibration(2).validate(&tags).is_ok());
        let mut c = calibration(2);
        c.format = "lamoda-careful/9".into();
        assert!(c.validate(&tags).expect_err("invalid").contains("format"));
        let mut c = calibration(2);
        c.tag_slope.pop();
        assert!(
            c.validate(&tags)
                .expect_err("invalid")
                .contains("tag slopes")
        );
        let mut c = calibration(2);
        c.threshold = 1.5;
        assert!(
            c.validate(&tags)
                .expect_err("invalid")
                .contains("threshold 1.5")
        );
        let mut c = calibration(2);
        c.bias = f32::NAN;
        assert!(c.validate(&tags).expect_err("invalid").contains("finite"));
        assert!(
            calibration(3)
                .validate(&tags)
                .expect_err("3 tags")
                .contains("3 tags")
        );
    }
}
