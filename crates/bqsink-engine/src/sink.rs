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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bqsink_core::{Record, RowError, TableRef, WriteMode};
use bqsink_transport::request::HEADER_RESERVE_BYTES;
use bqsink_transport::{
    AckFuture, AppendRequest, AppendStream, RowDescriptor, RowEncoder, StatusCode, StreamKind, TransportError,
    WriteClient, MAX_REQUEST_BYTES,
};
use bytes::BytesMut;
use tracing::{debug, warn};

use crate::breaker::{BreakerOpen, BreakerState, CircuitBreaker, Permit, WhenOpen};
use crate::dlq::{DeadLetter, DeadLetterQueue, Payload, Reason};
use crate::limiter::RateLimiters;
use crate::metrics::Metrics;
use crate::retry::{RetryBudget, RetryPolicy};

/// Default rows per request.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Default bytes of rows per request: below the 10 MB AppendRows limit with room for the header.
pub const DEFAULT_BATCH_BYTES: usize = 9_500_000;
/// Default requests awaiting acknowledgement per stream.
pub const DEFAULT_MAX_INFLIGHT: usize = 4;
/// Default bytes of requests awaiting acknowledgement per sink: a few full requests, so memory
/// stays bounded whatever the row size.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 32 * 1024 * 1024;

/// When a batch is cut into a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Rows per request.
    pub max_rows: usize,
    /// Bytes of encoded rows per request (capped below the request limit).
    pub max_bytes: usize,
    /// Requests in flight before `write` waits for the oldest acknowledgement.
    pub max_inflight: usize,
    /// Bytes in flight before `write` waits for the oldest acknowledgement.
    pub max_inflight_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_BATCH_ROWS,
            max_bytes: DEFAULT_BATCH_BYTES,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

impl BatchLimits {
    /// The same limits with another row count.
    pub fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.max(1);
        self
    }
    /// The same limits with another byte size (never above the request limit).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.clamp(1, MAX_REQUEST_BYTES - HEADER_RESERVE_BYTES);
        self
    }
    /// The same limits with another in-flight bound.
    pub fn with_max_inflight(mut self, n: usize) -> Self {
        self.max_inflight = n.max(1);
        self
    }
    /// The same limits with another in-flight byte bound.
    pub fn with_max_inflight_bytes(mut self, n: usize) -> Self {
        self.max_inflight_bytes = n.max(1);
        self
    }
}

/// What the sinks of one destination share: quotas, the circuit breaker and the counters.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// Rows/s and bytes/s limits (destination-wide and per table).
    pub limiters: Arc<RateLimiters>,
    /// The circuit breaker in front of BigQuery.
    pub breaker: CircuitBreaker,
    /// Counters, gauges and latencies.
    pub metrics: Arc<Metrics>,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// This row cannot be written; the others are unaffected.
    #[error("{0}")]
    Row(RowError),
    /// BigQuery could not be reached or refused a request after retries.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The dead-letter queue could not keep a row.
    #[error("cannot write to the dead-letter queue: {0}")]
    DeadLetter(std::io::Error),
    /// The circuit breaker is open and fails fast.
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
}

/// Counters of one sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// Rows acknowledged by BigQuery.
    pub rows_written: u64,
    /// Requests acknowledged.
    pub requests: u64,
    /// Bytes of acknowledged requests.
    pub bytes_written: u64,
    /// Requests sent again after a temporary failure.
    pub retries: u64,
    /// Streams opened again after one ended.
    pub reconnects: u64,
    /// Rows BigQuery refused (dead-lettered or kept for [`TableSink::take_refused`]).
    pub rows_refused: u64,
    /// Rows in requests sent again after a failure whose outcome was unknown (at-least-once
    /// duplicates are at most this many on the default stream).
    pub rows_resent_ambiguous: u64,
}

impl std::ops::AddAssign for SinkStats {
    fn add_assign(&mut self, s: SinkStats) {
        self.rows_written += s.rows_written;
        self.requests += s.requests;
        self.bytes_written += s.bytes_written;
        self.retries += s.retries;
        self.reconnects += s.reconnects;
        self.rows_refused += s.rows_refused;
        self.rows_resent_ambiguous += s.rows_resent_ambiguous;
    }
}

struct InFlight {
    request: AppendRequest,
    ack: Option<AckFuture>,
    /// The circuit breaker's permission for the current attempt.
    permit: Option<Permit>,
    /// Which connection it was sent on (see `TableSink::generation`).
    generation: u64,
    sent_at: Instant,
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

    fn inflight_bytes(&self) -> usize {
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

    /// Encodes one row into the current batch, sending the batch when it is full. A row that
    /// cannot be encoded comes back with its error (`Ok(Some(..))`) and nothing else changes.
    pub async fn write(&mut self, record: Record) -> Result<Option<(RowError, Record)>, EngineError> {
        self.admit().await?;
        let row_start = self.buf.len();
        if let Err(e) = self.encoder.encode_row_entry(&record, &mut self.buf) {
            return Ok(Some((e, record)));
        }
        match self.place_row(row_start).await? {
            Some(e) => Ok(Some((e, record))),
            // Encoded: the record is no longer needed (a refused row is read back from its bytes).
            None => Ok(None),
        }
    }

    /// Takes rows the encoding workers encoded (see [`crate::workers`]); returns the rows
    /// refused, each with its position in the chunk. Rows encoded for another schema than the
    /// sink's current one (it changed meanwhile) are encoded again.
    pub async fn write_encoded(
        &mut self,
        chunk: crate::workers::EncodedRows,
    ) -> Result<Vec<(usize, RowError, Record)>, EngineError> {
        let crate::workers::EncodedRows { descriptor, rows, ends, mut refused, positions } = chunk;
        if ends.is_empty() {
            return Ok(refused);
        }
        if !descriptor.same_as(self.encoder.descriptor()) {
            // Encoded for a schema that changed since: read back and encoded again.
            let records = match bqsink_transport::request::decode_entries(&descriptor, &rows) {
                Ok(r) => r,
                Err(e) => return Err(EngineError::Transport(e)),
            };
            for (record, i) in records.into_iter().zip(positions) {
                if let Some((e, r)) = self.write(record).await? {
                    refused.push((i, e, r));
                }
            }
            refused.sort_by_key(|r| r.0);
            return Ok(refused);
        }
        if self.batch_rows == 0 && rows.len() <= self.limits.max_bytes && ends.len() <= self.limits.max_rows {
            // The common case: the chunk is the next request's body as it is, no copy.
            self.buf = rows;
            self.batch_rows = ends.len();
            self.batch_started = Some(Instant::now());
            if self.batch_rows >= self.limits.max_rows || self.buf.len() >= self.limits.max_bytes {
                self.send_buffered().await?;
            }
            return Ok(refused);
        }
        let mut start = 0;
        let mut rest = ends.into_iter().zip(positions);
        while let Some((end, i)) = rest.next() {
            let entry = start..end;
            start = end;
            let row_start = self.buf.len();
            self.buf.extend_from_slice(&rows[entry.clone()]);
            match self.place_row(row_start).await {
                Ok(Some(e)) => refused.push((i, e, decode_one(&descriptor, &rows[entry]))),
                Ok(None) => {}
                Err(e) => {
                    // The rows not yet placed are refused with the reason, never dropped.
                    let message = format!("not sent: {e}");
                    let mut from = start;
                    for (end, _) in rest {
                        let record = decode_one(&descriptor, &rows[from..end]);
                        from = end;
                        self.refuse(RowError::new("", message.clone()), record)?;
                    }
                    return Err(e);
                }
            }
        }
        refused.sort_by_key(|r| r.0);
        Ok(refused)
    }

    /// Refuses new rows while the breaker is open, when configured to fail fast (call it before
    /// [`TableSink::write_encoded`]; `write` checks by itself). Once accepted, a row is never
    /// failed fast.
    pub async fn admit(&self) -> Result<(), EngineError> {
        let breaker = &self.shared.breaker;
        if breaker.config().when_open == WhenOpen::FailFast && breaker.state() != BreakerState::Closed {
            drop(breaker.acquire().await?);
        }
        Ok(())
    }

    /// The schema rows are encoded with now.
    pub fn descriptor(&self) -> &RowDescriptor {
        self.encoder.descriptor()
    }

    /// Accepts the row just appended to the batch buffer at `row_start`: refuses it when it is
    /// over the request limit, cuts the batch into a request when it is full.
    async fn place_row(&mut self, row_start: usize) -> Result<Option<RowError>, EngineError> {
        let row_len = self.buf.len() - row_start;
        if row_len > MAX_REQUEST_BYTES - HEADER_RESERVE_BYTES {
            self.buf.truncate(row_start);
            let e = RowError::new(
                "",
                format!("the row is {row_len} bytes encoded, over the AppendRows request limit of {MAX_REQUEST_BYTES} bytes"),
            );
            return Ok(Some(e));
        }
        if self.buf.len() > self.limits.max_bytes && self.batch_rows > 0 {
            // This row would overflow the request: send the rows before it, keep it.
            let earlier = self.buf.split_to(row_start);
            let n = std::mem::replace(&mut self.batch_rows, 1);
            self.batch_started = Some(Instant::now());
            self.send(earlier, n).await?;
            return self.send_if_full().await.map(|()| None);
        }
        self.batch_rows += 1;
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        self.send_if_full().await.map(|()| None)
    }

    async fn send_if_full(&mut self) -> Result<(), EngineError> {
        if self.batch_rows >= self.limits.max_rows || self.buf.len() >= self.limits.max_bytes {
            self.send_buffered().await?;
        }
        Ok(())
    }

    /// Sends what is buffered and waits for every acknowledgement. In Batch mode the rows are
    /// still invisible until [`TableSink::finish`].
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        self.send_buffered().await?;
        self.settle_all().await
    }

    /// Settles every request in flight, oldest first.
    async fn settle_all(&mut self) -> Result<(), EngineError> {
        while let Some(f) = self.inflight.pop_front() {
            self.settle(f).await?;
        }
        Ok(())
    }

    /// Flushes, then ends the stream: ExactlyOnce finalizes its COMMITTED stream; Batch
    /// finalizes its PENDING stream and commits it, so all its rows appear at once (or, on
    /// error, none do).
    pub async fn finish(&mut self) -> Result<(), EngineError> {
        self.flush().await?;
        self.commit().await
    }

    /// Ends the stream after a [`TableSink::flush`]: finalizes it and, in Batch mode, commits
    /// it (so a caller can check the table in between, as WRITE_EMPTY does).
    pub async fn commit(&mut self) -> Result<(), EngineError> {
        let Some(name) = self.write_stream.clone() else { return Ok(()) };
        match self.mode {
            WriteMode::Streaming => {}
            WriteMode::ExactlyOnce => {
                self.client.finalize_write_stream(&name).await?;
            }
            WriteMode::Batch => {
                let rows = self.client.finalize_write_stream(&name).await?;
                if rows != self.acked_end {
                    return Err(EngineError::Transport(TransportError::Protocol(format!(
                        "the pending stream holds {rows} rows but {} were acknowledged; not committing",
                        self.acked_end
                    ))));
                }
                self.client.batch_commit(&self.table, std::slice::from_ref(&name)).await?;
            }
        }
        self.write_stream = None;
        self.stream = None;
        self.next_offset = 0;
        self.acked_end = 0;
        Ok(())
    }

    /// Rows encoded but not yet acknowledged.
    pub fn pending_rows(&self) -> usize {
        self.batch_rows + self.inflight.iter().map(|f| f.request.row_count()).sum::<usize>()
    }

    /// Bytes of requests awaiting acknowledgement plus the batch being built.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() + self.inflight.iter().map(|f| f.request.encoded_len()).sum::<usize>()
    }

    /// Sends the current batch when its oldest row has waited at least `age` (the batch
    /// timeout), without waiting for acknowledgements beyond the in-flight bound.
    pub async fn send_if_older_than(&mut self, age: Duration) -> Result<(), EngineError> {
        match self.batch_started {
            Some(t) if t.elapsed() >= age => self.send_buffered().await?,
            _ => {}
        }
        self.settle_answered().await
    }

    /// Settles the requests at the front of the queue whose answer has already arrived, so
    /// counters and metrics stay current while the writer is idle. Never waits for an answer.
    pub async fn settle_answered(&mut self) -> Result<(), EngineError> {
        while self.inflight.front_mut().is_some_and(|f| f.ack.as_mut().is_some_and(AckFuture::is_ready)) {
            match self.inflight.pop_front() {
                Some(f) => self.settle(f).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// Replaces the schema rows are encoded with (after a schema change). Rows already
    /// encoded are sent first with the old writer schema; they stay valid because BigQuery
    /// changes only add or relax columns.
    pub async fn set_descriptor(&mut self, descriptor: RowDescriptor) -> Result<(), EngineError> {
        self.send_buffered().await?;
        self.encoder = RowEncoder::new(descriptor);
        Ok(())
    }

    async fn send_buffered(&mut self) -> Result<(), EngineError> {
        if self.batch_rows == 0 {
            return Ok(());
        }
        let rows = self.buf.split();
        let n = std::mem::take(&mut self.batch_rows);
        self.batch_started = None;
        self.send(rows, n).await
    }

    async fn stream_name(&mut self) -> Result<String, TransportError> {
        if let Some(name) = &self.write_stream {
            return Ok(name.clone());
        }
        let kind = if self.mode == WriteMode::Batch { StreamKind::Pending } else { StreamKind::Committed };
        let info = self.client.create_write_stream(&self.table, kind).await?;
        debug!(table = %self.table, stream = %info.name, ?kind, "created write stream");
        self.write_stream = Some(info.name.clone());
        self.next_offset = 0;
        self.acked_end = 0;
        Ok(info.name)
    }

    fn uses_offsets(&self) -> bool {
        self.mode != WriteMode::Streaming
    }

    #[tracing::instrument(level = "debug", name = "batch", skip_all, fields(table = %self.table, rows = n, bytes = rows.len()))]
    async fn send(&mut self, rows: BytesMut, n: usize) -> Result<(), EngineError> {
        let rows = rows.freeze();
        let mut unsent = Some(rows.clone());
        let result = self.send_inner(rows, n, &mut unsent).await;
        if let (Err(e), Some(rows)) = (&result, unsent.take()) {
            // Failed before the request was queued: the rows are refused with the reason,
            // never dropped.
            let message = format!("not sent: {e}");
            let descriptor = self.encoder.descriptor().clone();
            for record in decode_all(&descriptor, &rows) {
                self.refuse(RowError::new("", message.clone()), record)?;
            }
        }
        result
    }

    /// Sends one request; `unsent` is cleared once the request is queued in flight.
    async fn send_inner(
        &mut self,
        rows: bytes::Bytes,
        n: usize,
        unsent: &mut Option<bytes::Bytes>,
    ) -> Result<(), EngineError> {
        // After a connection died, or offsets went stale, the requests in flight are settled
        // first and in order: a newer request must never reach the stream before them.
        let stale = self.inflight.front().is_some_and(|f| f.generation < self.generation);
        if self.resync || stale || self.stream.as_ref().is_some_and(AppendStream::is_closed) {
            self.settle_all().await?;
            if self.resync {
                self.next_offset = self.acked_end;
                self.resync = false;
            }
        }
        // Resilience layers, outermost first: rate limiter, circuit breaker, flow control
        // (the in-flight bounds below), retry and deadline (in `settle`), connection.
        let waited = self.shared.limiters.acquire(&self.table.table, n as u32, rows.len() as u32).await;
        self.shared.metrics.record_rate_limit_wait(waited);
        if self.shared.breaker.state() != BreakerState::Closed {
            // A probe may be among the requests in flight: settle them so the breaker learns
            // its outcome before this request asks for a permit.
            self.settle_all().await?;
        }
        let permit = self.wait_for_permit().await?;
        // The half-open probe decides for every sink sharing the breaker: wait for its outcome
        // now rather than leaving it queued behind this sink's next writes.
        let probe = permit.is_probe();
        let name = self.stream_name().await?;
        let offset = self.uses_offsets().then_some(self.next_offset);
        let request = AppendRequest::new(&name, self.encoder.descriptor(), rows, n, offset)?;
        if offset.is_some() {
            self.next_offset += n as i64;
        }
        self.shared.metrics.add_in_flight(n as u64, request.encoded_len() as u64);
        // A request that cannot be handed to a connection now (it closed under us) is queued
        // unsent and marked stale, so it is settled — sent, in order — before anything newer.
        let (ack, generation) = match self.dispatch(request.clone()).await {
            Ok(ack) => (Some(ack), self.generation),
            Err(e) => {
                debug!(table = %self.table, error = %e, "could not send now; queued for resend");
                (None, 0)
            }
        };
        *unsent = None;
        self.inflight.push_back(InFlight { request, ack, permit: Some(permit), generation, sent_at: Instant::now() });
        if probe {
            self.settle_all().await?;
        }
        while self.inflight.len() > self.limits.max_inflight || self.inflight_bytes() > self.limits.max_inflight_bytes {
            match self.inflight.pop_front() {
                Some(f) => self.settle(f).await?,
                None => break,
            }
        }
        self.settle_answered().await
    }

    async fn dispatch(&mut self, request: AppendRequest) -> Result<AckFuture, TransportError> {
        if let (Some(pool), WriteMode::Streaming) = (&self.pool, self.mode) {
            let (stream, generation, replaced) = pool.connection(request.write_stream());
            if replaced {
                self.stats.reconnects += 1;
                self.shared.metrics.record_reconnect();
            }
            self.generation = generation;
            self.stream = Some(stream.clone());
            return stream.send(request).await;
        }
        let stream = match &self.stream {
            Some(s) if !s.is_closed() => s.clone(),
            _ => {
                if self.stream.is_some() {
                    self.stats.reconnects += 1;
                    self.shared.metrics.record_reconnect();
                }
                let name = self.stream_name().await?;
                let s = self.client.append_stream(&name);
                self.generation += 1;
                self.stream = Some(s.clone());
                s
            }
        };
        stream.send(request).await
    }

    /// Abandons the current connection (hung, or failed): its waiting requests fail as closed
    /// and are resent by `settle`.
    fn drop_connection(&mut self) {
        if let Some(s) = self.stream.take() {
            s.abort();
            self.stats.reconnects += 1;
            self.shared.metrics.record_reconnect();
        }
    }

    /// Sends `request` (fresh) and waits for its answer within the deadline.
    async fn round_trip(&mut self, f: &mut InFlight) -> Result<bqsink_transport::AppendAck, TransportError> {
        let ack = match f.ack.take() {
            Some(a) => a,
            None => {
                if f.permit.is_none() {
                    // Retries sit inside the breaker: take a permit only if one is free now, so
                    // the breaker still hears about this attempt without waiting on itself.
                    f.permit = self.try_permit().await;
                }
                f.sent_at = Instant::now();
                self.dispatch(f.request.clone()).await?
            }
        };
        let remaining = self.retry.request_timeout.saturating_sub(f.sent_at.elapsed());
        match tokio::time::timeout(remaining, ack).await {
            Ok(result) => result,
            Err(_) => {
                warn!(table = %self.table, "no answer within {:?}; replacing the connection", self.retry.request_timeout);
                self.drop_connection();
                Err(TransportError::Grpc {
                    code: StatusCode::DeadlineExceeded,
                    message: format!("no answer within {:?}", self.retry.request_timeout),
                })
            }
        }
    }

    /// Waits for one request's outcome and deals with every failure (see the module docs).
    #[tracing::instrument(level = "debug", name = "request", skip_all, fields(table = %self.table, rows = first.request.row_count(), offset = ?first.request.offset()))]
    async fn settle(&mut self, first: InFlight) -> Result<(), EngineError> {
        let (rows, bytes) = (first.request.row_count() as u64, first.request.encoded_len() as u64);
        let mut work = VecDeque::from([first]);
        let result = self.settle_work(&mut work).await;
        if let Err(e) = &result {
            // BigQuery could not take these rows within the retry policy: they are not lost,
            // they are dead-lettered with the reason, and the caller hears about the failure.
            let message = format!("not written after retries: {e}");
            for f in work.drain(..) {
                for record in decode_request(&f.request) {
                    self.refuse(RowError::new("", message.clone()), record)?;
                }
            }
        }
        self.shared.metrics.sub_in_flight(rows, bytes);
        result
    }

    /// Works through `work`; on error the failed request is back at its front.
    async fn settle_work(&mut self, work: &mut VecDeque<InFlight>) -> Result<(), EngineError> {
        while let Some(f) = work.pop_front() {
            if let Err((e, f)) = self.settle_one(f, work).await {
                work.push_front(f);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Settles one request. Bisected halves are pushed to the front of `work`. On a final
    /// failure the request is handed back with the error.
    async fn settle_one(
        &mut self,
        mut f: InFlight,
        work: &mut VecDeque<InFlight>,
    ) -> Result<(), (EngineError, InFlight)> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            if self.resync && f.ack.is_none() {
                // Offsets moved below this request: it goes at the stream's end.
                match f.request.with_offset(Some(self.acked_end)) {
                    Ok(r) => f.request = r,
                    Err(e) => return Err((e.into(), f)),
                }
            }
            let outcome = self.round_trip(&mut f).await;
            let offset = f.request.offset();
            self.report_to_breaker(&mut f, &outcome);
            match outcome {
                Ok(ack) => {
                    self.acknowledged(&f);
                    if let Some(schema) = ack.updated_schema {
                        debug!(table = %self.table, columns = schema.fields.len(), "BigQuery reports a new table schema");
                        self.updated_schema = Some(schema);
                    }
                    return Ok(());
                }
                // With offsets, ALREADY_EXISTS means an earlier attempt of these very rows was
                // written: they are in the table once, which is the point.
                Err(TransportError::Append { code: StatusCode::AlreadyExists, .. }) if offset.is_some() => {
                    debug!(table = %self.table, ?offset, "rows already written");
                    self.acknowledged(&f);
                    return Ok(());
                }
                Err(TransportError::Append { code: StatusCode::OutOfRange, message, .. }) if offset.is_some() => {
                    // The stream's end is not where this request expected: send it again at the
                    // end acknowledged so far (bounded like any retry).
                    if attempt >= self.retry.max_attempts {
                        let e = TransportError::Append { code: StatusCode::OutOfRange, message, rejected: Vec::new() };
                        return Err((e.into(), f));
                    }
                    debug!(table = %self.table, ?offset, end = self.acked_end, %message, "offset out of range; resending at the stream's end");
                    attempt += 1;
                    self.resync = true;
                }
                Err(TransportError::Append { rejected, message, .. }) if !rejected.is_empty() => {
                    let bad: std::collections::BTreeMap<usize, String> =
                        rejected.into_iter().map(|r| (r.index as usize, r.message)).collect();
                    let good: Vec<usize> = (0..f.request.row_count()).filter(|i| !bad.contains_key(i)).collect();
                    debug!(table = %self.table, refused = bad.len(), %message, "rows refused; resending the others");
                    let subset = match f.request.subset(&good, offset.map(|_| self.acked_end)) {
                        Ok(r) => r,
                        Err(e) => return Err((e.into(), f)),
                    };
                    for (&i, m) in &bad {
                        let record = f.request.decode_row(i).unwrap_or_else(|e| undecodable(&e));
                        if let Err(e) = self.refuse(RowError::new(column_of(m), m.clone()), record) {
                            return Err((e, f));
                        }
                    }
                    if good.is_empty() {
                        return Ok(());
                    }
                    if self.uses_offsets() {
                        self.resync = true;
                    }
                    f.request = subset;
                }
                Err(e) if is_data_error(&e) => {
                    if matches!(e, TransportError::Grpc { .. }) {
                        // A stream-level refusal closes the connection.
                        self.drop_connection();
                    }
                    if self.uses_offsets() {
                        self.resync = true;
                    }
                    if f.request.row_count() == 1 {
                        let record = f.request.decode_row(0).unwrap_or_else(|e| undecodable(&e));
                        let message = error_message(&e);
                        let mut column = column_of(&message);
                        if column.is_empty() {
                            column = guess_column(&message, f.request.descriptor().schema(), &record);
                        }
                        return self.refuse(RowError::new(column, message), record).map_err(|e| (e, f));
                    }
                    // Bisect: the halves go first, in order, at the stream's end.
                    let n = f.request.row_count();
                    let halves = (
                        f.request.subset(&(0..n / 2).collect::<Vec<_>>(), offset),
                        f.request.subset(&(n / 2..n).collect::<Vec<_>>(), offset),
                    );
                    let (first_req, second_req) = match halves {
                        (Ok(a), Ok(b)) => (a, b),
                        (Err(e), _) | (_, Err(e)) => return Err((e.into(), f)),
                    };
                    debug!(table = %self.table, rows = n, error = %e, "request refused for its data; bisecting");
                    let half =
                        |request| InFlight { request, ack: None, permit: None, generation: 0, sent_at: Instant::now() };
                    work.push_front(half(second_req));
                    work.push_front(half(first_req));
                    return Ok(());
                }
                Err(e) => {
                    let within_time = started.elapsed() < self.retry.max_elapsed;
                    let Some(wait) = self.retry.backoff(&e, attempt).filter(|_| within_time) else {
                        return Err((e.into(), f));
                    };
                    if !self.budget.withdraw() {
                        warn!(table = %self.table, error = %e, "retry budget spent");
                        return Err((e.into(), f));
                    }
                    self.shared.metrics.record_retry();
                    warn!(table = %self.table, attempt, error = %e, "append failed; retrying in {wait:?}");
                    if !self.uses_offsets() {
                        self.stats.rows_resent_ambiguous += f.request.row_count() as u64;
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    self.stats.retries += 1;
                }
            }
        }
    }

    /// A breaker permit for rows already accepted by `write`: it waits for the breaker even
    /// when new writes fail fast, within the retry time limit.
    async fn wait_for_permit(&self) -> Result<Permit, TransportError> {
        let deadline = Instant::now() + self.retry.max_elapsed;
        loop {
            match self.shared.breaker.acquire().await {
                Ok(p) => return Ok(p),
                Err(open) if Instant::now() < deadline => {
                    tokio::time::sleep(open.retry_after.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
                }
                Err(open) => {
                    return Err(TransportError::Grpc { code: StatusCode::Unavailable, message: open.to_string() })
                }
            }
        }
    }

    /// A breaker permit if one is free right now.
    async fn try_permit(&self) -> Option<Permit> {
        match tokio::time::timeout(Duration::ZERO, self.shared.breaker.acquire()).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }

    /// Tells the breaker how the attempt went: BigQuery's health, not the data's.
    fn report_to_breaker(&self, f: &mut InFlight, outcome: &Result<bqsink_transport::AppendAck, TransportError>) {
        let Some(permit) = f.permit.take() else { return };
        match outcome {
            Err(e) if e.code() == Some(StatusCode::ResourceExhausted) => permit.quota_exceeded(),
            Err(e) if e.is_retryable() => permit.failure(),
            _ => permit.success(),
        }
        if outcome.is_err() {
            self.shared.metrics.record_error();
        }
        self.shared.metrics.set_breaker_state(self.shared.breaker.state());
    }

    fn acknowledged(&mut self, f: &InFlight) {
        let rows = f.request.row_count() as u64;
        self.shared.metrics.record_batch(rows, f.request.encoded_len() as u64, f.sent_at.elapsed());
        self.stats.rows_written += rows;
        self.stats.bytes_written += f.request.encoded_len() as u64;
        self.stats.requests += 1;
        self.budget.deposit();
        if let Some(o) = f.request.offset() {
            self.acked_end = self.acked_end.max(o + rows as i64);
        }
    }

    fn refuse(&mut self, error: RowError, record: Record) -> Result<(), EngineError> {
        self.stats.rows_refused += 1;
        self.shared.metrics.record_dead_letter(1);
        match &self.dlq {
            Some(q) => q
                .push(DeadLetter::new(Reason::from_row_error(&self.table, &error), Payload::Record(record)))
                .map_err(EngineError::DeadLetter),
            None => {
                self.refused.push((error, record));
                Ok(())
            }
        }
    }
}

/// One encoded row (a `serialized_rows` entry) read back; see [`undecodable`].
fn decode_one(descriptor: &bqsink_transport::RowDescriptor, entry: &[u8]) -> Record {
    match bqsink_transport::request::decode_entries(descriptor, entry) {
        Ok(mut rows) if rows.len() == 1 => rows.pop().unwrap_or_default(),
        Ok(rows) => undecodable(&format!("{} rows in one entry", rows.len())),
        Err(e) => undecodable(&e),
    }
}

/// Every row of a batch's bytes read back, or one placeholder per row that cannot be.
fn decode_all(descriptor: &bqsink_transport::RowDescriptor, rows: &[u8]) -> Vec<Record> {
    bqsink_transport::request::decode_entries(descriptor, rows).unwrap_or_else(|e| vec![undecodable(&e)])
}

fn decode_request(request: &AppendRequest) -> Vec<Record> {
    match request.decode_rows() {
        Ok(rows) => rows,
        Err(e) => (0..request.row_count()).map(|_| undecodable(&e)).collect(),
    }
}

/// A row whose bytes cannot be read back (a bug, not bad data): kept as a record that says so,
/// so the row is still counted and reported.
pub(crate) fn undecodable(e: &dyn std::fmt::Display) -> Record {
    Record::new().with("_bqsink_undecodable_row", e.to_string())
}

/// Whether a failure means "these rows cannot be stored" rather than "try again".
fn is_data_error(e: &TransportError) -> bool {
    matches!(
        e.code(),
        Some(StatusCode::InvalidArgument) | Some(StatusCode::Unknown) if !e.is_retryable()
    ) && !is_schema_error(e)
}

/// A refusal of the writer schema itself (no row is to blame): not bisected.
fn is_schema_error(e: &TransportError) -> bool {
    let m = error_message(e).to_ascii_lowercase();
    m.contains("input schema") || m.contains("writer schema") || m.contains("proto schema")
}

fn error_message(e: &TransportError) -> String {
    match e {
        TransportError::Grpc { message, .. } | TransportError::Append { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The column a server message names, when it quotes one (`… field 'a.b' …`, `… column "x" …`).
fn column_of(message: &str) -> String {
    for key in ["field ", "column ", "Field ", "Column "] {
        if let Some(rest) = message.split(key).nth(1) {
            let rest = rest.trim_start();
            if let Some(q) = rest.chars().next().filter(|c| matches!(c, '\'' | '"' | '`')) {
                if let Some(name) = rest[1..].split(q).next() {
                    return name.to_owned();
                }
            }
            let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.')).collect();
            if !word.is_empty() {
                return word;
            }
        }
    }
    String::new()
}

/// When a server refuses a row without naming a column (some emulators): the one non-null
/// column whose type the message talks about, if there is exactly one.
fn guess_column(message: &str, schema: &bqsink_core::Schema, record: &Record) -> String {
    use bqsink_core::FieldType as T;
    let m = message.to_ascii_lowercase();
    let types: &[T] = if m.contains("geometry") || m.contains("geography") || m.contains("wkt") {
        &[T::Geography]
    } else if m.contains("json") {
        &[T::Json]
    } else if m.contains("decimal") || m.contains("numeric") {
        &[T::Numeric, T::BigNumeric]
    } else if m.contains("timestamp") {
        &[T::Timestamp]
    } else if m.contains("datetime") {
        &[T::DateTime]
    } else if m.contains("date") {
        &[T::Date]
    } else if m.contains("time") {
        &[T::Time]
    } else {
        return String::new();
    };
    let candidates: Vec<&str> = schema
        .fields
        .iter()
        .filter(|f| types.contains(&f.field_type))
        .filter(|f| record.get(&f.name).is_some_and(|v| !v.is_null()))
        .map(|f| f.name.as_str())
        .collect();
    match candidates.as_slice() {
        [one] => (*one).to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_columns_are_guessed_only_when_unambiguous() {
        let schema = bqsink_core::Schema::new(vec![
            bqsink_core::Field::new("id", bqsink_core::FieldType::Int64),
            bqsink_core::Field::new("g", bqsink_core::FieldType::Geography),
            bqsink_core::Field::new("h", bqsink_core::FieldType::Geography),
        ]);
        let one = Record::new().with("id", 1).with("g", "POINT(");
        assert_eq!(guess_column("Failed to parse geometry", &schema, &one), "g");
        let two = one.clone().with("h", "POINT(1 1)");
        assert_eq!(guess_column("Failed to parse geometry", &schema, &two), "");
        assert_eq!(guess_column("something odd", &schema, &one), "");
    }

    #[test]
    fn columns_are_read_from_server_messages() {
        assert_eq!(column_of("Field 'outer.leaf': value out of range"), "outer.leaf");
        assert_eq!(column_of("Could not convert value to geography for column \"g\""), "g");
        assert_eq!(column_of("row 3: field d is out of range"), "d");
        assert_eq!(column_of("something else"), "");
    }

    #[test]
    fn data_errors_are_bisected_schema_errors_are_not() {
        let e = |code, m: &str| TransportError::Grpc { code, message: m.into() };
        assert!(is_data_error(&e(StatusCode::InvalidArgument, "bad value for field g")));
        assert!(is_data_error(&e(StatusCode::Unknown, "conversion failed")));
        assert!(!is_data_error(&e(StatusCode::InvalidArgument, "Input schema has more fields than BigQuery schema")));
        assert!(!is_data_error(&e(StatusCode::Unavailable, "try again")));
        assert!(!is_data_error(&e(StatusCode::PermissionDenied, "no")));
    }
}
