//! Every row in exactly one class when bqsink gives up: BigQuery (the reference sink) hangs
//! forever, refuses forever, keeps the rows but never answers, or ends every connection — in
//! every write mode, with a retry time limit of about a second. Checked from outside, by ids:
//! written ids are in the table, `not written` and `not committed` ids are not, in-doubt ids
//! are only rows that were sent, and `read = written + dead-lettered` with the dead-letter
//! queue holding exactly the rows counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bqsink::{dlq, Destination, Endpoints, Fate, Record, RetryPolicy, Schema, Summary, WriteMode};
use bqsink_testkit::refsink::{Code, FailMode, RefSink};

const MODES: [WriteMode; 3] = [WriteMode::Streaming, WriteMode::ExactlyOnce, WriteMode::Batch];
const BATCH: usize = 50;
const INFLIGHT: usize = 4;
const BEFORE: i64 = 400;
const TOTAL: i64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Requests are held, never answered, nothing stored.
    Hangs,
    /// Every request is answered UNAVAILABLE (in the response), nothing stored.
    Refuses,
    /// Rows are stored, answers never come back.
    LosesAnswers,
    /// Every connection ends with UNAVAILABLE at its next request.
    Dies,
}

fn schema() -> Schema {
    Schema::from_json(r#"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "note", "type": "STRING"}]"#)
        .expect("schema")
}

fn table_ids(sink: &RefSink, table: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for row in sink.rows("lost-project", "lost", table) {
        let id: i64 = row["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Runs one mode under one fault; returns the summary and the dead letters by fate.
async fn run(sink: &RefSink, mode: WriteMode, fault: Fault) -> (Summary, BTreeMap<&'static str, BTreeSet<i64>>) {
    let table = format!("t_{mode:?}_{fault:?}").to_lowercase();
    let (queue, letters) = dlq::Channel::bounded(100_000);
    let retry = RetryPolicy::default()
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .with_request_timeout(Duration::from_millis(300))
        .with_max_elapsed(Duration::from_millis(1_000));
    let mut breaker = bqsink::CircuitBreakerConfig::default();
    breaker.cool_down = Duration::from_millis(50);
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
        .project_id("lost-project")
        .dataset_id("lost")
        .table_id(&table)
        .schema(schema())
        .write_mode(mode)
        .batch_size(BATCH)
        .max_concurrent_batches(INFLIGHT)
        .worker_count(1)
        .retry_policy(retry)
        .circuit_breaker(breaker)
        .dead_letter_queue(std::sync::Arc::new(queue))
        .build()
        .await
        .expect("destination");
    let row = |id: i64| Record::new().with("id", id).with("note", format!("row {id}"));
    for id in 0..BEFORE {
        dest.write(row(id)).await.expect("write before the fault");
    }
    dest.flush().await.expect("flush before the fault");
    let faults = sink.faults();
    match fault {
        Fault::Hangs => faults.hang(),
        Fault::Refuses => faults.fail_next(u64::MAX, Code::Unavailable, FailMode::InResponse),
        Fault::LosesAnswers => faults.lose_answers(true),
        Fault::Dies => faults.fail_next(u64::MAX, Code::Unavailable, FailMode::StreamStatus),
    }
    let started = Instant::now();
    // Like a load: rows are written until the destination gives up.
    for id in BEFORE..TOTAL {
        if dest.write(row(id)).await.is_err() {
            break;
        }
    }
    let summary = match dest.close().await {
        Ok(s) => s,
        Err(bqsink::Error::Incomplete { summary, .. }) => summary,
        Err(e) => panic!("{mode:?} {fault:?}: close failed without accounting: {e}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{mode:?} {fault:?}: gave up only after {:?}",
        started.elapsed()
    );
    faults.clear();
    let mut by_fate: BTreeMap<&'static str, BTreeSet<i64>> = BTreeMap::new();
    let mut letters_seen = 0u64;
    for letter in letters.try_iter() {
        letters_seen += 1;
        let id = match &letter.payload {
            bqsink::Payload::Record(r) => match r.get("id") {
                Some(bqsink::Value::Int64(id)) => *id,
                other => panic!("dead letter without an id: {other:?}"),
            },
            other => panic!("unexpected payload {other:?}"),
        };
        let fate = match Fate::of(&letter.reason.message) {
            Some(Fate::InDoubt) => "in doubt",
            Some(Fate::NotWritten) => "not written",
            Some(Fate::NotCommitted) => "not committed",
            None => panic!("{mode:?} {fault:?}: a dead letter without its fate: {}", letter.reason),
        };
        assert!(by_fate.entry(fate).or_default().insert(id), "{mode:?} {fault:?}: id {id} dead-lettered twice");
    }
    assert_eq!(letters_seen, summary.rows_dead_lettered, "{mode:?} {fault:?}: the queue holds what is counted");
    let count = |f: &str| by_fate.get(f).map_or(0, BTreeSet::len);
    eprintln!(
        "{fault:?} × {mode:?}: read {}, written {}, in doubt {}, not written {}, not committed {}, in the table {}",
        summary.rows_read,
        summary.rows_written,
        count("in doubt"),
        count("not written"),
        count("not committed"),
        table_ids(sink, &table).len()
    );
    (summary, by_fate)
}

fn check(sink: &RefSink, mode: WriteMode, fault: Fault, summary: &Summary, by_fate: &BTreeMap<&str, BTreeSet<i64>>) {
    let what =
        format!("{mode:?} {fault:?}: {summary:?} {:?}", by_fate.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>());
    let table = format!("t_{mode:?}_{fault:?}").to_lowercase();
    let in_table = table_ids(sink, &table);
    let empty = BTreeSet::new();
    let fate = |f: &str| by_fate.get(f).unwrap_or(&empty);
    let dead: BTreeSet<i64> = by_fate.values().flatten().copied().collect();
    assert_eq!(summary.rows_read, summary.rows_written + summary.rows_dead_lettered, "{what}");
    assert_eq!(summary.rows_in_doubt, fate("in doubt").len() as u64, "{what}");
    assert!(summary.rows_read > BEFORE as u64 && summary.rows_read <= TOTAL as u64, "{what}");
    assert!(summary.rows_dead_lettered > 0, "{what}: the fault cost nothing?");
    // Every row read and not dead-lettered is written: in the table.
    for id in 0..summary.rows_read as i64 {
        if !dead.contains(&id) {
            assert!(in_table.contains_key(&id), "{what}: id {id} counted written, not in the table");
        }
    }
    for id in fate("not written").iter().chain(fate("not committed")) {
        assert!(!in_table.contains_key(id), "{what}: id {id} dead-lettered as not written is in the table");
    }
    // Only rows of requests on the wire can be in doubt.
    assert!(fate("in doubt").len() <= BATCH * (INFLIGHT + 1), "{what}");
    match (mode, fault) {
        (WriteMode::Batch, _) => {
            assert!(in_table.is_empty(), "{what}: a batch load that gave up left rows in the table");
            assert_eq!(summary.rows_written, 0, "{what}");
            assert!(fate("in doubt").is_empty(), "{what}");
            assert!(fate("not committed").len() >= BEFORE as usize, "{what}: acknowledged rows not reported");
        }
        (_, Fault::LosesAnswers) => {
            assert!(!fate("in doubt").is_empty(), "{what}: stored, unanswered rows must be in doubt");
            assert!(fate("in doubt").iter().all(|id| in_table.contains_key(id)), "{what}: in doubt, yet never sent");
        }
        (_, Fault::Refuses) => {
            // The server answered every attempt: nothing is in doubt.
            assert!(fate("in doubt").is_empty(), "{what}");
        }
        (_, Fault::Dies) => {
            // Connections ended before storing anything: in doubt to bqsink, absent in fact.
            assert!(fate("in doubt").iter().all(|id| !in_table.contains_key(id)), "{what}");
        }
        (_, Fault::Hangs) => {
            // Held requests are handled once the server recovers: in doubt, and rightly so.
            assert!(!fate("in doubt").is_empty(), "{what}: requests on the wire must be in doubt");
        }
    }
    if mode != WriteMode::Batch {
        assert!(summary.rows_written >= BEFORE as u64, "{what}");
        assert_eq!(
            in_table.len() as u64,
            summary.rows_written + fate("in doubt").iter().filter(|id| in_table.contains_key(id)).count() as u64,
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_in_one_class_when_bqsink_gives_up() {
    let sink = RefSink::start().await.expect("reference sink");
    for fault in [Fault::Hangs, Fault::Refuses, Fault::LosesAnswers, Fault::Dies] {
        for mode in MODES {
            let (summary, by_fate) = run(&sink, mode, fault).await;
            check(&sink, mode, fault, &summary, &by_fate);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_gives_up_at_once_with_every_row_accounted() {
    let sink = RefSink::start().await.expect("reference sink");
    for mode in MODES {
        let table = format!("abort_{mode:?}").to_lowercase();
        let (queue, letters) = dlq::Channel::bounded(100_000);
        let dest = Destination::builder()
            .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
            .project_id("lost-project")
            .dataset_id("lost")
            .table_id(&table)
            .schema(schema())
            .write_mode(mode)
            .batch_size(BATCH)
            .max_concurrent_batches(INFLIGHT)
            .dead_letter_queue(std::sync::Arc::new(queue))
            .build()
            .await
            .expect("destination");
        for id in 0..100 {
            dest.write(Record::new().with("id", id)).await.expect("write");
        }
        dest.flush().await.expect("flush");
        // The default policy would wait minutes for a hung server; the abort ends it now.
        sink.faults().hang();
        let abort = dest.abort_handle();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            abort.fire("stopped by a second SIGTERM");
        });
        let mut read = 100;
        for id in 100..100 + (BATCH * INFLIGHT * 3) as i64 {
            read += 1;
            if dest.write(Record::new().with("id", id)).await.is_err() {
                break;
            }
        }
        let summary = match dest.close().await {
            Ok(s) => s,
            Err(bqsink::Error::Incomplete { summary, .. }) => summary,
            Err(e) => panic!("{mode:?}: {e}"),
        };
        sink.faults().clear();
        assert!(started.elapsed() < Duration::from_secs(10), "{mode:?}: the abort took {:?}", started.elapsed());
        assert_eq!(summary.rows_read, read, "{mode:?}");
        assert_eq!(summary.rows_read, summary.rows_written + summary.rows_dead_lettered, "{mode:?}: {summary:?}");
        let reasons: Vec<String> = letters.try_iter().map(|l| l.reason.message).collect();
        assert_eq!(reasons.len() as u64, summary.rows_dead_lettered, "{mode:?}");
        assert!(
            reasons.iter().all(|r| Fate::of(r).is_some() && r.contains("stopped by a second SIGTERM")),
            "{mode:?}: {reasons:?}"
        );
    }
}

/// Many tables (a dataset writer, as `bqsink segment` uses): an outage mid-way ends with every row
/// of every table in one class, and `close` says what happened with the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_of_a_dataset_writer_accounts_for_its_rows() {
    let sink = RefSink::start().await.expect("reference sink");
    for mode in MODES {
        let dataset = format!("many_{mode:?}").to_lowercase();
        let tables = ["a", "b", "c"];
        for t in tables {
            sink.create_table(
                "lost-project",
                &dataset,
                t,
                serde_json::json!([{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}]),
            )
            .expect("table");
        }
        let (queue, letters) = dlq::Channel::bounded(100_000);
        let retry = RetryPolicy::default()
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .with_request_timeout(Duration::from_millis(300))
            .with_max_elapsed(Duration::from_millis(1_000));
        let writer = bqsink::DatasetWriter::builder()
            .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
            .project_id("lost-project")
            .dataset_id(&dataset)
            .write_mode(mode)
            .batch_size(BATCH)
            .retry_policy(retry)
            .dead_letter_queue(std::sync::Arc::new(queue))
            .build()
            .await
            .expect("writer");
        for id in 0..300i64 {
            writer.write(tables[id as usize % 3], Record::new().with("id", id)).await.expect("write");
        }
        writer.flush().await.expect("flush");
        sink.faults().lose_answers(true);
        for id in 300..900i64 {
            if writer.write(tables[id as usize % 3], Record::new().with("id", id)).await.is_err() {
                break;
            }
        }
        let result = writer.close().await;
        sink.faults().clear();
        let summary = match result {
            Err(bqsink::Error::Incomplete { summary, .. }) => summary,
            Ok(s) => s,
            Err(e) => panic!("{mode:?}: close failed without accounting: {e}"),
        };
        let letters: Vec<bqsink::DeadLetter> = letters.try_iter().collect();
        assert_eq!(letters.len() as u64, summary.rows_dead_lettered, "{mode:?}");
        assert_eq!(summary.rows_read, summary.rows_written + summary.rows_dead_lettered, "{mode:?}: {summary:?}");
        assert!(letters.iter().all(|l| Fate::of(&l.reason.message).is_some()), "{mode:?}");
        // Distinct ids: on the default stream a retried request may be stored twice.
        let stored = tables
            .iter()
            .flat_map(|t| sink.rows("lost-project", &dataset, t))
            .map(|row| row["id"].as_str().unwrap_or_default().to_owned())
            .collect::<BTreeSet<String>>()
            .len();
        match mode {
            WriteMode::Batch => assert_eq!((stored, summary.rows_written), (0, 0), "{mode:?}"),
            _ => assert_eq!(stored as u64, summary.rows_written + summary.rows_in_doubt, "{mode:?}: {summary:?}"),
        }
    }
}
