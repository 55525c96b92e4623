//! One set of rules: random schemas (nested included) and random JSON lines through the
//! `Record` path (`Record::from_json_str` + `RowEncoder`) and through the transcoder give the
//! same bytes or the same error. JSON columns are compared as JSON values (the transcoder keeps
//! the input's text, the `Record` path re-serialises it); everything else byte for byte.

use bqsink_core::{Field, FieldType, Mode, Record, Schema, Value};
use bqsink_formats::JsonTranscoder;
use bqsink_transport::{decode_row, RowDescriptor, RowEncoder, UnknownFields};
use bytes::BytesMut;
use proptest::prelude::*;

mod common;
use common::Rng;

const TYPES: &[FieldType] = &[
    FieldType::String,
    FieldType::Bytes,
    FieldType::Int64,
    FieldType::Float64,
    FieldType::Numeric,
    FieldType::BigNumeric,
    FieldType::Bool,
    FieldType::Timestamp,
    FieldType::Date,
    FieldType::Time,
    FieldType::DateTime,
    FieldType::Geography,
    FieldType::Json,
];

fn schema(r: &mut Rng, depth: usize) -> Vec<Field> {
    let n = 1 + r.below(6) as usize;
    (0..n)
        .map(|i| {
            let name = format!("{}{}", r.pick(&["a", "B", "col", "x_y"]), i);
            let mut f = if depth < 2 && r.chance(20) {
                Field::record(name, schema(r, depth + 1))
            } else {
                Field::new(name, *r.pick(TYPES))
            };
            match r.below(10) {
                0..=1 => f = f.required(),
                2..=3 if f.field_type != FieldType::Json || r.chance(50) => f = f.repeated(),
                _ => {}
            }
            f
        })
        .collect()
}

fn scalar_text(r: &mut Rng, ty: FieldType) -> String {
    let good: &[&str] = match ty {
        FieldType::Int64 => &["0", "-7", "42", "9223372036854775807", "-9223372036854775808", "\"12\"", "3.0"],
        FieldType::Float64 => &["1.5", "-0.0", "1e300", "2", "\"NaN\"", "\"3.25\"", "0.1"],
        FieldType::Numeric | FieldType::BigNumeric => {
            &["\"123.456\"", "1.25", "7", "\"1e3\"", "18446744073709551615", "\"0.0000000001\""]
        }
        FieldType::Bool => &["true", "false", "\"T\"", "0", "1", "\"no\""],
        FieldType::Timestamp => {
            &["\"2024-05-01T12:00:00Z\"", "\"2024-05-01 12:00:00.123456+02:00\"", "1714564800", "1.5"]
        }
        FieldType::Date => &["\"2024-02-29\"", "\"2023-02-29\"", "\"0001-01-01\""],
        FieldType::Time => &["\"12:34:56.789\"", "\"25:00:00\"", "\"7:05\""],
        FieldType::DateTime => &["\"2024-05-01T12:00:00\"", "\"2024-05-01 01:02:03.5\"", "\"2024-05-01\""],
        FieldType::Bytes => &["\"aGVsbG8=\"", "\"aGk\"", "\"!!\""],
        FieldType::Geography => &["\"POINT(1 2)\"", "\" \""],
        FieldType::Json => &["{\"k\":[1,2.50,{\"z\":null}]}", "\"s\"", "12", "[true]", "1.0", "{ }"],
        _ => &["\"text\"", "\"caf\\u00e9 \\ud83d\\ude00\"", "\"tab\\tquote\\\"\"", "5", "2.5", "true", "\"\""],
    };
    let wrong: &[&str] = &["\"oops\"", "{\"q\":1}", "[1,2]", "-1.5e3", "true", "\"\"", "99999999999999999999999"];
    if r.chance(80) { r.pick(good) } else { r.pick(wrong) }.to_string()
}

fn value_text(r: &mut Rng, f: &Field, depth: usize) -> String {
    if r.chance(8) {
        return "null".into();
    }
    let one = |r: &mut Rng| -> String {
        if f.field_type == FieldType::Record {
            if r.chance(90) {
                object(r, &f.fields, depth + 1)
            } else {
                "\"not a record\"".into()
            }
        } else {
            scalar_text(r, f.field_type)
        }
    };
    if f.mode == Mode::Repeated && r.chance(90) {
        let n = r.below(4);
        let mut items: Vec<String> = (0..n).map(|_| one(r)).collect();
        if r.chance(5) {
            items.push("null".into());
        }
        if r.chance(3) {
            items.push("[1]".into());
        }
        format!("[{}]", items.join(","))
    } else {
        one(r)
    }
}

fn object(r: &mut Rng, fields: &[Field], depth: usize) -> String {
    let mut members: Vec<String> = Vec::new();
    for f in fields {
        if r.chance(15) {
            continue;
        }
        let key = if r.chance(5) { f.name.to_uppercase() } else { f.name.clone() };
        members.push(format!("\"{key}\":{}", value_text(r, f, depth)));
        if r.chance(4) {
            members.push(format!("\"{key}\":{}", value_text(r, f, depth)));
        }
    }
    if r.chance(5) {
        members.push("\"unknown_key\":{\"deep\":[1,{\"a\":\"b\"}]}".into());
    }
    if r.chance(30) {
        // Out of schema order.
        for i in (1..members.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            members.swap(i, j);
        }
    }
    let sep = if r.chance(20) { " , " } else { "," };
    format!("{{{}}}", members.join(sep))
}

fn via_record(enc: &mut RowEncoder, line: &str) -> Result<Vec<u8>, String> {
    let record = Record::from_json_str(line).map_err(|e| format!("{}|{}", e.column, e.message))?;
    let mut buf = BytesMut::new();
    enc.encode(&record, &mut buf).map_err(|e| format!("{}|{}", e.column, e.message))?;
    Ok(buf.to_vec())
}

fn via_transcoder(t: &mut JsonTranscoder, line: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    t.transcode(line, &mut out).map_err(|e| format!("{}|{}", e.column, e.message))?;
    Ok(out)
}

/// JSON values equal with numbers compared as floats.
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Json(x), Value::Json(y)) => match (serde_json::from_str(x), serde_json::from_str(y)) {
            (Ok(x), Ok(y)) => json_eq(&x, &y),
            _ => x == y,
        },
        (Value::Record(x), Value::Record(y)) => records_eq(x, y),
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_eq(a, b)),
        _ => a == b,
    }
}

fn records_eq(a: &Record, b: &Record) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| ka == kb && values_eq(va, vb))
}

fn has_json(fields: &[Field]) -> bool {
    fields.iter().any(|f| f.field_type == FieldType::Json || has_json(&f.fields))
}

fn check(seed: u64) {
    let mut r = Rng(seed | 1);
    let fields = schema(&mut r, 0);
    let schema = Schema::new(fields.clone());
    let Ok(d) = RowDescriptor::new(&schema) else { return };
    let unknown = if r.chance(50) { UnknownFields::Reject } else { UnknownFields::Ignore };
    let mut enc = RowEncoder::new(d.clone()).with_unknown_fields(unknown);
    let mut t = JsonTranscoder::new(d.clone()).with_unknown_fields(unknown);
    for _ in 0..20 {
        let line = object(&mut r, &fields, 0);
        let a = via_record(&mut enc, &line);
        let b = via_transcoder(&mut t, &line);
        match (&a, &b) {
            (Ok(x), Ok(y)) if has_json(&fields) => {
                let (x, y) = (decode_row(&d, x), decode_row(&d, y));
                let same = matches!((&x, &y), (Ok(x), Ok(y)) if records_eq(x, y));
                assert!(same, "{line}\nschema {schema:?}\nrecord path {x:?}\ntranscoder  {y:?}");
            }
            _ => assert_eq!(a, b, "{line}\nschema {schema:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn transcoder_and_record_encoder_agree(seed in any::<u64>()) {
        check(seed);
    }
}

#[test]
fn syntax_errors_and_edge_cases() {
    let schema = Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("s", FieldType::String),
        Field::new("n", FieldType::Float64),
    ]);
    let d = RowDescriptor::new(&schema).expect("schema");
    let mut enc = RowEncoder::new(d.clone());
    let mut t = JsonTranscoder::new(d);
    for line in [
        r#"{"id":1,"s":"a\u00e9\ud83d\ude00"}"#,
        r#"{"id":-0}"#,
        r#"{"id":1,"n":-0}"#,
        r#"{"id":18446744073709551616}"#,
        r#"{"id":-9223372036854775809}"#,
        r#"{"id":1,"n":123456789012345678901234567890}"#,
        r#"{"id":1,"n":1.7976931348623157e308}"#,
        r#"{"id":1,"n":4.9e-324}"#,
        r#"{"id":1,"n":0.30000000000000004}"#,
        r#"{"id":1,"id":2}"#,
        r#"{"id":1,"ID":2}"#,
        r#"{"s":"x"}"#,
        r#"{"id":"oops"}"#,
        r#"[1]"#,
        r#""x""#,
        r#"null"#,
        r#"{}"#,
    ] {
        assert_eq!(via_record(&mut enc, line), via_transcoder(&mut t, line), "{line}");
    }
    // Not JSON: both refuse the row as a whole (their messages differ in detail).
    for line in [
        r#"{"id":1"#,
        r#"{"id":01}"#,
        r#"{"id":1,}"#,
        r#"{"id":1} x"#,
        "{\"s\":\"a\u{1}\"}",
        r#"{"s":"\ud800"}"#,
        r#"{"n":1e400}"#,
    ] {
        let a = via_record(&mut enc, line);
        let b = via_transcoder(&mut t, line);
        assert!(a.as_ref().is_err_and(|e| e.starts_with("|invalid JSON")), "{line}: {a:?}");
        assert!(b.as_ref().is_err_and(|e| e.starts_with("|invalid JSON")), "{line}: {b:?}");
    }
    let deep = format!("{{\"id\":1,\"s\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert!(via_transcoder(&mut t, &deep).is_err_and(|e| e.contains("invalid JSON")));
}

/// The same bytes cut into chunks anywhere (by the chunker, at any size) give the same rows and
/// refusals, at the same positions, as one chunk.
#[test]
fn chunked_and_unchunked_agree() {
    use bqsink_formats::{Chunker, Cut, Format};
    let schema = Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("s", FieldType::String),
        Field::new("tags", FieldType::String).repeated(),
    ]);
    let d = RowDescriptor::new(&schema).expect("schema");
    let mut r = Rng(7);
    let mut text = String::new();
    for i in 0..300 {
        match r.below(10) {
            0 => text.push('\n'),
            1 => text.push_str("{\"id\":\"bad\"}\n"),
            2 => text.push_str(&format!("{{\"id\":{i},\"s\":\"{}\"}}\n", "long ".repeat(50))),
            _ => text.push_str(&format!("{{\"id\":{i},\"tags\":[\"a\",\"b\\n\"]}}\n",)),
        }
    }
    let all = |chunk_bytes: usize| {
        let mut t = JsonTranscoder::new(d.clone());
        let mut c = Chunker::new(text.as_bytes(), Format::Ndjson, chunk_bytes);
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        while let Some(chunk) = c.next_chunk().expect("reads") {
            for b in t.ndjson_chunk(&chunk.data, chunk.first_line, Cut { max_rows: 7, max_bytes: 1 << 20 }) {
                let mut start = 0;
                for (end, pos) in b.ends.iter().zip(&b.positions) {
                    rows.push((*pos, b.rows[start..*end].to_vec()));
                    start = *end;
                }
                refused.extend(b.refused.into_iter().map(|r| (r.position, r.raw)));
            }
        }
        (rows, refused)
    };
    let whole = all(1 << 20);
    assert_eq!(whole.0.len() + whole.1.len(), text.lines().filter(|l| !l.is_empty()).count());
    for size in [64, 100, 333, 4096] {
        assert_eq!(all(size), whole, "chunks of {size} bytes");
    }
}
