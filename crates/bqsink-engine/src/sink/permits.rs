//! The circuit breaker's permits for requests, and what each attempt tells it.

use std::time::{Duration, Instant};

use bqsink_transport::{StatusCode, TransportError};

use super::{InFlight, TableSink};
use crate::breaker::Permit;

impl TableSink {
    /// A permit from the circuit breaker, waiting while it is open (also when new writes fail
    /// fast: this request was accepted before), within the retry time limit and until an abort.
    pub(super) async fn wait_for_permit(&self) -> Result<Permit, TransportError> {
        let deadline = Instant::now() + self.retry.max_elapsed;
        let gave_up = |why: String| TransportError::Grpc { code: StatusCode::Unavailable, message: why };
        loop {
            // The breaker may hold a request for its whole cool-down: the retry time limit and
            // an abort still end the wait.
            let left = deadline.saturating_duration_since(Instant::now());
            let acquired = tokio::select! {
                r = tokio::time::timeout(left, self.shared.breaker.acquire()) => r,
                reason = self.shared.abort.fired() => return Err(TransportError::StreamClosed(reason)),
            };
            match acquired {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(open)) if Instant::now() < deadline => {
                    let wait = open.retry_after.clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        reason = self.shared.abort.fired() => return Err(TransportError::StreamClosed(reason)),
                    }
                }
                Ok(Err(open)) => return Err(gave_up(open.to_string())),
                Err(_) => {
                    return Err(gave_up(format!(
                        "the circuit breaker stayed open past the retry time limit of {:?}",
                        self.retry.max_elapsed
                    )))
                }
            }
        }
    }

    /// A breaker permit if one is free right now.
    pub(super) async fn try_permit(&self) -> Option<Permit> {
        match tokio::time::timeout(Duration::ZERO, self.shared.breaker.acquire()).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }

    /// Tells the breaker how the attempt went: BigQuery's health, not the data's.
    pub(super) fn report_to_breaker(
        &self,
        f: &mut InFlight,
        outcome: &Result<bqsink_transport::AppendAck, TransportError>,
    ) {
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
}
