//! CSV straight to row bytes: the header names the columns once; each record's fields are
//! taken in schema order and written by the shared rules. Every field is text, as in BigQuery's
//! CSV loads: an empty field is NULL, and a JSON column takes the field as JSON text (checked).

use bqsink_core::{coerce_scalar, FieldType, Mode, RowError, Scalar, Value};
use bqsink_transport::{put_coerced_body, RowDescriptor, UnknownFields, WireKind};
use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use crate::batch::{Batch, Batches, Cut};

/// Transcodes CSV records into rows of one table.
#[derive(Debug)]
pub struct CsvTranscoder {
    descriptor: RowDescriptor,
    headers: Vec<String>,
    /// For each top-level column, the field of a record that holds it.
    source: Vec<Option<usize>>,
    /// Refuses every record: a header that is not a column, or names one twice.
    header_error: Option<RowError>,
    fields: Vec<u8>,
    ends: Vec<usize>,
    bytes: Vec<u8>,
    row: Vec<u8>,
}

impl CsvTranscoder {
    /// A transcoder for records under `header` (the raw header record).
    pub fn new(descriptor: RowDescriptor, header: &[u8], unknown: UnknownFields) -> Self {
        let (fields, ends) = split_record(header);
        let headers: Vec<String> = ends
            .iter()
            .enumerate()
            .map(|(n, &end)| {
                let start = if n == 0 { 0 } else { ends[n - 1] };
                let h = String::from_utf8_lossy(&fields[start..end]);
                let h = h.trim().trim_start_matches('\u{feff}');
                if h.is_empty() {
                    format!("column_{}", n + 1)
                } else {
                    h.to_owned()
                }
            })
            .collect();
        let root = descriptor.root();
        let mut source = vec![None; root.fields.len()];
        let mut header_error = None;
        for (n, h) in headers.iter().enumerate() {
            match root.lookup(h) {
                Some(idx) if source[idx].is_some() => {
                    header_error.get_or_insert_with(|| {
                        RowError::new(h.clone(), "the column appears twice in the record (names are case-insensitive)")
                    });
                }
                Some(idx) => source[idx] = Some(n),
                None if unknown == UnknownFields::Reject => {
                    header_error.get_or_insert_with(|| RowError::new(h.clone(), "no such column in the table"));
                }
                None => {}
            }
        }
        Self {
            descriptor,
            headers,
            source,
            header_error,
            fields: Vec::with_capacity(1024),
            ends: Vec::with_capacity(64),
            bytes: Vec::new(),
            row: Vec::with_capacity(512),
        }
    }

    /// The descriptor rows are written for.
    pub fn descriptor(&self) -> &RowDescriptor {
        &self.descriptor
    }

    /// The header's column names, as read.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Transcodes a chunk of whole CSV records whose first line is line `first_line` (1-based).
    pub fn chunk(&mut self, chunk: &[u8], first_line: u64, cut: Cut) -> Vec<Batch> {
        let mut batches = Batches::new(&self.descriptor, cut, chunk.len());
        let mut reader = reader();
        let mut at = 0;
        let mut line = first_line;
        loop {
            self.fields.clear();
            self.ends.clear();
            let start = at;
            let Some(done) = self.read_record(&mut reader, chunk, &mut at) else { break };
            let raw = &chunk[start..at];
            // The `\r` of a `\r\n` ends the record's last field (a lone `\r` is data).
            if raw.strip_suffix(b"\n").unwrap_or(raw).ends_with(b"\r") && self.fields.last() == Some(&b'\r') {
                self.fields.pop();
                if let Some(end) = self.ends.last_mut() {
                    *end = self.fields.len();
                }
            }
            let number = line + skipped_blank_lines(raw);
            line += memchr::memchr_iter(b'\n', raw).count() as u64;
            // Blank lines are no records (csv-core skips `\n` ones; `\r\n` ones reach here).
            let blank = raw.iter().all(|b| *b == b'\n' || *b == b'\r');
            if self.ends.is_empty() || blank || (self.ends.len() == 1 && self.ends[0] == 0 && self.headers.len() > 1) {
                if done {
                    break;
                }
                continue;
            }
            let text = || String::from_utf8_lossy(raw).trim().to_owned();
            match self.record() {
                Ok(()) => batches.row(&self.row, number - 1),
                Err(e) => batches.refuse(number - 1, e, text()),
            }
            if done {
                break;
            }
        }
        batches.finish()
    }

    /// Reads one record from `chunk[*at..]` into `fields` / `ends`; `None` when nothing is
    /// left, `Some(true)` when this was the last record.
    fn read_record(&mut self, reader: &mut Reader, chunk: &[u8], at: &mut usize) -> Option<bool> {
        if *at >= chunk.len() {
            return None;
        }
        let mut out_len = 0;
        let mut ends_len = 0;
        loop {
            if self.fields.len() < out_len + 256 {
                self.fields.resize((self.fields.len() * 2).max(out_len + 1024), 0);
            }
            if self.ends.len() < ends_len + 8 {
                self.ends.resize((self.ends.len() * 2).max(ends_len + 64), 0);
            }
            let input = &chunk[*at..];
            let (result, nin, nout, nend) =
                reader.read_record(input, &mut self.fields[out_len..], &mut self.ends[ends_len..]);
            // csv-core counts `ends` from the start of the record, across calls.
            *at += nin;
            out_len += nout;
            ends_len += nend;
            match result {
                ReadRecordResult::InputEmpty if *at >= chunk.len() => {
                    // The chunk ended inside the last record (no line end): finish it.
                    // (Its field ends count from the record's start too.)
                    let (result, _, nout, nend) =
                        reader.read_record(&[], &mut self.fields[out_len..], &mut self.ends[ends_len..]);
                    out_len += nout;
                    ends_len += nend;
                    self.fields.truncate(out_len);
                    self.ends.truncate(ends_len);
                    let _ = result;
                    return Some(true);
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    self.fields.truncate(out_len);
                    self.ends.truncate(ends_len);
                    return Some(*at >= chunk.len());
                }
                ReadRecordResult::End => {
                    self.fields.truncate(out_len);
                    self.ends.truncate(ends_len);
                    return if ends_len == 0 { None } else { Some(true) };
                }
            }
        }
    }

    /// The current record (`fields` / `ends`) as a row message in `row`.
    fn record(&mut self) -> Result<(), RowError> {
        if self.ends.len() != self.headers.len() {
            return Err(RowError::new(
                "",
                format!("expected {} fields (as in the header), got {}", self.headers.len(), self.ends.len()),
            ));
        }
        for n in 0..self.ends.len() {
            if std::str::from_utf8(self.field(n)).is_err() {
                return Err(RowError::new("", format!("{}: not valid UTF-8", self.headers[n])));
            }
        }
        if let Some(e) = &self.header_error {
            return Err(e.clone());
        }
        self.row.clear();
        let root = self.descriptor.root();
        for (idx, field) in root.fields.iter().enumerate() {
            let cell = self.source[idx]
                .map_or("", |n| std::str::from_utf8(field_of(&self.fields, &self.ends, n)).unwrap_or(""));
            if cell.is_empty() {
                if field.mode == Mode::Required {
                    return Err(RowError::new(field.name.clone(), "REQUIRED column is missing or null"));
                }
                continue;
            }
            let s = Scalar::Str(cell);
            if field.mode == Mode::Repeated {
                return Err(RowError::new(
                    field.name.clone(),
                    format!("expected an array for a REPEATED column, got STRING ({})", preview(cell)),
                ));
            }
            if field.kind == WireKind::Message {
                return Err(RowError::new(
                    field.name.clone(),
                    format!("expected RECORD, got STRING ({})", preview(cell)),
                ));
            }
            if field.field_type == FieldType::Json {
                if serde_json::from_str::<serde::de::IgnoredAny>(cell).is_err() {
                    return Err(RowError::new(
                        field.name.clone(),
                        format!("expected JSON, got STRING ({}): not valid JSON text", preview(cell)),
                    ));
                }
                field.tag.put(&mut self.row);
                bqsink_transport::wire::put_varint(&mut self.row, cell.len() as u64);
                self.row.extend_from_slice(cell.as_bytes());
                continue;
            }
            match coerce_scalar(s, field.field_type, &mut self.bytes) {
                Ok(c) => {
                    field.tag.put(&mut self.row);
                    put_coerced_body(&c, &self.bytes, &mut self.row);
                }
                Err(e) => return Err(RowError::new(field.name.clone(), e.to_string())),
            }
        }
        Ok(())
    }

    fn field(&self, n: usize) -> &[u8] {
        field_of(&self.fields, &self.ends, n)
    }
}

/// Field `n` of a record read into `fields` / `ends` (a free function, so the record can be
/// read while the row being written is borrowed mutably).
fn field_of<'a>(fields: &'a [u8], ends: &[usize], n: usize) -> &'a [u8] {
    let start = if n == 0 { 0 } else { ends[n - 1] };
    &fields[start..ends[n]]
}

fn preview(cell: &str) -> String {
    Value::String(cell.to_owned()).preview()
}

/// A CSV reader whose records end at `\n` (with `\r\n`, the `\r` is dropped from the last field):
/// as the chunker and line numbers count lines, so a lone `\r` cannot start a second record on
/// the same line.
pub(crate) fn reader() -> Reader {
    ReaderBuilder::new().terminator(Terminator::Any(b'\n')).build()
}

/// Lines before a record's first byte that are blank (csv-core skips them).
fn skipped_blank_lines(raw: &[u8]) -> u64 {
    let mut n = 0;
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\n', rest) {
        if rest[..at].iter().all(|b| *b == b'\r') {
            n += 1;
            rest = &rest[at + 1..];
        } else {
            break;
        }
    }
    n
}

/// One whole record's fields (for the header).
fn split_record(record: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut reader = reader();
    let mut fields = vec![0u8; record.len() + 16];
    let mut ends = vec![0usize; record.len() + 2];
    let (_, _, nout, nend) = reader.read_record(record, &mut fields, &mut ends);
    let (_, _, nout2, nend2) = reader.read_record(&[], &mut fields[nout..], &mut ends[nend..]);
    fields.truncate(nout + nout2);
    ends.truncate(nend + nend2);
    (fields, ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{Field, Schema};
    use bqsink_transport::decode_row;

    fn transcoder(header: &str, unknown: UnknownFields) -> CsvTranscoder {
        let schema = Schema::new(vec![
            Field::new("id", FieldType::Int64).required(),
            Field::new("note", FieldType::String),
            Field::new("props", FieldType::Json),
            Field::new("at", FieldType::Timestamp),
        ]);
        CsvTranscoder::new(RowDescriptor::new(&schema).expect("schema"), header.as_bytes(), unknown)
    }

    fn run(t: &mut CsvTranscoder, body: &str) -> (Vec<String>, Vec<(u64, String, String)>) {
        let cut = Cut { max_rows: 2, max_bytes: 1 << 20 };
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        for b in t.chunk(body.as_bytes(), 2, cut) {
            let mut start = 0;
            for (end, pos) in b.ends.iter().zip(&b.positions) {
                // Skip the entry's key and length to reach the message.
                let entry = &b.rows[start..*end];
                let mut at = 1;
                while entry[at] & 0x80 != 0 {
                    at += 1;
                }
                let r = decode_row(&b.descriptor, &entry[at + 1..]).expect("decodes");
                rows.push(format!("{pos}:{}", r.to_json_string()));
                start = *end;
            }
            refused.extend(b.refused.into_iter().map(|r| (r.position, r.error.to_string(), r.raw)));
        }
        (rows, refused)
    }

    /// Found by fuzzing: a `\r\n` blank line under a one-column header was written as a row
    /// of NULL, counted as a blank line too, so the next record had its position.
    #[test]
    fn crlf_blank_lines_are_skipped_whatever_the_header() {
        let schema = bqsink_core::Schema::new(vec![bqsink_core::Field::new("s", FieldType::String)]);
        let d = RowDescriptor::new(&schema).expect("schema");
        let mut t = CsvTranscoder::new(d, b"s", UnknownFields::Reject);
        let (rows, refused) = run(&mut t, "\n\r\ny\n\r\n\n\rz\r");
        assert_eq!(rows, vec![r#"3:{"s":"y"}"#.to_owned(), r#"6:{"s":"\rz"}"#.to_owned()]);
        assert!(refused.is_empty(), "{refused:?}");
    }

    /// Found by fuzzing: a quoted field left open at the end of the input had its field ends
    /// counted twice, out of the record's bounds (a panic).
    #[test]
    fn a_quote_left_open_at_the_end_is_a_refusal_not_a_panic() {
        let mut t = transcoder("id,note", UnknownFields::Reject);
        // csv-core reads the rest of the input into the open field.
        let (rows, refused) = run(&mut t, "2,\"b, 1,,\n");
        assert_eq!(rows, vec![r#"1:{"id":2,"note":"b, 1,,\n"}"#.to_owned()]);
        assert!(refused.is_empty(), "{refused:?}");
        let (rows, _) = run(&mut t, "1,x\n2,\"b, 1\n");
        assert_eq!(rows, vec![r#"1:{"id":1,"note":"x"}"#.to_owned(), r#"2:{"id":2,"note":"b, 1\n"}"#.to_owned()]);
    }

    /// Found by fuzzing: a lone `\r` ended a record, so two records had the same line (the
    /// same position, which checkpoints count on).
    #[test]
    fn a_lone_carriage_return_does_not_end_a_record() {
        let mut t = transcoder("id,note", UnknownFields::Reject);
        let (rows, refused) = run(&mut t, "1,a\rb\r\n2,\"c\"\r\n3,d\re\r\n\r\n4,x\r");
        assert_eq!(
            rows,
            vec![
                r#"1:{"id":1,"note":"a\rb"}"#.to_owned(),
                r#"2:{"id":2,"note":"c"}"#.to_owned(),
                r#"3:{"id":3,"note":"d\re"}"#.to_owned(),
                r#"5:{"id":4,"note":"x"}"#.to_owned(),
            ]
        );
        assert!(refused.is_empty(), "{refused:?}");
    }

    #[test]
    fn records_in_schema_order_with_quotes_nulls_and_json_text() {
        let mut t = transcoder("note,ID,props,at", UnknownFields::Reject);
        let (rows, refused) = run(
            &mut t,
            "\"a, \"\"quoted\"\"\nline\",1,\"{\"\"k\"\":[1,2]}\",2024-01-01T00:00:00Z\n,2,,\r\n\nx,3,not json,\nx,oops,,\nx,4\n",
        );
        assert_eq!(
            rows,
            vec![
                r#"1:{"id":1,"note":"a, \"quoted\"\nline","props":{"k":[1,2]},"at":"2024-01-01T00:00:00Z"}"#.to_owned(),
                r#"3:{"id":2}"#.to_owned(),
            ]
        );
        assert_eq!(
            refused,
            vec![
                (
                    5,
                    "props: expected JSON, got STRING (\"not json\"): not valid JSON text".to_owned(),
                    "x,3,not json,".to_owned()
                ),
                (
                    6,
                    "id: expected INT64, got STRING (\"oops\"): not an integer in the INT64 range".to_owned(),
                    "x,oops,,".to_owned()
                ),
                (7, "expected 4 fields (as in the header), got 2".to_owned(), "x,4".to_owned()),
            ]
        );
    }

    #[test]
    fn long_fields_and_many_of_them() {
        let mut t = transcoder("id,note,props,at", UnknownFields::Reject);
        let long = "y".repeat(5000);
        let (rows, refused) = run(&mut t, &format!("7,{long},,\n8,\"{long}\",[],\n"));
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(rows[0], format!(r#"1:{{"id":7,"note":"{long}"}}"#));
        assert_eq!(rows[1], format!(r#"2:{{"id":8,"note":"{long}","props":[]}}"#));
        let mut t = transcoder(&format!("id{}", ",x".repeat(100)), UnknownFields::Ignore);
        let (rows, _) = run(&mut t, &format!("9{}\n", ",v".repeat(100)));
        assert_eq!(rows, vec![r#"1:{"id":9}"#.to_owned()]);
    }

    #[test]
    fn header_names_that_are_not_columns() {
        let mut t = transcoder("id,extra", UnknownFields::Reject);
        let (rows, refused) = run(&mut t, "1,x\n");
        assert!(rows.is_empty());
        assert_eq!(refused[0].1, "extra: no such column in the table");
        let mut t = transcoder("id,extra", UnknownFields::Ignore);
        assert_eq!(run(&mut t, "1,x\n").0, vec![r#"1:{"id":1}"#.to_owned()]);
        let mut t = transcoder("id,note", UnknownFields::Reject);
        assert_eq!(run(&mut t, ",x\n").1[0].1, "id: REQUIRED column is missing or null");
    }
}
