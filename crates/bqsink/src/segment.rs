//! Segment-compatible analytics events: `track`, `identify`, `page`, `screen`, `group` and
//! `alias` payloads (single, or in a `{"batch": [...]}` envelope) land in `tracks`,
//! `identifies`, `users`, `pages`, `screens`, `groups`, `aliases` and one table per track
//! event, with Segment's warehouse columns (see `bqsink_schema::segment`). Tables are created
//! partitioned by DAY on `received_at` and evolve as properties appear, through a
//! [`DatasetWriter`].
//!
//! Accounting is per table row: a `track` call makes two rows (`tracks` and its event table),
//! an `identify` two (`identifies` and `users`); a payload that cannot become rows is one
//! dead-lettered row with its text and the reason.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bqsink_core::{RowError, Timestamp};
use bqsink_engine::workers::EncoderPool;
use bqsink_formats::{Cut, Format, Piece, SegmentScan, SegmentScanner, SegmentTranscoder};
use bqsink_schema::segment::{default_partitioning, table_schema};
use bqsink_schema::{InferMode, SchemaInference, SegmentOptions, SegmentRow};
use bqsink_transport::RowDescriptor;
use tokio::sync::{mpsc, oneshot};

use crate::dataset::{DatasetWriter, DatasetWriterBuilder};
use crate::destination::{read_chunks, FromReader, QUEUED_CHUNKS};
use crate::dlq_flush::flush_dead_letters;
use crate::summary::Summary;
use crate::{Error, LoadOptions, LoadReport};

/// What became of one payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadOutcome {
    /// Table rows the payload made.
    pub rows: u64,
    /// Rows refused (dead-lettered when a queue is set), each naming table and column.
    pub refused: Vec<RowError>,
}

/// Writes Segment payloads into a dataset laid out like Segment's warehouses.
#[derive(Debug)]
pub struct SegmentWriter {
    writer: DatasetWriter,
    options: SegmentOptions,
    workers: Arc<EncoderPool>,
}

/// Now, as a timestamp (for `received_at`, `uuid_ts` and `loaded_at`).
pub fn now() -> Timestamp {
    let micros =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    Timestamp::from_micros(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl SegmentWriter {
    /// A writer over `builder`'s dataset; tables get Segment's base columns and, unless the
    /// builder sets another, DAY partitioning on `received_at`.
    pub async fn new(builder: DatasetWriterBuilder, options: SegmentOptions) -> Result<Self, Error> {
        let builder = builder.base_schema(table_schema).partitioning_if_unset(default_partitioning());
        let writer = builder.build().await?;
        let (_, workers) = writer.batching();
        let workers = EncoderPool::new(workers)
            .map_err(|e| Error::DeadLetter(format!("cannot start the encoding threads: {e}")))?;
        Ok(Self { writer, options, workers })
    }

    /// The underlying dataset writer.
    pub fn dataset(&self) -> &DatasetWriter {
        &self.writer
    }

    /// Rows of one NDJSON line (a payload or a batch envelope); `line_no` is 1-based.
    pub fn rows_of_line(&self, line: &str, line_no: u64) -> Result<Vec<SegmentRow>, bqsink_schema::SegmentError> {
        bqsink_schema::rows_from_line(line, line_no, now(), &self.options)
    }

    /// Writes one NDJSON line. A line that cannot become rows is dead-lettered whole.
    pub async fn write_line(&self, line: &str, line_no: u64) -> Result<PayloadOutcome, Error> {
        match self.rows_of_line(line, line_no) {
            Ok(rows) => self.write_rows_at(rows, Some(line_no)).await,
            Err(e) => {
                let refused = self.writer.dead_letter_raw(Some(line_no), line, e.to_string())?;
                Ok(PayloadOutcome { rows: 1, refused: vec![refused] })
            }
        }
    }

    /// Writes one payload (a call or a batch envelope).
    pub async fn write_payload(&self, payload: &serde_json::Value) -> Result<PayloadOutcome, Error> {
        match bqsink_schema::rows_from_payload(payload, now(), &self.options) {
            Ok(rows) => self.write_rows(rows).await,
            Err(e) => {
                let refused = self.writer.dead_letter_raw(None, payload.to_string(), e.to_string())?;
                Ok(PayloadOutcome { rows: 1, refused: vec![refused] })
            }
        }
    }

    /// Writes rows already made from payloads.
    pub async fn write_rows(&self, rows: Vec<SegmentRow>) -> Result<PayloadOutcome, Error> {
        self.write_rows_at(rows, None).await
    }

    /// Writes the rows made from the input's line or payload at position `at` (as the caller
    /// numbers them), so refusals and dead letters name it.
    pub async fn write_rows_at(&self, rows: Vec<SegmentRow>, at: Option<u64>) -> Result<PayloadOutcome, Error> {
        let mut outcome = PayloadOutcome::default();
        for row in rows {
            outcome.rows += 1;
            if let Some(e) = self.writer.write_at(&row.table, row.record, at).await? {
                outcome.refused.push(e);
            }
        }
        Ok(outcome)
    }

    /// For a finite input: plans every table's schema over all its rows and applies it before
    /// the first write, so each table changes at most once. Returns the type conflicts found
    /// (their rows are coerced or dead-lettered when written).
    pub async fn plan<'a>(&self, rows: impl IntoIterator<Item = &'a SegmentRow>) -> Result<Vec<String>, Error> {
        let mut per_table: BTreeMap<String, SchemaInference> = Default::default();
        for row in rows {
            per_table
                .entry(row.table.clone())
                .or_insert_with(|| SchemaInference::new(InferMode::Segment))
                .observe_normalized(&row.record);
        }
        self.plan_inferred(per_table).await
    }

    /// [`SegmentWriter::plan`] from what [`SegmentWriter::scan`] found: the same tables and
    /// columns, without the rows.
    pub async fn plan_scanned(&self, scan: &SegmentScan) -> Result<Vec<String>, Error> {
        self.plan_inferred(scan.tables.iter().map(|(t, s)| (t.clone(), s.inference())).collect()).await
    }

    async fn plan_inferred(&self, per_table: BTreeMap<String, SchemaInference>) -> Result<Vec<String>, Error> {
        let mut conflicts = Vec::new();
        for (table, inference) in per_table {
            let table = table.as_str();
            let inferred = inference.finish();
            conflicts.extend(inferred.conflicts.iter().map(|c| format!("{table}.{c}")));
            let mut schema = table_schema(table);
            for f in inferred.schema.fields {
                if schema.field(&f.name).is_none() {
                    schema.fields.push(f);
                }
            }
            conflicts.extend(self.writer.prepare(table, &schema).await?);
        }
        Ok(conflicts)
    }

    /// First pass over a finite input (NDJSON of payloads; gzip and zstd recognised): the
    /// tables and column types its payloads call for, read in chunks on the encoding threads,
    /// keeping no rows. Pass the merged scans of every file to [`SegmentWriter::plan_scanned`],
    /// then [`SegmentWriter::load`] each file.
    pub async fn scan<R: Read + Send + 'static>(
        &self,
        reader: R,
        stop: impl Future<Output = ()>,
    ) -> Result<SegmentScan, Error> {
        let mut rx = start_reader(reader, bqsink_formats::chunk::CHUNK_BYTES, 1)?;
        let depth = self.workers.workers() + 1;
        let mut queued: VecDeque<oneshot::Receiver<SegmentScan>> = VecDeque::new();
        let mut scan = SegmentScan::default();
        let mut stop = std::pin::pin!(stop);
        let take = |rx: oneshot::Receiver<SegmentScan>| async { rx.await.map_err(|_| workers_gone()) };
        loop {
            let msg = tokio::select! {
                biased;
                () = &mut stop => break,
                msg = rx.recv() => msg,
            };
            let chunk = match msg {
                None => break,
                Some(FromReader::Failed(m)) => return Err(Error::Input(m)),
                Some(FromReader::Header(_)) => continue,
                Some(FromReader::Chunk(c)) => c,
            };
            let options = self.options.clone();
            let now = now();
            queued.push_back(
                self.workers
                    .run(move || {
                        SCANNER.with(|slot| {
                            let mut slot = slot.borrow_mut();
                            let scanner = slot.get_or_insert_with(|| SegmentScanner::new(options));
                            scanner.chunk(&chunk.data, chunk.first_line, now)
                        })
                    })
                    .await?,
            );
            if queued.len() >= depth {
                if let Some(rx) = queued.pop_front() {
                    scan.merge(take(rx).await?);
                }
            }
        }
        while let Some(rx) = queued.pop_front() {
            scan.merge(take(rx).await?);
        }
        Ok(scan)
    }

    /// Second pass: writes every payload of `reader` (NDJSON) into tables planned before (see
    /// [`SegmentWriter::scan`]). Chunks are transcoded straight to row bytes on the encoding
    /// threads, each table's rows enter its stream in input order; a line outside the common
    /// shape goes the way of [`SegmentWriter::write_line`]. `options` gives the chunk size, the
    /// counter of rows read and the callback for refused rows (its `row` is the 0-based line).
    /// Stops reading when `stop` completes; rows read before are still written.
    pub async fn load<R: Read + Send + 'static>(
        &self,
        reader: R,
        options: LoadOptions,
        stop: impl Future<Output = ()>,
    ) -> Result<LoadReport, Error> {
        let mut rx = start_reader(reader, options.chunk_bytes, options.first_line)?;
        let (cut, _) = self.writer.batching();
        let depth = self.workers.workers() + 1;
        // Each chunk queued on the workers, with the input offset where it ends.
        let mut queued: VecDeque<(oneshot::Receiver<Vec<Piece>>, u64)> = VecDeque::new();
        let mut offset = 0u64;
        let mut settled: Option<u64> = None;
        let mut report = LoadReport::default();
        let mut failure: Option<Error> = None;
        let mut broken: Option<Error> = None;
        let mut stop = std::pin::pin!(stop);
        loop {
            let msg = tokio::select! {
                biased;
                () = &mut stop => {
                    report.stopped = true;
                    break;
                }
                msg = rx.recv() => msg,
            };
            let chunk = match msg {
                None => break,
                Some(FromReader::Failed(m)) => {
                    broken = Some(Error::Input(m));
                    break;
                }
                Some(FromReader::Header(_)) => continue,
                Some(FromReader::Chunk(c)) => c,
            };
            let plans = self.writer.plans().await;
            let segment = self.options.clone();
            let now = now();
            offset += chunk.data.len() as u64;
            let work = move || transcode(plans, segment, &chunk.data, chunk.first_line, now, cut);
            queued.push_back((self.workers.run(work).await?, offset));
            if queued.len() >= depth {
                if let Some((rx, end)) = queued.pop_front() {
                    if let Err(e) = self.place(rx, end, &options, &mut report, &mut settled).await {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        drop(rx);
        while let Some((rx, end)) = queued.pop_front() {
            match &failure {
                None => {
                    if let Err(e) = self.place(rx, end, &options, &mut report, &mut settled).await {
                        failure = Some(e);
                    }
                }
                // Rows already read are never dropped: after a failure they are refused with
                // the reason.
                Some(e) => {
                    let why = bqsink_engine::Fate::NotWritten.reason(&e.to_string());
                    for piece in rx.await.map_err(|_| workers_gone())? {
                        let refused = match piece {
                            Piece::Rows { table, batch } => {
                                let (rows, _) = bqsink_engine::EncodedRows::from_batch(batch);
                                self.writer.refuse_encoded(&table, rows, &why)?
                            }
                            Piece::Line { number, text, .. } => {
                                vec![self.writer.dead_letter_raw(Some(number - 1), text, why.clone())?]
                            }
                        };
                        count(&options, &mut report, refused.len() as u64, &refused);
                    }
                }
            }
        }
        match failure.or(broken) {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Hands one chunk's rows to the tables, and its other lines to the `Record` path; with
    /// [`LoadOptions::on_settled`], marks `end` (the chunk's end in the input) on every table
    /// and reports how far the input is settled in all of them.
    async fn place(
        &self,
        rx: oneshot::Receiver<Vec<Piece>>,
        end: u64,
        options: &LoadOptions,
        report: &mut LoadReport,
        settled: &mut Option<u64>,
    ) -> Result<(), Error> {
        for piece in rx.await.map_err(|_| workers_gone())? {
            match piece {
                Piece::Rows { table, batch } => {
                    let n = batch.len() as u64;
                    let refused = self.writer.write_transcoded(&table, batch).await?;
                    count(options, report, n, &refused);
                }
                Piece::Line { number, text, unreadable } => {
                    let outcome = match unreadable {
                        Some(why) => PayloadOutcome {
                            rows: 1,
                            refused: vec![self.writer.dead_letter_raw(Some(number - 1), text, why)?],
                        },
                        None => self.write_line_at(&text, number).await?,
                    };
                    count(options, report, outcome.rows, &outcome.refused);
                }
            }
        }
        if let Some(f) = &options.on_settled {
            if let Some(position) = self.writer.mark(end).await? {
                if settled.replace(position) != Some(position) {
                    // Dead letters before the position are durable before it is reported.
                    flush_dead_letters(&self.writer.dead_letters()).await?;
                    f(&bqsink_engine::Settled::at(position));
                }
            }
        }
        Ok(())
    }

    /// [`SegmentWriter::write_line`], with refusals naming the 0-based line.
    async fn write_line_at(&self, line: &str, line_no: u64) -> Result<PayloadOutcome, Error> {
        let at = Some(line_no.saturating_sub(1));
        match self.rows_of_line(line, line_no) {
            Ok(rows) => self.write_rows_at(rows, at).await,
            Err(e) => {
                let refused = self.writer.dead_letter_raw(at, line, e.to_string())?;
                Ok(PayloadOutcome { rows: 1, refused: vec![refused] })
            }
        }
    }

    /// Sends everything queued and waits for the acknowledgements.
    pub async fn flush(&self) -> Result<(), Error> {
        self.writer.flush().await
    }

    /// Flushes and reports what was written.
    pub async fn close(self) -> Result<Summary, Error> {
        self.writer.close().await
    }

    /// Gives up at once: see [`Destination::abort`](crate::Destination::abort).
    pub fn abort(&self, reason: impl Into<String>) {
        self.writer.abort(reason);
    }

    /// A handle that aborts this writer from anywhere (see [`DatasetWriter::abort`]).
    pub fn abort_handle(&self) -> crate::Abort {
        self.writer.abort_handle()
    }
}

/// Counts rows placed: read, refused, and each refusal told.
fn count(options: &LoadOptions, report: &mut LoadReport, rows: u64, refused: &[RowError]) {
    report.rows_read += rows;
    report.rows_refused += refused.len() as u64;
    report.rows_accepted += rows.saturating_sub(refused.len() as u64);
    if let Some(c) = &options.rows_read {
        c.fetch_add(rows, Ordering::Relaxed);
    }
    if let Some(f) = &options.on_refused {
        refused.iter().for_each(|e| f(e));
    }
}

fn workers_gone() -> Error {
    Error::DeadLetter("the encoding threads stopped".into())
}

/// The reader thread, cutting NDJSON into chunks at line boundaries.
fn start_reader<R: Read + Send + 'static>(
    reader: R,
    chunk_bytes: usize,
    first_line: u64,
) -> Result<mpsc::Receiver<FromReader>, Error> {
    let (tx, rx) = mpsc::channel::<FromReader>(QUEUED_CHUNKS);
    std::thread::Builder::new()
        .name("bqsink-reader".into())
        .spawn(move || read_chunks(reader, Format::Ndjson, chunk_bytes, first_line, &tx))
        .map_err(|e| Error::DeadLetter(format!("cannot start the input reader: {e}")))?;
    Ok(rx)
}

thread_local! {
    /// Each encoding thread keeps its scanner and transcoder (and their caches) between chunks.
    static SCANNER: RefCell<Option<SegmentScanner>> = const { RefCell::new(None) };
    static TRANSCODER: RefCell<Option<SegmentTranscoder>> = const { RefCell::new(None) };
}

/// Runs on an encoding thread: one chunk into rows per table and lines for the `Record` path.
fn transcode(
    plans: HashMap<String, RowDescriptor>,
    options: SegmentOptions,
    data: &[u8],
    first_line: u64,
    now: Timestamp,
    cut: Cut,
) -> Vec<Piece> {
    TRANSCODER.with(|slot| {
        let mut slot = slot.borrow_mut();
        if !slot.as_ref().is_some_and(|t| t.plans_are(&plans) && t.options() == &options) {
            *slot = Some(SegmentTranscoder::new(plans, options));
        }
        match slot.as_mut() {
            Some(t) => t.chunk(data, first_line, now, cut),
            None => Vec::new(),
        }
    })
}
