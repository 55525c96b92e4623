#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod blocking;
pub mod dataset;
mod destination;
pub mod dlq_table;
mod error;
pub mod segment;

pub use admin::{Admin, TableOverview};
pub use blocking::Writer;
pub use bqsink_schema::SegmentOptions;
pub use dataset::{DatasetWriter, DatasetWriterBuilder};
pub use destination::{
    Destination, DestinationBuilder, Health, HealthCheck, StreamReport, Summary, HEALTHY_ERROR_RATE,
};
pub use dlq_table::TableDeadLetters;
pub use error::Error;
pub use segment::{PayloadOutcome, SegmentWriter};

pub use bqsink_core::{
    civil, Clustering, ConfigError, CreateDisposition, Date, DateTime, Decimal, Field, FieldType, Mode, PartitionType,
    Record, RowError, Schema, SchemaError, TableRef, Time, TimePartitioning, Timestamp, Value, WriteDisposition,
};
pub use bqsink_core::{DestinationConfig, WriteMode};
pub use bqsink_engine::breaker::{BreakerState, CircuitBreakerConfig, WhenOpen};
pub use bqsink_engine::dlq;
pub use bqsink_engine::limiter::RateLimitConfig;
pub use bqsink_engine::metrics::MetricsSnapshot;
pub use bqsink_engine::{BatchLimits, DeadLetter, DeadLetterQueue, NdjsonFile, Payload, Reason, RetryPolicy};
pub use bqsink_schema::{Change, Refusal};
pub use bqsink_transport::{
    Auth, Endpoints, QueryResult, RestClient, StatusCode, TableInfo, TableSpec, TransportError,
};
