//! Splitting a long review stack into chunks under a token budget.
//!
//! The token count is an estimate, not a tokenizer: one token per [`CHARS_PER_TOKEN`]
//! characters (rounded up), plus [`TOKENS_PER_REVIEW`] per review for its number and line
//! break. Russian text in the BPE vocabularies of Qwen-style models runs at about 3–4
//! characters per token, so the estimate errs on the long side and a chunk stays under
//! the budget in real tokens too.

/// Characters per token in the estimate.
pub const CHARS_PER_TOKEN: usize = 3;
/// Tokens added per review (its number, the line break).
pub const TOKENS_PER_REVIEW: usize = 4;

/// The estimated tokens of `text`: its characters / [`CHARS_PER_TOKEN`], rounded up.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// The estimated tokens a review takes in the prompt.
pub fn estimate_review_tokens(review: &str) -> usize {
    estimate_tokens(review) + TOKENS_PER_REVIEW
}

/// The reviews, white space collapsed (line breaks become spaces) and blank ones dropped,
/// split in order into chunks whose estimated tokens stay within `budget`: each chunk
/// takes reviews while they fit. A review longer than the budget alone is cut to fit (at
/// a character boundary) and makes a chunk of its own. No reviews: no chunks.
pub fn chunk_reviews(reviews: &[String], budget: usize) -> Vec<Vec<String>> {
    let room = budget.saturating_sub(TOKENS_PER_REVIEW).max(1) * CHARS_PER_TOKEN;
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut used = 0;
    for review in reviews {
        let mut text = review.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            continue;
        }
        if text.chars().count() > room {
            text = text.chars().take(room).collect();
        }
        let tokens = estimate_review_tokens(&text);
        if !current.is_empty() && used + tokens > budget {
            chunks.push(std::mem::take(&mut current));
            used = 0;
        }
        used += tokens;
        current.push(text);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviews(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_estimate_rounds_up_per_character() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("абв"), 1);
        assert_eq!(estimate_tokens("абвг"), 2);
        assert_eq!(estimate_review_tokens("абвг"), 6);
    }

    #[test]
    fn a_short_stack_is_one_chunk_without_blanks() {
        let chunks = chunk_reviews(&reviews(&["Мягкие", "  ", "Не\nжмут"]), 100);
        assert_eq!(chunks, vec![reviews(&["Мягкие", "Не жмут"])]);
        assert!(chunk_reviews(&reviews(&["", " \n"]), 100).is_empty());
    }

    #[test]
    fn a_long_stack_splits_in_order_under_the_budget() {
        // Each review: 30 chars = 10 tokens + 4 = 14; budget 30 fits two per chunk.
        let stack: Vec<String> = (0..5).map(|i| format!("{i}{}", "я".repeat(29))).collect();
        let chunks = chunk_reviews(&stack, 30);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), stack);
        for chunk in &chunks {
            let tokens: usize = chunk.iter().map(|r| estimate_review_tokens(r)).sum();
            assert!(tokens <= 30, "{tokens} tokens");
        }
    }

    #[test]
    fn a_review_longer_than_the_budget_is_cut_to_fit() {
        let stack = reviews(&["коротко", &"д".repeat(1000), "ещё"]);
        let chunks = chunk_reviews(&stack, 20);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1][0].chars().count(), 16 * CHARS_PER_TOKEN);
        assert!(estimate_review_tokens(&chunks[1][0]) <= 20);
    }
}
