//! Schema inference over whole inputs (bqsink-schema's rules), for `load` without `--schema`
//! and for `schema infer`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::bail;
use bqsink_schema::{InferConflict, InferMode, SchemaInference};

use crate::input::{self, Format, Input, Item};

/// What inference over an input found.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) schema: bqsink::Schema,
    pub(crate) conflicts: Vec<InferConflict>,
    /// Rows observed.
    pub(crate) rows: usize,
    /// Input that is not a row (skipped).
    pub(crate) bad: u64,
}

/// Reads every input once and infers the schema that holds all its rows. Stdin cannot be read
/// twice, so it is refused.
pub(crate) async fn over(inputs: &[Input], format: Format, mode: InferMode) -> anyhow::Result<Found> {
    if inputs.iter().any(|i| i.path.is_none()) {
        bail!("a schema cannot be inferred from stdin (it would have to be read twice); pass --schema FILE");
    }
    let mut rows = input::spawn(inputs.to_vec(), format, Arc::new(AtomicU64::new(0)));
    let mut inference = SchemaInference::new(mode);
    let mut bad = 0;
    while let Some(item) = rows.recv().await {
        match item {
            Item::Row(_, record) => inference.observe(&record),
            Item::Bad(..) => bad += 1,
            Item::Fatal(message) => bail!(message),
        }
    }
    let inferred = inference.finish();
    if inferred.schema.fields.is_empty() {
        bail!("cannot infer a schema: the input has no row with a non-null value; pass --schema FILE");
    }
    Ok(Found { schema: inferred.schema, conflicts: inferred.conflicts, rows: inferred.records, bad })
}
