//! Requests onto a connection: through the rate limiter and the circuit breaker, in order
//! behind older requests, bounded in flight; and one request's round trip within its deadline.

use std::time::Instant;

use bqsink_core::WriteMode;
use bqsink_transport::{AckFuture, AppendRequest, AppendStream, StatusCode, TransportError};
use bytes::BytesMut;
use tracing::{debug, warn};

use super::refused::decode_all;
use super::{EngineError, InFlight, TableSink};
use crate::breaker::BreakerState;
use crate::dlq::Fate;

impl TableSink {
    /// Sends `n` encoded rows as one request; rows that cannot be sent are refused with the reason.
    #[tracing::instrument(level = "debug", name = "batch", skip_all, fields(table = %self.table, rows = n, bytes = rows.len()))]
    pub(super) async fn send(&mut self, rows: BytesMut, n: usize) -> Result<(), EngineError> {
        let rows = rows.freeze();
        let mut unsent = Some(rows.clone());
        let result = match self.refused_for_good() {
            Some(cause) => Err(EngineError::GaveUp(cause.to_owned())),
            None => self.send_inner(rows, n, &mut unsent).await,
        };
        if let (Err(e), Some(rows)) = (&result, unsent.take()) {
            // Failed before the request was queued: the rows are dead-lettered as not
            // written, never dropped.
            let cause = self.cause_of(e);
            let descriptor = self.encoder.descriptor().clone();
            for record in decode_all(&descriptor, &rows) {
                self.refuse_as(Fate::NotWritten, &cause, record)?;
            }
            if self.mode == WriteMode::Batch {
                // A pending stream missing rows must not be committed.
                self.give_up(&cause, Vec::new())?;
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
        self.requests_sent += 1;
        self.inflight.push_back(InFlight {
            request,
            ack,
            permit: Some(permit),
            generation,
            sent_at: Instant::now(),
            maybe_stored: false,
        });
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
    pub(super) fn drop_connection(&mut self) {
        if let Some(s) = self.stream.take() {
            s.abort();
            self.stats.reconnects += 1;
            self.shared.metrics.record_reconnect();
        }
    }

    /// Sends `request` (fresh) and waits for its answer within the deadline. An attempt that
    /// went out and ended without the server's own answer (no answer in time, a connection
    /// that ended, an abort) marks the request as perhaps stored.
    pub(super) async fn round_trip(&mut self, f: &mut InFlight) -> Result<bqsink_transport::AppendAck, TransportError> {
        let ack = match f.ack.take() {
            Some(a) => a,
            None => {
                if f.permit.is_none() {
                    // Retries sit inside the breaker: take a permit only if one is free now, so
                    // the breaker still hears about this attempt without waiting on itself.
                    f.permit = self.try_permit().await;
                }
                if let Some(reason) = self.shared.abort.reason() {
                    return Err(TransportError::StreamClosed(reason));
                }
                f.sent_at = Instant::now();
                self.dispatch(f.request.clone()).await?
            }
        };
        let result = self.answer_of(ack, f.sent_at).await;
        if matches!(&result, Err(e) if !matches!(e, TransportError::Append { .. })) {
            f.maybe_stored = true;
        }
        result
    }

    /// The answer to an attempt sent at `sent_at`, within the deadline, unless aborted.
    async fn answer_of(
        &mut self,
        ack: AckFuture,
        sent_at: Instant,
    ) -> Result<bqsink_transport::AppendAck, TransportError> {
        let remaining = self.retry.request_timeout.saturating_sub(sent_at.elapsed());
        let abort = self.shared.abort.clone();
        let answer = tokio::select! {
            answer = tokio::time::timeout(remaining, ack) => answer,
            reason = abort.fired() => {
                self.drop_connection();
                return Err(TransportError::StreamClosed(reason));
            }
        };
        match answer {
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
}
