//! A prompt's tags from the chat server: attempts, backoff and the strict answer.

use crate::answer::parse_answer;
use crate::client::{AttemptError, ChatClient};
use crate::error::excerpt;

/// Why a prompt got no tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    /// This item fails, with the reason (retries spent, or the request refused).
    Failed(String),
    /// The server refuses every request (a bad key, an unknown model or route).
    Fatal(String),
}

/// The tags the server answers to `message`: the first attempt and up to `max_retries`
/// more, waiting a backoff (or the server's `Retry-After`) before each retry; a malformed
/// answer is retried like a failed request. `attempts` counts the requests made.
pub async fn ask_tags(
    client: &ChatClient,
    message: &str,
    attempts: &mut u32,
) -> Result<Vec<String>, AskError> {
    let tries = client.config().max_retries.saturating_add(1);
    let mut last = String::new();
    let mut retry_after = None;
    for n in 0..tries {
        if n > 0 {
            tokio::time::sleep(client.backoff(n, retry_after)).await;
        }
        *attempts += 1;
        match client.attempt(message).await {
            Ok(content) => match parse_answer(&content) {
                Ok(tags) => return Ok(tags),
                Err(e) => {
                    last = format!("malformed answer ({e}): {:?}", excerpt(content.trim()));
                    retry_after = None;
                }
            },
            Err(AttemptError::Retryable {
                reason,
                retry_after: wait,
            }) => {
                last = reason;
                retry_after = wait;
            }
            Err(AttemptError::Refused { reason }) => {
                return Err(AskError::Failed(format!("request refused: {reason}")));
            }
            Err(AttemptError::Fatal { reason }) => return Err(AskError::Fatal(reason)),
        }
    }
    Err(AskError::Failed(format!(
        "{last} (gave up after {tries} attempts)"
    )))
}
