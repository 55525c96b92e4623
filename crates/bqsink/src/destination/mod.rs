//! `Destination`: one BigQuery table to write rows into.
//!
//! Its jobs, one file each:
//! - `builder.rs`: the settings, and `build` (checks, connects, creates what is missing);
//! - `write.rs`: the write paths (one row, batches and streams through the encoding workers,
//!   raw input) and the batch timeout;
//! - `load.rs`: a reader's bytes (NDJSON, CSV, a JSON array) chunked and transcoded on the
//!   encoding workers, straight to row bytes;
//! - `typed.rs`: rows of the caller's own `Serialize` types, straight to row bytes;
//! - `close.rs`: flush and close, and the summary;
//! - `table.rs`: the table itself: created, altered, dropped, staged for WRITE_TRUNCATE.

mod builder;
mod close;
mod load;
mod table;
mod typed;
mod write;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bqsink_core::{DestinationConfig, Schema, TableRef};
use bqsink_engine::breaker::BreakerState;
use bqsink_engine::metrics::MetricsSnapshot;
use bqsink_engine::sink::Shared;
use bqsink_engine::{DeadLetterQueue, EncoderPool, TableSink};
use bqsink_transport::RestClient;
use tokio::sync::Mutex;

use crate::Error;

pub(crate) use builder::DeadLetterTable;
pub use builder::DestinationBuilder;
pub(crate) use load::{read_chunks, FromReader, QUEUED_CHUNKS};
pub use load::{LoadOptions, LoadReport, OnRefused, OnSettled};
pub use write::StreamReport;

/// Writes rows into one BigQuery table through the Storage Write API, in the configured
/// [`WriteMode`](bqsink_core::WriteMode). Cheap to share: every method takes `&self`.
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

    pub(super) fn take_deferred(&self) -> Result<(), Error> {
        match self.inner.deferred.lock().ok().and_then(|mut d| d.take()) {
            Some(e) => Err(e),
            None => Ok(()),
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
}

impl Drop for Destination {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}
