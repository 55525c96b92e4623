//! JSON text straight to row bytes: one pass over an object's bytes, each key looked up in the
//! table's plan (positional guess first), each value checked, coerced by the shared rules
//! ([`bqsink_core::coerce_scalar`]) and written as tag + payload. Keys and strings are borrowed
//! from the input; escaped ones are decoded into buffers kept between rows, so steady state
//! allocates nothing per row.
//!
//! Rows come out byte for byte as the `Record` encoder writes them (columns in schema order),
//! and refused with the same error: keys in the order they come, values in schema order.
//! Objects whose keys arrive in schema order are written in place; others are reordered once
//! at the end of the object. A JSON column takes the value's text as it is (validated, not
//! re-serialised).

use bqsink_core::{coerce_scalar, FieldType, Mode, RowError, Scalar, Value};
use bqsink_transport::wire::{begin_len, end_len, put_varint};
use bqsink_transport::{put_coerced_body, FieldPlan, MessagePlan, RowDescriptor, UnknownFields, WireKind};

pub use crate::scan::MAX_DEPTH;
use crate::scan::{key_text, same_key, unescape, KeyRef, Parsed, Parser, Syntax};

/// What became of one column's value (boxed when it failed, so the common answers stay small).
pub(crate) enum Outcome {
    Written,
    Null,
    Failed(Box<RowError>),
}

fn failed(e: RowError) -> Outcome {
    Outcome::Failed(Box::new(e))
}

#[derive(Clone, Copy)]
enum Slot {
    Absent,
    Null(KeyRef),
    Written { key: KeyRef, start: u32, end: u32 },
    Failed(KeyRef, u32),
}

impl Slot {
    fn key(&self) -> Option<KeyRef> {
        match *self {
            Slot::Absent => None,
            Slot::Null(k) | Slot::Written { key: k, .. } | Slot::Failed(k, _) => Some(k),
        }
    }
}

/// Breadcrumbs to a nested column, rendered only when an error needs them.
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'a str,
}

impl<'a> Path<'a> {
    /// A column at the top of the row.
    pub(crate) fn column(name: &'a str) -> Self {
        Path { parent: None, name }
    }
    fn render(&self) -> String {
        match self.parent {
            Some(p) if !p.name.is_empty() => format!("{}.{}", p.render(), self.name),
            _ => self.name.to_owned(),
        }
    }
    fn child<'b>(&'b self, name: &'b str) -> Path<'b> {
        Path { parent: Some(self), name }
    }
}

/// Transcodes JSON objects into rows of one table. Keeps its buffers between rows.
#[derive(Debug)]
pub struct JsonTranscoder {
    descriptor: RowDescriptor,
    unknown: UnknownFields,
    bufs: Buffers,
}

#[derive(Debug)]
pub(crate) struct Buffers {
    slots: Vec<SlotCell>,
    /// Errors of values, referred to by slots.
    errors: Vec<RowError>,
    /// Decoded string values with escapes.
    text: String,
    /// Decoded keys with escapes.
    key: String,
    /// Decoded BYTES values.
    pub(crate) bytes: Vec<u8>,
    /// A message's columns put in schema order.
    reorder: Vec<u8>,
    /// Each column's key as it usually comes (`"name"`), by slot: matched at once against the
    /// input before any key is parsed.
    quoted: Vec<Box<[u8]>>,
}

impl Buffers {
    /// Buffers for values of flat columns only (no slot table).
    pub(crate) fn scratch() -> Self {
        Buffers {
            slots: Vec::new(),
            errors: Vec::new(),
            text: String::new(),
            key: String::new(),
            bytes: Vec::new(),
            reorder: Vec::new(),
            quoted: Vec::new(),
        }
    }
}

/// `Slot` with a `Debug` that says nothing (slots are scratch space).
#[derive(Clone, Copy)]
struct SlotCell(Slot);

impl std::fmt::Debug for SlotCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("slot")
    }
}

impl JsonTranscoder {
    /// A transcoder for rows of this descriptor.
    pub fn new(descriptor: RowDescriptor) -> Self {
        let slots = vec![SlotCell(Slot::Absent); descriptor.slot_count()];
        let mut quoted = vec![Box::<[u8]>::default(); descriptor.slot_count()];
        quote_keys(descriptor.root(), &mut quoted);
        Self {
            descriptor,
            unknown: UnknownFields::default(),
            bufs: Buffers {
                slots,
                errors: Vec::new(),
                text: String::new(),
                key: String::new(),
                bytes: Vec::new(),
                reorder: Vec::with_capacity(256),
                quoted,
            },
        }
    }

    /// The same transcoder with another rule for keys that are not columns.
    pub fn with_unknown_fields(mut self, unknown: UnknownFields) -> Self {
        self.unknown = unknown;
        self
    }

    /// The rule for keys that are not columns.
    pub fn unknown_fields(&self) -> UnknownFields {
        self.unknown
    }

    /// The descriptor rows are written for.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// Appends the row message of one JSON object (`text`, already trimmed) to `out`. On error
    /// `out` is left as it was and the error names the column (empty for the row as a whole).
    pub fn transcode(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), RowError> {
        let start = out.len();
        self.bufs.errors.clear();
        let mut p = Parser { s: text, b: text.as_bytes(), i: 0 };
        let result = self.row(&mut p, out);
        let result = match result {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(Syntax(m)) => Err(RowError::new("", format!("invalid JSON: {m}"))),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn row(&mut self, p: &mut Parser<'_>, out: &mut Vec<u8>) -> Parsed<Option<RowError>> {
        p.ws();
        if p.peek() != Some(b'{') {
            let start = p.i;
            p.skip_value()?;
            p.ws();
            if p.i < p.b.len() {
                return Err(p.error("trailing characters"));
            }
            let kind = describe(&p.s[start..p.i]).0;
            return Ok(Some(RowError::new("", format!("expected a JSON object, got {kind}"))));
        }
        let root = Path { parent: None, name: "" };
        let unknown = self.unknown;
        let outcome = object(&mut self.bufs, unknown, p, self.descriptor.root(), &root, out)?;
        p.ws();
        if p.i < p.b.len() {
            return Err(p.error("trailing characters"));
        }
        Ok(outcome)
    }
}

/// Whether the input at a key's place holds the expected quoted key. Keys are short: two
/// overlapping word loads (or one byte loop below four bytes) beat a call to `memcmp`.
#[inline]
pub(crate) fn same_bytes(a: Option<&[u8]>, b: &[u8]) -> bool {
    let Some(a) = a else { return false };
    let n = b.len();
    if a.len() != n {
        return false;
    }
    let word8 = |s: &[u8], at: usize| {
        s.get(at..at + 8).map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
    };
    let word4 = |s: &[u8], at: usize| s.get(at..at + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    match n {
        0..=3 => a == b,
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

fn quote_keys(plan: &MessagePlan, out: &mut [Box<[u8]>]) {
    for (i, f) in plan.fields.iter().enumerate() {
        out[plan.slot_base + i] = format!("\"{}\"", f.name).into_bytes().into_boxed_slice();
        if let Some(sub) = &f.message {
            quote_keys(sub, out);
        }
    }
}

/// Parses one object (the cursor on `{`) into the columns of `plan`, appending the message body
/// to `out`. `Ok(Some(e))`: the object is valid JSON but cannot be written.
fn object(
    bufs: &mut Buffers,
    unknown: UnknownFields,
    p: &mut Parser<'_>,
    plan: &MessagePlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Parsed<Option<RowError>> {
    let base = plan.slot_base;
    let n = plan.fields.len();
    for s in &mut bufs.slots[base..base + n] {
        *s = SlotCell(Slot::Absent);
    }
    let msg_start = out.len();
    let mut in_order = true;
    let mut last: Option<usize> = None;
    let mut key_error: Option<RowError> = None;
    p.i += 1; // '{'
    p.ws();
    if p.eat(b'}') {
        return Ok(finish_object(bufs, plan, path, msg_start, true, None, out));
    }
    let mut member = 0usize;
    loop {
        p.ws();
        if p.peek() != Some(b'"') {
            return Err(p.error("expected a key"));
        }
        // The key the schema expects here, spelled as the column is: no parse, no lookup.
        let expected = bufs.quoted.get(base + member).filter(|_| member < n).map(|q| q.len());
        let (key, guessed) = match expected {
            Some(len) if same_bytes(p.b.get(p.i..p.i + len), &bufs.quoted[base + member]) => {
                let k = KeyRef { start: (p.i + 1) as u32, end: (p.i + len - 1) as u32, escaped: false };
                p.i += len;
                (k, Some(member))
            }
            _ => (p.string_ref()?, None),
        };
        p.ws();
        if !p.eat(b':') {
            return Err(p.error("expected `:`"));
        }
        p.ws();
        let idx = match guessed {
            Some(i) => Some(i),
            None => {
                let name = key_text(p.s, key, &mut bufs.key)?;
                match plan.fields.get(member) {
                    Some(f) if f.name == name => Some(member),
                    _ => plan.lookup(name),
                }
            }
        };
        member += 1;
        match idx {
            None => {
                if key_error.is_none() && unknown == UnknownFields::Reject {
                    let name = key_text(p.s, key, &mut bufs.key)?;
                    key_error = Some(RowError::new(path.child(name).render(), "no such column in the table"));
                }
                p.skip_value()?;
            }
            Some(_) if key_error.is_some() => p.skip_value()?,
            Some(idx) => {
                let prev = bufs.slots[base + idx].0;
                if let Some(prev_key) = prev.key() {
                    if !same_key(p.s, prev_key, key, &mut bufs.text)? {
                        let name = key_text(p.s, key, &mut bufs.key)?;
                        key_error = Some(RowError::new(
                            path.child(name).render(),
                            "the column appears twice in the record (names are case-insensitive)",
                        ));
                        p.skip_value()?;
                        continue_after_value(p)?;
                        if p.eat(b'}') {
                            break;
                        }
                        continue;
                    }
                    // The same key again: the later value wins, as in a JSON object read whole.
                    in_order = false;
                }
                if last.is_some_and(|l| idx <= l) {
                    in_order = false;
                }
                last = Some(idx);
                let field = &plan.fields[idx];
                let start = out.len();
                let here = path.child(&field.name);
                let slot = match value(bufs, unknown, p, field, &here, out)? {
                    Outcome::Written => Slot::Written { key, start: start as u32, end: out.len() as u32 },
                    Outcome::Null => Slot::Null(key),
                    Outcome::Failed(e) => {
                        out.truncate(start);
                        bufs.errors.push(*e);
                        Slot::Failed(key, (bufs.errors.len() - 1) as u32)
                    }
                };
                bufs.slots[base + idx] = SlotCell(slot);
            }
        }
        continue_after_value(p)?;
        if p.eat(b'}') {
            break;
        }
    }
    Ok(finish_object(bufs, plan, path, msg_start, in_order, key_error, out))
}

/// After a member's value: `,` (consumed) or `}` (left for the caller).
fn continue_after_value(p: &mut Parser<'_>) -> Parsed<()> {
    p.ws();
    match p.peek() {
        Some(b',') => {
            p.i += 1;
            p.ws();
            if p.peek() == Some(b'}') {
                return Err(p.error("trailing comma"));
            }
            Ok(())
        }
        Some(b'}') => Ok(()),
        _ => Err(p.error("expected `,` or `}`")),
    }
}

/// Errors in the order the `Record` encoder finds them (keys first, then columns in schema
/// order), and the columns put in schema order when they came in another.
fn finish_object(
    bufs: &mut Buffers,
    plan: &MessagePlan,
    path: &Path<'_>,
    msg_start: usize,
    in_order: bool,
    key_error: Option<RowError>,
    out: &mut Vec<u8>,
) -> Option<RowError> {
    if let Some(e) = key_error {
        return Some(e);
    }
    let base = plan.slot_base;
    for (idx, field) in plan.fields.iter().enumerate() {
        match bufs.slots[base + idx].0 {
            Slot::Failed(_, e) => {
                let e = bufs.errors.get(e as usize).cloned();
                return Some(e.unwrap_or_else(|| RowError::new(path.child(&field.name).render(), "invalid value")));
            }
            Slot::Absent | Slot::Null(_) if field.mode == Mode::Required => {
                return Some(RowError::new(path.child(&field.name).render(), "REQUIRED column is missing or null"));
            }
            _ => {}
        }
    }
    if !in_order {
        let written = bufs.slots[base..base + plan.fields.len()].iter().map(|s| match s.0 {
            Slot::Written { start, end, .. } => Some((start as usize, end as usize)),
            _ => None,
        });
        put_in_schema_order(written, msg_start, &mut bufs.reorder, out);
    }
    None
}

/// Rewrites a message written from `msg_start` with its columns in schema order: `written`
/// gives, column by column, where each written value's bytes are (`None`: not written).
pub(crate) fn put_in_schema_order(
    written: impl Iterator<Item = Option<(usize, usize)>>,
    msg_start: usize,
    reorder: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    reorder.clear();
    for (start, end) in written.flatten() {
        reorder.extend_from_slice(&out[start..end]);
    }
    out.truncate(msg_start);
    out.extend_from_slice(reorder);
}

/// One column's value (the cursor on its first byte).
fn value(
    bufs: &mut Buffers,
    unknown: UnknownFields,
    p: &mut Parser<'_>,
    field: &FieldPlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Parsed<Outcome> {
    if p.peek() == Some(b'n') {
        p.literal("null")?;
        return Ok(Outcome::Null);
    }
    if field.mode != Mode::Repeated {
        return one(bufs, unknown, p, field, path, out);
    }
    if p.peek() != Some(b'[') {
        return Ok(failed(wrong_shape(p, path, &"an array for a REPEATED column")?));
    }
    p.i += 1;
    p.ws();
    if p.eat(b']') {
        return Ok(Outcome::Null);
    }
    let start = out.len();
    let packed = field.packed_tag.map(|tag| {
        tag.put(out);
        begin_len(out)
    });
    let mut failed = None;
    loop {
        p.ws();
        if failed.is_some() {
            p.skip_value()?;
        } else {
            match p.peek() {
                Some(b'n') => {
                    p.literal("null")?;
                    failed = Some(RowError::new(path.render(), "arrays cannot hold NULL elements"));
                }
                Some(b'[') => {
                    p.skip_value()?;
                    failed = Some(RowError::new(path.render(), "arrays cannot hold arrays"));
                }
                _ if packed.is_some() => {
                    if let Err(e) = packed_element(bufs, p, field, path, out)? {
                        failed = Some(e);
                    }
                }
                _ => {
                    if let Outcome::Failed(e) = one(bufs, unknown, p, field, path, out)? {
                        failed = Some(*e);
                    }
                }
            }
        }
        p.ws();
        match p.peek() {
            Some(b',') => {
                p.i += 1;
                p.ws();
                if p.peek() == Some(b']') {
                    return Err(p.error("trailing comma"));
                }
            }
            Some(b']') => {
                p.i += 1;
                break;
            }
            _ => return Err(p.error("expected `,` or `]`")),
        }
    }
    if let Some(e) = failed {
        out.truncate(start);
        return Ok(Outcome::Failed(Box::new(e)));
    }
    if let Some(body) = packed {
        end_len(out, body);
    }
    Ok(Outcome::Written)
}

/// One element of a packed (numeric) REPEATED column, without a key.
fn packed_element(
    bufs: &mut Buffers,
    p: &mut Parser<'_>,
    field: &FieldPlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Parsed<Result<(), RowError>> {
    let Some(s) = scalar(bufs, p)? else {
        return Ok(Err(wrong_shape(p, path, &field.field_type)?));
    };
    match coerce_scalar(s.get(&bufs.text), field.field_type, &mut bufs.bytes) {
        Ok(c) => {
            put_coerced_body(&c, &bufs.bytes, out);
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(RowError::new(path.render(), e.to_string()))),
    }
}

/// One non-null value of a column (or one element of a REPEATED one), with its key.
pub(crate) fn one(
    bufs: &mut Buffers,
    unknown: UnknownFields,
    p: &mut Parser<'_>,
    field: &FieldPlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Parsed<Outcome> {
    if let (WireKind::Message, Some(sub)) = (field.kind, field.message.as_ref()) {
        if p.peek() != Some(b'{') {
            return Ok(failed(wrong_shape(p, path, &"RECORD")?));
        }
        field.tag.put(out);
        let body = begin_len(out);
        if let Some(e) = object(bufs, unknown, p, sub, path, out)? {
            return Ok(failed(e));
        }
        end_len(out, body);
        return Ok(Outcome::Written);
    }
    if field.field_type == FieldType::Json {
        // The value's own text, validated on the way.
        let start = p.i;
        p.skip_value()?;
        let raw = &p.b[start..p.i];
        field.tag.put(out);
        put_varint(out, raw.len() as u64);
        out.extend_from_slice(raw);
        return Ok(Outcome::Written);
    }
    // Values that already have the column's type: written as they are.
    match (field.field_type, p.peek()) {
        (FieldType::String, Some(b'"')) => {
            let k = p.string_ref()?;
            let text: &[u8] = if k.escaped {
                unescape(&p.s[k.start as usize..k.end as usize], &mut bufs.text)?;
                bufs.text.as_bytes()
            } else {
                &p.b[k.start as usize..k.end as usize]
            };
            field.tag.put(out);
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text);
            return Ok(Outcome::Written);
        }
        (FieldType::Int64, Some(b'-' | b'0'..=b'9')) => {
            let s = p.number()?;
            if let Scalar::Int(i) = s {
                field.tag.put(out);
                put_varint(out, i as u64);
                return Ok(Outcome::Written);
            }
            return Ok(coerce_and_write(bufs, s, field, path, out));
        }
        _ => {}
    }
    let Some(s) = scalar(bufs, p)? else {
        return Ok(failed(wrong_shape(p, path, &field.field_type)?));
    };
    match coerce_scalar(s.get(&bufs.text), field.field_type, &mut bufs.bytes) {
        Ok(c) => {
            field.tag.put(out);
            put_coerced_body(&c, &bufs.bytes, out);
            Ok(Outcome::Written)
        }
        Err(e) => Ok(failed(RowError::new(path.render(), e.to_string()))),
    }
}

/// A scalar by the shared rules, with its key.
fn coerce_and_write(
    bufs: &mut Buffers,
    s: Scalar<'_>,
    field: &FieldPlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    match coerce_scalar(s, field.field_type, &mut bufs.bytes) {
        Ok(c) => {
            field.tag.put(out);
            put_coerced_body(&c, &bufs.bytes, out);
            Outcome::Written
        }
        Err(e) => failed(RowError::new(path.render(), e.to_string())),
    }
}

/// A value of the wrong shape (skipped, its syntax checked), refused as the `Record` encoder
/// refuses it: `expected <what>, got <kind> (<value>)`.
fn wrong_shape(p: &mut Parser<'_>, path: &Path<'_>, what: &dyn std::fmt::Display) -> Parsed<RowError> {
    let start = p.i;
    p.skip_value()?;
    let (kind, preview) = describe(&p.s[start..p.i]);
    Ok(RowError::new(path.render(), format!("expected {what}, got {kind} ({preview})")))
}

/// The kind and message preview of a JSON value's text, as a `Record` would show it (only on
/// the way to an error, so it may allocate).
fn describe(raw: &str) -> (&'static str, String) {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => (v.kind(), v.preview()),
        Err(_) => ("JSON", raw.chars().take(64).collect()),
    }
}

/// A scalar read from the input: the string may live in the transcoder's text buffer.
enum Read<'a> {
    Borrowed(Scalar<'a>),
    Decoded,
}

impl<'a> Read<'a> {
    fn get<'s>(&self, text: &'s str) -> Scalar<'s>
    where
        'a: 's,
    {
        match *self {
            Read::Borrowed(s) => s,
            Read::Decoded => Scalar::Str(text),
        }
    }
}

/// Reads a string, number or bool; `None` (cursor unmoved) for an object or array.
fn scalar<'a>(bufs: &mut Buffers, p: &mut Parser<'a>) -> Parsed<Option<Read<'a>>> {
    match p.peek() {
        Some(b'"') => {
            let k = p.string_ref()?;
            if k.escaped {
                unescape(&p.s[k.start as usize..k.end as usize], &mut bufs.text)?;
                Ok(Some(Read::Decoded))
            } else {
                Ok(Some(Read::Borrowed(Scalar::Str(&p.s[k.start as usize..k.end as usize]))))
            }
        }
        Some(b't') => p.literal("true").map(|()| Some(Read::Borrowed(Scalar::Bool(true)))),
        Some(b'f') => p.literal("false").map(|()| Some(Read::Borrowed(Scalar::Bool(false)))),
        Some(b'-' | b'0'..=b'9') => p.number().map(|s| Some(Read::Borrowed(s))),
        Some(b'{' | b'[') => Ok(None),
        _ => Err(p.error("expected a value")),
    }
}
