//! `bqsink load` end to end against bqemulator: the process, its output, its exit code, and the
//! rows a query finds afterwards.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bqsink::{Endpoints, Schema};
use bqsink_testkit::compare::assert_cells_match;
use bqsink_testkit::Emulator;
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn bqsink(emu: &Emulator) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    c.env("BIGQUERY_EMULATOR_HOST", emu.rest_host())
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host())
        .env_remove("BIGQUERY_PROJECT_ID")
        .env_remove("BIGQUERY_DATASET")
        .env_remove("RUST_LOG");
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bqsink starts");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("bqsink ends")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned()
}

async fn query(emu: &Emulator, sql: &str) -> bqsink::QueryResult {
    let rest = bqsink::RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none())
        .expect("client");
    rest.query("cli-project", sql).await.expect("query")
}

#[tokio::test(flavor = "multi_thread")]
async fn loads_every_flat_type_from_a_file() {
    let emu = Emulator::start().expect("bqemulator starts");
    let out = bqsink(&emu)
        .args([
            "load",
            "--project",
            "cli-project",
            "--dataset",
            "cli",
            "--create-dataset",
            "--table",
            "flat",
            "--schema",
        ])
        .arg(fixtures().join("flat/schema.json"))
        .arg(fixtures().join("flat/rows.ndjson"))
        .output()
        .expect("bqsink runs");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(last_line(&out).starts_with("read 15, written 15, dead-lettered 0"), "{}", last_line(&out));
    // Not a terminal: stdout is the summary alone, stderr has no bar (no carriage returns or
    // escape sequences) and, for a load this short, no progress line.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}') && !stderr.contains("progress"), "{stderr:?}");
    let schema = Schema::from_json(&std::fs::read_to_string(fixtures().join("flat/schema.json")).expect("schema"))
        .expect("valid");
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("flat/expected.json")).expect("expected"))
            .expect("json");
    let result = query(&emu, "SELECT * FROM `cli-project.cli.flat` ORDER BY id").await;
    assert_cells_match(&schema, &result, &expected).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_with_bad_rows_exits_2_naming_line_and_column() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = std::env::temp_dir().join(format!("bqsink-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let schema = dir.join("schema.json");
    std::fs::write(&schema, r#"[{"name":"id","type":"INT64","mode":"REQUIRED"},{"name":"at","type":"TIMESTAMP"}]"#)
        .expect("write");
    let input = "{\"id\":1,\"at\":\"2024-01-01T00:00:00Z\"}\n{\"id\":2,\"at\":\"soon\"}\n\n{not json}\n{\"id\":4}\n";
    let mut cmd = bqsink(&emu);
    cmd.args([
        "load",
        "--project",
        "cli-project",
        "--dataset",
        "cli",
        "--create-dataset",
        "--table",
        "stdin",
        "--schema",
    ])
    .arg(&schema)
    .arg("-");
    let out = run_with_stdin(cmd, input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(last_line(&out).starts_with("read 4, written 2, dead-lettered 2"), "{}", last_line(&out));
    assert!(stderr.contains("line 2: at: expected TIMESTAMP, got STRING (\"soon\")"), "{stderr}");
    assert!(stderr.contains("line 4: invalid JSON"), "{stderr}");
    let result = query(&emu, "SELECT id FROM `cli-project.cli.stdin` ORDER BY id").await;
    assert_eq!(result.rows, vec![vec![json!("1")], vec![json!("4")]]);
}

#[test]
fn an_unreachable_emulator_is_one_line_naming_the_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_bqsink"))
        .env("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", "127.0.0.1:9")
        .args(["load", "--project", "p1-project", "--dataset", "d", "--table", "t", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("bqsink runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_without_schema_says_to_pass_one() {
    let emu = Emulator::start().expect("bqemulator starts");
    let out = bqsink(&emu)
        .args(["load", "--project", "cli-project", "--dataset", "cli", "--create-dataset", "--table", "nothing", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("bqsink runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cli-project.cli.nothing does not exist") && stderr.contains("--schema"), "{stderr}");
}

/// gzip and zstd files are recognised by their bytes (not their names) and read as streams; a
/// JSON array is read element by element (pretty-printed across lines); a line longer than a
/// chunk goes through; every row is queried back. (Nested rows are checked against the
/// reference sink: bqemulator stores no RECORD columns.)
#[tokio::test(flavor = "multi_thread")]
async fn compressed_files_and_a_json_array_are_loaded_whole() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = std::env::temp_dir().join(format!("bqsink-cli-compressed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name":"id","type":"INT64","mode":"REQUIRED"},{"name":"note","type":"STRING"},
            {"name":"ts","type":"TIMESTAMP"}]"#,
    )
    .expect("write");
    let long = "z".repeat(3 << 19);
    let mut text = String::new();
    for id in 1..=3000 {
        let note = if id == 1500 { long.as_str() } else { "n" };
        text.push_str(&format!("{{\"id\":{id},\"note\":\"{note}\",\"ts\":\"2024-05-01T00:00:{:02}Z\"}}\n", id % 60));
    }
    let gz = dir.join("rows.data");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).expect("gzip");
    std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
    let zst = dir.join("more.ndjson.zst");
    let more: String = (3001..=3100).map(|id| format!("{{\"id\":{id}}}\n")).collect();
    std::fs::write(&zst, zstd::stream::encode_all(more.as_bytes(), 3).expect("zstd")).expect("write");
    let array = dir.join("last.json");
    std::fs::write(&array, "[\n {\"id\": 3101,\n  \"note\": \"a\\nb\"},\n {\"id\": 3102}\n]\n").expect("write");

    let out = bqsink(&emu)
        .args(["load", "--project", "cli-project", "--dataset", "cli", "--create-dataset", "--table", "packed"])
        .arg("--schema")
        .arg(&schema)
        .args([&gz, &zst, &array])
        .output()
        .expect("bqsink runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(last_line(&out).starts_with("read 3102, written 3102, dead-lettered 0"), "{}", last_line(&out));
    let r = query(&emu, "SELECT COUNT(*), SUM(id), COUNT(ts) FROM `cli-project.cli.packed`").await;
    assert_eq!(r.rows, vec![vec![json!("3102"), json!((1..=3102).sum::<u64>().to_string()), json!("3000")]]);
    let r = query(&emu, "SELECT LENGTH(note) FROM `cli-project.cli.packed` WHERE id = 1500").await;
    assert_eq!(r.rows, vec![vec![json!((3 << 19).to_string())]]);
    let r = query(&emu, "SELECT note FROM `cli-project.cli.packed` WHERE id = 3101").await;
    assert_eq!(r.rows, vec![vec![json!("a\nb")]]);
}

/// A JSON array cut short: the elements before the break are written, the break is reported
/// naming the file, and the exit code is 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_array_cut_short_keeps_the_elements_before_the_break() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = std::env::temp_dir().join(format!("bqsink-cli-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let schema = dir.join("schema.json");
    std::fs::write(&schema, r#"[{"name":"id","type":"INT64"}]"#).expect("write");
    let cut = dir.join("cut.json");
    std::fs::write(&cut, "[{\"id\": 1}, {\"id\": 2}, {\"id\":").expect("write");
    let out = bqsink(&emu)
        .args(["load", "--project", "cli-project", "--dataset", "cli", "--create-dataset", "--table", "cut"])
        .arg("--schema")
        .arg(&schema)
        .arg(&cut)
        .output()
        .expect("bqsink runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(last_line(&out).starts_with("read 2, written 2, dead-lettered 0"), "{}", last_line(&out));
    assert!(stderr.contains("cut.json: not a valid JSON array: the array ends early"), "{stderr}");
    let r = query(&emu, "SELECT id FROM `cli-project.cli.cut` ORDER BY id").await;
    assert_eq!(r.rows, vec![vec![json!("1")], vec![json!("2")]]);
}
