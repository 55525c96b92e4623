//! `bqsink segment` and `bqsink schema diff` end to end against bqemulator: real processes,
//! their output and exit codes, then the tables read back over REST (`tables.get`, `jobs.query`).
//!
//! bqemulator cannot apply a schema change (a PATCH changes only metadata), so the sample file
//! loads there only because files are planned whole before the first write; the stdin test uses
//! lines whose shapes do not change.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bqsink::{Endpoints, FieldType, PartitionType, RestClient, TableRef, Timestamp};
use bqsink_schema::SegmentOptions;
use bqsink_testkit::Emulator;

const PROJECT: &str = "cli-project";

/// The Segment tables every load of the sample makes, besides one per track event.
const BASE_TABLES: [&str; 7] = ["tracks", "identifies", "users", "pages", "screens", "groups", "aliases"];

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/segment/sample.ndjson")
}

fn bqsink(emu: &Emulator) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    for v in [
        "BIGQUERY_PROJECT_ID",
        "BIGQUERY_DATASET",
        "BIGQUERY_AUTO_TABLE_MANAGEMENT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("BIGQUERY_EMULATOR_HOST", emu.rest_host()).env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host());
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bqsink starts");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("bqsink ends")
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-cli-segment-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `(read, written, dead-lettered)` of the summary, which must be the last line on stdout.
fn summary(out: &Output) -> (u64, u64, u64) {
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default().to_owned();
    let numbers: Vec<u64> = last
        .split(" (")
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|part| part.rsplit(' ').next().and_then(|n| n.parse().ok()))
        .collect();
    assert!(last.starts_with("read ") && numbers.len() == 3, "not a summary line: {last:?} (stdout {text:?})");
    (numbers[0], numbers[1], numbers[2])
}

fn rest(emu: &Emulator) -> RestClient {
    RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none()).expect("client")
}

async fn count(emu: &Emulator, dataset: &str, table: &str) -> u64 {
    let r = rest(emu)
        .query(PROJECT, &format!("SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`"))
        .await
        .unwrap_or_else(|e| panic!("query {dataset}.{table}: {e}"));
    r.rows[0][0].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a count for {table}: {r:?}"))
}

async fn table_info(emu: &Emulator, dataset: &str, table: &str) -> Option<bqsink::TableInfo> {
    let t = TableRef::new(PROJECT, dataset, table).expect("table ref");
    rest(emu).get_table(&t).await.expect("tables.get")
}

/// Rows per table that bqsink-schema makes of `text`, line by line (1 per line that is not a
/// payload, under the empty name).
fn predicted(text: &str, options: &SegmentOptions) -> BTreeMap<String, u64> {
    let now = Timestamp::parse("2024-06-06T00:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match bqsink_schema::rows_from_line(line, i as u64 + 1, now, options) {
            Ok(rows) => {
                for r in rows {
                    *out.entry(r.table).or_default() += 1;
                }
            }
            Err(_) => *out.entry(String::new()).or_default() += 1,
        }
    }
    out
}

fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line in the DLQ ({e}): {l}")))
        .collect()
}

/// The table part of a dead letter's `project.dataset.table`.
fn letter_table(letter: &serde_json::Value) -> String {
    letter["table"].as_str().and_then(|t| t.rsplit('.').next()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_file_lands_in_segment_tables_and_every_row_is_accounted_for() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("sample");
    let dlq = dir.join("refused.ndjson");
    let out = bqsink(&emu)
        .args(["segment", "--project", PROJECT, "--dataset", "seg", "--batch-size", "500", "--dlq"])
        .arg(&dlq)
        .arg(sample_path())
        .output()
        .expect("bqsink runs");
    let err = stderr(&out);
    let (read, written, dead) = summary(&out);

    let text = std::fs::read_to_string(sample_path()).expect("the sample");
    let expected = predicted(&text, &SegmentOptions::default());
    assert_eq!(read, expected.values().sum::<u64>(), "read counts table rows: {expected:?}");
    assert_eq!(written + dead, read, "{err}");
    // The sample has bool properties that later carry strings: those rows are dead-lettered.
    assert!(dead > 0, "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{dead} rows dead-lettered to {}", dlq.display())), "{err}");
    assert!(err.contains(&format!("planned {} tables over {read} rows from", expected.len())), "{err}");
    assert!(err.contains("line 12: identifies.is_admin: expected BOOL, got STRING (value \"no\")"), "{err}");

    let letters = dead_letters(&dlq);
    assert_eq!(letters.len() as u64, dead, "{letters:?}");
    for l in &letters {
        let reason = l["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(": expected BOOL, got STRING"), "{l}");
        assert!(!l["column"].as_str().unwrap_or_default().is_empty(), "{l}");
        assert!(l["record"]["id"].is_string(), "the record is kept: {l}");
    }

    // Table by table: rows stored plus rows dead-lettered equal the rows the sample makes.
    for t in BASE_TABLES {
        assert!(expected.contains_key(t), "the sample makes rows for {t}");
    }
    assert!(expected.len() > BASE_TABLES.len() + 5, "per-event tables: {expected:?}");
    for (table, n) in &expected {
        let stored = count(&emu, "seg", table).await;
        let refused = letters.iter().filter(|l| &letter_table(l) == table).count() as u64;
        assert_eq!(stored + refused, *n, "{table}: {stored} stored, {refused} dead-lettered");
        let info = table_info(&emu, "seg", table).await.unwrap_or_else(|| panic!("table {table} exists"));
        let p = info.time_partitioning.unwrap_or_else(|| panic!("{table} is partitioned"));
        assert_eq!((p.partition_type, p.field.as_deref()), (PartitionType::Day, Some("received_at")), "{table}");
        assert_eq!(info.schema.field("received_at").map(|f| f.field_type), Some(FieldType::Timestamp), "{table}");
    }

    // `tracks` carries no custom properties: only its fixed columns and the context.
    let tracks = table_info(&emu, "seg", "tracks").await.expect("tracks").schema;
    let fixed = bqsink_schema::segment::table_schema("tracks");
    for f in &tracks.fields {
        assert!(fixed.field(&f.name).is_some() || f.name.starts_with("context_"), "tracks has {}", f.name);
    }
    let viewed = table_info(&emu, "seg", "product_viewed").await.expect("product_viewed").schema;
    assert_eq!(viewed.field("price").map(|f| f.field_type), Some(FieldType::Float64), "planned over the whole file");
    assert_eq!(viewed.field("in_stock").map(|f| f.field_type), Some(FieldType::Bool));
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_lines_of_one_shape_with_the_environment_for_project_and_dataset() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("stdin");
    let dlq = dir.join("refused.ndjson");
    let track = |i: u32| {
        format!(
            r#"{{"type":"track","messageId":"m-{i}","userId":"u-{}","event":"Song Played","properties":{{"songId":"s-{i}","seconds":{i}}},"context":{{"library":{{"name":"cli-test"}}}},"timestamp":"2024-06-03T09:0{i}:00Z","receivedAt":"2024-06-03T09:0{i}:01Z"}}"#,
            i % 2
        )
    };
    let identify = r#"{"type":"identify","messageId":"m-id","userId":"u-1","traits":{"plan":"pro"},"receivedAt":"2024-06-03T09:00:00Z"}"#;
    let mut input = String::new();
    for i in 1..=4 {
        input.push_str(&track(i));
        input.push('\n');
    }
    input.push_str(identify);
    input.push_str("\n\n{not json\n");
    let mut cmd = bqsink(&emu);
    cmd.env("BIGQUERY_PROJECT_ID", PROJECT).env("BIGQUERY_DATASET", "seg_stdin");
    cmd.args(["segment", "--dlq"]).arg(&dlq).arg("-");
    let out = run_with_stdin(cmd, &input);
    let err = stderr(&out);
    // 4 tracks × 2 rows, an identify × 2, the bad line × 1.
    assert_eq!(summary(&out), (11, 10, 1), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("progress"), "no progress lines for a short load off a terminal: {err}");
    assert!(err.contains("bqsink: line 7: not valid JSON"), "{err}");
    let expected = predicted(&input, &SegmentOptions::default());
    for (table, n) in [("tracks", 4), ("song_played", 4), ("identifies", 1), ("users", 1)] {
        assert_eq!(expected.get(table), Some(&n), "{table}");
        assert_eq!(count(&emu, "seg_stdin", table).await, n, "{table}");
    }
    let letters = dead_letters(&dlq);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["raw"], "{not json");
    assert_eq!(letters[0]["row"], 6, "0-based line");
    assert!(letters[0]["reason"].as_str().is_some_and(|r| r.contains("not valid JSON")), "{}", letters[0]);
    let song = table_info(&emu, "seg_stdin", "song_played").await.expect("song_played").schema;
    assert_eq!(song.field("seconds").map(|f| f.field_type), Some(FieldType::Int64));

    // --no-event-tables: tracks only, one row per call; every row written, exit 0.
    let mut cmd = bqsink(&emu);
    cmd.args(["segment", "--project", PROJECT, "--dataset", "seg_tracks_only", "--no-event-tables", "-q", "-"]);
    let out = run_with_stdin(cmd, &input.replace("{not json\n", ""));
    assert_eq!(summary(&out), (6, 6, 0), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(count(&emu, "seg_tracks_only", "tracks").await, 4);
    assert!(table_info(&emu, "seg_tracks_only", "song_played").await.is_none());

    // Auto table management off: nothing is created; one line says why.
    let mut cmd = bqsink(&emu);
    cmd.env("BIGQUERY_AUTO_TABLE_MANAGEMENT", "false");
    cmd.args(["segment", "--project", PROJECT, "--dataset", "seg_missing", "-"]);
    let out = run_with_stdin(cmd, &track(1));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("dataset cli-project.seg_missing does not exist and BIGQUERY_AUTO_TABLE_MANAGEMENT is false"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_diff_shows_additions_widenings_and_refusals_against_a_loaded_table() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("diff");
    let first = dir.join("first.ndjson");
    std::fs::write(&first, "{\"id\":1,\"name\":\"ada\",\"score\":3,\"active\":true}\n{\"id\":2,\"name\":\"bob\",\"score\":4,\"active\":false}\n")
        .expect("write");
    let later = dir.join("later.ndjson");
    std::fs::write(&later, "{\"id\":3,\"name\":\"cy\",\"score\":4.5,\"active\":\"maybe\",\"country\":\"UK\"}\n")
        .expect("write");
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "diff", "--create-dataset", "--table", "people", "-q"])
        .arg(&first)
        .output()
        .expect("bqsink load runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let diff = |file: &Path, table: &str| {
        bqsink(&emu)
            .args(["schema", "diff", "--project", PROJECT, "--dataset", "diff", "--table", table])
            .arg(file)
            .output()
            .expect("bqsink schema diff runs")
    };
    let out = diff(&later, "people");
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "~ score INT64 → FLOAT64",
            "+ country STRING",
            "! people.active: expected BOOL, got STRING",
            "2 changes, 1 refused"
        ],
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(2), "something would be refused");
    // Nothing was changed.
    let live = table_info(&emu, "diff", "people").await.expect("people").schema;
    assert_eq!(live.field("score").map(|f| f.field_type), Some(FieldType::Int64));
    assert!(live.field("country").is_none());

    let out = diff(&first, "people");
    assert_eq!(stdout(&out).trim(), "0 changes, 0 refused", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = diff(&later, "nobody");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("table cli-project.diff.nobody does not exist; it would be created with the inferred schema:"),
        "{text}"
    );
    assert!(text.contains("\n+ score FLOAT64\n") && text.contains("\n+ active STRING\n"), "{text}");
    assert!(text.ends_with("5 columns to create, 0 refused\n"), "{text}");
    assert!(table_info(&emu, "diff", "nobody").await.is_none(), "diff creates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_stdin_flushes_what_was_read_and_exits_2_when_lines_were_refused() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("sigint");
    let dlq = dir.join("refused.ndjson");
    let mut child = bqsink(&emu)
        .args(["segment", "--project", PROJECT, "--dataset", "seg_sig", "--progress-interval", "0.3", "--dlq"])
        .arg(&dlq)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bqsink starts");
    let mut stdin = child.stdin.take().expect("stdin");
    // A slow producer: 15 rounds of 20 lines (one of them not JSON), 100 ms apart.
    let mut id = 0;
    for round in 0..15 {
        let mut chunk = String::new();
        for i in 0..20 {
            id += 1;
            if i == 7 {
                chunk.push_str(&format!("{{\"type\":\"track\" {round}\n"));
            } else {
                chunk.push_str(&format!(
                    r#"{{"type":"track","messageId":"m-{id}","userId":"u-{round}","event":"Tick","properties":{{"n":{id}}},"receivedAt":"2024-06-03T09:00:00Z"}}"#
                ));
                chunk.push('\n');
            }
        }
        stdin.write_all(chunk.as_bytes()).expect("write");
        stdin.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Mid-load: input still open, more could come.
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "bqsink did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    drop(stdin);
    // Some lines were refused: 2 (130 is for a stop with every row read written).
    assert_eq!(status.code(), Some(2), "{out}{err}");
    let last = out.lines().last().unwrap_or_default().to_owned();
    assert!(last.ends_with("interrupted)"), "{last}");
    let read: u64 = last
        .strip_prefix("read ")
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a summary line: {last}"));
    assert!(read > 0 && read <= 15 * (19 * 2 + 1), "{last}");
    let stored = count(&emu, "seg_sig", "tracks").await + count(&emu, "seg_sig", "tick").await;
    let dead = dead_letters(&dlq).len() as u64;
    assert!(dead > 0, "{err}");
    assert_eq!(stored + dead, read, "tables {stored} + dlq {dead} != read {read}: {last}\n{err}");
    assert!(err.contains("bqsink: progress: read "), "{err}");
}
