//! The resilience properties of a [`DestinationConfig`] — plain numbers, so the configuration
//! file and `bqsink config` carry them — as the engine's policies: [`RetryPolicy`],
//! [`BatchLimits`], [`CircuitBreakerConfig`] and [`RateLimitConfig`].
//!
//! The configuration is validated first ([`DestinationConfig::validate`]), so every value here is
//! in range.

use std::time::Duration;

use bqsink_core::{BreakerWhenOpen, DestinationConfig};
use bqsink_engine::breaker::CircuitBreakerConfig;
use bqsink_engine::limiter::RateLimitConfig;
use bqsink_engine::{BatchLimits, RetryPolicy};

/// Attempts, backoff, retry time limit and per-request deadline; the retry budget stays at its
/// default.
pub(crate) fn retry_policy(c: &DestinationConfig) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(c.retry_max_attempts)
        .with_backoff(ms(c.retry_initial_backoff_ms), ms(c.retry_max_backoff_ms))
        .with_max_elapsed(ms(c.retry_time_limit_ms))
        .with_request_timeout(ms(c.request_timeout_ms))
}

/// Rows and bytes per request, requests and bytes in flight.
pub(crate) fn batch_limits(c: &DestinationConfig) -> BatchLimits {
    BatchLimits::default()
        .with_max_rows(c.batch_size)
        .with_max_inflight(c.max_concurrent_batches)
        .with_max_bytes(c.max_request_bytes)
        .with_max_inflight_bytes(c.max_inflight_bytes)
}

/// The breaker's thresholds, cool-downs and what it does while open.
pub(crate) fn breaker_config(c: &DestinationConfig) -> CircuitBreakerConfig {
    let mut b = CircuitBreakerConfig::default();
    b.failure_threshold = c.breaker_failure_threshold;
    b.failure_rate = f64::from(c.breaker_failure_rate_percent) / 100.0;
    b.window = c.breaker_window;
    b.min_calls = c.breaker_min_calls;
    b.cool_down = ms(c.breaker_cool_down_ms);
    b.max_cool_down = ms(c.breaker_max_cool_down_ms);
    b.quota_cool_down = ms(c.breaker_quota_cool_down_ms);
    match c.breaker_when_open {
        BreakerWhenOpen::Wait => b,
        BreakerWhenOpen::FailFast => b.fail_fast(),
    }
}

/// The destination's rows/s and bytes/s (`0`: unlimited).
pub(crate) fn rate_limit(c: &DestinationConfig) -> RateLimitConfig {
    RateLimitConfig::unlimited()
        .with_rows_per_second(c.rate_limit_rows_per_second)
        .with_bytes_per_second(c.rate_limit_bytes_per_second)
}

/// Each table's rows/s and bytes/s; `None` when both are unlimited.
pub(crate) fn table_rate_limit(c: &DestinationConfig) -> Option<RateLimitConfig> {
    let r = RateLimitConfig::unlimited()
        .with_rows_per_second(c.table_rate_limit_rows_per_second)
        .with_bytes_per_second(c.table_rate_limit_bytes_per_second);
    (!r.is_unlimited()).then_some(r)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use bqsink_engine::breaker::WhenOpen;

    #[test]
    fn defaults_give_the_engine_defaults() {
        let c = DestinationConfig::default();
        assert_eq!(retry_policy(&c), RetryPolicy::default());
        let engine = BatchLimits::default();
        let limits = batch_limits(&c);
        assert_eq!((limits.max_bytes, limits.max_inflight_bytes), (engine.max_bytes, engine.max_inflight_bytes));
        assert_eq!(breaker_config(&c), CircuitBreakerConfig::default());
        assert!(rate_limit(&c).is_unlimited());
        assert_eq!(table_rate_limit(&c), None);
    }

    #[test]
    fn each_property_reaches_its_policy() {
        let mut c = DestinationConfig::new("p-123456", "d", "t");
        c.retry_max_attempts = 3;
        c.retry_initial_backoff_ms = 20;
        c.retry_max_backoff_ms = 400;
        c.retry_time_limit_ms = 1_500;
        c.request_timeout_ms = 500;
        c.max_request_bytes = 20_000_000;
        c.max_inflight_bytes = 64_000_000;
        c.breaker_failure_threshold = 2;
        c.breaker_failure_rate_percent = 25;
        c.breaker_window = 8;
        c.breaker_min_calls = 4;
        c.breaker_cool_down_ms = 100;
        c.breaker_max_cool_down_ms = 1_000;
        c.breaker_quota_cool_down_ms = 200;
        c.breaker_when_open = BreakerWhenOpen::FailFast;
        c.rate_limit_rows_per_second = 1_000;
        c.rate_limit_bytes_per_second = 0;
        c.table_rate_limit_rows_per_second = 0;
        c.table_rate_limit_bytes_per_second = 50_000;
        assert_eq!(c.validate(), Ok(()));
        let r = retry_policy(&c);
        assert_eq!(r.max_attempts, 3);
        assert_eq!((r.initial_backoff, r.max_backoff), (ms(20), ms(400)));
        assert_eq!((r.max_elapsed, r.request_timeout), (ms(1_500), ms(500)));
        let l = batch_limits(&c);
        assert!(l.max_bytes > 19_000_000 && l.max_bytes <= 20_000_000, "{l:?}");
        assert_eq!(l.max_inflight_bytes, 64_000_000);
        let b = breaker_config(&c);
        assert_eq!((b.failure_threshold, b.window, b.min_calls), (2, 8, 4));
        assert!((b.failure_rate - 0.25).abs() < 1e-9);
        assert_eq!((b.cool_down, b.max_cool_down, b.quota_cool_down), (ms(100), ms(1_000), ms(200)));
        assert_eq!(b.when_open, WhenOpen::FailFast);
        assert_eq!(b.validate(), Ok(()));
        let d = rate_limit(&c);
        assert_eq!((d.rows_per_second, d.bytes_per_second), (NonZeroU32::new(1_000), None));
        let t = table_rate_limit(&c).expect("a table limit");
        assert_eq!((t.rows_per_second, t.bytes_per_second), (None, NonZeroU32::new(50_000)));
    }
}
