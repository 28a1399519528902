//! Consolidation of a good type's raw-tag pool: agglomerative clustering of the tags by
//! cosine similarity with **average linkage** (the similarity of two clusters is the mean
//! cosine over their cross pairs), merging while the best pair's similarity is at or above
//! the threshold. Average linkage is reducible, so the nearest-neighbour-chain algorithm
//! finds the same merges as the naive one in O(n²) time and memory; the clusters at a
//! threshold are the merges at or above it. The merged tag of a cluster is its most
//! frequent member (ties: the shorter, then alphabetical), unless a namer (an LLM) names it.
//!
//! [`adjusted_rand`] and [`pair_agreement`] compare two clusterings of the same items.
//!
//! The workflow of `lamoda-tags consolidate` is [`consolidate_pool`]: a pool's clusters,
//! optionally named by an LLM ([`name_clusters`]), written as a mapping in the
//! `tag_mappings.csv` layout beside a reviewable file of one row per raw tag, and compared
//! with a reference mapping.

use std::collections::HashMap;

use crate::embed::dot;

mod workflow;

pub use workflow::{
    CLUSTER_COLUMNS, ClusterNames, ClusterNaming, ClusterRow, ClusterToName, ConsolidateConfig,
    ConsolidateEvent, Consolidation, ConsolidationReport, MAPPING_COLUMNS, ReferenceMapping,
    cluster_pool, clusters_path, consolidate_pool, load_pool, name_clusters, pool_texts,
    reference_in,
};

/// One merge of the dendrogram: clusters `a` and `b` (item ids, or `n + k` for the cluster
/// made by merge `k`) at average similarity `similarity`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// One side.
    pub a: usize,
    /// The other side.
    pub b: usize,
    /// Their average-linkage similarity.
    pub similarity: f32,
}

/// The cluster of each of the unit `vectors` at `threshold`: ids `0..clusters`, numbered
/// in order of their first member.
pub fn cluster_average(vectors: &[Vec<f32>], threshold: f32) -> Vec<usize> {
    let n = vectors.len();
    let merges = average_linkage(vectors);
    // Union-find over the merges at or above the threshold (monotone, so a prefix of the
    // merges sorted by similarity).
    let mut parent: Vec<usize> = (0..2 * n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (k, m) in merges.iter().enumerate() {
        if m.similarity >= threshold {
            let new = n + k;
            let ra = find(&mut parent, m.a);
            let rb = find(&mut parent, m.b);
            parent[ra] = new;
            parent[rb] = new;
        }
    }
    let mut ids: HashMap<usize, usize> = HashMap::new();
    (0..n)
        .map(|i| {
            let root = find(&mut parent, i);
            let next = ids.len();
            *ids.entry(root).or_insert(next)
        })
        .collect()
}

/// The whole dendrogram of average linkage (nearest-neighbour chain), merge `k` making
/// cluster `n + k`.
pub fn average_linkage(vectors: &[Vec<f32>]) -> Vec<Merge> {
    let n = vectors.len();
    if n < 2 {
        return Vec::new();
    }
    // Similarities between active clusters, indexed by slot (a merged cluster takes the
    // slot of one side).
    let mut sim = vec![0f32; n * n];
    for i in 0..n {
        for j in i..n {
            let s = dot(&vectors[i], &vectors[j]);
            sim[i * n + j] = s;
            sim[j * n + i] = s;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut label: Vec<usize> = (0..n).collect();
    let mut merges = Vec::with_capacity(n - 1);
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            let first = (0..n).find(|&i| active[i]).unwrap_or(0);
            chain.push(first);
        }
        let top = chain[chain.len() - 1];
        let prev = chain.len().checked_sub(2).map(|i| chain[i]);
        // The most similar active neighbour; the previous chain element wins ties, which
        // guarantees termination.
        let mut best = usize::MAX;
        let mut best_sim = f32::NEG_INFINITY;
        for j in 0..n {
            if j == top || !active[j] {
                continue;
            }
            let s = sim[top * n + j];
            if s > best_sim || (s == best_sim && Some(j) == prev) {
                best = j;
                best_sim = s;
            }
        }
        if Some(best) == prev {
            chain.pop();
            chain.pop();
            let (a, b) = (top, best);
            merges.push(Merge {
                a: label[a],
                b: label[b],
                similarity: best_sim,
            });
            let (sa, sb) = (size[a] as f32, size[b] as f32);
            for k in 0..n {
                if active[k] && k != a && k != b {
                    let s = (sa * sim[a * n + k] + sb * sim[b * n + k]) / (sa + sb);
                    sim[a * n + k] = s;
                    sim[k * n + a] = s;
                }
            }
            size[a] += size[b];
            active[b] = false;
            label[a] = n + merges.len() - 1;
            remaining -= 1;
        } else {
            chain.push(best);
        }
    }
    // The chain finds merges out of order; the dendrogram's order is by similarity. Ids of
    // merged clusters refer to merge indices, so renumber them after sorting.
    let mut order: Vec<usize> = (0..merges.len()).collect();
    order.sort_by(|&x, &y| {
        merges[y]
            .similarity
            .total_cmp(&merges[x].similarity)
            .then(x.cmp(&y))
    });
    let mut new_id = vec![0usize; merges.len()];
    for (pos, &k) in order.iter().enumerate() {
        new_id[k] = pos;
    }
    let remap = |id: usize| if id < n { id } else { n + new_id[id - n] };
    order
        .iter()
        .map(|&k| Merge {
            a: remap(merges[k].a),
            b: remap(merges[k].b),
            similarity: merges[k].similarity,
        })
        .collect()
}

/// The index of the member a cluster is named after: the most frequent (ties: fewer
/// characters, then alphabetical).
pub fn representative(members: &[(String, usize)]) -> usize {
    let mut best = 0;
    for (i, (tag, freq)) in members.iter().enumerate().skip(1) {
        let (btag, bfreq) = &members[best];
        let better = freq > bfreq
            || (freq == bfreq
                && (tag.chars().count(), tag.as_str()) < (btag.chars().count(), btag.as_str()));
        if better {
            best = i;
        }
    }
    best
}

/// Adjusted Rand index of two labelings of the same items (1: identical partitions, ≈0:
/// chance).
pub fn adjusted_rand(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len();
    let c2 = |x: usize| (x * x.saturating_sub(1) / 2) as f64;
    let mut joint: HashMap<(usize, usize), usize> = HashMap::new();
    let mut ca: HashMap<usize, usize> = HashMap::new();
    let mut cb: HashMap<usize, usize> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *ca.entry(x).or_default() += 1;
        *cb.entry(y).or_default() += 1;
    }
    let index: f64 = joint.values().map(|&v| c2(v)).sum();
    let sa: f64 = ca.values().map(|&v| c2(v)).sum();
    let sb: f64 = cb.values().map(|&v| c2(v)).sum();
    let total = c2(n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sa * sb / total;
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Pair counts of two labelings: `(pairs together in both, together only in a, together
/// only in b)`; precision = both / (both + only a), recall = both / (both + only b), with
/// `b` the reference.
pub fn pair_agreement(a: &[usize], b: &[usize]) -> (u64, u64, u64) {
    let c2 = |x: usize| (x as u64) * (x as u64).saturating_sub(1) / 2;
    let mut joint: HashMap<(usize, usize), usize> = HashMap::new();
    let mut ca: HashMap<usize, usize> = HashMap::new();
    let mut cb: HashMap<usize, usize> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *ca.entry(x).or_default() += 1;
        *cb.entry(y).or_default() += 1;
    }
    let both: u64 = joint.values().map(|&v| c2(v)).sum();
    let in_a: u64 = ca.values().map(|&v| c2(v)).sum();
    let in_b: u64 = cb.values().map(|&v| c2(v)).sum();
    (both, in_a - both, in_b - both)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::embed::normalize(&mut v);
        v
    }

    #[test]
    fn average_linkage_matches_the_naive_merges() {
        // Two tight pairs and a loner; pair similarities known.
        let vectors = vec![
            unit(&[1.0, 0.0, 0.0]),
            unit(&[0.95, 0.05, 0.0]),
            unit(&[0.0, 1.0, 0.0]),
            unit(&[0.0, 0.9, 0.1]),
            unit(&[0.0, 0.0, 1.0]),
        ];
        let labels = cluster_average(&vectors, 0.9);
        assert_eq!(labels, [0, 0, 1, 1, 2]);
        assert_eq!(cluster_average(&vectors, 1.01), [0, 1, 2, 3, 4]);
        assert_eq!(cluster_average(&vectors, -1.0), [0, 0, 0, 0, 0]);
        let merges = average_linkage(&vectors);
        assert_eq!(merges.len(), 4);
        assert!(
            merges
                .windows(2)
                .all(|w| w[0].similarity >= w[1].similarity)
        );
        // The last merge joins everything: average of all cross similarities.
        let last = merges[3];
        assert!(last.a >= 5 || last.b >= 5);
    }

    #[test]
    fn the_representative_is_the_most_frequent_then_shortest() {
        let members = vec![
            ("мягкая".to_owned(), 3),
            ("очень мягкая".to_owned(), 5),
            ("мягкие".to_owned(), 5),
        ];
        assert_eq!(representative(&members), 2);
    }

    #[test]
    fn rand_index_is_one_for_equal_partitions_and_pairs_count() {
        assert!((adjusted_rand(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
        assert!(adjusted_rand(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
        assert_eq!(pair_agreement(&[0, 0, 0, 1], &[0, 0, 1, 1]), (1, 2, 1));
    }
}
