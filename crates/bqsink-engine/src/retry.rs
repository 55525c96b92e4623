//! Which failures are retried, how long to wait between attempts, and when to give up.
//!
//! Retried (temporary): UNAVAILABLE, INTERNAL, ABORTED, CANCELLED, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED (throughput quota: waits at least [`QUOTA_MIN_BACKOFF`]), a stream that
//! ended or is draining, a connection that could not be made. Never retried: INVALID_ARGUMENT,
//! PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND and other permanent errors — data errors go to
//! row-level handling instead.

use std::sync::Mutex;
use std::time::Duration;

use bqsink_transport::{StatusCode, TransportError};

/// Default attempts per request, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default wait before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default longest wait between retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default time limit for one request, retries included: long enough to ride out a
/// regional blip, short enough that a dead destination is reported.
pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(300);
/// Default deadline for one AppendRows round trip: a 10 MB request on a slow link takes
/// seconds, a hung server forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest wait after RESOURCE_EXHAUSTED (a throughput quota: slow down).
pub const QUOTA_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Retries allowed per successful request, beyond the reserve (tower's retry-budget idea):
/// retries cannot multiply load during an outage.
pub const DEFAULT_BUDGET_RATIO: f64 = 0.2;
/// Retries always available (the budget's reserve).
pub const DEFAULT_BUDGET_RESERVE: f64 = 100.0;

/// Exponential backoff with jitter, a retry budget, a time limit and a per-request deadline.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Cap on one wait.
    pub max_backoff: Duration,
    /// Give up on a request this long after its first attempt.
    pub max_elapsed: Duration,
    /// Deadline of one round trip; a request without an answer by then counts as
    /// DEADLINE_EXCEEDED and its connection is replaced.
    pub request_timeout: Duration,
    /// Retries earned per successful request.
    pub budget_ratio: f64,
    /// Retries always available.
    pub budget_reserve: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_elapsed: DEFAULT_MAX_ELAPSED,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_reserve: DEFAULT_BUDGET_RESERVE,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The same policy with another attempt count.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The same policy with other backoff bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The same policy with another time limit per request.
    pub fn with_max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = d;
        self
    }

    /// The same policy with another round-trip deadline.
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The wait before attempt `attempt + 1` (`attempt` = attempts made so far), or `None` when
    /// the error is permanent or the attempts are used up.
    pub fn backoff(&self, error: &TransportError, attempt: u32) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let exp = self.initial_backoff.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let cap = exp.min(self.max_backoff);
        let wait = cap.mul_f64(0.5 + 0.5 * jitter());
        Some(if error.code() == Some(StatusCode::ResourceExhausted) { wait.max(QUOTA_MIN_BACKOFF) } else { wait })
    }
}

/// Retries allowed so far: a reserve, plus a share of successes.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    /// A budget for a policy.
    pub fn new(policy: &RetryPolicy) -> Self {
        let reserve = policy.budget_reserve.max(0.0);
        Self { tokens: Mutex::new(reserve), ratio: policy.budget_ratio.max(0.0), cap: reserve.max(1.0) * 10.0 }
    }
    /// A request succeeded.
    pub fn deposit(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + self.ratio).min(self.cap);
        }
    }
    /// Takes one retry; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
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

    fn grpc(code: StatusCode) -> TransportError {
        TransportError::Grpc { code, message: String::new() }
    }

    #[test]
    fn retries_only_temporary_errors_within_attempts() {
        let p = RetryPolicy::default();
        for code in [
            StatusCode::Unavailable,
            StatusCode::Internal,
            StatusCode::Aborted,
            StatusCode::Cancelled,
            StatusCode::DeadlineExceeded,
            StatusCode::ResourceExhausted,
        ] {
            assert!(p.backoff(&grpc(code), 1).is_some(), "{code}");
        }
        for code in [
            StatusCode::InvalidArgument,
            StatusCode::PermissionDenied,
            StatusCode::Unauthenticated,
            StatusCode::NotFound,
            StatusCode::Unknown,
        ] {
            assert!(p.backoff(&grpc(code), 1).is_none(), "{code}");
        }
        assert!(p.backoff(&TransportError::StreamClosed("eof".into()), 1).is_some());
        let draining = TransportError::Grpc { code: StatusCode::Unknown, message: "Connection draining".into() };
        assert!(p.backoff(&draining, 1).is_some());
        assert!(p.backoff(&grpc(StatusCode::Unavailable), DEFAULT_MAX_ATTEMPTS).is_none());
    }

    #[test]
    fn waits_grow_are_capped_and_quota_waits_are_long() {
        let p = RetryPolicy::default().with_backoff(Duration::from_millis(100), Duration::from_secs(2));
        let w = |a| p.backoff(&grpc(StatusCode::Unavailable), a).unwrap_or_default();
        assert!(w(1) <= Duration::from_millis(100));
        assert!(w(8) <= Duration::from_secs(2) && w(8) >= Duration::from_secs(1));
        assert!(p.backoff(&grpc(StatusCode::ResourceExhausted), 1).is_some_and(|d| d >= QUOTA_MIN_BACKOFF));
    }

    #[test]
    fn the_budget_runs_out_and_refills_from_successes() {
        let p = RetryPolicy { budget_reserve: 2.0, budget_ratio: 0.5, ..RetryPolicy::default() };
        let b = RetryBudget::new(&p);
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw());
        b.deposit();
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
