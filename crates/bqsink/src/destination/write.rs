//! The write paths: one row (`write`, `try_write`, `write_row`), many through the encoding
//! workers (`write_batch`, `write_stream`, and the blocking writer), input that never became a
//! row (`dead_letter_raw`); and the timer that sends partial batches.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use bqsink_core::{Record, RowError};
use bqsink_engine::{DeadLetter, EncodedRows, Payload, Reason, TableSink};
use futures::{Stream, StreamExt};
use tracing::warn;

use super::{Destination, Inner};
use crate::Error;

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

impl Destination {
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
                    let message = bqsink_engine::Fate::NotWritten.reason(&e.to_string());
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
        self.place_encoded(base, chunk, refused).await
    }

    /// Hands rows encoded (or transcoded) on the workers to the sink, in order; refused rows
    /// are dead-lettered and collected, numbered `base` + their position.
    pub(super) async fn place_encoded(
        &self,
        base: u64,
        chunk: EncodedRows,
        refused: &mut Vec<RowError>,
    ) -> Result<(), Error> {
        let rows = (chunk.len() + chunk.refused_len()) as u64;
        self.inner.rows_read.fetch_add(rows, Ordering::Relaxed);
        let mut sink = self.inner.sink.lock().await;
        if let Err(e) = sink.admit().await {
            drop(sink);
            // Refused before it was taken (fail fast while the breaker is open): kept with the
            // reason, and the caller hears why.
            let e = Error::from(e);
            let message = bqsink_engine::Fate::NotWritten.reason(&e.to_string());
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
    pub(super) fn refuse(&self, e: RowError, payload: Payload) -> Result<(), Error> {
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

    /// Rows BigQuery refused (after they were encoded) when no dead-letter queue is set, each
    /// with the reason. Rows the encoder refuses are returned by `write` itself.
    pub async fn take_refused_rows(&self) -> Vec<(RowError, Record)> {
        self.inner.sink.lock().await.take_refused()
    }
}

pub(super) fn encoders_gone() -> Error {
    Error::Transport(bqsink_transport::TransportError::StreamClosed("the encoding workers have stopped".into()))
}

/// Sends partial batches whose oldest row has waited `timeout`.
pub(super) async fn batch_timer(inner: Weak<Inner>, timeout: Duration) {
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
