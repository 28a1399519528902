//! One chat completion over any OpenAI-compatible API (`POST {base}/chat/completions`),
//! and how a failed attempt is classified and waited on.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::{LlmError, excerpt};

/// Settings of the chat endpoint and of retrying.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The API's base URL, e.g. `http://127.0.0.1:8000/v1` (`/chat/completions` is
    /// appended). Plain `http://` only: this build has no TLS.
    pub base_url: String,
    /// The model name sent in each request.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Sampling temperature sent in each request.
    pub temperature: f32,
    /// The limit on one request, connecting to the end of the answer.
    pub timeout: Duration,
    /// Retries of one chunk after its first attempt (any retryable failure or a malformed
    /// answer).
    pub max_retries: u32,
    /// The first backoff; it doubles per retry, up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest backoff (a server's `Retry-After` may ask for longer, up to 10 min).
    pub backoff_max: Duration,
}

impl ChatConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), LlmError> {
        let url = self.base_url.trim();
        if !url.starts_with("http://") {
            return Err(LlmError::Config {
                field: "--base-url",
                reason: if url.starts_with("https://") {
                    "https is not built in: use the server's plain http address (a local \
                     server, or a TLS-terminating proxy on this machine)"
                        .to_owned()
                } else {
                    "must start with http://, e.g. http://127.0.0.1:8000/v1".to_owned()
                },
                value: self.base_url.clone(),
            });
        }
        if self.model.trim().is_empty() {
            return Err(LlmError::Config {
                field: "--model",
                reason: "must not be empty".to_owned(),
                value: self.model.clone(),
            });
        }
        if self.timeout.is_zero() {
            return Err(LlmError::Config {
                field: "--timeout-s",
                reason: "must be positive".to_owned(),
                value: format!("{:?}", self.timeout),
            });
        }
        Ok(())
    }
}

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptError {
    /// Worth another try: 429, 408, 5xx, a timeout, a refused or dropped connection, or a
    /// 2xx whose body is not a chat completion. `retry_after` is the server's wish.
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// This product's request is refused (another 4xx): no retry, the product fails.
    Refused { reason: String },
    /// The server refuses every request (401, 403, 404): the run stops.
    Fatal { reason: String },
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

/// A client of one chat endpoint.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    config: ChatConfig,
}

impl ChatClient {
    /// A client for `config` (checked).
    pub fn new(config: ChatConfig) -> Result<ChatClient, LlmError> {
        config.check()?;
        let url = format!(
            "{}/chat/completions",
            config.base_url.trim().trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| LlmError::Config {
                field: "--base-url",
                reason: format!("cannot build an HTTP client: {e}"),
                value: config.base_url.clone(),
            })?;
        Ok(ChatClient { http, url, config })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The settings.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// One request with `prompt` as the user message: the answer's content.
    pub(crate) async fn attempt(&self, prompt: &str) -> Result<String, AttemptError> {
        let body = serde_json::json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.config.temperature,
            "stream": false,
        });
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = response.text().await.map_err(transport_error)?;
        let said = || format!("HTTP {status}: {}", excerpt(text.trim()));
        if status.is_success() {
            let completion: Completion =
                serde_json::from_str(&text).map_err(|e| AttemptError::Retryable {
                    reason: format!("not a chat completion ({e}): {}", excerpt(text.trim())),
                    retry_after: None,
                })?;
            let content = completion
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .ok_or_else(|| AttemptError::Retryable {
                    reason: "a chat completion without choices[0].message.content".to_owned(),
                    retry_after: None,
                })?;
            return Ok(content);
        }
        let code = status.as_u16();
        Err(match code {
            429 | 408 | 500..=599 => AttemptError::Retryable {
                reason: said(),
                retry_after,
            },
            401 | 403 => AttemptError::Fatal {
                reason: format!("{} (check the key in --api-key-env)", said()),
            },
            404 => AttemptError::Fatal {
                reason: format!("{} (check --base-url and --model)", said()),
            },
            _ => AttemptError::Refused { reason: said() },
        })
    }

    /// How long to wait before retry number `retry` (1 for the first): exponential backoff
    /// with jitter, `base · 2^(retry−1)` capped at `backoff_max`, drawn uniformly from its
    /// upper half; at least the server's `Retry-After` (itself capped at 10 minutes).
    pub(crate) fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        backoff(
            self.config.backoff_base,
            self.config.backoff_max,
            retry,
            retry_after,
            &mut rand::rng(),
        )
    }
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

fn backoff(
    base: Duration,
    max: Duration,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut impl rand::Rng,
) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
    let full = base.saturating_mul(factor).min(max);
    let jittered = full.mul_f64(0.5 + 0.5 * rng.random::<f64>());
    match retry_after {
        Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// A `Retry-After` value: delay seconds or an HTTP date (relative to `now`).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn transport_error(e: reqwest::Error) -> AttemptError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the connection failed"
    };
    // The innermost cause says most ("connection refused", "connection closed before
    // message completed").
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    AttemptError::Retryable {
        reason: format!("{kind}: {cause}"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        // RFC 9110's example date is 784111777 s after the epoch.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_honours_retry_after() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for retry in 1..=6u32 {
            let full = (base * 2u32.pow(retry - 1)).min(max);
            for _ in 0..50 {
                let wait = backoff(base, max, retry, None, &mut rng);
                assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
            }
        }
        let wait = backoff(base, max, 1, Some(Duration::from_secs(5)), &mut rng);
        assert_eq!(wait, Duration::from_secs(5));
        let wait = backoff(base, max, 1, Some(Duration::from_secs(86_400)), &mut rng);
        assert_eq!(wait, MAX_RETRY_AFTER);
        // Huge retry numbers do not overflow.
        assert!(backoff(base, max, u32::MAX, None, &mut rng) <= max);
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let config = |url: &str| ChatConfig {
            base_url: url.to_owned(),
            model: "m".to_owned(),
            api_key: None,
            temperature: 0.0,
            timeout: Duration::from_secs(1),
            max_retries: 0,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
        };
        assert!(config("http://127.0.0.1:8000/v1").check().is_ok());
        let err = config("https://example.invalid/v1")
            .check()
            .expect_err("https");
        assert!(err.to_string().contains("https is not built in"), "{err}");
        assert!(config("127.0.0.1:8000").check().is_err());
        let client = ChatClient::new(config("http://127.0.0.1:8000/v1/")).expect("client");
        assert_eq!(client.url(), "http://127.0.0.1:8000/v1/chat/completions");
    }
}
