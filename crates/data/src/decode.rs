//! Turning per-tag probabilities into a tag list: threshold, exclusive
//! groups, at least `min_tags` and at most `max_tags`.

use serde::{Deserialize, Serialize};

use crate::EtalonPool;

/// Decoding rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// A tag is predicted when its probability reaches this (default 0.5).
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Per-tag thresholds (in pool order) that replace `threshold` when set.
    #[serde(default)]
    pub per_tag_thresholds: Option<Vec<f32>>,
    /// At least this many tags: the most probable ones fill up (default 1).
    #[serde(default = "default_min")]
    pub min_tags: usize,
    /// At most this many tags, the most probable kept (default 6).
    #[serde(default = "default_max")]
    pub max_tags: usize,
}

fn default_threshold() -> f32 {
    0.5
}
fn default_min() -> usize {
    1
}
fn default_max() -> usize {
    6
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            threshold: default_threshold(),
            per_tag_thresholds: None,
            min_tags: default_min(),
            max_tags: default_max(),
        }
    }
}

impl DecodeConfig {
    /// The threshold of the tag at pool index `i`: its own when per-tag thresholds are set,
    /// else the global one.
    pub fn threshold_of(&self, i: usize) -> f32 {
        self.per_tag_thresholds
            .as_ref()
            .and_then(|t| t.get(i).copied())
            .unwrap_or(self.threshold)
    }

    /// Checks the rules against a pool of `n_tags`; `Err` says what is wrong.
    pub fn validate(&self, n_tags: usize) -> Result<(), String> {
        let in_range = |t: f32| (0.0..=1.0).contains(&t);
        if !in_range(self.threshold) {
            return Err(format!("threshold {} is not within 0..=1", self.threshold));
        }
        if self.min_tags > self.max_tags {
            return Err(format!(
                "min_tags {} exceeds max_tags {}",
                self.min_tags, self.max_tags
            ));
        }
        if self.max_tags == 0 {
            return Err("max_tags must be at least 1".into());
        }
        if let Some(per_tag) = &self.per_tag_thresholds {
            if per_tag.len() != n_tags {
                return Err(format!(
                    "{} per-tag thresholds for {n_tags} tags",
                    per_tag.len()
                ));
            }
            if let Some(t) = per_tag.iter().find(|t| !in_range(**t)) {
                return Err(format!("per-tag threshold {t} is not within 0..=1"));
            }
        }
        Ok(())
    }
}

/// The decoded tags of one product: `(tag index, probability)`, most probable first.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The chosen tags.
    pub tags: Vec<(usize, f32)>,
}

/// Decodes one product's probabilities (in pool order).
///
/// Tags are taken most probable first; a tag is skipped when a tag of its
/// exclusive group was already taken. Tags at or above their threshold are
/// taken up to `max_tags`; if fewer than `min_tags` were, the most probable
/// remaining ones fill up. NaN probabilities rank last and never pass a threshold.
pub fn decode(probs: &[f32], pool: &EtalonPool, config: &DecodeConfig) -> Decoded {
    decode_eligible(probs, pool, config, |_| true)
}

/// [`decode`] over the tags `eligible` admits only (by pool index): an ineligible tag is
/// never taken, not even to fill up to `min_tags`, so the answer may hold fewer than
/// `min_tags` (none, when no tag is eligible). Exclusive groups hold as in [`decode`].
pub fn decode_eligible(
    probs: &[f32],
    pool: &EtalonPool,
    config: &DecodeConfig,
    eligible: impl Fn(usize) -> bool,
) -> Decoded {
    let groups = pool.group_of();
    let order = crate::rank(probs);
    let threshold = |i: usize| config.threshold_of(i);
    let mut taken: Vec<(usize, f32)> = Vec::new();
    let mut used_groups: Vec<usize> = Vec::new();
    let mut take = |i: usize, taken: &mut Vec<(usize, f32)>| {
        if !eligible(i) || taken.iter().any(|(t, _)| *t == i) {
            return;
        }
        if let Some(Some(g)) = groups.get(i) {
            if used_groups.contains(g) {
                return;
            }
            used_groups.push(*g);
        }
        taken.push((i, probs[i]));
    };
    for &i in &order {
        if taken.len() >= config.max_tags {
            break;
        }
        if probs[i] >= threshold(i) {
            take(i, &mut taken);
        }
    }
    for &i in &order {
        if taken.len() >= config.min_tags.min(config.max_tags) {
            break;
        }
        take(i, &mut taken);
    }
    Decoded { tags: taken }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Category, TagGroup};

    fn pool(n: usize, groups: &[&[usize]]) -> EtalonPool {
        let tags: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        EtalonPool {
            category: Category::Shoes,
            exclusive: groups
                .iter()
                .enumerate()
                .map(|(g, idx)| TagGroup {
                    name: format!("g{g}"),
                    tags: idx.iter().map(|&i| tags[i].clone()).collect(),
                })
                .collect(),
            tags,
            near_duplicates: vec![],
        }
    }

    fn indices(d: &Decoded) -> Vec<usize> {
        d.tags.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn threshold_orders_by_probability() {
        let d = decode(
            &[0.6, 0.2, 0.9, 0.5],
            &pool(4, &[]),
            &DecodeConfig::default(),
        );
        assert_eq!(indices(&d), [2, 0, 3]);
    }

    #[test]
    fn min_one_fills_with_the_most_probable() {
        let d = decode(&[0.1, 0.3, 0.2], &pool(3, &[]), &DecodeConfig::default());
        assert_eq!(indices(&d), [1]);
    }

    #[test]
    fn max_six_keeps_the_most_probable() {
        let probs = [0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98];
        let d = decode(&probs, &pool(8, &[]), &DecodeConfig::default());
        assert_eq!(indices(&d), [7, 6, 5, 4, 3, 2]);
    }

    #[test]
    fn exclusive_group_keeps_one() {
        let d = decode(
            &[0.7, 0.8, 0.6, 0.9],
            &pool(4, &[&[0, 1, 2]]),
            &DecodeConfig::default(),
        );
        assert_eq!(indices(&d), [3, 1]);
    }

    #[test]
    fn per_tag_thresholds_replace_the_global_one() {
        let config = DecodeConfig {
            per_tag_thresholds: Some(vec![0.7, 0.1, 0.5]),
            ..DecodeConfig::default()
        };
        config.validate(3).expect("valid");
        let d = decode(&[0.6, 0.2, 0.55], &pool(3, &[]), &config);
        assert_eq!(indices(&d), [2, 1]);
    }

    #[test]
    fn nan_never_passes_and_ranks_last() {
        let d = decode(&[f32::NAN, 0.2], &pool(2, &[]), &DecodeConfig::default());
        assert_eq!(indices(&d), [1]);
    }

    #[test]
    fn ineligible_tags_are_never_taken_nor_filled_and_groups_hold() {
        let p = pool(4, &[&[0, 1]]);
        let probs = [0.9, 0.8, 0.7, 0.2];
        // Tag 0 (the best) is out: its group partner 1 may take the group's place.
        let d = decode_eligible(&probs, &p, &DecodeConfig::default(), |i| i != 0);
        assert_eq!(indices(&d), [1, 2]);
        // Only a tag below the threshold is eligible: it fills the one place.
        let d = decode_eligible(&probs, &p, &DecodeConfig::default(), |i| i == 3);
        assert_eq!(indices(&d), [3]);
        // Nothing eligible: an empty answer.
        let d = decode_eligible(&probs, &p, &DecodeConfig::default(), |_| false);
        assert_eq!(indices(&d), Vec::<usize>::new());
        let config = DecodeConfig {
            threshold: 0.95,
            ..DecodeConfig::default()
        };
        // Filling to min_tags takes the most probable eligible tag.
        let d = decode_eligible(&probs, &p, &config, |i| i >= 2);
        assert_eq!(indices(&d), [2]);
    }

    #[test]
    fn validation_messages() {
        let bad = DecodeConfig {
            min_tags: 7,
            ..DecodeConfig::default()
        };
        assert_eq!(
            bad.validate(3).expect_err("min > max"),
            "min_tags 7 exceeds max_tags 6"
        );
        let bad = DecodeConfig {
            threshold: 1.5,
            ..DecodeConfig::default()
        };
        assert!(bad.validate(3).is_err());
        let bad = DecodeConfig {
            per_tag_thresholds: Some(vec![0.5]),
            ..DecodeConfig::default()
        };
        assert_eq!(
            bad.validate(3).expect_err("length"),
            "1 per-tag thresholds for 3 tags"
        );
    }
}
