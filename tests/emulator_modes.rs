//! Write modes against bqemulator: exactly-once (COMMITTED streams with offsets) and batch
//! (PENDING streams committed at close), read back with queries.

use bqsink::{Destination, Endpoints, Field, FieldType, Record, Schema, WriteMode};
use bqsink_testkit::Emulator;
use serde_json::json;

fn schema() -> Schema {
    Schema::new(vec![Field::new("id", FieldType::Int64).required(), Field::new("name", FieldType::String)])
}

async fn destination(emu: &Emulator, table: &str, mode: WriteMode) -> Destination {
    Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("conformance")
        .dataset_id("modes")
        .table_id(table)
        .schema(schema())
        .write_mode(mode)
        .batch_size(2_000)
        .build()
        .await
        .expect("destination")
}

async fn counts(dest_rest: &bqsink::RestClient, table: &str) -> (String, String) {
    let r = dest_rest
        .query("conformance", &format!("SELECT COUNT(*), COUNT(DISTINCT id) FROM `conformance.modes.{table}`"))
        .await
        .expect("query");
    let cell = |i: usize| r.rows[0][i].as_str().unwrap_or_default().to_owned();
    (cell(0), cell(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_writes_each_row_once() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = destination(&emu, "exactly_once", WriteMode::ExactlyOnce).await;
    let rest = dest.rest().clone();
    for id in 0..10_000 {
        dest.write(Record::new().with("id", id).with("name", format!("n{id}"))).await.expect("row");
    }
    dest.flush().await.expect("flush");
    // Committed-stream rows are visible as soon as they are acknowledged.
    assert_eq!(counts(&rest, "exactly_once").await, ("10000".into(), "10000".into()));
    let summary = dest.close().await.expect("close");
    assert_eq!(summary.rows_written, 10_000);
    assert!(summary.requests >= 5, "2,000-row batches: {} requests", summary.requests);
    let r = rest
        .query("conformance", "SELECT MIN(id), MAX(id) FROM `conformance.modes.exactly_once`")
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!("0"), json!("9999")]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_rows_appear_all_at_once_at_close() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = destination(&emu, "batch", WriteMode::Batch).await;
    let rest = dest.rest().clone();
    for id in 0..5_000 {
        dest.write(Record::new().with("id", id)).await.expect("row");
    }
    dest.flush().await.expect("flush");
    assert_eq!(counts(&rest, "batch").await, ("0".into(), "0".into()), "pending rows are invisible before the commit");
    let summary = dest.close().await.expect("close commits");
    assert_eq!(summary.rows_written, 5_000);
    assert_eq!(counts(&rest, "batch").await, ("5000".into(), "5000".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn write_empty_in_batch_refuses_to_commit_into_a_table_that_filled_meanwhile() {
    let emu = Emulator::start().expect("bqemulator starts");
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("conformance")
        .dataset_id("modes")
        .table_id("write_empty")
        .schema(schema())
        .write_mode(WriteMode::Batch)
        .write_disposition(bqsink::WriteDisposition::WriteEmpty)
        .build()
        .await
        .expect("the table is empty at build");
    let rest = dest.rest().clone();
    for id in 0..100 {
        dest.write(Record::new().with("id", id)).await.expect("row");
    }
    // Someone else writes into the table before the batch commits.
    let other = destination(&emu, "write_empty", WriteMode::Streaming).await;
    other.write(Record::new().with("id", 1_000)).await.expect("row");
    other.close().await.expect("close");
    let err = dest.close().await.expect_err("WRITE_EMPTY is checked again before the commit");
    assert!(err.to_string().contains("WRITE_EMPTY"), "{err}");
    assert_eq!(counts(&rest, "write_empty").await, ("1".into(), "1".into()), "nothing of the batch was committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn write_truncate_in_batch_replaces_the_rows_in_one_step() {
    let emu = Emulator::start().expect("bqemulator starts");
    let old = destination(&emu, "truncate", WriteMode::Streaming).await;
    let rest = old.rest().clone();
    old.write_batch((0..300).map(|id| Record::new().with("id", id).with("name", "old"))).await.expect("rows");
    old.close().await.expect("close");
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("conformance")
        .dataset_id("modes")
        .table_id("truncate")
        .schema(schema())
        .write_mode(WriteMode::Batch)
        .write_disposition(bqsink::WriteDisposition::WriteTruncate)
        .batch_size(500)
        .build()
        .await
        .expect("WRITE_TRUNCATE is accepted in batch mode");
    let refused = dest
        .write_batch((1_000..3_000).map(|id| Record::new().with("id", id).with("name", "new")))
        .await
        .expect("rows");
    assert!(refused.is_empty(), "{refused:?}");
    dest.flush().await.expect("flush");
    assert_eq!(counts(&rest, "truncate").await, ("300".into(), "300".into()), "the old rows stay until the commit");
    let summary = dest.close().await.expect("close commits and replaces");
    assert_eq!(summary.rows_written, 2_000);
    let r = rest
        .query(
            "conformance",
            "SELECT COUNT(*), MIN(id), MAX(id), COUNT(DISTINCT name) FROM `conformance.modes.truncate`",
        )
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!("2000"), json!("1000"), json!("2999"), json!("1")]]);
    let tables = rest.list_tables("conformance", "modes").await.expect("tables.list");
    let names: Vec<&str> = tables.iter().map(|t| t.table_id.as_str()).collect();
    assert!(names.contains(&"truncate"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("staging")), "the staging table is deleted: {names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn write_truncate_outside_batch_is_refused_at_build() {
    for mode in [WriteMode::Streaming, WriteMode::ExactlyOnce] {
        let err = Destination::builder()
            .endpoints(Endpoints::emulator("127.0.0.1:9", "127.0.0.1:9"))
            .project_id("conformance")
            .dataset_id("modes")
            .table_id("t")
            .schema(schema())
            .write_mode(mode)
            .write_disposition(bqsink::WriteDisposition::WriteTruncate)
            .build()
            .await
            .expect_err("refused before any connection");
        let text = err.to_string();
        assert!(text.contains("write_disposition") && text.contains("batch"), "{mode}: {text}");
    }
}
