//! Optional LLM re-ranking of the runtime's answer (the original work's `model/rerank.py`):
//! the product's reviews and our top candidates with their probabilities go to an
//! OpenAI-compatible chat model, which answers with the candidates the reviews support as
//! strict JSON `{"tags": [...]}`; the answer keeps only those.
//!
//! ```text
//! Prediction.probabilities ─ top_k ─▶ candidates ┐
//! reviews (capped) ──────────────────────────────┴▶ prompt ─ ChatClient (retries,
//! timeouts) ─▶ {"tags": [...]} ─ checked against the candidates and the pool's exclusive
//! groups ─▶ RerankOutcome { reranked, rerank_error, tags, … }
//! ```
//!
//! The request goes through the labeler's [`ChatClient`] and answer parser
//! ([`crate::parse_answer`]), so it has the same retries, backoff, timeouts and error
//! classification. What the model may change is bounded:
//!
//! - it can only **confirm** candidates: a tag outside the pool, or in the pool but not
//!   among the candidates, is dropped and noted in [`RerankOutcome::dropped`], never kept;
//! - the kept tags come in **our** probability order, at most one per exclusive group (the
//!   most probable), at most [`RerankConfig::max_tags`];
//! - a model that confirms nothing gives an answer with no tag (`reranked: true`).
//!
//! Whenever no usable answer comes (a timeout, the overall deadline, a malformed answer
//! after the retries, a refused request, a bad key), the outcome **falls back** to our
//! own tags with `reranked: false` and `rerank_error` saying why: re-ranking never makes
//! an answer fail.
//!
//! The reviews leave the machine: they are sent to the chat server named in the
//! configuration.

use std::collections::HashSet;
use std::time::Duration;

use lamoda_data::EtalonPool;
use lamoda_inference::tagger::MAX_TAGS;
use lamoda_inference::{PredictedTag, Prediction, TagProbability};
use serde::Serialize;

use lamoda_data::normalize_tag;

use crate::ask::{AskError, ask_tags};
use crate::client::{ChatClient, ChatConfig};
use crate::error::LlmError;

/// Candidates sent to the model by default: our most probable pool tags.
pub const DEFAULT_TOP_K: usize = 20;
/// The most candidates a configuration may send.
pub const MAX_TOP_K: usize = 100;
/// Reviews sent by default (the runtime's own cap on reviews read).
pub const DEFAULT_MAX_REVIEWS: usize = 32;
/// Characters of one review sent by default (a longer one is cut, with `…`).
pub const DEFAULT_MAX_REVIEW_CHARS: usize = 600;
/// The shortest cut of a review a configuration may ask for.
pub const MIN_REVIEW_CHARS: usize = 20;
/// The per-request timeout of [`RerankConfig::chat_config`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the re-ranking, checked by [`RerankConfig::check`] (and by
/// [`Reranker::new`]). Errors name the `--rerank-*` flags of `predict-tags` and the server.
#[derive(Debug, Clone)]
pub struct RerankConfig {
    /// The chat endpoint, model, key, per-request timeout and retries.
    pub chat: ChatConfig,
    /// Candidates sent: our `top_k` most probable pool tags (1..=[`MAX_TOP_K`]; default
    /// [`DEFAULT_TOP_K`]).
    pub top_k: usize,
    /// The most tags kept (1..=[`MAX_TAGS`]; default [`MAX_TAGS`]).
    pub max_tags: usize,
    /// The first this many non-blank reviews are sent (at least 1; default
    /// [`DEFAULT_MAX_REVIEWS`]).
    pub max_reviews: usize,
    /// Each review is cut to this many characters (at least [`MIN_REVIEW_CHARS`]; default
    /// [`DEFAULT_MAX_REVIEW_CHARS`]).
    pub max_review_chars: usize,
    /// The most the whole re-ranking may take, every attempt and backoff included; past
    /// it the outcome falls back. `None`: bounded only by the chat settings (up to
    /// `max_retries + 1` timeouts plus backoffs).
    pub deadline: Option<Duration>,
}

impl RerankConfig {
    /// A configuration for `chat` with the defaults: [`DEFAULT_TOP_K`] candidates, at most
    /// [`MAX_TAGS`] tags, [`DEFAULT_MAX_REVIEWS`] reviews of at most
    /// [`DEFAULT_MAX_REVIEW_CHARS`] characters, no overall deadline.
    pub fn new(chat: ChatConfig) -> RerankConfig {
        RerankConfig {
            chat,
            top_k: DEFAULT_TOP_K,
            max_tags: MAX_TAGS,
            max_reviews: DEFAULT_MAX_REVIEWS,
            max_review_chars: DEFAULT_MAX_REVIEW_CHARS,
            deadline: None,
        }
    }

    /// The chat settings the re-ranking uses by default: `base_url`, `model` and
    /// `api_key` as given, temperature 0, [`DEFAULT_TIMEOUT`] per request, 2 retries after
    /// a backoff of 0.5 s doubled up to 4 s.
    pub fn chat_config(base_url: &str, model: &str, api_key: Option<String>) -> ChatConfig {
        ChatConfig {
            base_url: base_url.to_owned(),
            model: model.to_owned(),
            api_key,
            temperature: 0.0,
            timeout: DEFAULT_TIMEOUT,
            max_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(4),
        }
    }

    /// The settings of the `--rerank-*` flags (of `predict-tags` and the server): the chat
    /// API at `base_url` with `model` and `api_key`, our `top_k` most probable tags sent,
    /// and `timeout` bounding each request and the whole re-ranking, retries included.
    pub fn from_flags(
        base_url: &str,
        model: &str,
        api_key: Option<String>,
        top_k: usize,
        timeout: Duration,
    ) -> RerankConfig {
        let mut chat = Self::chat_config(base_url, model, api_key);
        chat.timeout = timeout;
        let mut config = Self::new(chat);
        config.top_k = top_k;
        config.deadline = Some(timeout);
        config
    }

    /// Checks the settings; an error names the `--rerank-*` flag at fault.
    pub fn check(&self) -> Result<(), LlmError> {
        self.chat.check().map_err(|e| match e {
            LlmError::Config {
                field,
                reason,
                value,
            } => LlmError::Config {
                field: match field {
                    "--base-url" => "--rerank-url",
                    "--model" => "--rerank-model",
                    "--timeout-s" => "--rerank-timeout-s",
                    other => other,
                },
                reason,
                value,
            },
        })?;
        let bad = |field: &'static str, reason: String, value: String| {
            Err(LlmError::Config {
                field,
                reason,
                value,
            })
        };
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return bad(
                "--rerank-top-k",
                format!("must be within 1..={MAX_TOP_K}"),
                self.top_k.to_string(),
            );
        }
        if !(1..=MAX_TAGS).contains(&self.max_tags) {
            return bad(
                "--rerank-max-tags",
                format!("must be within 1..={MAX_TAGS}"),
                self.max_tags.to_string(),
            );
        }
        if self.max_reviews == 0 {
            return bad(
                "--rerank-max-reviews",
                "must be at least 1".to_owned(),
                self.max_reviews.to_string(),
            );
        }
        if self.max_review_chars < MIN_REVIEW_CHARS {
            return bad(
                "--rerank-max-review-chars",
                format!("must be at least {MIN_REVIEW_CHARS}"),
                self.max_review_chars.to_string(),
            );
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return bad(
                "--rerank-timeout-s",
                "must be positive".to_owned(),
                "0".to_owned(),
            );
        }
        Ok(())
    }
}

/// One product to re-rank. Borrowed: the caller keeps its prediction.
#[derive(Debug, Clone)]
pub struct RerankInput<'a> {
    /// The pool of the category that answered (its tags and exclusive groups).
    pub pool: &'a EtalonPool,
    /// The product's good type, named in the prompt (may be empty).
    pub good_type: &'a str,
    /// The product's reviews (blank ones are skipped; the first
    /// [`RerankConfig::max_reviews`] are sent, each cut to
    /// [`RerankConfig::max_review_chars`]).
    pub reviews: &'a [String],
    /// Our probabilities of the pool's tags, in any order (usually
    /// [`Prediction::probabilities`]): the [`RerankConfig::top_k`] most probable pool
    /// tags are the candidates. Tags outside the pool are ignored.
    pub probabilities: &'a [TagProbability],
    /// Our own decoded tags, most probable first: the answer when re-ranking fails.
    pub own_tags: Vec<&'a str>,
}

impl<'a> RerankInput<'a> {
    /// The input for `prediction` of a product with `reviews`, `pool` being the pool of
    /// the category that answered (`Tagger::pool(prediction.category)`).
    pub fn from_prediction(
        pool: &'a EtalonPool,
        reviews: &'a [String],
        prediction: &'a Prediction,
    ) -> RerankInput<'a> {
        RerankInput {
            pool,
            good_type: &prediction.good_type,
            reviews,
            probabilities: &prediction.probabilities,
            own_tags: prediction.tags.iter().map(|t| t.tag.as_str()).collect(),
        }
    }
}

/// A tag of the model's answer that was not kept, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedTag {
    /// The tag as the model wrote it (a candidate's spelling when it matched one).
    pub tag: String,
    /// Why: outside the pool, not among the candidates, beaten in its exclusive group,
    /// over `max_tags`, or repeated.
    pub reason: String,
}

/// What the re-ranking made of one product. It never fails: without a usable answer it
/// falls back to our own tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RerankOutcome {
    /// True when the model answered and its answer was applied; false on a fallback.
    pub reranked: bool,
    /// Why it fell back (`None` when `reranked`).
    pub rerank_error: Option<String>,
    /// The tags to show: with `reranked`, the candidates the model confirmed, in our
    /// probability order, at most one per exclusive group and at most `max_tags`;
    /// otherwise our own tags, unchanged.
    pub tags: Vec<String>,
    /// The candidates sent, most probable first.
    pub candidates: Vec<TagProbability>,
    /// The tags of the answer that were not kept, with the reason.
    pub dropped: Vec<DroppedTag>,
    /// Chat requests made (0 when nothing was sent).
    pub attempts: u32,
}

impl RerankOutcome {
    /// The fallback: our own tags, `reranked: false` and `error`.
    fn fallback(
        input: &RerankInput<'_>,
        candidates: Vec<TagProbability>,
        error: String,
        attempts: u32,
    ) -> RerankOutcome {
        RerankOutcome {
            reranked: false,
            rerank_error: Some(error),
            tags: input.own_tags.iter().map(|t| (*t).to_owned()).collect(),
            candidates,
            dropped: Vec::new(),
            attempts,
        }
    }
}

/// A client of one chat endpoint configured for re-ranking. Cheap to clone (the HTTP
/// client is shared).
#[derive(Debug, Clone)]
pub struct Reranker {
    client: ChatClient,
    config: RerankConfig,
}

impl Reranker {
    /// A re-ranker for `config` (checked: an error names the `--rerank-*` flag).
    pub fn new(config: RerankConfig) -> Result<Reranker, LlmError> {
        config.check()?;
        let client = ChatClient::new(config.chat.clone())?;
        Ok(Reranker { client, config })
    }

    /// The settings.
    pub fn config(&self) -> &RerankConfig {
        &self.config
    }

    /// The chat client (its endpoint: [`ChatClient::url`]).
    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// The candidates [`Reranker::rerank`] sends for `input`: its
    /// [`RerankConfig::top_k`] most probable pool tags, most probable first (ties in the
    /// given order; each tag once; NaN last).
    pub fn candidates(&self, input: &RerankInput<'_>) -> Vec<TagProbability> {
        select_candidates(input.pool, input.probabilities, self.config.top_k)
    }

    /// The one user message sent for `input` with `candidates`.
    pub fn prompt(&self, input: &RerankInput<'_>, candidates: &[TagProbability]) -> String {
        render_prompt(&self.config, input, candidates)
    }

    /// Re-ranks one product: asks the model which candidates its reviews support and
    /// keeps those (see the module's rules), or falls back to our own tags with the
    /// reason. Never fails and never panics on any answer.
    pub async fn rerank(&self, input: RerankInput<'_>) -> RerankOutcome {
        let candidates = self.candidates(&input);
        if candidates.is_empty() {
            let error = format!(
                "no candidates: none of the {} probabilities names a tag of the {} pool",
                input.probabilities.len(),
                input.pool.category
            );
            return RerankOutcome::fallback(&input, candidates, error, 0);
        }
        if !input.reviews.iter().any(|r| !r.trim().is_empty()) {
            return RerankOutcome::fallback(&input, candidates, "no reviews".to_owned(), 0);
        }
        let message = self.prompt(&input, &candidates);
        let mut attempts = 0u32;
        let asked = ask_tags(&self.client, &message, &mut attempts);
        let answer = match self.config.deadline {
            Some(deadline) => match tokio::time::timeout(deadline, asked).await {
                Ok(answer) => answer,
                Err(_) => Err(AskError::Failed(format!(
                    "timed out after {:.1} s (the re-ranking's deadline)",
                    deadline.as_secs_f64()
                ))),
            },
            None => asked.await,
        };
        match answer {
            Ok(tags) => {
                let (tags, dropped) =
                    keep_confirmed(input.pool, &candidates, &tags, self.config.max_tags);
                RerankOutcome {
                    reranked: true,
                    rerank_error: None,
                    tags,
                    candidates,
                    dropped,
                    attempts,
                }
            }
            Err(AskError::Failed(reason)) => {
                let error = format!("{}: {reason}", self.client.url());
                RerankOutcome::fallback(&input, candidates, error, attempts)
            }
            Err(AskError::Fatal(reason)) => {
                let error = format!(
                    "{}: the chat server refuses every request: {}",
                    self.client.url(),
                    neutral_hint(&reason)
                );
                RerankOutcome::fallback(&input, candidates, error, attempts)
            }
        }
    }

    /// [`Reranker::rerank`] for synchronous callers (a command line): runs it on a
    /// current-thread runtime made for the call. Called from inside an async runtime (where
    /// blocking would stall it) it falls back at once, saying so: use `rerank().await`
    /// there.
    pub fn rerank_blocking(&self, input: RerankInput<'_>) -> RerankOutcome {
        if tokio::runtime::Handle::try_current().is_ok() {
            let candidates = self.candidates(&input);
            let error = "rerank_blocking was called inside an async runtime (use rerank)";
            return RerankOutcome::fallback(&input, candidates, error.to_owned(), 0);
        }
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.rerank(input)),
            Err(e) => {
                let candidates = self.candidates(&input);
                let error = format!("cannot start an async runtime: {e}");
                RerankOutcome::fallback(&input, candidates, error, 0)
            }
        }
    }
}

/// Applies `outcome` to `prediction`: with `reranked`, its tags become the kept ones, in
/// the outcome's order. A kept tag our decoding had chosen keeps its probability,
/// mentions and evidence; a confirmed candidate below our threshold (the model may
/// confirm any of the top-k, as in the original work) comes with its own probability from
/// [`Prediction::probabilities`], `mentions: 0` and no evidence (the prediction holds
/// per-review support only for the tags it decoded). Without `reranked` the prediction is
/// left as it is (our own tags). `probabilities` are never changed.
pub fn apply_rerank(prediction: &mut Prediction, outcome: &RerankOutcome) {
    if !outcome.reranked {
        return;
    }
    let tags: Vec<PredictedTag> = outcome
        .tags
        .iter()
        .map(|tag| {
            prediction
                .tags
                .iter()
                .find(|t| &t.tag == tag)
                .cloned()
                .unwrap_or_else(|| PredictedTag {
                    tag: tag.clone(),
                    probability: prediction
                        .probabilities
                        .iter()
                        .find(|p| &p.tag == tag)
                        .map_or(0.0, |p| p.probability),
                    mentions: 0,
                    evidence: Vec::new(),
                })
        })
        .collect();
    prediction.tags = tags;
}

/// The `top_k` most probable pool tags of `probabilities`, most probable first.
fn select_candidates(
    pool: &EtalonPool,
    probabilities: &[TagProbability],
    top_k: usize,
) -> Vec<TagProbability> {
    let mut seen = HashSet::new();
    let mut candidates: Vec<TagProbability> = probabilities
        .iter()
        .filter(|p| pool.contains(&p.tag) && seen.insert(p.tag.as_str()))
        .cloned()
        .collect();
    // Stable: ties keep the given (pool) order. NaN sorts last.
    candidates.sort_by(|a, b| {
        let key = |p: f32| if p.is_nan() { f32::NEG_INFINITY } else { p };
        key(b.probability).total_cmp(&key(a.probability))
    });
    candidates.truncate(top_k);
    candidates
}

/// `text` trimmed, its white space collapsed, cut to `max` characters (with `…`).
fn cut_review(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn render_prompt(
    config: &RerankConfig,
    input: &RerankInput<'_>,
    candidates: &[TagProbability],
) -> String {
    let reviews: Vec<String> = input
        .reviews
        .iter()
        .filter(|r| !r.trim().is_empty())
        .take(config.max_reviews)
        .enumerate()
        .map(|(i, r)| format!("{}. {}", i + 1, cut_review(r, config.max_review_chars)))
        .collect();
    let listed: Vec<String> = candidates
        .iter()
        .map(|c| format!("- {} ({:.2})", c.tag, c.probability))
        .collect();
    let names: HashSet<&str> = candidates.iter().map(|c| c.tag.as_str()).collect();
    let groups: Vec<String> = input
        .pool
        .exclusive
        .iter()
        .filter_map(|g| {
            let among: Vec<&str> = g
                .tags
                .iter()
                .map(String::as_str)
                .filter(|t| names.contains(t))
                .collect();
            (among.len() > 1).then(|| format!("- {}", among.join(" / ")))
        })
        .collect();
    let good_type = if input.good_type.trim().is_empty() {
        String::new()
    } else {
        format!(" (тип: {})", input.good_type.trim())
    };
    let mut text = format!(
        "Ты проверяешь теги товара{good_type} интернет-магазина одежды, обуви и аксессуаров \
         по отзывам покупателей.\n\n\
         Отзывы:\n{}\n\n\
         Теги-кандидаты (в скобках — вероятность по нашей модели):\n{}\n",
        reviews.join("\n"),
        listed.join("\n")
    );
    if !groups.is_empty() {
        text.push_str(&format!(
            "\nВзаимоисключающие теги (из каждой строки — не больше одного):\n{}\n",
            groups.join("\n")
        ));
    }
    text.push_str(&format!(
        "\nПравила:\n\
         1. Выбери из кандидатов только те теги, которые прямо подтверждают отзывы; не больше \
         {}.\n\
         2. Не придумывай новых тегов и не меняй их написание: копируй тег из списка в \
         точности.\n\
         3. Если ни один кандидат не подтверждается отзывами, верни пустой список.\n\n\
         Ответь только JSON-объектом, без пояснений, в точности такого вида:\n\
         {{\"tags\": [\"Тег 1\", \"Тег 2\"]}}\n\
         или, если подтверждать нечего:\n\
         {{\"tags\": []}}\n",
        config.max_tags
    ));
    text
}

/// The kept tags of an answer and the dropped ones. A tag of the answer matches a pool tag
/// exactly or, failing that, by normalised form (case, `ё`, punctuation). Kept: the
/// matched candidates, in the candidates' (probability) order, the most probable of each
/// exclusive group, at most `max_tags`.
fn keep_confirmed(
    pool: &EtalonPool,
    candidates: &[TagProbability],
    answer: &[String],
    max_tags: usize,
) -> (Vec<String>, Vec<DroppedTag>) {
    let mut dropped = Vec::new();
    let mut confirmed: HashSet<&str> = HashSet::new();
    for said in answer {
        let pool_tag = pool
            .tags
            .iter()
            .find(|t| *t == said)
            .or_else(|| {
                let normalized = normalize_tag(said);
                pool.tags.iter().find(|t| normalize_tag(t) == normalized)
            })
            .map(String::as_str);
        let Some(tag) = pool_tag else {
            dropped.push(DroppedTag {
                tag: said.clone(),
                reason: format!("not a tag of the {} pool", pool.category),
            });
            continue;
        };
        if !candidates.iter().any(|c| c.tag == tag) {
            dropped.push(DroppedTag {
                tag: tag.to_owned(),
                reason: "not among the candidates sent".to_owned(),
            });
        } else if !confirmed.insert(tag) {
            dropped.push(DroppedTag {
                tag: tag.to_owned(),
                reason: "repeated".to_owned(),
            });
        }
    }
    let group_of = |tag: &str| {
        pool.exclusive
            .iter()
            .find(|g| g.tags.iter().any(|t| t == tag))
    };
    let mut kept: Vec<String> = Vec::new();
    for candidate in candidates
        .iter()
        .filter(|c| confirmed.contains(c.tag.as_str()))
    {
        let tag = candidate.tag.as_str();
        if let Some(group) = group_of(tag)
            && let Some(winner) = kept.iter().find(|k| group.tags.contains(k))
        {
            dropped.push(DroppedTag {
                tag: tag.to_owned(),
                reason: format!(
                    "exclusive group `{}` keeps the more probable {winner:?}",
                    group.name
                ),
            });
            continue;
        }
        if kept.len() == max_tags {
            dropped.push(DroppedTag {
                tag: tag.to_owned(),
                reason: format!("over the limit of {max_tags} tags"),
            });
            continue;
        }
        kept.push(tag.to_owned());
    }
    (kept, dropped)
}

/// The client's hints name the labeler's flags; the re-ranker's caller has its own.
fn neutral_hint(reason: &str) -> String {
    reason
        .replace("(check the key in --api-key-env)", "(check the API key)")
        .replace(
            "(check --base-url and --model)",
            "(check the URL and the model)",
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_data::{Category, TagGroup};

    fn pool() -> EtalonPool {
        let mut pool = EtalonPool::new(
            Category::Bags,
            [
                "Вместительная",
                "Лёгкая",
                "Тяжёлая",
                "Удобная",
                "Есть дефекты",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .expect("pool");
        pool.exclusive.push(TagGroup {
            name: "weight".to_owned(),
            tags: vec!["Лёгкая".to_owned(), "Тяжёлая".to_owned()],
        });
        pool
    }

    fn probs(list: &[(&str, f32)]) -> Vec<TagProbability> {
        list.iter()
            .map(|(t, p)| TagProbability {
                tag: t.to_string(),
                probability: *p,
            })
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn config() -> RerankConfig {
        RerankConfig::new(RerankConfig::chat_config(
            "http://127.0.0.1:9/v1",
            "m",
            None,
        ))
    }

    #[test]
    fn candidates_are_the_top_k_pool_tags_by_probability() {
        let pool = pool();
        let p = probs(&[
            ("Вместительная", 0.2),
            ("Лёгкая", 0.9),
            ("Чужой", 0.99),
            ("Тяжёлая", f32::NAN),
            ("Удобная", 0.5),
            ("Есть дефекты", 0.5),
            ("Лёгкая", 0.1),
        ]);
        let top = select_candidates(&pool, &p, 4);
        let tags: Vec<&str> = top.iter().map(|c| c.tag.as_str()).collect();
        assert_eq!(tags, ["Лёгкая", "Удобная", "Есть дефекты", "Вместительная"]);
        assert_eq!(select_candidates(&pool, &p, 1).len(), 1);
        assert_eq!(select_candidates(&pool, &p, 100).len(), 5);
    }

    #[test]
    fn the_prompt_holds_candidates_reviews_groups_and_the_answer_format() {
        let pool = pool();
        let p = probs(&[
            ("Вместительная", 0.93),
            ("Лёгкая", 0.81),
            ("Тяжёлая", 0.3),
            ("Удобная", 0.1),
            ("Есть дефекты", 0.05),
        ]);
        let reviews = strings(&[
            "Очень   вместительная\nсумка",
            "  ",
            &"длинный ".repeat(200),
            "третий",
        ]);
        let mut config = config();
        config.top_k = 3;
        config.max_reviews = 2;
        config.max_review_chars = 40;
        let input = RerankInput {
            pool: &pool,
            good_type: "Bags",
            reviews: &reviews,
            probabilities: &p,
            own_tags: vec!["Вместительная"],
        };
        let candidates = select_candidates(&pool, &p, config.top_k);
        let text = render_prompt(&config, &input, &candidates);
        assert!(text.contains("(тип: Bags)"), "{text}");
        assert!(text.contains("1. Очень вместительная сумка\n"), "{text}");
        let second = format!("2. {}…\n", "длинный ".repeat(5).trim_end());
        assert!(text.contains(&second[..second.len() - 1]), "{text}");
        assert!(!text.contains("третий"), "max_reviews: {text}");
        assert!(text.contains("- Вместительная (0.93)\n- Лёгкая (0.81)\n- Тяжёлая (0.30)\n"));
        assert!(!text.contains("Удобная"), "top_k: {text}");
        assert!(text.contains("- Лёгкая / Тяжёлая"), "{text}");
        assert!(text.contains("не больше 6"), "{text}");
        assert!(text.contains("{\"tags\": []}"), "{text}");
    }

    #[test]
    fn cut_reviews_keep_their_length_in_characters() {
        assert_eq!(cut_review(" а  б ", 20), "а б");
        let cut = cut_review(&"ё".repeat(50), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn only_confirmed_candidates_stay_in_probability_order() {
        let pool = pool();
        let candidates = probs(&[("Вместительная", 0.9), ("Удобная", 0.6), ("Лёгкая", 0.4)]);
        let (kept, dropped) = keep_confirmed(
            &pool,
            &candidates,
            &strings(&[
                "лёгкая",
                "Вместительная",
                "Прочная",
                "Есть дефекты",
                "Легкая",
            ]),
            6,
        );
        assert_eq!(kept, ["Вместительная", "Лёгкая"]);
        let notes: Vec<String> = dropped
            .iter()
            .map(|d| format!("{}: {}", d.tag, d.reason))
            .collect();
        assert_eq!(
            notes,
            [
                "Прочная: not a tag of the bags pool",
                "Есть дефекты: not among the candidates sent",
                "Лёгкая: repeated",
            ]
        );
    }

    #[test]
    fn one_tag_per_exclusive_group_and_at_most_max_tags() {
        let pool = pool();
        let candidates = probs(&[
            ("Тяжёлая", 0.7),
            ("Вместительная", 0.6),
            ("Лёгкая", 0.5),
            ("Удобная", 0.4),
        ]);
        let answer = strings(&["Лёгкая", "Тяжёлая", "Удобная", "Вместительная"]);
        let (kept, dropped) = keep_confirmed(&pool, &candidates, &answer, 6);
        assert_eq!(kept, ["Тяжёлая", "Вместительная", "Удобная"]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].tag, "Лёгкая");
        assert!(dropped[0].reason.contains("`weight`"), "{:?}", dropped[0]);
        let (kept, dropped) = keep_confirmed(&pool, &candidates, &answer, 2);
        assert_eq!(kept, ["Тяжёлая", "Вместительная"]);
        assert_eq!(dropped.len(), 2);
        assert!(dropped[1].reason.contains("limit of 2"), "{dropped:?}");
        let (kept, dropped) = keep_confirmed(&pool, &candidates, &[], 6);
        assert!(kept.is_empty() && dropped.is_empty());
    }

    #[test]
    fn settings_are_checked_naming_the_rerank_flags() {
        assert!(config().check().is_ok());
        let mut c = config();
        c.top_k = 0;
        assert!(
            c.check()
                .expect_err("top_k")
                .to_string()
                .contains("--rerank-top-k")
        );
        let mut c = config();
        c.max_tags = 7;
        assert!(
            c.check()
                .expect_err("max_tags")
                .to_string()
                .contains("--rerank-max-tags")
        );
        let mut c = config();
        c.max_review_chars = 5;
        assert!(c.check().is_err());
        let mut c = config();
        c.deadline = Some(Duration::ZERO);
        assert!(
            c.check()
                .expect_err("deadline")
                .to_string()
                .contains("--rerank-timeout-s")
        );
        let mut c = config();
        c.chat.base_url = "127.0.0.1:8000".to_owned();
        let err = Reranker::new(c).expect_err("url").to_string();
        assert!(err.starts_with("--rerank-url: "), "{err}");
        let mut c = config();
        c.chat.model = " ".to_owned();
        let err = c.check().expect_err("model").to_string();
        assert!(err.starts_with("--rerank-model: "), "{err}");
    }

    fn prediction() -> Prediction {
        let tag = |t: &str, p: f32, mentions: usize| PredictedTag {
            tag: t.to_owned(),
            probability: p,
            mentions,
            evidence: Vec::new(),
        };
        Prediction {
            good_type: "Bags".to_owned(),
            category: Category::Bags,
            fallback: false,
            tags: vec![tag("Вместительная", 0.9, 2), tag("Удобная", 0.6, 1)],
            probabilities: probs(&[
                ("Вместительная", 0.9),
                ("Лёгкая", 0.3),
                ("Тяжёлая", 0.1),
                ("Удобная", 0.6),
                ("Есть дефекты", 0.05),
            ]),
            calibrated: false,
            reviews_read: 2,
        }
    }

    fn outcome(reranked: bool, tags: &[&str]) -> RerankOutcome {
        RerankOutcome {
            reranked,
            rerank_error: (!reranked).then(|| "timed out".to_owned()),
            tags: strings(tags),
            candidates: Vec::new(),
            dropped: Vec::new(),
            attempts: 1,
        }
    }

    #[test]
    fn applying_keeps_our_tags_details_and_adds_confirmed_candidates() {
        let mut p = prediction();
        apply_rerank(&mut p, &outcome(true, &["Вместительная", "Лёгкая"]));
        assert_eq!(p.tags.len(), 2);
        assert_eq!(
            (p.tags[0].tag.as_str(), p.tags[0].mentions),
            ("Вместительная", 2)
        );
        assert_eq!(p.tags[1].tag, "Лёгкая");
        assert!((p.tags[1].probability - 0.3).abs() < 1e-6);
        assert_eq!(p.tags[1].mentions, 0);
        assert_eq!(p.probabilities, prediction().probabilities);

        let mut p = prediction();
        apply_rerank(&mut p, &outcome(false, &[]));
        assert_eq!(p, prediction());
        let mut p = prediction();
        apply_rerank(&mut p, &outcome(true, &[]));
        assert!(p.tags.is_empty());
    }

    #[test]
    fn input_from_a_prediction_and_fallbacks_without_candidates_or_reviews() {
        let pool = pool();
        let p = prediction();
        let reviews = strings(&["  "]);
        let input = RerankInput::from_prediction(&pool, &reviews, &p);
        assert_eq!(input.own_tags, ["Вместительная", "Удобная"]);
        assert_eq!(input.good_type, "Bags");
        let reranker = Reranker::new(config()).expect("reranker");
        // Nothing is sent (the URL is unreachable anyway).
        let out = reranker.rerank_blocking(input.clone());
        assert!(!out.reranked);
        assert_eq!(out.rerank_error.as_deref(), Some("no reviews"));
        assert_eq!(out.tags, ["Вместительная", "Удобная"]);
        assert_eq!(out.attempts, 0);
        let other = EtalonPool::new(Category::Shoes, strings(&["Мягкие"])).expect("pool");
        let input = RerankInput {
            pool: &other,
            ..input
        };
        let out = reranker.rerank_blocking(input);
        assert!(!out.reranked);
        assert!(
            out.rerank_error
                .as_deref()
                .is_some_and(|e| e.starts_with("no candidates")),
            "{out:?}"
        );
    }

    #[test]
    fn hints_name_no_labeler_flag() {
        assert_eq!(
            neutral_hint("HTTP 401: no (check the key in --api-key-env)"),
            "HTTP 401: no (check the API key)"
        );
    }
}
