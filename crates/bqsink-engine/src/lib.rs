#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod abort;
pub mod breaker;
pub mod checkpoint;
pub mod dlq;
pub mod limiter;
pub mod metrics;
pub mod pool;
pub mod retry;
pub mod router;
pub mod sink;
pub mod workers;

pub use abort::Abort;
pub use checkpoint::Checkpoint;
pub use dlq::{Callback, Channel, DeadLetter, DeadLetterQueue, Fate, NdjsonFile, Payload, Reason};
pub use pool::ConnectionPool;
pub use retry::RetryPolicy;
pub use router::Router;
pub use sink::{BatchLimits, EngineError, Resumed, Settled, SinkStats, TableSink};
pub use workers::{EncodedRows, EncoderPool};
