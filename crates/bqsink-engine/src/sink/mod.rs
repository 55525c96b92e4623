//! One table's writer: rows are encoded into a batch buffer, cut into requests by row count,
//! bytes and age, sent pipelined on an AppendRows stream, and counted as written when
//! acknowledged.
//!
//! Failures, request by request and in order:
//! - temporary (see [`crate::retry`]): resent after a backoff, on a new connection when the old
//!   one died; a request without an answer within the deadline replaces its connection;
//! - some rows refused (`row_errors`): those go to the dead-letter queue with BigQuery's message,
//!   the others are resent (BigQuery writes none of a refused request);
//! - the whole request refused for its data (INVALID_ARGUMENT, or UNKNOWN — what some servers
//!   answer for a value they cannot store): bisected, halves resent, until each bad row is alone
//!   and dead-lettered;
//! - with offsets, ALREADY_EXISTS means the rows were written by an earlier attempt, and
//!   OUT_OF_RANGE means the stream's end moved (rows were dropped above): the request is sent
//!   again at the stream's end.
//!
//! The sink's jobs, one file each:
//! - `limits.rs`: when a batch is cut into a request, and how much may be in flight;
//! - `batch.rs`: rows into the batch buffer, cut into requests;
//! - `send.rs`: requests onto a connection, and a request's round trip;
//! - `settle.rs`: the acknowledgements, oldest first;
//! - `outcome.rs`: what each answer means — written, resent, bisected, retried;
//! - `permits.rs`: the circuit breaker's permits for requests;
//! - `refused.rs`: rows BigQuery refused, read back and dead-lettered;
//! - `stream.rs`: the write stream — created, finalized, committed;
//! - `error.rs`, `stats.rs`: what a write reports.

mod batch;
mod error;
mod give_up;
mod limits;
mod marks;
mod outcome;
mod permits;
mod refused;
mod send;
mod settle;
mod spill;
mod stats;
mod stream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bqsink_core::{Record, RowError, TableRef, WriteMode};
use bqsink_transport::{AckFuture, AppendRequest, AppendStream, RowDescriptor, RowEncoder, WriteClient};
use bytes::BytesMut;

use crate::breaker::{CircuitBreaker, Permit};
use crate::dlq::DeadLetterQueue;
use crate::limiter::RateLimiters;
use crate::metrics::Metrics;
use crate::retry::{RetryBudget, RetryPolicy};

pub use error::EngineError;
pub use limits::{
    BatchLimits, DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT_BYTES,
};
pub use marks::{Resumed, Settled};
pub(crate) use refused::undecodable;
pub use stats::SinkStats;

/// What the sinks of one destination share: quotas, the circuit breaker and the counters.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// Rows/s and bytes/s limits (destination-wide and per table).
    pub limiters: Arc<RateLimiters>,
    /// The circuit breaker in front of BigQuery.
    pub breaker: CircuitBreaker,
    /// Counters, gauges and latencies.
    pub metrics: Arc<Metrics>,
    /// Fired to make every sink give up at once (a second signal, a grace period run out).
    pub abort: crate::abort::Abort,
}

struct InFlight {
    request: AppendRequest,
    ack: Option<AckFuture>,
    /// The circuit breaker's permission for the current attempt.
    permit: Option<Permit>,
    /// Which connection it was sent on (see `TableSink::generation`).
    generation: u64,
    sent_at: Instant,
    /// Whether an earlier attempt went out and ended without the server's answer (no answer in
    /// time, the connection ended): the rows may be in the table. An attempt still awaiting
    /// its answer (`ack`) is just as uncertain.
    maybe_stored: bool,
}

/// Writes rows of one table, through its default stream or an application-created stream
/// depending on the [`WriteMode`].
pub struct TableSink {
    table: TableRef,
    mode: WriteMode,
    /// The stream rows go to; for ExactlyOnce and Batch it is created with the first request.
    write_stream: Option<String>,
    /// Offset of the next request's first row (ExactlyOnce and Batch).
    next_offset: i64,
    /// Rows of the stream acknowledged so far (ExactlyOnce and Batch): where BigQuery's end is.
    acked_end: i64,
    /// Offsets handed out ahead of `acked_end` are wrong (rows were dropped): re-offset.
    resync: bool,
    client: WriteClient,
    stream: Option<AppendStream>,
    encoder: RowEncoder,
    buf: BytesMut,
    /// Rows in `buf`. Records are not kept once encoded: a row refused later is read back
    /// from its bytes (see `bqsink_transport::decoder`).
    batch_rows: usize,
    /// When the oldest row of the current batch was encoded.
    batch_started: Option<Instant>,
    limits: BatchLimits,
    retry: RetryPolicy,
    budget: RetryBudget,
    inflight: VecDeque<InFlight>,
    /// Incremented each time a connection is opened.
    generation: u64,
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    refused: Vec<(RowError, Record)>,
    shared: Shared,
    /// Connections shared with other tables' default streams, if any.
    pool: Option<Arc<crate::pool::ConnectionPool>>,
    stats: SinkStats,
    /// The table's schema as BigQuery last reported it changed (`updated_schema`), until taken.
    updated_schema: Option<bqsink_core::Schema>,
    /// Batch mode: rows acknowledged into the pending stream, kept until it is committed.
    pending: spill::Spill,
    /// Batch mode: why the sink gave up; its pending stream will never be committed.
    gave_up: Option<String>,
    /// Positions marked by the caller, with the requests sent before each.
    marks: VecDeque<(u64, u64)>,
    marks_frozen: bool,
    requests_sent: u64,
    requests_settled: u64,
    settled: Option<Settled>,
    /// Whether `settled` moved since `take_settled` last reported it.
    settled_moved: bool,
    marked: bool,
    /// ExactlyOnce: leave the stream open at the end (a restart may write into it again).
    keep_open: bool,
}

impl std::fmt::Debug for TableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSink")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .field("rows_in_batch", &self.batch_rows)
            .field("inflight", &self.inflight.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl TableSink {
    /// A sink writing rows of `descriptor`'s schema into `table`'s default stream.
    pub fn new(
        client: WriteClient,
        table: TableRef,
        descriptor: RowDescriptor,
        limits: BatchLimits,
        retry: RetryPolicy,
    ) -> Self {
        let write_stream = Some(table.default_stream());
        Self {
            table,
            mode: WriteMode::Streaming,
            write_stream,
            next_offset: 0,
            acked_end: 0,
            resync: false,
            client,
            stream: None,
            encoder: RowEncoder::new(descriptor),
            buf: BytesMut::new(),
            batch_rows: 0,
            batch_started: None,
            limits,
            budget: RetryBudget::new(&retry),
            retry,
            inflight: VecDeque::new(),
            // 0 marks requests that were never handed to a connection.
            generation: 1,
            dlq: None,
            refused: Vec::new(),
            shared: Shared::default(),
            pool: None,
            stats: SinkStats::default(),
            updated_schema: None,
            pending: spill::Spill::default(),
            gave_up: None,
            marks: VecDeque::new(),
            marks_frozen: false,
            requests_sent: 0,
            requests_settled: 0,
            settled: None,
            settled_moved: false,
            marked: false,
            keep_open: false,
        }
    }

    /// The same sink in another write mode (before the first write).
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self.write_stream = (mode == WriteMode::Streaming).then(|| self.table.default_stream());
        self
    }

    /// The same sink sending rows BigQuery refuses to a dead-letter queue.
    pub fn with_dead_letters(mut self, dlq: Option<Arc<dyn DeadLetterQueue>>) -> Self {
        self.dlq = dlq;
        self
    }

    /// The same sink sharing quotas, breaker and metrics with others of its destination.
    pub fn with_shared(mut self, shared: Shared) -> Self {
        self.shared = shared;
        self
    }

    /// The same sink sending its default-stream requests over a shared connection pool.
    pub fn with_pool(mut self, pool: Arc<crate::pool::ConnectionPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Whether a `write` now could have to wait for acknowledgements (the batch is about to be
    /// sent and the in-flight bounds are reached): `try_write` callers answer "full" instead.
    pub fn would_wait(&self) -> bool {
        let batch_full = self.batch_rows + 1 >= self.limits.max_rows;
        let inflight_full =
            self.inflight.len() >= self.limits.max_inflight || self.inflight_bytes() >= self.limits.max_inflight_bytes;
        (batch_full && inflight_full) || self.resync
    }

    pub(super) fn inflight_bytes(&self) -> usize {
        self.inflight.iter().map(|f| f.request.encoded_len()).sum()
    }

    /// The write mode.
    pub fn mode(&self) -> WriteMode {
        self.mode
    }

    /// The table written to.
    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// The table's new schema if BigQuery reported one (`updated_schema`) since the last call:
    /// the caller's schema cache is stale.
    pub fn take_updated_schema(&mut self) -> Option<bqsink_core::Schema> {
        self.updated_schema.take()
    }

    /// Rows BigQuery refused when no dead-letter queue is set, with the reason.
    pub fn take_refused(&mut self) -> Vec<(RowError, Record)> {
        std::mem::take(&mut self.refused)
    }

    /// The schema rows are encoded with now.
    pub fn descriptor(&self) -> &RowDescriptor {
        self.encoder.descriptor()
    }

    /// Where requests are cut and how many may be in flight.
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Rows encoded but not yet acknowledged.
    pub fn pending_rows(&self) -> usize {
        self.batch_rows + self.inflight.iter().map(|f| f.request.row_count()).sum::<usize>()
    }

    /// Bytes of requests awaiting acknowledgement plus the batch being built.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() + self.inflight.iter().map(|f| f.request.encoded_len()).sum::<usize>()
    }
}
