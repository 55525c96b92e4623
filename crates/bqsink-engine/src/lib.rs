#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod retry;
pub mod sink;

pub use retry::RetryPolicy;
pub use sink::{BatchLimits, EngineError, SinkStats, TableSink};
