//! Encoding workers: chunks of records are encoded into request-ready row bytes on
//! `worker_count` threads, so encoding uses every core while the sink's task sends and awaits
//! acknowledgements. Each worker keeps its encoder (and its slot table) between chunks of the
//! same schema; a chunk comes back with its rows in input order.

use std::sync::Arc;
use std::thread::JoinHandle;

use bqsink_core::{Record, RowError};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;
use crossbeam_channel::{bounded, Sender};
use tokio::sync::oneshot;

use crate::sink::EngineError;

/// Chunks queued per worker before `encode` waits: enough to keep the threads busy, few enough
/// that memory stays bounded.
const QUEUED_PER_WORKER: usize = 2;

/// A chunk of records encoded for one descriptor.
#[derive(Debug)]
pub struct EncodedRows {
    pub(crate) descriptor: RowDescriptor,
    /// `ProtoRows.serialized_rows` entries, one after the other.
    pub(crate) rows: BytesMut,
    /// End offset in `rows` of each encoded row. The records themselves are dropped once
    /// encoded, on the worker: a row refused later is read back from its bytes.
    pub(crate) ends: Vec<usize>,
    /// Rows the encoder refused: their position in the chunk, why, and the record.
    pub(crate) refused: Vec<(usize, RowError, Record)>,
    /// Position in the chunk of each encoded row.
    pub(crate) positions: Vec<usize>,
}

impl EncodedRows {
    /// Rows encoded.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no row was encoded.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of encoded rows.
    pub fn bytes(&self) -> usize {
        self.rows.len()
    }

    /// Rows the encoder refused.
    pub fn refused_len(&self) -> usize {
        self.refused.len()
    }

    /// Every record of the chunk, encoded or not, with its position in the chunk, in order.
    /// Encoded rows are read back from their bytes.
    pub fn into_records(self) -> Vec<(usize, Record)> {
        let n = self.positions.len();
        let decoded = bqsink_transport::request::decode_entries(&self.descriptor, &self.rows)
            .unwrap_or_else(|e| (0..n).map(|_| crate::sink::undecodable(&e)).collect());
        let mut all: Vec<(usize, Record)> = self.positions.into_iter().zip(decoded).collect();
        all.extend(self.refused.into_iter().map(|(i, _, r)| (i, r)));
        all.sort_by_key(|(i, _)| *i);
        all
    }

    /// The descriptor the rows were encoded with.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// Rows a transcoder wrote straight from input bytes, positioned by their place in the
    /// input; the rows it refused come back apart (they have no record, only raw text).
    pub fn from_batch(batch: bqsink_formats::Batch) -> (Self, Vec<bqsink_formats::Refused>) {
        let bqsink_formats::Batch { descriptor, rows, ends, positions, refused } = batch;
        let positions = positions.into_iter().map(|p| p as usize).collect();
        (
            Self { descriptor, rows: BytesMut::from(bytes::Bytes::from(rows)), ends, refused: Vec::new(), positions },
            refused,
        )
    }
}

/// Encodes `records` with `encoder`, in order. Rows that cannot be encoded are set aside with
/// their error; the others are kept.
pub fn encode_rows(encoder: &mut RowEncoder, records: Vec<Record>) -> EncodedRows {
    let n = records.len();
    let mut out = EncodedRows {
        descriptor: encoder.descriptor().clone(),
        rows: BytesMut::with_capacity(n.saturating_mul(64)),
        ends: Vec::with_capacity(n),
        refused: Vec::new(),
        positions: Vec::with_capacity(n),
    };
    for (i, record) in records.into_iter().enumerate() {
        match encoder.encode_row_entry(&record, &mut out.rows) {
            Ok(()) => {
                out.ends.push(out.rows.len());
                out.positions.push(i);
            }
            Err(e) => out.refused.push((i, e, record)),
        }
    }
    out
}

enum Job {
    /// Records to encode with the worker's encoder.
    Records { descriptor: RowDescriptor, records: Vec<Record>, reply: oneshot::Sender<EncodedRows> },
    /// Any other work (transcoding a chunk of input), which answers through its own channel.
    Task(Box<dyn FnOnce() + Send>),
}

/// A fixed set of encoding threads fed through a bounded channel.
#[derive(Debug)]
pub struct EncoderPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    workers: usize,
}

impl EncoderPool {
    /// Starts `workers` threads (at least one).
    pub fn new(workers: usize) -> std::io::Result<Arc<Self>> {
        let workers = workers.max(1);
        let (tx, rx) = bounded::<Job>(workers * QUEUED_PER_WORKER);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            let thread = std::thread::Builder::new().name(format!("bqsink-encode-{i}")).spawn(move || {
                let mut encoder: Option<RowEncoder> = None;
                while let Ok(job) = rx.recv() {
                    let (descriptor, records, reply) = match job {
                        Job::Records { descriptor, records, reply } => (descriptor, records, reply),
                        Job::Task(task) => {
                            task();
                            continue;
                        }
                    };
                    let e = match encoder.take() {
                        Some(e) if e.descriptor().same_as(&descriptor) => e,
                        _ => RowEncoder::new(descriptor.clone()),
                    };
                    let mut e = e;
                    let encoded = encode_rows(&mut e, records);
                    encoder = Some(e);
                    // The caller may have gone away (its write was cancelled): nothing to do.
                    let _ = reply.send(encoded);
                }
            })?;
            threads.push(thread);
        }
        Ok(Arc::new(Self { tx: Some(tx), threads, workers }))
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues a chunk for encoding; the returned future yields it encoded. Queuing waits (on a
    /// blocking-safe thread) only when every worker has chunks waiting.
    pub async fn encode(&self, descriptor: &RowDescriptor, records: Vec<Record>) -> Result<EncodedRows, EngineError> {
        self.submit(descriptor, records).await?.await.map_err(|_| stopped())
    }

    /// Queues a chunk and returns at once with the receiver of its result, so several chunks
    /// can be in the workers at the same time.
    pub async fn submit(
        &self,
        descriptor: &RowDescriptor,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<EncodedRows>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.queue(Job::Records { descriptor: descriptor.clone(), records, reply }).await?;
        Ok(rx)
    }

    /// Queues any work on the workers (say, transcoding a chunk of input) and returns at once
    /// with the receiver of its result; queuing waits like [`EncoderPool::submit`].
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.queue(Job::Task(Box::new(move || {
            // The caller may have gone away (its write was cancelled): nothing to do.
            let _ = reply.send(work());
        })))
        .await?;
        Ok(rx)
    }

    async fn queue(&self, mut job: Job) -> Result<(), EngineError> {
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        loop {
            match tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::TrySendError::Full(j)) => {
                    job = j;
                    // Every worker is busy: yield to the runtime until one takes a chunk.
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(stopped()),
            }
        }
    }
}

impl Drop for EncoderPool {
    fn drop(&mut self) {
        // Closing the channel ends each worker after its current chunk.
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn stopped() -> EngineError {
    EngineError::Transport(bqsink_transport::TransportError::StreamClosed("the encoding workers have stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{Field, FieldType, Schema};

    fn descriptor() -> RowDescriptor {
        let schema =
            Schema::new(vec![Field::new("id", FieldType::Int64).required(), Field::new("s", FieldType::String)]);
        RowDescriptor::new(&schema).expect("valid schema")
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(|i| Record::new().with("id", i as i64).with("s", format!("row {i}"))).collect()
    }

    #[tokio::test]
    async fn chunks_encode_like_one_encoder_in_order() {
        let d = descriptor();
        let pool = EncoderPool::new(3).expect("threads");
        let mut receivers = Vec::new();
        for c in 0..10 {
            let chunk: Vec<Record> = records(100).into_iter().map(|r| r.with("s", format!("chunk {c}"))).collect();
            receivers.push((c, pool.submit(&d, chunk).await.expect("queued")));
        }
        for (c, rx) in receivers {
            let got = rx.await.expect("encoded");
            let chunk: Vec<Record> = records(100).into_iter().map(|r| r.with("s", format!("chunk {c}"))).collect();
            let want = encode_rows(&mut RowEncoder::new(d.clone()), chunk);
            assert_eq!(got.rows, want.rows, "chunk {c}");
            assert_eq!(got.ends, want.ends);
            assert_eq!(got.positions, (0..100).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn refused_rows_keep_their_position_and_the_others_are_encoded() {
        let d = descriptor();
        let pool = EncoderPool::new(1).expect("threads");
        let mut chunk = records(5);
        chunk[1] = Record::new().with("id", "not a number");
        chunk[3] = Record::new().with("s", "no id");
        let got = pool.encode(&d, chunk).await.expect("encoded");
        assert_eq!(got.len(), 3);
        assert_eq!(got.positions, vec![0, 2, 4]);
        let refused: Vec<(usize, String)> = got.refused.iter().map(|(i, e, _)| (*i, e.column.clone())).collect();
        assert_eq!(refused, vec![(1, "id".to_string()), (3, "id".to_string())]);
    }
}
