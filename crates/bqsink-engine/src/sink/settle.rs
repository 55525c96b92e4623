//! The acknowledgements, oldest first: waiting for a request's outcome, counting what was
//! written, and dead-lettering what could not be within the retry policy.

use std::collections::VecDeque;

use bqsink_transport::AckFuture;

use super::{EngineError, InFlight, TableSink};

impl TableSink {
    /// Settles every request in flight, oldest first.
    pub(super) async fn settle_all(&mut self) -> Result<(), EngineError> {
        while let Some(f) = self.inflight.pop_front() {
            self.settle(f).await?;
        }
        Ok(())
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

    /// Waits for one request's outcome and deals with every failure (see the module docs).
    #[tracing::instrument(level = "debug", name = "request", skip_all, fields(table = %self.table, rows = first.request.row_count(), offset = ?first.request.offset()))]
    pub(super) async fn settle(&mut self, first: InFlight) -> Result<(), EngineError> {
        let (rows, bytes) = (first.request.row_count() as u64, first.request.encoded_len() as u64);
        let mut work = VecDeque::from([first]);
        let result = self.settle_work(&mut work).await;
        self.shared.metrics.sub_in_flight(rows, bytes);
        if let Err(e) = &result {
            // BigQuery could not take these rows within the retry policy: they are not lost,
            // every row the sink holds is dead-lettered with its fate, and the caller hears
            // about the failure.
            let work: Vec<InFlight> = work.drain(..).collect();
            self.give_up(&self.cause_of(e), work)?;
        } else {
            self.requests_settled += 1;
            self.advance_marks();
        }
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

    pub(super) fn acknowledged(&mut self, f: &InFlight) -> Result<(), EngineError> {
        let rows = f.request.row_count() as u64;
        self.shared.metrics.record_batch(rows, f.request.encoded_len() as u64, f.sent_at.elapsed());
        if self.mode == bqsink_core::WriteMode::Batch {
            // Written only once committed; kept until then in case it never is.
            self.stats.rows_pending += rows;
            self.pending
                .keep(f.request.descriptor(), f.request.rows(), f.request.row_count())
                .map_err(|e| EngineError::GaveUp(format!("cannot keep the uncommitted rows on disk: {e}")))?;
        } else {
            self.stats.rows_written += rows;
        }
        self.stats.bytes_written += f.request.encoded_len() as u64;
        self.stats.requests += 1;
        self.budget.deposit();
        if let Some(o) = f.request.offset() {
            self.acked_end = self.acked_end.max(o + rows as i64);
        }
        Ok(())
    }
}
