//! The consolidation workflow (`lamoda-tags consolidate`): each good type's pool clustered
//! ([`cluster_average`]), each cluster merged into its representative or a name from an
//! LLM, written as a mapping in the `tag_mappings.csv` layout with a reviewable file of one
//! row per raw tag beside it, and compared with a reference mapping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lamoda_llm::{ChatClient, ChatConfig};

use super::{adjusted_rand, cluster_average, pair_agreement, representative};
use crate::CurationError;
use crate::embed::dot;
use crate::error::{check_cosine, create_csv, csv_error, flush_csv};
use crate::label::name_cluster;
use crate::pool::{Pool, read_pool_csv};
use lamoda_data::normalize_tag;

/// The columns of the mapping file (`tag_mappings.csv`'s layout).
pub const MAPPING_COLUMNS: [&str; 3] = ["good_type", "old_tags", "new_tag"];

/// The columns of the reviewable file beside the mapping ([`clusters_path`]).
pub const CLUSTER_COLUMNS: [&str; 7] = [
    "good_type",
    "cluster",
    "raw_tag",
    "merged_tag",
    "similarity",
    "frequency",
    "cluster_size",
];

/// How clusters are named by an LLM.
#[derive(Debug, Clone)]
pub struct ClusterNaming {
    /// The chat endpoint and its retries.
    pub chat: ChatConfig,
    /// Clusters named at once (0 counts as 1).
    pub concurrency: usize,
}

/// The reference mapping [`consolidate_pool`] compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceMapping {
    /// No comparison.
    None,
    /// This file (`tag_mappings.csv` layout).
    File(PathBuf),
    /// The data directory's `tag_mappings.csv` ([`reference_in`]), when it has one once
    /// the mapping is written.
    DataDir(PathBuf),
}

impl ReferenceMapping {
    /// The file to compare with now, if any.
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            ReferenceMapping::None => None,
            ReferenceMapping::File(path) => Some(path.clone()),
            ReferenceMapping::DataDir(root) => reference_in(root),
        }
    }
}

/// Settings of [`consolidate_pool`].
#[derive(Debug, Clone)]
pub struct ConsolidateConfig {
    /// The lowest average-linkage cosine at which two clusters merge.
    pub threshold: f32,
    /// The mapping to write; the reviewable file goes beside it ([`clusters_path`]).
    pub out: PathBuf,
    /// The reference mapping to compare with.
    pub reference: ReferenceMapping,
    /// Name each cluster of more than one tag with an LLM (else: its representative).
    pub naming: Option<ClusterNaming>,
}

impl ConsolidateConfig {
    /// Checks the settings: the threshold a cosine in -1..1.
    pub fn check(&self) -> Result<(), CurationError> {
        check_cosine("--threshold", self.threshold)
    }
}

/// One raw tag of a consolidated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    /// The raw tag (normalised, as in the pool).
    pub tag: String,
    /// Its cluster (ids per good type, in order of first member).
    pub cluster: usize,
    /// The tag the cluster is merged into.
    pub merged: String,
    /// Cosine of the tag with the cluster's representative.
    pub similarity: f32,
    /// The tag's frequency in the pool.
    pub frequency: usize,
    /// Tags in the cluster.
    pub size: usize,
}

/// The clusters of every good type of a pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consolidation {
    /// Good type → its raw tags, cluster by cluster.
    pub good_types: BTreeMap<String, Vec<ClusterRow>>,
}

/// A cluster of more than one tag, to be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterToName {
    /// Its good type.
    pub good_type: String,
    /// Its id within the good type.
    pub cluster: usize,
    /// Its tags.
    pub members: Vec<String>,
}

/// The names an LLM gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterNames {
    /// `(good type, cluster)` → name.
    pub names: HashMap<(String, usize), String>,
    /// Clusters that got no usable name (they keep their representative).
    pub failed: usize,
}

/// What [`consolidate_pool`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConsolidateEvent<'a> {
    /// A good type is clustered.
    Clustered {
        /// The good type.
        good_type: &'a str,
        /// Its tags.
        tags: usize,
        /// Its clusters.
        clusters: usize,
        /// Of them, clusters of more than one tag.
        multi_tag: usize,
        /// Seconds it took.
        seconds: f64,
    },
    /// Clusters named so far (first with `done` 0).
    Naming {
        /// Named (or failed) so far.
        done: usize,
        /// To name.
        total: usize,
    },
    /// The naming is over.
    Named {
        /// Clusters named.
        named: usize,
        /// Clusters without a usable name.
        failed: usize,
    },
    /// The mapping and the reviewable file are written.
    Written {
        /// Clusters (rows of the mapping).
        clusters: usize,
        /// The mapping.
        mapping: &'a Path,
        /// The reviewable file.
        review: &'a Path,
    },
}

/// What [`consolidate_pool`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsolidationReport {
    /// The clusters.
    pub consolidation: Consolidation,
    /// With an LLM: `(named, failed)`.
    pub named: Option<(usize, usize)>,
    /// Rows of the mapping (clusters).
    pub clusters_written: usize,
    /// The mapping file.
    pub mapping: PathBuf,
    /// The reviewable file.
    pub review: PathBuf,
    /// The comparison with the reference ([`Consolidation::compare_with_reference`]), when
    /// there is one.
    pub comparison: Option<String>,
}

/// Reads a raw-tag pool to consolidate ([`read_pool_csv`]); a pool without a tag is an
/// error naming the file.
pub fn load_pool(path: &Path) -> Result<Pool, CurationError> {
    let pool = read_pool_csv(path)?;
    if pool.entries.is_empty() {
        return Err(CurationError::EmptyPool {
            path: path.to_owned(),
        });
    }
    Ok(pool)
}

/// The texts to embed for [`consolidate_pool`]: every tag of the pool.
pub fn pool_texts(pool: &Pool) -> Vec<String> {
    pool.entries.iter().map(|e| e.tag.clone()).collect()
}

/// `tag_mappings.csv` of a data directory, when it has one: the default reference.
pub fn reference_in(data_root: &Path) -> Option<PathBuf> {
    Some(data_root.join("tag_mappings.csv")).filter(|p| p.is_file())
}

/// The reviewable file beside the mapping `out`: `<stem>.clusters.csv`.
pub fn clusters_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mapping".to_owned());
    out.with_file_name(format!("{stem}.clusters.csv"))
}

/// Clusters each good type of `pool` at `threshold` (average linkage on the tags' unit
/// vectors from `vectors`), each cluster merged into its representative. A tag without a
/// vector is an error naming it.
pub fn cluster_pool(
    threshold: f32,
    pool: &Pool,
    vectors: &HashMap<String, Vec<f32>>,
    mut on_event: impl FnMut(ConsolidateEvent<'_>),
) -> Result<Consolidation, CurationError> {
    check_cosine("--threshold", threshold)?;
    let good_types: BTreeSet<&str> = pool.entries.iter().map(|e| e.good_type.as_str()).collect();
    let mut result = Consolidation::default();
    for good_type in good_types {
        let started = Instant::now();
        let entries: Vec<_> = pool.of(good_type).collect();
        let vs = entries
            .iter()
            .map(|e| {
                vectors
                    .get(&e.tag)
                    .cloned()
                    .ok_or_else(|| CurationError::MissingVector {
                        what: "pool tag",
                        text: e.tag.clone(),
                    })
            })
            .collect::<Result<Vec<Vec<f32>>, _>>()?;
        let labels = cluster_average(&vs, threshold);
        let clusters = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters];
        for (i, &c) in labels.iter().enumerate() {
            members[c].push(i);
        }
        let mut rows = Vec::new();
        for (c, m) in members.iter().enumerate() {
            let named: Vec<(String, usize)> = m
                .iter()
                .map(|&i| (entries[i].tag.clone(), entries[i].frequency))
                .collect();
            let Some(&rep) = m.get(representative(&named)) else {
                continue;
            };
            for &i in m {
                rows.push(ClusterRow {
                    tag: entries[i].tag.clone(),
                    cluster: c,
                    merged: entries[rep].tag.clone(),
                    similarity: dot(&vs[i], &vs[rep]),
                    frequency: entries[i].frequency,
                    size: m.len(),
                });
            }
        }
        on_event(ConsolidateEvent::Clustered {
            good_type,
            tags: entries.len(),
            clusters,
            multi_tag: members.iter().filter(|m| m.len() > 1).count(),
            seconds: started.elapsed().as_secs_f64(),
        });
        result.good_types.insert(good_type.to_owned(), rows);
    }
    Ok(result)
}

/// Names `clusters` with the LLM behind `client` ([`name_cluster`]), `concurrency` at a time
/// (0 counts as 1). `progress(done, total)` after each cluster. A cluster without a usable
/// name is counted in [`ClusterNames::failed`]; an error when the server refuses every
/// request.
pub async fn name_clusters(
    client: &ChatClient,
    clusters: &[ClusterToName],
    concurrency: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ClusterNames, CurationError> {
    let client = Arc::new(client.clone());
    let mut out = ClusterNames::default();
    let mut running = tokio::task::JoinSet::new();
    let mut queue = clusters.iter().cloned();
    let mut done = 0;
    loop {
        while running.len() < concurrency.max(1) {
            let Some(cluster) = queue.next() else {
                break;
            };
            let client = client.clone();
            running.spawn(async move {
                let name = name_cluster(&client, &cluster.good_type, &cluster.members).await;
                (cluster.good_type, cluster.cluster, name)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (good_type, cluster, name) = joined.map_err(|e| CurationError::Server {
            url: client.url().to_owned(),
            reason: format!("a naming task failed: {e}"),
        })?;
        done += 1;
        progress(done, clusters.len());
        match name? {
            Ok(name) => {
                out.names.insert((good_type, cluster), name);
            }
            Err(_) => out.failed += 1,
        }
    }
    Ok(out)
}

/// The whole consolidation of `pool` (tag vectors from `vectors`, by tag): the clusters
/// ([`cluster_pool`]), with `config.naming` their names from an LLM, the mapping and the
/// reviewable file written ([`Consolidation::write`]), and with a reference mapping the
/// comparison ([`Consolidation::compare_with_reference`]). `on_event` hears each step as it
/// ends.
pub fn consolidate_pool(
    config: &ConsolidateConfig,
    pool: &Pool,
    vectors: &HashMap<String, Vec<f32>>,
    mut on_event: impl FnMut(ConsolidateEvent<'_>),
) -> Result<ConsolidationReport, CurationError> {
    config.check()?;
    let mut consolidation = cluster_pool(config.threshold, pool, vectors, &mut on_event)?;
    let mut named = None;
    if let Some(naming) = &config.naming {
        let client = ChatClient::new(naming.chat.clone())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|source| CurationError::Runtime { source })?;
        let clusters = consolidation.to_name();
        on_event(ConsolidateEvent::Naming {
            done: 0,
            total: clusters.len(),
        });
        let names = runtime.block_on(name_clusters(
            &client,
            &clusters,
            naming.concurrency,
            |done, total| on_event(ConsolidateEvent::Naming { done, total }),
        ))?;
        on_event(ConsolidateEvent::Named {
            named: names.names.len(),
            failed: names.failed,
        });
        named = Some((names.names.len(), names.failed));
        consolidation.apply_names(&names);
    }
    let clusters_written = consolidation.write(&config.out)?;
    let review = clusters_path(&config.out);
    on_event(ConsolidateEvent::Written {
        clusters: clusters_written,
        mapping: &config.out,
        review: &review,
    });
    let comparison = match config.reference.file() {
        Some(reference) => Some(consolidation.compare_with_reference(&reference)?),
        None => None,
    };
    Ok(ConsolidationReport {
        consolidation,
        named,
        clusters_written,
        mapping: config.out.clone(),
        review,
        comparison,
    })
}

impl Consolidation {
    /// The clusters of more than one tag, by good type, then cluster.
    pub fn to_name(&self) -> Vec<ClusterToName> {
        let mut clusters: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
        for (good_type, rows) in &self.good_types {
            for row in rows.iter().filter(|r| r.size > 1) {
                clusters
                    .entry((good_type.clone(), row.cluster))
                    .or_default()
                    .push(row.tag.clone());
            }
        }
        clusters
            .into_iter()
            .map(|((good_type, cluster), members)| ClusterToName {
                good_type,
                cluster,
                members,
            })
            .collect()
    }

    /// Merges each named cluster into its name.
    pub fn apply_names(&mut self, names: &ClusterNames) {
        for (good_type, rows) in self.good_types.iter_mut() {
            for row in rows.iter_mut() {
                if let Some(name) = names.names.get(&(good_type.clone(), row.cluster)) {
                    row.merged = name.clone();
                }
            }
        }
    }

    /// Writes the mapping to `out` ([`MAPPING_COLUMNS`]: one row per cluster, its tags
    /// `; `-joined) and the reviewable file beside it ([`clusters_path`],
    /// [`CLUSTER_COLUMNS`]: one row per raw tag, similarity to 4 decimals). Returns the
    /// clusters written.
    pub fn write(&self, out: &Path) -> Result<usize, CurationError> {
        let mut mapping = create_csv(out)?;
        mapping
            .write_record(MAPPING_COLUMNS)
            .map_err(|e| csv_error(out, e))?;
        let review_path = clusters_path(out);
        let mut review = create_csv(&review_path)?;
        review
            .write_record(CLUSTER_COLUMNS)
            .map_err(|e| csv_error(&review_path, e))?;
        let mut written = 0;
        for (good_type, rows) in &self.good_types {
            let mut by_cluster: BTreeMap<usize, (&str, Vec<&str>)> = BTreeMap::new();
            for row in rows {
                by_cluster
                    .entry(row.cluster)
                    .or_insert_with(|| (row.merged.as_str(), Vec::new()))
                    .1
                    .push(&row.tag);
                review
                    .write_record([
                        good_type.clone(),
                        row.cluster.to_string(),
                        row.tag.clone(),
                        row.merged.clone(),
                        format!("{:.4}", row.similarity),
                        row.frequency.to_string(),
                        row.size.to_string(),
                    ])
                    .map_err(|e| csv_error(&review_path, e))?;
            }
            for (merged, members) in by_cluster.values() {
                mapping
                    .write_record([good_type.as_str(), &members.join("; "), merged])
                    .map_err(|e| csv_error(out, e))?;
                written += 1;
            }
        }
        flush_csv(out, &mut mapping)?;
        flush_csv(&review_path, &mut review)?;
        Ok(written)
    }

    /// Agreement with the reference mapping at `reference` (`tag_mappings.csv` layout) over
    /// the raw tags in both, as pairs of tags put together: a Markdown table per good type
    /// (adjusted Rand, pair precision and recall) and the pooled pair precision and recall.
    /// Good types with fewer than two tags in both are left out.
    pub fn compare_with_reference(&self, reference: &Path) -> Result<String, CurationError> {
        let maps = lamoda_data::load_tag_mappings(reference)?;
        let mut reference_of: HashMap<(String, String), String> = HashMap::new();
        for m in &maps {
            let Some(first) = m.old_tags.first() else {
                continue;
            };
            let target = normalize_tag(m.new_tag.as_deref().unwrap_or(first));
            for old in &m.old_tags {
                reference_of.insert((m.good_type.clone(), normalize_tag(old)), target.clone());
            }
        }
        let mut out = format!(
            "agreement with {} over the raw tags in both (pairs of tags put together)\n\n\
             | good type | tags in both | adjusted Rand | pair precision | pair recall |\n|---|---|---|---|---|\n",
            reference.display()
        );
        let (mut all_both, mut all_a, mut all_b) = (0u64, 0u64, 0u64);
        for (good_type, rows) in &self.good_types {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            let mut ids: HashMap<String, usize> = HashMap::new();
            for row in rows {
                if let Some(target) = reference_of.get(&(good_type.clone(), row.tag.clone())) {
                    let next = ids.len();
                    ours.push(row.cluster);
                    theirs.push(*ids.entry(target.clone()).or_insert(next));
                }
            }
            if ours.len() < 2 {
                continue;
            }
            let (both, only_ours, only_theirs) = pair_agreement(&ours, &theirs);
            all_both += both;
            all_a += only_ours;
            all_b += only_theirs;
            let p = both as f64 / (both + only_ours).max(1) as f64;
            let r = both as f64 / (both + only_theirs).max(1) as f64;
            let _ = writeln!(
                out,
                "| {good_type} | {} | {:.3} | {p:.3} | {r:.3} |",
                ours.len(),
                adjusted_rand(&ours, &theirs)
            );
        }
        let _ = writeln!(
            out,
            "| all | | | {:.3} | {:.3} |",
            all_both as f64 / (all_both + all_a).max(1) as f64,
            all_both as f64 / (all_both + all_b).max(1) as f64
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolEntry;

    fn entry(tag: &str, frequency: usize) -> PoolEntry {
        PoolEntry {
            good_type: "Accs".to_owned(),
            tag: tag.to_owned(),
            frequency,
            variants: vec![tag.to_owned()],
        }
    }

    fn pool_and_vectors() -> (Pool, HashMap<String, Vec<f32>>) {
        let pool = Pool {
            entries: vec![
                entry("качественный шов", 9),
                entry("качественные швы", 5),
                entry("яркий цвет", 4),
            ],
            products: BTreeMap::from([("Accs".to_owned(), 10)]),
        };
        let mut near = vec![0.99f32, 0.1, 0.0];
        crate::embed::normalize(&mut near);
        let vectors = HashMap::from([
            ("качественный шов".to_owned(), vec![1.0, 0.0, 0.0]),
            ("качественные швы".to_owned(), near),
            ("яркий цвет".to_owned(), vec![0.0, 0.0, 1.0]),
        ]);
        (pool, vectors)
    }

    #[test]
    fn clusters_merge_into_the_most_frequent_and_are_written_with_the_review_file() {
        let (pool, vectors) = pool_and_vectors();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("mapping.csv");
        let reference = dir.path().join("reference.csv");
        std::fs::write(
            &reference,
            "good_type,old_tags,new_tag\nAccs,Качественные швы; качественный шов,качественный пошив\nAccs,яркий цвет,\n",
        )
        .expect("reference");
        let config = ConsolidateConfig {
            threshold: 0.9,
            out: out.clone(),
            reference: ReferenceMapping::File(reference),
            naming: None,
        };
        let mut events = Vec::new();
        let report = consolidate_pool(&config, &pool, &vectors, |e| {
            events.push(match e {
                ConsolidateEvent::Clustered { tags, clusters, .. } => {
                    format!("clustered {tags} into {clusters}")
                }
                ConsolidateEvent::Naming { .. } | ConsolidateEvent::Named { .. } => {
                    "naming".to_owned()
                }
                ConsolidateEvent::Written { clusters, .. } => format!("wrote {clusters}"),
            })
        })
        .expect("consolidated");
        assert_eq!(events, ["clustered 3 into 2", "wrote 2"]);
        assert_eq!(report.clusters_written, 2);
        assert_eq!(report.review, dir.path().join("mapping.clusters.csv"));
        let mapping = std::fs::read_to_string(&out).expect("mapping");
        assert_eq!(
            mapping,
            "good_type,old_tags,new_tag\nAccs,качественный шов; качественные швы,качественный шов\nAccs,яркий цвет,яркий цвет\n"
        );
        let review = std::fs::read_to_string(&report.review).expect("review");
        assert_eq!(review.lines().count(), 4);
        assert!(review.contains("Accs,0,качественный шов,качественный шов,1.0000,9,2\n"));
        let comparison = report.comparison.expect("comparison");
        assert!(
            comparison.contains("| Accs | 3 | 1.000 | 1.000 | 1.000 |"),
            "{comparison}"
        );
        assert_eq!(report.consolidation.to_name().len(), 1);
    }

    #[test]
    fn names_replace_the_merged_tag_and_a_missing_vector_is_named() {
        let (pool, mut vectors) = pool_and_vectors();
        let mut consolidation = cluster_pool(0.9, &pool, &vectors, |_| {}).expect("clusters");
        let names = ClusterNames {
            names: HashMap::from([(("Accs".to_owned(), 0), "качественный пошив".to_owned())]),
            failed: 0,
        };
        consolidation.apply_names(&names);
        let merged: Vec<&str> = consolidation.good_types["Accs"]
            .iter()
            .map(|r| r.merged.as_str())
            .collect();
        assert_eq!(
            merged,
            ["качественный пошив", "качественный пошив", "яркий цвет"]
        );
        vectors.remove("яркий цвет");
        let err = cluster_pool(0.9, &pool, &vectors, |_| {}).expect_err("no vector");
        assert_eq!(err.to_string(), "no vector for pool tag \"яркий цвет\"");
        let err = cluster_pool(1.5, &pool, &vectors, |_| {}).expect_err("threshold");
        assert_eq!(
            err.to_string(),
            "--threshold must be a cosine in -1..1, not 1.5"
        );
    }

    #[test]
    fn the_review_file_goes_beside_the_mapping() {
        assert_eq!(
            clusters_path(Path::new("out/map.csv")),
            Path::new("out/map.clusters.csv")
        );
    }

    #[test]
    fn an_empty_pool_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pool.csv");
        std::fs::write(&path, "good_type,tag,frequency,variants\n").expect("pool");
        let err = load_pool(&path).expect_err("empty");
        assert_eq!(err.to_string(), format!("{}: no tags", path.display()));
    }
}
