//! The 12-column event rows the benchmarks and profiling harnesses encode: INT64, FLOAT64, BOOL,
//! four STRINGs, TIMESTAMP, DATE, NUMERIC, JSON and a REPEATED STRING.

use bqsink_core::{Date, Decimal, Field, FieldType, Record, Schema, Timestamp, Value};

/// The schema of [`typed_row`].
pub fn twelve_column_schema() -> Schema {
    Schema::new(vec![
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
    ])
}

/// Row `i`, with typed values in schema order.
pub fn typed_row(i: i64) -> Record {
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
}
