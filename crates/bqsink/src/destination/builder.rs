//! [`DestinationBuilder`]: the settings of a destination, and `build`, which checks them,
//! connects, creates the dataset and table when missing (and allowed) and starts the sink.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bqsink_core::{
    ConfigError, CreateDisposition, DestinationConfig, PartitionType, Schema, TableRef, WriteDisposition, WriteMode,
};
use bqsink_engine::breaker::{CircuitBreaker, CircuitBreakerConfig};
use bqsink_engine::limiter::{RateLimitConfig, RateLimiters};
use bqsink_engine::metrics::Metrics;
use bqsink_engine::sink::Shared;
use bqsink_engine::{BatchLimits, DeadLetterQueue, EncoderPool, NdjsonFile, RetryPolicy, TableSink};
use bqsink_transport::{Auth, Endpoints, RestClient, RowDescriptor, WriteClient};
use tokio::sync::Mutex;
use tracing::info;

use super::table::{create_staging, table_spec};
use super::write::batch_timer;
use super::{Destination, Inner};
use crate::connect::{auto_table_management_from_env, resolve_auth};
use crate::resilience;
use crate::Error;

/// Opens a dead-letter table, given a builder for it. Supplied by `dlq_table` with the table's
/// name (see `DestinationBuilder::dead_letter_table` there): the table queue writes through a
/// destination of its own, so the builder does not call into it.
pub(crate) type OpenDeadLetterTable = fn(DestinationBuilder) -> Result<Arc<dyn DeadLetterQueue>, Error>;

/// A dead-letter table of the destination's dataset, by name, and how to open it.
pub(crate) struct DeadLetterTable {
    pub(crate) table_id: String,
    pub(crate) open: OpenDeadLetterTable,
}

impl std::fmt::Debug for DeadLetterTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.table_id.fmt(f)
    }
}

/// Builds a [`Destination`].
///
/// Retries, deadlines, request sizes, the circuit breaker and the rate limits come from the
/// configuration's properties (`retry_max_attempts`, `retry_time_limit_ms`, `request_timeout_ms`,
/// `max_request_bytes`, `breaker_*`, `rate_limit_*`, …; see [`DestinationConfig`]). A builder
/// method that sets one of these policies as a whole — [`retry_policy`](Self::retry_policy),
/// [`max_batch_bytes`](Self::max_batch_bytes), [`circuit_breaker`](Self::circuit_breaker),
/// [`rate_limit`](Self::rate_limit), [`table_rate_limit`](Self::table_rate_limit) — wins over the
/// corresponding properties, whatever the order of the calls; the configuration still validates
/// them.
#[derive(Debug, Default)]
pub struct DestinationBuilder {
    config: DestinationConfig,
    schema: Option<Schema>,
    endpoints: Option<Endpoints>,
    auth: Option<Auth>,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    dlq_path: Option<PathBuf>,
    /// Set by `dead_letter_table`, which lives next to the table queue in `dlq_table`.
    dlq_table: Option<DeadLetterTable>,
    /// Set by `retry_policy`; wins over the configuration's `retry_*` and `request_timeout_ms`.
    retry: Option<RetryPolicy>,
    /// Set by `max_batch_bytes`; wins over the configuration's `max_request_bytes`.
    max_batch_bytes: Option<usize>,
    /// Set by `circuit_breaker`; wins over the configuration's `breaker_*`.
    breaker: Option<CircuitBreakerConfig>,
    /// Set by `rate_limit`; wins over the configuration's `rate_limit_*`.
    rate_limit: Option<RateLimitConfig>,
    /// Set by `table_rate_limit`; wins over the configuration's `table_rate_limit_*`.
    table_rate_limit: Option<RateLimitConfig>,
}

/// The engine's policies for a destination: its configuration's, or what a builder method set.
#[derive(Debug)]
struct Policies {
    retry: RetryPolicy,
    limits: BatchLimits,
    breaker: CircuitBreakerConfig,
    rate_limit: RateLimitConfig,
    table_rate_limit: Option<RateLimitConfig>,
}

impl DestinationBuilder {
    /// A builder starting from a configuration.
    pub fn from_config(config: DestinationConfig) -> Self {
        Self { config, ..Self::default() }
    }
    /// Google Cloud project.
    pub fn project_id(mut self, v: impl Into<String>) -> Self {
        self.config.project_id = v.into();
        self
    }
    /// Dataset.
    pub fn dataset_id(mut self, v: impl Into<String>) -> Self {
        self.config.dataset_id = v.into();
        self
    }
    /// Table.
    pub fn table_id(mut self, v: impl Into<String>) -> Self {
        self.config.table_id = v.into();
        self
    }
    /// The schema to create the table with when it does not exist.
    pub fn schema(mut self, v: Schema) -> Self {
        self.schema = Some(v);
        self
    }
    /// Endpoints (default: the emulator named by `BIGQUERY_EMULATOR_HOST` /
    /// `BIGQUERY_STORAGE_EMULATOR_HOST`, else Google).
    pub fn endpoints(mut self, v: Endpoints) -> Self {
        self.endpoints = Some(v);
        self
    }
    /// A service-account key file (default: discovered credentials).
    pub fn credentials_path(mut self, v: impl Into<PathBuf>) -> Self {
        self.config.credentials_path = Some(v.into());
        self
    }
    /// Explicit credentials.
    pub fn auth(mut self, v: Auth) -> Self {
        self.auth = Some(v);
        self
    }
    /// Location of a dataset created by bqsink (`US`, `EU`, a region).
    pub fn location(mut self, v: impl Into<String>) -> Self {
        self.config.location = Some(v.into());
        self
    }
    /// Whether a missing table is created.
    pub fn create_disposition(mut self, v: CreateDisposition) -> Self {
        self.config.create_disposition = v;
        self
    }
    /// What happens to rows already in the table.
    pub fn write_disposition(mut self, v: WriteDisposition) -> Self {
        self.config.write_disposition = v;
        self
    }
    /// The write mode.
    pub fn write_mode(mut self, v: WriteMode) -> Self {
        self.config.write_mode = Some(v);
        self
    }
    /// Partition a created table on this TIMESTAMP, DATE or DATETIME column.
    pub fn partition_field(mut self, v: impl Into<String>) -> Self {
        self.config.partition_field = Some(v.into());
        self
    }
    /// Partition granularity (default DAY).
    pub fn partition_type(mut self, v: PartitionType) -> Self {
        self.config.partition_type = v;
        self
    }
    /// Whether queries of a created, partitioned table must filter on the partition column.
    pub fn require_partition_filter(mut self, v: bool) -> Self {
        self.config.require_partition_filter = v;
        self
    }
    /// Cluster a created table on up to four columns.
    pub fn clustering_fields(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.clustering_fields = v.into_iter().map(Into::into).collect();
        self
    }
    /// Rows per AppendRows request.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.config.batch_size = rows;
        self
    }
    /// Longest a partial batch waits before it is sent.
    pub fn batch_timeout(mut self, timeout: Duration) -> Self {
        self.config.batch_timeout_ms = timeout.as_millis().max(1) as u64;
        self
    }
    /// Bytes of rows per request (capped below BigQuery's 20 MB request limit); wins over the
    /// configuration's `max_request_bytes`.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = Some(bytes);
        self
    }
    /// Requests in flight per connection.
    pub fn max_concurrent_batches(mut self, n: usize) -> Self {
        self.config.max_concurrent_batches = n;
        self
    }
    /// Retry policy for temporary failures; wins over the configuration's `retry_max_attempts`,
    /// `retry_initial_backoff_ms`, `retry_max_backoff_ms`, `retry_time_limit_ms` and
    /// `request_timeout_ms`.
    pub fn retry_policy(mut self, v: RetryPolicy) -> Self {
        self.retry = Some(v);
        self
    }
    /// Circuit breaker settings (default: opens after 5 straight or 50% failures, cools down
    /// 10 s to 10 min; writes wait while it is open); wins over the configuration's `breaker_*`.
    pub fn circuit_breaker(mut self, v: CircuitBreakerConfig) -> Self {
        self.breaker = Some(v);
        self
    }
    /// Rows/s and bytes/s for the destination (default unlimited); wins over the configuration's
    /// `rate_limit_rows_per_second` and `rate_limit_bytes_per_second`.
    pub fn rate_limit(mut self, v: RateLimitConfig) -> Self {
        self.rate_limit = Some(v);
        self
    }
    /// Rows/s and bytes/s for each table, on top of the destination's; wins over the
    /// configuration's `table_rate_limit_rows_per_second` and `table_rate_limit_bytes_per_second`.
    pub fn table_rate_limit(mut self, v: RateLimitConfig) -> Self {
        self.table_rate_limit = Some(v);
        self
    }
    /// Threads encoding rows for `write_batch`, `write_stream` and the blocking writer.
    pub fn worker_count(mut self, n: usize) -> Self {
        self.config.worker_count = n;
        self
    }
    /// Send rows that cannot be written to this dead-letter queue instead of returning them.
    pub fn dead_letter_queue(mut self, q: Arc<dyn DeadLetterQueue>) -> Self {
        self.dlq = Some(q);
        self
    }
    /// Send rows that cannot be written to a dead-letter table (for `dead_letter_table`).
    pub(crate) fn with_dead_letter_table(mut self, table: DeadLetterTable) -> Self {
        self.dlq_table = Some(table);
        self
    }
    /// Dead letters appended to a newline-delimited JSON file (original record, reason, table,
    /// time).
    pub fn dead_letter_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.dlq_path = Some(path.into());
        self
    }

    /// The configuration as it stands.
    pub fn config(&self) -> &DestinationConfig {
        &self.config
    }

    /// The policies in effect: each from the configuration unless a builder method set it.
    fn policies(&self) -> Policies {
        let c = &self.config;
        let mut limits = resilience::batch_limits(c);
        if let Some(b) = self.max_batch_bytes {
            limits = limits.with_max_bytes(b);
        }
        Policies {
            retry: self.retry.clone().unwrap_or_else(|| resilience::retry_policy(c)),
            limits,
            breaker: self.breaker.clone().unwrap_or_else(|| resilience::breaker_config(c)),
            rate_limit: self.rate_limit.unwrap_or_else(|| resilience::rate_limit(c)),
            table_rate_limit: self.table_rate_limit.or_else(|| resilience::table_rate_limit(c)),
        }
    }

    /// Checks the settings, connects, creates the dataset and table when missing (and allowed),
    /// and returns a destination ready to write.
    pub async fn build(self) -> Result<Destination, Error> {
        self.config.validate()?;
        let policies = self.policies();
        let config = self.config;
        if config.table_id.is_empty() {
            return Err(ConfigError::new("table_id", "is required").into());
        }
        let mode = config.effective_write_mode();
        let truncate = config.write_disposition == WriteDisposition::WriteTruncate;
        if truncate && mode != WriteMode::Batch {
            return Err(ConfigError::new(
                "write_disposition",
                format!(
                    "WRITE_TRUNCATE replaces the table's rows in one step, which only the batch write mode can do \
                     (the {mode} mode makes rows visible as they arrive); use write_mode batch, or WRITE_APPEND"
                ),
            )
            .into());
        }
        let table = TableRef::new(&config.project_id, &config.dataset_id, &config.table_id)?;
        if let Some(s) = &self.schema {
            s.validate()?;
        }
        let spec = self.schema.as_ref().map(|s| table_spec(&config, s)).transpose()?;
        let endpoints = self.endpoints.clone().unwrap_or_else(Endpoints::from_env);
        let auth = match &self.auth {
            Some(a) => a.clone(),
            None => resolve_auth(&endpoints, config.credentials_path.as_deref()).await?,
        };
        let rest = RestClient::new(&endpoints, auth.clone())?;
        let schema = match rest.get_table(&table).await? {
            Some(info) => {
                if config.write_disposition == WriteDisposition::WriteEmpty && info.num_rows.unwrap_or(0) > 0 {
                    return Err(Error::TableNotEmpty { table, rows: info.num_rows.unwrap_or(0) });
                }
                info.schema
            }
            None => {
                if config.create_disposition == CreateDisposition::CreateNever {
                    return Err(Error::TableNotFound {
                        table,
                        hint: "create it first, or use create_disposition CREATE_IF_NEEDED with a schema",
                    });
                }
                if !config.auto_detect_schema || !auto_table_management_from_env()? {
                    return Err(Error::TableNotFound {
                        table,
                        hint: "auto table management is off (BIGQUERY_AUTO_TABLE_MANAGEMENT=false or \
                               auto_detect_schema false), so bqsink sends no DDL: create it first",
                    });
                }
                let Some(spec) = spec else {
                    return Err(Error::TableNotFound { table, hint: "give a schema to create it with" });
                };
                if !rest.dataset_exists(&table.project, &table.dataset).await? {
                    rest.create_dataset(&table.project, &table.dataset, config.location.as_deref()).await?;
                    info!(project = %table.project, dataset = %table.dataset, "created dataset");
                }
                if rest.create_table(&table, &spec).await? {
                    info!(%table, "created table");
                }
                // Read back what BigQuery stored: its schema is the one rows must match.
                rest.get_table(&table).await?.map(|i| i.schema).unwrap_or(spec.schema)
            }
        };
        let staging = if truncate { Some(create_staging(&rest, &table).await?) } else { None };
        let descriptor = RowDescriptor::new(&schema)?;
        let client = WriteClient::connect(&endpoints, auth.clone()).await?;
        let dlq =
            match (self.dlq, self.dlq_path, self.dlq_table) {
                (Some(q), _, _) => Some(q),
                (None, Some(path), _) => Some(Arc::new(NdjsonFile::open(&path).map_err(|e| {
                    Error::DeadLetter(format!("cannot open the dead-letter file {}: {e}", path.display()))
                })?) as Arc<dyn DeadLetterQueue>),
                (None, None, Some(DeadLetterTable { table_id: name, open })) => {
                    let mut b = DestinationBuilder::default()
                        .project_id(&table.project)
                        .dataset_id(&table.dataset)
                        .table_id(name)
                        .endpoints(endpoints.clone())
                        .auth(auth);
                    if let Some(l) = &config.location {
                        b = b.location(l);
                    }
                    let q = tokio::task::spawn_blocking(move || open(b))
                        .await
                        .map_err(|e| Error::DeadLetter(format!("cannot open the dead-letter table: {e}")))??;
                    Some(q)
                }
                (None, None, None) => None,
            };
        let shared = Shared {
            limiters: Arc::new(RateLimiters::new(policies.rate_limit, policies.table_rate_limit)),
            breaker: CircuitBreaker::new(policies.breaker)
                .map_err(|e| ConfigError::new("circuit_breaker", e.to_string()))?,
            metrics: Arc::new(Metrics::new(mode == WriteMode::Streaming)),
            abort: Default::default(),
        };
        let sink = TableSink::new(
            client,
            staging.clone().unwrap_or_else(|| table.clone()),
            descriptor,
            policies.limits,
            policies.retry,
        )
        .with_mode(mode)
        .with_dead_letters(dlq.clone())
        .with_shared(shared.clone());
        let timeout = Duration::from_millis(config.batch_timeout_ms);
        let encoders = EncoderPool::new(config.worker_count)
            .map_err(|e| Error::DeadLetter(format!("cannot start the encoding threads: {e}")))?;
        let inner = Arc::new(Inner {
            config,
            table,
            schema: std::sync::RwLock::new(schema),
            rest,
            sink: Mutex::new(sink),
            encoders,
            staging,
            shared,
            dlq,
            deferred: std::sync::Mutex::new(None),
            rows_read: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            rows_dead_lettered: AtomicU64::new(0),
        });
        let ticker = tokio::spawn(batch_timer(Arc::downgrade(&inner), timeout));
        Ok(Destination { inner, ticker: Some(ticker) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let b = Destination::builder();
        assert_eq!(b.config(), &DestinationConfig::default());
        assert_eq!(b.config().effective_write_mode(), WriteMode::Streaming);
    }

    #[test]
    fn setters() {
        let b = Destination::builder()
            .project_id("p-123456")
            .dataset_id("d")
            .table_id("t")
            .batch_size(7)
            .batch_timeout(Duration::from_millis(250))
            .max_concurrent_batches(3)
            .write_mode(WriteMode::ExactlyOnce)
            .write_disposition(WriteDisposition::WriteEmpty)
            .require_partition_filter(true)
            .partition_field("ts")
            .location("EU");
        let c = b.config();
        assert_eq!((c.batch_size, c.batch_timeout_ms, c.max_concurrent_batches), (7, 250, 3));
        assert_eq!(c.effective_write_mode(), WriteMode::ExactlyOnce);
        assert_eq!(c.location.as_deref(), Some("EU"));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn the_configuration_becomes_the_policies() {
        let mut c = DestinationConfig::new("p-123456", "d", "t");
        c.retry_max_attempts = 4;
        c.retry_time_limit_ms = 1_500;
        c.request_timeout_ms = 500;
        c.max_request_bytes = 15_000_000;
        c.max_inflight_bytes = 40_000_000;
        c.breaker_failure_threshold = 3;
        c.breaker_cool_down_ms = 250;
        c.breaker_when_open = bqsink_core::BreakerWhenOpen::FailFast;
        c.rate_limit_rows_per_second = 2_000;
        c.table_rate_limit_bytes_per_second = 1_000_000;
        let p = DestinationBuilder::from_config(c).policies();
        assert_eq!(p.retry.max_attempts, 4);
        assert_eq!(p.retry.max_elapsed, Duration::from_millis(1_500));
        assert_eq!(p.retry.request_timeout, Duration::from_millis(500));
        assert_eq!((p.limits.max_bytes, p.limits.max_inflight_bytes), (15_000_000, 40_000_000));
        assert_eq!((p.breaker.failure_threshold, p.breaker.cool_down), (3, Duration::from_millis(250)));
        assert_eq!(p.breaker.when_open, bqsink_engine::breaker::WhenOpen::FailFast);
        assert_eq!(p.rate_limit.rows_per_second.map(|n| n.get()), Some(2_000));
        let table = p.table_rate_limit.expect("a per-table limit");
        assert_eq!((table.rows_per_second, table.bytes_per_second.map(|n| n.get())), (None, Some(1_000_000)));

        // Unset, every policy is the engine's default.
        let p = Destination::builder().policies();
        assert_eq!(p.retry, RetryPolicy::default());
        assert_eq!(
            p.limits,
            BatchLimits::default()
                .with_max_rows(DestinationConfig::default().batch_size)
                .with_max_inflight(DestinationConfig::default().max_concurrent_batches)
        );
        assert_eq!(p.breaker, CircuitBreakerConfig::default());
        assert!(p.rate_limit.is_unlimited() && p.table_rate_limit.is_none());
    }

    #[test]
    fn builder_methods_win_over_the_configuration() {
        let mut c = DestinationConfig::new("p-123456", "d", "t");
        c.retry_max_attempts = 4;
        c.max_request_bytes = 15_000_000;
        c.breaker_failure_threshold = 3;
        c.rate_limit_rows_per_second = 2_000;
        c.table_rate_limit_rows_per_second = 100;
        let retry = RetryPolicy::none().with_request_timeout(Duration::from_secs(7));
        let p = DestinationBuilder::from_config(c)
            .retry_policy(retry.clone())
            .max_batch_bytes(1_000_000)
            .circuit_breaker(CircuitBreakerConfig::default())
            .rate_limit(RateLimitConfig::unlimited().with_bytes_per_second(10))
            .table_rate_limit(RateLimitConfig::unlimited())
            .policies();
        assert_eq!(p.retry, retry);
        assert_eq!(p.limits.max_bytes, 1_000_000);
        assert_eq!(p.breaker.failure_threshold, CircuitBreakerConfig::default().failure_threshold);
        assert_eq!((p.rate_limit.rows_per_second, p.rate_limit.bytes_per_second.map(|n| n.get())), (None, Some(10)));
        assert_eq!(p.table_rate_limit, Some(RateLimitConfig::unlimited()));
    }

    #[tokio::test]
    async fn bad_resilience_settings_fail_before_any_connection() {
        let mut c = DestinationConfig::new("p-123456", "d", "t");
        c.max_request_bytes = 25_000_000;
        let err = DestinationBuilder::from_config(c).build().await;
        assert!(matches!(err, Err(Error::Config(ref e)) if e.key == "max_request_bytes"), "{err:?}");
    }

    #[tokio::test]
    async fn bad_settings_fail_before_any_connection() {
        let err =
            Destination::builder().project_id("p-123456").dataset_id("d").table_id("t").batch_size(0).build().await;
        assert!(matches!(err, Err(Error::Config(ref e)) if e.key == "batch_size"), "{err:?}");
        let err = Destination::builder().dataset_id("d").table_id("t").build().await;
        assert!(matches!(err, Err(Error::Config(ref e)) if e.key == "project_id"), "{err:?}");
    }
}
