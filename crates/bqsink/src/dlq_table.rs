//! Dead letters written into a BigQuery table, so refused rows can be queried next to the data.
//!
//! The table (created when missing) has one row per dead letter:
//!
//! | column | type | what |
//! |---|---|---|
//! | `failed_at` | TIMESTAMP | when the row was refused |
//! | `target_table` | STRING | `project.dataset.table` the row was meant for |
//! | `row_index` | INT64 | its position in the input, when known |
//! | `column_name` | STRING | the offending column, empty when the row as a whole is bad |
//! | `reason` | STRING | what is wrong |
//! | `record` | JSON | the row as it arrived, when it was a record |
//! | `raw` | STRING | the input text, when it was not even a record |
//!
//! Letters go through a bounded channel to a thread of their own (the blocking [`Writer`]),
//! so pushing never waits on the network; `flush` waits until BigQuery acknowledged them.

use std::io;
use std::sync::{Arc, Mutex};

use bqsink_core::{Field, FieldType, Record, Schema, Value};
use bqsink_engine::{DeadLetter, DeadLetterQueue, Payload};

use crate::blocking::Writer;
use crate::destination::{DeadLetterTable, DestinationBuilder};

/// The dead-letter table's columns.
pub fn dead_letter_schema() -> Schema {
    Schema::new(vec![
        Field::new("failed_at", FieldType::Timestamp).required(),
        Field::new("target_table", FieldType::String).required(),
        Field::new("row_index", FieldType::Int64),
        Field::new("column_name", FieldType::String),
        Field::new("reason", FieldType::String).required(),
        Field::new("record", FieldType::Json),
        Field::new("raw", FieldType::String),
    ])
}

/// A [`DeadLetterQueue`] that appends to a BigQuery table through the default stream.
pub struct TableDeadLetters {
    table: String,
    writer: Mutex<Option<Writer>>,
}

impl std::fmt::Debug for TableDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableDeadLetters").field("table", &self.table).finish()
    }
}

impl TableDeadLetters {
    /// Opens (creating it when missing) the table `builder` points at, with
    /// [`dead_letter_schema`]. Blocks until the table is ready: call it off the async runtime
    /// (`tokio::task::spawn_blocking`).
    pub fn open(builder: DestinationBuilder) -> Result<Self, crate::Error> {
        let table = {
            let c = builder.config();
            format!("{}.{}.{}", c.project_id, c.dataset_id, c.table_id)
        };
        let writer = Writer::new(builder.schema(dead_letter_schema()).write_mode(bqsink_core::WriteMode::Streaming))?;
        Ok(Self { table, writer: Mutex::new(Some(writer)) })
    }

    /// The table written to, `project.dataset.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn with_writer<T>(&self, f: impl FnOnce(&Writer) -> Result<T, crate::Error>) -> io::Result<T> {
        let guard = self.writer.lock().map_err(|_| io::Error::other("the dead-letter writer is poisoned"))?;
        let writer = guard.as_ref().ok_or_else(|| io::Error::other("the dead-letter table is closed"))?;
        f(writer).map_err(|e| io::Error::other(format!("dead-letter table {}: {e}", self.table)))
    }
}

impl DestinationBuilder {
    /// Send rows that cannot be written to a table of the same dataset (created when missing;
    /// columns in [`crate::dlq_table`]), so they can be queried next to the data.
    pub fn dead_letter_table(self, table_id: impl Into<String>) -> Self {
        self.with_dead_letter_table(DeadLetterTable { table_id: table_id.into(), open: open_queue })
    }
}

/// Opens the dead-letter table a destination names, for its `build`.
fn open_queue(builder: DestinationBuilder) -> Result<Arc<dyn DeadLetterQueue>, crate::Error> {
    Ok(Arc::new(TableDeadLetters::open(builder)?))
}

/// The dead letter as a row of the table.
fn letter_row(letter: DeadLetter) -> Record {
    let reason = letter.reason;
    let mut row = Record::with_capacity(7)
        .with("failed_at", Value::Timestamp(letter.time))
        .with("target_table", reason.table.to_string())
        .with("row_index", reason.row.map_or(Value::Null, |r| Value::Int64(r as i64)))
        .with("column_name", reason.column)
        .with("reason", reason.message);
    match letter.payload {
        Payload::Record(r) => row.insert("record", Value::Json(r.to_json_string())),
        Payload::Raw(text) => row.insert("raw", text),
        other => row.insert("raw", format!("{other:?}")),
    }
    row
}

impl DeadLetterQueue for TableDeadLetters {
    fn push(&self, letter: DeadLetter) -> io::Result<()> {
        self.with_writer(|w| w.write(letter_row(letter)))
    }

    fn flush(&self) -> io::Result<()> {
        let refused = self.with_writer(Writer::flush)?;
        match refused.first() {
            None => Ok(()),
            Some(e) => Err(io::Error::other(format!(
                "dead-letter table {}: {} dead letters could not be written, first: {e}",
                self.table,
                refused.len()
            ))),
        }
    }
}

impl Drop for TableDeadLetters {
    fn drop(&mut self) {
        if let Some(w) = self.writer.get_mut().ok().and_then(Option::take) {
            if let Err(e) = w.close() {
                tracing::warn!(table = %self.table, error = %e, "closing the dead-letter table failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{RowError, TableRef, Timestamp};
    use bqsink_engine::Reason;

    #[test]
    fn a_letter_becomes_a_row_of_the_schema() {
        let table = TableRef::new("p", "d", "events").expect("valid");
        let mut e = RowError::new("at", "expected TIMESTAMP, got STRING (\"yesterday\")");
        e.row = Some(7);
        let mut letter =
            DeadLetter::new(Reason::from_row_error(&table, &e), Payload::Record(Record::new().with("at", "yesterday")));
        letter.time = Timestamp::UNIX_EPOCH;
        let row = letter_row(letter);
        assert_eq!(row.get("target_table"), Some(&Value::String("p.d.events".into())));
        assert_eq!(row.get("row_index"), Some(&Value::Int64(7)));
        assert_eq!(row.get("column_name"), Some(&Value::String("at".into())));
        assert_eq!(row.get("record"), Some(&Value::Json(r#"{"at":"yesterday"}"#.into())));
        assert_eq!(row.get("raw"), None);
        let names: Vec<&str> = row.iter().map(|(n, _)| n).collect();
        for n in names {
            assert!(dead_letter_schema().field(n).is_some(), "{n} is a column");
        }
        let raw = letter_row(DeadLetter::new(Reason::from_row_error(&table, &e), Payload::Raw("{oops".into())));
        assert_eq!(raw.get("raw"), Some(&Value::String("{oops".into())));
    }
}
