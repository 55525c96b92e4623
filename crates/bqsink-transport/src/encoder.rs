//! Records → protobuf row bytes, written straight into the caller's buffer following a
//! [`RowDescriptor`]'s plan. The only per-encoder state is a reusable slot table, so steady-state
//! encoding allocates nothing per row.

use std::borrow::Cow;

use bqsink_core::{coerce_scalar, Coerced, FieldType, Mode, Record, RowError, Value};
use bytes::{BufMut, BytesMut};

use crate::descriptor::{FieldPlan, MessagePlan, RowDescriptor, WireKind};
use crate::wire::{begin_len, end_len, put_varint, Out};

const ABSENT: u32 = u32::MAX;

/// What to do with record keys that are not columns of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownFields {
    /// Refuse the row, naming the key (BigQuery's default for loads).
    #[default]
    Reject,
    /// Drop the key (`ignoreUnknownValues`).
    Ignore,
}

/// Encodes records as rows of one table.
#[derive(Debug)]
pub struct RowEncoder {
    descriptor: RowDescriptor,
    unknown: UnknownFields,
    slots: Vec<u32>,
    /// One row's message bytes, built here (appends inline) and copied to the batch at once.
    scratch: Vec<u8>,
}

/// Breadcrumbs to a nested column, rendered only when an error needs them.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'a str,
}

impl Path<'_> {
    fn render(&self) -> String {
        match self.parent {
            Some(p) if !p.name.is_empty() => format!("{}.{}", p.render(), self.name),
            _ => self.name.to_owned(),
        }
    }
}

impl RowEncoder {
    /// An encoder for rows of this descriptor.
    pub fn new(descriptor: RowDescriptor) -> Self {
        let slots = vec![ABSENT; descriptor.slot_count()];
        Self { descriptor, unknown: UnknownFields::default(), slots, scratch: Vec::with_capacity(256) }
    }

    /// The same encoder with another rule for unknown keys.
    pub fn with_unknown_fields(mut self, unknown: UnknownFields) -> Self {
        self.unknown = unknown;
        self
    }

    /// The descriptor rows are encoded for.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// Appends one row's message bytes (not length-prefixed) to `buf`. On error `buf` is left as
    /// it was and the error names the column.
    pub fn encode(&mut self, record: &Record, buf: &mut BytesMut) -> Result<(), RowError> {
        self.encode_scratch(record)?;
        buf.put_slice(&self.scratch);
        Ok(())
    }

    /// Appends one row as a `ProtoRows.serialized_rows` entry (key, length, message) to `buf`.
    /// On error `buf` is left as it was.
    pub fn encode_row_entry(&mut self, record: &Record, buf: &mut BytesMut) -> Result<(), RowError> {
        self.encode_scratch(record)?;
        let mut head = [0u8; 11];
        head[0] = 0x0A; // ProtoRows.serialized_rows = 1, length-delimited
        let mut n = 1;
        let mut len = self.scratch.len() as u64;
        while len >= 0x80 {
            head[n] = (len as u8) | 0x80;
            len >>= 7;
            n += 1;
        }
        head[n] = len as u8;
        buf.reserve(n + 1 + self.scratch.len());
        buf.put_slice(&head[..=n]);
        buf.put_slice(&self.scratch);
        Ok(())
    }

    /// Encodes the row's message into `self.scratch`.
    fn encode_scratch(&mut self, record: &Record) -> Result<(), RowError> {
        self.scratch.clear();
        let root = Path { parent: None, name: "" };
        encode_message(self.descriptor.root(), &mut self.slots, self.unknown, record, &mut self.scratch, &root)
    }
}

fn encode_message(
    plan: &MessagePlan,
    slots: &mut [u32],
    unknown: UnknownFields,
    record: &Record,
    buf: &mut Vec<u8>,
    path: &Path<'_>,
) -> Result<(), RowError> {
    let base = plan.slot_base;
    let n = plan.fields.len();
    slots[base..base + n].fill(ABSENT);
    for (i, (name, _)) in record.entries().iter().enumerate() {
        // Records built in schema order hit the positional guess and skip hashing.
        let idx = match plan.fields.get(i) {
            Some(f) if same_name(&f.name, name) => Some(i),
            _ => plan.lookup(name),
        };
        match idx {
            Some(idx) => {
                let slot = &mut slots[base + idx];
                if *slot != ABSENT {
                    return Err(RowError::new(
                        Path { parent: Some(path), name }.render(),
                        "the column appears twice in the record (names are case-insensitive)",
                    ));
                }
                *slot = i as u32;
            }
            None if unknown == UnknownFields::Ignore => {}
            None => {
                return Err(RowError::new(Path { parent: Some(path), name }.render(), "no such column in the table"))
            }
        }
    }
    for (idx, field) in plan.fields.iter().enumerate() {
        let slot = slots[base + idx];
        let value = if slot == ABSENT { &Value::Null } else { &record.entries()[slot as usize].1 };
        let here = Path { parent: Some(path), name: &field.name };
        encode_field(field, slots, unknown, value, buf, &here)?;
    }
    Ok(())
}

/// Column names are short: an inline byte loop beats a call to `memcmp`.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

fn encode_field(
    field: &FieldPlan,
    slots: &mut [u32],
    unknown: UnknownFields,
    value: &Value,
    buf: &mut Vec<u8>,
    path: &Path<'_>,
) -> Result<(), RowError> {
    match field.mode {
        Mode::Repeated => {
            let items: &[Value] = match value {
                Value::Null => return Ok(()),
                Value::Array(items) => items,
                other => {
                    return Err(RowError::new(
                        path.render(),
                        format!("expected an array for a REPEATED column, got {} ({})", other.kind(), other.preview()),
                    ))
                }
            };
            if items.is_empty() {
                return Ok(());
            }
            if let Some(packed_tag) = field.packed_tag {
                packed_tag.put(buf);
                let body = begin_len(buf);
                let mut bytes = Vec::new();
                for item in items {
                    check_element(item, path)?;
                    if let Some(s) = item.as_scalar() {
                        let c = coerce_scalar(s, field.field_type, &mut bytes)
                            .map_err(|e| RowError::new(path.render(), e.to_string()))?;
                        put_coerced_body(&c, &bytes, buf);
                        continue;
                    }
                    let v = coerce(item, field.field_type, path)?;
                    write_scalar_body(field.kind, &v, buf);
                }
                end_len(buf, body);
            } else {
                for item in items {
                    check_element(item, path)?;
                    encode_one(field, slots, unknown, item, buf, path)?;
                }
            }
            Ok(())
        }
        Mode::Required if value.is_null() => Err(RowError::new(path.render(), "REQUIRED column is missing or null")),
        _ if value.is_null() => Ok(()),
        _ => encode_one(field, slots, unknown, value, buf, path),
    }
}

fn check_element(item: &Value, path: &Path<'_>) -> Result<(), RowError> {
    match item {
        Value::Null => Err(RowError::new(path.render(), "arrays cannot hold NULL elements")),
        Value::Array(_) => Err(RowError::new(path.render(), "arrays cannot hold arrays")),
        _ => Ok(()),
    }
}

fn encode_one(
    field: &FieldPlan,
    slots: &mut [u32],
    unknown: UnknownFields,
    value: &Value,
    buf: &mut Vec<u8>,
    path: &Path<'_>,
) -> Result<(), RowError> {
    if let (WireKind::Message, Some(sub)) = (field.kind, field.message.as_ref()) {
        let Value::Record(record) = value else {
            return Err(RowError::new(
                path.render(),
                format!("expected RECORD, got {} ({})", value.kind(), value.preview()),
            ));
        };
        field.tag.put(buf);
        let body = begin_len(buf);
        encode_message(sub, slots, unknown, record, buf, path)?;
        end_len(buf, body);
        return Ok(());
    }
    // The common case: the value already has the column's type and needs no check.
    match (field.field_type, value) {
        (FieldType::String, Value::String(s)) => {
            field.tag.put(buf);
            put_varint(buf, s.len() as u64);
            buf.put_slice(s.as_bytes());
            return Ok(());
        }
        (FieldType::Int64, Value::Int64(i)) => {
            field.tag.put(buf);
            put_varint(buf, *i as u64);
            return Ok(());
        }
        (FieldType::Float64, Value::Float64(f)) => {
            field.tag.put(buf);
            buf.put_f64_le(*f);
            return Ok(());
        }
        (FieldType::Bool, Value::Bool(b)) => {
            field.tag.put(buf);
            buf.put_u8(u8::from(*b));
            return Ok(());
        }
        (FieldType::Timestamp, Value::Timestamp(t)) => {
            field.tag.put(buf);
            put_varint(buf, t.micros() as u64);
            return Ok(());
        }
        (FieldType::Date, Value::Date(d)) => {
            field.tag.put(buf);
            put_varint(buf, i64::from(d.days()) as u64);
            return Ok(());
        }
        (FieldType::Numeric, Value::Numeric(d)) if d.fits_numeric() => {
            field.tag.put(buf);
            put_varint(buf, d.as_str().len() as u64);
            buf.extend_from_slice(d.as_str().as_bytes());
            return Ok(());
        }
        _ => {}
    }
    // Loose values (the shapes JSON has) follow the shared rules, as the input transcoders do.
    if let Some(s) = value.as_scalar() {
        let mut bytes = Vec::new();
        let c =
            coerce_scalar(s, field.field_type, &mut bytes).map_err(|e| RowError::new(path.render(), e.to_string()))?;
        field.tag.put(buf);
        put_coerced_body(&c, &bytes, buf);
        return Ok(());
    }
    let v = coerce(value, field.field_type, path)?;
    field.tag.put(buf);
    if matches!(field.kind, WireKind::Text | WireKind::Bytes) {
        write_len_value(&v, buf);
    } else {
        write_scalar_body(field.kind, &v, buf);
    }
    Ok(())
}

#[inline]
fn coerce<'v>(value: &'v Value, ty: FieldType, path: &Path<'_>) -> Result<Cow<'v, Value>, RowError> {
    let v = value.coerce(ty).map_err(|e| RowError::new(path.render(), e.to_string()))?;
    // JSON text made by coerce() is valid by construction; text the caller supplied is checked.
    if let (Value::Json(text), Value::Json(_)) = (v.as_ref(), value) {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            return Err(RowError::new(path.render(), "expected JSON, got text that is not valid JSON"));
        }
    }
    Ok(v)
}

/// Writes a numeric value (varint or fixed64) without its key.
#[inline]
fn write_scalar_body(kind: WireKind, v: &Value, buf: &mut Vec<u8>) {
    match (kind, v) {
        (WireKind::Int64, Value::Int64(i)) => put_varint(buf, *i as u64),
        (WireKind::Int64, Value::Timestamp(t)) => put_varint(buf, t.micros() as u64),
        (WireKind::Int32, Value::Date(d)) => put_varint(buf, i64::from(d.days()) as u64),
        (WireKind::Double, Value::Float64(f)) => buf.put_f64_le(*f),
        (WireKind::Bool, Value::Bool(b)) => buf.put_u8(u8::from(*b)),
        // coerce() returned the canonical value of the column type, so no other pair occurs.
        _ => debug_assert!(false, "unexpected {kind:?} / {}", v.kind()),
    }
}

/// Writes a length-delimited value (after its key) in canonical text or bytes.
#[inline]
fn write_len_value(v: &Value, buf: &mut Vec<u8>) {
    let mut small = [0u8; 32];
    let bytes: &[u8] = match v {
        Value::String(s) | Value::Geography(s) | Value::Json(s) => s.as_bytes(),
        Value::Bytes(b) => b,
        Value::Numeric(d) | Value::BigNumeric(d) => d.as_str().as_bytes(),
        Value::Time(t) => {
            let mut out = [0u8; 15];
            let n = t.write_canonical(&mut out);
            small[..n].copy_from_slice(&out[..n]);
            &small[..n]
        }
        Value::DateTime(dt) => {
            let n = datetime_text(dt, &mut small);
            &small[..n]
        }
        _ => {
            debug_assert!(false, "unexpected {}", v.kind());
            &[]
        }
    };
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Writes a coerced value's payload (after its key, or as one element of a packed run): the
/// one place where each column type's wire form is decided for loose input. `bytes` is the
/// buffer given to `coerce_scalar` (a BYTES value, a decimal's text).
#[inline]
pub fn put_coerced_body<B: Out>(c: &Coerced<'_>, bytes: &[u8], buf: &mut B) {
    let text: &[u8] = match c {
        Coerced::Int64(i) => return put_varint(buf, *i as u64),
        Coerced::Timestamp(t) => return put_varint(buf, t.micros() as u64),
        Coerced::Date(d) => return put_varint(buf, i64::from(d.days()) as u64),
        Coerced::Float64(f) => return buf.push_slice(&f.to_le_bytes()),
        Coerced::Bool(b) => return buf.push_byte(u8::from(*b)),
        Coerced::Str(s) => s.as_bytes(),
        Coerced::Short(t) => t.as_str().as_bytes(),
        Coerced::Decimal(_) => bytes,
        Coerced::Json(s) => s.as_bytes(),
        Coerced::Bytes => bytes,
        Coerced::Time(t) => {
            let mut out = [0u8; 15];
            let n = t.write_canonical(&mut out);
            put_varint(buf, n as u64);
            return buf.push_slice(&out[..n]);
        }
        Coerced::DateTime(dt) => {
            let mut small = [0u8; 32];
            let n = datetime_text(dt, &mut small);
            put_varint(buf, n as u64);
            return buf.push_slice(&small[..n]);
        }
        // `Coerced` is non-exhaustive for users; every variant of this version is above.
        #[allow(unreachable_patterns)]
        _ => &[],
    };
    put_varint(buf, text.len() as u64);
    buf.push_slice(text);
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, the DATETIME text the Storage Write API takes.
fn datetime_text(dt: &bqsink_core::DateTime, small: &mut [u8; 32]) -> usize {
    let (y, m, d) = bqsink_core::civil::civil_from_days(dt.date.days());
    let mut w = &mut small[..];
    let _ = std::io::Write::write_fmt(&mut w, format_args!("{y:04}-{m:02}-{d:02} "));
    let mut out = [0u8; 15];
    let n = dt.time.write_canonical(&mut out);
    small[11..11 + n].copy_from_slice(&out[..n]);
    11 + n
}
