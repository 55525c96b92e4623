#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod append;
pub mod auth;
pub(crate) mod codec;
pub mod decoder;
pub mod descriptor;
pub mod encoder;
pub mod endpoint;
pub mod error;
pub mod request;
pub mod rest;
pub mod wire;

pub use append::{AckFuture, AppendAck, AppendStream, StreamKind, WriteClient, WriteStreamInfo};
pub use auth::Auth;
pub use decoder::decode_row;
pub use descriptor::{FieldPlan, MessagePlan, RowDescriptor, WireKind};
pub use encoder::{put_coerced_body, RowEncoder, UnknownFields};
pub use endpoint::Endpoints;
pub use error::{RejectedRow, StatusCode, TransportError};
pub use request::{AppendRequest, MAX_REQUEST_BYTES};
pub use rest::{QueryResult, RestClient, TableInfo, TableSpec};
