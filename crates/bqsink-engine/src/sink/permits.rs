//! The circuit breaker's permits for requests, and what each attempt tells it.

use std::time::{Duration, Instant};

use bqsink_transport::{StatusCode, TransportError};

use super::{InFlight, TableSink};
use crate::breaker::Permit;

impl TableSink {
    /// when new writes fail fast, within the retry time limit.
    pub(super) async fn wait_for_permit(&self) -> Result<Permit, TransportError> {
        let deadline = Instant::now() + self.retry.max_elapsed;
        loop {
            match self.shared.breaker.acquire().await {
                Ok(p) => return Ok(p),
                Err(open) if Instant::now() < deadline => {
                    let wait = open.retry_after.clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        reason = self.shared.abort.fired() => return Err(TransportError::StreamClosed(reason)),
                    }
                }
                Err(open) => {
                    return Err(TransportError::Grpc { code: StatusCode::Unavailable, message: open.to_string() })
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
