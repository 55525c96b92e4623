//! Encodes typed 12-column rows in a loop; for profilers (`valgrind --tool=callgrind`).
use bqsink_core::{Date, Decimal, Field, FieldType, Record, Schema, Timestamp, Value};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;

fn main() {
    let schema = Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("score", FieldType::Float64),
        Field::new("ok", FieldType::Bool),
        Field::new("event", FieldType::String),
        Field::new("user_id", FieldType::String),
        Field::new("page", FieldType::String),
        Field::new("agent", FieldType::String),
        Field::new("at", FieldType::Timestamp),
        Field::new("day", FieldType::Date),
        Field::new("amount", FieldType::Numeric),
        Field::new("props", FieldType::Json),
        Field::new("tags", FieldType::String).repeated(),
    ]);
    let rows: Vec<Record> = (0..10_000i64)
        .map(|i| {
            Record::with_capacity(12)
                .with("id", i)
                .with("score", i as f64 * 0.5)
                .with("ok", i % 3 == 0)
                .with("event", "page_view")
                .with("user_id", format!("user-{}", i % 1000))
                .with("page", "/pricing")
                .with("agent", "Mozilla/5.0 (X11; Linux x86_64)")
                .with("at", Timestamp::from_micros(1_700_000_000_000_000 + i).map_or(Value::Null, Value::Timestamp))
                .with("day", Date::from_days(19_700).map_or(Value::Null, Value::Date))
                .with("amount", Decimal::parse("1234.56").map_or(Value::Null, Value::Numeric))
                .with("props", Value::Json(r#"{"plan":"pro"}"#.into()))
                .with("tags", vec![Value::from("a"), Value::from("b")])
        })
        .collect();
    let mut enc = RowEncoder::new(RowDescriptor::new(&schema).expect("schema"));
    let mut buf = BytesMut::with_capacity(4 << 20);
    let start = std::time::Instant::now();
    let rounds = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    for _ in 0..rounds {
        buf.clear();
        for r in &rows {
            enc.encode_row_entry(r, &mut buf).expect("encode");
        }
    }
    let n = rounds * rows.len();
    eprintln!("{n} rows in {:?}: {:.0} rows/s", start.elapsed(), n as f64 / start.elapsed().as_secs_f64());
}
