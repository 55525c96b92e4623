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
        if let Some(cause) = self.refused_for_good() {
            return Err(EngineError::GaveUp(cause.to_owned()));
        }
        let Some(name) = self.write_stream.clone() else { return Ok(()) };
        match self.mode {
            WriteMode::Streaming => {}
            WriteMode::ExactlyOnce if self.keep_open => {}
            WriteMode::ExactlyOnce => {
                self.unary(self.client.finalize_write_stream(&name)).await?;
            }
            WriteMode::Batch => {
                let finalized = match self.unary(self.client.finalize_write_stream(&name)).await {
                    Ok(rows) if rows != self.acked_end => {
                        Err(EngineError::Transport(TransportError::Protocol(format!(
                            "the pending stream holds {rows} rows but {} were acknowledged; not committing",
                            self.acked_end
                        ))))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = finalized {
                    // Not committed: every row of the stream is dead-lettered as such.
                    self.give_up(&self.cause_of(&e), Vec::new())?;
                    return Err(e);
                }
                if let Err(e) = self.unary(self.client.batch_commit(&self.table, std::slice::from_ref(&name))).await {
                    // A refusal commits nothing; a commit without an answer may have happened.
                    let refused = matches!(&e, EngineError::Transport(t) if !t.is_retryable());
                    let cause = self.cause_of(&e);
                    if refused {
                        self.give_up(&cause, Vec::new())?;
                    } else {
                        self.pending_in_doubt(&cause)?;
                    }
                    return Err(e);
                }
                self.stats.rows_written += std::mem::take(&mut self.stats.rows_pending);
                self.pending.clear();
            }
        }
        self.write_stream = None;
        self.stream = None;
        self.next_offset = 0;
        self.acked_end = 0;
        Ok(())
    }

    /// A unary call (finalize, commit) within the request deadline, given up on abort.
    async fn unary<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, EngineError> {
        let deadline = self.retry.request_timeout;
        tokio::select! {
            r = tokio::time::timeout(deadline, call) => match r {
                Ok(r) => r.map_err(EngineError::Transport),
                Err(_) => Err(EngineError::Transport(TransportError::Grpc {
                    code: bqsink_transport::StatusCode::DeadlineExceeded,
                    message: format!("no answer within {deadline:?}"),
                })),
            },
            reason = self.shared.abort.fired() => Err(EngineError::GaveUp(reason)),
        }
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
