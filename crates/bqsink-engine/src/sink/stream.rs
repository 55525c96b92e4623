//! The write stream's life: the default stream, or one created with the first request
//! (COMMITTED for ExactlyOnce, PENDING for Batch), finalized and committed at the end.

use bqsink_core::WriteMode;
use bqsink_transport::{StreamKind, TransportError};
use tracing::debug;

use super::{EngineError, TableSink};

impl TableSink {
    /// still invisible until [`TableSink::finish`].
    pub async fn flush(&mut self) -> Result<(), EngineError> {
        self.send_buffered().await?;
        self.settle_all().await
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

    pub(super) async fn stream_name(&mut self) -> Result<String, TransportError> {
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

    pub(super) fn uses_offsets(&self) -> bool {
        self.mode != WriteMode::Streaming
    }
}
