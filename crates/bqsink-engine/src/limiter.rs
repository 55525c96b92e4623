//! Rate limits in rows and bytes per second, per destination and per table, on `governor`'s GCRA.
//!
//! The first layer of resilience: batches wait here before the circuit breaker, so a limit set
//! below BigQuery's quotas keeps `RESOURCE_EXHAUSTED` from happening at all. Each quota allows a
//! burst of one second's worth (`rows_per_second` rows, `bytes_per_second` bytes) after an idle
//! period; beyond that, batches are spaced to the rate. A batch larger than one burst is let through
//! in burst-sized chunks, each waiting its turn, so it takes as long as the rate says and never
//! fails.
//!
//! The clock is tokio's, so waits use the runtime's timer (and follow `tokio::time::pause` in
//! tests) rather than governor's own timer thread.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use tokio::time::Instant;
use tracing::trace;

/// How fast rows may go. `None` means unlimited, the default: BigQuery's own quotas (and the
/// circuit breaker's quota cool-down) apply, and an unlimited limiter costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Rows per second; bursts up to one second's worth.
    pub rows_per_second: Option<NonZeroU32>,
    /// Bytes of encoded rows per second; bursts up to one second's worth.
    pub bytes_per_second: Option<NonZeroU32>,
}

impl RateLimitConfig {
    /// No limit.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The same limits with another row rate (`0` for unlimited).
    pub fn with_rows_per_second(mut self, rows: u32) -> Self {
        self.rows_per_second = NonZeroU32::new(rows);
        self
    }

    /// The same limits with another byte rate (`0` for unlimited).
    pub fn with_bytes_per_second(mut self, bytes: u32) -> Self {
        self.bytes_per_second = NonZeroU32::new(bytes);
        self
    }

    /// Whether neither rate is limited.
    pub fn is_unlimited(&self) -> bool {
        self.rows_per_second.is_none() && self.bytes_per_second.is_none()
    }
}

/// A rows-per-second and bytes-per-second limiter; share it through an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    rows: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl RateLimiter {
    /// A limiter for `config`; both buckets start full (one second's burst available).
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config, rows: config.rows_per_second.map(Bucket::new), bytes: config.bytes_per_second.map(Bucket::new) }
    }

    /// A limiter that never waits.
    pub fn unlimited() -> Self {
        Self::new(RateLimitConfig::unlimited())
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Whether [`acquire`](Self::acquire) never waits.
    pub fn is_unlimited(&self) -> bool {
        self.rows.is_none() && self.bytes.is_none()
    }

    /// Waits until both quotas allow a batch of `rows` rows and `bytes` bytes, and returns how long
    /// it waited (zero when it did not), for the metrics.
    ///
    /// Never fails: batches over one burst go through in burst-sized chunks. Rows are taken first,
    /// then bytes; the byte bucket keeps refilling meanwhile, so the wait is close to the longer of
    /// the two. Dropping the future part-way keeps the chunks already taken.
    pub async fn acquire(&self, rows: u32, bytes: u32) -> Duration {
        let mut waiting_since = None;
        if let Some(bucket) = &self.rows {
            bucket.take(rows, &mut waiting_since).await;
        }
        if let Some(bucket) = &self.bytes {
            bucket.take(bytes, &mut waiting_since).await;
        }
        waiting_since.map_or(Duration::ZERO, |since: Instant| since.elapsed())
    }
}

/// One quota with a burst of one second's worth.
#[derive(Debug)]
struct Bucket {
    gcra: governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>,
    burst: NonZeroU32,
}

impl Bucket {
    fn new(per_second: NonZeroU32) -> Self {
        Self {
            gcra: governor::RateLimiter::direct_with_clock(Quota::per_second(per_second), TokioClock),
            burst: per_second,
        }
    }

    /// Takes `n` cells in chunks of at most one burst, sleeping until each conforms.
    async fn take(&self, n: u32, waiting_since: &mut Option<Instant>) {
        let mut left = n;
        while let Some(chunk) = NonZeroU32::new(left.min(self.burst.get())) {
            loop {
                match self.gcra.check_n(chunk) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        let now = TokioClock.now();
                        waiting_since.get_or_insert(now.0);
                        let wait = not_until.wait_time_from(now);
                        trace!(cells = chunk.get(), ?wait, "rate limited");
                        tokio::time::sleep(wait).await;
                    }
                    // Cannot happen: a chunk never exceeds the burst. Let it through rather than spin.
                    Err(_insufficient) => break,
                }
            }
            left -= chunk.get();
        }
    }
}

/// governor's clock on tokio's time, so waits and measurements agree with `tokio::time`.
#[derive(Clone, Copy, Debug, Default)]
struct TokioClock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(Instant);

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// The limiters of one destination: one destination-wide, and one per table created on first use
/// when a per-table limit is set.
///
/// Table limiters live as long as this value: one small entry per table written to.
#[derive(Debug)]
pub struct RateLimiters {
    destination: RateLimiter,
    per_table: RateLimitConfig,
    tables: Mutex<HashMap<String, Arc<RateLimiter>>>,
}

impl Default for RateLimiters {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl RateLimiters {
    /// `destination` limits all tables together; `per_table`, when set, limits each table alone.
    pub fn new(destination: RateLimitConfig, per_table: Option<RateLimitConfig>) -> Self {
        Self {
            destination: RateLimiter::new(destination),
            per_table: per_table.unwrap_or_default(),
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// No limits anywhere.
    pub fn unlimited() -> Self {
        Self::new(RateLimitConfig::unlimited(), None)
    }

    /// The destination-wide limiter.
    pub fn destination(&self) -> &RateLimiter {
        &self.destination
    }

    /// `table`'s own limiter, created on first use; `None` without a per-table limit.
    pub fn table(&self, table: &str) -> Option<Arc<RateLimiter>> {
        if self.per_table.is_unlimited() {
            return None;
        }
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(limiter) = tables.get(table) {
            return Some(Arc::clone(limiter));
        }
        let limiter = Arc::new(RateLimiter::new(self.per_table));
        tables.insert(table.to_owned(), Arc::clone(&limiter));
        Some(limiter)
    }

    /// Tables with a limiter so far.
    pub fn table_count(&self) -> usize {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits for `table`'s limit, then for the destination's, and returns the total wait.
    ///
    /// The table's own limit goes first so a throttled table does not hold destination capacity
    /// the other tables could use while it waits.
    pub async fn acquire(&self, table: &str, rows: u32, bytes: u32) -> Duration {
        let mut waited = Duration::ZERO;
        if let Some(limiter) = self.table(table) {
            waited += limiter.acquire(rows, bytes).await;
        }
        waited + self.destination.acquire(rows, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time: these assert only that a limiter waits *at least* what its quota demands.

    #[tokio::test]
    async fn unlimited_does_not_wait() {
        let limiter = RateLimiter::unlimited();
        assert!(limiter.is_unlimited());
        for _ in 0..1_000 {
            assert_eq!(limiter.acquire(u32::MAX, u32::MAX).await, Duration::ZERO);
        }
        let limiters = RateLimiters::default();
        assert_eq!(limiters.acquire("t", u32::MAX, u32::MAX).await, Duration::ZERO);
        assert!(limiters.table("t").is_none());
        assert_eq!(limiters.table_count(), 0);
    }

    #[tokio::test]
    async fn rows_limit_waits_its_quota_and_oversize_requests_never_fail() {
        let limiter = RateLimiter::new(RateLimitConfig::default().with_rows_per_second(1_000));
        // Three bursts: the first is free, the next two wait a second each.
        let started = Instant::now();
        let waited = limiter.acquire(3_000, u32::MAX).await;
        assert!(waited >= Duration::from_millis(1_500), "waited {waited:?}");
        assert!(started.elapsed() >= waited);
    }

    #[tokio::test]
    async fn within_the_burst_does_not_wait() {
        let limiter = RateLimiter::new(RateLimitConfig::default().with_rows_per_second(1_000));
        assert_eq!(limiter.acquire(600, 1).await, Duration::ZERO);
        assert_eq!(limiter.acquire(400, 1).await, Duration::ZERO);
        assert!(limiter.acquire(300, 1).await >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn bytes_limit_applies_independently() {
        let config = RateLimitConfig::default().with_rows_per_second(1_000_000).with_bytes_per_second(10_000);
        let limiter = RateLimiter::new(config);
        // Few rows, many bytes: the byte quota decides.
        let waited = limiter.acquire(1, 15_000).await;
        assert!(waited >= Duration::from_millis(400), "waited {waited:?}");
        // Many rows, few bytes on a byte-only limiter: no wait.
        let bytes_only = RateLimiter::new(RateLimitConfig::default().with_bytes_per_second(10_000));
        assert_eq!(bytes_only.acquire(u32::MAX, 100).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn tables_have_their_own_buckets_and_share_the_destination() {
        let per_table = RateLimitConfig::default().with_rows_per_second(1_000);
        let limiters = RateLimiters::new(RateLimitConfig::unlimited(), Some(per_table));
        assert_eq!(limiters.acquire("a", 1_000, 0).await, Duration::ZERO);
        assert_eq!(limiters.acquire("b", 1_000, 0).await, Duration::ZERO);
        assert!(limiters.acquire("a", 300, 0).await >= Duration::from_millis(200));
        assert_eq!(limiters.table_count(), 2);
        let (a1, a2) = (limiters.table("a").expect("limited"), limiters.table("a").expect("limited"));
        assert!(Arc::ptr_eq(&a1, &a2));

        let destination = RateLimitConfig::default().with_rows_per_second(1_000);
        let limiters = RateLimiters::new(destination, None);
        assert_eq!(limiters.acquire("a", 1_000, 0).await, Duration::ZERO);
        assert!(limiters.acquire("b", 300, 0).await >= Duration::from_millis(200));
        assert_eq!(limiters.table_count(), 0);
    }

    #[test]
    fn limiters_are_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<RateLimiter>();
        assert_send_sync::<RateLimiters>();
    }

    #[test]
    fn config_setters() {
        let c = RateLimitConfig::default();
        assert!(c.is_unlimited());
        let c = c.with_rows_per_second(5).with_bytes_per_second(0);
        assert_eq!(c.rows_per_second, NonZeroU32::new(5));
        assert_eq!(c.bytes_per_second, None);
        assert!(!c.is_unlimited());
    }
}
