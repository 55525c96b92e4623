//! `bqsink load`: rows from files, globs or stdin into one table, with progress, a dead-letter
//! file, a summary line and an exit code that says how it went.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bqsink::{Admin, DestinationBuilder, LoadOptions, PartitionType, RowError, Schema, WriteMode};
use bqsink_schema::InferMode;

use super::{connect, out};
use crate::errors::{explain, Context, Needs};
use crate::input::{self, Format, Input, Item, Position, Unit};
use crate::interrupt::Interrupt;
use crate::progress::{Counters, Progress, Style, Total};
use crate::resilience::RetryArgs;
use crate::resume::{Opened, Resume};
use crate::settings::{FlagValue, Settings};
use crate::{Global, EXIT_SOME_ROWS_FAILED};

/// Refused rows printed before the rest are only counted.
pub(crate) const MAX_PRINTED_ROW_ERRORS: u64 = 20;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  # Create the dataset and a partitioned, clustered table from a BigQuery JSON schema:
  bqsink load --project my-proj --dataset analytics --table events --create-dataset \\
      --schema events.schema.json --partition-field at --cluster event --dlq refused.ndjson 'data/*.ndjson'
  # Exactly once, resumable after a crash (the same command again goes on where it stopped):
  bqsink load --dataset analytics --table events --schema events.schema.json --mode exactly-once \\
      --checkpoint events.checkpoint 'data/*.ndjson'
  # CSV with a header line from stdin, all rows or none:
  cat users.csv | bqsink load --dataset crm --table users --format csv --mode batch -

Input: NDJSON (one object per line), CSV with a header line (empty cells are NULL), or one JSON
array of objects; --format auto picks by extension, else by the first character.

The last line on stdout is `read N, written N, dead-lettered N (elapsed, rows/s)`. Rows that cannot
be written are named on stderr and, with --dlq, appended to that file as NDJSON lines
{time, table, row, column, reason, record | raw}.

Exit codes: 0 every row written; 2 some rows not written (dead-lettered, refused, or in doubt:
sent but never acknowledged, so perhaps in the table); 1 a fatal error (an input that broke off,
say) with every row read written. Ctrl-C or SIGTERM stops reading and writes the rows in flight within
--grace-period, prints the summary and exits 130 (SIGINT) or 143 (SIGTERM) when every row read
was written; a second signal, or the grace period's end, gives up on the rows in flight: each is
dead-lettered as `in doubt: …` (sent, not acknowledged), `not written: …` or `not committed: …`
(--mode batch), so `read = written + dead-lettered` at every exit.";

/// The write modes, as the command line spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ModeArg {
    /// The default stream: at-least-once, rows queryable at once
    Streaming,
    /// Committed streams with offsets: each row exactly once
    ExactlyOnce,
    /// Pending streams committed at the end: all rows or none
    Batch,
}

impl From<ModeArg> for WriteMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Streaming => WriteMode::Streaming,
            ModeArg::ExactlyOnce => WriteMode::ExactlyOnce,
            ModeArg::Batch => WriteMode::Batch,
        }
    }
}

/// Whether a missing table is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CreateArg {
    /// Create it from --schema, or from a schema inferred over the input (the default)
    #[value(name = "CREATE_IF_NEEDED")]
    CreateIfNeeded,
    /// Fail when it does not exist
    #[value(name = "CREATE_NEVER")]
    CreateNever,
}

/// What happens to rows already in the table (the variants are named as BigQuery's
/// dispositions are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum WriteArg {
    /// Add to them (the default)
    #[value(name = "WRITE_APPEND")]
    WriteAppend,
    /// Load only into an empty table
    #[value(name = "WRITE_EMPTY")]
    WriteEmpty,
    /// Replace them (needs --mode batch)
    #[value(name = "WRITE_TRUNCATE")]
    WriteTruncate,
}

#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {
    /// Table to load into
    #[arg(long, short = 't', value_name = "ID")]
    pub(crate) table: String,
    /// Input files, glob patterns (quoted), or `-` for stdin
    #[arg(required = true, value_name = "FILE|GLOB|-")]
    pub(crate) inputs: Vec<String>,
    /// Input format
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub(crate) format: Format,
    /// BigQuery JSON schema (as `bq show --schema` prints it) to create the table with; without
    /// it, a missing table is created from a schema inferred over the whole input
    #[arg(long, value_name = "FILE")]
    pub(crate) schema: Option<PathBuf>,
    /// Write mode [default: streaming]
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,
    /// Partition a created table on this TIMESTAMP, DATE or DATETIME column
    #[arg(long, value_name = "COLUMN")]
    pub(crate) partition_field: Option<String>,
    /// Partition granularity [default: DAY]
    #[arg(long, value_name = "HOUR|DAY|MONTH|YEAR")]
    pub(crate) partition_type: Option<PartitionType>,
    /// Cluster a created table on these columns (comma-separated, at most 4)
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub(crate) cluster: Vec<String>,
    /// Whether a missing table is created [default: CREATE_IF_NEEDED]
    #[arg(long, value_enum, ignore_case = true)]
    pub(crate) create_disposition: Option<CreateArg>,
    /// What happens to rows already in the table [default: WRITE_APPEND]
    #[arg(long, value_enum, ignore_case = true)]
    pub(crate) write_disposition: Option<WriteArg>,
    /// Create the dataset when it does not exist (in --location)
    #[arg(long)]
    pub(crate) create_dataset: bool,
    /// Rows per AppendRows request [default: 1000]
    #[arg(long, value_name = "ROWS")]
    pub(crate) batch_size: Option<usize>,
    /// Append rows that cannot be written, with the reason, to this NDJSON file
    #[arg(long, value_name = "PATH")]
    pub(crate) dlq: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) retry: RetryArgs,
    /// Seconds between progress lines on stderr when it is not a terminal
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) progress_interval: f64,
    /// Bytes of input per chunk handed to an encoding worker (tuning; checkpoints move at chunk
    /// boundaries)
    #[arg(long, value_name = "BYTES", hide = true)]
    pub(crate) chunk_bytes: Option<usize>,
    /// Keep the load's progress in this file and, when it exists, go on from where it says
    /// (files only, NDJSON or CSV; see the README's "Resumable loads")
    #[arg(long, value_name = "PATH")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Longest the saved checkpoint may lag behind the rows settled
    #[arg(long, value_name = "DURATION", default_value = crate::resume::SAVE_EVERY, value_parser = crate::resilience::parse_duration)]
    pub(crate) checkpoint_interval: Duration,
    /// After Ctrl-C or SIGTERM, how long the rows in flight may take to be written before
    /// bqsink gives up on them (dead-lettered with their fate)
    #[arg(long, value_name = "DURATION", default_value = crate::stop::DEFAULT_GRACE_PERIOD, value_parser = crate::resilience::parse_duration)]
    pub(crate) grace_period: Duration,
}

impl LoadArgs {
    /// The settings these flags set.
    fn flags(&self) -> Vec<FlagValue> {
        let mut f = vec![FlagValue::new("table_id", "--table", &self.table)];
        if let Some(m) = self.mode {
            f.push(FlagValue::new("write_mode", "--mode", WriteMode::from(m)));
        }
        if let Some(v) = &self.partition_field {
            f.push(FlagValue::new("partition_field", "--partition-field", v));
        }
        if let Some(v) = self.partition_type {
            f.push(FlagValue::new("partition_type", "--partition-type", v));
        }
        if !self.cluster.is_empty() {
            f.push(FlagValue::new("clustering_fields", "--cluster", &self.cluster));
        }
        if let Some(v) = self.create_disposition {
            let s = match v {
                CreateArg::CreateIfNeeded => "CREATE_IF_NEEDED",
                CreateArg::CreateNever => "CREATE_NEVER",
            };
            f.push(FlagValue::new("create_disposition", "--create-disposition", s));
        }
        if let Some(v) = self.write_disposition {
            let s = match v {
                WriteArg::WriteAppend => "WRITE_APPEND",
                WriteArg::WriteEmpty => "WRITE_EMPTY",
                WriteArg::WriteTruncate => "WRITE_TRUNCATE",
            };
            f.push(FlagValue::new("write_disposition", "--write-disposition", s));
        }
        if let Some(v) = self.batch_size {
            f.push(FlagValue::new("batch_size", "--batch-size", v));
        }
        self.retry.push_flags(&mut f);
        f
    }
}

pub(crate) async fn run(args: LoadArgs, global: &Global, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let settings = global.settings(args.flags())?;
    let cx = Context { settings: &settings, needs: Needs::DataEditor };
    let fail = |e: bqsink::Error| anyhow!(explain(&e, cx));
    settings.config.validate().map_err(|e| fail(e.into()))?;

    let inputs = input::expand(&args.inputs)?;
    let total: Option<u64> = inputs.iter().map(|i| i.size).sum();
    let mut schema = args.schema.as_deref().map(read_schema).transpose()?;
    let resume = match &args.checkpoint {
        None => None,
        Some(path) => {
            let c = &settings.config;
            let table = format!("{}.{}.{}", c.project_id, c.dataset_id, c.table_id);
            let mode = format!("{:?}", c.effective_write_mode());
            match Resume::open(path, args.checkpoint_interval, &table, &mode, &inputs)? {
                Opened::Done => {
                    eprintln!("bqsink: the checkpoint {} says this load is done; nothing to write", path.display());
                    summary_line(0, 0, 0, 0, started.elapsed().as_secs_f64(), false);
                    return Ok(ExitCode::SUCCESS);
                }
                Opened::Run(r) => {
                    let at = r.position();
                    if at != Default::default() && !global.quiet {
                        let name = inputs.get(at.input).map(Input::name).unwrap_or_default();
                        eprintln!("bqsink: resuming from {} (byte {} of {name})", path.display(), at.offset);
                    }
                    Some(r)
                }
            }
        }
    };

    let (auth, admin) = connect(&settings, Needs::DataEditor).await?;
    ensure_dataset(
        &admin,
        &settings,
        args.create_dataset,
        "; pass --create-dataset to create it (with --location for its region), or check --project and --dataset",
        global.quiet,
    )
    .await?;
    // Without --schema, a table to create gets the schema inferred over the whole input, and
    // rows are reshaped the way that schema assumes.
    let mut normalize = None;
    if schema.is_none() && settings.config.create_disposition == bqsink::CreateDisposition::CreateIfNeeded {
        if resume.is_some() {
            bail!("--checkpoint needs the table's schema: pass --schema, or load into an existing table");
        }
        let c = &settings.config;
        let table = bqsink::TableRef::new(&c.project_id, &c.dataset_id, &c.table_id).map_err(|e| fail(e.into()))?;
        if admin.rest().get_table(&table).await.map_err(|e| fail(e.into()))?.is_none() {
            let found = crate::infer::over(&inputs, args.format, InferMode::Generic)
                .await
                .with_context(|| format!("table {table} does not exist"))?;
            if !global.quiet {
                eprintln!(
                    "bqsink: inferred {} columns from {} rows for {table}",
                    found.schema.fields.len(),
                    found.rows
                );
            }
            for c in found.conflicts.iter().take(MAX_PRINTED_ROW_ERRORS as usize) {
                eprintln!("bqsink: warning: {c}");
            }
            schema = Some(found.schema);
            normalize = Some(InferMode::Generic);
        }
    }

    let mut builder =
        DestinationBuilder::from_config(settings.config.clone()).endpoints(settings.endpoints.clone()).auth(auth);
    if let Some(s) = schema {
        builder = builder.schema(s);
    }
    if let Some(path) = &args.dlq {
        builder = builder.dead_letter_file(path);
    }
    let dest = Arc::new(builder.build().await.map_err(fail)?);
    if let Some(r) = &resume {
        match r.stream() {
            Some((stream, offset)) => {
                if dest.resume_stream(stream, offset).await.map_err(fail)? == bqsink::Resumed::AlreadyCommitted {
                    r.save(true)?;
                    eprintln!("bqsink: the load was committed before it was stopped; nothing to write");
                    summary_line(0, 0, 0, 0, started.elapsed().as_secs_f64(), false);
                    return Ok(ExitCode::SUCCESS);
                }
            }
            // The stream is in the checkpoint before any row goes to it.
            None => r.set_stream(dest.open_stream().await.map_err(fail)?)?,
        }
    }

    let interval = Duration::from_secs_f64(args.progress_interval.max(0.1));
    let counters = Arc::new(Counters::default());
    // Without a known schema, rows are read as records and reshaped the way the inferred
    // schema assumes; otherwise the reader below is not used.
    let mut rows = if normalize.is_some() {
        input::spawn(inputs.clone(), args.format, counters.bytes.clone())
    } else {
        tokio::sync::mpsc::channel(1).1
    };
    let mut progress = Progress::start(
        Style::choose(global.quiet, interval),
        total.map(Total::Bytes),
        counters.clone(),
        Arc::downgrade(&dest),
    );
    let mut errors = RowErrors { inputs: &inputs, printed: 0 };
    interrupt.set_graceful(true);
    let stopper = crate::stop::arm(interrupt, dest.abort_handle(), args.grace_period);

    let mut fatal: Option<anyhow::Error> = None;
    let mut broken: Option<String> = None;
    if normalize.is_none() {
        // The table's schema is known: input bytes go straight to row bytes.
        drop(rows);
        let printed = Arc::new(AtomicU64::new(0));
        match load_fast(&dest, &args, &inputs, &counters, &progress, &printed, interrupt, resume.as_ref()).await {
            Ok(()) => {}
            // An input that breaks off: what was read before it is still written.
            Err(Stop::Input(m)) => broken = Some(m),
            Err(Stop::Fatal(e)) => fatal = Some(e),
        }
        errors.printed = printed.load(Ordering::Relaxed);
        rows = tokio::sync::mpsc::channel(1).1;
    }
    while fatal.is_none() && normalize.is_some() {
        let item = tokio::select! {
            biased;
            () = interrupt.wait() => break,
            item = rows.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        match item {
            Item::Row(at, record) => {
                counters.read.fetch_add(1, Ordering::Relaxed);
                let record = match normalize {
                    Some(mode) => bqsink_schema::normalize_record(&record, mode),
                    None => record,
                };
                match dest.write_row(record, Some(at.index())).await {
                    Ok(None) => {}
                    Ok(Some(e)) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        errors.report(&progress, at, &describe(&e));
                    }
                    Err(e) => {
                        fatal = Some(fail(e));
                        break;
                    }
                }
            }
            Item::Bad(at, raw, why) => {
                counters.read.fetch_add(1, Ordering::Relaxed);
                counters.refused.fetch_add(1, Ordering::Relaxed);
                errors.report(&progress, at, &why);
                if let Err(e) = dest.dead_letter_raw(Some(at.index()), raw, why) {
                    fatal = Some(fail(e));
                    break;
                }
            }
            Item::Fatal(message) => {
                fatal = Some(anyhow!(message));
                break;
            }
        }
    }
    // The reader stops at its next row.
    drop(rows);
    let read = counters.read.load(Ordering::Relaxed);
    let refused = counters.refused.load(Ordering::Relaxed);
    let secs = || started.elapsed().as_secs_f64();

    // Fatal or not, the destination is closed: every row read ends written or dead-lettered.
    progress.set_message("flushing the rows in flight…");
    let dest = unwrap_arc(dest).await;
    if let Some(r) = &resume {
        // The settled prefix as far as it goes before the commit.
        if dest.flush().await.is_ok() {
            if let Some(s) = dest.take_settled().await {
                r.settled(&s)?;
            }
            r.save(false)?;
        }
        crate::failpoint::hit("before-close");
    }
    let result = dest.close().await;
    stopper.abort();
    progress.finish();
    errors.finish(&progress);
    let interrupted = interrupt.fired();
    let (s, cause) = match result {
        Ok(s) => (s, None),
        Err(bqsink::Error::Incomplete { summary, cause }) => (summary, Some(fail(*cause))),
        Err(e) => {
            // Not every row could be accounted for (the dead-letter queue failed).
            summary_line(read, 0, refused, 0, secs(), interrupted);
            return Err(fail(e));
        }
    };
    let failed = s.rows_dead_lettered + s.rows_rejected;
    if failed > 0 {
        match &args.dlq {
            Some(path) if s.rows_dead_lettered > 0 => {
                eprintln!("bqsink: {} rows dead-lettered to {}", s.rows_dead_lettered, path.display())
            }
            _ => eprintln!("bqsink: {failed} rows refused; pass --dlq PATH to keep them with the reason"),
        }
    }
    summary_line(read, s.rows_written, failed, s.rows_in_doubt, secs(), interrupted);
    let cause = fatal.or(cause).or(broken.map(|m| anyhow!(m)));
    if let Some(r) = &resume {
        crate::failpoint::hit("after-commit");
        // Done only when the whole input was read and every row settled.
        r.save(cause.is_none() && !interrupted)?;
    }
    finish(cause, read, s.rows_written, interrupted.then(|| interrupt.exit_code()))
}

/// The exit code once the summary is printed: 2 whenever a row read was not written (in doubt
/// included); else 1 after an error (an input that broke off, a fatal error: every row read was
/// written, the rest was not read); else the signal's code after a graceful stop; else 0. The
/// error is reported on stderr first.
pub(crate) fn finish(
    cause: Option<anyhow::Error>,
    read: u64,
    written: u64,
    signal: Option<u8>,
) -> anyhow::Result<ExitCode> {
    if let Some(e) = &cause {
        eprintln!("bqsink: error: {e:#}");
    }
    Ok(if written < read {
        ExitCode::from(EXIT_SOME_ROWS_FAILED)
    } else if cause.is_some() {
        ExitCode::from(crate::EXIT_FATAL)
    } else if let Some(code) = signal {
        ExitCode::from(code)
    } else {
        ExitCode::SUCCESS
    })
}

/// The summary, always the last line on stdout.
pub(crate) fn summary_line(read: u64, written: u64, dead: u64, in_doubt: u64, secs: f64, interrupted: bool) {
    let rate = written as f64 / secs.max(1e-9);
    let doubt = if in_doubt > 0 { format!(" ({in_doubt} in doubt)") } else { String::new() };
    let tail = if interrupted { ", interrupted" } else { "" };
    out(&format!("read {read}, written {written}, dead-lettered {dead}{doubt} ({secs:.1}s, {rate:.0} rows/s{tail})"));
}

/// The writer, once the progress display has let go of it.
pub(crate) async fn unwrap_arc<T>(mut dest: Arc<T>) -> T {
    loop {
        match Arc::try_unwrap(dest) {
            Ok(d) => return d,
            Err(shared) => {
                dest = shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// An input read from `offset` on (bytes after a CSV header), with the number of lines skipped:
/// NDJSON skips them; CSV keeps its header line and skips the records after it; a JSON array
/// cannot be resumed (its positions are elements, not bytes).
fn resume_at(
    mut reader: std::io::BufReader<Box<dyn std::io::Read + Send>>,
    format: bqsink::formats::Format,
    offset: u64,
    name: &str,
) -> Result<(Box<dyn std::io::Read + Send>, u64), Stop> {
    use bqsink::formats::Format as F;
    let cannot = |e: std::io::Error| Stop::Fatal(anyhow!("cannot read {name}: {e}"));
    match format {
        F::Ndjson => {
            let lines = crate::resume::skip(&mut reader, offset).map_err(cannot)?;
            Ok((Box::new(reader), lines))
        }
        F::Csv => {
            let buf = std::io::BufRead::fill_buf(&mut reader).map_err(cannot)?;
            let Some(end) = bqsink::formats::chunk::first_record_end(buf) else {
                return Err(Stop::Fatal(anyhow!(
                    "{name}: its CSV header is longer than 64 KiB or the file has no record; --checkpoint cannot resume it"
                )));
            };
            let header = buf[..end].to_vec();
            let header_lines = header.iter().filter(|&&b| b == b'\n').count() as u64;
            let lines = crate::resume::skip(&mut reader, end as u64 + offset).map_err(cannot)?;
            // The chunker reads the header again and counts its lines itself.
            Ok((Box::new(std::io::Read::chain(std::io::Cursor::new(header), reader)), lines - header_lines))
        }
        F::JsonArray => Err(Stop::Fatal(anyhow!(
            "--checkpoint cannot resume a JSON array ({name}): convert it to NDJSON, or load without --checkpoint"
        ))),
    }
}

/// Why [`load_fast`] stopped before the end of its inputs.
enum Stop {
    /// An input broke off (unreadable, a JSON array cut short): the rest is not loaded.
    Input(String),
    /// Writing failed.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Fatal(e)
    }
}

/// Each input through [`Destination::load_until`]: chunked, transcoded on the encoding
/// workers, refused rows printed as they come (the first few) and dead-lettered with their text.
/// With a checkpoint, inputs and bytes before its position are skipped.
#[allow(clippy::too_many_arguments)]
async fn load_fast(
    dest: &Arc<bqsink::Destination>,
    args: &LoadArgs,
    inputs: &[Input],
    counters: &Arc<Counters>,
    progress: &Progress,
    printed: &Arc<AtomicU64>,
    interrupt: &Interrupt,
    resume: Option<&Arc<Resume>>,
) -> Result<(), Stop> {
    let from = resume.map(|r| r.position()).unwrap_or_default();
    for (index, input) in inputs.iter().enumerate().skip(from.input) {
        let name = input.name();
        let raw: Box<dyn std::io::Read + Send> = match &input.path {
            Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("cannot open {name}"))?),
            None => Box::new(std::io::stdin()),
        };
        let raw = input::Counting::new(raw, counters.bytes.clone());
        let (reader, _) = bqsink::formats::input::open(Box::new(raw)).with_context(|| format!("cannot read {name}"))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
        let head = std::io::BufRead::fill_buf(&mut reader).with_context(|| format!("cannot read {name}"))?;
        let format = match args.format {
            Format::Auto => bqsink::formats::input::detect(input.path.as_ref().and_then(|p| p.to_str()), head),
            Format::Ndjson => bqsink::formats::Format::Ndjson,
            Format::Csv => bqsink::formats::Format::Csv,
            Format::Json => bqsink::formats::Format::JsonArray,
        };
        let base = if index == from.input { from.offset } else { 0 };
        let (reader, skipped_lines) = match resume {
            Some(_) => resume_at(reader, format, base, &name)?,
            None => (Box::new(reader) as Box<dyn std::io::Read + Send>, 0),
        };
        let unit = if format == bqsink::formats::Format::JsonArray { "element" } else { "line" };
        let place = if inputs.len() > 1 { format!("{name} {unit}") } else { unit.to_owned() };
        let print = progress.printer();
        let printed = printed.clone();
        let shown = counters.clone();
        let mut options = LoadOptions::new(format);
        if let Some(bytes) = args.chunk_bytes {
            options = options.with_chunk_bytes(bytes);
        }
        let options = options.with_rows_read(counters.read.clone()).on_refused(move |e| {
            // Refused before BigQuery saw them: the progress line adds them to the sink's own.
            shown.refused.fetch_add(1, Ordering::Relaxed);
            if printed.fetch_add(1, Ordering::Relaxed) < MAX_PRINTED_ROW_ERRORS {
                let number = e.row.map_or(0, |r| r + 1);
                print(&format!("bqsink: {place} {number}: {}", describe(e)));
            }
        });
        let options = match resume {
            Some(r) => {
                r.begin_input(index, base);
                // Numbered from the line after the ones skipped.
                let r = r.clone();
                options.starting_at_line(skipped_lines + 1).on_settled(move |s| {
                    crate::failpoint::hit("after-ack-before-checkpoint");
                    if let Err(e) = r.settled(s) {
                        eprintln!("bqsink: warning: {e:#}");
                    }
                })
            }
            None => options,
        };
        let report = dest.load_until(reader, options, interrupt.wait()).await.map_err(|e| match e {
            bqsink::Error::Input(m) => Stop::Input(format!("{name}: {m}")),
            e => Stop::Fatal(anyhow!("{e}")),
        })?;
        if report.stopped {
            break;
        }
    }
    Ok(())
}

fn describe(e: &RowError) -> String {
    if e.column.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.column, e.message)
    }
}

/// Refused rows on stderr: the first few named, the rest counted.
pub(crate) struct RowErrors<'a> {
    pub(crate) inputs: &'a [Input],
    pub(crate) printed: u64,
}

impl RowErrors<'_> {
    pub(crate) fn report(&mut self, progress: &Progress, at: Position, message: &str) {
        self.printed += 1;
        if self.printed > MAX_PRINTED_ROW_ERRORS {
            return;
        }
        let unit = match at.unit {
            Unit::Line => "line",
            Unit::Element => "element",
        };
        let place = match self.inputs.get(at.input) {
            Some(i) if self.inputs.len() > 1 => format!("{} {unit} {}", i.name(), at.number),
            _ => format!("{unit} {}", at.number),
        };
        progress.println(&format!("bqsink: {place}: {message}"));
    }

    pub(crate) fn finish(&self, progress: &Progress) {
        if self.printed > MAX_PRINTED_ROW_ERRORS {
            progress.println(&format!("bqsink: … and {} more rows refused", self.printed - MAX_PRINTED_ROW_ERRORS));
        }
    }
}

pub(crate) fn read_schema(path: &std::path::Path) -> anyhow::Result<Schema> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the schema file {}", path.display()))?;
    Schema::from_json(&text).map_err(|e| anyhow!("schema file {}: {e}", path.display()))
}

/// Makes sure the dataset exists: creates it when `create`, else fails saying `why_not` after
/// "dataset P.D does not exist" (how to create it, or why bqsink may not).
pub(crate) async fn ensure_dataset(
    admin: &Admin,
    settings: &Settings,
    create: bool,
    why_not: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let c = &settings.config;
    let cx = Context { settings, needs: Needs::DataEditor };
    let exists = admin.dataset_exists(&c.project_id, &c.dataset_id).await.map_err(|e| anyhow!(explain(&e, cx)))?;
    if exists {
        return Ok(());
    }
    if !create {
        bail!("dataset {}.{} does not exist{why_not}", c.project_id, c.dataset_id);
    }
    admin
        .create_dataset(&c.project_id, &c.dataset_id, c.location.as_deref())
        .await
        .map_err(|e| anyhow!(explain(&e, cx)))?;
    if !quiet {
        eprintln!("bqsink: created dataset {}.{}", c.project_id, c.dataset_id);
    }
    Ok(())
}
