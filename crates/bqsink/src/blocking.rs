//! A blocking writer for callers without an async runtime: rows go through a bounded
//! crossbeam channel (`streaming_buffer` rows) to a thread that owns the runtime and the
//! [`Destination`]. `write` blocks when the channel is full: memory stays bounded.

use std::thread::JoinHandle;

use bqsink_core::{Record, RowError};
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::destination::{Destination, DestinationBuilder};
use crate::summary::Summary;
use crate::Error;

enum Msg {
    Row(Record),
    Load(Box<dyn std::io::Read + Send>, crate::LoadOptions, Sender<Result<crate::LoadReport, Error>>),
    Flush(Sender<Result<Vec<RowError>, Error>>),
    Close(Sender<Result<(Summary, Vec<RowError>), Error>>),
}

/// Writes rows from synchronous code.
///
/// Row errors (rows that cannot be written) are collected and returned by [`Writer::flush`]
/// and [`Writer::close`], each with its position among the rows written; with a dead-letter
/// queue they are also dead-lettered.
#[derive(Debug)]
pub struct Writer {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Row(_) => "Row",
            Msg::Load(..) => "Load",
            Msg::Flush(_) => "Flush",
            Msg::Close(_) => "Close",
        })
    }
}

fn gone() -> Error {
    Error::Transport(bqsink_transport::TransportError::StreamClosed("the writer's thread has stopped".into()))
}

impl Writer {
    /// Builds the destination on a new thread and returns once it is ready (or failed).
    pub fn new(builder: DestinationBuilder) -> Result<Writer, Error> {
        let capacity = builder.config().streaming_buffer.max(1);
        let (tx, rx) = bounded::<Msg>(capacity);
        let (ready_tx, ready_rx) = bounded::<Result<(), Error>>(1);
        let thread = std::thread::Builder::new()
            .name("bqsink-writer".into())
            .spawn(move || run(builder, rx, ready_tx))
            .map_err(|e| Error::DeadLetter(format!("cannot start the writer thread: {e}")))?;
        ready_rx.recv().map_err(|_| gone())??;
        Ok(Writer { tx, thread: Some(thread) })
    }

    /// Queues a row, blocking while the channel is full.
    pub fn write(&self, record: Record) -> Result<(), Error> {
        self.tx.send(Msg::Row(record)).map_err(|_| gone())
    }

    /// Loads every record of `reader` (NDJSON, CSV or a JSON array; gzip and zstd recognised by
    /// their bytes) straight to row bytes on the encoding workers, after the rows written
    /// before it; see [`Destination::load`]. Refused rows are reported through
    /// [`LoadOptions::on_refused`](crate::LoadOptions::on_refused) and dead-lettered when a queue
    /// is set. Blocks until every record is handed over.
    pub fn load(
        &self,
        reader: impl std::io::Read + Send + 'static,
        options: crate::LoadOptions,
    ) -> Result<crate::LoadReport, Error> {
        let (tx, rx) = bounded(1);
        self.tx.send(Msg::Load(Box::new(reader), options, tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// Sends everything queued, waits for acknowledgement, and returns the rows refused since
    /// the last flush.
    pub fn flush(&self) -> Result<Vec<RowError>, Error> {
        let (tx, rx) = bounded(1);
        self.tx.send(Msg::Flush(tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// Flushes, closes the destination and stops the thread.
    pub fn close(mut self) -> Result<(Summary, Vec<RowError>), Error> {
        let (tx, rx) = bounded(1);
        self.tx.send(Msg::Close(tx)).map_err(|_| gone())?;
        let result = rx.recv().map_err(|_| gone())?;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

fn run(builder: DestinationBuilder, rx: Receiver<Msg>, ready: Sender<Result<(), Error>>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::DeadLetter(format!("cannot start a runtime: {e}"))));
            return;
        }
    };
    let dest: Destination = match rt.block_on(builder.build()) {
        Ok(d) => {
            let _ = ready.send(Ok(()));
            d
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut errors = Vec::new();
    let mut index = 0u64;
    let mut fatal: Option<Error> = None;
    // The runtime only runs inside block_on: wake it while idle so the batch timeout fires.
    let idle = std::time::Duration::from_millis((dest.config().batch_timeout_ms / 2).max(1));
    let chunk = dest.config().batch_size.max(1);
    let mut rows: Vec<Record> = Vec::with_capacity(chunk);
    let mut next: Option<Msg> = None;
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match rx.recv_timeout(idle) {
                Ok(m) => m,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // The sleep is created inside the runtime: it needs its timer.
                    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await });
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            },
        };
        match msg {
            Msg::Row(r) => {
                // Take what is already queued, up to one request's worth, so the rows are
                // encoded on the destination's worker threads.
                rows.push(r);
                while rows.len() < chunk {
                    match rx.try_recv() {
                        Ok(Msg::Row(r)) => rows.push(r),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let n = rows.len() as u64;
                if fatal.is_none() {
                    let batch = std::mem::replace(&mut rows, Vec::with_capacity(chunk));
                    match rt.block_on(dest.write_records(futures::stream::iter(batch), index)) {
                        Ok((_, refused)) => errors.extend(refused),
                        Err(e) => fatal = Some(e),
                    }
                } else {
                    rows.clear();
                }
                index += n;
            }
            Msg::Load(reader, options, reply) => {
                let result = match fatal.take() {
                    Some(e) => Err(e),
                    None => rt.block_on(dest.load(reader, options)),
                };
                let _ = reply.send(result);
            }
            Msg::Flush(reply) => {
                let result = match fatal.take() {
                    Some(e) => Err(e),
                    None => rt.block_on(dest.flush()).map(|()| std::mem::take(&mut errors)),
                };
                let _ = reply.send(result);
            }
            Msg::Close(reply) => {
                let result = match fatal.take() {
                    Some(e) => Err(e),
                    None => rt.block_on(dest.close()).map(|s| (s, std::mem::take(&mut errors))),
                };
                let _ = reply.send(result);
                return;
            }
        }
    }
}
