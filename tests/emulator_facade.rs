//! The facade's other entry points against bqemulator: `from_config`, the blocking `Writer`,
//! `write_stream`, the batch timeout, the dead-letter file, and the schema API.

use std::time::Duration;

use bqsink::{DestinationConfig, Endpoints, Field, FieldType, Record, Schema, Writer};
use bqsink_testkit::Emulator;
use serde_json::json;

fn schema() -> Schema {
    Schema::new(vec![Field::new("id", FieldType::Int64).required(), Field::new("at", FieldType::Timestamp)])
}

fn builder(emu: &Emulator, table: &str) -> bqsink::DestinationBuilder {
    let config = DestinationConfig::from_json(&format!(
        r#"{{"project_id": "conformance", "dataset_id": "facade", "table_id": "{table}", "batch_size": 100}}"#
    ))
    .expect("config");
    bqsink::DestinationBuilder::from_config(config)
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .schema(schema())
}

async fn ids(rest: &bqsink::RestClient, table: &str) -> Vec<serde_json::Value> {
    rest.query("conformance", &format!("SELECT id FROM `conformance.facade.{table}` ORDER BY id"))
        .await
        .expect("query")
        .rows
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect()
}

#[test]
fn the_blocking_writer_writes_from_sync_code() {
    let emu = Emulator::start().expect("bqemulator starts");
    let writer = Writer::new(builder(&emu, "blocking")).expect("writer");
    for id in 0..250 {
        writer.write(Record::new().with("id", id)).expect("queued");
    }
    writer.write(Record::new().with("id", 250).with("at", "never")).expect("queued");
    let refused = writer.flush().expect("flush");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].row, Some(250));
    assert_eq!(refused[0].column, "at");
    let (summary, refused_after) = writer.close().expect("close");
    assert!(refused_after.is_empty());
    assert_eq!((summary.rows_read, summary.rows_written, summary.rows_rejected), (251, 250, 1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let rest = bqsink::RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none())
        .expect("rest");
    assert_eq!(rt.block_on(ids(&rest, "blocking")).len(), 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn write_stream_reports_each_refused_row_and_the_dlq_keeps_it() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dlq = std::env::temp_dir().join(format!("bqsink-facade-dlq-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&dlq);
    let dest = builder(&emu, "streamed").dead_letter_file(&dlq).build().await.expect("destination");
    let rest = dest.rest().clone();
    let rows = (0..10).map(|i| if i == 3 { Record::new().with("idd", i) } else { Record::new().with("id", i) });
    let report = dest.write_stream(futures_stream(rows)).await.expect("stream");
    assert_eq!((report.rows_read, report.rows_accepted), (10, 9));
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].to_string(), "row 3: idd: no such column in the table");
    let summary = dest.close().await.expect("close");
    assert_eq!((summary.rows_written, summary.rows_dead_lettered), (9, 1));
    assert_eq!(ids(&rest, "streamed").await.len(), 9);
    let letters = std::fs::read_to_string(&dlq).expect("dlq file");
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).expect("one JSON line");
    assert_eq!(letter["record"], json!({"idd": 3}));
    assert_eq!(letter["column"], "idd");
}

fn futures_stream(rows: impl Iterator<Item = Record>) -> impl futures::Stream<Item = Record> {
    futures::stream::iter(rows)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_batch_is_sent_after_the_batch_timeout() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = builder(&emu, "timed").batch_timeout(Duration::from_millis(200)).build().await.expect("destination");
    let rest = dest.rest().clone();
    dest.write(Record::new().with("id", 1)).await.expect("row");
    // No flush: only the timeout can send this 1-row batch (the batch size is 100).
    // Wait for the acknowledgement, then query (the emulator can fail a query that runs while
    // an append is being stored).
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if dest.metrics().records_written == 1 {
            break;
        }
    }
    assert_eq!(dest.metrics().records_written, 1, "the batch timeout sent the row");
    assert_eq!(ids(&rest, "timed").await, vec![json!("1")]);
    dest.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_api_creates_alters_within_the_rules_and_drops() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = builder(&emu, "managed").build().await.expect("destination");
    assert!(!dest.create_schema(&schema()).await.expect("exists already"));
    let wider = Schema::new(vec![
        Field::new("id", FieldType::Int64),
        Field::new("at", FieldType::Timestamp),
        Field::new("email", FieldType::String),
    ]);
    let changes = dest.alter_schema(&wider).await.expect("legal change");
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["relax id to NULLABLE", "add column email"]);
    let info = dest.rest().get_table(dest.table()).await.expect("get").expect("exists");
    assert_eq!(info.schema.fields.len(), 3);
    assert_eq!(info.schema.fields[0].mode, bqsink::Mode::Nullable);
    assert_eq!(dest.schema().fields.len(), 3, "the destination encodes with the new schema");
    let narrowing = Schema::new(vec![Field::new("id", FieldType::String)]);
    let err = dest.alter_schema(&narrowing).await.expect_err("refused before any request");
    assert!(err.to_string().contains("id: BigQuery cannot change INT64 to STRING"), "{err}");
    assert!(dest.drop_table().await.expect("drop"));
    assert!(dest.rest().get_table(dest.table()).await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_prometheus_and_health_describe_the_destination() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = builder(&emu, "observed").build().await.expect("destination");
    for id in 0..250 {
        dest.write(Record::new().with("id", id)).await.expect("row");
    }
    dest.flush().await.expect("flush");
    let m = dest.metrics();
    assert_eq!(m.records_written, 250);
    assert_eq!(m.batches_processed, 3, "100-row batches");
    assert!(m.bytes_written > 0 && m.latency_p50_ms > 0.0 && m.average_latency_ms > 0.0, "{m:?}");
    assert!(m.streaming_enabled);
    assert_eq!((m.in_flight_rows, m.in_flight_bytes), (0, 0));
    let text = dest.metrics_prometheus();
    assert!(text.contains("bqsink_records_written_total{table=\"conformance.facade.observed\"} 250"), "{text}");
    assert!(text.contains("# TYPE bqsink_append_latency_seconds histogram"), "{text}");
    let health = dest.health().await;
    assert!(health.is_healthy(), "{health:?}");
    let names: Vec<&str> = health.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ["connectivity", "dataset", "table", "error_rate"]);
    dest.drop_table().await.expect("drop");
    let health = dest.health().await;
    let table = health.checks.iter().find(|c| c.name == "table").expect("table check");
    assert!(!table.ok && table.detail.contains("does not exist"), "{table:?}");
    assert!(health.checks.iter().find(|c| c.name == "dataset").is_some_and(|c| c.ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_go_to_a_table_that_can_be_queried() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = builder(&emu, "with_dlq_table").dead_letter_table("dead_letters").build().await.expect("destination");
    let rest = dest.rest().clone();
    let rows = (0..500).map(|i| {
        let r = Record::new().with("id", i);
        match i % 100 {
            7 => r.with("at", "not a time"),
            13 => Record::new().with("at", "2024-01-01T00:00:00Z"), // id is REQUIRED
            _ => r,
        }
    });
    let refused = dest.write_batch(rows).await.expect("rows");
    assert_eq!(refused.len(), 10);
    let summary = dest.close().await.expect("close");
    assert_eq!((summary.rows_read, summary.rows_written, summary.rows_dead_lettered), (500, 490, 10));
    assert_eq!(ids(&rest, "with_dlq_table").await.len(), 490);
    let r = rest
        .query(
            "conformance",
            "SELECT row_index, column_name, target_table, reason, JSON_VALUE(record, '$.at') \
             FROM `conformance.facade.dead_letters` ORDER BY row_index",
        )
        .await
        .expect("query the dead-letter table");
    assert_eq!(r.rows.len(), 10, "{:?}", r.rows);
    for row in &r.rows {
        let index: u64 = row[0].as_str().and_then(|s| s.parse().ok()).expect("row_index");
        let (column, at) = match index % 100 {
            7 => ("at", json!("not a time")),
            13 => ("id", json!("2024-01-01T00:00:00Z")),
            other => panic!("row {index} ({other}) was not bad"),
        };
        assert_eq!(row[1], json!(column), "{row:?}");
        assert_eq!(row[2], json!("conformance.facade.with_dlq_table"));
        assert!(row[3].as_str().is_some_and(|m| !m.is_empty()), "{row:?}");
        assert_eq!(row[4], at, "{row:?}");
    }
}
