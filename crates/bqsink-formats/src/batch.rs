//! What a transcoder hands on: request-ready row bytes cut at the batch limits, with where each
//! row was in its input, and the rows it refused with their raw text.

use bqsink_core::RowError;
use bqsink_transport::RowDescriptor;
use bytes::{BufMut, BytesMut};

/// Where requests are cut: at most this many rows or bytes of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Rows per request.
    pub max_rows: usize,
    /// Bytes of row entries per request.
    pub max_bytes: usize,
}

/// A row refused while transcoding, kept as it was in the input for the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// 0-based position in its input (line − 1 for line-based formats, element − 1 in an array).
    pub position: u64,
    /// Why, naming the column.
    pub error: RowError,
    /// The input text of the row.
    pub raw: String,
}

/// One request's worth of rows, in input order.
#[derive(Debug)]
pub struct Batch {
    /// The schema the rows were written for.
    pub descriptor: RowDescriptor,
    /// `ProtoRows.serialized_rows` entries, one after the other.
    pub rows: BytesMut,
    /// End offset in `rows` of each row.
    pub ends: Vec<usize>,
    /// 0-based input position of each row.
    pub positions: Vec<u64>,
    /// Rows refused among them (positions interleave with `positions`).
    pub refused: Vec<Refused>,
}

impl Batch {
    pub(crate) fn new(descriptor: &RowDescriptor, cut: Cut) -> Self {
        Self {
            descriptor: descriptor.clone(),
            rows: BytesMut::with_capacity(cut.max_bytes.min(4 << 20)),
            ends: Vec::new(),
            positions: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Rows written.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no row was written.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Rows written and refused.
    pub fn rows_read(&self) -> usize {
        self.ends.len() + self.refused.len()
    }

    /// Appends one row message as a `serialized_rows` entry.
    pub(crate) fn push_row(&mut self, message: &[u8], position: u64) {
        let mut head = [0u8; 11];
        head[0] = 0x0A; // ProtoRows.serialized_rows = 1, length-delimited
        let mut n = 1;
        let mut len = message.len() as u64;
        while len >= 0x80 {
            head[n] = (len as u8) | 0x80;
            len >>= 7;
            n += 1;
        }
        head[n] = len as u8;
        self.rows.reserve(n + 1 + message.len());
        self.rows.put_slice(&head[..=n]);
        self.rows.put_slice(message);
        self.ends.push(self.rows.len());
        self.positions.push(position);
    }

    /// Whether one more row would go over the cut.
    pub(crate) fn is_full(&self, cut: Cut, next: usize) -> bool {
        !self.ends.is_empty() && (self.ends.len() >= cut.max_rows || self.rows.len() + next + 4 > cut.max_bytes)
    }
}

/// Collects rows into batches cut at the limits.
#[derive(Debug)]
pub(crate) struct Batches {
    descriptor: RowDescriptor,
    cut: Cut,
    done: Vec<Batch>,
    current: Batch,
}

impl Batches {
    pub(crate) fn new(descriptor: &RowDescriptor, cut: Cut) -> Self {
        Self { descriptor: descriptor.clone(), cut, done: Vec::new(), current: Batch::new(descriptor, cut) }
    }

    pub(crate) fn row(&mut self, message: &[u8], position: u64) {
        if self.current.is_full(self.cut, message.len()) {
            let next = Batch::new(&self.descriptor, self.cut);
            self.done.push(std::mem::replace(&mut self.current, next));
        }
        self.current.push_row(message, position);
    }

    pub(crate) fn refuse(&mut self, position: u64, error: RowError, raw: String) {
        self.current.refused.push(Refused { position, error, raw });
    }

    pub(crate) fn finish(mut self) -> Vec<Batch> {
        if self.current.rows_read() > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}
