//! kill -9 in the middle of `bqsink load --checkpoint` against bqemulator, then the same command
//! again until it finishes; the ids a query finds afterwards: exactly-once and batch every id
//! exactly once, streaming every id at least once. At most two kills per emulator, and a fresh
//! emulator per mode: a connection cut mid-request can wedge it (see ../shared/bqemulator.md).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bqsink::Endpoints;
use bqsink_testkit::Emulator;

const ROWS: i64 = 20_000;
const PROJECT: &str = "crash-project";
const DATASET: &str = "crash";

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-emucrash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("rows.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("input"));
    for id in 0..ROWS {
        writeln!(f, r#"{{"id": {id}, "note": "row number {id} of the emulator crash test, padded a little"}}"#)
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

fn bqsink(emu: &Emulator, table: &str, mode: &str, file: &Path, checkpoint: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    c.env("BIGQUERY_EMULATOR_HOST", emu.rest_host())
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host())
        .env_remove("BIGQUERY_PROJECT_ID")
        .env_remove("BIGQUERY_DATASET")
        .env_remove("BQSINK_FAILPOINT")
        .env_remove("RUST_LOG")
        .args(["load", "--project", PROJECT, "--dataset", DATASET, "--create-dataset", "--table", table])
        .args(["--mode", mode, "--batch-size", "500", "--chunk-bytes", "16384", "--schema"])
        .arg(schema_file(file.parent().expect("dir")))
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--checkpoint-interval", "0s"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

async fn ids(emu: &Emulator, table: &str) -> BTreeMap<i64, usize> {
    let rest = bqsink::RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none())
        .expect("client");
    let result = rest.query(PROJECT, &format!("SELECT id FROM `{PROJECT}.{DATASET}.{table}`")).await.expect("query");
    let mut ids = BTreeMap::new();
    for row in result.rows {
        let id = match &row[0] {
            serde_json::Value::String(s) => s.parse::<i64>().expect("id"),
            serde_json::Value::Number(n) => n.as_i64().expect("id"),
            other => panic!("id {other:?}"),
        };
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Kills `bqsink load --checkpoint` at most twice at seeded moments once its checkpoint exists,
/// then runs it to the end. Returns how many runs resumed from the middle of the file.
async fn killed_and_resumed(mode: &str, seed: u64) -> usize {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tempdir(mode);
    let file = input(&dir);
    let table = format!("t_{}", mode.replace('-', "_"));
    let checkpoint = dir.join(format!("{table}.checkpoint"));
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut resumed = 0;
    let mut kills = 0;
    let mut log = Vec::new();
    while kills < 2 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let after = Duration::from_millis(20 + (state >> 33) % 400);
        let mut child = bqsink(&emu, &table, mode, &file, &checkpoint).spawn().expect("bqsink starts");
        let started = Instant::now();
        // The moment counts from the checkpoint's first save, so the kill lands in the load
        // rather than in the table's creation.
        let mut since: Option<Instant> = None;
        let exited = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if since.is_none() && checkpoint.exists() {
                since = Some(Instant::now());
            }
            if since.is_some_and(|t| t.elapsed() >= after) {
                break None;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{mode}: a run takes over a minute");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let mut stderr = String::new();
        match exited {
            Some(status) => {
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                assert!(status.success(), "{mode}: a run ended with {status}: {stderr}");
                if stderr.contains("resuming from") {
                    resumed += 1;
                }
                log.push(format!("finished before the kill at {after:?}"));
                break;
            }
            None => {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                if stderr.contains("resuming from") {
                    resumed += 1;
                }
                kills += 1;
                log.push(format!(
                    "killed {after:?} after the checkpoint appeared: {}",
                    std::fs::read_to_string(&checkpoint).unwrap_or_default().chars().take(300).collect::<String>()
                ));
            }
        }
    }
    let out = bqsink(&emu, &table, mode, &file, &checkpoint).output().expect("bqsink runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let what = format!("{mode}, seed {seed}, {kills} kills: {log:#?}");
    assert_eq!(out.status.code(), Some(0), "{what}: the last run: stderr {stderr}\nstdout {stdout}");
    if stderr.contains("resuming from") {
        resumed += 1;
    }
    let ids = ids(&emu, &table).await;
    let missing: Vec<i64> = (0..ROWS).filter(|id| !ids.contains_key(id)).collect();
    assert!(missing.is_empty(), "{what}: {} ids lost, e.g. {:?}", missing.len(), &missing[..5.min(missing.len())]);
    assert_eq!(ids.len() as i64, ROWS, "{what}: ids that were never in the input");
    if mode != "streaming" {
        let twice: Vec<(&i64, &usize)> = ids.iter().filter(|(_, &n)| n > 1).collect();
        assert!(
            twice.is_empty(),
            "{what}: {} ids written more than once, e.g. {:?}",
            twice.len(),
            &twice[..5.min(twice.len())]
        );
    }
    // Done: the same command again writes nothing.
    let again = bqsink(&emu, &table, mode, &file, &checkpoint).output().expect("bqsink runs");
    let last = String::from_utf8_lossy(&again.stdout).lines().last().unwrap_or_default().to_owned();
    assert_eq!(again.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&again.stderr));
    assert!(last.starts_with("read 0, written 0, dead-lettered 0"), "{what}: {last}");
    emu.stop();
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twice_and_resumed_against_the_emulator() {
    let mut resumed = 0;
    for (mode, seed) in [("exactly-once", 11), ("batch", 12), ("streaming", 13)] {
        resumed += killed_and_resumed(mode, seed).await;
    }
    // The kills must land inside loads, not only before or after them.
    assert!(resumed > 0, "no run resumed from the middle of the file");
}
