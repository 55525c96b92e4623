//! Typed errors of the vocabulary layer.

use std::fmt;

use crate::schema::FieldType;

/// A schema BigQuery would refuse, or one that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A type name BigQuery does not know.
    #[error("unknown column type `{0}` (expected one of STRING, BYTES, INT64, FLOAT64, NUMERIC, BIGNUMERIC, BOOL, TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON, RECORD)")]
    UnknownType(String),
    /// The schema JSON could not be parsed.
    #[error("schema JSON is not valid: {0}")]
    Json(String),
    /// A table needs at least one column.
    #[error("a schema needs at least one column")]
    Empty,
    /// RECORDs nest deeper than BigQuery allows.
    #[error("column `{0}` nests RECORDs deeper than BigQuery's limit of 15")]
    TooDeep(String),
    /// A column name BigQuery refuses.
    #[error("column `{path}` has an invalid name: {reason}")]
    InvalidName {
        /// Dotted path of the column.
        path: String,
        /// Why the name is refused.
        reason: &'static str,
    },
    /// Two columns whose names differ only in case.
    #[error("column `{0}` appears twice (BigQuery column names are case-insensitive)")]
    Duplicate(String),
    /// A RECORD without sub-fields.
    #[error("RECORD column `{0}` has no sub-fields")]
    EmptyRecord(String),
    /// Sub-fields on a column that is not a RECORD.
    #[error("column `{path}` is {field_type} but lists sub-fields; only RECORD columns have them")]
    FieldsOnScalar {
        /// Dotted path of the column.
        path: String,
        /// Its declared type.
        field_type: FieldType,
    },
}

/// A value that does not fit its column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The column's type.
    pub expected: FieldType,
    /// The kind of value found (`STRING`, `INT64`, …).
    pub got: &'static str,
    /// The value, shortened for messages.
    pub preview: String,
    /// Why the conversion failed, when it is more than a type mismatch.
    pub detail: Option<&'static str>,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, got {} ({})", self.expected, self.got, self.preview)?;
        if let Some(d) = self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValueError {}

/// A row that cannot be written, naming the row and the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Position of the row in its input (0-based), when known.
    pub row: Option<u64>,
    /// Dotted path of the offending column (`address.zip`), empty when the row as a whole is bad.
    pub column: String,
    /// What is wrong with it.
    pub message: String,
}

impl RowError {
    /// An error for a column of a row whose position is not known yet.
    pub fn new(column: impl Into<String>, message: impl Into<String>) -> Self {
        Self { row: None, column: column.into(), message: message.into() }
    }
    /// The same error with the row's position.
    pub fn at_row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(row) = self.row {
            write!(f, "row {row}: ")?;
        }
        if self.column.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.column, self.message)
        }
    }
}

impl std::error::Error for RowError {}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{key}`: {message}")]
pub struct ConfigError {
    /// The property name.
    pub key: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl ConfigError {
    /// A new configuration error.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}
