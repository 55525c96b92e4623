//! Rows BigQuery refused: read back from their bytes, the column named from the server's
//! message, and sent to the dead-letter queue (or kept for [`TableSink::take_refused`]).

use bqsink_core::{Record, RowError};
use bqsink_transport::AppendRequest;

use super::{EngineError, TableSink};
use crate::dlq::{DeadLetter, Payload, Reason};

impl TableSink {
    pub(super) fn refuse(&mut self, error: RowError, record: Record) -> Result<(), EngineError> {
        self.stats.rows_refused += 1;
        self.shared.metrics.record_dead_letter(1);
        match &self.dlq {
            Some(q) => q
                .push(DeadLetter::new(Reason::from_row_error(&self.table, &error), Payload::Record(record)))
                .map_err(EngineError::DeadLetter),
            None => {
                self.refused.push((error, record));
                Ok(())
            }
        }
    }
}

/// One encoded row (a `serialized_rows` entry) read back; see [`undecodable`].
pub(super) fn decode_one(descriptor: &bqsink_transport::RowDescriptor, entry: &[u8]) -> Record {
    match bqsink_transport::request::decode_entries(descriptor, entry) {
        Ok(mut rows) if rows.len() == 1 => rows.pop().unwrap_or_default(),
        Ok(rows) => undecodable(&format!("{} rows in one entry", rows.len())),
        Err(e) => undecodable(&e),
    }
}

/// Every row of a batch's bytes read back, or one placeholder per row that cannot be.
pub(super) fn decode_all(descriptor: &bqsink_transport::RowDescriptor, rows: &[u8]) -> Vec<Record> {
    bqsink_transport::request::decode_entries(descriptor, rows).unwrap_or_else(|e| vec![undecodable(&e)])
}

pub(super) fn decode_request(request: &AppendRequest) -> Vec<Record> {
    match request.decode_rows() {
        Ok(rows) => rows,
        Err(e) => (0..request.row_count()).map(|_| undecodable(&e)).collect(),
    }
}

/// A row whose bytes cannot be read back (a bug, not bad data): kept as a record that says so,
/// so the row is still counted and reported.
pub(crate) fn undecodable(e: &dyn std::fmt::Display) -> Record {
    Record::new().with("_bqsink_undecodable_row", e.to_string())
}

/// The column a server message names, when it quotes one (`… field 'a.b' …`, `… column "x" …`).
pub(super) fn column_of(message: &str) -> String {
    for key in ["field ", "column ", "Field ", "Column "] {
        if let Some(rest) = message.split(key).nth(1) {
            let rest = rest.trim_start();
            if let Some(q) = rest.chars().next().filter(|c| matches!(c, '\'' | '"' | '`')) {
                if let Some(name) = rest[1..].split(q).next() {
                    return name.to_owned();
                }
            }
            let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.')).collect();
            if !word.is_empty() {
                return word;
            }
        }
    }
    String::new()
}

/// When a server refuses a row without naming a column (some emulators): the one non-null
/// column whose type the message talks about, if there is exactly one.
pub(super) fn guess_column(message: &str, schema: &bqsink_core::Schema, record: &Record) -> String {
    use bqsink_core::FieldType as T;
    let m = message.to_ascii_lowercase();
    let types: &[T] = if m.contains("geometry") || m.contains("geography") || m.contains("wkt") {
        &[T::Geography]
    } else if m.contains("json") {
        &[T::Json]
    } else if m.contains("decimal") || m.contains("numeric") {
        &[T::Numeric, T::BigNumeric]
    } else if m.contains("timestamp") {
        &[T::Timestamp]
    } else if m.contains("datetime") {
        &[T::DateTime]
    } else if m.contains("date") {
        &[T::Date]
    } else if m.contains("time") {
        &[T::Time]
    } else {
        return String::new();
    };
    let candidates: Vec<&str> = schema
        .fields
        .iter()
        .filter(|f| types.contains(&f.field_type))
        .filter(|f| record.get(&f.name).is_some_and(|v| !v.is_null()))
        .map(|f| f.name.as_str())
        .collect();
    match candidates.as_slice() {
        [one] => (*one).to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_columns_are_guessed_only_when_unambiguous() {
        let schema = bqsink_core::Schema::new(vec![
            bqsink_core::Field::new("id", bqsink_core::FieldType::Int64),
            bqsink_core::Field::new("g", bqsink_core::FieldType::Geography),
            bqsink_core::Field::new("h", bqsink_core::FieldType::Geography),
        ]);
        let one = Record::new().with("id", 1).with("g", "POINT(");
        assert_eq!(guess_column("Failed to parse geometry", &schema, &one), "g");
        let two = one.clone().with("h", "POINT(1 1)");
        assert_eq!(guess_column("Failed to parse geometry", &schema, &two), "");
        assert_eq!(guess_column("something odd", &schema, &one), "");
    }

    #[test]
    fn columns_are_read_from_server_messages() {
        assert_eq!(column_of("Field 'outer.leaf': value out of range"), "outer.leaf");
        assert_eq!(column_of("Could not convert value to geography for column \"g\""), "g");
        assert_eq!(column_of("row 3: field d is out of range"), "d");
        assert_eq!(column_of("something else"), "");
    }
}
