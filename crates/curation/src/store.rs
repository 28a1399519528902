//! The label store: one JSON line per product, appended, flushed and synced to disk as each
//! product finishes, so a kill at any moment loses no finished product.
//!
//! Opening a store reads what is there. A last line without its line break is what a kill
//! in the middle of a write leaves: it is dropped (and its product redone) unless it is a
//! whole record. Any other line that is not a record is an error naming its line: the
//! store is never guessed at. When a product has several records (a store concatenated by
//! hand) the last one counts. Whenever the file holds anything the run will not keep (a
//! cut line, a record to redo, a duplicate), it is first rewritten to a temporary file,
//! synced and renamed over the store, so the store on disk is at every moment either the
//! old one or the new one, and ends with one record per product.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CurationError;
use crate::error::excerpt;

/// How a product's labeling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Labeled: `tags` holds the answer (possibly none: the reviews say nothing concrete).
    Ok,
    /// Gave up after the retries: `reason` says why. `--retry-failed` redoes it.
    Failed,
}

/// A tag the labeler refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The tag as the LLM wrote it.
    pub tag: String,
    /// Why it was refused (size number, too many words, duplicate, contradiction).
    pub reason: String,
}

/// One product's line in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The product's SKU.
    pub sku: String,
    /// The hash of what the answer depends on ([`crate::record_key`]): a rerun redoes the
    /// product when it differs.
    pub key: String,
    /// `ok` or `failed`.
    pub status: Status,
    /// The product's good type (the pool groups by it).
    pub good_type: String,
    /// The validated tags, merged over the chunks (empty when failed).
    pub tags: Vec<String>,
    /// Why it failed (`None` when ok).
    pub reason: Option<String>,
    /// Tags of the answers that were refused.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
    /// How many chunks the reviews were split into.
    pub chunks: usize,
    /// Chat requests made for this product, retries included.
    pub attempts: u32,
    /// The model named in the requests.
    pub model: String,
    /// When work on the product began (RFC 3339 UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
}

/// What reading a store found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The records, one per SKU (the last one when there are several), in file order.
    pub records: Vec<Record>,
    /// Whether the last line was cut (a kill mid-write) and dropped.
    pub cut_tail: bool,
    /// Records superseded by a later one for the same SKU.
    pub superseded: usize,
    /// Whether the file differs from `records` written out (cut tail, superseded records,
    /// blank lines, no final line break).
    pub untidy: bool,
}

/// Reads a store; a missing file is an empty store.
pub fn read_store(path: &Path) -> Result<Loaded, CurationError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(source) => {
            return Err(CurationError::Io {
                path: path.to_owned(),
                action: "cannot read the label store",
                source,
            });
        }
    };
    let mut loaded = Loaded::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After the last line break: empty for a tidy file, else an unterminated last line.
    let tail = lines.pop().unwrap_or_default();
    let mut push = |record: Record, loaded: &mut Loaded| match index.get(&record.sku) {
        Some(&i) => {
            loaded.records[i] = record;
            loaded.superseded += 1;
            loaded.untidy = true;
        }
        None => {
            index.insert(record.sku.clone(), loaded.records.len());
            loaded.records.push(record);
        }
    };
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            loaded.untidy = true;
            continue;
        }
        let record = parse_line(line).map_err(|reason| CurationError::StoreLine {
            path: path.to_owned(),
            line: i + 1,
            reason,
            value: excerpt(&String::from_utf8_lossy(line)),
        })?;
        push(record, &mut loaded);
    }
    if !tail.is_empty() {
        loaded.untidy = true;
        match parse_line(tail) {
            Ok(record) => push(record, &mut loaded),
            Err(_) => loaded.cut_tail = true,
        }
    }
    Ok(loaded)
}

fn parse_line(line: &[u8]) -> Result<Record, String> {
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

/// What [`Store::open`] did to the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opened {
    /// The records kept (the caller's `keep` said yes), one per SKU.
    pub kept: Vec<Record>,
    /// Records dropped because the caller will redo their products.
    pub dropped: usize,
    /// Whether a cut last line was dropped.
    pub cut_tail: bool,
    /// Whether the file was rewritten (atomically) before appending.
    pub rewritten: bool,
}

/// An open store, appending one synced line per record.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
}

impl Store {
    /// Opens (or creates) the store at `path`, keeping the records `keep` accepts and
    /// dropping the rest (their products are to be redone). The file is rewritten first
    /// (temporary file, sync, rename) when it holds anything not kept.
    pub fn open(
        path: &Path,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> Result<(Store, Opened), CurationError> {
        let loaded = read_store(path)?;
        let total = loaded.records.len();
        let kept: Vec<Record> = loaded.records.into_iter().filter(|r| keep(r)).collect();
        let dropped = total - kept.len();
        let rewrite = loaded.untidy || dropped > 0;
        if rewrite {
            rewrite_atomically(path, &kept)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| CurationError::Io {
                path: path.to_owned(),
                action: "cannot open the label store for writing",
                source,
            })?;
        let opened = Opened {
            kept,
            dropped,
            cut_tail: loaded.cut_tail,
            rewritten: rewrite,
        };
        Ok((
            Store {
                path: path.to_owned(),
                file,
            },
            opened,
        ))
    }

    /// Appends `record` as one line and syncs it to disk before returning.
    pub fn append(&mut self, record: &Record) -> Result<(), CurationError> {
        let mut line = serde_json::to_string(record).map_err(|e| CurationError::Io {
            path: self.path.clone(),
            action: "cannot encode a record",
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        let io = |source| CurationError::Io {
            path: self.path.clone(),
            action: "cannot write the label store",
            source,
        };
        // One write of the whole line: a kill leaves at worst a prefix of it, which the
        // next open drops.
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `records` to `<path>.tmp`, syncs it, renames it over `path` and syncs the
/// directory.
fn rewrite_atomically(path: &Path, records: &[Record]) -> Result<(), CurationError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let io = |action: &'static str, at: &Path| {
        let at = at.to_owned();
        move |source| CurationError::Io {
            path: at,
            action,
            source,
        }
    };
    let mut text = String::new();
    for record in records {
        let line = serde_json::to_string(record)
            .map_err(|e| io("cannot encode a record", &tmp)(std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    let mut file = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    file.write_all(text.as_bytes())
        .map_err(io("cannot write", &tmp))?;
    file.sync_all().map_err(io("cannot sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("cannot rename the rewritten store onto", path))?;
    sync_dir(path)
}

/// Syncs the directory holding `path`, so a rename survives a crash.
fn sync_dir(path: &Path) -> Result<(), CurationError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CurationError::Io {
            path: dir.to_owned(),
            action: "cannot sync the directory",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sku: &str, status: Status) -> Record {
        Record {
            sku: sku.to_owned(),
            key: "k".to_owned(),
            status,
            good_type: "Shoes".to_owned(),
            tags: vec!["Мягкие".to_owned()],
            reason: (status == Status::Failed).then(|| "timed out".to_owned()),
            rejected: Vec::new(),
            chunks: 1,
            attempts: 1,
            model: "m".to_owned(),
            started_at: "2025-01-01T00:00:00Z".to_owned(),
            finished_at: "2025-01-01T00:00:01Z".to_owned(),
        }
    }

    fn line(r: &Record) -> String {
        serde_json::to_string(r).expect("encodes") + "\n"
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.jsonl");
        let (mut store, opened) = Store::open(&path, |_| true).expect("open");
        assert_eq!(opened, Opened::default());
        store.append(&record("A", Status::Ok)).expect("append");
        store.append(&record("B", Status::Failed)).expect("append");
        let loaded = read_store(&path).expect("read");
        assert_eq!(
            loaded.records,
            [record("A", Status::Ok), record("B", Status::Failed)]
        );
        assert!(!loaded.untidy);
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_the_file_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.jsonl");
        let whole = line(&record("A", Status::Ok));
        let cut = &line(&record("B", Status::Ok))[..20];
        std::fs::write(&path, format!("{whole}{cut}")).expect("write");
        let (mut store, opened) = Store::open(&path, |_| true).expect("open");
        assert!(opened.cut_tail && opened.rewritten);
        assert_eq!(opened.kept, [record("A", Status::Ok)]);
        store.append(&record("B", Status::Ok)).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{whole}{}", line(&record("B", Status::Ok))));
        assert!(!dir.path().join("raw.jsonl.tmp").exists());
    }

    #[test]
    fn a_whole_last_record_without_its_line_break_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.jsonl");
        let whole = line(&record("A", Status::Ok));
        std::fs::write(&path, whole.trim_end()).expect("write");
        let (_, opened) = Store::open(&path, |_| true).expect("open");
        assert!(!opened.cut_tail && opened.rewritten);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), whole);
    }

    #[test]
    fn a_bad_line_before_the_end_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.jsonl");
        let whole = line(&record("A", Status::Ok));
        std::fs::write(&path, format!("{whole}{{\"sku\": 1}}\n{whole}")).expect("write");
        let err = read_store(&path).expect_err("corrupt store");
        let text = err.to_string();
        assert!(
            text.contains("raw.jsonl: line 2: not a label record"),
            "{text}"
        );
        // Nothing was changed.
        assert!(Store::open(&path, |_| true).is_err());
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .contains("{\"sku\": 1}")
        );
    }

    #[test]
    fn dropped_and_superseded_records_leave_one_line_per_product() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.jsonl");
        let text = [
            line(&record("A", Status::Failed)),
            line(&record("B", Status::Failed)),
            line(&record("A", Status::Ok)),
        ]
        .concat();
        std::fs::write(&path, text).expect("write");
        let (_, opened) = Store::open(&path, |r| r.status == Status::Ok).expect("open");
        assert_eq!(opened.kept, [record("A", Status::Ok)]);
        assert_eq!(opened.dropped, 1);
        let loaded = read_store(&path).expect("read");
        assert_eq!(loaded.records, [record("A", Status::Ok)]);
        assert!(!loaded.untidy);
    }
}
