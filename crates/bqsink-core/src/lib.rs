#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod civil;
pub mod config;
pub mod decimal;
pub mod error;
pub mod json;
pub mod scalar;
pub mod schema;
pub mod table;
pub mod value;

pub use civil::{Date, DateTime, Time, Timestamp};
pub use config::{BreakerWhenOpen, DestinationConfig};
pub use decimal::{Decimal, DecimalShape};
pub use error::{ConfigError, RowError, SchemaError, ValueError};
pub use scalar::{coerce_scalar, Coerced, Scalar};
pub use schema::{Field, FieldType, Mode, Schema};
pub use table::{
    Clustering, CreateDisposition, PartitionType, TableRef, TimePartitioning, WriteDisposition, WriteMode,
};
pub use value::{Name, Record, Value};
