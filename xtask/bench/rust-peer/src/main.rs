//! The benchmark rows through `google-cloud-bigquery`'s Storage Write client (default stream):
//! rows are prost messages of the same 12 columns and values as bqsink's benchmark rows,
//! encoded one by one and sent `--batch-size` rows per AppendRows request, `--inflight`
//! requests per `append_rows` call. With `--file PATH`, the rows come from a 12-column NDJSON
//! file instead (see `file.rs`). Prints one JSON line with what it did.
//!
//! ```text
//! bqsink-bench-rust-peer --grpc HOST:PORT [--rows N | --file PATH] [--batch-size B]
//!                        [--inflight K] [--project P --dataset D --table T]
//! ```

mod file;

use std::time::Instant;

use futures_util::StreamExt as _;
use google_cloud_bigquery::client::{Client, ClientConfig};
use google_cloud_bigquery::storage_write::AppendRowsRequestBuilder;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

/// One row; proto2 field numbers, types and labels as in the writer schema below.
#[derive(Clone, PartialEq, prost::Message)]
struct Row {
    #[prost(int64, required, tag = "1")]
    id: i64,
    #[prost(double, optional, tag = "2")]
    score: Option<f64>,
    #[prost(bool, optional, tag = "3")]
    ok: Option<bool>,
    #[prost(string, optional, tag = "4")]
    event: Option<String>,
    #[prost(string, optional, tag = "5")]
    user_id: Option<String>,
    #[prost(string, optional, tag = "6")]
    page: Option<String>,
    #[prost(string, optional, tag = "7")]
    agent: Option<String>,
    /// TIMESTAMP: µs since the epoch.
    #[prost(int64, optional, tag = "8")]
    at: Option<i64>,
    /// DATE: days since the epoch.
    #[prost(int32, optional, tag = "9")]
    day: Option<i32>,
    /// NUMERIC as a decimal string.
    #[prost(string, optional, tag = "10")]
    amount: Option<String>,
    /// JSON as text.
    #[prost(string, optional, tag = "11")]
    props: Option<String>,
    #[prost(string, repeated, tag = "12")]
    tags: Vec<String>,
}

fn row(i: i64) -> Row {
    Row {
        id: i,
        score: Some(i as f64 * 0.5),
        ok: Some(i % 3 == 0),
        event: Some("page_view".into()),
        user_id: Some(format!("user-{}", i % 1000)),
        page: Some("/pricing".into()),
        agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        at: Some(1_700_000_000_000_000 + i),
        day: Some(19_700),
        amount: Some("1234.56".into()),
        props: Some(r#"{"plan":"pro"}"#.into()),
        tags: vec!["a".into(), "b".into()],
    }
}

fn descriptor() -> DescriptorProto {
    let columns: [(&str, Type, Label); 12] = [
        ("id", Type::Int64, Label::Required),
        ("score", Type::Double, Label::Optional),
        ("ok", Type::Bool, Label::Optional),
        ("event", Type::String, Label::Optional),
        ("user_id", Type::String, Label::Optional),
        ("page", Type::String, Label::Optional),
        ("agent", Type::String, Label::Optional),
        ("at", Type::Int64, Label::Optional),
        ("day", Type::Int32, Label::Optional),
        ("amount", Type::String, Label::Optional),
        ("props", Type::String, Label::Optional),
        ("tags", Type::String, Label::Repeated),
    ];
    DescriptorProto {
        name: Some("Row".into()),
        field: columns
            .iter()
            .enumerate()
            .map(|(i, (name, t, l))| FieldDescriptorProto {
                name: Some((*name).into()),
                number: Some(i as i32 + 1),
                r#type: Some(*t as i32),
                label: Some(*l as i32),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

struct Args {
    grpc: String,
    rows: u64,
    batch_size: u64,
    inflight: usize,
    project: String,
    dataset: String,
    table: String,
    file: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        grpc: String::new(),
        rows: 1_000_000,
        batch_size: 1_000,
        inflight: 10,
        project: "bench".into(),
        dataset: "bench".into(),
        table: "rows".into(),
        file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--grpc" => a.grpc = value()?,
            "--rows" => a.rows = value()?.parse()?,
            "--batch-size" => a.batch_size = value()?.parse::<u64>()?.max(1),
            "--inflight" => a.inflight = value()?.parse::<usize>()?.max(1),
            "--project" => a.project = value()?,
            "--dataset" => a.dataset = value()?,
            "--table" => a.table = value()?,
            "--file" => a.file = Some(value()?.into()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(!a.grpc.is_empty(), "--grpc HOST:PORT is required");
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let started = Instant::now();
    let config = ClientConfig::new_with_emulator(&a.grpc, format!("http://{}", a.grpc));
    let client = Client::new(config).await?;
    let table = format!("projects/{}/datasets/{}/tables/{}", a.project, a.dataset, a.table);
    let stream = client.default_storage_writer().create_write_stream(&table).await?;
    let schema = descriptor();
    let setup_s = started.elapsed().as_secs_f64();

    if let Some(path) = a.file.clone() {
        let writing = Instant::now();
        let done = file::load(stream, schema, path, a.batch_size as usize, a.inflight).await?;
        let wall_s = writing.elapsed().as_secs_f64();
        anyhow::ensure!(done.rows_acked == done.rows, "{} of {} rows acknowledged", done.rows_acked, done.rows);
        println!(
            "{}",
            serde_json::json!({
                "rows": done.rows,
                "rows_acked": done.rows_acked,
                "requests": done.requests,
                "bytes_written": done.row_bytes,
                "batch_size": a.batch_size,
                "setup_s": setup_s,
                "wall_s": wall_s,
            })
        );
        return Ok(());
    }

    let writing = Instant::now();
    let (mut next, mut requests, mut row_bytes, mut acked) = (0u64, 0u64, 0u64, 0u64);
    while next < a.rows {
        // Up to `inflight` requests per call; their answers are awaited before the next call.
        let mut batch = Vec::with_capacity(a.inflight);
        while batch.len() < a.inflight && next < a.rows {
            let end = (next + a.batch_size).min(a.rows);
            let data: Vec<Vec<u8>> = (next..end).map(|i| row(i as i64).encode_to_vec()).collect();
            row_bytes += data.iter().map(|r| r.len() as u64).sum::<u64>();
            batch.push(AppendRowsRequestBuilder::new(schema.clone(), data));
            next = end;
        }
        requests += batch.len() as u64;
        let expected = batch.len();
        let mut responses = stream.append_rows(batch).await?;
        let mut answered = 0;
        while let Some(r) = responses.next().await {
            let r = r?;
            anyhow::ensure!(r.row_errors.is_empty(), "rows refused: {:?}", r.row_errors);
            answered += 1;
        }
        anyhow::ensure!(answered == expected, "{answered} answers to {expected} requests");
        acked += answered as u64;
    }
    let wall_s = writing.elapsed().as_secs_f64();
    anyhow::ensure!(acked == requests, "{acked} of {requests} requests acknowledged");
    println!(
        "{}",
        serde_json::json!({
            "rows": a.rows,
            "rows_written": a.rows,
            "requests": requests,
            "bytes_written": row_bytes,
            "batch_size": a.batch_size,
            "setup_s": setup_s,
            "wall_s": wall_s,
        })
    );
    Ok(())
}
