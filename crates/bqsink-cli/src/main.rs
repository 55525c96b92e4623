//! `bqsink`: load newline-delimited JSON into BigQuery through the Storage Write API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bqsink::{CreateDisposition, Destination, Error, PartitionType, Record, Schema, WriteMode};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Exit code when some rows could not be written.
const EXIT_SOME_ROWS_FAILED: u8 = 2;
/// Row errors printed before the rest are only counted.
const MAX_PRINTED_ROW_ERRORS: u64 = 20;

#[derive(Parser, Debug)]
#[command(name = "bqsink", version, about = "Load records into Google BigQuery through the Storage Write API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load newline-delimited JSON (one object per line) into a table.
    ///
    /// Example: bqsink load --project my-proj --dataset analytics --table events --schema events.json events.ndjson
    Load(LoadArgs),
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Google Cloud project.
    #[arg(long, env = "BIGQUERY_PROJECT_ID")]
    project: String,
    /// Dataset (created when missing).
    #[arg(long, env = "BIGQUERY_DATASET")]
    dataset: String,
    /// Table (created when missing, with --schema).
    #[arg(long)]
    table: String,
    /// BigQuery JSON schema file (as `bq show --schema` prints it), used to create the table.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Partition a created table on this TIMESTAMP, DATE or DATETIME column.
    #[arg(long)]
    partition_field: Option<String>,
    /// Partition granularity: HOUR, DAY, MONTH or YEAR.
    #[arg(long)]
    partition_type: Option<PartitionType>,
    /// Cluster a created table on these columns (comma-separated, at most 4).
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// Fail instead of creating a missing table.
    #[arg(long)]
    no_create: bool,
    /// Rows per AppendRows request.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// streaming (default stream, at-least-once), exactly-once (committed stream with offsets),
    /// or batch (pending stream, committed at the end: all rows or none).
    #[arg(long, default_value = "streaming")]
    mode: WriteMode,
    /// Append rows that cannot be written, with the reason, to this NDJSON file.
    #[arg(long)]
    dlq: Option<PathBuf>,
    /// Service-account key file (default: GOOGLE_APPLICATION_CREDENTIALS or discovered credentials).
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Input file of newline-delimited JSON, or `-` for stdin.
    input: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bqsink: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Load(args) => load(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bqsink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,bqsink=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut builder = Destination::builder()
        .project_id(&args.project)
        .dataset_id(&args.dataset)
        .table_id(&args.table)
        .batch_size(args.batch_size)
        .write_mode(args.mode)
        .create_disposition(if args.no_create {
            CreateDisposition::CreateNever
        } else {
            CreateDisposition::CreateIfNeeded
        });
    if let Some(path) = &args.schema {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the schema file {}", path.display()))?;
        let schema = Schema::from_json(&text).with_context(|| format!("schema file {}", path.display()))?;
        builder = builder.schema(schema);
    }
    if let Some(f) = &args.partition_field {
        builder = builder.partition_field(f);
    }
    if let Some(t) = args.partition_type {
        builder = builder.partition_type(t);
    }
    if !args.cluster.is_empty() {
        builder = builder.clustering_fields(args.cluster.clone());
    }
    if let Some(c) = &args.credentials {
        builder = builder.credentials_path(c);
    }
    if let Some(path) = &args.dlq {
        builder = builder.dead_letter_file(path);
    }
    let dest = builder.build().await.map_err(explain)?;

    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if args.input == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(&args.input)
                .await
                .with_context(|| format!("cannot open the input file {}", args.input))?,
        )
    };
    let mut lines = BufReader::with_capacity(1 << 20, reader).split(b'\n');
    let mut read = 0u64;
    let mut printed = 0u64;
    let mut line_no = 0u64;
    let mut report = |line: u64, message: &str| {
        printed += 1;
        if printed <= MAX_PRINTED_ROW_ERRORS {
            eprintln!("bqsink: line {line}: {message}");
        }
    };
    while let Some(line) = lines.next_segment().await.context("cannot read the input")? {
        line_no += 1;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(_) => {
                read += 1;
                report(line_no, "the line is not valid UTF-8");
                dest.dead_letter_raw(Some(line_no - 1), String::from_utf8_lossy(&line), "the line is not valid UTF-8")
                    .map_err(explain)?;
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        read += 1;
        let record = match Record::from_json_str(text) {
            Ok(r) => r,
            Err(e) => {
                report(line_no, &e.to_string());
                dest.dead_letter_raw(Some(line_no - 1), text, e.message).map_err(explain)?;
                continue;
            }
        };
        if let Some(e) = dest.write_row(record, None).await.map_err(explain)? {
            report(line_no, &e.to_string());
        }
    }
    let summary = dest.close().await.map_err(explain)?;
    let failed = summary.rows_dead_lettered + summary.rows_rejected;
    if printed > MAX_PRINTED_ROW_ERRORS {
        eprintln!("bqsink: … and {} more rows refused", printed - MAX_PRINTED_ROW_ERRORS);
    }
    if let (Some(path), true) = (&args.dlq, summary.rows_dead_lettered > 0) {
        eprintln!("bqsink: {} rows dead-lettered to {}", summary.rows_dead_lettered, path.display());
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "read {read}, written {}, dead-lettered {failed} ({secs:.1}s, {:.0} rows/s)",
            summary.rows_written,
            summary.rows_written as f64 / secs.max(1e-9)
        );
    }
    Ok(if failed == 0 && summary.rows_written == read {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_ROWS_FAILED)
    })
}

/// Adds what to do to the errors a person meets first.
fn explain(e: Error) -> anyhow::Error {
    let hint = match &e {
        Error::Transport(bqsink::TransportError::Connect { endpoint, .. }) => {
            Some(format!("is BigQuery (or the emulator) reachable at {endpoint}?"))
        }
        Error::Transport(bqsink::TransportError::Auth(_)) => {
            Some("set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run `gcloud auth application-default login`, or run on Google Cloud".into())
        }
        Error::TableNotFound { .. } => Some("pass --schema to create the table".into()),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{e} ({h})"),
        None => anyhow::anyhow!(e),
    }
}
