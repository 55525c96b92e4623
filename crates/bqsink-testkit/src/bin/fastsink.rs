//! A Storage Write server for benchmarks: acknowledges every AppendRows request without storing
//! or decoding its rows, so the client is what gets measured.
//!
//! Requests are scanned, not decoded: the sink walks the protobuf fields of each
//! `AppendRowsRequest` to count rows and row bytes (a malformed request fails the call with
//! INVALID_ARGUMENT) and answers with an `AppendResult`. `GetWriteStream` answers for `_default`
//! streams (some clients ask before they append); the REST table endpoints come from the
//! reference sink, with the 12-column benchmark table `bench.bench.rows` created at start.
//!
//! ```text
//! fastsink            prints {"grpc":"127.0.0.1:P","rest":"127.0.0.1:Q"} once ready, then reads stdin:
//!   stats             prints {"requests":…,"rows":…,"row_bytes":…,"connections":…}
//!   <EOF>             exits
//! ```
//!
//! Run it on its own core (`taskset -c 1 fastsink`) so it does not take the client's CPU.

#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::io::BufRead as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Buf as _;
use futures::StreamExt as _;
use google_cloud_googleapis::cloud::bigquery::storage::v1 as pb;
use prost::Message as _;
use tonic::body::BoxBody;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{empty_body, BoxFuture, Service};
use tonic::{Request, Response, Status, Streaming};

const SERVICE: &str = "google.cloud.bigquery.storage.v1.BigQueryWrite";
const APPEND_ROWS: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";
const GET_WRITE_STREAM: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/GetWriteStream";
/// BigQuery refuses requests above 10 MB; accept a little more so the client's own limit is tested.
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    rows: AtomicU64,
    row_bytes: AtomicU64,
    connections: AtomicU64,
}

/// What the sink needs from one AppendRows request.
#[derive(Debug, Default)]
struct Scanned {
    write_stream: Option<String>,
    rows: u64,
    row_bytes: u64,
}

/// Why a request could not be scanned.
type ScanError = &'static str;

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, ScanError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long")
}

/// Walks one message's fields, calling `on_len` for length-delimited ones and skipping others.
fn fields(b: &[u8], mut on_len: impl FnMut(u64, &[u8]) -> Result<(), ScanError>) -> Result<(), ScanError> {
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        match key & 7 {
            0 => {
                varint(b, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(b, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= b.len());
                let end = end.ok_or("field runs past the message")?;
                on_len(key >> 3, &b[pos..end])?;
                pos = end;
            }
            _ => return Err("unsupported wire type"),
        }
    }
    if pos != b.len() {
        return Err("fixed-width field runs past the message");
    }
    Ok(())
}

/// `AppendRowsRequest`: 1 write_stream, 4 proto_rows → `ProtoData`: 2 rows → `ProtoRows`:
/// 1 serialized_rows (repeated bytes).
fn scan(b: &[u8]) -> Result<Scanned, ScanError> {
    let mut s = Scanned::default();
    fields(b, |n, v| {
        match n {
            1 => {
                let name = std::str::from_utf8(v).map_err(|_| "write_stream is not UTF-8")?;
                s.write_stream = Some(name.to_owned());
            }
            4 => fields(v, |n, v| {
                if n == 2 {
                    fields(v, |n, row| {
                        if n == 1 {
                            s.rows += 1;
                            s.row_bytes += row.len() as u64;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(s)
}

#[derive(Clone, Copy, Debug, Default)]
struct ScanCodec;

impl Codec for ScanCodec {
    type Encode = pb::AppendRowsResponse;
    type Decode = Scanned;
    type Encoder = ProstEncoder;
    type Decoder = ScanDecoder;
    fn encoder(&mut self) -> ProstEncoder {
        ProstEncoder
    }
    fn decoder(&mut self) -> ScanDecoder {
        ScanDecoder
    }
}

#[derive(Debug)]
struct ProstEncoder;

impl Encoder for ProstEncoder {
    type Item = pb::AppendRowsResponse;
    type Error = Status;
    fn encode(&mut self, item: pb::AppendRowsResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Debug)]
struct ScanDecoder;

impl Decoder for ScanDecoder {
    type Item = Scanned;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Scanned>, Status> {
        // The message is contiguous in tonic's buffer: scan it in place.
        let len = src.remaining();
        let chunk = src.chunk();
        let scanned = if chunk.len() == len { scan(chunk) } else { scan(&src.copy_to_bytes(len)) };
        let scanned = scanned.map_err(|e| Status::invalid_argument(format!("malformed AppendRowsRequest: {e}")))?;
        if src.remaining() > 0 {
            src.advance(len);
        }
        Ok(Some(scanned))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct UnaryCodec;

impl Codec for UnaryCodec {
    type Encode = pb::WriteStream;
    type Decode = pb::GetWriteStreamRequest;
    type Encoder = WriteStreamEncoder;
    type Decoder = GetDecoder;
    fn encoder(&mut self) -> WriteStreamEncoder {
        WriteStreamEncoder
    }
    fn decoder(&mut self) -> GetDecoder {
        GetDecoder
    }
}

#[derive(Debug)]
struct WriteStreamEncoder;

impl Encoder for WriteStreamEncoder {
    type Item = pb::WriteStream;
    type Error = Status;
    fn encode(&mut self, item: pb::WriteStream, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Debug)]
struct GetDecoder;

impl Decoder for GetDecoder {
    type Item = pb::GetWriteStreamRequest;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::GetWriteStreamRequest>, Status> {
        pb::GetWriteStreamRequest::decode(src).map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

type ResponseStream = futures::stream::BoxStream<'static, Result<pb::AppendRowsResponse, Status>>;

struct AppendRowsSvc(Arc<Counters>);

impl tonic::server::StreamingService<Scanned> for AppendRowsSvc {
    type Response = pb::AppendRowsResponse;
    type ResponseStream = ResponseStream;
    type Future = BoxFuture<Response<ResponseStream>, Status>;
    // The stream's items are tonic's own `Result<_, Status>`.
    #[allow(clippy::result_large_err)]
    fn call(&mut self, request: Request<Streaming<Scanned>>) -> Self::Future {
        let counters = self.0.clone();
        Box::pin(async move {
            counters.connections.fetch_add(1, Ordering::Relaxed);
            let mut stream_name = String::new();
            let responses = request.into_inner().map(move |scanned| {
                let scanned = scanned?;
                if let Some(name) = scanned.write_stream {
                    stream_name = name;
                }
                if stream_name.is_empty() {
                    return Err(Status::invalid_argument("write_stream is required on the first request"));
                }
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters.rows.fetch_add(scanned.rows, Ordering::Relaxed);
                counters.row_bytes.fetch_add(scanned.row_bytes, Ordering::Relaxed);
                Ok(pb::AppendRowsResponse {
                    response: Some(pb::append_rows_response::Response::AppendResult(
                        pb::append_rows_response::AppendResult { offset: None },
                    )),
                    write_stream: stream_name.clone(),
                    ..Default::default()
                })
            });
            Ok(Response::new(responses.boxed()))
        })
    }
}

struct GetWriteStreamSvc;

impl tonic::server::UnaryService<pb::GetWriteStreamRequest> for GetWriteStreamSvc {
    type Response = pb::WriteStream;
    type Future = BoxFuture<Response<pb::WriteStream>, Status>;
    fn call(&mut self, request: Request<pb::GetWriteStreamRequest>) -> Self::Future {
        let name = request.into_inner().name;
        Box::pin(async move {
            if !name.ends_with("/streams/_default") {
                return Err(Status::not_found(format!("the benchmark sink only has _default streams, not {name}")));
            }
            Ok(Response::new(pb::WriteStream {
                name,
                r#type: pb::write_stream::Type::Committed as i32,
                write_mode: pb::write_stream::WriteMode::Insert as i32,
                location: "US".into(),
                ..Default::default()
            }))
        })
    }
}

#[derive(Clone)]
struct FastSink(Arc<Counters>);

impl tonic::server::NamedService for FastSink {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<BoxBody>> for FastSink {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let counters = self.0.clone();
        match req.uri().path() {
            APPEND_ROWS => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ScanCodec).apply_max_message_size_config(Some(MAX_MESSAGE), None);
                Ok(grpc.streaming(AppendRowsSvc(counters), req).await)
            }),
            GET_WRITE_STREAM => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(UnaryCodec);
                Ok(grpc.unary(GetWriteStreamSvc, req).await)
            }),
            _ => Box::pin(async move {
                let mut response = http::Response::new(empty_body());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            }),
        }
    }
}

fn table_json() -> serde_json::Value {
    let schema = bqsink_testkit::rows::twelve_column_schema();
    let fields: Vec<serde_json::Value> = schema
        .fields
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "type": f.field_type.to_string(), "mode": f.mode.to_string()}))
        .collect();
    serde_json::json!({ "fields": fields })
}

fn main() -> anyhow::Result<()> {
    // One thread: the sink is pinned to one core, more threads would only switch.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let rest = bqsink_testkit::refsink::RefSink::start().await?;
    rest.discard_rows(true);
    rest.create_table("bench", "bench", "rows", table_json())?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the gRPC port")?;
    let grpc_addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let counters = Arc::new(Counters::default());
    let service = FastSink(counters.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            // Windows like a production front end: flow control must not be what is measured.
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(32 << 20)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    println!("{}", serde_json::json!({"grpc": grpc_addr.to_string(), "rest": rest.rest_host()}));

    // Commands on stdin, read on a plain thread.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(cmd) = rx.recv().await {
        if cmd.trim() == "stats" {
            println!(
                "{}",
                serde_json::json!({
                    "requests": counters.requests.load(Ordering::Relaxed),
                    "rows": counters.rows.load(Ordering::Relaxed),
                    "row_bytes": counters.row_bytes.load(Ordering::Relaxed),
                    "connections": counters.connections.load(Ordering::Relaxed),
                })
            );
        }
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    rest.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_counts_rows_of_a_request() {
        let req = pb::AppendRowsRequest {
            write_stream: "projects/p/datasets/d/tables/t/streams/_default".into(),
            rows: Some(pb::append_rows_request::Rows::ProtoRows(pb::append_rows_request::ProtoData {
                writer_schema: Some(pb::ProtoSchema { proto_descriptor: Some(Default::default()) }),
                rows: Some(pb::ProtoRows { serialized_rows: vec![vec![8, 1], vec![8, 2, 16, 3], vec![]] }),
            })),
            ..Default::default()
        };
        let s = scan(&req.encode_to_vec()).expect("scans");
        assert_eq!((s.rows, s.row_bytes), (3, 6));
        assert_eq!(s.write_stream.as_deref(), Some("projects/p/datasets/d/tables/t/streams/_default"));
        assert!(scan(&[0x0a, 0x05, b'a']).is_err());
    }
}
