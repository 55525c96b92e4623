//! The reference sink: an in-process BigQuery (Storage Write gRPC + the REST table endpoints) that
//! follows BigQuery's *documented* behaviour where bqemulator does not — nested RECORD and REPEATED
//! RECORD rows, `row_errors`, `updated_schema`, REQUIRED enforced, unknown fields refused, offsets,
//! PENDING/BUFFERED streams, etags — so that tests can catch bqsink's bugs.
//!
//! It shares no code with bqsink: it has its own proto definitions (`proto/testkit/`), its own
//! type-compatibility table, its own row decoding (prost-reflect `DynamicMessage`) and its own value
//! checks. Each rule it enforces names its source in the module that implements it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bqsink_testkit::refsink::{Code, FailMode, RefSink};
//!
//! let sink = RefSink::start().await?;                  // gRPC + REST on free loopback ports
//! sink.create_table("p", "d", "t", serde_json::json!({"fields": [
//!     {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
//!     {"name": "tags", "type": "STRING", "mode": "REPEATED"},
//! ]}))?;
//! let grpc = sink.grpc_host();                         // "127.0.0.1:PORT", plaintext HTTP/2
//! let rest = sink.rest_url();                          // "http://127.0.0.1:PORT" (+ /bigquery/v2/…)
//! sink.faults().fail_next(2, Code::Unavailable, FailMode::InResponse);
//! // … write with a client …
//! let rows = sink.rows("p", "d", "t");                 // visible rows, decoded by the sink
//! sink.stop().await;
//! # let _ = (grpc, rest, rows); Ok(()) }
//! ```
//!
//! ## gRPC (`google.cloud.bigquery.storage.v1.BigQueryWrite`)
//! AppendRows (bidi), CreateWriteStream (COMMITTED / PENDING / BUFFERED), GetWriteStream,
//! FinalizeWriteStream, BatchCommitWriteStreams, FlushRows. See the `grpc` and `writer` sources for
//! the rules; in short:
//! - the first request of a connection must name the stream and carry the writer schema; later
//!   ones may omit both;
//! - the writer schema is checked against the table (every field maps to a column — by its
//!   `column_name` option, else its name, ignoring case —, compatible types, repeated ⇔ REPEATED,
//!   every REQUIRED column present); a mismatch fails the call with INVALID_ARGUMENT naming the
//!   field and both types;
//! - bad rows (REQUIRED missing, values out of range, bad decimals, dates, JSON, unknown field
//!   numbers, undecodable bytes) → `row_errors` + `error` INVALID_ARGUMENT, nothing of the request
//!   stored, connection open;
//! - offsets: ALREADY_EXISTS / OUT_OF_RANGE in the response; none allowed on `_default`;
//! - `updated_schema` on the first response after a schema change.
//!
//! ## REST (`/bigquery/v2`)
//! datasets insert/get/list/delete, tables insert/get/list/patch/update/delete (legal schema
//! evolutions only, `If-Match` etag check), `tabledata.list`. Errors in BigQuery's JSON shape.
//!
//! ## Cells returned by [`RefSink::rows`]
//! INT64 as a string; FLOAT64 as a number (or `"NaN"`, `"Infinity"`, `"-Infinity"`); BOOL as a
//! bool; STRING, NUMERIC, BIGNUMERIC, DATE, TIME, DATETIME, GEOGRAPHY and JSON as text (NUMERIC
//! and BIGNUMERIC canonical: no exponent, no trailing zeros; DATE `YYYY-MM-DD`; TIME
//! `HH:MM:SS[.ffffff]`; DATETIME `YYYY-MM-DDTHH:MM:SS[.ffffff]`; JSON and GEOGRAPHY as sent); BYTES
//! as standard base64; TIMESTAMP as µs since the epoch, as a string; RECORD as an object; REPEATED
//! as an array. An absent NULLABLE column is `null`, an absent REPEATED column `[]` (also for
//! columns added after the row was written).

mod faults;
mod grpc;
mod proto;
mod rest;
mod schema;
mod state;
mod values;
mod writer;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::{Map, Value as Json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{Code, FailMode, FaultHandle};

use state::{render_row, Shared};

/// Counters of what the sink received (see [`RefSink::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// AppendRows requests received (including faulted and refused ones).
    pub append_requests: u64,
    /// Rows accepted (stored in a table, or held by a PENDING / BUFFERED stream).
    pub rows_appended: u64,
    /// Rows reported in `row_errors`.
    pub rows_rejected: u64,
    /// Serialised bytes of the accepted rows.
    pub row_bytes: u64,
    /// AppendRows answers that were errors: in-response errors and ended calls (injected ones
    /// included).
    pub append_errors: u64,
    /// AppendRows calls (connections) opened so far.
    pub connections: u64,
    /// AppendRows calls open now.
    pub open_connections: u64,
    /// Other gRPC calls (CreateWriteStream, GetWriteStream, FinalizeWriteStream,
    /// BatchCommitWriteStreams, FlushRows).
    pub unary_calls: u64,
    /// REST requests (including refused ones).
    pub rest_requests: u64,
}

/// A running reference sink: gRPC and REST servers on loopback ports, in the tokio runtime that
/// started it. Stop it with [`stop`](Self::stop); dropping it stops the servers too (without
/// waiting for them).
pub struct RefSink {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    rest_addr: SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RefSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefSink").field("grpc", &self.grpc_addr).field("rest", &self.rest_addr).finish_non_exhaustive()
    }
}

impl RefSink {
    /// Starts the gRPC and REST servers on free ports of 127.0.0.1, as tasks of the current tokio
    /// runtime.
    pub async fn start() -> anyhow::Result<RefSink> {
        use tonic::service::interceptor::InterceptedService;
        let shared = Arc::new(Shared::new());

        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the gRPC port")?;
        let grpc_addr = grpc_listener.local_addr()?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener).map(|s| {
            if let Ok(s) = &s {
                // Pipelined small responses must not wait for Nagle.
                let _ = s.set_nodelay(true);
            }
            s
        });
        let server =
            proto::storage::big_query_write_server::BigQueryWriteServer::new(grpc::WriteService::new(shared.clone()))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
        let service = InterceptedService::new(server, BearerCheck(shared.clone()));
        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let grpc_task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = grpc_stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "reference sink: the gRPC server failed");
            }
        });

        let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the REST port")?;
        let rest_addr = rest_listener.local_addr()?;
        let app = rest::router(shared.clone());
        let (rest_stop, rest_stopped) = oneshot::channel::<()>();
        let rest_task = tokio::spawn(async move {
            let result = axum::serve(rest_listener, app)
                .with_graceful_shutdown(async {
                    let _ = rest_stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "reference sink: the REST server failed");
            }
        });

        Ok(RefSink {
            shared,
            grpc_addr,
            rest_addr,
            stops: vec![grpc_stop, rest_stop],
            tasks: vec![grpc_task, rest_task],
        })
    }

    /// The gRPC endpoint, `127.0.0.1:PORT` (plaintext HTTP/2).
    pub fn grpc_host(&self) -> String {
        self.grpc_addr.to_string()
    }

    /// The REST endpoint, `127.0.0.1:PORT` (paths start with `/bigquery/v2`).
    pub fn rest_host(&self) -> String {
        self.rest_addr.to_string()
    }

    /// The REST base URL, `http://127.0.0.1:PORT`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// The table's visible rows, in the order they became visible, rendered with the table's
    /// current schema (cell forms: see the module documentation). Empty when there is no such
    /// table. Rows of PENDING streams appear once committed, of BUFFERED streams once flushed.
    pub fn rows(&self, project: &str, dataset: &str, table: &str) -> Vec<Map<String, Json>> {
        let state = self.shared.state();
        let key = (project.to_owned(), dataset.to_owned(), table.to_owned());
        state.table(&key).map(|t| t.rows.iter().map(|r| render_row(r, &t.schema)).collect()).unwrap_or_default()
    }

    /// Creates a table (and its dataset when missing) with a schema in the REST JSON shape,
    /// `{"fields":[{"name","type","mode","fields"}]}` (legacy or standard type names). Fails on an
    /// invalid schema or an existing table.
    pub fn create_table(&self, project: &str, dataset: &str, table: &str, schema_json: Json) -> anyhow::Result<()> {
        let columns = schema::parse_schema(&schema_json).map_err(|e| anyhow::anyhow!("invalid schema: {e}"))?;
        let mut state = self.shared.state();
        let dkey = (project.to_owned(), dataset.to_owned());
        if !state.datasets.contains_key(&dkey) {
            let ds = state.new_dataset("US".into());
            state.datasets.insert(dkey.clone(), ds);
        }
        if state.datasets.get(&dkey).is_some_and(|d| d.tables.contains_key(table)) {
            anyhow::bail!("table {project}:{dataset}.{table} already exists");
        }
        let t = state.new_table(columns);
        if let Some(d) = state.datasets.get_mut(&dkey) {
            d.tables.insert(table.to_owned(), t);
        }
        Ok(())
    }

    /// The fault-injection handle (shared: every clone controls this sink).
    pub fn faults(&self) -> FaultHandle {
        self.shared.faults.clone()
    }

    /// Checks and counts rows appended to default streams without keeping them, so a test can
    /// stream millions of rows and measure the client's memory alone (`rows()` then stays empty).
    pub fn discard_rows(&self, on: bool) {
        self.shared.discard.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on, every gRPC and REST call must carry `authorization: Bearer <token>`; others
    /// are refused with UNAUTHENTICATED / HTTP 401.
    pub fn require_bearer(&self, token: &str) {
        self.shared.require_bearer(token);
    }

    /// Every `authorization` header received so far (gRPC and REST, accepted or not), in order.
    pub fn seen_authorization(&self) -> Vec<String> {
        self.shared.seen_authorization()
    }

    /// Counters of what the sink received.
    pub fn stats(&self) -> SinkStats {
        self.shared.stats()
    }

    /// Stops both servers: open AppendRows calls end with UNAVAILABLE, then the servers shut down
    /// (waiting up to 5 s before aborting them).
    pub async fn stop(mut self) {
        self.shared.closing.send_replace(true);
        self.shared.faults.release();
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Records and checks the `authorization` metadata of every gRPC call.
#[derive(Clone, Debug)]
struct BearerCheck(Arc<Shared>);

impl tonic::service::Interceptor for BearerCheck {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.0.check_auth(header) {
            Ok(()) => Ok(req),
            Err(message) => Err(tonic::Status::unauthenticated(message)),
        }
    }
}

impl Drop for RefSink {
    fn drop(&mut self) {
        self.shared.closing.send_replace(true);
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}
