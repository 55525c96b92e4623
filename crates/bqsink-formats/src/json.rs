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

/// Bytes that end a run of plain string bytes: the quote, the backslash, control characters.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The high bit of each byte of `w` that is a quote, a backslash or a control character (exact
/// for the lowest such byte, which is all the caller uses).
#[inline]
fn stops_in(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (LO * u64::from(b'"'));
    let backslash = w ^ (LO * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(LO) & !quote;
    let zero_backslash = backslash.wrapping_sub(LO) & !backslash;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (zero_quote | zero_backslash | control) & HI
}

/// Deepest nesting of arrays and objects read (as serde_json's default limit).
pub const MAX_DEPTH: usize = 128;

/// The input is not JSON: the whole row is refused with this.
#[derive(Debug)]
struct Syntax(String);

type Parsed<T> = Result<T, Syntax>;

/// What became of one column's value (boxed when it failed, so the common answers stay small).
enum Outcome {
    Written,
    Null,
    Failed(Box<RowError>),
}

fn failed(e: RowError) -> Outcome {
    Outcome::Failed(Box::new(e))
}

/// Where a key sits in the row text (decoded again only when it held escapes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct KeyRef {
    start: u32,
    end: u32,
    escaped: bool,
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
struct Buffers {
    slots: Vec<SlotCell>,
    /// Errors of values, referred to by slots.
    errors: Vec<RowError>,
    /// Decoded string values with escapes.
    text: String,
    /// Decoded keys with escapes.
    key: String,
    /// Decoded BYTES values.
    bytes: Vec<u8>,
    /// A message's columns put in schema order.
    reorder: Vec<u8>,
    /// Each column's key as it usually comes (`"name"`), by slot: matched at once against the
    /// input before any key is parsed.
    quoted: Vec<Box<[u8]>>,
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

/// Short keys: an inline byte loop beats a call to `memcmp`.
#[inline]
fn same_bytes(a: Option<&[u8]>, b: &[u8]) -> bool {
    a.is_some_and(|a| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y))
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
        bufs.reorder.clear();
        for idx in 0..plan.fields.len() {
            if let Slot::Written { start, end, .. } = bufs.slots[base + idx].0 {
                bufs.reorder.extend_from_slice(&out[start as usize..end as usize]);
            }
        }
        out.truncate(msg_start);
        out.extend_from_slice(&bufs.reorder);
    }
    None
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
        let start = p.i;
        p.skip_value()?;
        let (kind, preview) = describe(&p.s[start..p.i]);
        return Ok(failed(RowError::new(
            path.render(),
            format!("expected an array for a REPEATED column, got {kind} ({preview})"),
        )));
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
        return Ok(Err(mismatch_raw(p, field, path)?));
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
fn one(
    bufs: &mut Buffers,
    unknown: UnknownFields,
    p: &mut Parser<'_>,
    field: &FieldPlan,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Parsed<Outcome> {
    if let (WireKind::Message, Some(sub)) = (field.kind, field.message.as_ref()) {
        if p.peek() != Some(b'{') {
            let start = p.i;
            p.skip_value()?;
            let (kind, preview) = describe(&p.s[start..p.i]);
            return Ok(failed(RowError::new(path.render(), format!("expected RECORD, got {kind} ({preview})"))));
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
        return Ok(failed(mismatch_raw(p, field, path)?));
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

/// An object or array where a scalar column's value was expected: refused as the `Record`
/// encoder refuses a RECORD or an ARRAY value there.
fn mismatch_raw(p: &mut Parser<'_>, field: &FieldPlan, path: &Path<'_>) -> Parsed<RowError> {
    let start = p.i;
    p.skip_value()?;
    let (kind, preview) = describe(&p.s[start..p.i]);
    Ok(RowError::new(path.render(), format!("expected {}, got {kind} ({preview})", field.field_type)))
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

/// The text of a key, decoded into `buf` when it held escapes.
fn key_text<'a>(s: &'a str, k: KeyRef, buf: &'a mut String) -> Parsed<&'a str> {
    let raw = &s[k.start as usize..k.end as usize];
    if k.escaped {
        unescape(raw, buf)?;
        Ok(buf.as_str())
    } else {
        Ok(raw)
    }
}

/// Whether two keys are the same text once decoded.
fn same_key(s: &str, a: KeyRef, b: KeyRef, tmp: &mut String) -> Parsed<bool> {
    let (ra, rb) = (&s[a.start as usize..a.end as usize], &s[b.start as usize..b.end as usize]);
    if !a.escaped && !b.escaped {
        return Ok(ra == rb);
    }
    let mut other = String::new();
    unescape(ra, tmp)?;
    unescape(rb, &mut other)?;
    Ok(*tmp == other)
}

/// Decodes the body of a JSON string (between its quotes) into `out`.
fn unescape(raw: &str, out: &mut String) -> Parsed<()> {
    out.clear();
    let b = raw.as_bytes();
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[run..i]);
        let esc = *b.get(i + 1).ok_or_else(|| Syntax("unfinished escape".into()))?;
        i += 2;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(b, i)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                        return Err(Syntax("lone leading surrogate in hex escape".into()));
                    }
                    let lo = hex4(b, i + 2)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Syntax("lone leading surrogate in hex escape".into()));
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    char::from_u32(hi)
                };
                out.push(c.ok_or_else(|| Syntax("invalid unicode code point".into()))?);
            }
            _ => return Err(Syntax("invalid escape".into())),
        }
        run = i;
    }
    out.push_str(&raw[run..]);
    Ok(())
}

fn hex4(b: &[u8], at: usize) -> Parsed<u32> {
    let digits = b.get(at..at + 4).ok_or_else(|| Syntax("unfinished \\u escape".into()))?;
    let mut v = 0u32;
    for d in digits {
        let x = (*d as char).to_digit(16).ok_or_else(|| Syntax("invalid \\u escape".into()))?;
        v = v * 16 + x;
    }
    Ok(v)
}

/// A cursor over one row's text.
struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn error(&self, what: &str) -> Syntax {
        match self.peek() {
            Some(_) => Syntax(format!("{what} at column {}", self.i + 1)),
            None => Syntax(format!("{what} at the end of the line")),
        }
    }

    fn literal(&mut self, word: &str) -> Parsed<()> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A string (cursor on its opening quote): where its body is and whether it has escapes.
    #[inline]
    fn string_ref(&mut self) -> Parsed<KeyRef> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            // One pass, byte by byte: strings are short, and a table lookup beats a search
            // call's setup for them.
            let b = self.b;
            let mut i = self.i;
            // Eight bytes at a time while none of them ends the run, then byte by byte.
            while let Some(word) = b.get(i..i + 8) {
                let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
                let m = stops_in(w);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while i < b.len() && !STOP[usize::from(b[i])] {
                i += 1;
            }
            self.i = i;
            match b.get(i) {
                None => return Err(Syntax("unterminated string".into())),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(KeyRef { start: start as u32, end: i as u32, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    // Skip the backslash and the escaped byte (a `\u` escape's digits are
                    // checked when the string is decoded; here they are plain bytes).
                    if i + 1 >= b.len() {
                        return Err(Syntax("unterminated string".into()));
                    }
                    self.i += 2;
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// A number, classified as a JSON reader does: integers within INT64 as `Int`, larger ones
    /// up to 2^64 − 1 as `Decimal`, the rest as `Float`.
    fn number(&mut self) -> Parsed<Scalar<'a>> {
        let start = self.i;
        let negative = self.eat(b'-');
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
            }
            _ => return Err(self.error("invalid number")),
        }
        let int_end = self.i;
        let mut is_float = false;
        if self.eat(b'.') {
            is_float = true;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            is_float = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        let text = &self.s[start..self.i];
        if !is_float {
            let digits = &self.b[int_start..int_end];
            let mut mag: u64 = 0;
            let mut fits = true;
            for d in digits {
                match mag.checked_mul(10).and_then(|m| m.checked_add(u64::from(d - b'0'))) {
                    Some(m) => mag = m,
                    None => {
                        fits = false;
                        break;
                    }
                }
            }
            if fits {
                if !negative {
                    return Ok(if mag <= i64::MAX as u64 { Scalar::Int(mag as i64) } else { Scalar::Decimal(text) });
                }
                if mag == 0 {
                    return Ok(Scalar::Float(-0.0));
                }
                if mag <= 1u64 << 63 {
                    return Ok(Scalar::Int((mag as i64).wrapping_neg()));
                }
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Scalar::Float(f)),
            _ => Err(Syntax(format!("number out of range at column {}", start + 1))),
        }
    }

    /// Skips one value of any kind, checking its syntax, without recursion.
    fn skip_value(&mut self) -> Parsed<()> {
        // Open containers, innermost last: true for an object.
        let mut stack = [false; MAX_DEPTH];
        let mut depth = 0usize;
        loop {
            self.ws();
            // A value.
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let is_object = self.peek() == Some(b'{');
                    if depth == MAX_DEPTH {
                        return Err(self.error("nesting deeper than 128 levels"));
                    }
                    stack[depth] = is_object;
                    depth += 1;
                    self.i += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.eat(close) {
                        depth -= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    let k = self.string_ref()?;
                    if k.escaped {
                        let mut tmp = String::new();
                        unescape(&self.s[k.start as usize..k.end as usize], &mut tmp)?;
                    }
                }
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                _ => return Err(self.error("expected a value")),
            }
            // After a value: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let is_object = stack[depth - 1];
                let close = if is_object { b'}' } else { b']' };
                if self.eat(b',') {
                    self.ws();
                    if is_object {
                        self.member_key()?;
                    }
                    break;
                }
                if self.eat(close) {
                    depth -= 1;
                    continue;
                }
                return Err(self.error(if is_object { "expected `,` or `}`" } else { "expected `,` or `]`" }));
            }
        }
    }

    /// `"key":` inside an object being skipped.
    fn member_key(&mut self) -> Parsed<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key"));
        }
        let k = self.string_ref()?;
        if k.escaped {
            let mut tmp = String::new();
            unescape(&self.s[k.start as usize..k.end as usize], &mut tmp)?;
        }
        self.ws();
        if !self.eat(b':') {
            return Err(self.error("expected `:`"));
        }
        Ok(())
    }
}
