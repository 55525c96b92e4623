//! One table's writer: rows are encoded into a batch buffer, cut into requests by row count and
//! bytes, sent pipelined on an AppendRows stream, and counted as written when acknowledged.

use std::collections::VecDeque;

use bqsink_core::{Record, RowError, TableRef, WriteMode};
use bqsink_transport::request::HEADER_RESERVE_BYTES;
use bqsink_transport::{
    AckFuture, AppendRequest, AppendStream, RowDescriptor, RowEncoder, StatusCode, StreamKind, TransportError,
    WriteClient, MAX_REQUEST_BYTES,
};
use bytes::BytesMut;
use tracing::{debug, warn};

use crate::retry::RetryPolicy;

/// Default rows per request.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Default bytes of rows per request: below the 10 MB AppendRows limit with room for the header.
pub const DEFAULT_BATCH_BYTES: usize = 9_500_000;
/// Default requests awaiting acknowledgement per stream.
pub const DEFAULT_MAX_INFLIGHT: usize = 4;

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
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_rows: DEFAULT_BATCH_ROWS, max_bytes: DEFAULT_BATCH_BYTES, max_inflight: DEFAULT_MAX_INFLIGHT }
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
}

struct InFlight {
    request: AppendRequest,
    ack: AckFuture,
    /// Which connection it was sent on (see `TableSink::generation`).
    generation: u64,
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
    client: WriteClient,
    stream: Option<AppendStream>,
    encoder: RowEncoder,
    buf: BytesMut,
    rows_in_buf: usize,
    /// When the oldest row of the current batch was encoded.
    batch_started: Option<std::time::Instant>,
    limits: BatchLimits,
    retry: RetryPolicy,
    inflight: VecDeque<InFlight>,
    /// Incremented each time a connection is opened.
    generation: u64,
    stats: SinkStats,
}

impl std::fmt::Debug for TableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSink")
            .field("table", &self.table)
            .field("rows_in_buf", &self.rows_in_buf)
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
            client,
            stream: None,
            encoder: RowEncoder::new(descriptor),
            buf: BytesMut::with_capacity(64 * 1024),
            rows_in_buf: 0,
            batch_started: None,
            limits,
            retry,
            inflight: VecDeque::new(),
            generation: 0,
            stats: SinkStats::default(),
        }
    }

    /// The same sink in another write mode (before the first write).
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self.write_stream = (mode == WriteMode::Streaming).then(|| self.table.default_stream());
        self
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

    /// Encodes one row into the current batch, sending the batch when it is full. A row that
    /// cannot be encoded is returned as [`EngineError::Row`] and nothing else changes.
    pub async fn write(&mut self, record: &Record) -> Result<(), EngineError> {
        let row_start = self.buf.len();
        self.encoder.encode_row_entry(record, &mut self.buf).map_err(EngineError::Row)?;
        let row_len = self.buf.len() - row_start;
        if row_len > MAX_REQUEST_BYTES - HEADER_RESERVE_BYTES {
            self.buf.truncate(row_start);
            return Err(EngineError::Row(RowError::new(
                "",
                format!("the row is {row_len} bytes encoded, over the AppendRows request limit of {MAX_REQUEST_BYTES} bytes"),
            )));
        }
        if self.buf.len() > self.limits.max_bytes && self.rows_in_buf > 0 {
            // This row would overflow the request: send the rows before it, keep it.
            let earlier = self.buf.split_to(row_start);
            let n = self.rows_in_buf;
            self.rows_in_buf = 1;
            self.batch_started = Some(std::time::Instant::now());
            self.send(earlier, n).await?;
        } else {
            self.rows_in_buf += 1;
        }
        if self.batch_started.is_none() {
            self.batch_started = Some(std::time::Instant::now());
        }
        if self.rows_in_buf >= self.limits.max_rows || self.buf.len() >= self.limits.max_bytes {
            self.send_buffered().await?;
        }
        Ok(())
    }

    /// Sends what is buffered and waits for every acknowledgement. In Batch mode the rows are
    /// still invisible until [`TableSink::finish`].
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        self.send_buffered().await?;
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
        let Some(name) = self.write_stream.clone() else { return Ok(()) };
        match self.mode {
            WriteMode::Streaming => {}
            WriteMode::ExactlyOnce => {
                self.client.finalize_write_stream(&name).await?;
            }
            WriteMode::Batch => {
                let rows = self.client.finalize_write_stream(&name).await?;
                if rows != self.next_offset {
                    return Err(EngineError::Transport(TransportError::Protocol(format!(
                        "the pending stream holds {rows} rows but {} were sent; not committing",
                        self.next_offset
                    ))));
                }
                self.client.batch_commit(&self.table, std::slice::from_ref(&name)).await?;
            }
        }
        self.write_stream = None;
        self.stream = None;
        self.next_offset = 0;
        Ok(())
    }

    /// Rows encoded but not yet acknowledged.
    pub fn pending_rows(&self) -> usize {
        self.rows_in_buf + self.inflight.iter().map(|f| f.request.row_count()).sum::<usize>()
    }

    /// Sends the current batch when its oldest row has waited at least `age` (the batch
    /// timeout), without waiting for acknowledgements beyond the in-flight bound.
    pub async fn send_if_older_than(&mut self, age: std::time::Duration) -> Result<(), EngineError> {
        match self.batch_started {
            Some(t) if t.elapsed() >= age => self.send_buffered().await,
            _ => Ok(()),
        }
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
        if self.rows_in_buf == 0 {
            return Ok(());
        }
        let rows = self.buf.split();
        let n = std::mem::take(&mut self.rows_in_buf);
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
        Ok(info.name)
    }

    async fn send(&mut self, rows: BytesMut, row_count: usize) -> Result<(), EngineError> {
        // After a connection died, the requests it had in flight are resent first and in
        // order: with offsets, a newer request must never reach the stream before them.
        let stale = self.inflight.front().is_some_and(|f| f.generation < self.generation);
        if stale || self.stream.as_ref().is_some_and(AppendStream::is_closed) {
            while let Some(f) = self.inflight.pop_front() {
                self.settle(f).await?;
            }
        }
        let name = self.stream_name().await?;
        let offset = (self.mode != WriteMode::Streaming).then_some(self.next_offset);
        let request = AppendRequest::new(&name, self.encoder.descriptor(), rows.freeze(), row_count, offset)?;
        if offset.is_some() {
            self.next_offset += row_count as i64;
        }
        let ack = self.dispatch(request.clone()).await?;
        self.inflight.push_back(InFlight { request, ack, generation: self.generation });
        while self.inflight.len() > self.limits.max_inflight {
            if let Some(f) = self.inflight.pop_front() {
                self.settle(f).await?;
            }
        }
        Ok(())
    }

    async fn dispatch(&mut self, request: AppendRequest) -> Result<AckFuture, TransportError> {
        let stream = match &self.stream {
            Some(s) if !s.is_closed() => s.clone(),
            _ => {
                if self.stream.is_some() {
                    self.stats.reconnects += 1;
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

    /// Waits for one request's acknowledgement, resending it after temporary failures.
    async fn settle(&mut self, mut f: InFlight) -> Result<(), EngineError> {
        let mut attempt = 1;
        loop {
            let outcome = match (&mut f.ack).await {
                // With offsets, ALREADY_EXISTS means an earlier attempt of this very request was
                // written: the rows are in the table once, which is the point.
                Err(TransportError::Append { code: StatusCode::AlreadyExists, .. }) if f.request.offset().is_some() => {
                    debug!(table = %self.table, offset = ?f.request.offset(), "rows already written");
                    Ok(Default::default())
                }
                other => other,
            };
            match outcome {
                Ok(ack) => {
                    if let Some(schema) = ack.updated_schema {
                        debug!(table = %self.table, columns = schema.fields.len(), "BigQuery reports a new table schema");
                    }
                    self.stats.rows_written += f.request.row_count() as u64;
                    self.stats.bytes_written += f.request.encoded_len() as u64;
                    self.stats.requests += 1;
                    return Ok(());
                }
                Err(e) => {
                    let Some(wait) = self.retry.backoff(&e, attempt) else {
                        return Err(EngineError::Transport(e));
                    };
                    warn!(table = %self.table, attempt, error = %e, "append failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    self.stats.retries += 1;
                    f.ack = self.dispatch(f.request.clone()).await?;
                }
            }
        }
    }
}
