//! The rules a tag of the LLM must pass, checked on its normalised form
//! ([`normalize_tag`]).
//!
//! A tag is refused when it is empty after normalisation, has more than 3 words (a
//! hyphenated word counts as one), or gives a **size number** ([`size_reason`]). A tag
//! whose normalised form repeats an earlier one is a duplicate. Refused tags are dropped
//! from the answer and listed with their reason; the rest of the answer stands.
//!
//! Fit words without a number (`Маломерит`, `Большемерит`, `Соответствует размеру`) are
//! *not* refused: the etalon pools hold them.

use crate::store::Rejected;
use lamoda_data::{normalize_tag, tidy_tag};

/// The most words a tag may have.
pub const MAX_WORDS: usize = 3;

/// Latin size codes, refused as whole words (`размер m`, `XL`).
const SIZE_CODES: &[&str] = &[
    "xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl", "2xl", "3xl", "4xl", "5xl",
];

/// Words that make a number next to them a size: `42 размер`, `размер 38-40`, `рост 170`,
/// `44 р`, `eu 39`.
fn is_size_word(word: &str) -> bool {
    word.starts_with("размер")
        || word.starts_with("рост")
        || matches!(word, "р" | "eu" | "ru" | "us" | "uk" | "int")
}

/// Length units: a number before one gives a dimension (`4 см`, `1.5 метра`).
fn is_length_unit(word: &str) -> bool {
    matches!(word, "мм" | "см" | "м" | "дм" | "км")
        || word.starts_with("метр")
        || word.starts_with("сантиметр")
        || word.starts_with("миллиметр")
        || word.starts_with("дюйм")
}

/// A word that is only a number or a range of numbers: `42`, `1.8`, `42-44`.
fn is_number(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit())
        && word
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
}

/// Why a normalised tag gives a size number, or `None`. Refused:
///
/// - a Latin size code as a word (`xs` … `xxxl`, `2xl` …): `размер m`;
/// - a number (or range) in a tag with a size word (`размер*`, `рост*`, `р`, `eu`, `ru`,
///   `us`, `uk`, `int`): `42 размер`, `на 2 размера меньше`;
/// - a number before a length unit (`мм`, `см`, `м`, `метр*`, `дюйм*`, …): `каблук 4 см`;
/// - a number as the last word, with no unit after it: `42`, `для ноутбука 17`.
///
/// Numbers that say something else stay: `хлопок 100%`, `50 мл`, `для детей 6+`,
/// `на 4 года`, `2 ремешка`, `формат а4`, `дизайн 90-х`.
pub fn size_reason(normalized: &str) -> Option<&'static str> {
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| SIZE_CODES.contains(w)) {
        return Some("a size code (no size numbers)");
    }
    let has_number = words.iter().any(|w| is_number(w));
    if has_number && words.iter().any(|w| is_size_word(w)) {
        return Some("a size number (no size numbers)");
    }
    for pair in words.windows(2) {
        if is_number(pair[0]) && is_length_unit(pair[1]) {
            return Some("a dimension (no size numbers)");
        }
    }
    if words.last().is_some_and(|w| is_number(w)) {
        return Some("a bare number, read as a size (no size numbers)");
    }
    None
}

/// Checks one tag: its tidy form ([`tidy_tag`]) and normalised form, or the reason it is
/// refused.
pub fn check_tag(tag: &str) -> Result<(String, String), String> {
    let tidy = tidy_tag(tag);
    let normalized = normalize_tag(&tidy);
    if normalized.is_empty() {
        return Err("empty after normalisation".to_owned());
    }
    let words = normalized.split(' ').count();
    if words > MAX_WORDS {
        return Err(format!("{words} words (at most {MAX_WORDS})"));
    }
    if let Some(reason) = size_reason(&normalized) {
        return Err(reason.to_owned());
    }
    Ok((tidy, normalized))
}

/// An answer's tags after validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validated {
    /// The tags kept, tidy, in the answer's order, with their normalised forms.
    pub tags: Vec<(String, String)>,
    /// The tags refused, with why.
    pub rejected: Vec<Rejected>,
}

/// Validates an answer's tags ([`check_tag`]); a later tag with the normalised form of an
/// earlier one is refused as a duplicate.
pub fn validate_tags(tags: &[String]) -> Validated {
    let mut out = Validated::default();
    for tag in tags {
        match check_tag(tag) {
            Ok((tidy, normalized)) => {
                if let Some((first, _)) = out.tags.iter().find(|(_, n)| *n == normalized) {
                    out.rejected.push(Rejected {
                        tag: tag.clone(),
                        reason: format!("duplicate of {first:?}"),
                    });
                } else {
                    out.tags.push((tidy, normalized));
                }
            }
            Err(reason) => out.rejected.push(Rejected {
                tag: tag.clone(),
                reason,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(tag: &str) -> bool {
        check_tag(tag).is_err()
    }

    #[test]
    fn size_numbers_are_refused() {
        for tag in [
            "42",
            "42-44",
            "Размер 38",
            "38 размер",
            "на 2 размера меньше",
            "размер M",
            "XL",
            "рост 170",
            "44 р.",
            "каблучок 4 см",
            "ширина 1,8 см",
            "шнурок 1,5 метра",
            "для ноутбука 17",
            "наволочка 50 на 70",
        ] {
            assert!(refused(tag), "{tag} should be refused");
        }
    }

    #[test]
    fn fit_words_and_other_numbers_pass() {
        for tag in [
            "Маломерит",
            "Большемерит",
            "Соответствует размеру",
            "Размер в размер",
            "на размер больше",
            "Хлопок 100%",
            "50 мл",
            "для детей 6+",
            "на 4 года",
            "2 ремешка",
            "формат А4",
            "дизайн 90-х",
            "Мягкий",
        ] {
            assert_eq!(check_tag(tag).map(|_| ()), Ok(()), "{tag} should pass");
        }
    }

    #[test]
    fn word_count_is_one_to_three() {
        assert!(check_tag("Жмет в носке").is_ok());
        assert_eq!(
            check_tag("есть карман для карт"),
            Err("4 words (at most 3)".to_owned())
        );
        // A hyphenated word is one word.
        assert!(check_tag("светло-серый плотный материал").is_ok());
        assert_eq!(
            check_tag(" ... "),
            Err("empty after normalisation".to_owned())
        );
    }

    #[test]
    fn duplicates_after_normalisation_are_refused_and_order_is_kept() {
        let tags: Vec<String> = ["Лёгкие", "Удобные", "легкие!", "XL", "Удобные"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = validate_tags(&tags);
        let kept: Vec<&str> = v.tags.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(kept, ["Лёгкие", "Удобные"]);
        assert_eq!(v.tags[0].1, "легкие");
        let reasons: Vec<(&str, &str)> = v
            .rejected
            .iter()
            .map(|r| (r.tag.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("легкие!", "duplicate of \"Лёгкие\""),
                ("XL", "a size code (no size numbers)"),
                ("Удобные", "duplicate of \"Удобные\""),
            ]
        );
    }
}
