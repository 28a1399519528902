//! Tag normalisation: the form under which two spellings of a tag are the same tag.

/// The normalised form of a tag, the key for duplicates and pooling:
///
/// - lower case, `ё` → `е`;
/// - letters and digits kept; a hyphen (or dash) between two letters or digits kept as `-`
///   (`светло-серый`, `5-кратное`, `42-44`); a `.` or `,` between two digits kept as `.`
///   (`1,8` → `1.8`); `%` and `+` right after a digit kept (`100%`, `6+`);
/// - every other character (punctuation, quotes, symbols, white space of any kind) is a
///   word break; runs of breaks become one space, none at either end.
///
/// `"  Не жмёт!! "` → `"не жмет"`, `"Весна/Осень"` → `"весна осень"`.
pub fn normalize_tag(tag: &str) -> String {
    let chars: Vec<char> = tag
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect();
    let mut out = String::with_capacity(tag.len());
    let mut pending_space = false;
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let keep = if c.is_alphanumeric() {
            Some(c)
        } else if is_dash(c)
            && prev.is_some_and(char::is_alphanumeric)
            && next.is_some_and(char::is_alphanumeric)
        {
            Some('-')
        } else if (c == '.' || c == ',')
            && prev.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            Some('.')
        } else if (c == '%' || c == '+') && prev.is_some_and(|p| p.is_ascii_digit()) {
            Some(c)
        } else {
            None
        };
        match keep {
            Some(k) => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(k);
            }
            None => pending_space = true,
        }
    }
    out
}

fn is_dash(c: char) -> bool {
    matches!(c, '-' | '‐' | '‑' | '‒' | '–' | '—')
}

/// A tag as shown and stored: its case and letters kept, white space collapsed to single
/// spaces, and quotes and punctuation stripped from both ends (`" «Мягкие». "` → `Мягкие`).
pub fn tidy_tag(tag: &str) -> String {
    let collapsed = tag.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_matches(|c: char| !(c.is_alphanumeric() || c == '%' || c == '+'))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_yo_punctuation_and_space_are_normalised() {
        assert_eq!(normalize_tag("  Не жмёт!! "), "не жмет");
        assert_eq!(normalize_tag("ЛЁГКИЕ"), "легкие");
        assert_eq!(normalize_tag("Весна/Осень"), "весна осень");
        assert_eq!(normalize_tag("без внутр. молнии"), "без внутр молнии");
        assert_eq!(normalize_tag("«Мягкая»\tткань"), "мягкая ткань");
        assert_eq!(normalize_tag("стойкость >5 часов"), "стойкость 5 часов");
    }

    #[test]
    fn hyphens_decimals_and_percentages_inside_words_are_kept() {
        assert_eq!(normalize_tag("Светло–серый"), "светло-серый");
        assert_eq!(normalize_tag("ширина 1,8 см"), "ширина 1.8 см");
        assert_eq!(normalize_tag("интерес до 2.5 лет"), "интерес до 2.5 лет");
        assert_eq!(normalize_tag("Хлопок 100%"), "хлопок 100%");
        assert_eq!(normalize_tag("для детей 6+"), "для детей 6+");
        // A dash between words is a break, not a hyphen.
        assert_eq!(normalize_tag("легкие - удобные"), "легкие удобные");
        assert_eq!(normalize_tag("конец."), "конец");
    }

    #[test]
    fn only_punctuation_normalises_to_nothing() {
        assert_eq!(normalize_tag(" ?!… "), "");
    }

    #[test]
    fn tidy_keeps_case_and_strips_the_ends() {
        assert_eq!(tidy_tag(" «Мягкие». "), "Мягкие");
        assert_eq!(tidy_tag("Не   жмут\n"), "Не жмут");
        assert_eq!(tidy_tag("Хлопок 100%"), "Хлопок 100%");
    }
}
