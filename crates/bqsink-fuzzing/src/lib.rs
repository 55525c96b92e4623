//! The bodies of bqsink's fuzz targets (`fuzz/fuzz_targets/*.rs` call these), kept as plain
//! functions so a stable test (`tests/replay.rs`) replays them over the committed corpus.
//!
//! Each function takes arbitrary bytes and asserts more than "no panic":
//!
//! - [`ndjson`], [`json_array`]: every line / element is either written as a row or refused with a
//!   reason, at its own position; a written row decodes with bqsink's decoder and encodes back to
//!   the same bytes; the transcoder agrees with the `Record` path (`Record::from_json_str` and
//!   the `RowEncoder`) on every row. A JSON array that `serde_json` reads whole is split into
//!   exactly its elements.
//! - [`csv`]: written rows decode and encode back to the same bytes; refusals have a reason;
//!   positions only grow.
//! - [`segment`]: Segment payloads plan the same tables and write the same rows, byte for byte,
//!   as the `Record` path (`rows_from_line`, schema inference, `RowEncoder`).
//! - [`schema_roundtrip`]: a schema file that parses prints and parses back to itself; its
//!   descriptor writes generated rows that decode and encode back to the same bytes, the same
//!   as the JSON transcoder writes them.
//! - [`chunking`]: NDJSON, CSV and JSON arrays cut into chunks (several chunk sizes and reads of
//!   any length, chosen from the input's first bytes) give the same rows and refusals, at the same
//!   positions, as the whole input.
//! - [`config`]: a TOML config either parses and validates, or fails with an error naming the
//!   property; a valid one prints and parses back to itself.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use bqsink_core::{DestinationConfig, Schema, Timestamp};
use bqsink_formats::{
    Batch, Chunker, CsvTranscoder, Cut, Format, JsonTranscoder, Piece, SegmentScan, SegmentScanner, SegmentTranscoder,
};
use bqsink_schema::segment::table_schema;
use bqsink_schema::{rows_from_line, InferMode, SchemaInference, SegmentOptions};
use bqsink_transport::{RowDescriptor, RowEncoder, UnknownFields};
use bytes::BytesMut;

use support::{decodes_and_reencodes, descriptor, has_json, messages, same_as_record, unknown, via_record, Rng};

/// Request cuts from one byte: a few rows, sometimes a few bytes, per batch.
fn cut(byte: u8) -> Cut {
    Cut { max_rows: 1 + usize::from(byte % 8), max_bytes: if byte & 0x80 == 0 { 1 << 20 } else { 64 } }
}

/// Rows and refusals of a run, in input order: `(position, row message)` and `(position, raw)`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    rows: Vec<(u64, Vec<u8>)>,
    refused: Vec<(u64, String)>,
    error: Option<String>,
}

impl Outcome {
    fn add(&mut self, batches: Vec<Batch>, cut: Cut) {
        for b in batches {
            assert!(b.len() <= cut.max_rows, "a batch holds at most max_rows rows");
            assert!(b.len() <= 1 || b.rows.len() <= cut.max_bytes, "a batch of several rows stays under max_bytes");
            let mut all: Vec<u64> = b.positions.clone();
            all.extend(b.refused.iter().map(|r| r.position));
            all.sort_unstable();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "positions are unique within a batch");
            self.rows.extend(messages(&b));
            for r in b.refused {
                assert!(!r.error.message.is_empty(), "a refusal says why: {r:?}");
                self.refused.push((r.position, r.raw));
            }
        }
        self.rows.sort_by_key(|r| r.0);
        self.refused.sort_by_key(|r| r.0);
    }
}

/// Checks the rows of one NDJSON chunk against its lines: each non-blank line is a row or a
/// refusal at its position, rows decode and encode back, and the `Record` path agrees.
fn check_ndjson_chunk(
    d: &RowDescriptor,
    json_columns: bool,
    unknown: UnknownFields,
    chunk: &[u8],
    first_line: u64,
    out: &Outcome,
) {
    let rows: HashMap<u64, &Vec<u8>> = out.rows.iter().map(|(p, m)| (*p, m)).collect();
    let refused: HashMap<u64, &String> = out.refused.iter().map(|(p, r)| (*p, r)).collect();
    assert_eq!(rows.len(), out.rows.len(), "one row per position");
    assert_eq!(refused.len(), out.refused.len(), "one refusal per position");
    let mut enc = RowEncoder::new(d.clone()).with_unknown_fields(unknown);
    let mut expected = 0;
    let mut lines: Vec<&[u8]> = chunk.split(|b| *b == b'\n').collect();
    if chunk.ends_with(b"\n") {
        lines.pop();
    }
    for (n, line) in lines.into_iter().enumerate() {
        let pos = first_line - 1 + n as u64;
        let Ok(text) = std::str::from_utf8(line) else {
            assert!(refused.contains_key(&pos), "a line that is not UTF-8 is refused: {line:?}");
            expected += 1;
            continue;
        };
        let text = text.trim().trim_start_matches('\u{feff}');
        if text.is_empty() {
            assert!(!rows.contains_key(&pos) && !refused.contains_key(&pos), "a blank line is skipped");
            continue;
        }
        expected += 1;
        let fast = match (rows.get(&pos), refused.get(&pos)) {
            (Some(msg), None) => {
                decodes_and_reencodes(d, msg);
                Ok(msg.to_vec())
            }
            (None, Some(raw)) => {
                assert_eq!(raw.as_str(), text, "a refusal keeps the line's text");
                Err(String::new())
            }
            other => panic!("line {} is either written or refused, once: {other:?}: {text:?}", pos + 1),
        };
        same_as_record(d, json_columns, text, &fast, &via_record(&mut enc, text));
    }
    assert_eq!(expected, out.rows.len() + out.refused.len(), "every non-blank line is accounted for");
}

/// NDJSON transcoder: one chunk of lines into a fixed schema chosen by the first byte.
pub fn ndjson(data: &[u8]) {
    let Some((&head, input)) = data.split_first() else { return };
    let schema = support::schema(head);
    let d = descriptor(&schema);
    let unknown = unknown(head >> 2);
    let cut = cut(head >> 1);
    let mut t = JsonTranscoder::new(d.clone()).with_unknown_fields(unknown);
    let mut out = Outcome::default();
    out.add(t.ndjson_chunk(input, 1, cut), cut);
    check_ndjson_chunk(&d, has_json(&schema.fields), unknown, input, 1, &out);
}

/// JSON arrays: the chunker splits the array into elements, the NDJSON transcoder writes them.
pub fn json_array(data: &[u8]) {
    let Some((&head, input)) = data.split_first() else { return };
    let schema = support::schema(head);
    let d = descriptor(&schema);
    let unknown = unknown(head >> 2);
    let cut = cut(head >> 1);
    let chunk_bytes = 64 + usize::from(head) * 8;
    let mut t = JsonTranscoder::new(d.clone()).with_unknown_fields(unknown);
    let mut chunker = Chunker::new(input, Format::JsonArray, chunk_bytes);
    let mut elements: Vec<Vec<u8>> = Vec::new();
    let mut failed = None;
    for _ in 0..=input.len() + 1 {
        match chunker.next_chunk() {
            Ok(Some(chunk)) => {
                assert_eq!(chunk.first_line, elements.len() as u64 + 1, "chunks number elements in order");
                assert!(chunk.data.ends_with(b"\n"), "a chunk holds whole elements");
                let mut out = Outcome::default();
                out.add(t.ndjson_chunk(&chunk.data, chunk.first_line, cut), cut);
                check_ndjson_chunk(&d, has_json(&schema.fields), unknown, &chunk.data, chunk.first_line, &out);
                let n = chunk.data.iter().filter(|b| **b == b'\n').count();
                assert_eq!(out.rows.len() + out.refused.len(), n, "every element is a row or a refusal");
                elements.extend(chunk.data.split(|b| *b == b'\n').take(n).map(<[u8]>::to_vec));
            }
            Ok(None) => break,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                failed = Some(e);
                break;
            }
        }
    }
    if let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(input) {
        assert!(failed.is_none(), "a valid array is read without error: {failed:?}");
        assert_eq!(values.len(), elements.len(), "a valid array is split into its elements");
        for (v, e) in values.iter().zip(&elements) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(e);
            assert!(parsed.as_ref().is_ok_and(|p| p == v), "element {:?} is {v}", String::from_utf8_lossy(e));
        }
    }
}

/// CSV transcoder: the header record, then the records, into a fixed schema.
pub fn csv(data: &[u8]) {
    let Some((&head, input)) = data.split_first() else { return };
    let schema = support::schema(head);
    let d = descriptor(&schema);
    let unknown = unknown(head >> 2);
    let cut = cut(head >> 1);
    let mut chunker = Chunker::new(input, Format::Csv, 1 << 20);
    let header = chunker.csv_header().unwrap().unwrap_or_default();
    let mut t = CsvTranscoder::new(d.clone(), &header, unknown);
    let mut out = Outcome::default();
    while let Some(chunk) = chunker.next_chunk().unwrap() {
        out.add(t.chunk(&chunk.data, chunk.first_line, cut), cut);
    }
    for (_, msg) in &out.rows {
        decodes_and_reencodes(&d, msg);
    }
    let mut all: Vec<u64> = out.rows.iter().map(|r| r.0).chain(out.refused.iter().map(|r| r.0)).collect();
    all.sort_unstable();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "one row or refusal per record");
    let lines = input.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    assert!(all.last().is_none_or(|p| *p < lines), "positions are lines of the input");
}

fn now() -> Timestamp {
    Timestamp::parse("2024-06-01T12:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH)
}

fn finish(table: &str, inference: SchemaInference) -> (Schema, usize) {
    let inferred = inference.finish();
    let mut schema = table_schema(table);
    for f in inferred.schema.fields {
        if schema.field(&f.name).is_none() {
            schema.fields.push(f);
        }
    }
    (schema, inferred.records)
}

/// Segment payloads (one per line, batches included): the scanner plans the tables and the
/// transcoder writes the rows exactly as the `Record` path does; the lines it hands back are the
/// `Record` path's.
pub fn segment(data: &[u8]) {
    let Some((&head, input)) = data.split_first() else { return };
    let step = 1 + usize::from(head % 16);
    let opts = SegmentOptions::default().with_event_tables(head & 0x10 == 0).with_users_table(head & 0x20 == 0);
    let cut = cut(head >> 6 | 0x04);
    let text = String::from_utf8_lossy(input);
    let lines: Vec<&str> = text.split('\n').collect();

    // Planned the `Record` way.
    let mut per_table: BTreeMap<String, SchemaInference> = BTreeMap::new();
    let mut expected_rows = 0;
    for (i, l) in lines.iter().enumerate() {
        let rows = rows_from_line(l, i as u64 + 1, now(), &opts);
        if !l.trim().is_empty() {
            expected_rows += rows.as_ref().map_or(1, |r| r.len() as u64);
        }
        for row in rows.unwrap_or_default() {
            per_table
                .entry(row.table.clone())
                .or_insert_with(|| SchemaInference::new(InferMode::Segment))
                .observe_normalized(&row.record);
        }
    }
    let by_records: BTreeMap<String, (Schema, usize)> =
        per_table.into_iter().map(|(t, inf)| (t.clone(), finish(&t, inf))).collect();

    // Planned by the scanner, `step` lines at a time.
    let mut scanner = SegmentScanner::new(opts.clone());
    let mut scan = SegmentScan::default();
    for (n, part) in lines.chunks(step).enumerate() {
        let text = part.join("\n") + "\n";
        scan.merge(scanner.chunk(text.as_bytes(), (n * step) as u64 + 1, now()));
    }
    assert_eq!(scan.rows, expected_rows, "the scanner counts the rows the Record path makes");
    let by_scan: BTreeMap<String, (Schema, usize)> =
        scan.tables.into_iter().map(|(t, s)| (t.clone(), finish(&t, s.inference()))).collect();
    assert_eq!(by_scan, by_records, "the scanner plans the tables the Record path plans");

    // Written by the transcoder, against the `Record` path.
    let plans: HashMap<String, RowDescriptor> =
        by_records.iter().filter_map(|(t, (s, _))| RowDescriptor::new(s).ok().map(|d| (t.clone(), d))).collect();
    let mut transcoder = SegmentTranscoder::new(plans.clone(), opts.clone());
    let mut fast: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let mut handed_back = std::collections::HashSet::new();
    for (n, part) in lines.chunks(step).enumerate() {
        let text = part.join("\n") + "\n";
        for piece in transcoder.chunk(text.as_bytes(), (n * step) as u64 + 1, now(), cut) {
            match piece {
                Piece::Rows { table, batch } => {
                    assert!(batch.len() <= cut.max_rows);
                    assert!(batch.refused.is_empty(), "the transcoder hands lines back rather than refuse them");
                    for (_, msg) in messages(&batch) {
                        decodes_and_reencodes(&batch.descriptor, &msg);
                    }
                    fast.entry(table.to_string()).or_default().extend(messages(&batch));
                }
                Piece::Line { number, .. } => {
                    assert!(handed_back.insert(number), "a line is handed back once");
                }
            }
        }
    }
    let mut expected: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let mut encoders: HashMap<String, RowEncoder> = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let number = i as u64 + 1;
        if l.trim().is_empty() || handed_back.contains(&number) {
            continue;
        }
        let rows = match rows_from_line(l, number, now(), &opts) {
            Ok(rows) => rows,
            Err(e) => panic!("line {number} went the fast way but the Record path refuses it: {e}: {l:?}"),
        };
        for row in rows {
            let Some(d) = plans.get(&row.table) else { panic!("no plan for {}", row.table) };
            let enc = encoders.entry(row.table.clone()).or_insert_with(|| RowEncoder::new(d.clone()));
            let mut buf = BytesMut::new();
            if let Err(e) = enc.encode(&row.record, &mut buf) {
                panic!("line {number} went the fast way but does not encode the Record way: {e}: {l:?}");
            }
            expected.entry(row.table).or_default().push((number - 1, buf.to_vec()));
        }
    }
    for rows in fast.values_mut() {
        rows.sort_by_key(|r| r.0);
    }
    assert_eq!(fast, expected, "the transcoder writes the rows the Record path writes");
}

/// A JSON value of `ty` as text, from the kinds of values the transcoders meet (some wrong).
fn scalar_text(r: &mut Rng, ty: bqsink_core::FieldType, words: &[String]) -> String {
    use bqsink_core::FieldType;
    let good: &[&str] = match ty {
        FieldType::Int64 => &["0", "-7", "42", "9223372036854775807", "-9223372036854775808", "\"12\"", "3.0"],
        FieldType::Float64 => &["1.5", "-0.0", "1e300", "2", "\"NaN\"", "\"3.25\"", "0.1"],
        FieldType::Numeric | FieldType::BigNumeric => {
            &["\"123.456\"", "1.25", "7", "\"1e3\"", "18446744073709551615", "\"0.0000000001\""]
        }
        FieldType::Bool => &["true", "false", "\"T\"", "0", "1", "\"no\""],
        FieldType::Timestamp => {
            &["\"2024-05-01T12:00:00Z\"", "\"2024-05-01 12:00:00.123456+02:00\"", "1714564800", "1.5"]
        }
        FieldType::Date => &["\"2024-02-29\"", "\"2023-02-29\"", "\"0001-01-01\""],
        FieldType::Time => &["\"12:34:56.789\"", "\"25:00:00\"", "\"7:05\""],
        FieldType::DateTime => &["\"2024-05-01T12:00:00\"", "\"2024-05-01 01:02:03.5\"", "\"2024-05-01\""],
        FieldType::Bytes => &["\"aGVsbG8=\"", "\"aGk\"", "\"!!\""],
        FieldType::Geography => &["\"POINT(1 2)\"", "\" \""],
        FieldType::Json => &["{\"k\":[1,2.50,{\"z\":null}]}", "\"s\"", "12", "[true]", "1.0", "{ }"],
        _ => &["\"text\"", "\"caf\\u00e9 \\ud83d\\ude00\"", "\"tab\\tquote\\\"\"", "5", "2.5", "true", "\"\""],
    };
    if !words.is_empty() && r.chance(25) {
        // A word of the input, as a string.
        return serde_json::Value::String(r.pick(words).clone()).to_string();
    }
    let wrong: &[&str] = &["\"oops\"", "{\"q\":1}", "[1,2]", "-1.5e3", "true", "\"\"", "99999999999999999999999"];
    if r.chance(85) { r.pick(good) } else { r.pick(wrong) }.to_string()
}

fn value_text(r: &mut Rng, f: &bqsink_core::Field, words: &[String]) -> String {
    use bqsink_core::{FieldType, Mode};
    if r.chance(8) {
        return "null".into();
    }
    let one = |r: &mut Rng| -> String {
        if f.field_type == FieldType::Record {
            object_text(r, &f.fields, words)
        } else {
            scalar_text(r, f.field_type, words)
        }
    };
    if f.mode == Mode::Repeated && r.chance(90) {
        let n = r.below(3);
        let items: Vec<String> = (0..n).map(|_| one(r)).collect();
        format!("[{}]", items.join(","))
    } else {
        one(r)
    }
}

fn object_text(r: &mut Rng, fields: &[bqsink_core::Field], words: &[String]) -> String {
    let mut members: Vec<String> = Vec::new();
    for f in fields {
        if r.chance(15) {
            continue;
        }
        let key = serde_json::Value::String(f.name.clone()).to_string();
        members.push(format!("{key}:{}", value_text(r, f, words)));
    }
    format!("{{{}}}", members.join(","))
}

/// BigQuery JSON schema files: what parses prints and parses back to itself; its descriptor
/// writes generated rows that decode and encode back to the same bytes, as the transcoder does.
pub fn schema_roundtrip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = match Schema::from_json(text) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    for printed in [serde_json::to_string(&schema), serde_json::to_string(&schema.fields)] {
        let printed = printed.unwrap();
        let back = Schema::from_json(&printed);
        assert!(back.as_ref().is_ok_and(|b| *b == schema), "{printed} reads back as {back:?}, not {schema:?}");
    }
    let d = match RowDescriptor::new(&schema) {
        Ok(d) => d,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let back = d.schema();
    assert_eq!(*back, schema, "the descriptor gives back the schema it was built from");
    let words: Vec<String> = text.split('"').filter(|w| w.len() < 40).map(str::to_owned).take(64).collect();
    let mut r = Rng::from_bytes(data);
    let mut enc = RowEncoder::new(d.clone());
    let mut t = JsonTranscoder::new(d.clone());
    let json_columns = has_json(&schema.fields);
    for _ in 0..4 {
        let line = object_text(&mut r, &schema.fields, &words);
        let record = via_record(&mut enc, &line);
        if let Ok(bytes) = &record {
            decodes_and_reencodes(&d, bytes);
        }
        let mut out = Vec::new();
        let fast = t.transcode(&line, &mut out).map(|()| out).map_err(|e| e.message);
        same_as_record(&d, json_columns, &line, &fast, &record);
    }
}

/// Reads at most the next of a cycle of lengths at a time: a short read makes the chunker hand
/// on what it has, so chunks end anywhere a read does.
struct Trickle<'a> {
    data: &'a [u8],
    lengths: [usize; 4],
    i: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.lengths[self.i % 4].min(buf.len()).min(self.data.len());
        self.i += 1;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn chunked<R: Read>(
    reader: R,
    format: Format,
    chunk_bytes: usize,
    d: &RowDescriptor,
    unknown: UnknownFields,
    cut: Cut,
    limit: usize,
) -> Outcome {
    let mut chunker = Chunker::new(reader, format, chunk_bytes);
    let mut out = Outcome::default();
    let mut json = JsonTranscoder::new(d.clone()).with_unknown_fields(unknown);
    let mut csv = None;
    if format == Format::Csv {
        let header = chunker.csv_header().unwrap().unwrap_or_default();
        csv = Some(CsvTranscoder::new(d.clone(), &header, unknown));
    }
    let mut next_line = 1;
    for _ in 0..=limit {
        match chunker.next_chunk() {
            Ok(Some(chunk)) => {
                assert!(!chunk.data.is_empty(), "a chunk holds something");
                assert!(chunk.first_line >= next_line, "chunks come in order");
                next_line = chunk.first_line + 1;
                let batches = match &mut csv {
                    Some(t) => t.chunk(&chunk.data, chunk.first_line, cut),
                    None => json.ndjson_chunk(&chunk.data, chunk.first_line, cut),
                };
                out.add(batches, cut);
            }
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    }
    panic!("the chunker makes progress: more than {limit} chunks");
}

/// Chunk splitting: the same bytes cut into chunks anywhere give the same rows and refusals, at
/// the same positions, as one chunk. The first bytes pick the format, the schema, the chunk
/// sizes and the read lengths.
pub fn chunking(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (head, input) = data.split_at(4);
    let format = [Format::Ndjson, Format::Csv, Format::JsonArray][usize::from(head[0] % 3)];
    let schema = support::schema(head[0] / 3);
    let d = descriptor(&schema);
    let unknown = unknown(head[0] >> 6);
    let cut = cut(head[1]);
    let limit = input.len() + 2;
    // One chunk: the chunk size is over the input's length (and not much over: it is allocated).
    let whole = chunked(input, format, 2 * input.len() + 64, &d, unknown, cut, limit);
    let sizes = [64, 64 + usize::from(head[1]), 64 + usize::from(head[2]) * 16];
    let lengths = [
        1 + usize::from(head[3] & 0x0F),
        1 + usize::from(head[3] >> 4) * 7,
        1 + usize::from(head[2] % 5),
        1 + usize::from(head[1]) * 3,
    ];
    for size in sizes {
        let got = chunked(input, format, size, &d, unknown, cut, limit);
        assert_eq!(got, whole, "chunks of {size} bytes");
        let got = chunked(Trickle { data: input, lengths, i: 0 }, format, size, &d, unknown, cut, limit);
        assert_eq!(got, whole, "chunks of {size} bytes read {lengths:?} at a time");
    }
}

/// The TOML config, read as `bqsink --config` reads it: a table whose keys are
/// [`DestinationConfig`]'s properties, merged over the defaults, then validated. It either
/// validates, or fails naming the property; a valid config prints and reads back to itself.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(config) = config_from_toml(text) else { return };
    match config.validate() {
        Ok(()) => {
            let json = serde_json::to_value(&config).unwrap();
            let back: DestinationConfig = serde_json::from_value(json).unwrap();
            assert_eq!(back, config, "a valid config reads back from its JSON");
            if let Ok(printed) = toml::to_string(&config) {
                let back = config_from_toml(&printed);
                assert_eq!(back.as_ref(), Some(&config), "a valid config reads back from its TOML:\n{printed}");
            }
        }
        Err(e) => {
            assert!(property_names().contains(&e.key.to_owned()), "the error names a property: {e}");
            assert!(!e.message.is_empty());
        }
    }
}

fn property_names() -> Vec<String> {
    match serde_json::to_value(DestinationConfig::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        other => panic!("the defaults are an object: {other:?}"),
    }
}

fn config_from_toml(text: &str) -> Option<DestinationConfig> {
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            // `toml` gives some errors an empty `message()` (a lone `\r`); its `Display` and span
            // still say what and where.
            assert!(!e.to_string().trim().is_empty() && e.span().is_some(), "a TOML error says what and where");
            return None;
        }
    };
    let Ok(serde_json::Value::Object(mut merged)) = serde_json::to_value(DestinationConfig::default()) else {
        panic!("the defaults are an object")
    };
    for (key, value) in table {
        if !merged.contains_key(&key) {
            return None;
        }
        merged.insert(key, serde_json::to_value(&value).ok()?);
    }
    match serde_json::from_value::<DestinationConfig>(serde_json::Value::Object(merged)) {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            None
        }
    }
}
