#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod destination;
mod error;

pub use destination::{Destination, DestinationBuilder, Summary};
pub use error::Error;

pub use bqsink_core::{
    civil, Clustering, ConfigError, CreateDisposition, Date, DateTime, Decimal, Field, FieldType, Mode, PartitionType,
    Record, RowError, Schema, SchemaError, TableRef, Time, TimePartitioning, Timestamp, Value, WriteDisposition,
};
pub use bqsink_engine::{BatchLimits, RetryPolicy};
pub use bqsink_transport::{
    Auth, Endpoints, QueryResult, RestClient, StatusCode, TableInfo, TableSpec, TransportError,
};
