//! What a transcoder hands on: request-ready row bytes cut at the batch limits, with where each
//! row was in its input, and the rows it refused with their raw text.

use bqsink_core::RowError;
use bqsink_transport::wire::put_varint;
use bqsink_transport::RowDescriptor;

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
    /// `ProtoRows.serialized_rows` entries, one after the other (becomes the request body
    /// without a copy: `BytesMut::from(Vec<u8>)` takes the allocation).
    pub rows: Vec<u8>,
    /// End offset in `rows` of each row.
    pub ends: Vec<usize>,
    /// 0-based input position of each row.
    pub positions: Vec<u64>,
    /// Rows refused among them (positions interleave with `positions`).
    pub refused: Vec<Refused>,
}

impl Batch {
    /// An empty batch with room for about `bytes` of rows and `rows` rows.
    pub(crate) fn with_capacity(descriptor: &RowDescriptor, bytes: usize, rows: usize) -> Self {
        Self {
            descriptor: descriptor.clone(),
            rows: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
            positions: Vec::with_capacity(rows),
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
        self.rows.push(0x0A);
        put_varint(&mut self.rows, message.len() as u64);
        self.rows.extend_from_slice(message);
        self.ends.push(self.rows.len());
        self.positions.push(position);
    }

    /// Length bytes kept for the next entry's message: as many as the previous entry took (rows
    /// of one table are alike), so the message rarely has to move once written.
    #[inline]
    fn reserved(&self) -> usize {
        let n = self.ends.len();
        let previous = match n {
            0 => return 2,
            1 => self.ends[0],
            _ => self.ends[n - 1] - self.ends[n - 2],
        };
        // Key, one length byte, and a message of at most 0x7F bytes.
        if previous <= 0x80 {
            1
        } else {
            2
        }
    }

    /// Where the message of the entry begun at `start` begins.
    #[inline]
    pub(crate) fn body_of(&self, start: usize) -> usize {
        start + 1 + self.reserved()
    }

    /// Starts a `serialized_rows` entry (key and room for its length) whose message is written
    /// straight after; finish it with [`Batch::end_row`] or drop it with a truncate.
    #[inline]
    pub(crate) fn begin_row(&mut self) -> usize {
        let start = self.rows.len();
        match self.reserved() {
            1 => self.rows.extend_from_slice(&[0x0A, 0x00]),
            _ => self.rows.extend_from_slice(&[0x0A, 0x80, 0x00]),
        }
        start
    }

    /// Writes the length of the entry begun at `start` (moving the message only when its length
    /// takes other than the bytes kept for it) and records the row.
    #[inline]
    pub(crate) fn end_row(&mut self, start: usize, position: u64) {
        let kept = self.reserved();
        let body = start + 1 + kept;
        let len = self.rows.len() - body;
        let mut head = [0u8; 10];
        let mut n = 0;
        let mut v = len as u64;
        while v >= 0x80 {
            head[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        head[n] = v as u8;
        let need = n + 1;
        if need < kept {
            self.rows.copy_within(body.., body - (kept - need));
            self.rows.truncate(self.rows.len() - (kept - need));
        } else if need > kept {
            let extra = need - kept;
            self.rows.resize(self.rows.len() + extra, 0);
            self.rows.copy_within(body..body + len, body + extra);
        }
        self.rows[start + 1..start + 1 + need].copy_from_slice(&head[..need]);
        self.ends.push(self.rows.len());
        self.positions.push(position);
    }

    /// Whether one more row would go over the cut.
    pub(crate) fn is_full(&self, cut: Cut, next: usize) -> bool {
        !self.ends.is_empty() && (self.ends.len() >= cut.max_rows || self.rows.len() + next + 4 > cut.max_bytes)
    }
}

/// Rows a new batch has room for without growing its row tables.
fn row_room(cut: Cut) -> usize {
    cut.max_rows.min(4096)
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
    /// Batches for a chunk of `input_bytes` of input (row bytes are about as many).
    pub(crate) fn new(descriptor: &RowDescriptor, cut: Cut, input_bytes: usize) -> Self {
        let first = Batch::with_capacity(descriptor, (input_bytes + 1024).min(cut.max_bytes), row_room(cut));
        Self { descriptor: descriptor.clone(), cut, done: Vec::new(), current: first }
    }

    pub(crate) fn row(&mut self, message: &[u8], position: u64) {
        self.make_room(message.len());
        self.current.push_row(message, position);
    }

    /// Writes one row with `write` straight into the current batch (cut first when it is full);
    /// the row is dropped when `write` fails. A row that overflows the byte cut moves to a
    /// new batch.
    #[inline]
    pub(crate) fn write_row<E>(
        &mut self,
        position: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.make_room(0);
        let start = self.current.begin_row();
        if let Err(e) = write(&mut self.current.rows) {
            self.current.rows.truncate(start);
            return Err(e);
        }
        if self.current.rows.len() > self.cut.max_bytes && !self.current.ends.is_empty() {
            let message = self.current.rows[self.current.body_of(start)..].to_vec();
            self.current.rows.truncate(start);
            self.row(&message, position);
            return Ok(());
        }
        self.current.end_row(start, position);
        Ok(())
    }

    fn make_room(&mut self, next: usize) {
        if self.current.is_full(self.cut, next) {
            // The next request is sized like the last one.
            let room = (self.current.rows.len() + self.current.rows.len() / 8).min(self.cut.max_bytes);
            let next = Batch::with_capacity(&self.descriptor, room, row_room(self.cut));
            self.done.push(std::mem::replace(&mut self.current, next));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{Field, FieldType, Schema};

    /// Each entry read back: key 0x0A, a varint length, the message.
    fn entries(b: &Batch) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        for &end in &b.ends {
            assert_eq!(b.rows[at], 0x0A);
            let (mut len, mut shift, mut i) = (0usize, 0, at + 1);
            loop {
                let byte = b.rows[i];
                len |= usize::from(byte & 0x7F) << shift;
                shift += 7;
                i += 1;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            assert_eq!(i + len, end, "entry at {at}");
            out.push(b.rows[i..end].to_vec());
            at = end;
        }
        out
    }

    #[test]
    fn entries_of_every_length_class_in_any_order() {
        let d = RowDescriptor::new(&Schema::new(vec![Field::new("a", FieldType::String)]))
            .unwrap_or_else(|e| panic!("{e}"));
        let sizes = [0usize, 1, 127, 128, 5, 200, 16383, 16384, 3, 20000, 90, 90, 300, 1];
        let mut b = Batch::with_capacity(&d, 0, 0);
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let message: Vec<u8> = (0..n).map(|k| (k * 7 + i) as u8).collect();
            if i % 2 == 0 {
                let start = b.begin_row();
                b.rows.extend_from_slice(&message);
                b.end_row(start, i as u64);
            } else {
                b.push_row(&message, i as u64);
            }
            want.push(message);
        }
        assert_eq!(entries(&b), want);
        assert_eq!(b.positions, (0..sizes.len() as u64).collect::<Vec<_>>());
    }
}
