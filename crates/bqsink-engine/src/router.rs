//! Many tables through one engine: a sink per table, all sharing a connection pool, the
//! quotas, the circuit breaker, the metrics and the dead-letter queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bqsink_core::{Record, RowError, TableRef, WriteMode};
use bqsink_transport::{RowDescriptor, WriteClient};

use crate::dlq::DeadLetterQueue;
use crate::pool::ConnectionPool;
use crate::retry::RetryPolicy;
use crate::sink::{BatchLimits, EngineError, Shared, SinkStats, TableSink};

/// Routes rows to per-table sinks. Tables must be added (with their schema) before writing.
pub struct Router {
    client: WriteClient,
    pool: Arc<ConnectionPool>,
    mode: WriteMode,
    limits: BatchLimits,
    retry: RetryPolicy,
    shared: Shared,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    sinks: HashMap<TableRef, TableSink>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("tables", &self.sinks.len()).field("pool", &self.pool.size()).finish()
    }
}

impl Router {
    /// A router writing in `mode`, with `pool_size` shared connections for default streams.
    pub fn new(
        client: WriteClient,
        mode: WriteMode,
        pool_size: usize,
        limits: BatchLimits,
        retry: RetryPolicy,
    ) -> Self {
        let pool = Arc::new(ConnectionPool::new(client.clone(), pool_size));
        Self { client, pool, mode, limits, retry, shared: Shared::default(), dlq: None, sinks: HashMap::new() }
    }

    /// Shares quotas, breaker and metrics.
    pub fn with_shared(mut self, shared: Shared) -> Self {
        self.shared = shared;
        self
    }

    /// Sends refused rows to a dead-letter queue.
    pub fn with_dead_letters(mut self, dlq: Option<Arc<dyn DeadLetterQueue>>) -> Self {
        self.dlq = dlq;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// Whether the table has a sink.
    pub fn has_table(&self, table: &TableRef) -> bool {
        self.sinks.contains_key(table)
    }

    /// Adds a table (or replaces its schema: rows already encoded are sent first).
    pub async fn set_table(&mut self, table: TableRef, descriptor: RowDescriptor) -> Result<(), EngineError> {
        if let Some(sink) = self.sinks.get_mut(&table) {
            return sink.set_descriptor(descriptor).await;
        }
        let sink = TableSink::new(self.client.clone(), table.clone(), descriptor, self.limits, self.retry.clone())
            .with_mode(self.mode)
            .with_shared(self.shared.clone())
            .with_dead_letters(self.dlq.clone())
            .with_pool(self.pool.clone());
        self.sinks.insert(table, sink);
        Ok(())
    }

    /// Writes a row to a table added before; a row the encoder refuses comes back with its
    /// error, as from [`TableSink::write`].
    pub async fn write(&mut self, table: &TableRef, record: Record) -> Result<Option<(RowError, Record)>, EngineError> {
        match self.sinks.get_mut(table) {
            Some(sink) => sink.write(record).await,
            None => Ok(Some((RowError::new("", format!("table {table} was not added to the router")), record))),
        }
    }

    /// The table's sink, if it was added.
    pub fn sink_mut(&mut self, table: &TableRef) -> Option<&mut TableSink> {
        self.sinks.get_mut(table)
    }

    /// Sends partial batches older than `age` in every table.
    pub async fn send_if_older_than(&mut self, age: Duration) -> Result<(), EngineError> {
        for sink in self.sinks.values_mut() {
            sink.send_if_older_than(age).await?;
        }
        Ok(())
    }

    /// Flushes every table.
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        for sink in self.sinks.values_mut() {
            sink.flush().await?;
        }
        Ok(())
    }

    /// Flushes and finishes every table (commits Batch streams). A table that fails does not
    /// stop the others: its rows are dead-lettered with their fate, and the first error is
    /// returned once every table is done.
    pub async fn finish(&mut self) -> Result<(), EngineError> {
        let mut first = None;
        for sink in self.sinks.values_mut() {
            if let Err(e) = sink.finish().await {
                sink.abandon(&e.to_string())?;
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Marks `position` in the input on every table (see [`TableSink::mark`]).
    pub async fn mark(&mut self, position: u64) -> Result<(), EngineError> {
        for sink in self.sinks.values_mut() {
            sink.mark(position).await?;
        }
        Ok(())
    }

    /// The furthest position marked on every table whose rows are all settled in every table:
    /// the least of the tables' own. Positions only (streams with offsets are per table and are
    /// not combined here).
    pub fn settled_position(&self) -> Option<u64> {
        let mut least: Option<u64> = None;
        for sink in self.sinks.values().filter(|s| s.was_marked()) {
            let p = sink.latest_settled()?.position;
            least = Some(least.map_or(p, |l| l.min(p)));
        }
        least
    }

    /// Gives up on every row every table holds (see [`TableSink::abandon`]).
    pub fn abandon(&mut self, cause: &str) -> Result<(), EngineError> {
        for sink in self.sinks.values_mut() {
            sink.abandon(cause)?;
        }
        Ok(())
    }

    /// Counters summed over all tables.
    pub fn stats(&self) -> SinkStats {
        self.sinks.values().map(TableSink::stats).fold(SinkStats::default(), |mut total, s| {
            total += s;
            total
        })
    }

    /// Tables with a sink.
    pub fn table_count(&self) -> usize {
        self.sinks.len()
    }
}
