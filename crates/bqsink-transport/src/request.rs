//! AppendRows requests built from a batch buffer of encoded rows, without copying the rows.
//!
//! A request is a small header — `write_stream` (1), optional `offset` (2, an `Int64Value`),
//! `trace_id` (6), and the opening of `proto_rows` (4) with the writer schema — followed by the
//! batch's `ProtoRows.serialized_rows` entries exactly as the encoder wrote them. The header's
//! lengths are computed from the row bytes' length, so the rows are never re-encoded.

use bytes::{Bytes, BytesMut};

use crate::descriptor::RowDescriptor;
use crate::error::TransportError;
use crate::wire::{put_len_bytes, put_varint, varint_len, Tag, WIRE_LEN, WIRE_VARINT};

/// BigQuery's limit on one AppendRows request.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
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
        Ok(Self { header: h.freeze(), rows, row_count, offset })
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
}
