//! Parquet tables for [`super`] (the `parquet` feature): product tables read in record
//! batches, and tags written as a Parquet dataset of part files. Built on the Apache Arrow
//! project's `parquet`, `arrow-array` and `arrow-schema` crates (docs/experiments.md §16).
//!
//! **Input** (`--input products.parquet`, any case of `.parquet`): the columns `sku`
//! (utf8, or an integer column, printed in decimal), `good_type` (utf8) and `reviews`
//! (list<utf8>, or utf8 holding a JSON list of strings as in the CSV); other columns are not
//! read. The types are the file's own Parquet types (an embedded Arrow schema is not
//! consulted, so large_utf8, large_list and dictionary-encoded columns read alike). A
//! missing column, or one of another type, is an [`InferenceError::TableColumns`] naming
//! the file and the columns it has. A row is 1-based across the whole file (every row
//! group); a null SKU, good type or review list, an empty SKU or good type, or a list
//! without review text is a [`BadRow`] (`--on-error`), exactly as in CSV and JSONL; null
//! and blank items of a review list are not reviews and are dropped. The file is read 256
//! rows at a time; [`count_rows`] reads the row count from the footer.
//!
//! **Output** (`--out tags.parquet`): a *directory* holding a Parquet dataset that
//! pyarrow, polars and Spark read as one table (`pyarrow.parquet.read_table("tags.parquet")`,
//! `polars.read_parquet("tags.parquet/*.parquet")`, `spark.read.parquet("tags.parquet")`;
//! polars needs the glob, since during a run the directory also holds a temp file).
//! Each batch of products is one file `part-NNNNNN.parquet` (six digits and more, counting
//! up from `part-000000`; a rerun continues after the highest), one row group, snappy
//! compressed. It is written first as the hidden `.part-NNNNNN.parquet.tmp` (which dataset
//! readers skip), synced, then renamed, so a kill leaves only whole part files; a rerun
//! deletes leftover temp files, reads the `sku` column of every part and skips those
//! products. A part that cannot be read is an error naming it (renames are atomic, so it
//! is not a cut write of ours). A directory holding anything else, or a file at the path,
//! is refused: the run does not write into a directory that is not its own. Bad rows go
//! to the side file `tags.parquet.errors.jsonl` beside the directory.
//!
//! The output schema ([`output_schema`]; the Python package writes the same with pyarrow):
//!
//! ```text
//! sku:           utf8
//! good_type:     utf8
//! category:      utf8
//! fallback:      bool
//! tags:          list<item: struct<tag: utf8, probability: float32, mentions: int64,
//!                    evidence: list<item: struct<review: int64, text: utf8, score: float32>>>>
//! probabilities: list<item: struct<tag: utf8, probability: float32>>   (pool order)
//! calibrated:    bool
//! ```
//!
//! Nothing is ever null, and the schema says so: every column, every struct field *and the
//! list items* are declared non-nullable (Arrow allows non-nullable list items; Parquet
//! stores them as `required`). The list item fields are named `item`, Arrow's default,
//! also in the Parquet schema (pyarrow's `use_compliant_nested_type=False`; with pyarrow's
//! default, `element`, the schemas differ by that name). The fields mean what the JSONL
//! output's do (see [`super::OutputLine`]); `probabilities` is a list in pool order
//! instead of JSON's `{tag: probability}` object, and `tags` is most probable first.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, GenericListArray, Int64Array, ListArray,
    OffsetSizeTrait, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::InferenceError;
use crate::error::io_err;
use crate::tagger::Prediction;

/// The columns read from a Parquet table.
pub const PARQUET_COLUMNS: [&str; 3] = ["sku", "good_type", "reviews"];

/// Rows per record batch read from an input table.
pub(super) const READ_BATCH_ROWS: usize = 256;

/// A list's item field: named `item`, not nullable.
fn item(data_type: DataType) -> FieldRef {
    Arc::new(Field::new_list_field(data_type, false))
}

/// The fields of a piece of `evidence`.
fn evidence_fields() -> Fields {
    Fields::from(vec![
        Field::new("review", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ])
}

/// The fields of a decoded tag.
fn tag_fields() -> Fields {
    Fields::from(vec![
        Field::new("tag", DataType::Utf8, false),
        Field::new("probability", DataType::Float32, false),
        Field::new("mentions", DataType::Int64, false),
        Field::new(
            "evidence",
            DataType::List(item(DataType::Struct(evidence_fields()))),
            false,
        ),
    ])
}

/// The fields of a pool tag's probability.
fn probability_fields() -> Fields {
    Fields::from(vec![
        Field::new("tag", DataType::Utf8, false),
        Field::new("probability", DataType::Float32, false),
    ])
}

/// The Arrow schema of every output part file (see the module doc).
pub fn output_schema() -> Schema {
    Schema::new(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("good_type", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("fallback", DataType::Boolean, false),
        Field::new(
            "tags",
            DataType::List(item(DataType::Struct(tag_fields()))),
            false,
        ),
        Field::new(
            "probabilities",
            DataType::List(item(DataType::Struct(probability_fields()))),
            false,
        ),
        Field::new("calibrated", DataType::Boolean, false),
    ])
}

/// The [`InferenceError::Parquet`] of `path`.
fn parquet_err<E>(path: &Path, what: impl Into<String>) -> impl FnOnce(E) -> InferenceError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let (path, what) = (path.to_path_buf(), what.into());
    move |source| InferenceError::Parquet {
        path,
        what,
        source: Box::new(source),
    }
}

// ---------------------------------------------------------------------------------------
// Input

/// One row as read, before its fields are checked.
pub(super) struct RawRow {
    /// 1-based across the file.
    pub row: usize,
    /// `None` when null.
    pub sku: Option<String>,
    /// `None` when null.
    pub good_type: Option<String>,
    /// The non-null review items, or why there is no list.
    pub reviews: Result<Vec<String>, String>,
}

/// An input table's rows, a record batch at a time.
pub(super) struct ParquetRows {
    path: PathBuf,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    pending: std::vec::IntoIter<RawRow>,
    rows_read: usize,
}

/// Whether a column of this type is read as text (and how: see [`texts`]).
fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_review_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => is_text(item.data_type()),
        other => is_text(other),
    }
}

/// Opens the Parquet table `path`, `batch_rows` rows per record batch: checks that its
/// columns are there with types it can read.
pub(super) fn open_rows(path: &Path, batch_rows: usize) -> Result<ParquetRows, InferenceError> {
    let file = File::open(path).map_err(io_err(path))?;
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(parquet_err(path, "not a readable Parquet file"))?;
    let schema = builder.schema().clone();
    /// Whether a column's type is read, and what is expected instead.
    type Accepts = (fn(&DataType) -> bool, &'static str);
    let accepted: [Accepts; 3] = [
        (|t| is_text(t) || is_integer(t), "utf8 or an integer"),
        (is_text, "utf8"),
        (
            is_review_list,
            "list<utf8>, or utf8 holding a JSON list of strings",
        ),
    ];
    let mut roots = Vec::with_capacity(PARQUET_COLUMNS.len());
    for (name, (accepts, expected)) in PARQUET_COLUMNS.into_iter().zip(accepted) {
        let columns_error = |reason: String| InferenceError::TableColumns {
            path: path.to_path_buf(),
            field: name.into(),
            reason,
        };
        let Some((index, field)) = schema.column_with_name(name) else {
            return Err(columns_error(format!(
                "unknown column layout: no `{name}` column (the columns are {}; expected \
                 `sku`, `good_type`, `reviews` as list<utf8>)",
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("`{}`", f.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if !accepts(field.data_type()) {
            return Err(columns_error(format!(
                "the column is {}; expected {expected}",
                field.data_type()
            )));
        }
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(parquet_err(path, "cannot read the table"))?;
    Ok(ParquetRows {
        path: path.to_path_buf(),
        reader,
        pending: Vec::new().into_iter(),
        rows_read: 0,
    })
}

/// The rows of a Parquet table (its footer's count; nothing else is read).
pub(super) fn count_rows(path: &Path) -> Result<usize, InferenceError> {
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        file,
        ArrowReaderOptions::new().with_skip_arrow_metadata(true),
    )
    .map_err(parquet_err(path, "not a readable Parquet file"))?;
    let rows = builder.metadata().file_metadata().num_rows();
    usize::try_from(rows).map_err(|_| InferenceError::TableColumns {
        path: path.to_path_buf(),
        field: "num_rows".into(),
        reason: format!("the footer says {rows} rows"),
    })
}

impl ParquetRows {
    /// The next row, reading the next record batch when the last is used up; `Err` when the
    /// file cannot be read on.
    pub(super) fn next_raw(&mut self) -> Option<Result<RawRow, InferenceError>> {
        loop {
            if let Some(row) = self.pending.next() {
                return Some(Ok(row));
            }
            let batch = match self.reader.next()? {
                Ok(batch) => batch,
                Err(e) => {
                    return Some(Err(parquet_err(
                        &self.path,
                        format!("cannot read the rows after row {}", self.rows_read),
                    )(e)));
                }
            };
            match raw_rows(&batch, self.rows_read) {
                Ok(rows) => self.pending = rows.into_iter(),
                Err(reason) => {
                    return Some(Err(InferenceError::Table {
                        path: self.path.clone(),
                        row: self.rows_read + 1,
                        field: "record batch".into(),
                        reason,
                    }));
                }
            }
            self.rows_read += batch.num_rows();
        }
    }
}

/// A record batch's rows, numbered after the `before` rows of earlier batches.
fn raw_rows(batch: &RecordBatch, before: usize) -> Result<Vec<RawRow>, String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("no `{name}` column in a record batch"))
    };
    let unreadable = |name: &str, column: &ArrayRef| {
        format!("cannot read `{name}` of type {}", column.data_type())
    };
    let (sku, good_type, reviews) = (column("sku")?, column("good_type")?, column("reviews")?);
    let skus = texts(sku.as_ref()).ok_or_else(|| unreadable("sku", sku))?;
    let good_types = texts(good_type.as_ref()).ok_or_else(|| unreadable("good_type", good_type))?;
    let review_lists =
        review_lists(reviews.as_ref()).ok_or_else(|| unreadable("reviews", reviews))?;
    Ok(skus
        .into_iter()
        .zip(good_types)
        .zip(review_lists)
        .enumerate()
        .map(|(i, ((sku, good_type), reviews))| RawRow {
            row: before + i + 1,
            sku,
            good_type,
            reviews,
        })
        .collect())
}

/// A text or integer column's values as text (`None` for a null); `None` for another type.
fn texts(column: &dyn Array) -> Option<Vec<Option<String>>> {
    fn owned<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<String>> {
        values.map(|v| v.map(str::to_owned)).collect()
    }
    macro_rules! decimal {
        ($t:ty) => {
            column
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|n| n.to_string()))
                .collect()
        };
    }
    Some(match column.data_type() {
        DataType::Utf8 => owned(column.as_string::<i32>().iter()),
        DataType::LargeUtf8 => owned(column.as_string::<i64>().iter()),
        DataType::Utf8View => owned(column.as_string_view().iter()),
        DataType::Int8 => decimal!(Int8Type),
        DataType::Int16 => decimal!(Int16Type),
        DataType::Int32 => decimal!(Int32Type),
        DataType::Int64 => decimal!(Int64Type),
        DataType::UInt8 => decimal!(UInt8Type),
        DataType::UInt16 => decimal!(UInt16Type),
        DataType::UInt32 => decimal!(UInt32Type),
        DataType::UInt64 => decimal!(UInt64Type),
        _ => return None,
    })
}

/// Why a row has no review list: it is null.
const NULL_LIST: &str = "null (expected a list of review strings)";

/// A review column's rows: each row's non-null review items, or why it has none;
/// `None` for a column of another type.
fn review_lists(column: &dyn Array) -> Option<Vec<Result<Vec<String>, String>>> {
    fn lists<O: OffsetSizeTrait>(
        list: &GenericListArray<O>,
    ) -> Option<Vec<Result<Vec<String>, String>>> {
        let values = texts(list.values().as_ref())?;
        let offsets = list.value_offsets();
        (0..list.len())
            .map(|i| {
                if list.is_null(i) {
                    return Some(Err(NULL_LIST.to_owned()));
                }
                let (start, end) = (offsets.get(i)?.as_usize(), offsets.get(i + 1)?.as_usize());
                Some(Ok(values
                    .get(start..end)?
                    .iter()
                    .flatten()
                    .cloned()
                    .collect()))
            })
            .collect()
    }
    match column.data_type() {
        DataType::List(_) => lists(column.as_list::<i32>()),
        DataType::LargeList(_) => lists(column.as_list::<i64>()),
        _ => Some(
            texts(column)?
                .into_iter()
                .map(|text| match text {
                    None => Err(NULL_LIST.to_owned()),
                    Some(text) => serde_json::from_str::<Vec<String>>(&text)
                        .map_err(|e| format!("not a JSON list of strings: {e}")),
                })
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Output

/// The output dataset's directory, opened to write part files after the earlier runs'.
pub(super) struct PartWriter {
    dir: PathBuf,
    next: u64,
    schema: SchemaRef,
    properties: WriterProperties,
}

/// What an earlier run left in the output directory.
pub(super) struct Resumed {
    /// The SKUs of its part files.
    pub done_skus: HashSet<String>,
    /// Temp files of parts cut by a kill, deleted.
    pub removed_temp_parts: usize,
}

/// The number of a part file's name `part-NNNNNN.parquet`.
fn part_number(name: &str) -> Option<u64> {
    number(name.strip_prefix("part-")?.strip_suffix(".parquet")?)
}

/// The number of a temp file's name `.part-NNNNNN.parquet.tmp`.
fn temp_number(name: &str) -> Option<u64> {
    number(name.strip_prefix(".part-")?.strip_suffix(".parquet.tmp")?)
}

/// Six digits or more.
fn number(digits: &str) -> Option<u64> {
    (digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A part file's name.
fn part_name(number: u64) -> String {
    format!("part-{number:06}.parquet")
}

impl PartWriter {
    /// Opens (or creates) the dataset directory `dir`: refuses one that holds anything but
    /// part and temp files, deletes the temp files, reads the SKUs of the parts.
    pub(super) fn open(dir: &Path) -> Result<(Self, Resumed), InferenceError> {
        let refuse = |reason: String| InferenceError::OutputDir {
            path: dir.to_path_buf(),
            reason,
        };
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(refuse(
                    "is a file, but a .parquet --out is a directory of part files (a Parquet \
                     dataset); give another --out"
                        .into(),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            Err(e) => return Err(io_err(dir)(e)),
        }
        let mut parts = Vec::new();
        let mut temps = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            let is_file = entry.file_type().map_err(io_err(&entry.path()))?.is_file();
            match (part_number(&text), temp_number(&text)) {
                (Some(n), _) if is_file => parts.push((n, entry.path())),
                (_, Some(_)) if is_file => temps.push(entry.path()),
                _ => {
                    return Err(refuse(format!(
                        "holds {text:?}, which is not a part file of predict-tags \
                         (part-NNNNNN.parquet); give a new --out directory, or move what is \
                         not ours away"
                    )));
                }
            }
        }
        for temp in &temps {
            std::fs::remove_file(temp).map_err(io_err(temp))?;
        }
        parts.sort();
        let mut done_skus = HashSet::new();
        for (_, part) in &parts {
            done_skus.extend(part_skus(part)?);
        }
        let next = parts.last().map_or(0, |(n, _)| n + 1);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        Ok((
            Self {
                dir: dir.to_path_buf(),
                next,
                schema: Arc::new(output_schema()),
                properties,
            },
            Resumed {
                done_skus,
                removed_temp_parts: temps.len(),
            },
        ))
    }

    /// Writes one part file of `skus` and their `predictions` (a temp file, synced, then
    /// renamed; the directory synced too).
    pub(super) fn write_batch(
        &mut self,
        skus: &[String],
        predictions: &[Prediction],
    ) -> Result<(), InferenceError> {
        let name = part_name(self.next);
        let temp = self.dir.join(format!(".{name}.tmp"));
        let part = self.dir.join(&name);
        let batch = output_batch(&self.schema, skus, predictions)
            .map_err(parquet_err(&part, "cannot lay out the part's rows"))?;
        let file = File::create(&temp).map_err(io_err(&temp))?;
        let mut writer =
            ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
                .map_err(parquet_err(&temp, "cannot write a part file"))?;
        writer
            .write(&batch)
            .map_err(parquet_err(&temp, "cannot write a part file"))?;
        let file = writer
            .into_inner()
            .map_err(parquet_err(&temp, "cannot write a part file"))?;
        file.sync_all().map_err(io_err(&temp))?;
        drop(file);
        std::fs::rename(&temp, &part).map_err(io_err(&part))?;
        sync_dir(&self.dir)?;
        self.next += 1;
        Ok(())
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), InferenceError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The SKUs of a part file (its `sku` column alone).
fn part_skus(path: &Path) -> Result<Vec<String>, InferenceError> {
    let unreadable = "cannot read the SKUs of this part file of an earlier run (renames are \
                      atomic, so it is not one cut by a kill: move it away or fix it)";
    let file = File::open(path).map_err(io_err(path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(path, unreadable))?;
    let Some((index, _)) = builder.schema().column_with_name("sku") else {
        return Err(InferenceError::TableColumns {
            path: path.to_path_buf(),
            field: "sku".into(),
            reason: format!("no `sku` column: not a part file of predict-tags; {unreadable}"),
        });
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err(path, unreadable))?;
    let mut skus = Vec::new();
    for batch in reader {
        let batch = batch.map_err(parquet_err(path, unreadable))?;
        let values = batch
            .column_by_name("sku")
            .and_then(|c| texts(c.as_ref()))
            .ok_or_else(|| InferenceError::TableColumns {
                path: path.to_path_buf(),
                field: "sku".into(),
                reason: format!("not a utf8 column; {unreadable}"),
            })?;
        for sku in values {
            let row = skus.len() + 1;
            skus.push(sku.ok_or_else(|| InferenceError::Table {
                path: path.to_path_buf(),
                row,
                field: "sku".into(),
                reason: format!("null; {unreadable}"),
            })?);
        }
    }
    Ok(skus)
}

/// Offsets of lists of these lengths.
fn offsets(
    lengths: impl IntoIterator<Item = usize>,
) -> Result<OffsetBuffer<i32>, arrow_schema::ArrowError> {
    OffsetBuffer::try_from_lengths(lengths)
        .map_err(|e| arrow_schema::ArrowError::ComputeError(e.to_string()))
}

/// A list column of `fields` structs: `lengths` items per row, the items' `columns`.
fn list_of_structs(
    fields: Fields,
    lengths: Vec<usize>,
    columns: Vec<ArrayRef>,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let values = StructArray::try_new(fields.clone(), columns, None)?;
    Ok(Arc::new(ListArray::try_new(
        item(DataType::Struct(fields)),
        offsets(lengths)?,
        Arc::new(values),
        None,
    )?))
}

/// Rows of the output schema.
fn output_batch(
    schema: &SchemaRef,
    skus: &[String],
    predictions: &[Prediction],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let strings = |f: &dyn Fn(&Prediction) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(predictions.iter().map(f)))
    };
    let tags: Vec<_> = predictions.iter().flat_map(|p| &p.tags).collect();
    let evidence: Vec<_> = tags.iter().flat_map(|t| &t.evidence).collect();
    let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let evidence_column = list_of_structs(
        evidence_fields(),
        tags.iter().map(|t| t.evidence.len()).collect(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                evidence.iter().map(|e| as_i64(e.review)),
            )),
            Arc::new(StringArray::from_iter_values(
                evidence.iter().map(|e| e.text.as_str()),
            )),
            Arc::new(Float32Array::from_iter_values(
                evidence.iter().map(|e| e.score),
            )),
        ],
    )?;
    let tags_column = list_of_structs(
        tag_fields(),
        predictions.iter().map(|p| p.tags.len()).collect(),
        vec![
            Arc::new(StringArray::from_iter_values(
                tags.iter().map(|t| t.tag.as_str()),
            )),
            Arc::new(Float32Array::from_iter_values(
                tags.iter().map(|t| t.probability),
            )),
            Arc::new(Int64Array::from_iter_values(
                tags.iter().map(|t| as_i64(t.mentions)),
            )),
            evidence_column,
        ],
    )?;
    let probabilities: Vec<_> = predictions.iter().flat_map(|p| &p.probabilities).collect();
    let probabilities_column = list_of_structs(
        probability_fields(),
        predictions.iter().map(|p| p.probabilities.len()).collect(),
        vec![
            Arc::new(StringArray::from_iter_values(
                probabilities.iter().map(|t| t.tag.as_str()),
            )),
            Arc::new(Float32Array::from_iter_values(
                probabilities.iter().map(|t| t.probability),
            )),
        ],
    )?;
    let booleans = |f: &dyn Fn(&Prediction) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(
            predictions.iter().map(f).collect::<Vec<bool>>(),
        ))
    };
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(skus)),
            strings(&|p| &p.good_type),
            strings(&|p| p.category.name()),
            booleans(&|p| p.fallback),
            tags_column,
            probabilities_column,
            booleans(&|p| p.calibrated),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BadRow, Product, Rows, TableReader};
    use crate::tagger::{Evidence, PredictedTag, TagProbability};
    use arrow_array::builder::{LargeListBuilder, LargeStringBuilder, ListBuilder, StringBuilder};
    use arrow_array::{Int64Array, LargeStringArray, UInt32Array};

    /// Writes `columns` as a Parquet table, `group_rows` rows per row group.
    fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>, group_rows: usize) {
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let file = File::create(path).expect("create");
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    /// Every row of `path`, read `batch_rows` at a time.
    fn read_all(path: &Path, batch_rows: usize) -> Vec<Result<Product, BadRow>> {
        let reader = TableReader {
            path: path.to_path_buf(),
            inner: Rows::Parquet(open_rows(path, batch_rows).expect("open")),
        };
        reader.collect::<Result<_, _>>().expect("read")
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn rows_are_numbered_across_row_groups_and_batches_and_bad_rows_name_their_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.PARQUET");
        let mut reviews = ListBuilder::new(StringBuilder::new());
        let lists: [Option<&[Option<&str>]>; 7] = [
            Some(&[Some(" ok "), None, Some("  ")]),
            None,
            Some(&[Some("x")]),
            Some(&[Some("x")]),
            Some(&[Some("x")]),
            Some(&[Some("  "), None]),
            Some(&[Some("мягкие"), Some("лёгкие")]),
        ];
        for list in lists {
            match list {
                Some(items) => {
                    for item in items {
                        reviews.values().append_option(*item);
                    }
                    reviews.append(true);
                }
                None => reviews.append_null(),
            }
        }
        write_table(
            &path,
            vec![
                ("name", strings(&[Some("n"); 7])),
                (
                    "sku",
                    strings(&[
                        Some("A1"),
                        Some("A2"),
                        None,
                        Some("A4"),
                        Some("A5"),
                        Some("A6"),
                        Some(" A7 "),
                    ]),
                ),
                (
                    "good_type",
                    strings(&[
                        Some("Bags"),
                        Some("Bags"),
                        Some("Bags"),
                        Some(" "),
                        None,
                        Some("Shoes"),
                        Some("Shoes"),
                    ]),
                ),
                ("reviews", Arc::new(reviews.finish())),
            ],
            3,
        );
        assert!(crate::batch::is_parquet(&path));
        assert_eq!(count_rows(&path).expect("count"), 7);
        let groups = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
            .expect("parquet")
            .metadata()
            .num_row_groups();
        assert_eq!(groups, 3);
        // Three row groups, read two rows at a time: the numbers run across both.
        let rows = read_all(&path, 2);
        assert_eq!(rows.len(), 7);
        let good: Vec<(&str, usize, &[String])> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|p| (p.sku.as_str(), p.row, p.reviews.as_slice()))
            .collect();
        assert_eq!(
            good,
            [
                ("A1", 1, &["ok".to_owned()][..]),
                ("A7", 7, &["мягкие".to_owned(), "лёгкие".to_owned()][..])
            ]
        );
        let bad: Vec<(usize, &str, Option<&str>, &str)> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|b| (b.row, b.field.as_str(), b.sku.as_deref(), b.reason.as_str()))
            .collect();
        assert_eq!(
            bad,
            [
                (
                    2,
                    "reviews",
                    Some("A2"),
                    "null (expected a list of review strings)"
                ),
                (3, "sku", None, "the SKU is null"),
                (4, "good_type", Some("A4"), "the good type is empty"),
                (5, "good_type", Some("A5"), "the good type is null"),
                (6, "reviews", Some("A6"), "no review text"),
            ]
        );
        assert!(
            rows[1]
                .as_ref()
                .err()
                .is_some_and(|b| b.to_string().contains("t.PARQUET row 2: `reviews`: null")),
            "{:?}",
            rows[1]
        );
    }

    #[test]
    fn integer_skus_large_types_and_json_review_text_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let large = dir.path().join("large.parquet");
        let mut reviews = LargeListBuilder::new(LargeStringBuilder::new());
        reviews.values().append_value("удобные");
        reviews.append(true);
        reviews.values().append_value("лёгкие");
        reviews.values().append_value("тёплые");
        reviews.append(true);
        write_table(
            &large,
            vec![
                ("sku", Arc::new(Int64Array::from(vec![12_345, -7]))),
                (
                    "good_type",
                    Arc::new(LargeStringArray::from(vec!["Shoes", "Bags"])),
                ),
                ("reviews", Arc::new(reviews.finish())),
            ],
            10,
        );
        let rows = read_all(&large, READ_BATCH_ROWS);
        let products: Vec<(&str, &str, usize)> = rows
            .iter()
            .map(|r| r.as_ref().expect("a product"))
            .map(|p| (p.sku.as_str(), p.good_type.as_str(), p.reviews.len()))
            .collect();
        assert_eq!(products, [("12345", "Shoes", 1), ("-7", "Bags", 2)]);

        let json = dir.path().join("json.parquet");
        write_table(
            &json,
            vec![
                ("sku", Arc::new(UInt32Array::from(vec![1, 2, 3]))),
                ("good_type", strings(&[Some("Bags"); 3])),
                (
                    "reviews",
                    strings(&[Some(r#"["один", "два"]"#), Some("oops"), None]),
                ),
            ],
            10,
        );
        let rows = read_all(&json, READ_BATCH_ROWS);
        assert_eq!(
            rows[0].as_ref().map(|p| p.reviews.clone()),
            Ok(vec!["один".to_owned(), "два".to_owned()])
        );
        let bad: Vec<(usize, &str)> = rows[1..]
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|b| (b.row, b.reason.as_str()))
            .collect();
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, 2);
        assert!(
            bad[0].1.starts_with("not a JSON list of strings"),
            "{}",
            bad[0].1
        );
        assert_eq!(bad[1], (3, NULL_LIST));
    }

    #[test]
    fn a_missing_or_mistyped_column_names_the_file_and_the_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.parquet");
        write_table(
            &missing,
            vec![
                ("sku", strings(&[Some("A")])),
                ("good_type", strings(&[Some("Bags")])),
                ("text", strings(&[Some("x")])),
            ],
            10,
        );
        let err = crate::batch::read_table(&missing)
            .err()
            .expect("no reviews");
        assert!(
            matches!(&err, InferenceError::TableColumns { field, .. } if field == "reviews"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("missing.parquet: column `reviews`: unknown column layout")
                && text.contains("the columns are `sku`, `good_type`, `text`"),
            "{text}"
        );

        let mistyped = dir.path().join("mistyped.parquet");
        write_table(
            &mistyped,
            vec![
                ("sku", strings(&[Some("A")])),
                ("good_type", strings(&[Some("Bags")])),
                ("reviews", Arc::new(Int64Array::from(vec![1]))),
            ],
            10,
        );
        let err = crate::batch::read_table(&mistyped)
            .err()
            .expect("int reviews");
        assert!(
            err.to_string()
                .contains("column `reviews`: the column is Int64; expected list<utf8>"),
            "{err}"
        );

        let not_parquet = dir.path().join("not.parquet");
        std::fs::write(&not_parquet, "sku,good_type\n").expect("write");
        let err = crate::batch::read_table(&not_parquet)
            .err()
            .expect("not parquet");
        assert!(
            err.to_string()
                .contains("not.parquet: not a readable Parquet file"),
            "{err}"
        );
        assert!(count_rows(&not_parquet).is_err());
    }

    /// A prediction with `n` tags (tag `i` with `i` pieces of evidence) and a pool of 3.
    fn prediction(good_type: &str, n: usize) -> Prediction {
        Prediction {
            good_type: good_type.into(),
            category: lamoda_data::Category::Bags,
            fallback: n == 0,
            tags: (0..n)
                .map(|i| PredictedTag {
                    tag: format!("тег {i}"),
                    probability: 0.9 - i as f32 / 10.0,
                    mentions: i + 1,
                    evidence: (0..i)
                        .map(|r| Evidence {
                            review: r,
                            text: format!("отзыв {r}"),
                            score: 0.75,
                        })
                        .collect(),
                })
                .collect(),
            probabilities: (0..3)
                .map(|i| TagProbability {
                    tag: format!("тег {i}"),
                    probability: 0.9 - i as f32 / 10.0,
                })
                .collect(),
            calibrated: true,
            reviews_read: 2,
        }
    }

    fn part_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn parts_hold_the_output_schema_as_parquet_itself_records_it() {
        let schema = output_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "sku",
                "good_type",
                "category",
                "fallback",
                "tags",
                "probabilities",
                "calibrated"
            ]
        );
        assert!(schema.fields().iter().all(|f| !f.is_nullable()));
        let tags = schema.field_with_name("tags").expect("tags").data_type();
        let DataType::List(item) = tags else {
            panic!("tags is {tags}")
        };
        assert_eq!((item.name().as_str(), item.is_nullable()), ("item", false));
        let DataType::Struct(fields) = item.data_type() else {
            panic!("a tag is {}", item.data_type())
        };
        assert_eq!(
            fields
                .iter()
                .map(|f| (f.name().as_str(), f.data_type().to_string()))
                .collect::<Vec<_>>()[..3],
            [
                ("tag", "Utf8".to_owned()),
                ("probability", "Float32".to_owned()),
                ("mentions", "Int64".to_owned())
            ]
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tags.parquet");
        let (mut writer, resumed) = PartWriter::open(&out).expect("open");
        assert!(resumed.done_skus.is_empty());
        let predictions = [prediction("Bags", 3), prediction("Toys", 0)];
        writer
            .write_batch(&["S1".to_owned(), "S2".to_owned()], &predictions)
            .expect("write");
        assert_eq!(part_names(&out), ["part-000000.parquet"]);
        let part = out.join("part-000000.parquet");
        for skip_arrow_metadata in [false, true] {
            let options = ArrowReaderOptions::new().with_skip_arrow_metadata(skip_arrow_metadata);
            let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
                File::open(&part).expect("open"),
                options,
            )
            .expect("a Parquet file");
            // The same schema with or without the embedded Arrow schema: Parquet's own
            // records the names and nullability (what pyarrow and polars read).
            assert_eq!(builder.schema().fields(), schema.fields());
            let metadata = builder.metadata().clone();
            assert_eq!(metadata.num_row_groups(), 1);
            let group = metadata.row_group(0);
            assert!(
                group
                    .columns()
                    .iter()
                    .all(|c| c.compression() == Compression::SNAPPY)
            );
            let batches: Vec<RecordBatch> = builder
                .build()
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("read");
            assert_eq!(batches.len(), 1);
            let batch = &batches[0];
            let tags = batch.column_by_name("tags").expect("tags").as_list::<i32>();
            assert_eq!((tags.value_length(0), tags.value_length(1)), (3, 0));
            let first = tags.value(0);
            let first = first.as_struct();
            let evidence = first
                .column_by_name("evidence")
                .expect("evidence")
                .as_list::<i32>();
            assert_eq!(evidence.value_length(2), 2);
            let third = evidence.value(2);
            let text = third
                .as_struct()
                .column_by_name("text")
                .expect("text")
                .as_string::<i32>()
                .value(1)
                .to_owned();
            assert_eq!(text, "отзыв 1");
            let probability = first
                .column_by_name("probability")
                .expect("probability")
                .as_primitive::<arrow_array::types::Float32Type>()
                .value(1);
            assert_eq!(probability, 0.9 - 1.0 / 10.0);
            let category = batch
                .column_by_name("category")
                .expect("category")
                .as_string::<i32>();
            assert_eq!(category.value(0), "bags");
        }
    }

    #[test]
    fn a_rerun_deletes_cut_temp_parts_continues_the_numbers_and_refuses_what_is_not_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tags.parquet");
        let (mut writer, _) = PartWriter::open(&out).expect("open");
        for skus in [["A", "B"], ["C", "D"]] {
            let skus = skus.map(str::to_owned);
            writer
                .write_batch(&skus, &[prediction("Bags", 1), prediction("Bags", 2)])
                .expect("write");
        }
        drop(writer);
        // A kill in the middle of a part: its temp file, cut short.
        let temp = out.join(".part-000002.parquet.tmp");
        std::fs::write(&temp, b"PAR1\x00\x01").expect("write temp");
        let (mut writer, resumed) = PartWriter::open(&out).expect("reopen");
        assert_eq!(resumed.removed_temp_parts, 1);
        assert!(!temp.exists(), "the cut temp file is deleted");
        let mut done: Vec<String> = resumed.done_skus.into_iter().collect();
        done.sort();
        assert_eq!(done, ["A", "B", "C", "D"]);
        writer
            .write_batch(&["E".to_owned()], &[prediction("Bags", 0)])
            .expect("write");
        assert_eq!(
            part_names(&out),
            [
                "part-000000.parquet",
                "part-000001.parquet",
                "part-000002.parquet"
            ]
        );

        // Someone else's file: refused, and nothing of the directory is touched.
        std::fs::write(&temp, b"cut").expect("write temp");
        std::fs::write(out.join("notes.txt"), "mine").expect("write");
        let err = PartWriter::open(&out).err().expect("not ours");
        assert!(
            err.to_string()
                .contains("holds \"notes.txt\", which is not a part file"),
            "{err}"
        );
        assert!(temp.exists());
        std::fs::remove_file(out.join("notes.txt")).expect("remove");

        // A part that cannot be read is named, not skipped.
        std::fs::write(out.join("part-000007.parquet"), b"not parquet").expect("write");
        let err = PartWriter::open(&out).err().expect("unreadable part");
        assert!(
            matches!(&err, InferenceError::Parquet { path, .. } if path.ends_with("part-000007.parquet")),
            "{err:?}"
        );
        std::fs::remove_file(out.join("part-000007.parquet")).expect("remove");

        // A file where the directory should be.
        let file = dir.path().join("file.parquet");
        std::fs::write(&file, "x").expect("write");
        let err = PartWriter::open(&file).err().expect("a file");
        assert!(err.to_string().contains("is a file"), "{err}");

        assert_eq!(part_number("part-000123.parquet"), Some(123));
        assert_eq!(part_number("part-1234567.parquet"), Some(1_234_567));
        assert_eq!(part_number("part-12.parquet"), None);
        assert_eq!(temp_number(".part-000001.parquet.tmp"), Some(1));
        assert_eq!(temp_number("part-000001.parquet"), None);
    }
}
