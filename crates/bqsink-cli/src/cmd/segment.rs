//! `bqsink segment`: Segment payloads (track, identify, page, screen, group, alias; single or in
//! a `{"batch": [...]}` envelope, one per line) into Segment's warehouse tables and one table
//! per track event, through the facade's [`SegmentWriter`].
//!
//! Files are finite, so they are read twice: a first pass plans every table's schema over all
//! their payloads, keeping no rows, and applies it before the first row is written (each table
//! changes at most once); the second pass transcodes the payloads straight to row bytes on every
//! core. Memory stays bounded by the chunks in flight, whatever the files' size. Stdin is
//! unbounded, so its tables evolve line by line as new properties appear.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bqsink::formats::SegmentScan;
use bqsink::{
    CreateDisposition, DatasetWriterBuilder, LoadOptions, NdjsonFile, PayloadOutcome, RowError, SegmentOptions,
    SegmentWriter, WriteMode,
};

use super::connect;
use super::load::{finish, summary_line, unwrap_arc, ModeArg, RowErrors, MAX_PRINTED_ROW_ERRORS};
use crate::errors::{explain, Context, Needs};
use crate::input::{self, Input, Line, Position, Unit};
use crate::interrupt::Interrupt;
use crate::progress::{Counters, Progress, Style, Total};
use crate::resilience::RetryArgs;
use crate::resume::{Opened, Resume};
use crate::settings::FlagValue;
use crate::Global;

/// Planning conflicts printed before the rest are only counted.
const MAX_PRINTED_CONFLICTS: usize = 20;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  bqsink segment --project my-proj --dataset segment --dlq refused.ndjson events-2024-06-*.ndjson
  tail -F /var/log/segment/events.ndjson | bqsink segment --dataset segment -

Input: NDJSON, one payload ({\"type\": \"track\", …}) or one batch envelope ({\"batch\": […]})
per line. Rows land in tracks, identifies, users, pages, screens, groups, aliases and one table
per track event (its name slugged: `Order Completed` → order_completed), with Segment's warehouse
columns (id, anonymous_id, user_id, received_at, sent_at, timestamp, context_*, …) and the
properties or traits as snake_case columns; tracks carries no properties. Tables are created
partitioned by DAY on received_at, in a dataset created when missing.

Files are read twice: a first pass plans each table's schema over all their payloads before
the first write (a table changes at most once), keeping no rows; stdin evolves the tables as
new properties appear.
With BIGQUERY_AUTO_TABLE_MANAGEMENT=false no table is created or changed.

Rows are counted per table row: a track makes 2 (tracks and its event table, 1 with
--no-event-tables), an identify with a user id 2 (identifies and users); a line that is not a
payload is 1, dead-lettered with its text. The last line on stdout is
`read N, written N, dead-lettered N (elapsed, rows/s)`; exit codes as for `bqsink load`.";

#[derive(clap::Args, Debug)]
pub(crate) struct SegmentArgs {
    /// NDJSON files of Segment payloads, glob patterns (quoted), or `-` for stdin
    #[arg(required = true, value_name = "FILE|GLOB|-")]
    pub(crate) inputs: Vec<String>,
    /// Append rows that cannot be written, with the reason, to this NDJSON file
    #[arg(long, value_name = "PATH")]
    pub(crate) dlq: Option<PathBuf>,
    /// Write mode [default: streaming]
    #[arg(long, value_enum)]
    pub(crate) mode: Option<ModeArg>,
    /// Rows per AppendRows request [default: 1000]
    #[arg(long, value_name = "ROWS")]
    pub(crate) batch_size: Option<usize>,
    /// Write track calls to `tracks` only, not also to one table per event
    #[arg(long)]
    pub(crate) no_event_tables: bool,
    #[command(flatten)]
    pub(crate) retry: RetryArgs,
    /// Seconds between progress lines on stderr when it is not a terminal
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) progress_interval: f64,
    /// After Ctrl-C or SIGTERM, how long the rows in flight may take to be written before
    /// bqsink gives up on them (dead-lettered with their fate)
    #[arg(long, value_name = "DURATION", default_value = crate::stop::DEFAULT_GRACE_PERIOD, value_parser = crate::resilience::parse_duration)]
    pub(crate) grace_period: Duration,
    /// Keep the load's progress in this file and, when it exists, go on from where it says
    /// (files only; streaming mode; see the README's "Resumable loads")
    #[arg(long, value_name = "PATH")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Longest the saved checkpoint may lag behind the rows settled
    #[arg(long, value_name = "DURATION", default_value = crate::resume::SAVE_EVERY, value_parser = crate::resilience::parse_duration)]
    pub(crate) checkpoint_interval: Duration,
    /// Bytes of input per chunk handed to an encoding worker (tuning; checkpoints move at chunk
    /// boundaries)
    #[arg(long, value_name = "BYTES", hide = true)]
    pub(crate) chunk_bytes: Option<usize>,
}

impl SegmentArgs {
    /// The settings these flags set.
    fn flags(&self) -> Vec<FlagValue> {
        let mut f = Vec::new();
        if let Some(m) = self.mode {
            f.push(FlagValue::new("write_mode", "--mode", WriteMode::from(m)));
        }
        if let Some(v) = self.batch_size {
            f.push(FlagValue::new("batch_size", "--batch-size", v));
        }
        self.retry.push_flags(&mut f);
        f
    }
}

/// A line that did not become rows: its text and why.
struct Refused {
    text: String,
    why: String,
}

pub(crate) async fn run(args: SegmentArgs, global: &Global, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let settings = global.settings(args.flags())?;
    let cx = Context { settings: &settings, needs: Needs::DataEditor };
    let fail = |e: bqsink::Error| anyhow!(explain(&e, cx));
    settings.config.validate().map_err(|e| fail(e.into()))?;
    let auto = settings.config.create_disposition == CreateDisposition::CreateIfNeeded;

    let inputs = input::expand(&args.inputs)?;
    let resume = match &args.checkpoint {
        None => None,
        Some(path) => {
            let c = &settings.config;
            if c.effective_write_mode() != WriteMode::Streaming {
                bail!(
                    "--checkpoint resumes `bqsink segment` in --mode streaming only: a payload's rows go to several \
                     tables, and their streams' offsets cannot be kept in step across a crash; a resumed \
                     streaming load may repeat the rows after the checkpoint, which the de-duplicated views \
                     (by message id) absorb"
                );
            }
            let dataset = format!("{}.{} (segment)", c.project_id, c.dataset_id);
            let mode = format!("{:?}", c.effective_write_mode());
            match Resume::open(path, args.checkpoint_interval, &dataset, &mode, &inputs)? {
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
    // The dataset must exist unless tables are managed automatically.
    super::load::ensure_dataset(
        &admin,
        &settings,
        auto,
        " and BIGQUERY_AUTO_TABLE_MANAGEMENT is false; create it, or check --project and --dataset",
        global.quiet,
    )
    .await?;

    let mut builder = DatasetWriterBuilder::from_config(settings.config.clone())
        .endpoints(settings.endpoints.clone())
        .auth(auth)
        .auto_table_management(auto);
    if let Some(path) = &args.dlq {
        let file =
            NdjsonFile::open(path).map_err(|e| anyhow!("cannot open the dead-letter file {}: {e}", path.display()))?;
        builder = builder.dead_letter_queue(Arc::new(file));
    }
    let options = SegmentOptions::default().with_event_tables(!args.no_event_tables);
    let writer = Arc::new(SegmentWriter::new(builder, options).await.map_err(fail)?);
    // Rows the writer refuses are in its dead-letter count when a queue is set; without one
    // the loop counts them for the progress display.
    let counts_own_refusals = args.dlq.is_none();

    let interval = Duration::from_secs_f64(args.progress_interval.max(0.1));
    let counters = Arc::new(Counters::default());
    let mut errors = RowErrors { inputs: &inputs, printed: 0 };
    interrupt.set_graceful(true);
    let stopper = crate::stop::arm(interrupt, writer.abort_handle(), args.grace_period);

    // Files: a first pass plans every table once, keeping no rows.
    let mut fatal: Option<anyhow::Error> = None;
    let mut scan = SegmentScan::default();
    let has_files = inputs.iter().any(|i| i.path.is_some());
    for input in inputs.iter().filter(|i| i.path.is_some()) {
        if interrupt.fired() {
            break;
        }
        let name = input.name();
        let scanned = match open(input) {
            Ok(file) => writer.scan(file, interrupt.wait()).await.map_err(|e| match e {
                bqsink::Error::Input(m) => anyhow!("{name}: {m}"),
                e => fail(e),
            }),
            Err(e) => Err(e),
        };
        match scanned {
            Ok(s) => scan.merge(s),
            Err(e) => {
                fatal = Some(e);
                break;
            }
        }
    }
    if fatal.is_none() && !interrupt.fired() && has_files && scan.lines > 0 {
        match writer.plan_scanned(&scan).await {
            Ok(conflicts) => report_plan(&scan, &conflicts, global),
            Err(e) => fatal = Some(fail(e)),
        }
    }
    let total_rows = scan.rows;
    let has_stdin = inputs.iter().any(|i| i.path.is_none());
    let total = (!has_stdin).then_some(Total::Rows(total_rows));
    let mut progress =
        Progress::start(Style::choose(global.quiet, interval), total, counters.clone(), Arc::downgrade(&writer));

    let printed = Arc::new(AtomicU64::new(0));
    let mut handle = |outcome: Result<PayloadOutcome, bqsink::Error>, at: Position, progress: &Progress| {
        let outcome = outcome.map_err(fail)?;
        counters.read.fetch_add(outcome.rows, Ordering::Relaxed);
        if counts_own_refusals {
            counters.refused.fetch_add(outcome.refused.len() as u64, Ordering::Relaxed);
        }
        for e in &outcome.refused {
            errors.report(progress, at, &describe(e, at));
        }
        anyhow::Ok(())
    };
    let from = resume.as_ref().map(|r| r.position()).unwrap_or_default();
    'inputs: for (n, input) in inputs.iter().enumerate().skip(from.input) {
        if fatal.is_some() || interrupt.fired() {
            break;
        }
        if input.path.is_some() {
            // The second pass: straight to row bytes, on every core.
            let base = if n == from.input { from.offset } else { 0 };
            let file = match open(input).and_then(|f| skip_to(f, base, &input.name())) {
                Ok(f) => f,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            };
            let print = progress.printer();
            let (printed, shown, all) = (printed.clone(), counters.clone(), inputs.clone());
            let (file, skipped_lines) = file;
            let mut options = LoadOptions::ndjson().starting_at_line(skipped_lines + 1);
            if let Some(bytes) = args.chunk_bytes {
                options = options.with_chunk_bytes(bytes);
            }
            if let Some(r) = &resume {
                r.begin_input(n, base);
                let r = r.clone();
                options = options.on_settled(move |s| {
                    crate::failpoint::hit("after-ack-before-checkpoint");
                    if let Err(e) = r.settled(s) {
                        eprintln!("bqsink: warning: {e:#}");
                    }
                });
            }
            let options = options.with_rows_read(counters.read.clone()).on_refused(move |e| {
                if counts_own_refusals {
                    shown.refused.fetch_add(1, Ordering::Relaxed);
                }
                if printed.fetch_add(1, Ordering::Relaxed) < MAX_PRINTED_ROW_ERRORS {
                    let at = Position { input: n, unit: Unit::Line, number: e.row.map_or(0, |r| r + 1) };
                    print(&format!("bqsink: {}: {}", place(&all, at), describe(e, at)));
                }
            });
            match writer.load(file, options, interrupt.wait()).await {
                Ok(report) if report.stopped => break,
                Ok(_) => continue,
                Err(bqsink::Error::Input(m)) => {
                    fatal = Some(anyhow!("{}: {m}", input.name()));
                    break;
                }
                Err(e) => {
                    fatal = Some(fail(e));
                    break;
                }
            }
        }
        // Stdin: line by line, tables evolving as they go.
        let mut lines = input::spawn_lines(vec![(n, input.clone())], counters.bytes.clone());
        loop {
            let line = tokio::select! {
                biased;
                () = interrupt.wait() => break 'inputs,
                line = lines.recv() => match line {
                    Some(line) => line,
                    None => break,
                },
            };
            let (at, outcome) = match line {
                Line::Text(at, text) => {
                    let outcome = match writer.rows_of_line(&text, at.number) {
                        Ok(rows) => writer.write_rows_at(rows, Some(at.index())).await,
                        Err(e) => refuse(&writer, at, Refused { text, why: e.to_string() }),
                    };
                    (at, outcome)
                }
                Line::Bad(at, text, why) => (at, refuse(&writer, at, Refused { text, why })),
                Line::Fatal(message) => {
                    fatal = Some(anyhow!(message));
                    break 'inputs;
                }
            };
            if let Err(e) = handle(outcome, at, &progress) {
                fatal = Some(e);
                break 'inputs;
            }
        }
    }
    errors.printed += printed.load(Ordering::Relaxed);

    let read = counters.read.load(Ordering::Relaxed);
    let secs = || started.elapsed().as_secs_f64();
    // Fatal or not, the writer is closed: every row read ends written or dead-lettered.
    progress.set_message("flushing the rows in flight…");
    let writer = unwrap_arc(writer).await;
    if let Some(r) = &resume {
        if writer.flush().await.is_ok() {
            r.save(false)?;
        }
    }
    let result = writer.close().await;
    stopper.abort();
    progress.finish();
    errors.finish(&progress);
    let interrupted = interrupt.fired();
    let (s, cause) = match result {
        Ok(s) => (s, None),
        Err(bqsink::Error::Incomplete { summary, cause }) => (summary, Some(fail(*cause))),
        Err(e) => {
            // Not every row could be accounted for (the dead-letter queue failed).
            summary_line(read, 0, counters.refused.load(Ordering::Relaxed), 0, secs(), interrupted);
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
    let cause = fatal.or(cause);
    if let Some(r) = &resume {
        // Done only when the whole input was read and every row settled.
        r.save(cause.is_none() && !interrupted)?;
    }
    finish(cause, read, s.rows_written, interrupted.then(|| interrupt.exit_code()))
}

/// An input's bytes (decompressed) from byte `offset` on, and the lines skipped to get there.
fn skip_to(file: std::fs::File, offset: u64, name: &str) -> anyhow::Result<(Box<dyn std::io::Read + Send>, u64)> {
    if offset == 0 {
        return Ok((Box::new(file), 0));
    }
    let (mut reader, _) =
        bqsink::formats::input::open(Box::new(file)).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    let lines = crate::resume::skip(&mut reader, offset).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    Ok((reader, lines))
}

/// A file of the inputs, opened.
fn open(input: &Input) -> anyhow::Result<std::fs::File> {
    let path = input.path.as_ref().ok_or_else(|| anyhow!("stdin is read line by line"))?;
    std::fs::File::open(path).map_err(|e| anyhow!("cannot open {}: {e}", input.name()))
}

/// Where a line is, as refusals name it.
fn place(inputs: &[Input], at: Position) -> String {
    match inputs.get(at.input) {
        Some(i) if inputs.len() > 1 => format!("{} line {}", i.name(), at.number),
        _ => format!("line {}", at.number),
    }
}

/// Dead-letters a line that is not a payload, as one row.
fn refuse(writer: &SegmentWriter, at: Position, r: Refused) -> Result<PayloadOutcome, bqsink::Error> {
    let e = writer.dataset().dead_letter_raw(Some(at.index()), r.text, r.why)?;
    let mut outcome = PayloadOutcome::default();
    outcome.rows = 1;
    outcome.refused.push(e);
    Ok(outcome)
}

/// A refused row of the line at `at`, which the message is printed after: the writer's
/// messages already name table and column, a payload's error its line.
fn describe(e: &RowError, at: Position) -> String {
    let message = e.message.strip_prefix(&format!("line {}: ", at.number)).unwrap_or(&e.message);
    if e.column.is_empty() || message.contains(&e.column) {
        message.to_owned()
    } else {
        format!("{}: {message}", e.column)
    }
}

/// What planning found, on stderr: one line, and with `-v` the columns holding mixed types
/// (their rows are coerced when the value converts, else dead-lettered and named as written).
fn report_plan(scan: &SegmentScan, conflicts: &[String], global: &Global) {
    if global.quiet {
        return;
    }
    let tables = &scan.tables;
    let rows = scan.rows;
    let mixed = match (conflicts.len(), global.verbose) {
        (0, _) => String::new(),
        (n, 0) => format!("; {n} columns hold values of mixed types (-v to list them)"),
        (n, _) => format!("; {n} columns hold values of mixed types:"),
    };
    eprintln!("bqsink: planned {} tables over {rows} rows from {} lines{mixed}", tables.len(), scan.lines);
    if global.verbose > 0 {
        for c in conflicts.iter().take(MAX_PRINTED_CONFLICTS) {
            eprintln!("bqsink:   {c}");
        }
        if conflicts.len() > MAX_PRINTED_CONFLICTS {
            eprintln!("bqsink:   … and {} more", conflicts.len() - MAX_PRINTED_CONFLICTS);
        }
    }
}
