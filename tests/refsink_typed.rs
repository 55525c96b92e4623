//! `Destination::write_typed` against the reference sink: `#[derive(Serialize)]` rows written
//! straight to wire bytes, decoded by the sink with its own reader, and refused rows
//! dead-lettered with their JSON text and their index.

use bqsink::{Date, Decimal, Destination, Endpoints, Schema, Timestamp};
use bqsink_testkit::refsink::RefSink;
use serde::Serialize;
use serde_json::{json, Value as Json};

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Plan {
    Free,
    Pro,
}

#[derive(Serialize)]
struct Item<'a> {
    sku: &'a str,
    qty: u32,
}

#[derive(Serialize)]
struct Context {
    ip: Option<String>,
    level: Option<i64>,
}

#[derive(Serialize)]
struct Order<'a> {
    id: i64,
    customer: String,
    plan: Plan,
    at: Timestamp,
    day: Date,
    total: Decimal,
    score: Option<f64>,
    tags: Vec<&'a str>,
    items: Vec<Item<'a>>,
    context: Context,
    props: Json,
}

fn schema() -> Schema {
    Schema::from_json(
        r#"[
        {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "customer", "type": "STRING"},
        {"name": "plan", "type": "STRING"},
        {"name": "at", "type": "TIMESTAMP"},
        {"name": "day", "type": "DATE"},
        {"name": "total", "type": "NUMERIC"},
        {"name": "score", "type": "FLOAT"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "sku", "type": "STRING"},
            {"name": "qty", "type": "INTEGER"}
        ]},
        {"name": "context", "type": "RECORD", "fields": [
            {"name": "ip", "type": "STRING"},
            {"name": "level", "type": "INTEGER", "mode": "REQUIRED"}
        ]},
        {"name": "props", "type": "JSON"}
    ]"#,
    )
    .expect("valid schema")
}

fn order(i: i64) -> Order<'static> {
    Order {
        id: i,
        customer: format!("c\"{i}\""),
        plan: if i & 1 == 0 { Plan::Free } else { Plan::Pro },
        at: Timestamp::from_micros(1_700_000_000_000_000 + i).expect("in range"),
        day: Date::from_days(19_700).expect("in range"),
        total: Decimal::parse("1234.50").expect("decimal"),
        score: matches!(i % 3, 1).then_some(i as f64 / 2.0),
        tags: if i & 3 == 0 { vec![] } else { vec!["a", "ü"] },
        items: vec![Item { sku: "A", qty: 1 }, Item { sku: "B", qty: 2 }],
        // Row 7 lacks a REQUIRED nested column: refused.
        context: Context { ip: matches!(i % 5, 0).then(|| "10.0.0.1".to_owned()), level: (i != 7).then_some(i) },
        props: json!({"n": i, "deep": [true, null]}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_rows_round_trip_and_refused_rows_are_dead_lettered_as_json() {
    let sink = RefSink::start().await.expect("reference sink");
    let dlq = std::env::temp_dir().join(format!("bqsink-typed-dlq-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&dlq);
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
        .project_id("ref-project")
        .dataset_id("ref")
        .table_id("typed")
        .schema(schema())
        .batch_size(50)
        .dead_letter_file(&dlq)
        .build()
        .await
        .expect("destination");

    let refused = dest.write_typed((0..120).map(order)).await.expect("written");
    assert_eq!(
        refused.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        ["row 7: context.level: REQUIRED column is missing or null"]
    );
    // Borrowed rows too.
    let more: Vec<Order<'_>> = (120..125).map(order).collect();
    assert!(dest.write_typed(&more).await.expect("written").is_empty());
    let summary = dest.close().await.expect("close");
    assert_eq!((summary.rows_read, summary.rows_written, summary.rows_dead_lettered), (125, 124, 1));

    let letters: Vec<Json> = std::fs::read_to_string(&dlq)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["row"], 7);
    assert_eq!(letters[0]["column"], "context.level");
    assert_eq!(letters[0]["raw"], serde_json::to_string(&order(7)).expect("json"));

    let rows = sink.rows("ref-project", "ref", "typed");
    assert_eq!(rows.len(), 124);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap_or_default()).collect();
    let want: Vec<String> = (0..125).filter(|i| *i != 7).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "rows enter in order");
    let r5 = Json::Object(rows[5].clone());
    let expect = json!({
        "id": "5", "customer": "c\"5\"", "plan": "pro", "at": "1700000000000005", "day": "2023-12-09",
        "total": "1234.5", "score": null, "tags": ["a", "ü"],
        "items": [{"sku": "A", "qty": "1"}, {"sku": "B", "qty": "2"}],
        "context": {"ip": "10.0.0.1", "level": "5"},
    });
    for (column, want) in expect.as_object().expect("object") {
        assert_eq!(&r5[column], want, "column `{column}`");
    }
    let props: Json = serde_json::from_str(r5["props"].as_str().expect("JSON as text")).expect("valid JSON");
    assert_eq!(props, json!({"n": 5, "deep": [true, null]}));
    let r4 = Json::Object(rows[4].clone());
    assert_eq!((&r4["score"], &r4["tags"], &r4["plan"]), (&json!(2.0), &json!([]), &json!("free")));
    let _ = std::fs::remove_file(&dlq);
}
