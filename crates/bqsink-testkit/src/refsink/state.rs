//! The sink's state: datasets, tables (schema, metadata, visible rows), write streams, auth and
//! counters, behind one `Arc<Shared>` that the gRPC and REST servers share.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value as Json};
use tokio::sync::watch;

use super::faults::FaultHandle;
use super::schema::{ColMode, ColType, Column};
use super::SinkStats;

/// One stored row: column name → cell, in the form [`super::RefSink::rows`] returns.
pub(crate) type Row = Map<String, Json>;
/// (project, dataset, table).
pub(crate) type TableKey = (String, String, String);

/// Everything both servers share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    auth: Mutex<Auth>,
    stats: Mutex<SinkStats>,
    pub(crate) faults: FaultHandle,
    /// Set when the sink stops: open AppendRows connections end.
    pub(crate) closing: watch::Sender<bool>,
    /// Rows of default streams are checked and counted but not kept (memory tests).
    pub(crate) discard: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Auth {
    required: Option<String>,
    seen: Vec<String>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            auth: Mutex::new(Auth::default()),
            stats: Mutex::new(SinkStats::default()),
            faults: FaultHandle::new(),
            closing: watch::channel(false).0,
            discard: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stat(&self, f: impl FnOnce(&mut SinkStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn stats(&self) -> SinkStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn require_bearer(&self, token: &str) {
        self.auth().required = Some(token.to_owned());
    }

    pub(crate) fn seen_authorization(&self) -> Vec<String> {
        self.auth().seen.clone()
    }

    /// Records an `authorization` header (when present) and checks it against the required token.
    pub(crate) fn check_auth(&self, header: Option<&str>) -> Result<(), String> {
        let mut auth = self.auth();
        if let Some(h) = header {
            auth.seen.push(h.to_owned());
        }
        let Some(token) = &auth.required else { return Ok(()) };
        match header {
            None => Err("Request is missing required authentication credential. Expected OAuth 2 access token.".into()),
            Some(h) if h.strip_prefix("Bearer ").is_some_and(|t| t == token) => Ok(()),
            Some(_) => Err("Request had invalid authentication credentials. Expected OAuth 2 access token.".into()),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) datasets: BTreeMap<(String, String), Dataset>,
    /// Write streams created by CreateWriteStream, by full name.
    pub(crate) streams: HashMap<String, WriteStream>,
    next_id: u64,
}

#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) location: String,
    pub(crate) created_ms: i64,
    pub(crate) etag: String,
    pub(crate) tables: BTreeMap<String, Table>,
}

#[derive(Debug)]
pub(crate) struct Table {
    /// Unique for the sink's lifetime: a table deleted and created again is another table.
    pub(crate) uid: u64,
    pub(crate) schema: Vec<Column>,
    /// Bumped on each schema change.
    pub(crate) schema_version: u64,
    pub(crate) time_partitioning: Option<Json>,
    pub(crate) clustering: Option<Json>,
    pub(crate) description: Option<String>,
    pub(crate) etag: String,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
    /// Visible rows.
    pub(crate) rows: Vec<Row>,
}

/// Stream types of CreateWriteStream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Committed,
    Pending,
    Buffered,
}

#[derive(Debug)]
pub(crate) struct WriteStream {
    pub(crate) table: TableKey,
    pub(crate) table_uid: u64,
    pub(crate) kind: StreamKind,
    pub(crate) created: SystemTime,
    pub(crate) finalized: bool,
    pub(crate) commit_time: Option<SystemTime>,
    /// Rows appended so far (the next offset).
    pub(crate) row_count: i64,
    /// PENDING: every row, until committed. BUFFERED: rows not flushed yet, from offset `flushed`.
    pub(crate) held: Vec<Row>,
    pub(crate) flushed: i64,
}

impl State {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn table(&self, key: &TableKey) -> Option<&Table> {
        self.datasets.get(&(key.0.clone(), key.1.clone()))?.tables.get(&key.2)
    }

    pub(crate) fn table_mut(&mut self, key: &TableKey) -> Option<&mut Table> {
        self.datasets.get_mut(&(key.0.clone(), key.1.clone()))?.tables.get_mut(&key.2)
    }

    pub(crate) fn new_dataset(&mut self, location: String) -> Dataset {
        Dataset { location, created_ms: now_ms(), etag: etag(), tables: BTreeMap::new() }
    }

    pub(crate) fn new_table(&mut self, schema: Vec<Column>) -> Table {
        let now = now_ms();
        Table {
            uid: self.next_id(),
            schema,
            schema_version: 1,
            time_partitioning: None,
            clustering: None,
            description: None,
            etag: etag(),
            created_ms: now,
            modified_ms: now,
            rows: Vec::new(),
        }
    }
}

/// A fresh entity tag (BigQuery's are opaque base64 strings).
pub(crate) fn etag() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `projects/P/datasets/D/tables/T`.
pub(crate) fn parse_table_path(s: &str) -> Option<TableKey> {
    let p: Vec<&str> = s.split('/').collect();
    match p.as_slice() {
        ["projects", pr, "datasets", d, "tables", t] if !pr.is_empty() && !d.is_empty() && !t.is_empty() => {
            Some(((*pr).to_owned(), (*d).to_owned(), (*t).to_owned()))
        }
        _ => None,
    }
}

/// `projects/P/datasets/D/tables/T/streams/S` → (table, S).
pub(crate) fn parse_stream_path(s: &str) -> Option<(TableKey, String)> {
    let (table, stream) = s.rsplit_once("/streams/")?;
    if stream.is_empty() || stream.contains('/') {
        return None;
    }
    Some((parse_table_path(table)?, stream.to_owned()))
}

pub(crate) fn table_path(key: &TableKey) -> String {
    format!("projects/{}/datasets/{}/tables/{}", key.0, key.1, key.2)
}

/// A stored row rendered with the table's current schema: columns added since it was written
/// read as `null` (or `[]` when REPEATED), also inside RECORDs.
pub(crate) fn render_row(row: &Row, columns: &[Column]) -> Row {
    let mut out = Map::with_capacity(columns.len());
    for c in columns {
        out.insert(c.name.clone(), render_cell(row.get(&c.name), c));
    }
    out
}

fn render_cell(v: Option<&Json>, c: &Column) -> Json {
    match (v, c.mode, c.ty) {
        (None | Some(Json::Null), ColMode::Repeated, _) => Json::Array(Vec::new()),
        (None, _, _) => Json::Null,
        (Some(Json::Array(items)), ColMode::Repeated, ColType::Record) => Json::Array(
            items
                .iter()
                .map(|i| i.as_object().map_or(Json::Null, |o| Json::Object(render_row(o, &c.fields))))
                .collect(),
        ),
        (Some(Json::Object(o)), _, ColType::Record) => Json::Object(render_row(o, &c.fields)),
        (Some(other), _, _) => other.clone(),
    }
}
