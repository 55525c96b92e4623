//! Every flat type the emulator stores, written through the library and read back with a query.
//! Expected cells come from `tests/fixtures/flat/expected.json`, computed by Python, not bqsink.

use bqsink::{
    Date, DateTime, Decimal, Destination, Endpoints, Field, FieldType, Record, Schema, Time, Timestamp, Value,
};
use bqsink_testkit::compare::assert_cells_match;
use bqsink_testkit::Emulator;
use serde_json::json;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn flat_schema() -> Schema {
    Schema::from_json(&fixture("flat/schema.json")).expect("the fixture schema is valid")
}

async fn destination(emu: &Emulator, table: &str, schema: Schema) -> Destination {
    Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("conformance")
        .dataset_id("flat")
        .table_id(table)
        .schema(schema)
        .build()
        .await
        .expect("destination builds against the emulator")
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rows_of_every_flat_type_read_back_exactly() {
    let emu = Emulator::start().expect("bqemulator starts");
    let schema = flat_schema();
    let dest = destination(&emu, "from_json", schema.clone()).await;
    let rest = dest.rest().clone();
    let text = fixture("flat/rows.ndjson");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let record = Record::from_json_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        dest.write(record).await.unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
    }
    let summary = dest.close().await.expect("flushes");
    assert_eq!(summary.rows_written, lines.len() as u64);
    let result =
        rest.query("conformance", "SELECT * FROM `conformance.flat.from_json` ORDER BY id").await.expect("query");
    let expected: Vec<serde_json::Value> = serde_json::from_str(&fixture("flat/expected.json")).expect("expected.json");
    assert_cells_match(&schema, &result, &expected).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_values_and_serialize_structs_read_back_exactly() {
    let emu = Emulator::start().expect("bqemulator starts");
    let schema = flat_schema();
    let dest = destination(&emu, "typed", schema.clone()).await;
    let rest = dest.rest().clone();
    let ts = Timestamp::from_micros(-2_208_988_800_000_001).expect("1899-12-31T23:59:59.999999Z");
    let day = Date::from_ymd(2101, 3, 4).expect("date");
    let time = Time::from_hms_micro(12, 34, 56, 789).expect("time");
    let typed = Record::new()
        .with("id", 100)
        .with("s", "typed")
        .with("b", Value::Bytes(vec![0, 1, 2, 255]))
        .with("i", i64::MIN)
        .with("f", f64::MAX)
        .with("n", Value::Numeric(Decimal::parse("-0.123456789").expect("decimal")))
        .with("ok", true)
        .with("ts", ts)
        .with("d", day)
        .with("t", time)
        .with("dtm", DateTime { date: day, time })
        .with("g", Value::Geography("POINT(1 2)".into()))
        .with("j", Value::Json(r#"{"k":[1,2,{"z":null}]}"#.into()))
        .with("ri", vec![Value::Int64(1), Value::Int64(-1)])
        .with("rs", Vec::<Value>::new())
        .with("rf", vec![Value::Float64(f64::MIN_POSITIVE)])
        .with("rd", vec![Value::Date(day)]);
    dest.write(typed).await.expect("typed row");

    #[derive(serde::Serialize)]
    struct Event<'a> {
        id: u32,
        s: &'a str,
        i: i64,
        f: f32,
        ok: bool,
        ts: &'a str,
        rs: Vec<&'a str>,
        j: serde_json::Value,
    }
    let event = Event {
        id: 101,
        s: "struct",
        i: 7,
        f: 0.25,
        ok: false,
        ts: "2024-01-01T00:00:00Z",
        rs: vec!["x", "y"],
        j: json!({"nested": {"deep": [true]}}),
    };
    dest.write(Record::from_serialize(&event).expect("struct")).await.expect("struct row");
    assert_eq!(dest.close().await.expect("flush").rows_written, 2);

    let result = rest.query("conformance", "SELECT * FROM `conformance.flat.typed` ORDER BY id").await.expect("query");
    let null_row = |id: &str| {
        let mut m = serde_json::Map::new();
        for f in &schema.fields {
            m.insert(f.name.clone(), if f.mode == bqsink::Mode::Repeated { json!([]) } else { json!(null) });
        }
        m.insert("id".into(), json!(id));
        m
    };
    let mut a = null_row("100");
    for (k, v) in [
        ("s", json!("typed")),
        ("b", json!("AAEC/w==")),
        ("i", json!("-9223372036854775808")),
        ("f", json!(f64::MAX)),
        ("n", json!("-0.123456789")),
        ("ok", json!(true)),
        ("ts", json!("-2208988800000001")),
        ("d", json!("2101-03-04")),
        ("t", json!("12:34:56.000789")),
        ("dtm", json!("2101-03-04T12:34:56.000789")),
        ("g", json!("POINT(1 2)")),
        ("j", json!({"k": [1, 2, {"z": null}]})),
        ("ri", json!(["1", "-1"])),
        ("rf", json!([f64::MIN_POSITIVE])),
        ("rd", json!(["2101-03-04"])),
    ] {
        a.insert(k.into(), v);
    }
    let mut b = null_row("101");
    for (k, v) in [
        ("s", json!("struct")),
        ("i", json!("7")),
        ("f", json!(0.25)),
        ("ok", json!(false)),
        ("ts", json!("1704067200000000")),
        ("rs", json!(["x", "y"])),
        ("j", json!({"nested": {"deep": [true]}})),
    ] {
        b.insert(k.into(), v);
    }
    assert_cells_match(&schema, &result, &[a.into(), b.into()]).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_value_names_row_and_column_and_the_rest_is_written() {
    let emu = Emulator::start().expect("bqemulator starts");
    let schema = Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("at", FieldType::Timestamp),
        Field::new("n", FieldType::Numeric),
    ]);
    let dest = destination(&emu, "bad_values", schema).await;
    let rest = dest.rest().clone();
    let rows = vec![
        Record::new().with("id", 1).with("at", "2024-01-01T00:00:00Z"),
        Record::new().with("id", 2).with("at", "yesterday"),
        Record::new().with("id", 3).with("n", "1.0000000001"),
        Record::new().with("at", "2024-01-01T00:00:00Z"),
        Record::new().with("id", 5).with("colour", "red"),
        Record::new().with("id", 6),
    ];
    let rejected = dest.write_batch(rows).await.expect("the batch is taken");
    let described: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    assert_eq!(rejected.len(), 4, "{described:#?}");
    assert!(described[0].starts_with("row 1: at: expected TIMESTAMP, got STRING (\"yesterday\")"), "{}", described[0]);
    assert!(described[1].starts_with("row 2: n: expected NUMERIC"), "{}", described[1]);
    assert_eq!(described[2], "row 3: id: REQUIRED column is missing or null");
    assert_eq!(described[3], "row 4: colour: no such column in the table");
    let summary = dest.close().await.expect("flush");
    assert_eq!((summary.rows_written, summary.rows_rejected), (2, 4));
    let result =
        rest.query("conformance", "SELECT id FROM `conformance.flat.bad_values` ORDER BY id").await.expect("query");
    assert_eq!(result.rows, vec![vec![json!("1")], vec![json!("6")]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_loads_are_split_below_the_request_limit() {
    let emu = Emulator::start().expect("bqemulator starts");
    let schema =
        Schema::new(vec![Field::new("id", FieldType::Int64).required(), Field::new("blob", FieldType::String)]);
    // ~24 MB of rows with a row limit that would never cut: only the byte limit can split them.
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .project_id("conformance")
        .dataset_id("flat")
        .table_id("big")
        .schema(schema)
        .batch_size(1_000_000)
        .build()
        .await
        .expect("destination");
    let rest = dest.rest().clone();
    let blob = "x".repeat(10_000);
    for id in 0..2_400 {
        dest.write(Record::new().with("id", id).with("blob", blob.as_str())).await.expect("row");
    }
    let summary = dest.close().await.expect("flush");
    assert_eq!(summary.rows_written, 2_400);
    assert!(summary.requests >= 3, "24 MB must take at least 3 requests, took {}", summary.requests);
    assert!(summary.bytes_written / summary.requests <= bqsink_transport::MAX_REQUEST_BYTES as u64);
    let result = rest
        .query("conformance", "SELECT COUNT(*), COUNT(DISTINCT id), MIN(LENGTH(blob)) FROM `conformance.flat.big`")
        .await
        .expect("query");
    assert_eq!(result.rows, vec![vec![json!("2400"), json!("2400"), json!("10000")]]);
}
