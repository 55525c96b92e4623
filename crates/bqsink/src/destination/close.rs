//! The end of writing: `flush` (everything acknowledged) and `close` (the stream committed, the
//! WRITE_TRUNCATE copy made, the [`Summary`] reported).

use std::sync::atomic::Ordering;

use bqsink_core::{WriteDisposition, WriteMode};
use tracing::{info, warn};

use super::Destination;
use crate::dlq_flush::flush_dead_letters;
use crate::summary::Summary;
use crate::Error;

impl Destination {
    /// Sends every queued row and waits until BigQuery acknowledged them (in Batch mode they
    /// become visible only at [`Destination::close`]).
    pub async fn flush(&self) -> Result<(), Error> {
        self.take_deferred()?;
        self.inner.sink.lock().await.flush().await?;
        flush_dead_letters(&self.inner.dlq).await?;
        Ok(())
    }

    /// Flushes, ends the stream (Batch: finalizes and commits), and reports what was written.
    /// Every row given to the destination is accounted for: written, or dead-lettered with its
    /// reason. When not every row could be written, the error is [`Error::Incomplete`], which
    /// carries the [`Summary`] all the same.
    pub async fn close(mut self) -> Result<Summary, Error> {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        let mut failure = self.take_deferred().err();
        let inner = &self.inner;
        let mut sink = inner.sink.lock().await;
        if let Err(e) = sink.flush().await {
            failure.get_or_insert(e.into());
        }
        if failure.is_none()
            && sink.mode() == WriteMode::Batch
            && inner.config.write_disposition == WriteDisposition::WriteEmpty
        {
            // Pending rows are invisible until the commit: the table must still be empty now.
            match inner.rest.get_table(&inner.table).await {
                Ok(info) => {
                    let rows = info.and_then(|i| i.num_rows).unwrap_or(0);
                    if rows > 0 {
                        failure = Some(Error::TableNotEmpty { table: inner.table.clone(), rows });
                    }
                }
                Err(e) => failure = Some(e.into()),
            }
        }
        if failure.is_none() {
            if let Err(e) = sink.commit().await {
                failure = Some(e.into());
            }
        }
        match &failure {
            // Whatever the sink still holds is dead-lettered with its fate; in Batch mode the
            // pending stream is never committed.
            Some(e) => sink.abandon(&e.to_string())?,
            None => {
                if let Some(staging) = &inner.staging {
                    // WRITE_TRUNCATE: the committed rows replace the table's in one copy job.
                    inner.rest.replace_table_from(staging, &inner.table).await?;
                    info!(table = %inner.table, rows = sink.stats().rows_written, "replaced the table's rows");
                    if let Err(e) = inner.rest.delete_table(staging).await {
                        warn!(%staging, error = %e, "could not delete the staging table; it expires by itself within a day");
                    }
                }
            }
        }
        flush_dead_letters(&inner.dlq).await?;
        let s = sink.stats();
        // Rows BigQuery itself refused, or the sink gave up on, were dead-lettered by the sink,
        // or kept for the caller.
        let (server_dead, server_kept) = if inner.dlq.is_some() { (s.rows_refused, 0) } else { (0, s.rows_refused) };
        let summary = Summary {
            rows_read: inner.rows_read.load(Ordering::Relaxed),
            rows_written: s.rows_written,
            rows_dead_lettered: inner.rows_dead_lettered.load(Ordering::Relaxed) + server_dead,
            rows_in_doubt: s.rows_in_doubt,
            rows_rejected: inner.rows_rejected.load(Ordering::Relaxed) + server_kept,
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

    /// Gives up at once: whatever waits for an answer, a backoff or the circuit breaker stops
    /// waiting, and every row not yet written is dead-lettered with its fate and `reason` (a
    /// second Ctrl-C, a grace period that ran out). Call [`Destination::close`] afterwards for
    /// the summary.
    pub fn abort(&self, reason: impl Into<String>) {
        self.inner.shared.abort.fire(reason);
    }

    /// A handle that aborts this destination (see [`Destination::abort`]) from anywhere, say
    /// a signal handler or a timer, while the destination itself is busy.
    pub fn abort_handle(&self) -> crate::Abort {
        self.inner.shared.abort.clone()
    }
}
