//! Which failures are retried, and how long to wait between attempts.

use std::time::Duration;

use bqsink_transport::TransportError;

/// Default attempts per request, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default wait before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default longest wait between retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter, for temporary failures only.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Cap on one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The wait before attempt `attempt` (1 = first retry), or `None` when the error is
    /// permanent or the attempts are used up.
    pub fn backoff(&self, error: &TransportError, attempt: u32) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let exp = self.initial_backoff.saturating_mul(1u32 << (attempt - 1).min(16));
        let cap = exp.min(self.max_backoff);
        Some(cap.mul_f64(0.5 + 0.5 * jitter()))
    }
}

/// A cheap pseudo-random number in [0, 1) from the clock; jitter needs spread, not quality.
fn jitter() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut x = u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_transport::StatusCode;

    #[test]
    fn retries_only_temporary_errors_within_budget() {
        let p = RetryPolicy::default();
        let unavailable = TransportError::Grpc { code: StatusCode::Unavailable, message: String::new() };
        let invalid = TransportError::Grpc { code: StatusCode::InvalidArgument, message: String::new() };
        assert!(p.backoff(&unavailable, 1).is_some());
        assert!(p.backoff(&unavailable, DEFAULT_MAX_ATTEMPTS).is_none());
        assert!(p.backoff(&invalid, 1).is_none());
        let wait = p.backoff(&unavailable, 30).or(p.backoff(&unavailable, 4));
        assert!(wait.is_some_and(|w| w <= DEFAULT_MAX_BACKOFF));
    }
}
