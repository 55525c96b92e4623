//! When a batch is cut into a request, and how much may await acknowledgement.

use bqsink_transport::request::HEADER_RESERVE_BYTES;
use bqsink_transport::MAX_REQUEST_BYTES;

/// Default rows per request.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Default bytes of rows per request: below 10 MiB with room for the header (see
/// [`bqsink_core::config::DEFAULT_MAX_REQUEST_BYTES`]).
pub const DEFAULT_BATCH_BYTES: usize = bqsink_core::config::DEFAULT_MAX_REQUEST_BYTES;
/// Default requests awaiting acknowledgement per stream.
pub const DEFAULT_MAX_INFLIGHT: usize = 4;
/// Default bytes of requests awaiting acknowledgement per sink: a few full requests, so memory
/// stays bounded whatever the row size.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = bqsink_core::config::DEFAULT_MAX_INFLIGHT_BYTES;

/// When a batch is cut into a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Rows per request.
    pub max_rows: usize,
    /// Bytes of encoded rows per request (capped below the request limit).
    pub max_bytes: usize,
    /// Requests in flight before `write` waits for the oldest acknowledgement.
    pub max_inflight: usize,
    /// Bytes in flight before `write` waits for the oldest acknowledgement.
    pub max_inflight_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_BATCH_ROWS,
            max_bytes: DEFAULT_BATCH_BYTES,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

impl BatchLimits {
    /// The same limits with another row count.
    pub fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.max(1);
        self
    }
    /// The same limits with another byte size (never above the request limit).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.clamp(1, MAX_REQUEST_BYTES - HEADER_RESERVE_BYTES);
        self
    }
    /// The same limits with another in-flight bound.
    pub fn with_max_inflight(mut self, n: usize) -> Self {
        self.max_inflight = n.max(1);
        self
    }
    /// The same limits with another in-flight byte bound.
    pub fn with_max_inflight_bytes(mut self, n: usize) -> Self {
        self.max_inflight_bytes = n.max(1);
        self
    }
}
