//! Segment payloads (one per NDJSON line, or a `{"batch": [...]}` envelope) straight to the row
//! bytes of Segment's warehouse tables ([`SegmentTranscoder`]), and the column types a file's
//! payloads call for, without building a row ([`SegmentScanner`]).
//!
//! The layout is `bqsink_schema::segment`'s — which tables, the reserved columns, flattening and
//! naming, the corrected `timestamp` — and this module follows it through the functions that
//! define it. Object keys are visited in sorted order, as the `Record` path (a JSON object read
//! into a sorted map) visits them, so columns are planned in the same order and the same key
//! wins when one repeats.
//!
//! A line outside the common shape — a message without `messageId`, keys with escapes, two keys
//! that make one column, a value its column cannot take, a column the table lacks, a line that
//! is not a payload — is handed back whole ([`Piece::Line`]) for the `Record` path
//! (`bqsink_schema::rows_from_line` and the dataset writer), which refuses, dead-letters or
//! evolves as it always has. The fast path never decides a row the other path would decide
//! differently; it only skips building the row.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use bqsink_core::{coerce_scalar, Coerced, FieldType, Mode, Scalar, Timestamp, Value};
use bqsink_schema::infer::{flattened_key, scalar_type, scalar_type_of, string_type};
use bqsink_schema::naming::sanitize_column_name;
use bqsink_schema::segment::{corrected_timestamp, event_table_name, is_reserved_column, Call};
use bqsink_schema::{InferMode, SchemaInference, SegmentOptions};
use bqsink_transport::wire::put_varint;
use bqsink_transport::{put_coerced_body, FieldPlan, RowDescriptor, UnknownFields, WireKind};

use crate::batch::{Batch, Batches, Cut};
use crate::json::{one, same_bytes, Buffers, Outcome, Path};
use crate::ndjson::{lines, NOT_UTF8};
use crate::scan::{unescape, KeyRef, Parser};

/// Nesting of `context`, `properties` and `traits` followed on the fast path; deeper objects
/// go the `Record` way.
const MAX_FLATTEN_DEPTH: usize = 32;

/// Distinct flattened keys remembered before the caches start over.
const MAX_CACHED_COLUMNS: usize = 100_000;

/// The line leaves the fast path.
struct Slow;
type Fast<T> = Result<T, Slow>;

fn slow<T>(_: T) -> Slow {
    Slow
}

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    end: u32,
}

/// Text of the line, or decoded into the line's arena.
#[derive(Clone, Copy, Debug)]
enum Text {
    Input(Span),
    Arena(Span),
}

// The members of a message Segment reads.
const TYPE: usize = 0;
const EVENT: usize = 1;
const MESSAGE_ID: usize = 2;
const USER_ID: usize = 3;
const ANONYMOUS_ID: usize = 4;
const RECEIVED_AT: usize = 5;
const SENT_AT: usize = 6;
const ORIGINAL_TIMESTAMP: usize = 7;
const TIMESTAMP: usize = 8;
const CONTEXT: usize = 9;
const PROPERTIES: usize = 10;
const TRAITS: usize = 11;
const NAME: usize = 12;
const CATEGORY: usize = 13;
const GROUP_ID: usize = 14;
const PREVIOUS_ID: usize = 15;
const BATCH: usize = 16;
/// A key Segment does not read, in a shape.
const OTHER_KEY: u8 = u8::MAX;
const QUOTED_KEYS: [&[u8]; 17] = [
    b"\"type\"",
    b"\"event\"",
    b"\"messageId\"",
    b"\"userId\"",
    b"\"anonymousId\"",
    b"\"receivedAt\"",
    b"\"sentAt\"",
    b"\"originalTimestamp\"",
    b"\"timestamp\"",
    b"\"context\"",
    b"\"properties\"",
    b"\"traits\"",
    b"\"name\"",
    b"\"category\"",
    b"\"groupId\"",
    b"\"previousId\"",
    b"\"batch\"",
];
const KEYS: [&[u8]; 17] = [
    b"type",
    b"event",
    b"messageId",
    b"userId",
    b"anonymousId",
    b"receivedAt",
    b"sentAt",
    b"originalTimestamp",
    b"timestamp",
    b"context",
    b"properties",
    b"traits",
    b"name",
    b"category",
    b"groupId",
    b"previousId",
    b"batch",
];

/// A member's value, and a string's body as it was read.
#[derive(Clone, Copy, Debug)]
struct Val {
    span: Span,
    body: Option<KeyRef>,
}

/// Each member's value (the last one of a repeated key; `null` is absent), and the leaves of
/// `context`, `properties` and `traits` when they are objects (flattened as they are read).
#[derive(Clone, Copy, Debug, Default)]
struct Members {
    spans: [Option<Val>; KEYS.len()],
    flat: [Option<(u32, u32)>; 3],
}

impl Members {
    /// The leaves of an object member (`CONTEXT`, `PROPERTIES` or `TRAITS`): none when absent;
    /// `Slow` when it is not an object.
    fn leaves(&self, k: usize) -> Fast<(u32, u32)> {
        match (self.spans[k], self.flat[k - CONTEXT]) {
            (None, _) => Ok((0, 0)),
            (Some(_), Some(range)) => Ok(range),
            (Some(_), None) => Err(Slow),
        }
    }
}

/// The fixed columns a row may carry, by position in [`FIXED`].
const F_ID: usize = 0;
const F_ANONYMOUS_ID: usize = 1;
const F_USER_ID: usize = 2;
const F_RECEIVED_AT: usize = 3;
const F_SENT_AT: usize = 4;
const F_ORIGINAL_TIMESTAMP: usize = 5;
const F_TIMESTAMP: usize = 6;
const F_UUID_TS: usize = 7;
const F_LOADED_AT: usize = 8;
const F_EVENT: usize = 9;
const F_EVENT_TEXT: usize = 10;
const F_NAME: usize = 11;
const F_CATEGORY: usize = 12;
const F_GROUP_ID: usize = 13;
const F_PREVIOUS_ID: usize = 14;
const FIXED: [(&str, FieldType); 15] = [
    ("id", FieldType::String),
    ("anonymous_id", FieldType::String),
    ("user_id", FieldType::String),
    ("received_at", FieldType::Timestamp),
    ("sent_at", FieldType::Timestamp),
    ("original_timestamp", FieldType::Timestamp),
    ("timestamp", FieldType::Timestamp),
    ("uuid_ts", FieldType::Timestamp),
    ("loaded_at", FieldType::Timestamp),
    ("event", FieldType::String),
    ("event_text", FieldType::String),
    ("name", FieldType::String),
    ("category", FieldType::String),
    ("group_id", FieldType::String),
    ("previous_id", FieldType::String),
];

/// A fixed column's value in one row.
#[derive(Clone, Copy, Debug)]
enum Fixed {
    Text(Option<Text>),
    Time(Option<Timestamp>),
    /// The event's table name (a track's `event` column).
    Slug,
}

/// The kinds of table whose reserved columns differ (event tables share `tracks`' set).
const KINDS: [&str; 7] = ["tracks", "identifies", "users", "pages", "screens", "groups", "aliases"];

fn kind_of(table: &str) -> usize {
    KINDS.iter().position(|k| *k == table).unwrap_or(0)
}

/// One flattened key of `context`, `properties` or `traits`, as a column.
#[derive(Debug)]
struct Column {
    name: Box<str>,
    /// The keys leading to it (after a marker byte: `c` context, `p` properties or traits),
    /// NUL-separated: sorting by it sorts as the `Record` path visits keys.
    path: Box<[u8]>,
    /// Same for names equal but for ASCII case.
    fold: u32,
    /// Bit `k`: dropped from tables of kind `k` (reserved; only for properties and traits).
    reserved: u8,
    /// Its own key (the last of the path) in quotes, as it comes in the input.
    quoted: Box<[u8]>,
    /// The key that came after it last time, and the first key inside it (`NONE` when none
    /// yet): payloads of one source repeat their shape, so the next key is guessed first.
    next: u32,
    first_child: u32,
}

const NONE: u32 = u32::MAX;

/// A leaf of a flattened object: its column, its value's text and what was read of it.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    column: u32,
    value: Span,
    kind: LeafKind,
}

#[derive(Clone, Copy, Debug)]
enum LeafKind {
    /// A string: its body, and whether it has escapes.
    Str(Span, bool),
    Int(i64),
    Float(f64),
    /// An integer beyond INT64 (its text is the value's).
    Decimal,
    Bool(bool),
    /// A non-empty array, stored as its JSON text.
    Array,
}

/// One message of a line, read and checked.
#[derive(Clone, Copy, Debug)]
struct Msg {
    call: Call,
    id: Text,
    anonymous_id: Option<Text>,
    user_id: Option<Text>,
    received_at: Timestamp,
    sent_at: Option<Timestamp>,
    original: Option<Timestamp>,
    timestamp: Timestamp,
    event: Option<Text>,
    /// The event's table (tracks' `event` column holds its name even without event tables).
    event_table: u32,
    name: Option<Text>,
    category: Option<Text>,
    group_id: Option<Text>,
    previous_id: Option<Text>,
    context: (u32, u32),
    custom: (u32, u32),
}

/// A row a message makes, before it meets a table.
#[derive(Debug)]
enum RowOf {
    /// `tracks` (or, with properties, the event's own table), `identifies`, `pages`, …
    Common { table: u32, custom: bool },
    /// `users`: the user id and the traits.
    User { table: u32 },
}

/// What reading lines needs, shared by the scanner and the transcoder.
#[derive(Debug)]
struct Reader {
    options: SegmentOptions,
    now: Timestamp,
    columns: Vec<Column>,
    by_path: FxHashMap<Box<[u8]>, u32>,
    folds: FxHashMap<Box<str>, u32>,
    /// Table names by index, and the index of each.
    tables: Vec<Arc<str>>,
    table_index: HashMap<Arc<str>, u32>,
    /// An event's name as sent → its table.
    events: HashMap<Box<str>, u32>,
    // Scratch, kept between lines.
    leaves: Vec<Leaf>,
    path: Vec<u8>,
    arena: String,
    msgs: Vec<Msg>,
    fold_seen: Vec<u32>,
    generation: u32,
    /// The first key of `context` and of properties and traits, guessed like [`Column::next`].
    first_key: [u32; 2],
    /// The object being flattened: `c` context, `p` properties or traits.
    marker: u8,
    /// The keys of a line's object and of a batch item, in their last order.
    shapes: [Vec<u8>; 2],
}

impl Reader {
    fn new(options: SegmentOptions) -> Self {
        let mut r = Reader {
            options,
            now: Timestamp::UNIX_EPOCH,
            columns: Vec::new(),
            by_path: FxHashMap::default(),
            folds: FxHashMap::default(),
            tables: Vec::new(),
            table_index: HashMap::new(),
            events: HashMap::new(),
            leaves: Vec::new(),
            path: Vec::new(),
            arena: String::new(),
            msgs: Vec::new(),
            fold_seen: Vec::new(),
            generation: 0,
            first_key: [NONE; 2],
            marker: b'c',
            shapes: Default::default(),
        };
        for t in KINDS {
            r.table(t);
        }
        r
    }

    fn table(&mut self, name: &str) -> u32 {
        if let Some(i) = self.table_index.get(name) {
            return *i;
        }
        let i = self.tables.len() as u32;
        let name: Arc<str> = name.into();
        self.tables.push(name.clone());
        self.table_index.insert(name, i);
        i
    }

    fn text<'a>(&'a self, line: &'a str, t: Text) -> &'a str {
        match t {
            Text::Input(s) => &line[s.start as usize..s.end as usize],
            Text::Arena(s) => &self.arena[s.start as usize..s.end as usize],
        }
    }

    /// Reads every message of a line into `self.msgs`.
    fn line(&mut self, line: &str) -> Fast<()> {
        self.leaves.clear();
        self.arena.clear();
        self.msgs.clear();
        let mut p = Parser { s: line, b: line.as_bytes(), i: 0 };
        p.ws();
        let mut top = Members::default();
        self.members(&mut p, &mut top, 0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(Slow);
        }
        let Some(Val { span: batch, .. }) = top.spans[BATCH] else {
            let m = self.message(line, &top, None)?;
            self.msgs.push(m);
            return Ok(());
        };
        let mut p = Parser { s: line, b: line.as_bytes(), i: batch.start as usize };
        if !p.eat(b'[') {
            return Err(Slow);
        }
        p.ws();
        if p.eat(b']') {
            return Ok(());
        }
        loop {
            p.ws();
            let mut item = Members::default();
            self.members(&mut p, &mut item, 1)?;
            let m = self.message(line, &item, Some(&top))?;
            self.msgs.push(m);
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b']') => return Ok(()),
                _ => return Err(Slow),
            }
        }
    }

    /// Reads an object's members (the cursor on `{`), keeping those Segment reads and
    /// flattening `context`, `properties` and `traits` on the way.
    /// `shape` 0 is a line's own object, 1 an item of a batch: each keeps the order of keys
    /// it last had, matched before any key is parsed.
    fn members(&mut self, p: &mut Parser<'_>, out: &mut Members, shape: usize) -> Fast<()> {
        if !p.eat(b'{') {
            return Err(Slow);
        }
        p.ws();
        if p.eat(b'}') {
            return Ok(());
        }
        let mut n = 0;
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return Err(Slow);
            }
            let guess = self.shapes[shape].get(n).copied().filter(|&g| {
                g != OTHER_KEY
                    && same_bytes(p.b.get(p.i..p.i + QUOTED_KEYS[usize::from(g)].len()), QUOTED_KEYS[usize::from(g)])
            });
            let ix = match guess {
                Some(g) => {
                    p.i += QUOTED_KEYS[usize::from(g)].len();
                    Some(usize::from(g))
                }
                None => {
                    let k = p.string_ref().map_err(slow)?;
                    if k.escaped {
                        return Err(Slow);
                    }
                    let key = &p.b[k.start as usize..k.end as usize];
                    let ix = KEYS.iter().position(|k| *k == key);
                    let code = ix.map_or(OTHER_KEY, |i| i as u8);
                    match self.shapes[shape].get_mut(n) {
                        Some(g) => *g = code,
                        None => self.shapes[shape].push(code),
                    }
                    ix
                }
            };
            n += 1;
            p.ws();
            if !p.eat(b':') {
                return Err(Slow);
            }
            p.ws();
            let start = p.i;
            match ix {
                Some(ix @ (CONTEXT | PROPERTIES | TRAITS)) if p.peek() == Some(b'{') => {
                    let marker = if ix == CONTEXT { b'c' } else { b'p' };
                    out.flat[ix - CONTEXT] = Some(self.flatten(p, marker)?);
                    out.spans[ix] = Some(Val { span: Span { start: start as u32, end: p.i as u32 }, body: None });
                }
                Some(ix) => {
                    let body = match p.peek() {
                        Some(b'"') => Some(p.string_ref().map_err(slow)?),
                        _ => {
                            p.skip_value().map_err(slow)?;
                            None
                        }
                    };
                    let null = &p.b[start..p.i] == b"null";
                    let span = Span { start: start as u32, end: p.i as u32 };
                    out.spans[ix] = (!null).then_some(Val { span, body });
                    if (CONTEXT..=TRAITS).contains(&ix) {
                        out.flat[ix - CONTEXT] = None;
                    }
                }
                None => p.skip_value().map_err(slow)?,
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    return Ok(());
                }
                _ => return Err(Slow),
            }
        }
    }

    fn message(&mut self, line: &str, m: &Members, envelope: Option<&Members>) -> Fast<Msg> {
        let field = |k: usize| m.spans[k].or_else(|| envelope.and_then(|e| e.spans[k]));
        let call = {
            let t = self.string(line, m.spans[TYPE].ok_or(Slow)?)?;
            Call::parse(self.text(line, t)).ok_or(Slow)?
        };
        let received_at = self.timestamp(line, field(RECEIVED_AT))?.unwrap_or(self.now);
        let sent_at = self.timestamp(line, field(SENT_AT))?;
        let original = match self.timestamp(line, m.spans[ORIGINAL_TIMESTAMP])? {
            Some(t) => Some(t),
            None => self.timestamp(line, m.spans[TIMESTAMP])?,
        };
        let timestamp = corrected_timestamp(received_at, sent_at, original);
        // A message without an id gets one derived from its whole text: the other path.
        let id = self.id(line, m.spans[MESSAGE_ID])?.ok_or(Slow)?;
        let user_id = self.id(line, m.spans[USER_ID])?;
        let anonymous_id = self.id(line, m.spans[ANONYMOUS_ID])?;
        // The message's own context when it is an object, else the envelope's.
        let context = match (m.flat[0], envelope) {
            (Some(c), _) => c,
            (None, Some(env)) => env.leaves(CONTEXT)?,
            (None, None) => m.leaves(CONTEXT)?,
        };
        let mut msg = Msg {
            call,
            id,
            anonymous_id,
            user_id,
            received_at,
            sent_at,
            original,
            timestamp,
            event: None,
            event_table: 0,
            name: None,
            category: None,
            group_id: None,
            previous_id: None,
            context,
            custom: (0, 0),
        };
        match call {
            Call::Track => {
                let event = self.text_field(line, m.spans[EVENT])?.ok_or(Slow)?;
                if self.text(line, event).trim().is_empty() {
                    return Err(Slow);
                }
                msg.event = Some(event);
                msg.event_table = self.event_table(line, event);
                if self.options.event_tables {
                    msg.custom = m.leaves(PROPERTIES)?;
                }
            }
            Call::Identify => msg.custom = m.leaves(TRAITS)?,
            Call::Page | Call::Screen => {
                msg.name = self.text_field(line, m.spans[NAME])?;
                msg.category = self.text_field(line, m.spans[CATEGORY])?;
                msg.custom = m.leaves(PROPERTIES)?;
            }
            Call::Group => {
                msg.group_id = Some(self.id(line, m.spans[GROUP_ID])?.ok_or(Slow)?);
                msg.custom = m.leaves(TRAITS)?;
            }
            Call::Alias => msg.previous_id = Some(self.id(line, m.spans[PREVIOUS_ID])?.ok_or(Slow)?),
        }
        Ok(msg)
    }

    fn event_table(&mut self, line: &str, event: Text) -> u32 {
        let text = self.text(line, event);
        if let Some(t) = self.events.get(text) {
            return *t;
        }
        let text: Box<str> = text.into();
        let t = self.table(&event_table_name(&text));
        self.events.insert(text, t);
        t
    }

    /// The rows a message makes, in the order the `Record` path makes them.
    fn rows_of(&self, msg: &Msg, out: &mut Vec<RowOf>) {
        out.clear();
        match msg.call {
            Call::Track => {
                out.push(RowOf::Common { table: 0, custom: false });
                if self.options.event_tables {
                    out.push(RowOf::Common { table: msg.event_table, custom: true });
                }
            }
            Call::Identify => {
                out.push(RowOf::Common { table: 1, custom: true });
                if self.options.users_table && msg.user_id.is_some() {
                    out.push(RowOf::User { table: 2 });
                }
            }
            Call::Page => out.push(RowOf::Common { table: 3, custom: true }),
            Call::Screen => out.push(RowOf::Common { table: 4, custom: true }),
            Call::Group => out.push(RowOf::Common { table: 5, custom: true }),
            Call::Alias => out.push(RowOf::Common { table: 6, custom: false }),
        }
    }

    /// The fixed columns of a row, in the `Record` path's order.
    fn fixed(msg: &Msg, row: &RowOf, now: Timestamp, out: &mut Vec<(usize, Fixed)>) {
        out.clear();
        let text = |t: Option<Text>| Fixed::Text(t);
        let time = |t: Option<Timestamp>| Fixed::Time(t);
        if let RowOf::User { .. } = row {
            out.push((F_ID, text(msg.user_id)));
            out.push((F_RECEIVED_AT, time(Some(msg.received_at))));
            out.push((F_UUID_TS, time(Some(now))));
            out.push((F_LOADED_AT, time(Some(now))));
            return;
        }
        out.push((F_ID, text(Some(msg.id))));
        out.push((F_ANONYMOUS_ID, text(msg.anonymous_id)));
        out.push((F_USER_ID, text(msg.user_id)));
        out.push((F_RECEIVED_AT, time(Some(msg.received_at))));
        out.push((F_SENT_AT, time(msg.sent_at)));
        out.push((F_ORIGINAL_TIMESTAMP, time(msg.original)));
        out.push((F_TIMESTAMP, time(Some(msg.timestamp))));
        out.push((F_UUID_TS, time(Some(now))));
        out.push((F_LOADED_AT, time(Some(now))));
        match msg.call {
            Call::Track => {
                // `event` holds the table's name; the name as sent is `event_text`.
                out.push((F_EVENT, Fixed::Slug));
                out.push((F_EVENT_TEXT, text(msg.event)));
            }
            Call::Page | Call::Screen => {
                out.push((F_NAME, text(msg.name)));
                out.push((F_CATEGORY, text(msg.category)));
            }
            Call::Group => out.push((F_GROUP_ID, text(msg.group_id))),
            Call::Alias => out.push((F_PREVIOUS_ID, text(msg.previous_id))),
            Call::Identify => {}
        }
    }

    /// A string member, decoded when it has escapes.
    fn string(&mut self, line: &str, v: Val) -> Fast<Text> {
        let k = match v.body {
            Some(k) => k,
            None => {
                let mut p = Parser { s: line, b: line.as_bytes(), i: v.span.start as usize };
                if p.peek() != Some(b'"') {
                    return Err(Slow);
                }
                p.string_ref().map_err(slow)?
            }
        };
        if !k.escaped {
            return Ok(Text::Input(Span { start: k.start, end: k.end }));
        }
        let mut decoded = String::new();
        unescape(&line[k.start as usize..k.end as usize], &mut decoded).map_err(slow)?;
        let start = self.arena.len() as u32;
        self.arena.push_str(&decoded);
        Ok(Text::Arena(Span { start, end: self.arena.len() as u32 }))
    }

    fn text_field(&mut self, line: &str, s: Option<Val>) -> Fast<Option<Text>> {
        s.map(|s| self.string(line, s)).transpose()
    }

    fn timestamp(&mut self, line: &str, s: Option<Val>) -> Fast<Option<Timestamp>> {
        let Some(s) = s else { return Ok(None) };
        let t = self.string(line, s)?;
        Timestamp::parse(self.text(line, t)).map(Some).ok_or(Slow)
    }

    /// An id: a string as it is (empty is none), an integer as its digits.
    fn id(&mut self, line: &str, v: Option<Val>) -> Fast<Option<Text>> {
        let Some(v) = v else { return Ok(None) };
        let s = v.span;
        let raw = &line.as_bytes()[s.start as usize..s.end as usize];
        match raw.first() {
            Some(b'"') => {
                let t = self.string(line, v)?;
                Ok((!self.text(line, t).is_empty()).then_some(t))
            }
            // Plain integers print as they are read; other numbers take the other path.
            Some(b'1'..=b'9') if raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) => Ok(Some(Text::Input(s))),
            Some(b'0') if raw.len() == 1 => Ok(Some(Text::Input(s))),
            _ => Err(Slow),
        }
    }

    /// Flattens the object under the cursor into leaves, in one pass; returns their range.
    /// Keys are read in input order: where order matters (planning new columns) they are
    /// sorted by their paths, which is the `Record` path's order.
    fn flatten(&mut self, p: &mut Parser<'_>, marker: u8) -> Fast<(u32, u32)> {
        let start = self.leaves.len() as u32;
        self.marker = marker;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.fold_seen.iter_mut().for_each(|g| *g = 0);
            self.generation = 1;
        }
        self.object(p, 0, NONE)?;
        Ok((start, self.leaves.len() as u32))
    }

    /// The first key last seen inside `parent` (the top of the object when `NONE`).
    fn first_key_of(&self, parent: u32) -> u32 {
        match self.columns.get(parent as usize) {
            Some(c) => c.first_child,
            None => self.first_key[usize::from(self.marker == b'p')],
        }
    }

    fn set_first_key(&mut self, parent: u32, c: u32) {
        match self.columns.get_mut(parent as usize) {
            Some(p) => p.first_child = c,
            None => self.first_key[usize::from(self.marker == b'p')] = c,
        }
    }

    fn object(&mut self, p: &mut Parser<'_>, depth: usize, parent: u32) -> Fast<()> {
        if depth > MAX_FLATTEN_DEPTH {
            return Err(Slow);
        }
        p.i += 1; // '{'
        p.ws();
        if p.eat(b'}') {
            return Ok(());
        }
        let mut expected = self.first_key_of(parent);
        let mut previous = NONE;
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return Err(Slow);
            }
            // The key that came here last time, as it is spelled: no parse, no lookup.
            let guessed = self
                .columns
                .get(expected as usize)
                .map(|c| c.quoted.len())
                .filter(|&n| same_bytes(p.b.get(p.i..p.i + n), &self.columns[expected as usize].quoted));
            let column = match guessed {
                Some(n) => {
                    p.i += n;
                    expected
                }
                None => {
                    let k = p.string_ref().map_err(slow)?;
                    if k.escaped {
                        return Err(Slow);
                    }
                    // The key's path: its parent's, then the key.
                    self.path.clear();
                    match self.columns.get(parent as usize) {
                        Some(pc) => {
                            self.path.extend_from_slice(&pc.path);
                            self.path.push(0);
                        }
                        None => self.path.push(self.marker),
                    }
                    self.path.extend_from_slice(&p.b[k.start as usize..k.end as usize]);
                    let c = self.column()?;
                    match self.columns.get_mut(previous as usize) {
                        Some(prev) => prev.next = c,
                        None => self.set_first_key(parent, c),
                    }
                    c
                }
            };
            expected = self.columns[column as usize].next;
            previous = column;
            p.ws();
            if !p.eat(b':') {
                return Err(Slow);
            }
            p.ws();
            // A key met twice, or two keys making one column (ignoring case): the other path
            // keeps the last one or numbers them.
            let fold = self.columns[column as usize].fold as usize;
            if self.fold_seen.len() <= fold {
                self.fold_seen.resize(fold + 1, 0);
            }
            if self.fold_seen[fold] == self.generation {
                return Err(Slow);
            }
            self.fold_seen[fold] = self.generation;
            let start = p.i as u32;
            let kind = match p.peek() {
                Some(b'n') => {
                    p.literal("null").map_err(slow)?;
                    None
                }
                Some(b'{') => {
                    self.object(p, depth + 1, column)?;
                    None
                }
                Some(b'[') => {
                    p.skip_value().map_err(slow)?;
                    let inner = &p.b[start as usize + 1..p.i - 1];
                    (!inner.iter().all(u8::is_ascii_whitespace)).then_some(LeafKind::Array)
                }
                Some(b'"') => {
                    let s = p.string_ref().map_err(slow)?;
                    Some(LeafKind::Str(Span { start: s.start, end: s.end }, s.escaped))
                }
                Some(b't') => p.literal("true").map(|()| Some(LeafKind::Bool(true))).map_err(slow)?,
                Some(b'f') => p.literal("false").map(|()| Some(LeafKind::Bool(false))).map_err(slow)?,
                _ => match p.number().map_err(slow)? {
                    Scalar::Int(i) => Some(LeafKind::Int(i)),
                    Scalar::Float(f) => Some(LeafKind::Float(f)),
                    _ => Some(LeafKind::Decimal),
                },
            };
            if let Some(kind) = kind {
                self.leaves.push(Leaf { column, value: Span { start, end: p.i as u32 }, kind });
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    return Ok(());
                }
                _ => return Err(Slow),
            }
        }
    }

    /// The column of the flattened key in `self.path`.
    fn column(&mut self) -> Fast<u32> {
        if let Some(c) = self.by_path.get(self.path.as_slice()) {
            return Ok(*c);
        }
        let (marker, keys) = self.path.split_first().ok_or(Slow)?;
        let mut joined = String::new();
        for key in keys.split(|b| *b == 0) {
            joined = flattened_key(&joined, std::str::from_utf8(key).map_err(slow)?);
        }
        let mut name = sanitize_column_name(&joined);
        let mut reserved = 0u8;
        if *marker == b'c' {
            name = sanitize_column_name(&format!("context_{name}"));
        } else {
            for (k, table) in KINDS.iter().enumerate() {
                if is_reserved_column(table, &name) {
                    reserved |= 1 << k;
                }
            }
        }
        let lower: Box<str> = name.to_ascii_lowercase().into();
        let next = self.folds.len() as u32;
        let fold = *self.folds.entry(lower).or_insert(next);
        let c = self.columns.len() as u32;
        let path: Box<[u8]> = self.path.as_slice().into();
        let key = keys.rsplit(|b| *b == 0).next().unwrap_or_default();
        let mut quoted = Vec::with_capacity(key.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(key);
        quoted.push(b'"');
        self.columns.push(Column {
            name: name.into(),
            path: path.clone(),
            fold,
            reserved,
            quoted: quoted.into(),
            next: NONE,
            first_child: NONE,
        });
        self.by_path.insert(path, c);
        Ok(c)
    }

    /// Starts the column caches over when they grew too big (between chunks: callers keep
    /// column ids only within one); `true` when they did.
    fn forget_columns(&mut self) -> bool {
        if self.columns.len() <= MAX_CACHED_COLUMNS {
            return false;
        }
        self.columns.clear();
        self.first_key = [NONE; 2];
        self.by_path.clear();
        self.folds.clear();
        self.fold_seen.clear();
        true
    }

    /// The leaves a row of `table` takes: the context, then (unless reserved there) the custom ones.
    fn row_leaves(&self, msg: &Msg, row: &RowOf) -> impl Iterator<Item = Leaf> + '_ {
        let (context, custom, kind) = match *row {
            RowOf::Common { table, custom } => {
                let name = self.tables.get(table as usize).map_or("", |t| &**t);
                (true, custom, kind_of(name))
            }
            RowOf::User { .. } => (false, true, kind_of("users")),
        };
        let ctx = if context { &self.leaves[msg.context.0 as usize..msg.context.1 as usize] } else { &[] };
        let cus = if custom { &self.leaves[msg.custom.0 as usize..msg.custom.1 as usize] } else { &[] };
        ctx.iter()
            .copied()
            .chain(cus.iter().copied().filter(move |l| self.columns[l.column as usize].reserved & (1 << kind) == 0))
    }

    /// The JSON text an array is stored as (the `Record` path's rendering of the value).
    fn array_text(line: &str, v: Span) -> Fast<String> {
        let raw = &line[v.start as usize..v.end as usize];
        let json: serde_json::Value = serde_json::from_str(raw).map_err(slow)?;
        Ok(Value::from(json).to_json_string())
    }
}

/// What came of a chunk: rows for tables, and lines for the `Record` path, in input order
/// (each table's rows in order; a line handed back comes after every row before it).
#[derive(Debug)]
pub enum Piece {
    /// Rows of one table.
    Rows {
        /// The table.
        table: Arc<str>,
        /// Its rows; `positions` are 0-based line numbers.
        batch: Batch,
    },
    /// A line for the `Record` path.
    Line {
        /// 1-based line number.
        number: u64,
        /// Its text, trimmed (lossy when it is not UTF-8).
        text: String,
        /// Why it cannot be read at all (not UTF-8), when so.
        unreadable: Option<&'static str>,
    },
}

/// A table the transcoder writes: its plan and where each column goes.
#[derive(Debug)]
struct TableOut {
    descriptor: RowDescriptor,
    /// Field index of each fixed column; `None` when the table lacks it or holds another type.
    fixed: [Option<u32>; FIXED.len()],
    /// Field index by column id: `UNSEEN` until looked up, `ABSENT` when the table lacks it.
    by_column: Vec<u32>,
    /// Byte range in the scratch buffer of each field written in the current row.
    spans: Vec<(u32, u32)>,
    stamp: Vec<u32>,
    required: Vec<u32>,
    batches: Option<Batches>,
    /// Whether its first columns are `tracks`' columns, in the same places (an event table
    /// planned with `tracks`): its rows then start with the bytes of the track's `tracks` row.
    extends_tracks: Option<bool>,
}

const UNSEEN: u32 = u32::MAX;
const ABSENT: u32 = u32::MAX - 1;

impl TableOut {
    fn new(descriptor: RowDescriptor) -> Self {
        let root = descriptor.root();
        let mut fixed = [None; FIXED.len()];
        for (i, (name, ty)) in FIXED.iter().enumerate() {
            fixed[i] = root
                .lookup(name)
                .filter(|&f| {
                    let f = &root.fields[f];
                    f.field_type == *ty && f.mode != Mode::Repeated && f.kind != WireKind::Message
                })
                .map(|f| f as u32);
        }
        let n = root.fields.len();
        let required = (0..n as u32).filter(|&i| root.fields[i as usize].mode == Mode::Required).collect();
        TableOut {
            descriptor,
            fixed,
            by_column: Vec::new(),
            spans: vec![(0, 0); n],
            stamp: vec![0; n],
            required,
            batches: None,
            extends_tracks: None,
        }
    }
}

/// Segment payloads into rows of the planned tables. Keeps its buffers between chunks.
#[derive(Debug)]
pub struct SegmentTranscoder {
    reader: Reader,
    plans: HashMap<String, RowDescriptor>,
    out: Vec<Option<TableOut>>,
    bufs: Buffers,
    scratch: Vec<u8>,
    line_rows: Vec<u8>,
    staged: Vec<(u32, u32, u32)>,
    rows: Vec<RowOf>,
    fixed: Vec<(usize, Fixed)>,
    generation: u32,
    cut: Cut,
}

impl SegmentTranscoder {
    /// A transcoder for tables with these plans (by table name); a row for any other table
    /// takes the `Record` path.
    pub fn new(plans: HashMap<String, RowDescriptor>, options: SegmentOptions) -> Self {
        SegmentTranscoder {
            reader: Reader::new(options),
            plans,
            out: Vec::new(),
            bufs: Buffers::scratch(),
            scratch: Vec::new(),
            line_rows: Vec::new(),
            staged: Vec::new(),
            rows: Vec::new(),
            fixed: Vec::new(),
            generation: 0,
            cut: Cut { max_rows: 500, max_bytes: 9 << 20 },
        }
    }

    /// The options rows are made by.
    pub fn options(&self) -> &SegmentOptions {
        &self.reader.options
    }

    /// Whether the plans are these.
    pub fn plans_are(&self, plans: &HashMap<String, RowDescriptor>) -> bool {
        self.plans.len() == plans.len()
            && plans.iter().all(|(k, d)| self.plans.get(k).is_some_and(|mine| mine.same_as(d)))
    }

    /// Transcodes a chunk of NDJSON (whole lines) whose first line is line `first_line`
    /// (1-based); `now` is the rows' `uuid_ts` and `loaded_at`, and `received_at` when a payload
    /// has none.
    pub fn chunk(&mut self, chunk: &[u8], first_line: u64, now: Timestamp, cut: Cut) -> Vec<Piece> {
        self.reader.now = now;
        self.cut = cut;
        if self.reader.forget_columns() {
            self.out.iter_mut().flatten().for_each(|o| o.by_column.clear());
        }
        let mut pieces = Vec::new();
        for (n, range) in lines(chunk).enumerate() {
            let number = first_line + n as u64;
            let raw = &chunk[range];
            let Ok(text) = std::str::from_utf8(raw) else {
                self.flush(&mut pieces);
                let text = String::from_utf8_lossy(raw).trim().to_owned();
                pieces.push(Piece::Line { number, text, unreadable: Some(NOT_UTF8) });
                continue;
            };
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            if self.line(text).is_err() {
                self.flush(&mut pieces);
                pieces.push(Piece::Line { number, text: text.to_owned(), unreadable: None });
                continue;
            }
            for &(t, s, e) in &self.staged {
                if let Some(out) = self.out.get_mut(t as usize).and_then(Option::as_mut) {
                    let cut = self.cut;
                    let batches = out.batches.get_or_insert_with(|| Batches::new(&out.descriptor, cut, 64 << 10));
                    batches.row(&self.line_rows[s as usize..e as usize], number - 1);
                }
            }
        }
        self.flush(&mut pieces);
        pieces
    }

    /// Every table's rows so far, as pieces.
    fn flush(&mut self, pieces: &mut Vec<Piece>) {
        for (t, out) in self.out.iter_mut().enumerate() {
            let Some(out) = out else { continue };
            if let Some(b) = out.batches.take() {
                let table = self.reader.tables[t].clone();
                pieces.extend(b.finish().into_iter().map(|batch| Piece::Rows { table: table.clone(), batch }));
            }
        }
    }

    /// Stages the rows of one line; `Err` hands the line to the other path.
    fn line(&mut self, line: &str) -> Fast<()> {
        self.staged.clear();
        self.line_rows.clear();
        self.reader.line(line)?;
        for m in 0..self.reader.msgs.len() {
            let msg = self.reader.msgs[m];
            let mut rows = std::mem::take(&mut self.rows);
            self.reader.rows_of(&msg, &mut rows);
            let result = rows.iter().try_for_each(|row| self.row(line, &msg, row));
            self.rows = rows;
            result?;
        }
        Ok(())
    }

    fn table_out(&mut self, table: u32) -> Fast<()> {
        let t = table as usize;
        if self.out.len() <= t {
            self.out.resize_with(t + 1, || None);
        }
        if self.out[t].is_none() {
            let name = &self.reader.tables[t];
            let d = self.plans.get(&**name).ok_or(Slow)?;
            self.out[t] = Some(TableOut::new(d.clone()));
        }
        Ok(())
    }

    fn row(&mut self, line: &str, msg: &Msg, row: &RowOf) -> Fast<()> {
        let table = match *row {
            RowOf::Common { table, .. } | RowOf::User { table } => table,
        };
        self.table_out(table)?;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Stamps of old rows could pass for this one's: all cleared once in 2^32 rows.
            self.out.iter_mut().flatten().for_each(|o| o.stamp.iter_mut().for_each(|s| *s = 0));
            self.generation = 1;
        }
        let gen = self.generation;
        // A track's event row after its `tracks` row: the same columns first, then properties.
        if let (RowOf::Common { custom: true, .. }, Call::Track, Some(&(0, start, end))) =
            (row, msg.call, self.staged.last())
        {
            if table != 0 && self.extends_tracks(table) {
                return self.write_event_row(line, msg, table, (start, end), gen);
            }
        }
        let mut fixed = std::mem::take(&mut self.fixed);
        Reader::fixed(msg, row, self.reader.now, &mut fixed);
        let result = self.write_row(line, msg, row, table, &fixed, gen);
        self.fixed = fixed;
        result
    }

    fn extends_tracks(&mut self, table: u32) -> bool {
        let (Some(Some(tracks)), Some(Some(event))) = (self.out.first(), self.out.get(table as usize)) else {
            return false;
        };
        if let Some(known) = event.extends_tracks {
            return known;
        }
        let (t, e) = (tracks.descriptor.root(), event.descriptor.root());
        let same = event.required.is_empty()
            && e.fields.len() >= t.fields.len()
            && t.fields
                .iter()
                .zip(&e.fields)
                .all(|(a, b)| a.name == b.name && a.field_type == b.field_type && a.mode == b.mode && a.kind == b.kind);
        if let Some(Some(event)) = self.out.get_mut(table as usize) {
            event.extends_tracks = Some(same);
        }
        same
    }

    /// An event row whose table extends `tracks`: the `tracks` row's bytes (at `tracks` in
    /// `line_rows`), then the properties in schema order.
    fn write_event_row(&mut self, line: &str, msg: &Msg, table: u32, tracks: (u32, u32), gen: u32) -> Fast<()> {
        let shared = self.out.first().and_then(Option::as_ref).map_or(0, |t| t.descriptor.root().fields.len());
        let Self { reader, out, bufs, scratch, line_rows, staged, .. } = self;
        let out = out.get_mut(table as usize).and_then(Option::as_mut).ok_or(Slow)?;
        scratch.clear();
        let kind = 1 << kind_of(&reader.tables[table as usize]);
        let custom = &reader.leaves[msg.custom.0 as usize..msg.custom.1 as usize];
        for leaf in custom.iter().filter(|l| reader.columns[l.column as usize].reserved & kind == 0) {
            // A property in a column `tracks` has too would break the order: the long way.
            if write_leaf(reader, out, bufs, scratch, line, *leaf, gen)? < shared {
                return Err(Slow);
            }
        }
        let start = line_rows.len() as u32;
        line_rows.extend_from_within(tracks.0 as usize..tracks.1 as usize);
        for idx in shared..out.descriptor.root().fields.len() {
            if out.stamp[idx] == gen {
                let (s, e) = out.spans[idx];
                line_rows.extend_from_slice(&scratch[s as usize..e as usize]);
            }
        }
        staged.push((table, start, line_rows.len() as u32));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_row(
        &mut self,
        line: &str,
        msg: &Msg,
        row: &RowOf,
        table: u32,
        fixed: &[(usize, Fixed)],
        gen: u32,
    ) -> Fast<()> {
        let Self { reader, out, bufs, scratch, line_rows, staged, .. } = self;
        let out = out.get_mut(table as usize).and_then(Option::as_mut).ok_or(Slow)?;
        scratch.clear();
        let root = out.descriptor.root();
        for &(f, value) in fixed {
            let idx = out.fixed[f].ok_or(Slow)? as usize;
            let field = &root.fields[idx];
            if out.stamp[idx] == gen {
                return Err(Slow);
            }
            let start = scratch.len() as u32;
            match value {
                Fixed::Text(None) | Fixed::Time(None) => continue,
                Fixed::Text(Some(t)) => {
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Str(reader.text(line, t)), &[], scratch);
                }
                Fixed::Slug => {
                    let slug = reader.tables.get(msg.event_table as usize).ok_or(Slow)?;
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Str(slug), &[], scratch);
                }
                Fixed::Time(Some(t)) => {
                    field.tag.put(scratch);
                    put_coerced_body(&Coerced::Timestamp(t), &[], scratch);
                }
            }
            out.stamp[idx] = gen;
            out.spans[idx] = (start, scratch.len() as u32);
        }
        for leaf in reader.row_leaves(msg, row) {
            write_leaf(reader, out, bufs, scratch, line, leaf, gen)?;
        }
        if out.required.iter().any(|&i| out.stamp[i as usize] != gen) {
            return Err(Slow);
        }
        // The row in schema order, as the `Record` encoder writes it.
        let start = line_rows.len() as u32;
        for idx in 0..out.descriptor.root().fields.len() {
            if out.stamp[idx] == gen {
                let (s, e) = out.spans[idx];
                line_rows.extend_from_slice(&scratch[s as usize..e as usize]);
            }
        }
        staged.push((table, start, line_rows.len() as u32));
        Ok(())
    }
}

/// Writes one leaf into its column's place in `scratch`; returns the column's index. `Slow` when
/// the table lacks the column, the row has it already, or the value does not fit it.
fn write_leaf(
    reader: &Reader,
    out: &mut TableOut,
    bufs: &mut Buffers,
    scratch: &mut Vec<u8>,
    line: &str,
    leaf: Leaf,
    gen: u32,
) -> Fast<usize> {
    let root = out.descriptor.root();
    let c = leaf.column as usize;
    if out.by_column.len() <= c {
        out.by_column.resize(c + 1, UNSEEN);
    }
    if out.by_column[c] == UNSEEN {
        let name = &reader.columns[c].name;
        out.by_column[c] = match root.lookup(name) {
            Some(i) if flat(&root.fields[i]) => i as u32,
            _ => ABSENT,
        };
    }
    let idx = out.by_column[c];
    if idx == ABSENT {
        return Err(Slow);
    }
    let idx = idx as usize;
    if out.stamp[idx] == gen {
        return Err(Slow);
    }
    let field = &root.fields[idx];
    let start = scratch.len();
    let scalar = match leaf.kind {
        LeafKind::Str(body, false) => Some(Scalar::Str(&line[body.start as usize..body.end as usize])),
        LeafKind::Int(i) => Some(Scalar::Int(i)),
        LeafKind::Float(f) => Some(Scalar::Float(f)),
        LeafKind::Bool(b) => Some(Scalar::Bool(b)),
        LeafKind::Str(_, true) | LeafKind::Decimal | LeafKind::Array => None,
    };
    match (leaf.kind, scalar) {
        // Values that already have the column's type, as read.
        (LeafKind::Str(..), Some(Scalar::Str(text))) if field.field_type == FieldType::String => {
            field.tag.put(scratch);
            put_varint(scratch, text.len() as u64);
            scratch.extend_from_slice(text.as_bytes());
        }
        (LeafKind::Int(i), _) if field.field_type == FieldType::Int64 => {
            field.tag.put(scratch);
            put_varint(scratch, i as u64);
        }
        // Others by the shared rules (a JSON column keeps the value's text: below).
        (_, Some(s)) if field.field_type != FieldType::Json => {
            let c = coerce_scalar(s, field.field_type, &mut bufs.bytes).map_err(slow)?;
            field.tag.put(scratch);
            put_coerced_body(&c, &bufs.bytes, scratch);
        }
        (LeafKind::Array, _) => {
            let text = Reader::array_text(line, leaf.value)?;
            let c = coerce_scalar(Scalar::Str(&text), field.field_type, &mut bufs.bytes).map_err(slow)?;
            field.tag.put(scratch);
            put_coerced_body(&c, &bufs.bytes, scratch);
        }
        _ => {
            let mut p = Parser { s: line, b: line.as_bytes(), i: leaf.value.start as usize };
            let path = Path::column(&field.name);
            match one(bufs, UnknownFields::Reject, &mut p, field, &path, scratch).map_err(slow)? {
                Outcome::Written => {}
                Outcome::Null | Outcome::Failed(_) => return Err(Slow),
            }
        }
    }
    out.stamp[idx] = gen;
    out.spans[idx] = (start as u32, scratch.len() as u32);
    Ok(idx)
}

/// A column the fast path writes: one scalar, not a RECORD nor REPEATED.
fn flat(f: &FieldPlan) -> bool {
    f.kind != WireKind::Message && f.mode != Mode::Repeated
}

/// A type observed in a column, and the row (0-based) where it was first seen.
type Seen = (FieldType, usize);

/// The column types one table's rows call for, as observed.
#[derive(Clone, Debug, Default)]
pub struct TableScan {
    /// Rows observed.
    pub rows: usize,
    /// Columns in order of first appearance, each with the distinct types observed in order
    /// of first appearance and the row (0-based, in this table) where each was first seen.
    columns: Vec<(Box<str>, Vec<Seen>)>,
    index: HashMap<Box<str>, usize>,
    /// Column index by the scanner's column id (`UNSEEN` until used).
    by_column: Vec<u32>,
    fixed: [u32; FIXED.len()],
}

impl TableScan {
    fn new() -> Self {
        TableScan { fixed: [UNSEEN; FIXED.len()], ..Default::default() }
    }

    fn column_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.columns.len();
        self.columns.push((name.into(), Vec::new()));
        self.index.insert(name.into(), i);
        i
    }

    fn observe(&mut self, column: usize, ty: FieldType, row: usize) {
        let types = &mut self.columns[column].1;
        if !types.iter().any(|(t, _)| *t == ty) {
            types.push((ty, row));
        }
    }

    /// Adds a later part of the input's observations.
    fn merge(&mut self, later: TableScan) {
        let offset = self.rows;
        for (name, types) in later.columns {
            let i = self.column_index(&name);
            for (ty, row) in types {
                self.observe(i, ty, offset + row);
            }
        }
        self.rows += later.rows;
    }

    /// The inference these observations make: the same as observing every row in order (types
    /// fold the same way; a conflict is reported once per type and part of the input).
    pub fn inference(&self) -> SchemaInference {
        let mut inference = SchemaInference::new(InferMode::Segment);
        for (name, types) in &self.columns {
            for (ty, row) in types {
                inference.observe_column(name, *ty, *row);
            }
        }
        inference.add_records(self.rows);
        inference
    }
}

/// What a scan of Segment payloads found.
#[derive(Clone, Debug, Default)]
pub struct SegmentScan {
    /// Tables in order of first appearance.
    pub tables: Vec<(String, TableScan)>,
    /// Rows the payloads make (a line that makes none counts 1).
    pub rows: u64,
    /// Non-blank lines read.
    pub lines: u64,
}

impl SegmentScan {
    /// Adds the scan of the input's next part.
    pub fn merge(&mut self, later: SegmentScan) {
        for (name, t) in later.tables {
            match self.tables.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => mine.merge(t),
                None => self.tables.push((name, t)),
            }
        }
        self.rows += later.rows;
        self.lines += later.lines;
    }
}

/// Observes the column types Segment payloads call for, keeping no rows.
#[derive(Debug)]
pub struct SegmentScanner {
    reader: Reader,
    rows: Vec<RowOf>,
    fixed: Vec<(usize, Fixed)>,
    text: String,
    pending: Vec<(u32, FieldType)>,
}

impl SegmentScanner {
    /// A scanner making rows as `options` says.
    pub fn new(options: SegmentOptions) -> Self {
        SegmentScanner {
            reader: Reader::new(options),
            rows: Vec::new(),
            fixed: Vec::new(),
            text: String::new(),
            pending: Vec::new(),
        }
    }

    /// Scans a chunk of NDJSON (whole lines) whose first line is line `first_line` (1-based).
    pub fn chunk(&mut self, chunk: &[u8], first_line: u64, now: Timestamp) -> SegmentScan {
        self.reader.now = now;
        self.reader.forget_columns();
        let mut tables: Vec<Option<TableScan>> = Vec::new();
        let mut scan = SegmentScan::default();
        for (n, range) in lines(chunk).enumerate() {
            let Ok(text) = std::str::from_utf8(&chunk[range]) else {
                scan.lines += 1;
                scan.rows += 1;
                continue;
            };
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            scan.lines += 1;
            if let Ok(rows) = self.line(text, &mut tables) {
                scan.rows += rows;
                continue;
            }
            // The other path's rows, observed as they are.
            match bqsink_schema::rows_from_line(text, first_line + n as u64, now, &self.reader.options) {
                Ok(rows) => {
                    scan.rows += rows.len() as u64;
                    for row in rows {
                        let ts = table_scan(&mut tables, self.reader.table(&row.table));
                        for (k, v) in row.record.iter() {
                            if let Some(ty) = scalar_type(v) {
                                let c = ts.column_index(k);
                                ts.observe(c, ty, ts.rows);
                            }
                        }
                        ts.rows += 1;
                    }
                }
                Err(_) => scan.rows += 1,
            }
        }
        for (t, ts) in tables.into_iter().enumerate() {
            if let Some(ts) = ts {
                scan.tables.push((self.reader.tables[t].to_string(), ts));
            }
        }
        scan
    }

    /// Observes the rows of one line; how many.
    fn line(&mut self, line: &str, tables: &mut Vec<Option<TableScan>>) -> Fast<u64> {
        self.reader.line(line)?;
        let mut count = 0;
        for m in 0..self.reader.msgs.len() {
            let msg = self.reader.msgs[m];
            self.reader.rows_of(&msg, &mut self.rows);
            for row in &self.rows {
                let table = match *row {
                    RowOf::Common { table, .. } | RowOf::User { table } => table,
                };
                Reader::fixed(&msg, row, self.reader.now, &mut self.fixed);
                let ts = table_scan(tables, table);
                observe_row(&self.reader, line, &msg, row, &self.fixed, ts, &mut self.text, &mut self.pending);
                count += 1;
            }
        }
        Ok(count)
    }
}

fn table_scan(tables: &mut Vec<Option<TableScan>>, table: u32) -> &mut TableScan {
    let t = table as usize;
    if tables.len() <= t {
        tables.resize_with(t + 1, || None);
    }
    tables[t].get_or_insert_with(TableScan::new)
}

/// Observes one row's columns. Columns new to the table are added in the `Record` path's
/// order (fixed ones, then the context's and the custom ones, each by their sorted keys).
#[allow(clippy::too_many_arguments)]
fn observe_row(
    reader: &Reader,
    line: &str,
    msg: &Msg,
    row: &RowOf,
    fixed: &[(usize, Fixed)],
    ts: &mut TableScan,
    text: &mut String,
    pending: &mut Vec<(u32, FieldType)>,
) {
    let r = ts.rows;
    for &(f, value) in fixed {
        let ty = match value {
            Fixed::Text(Some(t)) => string_type(reader.text(line, t)),
            Fixed::Slug => string_type(reader.tables.get(msg.event_table as usize).map_or("", |t| &**t)),
            Fixed::Time(Some(_)) => FieldType::Timestamp,
            Fixed::Text(None) | Fixed::Time(None) => continue,
        };
        if ts.fixed[f] == UNSEEN {
            ts.fixed[f] = ts.column_index(FIXED[f].0) as u32;
        }
        ts.observe(ts.fixed[f] as usize, ty, r);
    }
    pending.clear();
    for leaf in reader.row_leaves(msg, row) {
        let ty = leaf_type(line, leaf, text);
        let c = leaf.column as usize;
        if ts.by_column.len() <= c {
            ts.by_column.resize(c + 1, UNSEEN);
        }
        if ts.by_column[c] == UNSEEN {
            match ts.index.get(&reader.columns[c].name) {
                Some(i) => ts.by_column[c] = *i as u32,
                None => {
                    pending.push((leaf.column, ty));
                    continue;
                }
            }
        }
        ts.observe(ts.by_column[c] as usize, ty, r);
    }
    if !pending.is_empty() {
        pending.sort_by(|a, b| reader.columns[a.0 as usize].path.cmp(&reader.columns[b.0 as usize].path));
        for &(c, ty) in pending.iter() {
            let i = ts.column_index(&reader.columns[c as usize].name);
            ts.by_column[c as usize] = i as u32;
            ts.observe(i, ty, r);
        }
    }
    ts.rows += 1;
}

/// The type a leaf's value infers (an array is stored as its JSON text: a STRING).
fn leaf_type(line: &str, leaf: Leaf, text: &mut String) -> FieldType {
    let raw = |s: Span| &line[s.start as usize..s.end as usize];
    match leaf.kind {
        LeafKind::Str(body, false) => string_type(raw(body)),
        LeafKind::Str(body, true) => match unescape(raw(body), text) {
            Ok(()) => string_type(text),
            Err(_) => FieldType::String,
        },
        LeafKind::Int(_) => FieldType::Int64,
        LeafKind::Float(_) => FieldType::Float64,
        LeafKind::Decimal => scalar_type_of(Scalar::Decimal(raw(leaf.value))).unwrap_or(FieldType::Float64),
        LeafKind::Bool(_) => FieldType::Bool,
        LeafKind::Array => FieldType::String,
    }
}
