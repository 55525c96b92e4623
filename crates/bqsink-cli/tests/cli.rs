//! The `bqsink` subcommands end to end: real processes against bqemulator (or, for the
//! permission and credential messages, a server that refuses everything and no server at all).
//! Each test checks the exit code, stdout, stderr, and what landed in the table.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bqsink::Endpoints;
use bqsink_testkit::Emulator;

const PROJECT: &str = "cli-project";

fn bqsink(emu: &Emulator) -> Command {
    let mut c = bare();
    c.env("BIGQUERY_EMULATOR_HOST", emu.rest_host()).env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host());
    c
}

/// The binary with none of the variables it reads.
fn bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bqsink"));
    for v in [
        "BIGQUERY_PROJECT_ID",
        "BIGQUERY_DATASET",
        "BIGQUERY_AUTO_TABLE_MANAGEMENT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "BIGQUERY_EMULATOR_HOST",
        "BIGQUERY_STORAGE_EMULATOR_HOST",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bqsink-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write");
    path.to_path_buf()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn last_line(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_owned()
}

/// `read N` of a summary line.
fn read_count(summary: &str) -> u64 {
    summary
        .strip_prefix("read ")
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a summary line: {summary}"))
}

async fn count(emu: &Emulator, table: &str) -> u64 {
    let rest = bqsink::RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none())
        .expect("client");
    let r = rest.query(PROJECT, &format!("SELECT COUNT(*) AS n FROM `{PROJECT}.{table}`")).await.expect("query");
    r.rows[0][0].as_str().and_then(|s| s.parse().ok()).expect("a count")
}

const SCHEMA: &str =
    r#"[{"name":"id","type":"INT64"},{"name":"at","type":"TIMESTAMP"},{"name":"kind","type":"STRING"}]"#;

#[tokio::test(flavor = "multi_thread")]
async fn csv_glob_with_bad_rows_exits_2_and_the_dlq_keeps_them() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("csv");
    let schema = write(&dir.join("schema.json"), SCHEMA);
    write(&dir.join("a.csv"), "id,at,kind\n1,2024-01-01T00:00:00Z,click\n2,2024-01-02 10:00:00,view\n");
    write(&dir.join("b.csv"), "id,at,kind\n3,,click\nx,2024-01-03T00:00:00Z,view\n4,2024-01-04T00:00:00Z\n");
    let dlq = dir.join("refused.ndjson");
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "csv", "--create-dataset", "--table", "events"])
        .arg("--schema")
        .arg(&schema)
        .arg("--dlq")
        .arg(&dlq)
        .arg(dir.join("*.csv").display().to_string())
        .output()
        .expect("bqsink runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(last_line(&out).starts_with("read 5, written 3, dead-lettered 2 ("), "{}", last_line(&out));
    assert!(err.contains(&format!("2 rows dead-lettered to {}", dlq.display())), "{err}");
    assert!(err.contains("b.csv line 3: id: expected INT64, got STRING (\"x\")"), "{err}");
    assert!(err.contains("b.csv line 4: expected 3 fields (as in the header), got 2"), "{err}");
    assert_eq!(count(&emu, "csv.events").await, 3);

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .expect("dlq file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["table"], "cli-project.csv.events");
    assert_eq!(letters[0]["column"], "id");
    assert_eq!(letters[0]["row"], 2);
    assert!(letters[0]["reason"].as_str().is_some_and(|r| r.starts_with("expected INT64, got STRING")));
    // Refused while read: kept as it was in the file.
    assert_eq!(letters[0]["raw"], "x,2024-01-03T00:00:00Z,view");
    assert_eq!(letters[1]["raw"], "4,2024-01-04T00:00:00Z");
    assert_eq!(letters[1]["reason"], "expected 3 fields (as in the header), got 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_from_stdin_in_exactly_once_mode() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("stdin-csv");
    let schema = write(&dir.join("schema.json"), SCHEMA);
    let mut child = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "stdin_csv", "--create-dataset", "--table", "t"])
        .args(["--format", "csv", "--mode", "exactly-once", "--schema"])
        .arg(&schema)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bqsink starts");
    let mut input = String::from("kind,id,at\n");
    for i in 0..500 {
        input.push_str(&format!("k{},{i},2024-05-01T00:00:{:02}Z\n", i % 7, i % 60));
    }
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("bqsink ends");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(last_line(&out).starts_with("read 500, written 500, dead-lettered 0"), "{}", last_line(&out));
    assert_eq!(count(&emu, "stdin_csv.t").await, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_array_in_batch_mode_then_tables_shows_rows_and_partitioning() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("array");
    let schema = write(&dir.join("schema.json"), SCHEMA);
    let rows: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"id":{i},"at":"2024-02-{:02}T08:00:00Z","kind":"k{}"}}"#, i % 28 + 1, i % 3))
        .collect();
    let data = write(&dir.join("rows.json"), &format!("[\n{}\n]\n", rows.join(",\n")));
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "arr", "--create-dataset", "--table", "events"])
        .args(["--mode", "batch", "--partition-field", "at", "--partition-type", "MONTH", "--cluster", "kind,id"])
        .args(["--create-disposition", "create_if_needed", "--write-disposition", "WRITE_EMPTY", "--schema"])
        .arg(&schema)
        .arg(&data)
        .output()
        .expect("bqsink runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(last_line(&out).starts_with("read 40, written 40, dead-lettered 0"), "{}", last_line(&out));
    assert_eq!(count(&emu, "arr.events").await, 40);

    // WRITE_EMPTY refuses a second load into the now non-empty table.
    let again = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "arr", "--table", "events", "--write-disposition"])
        .arg("WRITE_EMPTY")
        .arg(&data)
        .output()
        .expect("bqsink runs");
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("WRITE_EMPTY"), "{}", stderr(&again));

    // A second table, created from the rows themselves (no --schema).
    let inferred = write(&dir.join("more.ndjson"), "{\"n\":1,\"label\":\"a\"}\n{\"n\":2,\"label\":\"b\"}\n");
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "arr", "--table", "inferred"])
        .arg(&inferred)
        .output()
        .expect("bqsink runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("inferred 2 columns from 2 rows"), "{}", stderr(&out));

    let out = bqsink(&emu).args(["tables", "--project", PROJECT, "--dataset", "arr"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["TABLE", "TYPE", "ROWS", "PARTITIONING", "CLUSTERING"], "{text}");
    assert_eq!(lines[1], ["events", "TABLE", "40", "MONTH(at)", "kind,id"], "{text}");
    assert_eq!(lines[2], ["inferred", "TABLE", "2", "-", "-"], "{text}");

    let out = bqsink(&emu).args(["tables", "--json", "--project", PROJECT, "--dataset", "arr"]).output().expect("runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json[0]["rows"], 40);
    assert_eq!(json[0]["partitioning"]["field"], "at");

    let out = bqsink(&emu).args(["tables", "--project", PROJECT, "--dataset", "absent"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("dataset cli-project.absent does not exist"), "{}", stderr(&out));
}

#[test]
fn schema_infer_prints_a_bigquery_json_schema() {
    let dir = tmp_dir("infer");
    let file =
        write(&dir.join("rows.ndjson"), "{\"id\":1,\"at\":\"2024-01-01T00:00:00Z\"}\n{\"id\":2.5,\"tags\":[\"a\"]}\n");
    let out = bare().args(["schema", "infer"]).arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let schema = bqsink::Schema::from_json(&stdout(&out)).expect("a BigQuery JSON schema");
    let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["id", "at", "tags"]);
    assert_eq!(schema.fields[1].field_type, bqsink::FieldType::Timestamp);
    assert_eq!(schema.fields[2].mode, bqsink::Mode::Repeated);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dataset_suggests_create_dataset() {
    let emu = Emulator::start().expect("bqemulator starts");
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "nowhere", "--table", "t", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("dataset cli-project.nowhere does not exist; pass --create-dataset"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_prints_one_line_per_check() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("health");
    let schema = write(&dir.join("schema.json"), SCHEMA);
    let out = bqsink(&emu)
        .args(["load", "-q", "--project", PROJECT, "--dataset", "h", "--create-dataset", "--table", "t", "--schema"])
        .arg(&schema)
        .arg("-")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out =
        bqsink(&emu).args(["health", "--project", PROJECT, "--dataset", "h", "--table", "t"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let names: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap_or_default(), w.next().unwrap_or_default())
        })
        .collect();
    assert_eq!(names, [("ok", "connectivity"), ("ok", "dataset"), ("ok", "table"), ("ok", "error_rate")], "{text}");
    assert!(text.contains(&emu.rest_host()), "{text}");

    let out = bqsink(&emu)
        .args(["health", "--project", PROJECT, "--dataset", "h", "--table", "gone"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("FAIL") && l.contains("cli-project.h.gone does not exist")), "{text}");

    // Nothing listening: the connectivity check fails, naming the address.
    let out = bare()
        .env("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")
        .args(["health", "--project", PROJECT, "--dataset", "h"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("FAIL  connectivity  cannot connect to http://127.0.0.1:9"), "{}", stdout(&out));
}

/// A throwaway key file shaped like a real one; the key itself is not valid and never used.
const FAKE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDdoNotARealKey0123456789\n-----END PRIVATE KEY-----\n";

#[test]
fn config_shows_each_source_and_never_a_secret() {
    let dir = tmp_dir("config");
    let key = dir.join("key.json");
    let key_json = serde_json::json!({
        "type": "service_account",
        "project_id": "cli-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": FAKE_KEY,
        "client_email": "loader@cli-project.iam.gserviceaccount.com",
        "client_id": "123",
        "token_uri": "https://oauth2.example/token"
    });
    write(&key, &key_json.to_string());
    let file = write(&dir.join("bqsink.toml"), "dataset_id = \"from_file\"\nbatch_size = 250\nlocation = \"EU\"\n");
    let out = bare()
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
        .env("BIGQUERY_DATASET", "from_env")
        .env("BIGQUERY_AUTO_TABLE_MANAGEMENT", "false")
        .args(["config", "--project", "flag-project", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let line = |key: &str| {
        text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key}: {text}"))
    };
    assert!(line("project_id").contains("\"flag-project\"") && line("project_id").ends_with("# flag --project"));
    assert!(line("dataset_id").contains("\"from_env\"") && line("dataset_id").ends_with("# env BIGQUERY_DATASET"));
    assert!(line("batch_size").contains("250") && line("batch_size").contains("# file "), "{text}");
    assert!(line("create_disposition").contains("CREATE_NEVER"), "{text}");
    assert!(line("worker_count").ends_with("# default"), "{text}");
    let cred = line("credentials_path");
    assert!(cred.contains(&key.display().to_string()) && cred.contains("loader@cli-project.iam.gserviceaccount.com"));
    for secret in
        ["PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDdoNotARealKey", "0123456789abcdef01"]
    {
        assert!(!text.contains(secret) && !stderr(&out).contains(secret), "{secret} printed: {text}");
    }
    // The output is itself a valid configuration file.
    let again = write(&dir.join("again.toml"), &text);
    let out = bare().args(["config", "--config"]).arg(&again).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("project_id = \"flag-project\""));
}

#[test]
fn an_unknown_config_key_names_the_closest_valid_one() {
    let dir = tmp_dir("config-typo");
    let file = write(&dir.join("bqsink.toml"), "project_id = \"p-123\"\nbatch_sise = 500\n");
    let out = bare().args(["config", "--config"]).arg(&file).output().expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown key `batch_sise` (line 2); did you mean `batch_size`?"), "{err}");
}

#[test]
fn config_shows_the_retry_flags_and_load_refuses_a_zero_limit() {
    let out = bare()
        .args(["config", "--project", "p-123456", "--dataset", "d", "--retry-time-limit", "1.5s"])
        .args(["--request-timeout", "500ms"])
        .output()
        .expect("runs");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let line = |key: &str| {
        text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key}: {text}"))
    };
    let limit = line("retry_time_limit_ms");
    assert!(limit.contains("= 1500 ") && limit.ends_with("# flag --retry-time-limit"), "{limit}");
    let timeout = line("request_timeout_ms");
    assert!(timeout.contains("= 500 ") && timeout.ends_with("# flag --request-timeout"), "{timeout}");
    assert!(line("max_request_bytes").contains("9500000") && line("max_request_bytes").ends_with("# default"));

    let out = bare().args(["config", "--request-timeout", "30"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no unit"), "{}", stderr(&out));

    for command in ["load", "segment"] {
        let mut c = bare();
        c.args([command, "--project", "p-123456", "--dataset", "d", "--retry-time-limit", "0s"]);
        if command == "load" {
            c.args(["--table", "t"]);
        }
        let out = c.arg("missing.ndjson").output().expect("runs");
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains("retry_time_limit_ms"), "{command}: {}", stderr(&out));
    }
}

#[test]
fn no_credentials_lists_the_three_ways() {
    let home = tmp_dir("nocreds");
    let out = bare()
        .env("HOME", &home)
        .env("PATH", &home)
        .env("CLOUDSDK_CONFIG", &home)
        .args(["tables", "--project", PROJECT, "--dataset", "d"])
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no Google credentials found"), "{err}");
    assert!(err.contains("(1) --credentials KEY.json or GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(err.contains("(2) `gcloud auth application-default login`"), "{err}");
    assert!(err.contains("(3) run on Google Cloud"), "{err}");
}

/// A REST endpoint answering 403 to everything, as BigQuery does without the role.
fn refusing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = r#"{"error":{"code":403,"message":"Access Denied: Dataset cli-project:d: Permission bigquery.datasets.get denied","errors":[{"reason":"accessDenied"}]}}"#;
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    addr
}

#[test]
fn permission_denied_names_the_role() {
    let addr = refusing_server();
    let out = bare()
        .env("BIGQUERY_EMULATOR_HOST", &addr)
        .args(["load", "--project", PROJECT, "--dataset", "d", "--table", "t", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("permission denied on cli-project.d: Access Denied"), "{err}");
    assert!(err.contains("roles/bigquery.dataEditor"), "{err}");
    let out =
        bare().env("BIGQUERY_EMULATOR_HOST", &addr).args(["tables", "--project", PROJECT, "--dataset", "d"]).output();
    let err = stderr(&out.expect("runs"));
    assert!(err.contains("roles/bigquery.metadataViewer"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_flushes_what_was_read_and_exits_2_when_rows_were_refused() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("sigint");
    let schema = write(&dir.join("schema.json"), SCHEMA);
    let dlq = dir.join("refused.ndjson");
    let mut child = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "sig", "--create-dataset", "--table", "t"])
        .args(["--progress-interval", "0.3", "--batch-size", "100", "--dlq"])
        .arg(&dlq)
        .arg("--schema")
        .arg(&schema)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bqsink starts");
    let mut stdin = child.stdin.take().expect("stdin");
    // A slow producer: 20 rounds of 50 rows (one of them bad), 100 ms apart.
    let mut id = 0;
    for round in 0..20 {
        let mut chunk = String::new();
        for i in 0..50 {
            id += 1;
            if i == 7 {
                chunk.push_str(&format!("{{\"id\":\"not a number {round}\"}}\n"));
            } else {
                chunk.push_str(&format!("{{\"id\":{id},\"kind\":\"r{round}\"}}\n"));
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
    // Some rows were refused: 2 (130 is for a stop with every row read written).
    assert_eq!(status.code(), Some(2), "{out}{err}");
    let summary = out.lines().last().unwrap_or_default().to_owned();
    assert!(summary.ends_with("interrupted)"), "{summary}");
    let read = read_count(&summary);
    assert!(read > 0 && read <= 1000, "{summary}");
    let in_table = count(&emu, "sig.t").await;
    let dead = std::fs::read_to_string(&dlq).unwrap_or_default().lines().count() as u64;
    assert!(dead > 0, "{err}");
    assert_eq!(in_table + dead, read, "table {in_table} + dlq {dead} != read {read}: {summary}\n{err}");
    // Not a terminal: periodic plain progress lines on stderr, no bar.
    assert!(err.contains("bqsink: progress: read "), "{err}");
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn views_prints_sql_and_apply_creates_them() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dir = tmp_dir("views");
    let tracks = write(
        &dir.join("tracks.ndjson"),
        concat!(
            r#"{"id":"a1","loaded_at":"2024-01-01T00:00:05Z","timestamp":"2024-01-01T00:00:00Z","user_id":"u1","anonymous_id":"x1","event":"click"}"#,
            "\n",
            r#"{"id":"a1","loaded_at":"2024-01-01T00:00:09Z","timestamp":"2024-01-01T00:00:00Z","user_id":"u1","anonymous_id":"x1","event":"click"}"#,
            "\n",
            r#"{"id":"a2","loaded_at":"2024-01-01T00:10:00Z","timestamp":"2024-01-01T00:10:00Z","user_id":"u1","anonymous_id":"x1","event":"view"}"#,
            "\n"
        ),
    );
    let out = bqsink(&emu)
        .args(["load", "--project", PROJECT, "--dataset", "seg", "--create-dataset", "--table", "tracks"])
        .arg(&tracks)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = bqsink(&emu).args(["views", "--project", PROJECT, "--dataset", "seg"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sql = stdout(&out);
    assert!(sql.contains("CREATE OR REPLACE VIEW `cli-project`.`seg`.`tracks_deduped` AS"), "{sql}");
    assert!(sql.contains("CREATE OR REPLACE VIEW `cli-project`.`seg`.`sessions` AS"), "{sql}");

    let out = bqsink(&emu).args(["views", "--apply", "--project", PROJECT, "--dataset", "seg"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("created view cli-project.seg.tracks_deduped"), "{}", stdout(&out));
    assert_eq!(count(&emu, "seg.tracks_deduped").await, 2);
    assert_eq!(count(&emu, "seg.sessions").await, 1);
}
