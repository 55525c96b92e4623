//! Table references and table-level settings (partitioning, clustering, dispositions).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::ConfigError;

/// A fully qualified table: `project.dataset.table`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    /// Google Cloud project id.
    pub project: String,
    /// Dataset id.
    pub dataset: String,
    /// Table id.
    pub table: String,
}

impl TableRef {
    /// A reference after checking each part against BigQuery's id rules.
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let r = Self { project: project.into(), dataset: dataset.into(), table: table.into() };
        validate_project_id(&r.project)?;
        validate_dataset_id(&r.dataset)?;
        validate_table_id(&r.table)?;
        Ok(r)
    }
    /// Storage Write API name of the table's default stream.
    pub fn default_stream(&self) -> String {
        format!("{}/streams/_default", self.storage_path())
    }
    /// `projects/P/datasets/D/tables/T`, the Storage Write API's parent name.
    pub fn storage_path(&self) -> String {
        format!("projects/{}/datasets/{}/tables/{}", self.project, self.dataset, self.table)
    }
    /// The same dataset, another table.
    pub fn with_table(&self, table: impl Into<String>) -> Self {
        Self { table: table.into(), ..self.clone() }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// Checks a project id: 6–30 characters of lowercase letters, digits and hyphens, optionally
/// prefixed by a domain (`example.com:my-project`).
pub fn validate_project_id(id: &str) -> Result<(), ConfigError> {
    let core = id.rsplit(':').next().unwrap_or(id);
    let ok = !core.is_empty()
        && core.len() <= 30
        && core.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && core.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "project_id",
            format!("`{id}` is not a project id (lowercase letters, digits and hyphens, starting with a letter)"),
        ))
    }
}

/// Checks a dataset id: letters, digits and underscores, at most 1024.
pub fn validate_dataset_id(id: &str) -> Result<(), ConfigError> {
    if !id.is_empty() && id.len() <= 1024 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(ConfigError::new(
            "dataset_id",
            format!("`{id}` is not a dataset id (1–1024 letters, digits or underscores)"),
        ))
    }
}

/// Checks a table id: 1–1024 bytes of letters, marks, numbers, connectors, dashes and spaces.
pub fn validate_table_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == ' ');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "table_id",
            format!("`{id}` is not a table id (letters, digits, `_`, `-` or spaces, at most 1024 bytes)"),
        ))
    }
}

/// Granularity of time partitioning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionType {
    /// One partition per hour.
    Hour,
    /// One partition per day (the default).
    #[default]
    Day,
    /// One partition per month.
    Month,
    /// One partition per year.
    Year,
}

impl std::str::FromStr for PartitionType {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HOUR" => Ok(Self::Hour),
            "DAY" => Ok(Self::Day),
            "MONTH" => Ok(Self::Month),
            "YEAR" => Ok(Self::Year),
            _ => Err(ConfigError::new("partition_type", format!("`{s}`: expected HOUR, DAY, MONTH or YEAR"))),
        }
    }
}

impl fmt::Display for PartitionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hour => "HOUR",
            Self::Day => "DAY",
            Self::Month => "MONTH",
            Self::Year => "YEAR",
        })
    }
}

/// Time partitioning of a table (`timePartitioning`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimePartitioning {
    /// Granularity.
    #[serde(rename = "type")]
    pub partition_type: PartitionType,
    /// The TIMESTAMP / DATE / DATETIME column; `None` partitions by ingestion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether queries must filter on the partition column.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_partition_filter: bool,
}

/// Clustering columns (`clustering.fields`), at most four.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clustering {
    /// Column names, in clustering order.
    pub fields: Vec<String>,
}

/// Most clustering columns BigQuery accepts.
pub const MAX_CLUSTERING_FIELDS: usize = 4;

/// Whether a missing table is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreateDisposition {
    /// Create the table when it does not exist (the default).
    #[default]
    CreateIfNeeded,
    /// Fail when the table does not exist.
    CreateNever,
}

/// What happens to rows already in the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteDisposition {
    /// Append (the default).
    #[default]
    WriteAppend,
    /// Replace the table's rows (batch mode only).
    WriteTruncate,
    /// Write only into an empty table.
    WriteEmpty,
}

/// How rows reach the table (the Storage Write API stream type used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// The `_default` stream: at-least-once, rows queryable as soon as acknowledged.
    #[default]
    Streaming,
    /// COMMITTED streams with offsets: each row exactly once, queryable when acknowledged.
    ExactlyOnce,
    /// PENDING streams committed together at close: all rows appear at once, or none.
    Batch,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Streaming => "streaming",
            Self::ExactlyOnce => "exactly_once",
            Self::Batch => "batch",
        })
    }
}

impl std::str::FromStr for WriteMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "streaming" => Ok(Self::Streaming),
            "exactly_once" => Ok(Self::ExactlyOnce),
            "batch" => Ok(Self::Batch),
            _ => Err(ConfigError::new("write_mode", format!("`{s}`: expected streaming, exactly_once or batch"))),
        }
    }
}
