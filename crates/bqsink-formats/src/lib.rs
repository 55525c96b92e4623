#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod batch;
pub mod chunk;
pub mod csv;
pub mod input;
pub mod json;
pub mod ndjson;
mod scan;
pub mod segment;
pub mod typed;

pub use batch::{Batch, Cut, Refused};
pub use chunk::{Chunk, Chunker, Format};
pub use csv::CsvTranscoder;
pub use input::open;
pub use json::JsonTranscoder;
pub use segment::{Piece, SegmentScan, SegmentScanner, SegmentTranscoder};
pub use typed::TypedEncoder;
