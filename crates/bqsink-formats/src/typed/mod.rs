//! Any `serde::Serialize` value straight to row bytes: a `Serializer` that follows the table's
//! compiled plan, looks each field up as the JSON transcoder looks up a key, coerces each value
//! by the shared rules ([`bqsink_core::coerce_scalar`]) and writes tag + payload. No
//! `serde_json::Value`, no `Record`; buffers are kept between rows.
//!
//! The contract is the JSON text of the value: a row comes out byte for byte as
//! [`JsonTranscoder`] writes `serde_json::to_string(&value)`, and is refused when that is
//! refused, with the same error. The fast path writes what it can be sure of; anything else (a
//! value that does not fit its column, an unknown field, a missing REQUIRED column, shapes
//! rows rarely have) hands the row to the transcoder through its JSON text, which decides. So a
//! refusal costs a JSON rendering, and the refusal's text is the dead letter's payload.

use std::fmt::{self, Display, Write as _};

use bqsink_core::{coerce_scalar, FieldType, Mode, RowError, Scalar};
use bqsink_transport::wire::{begin_len, end_len, put_varint, Tag};
use bqsink_transport::{put_coerced_body, FieldPlan, MessagePlan, RowDescriptor, UnknownFields, WireKind};
use serde::ser::{self, Impossible, Serialize};

use crate::batch::{Batch, Batches, Cut};
use crate::json::{put_in_schema_order, JsonTranscoder};
use crate::scan::{Parser, MAX_DEPTH};

/// The fast path gives up on a row; its JSON text decides.
#[derive(Debug)]
struct Bail;

impl Display for Bail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("written through its JSON text")
    }
}

impl std::error::Error for Bail {}

impl ser::Error for Bail {
    fn custom<T: Display>(_: T) -> Self {
        Bail
    }
}

type Done<T> = Result<T, Bail>;

/// What became of one value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Null,
}

/// One column of the message being written. `exact`: its key was spelled as the column is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Absent,
    Null { exact: bool },
    Written { start: usize, end: usize, exact: bool },
}

/// Buffers kept between rows.
#[derive(Debug)]
struct Scratch {
    slots: Vec<Slot>,
    /// The buffer `coerce_scalar` writes decoded bytes and decimal text into.
    bytes: Vec<u8>,
    /// Text of a value given as `Display` (`collect_str`).
    text: String,
    /// A map key.
    key: String,
    /// A message's columns put in schema order.
    reorder: Vec<u8>,
    /// The JSON text of an ignored field, checked as the transcoder checks what it skips.
    skipped: Vec<u8>,
    unknown: UnknownFields,
}

/// Writes `Serialize` values as rows of one table (see the module docs). Keeps its buffers
/// between rows.
#[derive(Debug)]
pub struct TypedEncoder {
    descriptor: RowDescriptor,
    scratch: Scratch,
    /// Rows the fast path gives up on go through their JSON text (made on first need).
    fallback: Option<JsonTranscoder>,
    /// Bytes of the last batch, to size the next one.
    last_batch_bytes: usize,
}

/// A refused row: why, and its JSON text (empty when it has none).
struct Refusal {
    error: RowError,
    text: String,
}

impl TypedEncoder {
    /// An encoder for rows of this descriptor, refusing fields that are not columns.
    pub fn new(descriptor: RowDescriptor) -> Self {
        let slots = vec![Slot::Absent; descriptor.slot_count()];
        Self {
            descriptor,
            scratch: Scratch {
                slots,
                bytes: Vec::new(),
                text: String::new(),
                key: String::new(),
                reorder: Vec::with_capacity(256),
                skipped: Vec::new(),
                unknown: UnknownFields::default(),
            },
            fallback: None,
            last_batch_bytes: 0,
        }
    }

    /// The same encoder with another rule for fields that are not columns.
    pub fn with_unknown_fields(mut self, unknown: UnknownFields) -> Self {
        self.scratch.unknown = unknown;
        self.fallback = None;
        self
    }

    /// The rule for fields that are not columns.
    pub fn unknown_fields(&self) -> UnknownFields {
        self.scratch.unknown
    }

    /// The descriptor rows are written for.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// Appends the row message of `row` to `out`. On error `out` is left as it was and the
    /// error names the column, as the JSON transcoder names it for the row's JSON text.
    pub fn encode<T: Serialize + ?Sized>(&mut self, row: &T, out: &mut Vec<u8>) -> Result<(), RowError> {
        let start = out.len();
        if self.fast(row, out).is_ok() {
            return Ok(());
        }
        out.truncate(start);
        self.through_json(row, out).map_err(|r| r.error)
    }

    /// Takes up to `cut.max_rows` rows from `rows` into batches (usually one; a row that
    /// overflows the byte cut starts another), numbering them from `first_position`. Refused
    /// rows are kept in the batches with their JSON text. No batch: `rows` had no more.
    pub fn encode_batches<T: Serialize, I: Iterator<Item = T>>(
        &mut self,
        rows: &mut I,
        first_position: u64,
        cut: Cut,
    ) -> Vec<Batch> {
        let room = if self.last_batch_bytes == 0 { cut.max_rows.saturating_mul(128) } else { self.last_batch_bytes };
        let mut batches = Batches::new(&self.descriptor, cut, room);
        let last = first_position + cut.max_rows.max(1) as u64;
        for position in first_position..last {
            let Some(row) = rows.next() else { break };
            if batches.write_row(position, |out| self.fast(&row, out)).is_err() {
                let mut refusal = None;
                let _ = batches.write_row(position, |out| self.through_json(&row, out).map_err(|r| refusal = Some(r)));
                if let Some(r) = refusal {
                    batches.refuse(position, r.error, r.text);
                }
            }
        }
        let done = batches.finish();
        if let Some(last) = done.last() {
            self.last_batch_bytes = last.rows.len() + last.rows.len() / 8;
        }
        done
    }

    /// The fast path: the row written, or `Bail` (with `out` holding junk past its start).
    fn fast<T: Serialize + ?Sized>(&mut self, row: &T, out: &mut Vec<u8>) -> Done<()> {
        let target = Target::Row(self.descriptor.root());
        row.serialize(ValueSer { st: &mut self.scratch, out, target }).map(|_| ())
    }

    /// The row through its JSON text and the transcoder: the rule the fast path follows.
    fn through_json<T: Serialize + ?Sized>(&mut self, row: &T, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let text = serde_json::to_string(row)
            .map_err(|e| Refusal { error: RowError::new("", format!("cannot serialise: {e}")), text: String::new() })?;
        let unknown = self.scratch.unknown;
        let descriptor = &self.descriptor;
        let transcoder =
            self.fallback.get_or_insert_with(|| JsonTranscoder::new(descriptor.clone()).with_unknown_fields(unknown));
        transcoder.transcode(&text, out).map_err(|error| Refusal { error, text })
    }
}

/// Where a value goes.
#[derive(Clone, Copy)]
enum Target<'p> {
    /// The row itself: it must be a struct or a map.
    Row(&'p MessagePlan),
    /// A column's value (an array for a REPEATED column).
    Column(&'p FieldPlan),
    /// One element of a REPEATED column; `packed`: written without its key.
    Element(&'p FieldPlan, bool),
}

/// Serialises one value into its target.
struct ValueSer<'a> {
    st: &'a mut Scratch,
    out: &'a mut Vec<u8>,
    target: Target<'a>,
}

impl<'a> ValueSer<'a> {
    fn scalar(&mut self, s: Scalar<'_>) -> Done<Outcome> {
        let (field, tagged) = match self.target {
            Target::Column(f) if f.mode != Mode::Repeated => (f, true),
            Target::Element(f, packed) => (f, !packed),
            _ => return Err(Bail),
        };
        if field.kind == WireKind::Message {
            return Err(Bail);
        }
        let tag = tagged.then_some(field.tag);
        match (field.field_type, s) {
            // Values that already have the column's type: written as they are.
            (FieldType::String, Scalar::Str(v)) => {
                put_tag(tag, self.out);
                put_varint(self.out, v.len() as u64);
                self.out.extend_from_slice(v.as_bytes());
            }
            (FieldType::Int64, Scalar::Int(i)) => {
                put_tag(tag, self.out);
                put_varint(self.out, i as u64);
            }
            _ => {
                let c = coerce_scalar(s, field.field_type, &mut self.st.bytes).map_err(|_| Bail)?;
                put_tag(tag, self.out);
                put_coerced_body(&c, &self.st.bytes, self.out);
            }
        }
        Ok(Outcome::Written)
    }

    fn null(&self) -> Done<Outcome> {
        match self.target {
            Target::Column(_) => Ok(Outcome::Null),
            // A row that is null, an array that holds a null: refused.
            _ => Err(Bail),
        }
    }

    /// A struct or a map: the row, or a RECORD value (its key and length written here).
    fn message(self) -> Done<MessageSer<'a>> {
        let (plan, field) = match self.target {
            Target::Row(plan) => (plan, None),
            Target::Column(f) if f.mode != Mode::Repeated => (record_plan(f)?, Some(f)),
            Target::Element(f, _) => (record_plan(f)?, Some(f)),
            _ => return Err(Bail),
        };
        let body = field.map(|f| {
            f.tag.put(self.out);
            begin_len(self.out)
        });
        Ok(MessageSer::new(self.st, plan, self.out, body))
    }

    /// A sequence: the value of a REPEATED column.
    fn seq(self) -> Done<SeqSer<'a>> {
        match self.target {
            Target::Column(field) if field.mode == Mode::Repeated => {
                let start = self.out.len();
                let packed = field.packed_tag.map(|tag| {
                    tag.put(self.out);
                    begin_len(self.out)
                });
                Ok(SeqSer { st: self.st, out: self.out, field, start, packed, count: 0 })
            }
            _ => Err(Bail),
        }
    }

    fn decimal_text(&mut self, text: fmt::Arguments<'_>) -> Done<Outcome> {
        let mut buf = StackText::default();
        buf.write_fmt(text).map_err(|_| Bail)?;
        self.scalar(Scalar::Decimal(buf.as_str()))
    }

    /// An integer as the JSON reader classifies its text: within INT64, up to 2^64 − 1 as an
    /// exact decimal, beyond as a float.
    fn wide_int(&mut self, v: i128) -> Done<Outcome> {
        if let Ok(i) = i64::try_from(v) {
            self.scalar(Scalar::Int(i))
        } else if let Ok(u) = u64::try_from(v) {
            self.decimal_text(format_args!("{u}"))
        } else {
            self.scalar(Scalar::Float(v as f64))
        }
    }
}

fn put_tag(tag: Option<Tag>, out: &mut Vec<u8>) {
    if let Some(t) = tag {
        t.put(out);
    }
}

fn record_plan(f: &FieldPlan) -> Done<&MessagePlan> {
    match (f.kind, f.message.as_ref()) {
        (WireKind::Message, Some(sub)) => Ok(sub),
        _ => Err(Bail),
    }
}

/// Types serde_json gives a meaning of its own (raw JSON text, arbitrary-precision numbers).
fn serde_json_private(name: &str) -> bool {
    name.starts_with("$serde_json")
}

/// Up to 64 bytes of text on the stack (numbers written for the coercion rules).
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self { buf: [0; 64], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a JSON column's value as its JSON text (what the transcoder takes as it is), after
/// `tag` and a length; says the text's first byte, or `None` (nothing written) for `null`.
fn json_value<T: Serialize + ?Sized>(value: &T, tag: Tag, out: &mut Vec<u8>) -> Done<Option<u8>> {
    let start = out.len();
    tag.put(out);
    let body = begin_len(out);
    serde_json::to_writer(&mut *out, value).map_err(|_| Bail)?;
    check_json(&out[body..])?;
    let first = out.get(body).copied();
    if first == Some(b'n') {
        out.truncate(start);
        return Ok(None);
    }
    end_len(out, body);
    Ok(first)
}

/// Checks JSON text as the transcoder checks a value it skips or takes whole (nesting depth);
/// text too short to nest that deep needs no look.
fn check_json(text: &[u8]) -> Done<()> {
    if text.len() <= MAX_DEPTH {
        return Ok(());
    }
    let s = std::str::from_utf8(text).map_err(|_| Bail)?;
    let mut p = Parser { s, b: text, i: 0 };
    p.skip_value().map_err(|_| Bail)?;
    Ok(())
}

impl<'a> ser::Serializer for ValueSer<'a> {
    type Ok = Outcome;
    type Error = Bail;
    type SerializeSeq = SeqSer<'a>;
    type SerializeTuple = SeqSer<'a>;
    type SerializeTupleStruct = SeqSer<'a>;
    type SerializeTupleVariant = Impossible<Outcome, Bail>;
    type SerializeMap = MessageSer<'a>;
    type SerializeStruct = MessageSer<'a>;
    type SerializeStructVariant = Impossible<Outcome, Bail>;

    fn serialize_bool(mut self, v: bool) -> Done<Outcome> {
        self.scalar(Scalar::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(mut self, v: i64) -> Done<Outcome> {
        self.scalar(Scalar::Int(v))
    }
    fn serialize_i128(mut self, v: i128) -> Done<Outcome> {
        self.wide_int(v)
    }
    fn serialize_u8(self, v: u8) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Done<Outcome> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_u64(mut self, v: u64) -> Done<Outcome> {
        self.wide_int(i128::from(v))
    }
    fn serialize_u128(mut self, v: u128) -> Done<Outcome> {
        match i128::try_from(v) {
            Ok(i) => self.wide_int(i),
            Err(_) => self.scalar(Scalar::Float(v as f64)),
        }
    }
    fn serialize_f32(mut self, v: f32) -> Done<Outcome> {
        if !v.is_finite() {
            // serde_json writes `null`.
            return self.null();
        }
        // JSON carries the f32's shortest decimal text, read back as an f64.
        let mut text = StackText::default();
        write!(text, "{v}").map_err(|_| Bail)?;
        let f = text.as_str().parse::<f64>().map_err(|_| Bail)?;
        self.scalar(Scalar::Float(f))
    }
    fn serialize_f64(mut self, v: f64) -> Done<Outcome> {
        if !v.is_finite() {
            return self.null();
        }
        self.scalar(Scalar::Float(v))
    }
    fn serialize_char(mut self, v: char) -> Done<Outcome> {
        let mut b = [0u8; 4];
        self.scalar(Scalar::Str(v.encode_utf8(&mut b)))
    }
    fn serialize_str(mut self, v: &str) -> Done<Outcome> {
        self.scalar(Scalar::Str(v))
    }
    fn serialize_bytes(self, _: &[u8]) -> Done<Outcome> {
        // serde_json writes an array of numbers: rare in rows, left to the transcoder.
        Err(Bail)
    }
    fn serialize_none(self) -> Done<Outcome> {
        self.null()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done<Outcome> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done<Outcome> {
        self.null()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done<Outcome> {
        self.null()
    }
    fn serialize_unit_variant(mut self, _: &'static str, _: u32, variant: &'static str) -> Done<Outcome> {
        self.scalar(Scalar::Str(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Done<Outcome> {
        if serde_json_private(name) {
            return Err(Bail);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Done<Outcome> {
        // `{"Variant": value}`.
        let mut m = self.message()?;
        m.entry(variant, value)?;
        m.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Done<SeqSer<'a>> {
        self.seq()
    }
    fn serialize_tuple(self, _: usize) -> Done<SeqSer<'a>> {
        self.seq()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Done<SeqSer<'a>> {
        self.seq()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Done<Self::SerializeTupleVariant> {
        Err(Bail)
    }
    fn serialize_map(self, _: Option<usize>) -> Done<MessageSer<'a>> {
        self.message()
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Done<MessageSer<'a>> {
        if serde_json_private(name) {
            return Err(Bail);
        }
        self.message()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Done<Self::SerializeStructVariant> {
        Err(Bail)
    }
    fn collect_str<T: Display + ?Sized>(mut self, value: &T) -> Done<Outcome> {
        let mut text = std::mem::take(&mut self.st.text);
        text.clear();
        let written = write!(text, "{value}").map_err(|_| Bail);
        let result = written.and_then(|()| self.scalar(Scalar::Str(&text)));
        self.st.text = text;
        result
    }
}

mod compound;
use compound::{MessageSer, SeqSer};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bqsink_core::{Field, Schema};
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Plan {
        Free,
        Pro,
    }

    #[derive(Serialize)]
    struct Address<'a> {
        city: &'a str,
        zip: Option<u32>,
    }

    #[derive(Serialize)]
    struct Row<'a> {
        id: u64,
        name: String,
        plan: Plan,
        at: &'a str,
        score: Option<f64>,
        address: Address<'a>,
        tags: Vec<&'a str>,
        counts: [i32; 3],
        attrs: BTreeMap<&'a str, i64>,
        props: BTreeMap<&'a str, Vec<u8>>,
    }

    fn descriptor() -> RowDescriptor {
        let schema = Schema::new(vec![
            Field::new("id", FieldType::Int64).required(),
            Field::new("name", FieldType::String),
            Field::new("plan", FieldType::String),
            Field::new("at", FieldType::Timestamp),
            Field::new("score", FieldType::Float64),
            Field::record(
                "address",
                vec![Field::new("city", FieldType::String).required(), Field::new("zip", FieldType::Int64)],
            ),
            Field::new("tags", FieldType::String).repeated(),
            Field::new("counts", FieldType::Int64).repeated(),
            Field::record("attrs", vec![Field::new("a", FieldType::Int64), Field::new("b", FieldType::Numeric)]),
            Field::new("props", FieldType::Json),
        ]);
        match RowDescriptor::new(&schema) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn row(i: u64) -> Row<'static> {
        Row {
            id: i,
            name: format!("caf\u{e9} \"{i}\""),
            plan: if i & 1 == 0 { Plan::Free } else { Plan::Pro },
            at: "2024-05-01T12:00:00Z",
            score: matches!(i % 3, 1 | 2).then_some(i as f64 / 4.0),
            address: Address { city: "Oslo", zip: None },
            tags: vec!["a", "b"],
            counts: [1, -2, 3],
            attrs: [("b", 5), ("a", 6)].into_iter().collect(),
            props: [("k", vec![1, 2])].into_iter().collect(),
        }
    }

    /// Typical rows never leave the fast path, and come out as their JSON text transcoded.
    #[test]
    fn typical_rows_take_the_fast_path() {
        let mut enc = TypedEncoder::new(descriptor());
        let mut json = JsonTranscoder::new(descriptor());
        for i in 0..6 {
            let r = row(i);
            let mut fast = Vec::new();
            assert!(enc.fast(&r, &mut fast).is_ok(), "row {i} left the fast path");
            let mut want = Vec::new();
            let text = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(json.transcode(&text, &mut want), Ok(()));
            assert_eq!(fast, want, "row {i}: {text}");
        }
    }

    /// A refusal names the column as the JSON path does, and an unknown field can be ignored.
    #[test]
    fn refusals_and_unknown_fields() {
        #[derive(Serialize)]
        struct Bad {
            id: &'static str,
            extra: bool,
        }
        let mut out = Vec::new();
        let mut enc = TypedEncoder::new(descriptor());
        let e = enc.encode(&Bad { id: "seven", extra: true }, &mut out).err();
        assert_eq!(
            e.map(|e| (e.column, e.message)),
            Some(("extra".to_owned(), "no such column in the table".to_owned()))
        );
        let mut enc = TypedEncoder::new(descriptor()).with_unknown_fields(UnknownFields::Ignore);
        let e = enc.encode(&Bad { id: "seven", extra: true }, &mut out).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("id: expected INT64, got STRING (\"seven\"): not an integer in the INT64 range"));
        assert!(out.is_empty());
    }
}
