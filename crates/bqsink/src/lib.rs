#![doc = include_str!("../README.md")]
//!
//! # Module layout
//!
//! Dependencies between the modules point one way; each uses only modules before it here:
//! `error` ← `resilience` ← `connect` ← `summary` ← `dlq_flush` ← `admin` ← `destination` ← `blocking` ←
//! `dlq_table` ← `health` ← `dataset` ← `segment`. The dead-letter table writes through a
//! destination of its own, so it hands `DestinationBuilder` the function that opens it rather
//! than the builder calling up into it.
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod blocking;
mod connect;
pub mod dataset;
mod destination;
mod dlq_flush;
pub mod dlq_table;
mod error;
mod health;
mod resilience;
pub mod segment;
mod summary;

pub use admin::{Admin, TableOverview};
pub use blocking::Writer;
/// Input formats: transcoders from input bytes to row bytes, the chunker, decompression.
pub use bqsink_formats as formats;
pub use bqsink_formats::Format;
pub use bqsink_schema::SegmentOptions;
pub use bqsink_transport::UnknownFields;
pub use dataset::{DatasetWriter, DatasetWriterBuilder};
pub use destination::{Destination, DestinationBuilder, LoadOptions, LoadReport, OnRefused, OnSettled, StreamReport};
pub use dlq_table::TableDeadLetters;
pub use error::Error;
pub use health::{Health, HealthCheck, HEALTHY_ERROR_RATE};
pub use segment::{PayloadOutcome, SegmentWriter};
pub use summary::Summary;

pub use bqsink_core::{
    civil, Clustering, ConfigError, CreateDisposition, Date, DateTime, Decimal, Field, FieldType, Mode, PartitionType,
    Record, RowError, Schema, SchemaError, TableRef, Time, TimePartitioning, Timestamp, Value, WriteDisposition,
};
pub use bqsink_core::{BreakerWhenOpen, DestinationConfig, WriteMode};
pub use bqsink_engine::breaker::{BreakerState, CircuitBreakerConfig, WhenOpen};
pub use bqsink_engine::dlq;
pub use bqsink_engine::limiter::RateLimitConfig;
pub use bqsink_engine::metrics::MetricsSnapshot;
pub use bqsink_engine::{
    checkpoint, Abort, BatchLimits, DeadLetter, DeadLetterQueue, Fate, NdjsonFile, Payload, Reason, Resumed,
    RetryPolicy, Settled,
};
pub use bqsink_schema::{Change, Refusal};
pub use bqsink_transport::{
    Auth, Endpoints, QueryResult, RestClient, StatusCode, TableInfo, TableSpec, TransportError,
};
