//! What the targets share: the fixed schemas, a small generator, the `Record` path and the
//! comparisons used as oracles.

use bqsink_core::{Field, FieldType, Record, Schema, Value};
use bqsink_formats::Batch;
use bqsink_transport::{decode_row, RowDescriptor, RowEncoder, UnknownFields};
use bytes::BytesMut;

/// Every column type.
pub(crate) const TYPES: &[FieldType] = &[
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

/// The fixed schemas the transcoder targets write into: flat, nested, every type.
pub(crate) fn schema(choice: u8) -> Schema {
    match choice % 3 {
        0 => Schema::new(vec![
            Field::new("id", FieldType::Int64).required(),
            Field::new("name", FieldType::String),
            Field::new("score", FieldType::Float64),
            Field::new("ok", FieldType::Bool),
            Field::new("at", FieldType::Timestamp),
        ]),
        1 => Schema::new(vec![
            Field::new("id", FieldType::Int64),
            Field::new("tags", FieldType::String).repeated(),
            Field::record(
                "user",
                vec![
                    Field::new("name", FieldType::String).required(),
                    Field::new("age", FieldType::Int64),
                    Field::record(
                        "address",
                        vec![Field::new("zip", FieldType::String), Field::new("n", FieldType::Int64)],
                    )
                    .repeated(),
                ],
            ),
            Field::record("items", vec![Field::new("sku", FieldType::String), Field::new("qty", FieldType::Numeric)])
                .repeated(),
        ]),
        _ => {
            let mut fields: Vec<Field> =
                TYPES.iter().map(|t| Field::new(format!("c_{}", format!("{t:?}").to_lowercase()), *t)).collect();
            fields.extend(
                TYPES
                    .iter()
                    .filter(|t| **t != FieldType::Json)
                    .map(|t| Field::new(format!("r_{}", format!("{t:?}").to_lowercase()), *t).repeated()),
            );
            Schema::new(fields)
        }
    }
}

/// The descriptor of a schema the targets build themselves.
pub(crate) fn descriptor(schema: &Schema) -> RowDescriptor {
    match RowDescriptor::new(schema) {
        Ok(d) => d,
        Err(e) => panic!("the fixed schema compiles: {e}"),
    }
}

/// What to do with keys that are not columns, from one bit of the input.
pub(crate) fn unknown(byte: u8) -> UnknownFields {
    if byte & 1 == 0 {
        UnknownFields::Ignore
    } else {
        UnknownFields::Reject
    }
}

/// A small deterministic generator (xorshift).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn from_bytes(data: &[u8]) -> Self {
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A row the `Record` way: `Record::from_json_str` and the `RowEncoder`.
pub(crate) fn via_record(enc: &mut RowEncoder, line: &str) -> Result<Vec<u8>, String> {
    let record = Record::from_json_str(line).map_err(|e| format!("{}|{}", e.column, e.message))?;
    let mut buf = BytesMut::new();
    enc.encode(&record, &mut buf).map_err(|e| format!("{}|{}", e.column, e.message))?;
    Ok(buf.to_vec())
}

/// Row messages (without the entry's framing) of a batch, with their positions.
pub(crate) fn messages(batch: &Batch) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (&end, &pos) in batch.ends.iter().zip(&batch.positions) {
        let entry = &batch.rows[start..end];
        assert_eq!(entry.first(), Some(&0x0A), "a serialized_rows entry starts with its tag");
        let mut i = 1;
        while entry[i] & 0x80 != 0 {
            i += 1;
        }
        let mut len: u64 = 0;
        for (k, b) in entry[1..=i].iter().enumerate() {
            len |= u64::from(b & 0x7F) << (7 * k);
        }
        let msg = &entry[i + 1..];
        assert_eq!(len, msg.len() as u64, "the entry's length prefix is its message's length");
        out.push((pos, msg.to_vec()));
        start = end;
    }
    assert_eq!(start, batch.rows.len(), "the row ends cover the batch");
    out
}

/// A decoded row encodes back to the same bytes (bqsink's decoder and encoder agree).
pub(crate) fn decodes_and_reencodes(d: &RowDescriptor, msg: &[u8]) -> Record {
    let record = match decode_row(d, msg) {
        Ok(r) => r,
        Err(e) => panic!("a written row decodes: {e}\n{msg:?}"),
    };
    let mut enc = RowEncoder::new(d.clone());
    let mut again = BytesMut::new();
    if let Err(e) = enc.encode(&record, &mut again) {
        panic!("a decoded row encodes again: {e}\n{record:?}");
    }
    assert_eq!(&again[..], msg, "a decoded row encodes to the same bytes\n{record:?}");
    record
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

/// Records equal with JSON columns compared as JSON values.
pub(crate) fn records_eq(a: &Record, b: &Record) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| ka == kb && values_eq(va, vb))
}

/// Whether a schema has a JSON column (whose text the transcoder keeps and the `Record` path
/// re-serialises).
pub(crate) fn has_json(fields: &[Field]) -> bool {
    fields.iter().any(|f| f.field_type == FieldType::Json || has_json(&f.fields))
}

/// The transcoder's row and the `Record` path's agree: both written (the same bytes, or the
/// same decoded record when JSON columns may be spelled differently) or both refused.
pub(crate) fn same_as_record(
    d: &RowDescriptor,
    json_columns: bool,
    line: &str,
    fast: &Result<Vec<u8>, String>,
    record: &Result<Vec<u8>, String>,
) {
    match (fast, record) {
        (Ok(x), Ok(y)) if json_columns => {
            let (x, y) = (decode_row(d, x), decode_row(d, y));
            let same = matches!((&x, &y), (Ok(x), Ok(y)) if records_eq(x, y));
            assert!(same, "{line:?}\ntranscoder  {x:?}\nrecord path {y:?}");
        }
        (Ok(x), Ok(y)) => assert_eq!(x, y, "the transcoder and the Record path write the same bytes: {line:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "the transcoder and the Record path disagree on {line:?}\ntranscoder  {fast:?}\nrecord path {record:?}"
        ),
    }
}
