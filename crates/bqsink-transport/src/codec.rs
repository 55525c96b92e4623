//! The AppendRows codec: requests go out as header + row bytes straight from the batch buffer;
//! responses decode into the googleapis types.

use bytes::BufMut;
use google_cloud_googleapis::cloud::bigquery::storage::v1::AppendRowsResponse;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::request::AppendRequest;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AppendCodec;

impl Codec for AppendCodec {
    type Encode = AppendRequest;
    type Decode = AppendRowsResponse;
    type Encoder = AppendEncoder;
    type Decoder = AppendDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        AppendEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        AppendDecoder
    }
}

#[derive(Debug)]
pub(crate) struct AppendEncoder;

impl Encoder for AppendEncoder {
    type Item = AppendRequest;
    type Error = Status;
    fn encode(&mut self, item: AppendRequest, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        dst.put_slice(&item.header);
        dst.put_slice(&item.rows);
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct AppendDecoder;

impl Decoder for AppendDecoder {
    type Item = AppendRowsResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<AppendRowsResponse>, Status> {
        AppendRowsResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode AppendRowsResponse: {e}")))
    }
}
