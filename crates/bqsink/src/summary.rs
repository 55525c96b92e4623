//! What a writer did, reported when it closes: [`Summary`], shared by every writer.

/// What a destination did, at `close`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Rows given to `write` and friends.
    pub rows_read: u64,
    /// Rows acknowledged by BigQuery (in Batch mode: committed).
    pub rows_written: u64,
    /// Rows sent to the dead-letter queue: refused for their data, or given up on (see
    /// [`Fate`](bqsink_engine::Fate)), in doubt included.
    pub rows_dead_lettered: u64,
    /// Of the rows dead-lettered (or rejected), those in doubt: sent, never acknowledged, and
    /// perhaps in the table.
    pub rows_in_doubt: u64,
    /// Rows refused and returned to the caller as [`Error::Row`](crate::Error::Row) (no dead-letter queue set).
    pub rows_rejected: u64,
    /// AppendRows requests acknowledged.
    pub requests: u64,
    /// Bytes of those requests.
    pub bytes_written: u64,
    /// Requests resent after temporary failures.
    pub retries: u64,
    /// Rows resent after a failure whose outcome was unknown: on the default stream
    /// (at-least-once) duplicates are at most this many; with offsets, none.
    pub rows_resent_ambiguous: u64,
}
