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

/// A column or fixed field not looked up yet (by the scanner and the transcoder).
const UNSEEN: u32 = u32::MAX;
/// A column the table lacks (transcoder).
const ABSENT: u32 = u32::MAX - 1;

mod reader;
mod scanner;
mod transcoder;

use reader::Reader;
pub use scanner::{SegmentScan, SegmentScanner, TableScan};
pub use transcoder::{Piece, SegmentTranscoder};
