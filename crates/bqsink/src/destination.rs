//! `Destination`: one BigQuery table to write rows into.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bqsink_core::{
    ConfigError, CreateDisposition, DestinationConfig, FieldType, Mode, PartitionType, Record, RowError, Schema,
    TableRef, TimePartitioning, WriteDisposition, WriteMode,
};
use bqsink_engine::breaker::{BreakerState, CircuitBreaker, CircuitBreakerConfig};
use bqsink_engine::limiter::{RateLimitConfig, RateLimiters};
use bqsink_engine::metrics::{Metrics, MetricsSnapshot};
use bqsink_engine::sink::Shared;
use bqsink_engine::{
    BatchLimits, DeadLetter, DeadLetterQueue, EncodedRows, EncoderPool, NdjsonFile, Payload, Reason, RetryPolicy,
    TableSink,
};
use bqsink_schema::Change;
use bqsink_transport::{Auth, Endpoints, RestClient, RowDescriptor, TableSpec, WriteClient};
use futures::{Stream, StreamExt};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::Error;

/// Writes rows into one BigQuery table through the Storage Write API, in the configured
/// [`WriteMode`]. Cheap to share: every method takes `&self`.
#[derive(Debug)]
pub struct Destination {
    inner: Arc<Inner>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    config: DestinationConfig,
    table: TableRef,
    schema: std::sync::RwLock<Schema>,
    rest: RestClient,
    sink: Mutex<TableSink>,
    /// Encoding threads for `write_batch`, `write_stream` and the blocking writer.
    encoders: Arc<EncoderPool>,
    /// WRITE_TRUNCATE (Batch mode): the table rows are written to, copied over `table` at
    /// close in one job.
    staging: Option<TableRef>,
    shared: Shared,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    /// An error the batch-timeout task met, reported by the next call.
    deferred: std::sync::Mutex<Option<Error>>,
    rows_read: AtomicU64,
    rows_rejected: AtomicU64,
    rows_dead_lettered: AtomicU64,
}

/// What a destination did, at `close`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Rows given to `write` and friends.
    pub rows_read: u64,
    /// Rows acknowledged by BigQuery (in Batch mode: committed).
    pub rows_written: u64,
    /// Rows sent to the dead-letter queue.
    pub rows_dead_lettered: u64,
    /// Rows refused and returned to the caller as [`Error::Row`] (no dead-letter queue set).
    pub rows_rejected: u64,
    /// AppendRows requests acknowledged.
    pub requests: u64,
    /// Bytes of those requests.
    pub bytes_written: u64,
    /// Requests resent after temporary failures.
    pub retries: u64,
    /// Rows resent after a failure whose outcome was unknown: on the default stream
    /// (at-least-once) duplicates are at most this many; with offsets, none.
    pub rows_resent_ambiguous: u64,
}

/// Error rate (failed requests / all requests) above which `health()` reports a problem.
pub const HEALTHY_ERROR_RATE: f64 = 0.1;

/// Per-row outcome of [`Destination::write_stream`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamReport {
    /// Rows taken from the stream.
    pub rows_read: u64,
    /// Rows accepted (encoded and sent; acknowledged when the call returns).
    pub rows_accepted: u64,
    /// Rows refused, with their position in the stream (also dead-lettered when a queue is set).
    pub errors: Vec<RowError>,
}

/// Builds a [`Destination`].
#[derive(Debug, Default)]
pub struct DestinationBuilder {
    config: DestinationConfig,
    schema: Option<Schema>,
    endpoints: Option<Endpoints>,
    auth: Option<Auth>,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    dlq_path: Option<PathBuf>,
    dlq_table: Option<String>,
    retry: RetryPolicy,
    max_batch_bytes: Option<usize>,
    breaker: CircuitBreakerConfig,
    rate_limit: RateLimitConfig,
    table_rate_limit: Option<RateLimitConfig>,
}

/// One check of [`Destination::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// What was checked: `connectivity`, `dataset`, `table`, `error_rate`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The result of [`Destination::health`]: each check with its own result.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The checks, in order.
    pub checks: Vec<HealthCheck>,
}

impl Health {
    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl Destination {
    /// A builder with default settings.
    pub fn builder() -> DestinationBuilder {
        DestinationBuilder::default()
    }

    /// Builds a destination from a configuration (see [`DestinationConfig`]).
    pub async fn from_config(config: DestinationConfig) -> Result<Destination, Error> {
        DestinationBuilder::from_config(config).build().await
    }

    /// The table written to.
    pub fn table(&self) -> &TableRef {
        &self.inner.table
    }

    /// The configuration in effect.
    pub fn config(&self) -> &DestinationConfig {
        &self.inner.config
    }

    /// The table schema rows are encoded with.
    pub fn schema(&self) -> Schema {
        self.inner.schema.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The REST client (datasets, tables, queries) with this destination's endpoint and credentials.
    pub fn rest(&self) -> &RestClient {
        &self.inner.rest
    }

    fn take_deferred(&self) -> Result<(), Error> {
        match self.inner.deferred.lock().ok().and_then(|mut d| d.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes one row: returns `Ok` once it is queued. A row that cannot be written goes to the
    /// dead-letter queue when one is set (and `Ok` is returned), else comes back as
    /// [`Error::Row`] naming the column. Other errors mean BigQuery could not take a batch.
    pub async fn write(&self, record: Record) -> Result<(), Error> {
        match self.write_one(record, None).await? {
            Some(e) if self.inner.dlq.is_none() => Err(Error::Row(e)),
            _ => Ok(()),
        }
    }

    /// Writes many rows; returns the errors of rows that could not be written, with their index
    /// in `records` (dead-lettered too when a queue is set). Fails as a whole only when BigQuery
    /// cannot take the rows.
    ///
    /// Rows are encoded on the `worker_count` encoding threads, one request's worth at a time,
    /// while earlier requests are sent.
    pub async fn write_batch(&self, records: impl IntoIterator<Item = Record>) -> Result<Vec<RowError>, Error> {
        let (_, rejected) = self.write_records(futures::stream::iter(records), 0).await?;
        Ok(rejected)
    }

    /// Writes every row of a stream, then flushes; reports each refused row with its position.
    /// Encoding runs on the worker threads, as in [`Destination::write_batch`].
    pub async fn write_stream(&self, records: impl Stream<Item = Record>) -> Result<StreamReport, Error> {
        let (read, errors) = self.write_records(records, 0).await?;
        self.flush().await?;
        Ok(StreamReport { rows_read: read, rows_accepted: read - errors.len() as u64, errors })
    }

    /// The parallel path: chunks of one request's worth go to the encoding workers, up to
    /// `worker_count` at a time, and are handed to the sink in input order. Returns the rows
    /// taken and the refused ones, numbered from `first_index`.
    pub(crate) async fn write_records(
        &self,
        records: impl Stream<Item = Record>,
        first_index: u64,
    ) -> Result<(u64, Vec<RowError>), Error> {
        self.take_deferred()?;
        let size = self.inner.config.batch_size.max(1);
        let depth = self.inner.encoders.workers();
        let mut chunks = std::pin::pin!(records.chunks(size));
        let mut queued = std::collections::VecDeque::new();
        let mut read = 0u64;
        let mut refused = Vec::new();
        let mut failure = None;
        while let Some(chunk) = chunks.next().await {
            let descriptor = self.inner.sink.lock().await.descriptor().clone();
            let base = first_index + read;
            read += chunk.len() as u64;
            queued.push_back((base, self.inner.encoders.submit(&descriptor, chunk).await?));
            if queued.len() >= depth {
                if let Some((base, rx)) = queued.pop_front() {
                    if let Err(e) = self.place(base, rx, &mut refused).await {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        while let Some((base, rx)) = queued.pop_front() {
            match &failure {
                None => {
                    if let Err(e) = self.place(base, rx, &mut refused).await {
                        failure = Some(e);
                    }
                }
                // Rows already taken are never dropped: after a failure they are refused with
                // the reason, like the rows of the batch that failed.
                Some(e) => {
                    let chunk = rx.await.map_err(|_| encoders_gone())?;
                    let message = format!("not sent: an earlier batch failed: {e}");
                    let rows = chunk.into_records();
                    self.inner.rows_read.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    for (i, record) in rows {
                        let row = RowError::new("", message.clone()).at_row(base + i as u64);
                        self.refuse(row.clone(), Payload::Record(record))?;
                        refused.push(row);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((read, refused)),
        }
    }

    /// Hands one encoded chunk to the sink; refused rows are dead-lettered and collected.
    async fn place(
        &self,
        base: u64,
        rx: tokio::sync::oneshot::Receiver<EncodedRows>,
        refused: &mut Vec<RowError>,
    ) -> Result<(), Error> {
        let chunk = rx.await.map_err(|_| encoders_gone())?;
        let rows = (chunk.len() + chunk.refused_len()) as u64;
        self.inner.rows_read.fetch_add(rows, Ordering::Relaxed);
        let mut sink = self.inner.sink.lock().await;
        if let Err(e) = sink.admit().await {
            drop(sink);
            // Refused before it was taken (fail fast while the breaker is open): kept with the
            // reason, and the caller hears why.
            let e = Error::from(e);
            let message = format!("not sent: {e}");
            for (i, record) in chunk.into_records() {
                let row = RowError::new("", message.clone()).at_row(base + i as u64);
                self.refuse(row.clone(), Payload::Record(record))?;
                refused.push(row);
            }
            return Err(e);
        }
        let rejected = sink.write_encoded(chunk).await;
        drop(sink);
        let rejected = rejected?;
        for (i, e, record) in rejected {
            let e = e.at_row(base + i as u64);
            self.refuse(e.clone(), Payload::Record(record))?;
            refused.push(e);
        }
        Ok(())
    }

    /// Writes one row and says what became of it: `Ok(None)` queued, `Ok(Some(e))` refused
    /// (and dead-lettered when a queue is set). `Err` only when BigQuery could not take a batch.
    pub async fn write_row(&self, record: Record, index: Option<u64>) -> Result<Option<RowError>, Error> {
        self.write_one(record, index).await
    }

    /// Like [`Destination::write`], but never waits: returns [`Error::Full`] when the in-flight
    /// bounds are reached (or another task holds the writer), so the caller can shed or buffer.
    pub async fn try_write(&self, record: Record) -> Result<(), Error> {
        self.take_deferred()?;
        let sink = self.inner.sink.try_lock().map_err(|_| Error::Full)?;
        if sink.would_wait() {
            return Err(Error::Full);
        }
        match self.write_to(sink, record, None).await? {
            Some(e) if self.inner.dlq.is_none() => Err(Error::Row(e)),
            _ => Ok(()),
        }
    }

    /// Counters, gauges and latency percentiles of this destination.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// The metrics in Prometheus text format, labelled with the table.
    pub fn metrics_prometheus(&self) -> String {
        let table = self.inner.table.to_string();
        self.metrics().to_prometheus(&[("table", table.as_str())])
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.shared.breaker.state()
    }

    /// Checks connectivity, dataset access, the table's existence and the recent error rate,
    /// each with its own result. Never fails as a whole: a failed check says why.
    pub async fn health(&self) -> Health {
        let rest = &self.inner.rest;
        let t = &self.inner.table;
        let mut checks = Vec::new();
        let dataset = rest.dataset_exists(&t.project, &t.dataset).await;
        checks.push(HealthCheck {
            name: "connectivity",
            ok: dataset.is_ok(),
            detail: match &dataset {
                Ok(_) => format!("BigQuery answered at {}", rest.base_url()),
                Err(e) => e.to_string(),
            },
        });
        checks.push(HealthCheck {
            name: "dataset",
            ok: matches!(dataset, Ok(true)),
            detail: match dataset {
                Ok(true) => format!("{}.{} is accessible", t.project, t.dataset),
                Ok(false) => format!("{}.{} does not exist", t.project, t.dataset),
                Err(e) => e.to_string(),
            },
        });
        let table = rest.get_table(t).await;
        checks.push(HealthCheck {
            name: "table",
            ok: matches!(table, Ok(Some(_))),
            detail: match table {
                Ok(Some(info)) => format!("{t} exists with {} columns", info.schema.fields.len()),
                Ok(None) => format!("{t} does not exist"),
                Err(e) => e.to_string(),
            },
        });
        let m = self.metrics();
        let attempts = m.batches_processed + m.errors_encountered;
        let rate = if attempts == 0 { 0.0 } else { m.errors_encountered as f64 / attempts as f64 };
        let breaker = self.breaker_state();
        checks.push(HealthCheck {
            name: "error_rate",
            ok: breaker == BreakerState::Closed && rate < HEALTHY_ERROR_RATE,
            detail: format!(
                "{} errors in {attempts} requests ({:.1}%), circuit breaker {}",
                m.errors_encountered,
                rate * 100.0,
                breaker.as_str()
            ),
        });
        Health { checks }
    }

    /// The shared path: `Ok(Some(e))` when the row was refused (and dead-lettered if possible).
    async fn write_one(&self, record: Record, index: Option<u64>) -> Result<Option<RowError>, Error> {
        self.take_deferred()?;
        let sink = self.inner.sink.lock().await;
        self.write_to(sink, record, index).await
    }

    /// Writes through a held sink: counts the row, and refuses it (dead letter or counted)
    /// when the encoder cannot take it.
    async fn write_to(
        &self,
        mut sink: tokio::sync::MutexGuard<'_, TableSink>,
        record: Record,
        index: Option<u64>,
    ) -> Result<Option<RowError>, Error> {
        self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
        let refused = sink.write(record).await?;
        drop(sink);
        match refused {
            None => Ok(None),
            Some((mut e, record)) => {
                if let Some(i) = index {
                    e = e.at_row(i);
                }
                self.refuse(e.clone(), Payload::Record(record))?;
                Ok(Some(e))
            }
        }
    }

    /// Records a refused row: into the dead-letter queue, or counted as returned to the caller.
    fn refuse(&self, e: RowError, payload: Payload) -> Result<(), Error> {
        match &self.inner.dlq {
            Some(q) => {
                q.push(DeadLetter::new(Reason::from_row_error(&self.inner.table, &e), payload)).map_err(|io| {
                    Error::DeadLetter(format!("cannot write to the dead-letter queue ({io}); the row was: {e}"))
                })?;
                self.inner.rows_dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.inner.rows_rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Dead-letters input that never became a record (say, a line that is not JSON), so it is
    /// counted and kept like any refused row. Without a dead-letter queue it is only counted.
    pub fn dead_letter_raw(
        &self,
        row: Option<u64>,
        text: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<(), Error> {
        self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
        let mut e = RowError::new("", message);
        e.row = row;
        self.refuse(e, Payload::Raw(text.into()))
    }

    /// Sends every queued row and waits until BigQuery acknowledged them (in Batch mode they
    /// become visible only at [`Destination::close`]).
    pub async fn flush(&self) -> Result<(), Error> {
        self.take_deferred()?;
        self.inner.sink.lock().await.flush().await?;
        flush_dead_letters(&self.inner.dlq).await?;
        Ok(())
    }

    /// Flushes, ends the stream (Batch: finalizes and commits), and reports what was written.
    pub async fn close(mut self) -> Result<Summary, Error> {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.take_deferred()?;
        let inner = &self.inner;
        let mut sink = inner.sink.lock().await;
        sink.flush().await?;
        if sink.mode() == WriteMode::Batch && inner.config.write_disposition == WriteDisposition::WriteEmpty {
            // Pending rows are invisible until the commit: the table must still be empty now.
            let rows = inner.rest.get_table(&inner.table).await?.and_then(|i| i.num_rows).unwrap_or(0);
            if rows > 0 {
                return Err(Error::TableNotEmpty { table: inner.table.clone(), rows });
            }
        }
        sink.commit().await?;
        if let Some(staging) = &inner.staging {
            // WRITE_TRUNCATE: the committed rows replace the table's in one copy job.
            inner.rest.replace_table_from(staging, &inner.table).await?;
            info!(table = %inner.table, rows = sink.stats().rows_written, "replaced the table's rows");
            if let Err(e) = inner.rest.delete_table(staging).await {
                warn!(%staging, error = %e, "could not delete the staging table; it expires by itself within a day");
            }
        }
        flush_dead_letters(&inner.dlq).await?;
        let s = sink.stats();
        // Rows BigQuery itself refused were dead-lettered by the sink, or kept for the caller.
        let (server_dead, server_kept) = if inner.dlq.is_some() { (s.rows_refused, 0) } else { (0, s.rows_refused) };
        Ok(Summary {
            rows_read: inner.rows_read.load(Ordering::Relaxed),
            rows_written: s.rows_written,
            rows_dead_lettered: inner.rows_dead_lettered.load(Ordering::Relaxed) + server_dead,
            rows_rejected: inner.rows_rejected.load(Ordering::Relaxed) + server_kept,
            requests: s.requests,
            bytes_written: s.bytes_written,
            retries: s.retries,
            rows_resent_ambiguous: s.rows_resent_ambiguous,
        })
    }

    /// Rows BigQuery refused (after they were encoded) when no dead-letter queue is set, each
    /// with the reason. Rows the encoder refuses are returned by `write` itself.
    pub async fn take_refused_rows(&self) -> Vec<(RowError, Record)> {
        self.inner.sink.lock().await.take_refused()
    }

    /// Creates the table with `schema` (and the configured partitioning and clustering) when it
    /// does not exist; `Ok(false)` when it already did.
    pub async fn create_schema(&self, schema: &Schema) -> Result<bool, Error> {
        schema.validate()?;
        let spec = table_spec(&self.inner.config, schema)?;
        let created = self.inner.rest.create_table(&self.inner.table, &spec).await?;
        if created {
            self.adopt_live_schema().await?;
        }
        Ok(created)
    }

    /// Changes the table's schema towards `schema`, making only changes BigQuery accepts (add
    /// NULLABLE / REPEATED columns, relax REQUIRED, widen numbers). Anything else is refused
    /// before a request is sent, naming each column. Returns the changes made.
    pub async fn alter_schema(&self, schema: &Schema) -> Result<Vec<Change>, Error> {
        let info = self.inner.rest.get_table(&self.inner.table).await?.ok_or_else(|| Error::TableNotFound {
            table: self.inner.table.clone(),
            hint: "create it first with create_schema",
        })?;
        let (merged, changes) = bqsink_schema::plan_alter(&info.schema, schema).map_err(Error::SchemaChangeRefused)?;
        if !changes.is_empty() {
            if changes.iter().any(|c| matches!(c, Change::Widen { .. })) {
                // Rows encoded for the old type must be stored before the type changes.
                self.inner.sink.lock().await.flush().await?;
            }
            self.inner
                .rest
                .apply_schema_change(&self.inner.table, &info.schema, &merged, &changes, info.etag.as_deref())
                .await?;
            info!(table = %self.inner.table, changes = changes.len(), "altered table schema");
            self.adopt_live_schema().await?;
        }
        Ok(changes)
    }

    /// Deletes the table; `Ok(false)` when it did not exist. Writes after this fail.
    pub async fn drop_table(&self) -> Result<bool, Error> {
        Ok(self.inner.rest.delete_table(&self.inner.table).await?)
    }

    async fn adopt_live_schema(&self) -> Result<(), Error> {
        let schema = match self.inner.rest.get_table(&self.inner.table).await? {
            Some(info) => info.schema,
            None => return Ok(()),
        };
        let descriptor = RowDescriptor::new(&schema)?;
        self.inner.sink.lock().await.set_descriptor(descriptor).await?;
        if let Ok(mut s) = self.inner.schema.write() {
            *s = schema;
        }
        Ok(())
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}

/// Flushes the dead-letter queue on a blocking thread: files sync and tables wait for acks.
pub(crate) async fn flush_dead_letters(dlq: &Option<Arc<dyn DeadLetterQueue>>) -> Result<(), Error> {
    let Some(q) = dlq.clone() else { return Ok(()) };
    tokio::task::spawn_blocking(move || q.flush())
        .await
        .map_err(|e| Error::DeadLetter(format!("cannot flush the dead-letter queue: {e}")))?
        .map_err(|e| Error::DeadLetter(format!("cannot flush the dead-letter queue: {e}")))
}

fn encoders_gone() -> Error {
    Error::Transport(bqsink_transport::TransportError::StreamClosed("the encoding workers have stopped".into()))
}

fn table_spec(config: &DestinationConfig, schema: &Schema) -> Result<TableSpec, Error> {
    let mut spec = TableSpec::new(schema.clone());
    if let Some(field) = &config.partition_field {
        let column = schema
            .field(field)
            .ok_or_else(|| ConfigError::new("partition_field", format!("`{field}` is not a column of the schema")))?;
        let ok_type = matches!(column.field_type, FieldType::Timestamp | FieldType::Date | FieldType::DateTime);
        if !ok_type || column.mode == Mode::Repeated {
            return Err(ConfigError::new(
                "partition_field",
                format!(
                    "`{field}` is {} {}; partitioning needs a TIMESTAMP, DATE or DATETIME column that is not REPEATED",
                    column.mode, column.field_type
                ),
            )
            .into());
        }
        spec = spec.with_time_partitioning(TimePartitioning {
            partition_type: config.partition_type,
            field: Some(column.name.clone()),
            require_partition_filter: config.require_partition_filter,
        });
    }
    if !config.clustering_fields.is_empty() {
        for c in &config.clustering_fields {
            let column = schema
                .field(c)
                .ok_or_else(|| ConfigError::new("clustering_fields", format!("`{c}` is not a column of the schema")))?;
            if matches!(
                column.field_type,
                FieldType::Record | FieldType::Json | FieldType::Float64 | FieldType::Geography
            ) || column.mode == Mode::Repeated
            {
                return Err(ConfigError::new(
                    "clustering_fields",
                    format!(
                        "`{c}` is {} {}; clustering needs a top-level, non-repeated column of a groupable type",
                        column.mode, column.field_type
                    ),
                )
                .into());
            }
        }
        spec = spec.with_clustering(config.clustering_fields.clone());
    }
    Ok(spec)
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
    /// Bytes of rows per request (capped below BigQuery's 10 MB request limit).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = Some(bytes);
        self
    }
    /// Requests in flight per connection.
    pub fn max_concurrent_batches(mut self, n: usize) -> Self {
        self.config.max_concurrent_batches = n;
        self
    }
    /// Retry policy for temporary failures.
    pub fn retry_policy(mut self, v: RetryPolicy) -> Self {
        self.retry = v;
        self
    }
    /// Circuit breaker settings (default: opens after 5 straight or 50% failures, cools down
    /// 10 s to 10 min; writes wait while it is open).
    pub fn circuit_breaker(mut self, v: CircuitBreakerConfig) -> Self {
        self.breaker = v;
        self
    }
    /// Rows/s and bytes/s for the destination (default unlimited).
    pub fn rate_limit(mut self, v: RateLimitConfig) -> Self {
        self.rate_limit = v;
        self
    }
    /// Rows/s and bytes/s for each table, on top of the destination's.
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
    /// Send rows that cannot be written to a table of the same dataset (created when missing;
    /// columns in [`crate::dlq_table`]), so they can be queried next to the data.
    pub fn dead_letter_table(mut self, table_id: impl Into<String>) -> Self {
        self.dlq_table = Some(table_id.into());
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

    /// Checks the settings, connects, creates the dataset and table when missing (and allowed),
    /// and returns a destination ready to write.
    pub async fn build(self) -> Result<Destination, Error> {
        let config = self.config;
        config.validate()?;
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
            None => crate::admin::resolve_auth(&endpoints, config.credentials_path.as_deref()).await?,
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
                if !config.auto_detect_schema || !crate::dataset::auto_table_management_from_env()? {
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
        let mut limits =
            BatchLimits::default().with_max_rows(config.batch_size).with_max_inflight(config.max_concurrent_batches);
        if let Some(b) = self.max_batch_bytes {
            limits = limits.with_max_bytes(b);
        }
        let dlq =
            match (self.dlq, self.dlq_path, self.dlq_table) {
                (Some(q), _, _) => Some(q),
                (None, Some(path), _) => Some(Arc::new(NdjsonFile::open(&path).map_err(|e| {
                    Error::DeadLetter(format!("cannot open the dead-letter file {}: {e}", path.display()))
                })?) as Arc<dyn DeadLetterQueue>),
                (None, None, Some(name)) => {
                    let mut b = DestinationBuilder::default()
                        .project_id(&table.project)
                        .dataset_id(&table.dataset)
                        .table_id(name)
                        .endpoints(endpoints.clone())
                        .auth(auth);
                    if let Some(l) = &config.location {
                        b = b.location(l);
                    }
                    let q = tokio::task::spawn_blocking(move || crate::dlq_table::TableDeadLetters::open(b))
                        .await
                        .map_err(|e| Error::DeadLetter(format!("cannot open the dead-letter table: {e}")))??;
                    Some(Arc::new(q) as Arc<dyn DeadLetterQueue>)
                }
                (None, None, None) => None,
            };
        let shared = Shared {
            limiters: Arc::new(RateLimiters::new(self.rate_limit, self.table_rate_limit)),
            breaker: CircuitBreaker::new(self.breaker)
                .map_err(|e| ConfigError::new("circuit_breaker", e.to_string()))?,
            metrics: Arc::new(Metrics::new(mode == WriteMode::Streaming)),
        };
        let sink =
            TableSink::new(client, staging.clone().unwrap_or_else(|| table.clone()), descriptor, limits, self.retry)
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

/// How long a WRITE_TRUNCATE staging table outlives a load that never finished.
const STAGING_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Creates the table WRITE_TRUNCATE rows are written to: the target's schema, partitioning
/// and clustering (so the copy over the target is accepted), deleted by BigQuery after a day.
async fn create_staging(rest: &RestClient, table: &TableRef) -> Result<TableRef, Error> {
    let info = rest
        .get_table(table)
        .await?
        .ok_or_else(|| Error::TableNotFound { table: table.clone(), hint: "it vanished while the load started" })?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{}_bqsink_staging_{:x}", table.table, nanos & 0xffff_ffff_ffff);
    let staging = TableRef::new(&table.project, &table.dataset, &name)?;
    let mut spec = TableSpec::new(info.schema).with_expiration(std::time::SystemTime::now() + STAGING_LIFETIME);
    if let Some(p) = info.time_partitioning {
        spec = spec.with_time_partitioning(p);
    }
    if let Some(c) = info.clustering {
        spec = spec.with_clustering(c.fields);
    }
    rest.create_table(&staging, &spec).await?;
    info!(%table, %staging, "WRITE_TRUNCATE: rows go to a staging table until the commit");
    Ok(staging)
}

/// Sends partial batches whose oldest row has waited `timeout`.
async fn batch_timer(inner: Weak<Inner>, timeout: Duration) {
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let result = inner.sink.lock().await.send_if_older_than(timeout).await;
        if let Err(e) = result {
            warn!(table = %inner.table, error = %e, "sending a timed-out batch failed");
            if let Ok(mut d) = inner.deferred.lock() {
                d.get_or_insert(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("ts", FieldType::Timestamp),
            Field::new("n", FieldType::Float64),
            Field::new("k", FieldType::String),
        ])
    }

    #[test]
    fn partitioning_and_clustering_are_checked_against_the_schema() {
        let b =
            Destination::builder().partition_field("ts").partition_type(PartitionType::Hour).clustering_fields(["k"]);
        let spec = table_spec(b.config(), &schema()).expect("valid");
        assert_eq!(spec.time_partitioning.map(|p| p.partition_type), Some(PartitionType::Hour));
        assert!(table_spec(Destination::builder().partition_field("k").config(), &schema()).is_err());
        assert!(table_spec(Destination::builder().partition_field("nope").config(), &schema()).is_err());
        assert!(table_spec(Destination::builder().clustering_fields(["n"]).config(), &schema()).is_err());
    }

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

    #[tokio::test]
    async fn bad_settings_fail_before_any_connection() {
        let err =
            Destination::builder().project_id("p-123456").dataset_id("d").table_id("t").batch_size(0).build().await;
        assert!(matches!(err, Err(Error::Config(ref e)) if e.key == "batch_size"), "{err:?}");
        let err = Destination::builder().dataset_id("d").table_id("t").build().await;
        assert!(matches!(err, Err(Error::Config(ref e)) if e.key == "project_id"), "{err:?}");
    }
}
