//! `bqsink kafka` against a real Kafka-compatible broker (tansu, started by the testkit) and the
//! reference sink: several processes in one group, each in its own working directory, one of
//! them SIGKILLed mid-stream while the producer keeps producing (every id at least once,
//! counted from outside); and a graceful SIGTERM whose committed offsets a restarted worker of
//! the same group starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bqsink_testkit::refsink::RefSink;
use bqsink_testkit::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

const PROJECT: &str = "kafka-project";
const DATASET: &str = "kafka";
const PARTITIONS: i32 = 6;
/// Joins are slow on tansu: generous.
const ALL_IN_TIMEOUT: Duration = Duration::from_secs(90);

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
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

async fn create_topic(broker: &Broker, topic: &str) {
    create_topic_with(broker, topic, PARTITIONS).await;
}

async fn create_topic_with(broker: &Broker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().expect("admin client");
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let results = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
}

fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces ids `from..to`, keyed by id (spread over the partitions), pausing `pause` every
/// 100 records.
fn produce(producer: &BaseProducer, topic: &str, from: i64, to: i64, pause: Duration) {
    for id in from..to {
        let key = id.to_string();
        let value = format!(r#"{{"id": {id}, "note": "record {id} from the kafka test"}}"#);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
        if id % 100 == 99 && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    producer.flush(Duration::from_secs(30)).expect("produced");
}

/// A `bqsink kafka` worker in its own working directory, stderr to `worker.log` there.
fn worker(sink: &RefSink, broker: &Broker, topic: &str, group: &str, table: &str, dir: &Path) -> Child {
    std::fs::create_dir_all(dir).expect("worker dir");
    let log = std::fs::File::create(dir.join("worker.log")).expect("log");
    Command::new(env!("CARGO_BIN_EXE_bqsink"))
        .current_dir(dir)
        .env("BIGQUERY_EMULATOR_HOST", sink.rest_host())
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", sink.grpc_host())
        .env_remove("BIGQUERY_PROJECT_ID")
        .env_remove("BIGQUERY_DATASET")
        .env_remove("RUST_LOG")
        .args(["kafka", "-v", "--brokers", &broker.bootstrap(), "--topic", topic, "--group", group])
        .args(["--project", PROJECT, "--dataset", DATASET, "--create-dataset", "--table", table])
        .arg("--schema")
        .arg(schema_file(dir))
        .args(["--dlq", "dead.ndjson", "--batch-messages", "500", "--batch-wait", "200ms"])
        // A killed member is noticed in seconds.
        .args(["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"])
        .args(["-X", "topic.metadata.refresh.interval.ms=1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("bqsink kafka starts")
}

fn ids(sink: &RefSink, table: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for row in sink.rows(PROJECT, DATASET, table) {
        let id: i64 = row["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Waits until every id of `0..n` is in the table; panics with the workers' logs otherwise.
async fn wait_all_in(sink: &RefSink, table: &str, n: i64, dirs: &[PathBuf]) -> BTreeMap<i64, usize> {
    let started = Instant::now();
    loop {
        let ids = ids(sink, table);
        if (0..n).all(|id| ids.contains_key(&id)) {
            return ids;
        }
        if started.elapsed() > ALL_IN_TIMEOUT {
            let missing: Vec<i64> = (0..n).filter(|id| !ids.contains_key(id)).take(10).collect();
            let logs: Vec<String> = dirs
                .iter()
                .map(|d| {
                    format!("{}:\n{}", d.display(), std::fs::read_to_string(d.join("worker.log")).unwrap_or_default())
                })
                .collect();
            panic!(
                "after {ALL_IN_TIMEOUT:?}, {} of {n} ids in the table; missing e.g. {missing:?}\n{}",
                ids.len(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs").success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for a worker to exit (killing it after 60 s); returns its exit code and summary line.
fn wait_exit(mut child: Child, dir: &Path) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
            panic!("worker in {} still running 60 s after SIGTERM:\n{log}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code(), stdout.lines().last().unwrap_or_default().to_owned())
}

/// `read N` of a summary line.
fn read_count(summary: &str) -> u64 {
    summary
        .strip_prefix("read ")
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a summary line: {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_every_id_at_least_once() {
    const N: i64 = 12_000;
    let sink = RefSink::start().await.expect("reference sink");
    let broker = Broker::start().expect("Kafka test broker");
    let dir = tempdir("group");
    let (topic, group, table) = ("events", "bq-events", "events");
    create_topic(&broker, topic).await;
    // The first half is there before the workers start; the rest comes while they run.
    produce(&producer(&broker), topic, 0, N / 2, Duration::ZERO);

    let dirs: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("worker-{i}"))).collect();
    let mut workers: Vec<Option<Child>> =
        dirs.iter().map(|d| Some(worker(&sink, &broker, topic, group, table, d))).collect();
    let bootstrap = broker.bootstrap();
    let producing = std::thread::spawn(move || {
        let p = ClientConfig::new().set("bootstrap.servers", bootstrap).create::<BaseProducer>().expect("producer");
        produce(&p, topic, N / 2, N, Duration::from_millis(20));
    });

    // SIGKILL worker 2 once rows are flowing.
    let started = Instant::now();
    while ids(&sink, table).len() < (N / 6) as usize {
        assert!(started.elapsed() < ALL_IN_TIMEOUT, "no rows arrived within {ALL_IN_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(mut killed) = workers[1].take() {
        killed.kill().expect("SIGKILL");
        let _ = killed.wait();
    }
    eprintln!("worker-2 killed after {:.1?} with {} ids in", started.elapsed(), ids(&sink, table).len());
    producing.join().expect("producer thread");

    let ids = wait_all_in(&sink, table, N, &dirs).await;
    let rows: usize = ids.values().sum();
    eprintln!("all {N} ids in after {:.1?}: {rows} rows ({} duplicates)", started.elapsed(), rows - N as usize);
    assert_eq!(ids.len() as i64, N, "ids outside 0..{N} in the table");
    for (i, w) in workers.iter_mut().enumerate() {
        if let Some(child) = w.take() {
            sigterm(&child);
            let (code, summary) = wait_exit(child, &dirs[i]);
            assert_eq!(code, Some(143), "worker-{} exit code; summary {summary}", i + 1);
            assert!(summary.starts_with("read "), "{summary}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_and_a_restart_reads_only_what_is_new() {
    const FIRST: i64 = 2_000;
    const MORE: i64 = 500;
    let sink = RefSink::start().await.expect("reference sink");
    let broker = Broker::start().expect("Kafka test broker");
    let dir = tempdir("restart");
    let (topic, group, table) = ("orders", "bq-orders", "orders");
    create_topic(&broker, topic).await;
    let p = producer(&broker);
    produce(&p, topic, 0, FIRST, Duration::ZERO);

    let first = dir.join("first");
    let child = worker(&sink, &broker, topic, group, table, &first);
    wait_all_in(&sink, table, FIRST, std::slice::from_ref(&first)).await;
    sigterm(&child);
    let (code, summary) = wait_exit(child, &first);
    assert_eq!(code, Some(143), "exit code after SIGTERM; summary {summary}");
    assert!(summary.ends_with("interrupted)"), "{summary}");
    assert_eq!(read_count(&summary), FIRST as u64, "{summary}");
    assert!(summary.contains(&format!("written {FIRST}, dead-lettered 0")), "{summary}");

    produce(&p, topic, FIRST, FIRST + MORE, Duration::ZERO);
    let second = dir.join("second");
    let child = worker(&sink, &broker, topic, group, table, &second);
    let ids = wait_all_in(&sink, table, FIRST + MORE, std::slice::from_ref(&second)).await;
    sigterm(&child);
    let (code, summary) = wait_exit(child, &second);
    assert_eq!(code, Some(143), "exit code after SIGTERM; summary {summary}");
    // The offsets committed at the SIGTERM hold: only the new records are read again.
    assert_eq!(read_count(&summary), MORE as u64, "the restarted worker re-read committed records: {summary}");
    assert!(ids.values().all(|&n| n == 1), "ids written twice across a graceful restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_are_dead_lettered_with_their_position() {
    const GOOD: i64 = 10;
    let sink = RefSink::start().await.expect("reference sink");
    let broker = Broker::start().expect("Kafka test broker");
    let dir = tempdir("dead");
    let (topic, group, table) = ("mixed", "bq-mixed", "mixed");
    create_topic_with(&broker, topic, 1).await;
    let p = producer(&broker);
    produce(&p, topic, 0, GOOD, Duration::ZERO);
    // Offset 10: a value that does not fit the schema; offset 11: a tombstone (no value).
    p.send(BaseRecord::<str, str>::to(topic).payload(r#"{"id": "not a number"}"#)).expect("send");
    p.send(BaseRecord::<str, str>::to(topic).key("gone")).expect("send");
    p.flush(Duration::from_secs(30)).expect("produced");

    let child = worker(&sink, &broker, topic, group, table, &dir);
    wait_all_in(&sink, table, GOOD, std::slice::from_ref(&dir)).await;
    let dead_file = dir.join("dead.ndjson");
    let started = Instant::now();
    let letters = loop {
        let text = std::fs::read_to_string(&dead_file).unwrap_or_default();
        if text.lines().count() >= 2 || started.elapsed() > ALL_IN_TIMEOUT {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    sigterm(&child);
    let (code, summary) = wait_exit(child, &dir);
    assert_eq!(code, Some(2), "a row read was not written: exit 2; summary {summary}");
    assert!(summary.contains(&format!("written {GOOD}, dead-lettered 2")), "{summary}");
    let mut offsets = Vec::new();
    for line in letters.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("dead letter is JSON");
        assert_eq!(v["topic"], topic, "{line}");
        assert_eq!(v["partition"], 0, "{line}");
        offsets.push(v["offset"].as_i64().expect("offset"));
    }
    offsets.sort_unstable();
    assert_eq!(offsets, [GOOD, GOOD + 1], "dead letters: {letters}");
}
