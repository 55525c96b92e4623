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

/// Attempts per request, the first included: enough to ride out a few connection resets or a
/// backend restart at the default backoff, few enough that a permanent failure is reported.
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 10;
/// Largest accepted `retry_max_attempts`.
pub const MAX_RETRY_MAX_ATTEMPTS: u32 = 1_000;
/// Wait before the first retry, in milliseconds: a reset connection is usually back at once; the
/// wait doubles from here (with jitter).
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 100;
/// Longest wait between two retries, in milliseconds: caps the doubling so a long outage is
/// probed every half minute.
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 30_000;
/// Largest accepted `retry_initial_backoff_ms` and `retry_max_backoff_ms` (ten minutes).
pub const MAX_RETRY_BACKOFF_MS: u64 = 600_000;
/// Time limit for one request, retries included, in milliseconds (five minutes): long enough to
/// ride out a regional blip, short enough that a dead destination is reported. An interactive
/// load may want seconds.
pub const DEFAULT_RETRY_TIME_LIMIT_MS: u64 = 300_000;
/// Largest accepted `retry_time_limit_ms` (one day).
pub const MAX_RETRY_TIME_LIMIT_MS: u64 = 86_400_000;
/// Deadline of one AppendRows round trip, in milliseconds: a 10 MB request on a slow link takes
/// seconds, a hung server forever. A request without an answer by then is retried on a new
/// connection.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Largest accepted `request_timeout_ms` (one hour).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;

/// BigQuery's documented limit on one AppendRows request (20 MB). The largest accepted
/// `max_request_bytes`; the request's header (stream name, writer schema) is taken out of it.
pub const MAX_REQUEST_BYTES: usize = 20_000_000;
/// Bytes of encoded rows per AppendRows request: 9.5 MB keeps a request, header included, under
/// 10 MiB, which every server accepts — the local emulator bqemulator refuses requests over
/// 10 MiB, while BigQuery takes up to [`MAX_REQUEST_BYTES`].
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 9_500_000;
/// Smallest accepted `max_request_bytes`: smaller requests spend more on headers and round trips
/// than they carry (and a row larger than a request is refused).
pub const MIN_REQUEST_BYTES: usize = 1_024;
/// Bytes of requests awaiting acknowledgement per sink (32 MiB): a few full requests, so memory
/// stays bounded whatever the row size while the pipeline hides round-trip latency.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Largest accepted `max_inflight_bytes` (64 GiB; a guard against a unit mistake).
pub const MAX_INFLIGHT_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// Consecutive failed requests that open the circuit breaker: a handful, so one bad request or a
/// single connection reset (both retried underneath) never stops the pipeline.
pub const DEFAULT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// Percentage of failures among the recent `breaker_window` requests that opens the breaker: half
/// the requests failing is an outage even when successes interleave.
pub const DEFAULT_BREAKER_FAILURE_RATE_PERCENT: u32 = 50;
/// Recent requests the failure rate is computed over.
pub const DEFAULT_BREAKER_WINDOW: u32 = 20;
/// Largest accepted `breaker_window` (the window is kept in memory, one entry per request).
pub const MAX_BREAKER_WINDOW: u32 = 10_000;
/// Requests in the window before the failure rate applies, so a cold start with one early failure
/// does not read as 100 %.
pub const DEFAULT_BREAKER_MIN_CALLS: u32 = 10;
/// First open period of the breaker, in milliseconds: long enough for a backend restart or a
/// connection drain to pass. It doubles each time the probe after it fails.
pub const DEFAULT_BREAKER_COOL_DOWN_MS: u64 = 10_000;
/// Longest open period, in milliseconds (ten minutes): the doubling stops here, so the breaker
/// probes at least that often however long the outage lasts.
pub const DEFAULT_BREAKER_MAX_COOL_DOWN_MS: u64 = 600_000;
/// Open period after `RESOURCE_EXHAUSTED`, in milliseconds: BigQuery's quotas refill per ten
/// seconds or per minute.
pub const DEFAULT_BREAKER_QUOTA_COOL_DOWN_MS: u64 = 10_000;
/// Largest accepted breaker cool-down (one day).
pub const MAX_BREAKER_COOL_DOWN_MS: u64 = 86_400_000;

/// What writes do while the circuit breaker is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerWhenOpen {
    /// Wait until the cool-down is over (backpressure; the default: nothing is refused).
    #[default]
    Wait,
    /// Refuse new rows at once, saying how long to wait; rows already accepted are still retried.
    FailFast,
}

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
    /// Attempts per request, the first included (`1`: never retry).
    pub retry_max_attempts: u32,
    /// Wait before the first retry, in milliseconds; doubles each retry, with jitter.
    pub retry_initial_backoff_ms: u64,
    /// Longest wait between two retries, in milliseconds.
    pub retry_max_backoff_ms: u64,
    /// Give up on a request this long after its first attempt, in milliseconds.
    pub retry_time_limit_ms: u64,
    /// Deadline of one AppendRows round trip, in milliseconds.
    pub request_timeout_ms: u64,
    /// Bytes of requests awaiting acknowledgement before writes wait.
    pub max_inflight_bytes: usize,
    /// Bytes of encoded rows per AppendRows request (at most 20 MB, BigQuery's limit; a row
    /// larger than this is refused).
    pub max_request_bytes: usize,
    /// Consecutive failed requests that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// Percentage (1–100) of failed requests among the last `breaker_window` that opens it.
    pub breaker_failure_rate_percent: u32,
    /// Recent requests the failure rate is computed over.
    pub breaker_window: u32,
    /// Requests in the window before the failure rate applies.
    pub breaker_min_calls: u32,
    /// First open period, in milliseconds; doubles after each failed probe.
    pub breaker_cool_down_ms: u64,
    /// Longest open period, in milliseconds.
    pub breaker_max_cool_down_ms: u64,
    /// Open period after `RESOURCE_EXHAUSTED`, in milliseconds.
    pub breaker_quota_cool_down_ms: u64,
    /// What writes do while the breaker is open: `wait` or `fail_fast`.
    pub breaker_when_open: BreakerWhenOpen,
    /// Rows per second for the destination (all its tables together); `0`: unlimited.
    pub rate_limit_rows_per_second: u32,
    /// Bytes of encoded rows per second for the destination; `0`: unlimited.
    pub rate_limit_bytes_per_second: u32,
    /// Rows per second for each table, on top of the destination's limit; `0`: unlimited.
    pub table_rate_limit_rows_per_second: u32,
    /// Bytes of encoded rows per second for each table; `0`: unlimited.
    pub table_rate_limit_bytes_per_second: u32,
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
            retry_max_attempts: DEFAULT_RETRY_MAX_ATTEMPTS,
            retry_initial_backoff_ms: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            retry_max_backoff_ms: DEFAULT_RETRY_MAX_BACKOFF_MS,
            retry_time_limit_ms: DEFAULT_RETRY_TIME_LIMIT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            breaker_failure_threshold: DEFAULT_BREAKER_FAILURE_THRESHOLD,
            breaker_failure_rate_percent: DEFAULT_BREAKER_FAILURE_RATE_PERCENT,
            breaker_window: DEFAULT_BREAKER_WINDOW,
            breaker_min_calls: DEFAULT_BREAKER_MIN_CALLS,
            breaker_cool_down_ms: DEFAULT_BREAKER_COOL_DOWN_MS,
            breaker_max_cool_down_ms: DEFAULT_BREAKER_MAX_COOL_DOWN_MS,
            breaker_quota_cool_down_ms: DEFAULT_BREAKER_QUOTA_COOL_DOWN_MS,
            breaker_when_open: BreakerWhenOpen::Wait,
            rate_limit_rows_per_second: 0,
            rate_limit_bytes_per_second: 0,
            table_rate_limit_rows_per_second: 0,
            table_rate_limit_bytes_per_second: 0,
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
        self.validate_resilience()
    }

    /// Retries, deadlines, request sizes, the circuit breaker (rate limits take any value).
    fn validate_resilience(&self) -> Result<(), ConfigError> {
        range("retry_max_attempts", u64::from(self.retry_max_attempts), 1, u64::from(MAX_RETRY_MAX_ATTEMPTS))?;
        range("retry_initial_backoff_ms", self.retry_initial_backoff_ms, 1, MAX_RETRY_BACKOFF_MS)?;
        range("retry_max_backoff_ms", self.retry_max_backoff_ms, 1, MAX_RETRY_BACKOFF_MS)?;
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return Err(ConfigError::new(
                "retry_max_backoff_ms",
                format!(
                    "{} is below retry_initial_backoff_ms ({}); it must be at least that",
                    self.retry_max_backoff_ms, self.retry_initial_backoff_ms
                ),
            ));
        }
        range("retry_time_limit_ms", self.retry_time_limit_ms, 1, MAX_RETRY_TIME_LIMIT_MS)?;
        range("request_timeout_ms", self.request_timeout_ms, 1, MAX_REQUEST_TIMEOUT_MS)?;
        if self.max_request_bytes > MAX_REQUEST_BYTES {
            return Err(ConfigError::new(
                "max_request_bytes",
                format!(
                    "{} is over BigQuery's AppendRows limit; accepted: {MIN_REQUEST_BYTES}..={MAX_REQUEST_BYTES} (20 MB)",
                    self.max_request_bytes
                ),
            ));
        }
        range("max_request_bytes", self.max_request_bytes as u64, MIN_REQUEST_BYTES as u64, MAX_REQUEST_BYTES as u64)?;
        if self.max_inflight_bytes < self.max_request_bytes {
            return Err(ConfigError::new(
                "max_inflight_bytes",
                format!(
                    "{} is below max_request_bytes ({}); it must hold at least one full request",
                    self.max_inflight_bytes, self.max_request_bytes
                ),
            ));
        }
        range("max_inflight_bytes", self.max_inflight_bytes as u64, 1, MAX_INFLIGHT_BYTES)?;
        range("breaker_failure_threshold", u64::from(self.breaker_failure_threshold), 1, u64::from(u32::MAX))?;
        range("breaker_failure_rate_percent", u64::from(self.breaker_failure_rate_percent), 1, 100)?;
        range("breaker_window", u64::from(self.breaker_window), 1, u64::from(MAX_BREAKER_WINDOW))?;
        range("breaker_min_calls", u64::from(self.breaker_min_calls), 1, u64::from(self.breaker_window))?;
        range("breaker_cool_down_ms", self.breaker_cool_down_ms, 1, MAX_BREAKER_COOL_DOWN_MS)?;
        range("breaker_quota_cool_down_ms", self.breaker_quota_cool_down_ms, 1, MAX_BREAKER_COOL_DOWN_MS)?;
        let least = self.breaker_cool_down_ms.max(self.breaker_quota_cool_down_ms);
        if self.breaker_max_cool_down_ms < least {
            return Err(ConfigError::new(
                "breaker_max_cool_down_ms",
                format!(
                    "{} is below breaker_cool_down_ms or breaker_quota_cool_down_ms; it must be at least {least}",
                    self.breaker_max_cool_down_ms
                ),
            ));
        }
        range("breaker_max_cool_down_ms", self.breaker_max_cool_down_ms, 1, MAX_BREAKER_COOL_DOWN_MS)?;
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
        check(&|c| c.retry_max_attempts = 0, "retry_max_attempts");
        check(&|c| c.retry_initial_backoff_ms = 0, "retry_initial_backoff_ms");
        check(&|c| c.retry_max_backoff_ms = 50, "retry_max_backoff_ms");
        check(&|c| c.retry_time_limit_ms = 0, "retry_time_limit_ms");
        check(&|c| c.request_timeout_ms = 0, "request_timeout_ms");
        check(&|c| c.max_request_bytes = MAX_REQUEST_BYTES + 1, "max_request_bytes");
        check(&|c| c.max_request_bytes = 10, "max_request_bytes");
        check(&|c| c.max_inflight_bytes = 1_000_000, "max_inflight_bytes");
        check(&|c| c.breaker_failure_threshold = 0, "breaker_failure_threshold");
        check(&|c| c.breaker_failure_rate_percent = 101, "breaker_failure_rate_percent");
        check(&|c| c.breaker_window = 0, "breaker_window");
        check(&|c| c.breaker_min_calls = 21, "breaker_min_calls");
        check(&|c| c.breaker_cool_down_ms = 0, "breaker_cool_down_ms");
        check(&|c| c.breaker_max_cool_down_ms = 5_000, "breaker_max_cool_down_ms");
    }

    #[test]
    fn resilience_defaults_match_the_documented_constants() {
        let c = DestinationConfig::new("my-project", "analytics", "events");
        assert_eq!(c.retry_max_attempts, DEFAULT_RETRY_MAX_ATTEMPTS);
        assert_eq!((c.retry_initial_backoff_ms, c.retry_max_backoff_ms), (100, 30_000));
        assert_eq!(c.retry_time_limit_ms, 300_000);
        assert_eq!(c.request_timeout_ms, 60_000);
        assert_eq!(c.max_request_bytes, 9_500_000);
        assert_eq!(c.max_inflight_bytes, DEFAULT_MAX_INFLIGHT_BYTES);
        assert_eq!(c.breaker_when_open, BreakerWhenOpen::Wait);
        assert_eq!((c.rate_limit_rows_per_second, c.table_rate_limit_bytes_per_second), (0, 0));
    }

    #[test]
    fn reads_the_resilience_properties() {
        let c = DestinationConfig::from_json(
            r#"{"project_id":"p-1234","dataset_id":"d","retry_max_attempts":3,"retry_time_limit_ms":2000,
                "request_timeout_ms":500,"max_request_bytes":20000000,"max_inflight_bytes":40000000,
                "breaker_when_open":"fail_fast","breaker_cool_down_ms":100,"rate_limit_rows_per_second":5000,
                "table_rate_limit_bytes_per_second":1000000}"#,
        )
        .expect("valid config");
        assert_eq!((c.retry_max_attempts, c.retry_time_limit_ms, c.request_timeout_ms), (3, 2_000, 500));
        assert_eq!((c.max_request_bytes, c.max_inflight_bytes), (20_000_000, 40_000_000));
        assert_eq!(c.breaker_when_open, BreakerWhenOpen::FailFast);
        assert_eq!((c.rate_limit_rows_per_second, c.table_rate_limit_bytes_per_second), (5_000, 1_000_000));
        assert_eq!(c.validate(), Ok(()));
        let e = DestinationConfig { max_request_bytes: 20_000_001, ..c }.validate().expect_err("over 20 MB");
        assert_eq!(e.key, "max_request_bytes");
        assert!(e.message.contains("20000000"), "{e}");
        assert!(DestinationConfig::from_json(r#"{"breaker_when_open":"sometimes"}"#).is_err());
    }
}
