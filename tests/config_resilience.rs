//! The retry time limit and the request deadline, set as configuration properties (as a config
//! file or the CLI's `--retry-time-limit` / `--request-timeout` set them), bound how long a
//! destination keeps trying against a server that refuses or hangs forever: it gives up within
//! seconds instead of the default five minutes, and no row is reported written.

use std::time::{Duration, Instant};

use bqsink::{dlq, DestinationBuilder, DestinationConfig, Endpoints, Record, Schema, WriteMode};
use bqsink_testkit::refsink::{Code, FailMode, RefSink};

/// Far below the default five-minute retry limit: a bound on behaviour, not a benchmark.
const GIVES_UP_WITHIN: Duration = Duration::from_secs(20);
const ROWS: i64 = 50;

fn config(table: &str, mode: WriteMode) -> DestinationConfig {
    let mut c = DestinationConfig::new("resilience-project", "resilience", table);
    c.write_mode = Some(mode);
    c.batch_size = 10;
    c.worker_count = 1;
    c.retry_time_limit_ms = 1_500;
    c.request_timeout_ms = 500;
    c.retry_initial_backoff_ms = 20;
    c.retry_max_backoff_ms = 200;
    // Attempts are not what stops it: the time limit is.
    c.retry_max_attempts = 1_000;
    // While the breaker is open, writes wait out its cool-down (10 s by default), which the retry
    // time limit does not shorten: a short cool-down keeps the limit the thing measured.
    c.breaker_cool_down_ms = 250;
    c.breaker_quota_cool_down_ms = 250;
    c.breaker_max_cool_down_ms = 1_000;
    c
}

/// Writes `ROWS` rows and closes; returns how long that took and whether the destination
/// reported every row written.
async fn write_and_close(
    sink: &RefSink,
    table: &str,
    mode: WriteMode,
    fault: impl FnOnce(&RefSink),
) -> (Duration, String) {
    let schema = Schema::from_json(r#"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}]"#).expect("schema");
    let (queue, letters) = dlq::Channel::bounded(10_000);
    let dest = DestinationBuilder::from_config(config(table, mode))
        .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
        .schema(schema)
        .dead_letter_queue(std::sync::Arc::new(queue))
        .build()
        .await
        .expect("destination");
    fault(sink);
    let started = Instant::now();
    let mut write_error = None;
    for id in 0..ROWS {
        if let Err(e) = dest.write(Record::new().with("id", id)).await {
            write_error = Some(e.to_string());
            break;
        }
    }
    let outcome = match (write_error, dest.close().await) {
        (Some(e), _) => format!("write failed: {e}"),
        (None, Err(e)) => format!("close failed: {e}"),
        (None, Ok(summary)) => {
            assert!(summary.rows_written < ROWS as u64, "{mode:?}: every row reported written: {summary:?}");
            format!("{summary:?}, {} dead letters", letters.try_iter().count())
        }
    };
    let elapsed = started.elapsed();
    sink.faults().clear();
    (elapsed, outcome)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_refusing_forever_is_given_up_on_within_the_retry_time_limit() {
    let sink = RefSink::start().await.expect("sink");
    let (elapsed, outcome) = write_and_close(&sink, "refused", WriteMode::Streaming, |s| {
        s.faults().fail_next(u64::MAX, Code::Unavailable, FailMode::InResponse);
    })
    .await;
    assert!(elapsed < GIVES_UP_WITHIN, "gave up after {elapsed:?}: {outcome}");
    assert!(sink.rows("resilience-project", "resilience", "refused").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_server_is_given_up_on_within_the_request_timeout_and_retry_time_limit() {
    let sink = RefSink::start().await.expect("sink");
    let (elapsed, outcome) = write_and_close(&sink, "hung", WriteMode::ExactlyOnce, |s| s.faults().hang()).await;
    assert!(elapsed < GIVES_UP_WITHIN, "gave up after {elapsed:?}: {outcome}");
}
