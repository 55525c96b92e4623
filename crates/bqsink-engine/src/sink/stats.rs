//! What a sink counts: rows, requests and bytes written, retries, reconnects, refusals.

/// Counters of one sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// Rows written: acknowledged by BigQuery (Streaming, ExactlyOnce), or committed (Batch).
    pub rows_written: u64,
    /// Batch mode: rows acknowledged into the pending stream, not committed yet.
    pub rows_pending: u64,
    /// Rows dead-lettered as in doubt: sent, never acknowledged, perhaps in the table
    /// (counted in `rows_refused` too).
    pub rows_in_doubt: u64,
    /// Requests acknowledged.
    pub requests: u64,
    /// Bytes of acknowledged requests.
    pub bytes_written: u64,
    /// Requests sent again after a temporary failure.
    pub retries: u64,
    /// Streams opened again after one ended.
    pub reconnects: u64,
    /// Rows BigQuery refused (dead-lettered or kept for
    /// [`TableSink::take_refused`](super::TableSink::take_refused)).
    pub rows_refused: u64,
    /// Rows in requests sent again after a failure whose outcome was unknown (at-least-once
    /// duplicates are at most this many on the default stream).
    pub rows_resent_ambiguous: u64,
}

impl std::ops::AddAssign for SinkStats {
    fn add_assign(&mut self, s: SinkStats) {
        self.rows_written += s.rows_written;
        self.rows_pending += s.rows_pending;
        self.rows_in_doubt += s.rows_in_doubt;
        self.requests += s.requests;
        self.bytes_written += s.bytes_written;
        self.retries += s.retries;
        self.reconnects += s.reconnects;
        self.rows_refused += s.rows_refused;
        self.rows_resent_ambiguous += s.rows_resent_ambiguous;
    }
}
