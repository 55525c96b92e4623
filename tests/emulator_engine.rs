//! The engine against bqemulator: 100k rows in each write mode, and a poisoned row among 10,000
//! that the emulator refuses without saying which (no `row_errors`): bisection isolates it.

use std::sync::Arc;

use bqsink::{dlq, Destination, Endpoints, Record, Schema, WriteMode};
use bqsink_testkit::Emulator;
use serde_json::json;

fn schema() -> Schema {
    Schema::from_json(r#"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "g", "type": "GEOGRAPHY"}]"#)
        .expect("schema")
}

async fn destination(emu: &Emulator, table: &str, mode: WriteMode, queue: Option<dlq::Channel>) -> Destination {
    let mut b = Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("engine-project")
        .dataset_id("engine")
        .table_id(table)
        .schema(schema())
        .write_mode(mode)
        .batch_size(10_000);
    if let Some(q) = queue {
        b = b.dead_letter_queue(Arc::new(q));
    }
    b.build().await.expect("destination")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mode_writes_100k_rows_and_a_query_finds_them_all() {
    let emu = Emulator::start().expect("bqemulator starts");
    for mode in [WriteMode::Streaming, WriteMode::ExactlyOnce, WriteMode::Batch] {
        let table = format!("rows_{mode:?}").to_lowercase();
        let dest = destination(&emu, &table, mode, None).await;
        let rest = dest.rest().clone();
        for id in 0..100_000i64 {
            dest.write(Record::new().with("id", id)).await.expect("row");
        }
        let summary = dest.close().await.expect("close");
        assert_eq!(summary.rows_written, 100_000, "{mode:?}");
        let r = rest
            .query(
                "engine-project",
                &format!("SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM `engine-project.engine.{table}`"),
            )
            .await
            .expect("query");
        assert_eq!(r.rows, vec![vec![json!("100000"), json!("100000"), json!("0"), json!("99999")]], "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_row_is_isolated_by_bisection() {
    let emu = Emulator::start().expect("bqemulator starts");
    let (queue, letters) = dlq::Channel::bounded(100);
    let dest = destination(&emu, "poisoned", WriteMode::Streaming, Some(queue)).await;
    let rest = dest.rest().clone();
    for id in 0..10_000i64 {
        let g = if id == 7_777 { "POINT(this is not wkt" } else { "POINT(1 2)" };
        dest.write(Record::new().with("id", id).with("g", g)).await.expect("row");
    }
    let summary = dest.close().await.expect("close");
    assert_eq!((summary.rows_written, summary.rows_dead_lettered), (9_999, 1), "{summary:?}");
    let r = rest
        .query(
            "engine-project",
            "SELECT COUNT(*), COUNT(DISTINCT id), COUNTIF(id = 7777) FROM `engine-project.engine.poisoned`",
        )
        .await
        .expect("query");
    assert_eq!(r.rows, vec![vec![json!("9999"), json!("9999"), json!("0")]]);
    let dead: Vec<bqsink::DeadLetter> = letters.try_iter().collect();
    assert_eq!(dead.len(), 1);
    match &dead[0].payload {
        bqsink::Payload::Record(rec) => assert_eq!(rec.get("id"), Some(&bqsink::Value::Int64(7_777))),
        other => panic!("{other:?}"),
    }
    assert!(!dead[0].reason.message.is_empty(), "the reason carries the server's message");
    assert_eq!(dead[0].reason.column, "g", "the dead letter names the field: {}", dead[0].reason.message);
}
