//! Deterministic, tag-stratified train/dev splits and k-fold assignments.
//!
//! Rows are grouped by their rarest gold tag (rows without tags form their
//! own group), each group is shuffled with a seeded ChaCha8 generator (the
//! same stream on every machine and platform), and the groups are dealt out
//! in turn so every fold gets its share of every stratum.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ReviewStack;

/// How to split a category's rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Number of folds; the dev split is fold `dev_fold` (default 5 folds: 20 % dev).
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Which fold is the dev split (default 0).
    #[serde(default)]
    pub dev_fold: usize,
    /// Shuffle seed (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_folds() -> usize {
    5
}
fn default_seed() -> u64 {
    42
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            folds: default_folds(),
            dev_fold: 0,
            seed: default_seed(),
        }
    }
}

impl SplitConfig {
    /// Checks the folds; `Err` says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.folds < 2 {
            return Err(format!("folds must be at least 2, got {}", self.folds));
        }
        if self.dev_fold >= self.folds {
            return Err(format!(
                "dev_fold {} must be below folds {}",
                self.dev_fold, self.folds
            ));
        }
        Ok(())
    }
}

/// Row indices of a train/dev split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows (indices into the input), ascending.
    pub train: Vec<usize>,
    /// Dev rows, ascending.
    pub dev: Vec<usize>,
}

/// The fold (0..k) of every row, stratified by rarest tag.
pub fn kfold(rows: &[ReviewStack], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        for tag in &row.tags {
            *freq.entry(tag.as_str()).or_default() += 1;
        }
    }
    // Stratum of a row: its rarest tag (ties by name); None for untagged rows.
    let mut strata: BTreeMap<(usize, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let key = row
            .tags
            .iter()
            .map(|t| (freq[t.as_str()], Some(t.as_str())))
            .min()
            .unwrap_or((0, None));
        strata.entry(key).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = vec![0; rows.len()];
    let mut next = 0usize;
    for members in strata.values_mut() {
        members.shuffle(&mut rng);
        for &i in members.iter() {
            folds[i] = next % k;
            next += 1;
        }
    }
    folds
}

/// The train/dev split of `rows` under `config`.
pub fn train_dev_split(rows: &[ReviewStack], config: &SplitConfig) -> Split {
    let folds = kfold(rows, config.folds, config.seed);
    let (dev, train): (Vec<usize>, Vec<usize>) =
        (0..rows.len()).partition(|&i| folds[i] == config.dev_fold);
    Split { train, dev }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<ReviewStack> {
        (0..n)
            .map(|i| ReviewStack {
                row: i + 1,
                reviews: vec![format!("r{i}")],
                tags: match i % 10 {
                    0 => vec!["rare".into(), "common".into()],
                    1..=3 => vec![],
                    _ => vec!["common".into()],
                },
            })
            .collect()
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let data = rows(100);
        let a = train_dev_split(&data, &SplitConfig::default());
        let b = train_dev_split(&data, &SplitConfig::default());
        assert_eq!(a, b);
        assert_eq!(a.dev.len(), 20);
        let mut all: Vec<usize> = a.train.iter().chain(&a.dev).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let other = train_dev_split(
            &data,
            &SplitConfig {
                seed: 7,
                ..SplitConfig::default()
            },
        );
        assert_ne!(a.dev, other.dev);
    }

    #[test]
    fn split_is_stratified() {
        let data = rows(100);
        let split = train_dev_split(&data, &SplitConfig::default());
        let count = |idx: &[usize], f: &dyn Fn(&ReviewStack) -> bool| {
            idx.iter().filter(|&&i| f(&data[i])).count()
        };
        // 10 rare rows and 30 untagged rows: 20 % of each lands in dev.
        assert_eq!(
            count(&split.dev, &|r| r.tags.contains(&"rare".to_owned())),
            2
        );
        assert_eq!(count(&split.dev, &|r| r.tags.is_empty()), 6);
    }

    #[test]
    fn the_stream_is_pinned() {
        // Guards against a silent change of the shuffle (rand/rand_chacha
        // upgrade): the dev split must stay the same on every machine.
        let split = train_dev_split(&rows(30), &SplitConfig::default());
        assert_eq!(split.dev.len(), 6);
        assert_eq!(split.dev, [1, 7, 10, 17, 18, 22]);
        let folds = kfold(&rows(30), 3, 1);
        assert_eq!(
            (0..3)
                .map(|f| folds.iter().filter(|&&x| x == f).count())
                .collect::<Vec<_>>(),
            [10, 10, 10]
        );
    }

    #[test]
    fn config_validation() {
        assert!(
            SplitConfig {
                folds: 1,
                ..SplitConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SplitConfig {
                dev_fold: 5,
                ..SplitConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(SplitConfig::default().validate().is_ok());
    }
}
