//! Loading a reader's bytes: NDJSON, CSV or a JSON array (gzip and zstd recognised by their
//! bytes) cut into large chunks at record boundaries on a reader thread, transcoded straight to
//! row bytes on the encoding workers, and handed to the sink in input order, so offsets and
//! the row numbers in errors stay exact. No `Record` is built.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bqsink_core::RowError;
use bqsink_engine::{EncodedRows, Payload, Resumed, Settled};
use bqsink_formats::chunk::CHUNK_BYTES;
use bqsink_formats::{Batch, Chunk, Chunker, CsvTranscoder, Cut, Format, JsonTranscoder};
use bqsink_transport::{RowDescriptor, UnknownFields};
use tokio::sync::mpsc;

use super::write::encoders_gone;
use super::Destination;
use crate::dlq_flush::flush_dead_letters;
use crate::Error;

/// Called with each row [`Destination::load`] refuses.
pub type OnRefused = Arc<dyn Fn(&RowError) + Send + Sync>;
/// Called as the settled prefix of a load's input grows (see [`LoadOptions::on_settled`]).
pub type OnSettled = Arc<dyn Fn(&Settled) + Send + Sync>;

/// How [`Destination::load`] reads its input.
#[derive(Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The input's format.
    pub format: Format,
    /// What to do with keys (or CSV header names) that are not columns.
    pub unknown_fields: UnknownFields,
    /// Bytes per chunk handed to a worker.
    pub chunk_bytes: usize,
    /// Counts rows as they are read (for progress displays).
    pub rows_read: Option<Arc<AtomicU64>>,
    /// Called with each refused row (its `row` is the 0-based position in the input).
    pub on_refused: Option<OnRefused>,
    /// Number of the input's first line (1 unless the reader starts in the middle of a file).
    pub first_line: u64,
    /// Called as the settled prefix of the input grows, with its end as a byte offset in the
    /// reader's (decompressed) bytes: what a checkpoint keeps.
    pub on_settled: Option<OnSettled>,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("format", &self.format)
            .field("unknown_fields", &self.unknown_fields)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl LoadOptions {
    /// Newline-delimited JSON, one object per line.
    pub fn ndjson() -> Self {
        Self::new(Format::Ndjson)
    }
    /// CSV with a header record; an empty field is NULL.
    pub fn csv() -> Self {
        Self::new(Format::Csv)
    }
    /// One JSON array of objects.
    pub fn json_array() -> Self {
        Self::new(Format::JsonArray)
    }
    /// Options for `format` with the defaults.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            unknown_fields: UnknownFields::Reject,
            chunk_bytes: CHUNK_BYTES,
            rows_read: None,
            on_refused: None,
            first_line: 1,
            on_settled: None,
        }
    }
    /// The same options dropping keys that are not columns (`ignoreUnknownValues`).
    pub fn ignore_unknown_fields(mut self) -> Self {
        self.unknown_fields = UnknownFields::Ignore;
        self
    }
    /// The same options with another chunk size.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(64);
        self
    }
    /// The same options counting rows read into `counter`.
    pub fn with_rows_read(mut self, counter: Arc<AtomicU64>) -> Self {
        self.rows_read = Some(counter);
        self
    }
    /// The same options for a reader that starts at line `line` of its input.
    pub fn starting_at_line(mut self, line: u64) -> Self {
        self.first_line = line.max(1);
        self
    }
    /// The same options calling `f` as the settled prefix of the input grows: the rows before
    /// [`Settled::position`] (a byte offset in the reader) are each acknowledged or
    /// dead-lettered. Requests are cut at chunk boundaries for it.
    pub fn on_settled(mut self, f: impl Fn(&Settled) + Send + Sync + 'static) -> Self {
        self.on_settled = Some(Arc::new(f));
        self
    }
    /// The same options calling `f` with each refused row.
    pub fn on_refused(mut self, f: impl Fn(&RowError) + Send + Sync + 'static) -> Self {
        self.on_refused = Some(Arc::new(f));
        self
    }
}

/// What [`Destination::load`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Records read from the input.
    pub rows_read: u64,
    /// Rows handed to BigQuery (acknowledged once [`Destination::flush`] or `close` returns).
    pub rows_accepted: u64,
    /// Rows refused (dead-lettered when a queue is set), with their reasons.
    pub rows_refused: u64,
    /// Whether reading stopped early (the stop signal fired).
    pub stopped: bool,
}

/// Chunks waiting in the channel from the reader thread.
pub(crate) const QUEUED_CHUNKS: usize = 2;

pub(crate) enum FromReader {
    Header(Vec<u8>),
    Chunk(Chunk),
    Failed(String),
}

impl Destination {
    /// Loads every record of `reader` (see [`LoadOptions`]): the reader is cut into chunks at
    /// record boundaries on a thread of its own, chunks are transcoded straight to row bytes on
    /// the `worker_count` encoding threads, and requests go out in input order. Refused rows go
    /// to the dead-letter queue with their input text. Returns once every row is handed over;
    /// [`Destination::flush`] or `close` waits for the acknowledgements.
    pub async fn load<R: Read + Send + 'static>(&self, reader: R, options: LoadOptions) -> Result<LoadReport, Error> {
        self.load_until(reader, options, std::future::pending()).await
    }

    /// [`Destination::load`] that stops reading when `stop` completes (rows already read are
    /// still written).
    pub async fn load_until<R: Read + Send + 'static>(
        &self,
        reader: R,
        options: LoadOptions,
        stop: impl Future<Output = ()>,
    ) -> Result<LoadReport, Error> {
        self.take_deferred()?;
        let (tx, mut rx) = mpsc::channel::<FromReader>(QUEUED_CHUNKS);
        let format = options.format;
        let chunk_bytes = options.chunk_bytes;
        let first_line = options.first_line;
        std::thread::Builder::new()
            .name("bqsink-reader".into())
            .spawn(move || read_chunks(reader, format, chunk_bytes, first_line, &tx))
            .map_err(|e| Error::DeadLetter(format!("cannot start the input reader: {e}")))?;

        let config = self.config();
        let limits = self.inner.sink.lock().await.limits();
        let cut = Cut { max_rows: config.batch_size.max(1).min(limits.max_rows), max_bytes: limits.max_bytes };
        let depth = self.inner.encoders.workers() + 1;
        // Each chunk queued on the workers, with the input offset where it ends.
        let mut queued: VecDeque<(tokio::sync::oneshot::Receiver<Vec<Batch>>, u64)> = VecDeque::new();
        let mut offset = 0u64;
        let mut report = LoadReport::default();
        let mut header: Option<Arc<Vec<u8>>> = None;
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
                Some(FromReader::Header(h)) => {
                    header = Some(Arc::new(h));
                    continue;
                }
                Some(FromReader::Failed(m)) => {
                    // The rows read before it are still written; the input error comes last.
                    broken = Some(Error::Input(m));
                    break;
                }
                Some(FromReader::Chunk(c)) => c,
            };
            let descriptor = self.inner.sink.lock().await.descriptor().clone();
            let unknown = options.unknown_fields;
            let header = header.clone();
            offset += chunk.data.len() as u64;
            let work = move || transcode(&descriptor, unknown, format, header.as_ref(), &chunk, cut);
            queued.push_back((self.inner.encoders.run(work).await?, offset));
            if queued.len() >= depth {
                if let Some((rx, end)) = queued.pop_front() {
                    if let Err(e) = self.place_batches(rx, end, &options, &mut report).await {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        // The reader stops at its next chunk.
        drop(rx);
        while let Some((rx, end)) = queued.pop_front() {
            match &failure {
                None => {
                    if let Err(e) = self.place_batches(rx, end, &options, &mut report).await {
                        failure = Some(e);
                    }
                }
                // Rows already read are never dropped: after a failure they are refused with
                // the reason.
                Some(e) => {
                    let batches = rx.await.map_err(|_| encoders_gone())?;
                    self.refuse_batches(batches, &e.to_string(), &options, &mut report)?;
                }
            }
        }
        match failure.or(broken) {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Places one chunk's batches, in order; with [`LoadOptions::on_settled`], marks `end` (the
    /// chunk's end in the input) and reports how far the input is settled.
    async fn place_batches(
        &self,
        rx: tokio::sync::oneshot::Receiver<Vec<Batch>>,
        end: u64,
        options: &LoadOptions,
        report: &mut LoadReport,
    ) -> Result<(), Error> {
        let mut batches = rx.await.map_err(|_| encoders_gone())?.into_iter();
        while let Some(b) = batches.next() {
            let (encoded, refused) = EncodedRows::from_batch(b);
            for r in refused {
                self.refuse_raw(r.error.at_row(r.position), r.raw, options, report)?;
            }
            let n = encoded.len() as u64;
            self.count_read(n, options, report);
            let mut errors = Vec::new();
            if let Err(e) = self.place_encoded(0, encoded, &mut errors).await {
                // The rest of the chunk was read too: dead-lettered, never dropped.
                self.refuse_batches(batches.collect(), &e.to_string(), options, report)?;
                return Err(e);
            }
            report.rows_accepted += n - errors.len() as u64;
            report.rows_refused += errors.len() as u64;
            if let Some(f) = &options.on_refused {
                errors.iter().for_each(|e| f(e));
            }
        }
        if let Some(f) = &options.on_settled {
            let mut sink = self.inner.sink.lock().await;
            sink.mark(end).await?;
            let settled = sink.take_settled();
            drop(sink);
            if let Some(s) = settled {
                // Dead letters before the position are durable before it is reported.
                flush_dead_letters(&self.inner.dlq).await?;
                f(&s);
            }
        }
        Ok(())
    }

    /// How far the input of the last load with [`LoadOptions::on_settled`] is settled now
    /// (after [`Destination::flush`], everything marked), if it moved since it was last told.
    pub async fn take_settled(&self) -> Option<Settled> {
        self.inner.sink.lock().await.take_settled()
    }

    /// The stream rows go to, created now if need be, and its next offset (ExactlyOnce and
    /// Batch; `None` on the default stream): what a checkpoint records before any row is sent.
    pub async fn open_stream(&self) -> Result<Option<(String, i64)>, Error> {
        Ok(self.inner.sink.lock().await.open_stream().await?)
    }

    /// Goes on writing into `stream` from `next_offset`, as a load resumed from a checkpoint
    /// does (ExactlyOnce and Batch; rows already there count as written). In Batch mode a
    /// stream already committed means the load is over ([`Resumed::AlreadyCommitted`]).
    pub async fn resume_stream(&self, stream: String, next_offset: i64) -> Result<Resumed, Error> {
        Ok(self.inner.sink.lock().await.resume(stream, next_offset).await?)
    }

    /// Rows read but not to be sent (an earlier batch failed): each dead-lettered as not
    /// written with `cause`, or with its own refusal.
    fn refuse_batches(
        &self,
        batches: Vec<Batch>,
        cause: &str,
        options: &LoadOptions,
        report: &mut LoadReport,
    ) -> Result<(), Error> {
        let message = bqsink_engine::Fate::NotWritten.reason(cause);
        for b in batches {
            let (encoded, refused) = EncodedRows::from_batch(b);
            for r in refused {
                self.refuse_raw(r.error.at_row(r.position), r.raw, options, report)?;
            }
            for (i, record) in encoded.into_records() {
                let e = RowError::new("", message.clone()).at_row(i as u64);
                self.count_read(1, options, report);
                report.rows_refused += 1;
                self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
                self.refuse(e.clone(), Payload::Record(record))?;
                if let Some(f) = &options.on_refused {
                    f(&e);
                }
            }
        }
        Ok(())
    }

    fn count_read(&self, n: u64, options: &LoadOptions, report: &mut LoadReport) {
        report.rows_read += n;
        if let Some(c) = &options.rows_read {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn refuse_raw(
        &self,
        e: RowError,
        raw: String,
        options: &LoadOptions,
        report: &mut LoadReport,
    ) -> Result<(), Error> {
        self.count_read(1, options, report);
        report.rows_refused += 1;
        if let Some(f) = &options.on_refused {
            f(&e);
        }
        self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
        self.refuse(e, Payload::Raw(raw))
    }
}

/// The reader thread: chunks in order, then nothing (or why it could not go on).
pub(crate) fn read_chunks<R: Read + Send + 'static>(
    reader: R,
    format: Format,
    chunk_bytes: usize,
    first_line: u64,
    tx: &mpsc::Sender<FromReader>,
) {
    let (reader, _) = match bqsink_formats::input::open(Box::new(reader)) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.blocking_send(FromReader::Failed(format!("cannot read the input: {e}")));
            return;
        }
    };
    let mut chunker = Chunker::new(reader, format, chunk_bytes).starting_at_line(first_line);
    if format == Format::Csv {
        match chunker.csv_header() {
            Ok(Some(h)) => {
                if tx.blocking_send(FromReader::Header(h)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.blocking_send(FromReader::Failed(format!("cannot read the CSV header: {e}")));
                return;
            }
        }
    }
    loop {
        let msg = match chunker.next_chunk() {
            Ok(Some(c)) => FromReader::Chunk(c),
            Ok(None) => return,
            Err(e) if format == Format::JsonArray => FromReader::Failed(format!("not a valid JSON array: {e}")),
            Err(e) => FromReader::Failed(format!("cannot read the input: {e}")),
        };
        let last = matches!(msg, FromReader::Failed(_));
        if tx.blocking_send(msg).is_err() || last {
            return;
        }
    }
}

thread_local! {
    /// Each worker thread keeps its transcoders (and their buffers) between chunks.
    static JSON: RefCell<Option<JsonTranscoder>> = const { RefCell::new(None) };
    static CSV: RefCell<Option<(Arc<Vec<u8>>, CsvTranscoder)>> = const { RefCell::new(None) };
}

/// Runs on a worker: one chunk into batches of rows.
fn transcode(
    descriptor: &RowDescriptor,
    unknown: UnknownFields,
    format: Format,
    header: Option<&Arc<Vec<u8>>>,
    chunk: &Chunk,
    cut: Cut,
) -> Vec<Batch> {
    match format {
        Format::Csv => CSV.with(|slot| {
            let mut slot = slot.borrow_mut();
            let header = header.cloned().unwrap_or_default();
            let reuse = matches!(&*slot, Some((h, t)) if Arc::ptr_eq(h, &header) && t.descriptor().same_as(descriptor));
            if !reuse {
                *slot = Some((header.clone(), CsvTranscoder::new(descriptor.clone(), &header, unknown)));
            }
            match slot.as_mut() {
                Some((_, t)) => t.chunk(&chunk.data, chunk.first_line, cut),
                None => Vec::new(),
            }
        }),
        Format::Ndjson | Format::JsonArray => JSON.with(|slot| {
            let mut slot = slot.borrow_mut();
            let reuse =
                matches!(&*slot, Some(t) if t.descriptor().same_as(descriptor) && t.unknown_fields() == unknown);
            if !reuse {
                *slot = Some(JsonTranscoder::new(descriptor.clone()).with_unknown_fields(unknown));
            }
            match slot.as_mut() {
                Some(t) => t.ndjson_chunk(&chunk.data, chunk.first_line, cut),
                None => Vec::new(),
            }
        }),
    }
}
