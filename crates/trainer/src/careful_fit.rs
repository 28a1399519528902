//! Fitting an adapter's careful calibration ([`CarefulCalibration`]) on carefully
//! labelled products the adapter never saw, and choosing its threshold out of fold.
//!
//! The model is one L2-regularised logistic regression per category over every (product,
//! tag) pair: the shared features of [`lamoda_inference::careful::FEATURES`], a bias and a
//! slope on the product logit of each tag's own (penalised like the rest, so a tag with few
//! careful products stays near the shared fit), and an unpenalised intercept. It is fitted
//! by Newton's method with a backtracking line search (at most ~60 parameters, so the
//! Hessian is dense and small). The threshold is chosen on out-of-fold probabilities of
//! the same products: the best micro-F1 among the thresholds whose micro precision reaches
//! `min_precision`, else the most precise one.

use lamoda_data::{EtalonPool, ReviewStack, kfold};
use lamoda_inference::careful::{CAREFUL_FORMAT, FEATURES, features};
use lamoda_inference::format::{CalibrationSettingsRecord, ThresholdMetrics};
use lamoda_inference::{CarefulCalibration, Scores};
use lamoda_metrics::{evaluate, gold_indices};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How a careful calibration is fitted (`configs/calibration.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSettings {
    /// L2 penalty on every weight but the intercept (`λ/2 · ‖w‖²` beside the summed log
    /// loss; 1 is scikit-learn's `C = 1`).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// A review supports a tag when its own raw probability reaches this.
    #[serde(default = "default_review_threshold")]
    pub review_threshold: f32,
    /// Folds of the out-of-fold threshold choice.
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Seed of the folds.
    #[serde(default)]
    pub seed: u64,
    /// The thresholds tried.
    #[serde(default = "default_grid")]
    pub thresholds: Vec<f32>,
    /// The out-of-fold micro precision a threshold must reach to be chosen.
    #[serde(default = "default_min_precision")]
    pub min_precision: f64,
    /// Fill up to this many tags when fewer pass (0: an answer may hold none).
    #[serde(default)]
    pub min_tags: usize,
    /// Show a tag only with this many supporting reviews (0: no rule).
    #[serde(default)]
    pub min_mentions: usize,
}

fn default_l2() -> f64 {
    1.0
}
fn default_review_threshold() -> f32 {
    0.5
}
fn default_folds() -> usize {
    5
}
fn default_grid() -> Vec<f32> {
    (0..=10).map(|i| (20 + 5 * i) as f32 / 100.0).collect()
}
fn default_min_precision() -> f64 {
    0.75
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        Self {
            l2: default_l2(),
            review_threshold: default_review_threshold(),
            folds: default_folds(),
            seed: 0,
            thresholds: default_grid(),
            min_precision: default_min_precision(),
            min_tags: 0,
            min_mentions: 0,
        }
    }
}

impl CalibrationSettings {
    /// The settings as `metrics.json` records them (`careful.calibration.settings`).
    pub fn record(&self) -> CalibrationSettingsRecord {
        CalibrationSettingsRecord {
            l2: self.l2,
            review_threshold: f64::from(self.review_threshold),
            folds: self.folds,
            seed: self.seed,
            thresholds: self.thresholds.iter().copied().map(f64::from).collect(),
            min_precision: self.min_precision,
            min_tags: self.min_tags,
            min_mentions: self.min_mentions,
        }
    }

    /// Checks the settings; `Err` names the field and says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.l2.is_finite() && self.l2 > 0.0) {
            return Err(format!("l2 must be a positive number, got {}", self.l2));
        }
        if !(0.0..=1.0).contains(&self.review_threshold) {
            return Err(format!(
                "review_threshold {} is not within 0..=1",
                self.review_threshold
            ));
        }
        if self.folds < 2 {
            return Err(format!("folds must be at least 2, got {}", self.folds));
        }
        if self.thresholds.is_empty() {
            return Err("thresholds must list at least one threshold".into());
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(0.0..=1.0).contains(*t)) {
            return Err(format!("threshold {t} in thresholds is not within 0..=1"));
        }
        if !(0.0..=1.0).contains(&self.min_precision) {
            return Err(format!(
                "min_precision {} is not within 0..=1",
                self.min_precision
            ));
        }
        if self.min_tags > 6 {
            return Err(format!("min_tags {} exceeds 6", self.min_tags));
        }
        Ok(())
    }
}

/// Out-of-fold figures at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdPoint {
    /// The threshold.
    pub threshold: f32,
    /// Micro precision.
    pub precision: f64,
    /// Micro recall.
    pub recall: f64,
    /// Micro-F1.
    pub micro_f1: f64,
}

impl ThresholdPoint {
    /// The point as `metrics.json` records it (`careful.calibration.out_of_fold`).
    pub fn record(&self) -> ThresholdMetrics {
        ThresholdMetrics {
            threshold: f64::from(self.threshold),
            precision: self.precision,
            recall: self.recall,
            micro_f1: self.micro_f1,
        }
    }
}

/// The result of [`fit_calibration`].
#[derive(Debug, Clone)]
pub struct CalibrationFit {
    /// The calibration, fitted on every product given, at the chosen threshold.
    pub calibration: CarefulCalibration,
    /// The out-of-fold figures at each threshold tried.
    pub out_of_fold: Vec<ThresholdPoint>,
}

/// Fits `pool`'s careful calibration on `rows` (carefully labelled products: `tags` are
/// the careful ones) with the adapter's raw `scores` of the same products, and chooses its
/// threshold out of fold.
pub fn fit_calibration(
    pool: &EtalonPool,
    rows: &[&ReviewStack],
    scores: &[Scores],
    settings: &CalibrationSettings,
) -> Result<CalibrationFit, TrainError> {
    let bad = |reason: String| TrainError::Config {
        path: "configs/calibration.toml".into(),
        field: "calibration",
        value: format!("{settings:?}"),
        reason,
    };
    settings.validate().map_err(bad)?;
    if rows.len() != scores.len() {
        return Err(bad(format!(
            "{} products but {} scores",
            rows.len(),
            scores.len()
        )));
    }
    if rows.len() < settings.folds {
        return Err(bad(format!(
            "{} careful products are too few for {} folds",
            rows.len(),
            settings.folds
        )));
    }
    let n_tags = pool.len();
    if let Some(s) = scores.iter().find(|s| s.product.len() != n_tags) {
        return Err(bad(format!(
            "scores of {} tags for a pool of {n_tags}",
            s.product.len()
        )));
    }
    let gold = gold_indices(pool, rows);
    let design = Design::new(scores, &gold, n_tags, settings.review_threshold);
    let owned: Vec<ReviewStack> = rows.iter().map(|r| (*r).clone()).collect();
    let folds = kfold(&owned, settings.folds, settings.seed);
    let mut oof: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
    for fold in 0..settings.folds {
        let train: Vec<usize> = (0..rows.len()).filter(|&i| folds[i] != fold).collect();
        let held: Vec<usize> = (0..rows.len()).filter(|&i| folds[i] == fold).collect();
        let w = design.fit(&train, settings.l2);
        for &i in &held {
            oof[i] = design.probabilities(&w, i);
        }
    }
    let reviews: Vec<Vec<&[f32]>> = scores
        .iter()
        .map(|s| s.reviews.iter().map(|r| r.scores.as_slice()).collect())
        .collect();
    let w = design.fit(&(0..rows.len()).collect::<Vec<_>>(), settings.l2);
    let mut calibration = design.calibration(&w, pool, settings, rows.len());
    let out_of_fold: Vec<ThresholdPoint> = settings
        .thresholds
        .iter()
        .map(|&threshold| {
            calibration.threshold = threshold;
            let config = calibration.decode_config();
            let predicted: Vec<Vec<usize>> = oof
                .iter()
                .zip(&reviews)
                .map(|(p, r)| calibration.decode(pool, p, r, &config))
                .collect();
            let m = evaluate(&gold, &predicted, &oof, 3);
            ThresholdPoint {
                threshold,
                precision: m.micro_precision,
                recall: m.micro_recall,
                micro_f1: m.micro_f1,
            }
        })
        .collect();
    calibration.threshold = choose_threshold(&out_of_fold, settings.min_precision);
    Ok(CalibrationFit {
        calibration,
        out_of_fold,
    })
}

/// The best micro-F1 among the points whose precision reaches `min_precision` (ties: the
/// lower threshold); when none does, the most precise point (ties: the better F1).
pub fn choose_threshold(points: &[ThresholdPoint], min_precision: f64) -> f32 {
    let precise = points.iter().filter(|p| p.precision >= min_precision).fold(
        None::<&ThresholdPoint>,
        |best, p| match best {
            Some(b) if b.micro_f1 >= p.micro_f1 => Some(b),
            _ => Some(p),
        },
    );
    let chosen = precise.or_else(|| {
        points
            .iter()
            .fold(None::<&ThresholdPoint>, |best, p| match best {
                Some(b) if (b.precision, b.micro_f1) >= (p.precision, p.micro_f1) => Some(b),
                _ => Some(p),
            })
    });
    chosen.map_or(0.5, |p| p.threshold)
}

/// The (product, tag) pairs as rows of the regression: parameters are
/// `[intercept, shared weights (5), tag biases (T), tag slopes (T)]`.
struct Design {
    /// Per product, per tag: the features.
    x: Vec<Vec<[f64; 5]>>,
    /// Per product, per tag: 1 when the tag is careful gold.
    y: Vec<Vec<f64>>,
    n_tags: usize,
}

const SHARED: usize = FEATURES.len();

impl Design {
    fn new(scores: &[Scores], gold: &[Vec<usize>], n_tags: usize, review_threshold: f32) -> Self {
        let x = scores
            .iter()
            .map(|s| {
                (0..n_tags)
                    .map(|t| {
                        let reviews: Vec<f32> = s
                            .reviews
                            .iter()
                            .map(|r| r.scores.get(t).copied().unwrap_or(0.0))
                            .collect();
                        features(s.product[t], &reviews, review_threshold).map(f64::from)
                    })
                    .collect()
            })
            .collect();
        let y = gold
            .iter()
            .map(|g| {
                (0..n_tags)
                    .map(|t| if g.contains(&t) { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        Self { x, y, n_tags }
    }

    fn dim(&self) -> usize {
        1 + SHARED + 2 * self.n_tags
    }

    /// The nonzero entries of row (product `i`, tag `t`): (parameter index, value).
    fn row(&self, i: usize, t: usize) -> [(usize, f64); SHARED + 3] {
        let f = &self.x[i][t];
        let mut out = [(0usize, 1.0f64); SHARED + 3];
        for (k, v) in f.iter().enumerate() {
            out[1 + k] = (1 + k, *v);
        }
        out[SHARED + 1] = (1 + SHARED + t, 1.0);
        out[SHARED + 2] = (1 + SHARED + self.n_tags + t, f[0]);
        out
    }

    fn margin(&self, w: &[f64], i: usize, t: usize) -> f64 {
        self.row(i, t).iter().map(|&(j, v)| w[j] * v).sum()
    }

    fn objective(&self, w: &[f64], products: &[usize], l2: f64) -> f64 {
        let mut loss = 0.0;
        for &i in products {
            for t in 0..self.n_tags {
                let z = self.margin(w, i, t);
                // log(1 + e^z) − y·z, stably.
                let softplus = if z > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                };
                loss += softplus - self.y[i][t] * z;
            }
        }
        loss + 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>()
    }

    /// Newton's method with backtracking from zero weights.
    fn fit(&self, products: &[usize], l2: f64) -> Vec<f64> {
        let d = self.dim();
        let mut w = vec![0.0; d];
        let mut current = self.objective(&w, products, l2);
        for _ in 0..100 {
            let mut grad = vec![0.0; d];
            let mut hess = vec![0.0; d * d];
            for &i in products {
                for t in 0..self.n_tags {
                    let row = self.row(i, t);
                    let z: f64 = row.iter().map(|&(j, v)| w[j] * v).sum();
                    let p = 1.0 / (1.0 + (-z).exp());
                    let r = p - self.y[i][t];
                    let c = p * (1.0 - p);
                    for &(a, va) in &row {
                        grad[a] += r * va;
                        for &(b, vb) in &row {
                            hess[a * d + b] += c * va * vb;
                        }
                    }
                }
            }
            for j in 1..d {
                grad[j] += l2 * w[j];
                hess[j * d + j] += l2;
            }
            hess[0] += 1e-9;
            let Some(step) = solve_spd(&hess, &grad, d) else {
                break;
            };
            let mut scale = 1.0;
            let mut improved = false;
            for _ in 0..30 {
                let trial: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - scale * s).collect();
                let value = self.objective(&trial, products, l2);
                if value <= current {
                    let gain = current - value;
                    w = trial;
                    current = value;
                    improved = gain > 1e-10 * current.abs().max(1.0);
                    break;
                }
                scale *= 0.5;
            }
            if !improved {
                break;
            }
        }
        w
    }

    fn probabilities(&self, w: &[f64], i: usize) -> Vec<f32> {
        (0..self.n_tags)
            .map(|t| (1.0 / (1.0 + (-self.margin(w, i, t)).exp())) as f32)
            .collect()
    }

    fn calibration(
        &self,
        w: &[f64],
        pool: &EtalonPool,
        settings: &CalibrationSettings,
        fitted_on: usize,
    ) -> CarefulCalibration {
        let t = self.n_tags;
        let f32s = |s: &[f64]| s.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        CarefulCalibration {
            format: CAREFUL_FORMAT.to_owned(),
            tags: pool.tags.clone(),
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            review_threshold: settings.review_threshold,
            weights: f32s(&w[1..1 + SHARED]),
            bias: w[0] as f32,
            tag_bias: f32s(&w[1 + SHARED..1 + SHARED + t]),
            tag_slope: f32s(&w[1 + SHARED + t..]),
            threshold: 0.5,
            min_mentions: settings.min_mentions,
            min_tags: settings.min_tags,
            fitted_on,
        }
    }
}

/// Solves `a · x = b` for a symmetric positive definite `a` (`d × d`, row-major) by
/// Cholesky; `None` when `a` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = a[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (b[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_data::{Category, Route};
    use lamoda_inference::ScoredReview;

    fn scores(product: Vec<f32>, reviews: Vec<Vec<f32>>) -> Scores {
        Scores {
            good_type: "Bags".into(),
            route: Route {
                category: Category::Bags,
                fallback: false,
            },
            product,
            reviews: reviews
                .into_iter()
                .enumerate()
                .map(|(index, scores)| ScoredReview {
                    index,
                    text: format!("r{index}"),
                    scores,
                })
                .collect(),
        }
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0]
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).expect("spd");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn a_tag_the_noisy_adapter_overuses_is_calibrated_down() {
        // Tag 0: the adapter says 0.9 everywhere, a careful reader agrees on a tenth of the
        // products. Tag 1: the adapter's probability tracks the careful label.
        let pool =
            EtalonPool::new(Category::Bags, vec!["Прочная".into(), "Лёгкая".into()]).expect("pool");
        let mut rows = Vec::new();
        let mut all = Vec::new();
        for i in 0..200 {
            let t0 = i % 10 == 0;
            let t1 = i % 2 == 0;
            let mut tags = Vec::new();
            if t0 {
                tags.push("Прочная".to_owned());
            }
            if t1 {
                tags.push("Лёгкая".to_owned());
            }
            rows.push(ReviewStack {
                row: i + 1,
                reviews: vec!["x".into()],
                tags,
            });
            let p1 = if t1 { 0.8 } else { 0.2 } + 0.001 * (i % 7) as f32;
            all.push(scores(vec![0.9, p1], vec![vec![0.9, p1]]));
        }
        let refs: Vec<&ReviewStack> = rows.iter().collect();
        let fit =
            fit_calibration(&pool, &refs, &all, &CalibrationSettings::default()).expect("fit");
        let p = fit.calibration.probabilities(&[0.9, 0.81], &[&[0.9, 0.81]]);
        assert!((p[0] - 0.1).abs() < 0.05, "{p:?}");
        assert!(p[1] > 0.9, "{p:?}");
        let q = fit.calibration.probabilities(&[0.9, 0.2], &[&[0.9, 0.2]]);
        assert!(q[1] < 0.1, "{q:?}");
        // Out of fold, the best threshold shows Лёгкая alone: precision 1.
        let best = fit
            .out_of_fold
            .iter()
            .find(|p| p.threshold == fit.calibration.threshold)
            .expect("chosen point");
        assert!(best.precision > 0.99 && best.recall > 0.8, "{best:?}");
        assert!(fit.calibration.validate(&pool.tags).is_ok());
    }

    #[test]
    fn the_threshold_rule_prefers_f1_among_precise_points() {
        let point = |threshold, precision, micro_f1| ThresholdPoint {
            threshold,
            precision,
            recall: 0.0,
            micro_f1,
        };
        let points = [
            point(0.2, 0.6, 0.70),
            point(0.3, 0.76, 0.68),
            point(0.4, 0.8, 0.66),
        ];
        assert_eq!(choose_threshold(&points, 0.75), 0.3);
        assert_eq!(choose_threshold(&points, 0.9), 0.4);
        assert_eq!(choose_threshold(&points, 0.5), 0.2);
    }

    #[test]
    fn settings_are_checked() {
        assert!(CalibrationSettings::default().validate().is_ok());
        let bad = CalibrationSettings {
            l2: 0.0,
            ..CalibrationSettings::default()
        };
        assert!(bad.validate().expect_err("invalid").contains("l2"));
        let bad = CalibrationSettings {
            thresholds: vec![1.5],
            ..CalibrationSettings::default()
        };
        assert!(bad.validate().expect_err("invalid").contains("1.5"));
    }
}
