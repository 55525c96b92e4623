//! Segment's HTTP tracking API payloads as rows of Segment's warehouse tables.
//!
//! Each call (`track`, `identify`, `page`, `screen`, `group`, `alias`, alone or inside a
//! `{"batch": [...]}` envelope) becomes one or two rows:
//!
//! | call | rows |
//! |---|---|
//! | `track` | `tracks` (no properties) and the event's own table (slug of the event name, with properties) |
//! | `identify` | `identifies` (traits) and `users` (`id` = user id, that call's traits), the latter only with a user id |
//! | `page` | `pages` (`name`, `category`, properties such as `path`, `url`, `title`, `referrer`, `search`) |
//! | `screen` | `screens` (`name`, properties) |
//! | `group` | `groups` (`group_id`, traits) |
//! | `alias` | `aliases` (`previous_id`) |
//!
//! Every row but `users` carries the reserved columns `id` (the messageId), `anonymous_id`,
//! `user_id`, `received_at`, `sent_at`, `original_timestamp`, `timestamp`, `uuid_ts`, `loaded_at`
//! and the flattened `context_*` columns (`context.library.name` → `context_library_name`); track
//! rows add `event` (the slug) and `event_text` (the name as sent).
//!
//! Properties and traits become snake_case columns, nested objects flattened with `_`, arrays
//! stored as JSON text (see [`crate::infer::InferMode::Segment`]). **A property or trait whose column
//! would be one of the table's reserved columns, or start with `context_`, is dropped** (a
//! property called `user_id` never overwrites the reserved `user_id`); each drop is logged at
//! debug level.
//!
//! `timestamp` is corrected for the client's clock the way Segment does: `received_at -
//! (sent_at - original_timestamp)` when both `sentAt` and the client's timestamp are present, else
//! the client's timestamp, else `received_at`. `received_at` is the payload's `receivedAt` when
//! present, else the caller's `now`; `uuid_ts` and `loaded_at` are `now`. A message without a
//! `messageId` gets a stable `id` derived from its content, so a replayed message keeps its id.

use std::fmt;

use bqsink_core::{Field, FieldType, PartitionType, Record, Schema, TimePartitioning, Timestamp, Value};
use tracing::debug;

use crate::infer::{normalize_record, InferMode};
use crate::naming::{sanitize_column_name, table_slug};

/// The tables Segment's layout always has (per-event tables come on top).
pub const BASE_TABLES: [&str; 7] = ["tracks", "identifies", "users", "pages", "screens", "groups", "aliases"];

/// Column every table is partitioned on by default.
pub const PARTITION_COLUMN: &str = "received_at";

/// Suffix given to an event table whose slug is one of [`BASE_TABLES`] (an event called
/// "Pages" lands in `pages_event`).
pub const EVENT_TABLE_CLASH_SUFFIX: &str = "_event";

/// Reserved columns of every row but `users`, in table order.
pub const COMMON_COLUMNS: [(&str, FieldType); 9] = [
    ("id", FieldType::String),
    ("anonymous_id", FieldType::String),
    ("user_id", FieldType::String),
    ("received_at", FieldType::Timestamp),
    ("sent_at", FieldType::Timestamp),
    ("original_timestamp", FieldType::Timestamp),
    ("timestamp", FieldType::Timestamp),
    ("uuid_ts", FieldType::Timestamp),
    ("loaded_at", FieldType::Timestamp),
];

/// What [`rows_from_payload`] produces besides the base rows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentOptions {
    /// Write each track call also to its event's own table (default `true`).
    pub event_tables: bool,
    /// Write each identify call with a user id also to `users` (default `true`).
    pub users_table: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self { event_tables: true, users_table: true }
    }
}

impl SegmentOptions {
    /// With or without per-event tables.
    pub fn with_event_tables(mut self, on: bool) -> Self {
        self.event_tables = on;
        self
    }
    /// With or without the `users` table.
    pub fn with_users_table(mut self, on: bool) -> Self {
        self.users_table = on;
        self
    }
}

/// One row for one table.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentRow {
    /// Table name (already valid; see [`crate::naming::validate_table_name`]).
    pub table: String,
    /// The row, with typed timestamps and loose property values.
    pub record: Record,
}

/// Where in the input a payload was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line of the input, when read from lines.
    pub line: Option<u64>,
    /// 0-based index inside a `batch` envelope.
    pub item: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.item) {
            (Some(l), Some(i)) => write!(f, "line {l}, batch item {i}: "),
            (Some(l), None) => write!(f, "line {l}: "),
            (None, Some(i)) => write!(f, "batch item {i}: "),
            (None, None) => Ok(()),
        }
    }
}

/// A payload that cannot become rows; the message names the line and batch item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The line is not JSON.
    #[error("{at}not valid JSON: {message}")]
    Json {
        /// Where.
        at: Position,
        /// The parser's message.
        message: String,
    },
    /// A payload (or batch item) that is not a JSON object.
    #[error("{at}expected a JSON object, got {found}")]
    NotAnObject {
        /// Where.
        at: Position,
        /// The JSON kind found.
        found: &'static str,
    },
    /// No `type`, or one Segment does not define.
    #[error("{at}unknown call type {found} (expected track, identify, page, screen, group or alias)")]
    UnknownType {
        /// Where.
        at: Position,
        /// What `type` held (`missing` when absent).
        found: String,
    },
    /// A field the call needs is missing or empty.
    #[error("{at}{call} call without `{field}`")]
    MissingField {
        /// Where.
        at: Position,
        /// The call type.
        call: &'static str,
        /// The payload field.
        field: &'static str,
    },
    /// A field has the wrong JSON type or an unreadable value.
    #[error("{at}`{field}`: {message}")]
    BadField {
        /// Where.
        at: Position,
        /// The payload field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The six calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `track`: an event.
    Track,
    /// `identify`: a user's traits.
    Identify,
    /// `page`: a page view.
    Page,
    /// `screen`: a screen view.
    Screen,
    /// `group`: a user joins a group.
    Group,
    /// `alias`: two ids of one user.
    Alias,
}

impl Call {
    /// The call a payload's `type` names (ASCII case ignored).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }
    /// Its name in a payload's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }
}

/// The table a track event lands in: [`table_slug`] of its name, with
/// [`EVENT_TABLE_CLASH_SUFFIX`] when that is a base table's name or the name of one of the
/// default analysis views (`sessions`, `users_current`, `*_deduped`; see [`crate::views`](mod@crate::views)).
pub fn event_table_name(event: &str) -> String {
    use crate::views::{DEFAULT_DEDUP_SUFFIX, DEFAULT_SESSIONS_VIEW, DEFAULT_USERS_VIEW};
    let slug = table_slug(event);
    if BASE_TABLES.contains(&slug.as_str())
        || slug == DEFAULT_SESSIONS_VIEW
        || slug == DEFAULT_USERS_VIEW
        || slug.ends_with(DEFAULT_DEDUP_SUFFIX)
    {
        slug + EVENT_TABLE_CLASH_SUFFIX
    } else {
        slug
    }
}

/// The fixed columns of a base table (`tracks`, `users`, …) or, for any other name, of a
/// per-event table; all NULLABLE. Context, property and trait columns come on top, inferred.
pub fn table_schema(table: &str) -> Schema {
    let common = || COMMON_COLUMNS.iter().map(|(n, t)| Field::new(*n, *t)).collect::<Vec<_>>();
    let mut fields = match table {
        "users" => vec![
            Field::new("id", FieldType::String),
            Field::new("received_at", FieldType::Timestamp),
            Field::new("uuid_ts", FieldType::Timestamp),
            Field::new("loaded_at", FieldType::Timestamp),
        ],
        _ => common(),
    };
    match table {
        "users" | "identifies" => {}
        "pages" | "screens" => {
            fields.push(Field::new("name", FieldType::String));
            fields.push(Field::new("category", FieldType::String));
        }
        "groups" => fields.push(Field::new("group_id", FieldType::String)),
        "aliases" => fields.push(Field::new("previous_id", FieldType::String)),
        // `tracks` and every event table.
        _ => {
            fields.push(Field::new("event", FieldType::String));
            fields.push(Field::new("event_text", FieldType::String));
        }
    }
    Schema::new(fields)
}

/// Default partitioning of every Segment table: by DAY on `received_at`.
pub fn default_partitioning() -> TimePartitioning {
    TimePartitioning {
        partition_type: PartitionType::Day,
        field: Some(PARTITION_COLUMN.to_owned()),
        require_partition_filter: false,
    }
}

/// Whether a property or trait column is dropped from `table` (reserved or `context_*`).
pub fn is_reserved_column(table: &str, column: &str) -> bool {
    column.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("context_"))
        || table_schema(table).field(column).is_some()
        || COMMON_COLUMNS.iter().any(|(n, _)| n.eq_ignore_ascii_case(column))
}

/// Rows of one line of NDJSON input (one payload or one batch envelope). `line` is 1-based and
/// only used in errors.
pub fn rows_from_line(
    line: &str,
    line_no: u64,
    now: Timestamp,
    opts: &SegmentOptions,
) -> Result<Vec<SegmentRow>, SegmentError> {
    let at = Position { line: Some(line_no), item: None };
    // Trimmed as the NDJSON and Segment transcoders and the scanner trim a line (any Unicode
    // space, a byte-order mark), so a payload makes the same rows whichever path reads it.
    let line = line.trim().trim_start_matches('\u{feff}');
    let payload: serde_json::Value =
        serde_json::from_str(line).map_err(|e| SegmentError::Json { at, message: e.to_string() })?;
    rows_at(&payload, at, now, opts)
}

/// Rows of one payload: a single call, or a `{"batch": [...]}` envelope whose `context`,
/// `sentAt` and `receivedAt` apply to items lacking their own.
pub fn rows_from_payload(
    payload: &serde_json::Value,
    now: Timestamp,
    opts: &SegmentOptions,
) -> Result<Vec<SegmentRow>, SegmentError> {
    rows_at(payload, Position::default(), now, opts)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

type JsonMap = serde_json::Map<String, serde_json::Value>;

fn rows_at(
    payload: &serde_json::Value,
    at: Position,
    now: Timestamp,
    opts: &SegmentOptions,
) -> Result<Vec<SegmentRow>, SegmentError> {
    let Some(obj) = payload.as_object() else {
        return Err(SegmentError::NotAnObject { at, found: kind(payload) });
    };
    let Some(batch) = obj.get("batch") else {
        let mut rows = Vec::with_capacity(2);
        message_rows(obj, None, at, now, opts, &mut rows)?;
        return Ok(rows);
    };
    let Some(items) = batch.as_array() else {
        return Err(SegmentError::BadField {
            at,
            field: "batch",
            message: format!("expected an array, got {}", kind(batch)),
        });
    };
    let mut rows = Vec::with_capacity(items.len() * 2);
    for (i, item) in items.iter().enumerate() {
        let at = Position { item: Some(i), ..at };
        let Some(msg) = item.as_object() else {
            return Err(SegmentError::NotAnObject { at, found: kind(item) });
        };
        message_rows(msg, Some(obj), at, now, opts, &mut rows)?;
    }
    Ok(rows)
}

/// A field of the message, else of the envelope.
fn field<'a>(msg: &'a JsonMap, envelope: Option<&'a JsonMap>, name: &str) -> Option<&'a serde_json::Value> {
    msg.get(name).filter(|v| !v.is_null()).or_else(|| envelope.and_then(|e| e.get(name)).filter(|v| !v.is_null()))
}

fn timestamp_field(
    msg: &JsonMap,
    envelope: Option<&JsonMap>,
    name: &'static str,
    at: Position,
) -> Result<Option<Timestamp>, SegmentError> {
    match field(msg, envelope, name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Timestamp::parse(s).map(Some).ok_or_else(|| SegmentError::BadField {
            at,
            field: name,
            message: format!("not an ISO-8601 timestamp: {:?}", truncate(s, 40)),
        }),
        Some(other) => {
            Err(SegmentError::BadField { at, field: name, message: format!("expected a string, got {}", kind(other)) })
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// An id field as text: strings as they are, numbers as their digits (Segment accepts both).
fn id_field(msg: &JsonMap, name: &'static str, at: Position) -> Result<Option<String>, SegmentError> {
    match msg.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(SegmentError::BadField {
            at,
            field: name,
            message: format!("expected a string or a number, got {}", kind(other)),
        }),
    }
}

fn object_field(msg: &JsonMap, name: &'static str, at: Position) -> Result<Option<Record>, SegmentError> {
    match msg.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => match Value::from(v.clone()) {
            Value::Record(r) => Ok(Some(normalize_record(&r, InferMode::Segment))),
            _ => Ok(None),
        },
        Some(other) => {
            Err(SegmentError::BadField { at, field: name, message: format!("expected an object, got {}", kind(other)) })
        }
    }
}

/// The row's `timestamp`: the client's time corrected for its clock's skew, `received_at -
/// (sent_at - original)`, when both are known; else the client's time; else `received_at`.
pub fn corrected_timestamp(
    received_at: Timestamp,
    sent_at: Option<Timestamp>,
    original: Option<Timestamp>,
) -> Timestamp {
    match (sent_at, original) {
        (Some(sent), Some(orig)) => received_at
            .micros()
            .checked_sub(sent.micros().saturating_sub(orig.micros()))
            .and_then(Timestamp::from_micros)
            .unwrap_or(orig),
        (_, Some(orig)) => orig,
        _ => received_at,
    }
}

/// A stable id for a message without `messageId`: 128 bits of FNV-1a over its JSON text.
fn derived_id(msg: &JsonMap) -> String {
    let text = serde_json::Value::Object(msg.clone()).to_string();
    let fnv = |seed: u64| text.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("bqsink-{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

fn message_rows(
    msg: &JsonMap,
    envelope: Option<&JsonMap>,
    at: Position,
    now: Timestamp,
    opts: &SegmentOptions,
    rows: &mut Vec<SegmentRow>,
) -> Result<(), SegmentError> {
    let call = match msg.get("type") {
        None | Some(serde_json::Value::Null) => return Err(SegmentError::UnknownType { at, found: "missing".into() }),
        Some(serde_json::Value::String(s)) => {
            Call::parse(s).ok_or_else(|| SegmentError::UnknownType { at, found: format!("`{}`", truncate(s, 40)) })?
        }
        Some(other) => return Err(SegmentError::UnknownType { at, found: kind(other).into() }),
    };

    let received_at = timestamp_field(msg, envelope, "receivedAt", at)?.unwrap_or(now);
    let sent_at = timestamp_field(msg, envelope, "sentAt", at)?;
    let original = match timestamp_field(msg, None, "originalTimestamp", at)? {
        Some(t) => Some(t),
        None => timestamp_field(msg, None, "timestamp", at)?,
    };
    let timestamp = corrected_timestamp(received_at, sent_at, original);
    let id = match id_field(msg, "messageId", at)? {
        Some(id) => id,
        None => derived_id(msg),
    };
    let user_id = id_field(msg, "userId", at)?;
    let anonymous_id = id_field(msg, "anonymousId", at)?;

    let mut common = Record::with_capacity(24);
    common.push("id", Value::String(id));
    common.push("anonymous_id", Value::from(anonymous_id));
    common.push("user_id", Value::from(user_id.clone()));
    common.push("received_at", Value::Timestamp(received_at));
    common.push("sent_at", Value::from(sent_at));
    common.push("original_timestamp", Value::from(original));
    common.push("timestamp", Value::Timestamp(timestamp));
    common.push("uuid_ts", Value::Timestamp(now));
    common.push("loaded_at", Value::Timestamp(now));
    let context = match msg.get("context") {
        Some(serde_json::Value::Object(_)) => object_field(msg, "context", at)?,
        _ => match envelope {
            Some(env) => object_field(env, "context", at)?,
            None => object_field(msg, "context", at)?,
        },
    };
    if let Some(ctx) = context {
        for (name, value) in ctx {
            common.push(sanitize_column_name(&format!("context_{name}")), value);
        }
    }

    let text_field = |name: &'static str| -> Result<Option<String>, SegmentError> {
        match msg.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(SegmentError::BadField {
                at,
                field: name,
                message: format!("expected a string, got {}", kind(other)),
            }),
        }
    };

    match call {
        Call::Track => {
            let event_text = text_field("event")?
                .filter(|e| !e.trim().is_empty())
                .ok_or(SegmentError::MissingField { at, call: call.name(), field: "event" })?;
            let table = event_table_name(&event_text);
            let mut tracks = common;
            tracks.push("event", Value::String(table.clone()));
            tracks.push("event_text", Value::String(event_text));
            if opts.event_tables {
                let mut per_event = tracks.clone();
                add_custom(&mut per_event, &table, object_field(msg, "properties", at)?);
                rows.push(SegmentRow { table: "tracks".into(), record: tracks });
                rows.push(SegmentRow { table, record: per_event });
            } else {
                rows.push(SegmentRow { table: "tracks".into(), record: tracks });
            }
        }
        Call::Identify => {
            let traits = object_field(msg, "traits", at)?;
            if let (true, Some(uid)) = (opts.users_table, &user_id) {
                let mut user = Record::with_capacity(8);
                user.push("id", Value::String(uid.clone()));
                user.push("received_at", Value::Timestamp(received_at));
                user.push("uuid_ts", Value::Timestamp(now));
                user.push("loaded_at", Value::Timestamp(now));
                add_custom(&mut user, "users", traits.clone());
                let mut identifies = common;
                add_custom(&mut identifies, "identifies", traits);
                rows.push(SegmentRow { table: "identifies".into(), record: identifies });
                rows.push(SegmentRow { table: "users".into(), record: user });
            } else {
                let mut identifies = common;
                add_custom(&mut identifies, "identifies", traits);
                rows.push(SegmentRow { table: "identifies".into(), record: identifies });
            }
        }
        Call::Page | Call::Screen => {
            let table = if call == Call::Page { "pages" } else { "screens" };
            let mut row = common;
            row.push("name", Value::from(text_field("name")?));
            row.push("category", Value::from(text_field("category")?));
            add_custom(&mut row, table, object_field(msg, "properties", at)?);
            rows.push(SegmentRow { table: table.into(), record: row });
        }
        Call::Group => {
            let group_id = id_field(msg, "groupId", at)?.ok_or(SegmentError::MissingField {
                at,
                call: call.name(),
                field: "groupId",
            })?;
            let mut row = common;
            row.push("group_id", Value::String(group_id));
            add_custom(&mut row, "groups", object_field(msg, "traits", at)?);
            rows.push(SegmentRow { table: "groups".into(), record: row });
        }
        Call::Alias => {
            let previous = id_field(msg, "previousId", at)?.ok_or(SegmentError::MissingField {
                at,
                call: call.name(),
                field: "previousId",
            })?;
            let mut row = common;
            row.push("previous_id", Value::String(previous));
            rows.push(SegmentRow { table: "aliases".into(), record: row });
        }
    }
    Ok(())
}

/// Adds property or trait columns, dropping those that clash with the table's reserved ones.
fn add_custom(row: &mut Record, table: &str, custom: Option<Record>) {
    let Some(custom) = custom else { return };
    for (name, value) in custom {
        if is_reserved_column(table, &name) {
            debug!(table, column = %name, "property or trait dropped: it clashes with a reserved column");
            continue;
        }
        row.push(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::Mode;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::parse("2024-06-01T12:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn rows(payload: serde_json::Value) -> Vec<SegmentRow> {
        rows_from_payload(&payload, now(), &SegmentOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ts(s: &str) -> Value {
        Value::Timestamp(Timestamp::parse(s).unwrap_or_else(|| panic!("{s}")))
    }

    fn names(r: &Record) -> Vec<&str> {
        r.iter().map(|(k, _)| k).collect()
    }

    /// Found by fuzzing: a payload followed by vertical tabs made rows through the scanner and
    /// the transcoder (which trim any Unicode space) but was refused here.
    #[test]
    fn a_line_is_trimmed_as_the_transcoders_trim_it() {
        let payload = r#"{"type":"track","event":"Signed Up","userId":"u","messageId":"m"}"#;
        let opts = SegmentOptions::default();
        let plain = rows_from_line(payload, 1, now(), &opts).unwrap_or_else(|e| panic!("{e}"));
        for line in [format!("{payload}\u{b}\u{b}"), format!("\u{feff}{payload}"), format!("\u{a0}{payload}\r")] {
            let got = rows_from_line(&line, 1, now(), &opts).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(got.len(), plain.len(), "{line:?}");
        }
        assert!(rows_from_line("\u{b}", 1, now(), &opts).is_err());
    }

    #[test]
    fn track_lands_in_tracks_and_its_event_table() {
        let out = rows(json!({
            "type": "track", "event": "Order Completed", "messageId": "m1", "userId": "u1", "anonymousId": "a1",
            "properties": {"orderId": "o-1", "Total Price": 12.5, "user_id": "spoof", "context_ip": "x", "event": "no"},
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics.js", "version": "2.0"}, "page": {"url": "https://x"}},
            "timestamp": "2024-06-01T11:59:00Z", "sentAt": "2024-06-01T11:59:30Z", "receivedAt": "2024-06-01T11:59:40Z",
        }));
        assert_eq!(out.len(), 2);
        let (tracks, event) = (&out[0], &out[1]);
        assert_eq!((tracks.table.as_str(), event.table.as_str()), ("tracks", "order_completed"));
        assert_eq!(tracks.record.get("event"), Some(&Value::String("order_completed".into())));
        assert_eq!(tracks.record.get("event_text"), Some(&Value::String("Order Completed".into())));
        assert_eq!(tracks.record.get("context_library_name"), Some(&Value::String("analytics.js".into())));
        assert_eq!(tracks.record.get("context_page_url"), Some(&Value::String("https://x".into())));
        assert_eq!(tracks.record.get("context_ip"), Some(&Value::String("1.2.3.4".into())));
        assert_eq!(tracks.record.get("order_id"), None, "tracks carries no properties");
        assert_eq!(event.record.get("order_id"), Some(&Value::String("o-1".into())));
        assert_eq!(event.record.get("total_price"), Some(&Value::Float64(12.5)));
        assert_eq!(event.record.get("user_id"), Some(&Value::String("u1".into())), "reserved column kept");
        assert_eq!(event.record.get("context_ip"), Some(&Value::String("1.2.3.4".into())));
        assert_eq!(event.record.get("event"), Some(&Value::String("order_completed".into())));
        // Skew: the client clock is 30 s behind the server's receipt minus transit time.
        assert_eq!(tracks.record.get("timestamp"), Some(&ts("2024-06-01T11:59:10Z")));
        assert_eq!(tracks.record.get("original_timestamp"), Some(&ts("2024-06-01T11:59:00Z")));
        assert_eq!(tracks.record.get("received_at"), Some(&ts("2024-06-01T11:59:40Z")));
        assert_eq!(tracks.record.get("uuid_ts"), Some(&Value::Timestamp(now())));
        assert_eq!(tracks.record.get("loaded_at"), Some(&Value::Timestamp(now())));
        let fixed: Vec<&str> = names(&tracks.record)[..9].to_vec();
        assert_eq!(
            fixed,
            [
                "id",
                "anonymous_id",
                "user_id",
                "received_at",
                "sent_at",
                "original_timestamp",
                "timestamp",
                "uuid_ts",
                "loaded_at"
            ]
        );
    }

    #[test]
    fn timestamps_fall_back_in_order() {
        let only_client = rows(json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z"}));
        assert_eq!(only_client[0].record.get("timestamp"), Some(&ts("2024-01-01T00:00:00Z")));
        assert_eq!(only_client[0].record.get("received_at"), Some(&Value::Timestamp(now())));
        let nothing = rows(json!({"type": "page", "anonymousId": "a", "sentAt": "2024-01-01T00:00:00Z"}));
        assert_eq!(nothing[0].record.get("timestamp"), Some(&Value::Timestamp(now())));
        assert_eq!(nothing[0].record.get("original_timestamp"), Some(&Value::Null));
        let original = rows(json!({"type": "screen", "anonymousId": "a", "originalTimestamp": "2024-06-01T11:00:00Z",
            "timestamp": "2024-06-01T11:30:00Z", "sentAt": "2024-06-01T11:00:05Z"}));
        assert_eq!(original[0].record.get("timestamp"), Some(&ts("2024-06-01T11:59:55Z")));
    }

    #[test]
    fn identify_writes_identifies_and_users() {
        let out = rows(json!({"type": "identify", "userId": 42, "messageId": "i1",
            "traits": {"firstName": "Ada", "address": {"city": "London"}, "tags": ["a", "b"], "id": "nope", "received_at": 1}}));
        assert_eq!(out.iter().map(|r| r.table.as_str()).collect::<Vec<_>>(), ["identifies", "users"]);
        assert_eq!(out[0].record.get("user_id"), Some(&Value::String("42".into())));
        assert_eq!(out[0].record.get("first_name"), Some(&Value::String("Ada".into())));
        assert_eq!(out[0].record.get("address_city"), Some(&Value::String("London".into())));
        assert_eq!(out[0].record.get("tags"), Some(&Value::String(r#"["a","b"]"#.into())));
        assert_eq!(out[0].record.get("id"), Some(&Value::String("i1".into())));
        let user = &out[1].record;
        assert_eq!(names(user), ["id", "received_at", "uuid_ts", "loaded_at", "address_city", "first_name", "tags"]);
        assert_eq!(user.get("id"), Some(&Value::String("42".into())));
        let anonymous = rows(json!({"type": "identify", "anonymousId": "a", "traits": {"x": 1}}));
        assert_eq!(anonymous.len(), 1, "no users row without a user id");
    }

    #[test]
    fn group_alias_page_screen() {
        let out = rows(json!({"batch": [
            {"type": "group", "groupId": "g1", "userId": "u", "traits": {"employeeCount": 12, "group_id": "x"}},
            {"type": "alias", "previousId": "anon-1", "userId": "u"},
            {"type": "page", "name": "Home", "properties": {"path": "/", "url": "https://x/", "title": "Hi", "referrer": "", "search": "?q"}},
            {"type": "screen", "name": "Settings", "context": {"app": {"version": "1"}}},
        ], "context": {"library": {"name": "lib"}}, "sentAt": "2024-06-01T11:59:00Z"}));
        let tables: Vec<&str> = out.iter().map(|r| r.table.as_str()).collect();
        assert_eq!(tables, ["groups", "aliases", "pages", "screens"]);
        assert_eq!(out[0].record.get("group_id"), Some(&Value::String("g1".into())));
        assert_eq!(out[0].record.get("employee_count"), Some(&Value::Int64(12)));
        assert_eq!(out[1].record.get("previous_id"), Some(&Value::String("anon-1".into())));
        for col in ["path", "url", "title", "referrer", "search", "name"] {
            assert!(out[2].record.get(col).is_some(), "{col}");
        }
        assert_eq!(out[0].record.get("context_library_name"), Some(&Value::String("lib".into())));
        assert_eq!(out[3].record.get("context_app_version"), Some(&Value::String("1".into())));
        assert_eq!(out[3].record.get("context_library_name"), None, "an item's own context wins");
        assert_eq!(out[0].record.get("sent_at"), Some(&ts("2024-06-01T11:59:00Z")));
    }

    #[test]
    fn errors_name_the_line_and_item() {
        let err = |line: &str| {
            rows_from_line(line, 7, now(), &SegmentOptions::default()).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(
            err(r#"{"event":"x"}"#),
            "line 7: unknown call type missing (expected track, identify, page, screen, group or alias)"
        );
        assert_eq!(
            err(r#"{"type":"shout"}"#),
            "line 7: unknown call type `shout` (expected track, identify, page, screen, group or alias)"
        );
        assert_eq!(
            err(r#"{"batch":[{"type":"page"},{"type":"track"}]}"#),
            "line 7, batch item 1: track call without `event`"
        );
        assert_eq!(err("[1]"), "line 7: expected a JSON object, got an array");
        assert!(err("{").starts_with("line 7: not valid JSON"));
        assert_eq!(err(r#"{"batch":[3]}"#), "line 7, batch item 0: expected a JSON object, got a number");
        assert_eq!(err(r#"{"type":"group"}"#), "line 7: group call without `groupId`");
        assert_eq!(err(r#"{"type":"alias"}"#), "line 7: alias call without `previousId`");
        assert!(err(r#"{"type":"page","timestamp":"yesterday"}"#).starts_with("line 7: `timestamp`: not an ISO-8601"));
        assert_eq!(
            err(r#"{"type":"page","properties":[1]}"#),
            "line 7: `properties`: expected an object, got an array"
        );
    }

    #[test]
    fn ids_are_stable_when_missing() {
        let a = rows(json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z"}));
        let b = rows(json!({"anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z", "type": "page"}));
        let c = rows(json!({"type": "page", "anonymousId": "b", "timestamp": "2024-01-01T00:00:00Z"}));
        assert_eq!(a[0].record.get("id"), b[0].record.get("id"));
        assert_ne!(a[0].record.get("id"), c[0].record.get("id"));
    }

    #[test]
    fn event_tables_avoid_base_names_and_options_turn_rows_off() {
        assert_eq!(event_table_name("Pages"), "pages_event");
        assert_eq!(event_table_name("Signed Up"), "signed_up");
        assert_eq!(event_table_name("Sessions"), "sessions_event");
        assert_eq!(event_table_name("Cart Deduped"), "cart_deduped_event");
        let opts = SegmentOptions::default().with_event_tables(false).with_users_table(false);
        let t = rows_from_payload(&json!({"type": "track", "event": "E", "userId": "u"}), now(), &opts);
        assert_eq!(t.map(|r| r.len()).ok(), Some(1));
        let i = rows_from_payload(&json!({"type": "identify", "userId": "u"}), now(), &opts);
        assert_eq!(i.map(|r| r.len()).ok(), Some(1));
    }

    #[test]
    fn fixed_schemas_and_partitioning() {
        for t in BASE_TABLES {
            let s = table_schema(t);
            assert!(s.validate().is_ok(), "{t}");
            assert!(s.field("received_at").is_some(), "{t}");
            assert!(s.fields.iter().all(|f| f.mode == Mode::Nullable));
        }
        assert!(table_schema("users").field("user_id").is_none());
        assert!(table_schema("order_completed").field("event_text").is_some());
        assert!(table_schema("groups").field("group_id").is_some());
        assert!(table_schema("aliases").field("previous_id").is_some());
        let p = default_partitioning();
        assert_eq!((p.partition_type, p.field.as_deref()), (PartitionType::Day, Some("received_at")));
        assert!(is_reserved_column("order_completed", "EVENT_TEXT"));
        assert!(is_reserved_column("users", "context_x"));
        assert!(!is_reserved_column("users", "email"));
    }
}
