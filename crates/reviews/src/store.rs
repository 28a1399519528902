//! The judgments in SQLite.
//!
//! One table, append-only: a judgment is never updated or deleted; "superseded" is worked
//! out on reading (a later row of the same reviewer and SKU). The file is in WAL mode with
//! `synchronous = FULL`, so a judgment whose insert returned is on disk and survives the
//! process being killed. The schema version is SQLite's `user_version`; [`ReviewStore::open`]
//! applies the migrations a file lacks, in one transaction, and refuses a file written by
//! a newer schema.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lamoda_data::Category;
use rusqlite::{Connection, OptionalExtension, params};

use crate::judgment::{Judgment, NewJudgment, Verdict};

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The migrations, in order: entry `i` takes a file from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [
    // 1: the judgments.
    "CREATE TABLE judgments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        sku TEXT NOT NULL,
        good_type TEXT NOT NULL,
        category TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        accepted TEXT NOT NULL,
        rejected TEXT NOT NULL,
        added TEXT NOT NULL,
        missing TEXT NOT NULL,
        reviews TEXT NOT NULL
    );
    CREATE INDEX judgments_by_sku ON judgments (sku, reviewer, id);",
    // 2: which model suggested the tags.
    "ALTER TABLE judgments ADD COLUMN model TEXT NOT NULL DEFAULT '';
    CREATE INDEX judgments_by_category ON judgments (category);",
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory for the file could not be made.
    #[error("review store {path}: cannot create its directory: {source}")]
    Dir {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("review store {path}: {action}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer schema.
    #[error(
        "review store {path}: schema version {found} is newer than this build's {supported}: \
         use a newer lamoda-server, or another --reviews-db"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// A stored row does not read back.
    #[error("review store {path}: judgment {id}, field `{field}`: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The judgment.
        id: i64,
        /// The column.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The connection's lock was poisoned by a panic elsewhere.
    #[error("review store {path}: its connection was poisoned by an earlier failure")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
}

/// Stored judgments and tag verdicts per category (for `/metrics` and progress).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Judgments per category.
    pub judgments: BTreeMap<Category, u64>,
    /// Tag verdicts per category and verdict (every judgment's, superseded ones too).
    pub verdicts: BTreeMap<(Category, Verdict), u64>,
    /// Distinct SKUs judged per category.
    pub products: BTreeMap<Category, u64>,
}

/// The review store: one SQLite file.
#[derive(Debug)]
pub struct ReviewStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const COLUMNS: &str = "id, created_at, sku, good_type, category, reviewer, accepted, rejected, \
    added, missing, model, EXISTS (SELECT 1 FROM judgments later WHERE later.sku = j.sku \
    AND later.reviewer = j.reviewer AND later.id > j.id)";

impl ReviewStore {
    /// Opens (creating it, and its directory, when absent) the store at `path` and brings
    /// its schema to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_owned(),
                source,
            })?;
        }
        let sql = |action: &'static str| {
            let path = path.to_owned();
            move |source| StoreError::Sqlite {
                path,
                action,
                source,
            }
        };
        let mut conn = Connection::open(path).map_err(sql("cannot open it"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql("cannot set its busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql("cannot switch it to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path: path.to_owned(),
                action: "cannot switch it to WAL mode",
                source: rusqlite::Error::InvalidParameterName(format!("journal_mode {mode}")),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sql("cannot set synchronous = FULL"))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("cannot start its migration"))?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("cannot read its schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for step in MIGRATIONS.iter().skip(found.max(0) as usize) {
            tx.execute_batch(step)
                .map_err(sql("cannot migrate its schema"))?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(sql("cannot record its schema version"))?;
        tx.commit().map_err(sql("cannot commit its migration"))?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// A store in memory, gone when dropped (a server started without a file, in tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            action: "cannot open it",
            source,
        })?;
        for step in MIGRATIONS {
            conn.execute_batch(step)
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    action: "cannot create its schema",
                    source,
                })?;
        }
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned {
            path: self.path.clone(),
        })
    }

    /// Stores a (checked) judgment and returns it as stored; it is on disk when this
    /// returns.
    pub fn insert(&self, j: &NewJudgment) -> Result<Judgment, StoreError> {
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned());
        let conn = self.lock()?;
        let id: i64 = conn
            .query_row(
                "INSERT INTO judgments (created_at, sku, good_type, category, reviewer, \
                 accepted, rejected, added, missing, reviews, model) VALUES \
                 (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 RETURNING id",
                params![
                    j.sku,
                    j.good_type,
                    j.category.name(),
                    j.reviewer,
                    json(&j.accepted),
                    json(&j.rejected),
                    json(&j.added),
                    json(&j.missing),
                    json(&j.reviews),
                    j.model,
                ],
                |r| r.get(0),
            )
            .map_err(self.sql("cannot store a judgment"))?;
        let stored = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM judgments j WHERE id = ?1"),
                [id],
                |r| Ok(self.row(r)),
            )
            .map_err(self.sql("cannot read a stored judgment back"))??;
        Ok(stored)
    }

    fn row(&self, r: &rusqlite::Row<'_>) -> Result<Judgment, StoreError> {
        let id: i64 = r.get(0).map_err(self.sql("cannot read a judgment"))?;
        let text = |i: usize| -> Result<String, StoreError> {
            r.get(i).map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                action: "cannot read a judgment",
                source,
            })
        };
        let list = |i: usize, field: &'static str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(&text(i)?).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                id,
                field,
                reason: e.to_string(),
            })
        };
        let category = text(4)?;
        let category: Category = category.parse().map_err(|_| StoreError::Corrupt {
            path: self.path.clone(),
            id,
            field: "category",
            reason: format!("{category:?} is not a category"),
        })?;
        Ok(Judgment {
            id,
            created_at: text(1)?,
            sku: text(2)?,
            good_type: text(3)?,
            category,
            reviewer: text(5)?,
            accepted: list(6, "accepted")?,
            rejected: list(7, "rejected")?,
            added: list(8, "added")?,
            missing: list(9, "missing")?,
            model: text(10)?,
            superseded: r
                .get::<_, bool>(11)
                .map_err(self.sql("cannot read a judgment"))?,
        })
    }

    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Judgment>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM judgments j {filter}"))
            .map_err(self.sql("cannot query judgments"))?;
        let rows = stmt
            .query_map(args, |r| Ok(self.row(r)))
            .map_err(self.sql("cannot query judgments"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(self.sql("cannot query judgments"))??);
        }
        Ok(out)
    }

    /// Every judgment of `sku`, newest first (superseded ones marked).
    pub fn for_sku(&self, sku: &str) -> Result<Vec<Judgment>, StoreError> {
        self.select("WHERE sku = ?1 ORDER BY id DESC", &[&sku])
    }

    /// Every judgment, oldest first.
    pub fn all(&self) -> Result<Vec<Judgment>, StoreError> {
        self.select("ORDER BY id", &[])
    }

    /// The reviews stored with the latest judgment of `sku`.
    pub fn reviews_of(&self, sku: &str) -> Result<Option<Vec<String>>, StoreError> {
        let conn = self.lock()?;
        let text: Option<String> = conn
            .query_row(
                "SELECT reviews FROM judgments WHERE sku = ?1 ORDER BY id DESC LIMIT 1",
                [sku],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("cannot read a product's reviews"))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                id: 0,
                field: "reviews",
                reason: format!("sku {sku}: {e}"),
            })
        })
        .transpose()
    }

    /// The SKUs with at least one judgment.
    pub fn judged_skus(&self) -> Result<HashSet<String>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare("SELECT DISTINCT sku FROM judgments")
            .map_err(self.sql("cannot list judged products"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sql("cannot list judged products"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("cannot list judged products"))
    }

    /// Judgments, verdicts and products per category.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        let mut products: BTreeMap<Category, HashSet<String>> = BTreeMap::new();
        for j in self.all()? {
            *counts.judgments.entry(j.category).or_default() += 1;
            products
                .entry(j.category)
                .or_default()
                .insert(j.sku.clone());
            for (verdict, n) in j.verdict_counts() {
                *counts.verdicts.entry((j.category, verdict)).or_default() += n as u64;
            }
        }
        counts.products = products
            .into_iter()
            .map(|(c, s)| (c, s.len() as u64))
            .collect();
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn judgment(sku: &str, reviewer: &str, accepted: &[&str]) -> NewJudgment {
        NewJudgment {
            sku: sku.into(),
            good_type: "Bags".into(),
            category: Category::Bags,
            reviewer: reviewer.into(),
            accepted: accepted.iter().map(|t| (*t).to_owned()).collect(),
            rejected: vec!["Лёгкая".into()],
            added: Vec::new(),
            missing: vec!["Не пахнет".into()],
            reviews: vec!["Удобная".into(), "Вместительная".into()],
            model: "bundle base".into(),
        }
    }

    #[test]
    fn judgments_read_back_newest_first_and_later_ones_supersede() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub/reviews.sqlite");
        let store = ReviewStore::open(&path).expect("open");
        let first = store
            .insert(&judgment("A", "anna", &["Удобная"]))
            .expect("insert");
        assert!(!first.superseded);
        assert!(first.created_at.ends_with('Z'), "{}", first.created_at);
        store
            .insert(&judgment("A", "boris", &["Удобная"]))
            .expect("insert");
        store
            .insert(&judgment("A", "anna", &["Вместительная"]))
            .expect("insert");
        store.insert(&judgment("B", "anna", &[])).expect("insert");
        drop(store);
        let store = ReviewStore::open(&path).expect("reopen");
        let a = store.for_sku("A").expect("read");
        let who: Vec<(&str, bool)> = a
            .iter()
            .map(|j| (j.reviewer.as_str(), j.superseded))
            .collect();
        assert_eq!(who, vec![("anna", false), ("boris", false), ("anna", true)]);
        assert_eq!(a[0].accepted, vec!["Вместительная"]);
        assert_eq!(store.judged_skus().expect("skus").len(), 2);
        let counts = store.counts().expect("counts");
        assert_eq!(counts.judgments[&Category::Bags], 4);
        assert_eq!(counts.products[&Category::Bags], 2);
        assert_eq!(counts.verdicts[&(Category::Bags, Verdict::Accepted)], 3);
        assert_eq!(counts.verdicts[&(Category::Bags, Verdict::Rejected)], 4);
        assert_eq!(
            store.reviews_of("A").expect("reviews"),
            Some(vec!["Удобная".to_owned(), "Вместительная".to_owned()])
        );
    }

    #[test]
    fn an_old_file_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v1.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("v1");
            conn.execute_batch("PRAGMA user_version = 1")
                .expect("version");
            conn.execute(
                "INSERT INTO judgments (created_at, sku, good_type, category, reviewer, \
                 accepted, rejected, added, missing, reviews) VALUES ('2026-01-01T00:00:00.000Z', \
                 'OLD', 'Bags', 'bags', 'vera', '[\"Удобная\"]', '[]', '[]', '[]', '[\"ok\"]')",
                [],
            )
            .expect("old row");
        }
        let store = ReviewStore::open(&path).expect("migrate");
        let old = store.for_sku("OLD").expect("read");
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].model, "");
        assert_eq!(old[0].accepted, vec!["Удобная"]);
        drop(store);
        let conn = Connection::open(&path).expect("open");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        conn.execute_batch("PRAGMA user_version = 99")
            .expect("bump");
        drop(conn);
        let e = ReviewStore::open(&path).expect_err("newer").to_string();
        assert!(e.contains("99") && e.contains("newer"), "{e}");
    }

    #[test]
    fn two_threads_posting_at_once_are_both_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let store =
            std::sync::Arc::new(ReviewStore::open(&dir.path().join("r.sqlite")).expect("open"));
        let threads: Vec<_> = ["anna", "boris"]
            .into_iter()
            .map(|who| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        store
                            .insert(&judgment(&format!("S{i}"), who, &["Удобная"]))
                            .expect("insert");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(store.all().expect("all").len(), 40);
    }
}
