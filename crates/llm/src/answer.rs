//! Parsing the LLM's answer: strict JSON `{"tags": [...]}`, bare or as the only thing in
//! a code fence.

use serde::Deserialize;

/// Why an answer is malformed (it is then asked again, up to the retry limit).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    /// Nothing but white space (or a reasoning block).
    #[error("empty answer")]
    Empty,
    /// A `<think>` block that never closes.
    #[error("unterminated <think> block")]
    UnterminatedThink,
    /// A code fence that is not one ```` ```json ```` (or bare ```` ``` ````) block with
    /// nothing outside it.
    #[error("bad code fence: {0}")]
    BadFence(String),
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object with exactly one field `tags`, a list of strings.
    #[error("not {{\"tags\": [strings]}}: {0}")]
    WrongShape(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    tags: Vec<String>,
}

/// The tags of an answer's `content`. Accepted, after white space and one leading
/// `<think>…</think>` block (reasoning models) are stripped:
///
/// - the JSON object `{"tags": ["…", …]}` and nothing else;
/// - the same as the only content of one code fence: ```` ```json ````, ```` ```JSON ````
///   or ```` ``` ```` on its own line, the object, ```` ``` ````, and nothing outside.
///
/// Anything else (prose around the JSON, other fields, non-string tags) is malformed.
pub fn parse_answer(content: &str) -> Result<Vec<String>, AnswerError> {
    let mut text = content.trim();
    if let Some(rest) = text.strip_prefix("<think>") {
        let end = rest
            .find("</think>")
            .ok_or(AnswerError::UnterminatedThink)?;
        text = rest[end + "</think>".len()..].trim();
    }
    if text.is_empty() {
        return Err(AnswerError::Empty);
    }
    let json = if let Some(rest) = text.strip_prefix("```") {
        let (lang, body) = rest
            .split_once('\n')
            .ok_or_else(|| AnswerError::BadFence("no line break after the opening ```".into()))?;
        let lang = lang.trim();
        if !(lang.is_empty() || lang.eq_ignore_ascii_case("json")) {
            return Err(AnswerError::BadFence(format!(
                "language {lang:?}, expected json"
            )));
        }
        let body = body
            .trim_end()
            .strip_suffix("```")
            .ok_or_else(|| AnswerError::BadFence("no closing ``` at the end".into()))?;
        if body.contains("```") {
            return Err(AnswerError::BadFence("more than one code block".into()));
        }
        body.trim()
    } else {
        text
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let answer: Answer =
        serde_json::from_value(value).map_err(|e| AnswerError::WrongShape(e.to_string()))?;
    Ok(answer.tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bare_and_fenced_json_parse() {
        assert_eq!(
            parse_answer(r#" {"tags": ["Мягкие", "Не жмут"]} "#),
            Ok(tags(&["Мягкие", "Не жмут"]))
        );
        assert_eq!(
            parse_answer("```json\n{\"tags\": [\"Мягкие\"]}\n```\n"),
            Ok(tags(&["Мягкие"]))
        );
        assert_eq!(parse_answer("```\n{\"tags\": []}\n```"), Ok(Vec::new()));
        assert_eq!(
            parse_answer("<think>\nотзывы про ткань\n</think>\n{\"tags\": [\"Ткань\"]}"),
            Ok(tags(&["Ткань"]))
        );
    }

    #[test]
    fn anything_else_is_malformed() {
        assert_eq!(parse_answer("  "), Err(AnswerError::Empty));
        assert!(matches!(
            parse_answer("Вот теги: {\"tags\": []}"),
            Err(AnswerError::NotJson(_))
        ));
        assert!(matches!(
            parse_answer("{\"tags\": [\"a\"]} спасибо"),
            Err(AnswerError::NotJson(_))
        ));
        assert!(matches!(
            parse_answer("{\"tags\": [1, 2]}"),
            Err(AnswerError::WrongShape(_))
        ));
        assert!(matches!(
            parse_answer("{\"tags\": [\"a\"], \"why\": \"x\"}"),
            Err(AnswerError::WrongShape(_))
        ));
        assert!(matches!(
            parse_answer("[\"a\"]"),
            Err(AnswerError::WrongShape(_))
        ));
        assert!(matches!(
            parse_answer("```python\n{\"tags\": []}\n```"),
            Err(AnswerError::BadFence(_))
        ));
        assert!(matches!(
            parse_answer("```json\n{\"tags\": []}"),
            Err(AnswerError::BadFence(_))
        ));
        assert!(matches!(
            parse_answer("```json\n{\"tags\": []}\n```\nтекст"),
            Err(AnswerError::BadFence(_))
        ));
        assert_eq!(
            parse_answer("<think>долго думаю"),
            Err(AnswerError::UnterminatedThink)
        );
    }
}
