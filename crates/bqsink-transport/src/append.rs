//! The Storage Write API client: one gRPC channel, and AppendRows bidi streams on it.
//!
//! Each [`AppendStream`] is one task that owns the call: requests are pipelined, and responses —
//! which BigQuery sends in request order — are matched to requests through a FIFO of waiters.
//! When the call fails or ends, every waiting request gets the error and the stream is closed;
//! the caller opens a new one.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bqsink_core::{Field, FieldType, Mode, Schema, TableRef};
use google_cloud_googleapis::cloud::bigquery::storage::v1 as storage;
use http::uri::PathAndQuery;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::{debug, warn};

use crate::auth::Auth;
use crate::codec::AppendCodec;
use crate::endpoint::Endpoints;
use crate::error::{RejectedRow, StatusCode, TransportError};
use crate::request::AppendRequest;

const APPEND_ROWS_PATH: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";
/// Requests queued for a stream's task before `send` waits.
const COMMAND_QUEUE: usize = 64;
/// Deadline of the unary Storage Write calls (create, get, finalize, commit).
const UNARY_TIMEOUT: Duration = Duration::from_secs(60);

/// Kinds of application-created write streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamKind {
    /// Rows visible as soon as acknowledged; offsets give exactly-once.
    Committed,
    /// Rows visible only after finalize and `BatchCommitWriteStreams`.
    Pending,
    /// Rows visible after `FlushRows`.
    Buffered,
}

impl StreamKind {
    fn proto(self) -> storage::write_stream::Type {
        match self {
            Self::Committed => storage::write_stream::Type::Committed,
            Self::Pending => storage::write_stream::Type::Pending,
            Self::Buffered => storage::write_stream::Type::Buffered,
        }
    }
}

/// An application-created write stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WriteStreamInfo {
    /// Full stream name (`projects/…/streams/…`).
    pub name: String,
    /// The table's schema when the stream was created, if BigQuery sent it.
    pub table_schema: Option<Schema>,
    /// Whether the stream has a commit time: a PENDING stream that was committed (a COMMITTED
    /// stream has one from its creation).
    pub committed: bool,
}

impl WriteStreamInfo {
    fn from_proto(ws: storage::WriteStream) -> Self {
        Self {
            name: ws.name,
            committed: ws.commit_time.is_some(),
            table_schema: ws.table_schema.map(|s| Schema::new(s.fields.into_iter().map(convert_field).collect())),
        }
    }
}

/// A connection to the Storage Write API.
#[derive(Clone, Debug)]
pub struct WriteClient {
    channel: Channel,
    auth: Auth,
    endpoint: String,
}

impl WriteClient {
    /// Connects (eagerly, so a wrong address fails here, within `connect_timeout`).
    pub async fn connect(endpoints: &Endpoints, auth: Auth) -> Result<Self, TransportError> {
        let connect_err = |e: &dyn std::fmt::Display| TransportError::Connect {
            endpoint: endpoints.grpc.clone(),
            message: e.to_string(),
        };
        let mut ep = Endpoint::from_shared(endpoints.grpc.clone())
            .map_err(|e| connect_err(&e))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if !endpoints.emulator {
            ep = ep.tls_config(ClientTlsConfig::new().with_webpki_roots()).map_err(|e| connect_err(&e))?;
        }
        let channel = ep.connect().await.map_err(|e| connect_err(&crate::error::source_chain(&e)))?;
        Ok(Self { channel, auth, endpoint: endpoints.grpc.clone() })
    }

    /// The gRPC endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn unary_request<T>(&self, message: T, routing: &str) -> Result<tonic::Request<T>, TransportError> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(UNARY_TIMEOUT);
        let md = request.metadata_mut();
        if let Ok(v) = routing.parse() {
            md.insert("x-goog-request-params", v);
        }
        if let Some(h) = self.auth.header().await? {
            let value =
                h.parse().map_err(|_| TransportError::Auth("the access token is not a valid header value".into()))?;
            md.insert("authorization", value);
        }
        Ok(request)
    }

    fn admin(&self) -> storage::big_query_write_client::BigQueryWriteClient<Channel> {
        storage::big_query_write_client::BigQueryWriteClient::new(self.channel.clone())
    }

    /// `CreateWriteStream`: an application-created stream of a table.
    pub async fn create_write_stream(
        &self,
        table: &TableRef,
        kind: StreamKind,
    ) -> Result<WriteStreamInfo, TransportError> {
        let parent = table.storage_path();
        let message = storage::CreateWriteStreamRequest {
            parent: parent.clone(),
            write_stream: Some(storage::WriteStream { r#type: kind.proto() as i32, ..Default::default() }),
        };
        let request = self.unary_request(message, &format!("parent={}", percent_encode(&parent))).await?;
        let ws =
            self.admin().create_write_stream(request).await.map_err(|s| TransportError::from_status(&s))?.into_inner();
        Ok(WriteStreamInfo::from_proto(ws))
    }

    /// `GetWriteStream`.
    pub async fn get_write_stream(&self, name: &str) -> Result<WriteStreamInfo, TransportError> {
        let message = storage::GetWriteStreamRequest { name: name.to_owned(), view: 0 };
        let request = self.unary_request(message, &format!("name={}", percent_encode(name))).await?;
        let ws =
            self.admin().get_write_stream(request).await.map_err(|s| TransportError::from_status(&s))?.into_inner();
        Ok(WriteStreamInfo::from_proto(ws))
    }

    /// `FinalizeWriteStream`: no more appends; returns the stream's row count.
    pub async fn finalize_write_stream(&self, name: &str) -> Result<i64, TransportError> {
        let message = storage::FinalizeWriteStreamRequest { name: name.to_owned() };
        let request = self.unary_request(message, &format!("name={}", percent_encode(name))).await?;
        let resp = self.admin().finalize_write_stream(request).await.map_err(|s| TransportError::from_status(&s))?;
        Ok(resp.into_inner().row_count)
    }

    /// `BatchCommitWriteStreams`: makes finalized PENDING streams' rows visible, all at once.
    /// Fails when BigQuery reports any stream error (then nothing was committed).
    pub async fn batch_commit(&self, table: &TableRef, streams: &[String]) -> Result<(), TransportError> {
        let parent = table.storage_path();
        let message =
            storage::BatchCommitWriteStreamsRequest { parent: parent.clone(), write_streams: streams.to_vec() };
        let request = self.unary_request(message, &format!("parent={}", percent_encode(&parent))).await?;
        let resp = self
            .admin()
            .batch_commit_write_streams(request)
            .await
            .map_err(|s| TransportError::from_status(&s))?
            .into_inner();
        if let Some(first) = resp.stream_errors.first() {
            return Err(TransportError::Grpc {
                code: StatusCode::FailedPrecondition,
                message: format!("commit refused for {}: {}", first.entity, first.error_message),
            });
        }
        if resp.commit_time.is_none() {
            return Err(TransportError::Protocol("BatchCommitWriteStreams answered without a commit time".into()));
        }
        Ok(())
    }

    /// Opens an AppendRows stream. The call starts with the first request; `routing_stream` is
    /// the write stream named in the routing header.
    pub fn append_stream(&self, routing_stream: &str) -> AppendStream {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let task =
            StreamTask { channel: self.channel.clone(), auth: self.auth.clone(), routing: routing_stream.to_owned() };
        let handle = tokio::spawn(task.run(rx));
        AppendStream { tx, task: std::sync::Arc::new(handle.abort_handle()) }
    }
}

/// What BigQuery answered to one append.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendAck {
    /// Offset of the first row, on streams with offsets.
    pub offset: Option<i64>,
    /// The table's new schema, when BigQuery reports that it changed.
    pub updated_schema: Option<Schema>,
}

struct Pending {
    request: AppendRequest,
    ack: oneshot::Sender<Result<AppendAck, TransportError>>,
}

/// A pipelined AppendRows stream.
#[derive(Debug, Clone)]
pub struct AppendStream {
    tx: mpsc::Sender<Pending>,
    task: std::sync::Arc<tokio::task::AbortHandle>,
}

/// Resolves when BigQuery acknowledges (or refuses) one request.
#[derive(Debug)]
pub struct AckFuture {
    rx: oneshot::Receiver<Result<AppendAck, TransportError>>,
    /// The answer, once [`AckFuture::is_ready`] saw it.
    done: Option<Result<AppendAck, TransportError>>,
}

fn task_ended() -> TransportError {
    TransportError::StreamClosed("the stream task ended".into())
}

impl AckFuture {
    /// Whether the answer has arrived, without waiting.
    pub fn is_ready(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        match self.rx.try_recv() {
            Ok(answer) => self.done = Some(answer),
            Err(oneshot::error::TryRecvError::Empty) => return false,
            Err(oneshot::error::TryRecvError::Closed) => self.done = Some(Err(task_ended())),
        }
        true
    }

    /// The answer, if it has arrived, without waiting.
    pub fn try_answer(&mut self) -> Option<Result<AppendAck, TransportError>> {
        if self.is_ready() {
            self.done.take()
        } else {
            None
        }
    }
}

impl Future for AckFuture {
    type Output = Result<AppendAck, TransportError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(answer) = self.done.take() {
            return Poll::Ready(answer);
        }
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(task_ended())))
    }
}

impl AppendStream {
    /// Queues a request; the returned future resolves with its acknowledgement. Waits while the
    /// stream's queue is full. Fails at once when the stream is closed.
    pub async fn send(&self, request: AppendRequest) -> Result<AckFuture, TransportError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Pending { request, ack })
            .await
            .map_err(|_| TransportError::StreamClosed("the stream is closed".into()))?;
        Ok(AckFuture { rx, done: None })
    }

    /// Whether the stream has ended (a new one must be opened).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.task.is_finished()
    }

    /// Ends the stream at once (a hung server): every waiting request fails as closed.
    pub fn abort(&self) {
        self.task.abort();
    }
}

struct StreamTask {
    channel: Channel,
    auth: Auth,
    routing: String,
}

impl StreamTask {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let mut waiting: VecDeque<oneshot::Sender<Result<AppendAck, TransportError>>> = VecDeque::new();
        let Some(first) = rx.recv().await else { return };
        let (req_tx, req_rx) = mpsc::unbounded_channel::<AppendRequest>();
        // The first request is queued before the call starts: some servers send headers only
        // with their first response.
        waiting.push_back(first.ack);
        let _ = req_tx.send(first.request);
        let failure = match self.call(req_rx).await {
            Err(e) => e,
            Ok(mut inbound) => self.pump(&mut rx, req_tx, &mut inbound, &mut waiting).await,
        };
        debug!(stream = %self.routing, error = %failure, "append stream ended");
        rx.close();
        for w in waiting.drain(..) {
            let _ = w.send(Err(clone_failure(&failure)));
        }
        while let Ok(p) = rx.try_recv() {
            let _ = p.ack.send(Err(TransportError::StreamClosed(failure.to_string())));
        }
    }

    async fn call(
        &self,
        req_rx: mpsc::UnboundedReceiver<AppendRequest>,
    ) -> Result<tonic::Streaming<storage::AppendRowsResponse>, TransportError> {
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(req_rx));
        let md = request.metadata_mut();
        let params = format!("write_stream={}", percent_encode(&self.routing));
        md.insert(
            "x-goog-request-params",
            params.parse().map_err(|_| TransportError::Protocol("bad routing header".into()))?,
        );
        md.insert(
            "x-goog-api-client",
            concat!("gl-rust/bqsink-", env!("CARGO_PKG_VERSION"))
                .parse()
                .map_err(|_| TransportError::Protocol("bad client header".into()))?,
        );
        if let Some(h) = self.auth.header().await? {
            let value =
                h.parse().map_err(|_| TransportError::Auth("the access token is not a valid header value".into()))?;
            md.insert("authorization", value);
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| TransportError::Connect { endpoint: String::new(), message: e.to_string() })?;
        let resp = grpc
            .streaming(request, PathAndQuery::from_static(APPEND_ROWS_PATH), AppendCodec)
            .await
            .map_err(|s| TransportError::from_status(&s))?;
        Ok(resp.into_inner())
    }

    async fn pump(
        &self,
        rx: &mut mpsc::Receiver<Pending>,
        req_tx: mpsc::UnboundedSender<AppendRequest>,
        inbound: &mut tonic::Streaming<storage::AppendRowsResponse>,
        waiting: &mut VecDeque<oneshot::Sender<Result<AppendAck, TransportError>>>,
    ) -> TransportError {
        let mut req_tx = Some(req_tx);
        loop {
            if req_tx.is_none() && waiting.is_empty() {
                return TransportError::StreamClosed("closed by the client".into());
            }
            tokio::select! {
                biased;
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => match waiting.pop_front() {
                        Some(w) => { let _ = w.send(convert_response(resp)); }
                        None => return TransportError::Protocol("a response arrived for no request".into()),
                    },
                    Ok(None) => return TransportError::StreamClosed("the server ended the stream".into()),
                    Err(status) => {
                        let e = TransportError::from_status(&status);
                        warn!(stream = %self.routing, error = %e, "append stream failed");
                        return e;
                    }
                },
                cmd = rx.recv(), if req_tx.is_some() => match cmd {
                    Some(p) => {
                        waiting.push_back(p.ack);
                        if let Some(tx) = &req_tx {
                            if tx.send(p.request).is_err() {
                                return TransportError::StreamClosed("the request side closed".into());
                            }
                        }
                    }
                    // Every handle is gone: half-close and collect the remaining answers.
                    None => req_tx = None,
                },
            }
        }
    }
}

fn clone_failure(e: &TransportError) -> TransportError {
    match e {
        TransportError::Grpc { code, message } => TransportError::Grpc { code: *code, message: message.clone() },
        TransportError::Connect { endpoint, message } => {
            TransportError::Connect { endpoint: endpoint.clone(), message: message.clone() }
        }
        TransportError::Auth(m) => TransportError::Auth(m.clone()),
        other => TransportError::StreamClosed(other.to_string()),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn convert_response(r: storage::AppendRowsResponse) -> Result<AppendAck, TransportError> {
    use storage::append_rows_response::Response;
    let updated_schema = r.updated_schema.map(|s| Schema::new(s.fields.into_iter().map(convert_field).collect()));
    let rejected: Vec<RejectedRow> =
        r.row_errors.into_iter().map(|e| RejectedRow { index: e.index.max(0) as u64, message: e.message }).collect();
    match r.response {
        Some(Response::Error(status)) => {
            Err(TransportError::Append { code: StatusCode::from_i32(status.code), message: status.message, rejected })
        }
        _ if !rejected.is_empty() => Err(TransportError::Append {
            code: StatusCode::InvalidArgument,
            message: "rows were refused".into(),
            rejected,
        }),
        Some(Response::AppendResult(res)) => Ok(AppendAck { offset: res.offset, updated_schema }),
        None => Ok(AppendAck { offset: None, updated_schema }),
    }
}

/// Converts the Storage API's schema message into ours.
pub(crate) fn convert_field(f: storage::TableFieldSchema) -> Field {
    use storage::table_field_schema::{Mode as M, Type as T};
    let field_type = match T::try_from(f.r#type).unwrap_or(T::Unspecified) {
        T::Int64 => FieldType::Int64,
        T::Double => FieldType::Float64,
        T::Struct => FieldType::Record,
        T::Bytes => FieldType::Bytes,
        T::Bool => FieldType::Bool,
        T::Timestamp => FieldType::Timestamp,
        T::Date => FieldType::Date,
        T::Time => FieldType::Time,
        T::Datetime => FieldType::DateTime,
        T::Geography => FieldType::Geography,
        T::Numeric => FieldType::Numeric,
        T::Bignumeric => FieldType::BigNumeric,
        T::Json => FieldType::Json,
        _ => FieldType::String,
    };
    let mode = match M::try_from(f.mode).unwrap_or(M::Unspecified) {
        M::Required => Mode::Required,
        M::Repeated => Mode::Repeated,
        _ => Mode::Nullable,
    };
    let mut out = Field::new(f.name, field_type).with_mode(mode);
    out.fields = f.fields.into_iter().map(convert_field).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_header_is_percent_encoded() {
        assert_eq!(percent_encode("projects/p/x_y"), "projects%2Fp%2Fx_y");
    }

    #[test]
    fn refusals_carry_rejected_rows() {
        let r = storage::AppendRowsResponse {
            row_errors: vec![storage::RowError { index: 3, code: 1, message: "bad".into() }],
            ..Default::default()
        };
        match convert_response(r) {
            Err(TransportError::Append { rejected, .. }) => assert_eq!(rejected[0].index, 3),
            other => panic!("{other:?}"),
        }
    }
}
