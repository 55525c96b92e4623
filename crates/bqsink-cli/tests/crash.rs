//! kill -9 in the middle of `bqsink load --checkpoint`, then the same command again, until it
//! finishes: ids counted in the reference sink afterwards. ExactlyOnce and Batch: every id
//! exactly once. Streaming: every id at least once. Kills at random moments over several seeds,
//! and at exact moments through the test-only fail points (`BQSINK_FAILPOINT`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bqsink::checkpoint::Checkpoint;
use bqsink_testkit::refsink::RefSink;

const ROWS: i64 = 20_000;

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("rows.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("input"));
    for id in 0..ROWS {
        writeln!(f, r#"{{"id": {id}, "note": "row number {id} of the crash test, with some padding text"}}"#)
            .expect("line");
    }
    f.flush().expect("flush");
    path
}

fn bqsink(sink: &RefSink, table: &str, mode: &str, file: &Path, checkpoint: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    c.env("BIGQUERY_EMULATOR_HOST", sink.rest_host())
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", sink.grpc_host())
        .env_remove("BIGQUERY_PROJECT_ID")
        .env_remove("BIGQUERY_DATASET")
        .env_remove("BQSINK_FAILPOINT")
        .env_remove("RUST_LOG")
        .args(["load", "--project", "crash-project", "--dataset", "crash", "--create-dataset", "--table", table])
        .args(["--mode", mode, "--batch-size", "250", "--chunk-bytes", "16384", "--schema"])
        .arg(schema_file(file.parent().expect("dir")))
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--checkpoint-interval", "0s"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
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

fn ids(sink: &RefSink, table: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for row in sink.rows("crash-project", "crash", table) {
        let id: i64 = row["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

fn check(sink: &RefSink, table: &str, mode: &str, what: &str) {
    let ids = ids(sink, table);
    let missing: Vec<i64> = (0..ROWS).filter(|id| !ids.contains_key(id)).take(5).collect();
    assert!(missing.is_empty(), "{what}: ids lost, e.g. {missing:?}");
    assert_eq!(ids.len() as i64, ROWS, "{what}: unknown ids");
    if mode != "streaming" {
        let twice: Vec<(&i64, &usize)> = ids.iter().filter(|(_, &n)| n > 1).take(5).collect();
        assert!(twice.is_empty(), "{what}: ids written more than once, e.g. {twice:?}");
    }
}

/// Runs the command to the end; returns stdout's last line and stderr.
fn finish(mut cmd: Command, what: &str) -> (String, String) {
    let out = cmd.output().expect("bqsink runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{what}: stderr {stderr}\nstdout {stdout}");
    (stdout.lines().last().unwrap_or_default().to_owned(), stderr)
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_and_resumed() {
    let sink = RefSink::start().await.expect("reference sink");
    let dir = tempdir("random");
    let file = input(&dir);
    for mode in ["exactly-once", "batch", "streaming"] {
        let mut resumed_mid_file = 0;
        for seed in 1..=4u64 {
            let table = format!("t_{}_{seed}", mode.replace('-', "_"));
            let checkpoint = dir.join(format!("{table}.checkpoint"));
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut kills = 0;
            // Up to three kills, at random moments; then the run that finishes.
            while kills < 3 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let after = Duration::from_millis(30 + (state >> 33) % 700);
                let mut child = bqsink(&sink, &table, mode, &file, &checkpoint).spawn().expect("bqsink starts");
                let started = Instant::now();
                let exited = loop {
                    if let Some(status) = child.try_wait().expect("wait") {
                        break Some(status);
                    }
                    // Seed 1 is first killed once its checkpoint is past the start of the file, so
                    // every mode resumes mid-file at least once however fast the machine is.
                    let due = if seed == 1 && kills == 0 {
                        Checkpoint::load(&checkpoint).ok().flatten().is_some_and(|c| c.position.offset > 0)
                    } else {
                        started.elapsed() >= after
                    };
                    if due {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                };
                match exited {
                    Some(status) => {
                        let mut stderr = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                        }
                        assert!(status.success(), "{mode} seed {seed}: a run ended with {status}: {stderr}");
                        if stderr.contains("resuming from") {
                            resumed_mid_file += 1;
                        }
                        break;
                    }
                    None => {
                        child.kill().expect("SIGKILL");
                        let _ = child.wait();
                        kills += 1;
                    }
                }
            }
            let what = format!("{mode}, seed {seed}, {kills} kills");
            let (last, stderr) = finish(bqsink(&sink, &table, mode, &file, &checkpoint), &what);
            if stderr.contains("resuming from") {
                resumed_mid_file += 1;
            }
            check(&sink, &table, mode, &what);
            // Done: the same command again writes nothing and says so.
            let (again, said) = finish(bqsink(&sink, &table, mode, &file, &checkpoint), &what);
            assert!(again.starts_with("read 0, written 0, dead-lettered 0"), "{what}: {again} (before: {last})");
            assert!(said.contains("says this load is done"), "{what}: {said}");
            check(&sink, &table, mode, &what);
        }
        // The kills must land inside loads, not only before or after them.
        assert!(resumed_mid_file > 0, "{mode}: no run resumed from the middle of the file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_exact_moments_and_resumed() {
    let sink = RefSink::start().await.expect("reference sink");
    let dir = tempdir("exact");
    let file = input(&dir);
    for mode in ["exactly-once", "batch"] {
        for point in ["after-ack-before-checkpoint:5", "before-checkpoint-save:10", "before-close", "after-commit"] {
            let table = format!("t_{}_{}", mode.replace('-', "_"), point.replace(['-', ':'], "_"));
            let checkpoint = dir.join(format!("{table}.checkpoint"));
            let mut crashing = bqsink(&sink, &table, mode, &file, &checkpoint);
            crashing.env("BQSINK_FAILPOINT", point);
            let out = crashing.output().expect("bqsink runs");
            assert!(!out.status.success(), "{mode} {point}: the fail point was not reached");
            let what = format!(
                "{mode}, crashed at {point}: checkpoint {}",
                std::fs::read_to_string(&checkpoint).unwrap_or_default()
            );
            let (_, stderr) = finish(bqsink(&sink, &table, mode, &file, &checkpoint), &what);
            let resumed = stderr.contains("resuming from") || point.starts_with("after-ack");
            assert!(resumed, "{what}: {stderr}");
            check(&sink, &table, mode, &what);
        }
    }
}

#[test]
fn a_checkpoint_with_stdin_or_changed_inputs_is_refused() {
    let dir = tempdir("refused");
    let file = input(&dir);
    let checkpoint = dir.join("c.checkpoint");
    let run = |args: &[&str], stdin: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_bqsink"))
            .env("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")
            .env("BIGQUERY_STORAGE_EMULATOR_HOST", "127.0.0.1:9")
            .args(["load", "--project", "p-1", "--dataset", "d", "--table", "t", "--schema"])
            .arg(schema_file(&dir))
            .arg("--checkpoint")
            .arg(&checkpoint)
            .args(args)
            .stdin(stdin)
            .output()
            .expect("bqsink runs")
    };
    let out = run(&["-"], Stdio::null());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin cannot be read again"), "{out:?}");
    // A checkpoint made for the file as it was; then the file changes.
    let c = Checkpoint::new(
        "p-1.d.t",
        "Streaming",
        vec![bqsink::checkpoint::InputFingerprint::of(&file).expect("fingerprint")],
    );
    c.save(&checkpoint).expect("saved");
    std::fs::OpenOptions::new().append(true).open(&file).expect("open").write_all(b"{\"id\": -1}\n").expect("append");
    let out = run(&[file.to_str().expect("path")], Stdio::null());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to another load") && stderr.contains("changed"), "{stderr}");
}

/// Segment payloads with a checkpoint: streaming only, every message at least once after kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_killed_and_resumed_loses_no_event() {
    const EVENTS: i64 = 6_000;
    let sink = RefSink::start().await.expect("reference sink");
    let dir = tempdir("segment");
    let file = dir.join("events.ndjson");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("input"));
        for i in 0..EVENTS {
            writeln!(
                f,
                r#"{{"type": "track", "event": "Order Completed", "messageId": "m-{i}", "userId": "u-{}", "timestamp": "2026-11-30T10:00:00Z", "properties": {{"n": {i}, "total": 12.5}}}}"#,
                i % 97
            )
            .expect("line");
        }
        f.flush().expect("flush");
    }
    let checkpoint = dir.join("segment.checkpoint");
    let command = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
        c.env("BIGQUERY_EMULATOR_HOST", sink.rest_host())
            .env("BIGQUERY_STORAGE_EMULATOR_HOST", sink.grpc_host())
            .env_remove("BIGQUERY_PROJECT_ID")
            .env_remove("BIGQUERY_DATASET")
            .env_remove("BQSINK_FAILPOINT")
            .args(["segment", "--project", "crash-project", "--dataset", "seg", "--batch-size", "200"])
            .args(["--chunk-bytes", "16384", "--checkpoint-interval", "0s", "--checkpoint"])
            .arg(&checkpoint)
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut resumed = false;
    for round in 0..3 {
        // Killed once its checkpoint is past the start of the file (or it finished first).
        let mut child = command().spawn().expect("bqsink starts");
        let started = Instant::now();
        while child.try_wait().expect("wait").is_none() && started.elapsed() < Duration::from_secs(60) {
            let moved = Checkpoint::load(&checkpoint).ok().flatten().is_some_and(|c| c.position.offset > 0);
            if moved {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (_, stderr) = finish(command(), &format!("segment after a kill, round {round}"));
        resumed |= stderr.contains("resuming from");
        let (again, _) = finish(command(), "segment, done");
        assert!(again.starts_with("read 0, written 0"), "{again}");
        std::fs::remove_file(&checkpoint).expect("checkpoint removed for the next round");
    }
    assert!(resumed, "no run resumed from the middle of the file");
    let refused = Command::new(env!("CARGO_BIN_EXE_bqsink"))
        .args(["segment", "--project", "p-1", "--dataset", "d", "--mode", "exactly-once", "--checkpoint"])
        .arg(&checkpoint)
        .arg(&file)
        .output()
        .expect("bqsink runs");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("streaming only"), "{refused:?}");
    for table in ["tracks", "order_completed"] {
        let mut seen = BTreeMap::<String, usize>::new();
        for row in sink.rows("crash-project", "seg", table) {
            let id = row["id"].as_str().expect("message id").to_owned();
            *seen.entry(id).or_default() += 1;
        }
        let missing: Vec<i64> = (0..EVENTS).filter(|i| !seen.contains_key(&format!("m-{i}"))).take(5).collect();
        assert!(missing.is_empty(), "{table}: messages lost, e.g. {missing:?}");
    }
}

/// CSV resumes after its header: killed at exact moments, rerun, every id exactly once; quoted
/// fields with line breaks on the way. A JSON array is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_killed_and_resumed_after_its_header() {
    let sink = RefSink::start().await.expect("reference sink");
    let dir = tempdir("csv");
    let file = dir.join("rows.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("input"));
        writeln!(f, "id,note").expect("header");
        for id in 0..ROWS {
            if id % 100 == 0 {
                writeln!(f, "{id},\"two\nlines, {id}\"").expect("line");
            } else {
                writeln!(f, "{id},row number {id} of the CSV crash test with some padding").expect("line");
            }
        }
        f.flush().expect("flush");
    }
    for point in ["after-ack-before-checkpoint:5", "before-checkpoint-save:12"] {
        let table = format!("csv_{}", point.replace(['-', ':'], "_"));
        let checkpoint = dir.join(format!("{table}.checkpoint"));
        let mut crashing = bqsink(&sink, &table, "exactly-once", &file, &checkpoint);
        crashing.env("BQSINK_FAILPOINT", point);
        let out = crashing.output().expect("bqsink runs");
        assert!(!out.status.success(), "{point}: the fail point was not reached");
        let what = format!("CSV, crashed at {point}");
        let (last, stderr) = finish(bqsink(&sink, &table, "exactly-once", &file, &checkpoint), &what);
        assert!(stderr.contains("resuming from"), "{what}: {stderr}");
        assert!(last.contains("dead-lettered 0"), "{what}: {last}");
        check(&sink, &table, "exactly-once", &what);
    }
    let array = dir.join("rows.json");
    std::fs::write(&array, "[{\"id\": 1}]").expect("array");
    let out = bqsink(&sink, "array", "streaming", &array, &dir.join("array.checkpoint")).output().expect("runs");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot resume a JSON array"), "{out:?}");
}
