//! Tagging a product table: many products per encoder call, one JSONL line (or Parquet
//! row) per product written as each batch finishes, resumable after a kill, split into
//! shards by a stable SKU hash.
//!
//! Input ([`read_table`]), by file extension (`.csv`; `.parquet`; else JSON lines; any
//! case):
//! - CSV in the `reviews_sampled.csv` layout: `product_sku`, `comment_text` (a JSON list
//!   of review strings), `good_type`; other columns are ignored;
//! - Parquet (the `parquet` feature; see [`parquet`]): columns `sku`, `good_type`,
//!   `reviews` (list<utf8>), read a record batch at a time;
//! - JSON lines: `{"sku": "…", "good_type": "…", "reviews": ["…", …]}` (other fields
//!   ignored).
//!
//! Output ([`tag_table`]), by the extension of `out`: `.parquet` (any case) is a directory
//! of Parquet part files, one per batch, in the schema of [`parquet::output_schema`]
//! (see [`parquet`]: written whole or not at all, a rerun skips their SKUs); anything else
//! is JSON lines, one line per product, [`OutputLine`]: `sku`, `good_type`,
//! `category`, `fallback`, `tags` (decoded, most probable first, with probabilities) and
//! `probabilities` (every pool tag, in pool order), `calibrated` (whether they are the careful
//! calibration's). A rerun reads what is there first: SKUs
//! already written are skipped, and a last line cut short by a kill is removed and redone,
//! so every SKU ends up exactly once. Rows that cannot be tagged (unparseable reviews, no
//! review text, a missing SKU or good type) stop the run with an error naming the file, row
//! and field ([`OnError::Fail`], before anything of that row is written), or are listed in
//! the side file `<out>.errors.jsonl` and skipped ([`OnError::Skip`]). Both outputs take
//! the same path through [`tag_table`]: only how a batch is written and what an earlier run
//! left differ.

#[cfg(feature = "parquet")]
pub mod parquet;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::io_err;
use crate::tagger::{DecodeOptions, PredictedTag, Request, TagProbability, Tagger};
use crate::{InferenceError, Prediction};

/// The CSV columns read (others are ignored).
pub const CSV_COLUMNS: [&str; 3] = ["product_sku", "comment_text", "good_type"];

/// One product of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its SKU.
    pub sku: String,
    /// Its good type.
    pub good_type: String,
    /// Its reviews (non-blank, trimmed).
    pub reviews: Vec<String>,
    /// Its row: the CSV record's line (header = 1), the JSONL line, or the Parquet row
    /// (across the file), 1-based.
    pub row: usize,
}

/// A row that cannot be tagged; what the side file lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    /// The input file.
    pub file: PathBuf,
    /// Its row (as [`Product::row`]).
    pub row: usize,
    /// The field at fault.
    pub field: String,
    /// The SKU, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row {}: `{}`: {}",
            self.file.display(),
            self.row,
            self.field,
            self.reason
        )
    }
}

/// What to do with a row that cannot be tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the run with the row's error (before writing anything for it).
    #[default]
    Fail,
    /// List it in `<out>.errors.jsonl` and go on.
    Skip,
}

impl FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            other => Err(format!("{other:?} is neither `fail` nor `skip`")),
        }
    }
}

/// Shard `index` of `count`: the products whose [`sku_hash`] modulo `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard number.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl Shard {
    /// Whether `sku` falls in this shard.
    pub fn contains(&self, sku: &str) -> bool {
        sku_hash(sku) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `I/N` with `0 ≤ I < N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not I/N (e.g. 0/2)"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?}: {v:?} is not a whole number"))
        };
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || index >= count {
            return Err(format!("{s:?}: the shard I/N needs 0 ≤ I < N"));
        }
        Ok(Self { index, count })
    }
}

/// The stable hash shards split by: 64-bit FNV-1a of the SKU's UTF-8 bytes (the same on
/// every machine and build, unlike std's hasher).
pub fn sku_hash(sku: &str) -> u64 {
    sku.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How [`tag_table`] runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Products per batch (their reviews go through the encoder together).
    pub batch_size: usize,
    /// Only this shard's products, when set.
    pub shard: Option<Shard>,
    /// What to do with a bad row.
    pub on_error: OnError,
    /// How every product is decoded.
    pub decode: DecodeOptions,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            shard: None,
            on_error: OnError::Fail,
            decode: DecodeOptions::default(),
        }
    }
}

/// What [`tag_table`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Rows read from the table.
    pub rows: usize,
    /// Products tagged and written by this run.
    pub tagged: usize,
    /// Products skipped because an earlier run wrote them.
    pub already_done: usize,
    /// Products of other shards.
    pub other_shards: usize,
    /// Rows whose SKU appeared earlier in the table (only the first is tagged).
    pub duplicates: usize,
    /// Bad rows listed in the side file (with [`OnError::Skip`]).
    pub bad_rows: usize,
    /// A last line cut short by a kill was removed (and its product redone).
    pub repaired_tail: bool,
    /// Temp files of Parquet parts cut short by a kill, deleted (their products redone).
    pub removed_temp_parts: usize,
    /// Seconds spent tagging (reading and writing included).
    pub seconds: f64,
}

/// Progress of [`tag_table`], reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchProgress {
    /// Rows handled so far (tagged, skipped or bad).
    pub rows_done: usize,
    /// Rows in the table.
    pub rows_total: usize,
    /// Products tagged by this run so far.
    pub tagged: usize,
}

/// One output line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputLine<'a> {
    /// The product's SKU.
    pub sku: &'a str,
    /// Its good type, as given.
    pub good_type: &'a str,
    /// The category whose adapter answered.
    pub category: &'a str,
    /// True when the good type had no route of its own.
    pub fallback: bool,
    /// The decoded tags.
    pub tags: &'a [PredictedTag],
    /// Every pool tag's probability, in pool order.
    #[serde(serialize_with = "in_pool_order")]
    pub probabilities: &'a [TagProbability],
    /// True when the probabilities are careful-calibrated (the chance that a careful
    /// reader of the reviews agrees).
    pub calibrated: bool,
}

impl<'a> OutputLine<'a> {
    /// The line of product `sku`'s `prediction`.
    pub fn new(sku: &'a str, prediction: &'a Prediction) -> Self {
        Self {
            sku,
            good_type: &prediction.good_type,
            category: prediction.category.name(),
            fallback: prediction.fallback,
            tags: &prediction.tags,
            probabilities: &prediction.probabilities,
            calibrated: prediction.calibrated,
        }
    }
}

/// `{tag: probability}` in pool order.
fn in_pool_order<S: Serializer>(tags: &&[TagProbability], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(tags.iter().map(|t| (&t.tag, t.probability)))
}

/// The side file of bad rows of `out`: `<out>.errors.jsonl`.
pub fn errors_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".errors.jsonl");
    out.with_file_name(name)
}

/// A table's rows, each a product or a bad row.
pub struct TableReader {
    path: PathBuf,
    inner: Rows,
}

enum Rows {
    Csv {
        records: csv::StringRecordsIntoIter<File>,
        columns: [usize; 3],
    },
    Jsonl {
        lines: std::io::Lines<BufReader<File>>,
        line: usize,
    },
    #[cfg(feature = "parquet")]
    Parquet(parquet::ParquetRows),
}

/// Whether `path` is read as CSV (its extension is `csv`, any case) rather than JSONL.
fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Whether `path` is a Parquet table, or output dataset: its extension is `parquet`, any
/// case.
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Opens a product table (see the module doc). A CSV or Parquet table without the needed
/// columns is an error naming the file and the columns it has.
pub fn read_table(path: &Path) -> Result<TableReader, InferenceError> {
    if is_parquet(path) {
        #[cfg(feature = "parquet")]
        return Ok(TableReader {
            path: path.to_path_buf(),
            inner: Rows::Parquet(parquet::open_rows(path, parquet::READ_BATCH_ROWS)?),
        });
        #[cfg(not(feature = "parquet"))]
        return Err(InferenceError::NoParquet {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(io_err(path))?;
    let inner = if is_csv(path) {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| InferenceError::Table {
                path: path.to_path_buf(),
                row: 1,
                field: "header".into(),
                reason: e.to_string(),
            })?
            .clone();
        let mut columns = [0; 3];
        for (slot, name) in columns.iter_mut().zip(CSV_COLUMNS) {
            *slot = headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| InferenceError::Table {
                    path: path.to_path_buf(),
                    row: 1,
                    field: name.into(),
                    reason: format!(
                        "unknown column layout: no `{name}` column (the columns are {}; \
                         expected {} as in reviews_sampled.csv, or a .jsonl file of \
                         {{\"sku\", \"good_type\", \"reviews\"}})",
                        headers
                            .iter()
                            .map(|h| format!("`{h}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        CSV_COLUMNS.join(", ")
                    ),
                })?;
        }
        Rows::Csv {
            records: reader.into_records(),
            columns,
        }
    } else {
        Rows::Jsonl {
            lines: BufReader::new(file).lines(),
            line: 0,
        }
    };
    Ok(TableReader {
        path: path.to_path_buf(),
        inner,
    })
}

/// A JSONL input line.
#[derive(Deserialize)]
struct JsonProduct {
    sku: Option<serde_json::Value>,
    good_type: Option<String>,
    reviews: Option<Vec<String>>,
}

impl TableReader {
    fn bad(&self, row: usize, field: &str, sku: Option<&str>, reason: String) -> BadRow {
        BadRow {
            file: self.path.clone(),
            row,
            field: field.into(),
            sku: sku.map(str::to_owned),
            reason,
        }
    }

    /// Checks one row's fields.
    fn check_row(
        &self,
        row: usize,
        (sku_field, sku): (&str, &str),
        (good_type_field, good_type): (&str, &str),
        (reviews_field, reviews): (&str, Result<Vec<String>, String>),
    ) -> Result<Product, BadRow> {
        let sku = sku.trim();
        if sku.is_empty() {
            return Err(self.bad(row, sku_field, None, "the SKU is empty".into()));
        }
        let good_type = good_type.trim();
        if good_type.is_empty() {
            return Err(self.bad(
                row,
                good_type_field,
                Some(sku),
                "the good type is empty".into(),
            ));
        }
        let reviews: Vec<String> = reviews
            .map_err(|reason| self.bad(row, reviews_field, Some(sku), reason))?
            .into_iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        if reviews.is_empty() {
            return Err(self.bad(row, reviews_field, Some(sku), "no review text".into()));
        }
        Ok(Product {
            sku: sku.to_owned(),
            good_type: good_type.to_owned(),
            reviews,
            row,
        })
    }
}

impl Iterator for TableReader {
    /// A product, a bad row, or (`Err`) a failure to read the file at all.
    type Item = Result<Result<Product, BadRow>, InferenceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Rows::Csv { records, columns } => {
                let columns = *columns;
                let record = records.next()?;
                Some(Ok(match record {
                    Err(e) => {
                        let row = e.position().map_or(0, |p| p.line() as usize);
                        Err(self.bad(row, "record", None, e.to_string()))
                    }
                    Ok(record) => {
                        let row = record.position().map_or(0, |p| p.line() as usize);
                        let get = |i: usize| record.get(columns[i]).unwrap_or("");
                        let reviews = serde_json::from_str::<Vec<String>>(get(1))
                            .map_err(|e| format!("not a JSON list of strings: {e}"));
                        self.check_row(
                            row,
                            ("product_sku", get(0)),
                            ("good_type", get(2)),
                            ("comment_text", reviews),
                        )
                    }
                }))
            }
            Rows::Jsonl { lines, line } => loop {
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(source) => {
                        return Some(Err(InferenceError::Io {
                            path: self.path.clone(),
                            source,
                        }));
                    }
                };
                *line += 1;
                let row = *line;
                if text.trim().is_empty() {
                    continue;
                }
                let parsed: JsonProduct = match serde_json::from_str(&text) {
                    Ok(p) => p,
                    Err(e) => {
                        return Some(Ok(Err(self.bad(
                            row,
                            "line",
                            None,
                            format!("not a JSON object with sku, good_type, reviews: {e}"),
                        ))));
                    }
                };
                let sku = match &parsed.sku {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                };
                let reviews = parsed
                    .reviews
                    .ok_or_else(|| "missing (expected a list of review strings)".to_owned());
                return Some(Ok(self.check_row(
                    row,
                    ("sku", &sku),
                    ("good_type", parsed.good_type.as_deref().unwrap_or("")),
                    ("reviews", reviews),
                )));
            },
            #[cfg(feature = "parquet")]
            Rows::Parquet(rows) => {
                let raw = match rows.next_raw()? {
                    Ok(raw) => raw,
                    Err(e) => return Some(Err(e)),
                };
                let row = raw.row;
                let Some(sku) = raw.sku else {
                    return Some(Ok(Err(self.bad(
                        row,
                        "sku",
                        None,
                        "the SKU is null".into(),
                    ))));
                };
                let good_type = match raw.good_type {
                    Some(good_type) => good_type,
                    // An empty SKU is named first, as for the other tables.
                    None if sku.trim().is_empty() => String::new(),
                    None => {
                        return Some(Ok(Err(self.bad(
                            row,
                            "good_type",
                            Some(sku.trim()),
                            "the good type is null".into(),
                        ))));
                    }
                };
                Some(Ok(self.check_row(
                    row,
                    ("sku", &sku),
                    ("good_type", &good_type),
                    ("reviews", raw.reviews),
                )))
            }
        }
    }
}

/// Counts a table's data rows (for progress): CSV records, non-blank JSONL lines, or the
/// rows a Parquet footer records (the rows themselves are not read).
pub fn count_rows(path: &Path) -> Result<usize, InferenceError> {
    if is_parquet(path) {
        #[cfg(feature = "parquet")]
        return parquet::count_rows(path);
        #[cfg(not(feature = "parquet"))]
        return Err(InferenceError::NoParquet {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(io_err(path))?;
    if is_csv(path) {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
        let mut record = csv::ByteRecord::new();
        let mut n = 0;
        while reader.read_byte_record(&mut record).unwrap_or(false) {
            n += 1;
        }
        Ok(n)
    } else {
        let mut n = 0;
        for line in BufReader::new(file).lines() {
            if !line.map_err(io_err(path))?.trim().is_empty() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// What an earlier run left in the output file.
#[derive(Debug, Default)]
struct Existing {
    skus: HashSet<String>,
    /// Bytes of whole, valid lines; anything after them is a line cut by a kill.
    valid_len: u64,
    repaired: bool,
}

/// `path` opened for reading, or `None` when it does not exist (a first run).
fn open_existing(path: &Path) -> Result<Option<BufReader<File>>, InferenceError> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Reads the output of an earlier run, line by line: the SKUs of its whole lines. A last
/// line that is cut short (no newline, or not JSON) is dropped; a bad line before the last
/// is an error (the file is not ours to repair).
fn scan_output(path: &Path) -> Result<Existing, InferenceError> {
    #[derive(Deserialize)]
    struct Done {
        sku: String,
    }
    let mut existing = Existing::default();
    let Some(mut reader) = open_existing(path)? else {
        return Ok(existing);
    };
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parsed = (line.last() == Some(&b'\n'))
            .then(|| serde_json::from_slice::<Done>(&line).ok())
            .flatten();
        match parsed {
            Some(done) => {
                existing.skus.insert(done.sku);
                existing.valid_len += n as u64;
            }
            None if reader.fill_buf().map_err(io_err(path))?.is_empty() => {
                existing.repaired = true;
                break;
            }
            None => {
                return Err(InferenceError::Output {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason: "not an output line of predict-tags (and not the last line, so \
                             not one cut by a kill); move the file away or fix it"
                        .into(),
                });
            }
        }
    }
    Ok(existing)
}

/// Where [`tag_table`] writes: a JSONL file, or a Parquet dataset directory.
enum Sink {
    Jsonl {
        path: PathBuf,
        file: File,
    },
    #[cfg(feature = "parquet")]
    Parquet(Box<parquet::PartWriter>),
}

/// What an earlier run left in the output.
#[derive(Debug, Default)]
struct Resume {
    /// The SKUs written.
    done_skus: HashSet<String>,
    /// A JSONL line cut short was removed.
    repaired_tail: bool,
    /// Parquet temp files cut short were deleted.
    removed_temp_parts: usize,
}

impl Sink {
    /// Opens `out` to go on after what an earlier run left there (see the module doc).
    fn open(out: &Path) -> Result<(Self, Resume), InferenceError> {
        if is_parquet(out) {
            #[cfg(feature = "parquet")]
            {
                let (writer, resumed) = parquet::PartWriter::open(out)?;
                return Ok((
                    Self::Parquet(Box::new(writer)),
                    Resume {
                        done_skus: resumed.done_skus,
                        repaired_tail: false,
                        removed_temp_parts: resumed.removed_temp_parts,
                    },
                ));
            }
            #[cfg(not(feature = "parquet"))]
            return Err(InferenceError::NoParquet {
                path: out.to_path_buf(),
            });
        }
        let existing = scan_output(out)?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(out)
            .map_err(io_err(out))?;
        file.set_len(existing.valid_len).map_err(io_err(out))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(out))?;
        Ok((
            Self::Jsonl {
                path: out.to_path_buf(),
                file,
            },
            Resume {
                done_skus: existing.skus,
                repaired_tail: existing.repaired,
                removed_temp_parts: 0,
            },
        ))
    }

    /// Writes one batch: `skus[i]`'s answer is `predictions[i]`. JSONL: the lines appended
    /// and flushed; Parquet: one part file.
    fn write_batch(
        &mut self,
        skus: &[String],
        predictions: &[Prediction],
    ) -> Result<(), InferenceError> {
        match self {
            Self::Jsonl { path, file } => {
                let mut text = String::new();
                for (sku, prediction) in skus.iter().zip(predictions) {
                    let line = serde_json::to_string(&OutputLine::new(sku, prediction)).map_err(
                        |source| InferenceError::Json {
                            path: path.clone(),
                            source,
                        },
                    )?;
                    text.push_str(&line);
                    text.push('\n');
                }
                file.write_all(text.as_bytes()).map_err(io_err(path))?;
                file.flush().map_err(io_err(path))
            }
            #[cfg(feature = "parquet")]
            Self::Parquet(writer) => writer.write_batch(skus, predictions),
        }
    }

    /// Ends the run: the JSONL file synced (each Parquet part was synced as written).
    fn finish(self) -> Result<(), InferenceError> {
        match self {
            Self::Jsonl { path, file } => file.sync_all().map_err(io_err(&path)),
            #[cfg(feature = "parquet")]
            Self::Parquet(_) => Ok(()),
        }
    }
}

/// Rows already listed in the side file of an earlier run.
fn listed_bad_rows(path: &Path) -> Result<HashSet<usize>, InferenceError> {
    let mut rows = HashSet::new();
    let Some(reader) = open_existing(path)? else {
        return Ok(rows);
    };
    for line in reader.lines() {
        if let Ok(bad) = serde_json::from_str::<BadRow>(&line.map_err(io_err(path))?) {
            rows.insert(bad.row);
        }
    }
    Ok(rows)
}

/// Tags every product of the table `input` (one shard of it when asked) into `out` (a
/// JSONL file, or a Parquet dataset directory when it ends in `.parquet`),
/// `options.batch_size` products per encoder batch, each batch written (JSONL: lines
/// flushed; Parquet: one part file) as it finishes; `progress` hears after each batch.
/// Resumes what an earlier run left in `out` (see the module doc).
pub fn tag_table(
    tagger: &Tagger,
    input: &Path,
    out: &Path,
    options: &BatchOptions,
    mut progress: impl FnMut(BatchProgress),
) -> Result<BatchSummary, InferenceError> {
    let started = Instant::now();
    if options.batch_size == 0 {
        return Err(InferenceError::Config {
            path: "<batch options>".into(),
            field: "batch_size",
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    let rows_total = count_rows(input)?;
    let table = read_table(input)?;
    let (mut sink, resume) = Sink::open(out)?;
    let mut summary = BatchSummary {
        repaired_tail: resume.repaired_tail,
        removed_temp_parts: resume.removed_temp_parts,
        ..BatchSummary::default()
    };
    let previous = resume.done_skus;
    let mut seen: HashSet<String> = HashSet::new();
    let side = errors_path(out);
    let mut listed = listed_bad_rows(&side)?;
    let mut side_file: Option<File> = None;

    let mut batch: Vec<Product> = Vec::with_capacity(options.batch_size);
    let flush = |batch: &mut Vec<Product>,
                 sink: &mut Sink,
                 summary: &mut BatchSummary|
     -> Result<(), InferenceError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (skus, requests): (Vec<String>, Vec<Request>) = batch
            .drain(..)
            .map(|p| {
                let mut request = Request::new(p.good_type, p.reviews);
                request.options = options.decode;
                (p.sku, request)
            })
            .unzip();
        let predictions = tagger.predict(&requests)?;
        sink.write_batch(&skus, &predictions)?;
        summary.tagged += skus.len();
        Ok(())
    };
    for item in table {
        summary.rows += 1;
        let product = match item? {
            Ok(product) => product,
            Err(bad) => {
                if let Some(shard) = options.shard
                    && bad.sku.as_deref().is_some_and(|s| !shard.contains(s))
                {
                    summary.other_shards += 1;
                    continue;
                }
                match options.on_error {
                    OnError::Fail => {
                        flush(&mut batch, &mut sink, &mut summary)?;
                        return Err(InferenceError::Table {
                            path: bad.file,
                            row: bad.row,
                            field: bad.field,
                            reason: format!(
                                "{} (use --on-error skip to list bad rows and go on)",
                                bad.reason
                            ),
                        });
                    }
                    OnError::Skip => {
                        summary.bad_rows += 1;
                        if listed.insert(bad.row) {
                            let f = match &mut side_file {
                                Some(f) => f,
                                None => side_file.insert(
                                    OpenOptions::new()
                                        .create(true)
                                        .append(true)
                                        .open(&side)
                                        .map_err(io_err(&side))?,
                                ),
                            };
                            let line = serde_json::to_string(&bad).map_err(|source| {
                                InferenceError::Json {
                                    path: side.clone(),
                                    source,
                                }
                            })?;
                            writeln!(f, "{line}").map_err(io_err(&side))?;
                        }
                        continue;
                    }
                }
            }
        };
        if let Some(shard) = options.shard
            && !shard.contains(&product.sku)
        {
            summary.other_shards += 1;
            continue;
        }
        if !seen.insert(product.sku.clone()) {
            summary.duplicates += 1;
            continue;
        }
        if previous.contains(&product.sku) {
            summary.already_done += 1;
            continue;
        }
        batch.push(product);
        if batch.len() == options.batch_size {
            flush(&mut batch, &mut sink, &mut summary)?;
            progress(BatchProgress {
                rows_done: summary.rows,
                rows_total,
                tagged: summary.tagged,
            });
        }
    }
    flush(&mut batch, &mut sink, &mut summary)?;
    sink.finish()?;
    progress(BatchProgress {
        rows_done: summary.rows,
        rows_total,
        tagged: summary.tagged,
    });
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_stably() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().is_err());
        // FNV-1a 64 of the empty string and of "a" (published test vectors).
        assert_eq!(sku_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(sku_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let shards = [Shard { index: 0, count: 2 }, Shard { index: 1, count: 2 }];
        for sku in ["MP002XU09745", "RTLAAZ826801", "x"] {
            assert_eq!(shards.iter().filter(|s| s.contains(sku)).count(), 1);
        }
    }

    #[cfg(not(feature = "parquet"))]
    #[test]
    fn without_the_feature_parquet_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = dir.path().join("t.Parquet");
        std::fs::write(&table, "PAR1").expect("write");
        for err in [
            read_table(&table).err().expect("no parquet"),
            count_rows(&table).expect_err("no parquet"),
            Sink::open(&dir.path().join("out.parquet"))
                .err()
                .expect("no parquet"),
        ] {
            assert!(matches!(err, InferenceError::NoParquet { .. }), "{err:?}");
            assert!(err.to_string().contains("`parquet` feature"), "{err}");
        }
        assert!(!dir.path().join("out.parquet").exists());
    }

    #[test]
    fn the_side_file_sits_beside_the_output() {
        assert_eq!(
            errors_path(Path::new("/tmp/run/tags.jsonl")),
            Path::new("/tmp/run/tags.jsonl.errors.jsonl")
        );
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_a_bad_middle_line_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"sku\":\"a\"}\n{\"sku\":\"b\"}\n{\"sku\":\"c\",\"ta",
        )
        .expect("write");
        let existing = scan_output(&path).expect("scan");
        assert!(existing.repaired);
        assert_eq!(existing.skus.len(), 2);
        assert_eq!(existing.valid_len, 24);
        std::fs::write(&path, "{\"sku\":\"a\"}\ngarbage\n{\"sku\":\"c\"}\n").expect("write");
        let err = scan_output(&path).expect_err("corrupt middle");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn bad_rows_name_file_row_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("t.csv");
        std::fs::write(
            &csv,
            "product_sku,comment_text,name,good_type\n\
             A1,\"[\"\"ok\"\"]\",n,Bags\n\
             A2,not json,n,Bags\n\
             A3,\"[\"\"  \"\"]\",n,Bags\n\
             A4,\"[\"\"ok\"\"]\",n,\n",
        )
        .expect("write");
        let rows: Vec<Result<Product, BadRow>> = read_table(&csv)
            .expect("open")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(rows.len(), 4);
        let p = rows[0].as_ref().expect("good row");
        assert_eq!((p.sku.as_str(), p.row, p.reviews.len()), ("A1", 2, 1));
        let bad: Vec<&BadRow> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            bad.iter()
                .map(|b| (b.row, b.field.as_str()))
                .collect::<Vec<_>>(),
            [(3, "comment_text"), (4, "comment_text"), (5, "good_type")]
        );
        assert!(
            bad[1]
                .to_string()
                .ends_with("row 4: `comment_text`: no review text")
        );

        let wrong = dir.path().join("w.csv");
        std::fs::write(&wrong, "sku,text\nA,b\n").expect("write");
        let err = read_table(&wrong).err().expect("layout");
        assert!(
            err.to_string()
                .contains("no `product_sku` column (the columns are `sku`, `text`"),
            "{err}"
        );

        let jsonl = dir.path().join("t.jsonl");
        std::fs::write(
            &jsonl,
            "{\"sku\":\"B1\",\"good_type\":\"Shoes\",\"reviews\":[\"мягкие\"]}\n\n{oops\n\
             {\"sku\":\"B3\",\"good_type\":\"Shoes\",\"reviews\":\"x\"}\n",
        )
        .expect("write");
        let rows: Vec<Result<Product, BadRow>> = read_table(&jsonl)
            .expect("open")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].as_ref().map(|p| p.row), Ok(1));
        assert_eq!(
            rows[1].as_ref().err().map(|b| (b.row, b.field.as_str())),
            Some((3, "line"))
        );
        assert_eq!(rows[2].as_ref().err().map(|b| b.row), Some(4));
        assert_eq!(count_rows(&jsonl).expect("count"), 3);
        assert_eq!(count_rows(&csv).expect("count"), 4);
    }
}
