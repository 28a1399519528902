//! The pool-gap report: the properties reviewers state that no pool tag captures, per
//! category, so a curator can decide what to add to a pool.
//!
//! Its input is every judged product's `missing` list: the careful labels'
//! (`careful/<category>.jsonl`, joined to their reviews in `labeled/<category>.csv`,
//! [`careful_inputs`]) and the team's review queue's (`lamoda-tags review export` files,
//! [`reviewed_inputs`]). [`pool_gaps`] groups the phrases of each category by their
//! normalised form ([`group_key`]: lower case, `ё` → `е`, punctuation and extra white space
//! gone, adjective endings dropped so `Теплый` and `Теплая` are one), counts the products stating each (a product naming a phrase twice
//! counts once), splits the count by source, picks example reviews and flags a phrase that
//! is already a pool tag (or nearly: one's words within the other's, by crude stem). [`write_markdown`] and
//! [`write_csv`] write it. The pools themselves are never changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use lamoda_data::{CarefulSet, Category, EtalonPool, LabeledSet};

use crate::{CurationError, normalize_tag, tidy_tag};

/// Where a product's `missing` answer comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapSource {
    /// A careful label: its 1-based data row of `labeled/<category>.csv`.
    Careful {
        /// The row, as [`lamoda_data::ReviewStack::row`] counts.
        row: usize,
    },
    /// A team review exported from the review queue.
    Review {
        /// The product's SKU.
        sku: String,
    },
}

impl GapSource {
    /// Whether this is a careful label.
    pub fn is_careful(&self) -> bool {
        matches!(self, GapSource::Careful { .. })
    }
}

impl std::fmt::Display for GapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GapSource::Careful { row } => write!(f, "careful row {row}"),
            GapSource::Review { sku } => write!(f, "review {sku}"),
        }
    }
}

/// One judged product: what its judges said no pool tag captures, and its reviews.
#[derive(Debug, Clone, PartialEq)]
pub struct GapInput {
    /// Its category (whose pool the phrases are missing from).
    pub category: Category,
    /// Where the answer comes from (identifies the product: inputs with the same category
    /// and source are one product).
    pub source: GapSource,
    /// The phrases (possibly none: the product still counts as read).
    pub missing: Vec<String>,
    /// Its reviews, in order (the examples are drawn from them).
    pub reviews: Vec<String>,
}

impl GapInput {
    /// A team-reviewed product of `category`: a `lamoda-tags review export` line, or the
    /// review store's view of one (`lamoda_reviews::reviewed_lines`).
    pub fn reviewed(category: Category, line: &lamoda_data::ReviewedLine) -> Self {
        GapInput {
            category,
            source: GapSource::Review {
                sku: line.sku.clone(),
            },
            missing: line.missing.clone(),
            reviews: line.reviews.clone(),
        }
    }
}

/// Settings of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapSettings {
    /// The Markdown lists the phrases stated by at least this many products (the CSV keeps
    /// every phrase).
    pub min_count: usize,
    /// Example reviews per phrase at most.
    pub examples: usize,
    /// An example review is cut to this many characters (with `…`).
    pub example_chars: usize,
}

impl Default for GapSettings {
    fn default() -> Self {
        Self {
            min_count: 2,
            examples: 2,
            example_chars: 200,
        }
    }
}

/// How a phrase relates to the category's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolMatch {
    /// No pool tag is near it.
    None,
    /// The same normalised form as this pool tag: already in the pool.
    Exact(String),
    /// Every content word of one is in the other, by crude stem (the pool tag sharing
    /// most, the more frequent on a tie): a hint, not a verdict (`Хорошо увлажняет` ~
    /// `Увлажняет надолго`; but also `Лёгкие` ~ `Легко стирается`).
    Near(String),
}

/// An example review of a phrase.
#[derive(Debug, Clone, PartialEq)]
pub struct GapExample {
    /// The product it is from.
    pub source: GapSource,
    /// The review, white space collapsed, cut to [`GapSettings::example_chars`].
    pub text: String,
    /// Whether it holds a word of the phrase (by stem); else it is the product's first
    /// review.
    pub matched: bool,
}

/// One missing property of a category.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The most frequent spelling (tidied; the first seen on a tie).
    pub phrase: String,
    /// The normalised form every spelling shares.
    pub key: String,
    /// Every spelling seen, most frequent first.
    pub variants: Vec<String>,
    /// Products stating it.
    pub products: usize,
    /// Of which careful labels.
    pub careful: usize,
    /// Of which team reviews.
    pub reviews: usize,
    /// Up to [`GapSettings::examples`] example reviews, from different products.
    pub examples: Vec<GapExample>,
    /// Whether a pool tag already says it.
    pub pool: PoolMatch,
}

/// The gaps of one category.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryGaps {
    /// The category.
    pub category: Category,
    /// Products of this category read (the "of N" of every share).
    pub products: usize,
    /// Of which careful labels.
    pub careful_products: usize,
    /// Of which team reviews.
    pub review_products: usize,
    /// Products stating at least one phrase.
    pub with_missing: usize,
    /// The phrases, by products stating them (descending), then by phrase.
    pub gaps: Vec<Gap>,
}

impl CategoryGaps {
    /// The share of the category's products stating `gap` (0 when none was read).
    pub fn share(&self, gap: &Gap) -> f64 {
        if self.products == 0 {
            0.0
        } else {
            gap.products as f64 / self.products as f64
        }
    }
}

/// The whole report: the categories present in the inputs, in [`Category::ALL`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct GapReport {
    /// Per category.
    pub categories: Vec<CategoryGaps>,
    /// The settings it was made with.
    pub settings: GapSettings,
}

/// Words shared by too many unrelated phrases to mean they are close (intensifiers and
/// praise), by their start: never used for the pool hint, and for examples only when the
/// phrase has no other word.
const WEAK_WORDS: [&str; 10] = [
    "очен",
    "хорош",
    "отлич",
    "плох",
    "прекрас",
    "супер",
    "немн",
    "слишк",
    "совсем",
    "всегд",
];

/// The crude stem of a normalised word: none under 4 letters, else its first
/// `len - 2` letters, at least 4 and at most 5 (`мягкие`, `мягкая` → `мягк`; `увлажняет` →
/// `увлаж`).
fn stem(word: &str) -> Option<String> {
    let n = word.chars().count();
    if n < 4 {
        return None;
    }
    let k = (n - 2).clamp(4, 5);
    Some(word.chars().take(k).collect())
}

/// The stems of a normalised text's words, in order, without repeats; `strong` leaves
/// out the [`WEAK_WORDS`].
fn stems(normalised: &str, strong: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in normalised.split([' ', '-']) {
        if strong && WEAK_WORDS.iter().any(|w| word.starts_with(w)) {
            continue;
        }
        if let Some(s) = stem(word)
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

/// The stems a phrase is matched by: its content stems, or all of them when it has only
/// weak ones.
fn match_stems(key: &str) -> Vec<String> {
    let strong = stems(key, true);
    if strong.is_empty() {
        stems(key, false)
    } else {
        strong
    }
}

/// How many of `phrase_stems` a review holds (a review word starting with the stem).
fn review_hits(review: &str, phrase_stems: &[String]) -> usize {
    if phrase_stems.is_empty() {
        return 0;
    }
    let normalised = normalize_tag(review);
    let words: Vec<&str> = normalised.split([' ', '-']).collect();
    phrase_stems
        .iter()
        .filter(|s| words.iter().any(|w| w.starts_with(s.as_str())))
        .count()
}

/// `text` with white space collapsed, cut to `max` characters with `…`.
fn shorten(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        collapsed
    } else {
        let mut cut: String = collapsed.chars().take(max).collect();
        cut = cut.trim_end().to_owned();
        cut.push('…');
        cut
    }
}

/// Adjective endings (gender, number, case) dropped from a word of 5 letters or more when
/// grouping, longest first, so `Теплый`, `Теплая` and `Теплые` are one property.
const ENDINGS: [&str; 17] = [
    "ого", "его", "ому", "ему", "ыми", "ими", "ая", "яя", "ое", "ее", "ые", "ие", "ый", "ий", "ой",
    "ую", "ых",
];

/// The key phrases are grouped by: [`normalize_tag`], then each word of 5 letters or more
/// without its adjective ending.
pub fn group_key(phrase: &str) -> String {
    normalize_tag(phrase)
        .split(' ')
        .map(|word| {
            if word.chars().count() >= 5
                && let Some(end) = ENDINGS.iter().find(|e| word.ends_with(*e))
            {
                &word[..word.len() - end.len()]
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn pool_match(key: &str, pool: Option<&EtalonPool>) -> PoolMatch {
    let Some(pool) = pool else {
        return PoolMatch::None;
    };
    if let Some(tag) = pool.tags.iter().find(|t| group_key(t) == key) {
        return PoolMatch::Exact(tag.clone());
    }
    let phrase = stems(key, true);
    let mut best: Option<(usize, &String)> = None;
    for tag in &pool.tags {
        let tag_stems = stems(&normalize_tag(tag), true);
        let shared = tag_stems.iter().filter(|s| phrase.contains(s)).count();
        // One side's words all in the other: `Хорошо увлажняет` ~ `Увлажняет надолго`, not
        // `Быстро впитывается` ~ `Быстро расходуется`.
        let nested = shared == phrase.len() || shared == tag_stems.len();
        if shared > 0 && nested && best.is_none_or(|(b, _)| shared > b) {
            best = Some((shared, tag));
        }
    }
    best.map_or(PoolMatch::None, |(_, t)| PoolMatch::Near(t.clone()))
}

/// Groups the `missing` phrases of `inputs` per category (see the module's text). Inputs
/// with the same category and source are one product (their phrases joined; the first
/// one's reviews). `pools` gives the in-pool flags; a category without one gets none.
pub fn pool_gaps(inputs: &[GapInput], pools: &[EtalonPool], settings: GapSettings) -> GapReport {
    // One product per (category, source), in first-seen order.
    let mut index: HashMap<(Category, &GapSource), usize> = HashMap::new();
    let mut products: Vec<(Category, &GapSource, Vec<&str>, &[String])> = Vec::new();
    for input in inputs {
        let key = (input.category, &input.source);
        let i = *index.entry(key).or_insert_with(|| {
            products.push((input.category, &input.source, Vec::new(), &input.reviews));
            products.len() - 1
        });
        let product = &mut products[i];
        product.2.extend(input.missing.iter().map(String::as_str));
        if product.3.is_empty() {
            product.3 = &input.reviews;
        }
    }
    let mut categories = Vec::new();
    for category in Category::ALL {
        let of_category: Vec<&(Category, &GapSource, Vec<&str>, &[String])> =
            products.iter().filter(|p| p.0 == category).collect();
        if of_category.is_empty() {
            continue;
        }
        let pool = pools.iter().find(|p| p.category == category);
        // key → (spelling → products naming it, first seen), product indices.
        let mut spellings: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        let mut stated: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut with_missing = 0;
        for (p, (_, _, missing, _)) in of_category.iter().enumerate() {
            let mut seen: HashSet<String> = HashSet::new();
            for phrase in missing {
                let key = group_key(phrase);
                if key.is_empty() || !seen.insert(key.clone()) {
                    continue;
                }
                let shown = tidy_tag(phrase);
                let variants = spellings.entry(key.clone()).or_default();
                match variants.iter_mut().find(|(s, _)| *s == shown) {
                    Some((_, n)) => *n += 1,
                    None => variants.push((shown, 1)),
                }
                stated.entry(key).or_default().push(p);
            }
            if !seen.is_empty() {
                with_missing += 1;
            }
        }
        let mut gaps: Vec<Gap> = stated
            .into_iter()
            .map(|(key, who)| {
                let mut variants = spellings.remove(&key).unwrap_or_default();
                // Stable: the first seen stays first on a tie.
                variants.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                let variants: Vec<String> = variants.into_iter().map(|(s, _)| s).collect();
                let careful = who
                    .iter()
                    .filter(|&&p| of_category[p].1.is_careful())
                    .count();
                let examples = examples(&key, &who, &of_category, settings);
                Gap {
                    phrase: variants.first().cloned().unwrap_or_else(|| key.clone()),
                    pool: pool_match(&key, pool),
                    variants,
                    products: who.len(),
                    careful,
                    reviews: who.len() - careful,
                    examples,
                    key,
                }
            })
            .collect();
        gaps.sort_by(|a, b| {
            b.products
                .cmp(&a.products)
                .then_with(|| a.phrase.cmp(&b.phrase))
        });
        let careful_products = of_category.iter().filter(|p| p.1.is_careful()).count();
        categories.push(CategoryGaps {
            category,
            products: of_category.len(),
            careful_products,
            review_products: of_category.len() - careful_products,
            with_missing,
            gaps,
        });
    }
    GapReport {
        categories,
        settings,
    }
}

/// Example reviews of the phrase `key` from the products `who` (indices into `products`):
/// from each, its review holding most of the phrase's content stems, then most of all its
/// stems (the first on a tie), else its first review; those holding a content stem first,
/// best first, then in product order; distinct texts.
fn examples(
    key: &str,
    who: &[usize],
    products: &[&(Category, &GapSource, Vec<&str>, &[String])],
    settings: GapSettings,
) -> Vec<GapExample> {
    let content = match_stems(key);
    let all = stems(key, false);
    let mut candidates: Vec<((usize, usize), &GapSource, &str)> = Vec::new();
    for &p in who {
        let (_, source, _, reviews) = products[p];
        let mut best: Option<((usize, usize), &str)> = None;
        for review in reviews.iter().filter(|r| !r.trim().is_empty()) {
            let hits = (review_hits(review, &content), review_hits(review, &all));
            if best.is_none_or(|(b, _)| hits > b) {
                best = Some((hits, review));
            }
        }
        if let Some((hits, review)) = best {
            candidates.push((hits, source, review));
        }
    }
    // Stable: product order within equal hits.
    candidates.sort_by_key(|(hits, _, _)| std::cmp::Reverse(*hits));
    let mut out: Vec<GapExample> = Vec::new();
    for (hits, source, review) in candidates {
        if out.len() >= settings.examples {
            break;
        }
        let text = shorten(review, settings.example_chars);
        if out.iter().any(|e| e.text == text) {
            continue;
        }
        out.push(GapExample {
            source: source.clone(),
            text,
            matched: hits.0 > 0,
        });
    }
    out
}

/// The careful labels of `careful` as gap inputs, each with its reviews from `labeled`
/// (the same category's labeled file); a label whose row is not there is an error.
pub fn careful_inputs(
    careful: &CarefulSet,
    labeled: &LabeledSet,
) -> Result<Vec<GapInput>, CurationError> {
    let rows: HashMap<usize, &Vec<String>> =
        labeled.rows.iter().map(|r| (r.row, &r.reviews)).collect();
    careful
        .labels
        .iter()
        .map(|label| {
            let reviews = rows
                .get(&label.row)
                .ok_or_else(|| CurationError::BadValue {
                    path: careful.path.clone(),
                    line: label.row,
                    field: "row".to_owned(),
                    reason: format!("no such data row in {}", labeled.path.display()),
                    value: label.row.to_string(),
                })?;
            Ok(GapInput {
                category: careful.category,
                source: GapSource::Careful { row: label.row },
                missing: label.missing.clone(),
                reviews: (*reviews).clone(),
            })
        })
        .collect()
}

/// Gap inputs of team-reviewed products (`lamoda-tags review export` files, read and
/// checked by [`lamoda_data::load_reviewed`]).
pub fn reviewed_inputs(labels: &[lamoda_data::ReviewedLabel]) -> Vec<GapInput> {
    labels
        .iter()
        .map(|l| GapInput::reviewed(l.category, &l.label))
        .collect()
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// A Markdown table cell: no line breaks, `|` escaped.
fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

fn sources(gap: &Gap) -> String {
    match (gap.careful, gap.reviews) {
        (c, 0) => format!("careful {c}"),
        (0, r) => format!("reviews {r}"),
        (c, r) => format!("careful {c}, reviews {r}"),
    }
}

fn pool_cell(pool: &PoolMatch) -> String {
    match pool {
        PoolMatch::None => String::new(),
        PoolMatch::Exact(tag) => format!("**already in pool**: {tag}"),
        PoolMatch::Near(tag) => format!("near {tag}"),
    }
}

/// The report as Markdown: per category, a table of the phrases stated by at least
/// [`GapSettings::min_count`] products (phrase, products, share, sources, pool, example).
pub fn write_markdown(report: &GapReport) -> String {
    let min = report.settings.min_count.max(1);
    let mut md = String::new();
    let _ = writeln!(md, "# Pool gaps\n");
    let _ = writeln!(
        md,
        "Properties reviewers state that no pool tag captures (the careful labels' and the \
         team reviews' `missing`), grouped by normalised form (lower case, ё → е, no \
         punctuation, no adjective endings), counted once per product. Phrases stated by at least {min} products; \
         every phrase is in `pool-gaps.csv`. *Pool*: **already in pool** when a pool tag has \
         the same normalised form, *near* when one's words are all in the other's by crude stem (a hint). The \
         pools are not changed.\n"
    );
    for c in &report.categories {
        let _ = writeln!(
            md,
            "## {}: {} products read ({} careful, {} from team reviews), {} with a missing property\n",
            c.category, c.products, c.careful_products, c.review_products, c.with_missing
        );
        let shown: Vec<&Gap> = c.gaps.iter().filter(|g| g.products >= min).collect();
        if shown.is_empty() {
            let _ = writeln!(md, "No phrase stated by {min} products or more.\n");
        } else {
            let _ = writeln!(
                md,
                "| phrase | products | share | sources | pool | example |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for g in &shown {
                let example = g
                    .examples
                    .first()
                    .map(|e| format!("«{}» ({})", e.text, e.source))
                    .unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} of {} | {} | {} | {} | {} |",
                    cell(&g.phrase),
                    g.products,
                    c.products,
                    percent(c.share(g)),
                    sources(g),
                    cell(&pool_cell(&g.pool)),
                    cell(&example)
                );
            }
            let _ = writeln!(md);
        }
        let rest = c.gaps.len() - shown.len();
        if rest > 0 {
            let _ = writeln!(
                md,
                "{rest} more phrases stated by fewer than {min} products (in the CSV).\n"
            );
        }
    }
    md
}

/// The header of [`write_csv`]'s file.
pub const CSV_COLUMNS: [&str; 11] = [
    "category",
    "phrase",
    "products",
    "of_products",
    "careful",
    "reviews",
    "example_1",
    "example_2",
    "in_pool",
    "near_pool_tag",
    "variants",
];

/// Writes every phrase of every category (whatever the min count) as CSV with
/// [`CSV_COLUMNS`]: `in_pool` is `true` when a pool tag has the same normalised form,
/// `near_pool_tag` that tag or the [`PoolMatch::Near`] one, `variants` the spellings seen
/// (`; `-separated).
pub fn write_csv(report: &GapReport, path: &Path) -> Result<(), CurationError> {
    let io = |source| CurationError::Io {
        path: path.to_owned(),
        action: "cannot write the gap report",
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| io(e.into()))?;
    writer.write_record(CSV_COLUMNS).map_err(|e| io(e.into()))?;
    for c in &report.categories {
        for g in &c.gaps {
            let example = |i: usize| g.examples.get(i).map_or("", |e| e.text.as_str());
            let (in_pool, near) = match &g.pool {
                PoolMatch::None => ("false", ""),
                PoolMatch::Exact(t) => ("true", t.as_str()),
                PoolMatch::Near(t) => ("false", t.as_str()),
            };
            writer
                .write_record([
                    c.category.name(),
                    g.phrase.as_str(),
                    &g.products.to_string(),
                    &c.products.to_string(),
                    &g.careful.to_string(),
                    &g.reviews.to_string(),
                    example(0),
                    example(1),
                    in_pool,
                    near,
                    &g.variants.join("; "),
                ])
                .map_err(|e| io(e.into()))?;
        }
    }
    writer.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn careful(category: Category, row: usize, missing: &[&str], reviews: &[&str]) -> GapInput {
        GapInput {
            category,
            source: GapSource::Careful { row },
            missing: missing.iter().map(|s| s.to_string()).collect(),
            reviews: reviews.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn review(category: Category, sku: &str, missing: &[&str], reviews: &[&str]) -> GapInput {
        GapInput {
            source: GapSource::Review { sku: sku.into() },
            ..careful(category, 0, missing, reviews)
        }
    }

    fn beauty_pool() -> EtalonPool {
        EtalonPool::new(
            Category::Beauty,
            vec!["Увлажняет надолго".into(), "Легкий аромат".into()],
        )
        .expect("pool")
    }

    fn gap<'a>(report: &'a GapReport, category: Category, key: &str) -> &'a Gap {
        report
            .categories
            .iter()
            .find(|c| c.category == category)
            .and_then(|c| c.gaps.iter().find(|g| g.key == group_key(key)))
            .expect("gap")
    }

    #[test]
    fn adjective_forms_are_one_property() {
        assert_eq!(group_key("Теплый"), group_key("Тёплая"));
        assert_eq!(group_key("теплые!"), group_key("Теплый"));
        assert_eq!(group_key("Плотная ткань"), group_key("плотный ткань"));
        assert_ne!(group_key("Мягкие"), group_key("Мягко"));
        assert_eq!(group_key("Не жмет"), "не жмет");
    }

    #[test]
    fn spellings_merge_and_the_most_frequent_is_shown() {
        let inputs = [
            careful(Category::Beauty, 1, &["Быстро впитывается"], &["Ок"]),
            careful(Category::Beauty, 2, &["быстро впитывается!"], &["Ок"]),
            careful(Category::Beauty, 3, &["  Быстро  впитывается "], &["Ок"]),
            careful(Category::Beauty, 4, &["БЫСТРО ВПИТЫВАЕТСЯ."], &["Ок"]),
            careful(Category::Beauty, 5, &["Тёплый"], &["Ок"]),
            careful(Category::Beauty, 6, &["теплый"], &["Ок"]),
        ];
        let report = pool_gaps(&inputs, &[], GapSettings::default());
        let c = &report.categories[0];
        assert_eq!(c.products, 6);
        assert_eq!(c.gaps.len(), 2);
        let g = &c.gaps[0];
        assert_eq!((g.key.as_str(), g.products), ("быстро впитывается", 4));
        // "  Быстро  впитывается " tidies to the first spelling; the other two stay apart.
        assert_eq!(g.phrase, "Быстро впитывается");
        assert_eq!(g.variants.len(), 3, "{:?}", g.variants);
        assert_eq!(c.gaps[1].key, group_key("теплый"));
        assert_eq!(c.gaps[1].products, 2);
    }

    #[test]
    fn a_product_counts_once_and_sources_are_split() {
        let inputs = [
            careful(
                Category::Shoes,
                1,
                &["Мягкие", "мягкие", "Мягкие."],
                &["Очень мягкие"],
            ),
            review(Category::Shoes, "SKU1", &["Мягкие"], &["мягкая подошва"]),
            // The same exported product twice (two export files): still one product.
            review(Category::Shoes, "SKU1", &["Мягкие"], &["мягкая подошва"]),
            careful(Category::Shoes, 2, &[], &["Хорошие"]),
            careful(Category::Bags, 1, &["Мягкие"], &["Мягкая"]),
        ];
        let report = pool_gaps(&inputs, &[], GapSettings::default());
        let g = gap(&report, Category::Shoes, "мягкие");
        assert_eq!((g.products, g.careful, g.reviews), (2, 1, 1));
        let shoes = report
            .categories
            .iter()
            .find(|c| c.category == Category::Shoes)
            .expect("shoes");
        assert_eq!((shoes.products, shoes.with_missing), (3, 2));
        assert_eq!((shoes.careful_products, shoes.review_products), (2, 1));
        assert!((shoes.share(g) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(gap(&report, Category::Bags, "мягкие").products, 1);
        // Categories in the fixed order.
        let order: Vec<Category> = report.categories.iter().map(|c| c.category).collect();
        assert_eq!(order, [Category::Bags, Category::Shoes]);
    }

    #[test]
    fn sorted_by_products_then_phrase() {
        let inputs = [
            careful(Category::Accs, 1, &["Б", "В", "А"], &["x"]),
            careful(Category::Accs, 2, &["В", "А"], &["x"]),
            careful(Category::Accs, 3, &["В"], &["x"]),
        ];
        let report = pool_gaps(&inputs, &[], GapSettings::default());
        let order: Vec<&str> = report.categories[0]
            .gaps
            .iter()
            .map(|g| g.phrase.as_str())
            .collect();
        assert_eq!(order, ["В", "А", "Б"]);
    }

    #[test]
    fn examples_prefer_a_review_holding_the_phrase() {
        let long = format!("Крем быстро впитывается. {}", "ё".repeat(300));
        let inputs = [
            careful(
                Category::Beauty,
                1,
                &["Быстро впитывается"],
                &["Пришёл вовремя", "Отлично впиталось? нет"],
            ),
            careful(
                Category::Beauty,
                2,
                &["Быстро впитывается"],
                &["Приятный", &long, "Быстро впитывается,\n  не липнет"],
            ),
            careful(
                Category::Beauty,
                3,
                &["Быстро впитывается"],
                &["Первый отзыв"],
            ),
        ];
        let report = pool_gaps(&inputs, &[], GapSettings::default());
        let g = gap(&report, Category::Beauty, "быстро впитывается");
        assert_eq!(g.examples.len(), 2);
        // Product 2 holds both stems; the first of its two such reviews, cut to 200 chars.
        assert_eq!(g.examples[0].source, GapSource::Careful { row: 2 });
        assert!(g.examples[0].matched);
        assert!(g.examples[0].text.starts_with("Крем быстро впитывается."));
        assert_eq!(g.examples[0].text.chars().count(), 201);
        assert!(g.examples[0].text.ends_with('…'));
        // Product 1 holds one stem ("впита…" does not start with "впиты"; "отлич" is weak):
        // none, so its first review; product 3 likewise; product order breaks the tie.
        assert_eq!(g.examples[1].source, GapSource::Careful { row: 1 });
        assert!(!g.examples[1].matched);
        assert_eq!(g.examples[1].text, "Пришёл вовремя");
    }

    #[test]
    fn a_praise_word_breaks_ties_but_never_matches_alone() {
        let inputs = [
            careful(
                Category::Beauty,
                1,
                &["Хорошо увлажняет"],
                &["Хорошо упакован", "Увлажняет неплохо"],
            ),
            careful(
                Category::Beauty,
                2,
                &["Хорошо увлажняет"],
                &["Увлажняет", "Хорошо увлажняет кожу"],
            ),
            careful(Category::Beauty, 3, &["Хорошо увлажняет"], &["Всё хорошо"]),
        ];
        let settings = GapSettings {
            examples: 3,
            ..GapSettings::default()
        };
        let report = pool_gaps(&inputs, &[], settings);
        let g = gap(&report, Category::Beauty, "хорошо увлажняет");
        let shown: Vec<(&str, bool)> = g
            .examples
            .iter()
            .map(|e| (e.text.as_str(), e.matched))
            .collect();
        assert_eq!(
            shown,
            [
                ("Хорошо увлажняет кожу", true),
                ("Увлажняет неплохо", true),
                ("Всё хорошо", false)
            ]
        );
    }

    #[test]
    fn pool_tags_are_flagged() {
        let inputs = [
            careful(Category::Beauty, 1, &["Увлажняет надолго!"], &["x"]),
            careful(Category::Beauty, 2, &["Хорошо увлажняет"], &["x"]),
            careful(Category::Beauty, 3, &["Не липкий"], &["x"]),
            careful(Category::Beauty, 4, &["Хорошо пахнет"], &["x"]),
            careful(Category::Beauty, 5, &["Приятный аромат"], &["x"]),
        ];
        let report = pool_gaps(&inputs, &[beauty_pool()], GapSettings::default());
        assert_eq!(
            gap(&report, Category::Beauty, "увлажняет надолго").pool,
            PoolMatch::Exact("Увлажняет надолго".into())
        );
        assert_eq!(
            gap(&report, Category::Beauty, "хорошо увлажняет").pool,
            PoolMatch::Near("Увлажняет надолго".into())
        );
        assert_eq!(
            gap(&report, Category::Beauty, "не липкий").pool,
            PoolMatch::None
        );
        assert_eq!(
            gap(&report, Category::Beauty, "приятный аромат").pool,
            PoolMatch::None,
            "one shared word of two on both sides is no hint"
        );
        // "хорошо" is a weak stem: no hint from it alone.
        assert_eq!(
            gap(&report, Category::Beauty, "хорошо пахнет").pool,
            PoolMatch::None
        );
    }

    #[test]
    fn markdown_and_csv_are_written() {
        let inputs = [
            careful(
                Category::Beauty,
                1,
                &["Хорошо увлажняет"],
                &["Хорошо | увлажняет"],
            ),
            review(
                Category::Beauty,
                "S1",
                &["хорошо увлажняет"],
                &["Увлажняет"],
            ),
            careful(
                Category::Beauty,
                2,
                &["Увлажняет надолго", "Редкое"],
                &["x"],
            ),
            careful(Category::Beauty, 3, &[], &["x"]),
        ];
        let report = pool_gaps(&inputs, &[beauty_pool()], GapSettings::default());
        let md = write_markdown(&report);
        assert!(
            md.contains("## beauty: 4 products read (3 careful, 1 from team reviews), 3 with a missing property"),
            "{md}"
        );
        assert!(
            md.contains("| Хорошо увлажняет | 2 of 4 | 50.0% | careful 1, reviews 1 | near Увлажняет надолго | «Хорошо \\| увлажняет» (careful row 1) |"),
            "{md}"
        );
        // Below the min count: only in the CSV.
        assert!(!md.contains("Редкое"), "{md}");
        assert!(md.contains("2 more phrases stated by fewer than 2"), "{md}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gaps.csv");
        write_csv(&report, &path).expect("csv");
        let mut reader = csv::Reader::from_path(&path).expect("read");
        assert_eq!(
            reader
                .headers()
                .expect("headers")
                .iter()
                .collect::<Vec<_>>(),
            CSV_COLUMNS
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 3);
        let first: Vec<&str> = rows[0].iter().collect();
        assert_eq!(
            first,
            [
                "beauty",
                "Хорошо увлажняет",
                "2",
                "4",
                "1",
                "1",
                "Хорошо | увлажняет",
                "Увлажняет",
                "false",
                "Увлажняет надолго",
                "Хорошо увлажняет; хорошо увлажняет"
            ]
        );
        let in_pool = rows
            .iter()
            .find(|r| &r[1] == "Увлажняет надолго")
            .expect("in pool row");
        assert_eq!(&in_pool[8], "true");
    }
}
