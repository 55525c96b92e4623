//! AppendRows requests built from a batch buffer of encoded rows, without copying the rows.
//!
//! A request is a small header — `write_stream` (1), optional `offset` (2, an `Int64Value`),
//! `trace_id` (6), and the opening of `proto_rows` (4) with the writer schema — followed by the
//! batch's `ProtoRows.serialized_rows` entries exactly as the encoder wrote them. The header's
//! lengths are computed from the row bytes' length, so the rows are never re-encoded.

use bqsink_core::Record;
use bytes::{Bytes, BytesMut};

use crate::descriptor::RowDescriptor;
use crate::error::TransportError;
use crate::wire::{put_len_bytes, put_varint, varint_len, Tag, WIRE_LEN, WIRE_VARINT};

/// BigQuery's documented limit on one AppendRows request (20 MB): the hard cap on what a user may
/// configure. The default request stays under 10 MiB (see
/// [`bqsink_core::config::DEFAULT_MAX_REQUEST_BYTES`]), which bqemulator also accepts.
pub const MAX_REQUEST_BYTES: usize = bqsink_core::config::MAX_REQUEST_BYTES;
/// Room left in a request for its header (stream name, writer schema).
pub const HEADER_RESERVE_BYTES: usize = 256 * 1024;
/// Identifies the client in `trace_id`.
pub const TRACE_ID: &str = concat!("bqsink/", env!("CARGO_PKG_VERSION"));

/// One AppendRows request, ready for the wire.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub(crate) header: Bytes,
    pub(crate) rows: Bytes,
    row_count: usize,
    offset: Option<i64>,
    write_stream: std::sync::Arc<str>,
    descriptor: RowDescriptor,
}

impl AppendRequest {
    /// Builds a request for `row_count` rows already encoded as `serialized_rows` entries.
    pub fn new(
        write_stream: &str,
        descriptor: &RowDescriptor,
        rows: Bytes,
        row_count: usize,
        offset: Option<i64>,
    ) -> Result<Self, TransportError> {
        let desc = descriptor.descriptor_bytes();
        // ProtoSchema { proto_descriptor = 1 }
        let schema_len = 1 + varint_len(desc.len() as u64) + desc.len();
        // ProtoData { writer_schema = 1, rows = 2 }
        let data_len = 1 + varint_len(schema_len as u64) + schema_len + 1 + varint_len(rows.len() as u64) + rows.len();
        let mut h = BytesMut::with_capacity(64 + write_stream.len() + schema_len);
        put_len_bytes(&mut h, Tag::new(1, WIRE_LEN), write_stream.as_bytes());
        if let Some(off) = offset {
            // Int64Value { value = 1 }
            Tag::new(2, WIRE_LEN).put(&mut h);
            put_varint(&mut h, (1 + varint_len(off as u64)) as u64);
            Tag::new(1, WIRE_VARINT).put(&mut h);
            put_varint(&mut h, off as u64);
        }
        put_len_bytes(&mut h, Tag::new(6, WIRE_LEN), TRACE_ID.as_bytes());
        Tag::new(4, WIRE_LEN).put(&mut h);
        put_varint(&mut h, data_len as u64);
        Tag::new(1, WIRE_LEN).put(&mut h);
        put_varint(&mut h, schema_len as u64);
        put_len_bytes(&mut h, Tag::new(1, WIRE_LEN), desc);
        Tag::new(2, WIRE_LEN).put(&mut h);
        put_varint(&mut h, rows.len() as u64);
        let total = h.len() + rows.len();
        if total > MAX_REQUEST_BYTES {
            return Err(TransportError::TooLarge { bytes: total, limit: MAX_REQUEST_BYTES });
        }
        Ok(Self {
            header: h.freeze(),
            rows,
            row_count,
            offset,
            write_stream: write_stream.into(),
            descriptor: descriptor.clone(),
        })
    }

    /// The `serialized_rows` entries, one after the other.
    pub fn rows(&self) -> &Bytes {
        &self.rows
    }

    /// The same rows at another offset (after BigQuery's stream end moved).
    pub fn with_offset(&self, offset: Option<i64>) -> Result<Self, TransportError> {
        Self::new(&self.write_stream, &self.descriptor, self.rows.clone(), self.row_count, offset)
    }

    /// A request of some of this request's rows (by index, in order), for resending the good
    /// rows of a partly refused request or bisecting one. Contiguous runs are sliced, not copied.
    pub fn subset(&self, rows: &[usize], offset: Option<i64>) -> Result<Self, TransportError> {
        let spans = self.row_spans()?;
        let mut contiguous = rows.windows(2).all(|w| w[1] == w[0] + 1);
        contiguous &= rows.last().is_some_and(|&l| l < spans.len());
        let bytes = match (rows.first(), rows.last()) {
            (Some(&a), Some(&b)) if contiguous => self.rows.slice(spans[a].start..spans[b].end),
            _ => {
                let mut buf = BytesMut::new();
                for &i in rows {
                    let span = spans.get(i).ok_or_else(|| {
                        TransportError::Protocol(format!("row {i} is not in a request of {} rows", spans.len()))
                    })?;
                    buf.extend_from_slice(&self.rows[span.clone()]);
                }
                buf.freeze()
            }
        };
        Self::new(&self.write_stream, &self.descriptor, bytes, rows.len(), offset)
    }

    /// Every row of the request read back into a record (for dead letters), in order.
    pub fn decode_rows(&self) -> Result<Vec<Record>, TransportError> {
        decode_entries(&self.descriptor, &self.rows)
    }

    /// One row of the request read back into a record.
    pub fn decode_row(&self, i: usize) -> Result<Record, TransportError> {
        let spans = self.row_spans()?;
        let span = spans.get(i).ok_or_else(|| TransportError::Protocol(format!("no row {i} in the request")))?;
        crate::decoder::decode_row(&self.descriptor, entry_body(&self.rows[span.clone()])?)
    }

    /// Byte ranges of each `serialized_rows` entry (key, length and message) in the row bytes.
    fn row_spans(&self) -> Result<Vec<std::ops::Range<usize>>, TransportError> {
        entry_spans(&self.rows, self.row_count)
    }

    /// The descriptor the rows were encoded with.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// The write stream the request is for.
    pub fn write_stream(&self) -> &str {
        &self.write_stream
    }

    /// Rows in the request.
    pub fn row_count(&self) -> usize {
        self.row_count
    }
    /// Bytes on the wire (before gRPC framing).
    pub fn encoded_len(&self) -> usize {
        self.header.len() + self.rows.len()
    }
    /// The offset, for COMMITTED streams.
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }
    /// The request as one contiguous message (tests and tools; the codec avoids this copy).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        b.extend_from_slice(&self.header);
        b.extend_from_slice(&self.rows);
        b.freeze()
    }
}

/// Byte ranges of each `serialized_rows` entry (key, length and message) in `b`.
fn entry_spans(b: &[u8], expected: usize) -> Result<Vec<std::ops::Range<usize>>, TransportError> {
    let mut spans = Vec::with_capacity(expected);
    let mut at = 0;
    while at < b.len() {
        let start = at;
        if b[at] != 0x0A {
            return Err(TransportError::Protocol("row bytes are not ProtoRows entries".into()));
        }
        at += 1;
        let mut len: usize = 0;
        let mut shift = 0;
        loop {
            let byte = *b.get(at).ok_or_else(|| TransportError::Protocol("truncated row entry".into()))?;
            at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(TransportError::Protocol("bad row length".into()));
            }
        }
        at += len;
        if at > b.len() {
            return Err(TransportError::Protocol("truncated row entry".into()));
        }
        spans.push(start..at);
    }
    Ok(spans)
}

/// The message bytes of one `serialized_rows` entry (after its key and length).
fn entry_body(entry: &[u8]) -> Result<&[u8], TransportError> {
    let mut at = 1;
    loop {
        let byte = *entry.get(at).ok_or_else(|| TransportError::Protocol("truncated row entry".into()))?;
        at += 1;
        if byte < 0x80 {
            return Ok(&entry[at..]);
        }
    }
}

/// Every row of `rows` (`serialized_rows` entries) read back into records.
pub fn decode_entries(descriptor: &RowDescriptor, rows: &[u8]) -> Result<Vec<Record>, TransportError> {
    entry_spans(rows, 0)?
        .into_iter()
        .map(|span| crate::decoder::decode_row(descriptor, entry_body(&rows[span])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{Field, FieldType, Record, Schema};
    use prost::Message;

    #[test]
    fn decodes_as_the_googleapis_request() {
        let schema = Schema::new(vec![Field::new("id", FieldType::Int64), Field::new("s", FieldType::String)]);
        let desc = RowDescriptor::new(&schema).expect("schema");
        let mut enc = crate::RowEncoder::new(desc.clone());
        let mut rows = BytesMut::new();
        for i in 0..300 {
            let r = Record::new().with("id", i as i64).with("s", "x".repeat(i));
            enc.encode_row_entry(&r, &mut rows).expect("encode");
        }
        let req =
            AppendRequest::new("projects/p/datasets/d/tables/t/streams/_default", &desc, rows.freeze(), 300, Some(42))
                .expect("request");
        let decoded = google_cloud_googleapis::cloud::bigquery::storage::v1::AppendRowsRequest::decode(req.to_bytes())
            .expect("valid protobuf");
        assert_eq!(decoded.write_stream, "projects/p/datasets/d/tables/t/streams/_default");
        assert_eq!(decoded.offset, Some(42));
        assert_eq!(decoded.trace_id, TRACE_ID);
        use google_cloud_googleapis::cloud::bigquery::storage::v1::append_rows_request::Rows;
        let Some(Rows::ProtoRows(data)) = decoded.rows else { panic!("no proto rows") };
        let rows = data.rows.expect("rows").serialized_rows;
        assert_eq!(rows.len(), 300);
        let schema = data.writer_schema.expect("schema").proto_descriptor.expect("descriptor");
        assert_eq!(schema.field.len(), 2);
    }

    #[test]
    fn subsets_and_offsets_keep_the_rows_intact() {
        let schema = Schema::new(vec![Field::new("id", FieldType::Int64), Field::new("s", FieldType::String)]);
        let desc = RowDescriptor::new(&schema).expect("schema");
        let mut enc = crate::RowEncoder::new(desc.clone());
        let mut rows = BytesMut::new();
        for i in 0..10i64 {
            let r = Record::new().with("id", i).with("s", "y".repeat(i as usize * 30));
            enc.encode_row_entry(&r, &mut rows).expect("encode");
        }
        let req = AppendRequest::new("s", &desc, rows.freeze(), 10, Some(0)).expect("request");
        let ids = |r: &AppendRequest| -> Vec<i64> {
            use google_cloud_googleapis::cloud::bigquery::storage::v1::append_rows_request::Rows;
            let d = google_cloud_googleapis::cloud::bigquery::storage::v1::AppendRowsRequest::decode(r.to_bytes())
                .expect("valid");
            let Some(Rows::ProtoRows(data)) = d.rows else { panic!("rows") };
            data.rows
                .expect("rows")
                .serialized_rows
                .iter()
                .map(|b| {
                    // Field 1 varint: key 0x08 then the value.
                    let mut v = 0i64;
                    for (i, byte) in b[1..].iter().enumerate() {
                        v |= i64::from(byte & 0x7f) << (7 * i);
                        if byte & 0x80 == 0 {
                            break;
                        }
                    }
                    v
                })
                .collect()
        };
        assert_eq!(ids(&req.subset(&[2, 3, 4], Some(2)).expect("slice")), vec![2, 3, 4]);
        assert_eq!(ids(&req.subset(&[0, 9], None).expect("copy")), vec![0, 9]);
        assert_eq!(req.with_offset(Some(7)).expect("re-offset").offset(), Some(7));
        assert!(req.subset(&[10], None).is_err());
    }
}
