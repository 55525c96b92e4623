//! Segment-compatible analytics events: `track`, `identify`, `page`, `screen`, `group` and
//! `alias` payloads (single, or in a `{"batch": [...]}` envelope) land in `tracks`,
//! `identifies`, `users`, `pages`, `screens`, `groups`, `aliases` and one table per track
//! event, with Segment's warehouse columns (see `bqsink_schema::segment`). Tables are created
//! partitioned by DAY on `received_at` and evolve as properties appear, through a
//! [`DatasetWriter`].
//!
//! Accounting is per table row: a `track` call makes two rows (`tracks` and its event table),
//! an `identify` two (`identifies` and `users`); a payload that cannot become rows is one
//! dead-lettered row with its text and the reason.

use bqsink_core::{RowError, Timestamp};
use bqsink_schema::segment::{default_partitioning, table_schema};
use bqsink_schema::{InferMode, SchemaInference, SegmentOptions, SegmentRow};

use crate::dataset::{DatasetWriter, DatasetWriterBuilder};
use crate::summary::Summary;
use crate::Error;

/// What became of one payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadOutcome {
    /// Table rows the payload made.
    pub rows: u64,
    /// Rows refused (dead-lettered when a queue is set), each naming table and column.
    pub refused: Vec<RowError>,
}

/// Writes Segment payloads into a dataset laid out like Segment's warehouses.
#[derive(Debug)]
pub struct SegmentWriter {
    writer: DatasetWriter,
    options: SegmentOptions,
}

/// Now, as a timestamp (for `received_at`, `uuid_ts` and `loaded_at`).
pub fn now() -> Timestamp {
    let micros =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    Timestamp::from_micros(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl SegmentWriter {
    /// A writer over `builder`'s dataset; tables get Segment's base columns and, unless the
    /// builder sets another, DAY partitioning on `received_at`.
    pub async fn new(builder: DatasetWriterBuilder, options: SegmentOptions) -> Result<Self, Error> {
        let builder = builder.base_schema(table_schema).partitioning_if_unset(default_partitioning());
        Ok(Self { writer: builder.build().await?, options })
    }

    /// The underlying dataset writer.
    pub fn dataset(&self) -> &DatasetWriter {
        &self.writer
    }

    /// Rows of one NDJSON line (a payload or a batch envelope); `line_no` is 1-based.
    pub fn rows_of_line(&self, line: &str, line_no: u64) -> Result<Vec<SegmentRow>, bqsink_schema::SegmentError> {
        bqsink_schema::rows_from_line(line, line_no, now(), &self.options)
    }

    /// Writes one NDJSON line. A line that cannot become rows is dead-lettered whole.
    pub async fn write_line(&self, line: &str, line_no: u64) -> Result<PayloadOutcome, Error> {
        match self.rows_of_line(line, line_no) {
            Ok(rows) => self.write_rows_at(rows, Some(line_no)).await,
            Err(e) => {
                let refused = self.writer.dead_letter_raw(Some(line_no), line, e.to_string())?;
                Ok(PayloadOutcome { rows: 1, refused: vec![refused] })
            }
        }
    }

    /// Writes one payload (a call or a batch envelope).
    pub async fn write_payload(&self, payload: &serde_json::Value) -> Result<PayloadOutcome, Error> {
        match bqsink_schema::rows_from_payload(payload, now(), &self.options) {
            Ok(rows) => self.write_rows(rows).await,
            Err(e) => {
                let refused = self.writer.dead_letter_raw(None, payload.to_string(), e.to_string())?;
                Ok(PayloadOutcome { rows: 1, refused: vec![refused] })
            }
        }
    }

    /// Writes rows already made from payloads.
    pub async fn write_rows(&self, rows: Vec<SegmentRow>) -> Result<PayloadOutcome, Error> {
        self.write_rows_at(rows, None).await
    }

    /// Writes the rows made from the input's line or payload at position `at` (as the caller
    /// numbers them), so refusals and dead letters name it.
    pub async fn write_rows_at(&self, rows: Vec<SegmentRow>, at: Option<u64>) -> Result<PayloadOutcome, Error> {
        let mut outcome = PayloadOutcome::default();
        for row in rows {
            outcome.rows += 1;
            if let Some(e) = self.writer.write_at(&row.table, row.record, at).await? {
                outcome.refused.push(e);
            }
        }
        Ok(outcome)
    }

    /// For a finite input: plans every table's schema over all its rows and applies it before
    /// the first write, so each table changes at most once. Returns the type conflicts found
    /// (their rows are coerced or dead-lettered when written).
    pub async fn plan<'a>(&self, rows: impl IntoIterator<Item = &'a SegmentRow>) -> Result<Vec<String>, Error> {
        let mut per_table: std::collections::BTreeMap<&str, SchemaInference> = Default::default();
        for row in rows {
            per_table
                .entry(row.table.as_str())
                .or_insert_with(|| SchemaInference::new(InferMode::Segment))
                .observe_normalized(&row.record);
        }
        let mut conflicts = Vec::new();
        for (table, inference) in per_table {
            let inferred = inference.finish();
            conflicts.extend(inferred.conflicts.iter().map(|c| format!("{table}.{c}")));
            let mut schema = table_schema(table);
            for f in inferred.schema.fields {
                if schema.field(&f.name).is_none() {
                    schema.fields.push(f);
                }
            }
            conflicts.extend(self.writer.prepare(table, &schema).await?);
        }
        Ok(conflicts)
    }

    /// Sends everything queued and waits for the acknowledgements.
    pub async fn flush(&self) -> Result<(), Error> {
        self.writer.flush().await
    }

    /// Flushes and reports what was written.
    pub async fn close(self) -> Result<Summary, Error> {
        self.writer.close().await
    }
}
