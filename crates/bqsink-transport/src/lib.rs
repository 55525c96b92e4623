#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod descriptor;
pub mod encoder;
pub(crate) mod wire;

pub use descriptor::RowDescriptor;
pub use encoder::{RowEncoder, UnknownFields};
