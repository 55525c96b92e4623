//! The `google.cloud.bigquery.storage.v1.BigQueryWrite` service.
//!
//! Behaviour and its sources (Storage Write API reference, "RPC reference: BigQueryWrite" and its
//! messages, and the guide "Overview of the BigQuery Storage Write API" / "Stream offsets"):
//!
//! - AppendRows: `write_stream` and the writer schema are required on a connection's first
//!   request and may be omitted afterwards (`AppendRowsRequest.write_stream`,
//!   `ProtoData.writer_schema`). Responses come one per request, in order.
//! - A writer schema that does not fit the table (a field with no column, an incompatible type,
//!   repeated vs not, a REQUIRED column missing) fails the call with INVALID_ARGUMENT
//!   (`StorageErrorCode.SCHEMA_MISMATCH_EXTRA_FIELDS` for extra fields). So do an unknown
//!   stream or table (NOT_FOUND).
//! - Rows refused by value: `AppendRowsResponse.row_errors` (index, FIELDS_ERROR, message) with
//!   `error` INVALID_ARGUMENT, and none of the request's rows is stored ("if present, it indicates
//!   rows were not accepted into the system"); the connection stays open.
//! - Offsets (`AppendRowsRequest.offset`; `AppendRowsResponse.error` codes): equal to the stream's
//!   end → appended; below → ALREADY_EXISTS; beyond → OUT_OF_RANGE; not allowed on `_default`.
//!   `AppendResult.offset` is not set on the default stream.
//! - Stream types (`WriteStream.Type`): COMMITTED rows are visible at once, PENDING rows after
//!   BatchCommitWriteStreams, BUFFERED rows after FlushRows (up to and including the offset).
//!   Finalized streams accept no appends (STREAM_FINALIZED). BatchCommitWriteStreams is atomic:
//!   any `stream_errors` → nothing committed and no `commit_time`.
//! - `updated_schema`: "if backend detects a schema update, pass it to user" — here: when the
//!   table's schema changed since the connection's previous response.
//! - Request size: 10 MB per AppendRows request ("Quotas and limits", Storage Write API).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::faults::{Ending, FailMode};
use super::proto::rpc;
use super::proto::storage as pb;
use super::schema::storage_schema;
use super::state::{parse_stream_path, parse_table_path, table_path, Shared, StreamKind, TableKey, WriteStream};
use super::writer::WriterPlan;

/// BigQuery's limit on one AppendRows request.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
const DEFAULT_STREAM: &str = "_default";

/// The service, shared by every connection.
#[derive(Debug)]
pub(crate) struct WriteService {
    shared: Arc<Shared>,
}

impl WriteService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn storage_error(code: pb::storage_error::StorageErrorCode, entity: &str, message: &str) -> pb::StorageError {
    pb::StorageError { code: code as i32, entity: entity.to_owned(), error_message: message.to_owned() }
}

fn error_status(code: Code, message: String, detail: Option<pb::StorageError>) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        message,
        details: detail
            .map(|d| prost_types::Any {
                type_url: "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError".into(),
                value: d.encode_to_vec(),
            })
            .into_iter()
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::big_query_write_server::BigQueryWrite for WriteService {
    async fn create_write_stream(
        &self,
        request: Request<pb::CreateWriteStreamRequest>,
    ) -> Result<Response<pb::WriteStream>, Status> {
        self.shared.stat(|s| s.unary_calls += 1);
        let req = request.into_inner();
        let key = parse_table_path(&req.parent).ok_or_else(|| {
            Status::invalid_argument(format!("parent `{}` is not projects/P/datasets/D/tables/T", req.parent))
        })?;
        use pb::write_stream::Type as T;
        let wanted = req.write_stream.map(|w| w.r#type).unwrap_or_default();
        let kind = match T::try_from(wanted).unwrap_or(T::Unspecified) {
            T::Committed => StreamKind::Committed,
            T::Pending => StreamKind::Pending,
            T::Buffered => StreamKind::Buffered,
            T::Unspecified => {
                return Err(Status::invalid_argument("write_stream.type must be COMMITTED, PENDING or BUFFERED"))
            }
        };
        let mut state = self.shared.state();
        let (uid, schema) = match state.table(&key) {
            Some(t) => (t.uid, storage_schema(&t.schema)),
            None => return Err(Status::not_found(format!("Table not found: {}", table_path(&key)))),
        };
        let name = format!("{}/streams/refsink-{}", table_path(&key), state.next_id());
        let created = SystemTime::now();
        state.streams.insert(
            name.clone(),
            WriteStream {
                table: key,
                table_uid: uid,
                kind,
                created,
                finalized: false,
                commit_time: None,
                row_count: 0,
                held: Vec::new(),
                flushed: 0,
            },
        );
        Ok(Response::new(pb::WriteStream {
            name,
            r#type: wanted,
            create_time: Some(timestamp(created)),
            commit_time: None,
            table_schema: Some(schema),
            write_mode: pb::write_stream::WriteMode::Insert as i32,
            location: "US".into(),
        }))
    }

    type AppendRowsStream = ReceiverStream<Result<pb::AppendRowsResponse, Status>>;

    async fn append_rows(
        &self,
        request: Request<Streaming<pb::AppendRowsRequest>>,
    ) -> Result<Response<Self::AppendRowsStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let conn = Connection {
            shared: self.shared.clone(),
            stream: None,
            descriptor: None,
            schema: None,
            seen_versions: HashMap::new(),
        };
        tokio::spawn(conn.run(inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_write_stream(
        &self,
        request: Request<pb::GetWriteStreamRequest>,
    ) -> Result<Response<pb::WriteStream>, Status> {
        self.shared.stat(|s| s.unary_calls += 1);
        let req = request.into_inner();
        let full = req.view == pb::WriteStreamView::Full as i32;
        let state = self.shared.state();
        let (key, id) = parse_stream_path(&req.name)
            .ok_or_else(|| Status::invalid_argument(format!("bad stream name `{}`", req.name)))?;
        let table =
            state.table(&key).ok_or_else(|| Status::not_found(format!("Table not found: {}", table_path(&key))))?;
        let schema = full.then(|| storage_schema(&table.schema));
        if id == DEFAULT_STREAM {
            return Ok(Response::new(pb::WriteStream {
                name: req.name,
                r#type: pb::write_stream::Type::Committed as i32,
                table_schema: schema,
                write_mode: pb::write_stream::WriteMode::Insert as i32,
                location: "US".into(),
                ..Default::default()
            }));
        }
        let s = state
            .streams
            .get(&req.name)
            .filter(|s| s.table_uid == table.uid)
            .ok_or_else(|| Status::not_found(format!("Stream not found: {}", req.name)))?;
        Ok(Response::new(pb::WriteStream {
            name: req.name.clone(),
            r#type: stream_type(s.kind) as i32,
            create_time: Some(timestamp(s.created)),
            commit_time: s.commit_time.map(timestamp),
            table_schema: schema,
            write_mode: pb::write_stream::WriteMode::Insert as i32,
            location: "US".into(),
        }))
    }

    async fn finalize_write_stream(
        &self,
        request: Request<pb::FinalizeWriteStreamRequest>,
    ) -> Result<Response<pb::FinalizeWriteStreamResponse>, Status> {
        self.shared.stat(|s| s.unary_calls += 1);
        let name = request.into_inner().name;
        if parse_stream_path(&name).is_some_and(|(_, id)| id == DEFAULT_STREAM) {
            return Err(Status::invalid_argument("the _default stream cannot be finalized"));
        }
        let mut state = self.shared.state();
        let s = state.streams.get_mut(&name).ok_or_else(|| Status::not_found(format!("Stream not found: {name}")))?;
        s.finalized = true;
        Ok(Response::new(pb::FinalizeWriteStreamResponse { row_count: s.row_count }))
    }

    async fn batch_commit_write_streams(
        &self,
        request: Request<pb::BatchCommitWriteStreamsRequest>,
    ) -> Result<Response<pb::BatchCommitWriteStreamsResponse>, Status> {
        use pb::storage_error::StorageErrorCode as E;
        self.shared.stat(|s| s.unary_calls += 1);
        let req = request.into_inner();
        let key = parse_table_path(&req.parent).ok_or_else(|| {
            Status::invalid_argument(format!("parent `{}` is not projects/P/datasets/D/tables/T", req.parent))
        })?;
        let mut state = self.shared.state();
        let uid = state
            .table(&key)
            .map(|t| t.uid)
            .ok_or_else(|| Status::not_found(format!("Table not found: {}", req.parent)))?;
        let mut names: Vec<String> = Vec::new();
        for n in req.write_streams {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut errors = Vec::new();
        for n in &names {
            let problem = match state.streams.get(n) {
                None => Some((E::StreamNotFound, "Stream not found")),
                Some(s) if s.table_uid != uid => Some((E::StreamNotFound, "the stream belongs to another table")),
                Some(s) if s.kind != StreamKind::Pending => {
                    Some((E::InvalidStreamType, "only PENDING streams are committed"))
                }
                Some(s) if s.commit_time.is_some() => Some((E::StreamAlreadyCommitted, "Stream already committed")),
                Some(s) if !s.finalized => Some((E::InvalidStreamState, "Stream is not finalized")),
                Some(_) => None,
            };
            if let Some((code, message)) = problem {
                errors.push(storage_error(code, n, &format!("{message}: {n}")));
            }
        }
        if !errors.is_empty() {
            return Ok(Response::new(pb::BatchCommitWriteStreamsResponse { commit_time: None, stream_errors: errors }));
        }
        let now = SystemTime::now();
        let mut rows = Vec::new();
        for n in &names {
            if let Some(s) = state.streams.get_mut(n) {
                s.commit_time = Some(now);
                rows.append(&mut s.held);
            }
        }
        if let Some(t) = state.table_mut(&key) {
            t.rows.extend(rows);
        }
        Ok(Response::new(pb::BatchCommitWriteStreamsResponse {
            commit_time: Some(timestamp(now)),
            stream_errors: Vec::new(),
        }))
    }

    async fn flush_rows(
        &self,
        request: Request<pb::FlushRowsRequest>,
    ) -> Result<Response<pb::FlushRowsResponse>, Status> {
        self.shared.stat(|s| s.unary_calls += 1);
        let req = request.into_inner();
        let mut state = self.shared.state();
        let s = state
            .streams
            .get_mut(&req.write_stream)
            .ok_or_else(|| Status::not_found(format!("Stream not found: {}", req.write_stream)))?;
        if s.kind != StreamKind::Buffered {
            return Err(Status::invalid_argument("FlushRows applies to BUFFERED streams only"));
        }
        let offset = req.offset.ok_or_else(|| Status::invalid_argument("FlushRows needs an offset"))?;
        if offset < 0 || offset >= s.row_count {
            return Err(Status::out_of_range(format!(
                "offset {offset} is beyond the stream's last row ({})",
                s.row_count - 1
            )));
        }
        let mut flushed = Vec::new();
        if offset >= s.flushed {
            let n = (offset + 1 - s.flushed) as usize;
            flushed = s.held.drain(..n.min(s.held.len())).collect();
            s.flushed = offset + 1;
        }
        let key = s.table.clone();
        if let Some(t) = state.table_mut(&key) {
            t.rows.extend(flushed);
        }
        Ok(Response::new(pb::FlushRowsResponse { offset }))
    }
}

/// Waits until the flag has this value (or its sender is gone).
async fn until(rx: &mut tokio::sync::watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|v| *v == value).await;
}

fn stream_type(kind: StreamKind) -> pb::write_stream::Type {
    match kind {
        StreamKind::Committed => pb::write_stream::Type::Committed,
        StreamKind::Pending => pb::write_stream::Type::Pending,
        StreamKind::Buffered => pb::write_stream::Type::Buffered,
    }
}

/// One AppendRows call.
struct Connection {
    shared: Arc<Shared>,
    /// The write stream of the previous request.
    stream: Option<String>,
    /// The latest writer schema the connection sent.
    descriptor: Option<Bytes>,
    /// That schema checked against its table.
    schema: Option<CachedSchema>,
    /// Table uid → the schema version this connection's last response reflected.
    seen_versions: HashMap<u64, u64>,
}

struct CachedSchema {
    descriptor: Bytes,
    table_uid: u64,
    version: u64,
    plan: Arc<WriterPlan>,
}

enum Outcome {
    Respond(pb::AppendRowsResponse),
    End(Status),
}

impl Connection {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::AppendRowsRequest>,
        tx: mpsc::Sender<Result<pb::AppendRowsResponse, Status>>,
    ) {
        self.shared.stat(|s| {
            s.connections += 1;
            s.open_connections += 1;
        });
        let mut closing = self.shared.closing.subscribe();
        let stopping = || Status::unavailable("the reference sink is stopping");
        loop {
            let next = tokio::select! {
                m = inbound.message() => m,
                _ = until(&mut closing, true) => { let _ = tx.send(Err(stopping())).await; break; }
            };
            let Ok(Some(req)) = next else { break };
            self.shared.stat(|s| s.append_requests += 1);

            let faults = self.shared.faults.clone();
            let delay = faults.delay();
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = until(&mut closing, true) => { let _ = tx.send(Err(stopping())).await; break; }
                }
            }
            let mut hang = faults.hang_watch();
            tokio::select! {
                _ = until(&mut hang, false) => {}
                _ = until(&mut closing, true) => { let _ = tx.send(Err(stopping())).await; break; }
            }
            let decision = faults.decide();
            match decision.end {
                Some(Ending::Unavailable) => {
                    let _ = tx
                        .send(Err(Status::unavailable("connection reset by the reference sink (injected fault)")))
                        .await;
                    break;
                }
                Some(Ending::Eof) => break,
                None => {}
            }
            if let Some((code, mode)) = decision.fail {
                self.shared.stat(|s| s.append_errors += 1);
                let message = format!("injected fault: {code:?}");
                if let Some(pb::append_rows_request::Rows::ProtoRows(data)) = &req.rows {
                    self.remember(&req.write_stream, data);
                } else {
                    self.remember(&req.write_stream, &pb::append_rows_request::ProtoData::default());
                }
                match mode {
                    FailMode::InResponse => {
                        let resp = pb::AppendRowsResponse {
                            response: Some(pb::append_rows_response::Response::Error(error_status(
                                code, message, None,
                            ))),
                            write_stream: self.stream.clone().unwrap_or_default(),
                            ..Default::default()
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    FailMode::StreamStatus => {
                        let _ = tx.send(Err(Status::new(code, message))).await;
                        break;
                    }
                }
            }
            match self.handle(req) {
                Outcome::Respond(_) if faults.answers_lost() => {}
                Outcome::Respond(resp) => {
                    if resp.response.as_ref().is_some_and(|r| matches!(r, pb::append_rows_response::Response::Error(_)))
                    {
                        self.shared.stat(|s| s.append_errors += 1);
                    }
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
                Outcome::End(status) => {
                    self.shared.stat(|s| s.append_errors += 1);
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            }
        }
        self.shared.stat(|s| s.open_connections = s.open_connections.saturating_sub(1));
    }

    fn handle(&mut self, req: pb::AppendRowsRequest) -> Outcome {
        use pb::storage_error::StorageErrorCode as E;
        let request_bytes = req.encoded_len();
        // The stream: named on the first request, remembered afterwards.
        let name = if req.write_stream.is_empty() {
            match &self.stream {
                Some(s) => s.clone(),
                None => {
                    return Outcome::End(Status::invalid_argument(
                        "write_stream is required on the first AppendRows request of a connection",
                    ))
                }
            }
        } else {
            req.write_stream.clone()
        };
        let Some((key, id)) = parse_stream_path(&name) else {
            return Outcome::End(Status::invalid_argument(format!(
                "write_stream `{name}` is not projects/P/datasets/D/tables/T/streams/S"
            )));
        };
        let is_default = id == DEFAULT_STREAM;
        let data = match req.rows {
            Some(pb::append_rows_request::Rows::ProtoRows(d)) => d,
            None => pb::append_rows_request::ProtoData::default(),
        };
        let respond_error = |code: Code, message: String, detail: Option<pb::StorageError>, conn: &mut Connection| {
            let updated_schema = conn.updated_schema(&key);
            Outcome::Respond(pb::AppendRowsResponse {
                response: Some(pb::append_rows_response::Response::Error(error_status(code, message, detail))),
                updated_schema,
                row_errors: Vec::new(),
                write_stream: name.clone(),
            })
        };

        // Table, stream, and the schema as of now.
        let (uid, version, columns) = {
            let state = self.shared.state();
            let Some(table) = state.table(&key) else {
                return Outcome::End(Status::not_found(format!("Table not found: {}", table_path(&key))));
            };
            if !is_default {
                match state.streams.get(&name) {
                    Some(s) if s.table_uid == table.uid => {}
                    _ => return Outcome::End(Status::not_found(format!("Stream not found: {name}"))),
                }
            }
            (table.uid, table.schema_version, table.schema.clone())
        };

        // The writer schema: given, or the connection's latest.
        self.remember(&name, &data);
        let Some(descriptor) = self.descriptor.clone() else {
            return Outcome::End(Status::invalid_argument(
                "writer_schema is required on the first AppendRows request of a connection",
            ));
        };
        let reuse = self
            .schema
            .as_ref()
            .is_some_and(|c| c.descriptor == descriptor && c.table_uid == uid && c.version == version);
        if !reuse {
            match WriterPlan::compile(&descriptor, &columns) {
                Ok(plan) => {
                    self.schema = Some(CachedSchema { descriptor, table_uid: uid, version, plan: Arc::new(plan) })
                }
                Err(e) => return Outcome::End(Status::invalid_argument(format!("{e} (table {})", table_path(&key)))),
            }
        }
        let Some(plan) = self.schema.as_ref().map(|c| c.plan.clone()) else {
            return Outcome::End(Status::internal("no writer schema"));
        };

        if request_bytes > MAX_REQUEST_BYTES {
            return respond_error(
                Code::InvalidArgument,
                format!("AppendRows request too large: {request_bytes} bytes, limit {MAX_REQUEST_BYTES}"),
                None,
                self,
            );
        }
        if is_default && req.offset.is_some() {
            return respond_error(
                Code::InvalidArgument,
                "offsets are not allowed on the _default stream".into(),
                None,
                self,
            );
        }
        if let Some(problem) = self.offset_problem(&name, is_default, req.offset) {
            return respond_error(problem.0, problem.1, problem.2, self);
        }

        // Rows: all or nothing.
        let serialized = data.rows.map(|r| r.serialized_rows).unwrap_or_default();
        let row_bytes: usize = serialized.iter().map(Bytes::len).sum();
        let mut rows = Vec::with_capacity(serialized.len());
        let mut row_errors = Vec::new();
        for (i, bytes) in serialized.iter().enumerate() {
            match plan.decode_row(bytes) {
                Ok(row) => rows.push(row),
                Err(message) => row_errors.push(pb::RowError {
                    index: i as i64,
                    code: pb::row_error::RowErrorCode::FieldsError as i32,
                    message,
                }),
            }
        }
        if !row_errors.is_empty() {
            let n = row_errors.len() as u64;
            self.shared.stat(|s| s.rows_rejected += n);
            let updated_schema = self.updated_schema(&key);
            return Outcome::Respond(pb::AppendRowsResponse {
                response: Some(pb::append_rows_response::Response::Error(error_status(
                    Code::InvalidArgument,
                    format!("{n} of {} rows were refused; none of the request's rows was stored", serialized.len()),
                    None,
                ))),
                updated_schema,
                row_errors,
                write_stream: name,
            });
        }

        // Store (re-checking what may have changed meanwhile).
        let count = rows.len() as i64;
        let first = {
            let mut state = self.shared.state();
            if is_default {
                let discard = self.shared.discard.load(std::sync::atomic::Ordering::Relaxed);
                match state.table_mut(&key).filter(|t| t.uid == uid) {
                    Some(t) => {
                        if !discard {
                            t.rows.extend(rows);
                        }
                        None
                    }
                    None => return Outcome::End(Status::not_found(format!("Table not found: {}", table_path(&key)))),
                }
            } else {
                let Some(s) = state.streams.get_mut(&name) else {
                    return Outcome::End(Status::not_found(format!("Stream not found: {name}")));
                };
                if s.finalized {
                    drop(state);
                    return respond_error(
                        Code::InvalidArgument,
                        format!("Stream is finalized: {name}"),
                        Some(storage_error(E::StreamFinalized, &name, "Stream is finalized")),
                        self,
                    );
                }
                if req.offset.is_some_and(|o| o != s.row_count) {
                    drop(state);
                    let problem = self.offset_problem(&name, false, req.offset);
                    let (code, message, detail) =
                        problem.unwrap_or((Code::Aborted, "the stream changed; retry".into(), None));
                    return respond_error(code, message, detail, self);
                }
                let first = s.row_count;
                s.row_count += count;
                let kind = s.kind;
                let table = s.table.clone();
                if kind == StreamKind::Committed {
                    if let Some(t) = state.table_mut(&table) {
                        t.rows.extend(rows);
                    }
                } else if let Some(s) = state.streams.get_mut(&name) {
                    s.held.extend(rows);
                }
                Some(first)
            }
        };
        self.shared.stat(|s| {
            s.rows_appended += count as u64;
            s.row_bytes += row_bytes as u64;
        });
        let updated_schema = self.updated_schema(&key);
        Outcome::Respond(pb::AppendRowsResponse {
            response: Some(pb::append_rows_response::Response::AppendResult(pb::append_rows_response::AppendResult {
                offset: first,
            })),
            updated_schema,
            row_errors: Vec::new(),
            write_stream: name,
        })
    }

    /// Remembers the stream and writer schema a request names: later requests may omit them.
    fn remember(&mut self, stream: &str, data: &pb::append_rows_request::ProtoData) {
        if !stream.is_empty() {
            self.stream = Some(stream.to_owned());
        }
        if let Some(d) = data.writer_schema.as_ref().map(|s| &s.proto_descriptor).filter(|d| !d.is_empty()) {
            self.descriptor = Some(d.clone());
        }
    }

    /// Whether a request may append at `offset` on a stream (finalized streams and offsets).
    fn offset_problem(
        &self,
        name: &str,
        is_default: bool,
        offset: Option<i64>,
    ) -> Option<(Code, String, Option<pb::StorageError>)> {
        use pb::storage_error::StorageErrorCode as E;
        if is_default {
            return None;
        }
        let state = self.shared.state();
        let s = state.streams.get(name)?;
        if s.finalized {
            return Some((
                Code::InvalidArgument,
                format!("Stream is finalized: {name}"),
                Some(storage_error(E::StreamFinalized, name, "Stream is finalized")),
            ));
        }
        let offset = offset?;
        if offset < s.row_count {
            let m = format!("offset {offset} already exists: the stream has {} rows", s.row_count);
            return Some((Code::AlreadyExists, m.clone(), Some(storage_error(E::OffsetAlreadyExists, name, &m))));
        }
        if offset > s.row_count {
            let m = format!("offset {offset} is beyond the end of the stream (next offset {})", s.row_count);
            return Some((Code::OutOfRange, m.clone(), Some(storage_error(E::OffsetOutOfRange, name, &m))));
        }
        None
    }

    /// The table's schema when it changed since this connection's previous response about it.
    fn updated_schema(&mut self, key: &TableKey) -> Option<pb::TableSchema> {
        let state = self.shared.state();
        let table = state.table(key)?;
        let previous = self.seen_versions.insert(table.uid, table.schema_version);
        match previous {
            Some(v) if v < table.schema_version => Some(storage_schema(&table.schema)),
            _ => None,
        }
    }
}
