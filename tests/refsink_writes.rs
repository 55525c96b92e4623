//! bqsink against the reference sink — BigQuery's documented behaviour where bqemulator cannot
//! show it: nested and repeated RECORDs, BIGNUMERIC, odd column names, a writer schema that does
//! not match the table, exactly-once through connection resets, and bearer tokens on every call.

use bqsink::{Auth, Destination, Endpoints, Record, Schema, WriteMode};
use bqsink_testkit::oauth::TokenServer;
use bqsink_testkit::refsink::{Code, FailMode, RefSink};
use serde_json::{json, Value as Json};

fn endpoints(sink: &RefSink) -> Endpoints {
    Endpoints::emulator(&sink.rest_host(), &sink.grpc_host())
}

/// Every type, three levels of RECORD, a REPEATED RECORD holding a REPEATED RECORD, and
/// column names that are not proto identifiers.
fn nested_schema() -> Schema {
    Schema::from_json(
        r#"[
        {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "first name", "type": "STRING"},
        {"name": "événement", "type": "STRING"},
        {"name": "1st", "type": "INTEGER"},
        {"name": "a-b", "type": "BOOLEAN"},
        {"name": "big", "type": "BIGNUMERIC"},
        {"name": "n", "type": "NUMERIC"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "d", "type": "DATE"},
        {"name": "t", "type": "TIME"},
        {"name": "dt", "type": "DATETIME"},
        {"name": "j", "type": "JSON"},
        {"name": "g", "type": "GEOGRAPHY"},
        {"name": "by", "type": "BYTES"},
        {"name": "f", "type": "FLOAT"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "outer", "type": "RECORD", "fields": [
            {"name": "name", "type": "STRING"},
            {"name": "middle", "type": "RECORD", "fields": [
                {"name": "level", "type": "INTEGER", "mode": "REQUIRED"},
                {"name": "inner", "type": "RECORD", "fields": [
                    {"name": "leaf", "type": "STRING"},
                    {"name": "when", "type": "DATE"},
                    {"name": "nums", "type": "INTEGER", "mode": "REPEATED"}
                ]}
            ]}
        ]},
        {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "sku", "type": "STRING"},
            {"name": "qty", "type": "INTEGER"},
            {"name": "attrs", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "k", "type": "STRING"},
                {"name": "v", "type": "STRING"}
            ]}
        ]}
    ]"#,
    )
    .expect("valid schema")
}

async fn destination(sink: &RefSink, table: &str, mode: WriteMode) -> Destination {
    Destination::builder()
        .endpoints(endpoints(sink))
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id(table)
        .schema(nested_schema())
        .write_mode(mode)
        .batch_size(50)
        .build()
        .await
        .expect("destination against the reference sink")
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_records_every_type_and_odd_names_round_trip() {
    let sink = RefSink::start().await.expect("reference sink");
    let dest = destination(&sink, "nested", WriteMode::Streaming).await;
    let input = json!({
        "id": 1, "first name": "Ada", "événement": "clic", "1st": -7, "a-b": true,
        "big": "-123456789012345678901234567890123456.12345678901234567890123456789012345678",
        "n": "99999999999999999999999999999.999999999",
        "ts": "1899-12-31T23:59:59.999999Z", "d": "2101-03-04", "t": "01:02:03.000004",
        "dt": "2024-02-29 23:59:59.5", "j": {"k": [1, {"x": null}]}, "g": "POINT(1 2)",
        "by": "AAEC/w==", "f": -0.5, "tags": ["a", "", "ü"],
        "outer": {"name": "o", "middle": {"level": 2, "inner": {"leaf": "deep", "when": "1969-12-31", "nums": [1, -1, 9_007_199_254_740_993_i64]}}},
        "items": [
            {"sku": "A", "qty": 1, "attrs": [{"k": "color", "v": "red"}, {"k": "size", "v": "L"}]},
            {"sku": "B", "qty": 2, "attrs": []}
        ]
    });
    let sparse = json!({"id": 2, "outer": {"middle": {"level": 0}}, "items": [{"sku": "C"}]});
    for row in [&input, &sparse] {
        dest.write(Record::from_json_str(&row.to_string()).expect("json")).await.expect("row");
    }
    assert_eq!(dest.close().await.expect("close").rows_written, 2);

    let rows = sink.rows("ref-project", "ref", "nested");
    assert_eq!(rows.len(), 2);
    let expected_first = json!({
        "id": "1", "first name": "Ada", "événement": "clic", "1st": "-7", "a-b": true,
        "big": "-123456789012345678901234567890123456.12345678901234567890123456789012345678",
        "n": "99999999999999999999999999999.999999999",
        "ts": "-2208988800000001", "d": "2101-03-04", "t": "01:02:03.000004",
        "dt": "2024-02-29T23:59:59.500000", "g": "POINT(1 2)", "by": "AAEC/w==", "f": -0.5, "tags": ["a", "", "ü"],
        "outer": {"name": "o", "middle": {"level": "2", "inner": {"leaf": "deep", "when": "1969-12-31", "nums": ["1", "-1", "9007199254740993"]}}},
        "items": [
            {"sku": "A", "qty": "1", "attrs": [{"k": "color", "v": "red"}, {"k": "size", "v": "L"}]},
            {"sku": "B", "qty": "2", "attrs": []}
        ]
    });
    let got = Json::Object(rows[0].clone());
    for (column, want) in expected_first.as_object().expect("object") {
        assert_eq!(&got[column], want, "column `{column}`");
    }
    let j: Json = serde_json::from_str(got["j"].as_str().expect("JSON is stored as text")).expect("valid JSON");
    assert_eq!(j, json!({"k": [1, {"x": null}]}));
    let second = Json::Object(rows[1].clone());
    assert_eq!(second["first name"], Json::Null);
    assert_eq!(second["tags"], json!([]));
    assert_eq!(second["outer"], json!({"name": null, "middle": {"level": "0", "inner": null}}));
    assert_eq!(second["items"], json!([{"sku": "C", "qty": null, "attrs": []}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_required_nested_field_is_refused_by_bqsink_before_sending() {
    let sink = RefSink::start().await.expect("reference sink");
    let dest = destination(&sink, "required", WriteMode::Streaming).await;
    let bad = Record::from_json_str(r#"{"id": 3, "outer": {"middle": {"inner": {"leaf": "x"}}}}"#).expect("json");
    let err = dest.write(bad).await.expect_err("outer.middle.level is REQUIRED");
    assert_eq!(err.to_string(), "outer.middle.level: REQUIRED column is missing or null");
    dest.close().await.expect("close");
    assert!(sink.rows("ref-project", "ref", "required").is_empty());
}

/// The sink checks the writer schema against the table with its own compatibility table: rows
/// encoded for a table whose DATE column is declared FLOAT64 are refused, so a wrong mapping in
/// bqsink could never pass by agreeing with itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_schema_that_does_not_match_the_table_is_refused() {
    use bqsink_transport::{AppendRequest, RowDescriptor, RowEncoder, StatusCode, TransportError, WriteClient};
    let sink = RefSink::start().await.expect("reference sink");
    sink.create_table("ref-project", "ref", "typed", json!({"fields": [{"name": "d", "type": "DATE"}]}))
        .expect("table");
    let wrong = Schema::from_json(r#"[{"name": "d", "type": "FLOAT"}]"#).expect("schema");
    let descriptor = RowDescriptor::new(&wrong).expect("descriptor");
    let mut rows = bytes::BytesMut::new();
    RowEncoder::new(descriptor.clone())
        .encode_row_entry(&Record::new().with("d", 19_000.0), &mut rows)
        .expect("encodes as a double");
    let client = WriteClient::connect(&endpoints(&sink), Auth::none()).await.expect("connect");
    let stream = "projects/ref-project/datasets/ref/tables/typed/streams/_default";
    let request = AppendRequest::new(stream, &descriptor, rows.freeze(), 1, None).expect("request");
    let result = client.append_stream(stream).send(request).await.expect("queued").await;
    match result {
        Err(TransportError::Grpc { code: StatusCode::InvalidArgument, message }) => {
            assert!(message.contains('d'), "{message}");
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    assert!(sink.rows("ref-project", "ref", "typed").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_survives_connection_resets_without_duplicates() {
    let sink = RefSink::start().await.expect("reference sink");
    let dest = destination(&sink, "exactly_once", WriteMode::ExactlyOnce).await;
    // Three resets while 1,000 rows go out in 50-row requests: the engine reconnects and resends
    // with the same offsets; ALREADY_EXISTS means "already written".
    sink.faults().reset_after(4);
    for id in 0..1_000 {
        dest.write(Record::new().with("id", id)).await.expect("row");
        if id == 400 {
            sink.faults().reset_after(3);
        }
        if id == 700 {
            sink.faults().fail_next(2, Code::Unavailable, FailMode::StreamStatus);
        }
    }
    let summary = dest.close().await.expect("close");
    assert_eq!(summary.rows_written, 1_000);
    assert!(summary.retries >= 2, "the faults forced resends: {summary:?}");
    let mut ids: Vec<i64> = sink
        .rows("ref-project", "ref", "exactly_once")
        .iter()
        .map(|r| r["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..1_000).collect::<Vec<_>>(), "every id exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_carries_the_bearer_token_of_the_service_account() {
    let tokens = TokenServer::start().await.expect("token server");
    let key = tokens.issue_service_account().expect("throwaway key");
    let dir = std::env::temp_dir().join(format!("bqsink-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let key_path = dir.join("key.json");
    key.write_to(&key_path).expect("key file");

    let sink = RefSink::start().await.expect("reference sink");
    let auth = Auth::from_key_file(&key_path).expect("key file");
    let header = auth.authorization_header().await.expect("token").expect("a header");
    sink.require_bearer(header.trim_start_matches("Bearer "));
    let dest = Destination::builder()
        .endpoints(endpoints(&sink))
        .auth(auth)
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id("authed")
        .schema(nested_schema())
        .write_mode(WriteMode::Batch)
        .build()
        .await
        .expect("destination with credentials");
    for id in 0..10 {
        dest.write(Record::new().with("id", id)).await.expect("row");
    }
    assert_eq!(dest.close().await.expect("close").rows_written, 10);
    assert_eq!(sink.rows("ref-project", "ref", "authed").len(), 10);
    let seen = sink.seen_authorization();
    assert!(seen.len() >= 6, "REST + create stream + append + finalize + commit, saw {}", seen.len());
    assert!(seen.iter().all(|h| h == &header), "every call carries the issued token");
    assert_eq!(tokens.issued(), 1, "the token is cached while valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_token_the_sink_refuses_and_bqsink_says_so() {
    let sink = RefSink::start().await.expect("reference sink");
    sink.require_bearer("expected-token");
    let err = Destination::builder()
        .endpoints(endpoints(&sink))
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id("denied")
        .schema(nested_schema())
        .build()
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("401"), "{err}");
}

/// `Destination::load`: NDJSON bytes straight to row bytes, the nested rows stored as the
/// `Record` path stores them, refused lines dead-lettered with their text and line; the blocking
/// `Writer::load` does the same for synchronous callers.
#[tokio::test(flavor = "multi_thread")]
async fn load_transcodes_nested_rows_and_dead_letters_bad_lines_as_they_were() {
    let sink = RefSink::start().await.expect("reference sink");
    let dlq = std::env::temp_dir().join(format!("bqsink-load-dlq-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&dlq);
    let dest = Destination::builder()
        .endpoints(endpoints(&sink))
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id("loaded")
        .schema(nested_schema())
        .batch_size(50)
        .dead_letter_file(&dlq)
        .build()
        .await
        .expect("destination");
    let good = json!({
        "id": 1, "first name": "Ada", "j": {"k": [1, {"x": null}]}, "tags": ["a", "ü"],
        "outer": {"middle": {"level": 2, "inner": {"leaf": "deep", "nums": [1, -1]}}},
        "items": [{"sku": "A", "qty": 1, "attrs": [{"k": "color", "v": "red"}]}]
    });
    let mut text = format!("{good}\n\n{{\"id\": \"two\"}}\n{{\"id\": 3, \"outer\": {{\"middle\": {{}}}}}}\nnot json\n");
    for id in 10..210 {
        text.push_str(&format!("{{\"items\": [{{\"sku\": \"s{id}\"}}], \"id\": {id}}}\n"));
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let options = bqsink::LoadOptions::ndjson().with_chunk_bytes(512).on_refused({
        let seen = seen.clone();
        move |e| seen.lock().expect("lock").push(e.to_string())
    });
    let report = dest.load(std::io::Cursor::new(text.into_bytes()), options).await.expect("load");
    assert_eq!((report.rows_read, report.rows_accepted, report.rows_refused), (204, 201, 3));
    let summary = dest.close().await.expect("close");
    assert_eq!((summary.rows_read, summary.rows_written, summary.rows_dead_lettered), (204, 201, 3));
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "row 2: id: expected INT64, got STRING (\"two\"): not an integer in the INT64 range".to_owned(),
            "row 3: outer.middle.level: REQUIRED column is missing or null".to_owned(),
            "row 4: invalid JSON: expected a value at column 1".to_owned(),
        ]
    );
    let letters: Vec<Json> = std::fs::read_to_string(&dlq)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().any(|l| l["raw"] == "{\"id\": \"two\"}" && l["row"] == 2 && l["column"] == "id"));
    assert!(letters.iter().any(|l| l["raw"] == "not json" && l["row"] == 4));

    let rows = sink.rows("ref-project", "ref", "loaded");
    assert_eq!(rows.len(), 201);
    let first = Json::Object(rows[0].clone());
    assert_eq!(first["first name"], "Ada");
    assert_eq!(first["tags"], json!(["a", "ü"]));
    assert_eq!(first["outer"]["middle"]["inner"]["nums"], json!(["1", "-1"]));
    assert_eq!(first["items"], json!([{"sku": "A", "qty": "1", "attrs": [{"k": "color", "v": "red"}]}]));
    let j: Json = serde_json::from_str(first["j"].as_str().expect("JSON as text")).expect("valid JSON");
    assert_eq!(j, json!({"k": [1, {"x": null}]}));
    let ids: Vec<String> = rows.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect();
    let want: Vec<String> = std::iter::once(1).chain(10..210).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "rows enter in input order");

    // The blocking writer: CSV from a reader, for synchronous code.
    let builder = Destination::builder()
        .endpoints(endpoints(&sink))
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id("loaded_csv")
        .schema(
            Schema::from_json(r#"[{"name":"id","type":"INT64"},{"name":"name","type":"STRING"}]"#).expect("schema"),
        );
    let report = tokio::task::spawn_blocking(move || {
        let writer = bqsink::Writer::new(builder).expect("writer");
        let report =
            writer.load(std::io::Cursor::new(b"name,id\n\"a,b\",1\nc,2\n".to_vec()), bqsink::LoadOptions::csv());
        let (summary, _) = writer.close().expect("close");
        (report.expect("load"), summary)
    })
    .await
    .expect("joins");
    assert_eq!((report.0.rows_read, report.1.rows_written), (2, 2));
    let rows = sink.rows("ref-project", "ref", "loaded_csv");
    assert_eq!(Json::Object(rows[0].clone()), json!({"id": "1", "name": "a,b"}));
}
