//! The labeling prompt: an editable text file with placeholders.

use std::path::{Path, PathBuf};

use crate::CurationError;

/// Where the numbered reviews go (required).
pub const REVIEWS: &str = "{reviews}";
/// The product's good type (optional).
pub const GOOD_TYPE: &str = "{good_type}";
/// The product's name (optional).
pub const NAME: &str = "{name}";

/// A prompt template read from a file (`configs/label_prompt.txt`). It is sent as the one
/// user message, with [`REVIEWS`] replaced by the chunk's reviews, one per line, numbered
/// (`1. …`), and [`GOOD_TYPE`] and [`NAME`] by the product's. Other braces (an example of
/// the JSON answer) are left as they are.
#[derive(Debug, Clone)]
pub struct Prompt {
    path: PathBuf,
    text: String,
}

impl Prompt {
    /// Reads and checks a prompt file: UTF-8 text holding [`REVIEWS`] exactly once.
    pub fn load(path: &Path) -> Result<Prompt, CurationError> {
        let bytes = std::fs::read(path).map_err(|source| CurationError::Io {
            path: path.to_owned(),
            action: "cannot read the prompt",
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| CurationError::Prompt {
            path: path.to_owned(),
            reason: "not UTF-8 text".to_owned(),
        })?;
        Prompt::new(path, text)
    }

    /// A prompt from its text (`path` names it in errors).
    pub fn new(path: &Path, text: String) -> Result<Prompt, CurationError> {
        let count = text.matches(REVIEWS).count();
        if count != 1 {
            return Err(CurationError::Prompt {
                path: path.to_owned(),
                reason: format!(
                    "the placeholder {REVIEWS} must occur exactly once (found {count} times)"
                ),
            });
        }
        Ok(Prompt {
            path: path.to_owned(),
            text,
        })
    }

    /// The template as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The message for one chunk of a product's reviews.
    pub fn render(&self, good_type: &str, name: &str, reviews: &[String]) -> String {
        let numbered: Vec<String> = reviews
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {r}", i + 1))
            .collect();
        // The product's fields first, the reviews last: a review that happens to hold
        // "{name}" is not replaced.
        self.text
            .replace(GOOD_TYPE, good_type)
            .replace(NAME, name)
            .replace(REVIEWS, &numbered.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_numbered_reviews_and_product_fields() {
        let prompt = Prompt::new(
            Path::new("p.txt"),
            "Товар: {name} ({good_type}). Ответ: {\"tags\": []}\n{reviews}".to_owned(),
        )
        .expect("valid prompt");
        let text = prompt.render(
            "Shoes",
            "Кеды",
            &["Мягкие".to_owned(), "Про {name}".to_owned()],
        );
        assert_eq!(
            text,
            "Товар: Кеды (Shoes). Ответ: {\"tags\": []}\n1. Мягкие\n2. Про {name}"
        );
    }

    #[test]
    fn the_reviews_placeholder_is_required_once() {
        for text in ["без места для отзывов", "{reviews} и {reviews}"] {
            let err = Prompt::new(Path::new("p.txt"), text.to_owned()).expect_err("refused");
            assert!(
                err.to_string()
                    .starts_with("p.txt: the placeholder {reviews}"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_project_prompt_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/label_prompt.txt");
        let prompt = Prompt::load(&path).expect("configs/label_prompt.txt is a valid prompt");
        assert!(prompt.text().contains("\"tags\""));
    }
}
