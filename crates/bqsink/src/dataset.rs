//! `DatasetWriter`: rows for many tables of one dataset, with tables that manage themselves.
//!
//! Each row names its table. The first row of a table that does not exist creates it (with
//! the base columns given for that table, if any, plus the columns the row's values infer).
//! A row the table cannot take as it is gets, in this order:
//! - a legal schema change when its values call for one (a new NULLABLE or REPEATED column,
//!   REQUIRED relaxed, INT64 widened to NUMERIC or FLOAT64, NUMERIC to FLOAT64), after which it is
//!   written;
//! - otherwise the dead-letter queue, with `table.column: expected X, got Y (value …)`.
//!
//! No DDL BigQuery would refuse is ever sent. Schemas are cached per table for `schema_ttl`
//! (5 minutes by default) and re-read early when BigQuery reports a new schema or another
//! writer changed the table first (HTTP 409 / 412): steady-state writing makes no metadata call.
//! With auto table management off (`BIGQUERY_AUTO_TABLE_MANAGEMENT=false`) no DDL at all is
//! sent: rows for a missing table or column are dead-lettered with the reason.
//!
//! All tables share a connection pool (default streams multiplexed), the quotas, the circuit
//! breaker, the metrics and the dead-letter queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bqsink_core::{DestinationConfig, Record, RowError, Schema, TableRef, TimePartitioning, WriteMode};
use bqsink_engine::breaker::CircuitBreaker;
use bqsink_engine::limiter::RateLimiters;
use bqsink_engine::metrics::{Metrics, MetricsSnapshot};
use bqsink_engine::sink::Shared;
use bqsink_engine::{BatchLimits, DeadLetter, DeadLetterQueue, EncodedRows, Payload, Reason, RetryPolicy, Router};
use bqsink_formats::{Batch, Cut};
use bqsink_schema::{plan_alter, reconcile, Decision};
use bqsink_transport::{Auth, Endpoints, RestClient, RowDescriptor, TableSpec, TransportError, WriteClient};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::connect::resolve_auth;
use crate::dlq_flush::flush_dead_letters;
use crate::resilience;
use crate::summary::Summary;
use crate::Error;

pub use crate::connect::{auto_table_management_from_env, parse_switch};

/// How long a table's schema is trusted before it is read again.
pub const DEFAULT_SCHEMA_TTL: Duration = Duration::from_secs(300);
/// Times a schema change is re-planned after another writer changed the table first.
const EVOLVE_ATTEMPTS: usize = 8;

/// Base columns of a table about to be created, by table name.
pub type BaseSchema = Arc<dyn Fn(&str) -> Schema + Send + Sync>;

/// Writes rows into tables of one dataset, creating and evolving them.
#[derive(Debug)]
pub struct DatasetWriter {
    inner: Arc<Inner>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    project: String,
    dataset: String,
    auto: bool,
    ttl: Duration,
    partitioning: Option<TimePartitioning>,
    base: Option<BaseSchema>,
    location: Option<String>,
    rest: RestClient,
    state: Mutex<State>,
    shared: Shared,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    rows_read: AtomicU64,
    rows_refused: AtomicU64,
    rows_dead_lettered: AtomicU64,
    limits: BatchLimits,
    workers: usize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("project", &self.project)
            .field("dataset", &self.dataset)
            .field("auto_table_management", &self.auto)
            .finish()
    }
}

struct State {
    router: Router,
    tables: HashMap<String, Cached>,
    dataset_checked: bool,
}

/// A table's schema as last read or written.
struct Cached {
    table: TableRef,
    schema: Schema,
    etag: Option<String>,
    read_at: Instant,
}

/// Builds a [`DatasetWriter`].
///
/// Retries, deadlines, request sizes, the circuit breaker and the rate limits come from the
/// configuration's properties (see [`DestinationConfig`]); [`retry_policy`](Self::retry_policy)
/// wins over the `retry_*` and `request_timeout_ms` properties.
#[derive(Default)]
pub struct DatasetWriterBuilder {
    config: DestinationConfig,
    endpoints: Option<Endpoints>,
    auth: Option<Auth>,
    auto: Option<bool>,
    ttl: Option<Duration>,
    partitioning: Option<TimePartitioning>,
    base: Option<BaseSchema>,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    /// Set by `retry_policy`; wins over the configuration's `retry_*` and `request_timeout_ms`.
    retry: Option<RetryPolicy>,
    pool_size: Option<usize>,
}

impl std::fmt::Debug for DatasetWriterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriterBuilder").field("config", &self.config).field("auto", &self.auto).finish()
    }
}

impl DatasetWriter {
    /// A builder (project and dataset from the environment's `BIGQUERY_PROJECT_ID` and
    /// `BIGQUERY_DATASET` unless set).
    pub fn builder() -> DatasetWriterBuilder {
        DatasetWriterBuilder::default()
    }

    /// Writes one row into `table`: `Ok(None)` when it is queued, `Ok(Some(e))` when it was
    /// refused (and dead-lettered when a queue is set). `Err` only when BigQuery cannot take
    /// rows at all.
    pub async fn write(&self, table: &str, record: Record) -> Result<Option<RowError>, Error> {
        self.write_at(table, record, None).await
    }

    /// [`DatasetWriter::write`] of the row at position `row` of the input, so a refusal (and
    /// its dead letter) names it.
    pub async fn write_at(&self, table: &str, record: Record, row: Option<u64>) -> Result<Option<RowError>, Error> {
        self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
        let mut st = self.inner.state.lock().await;
        if let Err(refusal) = self.ensure_table(&mut st, table, &record).await {
            drop(st);
            return self.refuse_at(table, row, refusal?, record).map(Some);
        }
        let Some(tref) = st.tables.get(table).map(|c| c.table.clone()) else {
            drop(st);
            return self.refuse_at(table, row, RowError::new("", "the table is not known"), record).map(Some);
        };
        let refused = st.router.write(&tref, record).await?;
        self.adopt_reported_schema(&mut st, table).await?;
        let Some((encode_error, record)) = refused else { return Ok(None) };
        let decision = match st.tables.get(table) {
            Some(c) => reconcile(table, &c.schema, &record),
            None => Decision::Fits,
        };
        match decision {
            // The encoder is the judge of values that reconcile lets through.
            Decision::Fits => {
                drop(st);
                self.refuse_at(table, row, encode_error, record).map(Some)
            }
            Decision::Conflict(conflicts) => {
                drop(st);
                let column = conflicts.first().map(|c| c.column.clone()).unwrap_or_default();
                let message = conflicts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                self.refuse_at(table, row, RowError::new(column, message), record).map(Some)
            }
            Decision::Evolve(desired) => {
                if !self.inner.auto {
                    drop(st);
                    let message = format!(
                        "{encode_error}; the table needs a schema change and BIGQUERY_AUTO_TABLE_MANAGEMENT is false"
                    );
                    return self
                        .refuse_at(table, row, RowError::new(encode_error.column.clone(), message), record)
                        .map(Some);
                }
                self.evolve(&mut st, table, desired).await?;
                match st.router.write(&tref, record).await? {
                    None => Ok(None),
                    Some((e, record)) => {
                        drop(st);
                        self.refuse_at(table, row, e, record).map(Some)
                    }
                }
            }
        }
    }

    /// Makes `table` have at least the columns of `schema` before the first row is written
    /// (creating it, or adding columns by legal changes only): for a finite input planned as a
    /// whole, so the table changes at most once. Returns the conflicts it could not plan.
    pub async fn prepare(&self, table: &str, schema: &Schema) -> Result<Vec<String>, Error> {
        let mut st = self.inner.state.lock().await;
        let plan = match st.tables.get(table) {
            Some(c) => bqsink_schema::reconcile_schema(table, &c.schema, schema),
            None => {
                self.load_table(&mut st, table).await?;
                let current = st.tables.get(table).map(|c| c.schema.clone()).unwrap_or_default();
                bqsink_schema::reconcile_schema(table, &current, schema)
            }
        };
        let conflicts = plan.conflicts.iter().map(ToString::to_string).collect();
        if !st.tables.contains_key(table) {
            if !self.inner.auto {
                return Err(Error::TableNotFound {
                    table: self.table_ref(table)?,
                    hint: "BIGQUERY_AUTO_TABLE_MANAGEMENT is false: create it first",
                });
            }
            self.create(&mut st, table, plan.schema).await?;
        } else if !plan.is_unchanged() {
            if !self.inner.auto {
                return Ok(conflicts);
            }
            self.evolve(&mut st, table, plan.schema).await?;
        }
        Ok(conflicts)
    }

    /// The plans of the tables known so far (created, or read since the writer started), by
    /// table name: what rows are transcoded for.
    pub(crate) async fn plans(&self) -> HashMap<String, RowDescriptor> {
        let mut st = self.inner.state.lock().await;
        let names: Vec<(String, TableRef)> = st.tables.iter().map(|(n, c)| (n.clone(), c.table.clone())).collect();
        names
            .into_iter()
            .filter_map(|(name, tref)| st.router.sink_mut(&tref).map(|s| (name, s.descriptor().clone())))
            .collect()
    }

    /// How rows are cut into requests, and the encoding threads configured.
    pub(crate) fn batching(&self) -> (Cut, usize) {
        let l = &self.inner.limits;
        (Cut { max_rows: l.max_rows.max(1), max_bytes: l.max_bytes }, self.inner.workers)
    }

    /// Takes rows transcoded for `table` (their positions are 0-based input positions); returns
    /// the rows refused (dead-lettered when a queue is set).
    pub(crate) async fn write_transcoded(&self, table: &str, batch: Batch) -> Result<Vec<RowError>, Error> {
        let (encoded, _) = EncodedRows::from_batch(batch);
        self.inner.rows_read.fetch_add(encoded.len() as u64, Ordering::Relaxed);
        let mut st = self.inner.state.lock().await;
        let Some(tref) = st.tables.get(table).map(|c| c.table.clone()) else {
            drop(st);
            return self.refuse_encoded(table, encoded, "the table is not known");
        };
        let Some(sink) = st.router.sink_mut(&tref) else {
            drop(st);
            return self.refuse_encoded(table, encoded, "the table is not known");
        };
        if let Err(e) = sink.admit().await {
            drop(st);
            let e = Error::from(e);
            self.refuse_encoded(table, encoded, &bqsink_engine::Fate::NotWritten.reason(&e.to_string()))?;
            return Err(e);
        }
        let rejected = sink.write_encoded(encoded).await?;
        self.adopt_reported_schema(&mut st, table).await?;
        drop(st);
        let mut refused = Vec::with_capacity(rejected.len());
        for (i, e, record) in rejected {
            refused.push(self.refuse(table, e.at_row(i as u64), record)?);
        }
        Ok(refused)
    }

    /// Refuses rows already encoded (read back for the dead-letter queue), each with `why`.
    pub(crate) fn refuse_encoded(&self, table: &str, rows: EncodedRows, why: &str) -> Result<Vec<RowError>, Error> {
        rows.into_records()
            .into_iter()
            .map(|(i, record)| self.refuse(table, RowError::new("", why).at_row(i as u64), record))
            .collect()
    }

    /// Dead-letters input that never became a row (say, a line that is not a valid payload), so
    /// it is counted and kept like any refused row.
    pub fn dead_letter_raw(
        &self,
        row: Option<u64>,
        text: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<RowError, Error> {
        self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
        let mut e = RowError::new("", message);
        e.row = row;
        match &self.inner.dlq {
            Some(q) => {
                let tref = TableRef {
                    project: self.inner.project.clone(),
                    dataset: self.inner.dataset.clone(),
                    table: String::new(),
                };
                q.push(DeadLetter::new(Reason::from_row_error(&tref, &e), Payload::Raw(text.into()))).map_err(
                    |io| Error::DeadLetter(format!("cannot write to the dead-letter queue ({io}); the input was: {e}")),
                )?;
                self.inner.rows_dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.inner.shared.metrics.record_dead_letter(1);
            }
            None => {
                self.inner.rows_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(e)
    }

    /// Sends every queued row of every table and waits for the acknowledgements.
    pub async fn flush(&self) -> Result<(), Error> {
        let mut st = self.inner.state.lock().await;
        st.router.flush().await?;
        let tables: Vec<String> = st.tables.keys().cloned().collect();
        for t in tables {
            self.adopt_reported_schema(&mut st, &t).await?;
        }
        drop(st);
        flush_dead_letters(&self.inner.dlq).await
    }

    /// Flushes, finishes every table's stream (commits in Batch mode), reports what was done.
    pub async fn close(mut self) -> Result<Summary, Error> {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        let mut st = self.inner.state.lock().await;
        let failure = st.router.finish().await.err().map(Error::from);
        flush_dead_letters(&self.inner.dlq).await?;
        let s = st.router.stats();
        let (server_dead, server_kept) =
            if self.inner.dlq.is_some() { (s.rows_refused, 0) } else { (0, s.rows_refused) };
        let summary = Summary {
            rows_read: self.inner.rows_read.load(Ordering::Relaxed),
            rows_written: s.rows_written,
            rows_dead_lettered: self.inner.rows_dead_lettered.load(Ordering::Relaxed) + server_dead,
            rows_in_doubt: s.rows_in_doubt,
            rows_rejected: self.inner.rows_refused.load(Ordering::Relaxed) + server_kept,
            requests: s.requests,
            bytes_written: s.bytes_written,
            retries: s.retries,
            rows_resent_ambiguous: s.rows_resent_ambiguous,
        };
        match failure {
            Some(cause) => Err(Error::Incomplete { summary, cause: Box::new(cause) }),
            None => Ok(summary),
        }
    }

    /// Marks `position` in the input on every table; returns the furthest position whose rows
    /// are all settled in every table, if there is one (see [`LoadOptions::on_settled`](crate::LoadOptions::on_settled)).
    pub(crate) async fn mark(&self, position: u64) -> Result<Option<u64>, Error> {
        let mut st = self.inner.state.lock().await;
        st.router.mark(position).await?;
        Ok(st.router.settled_position())
    }

    /// The dead-letter queue, if one is set.
    pub(crate) fn dead_letters(&self) -> Option<Arc<dyn DeadLetterQueue>> {
        self.inner.dlq.clone()
    }

    /// Gives up at once on every table: see [`Destination::abort`](crate::Destination::abort).
    pub fn abort(&self, reason: impl Into<String>) {
        self.inner.shared.abort.fire(reason);
    }

    /// A handle that aborts this writer from anywhere (see [`DatasetWriter::abort`]).
    pub fn abort_handle(&self) -> crate::Abort {
        self.inner.shared.abort.clone()
    }

    /// Counters, gauges and latency percentiles over all tables (`metadata_calls` counts
    /// every table read, creation and change).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// The cached schema of a table this writer has seen.
    pub async fn cached_schema(&self, table: &str) -> Option<Schema> {
        self.inner.state.lock().await.tables.get(table).map(|c| c.schema.clone())
    }

    /// The REST client (for queries and table administration).
    pub fn rest(&self) -> &RestClient {
        &self.inner.rest
    }

    /// Tables written to so far.
    pub async fn table_count(&self) -> usize {
        self.inner.state.lock().await.tables.len()
    }

    fn table_ref(&self, table: &str) -> Result<TableRef, Error> {
        Ok(TableRef::new(&self.inner.project, &self.inner.dataset, table)?)
    }

    fn refuse_at(&self, table: &str, row: Option<u64>, mut e: RowError, record: Record) -> Result<RowError, Error> {
        if row.is_some() {
            e.row = row;
        }
        self.refuse(table, e, record)
    }

    fn refuse(&self, table: &str, e: RowError, record: Record) -> Result<RowError, Error> {
        match &self.inner.dlq {
            Some(q) => {
                let tref = self.table_ref(table).unwrap_or_else(|_| TableRef {
                    project: self.inner.project.clone(),
                    dataset: self.inner.dataset.clone(),
                    table: table.to_owned(),
                });
                q.push(DeadLetter::new(Reason::from_row_error(&tref, &e), Payload::Record(record))).map_err(|io| {
                    Error::DeadLetter(format!("cannot write to the dead-letter queue ({io}); the row was: {e}"))
                })?;
                self.inner.rows_dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.inner.shared.metrics.record_dead_letter(1);
            }
            None => {
                self.inner.rows_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(e)
    }

    /// Makes sure the table's schema is cached and fresh, creating the table when it is missing
    /// (and allowed). `Err(Ok(e))`: the row is refused for `e`; `Err(Err(e))`: a real failure.
    async fn ensure_table(&self, st: &mut State, table: &str, record: &Record) -> Result<(), Result<RowError, Error>> {
        if let Some(c) = st.tables.get(table) {
            if c.read_at.elapsed() < self.inner.ttl {
                return Ok(());
            }
        }
        if let Err(e) = self.table_ref(table) {
            return Err(Ok(RowError::new("", format!("`{table}` cannot be a table: {e}"))));
        }
        self.load_table(st, table).await.map_err(Err)?;
        if st.tables.contains_key(table) {
            return Ok(());
        }
        if !self.inner.auto {
            return Err(Ok(RowError::new(
                "",
                format!(
                    "table {}.{}.{table} does not exist and BIGQUERY_AUTO_TABLE_MANAGEMENT is false",
                    self.inner.project, self.inner.dataset
                ),
            )));
        }
        let base = self.inner.base.as_ref().map(|b| b(table)).unwrap_or_default();
        let schema = match reconcile(table, &base, record) {
            Decision::Evolve(s) => s,
            _ => base,
        };
        if schema.fields.is_empty() {
            return Err(Ok(RowError::new("", "the row has no non-null value to create its table from")));
        }
        self.create(st, table, schema).await.map_err(Err)
    }

    /// Reads the table's schema into the cache (`tables.get`); no entry when it does not exist.
    async fn load_table(&self, st: &mut State, table: &str) -> Result<(), Error> {
        let tref = self.table_ref(table)?;
        self.inner.shared.metrics.record_metadata_call();
        match self.inner.rest.get_table(&tref).await? {
            Some(info) => self.cache(st, tref, info.schema, info.etag).await,
            None => {
                st.tables.remove(table);
                Ok(())
            }
        }
    }

    async fn cache(&self, st: &mut State, tref: TableRef, schema: Schema, etag: Option<String>) -> Result<(), Error> {
        let changed = st.tables.get(tref.table.as_str()).is_none_or(|c| c.schema != schema);
        if changed || !st.router.has_table(&tref) {
            st.router.set_table(tref.clone(), RowDescriptor::new(&schema)?).await?;
        }
        st.tables.insert(tref.table.clone(), Cached { table: tref, schema, etag, read_at: Instant::now() });
        Ok(())
    }

    async fn create(&self, st: &mut State, table: &str, schema: Schema) -> Result<(), Error> {
        let tref = self.table_ref(table)?;
        if !st.dataset_checked {
            self.inner.shared.metrics.record_metadata_call();
            if self.inner.rest.create_dataset(&tref.project, &tref.dataset, self.inner.location.as_deref()).await? {
                info!(project = %tref.project, dataset = %tref.dataset, "created dataset");
            }
            st.dataset_checked = true;
        }
        let mut spec = TableSpec::new(schema.clone());
        if let Some(p) = &self.inner.partitioning {
            if p.field.as_deref().is_none_or(|f| schema.field(f).is_some()) {
                spec = spec.with_time_partitioning(p.clone());
            }
        }
        self.inner.shared.metrics.record_metadata_call();
        if self.inner.rest.create_table(&tref, &spec).await? {
            info!(table = %tref, columns = schema.fields.len(), "created table");
        } else {
            debug!(table = %tref, "another writer created the table first");
        }
        // Read back what BigQuery stored (another writer may have created it differently).
        self.load_table(st, table).await?;
        match st.tables.get(table) {
            Some(c) if plan_alter(&c.schema, &schema).is_ok_and(|(_, changes)| changes.is_empty()) => Ok(()),
            Some(_) => self.evolve(st, table, schema).await,
            None => Err(Error::TableNotFound { table: tref, hint: "it was deleted right after it was created" }),
        }
    }

    /// Changes the table towards `desired` by legal changes only, re-reading and re-planning
    /// when another writer changed it first.
    async fn evolve(&self, st: &mut State, table: &str, desired: Schema) -> Result<(), Error> {
        for _ in 0..EVOLVE_ATTEMPTS {
            let Some(c) = st.tables.get(table) else {
                return Err(Error::TableNotFound { table: self.table_ref(table)?, hint: "it vanished while evolving" });
            };
            let (merged, changes) = plan_alter(&c.schema, &desired).map_err(Error::SchemaChangeRefused)?;
            if changes.is_empty() {
                return Ok(());
            }
            let tref = c.table.clone();
            let etag = c.etag.clone();
            if changes.iter().any(|ch| matches!(ch, bqsink_schema::Change::Widen { .. })) {
                // Rows encoded for the old type must be stored before the type changes: the
                // table would refuse them afterwards.
                if let Some(sink) = st.router.sink_mut(&tref) {
                    sink.flush().await?;
                }
            }
            self.inner.shared.metrics.record_metadata_call();
            let current = c.schema.clone();
            match self.inner.rest.apply_schema_change(&tref, &current, &merged, &changes, etag.as_deref()).await {
                Ok(Some(info)) => {
                    info!(table = %tref, changes = %changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "), "evolved table schema");
                    self.cache(st, tref, info.schema, info.etag).await?;
                    return Ok(());
                }
                Ok(None) => {
                    return Err(Error::TableNotFound { table: tref, hint: "it was deleted while its schema changed" })
                }
                Err(TransportError::Rest { status: 409 | 412, .. }) => {
                    debug!(table = %tref, "the table changed under us; re-reading and re-planning");
                    self.load_table(st, table).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::SchemaChangeConflict { table: self.table_ref(table)?, attempts: EVOLVE_ATTEMPTS })
    }

    /// Adopts a schema BigQuery reported with an acknowledgement (`updated_schema`).
    async fn adopt_reported_schema(&self, st: &mut State, table: &str) -> Result<(), Error> {
        let Some(tref) = st.tables.get(table).map(|c| c.table.clone()) else { return Ok(()) };
        let reported = st.router.sink_mut(&tref).and_then(|s| s.take_updated_schema());
        if reported.is_some() {
            debug!(table = %tref, "BigQuery reported a new schema; re-reading the table");
            self.load_table(st, table).await?;
        }
        Ok(())
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}

async fn batch_timer(inner: Weak<Inner>, timeout: Duration) {
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let result = inner.state.lock().await.router.send_if_older_than(timeout).await;
        if let Err(e) = result {
            warn!(dataset = %inner.dataset, error = %e, "sending a timed-out batch failed");
        }
    }
}

impl DatasetWriterBuilder {
    /// Starts from a configuration (project, dataset, batching, write mode, credentials).
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
    /// Endpoints (default: BigQuery, or the emulator variables).
    pub fn endpoints(mut self, v: Endpoints) -> Self {
        self.endpoints = Some(v);
        self
    }
    /// Credentials (default: discovered).
    pub fn auth(mut self, v: Auth) -> Self {
        self.auth = Some(v);
        self
    }
    /// Whether tables are created and evolved (default: `BIGQUERY_AUTO_TABLE_MANAGEMENT`, true).
    pub fn auto_table_management(mut self, on: bool) -> Self {
        self.auto = Some(on);
        self
    }
    /// How long a cached schema is trusted.
    pub fn schema_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Partitioning of the tables it creates (used when the table has the column).
    pub fn partitioning(mut self, p: TimePartitioning) -> Self {
        self.partitioning = Some(p);
        self
    }
    /// Partitioning of the tables it creates, unless one was set already.
    pub fn partitioning_if_unset(mut self, p: TimePartitioning) -> Self {
        self.partitioning.get_or_insert(p);
        self
    }
    /// Base columns of each table it creates, by table name.
    pub fn base_schema(mut self, f: impl Fn(&str) -> Schema + Send + Sync + 'static) -> Self {
        self.base = Some(Arc::new(f));
        self
    }
    /// Where refused rows go.
    pub fn dead_letter_queue(mut self, q: Arc<dyn DeadLetterQueue>) -> Self {
        self.dlq = Some(q);
        self
    }
    /// Retries; wins over the configuration's `retry_max_attempts`, `retry_initial_backoff_ms`,
    /// `retry_max_backoff_ms`, `retry_time_limit_ms` and `request_timeout_ms`.
    pub fn retry_policy(mut self, v: RetryPolicy) -> Self {
        self.retry = Some(v);
        self
    }
    /// Write mode for every table.
    pub fn write_mode(mut self, v: WriteMode) -> Self {
        self.config.write_mode = Some(v);
        self
    }
    /// Rows per request.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.config.batch_size = rows;
        self
    }
    /// Connections shared by the tables' default streams.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n);
        self
    }

    /// Connects; checks nothing about tables until rows come.
    pub async fn build(self) -> Result<DatasetWriter, Error> {
        let mut config = self.config;
        if config.project_id.is_empty() {
            config.project_id = std::env::var("BIGQUERY_PROJECT_ID").unwrap_or_default();
        }
        if config.dataset_id.is_empty() {
            config.dataset_id = std::env::var("BIGQUERY_DATASET").unwrap_or_default();
        }
        config.validate()?;
        let auto = match self.auto {
            Some(a) => a,
            None => auto_table_management_from_env()?,
        };
        let endpoints = self.endpoints.unwrap_or_else(Endpoints::from_env);
        let auth = match self.auth {
            Some(a) => a,
            None => resolve_auth(&endpoints, config.credentials_path.as_deref()).await?,
        };
        let rest = RestClient::new(&endpoints, auth.clone())?;
        let client = WriteClient::connect(&endpoints, auth).await?;
        let mode = config.effective_write_mode();
        let shared = Shared {
            limiters: Arc::new(RateLimiters::new(
                resilience::rate_limit(&config),
                resilience::table_rate_limit(&config),
            )),
            breaker: CircuitBreaker::new(resilience::breaker_config(&config))
                .map_err(|e| bqsink_core::ConfigError::new("circuit_breaker", e.to_string()))?,
            metrics: Arc::new(Metrics::new(mode == WriteMode::Streaming)),
            abort: Default::default(),
        };
        let limits = resilience::batch_limits(&config);
        let retry = self.retry.unwrap_or_else(|| resilience::retry_policy(&config));
        let router =
            Router::new(client, mode, self.pool_size.unwrap_or(bqsink_engine::pool::DEFAULT_POOL_SIZE), limits, retry)
                .with_shared(shared.clone())
                .with_dead_letters(self.dlq.clone());
        let timeout = Duration::from_millis(config.batch_timeout_ms);
        let inner = Arc::new(Inner {
            project: config.project_id.clone(),
            dataset: config.dataset_id.clone(),
            auto,
            ttl: self.ttl.unwrap_or(DEFAULT_SCHEMA_TTL),
            partitioning: self.partitioning,
            base: self.base,
            location: config.location.clone(),
            rest,
            state: Mutex::new(State { router, tables: HashMap::new(), dataset_checked: !auto }),
            shared,
            dlq: self.dlq,
            rows_read: AtomicU64::new(0),
            rows_refused: AtomicU64::new(0),
            rows_dead_lettered: AtomicU64::new(0),
            limits,
            workers: config.worker_count,
        });
        let ticker = tokio::spawn(batch_timer(Arc::downgrade(&inner), timeout));
        Ok(DatasetWriter { inner, ticker: Some(ticker) })
    }
}
