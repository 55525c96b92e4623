//! A circuit breaker in front of BigQuery: after repeated failures stop sending for a cool-down,
//! then let one probe request find out whether the service is back.
//!
//! `Closed` → `Open` (after [`failure_threshold`](CircuitBreakerConfig::failure_threshold)
//! consecutive failures, or a [`failure_rate`](CircuitBreakerConfig::failure_rate) of the recent
//! [`window`](CircuitBreakerConfig::window)) → `HalfOpen` once the cool-down is over, one probe at a
//! time → `Closed` when the probe succeeds, `Open` again with twice the cool-down (up to
//! [`max_cool_down`](CircuitBreakerConfig::max_cool_down)) when it fails. `RESOURCE_EXHAUSTED`
//! opens the breaker at once with the quota cool-down: BigQuery asks us to slow down, not to retry.
//!
//! Time is tokio's ([`tokio::time::Instant`], [`tokio::time::sleep_until`]), so tests can pause it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Default consecutive failures that open the breaker: a handful, so one bad request or a single
/// connection reset (both retried underneath) never stops the pipeline.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default failure fraction of the recent window that opens the breaker: half the requests failing
/// is an outage even when successes interleave (which resets the consecutive count).
pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// Default number of recent outcomes the failure rate is computed over.
pub const DEFAULT_WINDOW: u32 = 20;
/// Default outcomes in the window before the failure rate applies, so a cold start with one early
/// failure does not read as 100 %.
pub const DEFAULT_MIN_CALLS: u32 = 10;
/// Default first cool-down: long enough for a backend restart or a connection drain to pass.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);
/// Default longest cool-down: doubling stops here, so a breaker never sleeps for more than ten
/// minutes between probes however long the outage lasts.
pub const DEFAULT_MAX_COOL_DOWN: Duration = Duration::from_secs(600);
/// Default cool-down after `RESOURCE_EXHAUSTED`: BigQuery's quotas refill per ten seconds or per
/// minute, and the design asks for 10 s doubling up to 10 min.
pub const DEFAULT_QUOTA_COOL_DOWN: Duration = Duration::from_secs(10);
/// Largest accepted [`CircuitBreakerConfig::window`]: the window is kept in memory, one entry per
/// outcome.
pub const MAX_WINDOW: u32 = 10_000;
/// The `retry_after` a fail-fast breaker answers while a half-open probe is in flight: the probe's
/// answer usually arrives within one round trip.
pub const PROBE_IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What [`CircuitBreaker::acquire`] does while the breaker is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenOpen {
    /// Wait until the cool-down is over and a request may go (async backpressure).
    #[default]
    Wait,
    /// Return [`BreakerOpen`] at once, saying how long to wait.
    FailFast,
}

/// When the breaker opens and how long it stays open.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Open when at least this fraction (0 < rate ≤ 1) of the last `window` outcomes failed.
    pub failure_rate: f64,
    /// Number of recent outcomes the failure rate is computed over.
    pub window: u32,
    /// Outcomes in the window before the failure rate applies.
    pub min_calls: u32,
    /// First open period after failures.
    pub cool_down: Duration,
    /// Cap on the open period, which doubles each time a half-open probe fails.
    pub max_cool_down: Duration,
    /// First open period after `RESOURCE_EXHAUSTED`; doubles like `cool_down`.
    pub quota_cool_down: Duration,
    /// Wait or fail fast while open.
    pub when_open: WhenOpen,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            failure_rate: DEFAULT_FAILURE_RATE,
            window: DEFAULT_WINDOW,
            min_calls: DEFAULT_MIN_CALLS,
            cool_down: DEFAULT_COOL_DOWN,
            max_cool_down: DEFAULT_MAX_COOL_DOWN,
            quota_cool_down: DEFAULT_QUOTA_COOL_DOWN,
            when_open: WhenOpen::default(),
        }
    }
}

impl CircuitBreakerConfig {
    /// The same configuration failing fast instead of waiting while open.
    pub fn fail_fast(mut self) -> Self {
        self.when_open = WhenOpen::FailFast;
        self
    }

    /// Checks that the values make a breaker that can open and close again.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        let invalid = |field, reason| Err(BreakerConfigError::Invalid { field, reason });
        if self.failure_threshold == 0 {
            return invalid("failure_threshold", "must be at least 1");
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return invalid("failure_rate", "must be in (0, 1]");
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return invalid("window", "must be between 1 and 10000");
        }
        if self.min_calls == 0 || self.min_calls > self.window {
            return invalid("min_calls", "must be between 1 and window");
        }
        if self.cool_down.is_zero() || self.quota_cool_down.is_zero() {
            return invalid("cool_down", "cool_down and quota_cool_down must be positive");
        }
        if self.max_cool_down < self.cool_down || self.max_cool_down < self.quota_cool_down {
            return invalid("max_cool_down", "must be at least cool_down and quota_cool_down");
        }
        Ok(())
    }
}

/// A [`CircuitBreakerConfig`] that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// One field is out of range.
    #[error("invalid circuit breaker setting `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it must be.
        reason: &'static str,
    },
}

/// The breaker is open (or a probe is in flight) and it is set to fail fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open after repeated BigQuery failures; retry in {retry_after:?}")]
#[non_exhaustive]
pub struct BreakerOpen {
    /// How long until a request may be tried.
    pub retry_after: Duration,
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests go through; outcomes are counted.
    #[default]
    Closed,
    /// The cool-down is over: one probe at a time decides.
    HalfOpen,
    /// Requests wait (or fail fast) until the cool-down is over.
    Open,
}

impl BreakerState {
    /// `closed`, `half_open` or `open`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of a breaker, for health checks and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state now (an open breaker whose cool-down is over reads as half-open).
    pub state: BreakerState,
    /// Failures since the last success while closed.
    pub consecutive_failures: u32,
    /// Outcomes in the failure-rate window.
    pub window_calls: u32,
    /// Failures among them.
    pub window_failures: u32,
    /// Times the breaker has opened (from closed or again after a failed probe).
    pub opened_count: u64,
    /// Length of the current, or last, open period.
    pub cool_down: Duration,
    /// Time left until the cool-down is over, when open.
    pub retry_after: Option<Duration>,
}

/// A circuit breaker; `Clone` shares the same state, so one breaker can guard many tasks.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: CircuitBreakerConfig,
    inner: Mutex<Inner>,
    /// Woken when a probe ends (reported or dropped), so half-open waiters look again.
    changed: Notify,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition to `Open` or `Closed`: outcomes of permits handed out before are
    /// stale and ignored.
    generation: u64,
    consecutive_failures: u32,
    /// Recent outcomes while closed, `true` for a failure.
    outcomes: VecDeque<bool>,
    window_failures: u32,
    /// The current, or last, open period.
    open_for: Duration,
    opened_count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Why a request may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocked {
    /// Open until then.
    Until(Instant),
    /// Half-open and the probe slot is taken.
    Probe,
}

impl Blocked {
    fn retry_after(self, now: Instant) -> Duration {
        match self {
            Self::Until(until) => until.saturating_duration_since(now),
            Self::Probe => PROBE_IN_FLIGHT_RETRY_AFTER,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    QuotaExceeded,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::with_valid_config(CircuitBreakerConfig::default())
    }
}

impl CircuitBreaker {
    /// A closed breaker, once `config` is [valid](CircuitBreakerConfig::validate).
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(Self::with_valid_config(config))
    }

    fn with_valid_config(config: CircuitBreakerConfig) -> Self {
        let inner = Inner {
            phase: Phase::Closed,
            generation: 0,
            consecutive_failures: 0,
            outcomes: VecDeque::new(),
            window_failures: 0,
            open_for: config.cool_down,
            opened_count: 0,
        };
        Self { shared: Arc::new(Shared { config, inner: Mutex::new(inner), changed: Notify::new() }) }
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// Permission to send one request; report its outcome on the [`Permit`].
    ///
    /// Closed: immediate. Open: waits for the cool-down ([`WhenOpen::Wait`]) or returns
    /// [`BreakerOpen`] ([`WhenOpen::FailFast`]). Half-open: one caller gets the probe permit, the
    /// others wait for its outcome (or fail fast). Cancel-safe: dropping the future holds nothing.
    pub async fn acquire(&self) -> Result<Permit, BreakerOpen> {
        let blocked = match self.try_acquire_at(Instant::now()) {
            Ok(permit) => return Ok(permit),
            Err(blocked) => blocked,
        };
        if self.shared.config.when_open == WhenOpen::FailFast {
            return Err(BreakerOpen { retry_after: blocked.retry_after(Instant::now()) });
        }
        loop {
            // Register for wake-ups before looking, so a probe ending in between is not missed.
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_acquire_at(Instant::now()) {
                Ok(permit) => return Ok(permit),
                Err(Blocked::Until(until)) => {
                    debug!(wait = ?until.saturating_duration_since(Instant::now()), "circuit breaker open; waiting");
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = &mut notified => {}
                    }
                }
                Err(Blocked::Probe) => notified.await,
            }
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        match self.shared.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Times the breaker has opened (from closed or again after a failed probe).
    pub fn opened_count(&self) -> u64 {
        self.shared.lock().opened_count
    }

    /// A point-in-time view of the breaker.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let inner = self.shared.lock();
        let (state, retry_after) = match inner.phase {
            Phase::Closed => (BreakerState::Closed, None),
            Phase::Open { until } if now < until => (BreakerState::Open, Some(until - now)),
            Phase::Open { .. } | Phase::HalfOpen { .. } => (BreakerState::HalfOpen, None),
        };
        BreakerSnapshot {
            state,
            consecutive_failures: inner.consecutive_failures,
            window_calls: u32::try_from(inner.outcomes.len()).unwrap_or(u32::MAX),
            window_failures: inner.window_failures,
            opened_count: inner.opened_count,
            cool_down: inner.open_for,
            retry_after,
        }
    }

    /// A permit if a request may go at `now`; the state machine without the waiting.
    fn try_acquire_at(&self, now: Instant) -> Result<Permit, Blocked> {
        let mut inner = self.shared.lock();
        let probe = match inner.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < until => return Err(Blocked::Until(until)),
            Phase::HalfOpen { probing: true } => return Err(Blocked::Probe),
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                if matches!(inner.phase, Phase::Open { .. }) {
                    debug!("circuit breaker half-open: sending one probe");
                }
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
        };
        Ok(Permit { shared: Arc::clone(&self.shared), generation: inner.generation, probe, reported: false })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way; a poisoned lock still holds a sound state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, generation: u64, probe: bool, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        if inner.generation != generation {
            // Sent before the breaker last opened or closed: says nothing about the service now.
            return;
        }
        let config = &self.config;
        match (probe, inner.phase) {
            (true, Phase::HalfOpen { .. }) => {
                match outcome {
                    Outcome::Success => inner.close(),
                    Outcome::Failure => {
                        let period = inner.open_for.saturating_mul(2).min(config.max_cool_down);
                        inner.open(now, period, "probe failed");
                    }
                    Outcome::QuotaExceeded => {
                        let period =
                            inner.open_for.saturating_mul(2).max(config.quota_cool_down).min(config.max_cool_down);
                        inner.open(now, period, "probe hit the quota (RESOURCE_EXHAUSTED)");
                    }
                }
                drop(inner);
                self.changed.notify_waiters();
            }
            (false, Phase::Closed) => match outcome {
                Outcome::Success => {
                    inner.consecutive_failures = 0;
                    inner.push_outcome(false, config.window);
                }
                Outcome::Failure => {
                    inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                    inner.push_outcome(true, config.window);
                    let calls = inner.outcomes.len();
                    if inner.consecutive_failures >= config.failure_threshold {
                        inner.open(now, config.cool_down, "consecutive failures");
                    } else if calls >= config.min_calls as usize
                        && f64::from(inner.window_failures) >= config.failure_rate * calls as f64
                    {
                        inner.open(now, config.cool_down, "failure rate");
                    }
                }
                Outcome::QuotaExceeded => {
                    inner.open(now, config.quota_cool_down, "quota exceeded (RESOURCE_EXHAUSTED)")
                }
            },
            // Unreachable while the generation matches; nothing to do either way.
            _ => {}
        }
    }

    /// A probe permit went away unreported: free the slot for the next caller.
    fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.phase == (Phase::HalfOpen { probing: true }) {
            inner.phase = Phase::HalfOpen { probing: false };
            drop(inner);
            debug!("circuit breaker probe dropped unreported; slot released");
            self.changed.notify_waiters();
        }
    }
}

impl Inner {
    fn push_outcome(&mut self, failed: bool, window: u32) {
        if self.outcomes.len() >= window as usize {
            if let Some(true) = self.outcomes.pop_front() {
                self.window_failures -= 1;
            }
        }
        self.outcomes.push_back(failed);
        if failed {
            self.window_failures += 1;
        }
    }

    fn open(&mut self, now: Instant, period: Duration, why: &'static str) {
        warn!(
            reason = why,
            cool_down = ?period,
            consecutive_failures = self.consecutive_failures,
            window_failures = self.window_failures,
            window_calls = self.outcomes.len(),
            "circuit breaker open"
        );
        self.phase = Phase::Open { until: now + period };
        self.open_for = period;
        self.opened_count += 1;
        self.reset_counts();
    }

    fn close(&mut self) {
        info!("circuit breaker closed: probe succeeded");
        self.phase = Phase::Closed;
        self.reset_counts();
    }

    fn reset_counts(&mut self) {
        self.generation += 1;
        self.consecutive_failures = 0;
        self.outcomes.clear();
        self.window_failures = 0;
    }
}

/// Permission to send one request. Report how it went with [`success`](Self::success),
/// [`failure`](Self::failure) or [`quota_exceeded`](Self::quota_exceeded); dropping it unreported
/// counts as neither (and frees the half-open probe slot).
#[must_use = "report the outcome with success(), failure() or quota_exceeded()"]
#[derive(Debug)]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    reported: bool,
}

impl Permit {
    /// Whether this is the half-open probe whose outcome closes or reopens the breaker.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded (or failed for reasons unrelated to BigQuery's health, such as a
    /// bad row).
    pub fn success(self) {
        self.report(Outcome::Success, Instant::now());
    }

    /// The request failed with a temporary, service-side error.
    pub fn failure(self) {
        self.report(Outcome::Failure, Instant::now());
    }

    /// BigQuery answered `RESOURCE_EXHAUSTED`: open at once with the quota cool-down.
    pub fn quota_exceeded(self) {
        self.report(Outcome::QuotaExceeded, Instant::now());
    }

    fn report(mut self, outcome: Outcome, now: Instant) {
        self.reported = true;
        self.shared.record(self.generation, self.probe, outcome, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.shared.release_probe(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new(config).expect("valid config")
    }

    fn permit_at(b: &CircuitBreaker, now: Instant) -> Permit {
        b.try_acquire_at(now).expect("a request may go")
    }

    fn fail_at(b: &CircuitBreaker, now: Instant, times: u32) {
        for _ in 0..times {
            permit_at(b, now).report(Outcome::Failure, now);
        }
    }

    /// The phase as seen at `now`, without touching it.
    fn state_at(b: &CircuitBreaker, now: Instant) -> BreakerState {
        match b.shared.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    fn open_until(b: &CircuitBreaker) -> Option<Instant> {
        match b.shared.lock().phase {
            Phase::Open { until } => Some(until),
            _ => None,
        }
    }

    #[test]
    fn defaults() {
        let c = CircuitBreakerConfig::default();
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.failure_rate, 0.5);
        assert_eq!((c.window, c.min_calls), (20, 10));
        assert_eq!((c.cool_down, c.max_cool_down, c.quota_cool_down), (10 * SEC, 600 * SEC, 10 * SEC));
        assert_eq!(c.when_open, WhenOpen::Wait);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fail_fast().when_open, WhenOpen::FailFast);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            CircuitBreakerConfig { failure_threshold: 0, ..Default::default() },
            CircuitBreakerConfig { failure_rate: 0.0, ..Default::default() },
            CircuitBreakerConfig { failure_rate: f64::NAN, ..Default::default() },
            CircuitBreakerConfig { window: 0, ..Default::default() },
            CircuitBreakerConfig { window: MAX_WINDOW + 1, min_calls: 1, ..Default::default() },
            CircuitBreakerConfig { min_calls: 21, ..Default::default() },
            CircuitBreakerConfig { cool_down: Duration::ZERO, ..Default::default() },
            CircuitBreakerConfig { max_cool_down: SEC, ..Default::default() },
        ];
        for config in bad {
            assert!(CircuitBreaker::new(config.clone()).is_err(), "{config:?}");
        }
    }

    #[test]
    fn opens_after_consecutive_failures() {
        let b = breaker(CircuitBreakerConfig { failure_rate: 1.0, ..Default::default() });
        let t0 = Instant::now();
        fail_at(&b, t0, 4);
        permit_at(&b, t0).report(Outcome::Success, t0); // resets the run
        fail_at(&b, t0, 4);
        assert_eq!(state_at(&b, t0), BreakerState::Closed);
        assert_eq!(b.snapshot().consecutive_failures, 4);
        fail_at(&b, t0, 1);
        assert_eq!(state_at(&b, t0), BreakerState::Open);
        assert_eq!(b.opened_count(), 1);
        assert_eq!(open_until(&b), Some(t0 + DEFAULT_COOL_DOWN));
        assert_eq!(b.try_acquire_at(t0 + SEC).map(|_| ()), Err(Blocked::Until(t0 + DEFAULT_COOL_DOWN)));
    }

    #[test]
    fn opens_on_failure_rate() {
        let b = breaker(CircuitBreakerConfig { failure_threshold: 100, ..Default::default() });
        let t0 = Instant::now();
        // Alternating success / failure: 50 % failures, never two in a row.
        for i in 0..10 {
            let outcome = if i % 2 == 0 { Outcome::Success } else { Outcome::Failure };
            assert_eq!(state_at(&b, t0), BreakerState::Closed, "call {i}: below min_calls");
            permit_at(&b, t0).report(outcome, t0);
        }
        assert_eq!(state_at(&b, t0), BreakerState::Open);
        assert_eq!(b.opened_count(), 1);
    }

    #[test]
    fn failure_rate_window_slides() {
        let config = CircuitBreakerConfig { failure_threshold: 100, window: 4, min_calls: 4, ..Default::default() };
        let b = breaker(config);
        let t0 = Instant::now();
        // F S S S: 25 %, then the failure leaves the window with S S S S.
        for outcome in [Outcome::Failure, Outcome::Success, Outcome::Success, Outcome::Success, Outcome::Success] {
            permit_at(&b, t0).report(outcome, t0);
        }
        let s = b.snapshot();
        assert_eq!((s.window_calls, s.window_failures), (4, 0));
        // S S S F → S S F F: 2 of 4 = 50 % opens.
        fail_at(&b, t0, 1);
        assert_eq!(state_at(&b, t0), BreakerState::Closed);
        fail_at(&b, t0, 1);
        assert_eq!(state_at(&b, t0), BreakerState::Open);
    }

    #[tokio::test]
    async fn fail_fast_returns_retry_after() {
        let b = breaker(CircuitBreakerConfig::default().fail_fast());
        fail_at(&b, Instant::now(), DEFAULT_FAILURE_THRESHOLD);
        let err = b.acquire().await.expect_err("open");
        assert!(err.retry_after <= DEFAULT_COOL_DOWN && err.retry_after > DEFAULT_COOL_DOWN - 5 * SEC, "{err:?}");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.snapshot().retry_after.is_some());

        // Half-open with the probe taken: fail fast too, with the probe's retry_after.
        let config = CircuitBreakerConfig {
            cool_down: Duration::from_millis(20),
            ..CircuitBreakerConfig::default().fail_fast()
        };
        let b = breaker(config);
        fail_at(&b, Instant::now(), DEFAULT_FAILURE_THRESHOLD);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.acquire().await.expect("probe");
        assert!(probe.is_probe());
        assert_eq!(b.acquire().await.map(|_| ()), Err(BreakerOpen { retry_after: PROBE_IN_FLIGHT_RETRY_AFTER }));
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// Real time with a short cool-down: asserts only that waiting lasts *at least* the cool-down
    /// and that callers stay blocked while the probe is out, never how fast anything runs.
    #[tokio::test]
    async fn wait_mode_waits_then_allows_exactly_one_probe() {
        let cool_down = Duration::from_millis(100);
        let b = breaker(CircuitBreakerConfig { cool_down, ..Default::default() });
        let opened = Instant::now();
        fail_at(&b, opened, DEFAULT_FAILURE_THRESHOLD);

        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let b = b.clone();
            tasks.spawn(async move { b.acquire().await });
        }
        let probe = tasks.join_next().await.expect("a task").expect("no panic").expect("wait mode never fails");
        assert!(opened.elapsed() >= cool_down);
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The other two stay blocked while the probe is out.
        assert!(tokio::time::timeout(Duration::from_millis(50), tasks.join_next()).await.is_err());
        assert_eq!(tasks.len(), 2);

        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
        while let Some(joined) = tokio::time::timeout(10 * SEC, tasks.join_next()).await.expect("woken") {
            let permit = joined.expect("no panic").expect("closed");
            assert!(!permit.is_probe());
            permit.success();
        }
    }

    #[test]
    fn probe_success_closes() {
        let b = breaker(CircuitBreakerConfig::default());
        let t0 = Instant::now();
        fail_at(&b, t0, DEFAULT_FAILURE_THRESHOLD);
        let t1 = t0 + DEFAULT_COOL_DOWN;
        assert_eq!(state_at(&b, t1), BreakerState::HalfOpen);
        let probe = permit_at(&b, t1);
        assert!(probe.is_probe());
        assert_eq!(b.try_acquire_at(t1).map(|_| ()), Err(Blocked::Probe));
        probe.report(Outcome::Success, t1);
        assert_eq!(state_at(&b, t1), BreakerState::Closed);
        assert!(!permit_at(&b, t1).is_probe());
        // The counts start afresh: it takes the full threshold to open again.
        fail_at(&b, t1, DEFAULT_FAILURE_THRESHOLD - 1);
        assert_eq!(state_at(&b, t1), BreakerState::Closed);
    }

    #[test]
    fn probe_failure_doubles_cool_down_up_to_max() {
        let max = 60 * SEC;
        let b = breaker(CircuitBreakerConfig { max_cool_down: max, ..Default::default() });
        let mut now = Instant::now();
        fail_at(&b, now, DEFAULT_FAILURE_THRESHOLD);
        let mut periods = vec![b.snapshot().cool_down];
        for _ in 0..4 {
            now = open_until(&b).expect("open");
            permit_at(&b, now).report(Outcome::Failure, now);
            assert_eq!(open_until(&b), Some(now + b.snapshot().cool_down));
            periods.push(b.snapshot().cool_down);
        }
        assert_eq!(periods, [10 * SEC, 20 * SEC, 40 * SEC, 60 * SEC, 60 * SEC]);
        assert_eq!(b.opened_count(), 5);

        // A successful probe closes; the next opening starts from the base cool-down again.
        now = open_until(&b).expect("open");
        permit_at(&b, now).report(Outcome::Success, now);
        fail_at(&b, now, DEFAULT_FAILURE_THRESHOLD);
        assert_eq!(open_until(&b), Some(now + DEFAULT_COOL_DOWN));
    }

    #[test]
    fn quota_error_opens_with_quota_cool_down() {
        let quota = 30 * SEC;
        let b = breaker(CircuitBreakerConfig { quota_cool_down: quota, ..Default::default() });
        let t0 = Instant::now();
        permit_at(&b, t0).report(Outcome::QuotaExceeded, t0);
        assert_eq!(open_until(&b), Some(t0 + quota));
        assert_eq!(b.opened_count(), 1);
        // Quota again on the probe: doubled.
        let t1 = t0 + quota;
        permit_at(&b, t1).report(Outcome::QuotaExceeded, t1);
        assert_eq!(open_until(&b), Some(t1 + 2 * quota));
    }

    #[test]
    fn dropped_permit_counts_as_neither_and_frees_the_probe_slot() {
        let b = breaker(CircuitBreakerConfig::default());
        let t0 = Instant::now();
        fail_at(&b, t0, 2);
        drop(permit_at(&b, t0));
        assert_eq!(b.snapshot().consecutive_failures, 2);
        assert_eq!(b.snapshot().window_calls, 2);

        fail_at(&b, t0, DEFAULT_FAILURE_THRESHOLD - 2);
        assert_eq!(state_at(&b, t0), BreakerState::Open);
        let t1 = t0 + DEFAULT_COOL_DOWN;
        let probe = permit_at(&b, t1);
        assert_eq!(b.try_acquire_at(t1).map(|_| ()), Err(Blocked::Probe));
        drop(probe);
        assert_eq!(state_at(&b, t1), BreakerState::HalfOpen);
        let again = permit_at(&b, t1);
        assert!(again.is_probe());
        assert_eq!(b.opened_count(), 1, "a dropped probe is not a failure");
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let b = breaker(CircuitBreakerConfig::default());
        let t0 = Instant::now();
        let sent_before = permit_at(&b, t0);
        let also_sent_before = permit_at(&b, t0);
        fail_at(&b, t0, DEFAULT_FAILURE_THRESHOLD);
        // A request sent before the breaker opened neither closes it ...
        sent_before.report(Outcome::Success, t0);
        assert_eq!(state_at(&b, t0), BreakerState::Open);
        // ... nor fails the probe.
        let t1 = t0 + DEFAULT_COOL_DOWN;
        let _probe = permit_at(&b, t1);
        also_sent_before.report(Outcome::Failure, t1);
        assert_eq!(state_at(&b, t1), BreakerState::HalfOpen);
        assert_eq!(b.opened_count(), 1);
    }

    #[test]
    fn permits_cross_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<Permit>();
    }
}
