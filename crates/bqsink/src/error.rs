use bqsink_core::{ConfigError, RowError, SchemaError, TableRef};
use bqsink_engine::EngineError;
use bqsink_transport::TransportError;

/// Everything that can go wrong in bqsink, each variant saying what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A schema BigQuery would refuse.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// One row cannot be written; the others are unaffected.
    #[error("{0}")]
    Row(RowError),
    /// BigQuery could not be reached, or refused a request after retries.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A schema change BigQuery would refuse; nothing was sent.
    #[error("schema change refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    SchemaChangeRefused(Vec<bqsink_schema::Refusal>),
    /// Other writers kept changing the table's schema while this one tried to.
    #[error(
        "could not change the schema of {table}: other writers changed it first {attempts} times in a row; retry later"
    )]
    SchemaChangeConflict {
        /// The table.
        table: TableRef,
        /// Attempts made.
        attempts: usize,
    },
    /// WRITE_EMPTY and the table has rows.
    #[error("table {table} already holds {rows} rows and write_disposition is WRITE_EMPTY")]
    TableNotEmpty {
        /// The table.
        table: TableRef,
        /// Rows it holds.
        rows: u64,
    },
    /// `try_write` found the destination's bounds reached; `write` would have waited.
    #[error("the destination is full: requests in flight and the current batch are at their bounds; retry later or use write() to wait")]
    Full,
    /// The circuit breaker is open and configured to fail fast.
    #[error("BigQuery is failing; the circuit breaker is open (retry after {retry_after:?})")]
    BreakerOpen {
        /// When a probe will be allowed.
        retry_after: std::time::Duration,
    },
    /// The dead-letter queue could not keep a row: stopping, so the row is not lost silently.
    #[error("{0}")]
    DeadLetter(String),
    /// The input cannot be read on (an I/O error, a JSON array that breaks off): the rest of it
    /// is not loaded; the rows read before it were handed over.
    #[error("{0}")]
    Input(String),
    /// The destination gave up (told to abort, or a Batch load after a failure); every row it
    /// held was dead-lettered with the reason.
    #[error("{0}")]
    GaveUp(String),
    /// `close` could not write every row: each was dead-lettered with its fate (see
    /// [`Fate`](bqsink_engine::Fate)), and `summary` accounts for all of them
    /// (`rows_read = rows_written + rows_dead_lettered + rows_rejected`).
    #[error("{cause}")]
    Incomplete {
        /// What was written and what was dead-lettered.
        summary: crate::Summary,
        /// Why not every row could be written.
        cause: Box<Error>,
    },
    /// The table does not exist and may not be created.
    #[error("table {table} does not exist; {hint}")]
    TableNotFound {
        /// The table.
        table: TableRef,
        /// What to do about it.
        hint: &'static str,
    },
}

impl Error {
    /// Whether only one row failed (the destination is still usable).
    pub fn is_row_error(&self) -> bool {
        matches!(self, Self::Row(_))
    }
    /// The row error, if this is one.
    pub fn as_row_error(&self) -> Option<&RowError> {
        match self {
            Self::Row(r) => Some(r),
            _ => None,
        }
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Row(r) => Self::Row(r),
            EngineError::Transport(t) => Self::Transport(t),
            EngineError::DeadLetter(io) => Self::DeadLetter(format!("cannot write to the dead-letter queue: {io}")),
            EngineError::BreakerOpen(open) => Self::BreakerOpen { retry_after: open.retry_after },
            EngineError::GaveUp(reason) => Self::GaveUp(reason),
            #[allow(unreachable_patterns)]
            other => Self::Transport(TransportError::Protocol(other.to_string())),
        }
    }
}
