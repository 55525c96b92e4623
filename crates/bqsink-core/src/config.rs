//! The destination's configuration, with the property names of a config file or environment.
//!
//! Every default is a named constant with the reason for it. [`DestinationConfig::validate`]
//! returns the first problem as a [`ConfigError`] naming the property and what is accepted.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::table::{
    validate_dataset_id, validate_project_id, validate_table_id, CreateDisposition, PartitionType, WriteDisposition,
    WriteMode, MAX_CLUSTERING_FIELDS,
};

/// Rows per AppendRows request: large enough to amortise a request, small enough that a
/// batch of typical events (≤ 1 KB) stays far below the 10 MB limit.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;
/// Longest a row waits in a partial batch before it is sent.
pub const DEFAULT_BATCH_TIMEOUT_MS: u64 = 1_000;
/// Requests awaiting acknowledgement per connection; bounds memory and lets the pipeline
/// hide round-trip latency.
pub const DEFAULT_MAX_CONCURRENT_BATCHES: usize = 10;
/// Capacity of the ingest channel (rows) between callers and the workers.
pub const DEFAULT_STREAMING_BUFFER: usize = 10_000;
/// Encoding workers when the machine's core count cannot be read.
pub const DEFAULT_WORKER_COUNT: usize = 4;

/// Default encoding workers: one per available core (transcoding is CPU-bound).
pub fn default_worker_count() -> usize {
    std::thread::available_parallelism().map_or(DEFAULT_WORKER_COUNT, |n| n.get().min(MAX_WORKER_COUNT))
}
/// Largest accepted `batch_size`; bigger batches are cut by bytes anyway.
pub const MAX_BATCH_SIZE: usize = 1_000_000;
/// Largest accepted `worker_count`.
pub const MAX_WORKER_COUNT: usize = 256;
/// Largest accepted `batch_timeout_ms` (one hour).
pub const MAX_BATCH_TIMEOUT_MS: u64 = 3_600_000;

/// How bqsink writes into one BigQuery table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DestinationConfig {
    /// Google Cloud project (required).
    pub project_id: String,
    /// Dataset (required; created when missing and `create_disposition` allows).
    pub dataset_id: String,
    /// Table (required for single-table destinations).
    pub table_id: String,
    /// Service-account key file; default: `GOOGLE_APPLICATION_CREDENTIALS`, Application
    /// Default Credentials, or the metadata server.
    pub credentials_path: Option<PathBuf>,
    /// Location of a dataset bqsink creates (`US`, `EU`, a region); default BigQuery's.
    pub location: Option<String>,
    /// Rows per request.
    pub batch_size: usize,
    /// Longest a partial batch waits, in milliseconds.
    pub batch_timeout_ms: u64,
    /// Requests in flight per connection.
    pub max_concurrent_batches: usize,
    /// Capacity of the ingest channel, in rows.
    pub streaming_buffer: usize,
    /// Encoding workers.
    pub worker_count: usize,
    /// `false` selects the Batch write mode unless `write_mode` says otherwise.
    pub enable_streaming: bool,
    /// Use the table's schema (and, when creating, one inferred from the rows).
    pub auto_detect_schema: bool,
    /// Whether a missing table is created.
    pub create_disposition: CreateDisposition,
    /// What happens to rows already in the table.
    pub write_disposition: WriteDisposition,
    /// Column to partition a created table on (TIMESTAMP, DATE or DATETIME).
    pub partition_field: Option<String>,
    /// Partition granularity.
    pub partition_type: PartitionType,
    /// Whether queries of a created, partitioned table must filter on the partition column.
    pub require_partition_filter: bool,
    /// Columns to cluster a created table on (at most four).
    pub clustering_fields: Vec<String>,
    /// The write mode; default from `enable_streaming`.
    pub write_mode: Option<WriteMode>,
}

impl Default for DestinationConfig {
    fn default() -> Self {
        Self {
            project_id: String::new(),
            dataset_id: String::new(),
            table_id: String::new(),
            credentials_path: None,
            location: None,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
            max_concurrent_batches: DEFAULT_MAX_CONCURRENT_BATCHES,
            streaming_buffer: DEFAULT_STREAMING_BUFFER,
            worker_count: default_worker_count(),
            enable_streaming: true,
            auto_detect_schema: true,
            create_disposition: CreateDisposition::default(),
            write_disposition: WriteDisposition::default(),
            partition_field: None,
            partition_type: PartitionType::default(),
            require_partition_filter: false,
            clustering_fields: Vec::new(),
            write_mode: None,
        }
    }
}

impl DestinationConfig {
    /// A configuration for one table with every other property at its default.
    pub fn new(project_id: impl Into<String>, dataset_id: impl Into<String>, table_id: impl Into<String>) -> Self {
        Self {
            project_id: project_id.into(),
            dataset_id: dataset_id.into(),
            table_id: table_id.into(),
            ..Self::default()
        }
    }

    /// Reads a configuration from JSON text (unknown properties are an error).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::new("config", e.to_string()))
    }

    /// The write mode in effect: `write_mode`, else Streaming or (with `enable_streaming: false`) Batch.
    pub fn effective_write_mode(&self) -> WriteMode {
        self.write_mode.unwrap_or(if self.enable_streaming { WriteMode::Streaming } else { WriteMode::Batch })
    }

    /// Checks every property; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.project_id.is_empty() {
            return Err(ConfigError::new("project_id", "is required (or set BIGQUERY_PROJECT_ID)"));
        }
        validate_project_id(&self.project_id)?;
        if self.dataset_id.is_empty() {
            return Err(ConfigError::new("dataset_id", "is required (or set BIGQUERY_DATASET)"));
        }
        validate_dataset_id(&self.dataset_id)?;
        if !self.table_id.is_empty() {
            validate_table_id(&self.table_id)?;
        }
        range("batch_size", self.batch_size as u64, 1, MAX_BATCH_SIZE as u64)?;
        range("batch_timeout_ms", self.batch_timeout_ms, 1, MAX_BATCH_TIMEOUT_MS)?;
        range("max_concurrent_batches", self.max_concurrent_batches as u64, 1, 1_000)?;
        range("streaming_buffer", self.streaming_buffer as u64, 1, 10_000_000)?;
        range("worker_count", self.worker_count as u64, 1, MAX_WORKER_COUNT as u64)?;
        if self.clustering_fields.len() > MAX_CLUSTERING_FIELDS {
            return Err(ConfigError::new(
                "clustering_fields",
                format!(
                    "{} columns given; BigQuery clusters on at most {MAX_CLUSTERING_FIELDS}",
                    self.clustering_fields.len()
                ),
            ));
        }
        if self.clustering_fields.iter().any(String::is_empty) {
            return Err(ConfigError::new("clustering_fields", "column names cannot be empty"));
        }
        if self.partition_field.as_deref() == Some("") {
            return Err(ConfigError::new("partition_field", "cannot be empty; leave it out for no partitioning"));
        }
        if self.require_partition_filter && self.partition_field.is_none() {
            return Err(ConfigError::new("require_partition_filter", "needs partition_field"));
        }
        if self.write_disposition == WriteDisposition::WriteTruncate && self.effective_write_mode() != WriteMode::Batch
        {
            return Err(ConfigError::new(
                "write_disposition",
                "WRITE_TRUNCATE replaces the table in one commit, so it needs write_mode batch (or enable_streaming: false)",
            ));
        }
        if let Some(loc) = &self.location {
            if loc.trim().is_empty() {
                return Err(ConfigError::new("location", "cannot be empty; leave it out for BigQuery's default"));
            }
        }
        Ok(())
    }
}

fn range(key: &'static str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        Err(ConfigError::new(key, format!("{v} is out of range {min}..={max}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = DestinationConfig::new("my-project", "analytics", "events");
        assert_eq!(c.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(c.batch_timeout_ms, DEFAULT_BATCH_TIMEOUT_MS);
        assert_eq!(c.worker_count, default_worker_count());
        assert!(c.enable_streaming && c.auto_detect_schema);
        assert_eq!(c.effective_write_mode(), WriteMode::Streaming);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn reads_property_names_and_refuses_unknown_ones() {
        let c = DestinationConfig::from_json(
            r#"{"project_id":"p-1234","dataset_id":"d","table_id":"t","batch_size":500,"enable_streaming":false,
                "create_disposition":"CREATE_NEVER","write_disposition":"WRITE_TRUNCATE","partition_field":"at",
                "partition_type":"HOUR","clustering_fields":["a"],"write_mode":null}"#,
        )
        .expect("valid config");
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.effective_write_mode(), WriteMode::Batch);
        assert_eq!(c.partition_type, PartitionType::Hour);
        assert_eq!(c.validate(), Ok(()));
        let err = DestinationConfig::from_json(r#"{"batch_sise": 5}"#).expect_err("unknown key");
        assert!(err.to_string().contains("batch_sise"), "{err}");
    }

    #[test]
    fn each_bad_value_is_a_clear_error() {
        let base = DestinationConfig::new("my-project", "analytics", "events");
        let check = |f: &dyn Fn(&mut DestinationConfig), key: &str| {
            let mut c = base.clone();
            f(&mut c);
            let e = c.validate().expect_err(key);
            assert_eq!(e.key, key, "{e}");
        };
        check(&|c| c.project_id = String::new(), "project_id");
        check(&|c| c.project_id = "Bad_Project".into(), "project_id");
        check(&|c| c.dataset_id = "has-dash".into(), "dataset_id");
        check(&|c| c.table_id = "bad/table".into(), "table_id");
        check(&|c| c.batch_size = 0, "batch_size");
        check(&|c| c.batch_timeout_ms = 0, "batch_timeout_ms");
        check(&|c| c.max_concurrent_batches = 0, "max_concurrent_batches");
        check(&|c| c.streaming_buffer = 0, "streaming_buffer");
        check(&|c| c.worker_count = 1_000, "worker_count");
        check(&|c| c.clustering_fields = vec!["a".into(); 5], "clustering_fields");
        check(&|c| c.require_partition_filter = true, "require_partition_filter");
        check(&|c| c.write_disposition = WriteDisposition::WriteTruncate, "write_disposition");
        check(&|c| c.location = Some(" ".into()), "location");
    }
}
