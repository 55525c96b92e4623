#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod dlq;
pub mod retry;
pub mod sink;

pub use dlq::{DeadLetter, DeadLetterQueue, NdjsonFile, Payload, Reason};
pub use retry::RetryPolicy;
pub use sink::{BatchLimits, EngineError, SinkStats, TableSink};
