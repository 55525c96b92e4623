//! Why a write failed.

use bqsink_core::RowError;
use bqsink_transport::TransportError;

use crate::breaker::BreakerOpen;

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
    /// The dead-letter queue could not keep a row.
    #[error("cannot write to the dead-letter queue: {0}")]
    DeadLetter(std::io::Error),
    /// The sink gave up (an abort, or Batch mode after a failure): the rows were dead-lettered
    /// with the reason.
    #[error("{0}")]
    GaveUp(String),
    /// The circuit breaker is open and fails fast.
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
}
