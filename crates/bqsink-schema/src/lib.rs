#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod evolution;
pub mod infer;
pub mod naming;
pub mod reconcile;
pub mod segment;
pub mod views;

pub use evolution::{plan_alter, Change, Refusal};
pub use infer::{
    infer_schema, infer_schema_json, normalize_record, InferConflict, InferMode, Inferred, SchemaInference,
};
pub use reconcile::{reconcile, reconcile_schema, Conflict, Decision, SchemaPlan};
pub use segment::{rows_from_line, rows_from_payload, SegmentError, SegmentOptions, SegmentRow};
pub use views::{views, ViewDef, ViewOptions};
