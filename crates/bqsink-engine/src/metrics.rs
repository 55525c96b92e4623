//! Counters, gauges and an append-latency histogram for one destination, lock-free, with a plain
//! snapshot and the Prometheus text exposition format (0.0.4).
//!
//! The accounting identity of the design, `read = written + dead_lettered (+ in flight)`, is
//! exposed term by term: [`MetricsSnapshot::records_written`],
//! [`MetricsSnapshot::rows_dead_lettered`] and [`MetricsSnapshot::in_flight_rows`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use crate::breaker::BreakerState;

/// Upper bounds, in milliseconds, of the append-latency histogram's finite buckets; one more
/// bucket (`+Inf`) holds the rest. From a fast in-region round trip (~1 ms) to a request that sat
/// behind a 30 s deadline, roughly 1-2-5 per decade.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

/// Number of histogram buckets, `+Inf` included.
pub const LATENCY_BUCKET_COUNT: usize = LATENCY_BUCKETS_MS.len() + 1;

/// The `le` label of each bucket, in seconds as Prometheus expects.
const LE_LABELS: [&str; LATENCY_BUCKET_COUNT] =
    ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "30", "+Inf"];

/// Live metrics of one destination: atomics only, so every writer task can record without a lock.
/// Share it through an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    streaming_enabled: bool,
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    batches_processed: AtomicU64,
    errors_encountered: AtomicU64,
    retries: AtomicU64,
    reconnects: AtomicU64,
    rows_dead_lettered: AtomicU64,
    rate_limit_waits: AtomicU64,
    rate_limit_wait_nanos: AtomicU64,
    metadata_calls: AtomicU64,
    // Signed so a sub racing ahead of its add cannot wrap around; snapshots clamp at zero.
    in_flight_rows: AtomicI64,
    in_flight_bytes: AtomicI64,
    breaker_state: AtomicU8,
    latency_buckets: [AtomicU64; LATENCY_BUCKET_COUNT],
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
}

impl Default for Metrics {
    /// Metrics of a streaming destination (the default write mode).
    fn default() -> Self {
        Self::new(true)
    }
}

impl Metrics {
    /// Zeroed metrics; `streaming_enabled` says whether the destination writes through the
    /// streaming `_default` stream, and is reported as is.
    pub fn new(streaming_enabled: bool) -> Self {
        Self {
            streaming_enabled,
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            batches_processed: AtomicU64::new(0),
            errors_encountered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            rows_dead_lettered: AtomicU64::new(0),
            rate_limit_waits: AtomicU64::new(0),
            rate_limit_wait_nanos: AtomicU64::new(0),
            metadata_calls: AtomicU64::new(0),
            in_flight_rows: AtomicI64::new(0),
            in_flight_bytes: AtomicI64::new(0),
            breaker_state: AtomicU8::new(breaker_gauge(BreakerState::Closed)),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
        }
    }

    /// Whether the destination writes through the streaming `_default` stream.
    pub fn streaming_enabled(&self) -> bool {
        self.streaming_enabled
    }

    /// A batch of `rows` rows and `bytes` bytes was acknowledged, `latency` after it was sent.
    pub fn record_batch(&self, rows: u64, bytes: u64, latency: Duration) {
        self.records_written.fetch_add(rows, Relaxed);
        self.bytes_written.fetch_add(bytes, Relaxed);
        self.batches_processed.fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MS.iter().position(|&ms| us <= ms * 1_000).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        self.latency_max_us.fetch_max(us, Relaxed);
    }

    /// A request failed (whether or not it is retried).
    pub fn record_error(&self) {
        self.errors_encountered.fetch_add(1, Relaxed);
    }

    /// A request is sent again after a temporary failure.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A stream was opened again after one ended.
    pub fn record_reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// `rows` rows went to the dead-letter queue.
    pub fn record_dead_letter(&self, rows: u64) {
        self.rows_dead_lettered.fetch_add(rows, Relaxed);
    }

    /// A batch waited `waited` for the rate limiter; zero (no wait) is not counted, so the result
    /// of [`RateLimiter::acquire`](crate::limiter::RateLimiter::acquire) can be passed as is.
    pub fn record_rate_limit_wait(&self, waited: Duration) {
        if waited.is_zero() {
            return;
        }
        self.rate_limit_waits.fetch_add(1, Relaxed);
        self.rate_limit_wait_nanos.fetch_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A metadata (REST) call was made: table get, create or patch.
    pub fn record_metadata_call(&self) {
        self.metadata_calls.fetch_add(1, Relaxed);
    }

    /// Rows and bytes were sent and await acknowledgement.
    pub fn add_in_flight(&self, rows: u64, bytes: u64) {
        self.in_flight_rows.fetch_add(saturating_i64(rows), Relaxed);
        self.in_flight_bytes.fetch_add(saturating_i64(bytes), Relaxed);
    }

    /// Rows and bytes in flight were acknowledged, dead-lettered or given up on.
    pub fn sub_in_flight(&self, rows: u64, bytes: u64) {
        self.in_flight_rows.fetch_sub(saturating_i64(rows), Relaxed);
        self.in_flight_bytes.fetch_sub(saturating_i64(bytes), Relaxed);
    }

    /// The circuit breaker moved to `state`.
    pub fn set_breaker_state(&self, state: BreakerState) {
        self.breaker_state.store(breaker_gauge(state), Relaxed);
    }

    /// The values now. Each is read atomically, not all together: under load the counters of one
    /// snapshot may be a few operations apart. The histogram count is the sum of its buckets, so
    /// it is always consistent with them.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let latency_buckets: [u64; LATENCY_BUCKET_COUNT] =
            std::array::from_fn(|i| self.latency_buckets[i].load(Relaxed));
        let latency_count = latency_buckets.iter().sum::<u64>();
        let latency_sum_ms = self.latency_sum_us.load(Relaxed) as f64 / 1_000.0;
        let latency_max_ms = self.latency_max_us.load(Relaxed) as f64 / 1_000.0;
        let mut snapshot = MetricsSnapshot {
            records_written: self.records_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            batches_processed: self.batches_processed.load(Relaxed),
            errors_encountered: self.errors_encountered.load(Relaxed),
            retries: self.retries.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            rows_dead_lettered: self.rows_dead_lettered.load(Relaxed),
            rate_limit_waits: self.rate_limit_waits.load(Relaxed),
            rate_limit_wait_seconds: self.rate_limit_wait_nanos.load(Relaxed) as f64 / 1e9,
            metadata_calls: self.metadata_calls.load(Relaxed),
            in_flight_rows: u64::try_from(self.in_flight_rows.load(Relaxed)).unwrap_or(0),
            in_flight_bytes: u64::try_from(self.in_flight_bytes.load(Relaxed)).unwrap_or(0),
            breaker_state: breaker_from_gauge(self.breaker_state.load(Relaxed)),
            latency_buckets,
            latency_count,
            latency_sum_ms,
            latency_max_ms,
            average_latency_ms: if latency_count == 0 { 0.0 } else { latency_sum_ms / latency_count as f64 },
            latency_p50_ms: 0.0,
            latency_p95_ms: 0.0,
            latency_p99_ms: 0.0,
            streaming_enabled: self.streaming_enabled,
        };
        snapshot.latency_p50_ms = snapshot.latency_quantile_ms(0.50);
        snapshot.latency_p95_ms = snapshot.latency_quantile_ms(0.95);
        snapshot.latency_p99_ms = snapshot.latency_quantile_ms(0.99);
        snapshot
    }
}

/// The metrics at one moment, as plain values.
///
/// Latency percentiles are estimated from the histogram: the upper bound of the bucket holding the
/// quantile, or the largest latency seen if that is lower (which also stands in for the `+Inf`
/// bucket). They never under-state, and over-state by at most one bucket's width.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Rows acknowledged by BigQuery.
    pub records_written: u64,
    /// Bytes of encoded rows acknowledged by BigQuery.
    pub bytes_written: u64,
    /// AppendRows requests acknowledged.
    pub batches_processed: u64,
    /// Failed requests, retried or not.
    pub errors_encountered: u64,
    /// Requests sent again after a temporary failure.
    pub retries: u64,
    /// Streams opened again after one ended.
    pub reconnects: u64,
    /// Rows sent to the dead-letter queue.
    pub rows_dead_lettered: u64,
    /// Batches that waited for the rate limiter.
    pub rate_limit_waits: u64,
    /// Total time batches waited for the rate limiter, in seconds.
    pub rate_limit_wait_seconds: f64,
    /// Metadata (REST) calls made.
    pub metadata_calls: u64,
    /// Rows sent and not yet acknowledged.
    pub in_flight_rows: u64,
    /// Bytes sent and not yet acknowledged.
    pub in_flight_bytes: u64,
    /// The circuit breaker's state.
    pub breaker_state: BreakerState,
    /// Acknowledged batches per latency bucket (not cumulative): index `i` counts round trips of
    /// at most [`LATENCY_BUCKETS_MS`]`[i]` ms and above the previous bound; the last, the rest.
    pub latency_buckets: [u64; LATENCY_BUCKET_COUNT],
    /// Round trips in the histogram.
    pub latency_count: u64,
    /// Sum of the round trips, in milliseconds.
    pub latency_sum_ms: f64,
    /// Longest round trip seen, in milliseconds.
    pub latency_max_ms: f64,
    /// Mean round trip, in milliseconds (0 before the first batch).
    pub average_latency_ms: f64,
    /// Median round trip estimate, in milliseconds.
    pub latency_p50_ms: f64,
    /// 95th percentile round trip estimate, in milliseconds.
    pub latency_p95_ms: f64,
    /// 99th percentile round trip estimate, in milliseconds.
    pub latency_p99_ms: f64,
    /// Whether the destination writes through the streaming `_default` stream.
    pub streaming_enabled: bool,
}

impl MetricsSnapshot {
    /// The `q`-quantile (0 ≤ q ≤ 1) of the round trips in milliseconds, estimated as described on
    /// [`MetricsSnapshot`]; 0 before the first batch.
    pub fn latency_quantile_ms(&self, q: f64) -> f64 {
        if self.latency_count == 0 {
            return 0.0;
        }
        let count = self.latency_count as f64;
        let rank = (q.clamp(0.0, 1.0) * count).ceil().clamp(1.0, count);
        let mut cumulative = 0u64;
        for (i, &n) in self.latency_buckets.iter().enumerate() {
            cumulative += n;
            if cumulative as f64 >= rank {
                return LATENCY_BUCKETS_MS
                    .get(i)
                    .map_or(self.latency_max_ms, |&ms| (ms as f64).min(self.latency_max_ms));
            }
        }
        self.latency_max_ms
    }

    /// The snapshot in the Prometheus text exposition format 0.0.4, every sample carrying `labels`
    /// (such as `[("destination", "prod")]`).
    ///
    /// Metric names start with `bqsink_`; counters end in `_total`; the append latency is the
    /// histogram `bqsink_append_latency_seconds`. Label values are escaped; label names are
    /// sanitised to `[a-zA-Z_][a-zA-Z0-9_]*`, and a label named `le` is written `le_` so it cannot
    /// clash with the histogram's.
    pub fn to_prometheus(&self, labels: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(4_096);
        let base = render_labels(labels, None);
        let counters: [(&str, &str, f64); 10] = [
            ("records_written", "Rows acknowledged by BigQuery.", self.records_written as f64),
            ("bytes_written", "Bytes of encoded rows acknowledged by BigQuery.", self.bytes_written as f64),
            ("batches_processed", "AppendRows requests acknowledged.", self.batches_processed as f64),
            ("errors", "Failed requests, retried or not.", self.errors_encountered as f64),
            ("retries", "Requests sent again after a temporary failure.", self.retries as f64),
            ("reconnects", "Streams opened again after one ended.", self.reconnects as f64),
            ("rows_dead_lettered", "Rows sent to the dead-letter queue.", self.rows_dead_lettered as f64),
            ("rate_limit_waits", "Batches that waited for the rate limiter.", self.rate_limit_waits as f64),
            ("rate_limit_wait_seconds", "Time batches waited for the rate limiter.", self.rate_limit_wait_seconds),
            ("metadata_calls", "Metadata (REST) calls made.", self.metadata_calls as f64),
        ];
        for (name, help, value) in counters {
            family(&mut out, &format!("{name}_total"), help, "counter");
            sample(&mut out, &format!("bqsink_{name}_total"), &base, value);
        }
        let gauges: [(&str, &str, f64); 4] = [
            ("in_flight_rows", "Rows sent and not yet acknowledged.", self.in_flight_rows as f64),
            ("in_flight_bytes", "Bytes sent and not yet acknowledged.", self.in_flight_bytes as f64),
            (
                "breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                f64::from(breaker_gauge(self.breaker_state)),
            ),
            (
                "streaming_enabled",
                "1 when writing through the streaming _default stream.",
                f64::from(u8::from(self.streaming_enabled)),
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, help, "gauge");
            sample(&mut out, &format!("bqsink_{name}"), &base, value);
        }

        family(&mut out, "append_latency_seconds", "AppendRows round trips, sent to acknowledged.", "histogram");
        let mut cumulative = 0u64;
        for (le, n) in LE_LABELS.iter().zip(self.latency_buckets) {
            cumulative += n;
            sample(
                &mut out,
                "bqsink_append_latency_seconds_bucket",
                &render_labels(labels, Some(le)),
                cumulative as f64,
            );
        }
        sample(&mut out, "bqsink_append_latency_seconds_sum", &base, self.latency_sum_ms / 1_000.0);
        sample(&mut out, "bqsink_append_latency_seconds_count", &base, cumulative as f64);
        out
    }
}

/// `# HELP` and `# TYPE` of `bqsink_{name}`.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP bqsink_{name} {help}");
    let _ = writeln!(out, "# TYPE bqsink_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{labels} {}", format_value(value));
}

/// A sample value: integers without a fraction, non-finite values as Prometheus spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// `{name="value",…}` (empty without labels), `le` last when given.
fn render_labels(labels: &[(&str, &str)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let pairs = labels.iter().map(|&(k, v)| (label_name(k), v)).chain(le.map(|le| ("le".to_owned(), le)));
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&name);
        out.push_str("=\"");
        escape_label_value(&mut out, value);
        out.push('"');
    }
    out.push('}');
    out
}

fn label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out == "le" {
        out.push('_');
    }
    out
}

/// Backslash, double quote and line feed, escaped as the text format requires.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn breaker_gauge(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

fn breaker_from_gauge(v: u8) -> BreakerState {
    match v {
        1 => BreakerState::HalfOpen,
        2 => BreakerState::Open,
        _ => BreakerState::Closed,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn counters_add_up_across_threads() {
        let metrics = Arc::new(Metrics::new(true));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        m.record_batch(10, 100, 4 * MS);
                        m.record_error();
                        m.record_retry();
                        m.record_reconnect();
                        m.record_dead_letter(2);
                        m.record_rate_limit_wait(MS);
                        m.record_rate_limit_wait(Duration::ZERO);
                        m.record_metadata_call();
                        m.add_in_flight(10, 100);
                        m.sub_in_flight(10, 100);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        metrics.add_in_flight(7, 70);
        let s = metrics.snapshot();
        assert_eq!((s.records_written, s.bytes_written, s.batches_processed), (80_000, 800_000, 8_000));
        assert_eq!((s.errors_encountered, s.retries, s.reconnects, s.metadata_calls), (8_000, 8_000, 8_000, 8_000));
        assert_eq!(s.rows_dead_lettered, 16_000);
        assert_eq!(s.rate_limit_waits, 8_000);
        assert!((s.rate_limit_wait_seconds - 8.0).abs() < 1e-9);
        assert_eq!((s.in_flight_rows, s.in_flight_bytes), (7, 70));
        assert_eq!(s.latency_count, 8_000);
        assert_eq!(s.latency_buckets[2], 8_000, "4 ms is in the ≤ 5 ms bucket");
        assert!((s.average_latency_ms - 4.0).abs() < 1e-9);
        assert!(s.streaming_enabled);
    }

    #[test]
    fn gauges_and_empty_snapshot() {
        let m = Metrics::new(false);
        let s = m.snapshot();
        assert_eq!((s.latency_count, s.average_latency_ms, s.latency_p99_ms), (0, 0.0, 0.0));
        assert!(!s.streaming_enabled);
        assert_eq!(s.breaker_state, BreakerState::Closed);
        m.sub_in_flight(5, 5);
        assert_eq!(m.snapshot().in_flight_rows, 0, "clamped at zero");
        m.add_in_flight(5, 5);
        assert_eq!(m.snapshot().in_flight_rows, 0, "and still balanced");
        for state in [BreakerState::Open, BreakerState::HalfOpen, BreakerState::Closed] {
            m.set_breaker_state(state);
            assert_eq!(m.snapshot().breaker_state, state);
        }
    }

    #[test]
    fn percentiles_from_a_known_distribution() {
        let m = Metrics::default();
        for _ in 0..50 {
            m.record_batch(1, 1, 3 * MS); // ≤ 5 ms
        }
        for _ in 0..45 {
            m.record_batch(1, 1, 40 * MS); // ≤ 50 ms
        }
        for _ in 0..4 {
            m.record_batch(1, 1, 150 * MS); // ≤ 200 ms
        }
        m.record_batch(1, 1, 45_000 * MS); // +Inf
        let s = m.snapshot();
        assert_eq!(s.latency_p50_ms, 5.0);
        assert_eq!(s.latency_p95_ms, 50.0);
        assert_eq!(s.latency_p99_ms, 200.0);
        assert_eq!(s.latency_quantile_ms(1.0), 45_000.0, "+Inf bucket: the largest seen");
        assert_eq!(s.latency_max_ms, 45_000.0);
        assert!((s.average_latency_ms - 475.5).abs() < 1e-9);

        // A bound is inclusive, and never above the largest latency seen.
        let m = Metrics::default();
        m.record_batch(1, 1, 5 * MS);
        m.record_batch(1, 1, 3 * MS);
        let s = m.snapshot();
        assert_eq!(s.latency_buckets[2], 2);
        assert_eq!(s.latency_p99_ms, 5.0);
        let m = Metrics::default();
        m.record_batch(1, 1, 300 * MS);
        assert_eq!(m.snapshot().latency_p50_ms, 300.0);
    }

    fn is_name(s: &str, colon: bool) -> bool {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        s.chars().next().is_some_and(|c| !c.is_ascii_digit() && ok(c)) && s.chars().all(ok)
    }

    /// A parsed sample line: name, labels in order, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A sample line `name{labels} value` split up, or why it is malformed.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = body.find("=\"").ok_or("label without =\"")?;
                let key = &body[..eq];
                if !is_name(key, false) {
                    return Err(format!("bad label name {key:?}"));
                }
                let mut value = String::new();
                let mut chars = body[eq + 2..].char_indices();
                let end = loop {
                    let (i, c) = chars.next().ok_or("unterminated label value")?;
                    match c {
                        '\\' => match chars.next().ok_or("dangling escape")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => return Err(format!("bad escape \\{c}")),
                        },
                        '"' => break eq + 2 + i + 1,
                        c => value.push(c),
                    }
                };
                labels.push((key.to_owned(), value));
                body = &body[end..];
                if let Some(after) = body.strip_prefix(',') {
                    body = after;
                } else if !body.starts_with('}') {
                    return Err(format!("expected , or }} after a label: {body:?}"));
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
        };
        Ok((name.to_owned(), labels, value))
    }

    #[test]
    fn prometheus_output_is_well_formed() {
        let m = Metrics::new(true);
        m.record_batch(100, 1_000, 3 * MS);
        m.record_batch(100, 1_000, 40 * MS);
        m.record_batch(100, 1_000, 45 * Duration::from_secs(1));
        m.record_rate_limit_wait(Duration::from_millis(1_500));
        m.set_breaker_state(BreakerState::Open);
        let text = m.snapshot().to_prometheus(&[("destination", "prod"), ("region", "eu")]);
        assert!(text.ends_with('\n'));

        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty());
                assert!(helped.insert(name.to_owned()), "one HELP per family: {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(helped.contains(name), "HELP before TYPE: {name}");
                assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none());
            } else {
                let (name, labels, value) = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
                assert!(name.starts_with("bqsink_"), "{name}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| typed.get(*f).is_some_and(|k| k == "histogram")))
                    .unwrap_or(&name)
                    .to_owned();
                let kind = typed.get(&family).unwrap_or_else(|| panic!("sample before its TYPE: {name}"));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                assert_eq!(labels[..2], [("destination".into(), "prod".into()), ("region".into(), "eu".into())]);
                samples.push((name, labels, value));
            }
        }
        assert_eq!(helped.len(), typed.len());
        assert_eq!(typed.len(), 15);

        let value = |n: &str| samples.iter().find(|s| s.0 == n).map(|s| s.2).expect(n);
        assert_eq!(value("bqsink_records_written_total"), 300.0);
        assert_eq!(value("bqsink_rate_limit_wait_seconds_total"), 1.5);
        assert_eq!(value("bqsink_breaker_state"), 2.0);
        assert_eq!(value("bqsink_streaming_enabled"), 1.0);
        assert!((value("bqsink_append_latency_seconds_sum") - 45.043).abs() < 1e-9);

        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.0 == "bqsink_append_latency_seconds_bucket")
            .map(|s| {
                assert_eq!(s.1.len(), 3);
                assert_eq!(s.1[2].0, "le");
                (s.1[2].1.clone(), s.2)
            })
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKET_COUNT);
        let bounds: Vec<f64> =
            buckets.iter().map(|(le, _)| if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") }).collect();
        for (i, ms) in LATENCY_BUCKETS_MS.iter().enumerate() {
            assert_eq!(bounds[i], *ms as f64 / 1_000.0);
        }
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
        let last = buckets.last().expect("buckets");
        assert_eq!(last.0, "+Inf");
        assert_eq!(last.1, value("bqsink_append_latency_seconds_count"));
        assert_eq!(last.1, 3.0);
        assert_eq!(buckets[2].1, 1.0); // ≤ 5 ms
        assert_eq!(buckets[5].1, 2.0); // ≤ 50 ms
        assert_eq!(buckets[13].1, 2.0); // ≤ 30 s
    }

    #[test]
    fn prometheus_without_labels_and_with_escaping() {
        let s = Metrics::default().snapshot();
        let plain = s.to_prometheus(&[]);
        assert!(plain.contains("\nbqsink_records_written_total 0\n"));
        assert!(plain.contains("\nbqsink_append_latency_seconds_bucket{le=\"+Inf\"} 0\n"));

        let text = s.to_prometheus(&[("table", "a\"b\\c\nd"), ("9bad-name", "x"), ("le", "y")]);
        assert!(text.contains(r#"bqsink_retries_total{table="a\"b\\c\nd",_9bad_name="x",le_="y"} 0"#), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, labels, _) = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert_eq!(labels[0], ("table".to_owned(), "a\"b\\c\nd".to_owned()));
        }
    }

    #[test]
    fn metrics_are_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Metrics>();
        assert_send_sync::<MetricsSnapshot>();
    }
}
