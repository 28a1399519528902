//! A small CSV reader that keeps file, row and column names for errors.

use std::path::{Path, PathBuf};

use csv::ByteRecord;

use crate::DataError;
use crate::error::excerpt;

/// A whole CSV file read into memory, header resolved.
pub(crate) struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<ByteRecord>,
}

/// One data row with access to fields by column name.
pub(crate) struct Row<'a> {
    table: &'a Table,
    /// 1-based data row number.
    pub(crate) number: usize,
    record: &'a ByteRecord,
}

impl Table {
    /// Reads `path` as CSV with the given delimiter. A UTF-8 byte-order mark is
    /// skipped. Structural errors (unbalanced quotes, ragged rows) fail here.
    pub(crate) fn read(path: &Path, delimiter: u8) -> Result<Table, DataError> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &bytes, delimiter)
    }

    pub(crate) fn parse(path: &Path, bytes: &[u8], delimiter: u8) -> Result<Table, DataError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(DataError::EmptyFile {
                path: path.to_owned(),
            });
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .from_reader(bytes);
        let csv_error = |row: usize, err: csv::Error| DataError::Csv {
            path: path.to_owned(),
            row,
            message: err.to_string(),
        };
        let header_bytes = reader.byte_headers().map_err(|e| csv_error(0, e))?.clone();
        let mut header = Vec::with_capacity(header_bytes.len());
        for (i, field) in header_bytes.iter().enumerate() {
            let name = std::str::from_utf8(field).map_err(|_| DataError::InvalidUtf8 {
                path: path.to_owned(),
                row: 0,
                field: format!("header column {}", i + 1),
                value: excerpt(&String::from_utf8_lossy(field)),
            })?;
            header.push(name.trim().to_owned());
        }
        let mut rows = Vec::new();
        for (i, record) in reader.byte_records().enumerate() {
            rows.push(record.map_err(|e| csv_error(i + 1, e))?);
        }
        if rows.is_empty() {
            return Err(DataError::NoRows {
                path: path.to_owned(),
            });
        }
        Ok(Table {
            path: path.to_owned(),
            header,
            rows,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fails with [`DataError::MissingColumn`] unless every column is present.
    pub(crate) fn require(&self, columns: &[&str]) -> Result<(), DataError> {
        for column in columns {
            if !self.header.iter().any(|h| h == column) {
                return Err(DataError::MissingColumn {
                    path: self.path.clone(),
                    column: (*column).to_owned(),
                    found: self.header.join(", "),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn has_column(&self, column: &str) -> bool {
        self.header.iter().any(|h| h == column)
    }

    pub(crate) fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().enumerate().map(|(i, record)| Row {
            table: self,
            number: i + 1,
            record,
        })
    }
}

impl Row<'_> {
    /// The file this row comes from.
    pub(crate) fn path(&self) -> &Path {
        &self.table.path
    }

    /// The field of `column` as UTF-8 text. The column must have been
    /// [`Table::require`]d.
    pub(crate) fn get(&self, column: &str) -> Result<&str, DataError> {
        let index = self
            .table
            .header
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.table.path.clone(),
                column: column.to_owned(),
                found: self.table.header.join(", "),
            })?;
        let raw = self.record.get(index).unwrap_or_default();
        std::str::from_utf8(raw).map_err(|_| DataError::InvalidUtf8 {
            path: self.table.path.clone(),
            row: self.number,
            field: column.to_owned(),
            value: excerpt(&String::from_utf8_lossy(raw)),
        })
    }

    /// A [`DataError::BadValue`] for this row.
    pub(crate) fn bad_value(
        &self,
        field: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> DataError {
        DataError::BadValue {
            path: self.table.path.clone(),
            row: self.number,
            field: field.to_owned(),
            reason: reason.into(),
            value: excerpt(value),
        }
    }

    /// Parses the field as JSON of type `T`, `expected` describing it.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        expected: &'static str,
    ) -> Result<T, DataError> {
        let value = self.get(column)?;
        serde_json::from_str(value).map_err(|e| DataError::BadJson {
            path: self.table.path.clone(),
            row: self.number,
            field: column.to_owned(),
            expected,
            reason: e.to_string(),
            value: excerpt(value),
        })
    }
}
