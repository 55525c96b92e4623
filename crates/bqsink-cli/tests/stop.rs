//! `bqsink load` when it cannot finish, seen from outside the process against the reference
//! sink: a total outage (answers lost, or every request refused) in each write mode, a SIGTERM
//! (a graceful stop), a second SIGTERM (give up at once) and the end of the grace period. Each
//! time every row read is counted once: `read = written + dead-lettered` on the summary line,
//! the dead-letter file holds exactly the rows counted, and the ids in the table agree with
//! each row's class.
//!
//! Failing when written, on two accounting holes when a write fails: the rest of the chunk
//! being placed is dropped (`place_batches`, crates/bqsink/src/destination/load.rs), and a
//! chunk waiting behind a partial request that fails is dropped after being counted read
//! (`write_encoded`, crates/bqsink-engine/src/sink/batch.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bqsink_testkit::refsink::{Code, FailMode, RefSink};

const PROJECT: &str = "stop-project";
const DATASET: &str = "stop";
/// An input chunk that holds about one request (`--batch-size 200`) of rows.
const SMALL_CHUNK: &str = "16384";

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-stop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// `rows` NDJSON lines with ids 0..rows, in order.
fn input(dir: &Path, rows: i64) -> PathBuf {
    let path = dir.join(format!("rows-{rows}.ndjson"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("input"));
    for id in 0..rows {
        writeln!(f, r#"{{"id": {id}, "note": "row number {id} of the stop test, with some padding text"}}"#)
            .expect("line");
    }
    f.flush().expect("flush");
    path
}

fn schema_file(dir: &Path) -> PathBuf {
    let path = dir.join("schema.json");
    std::fs::write(
        &path,
        r#"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "note", "type": "STRING"}]"#,
    )
    .expect("schema");
    path
}

/// `bqsink load` of `file` into `table` with a dead-letter file `<dir>/<table>.dlq.ndjson`.
fn bqsink(sink: &RefSink, table: &str, mode: &str, file: &Path, extra: &[&str]) -> Command {
    let dir = file.parent().expect("dir");
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    c.env("BIGQUERY_EMULATOR_HOST", sink.rest_host())
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", sink.grpc_host())
        .env_remove("BIGQUERY_PROJECT_ID")
        .env_remove("BIGQUERY_DATASET")
        .env_remove("BQSINK_FAILPOINT")
        .env_remove("RUST_LOG")
        .args(["load", "--project", PROJECT, "--dataset", DATASET, "--create-dataset", "--table", table])
        .args(["--mode", mode, "--schema"])
        .arg(schema_file(dir))
        .arg("--dlq")
        .arg(dlq_path(dir, table))
        .args(extra)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn dlq_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!("{table}.dlq.ndjson"))
}

/// A running `bqsink load`, its stdout and stderr drained on threads (so a chatty child never
/// blocks on a full pipe).
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    started: Instant,
}

/// How a run ended.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// From the spawn to the exit.
    took: Duration,
}

impl Ended {
    fn summary(&self) -> Summary {
        let last = self.stdout.lines().last().unwrap_or_default();
        Summary::parse(last)
            .unwrap_or_else(|| panic!("no summary line: stdout {:?}\nstderr {}", self.stdout, self.stderr))
    }
}

fn drain(r: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("bqsink starts");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running { child, stdout, stderr, started: Instant::now() }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_some()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the exit, SIGKILLing the child after `limit` (and failing the test).
    async fn end(mut self, limit: Duration) -> Ended {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.join().unwrap_or_default();
                panic!("bqsink still running after {limit:?}; killed. stderr: {stderr}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let took = self.started.elapsed();
        Ended { status, stdout: self.stdout.join().expect("stdout"), stderr: self.stderr.join().expect("stderr"), took }
    }
}

/// Waits until the sink has stored at least `rows` rows (failing after `limit`).
async fn appended(sink: &RefSink, run: &mut Running, rows: u64, limit: Duration) {
    let started = Instant::now();
    while sink.stats().rows_appended < rows {
        assert!(!run.exited(), "bqsink ended before the sink had {rows} rows");
        assert!(started.elapsed() < limit, "the sink has {} rows after {limit:?}", sink.stats().rows_appended);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The last line on stdout: `read N, written N, dead-lettered N[ (M in doubt)] (…s, … rows/s[, interrupted])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    read: u64,
    written: u64,
    dead: u64,
    in_doubt: u64,
    interrupted: bool,
}

impl Summary {
    fn parse(line: &str) -> Option<Summary> {
        let number = |s: &str, prefix: &str| s.strip_prefix(prefix)?.trim().parse::<u64>().ok();
        let (counts, tail) = line.split_once(" (")?;
        let mut parts = counts.split(", ");
        let read = number(parts.next()?, "read ")?;
        let written = number(parts.next()?, "written ")?;
        let dead = number(parts.next()?, "dead-lettered ")?;
        if parts.next().is_some() {
            return None;
        }
        let (in_doubt, tail) = match tail.split_once(" in doubt) (") {
            Some((m, rest)) => (m.trim().parse().ok()?, rest),
            None => (0, tail),
        };
        if !tail.ends_with(')') || !tail.contains("rows/s") {
            return None;
        }
        Some(Summary { read, written, dead, in_doubt, interrupted: tail.ends_with(", interrupted)") })
    }
}

#[test]
fn the_summary_line_parses() {
    assert_eq!(
        Summary::parse("read 10, written 7, dead-lettered 3 (2 in doubt) (1.2s, 6 rows/s, interrupted)"),
        Some(Summary { read: 10, written: 7, dead: 3, in_doubt: 2, interrupted: true })
    );
    assert_eq!(
        Summary::parse("read 5, written 5, dead-lettered 0 (0.1s, 50 rows/s)"),
        Some(Summary { read: 5, written: 5, dead: 0, in_doubt: 0, interrupted: false })
    );
    assert_eq!(Summary::parse("bqsink: error"), None);
}

/// A row's class as its dead-letter reason says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    InDoubt,
    NotWritten,
    NotCommitted,
}

impl Class {
    fn of(reason: &str) -> Option<Class> {
        if reason.starts_with("in doubt: sent, not acknowledged (") && reason.ends_with("); it may be in the table") {
            Some(Class::InDoubt)
        } else if reason.starts_with("not written: ") {
            Some(Class::NotWritten)
        } else if reason.starts_with("not committed: ") {
            Some(Class::NotCommitted)
        } else {
            None
        }
    }
}

/// One line of the dead-letter file.
#[derive(Debug)]
struct Letter {
    id: i64,
    class: Class,
    reason: String,
}

/// The dead-letter file, line by line; every line must name its row's id and class.
fn letters(path: &Path) -> Vec<Letter> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("dead letter is not JSON ({e}): {line}"));
            for key in ["time", "table", "row", "column", "reason"] {
                assert!(v.get(key).is_some(), "dead letter without {key}: {line}");
            }
            let id = match (v.get("record"), v.get("raw")) {
                (Some(record), _) => json_id(&record["id"]),
                (None, Some(serde_json::Value::String(raw))) => {
                    serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|r| json_id(&r["id"]))
                }
                _ => None,
            }
            .unwrap_or_else(|| panic!("dead letter without an id: {line}"));
            let reason = v["reason"].as_str().expect("reason").to_owned();
            let class = Class::of(&reason).unwrap_or_else(|| panic!("dead letter without its class: {line}"));
            Letter { id, class, reason }
        })
        .collect()
}

fn json_id(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Ids in the table, with how many times each is there.
fn table_ids(sink: &RefSink, table: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for row in sink.rows(PROJECT, DATASET, table) {
        let id: i64 = row["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// What every run that gave up must show: the counts add up, the dead-letter file holds exactly
/// the rows counted (each once, each with its class), written ids are in the table and
/// `not written` / `not committed` ids are not. Returns the letters' ids by class.
fn accounted(
    sink: &RefSink,
    table: &str,
    dlq: &Path,
    ended: &Ended,
    total: i64,
    what: &str,
) -> (Summary, BTreeMap<Class, BTreeSet<i64>>) {
    let s = ended.summary();
    let what = format!("{what}: {s:?}, exit {:?}, stderr:\n{}", ended.status.code(), ended.stderr);
    assert_eq!(ended.status.code(), Some(2), "{what}");
    assert_eq!(s.read, s.written + s.dead, "{what}: read != written + dead-lettered");
    assert!(s.read <= total as u64, "{what}");
    let letters = letters(dlq);
    assert_eq!(letters.len() as u64, s.dead, "{what}: the dead-letter file holds {} lines", letters.len());
    let in_table = table_ids(sink, table);
    // Rows are read in order: a row past another one was read after it. Every id up to the
    // last one seen (in the table or the dead-letter file) was read, and must be in one of them.
    let last_seen = letters.iter().map(|l| l.id).chain(in_table.keys().copied()).max().unwrap_or(-1);
    let dead_ids: BTreeSet<i64> = letters.iter().map(|l| l.id).collect();
    let hole: Vec<i64> = (0..=last_seen).filter(|id| !dead_ids.contains(id) && !in_table.contains_key(id)).collect();
    assert!(
        hole.is_empty(),
        "{what}: {} ids read (id {last_seen} is dead-lettered or in the table) are neither in the table nor \
         dead-lettered, from {:?} to {:?}",
        hole.len(),
        hole.first(),
        hole.last()
    );
    let mut by_class: BTreeMap<Class, BTreeSet<i64>> = BTreeMap::new();
    for l in &letters {
        assert!(
            (0..s.read as i64).contains(&l.id),
            "{what}: dead-lettered id {} is past the {} rows read",
            l.id,
            s.read
        );
        assert!(by_class.entry(l.class).or_default().insert(l.id), "{what}: id {} dead-lettered twice", l.id);
    }
    let dead: BTreeSet<i64> = letters.iter().map(|l| l.id).collect();
    assert_eq!(dead.len() as u64, s.dead, "{what}: an id dead-lettered under two classes");
    let in_doubt = by_class.get(&Class::InDoubt).map_or(0, BTreeSet::len) as u64;
    assert_eq!(s.in_doubt, in_doubt, "{what}: `(M in doubt)` against the in-doubt letters");
    // Rows are read in order: the ids read are 0..read.
    let lost: Vec<i64> = (0..s.read as i64).filter(|id| !dead.contains(id) && !in_table.contains_key(id)).collect();
    assert!(
        lost.is_empty(),
        "{what}: {} ids counted written, not in the table, e.g. {:?}",
        lost.len(),
        &lost[..5.min(lost.len())]
    );
    for class in [Class::NotWritten, Class::NotCommitted] {
        let there: Vec<i64> =
            by_class.get(&class).into_iter().flatten().filter(|id| in_table.contains_key(id)).copied().collect();
        assert!(
            there.is_empty(),
            "{what}: {} ids dead-lettered {class:?} are in the table, e.g. {:?}",
            there.len(),
            &there[..5.min(there.len())]
        );
    }
    let unread: Vec<i64> = in_table.keys().filter(|&&id| id >= s.read as i64).take(5).copied().collect();
    assert!(unread.is_empty(), "{what}: ids never read are in the table, e.g. {unread:?}");
    (s, by_class)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// Rows stored, answers never sent.
    LosesAnswers,
    /// Every request answered UNAVAILABLE, nothing stored.
    Refuses,
}

/// A total outage once the load is under way: bqsink gives up after its retry time limit with
/// every row read in exactly one class.
///
/// `chunk_bytes` is the input chunk handed to an encoding worker: 16 KiB holds one request of
/// rows, the default (1 MiB) several.
async fn outage(mode: &str, outage: Outage, chunk_bytes: Option<&str>) {
    const ROWS: i64 = 20_000;
    let sink = RefSink::start().await.expect("reference sink");
    let chunk = chunk_bytes.unwrap_or("default");
    let dir = tempdir(&format!("outage-{mode}-{outage:?}-{chunk}"));
    let file = input(&dir, ROWS);
    let table = format!("t_{}_{outage:?}", mode.replace('-', "_")).to_lowercase();
    let what = format!("{mode}, {outage:?}, chunks of {chunk} bytes");
    // Slow enough that the fault lands in the middle of the load.
    sink.faults().set_delay(Duration::from_millis(5));
    let mut args = vec!["--retry-time-limit", "2s", "--request-timeout", "500ms", "--batch-size", "200"];
    if let Some(bytes) = chunk_bytes {
        args.extend(["--chunk-bytes", bytes]);
    }
    let mut run = Running::spawn(bqsink(&sink, &table, mode, &file, &args));
    appended(&sink, &mut run, 1_000, Duration::from_secs(20)).await;
    match outage {
        Outage::LosesAnswers => sink.faults().lose_answers(true),
        Outage::Refuses => sink.faults().fail_next(u64::MAX, Code::Unavailable, FailMode::InResponse),
    }
    let ended = run.end(Duration::from_secs(30)).await;
    sink.faults().clear();
    let (s, by_class) = accounted(&sink, &table, &dlq_path(&dir, &table), &ended, ROWS, &what);
    let what = format!("{what}: {s:?}, took {:?}", ended.took);
    assert!(s.dead > 0, "{what}: the outage cost nothing?");
    assert!(!s.interrupted, "{what}");
    let in_table = table_ids(&sink, &table);
    let empty = BTreeSet::new();
    let in_doubt = by_class.get(&Class::InDoubt).unwrap_or(&empty);
    if mode == "batch" {
        assert_eq!(s.written, 0, "{what}: a batch load that gave up counts rows written");
        assert!(in_table.is_empty(), "{what}: a batch load that gave up left {} rows in the table", in_table.len());
        assert!(
            by_class.get(&Class::NotCommitted).map_or(0, BTreeSet::len) >= 1_000,
            "{what}: the rows appended before the outage are not reported not committed: {:?}",
            by_class.iter().map(|(c, ids)| (c, ids.len())).collect::<Vec<_>>()
        );
    } else {
        assert!(s.written >= 1_000, "{what}: rows appended before the outage not counted written");
    }
    match outage {
        Outage::LosesAnswers if mode != "batch" => {
            assert!(!in_doubt.is_empty(), "{what}: rows stored and never answered must be in doubt");
            let absent: Vec<&i64> = in_doubt.iter().filter(|id| !in_table.contains_key(id)).take(5).collect();
            assert!(absent.is_empty(), "{what}: in doubt, yet never stored: {absent:?}");
        }
        Outage::Refuses => {
            // Every attempt was answered: nothing can be in doubt.
            assert!(in_doubt.is_empty(), "{what}: {} rows in doubt though every request was answered", in_doubt.len());
        }
        Outage::LosesAnswers => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_streaming_answers_lost() {
    outage("streaming", Outage::LosesAnswers, Some(SMALL_CHUNK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_streaming_refused() {
    outage("streaming", Outage::Refuses, Some(SMALL_CHUNK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_exactly_once_answers_lost() {
    outage("exactly-once", Outage::LosesAnswers, Some(SMALL_CHUNK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_exactly_once_refused() {
    outage("exactly-once", Outage::Refuses, Some(SMALL_CHUNK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_batch_answers_lost() {
    outage("batch", Outage::LosesAnswers, Some(SMALL_CHUNK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_batch_refused() {
    outage("batch", Outage::Refuses, Some(SMALL_CHUNK)).await;
}

/// The same outage with the default input chunk (1 MiB, ~12,000 rows here, 60 requests of
/// 200): when a write fails in the middle of a chunk, the rest of that chunk must still be
/// dead-lettered (`not written`), like the chunks queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_outage_with_the_default_chunk_size_loses_no_row() {
    outage("streaming", Outage::Refuses, None).await;
    outage("exactly-once", Outage::LosesAnswers, None).await;
    outage("batch", Outage::Refuses, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_with_every_row_read_written() {
    const ROWS: i64 = 200_000;
    let sink = RefSink::start().await.expect("reference sink");
    let dir = tempdir("sigterm");
    let file = input(&dir, ROWS);
    for mode in ["streaming", "exactly-once", "batch"] {
        let table = format!("graceful_{}", mode.replace('-', "_"));
        sink.faults().set_delay(Duration::from_millis(5));
        let mut run = Running::spawn(bqsink(&sink, &table, mode, &file, &["--batch-size", "200"]));
        let before = sink.stats().rows_appended;
        appended(&sink, &mut run, before + 1, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!run.exited(), "{mode}: the load ended before the SIGTERM; make the input bigger");
        run.signal("TERM");
        let ended = run.end(Duration::from_secs(20)).await;
        sink.faults().clear();
        let s = ended.summary();
        let what = format!("{mode}: {s:?}, took {:?}, stderr:\n{}", ended.took, ended.stderr);
        assert_eq!(ended.status.code(), Some(143), "{what}");
        assert!(s.interrupted, "{what}: the summary does not say interrupted");
        assert!(s.read > 0 && s.read < ROWS as u64, "{what}");
        assert_eq!((s.written, s.dead, s.in_doubt), (s.read, 0, 0), "{what}");
        assert!(letters(&dlq_path(&dir, &table)).is_empty(), "{what}: dead letters after a graceful stop");
        let ids = table_ids(&sink, &table);
        let twice: Vec<(&i64, &usize)> = ids.iter().filter(|(_, &n)| n > 1).take(5).collect();
        assert!(twice.is_empty(), "{what}: ids written twice: {twice:?}");
        assert_eq!(ids.len() as u64, s.written, "{what}: the table holds {} ids", ids.len());
        // Rows are read in order: the table holds exactly the first `read` ids.
        let outside: Vec<&i64> = ids.keys().filter(|&&id| id >= s.read as i64).take(5).collect();
        assert!(outside.is_empty(), "{what}: ids past the rows read are in the table: {outside:?}");
    }
}

/// The sink hangs mid-load; one SIGTERM starts the grace period and then `second` (a second
/// SIGTERM, or nothing: the grace period's end) makes bqsink give up at once.
async fn gives_up_on_a_hung_sink(mode: &str, second_sigterm: bool) {
    const ROWS: i64 = 20_000;
    let sink = RefSink::start().await.expect("reference sink");
    let name = if second_sigterm { "second" } else { "grace" };
    let dir = tempdir(&format!("{name}-{mode}"));
    let file = input(&dir, ROWS);
    let table = format!("{name}_{}", mode.replace('-', "_"));
    sink.faults().set_delay(Duration::from_millis(5));
    let mut args = vec!["--batch-size", "200", "--chunk-bytes", SMALL_CHUNK];
    if !second_sigterm {
        args.extend(["--grace-period", "1s"]);
    }
    let mut run = Running::spawn(bqsink(&sink, &table, mode, &file, &args));
    appended(&sink, &mut run, 1_000, Duration::from_secs(20)).await;
    sink.faults().hang();
    // Let requests pile up unanswered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.signal("TERM");
    let signalled = Instant::now();
    if second_sigterm {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!run.exited(), "{mode}: bqsink exited on the first SIGTERM with the sink hung");
        run.signal("TERM");
    }
    let ended = run.end(Duration::from_secs(30)).await;
    let after_signal = signalled.elapsed();
    // Held requests go through now; in-doubt rows may land, the others must not.
    sink.faults().clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let what = format!("{mode}, {name}: exited {after_signal:?} after the first SIGTERM");
    let (s, by_class) = accounted(&sink, &table, &dlq_path(&dir, &table), &ended, ROWS, &what);
    let what = format!("{what}: {s:?}, stderr:\n{}", ended.stderr);
    let limit = if second_sigterm { Duration::from_secs(3) } else { Duration::from_secs(4) };
    assert!(after_signal < limit, "{what}: gave up only after {after_signal:?}");
    assert!(s.dead > 0, "{what}: rows were held by the sink, yet none dead-lettered");
    assert!(s.interrupted, "{what}: the summary does not say interrupted");
    let cause = if second_sigterm { "second SIGTERM" } else { "grace period" };
    let letters = letters(&dlq_path(&dir, &table));
    let without: Vec<&Letter> = letters.iter().filter(|l| !l.reason.contains(cause)).take(3).collect();
    assert!(without.is_empty(), "{what}: reasons that do not name the {cause}: {without:?}");
    if mode == "batch" {
        assert_eq!(s.written, 0, "{what}");
    } else {
        assert!(by_class.get(&Class::InDoubt).is_some_and(|ids| !ids.is_empty()), "{what}: held requests not in doubt");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_gives_up_at_once_streaming() {
    gives_up_on_a_hung_sink("streaming", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_gives_up_at_once_exactly_once() {
    gives_up_on_a_hung_sink("exactly-once", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_gives_up_at_once_batch() {
    gives_up_on_a_hung_sink("batch", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_end_gives_up_streaming() {
    gives_up_on_a_hung_sink("streaming", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_end_gives_up_batch() {
    gives_up_on_a_hung_sink("batch", false).await;
}
