//! Labeling a product table with an LLM: each product's reviews in chunks under a token
//! budget, a chat request per chunk with retries, the answers parsed, validated and
//! merged, one record per product appended to the store as it finishes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use lamoda_data::Product;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use crate::CurationError;
use crate::chunk::chunk_reviews;
use crate::prompt::Prompt;
use crate::store::{Record, Rejected, Status, Store};
use crate::time::rfc3339;
use crate::validate::{Validated, validate_tags};
use lamoda_llm::{AskError, ChatClient, ask_tags};

/// How to run the labeling.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// Products labeled at once (each has at most one request in flight).
    pub concurrency: usize,
    /// Redo the products whose record says `failed` (else they are kept as they are).
    pub retry_failed: bool,
    /// The token budget of one chunk of reviews (the estimate of [`crate::estimate_tokens`];
    /// the prompt's own text comes on top).
    pub max_chunk_tokens: usize,
}

impl LabelOptions {
    fn check(&self) -> Result<(), CurationError> {
        if self.concurrency == 0 {
            return Err(CurationError::Config {
                field: "--concurrency",
                reason: "must be at least 1".to_owned(),
                value: self.concurrency.to_string(),
            });
        }
        if self.max_chunk_tokens < 2 * crate::TOKENS_PER_REVIEW {
            return Err(CurationError::Config {
                field: "--max-chunk-tokens",
                reason: format!("must be at least {}", 2 * crate::TOKENS_PER_REVIEW),
                value: self.max_chunk_tokens.to_string(),
            });
        }
        Ok(())
    }
}

/// Where a run stands, after each product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelProgress {
    /// Products of the input.
    pub total: usize,
    /// Products the store already held (same key), skipped.
    pub already_done: usize,
    /// Products labeled `ok` in this run.
    pub ok: usize,
    /// Products recorded as `failed` in this run.
    pub failed: usize,
}

impl LabelProgress {
    /// Products still to do in this run.
    pub fn remaining(&self) -> usize {
        self.total - self.already_done - self.ok - self.failed
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSummary {
    /// The final counts.
    pub progress: LabelProgress,
    /// Products kept as `failed` from an earlier run (no `--retry-failed`).
    pub kept_failed: usize,
    /// Records of the store dropped to be redone (failed with `--retry-failed`, or a key
    /// that changed with the prompt, the model or the reviews).
    pub redone: usize,
    /// Whether a cut last line (a kill mid-write) was dropped.
    pub cut_tail: bool,
    /// Chat requests made.
    pub requests: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

/// The key of a product's record: SHA-256 (hex) of the prompt template, the model name and
/// the product's good type, name and reviews. A rerun redoes a product whose key changed.
pub fn record_key(prompt: &Prompt, model: &str, product: &Product) -> String {
    let mut hash = Sha256::new();
    for part in [
        "lamoda-curation label v1",
        prompt.text(),
        model,
        &product.good_type,
        &product.name,
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.update((product.reviews.len() as u64).to_le_bytes());
    for review in &product.reviews {
        hash.update((review.len() as u64).to_le_bytes());
        hash.update(review.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Labels `products` (read from `input`, named in errors) into the store at `out`: the
/// products the store holds with the same key are skipped (failed ones too, unless
/// `retry_failed`), the others labeled `concurrency` at a time, each record appended and
/// synced as its product finishes. `progress` is called once at the start and after each
/// product. Fails (keeping every record written) when the store cannot be read or
/// written or the server refuses the whole run (401, 403, 404).
pub async fn label_products(
    products: &[Product],
    input: &Path,
    prompt: &Prompt,
    client: &ChatClient,
    out: &Path,
    options: &LabelOptions,
    mut progress: impl FnMut(&LabelProgress),
) -> Result<LabelSummary, CurationError> {
    options.check()?;
    let started = Instant::now();
    let model = client.config().model.clone();
    let mut keys: HashMap<&str, (usize, String)> = HashMap::new();
    for product in products {
        if let Some((row, _)) = keys.get(product.sku.as_str()) {
            return Err(CurationError::BadValue {
                path: input.to_owned(),
                line: product.row,
                field: "product_sku".to_owned(),
                reason: format!("the SKU is also on row {row}: one row per product"),
                value: product.sku.clone(),
            });
        }
        keys.insert(
            &product.sku,
            (product.row, record_key(prompt, &model, product)),
        );
    }
    let (mut store, opened) = Store::open(out, |record| match keys.get(record.sku.as_str()) {
        // A product not in this input: kept as it is.
        None => true,
        Some((_, key)) => {
            *key == record.key && (record.status == Status::Ok || !options.retry_failed)
        }
    })?;
    let done: HashSet<&str> = opened
        .kept
        .iter()
        .filter(|r| keys.contains_key(r.sku.as_str()))
        .map(|r| r.sku.as_str())
        .collect();
    let kept_failed = opened
        .kept
        .iter()
        .filter(|r| done.contains(r.sku.as_str()) && r.status == Status::Failed)
        .count();
    let mut state = LabelProgress {
        total: products.len(),
        already_done: done.len(),
        ok: 0,
        failed: 0,
    };
    progress(&state);

    let prompt = Arc::new(prompt.clone());
    let client = Arc::new(client.clone());
    let budget = options.max_chunk_tokens;
    let mut todo = products.iter().filter(|p| !done.contains(p.sku.as_str()));
    let mut running: JoinSet<Result<(Record, u32), CurationError>> = JoinSet::new();
    let mut requests = 0u64;
    loop {
        while running.len() < options.concurrency {
            let Some(product) = todo.next() else { break };
            let key = keys
                .get(product.sku.as_str())
                .map(|(_, k)| k.clone())
                .unwrap_or_default();
            let (product, prompt, client) = (product.clone(), prompt.clone(), client.clone());
            running.spawn(async move { label_one(&product, key, &prompt, &client, budget).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (record, attempts) = joined.map_err(|e| CurationError::Server {
            url: client.url().to_owned(),
            reason: format!("a labeling task failed: {e}"),
        })??;
        requests += u64::from(attempts);
        store.append(&record)?;
        match record.status {
            Status::Ok => state.ok += 1,
            Status::Failed => state.failed += 1,
        }
        progress(&state);
    }
    Ok(LabelSummary {
        progress: state,
        kept_failed,
        redone: opened.dropped,
        cut_tail: opened.cut_tail,
        requests,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Labels one product: its record and the requests it took.
async fn label_one(
    product: &Product,
    key: String,
    prompt: &Prompt,
    client: &ChatClient,
    budget: usize,
) -> Result<(Record, u32), CurationError> {
    let started_at = rfc3339(SystemTime::now());
    let chunks = chunk_reviews(&product.reviews, budget);
    let mut attempts = 0u32;
    let mut answers = Vec::with_capacity(chunks.len());
    let mut failure = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let message = prompt.render(&product.good_type, &product.name, chunk);
        match ask_tags(client, &message, &mut attempts).await {
            Ok(tags) => answers.push(validate_tags(&tags)),
            Err(AskError::Failed(reason)) => {
                failure = Some(format!("chunk {}/{}: {reason}", i + 1, chunks.len()));
                break;
            }
            Err(AskError::Fatal(reason)) => {
                return Err(CurationError::Server {
                    url: client.url().to_owned(),
                    reason,
                });
            }
        }
    }
    let (status, tags, rejected) = match &failure {
        Some(_) => (Status::Failed, Vec::new(), Vec::new()),
        None => {
            let (tags, rejected) = merge_chunks(answers);
            (Status::Ok, tags, rejected)
        }
    };
    let record = Record {
        sku: product.sku.clone(),
        key,
        status,
        good_type: product.good_type.clone(),
        tags,
        reason: failure,
        rejected,
        chunks: chunks.len(),
        attempts,
        model: client.config().model.clone(),
        started_at,
        finished_at: rfc3339(SystemTime::now()),
    };
    Ok((record, attempts))
}

/// Asks the LLM for one name for a cluster of raw tags of `good_type` (consolidation):
/// the answer is the labeler's format, `{"tags": ["name"]}`, parsed and retried the same
/// way; its first tag that passes the tag rules (1–3 words, no size), normalised, is the name.
/// `Ok(Err(reason))` when no usable name came (the caller keeps its own); `Err` when the
/// server refuses every request.
pub async fn name_cluster(
    client: &ChatClient,
    good_type: &str,
    members: &[String],
) -> Result<Result<String, String>, CurationError> {
    let list: Vec<String> = members.iter().map(|m| format!("- {m}")).collect();
    let message = format!(
        "These customer-review tags of the product type {good_type} mean nearly the same \
         thing:\n{}\n\nGive one short tag (1–3 words, in Russian, about the same concrete \
         property) that names them all. Answer with JSON only: {{\"tags\": [\"<name>\"]}}",
        list.join("\n")
    );
    let mut attempts = 0;
    match ask_tags(client, &message, &mut attempts).await {
        Ok(tags) => Ok(tags
            .iter()
            .find_map(|t| {
                crate::validate::check_tag(t)
                    .ok()
                    .map(|(_, normalized)| normalized)
            })
            .ok_or_else(|| format!("no usable name in {tags:?}"))),
        Err(AskError::Failed(reason)) => Ok(Err(reason)),
        Err(AskError::Fatal(reason)) => Err(CurationError::Server {
            url: client.url().to_owned(),
            reason,
        }),
    }
}

/// Merges the validated answers of a product's chunks: a tag counts once per chunk that
/// names it (by normalised form, the first spelling kept); tags are ordered by that count,
/// then by first appearance. A tag `не X` and a tag `X` contradict each other: the one
/// more chunks name stays, on a tie both go. Refused and dropped tags are listed.
pub(crate) fn merge_chunks(answers: Vec<Validated>) -> (Vec<String>, Vec<Rejected>) {
    struct Entry {
        tidy: String,
        normalized: String,
        chunks: usize,
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut rejected = Vec::new();
    for answer in answers {
        rejected.extend(answer.rejected);
        for (tidy, normalized) in answer.tags {
            match entries.iter_mut().find(|e| e.normalized == normalized) {
                Some(entry) => entry.chunks += 1,
                None => entries.push(Entry {
                    tidy,
                    normalized,
                    chunks: 1,
                }),
            }
        }
    }
    let mut drop = vec![false; entries.len()];
    for (i, negated) in entries.iter().enumerate() {
        let Some(base) = negated.normalized.strip_prefix("не ") else {
            continue;
        };
        let Some(j) = entries.iter().position(|e| e.normalized == base) else {
            continue;
        };
        let (a, b) = (negated.chunks, entries[j].chunks);
        for (loser, winner) in [(i, j), (j, i)] {
            let loses = if loser == i { a <= b } else { b <= a };
            if loses {
                drop[loser] = true;
                rejected.push(Rejected {
                    tag: entries[loser].tidy.clone(),
                    reason: if a == b {
                        format!("contradicts {:?} (as many chunks)", entries[winner].tidy)
                    } else {
                        format!("contradicts {:?} (fewer chunks)", entries[winner].tidy)
                    },
                });
            }
        }
    }
    let mut kept: Vec<(usize, Entry)> = entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop[*i])
        .collect();
    // Stable: ties keep their first appearance.
    kept.sort_by_key(|(_, e)| std::cmp::Reverse(e.chunks));
    (kept.into_iter().map(|(_, e)| e.tidy).collect(), rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn answer(tags: &[&str]) -> Validated {
        validate_tags(&tags.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn chunks_merge_by_support_then_first_appearance() {
        let (tags, rejected) = merge_chunks(vec![
            answer(&["Мягкие", "Легкие"]),
            answer(&["Удобные", "легкие", "42 размер"]),
            answer(&["Удобные", "Лёгкие"]),
        ]);
        assert_eq!(tags, ["Легкие", "Удобные", "Мягкие"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].tag, "42 размер");
    }

    #[test]
    fn contradictions_keep_the_better_supported_side_or_neither() {
        let (tags, rejected) = merge_chunks(vec![
            answer(&["Жмут", "Маркие"]),
            answer(&["Не жмут", "Не маркие"]),
            answer(&["Не жмут"]),
        ]);
        assert_eq!(tags, ["Не жмут"]);
        let reasons: Vec<String> = rejected
            .iter()
            .map(|r| format!("{}: {}", r.tag, r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "Жмут: contradicts \"Не жмут\" (fewer chunks)",
                "Не маркие: contradicts \"Маркие\" (as many chunks)",
                "Маркие: contradicts \"Не маркие\" (as many chunks)",
            ]
        );
    }

    fn product(reviews: &[&str]) -> Product {
        Product {
            row: 1,
            sku: "SKU1".to_owned(),
            comment_ids: (0..reviews.len() as u64).collect(),
            reviews: reviews.iter().map(|s| s.to_string()).collect(),
            name: "Кеды".to_owned(),
            good_type: "Shoes".to_owned(),
            good_subtype: String::new(),
            tags: None,
        }
    }

    #[test]
    fn the_key_changes_with_prompt_model_and_reviews_only() {
        let prompt = Prompt::new(Path::new("p"), "{reviews}".to_owned()).expect("prompt");
        let other = Prompt::new(Path::new("p"), "Отзывы: {reviews}".to_owned()).expect("prompt");
        let base = record_key(&prompt, "m", &product(&["a", "b"]));
        assert_eq!(base.len(), 64);
        assert_eq!(base, record_key(&prompt, "m", &product(&["a", "b"])));
        assert_ne!(base, record_key(&other, "m", &product(&["a", "b"])));
        assert_ne!(base, record_key(&prompt, "m2", &product(&["a", "b"])));
        assert_ne!(base, record_key(&prompt, "m", &product(&["ab"])));
        assert_ne!(base, record_key(&prompt, "m", &product(&["a", "b", ""])));
        let mut subtype = product(&["a", "b"]);
        subtype.good_subtype = "SNEAKERS".to_owned();
        assert_eq!(base, record_key(&prompt, "m", &subtype));
    }
}
