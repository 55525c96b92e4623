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
}
