//! Segment payloads through the `Record` path (`rows_from_line`, schema inference, `RowEncoder`)
//! and through the scanner and transcoder: the same planned tables, and for every line the
//! transcoder writes, the same rows byte for byte in the same tables and order. Lines it hands
//! back are the `Record` path's to write.

use std::collections::{BTreeMap, HashMap};

use bqsink_core::{Schema, Timestamp};
use bqsink_formats::{Cut, Piece, SegmentScan, SegmentScanner, SegmentTranscoder};
use bqsink_schema::segment::table_schema;
use bqsink_schema::{rows_from_line, InferMode, SchemaInference, SegmentOptions};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;
use proptest::prelude::*;

mod common;
use common::Rng;

fn now() -> Timestamp {
    Timestamp::parse("2024-06-01T12:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH)
}

const KEYS: &[&str] =
    &["price", "Total Price", "orderId", "order_id", "inStock", "tags", "Name", "plan", "x", "y", "nested", "URL", "é"];

fn value(r: &mut Rng, depth: u32) -> String {
    match r.below(if depth > 2 { 9 } else { 11 }) {
        0 => "null".into(),
        1 => "true".into(),
        2 => "false".into(),
        3 => format!("{}", r.below(1000)),
        4 => format!("{}.5", r.below(100)),
        5 => "\"2024-06-0{}T10:00:00Z\"".replace("{}", &(1 + r.below(9)).to_string()),
        6 => r.pick(&["\"plain\"", "\"with \\\"quote\\\"\"", "\"\\u00e9t\\u00e9\"", "\"\"", "\"12\""]).to_string(),
        7 => r.pick(&["[]", "[1,2]", "[\"a\", null]", "[{\"k\":1}]"]).to_string(),
        8 => r.pick(&["18446744073709551615", "-3", "1e3", "0"]).to_string(),
        _ => object(r, depth + 1),
    }
}

fn object(r: &mut Rng, depth: u32) -> String {
    let n = r.below(5);
    let members: Vec<String> = (0..n).map(|_| format!("\"{}\":{}", r.pick(KEYS), value(r, depth))).collect();
    format!("{{{}}}", members.join(","))
}

fn message(r: &mut Rng) -> String {
    let call = *r.pick(&["track", "track", "track", "identify", "page", "screen", "group", "alias", "Track", "bogus"]);
    let mut m: Vec<String> = vec![format!("\"type\":\"{call}\"")];
    if r.chance(90) {
        m.push(format!("\"messageId\":\"m-{}\"", r.below(1_000_000)));
    }
    if r.chance(70) {
        m.push(format!("\"userId\":{}", r.pick(&["\"u-1\"", "42", "\"\"", "null", "\"2024-06-01T10:00:00Z\""])));
    }
    if r.chance(50) {
        m.push("\"anonymousId\":\"a-1\"".into());
    }
    if r.chance(60) {
        m.push(format!("\"event\":{}", r.pick(&["\"Order Completed\"", "\"Pages\"", "\"Signed Up\"", "\" \"", "3"])));
    }
    for (k, p) in [("timestamp", 60), ("sentAt", 50), ("receivedAt", 40), ("originalTimestamp", 10)] {
        if r.chance(p) {
            m.push(format!("\"{k}\":\"2024-06-01T11:{:02}:00Z\"", r.below(60)));
        }
    }
    if r.chance(70) {
        m.push(format!("\"context\":{}", object(r, 1)));
    }
    for k in ["properties", "traits"] {
        if r.chance(70) {
            m.push(format!("\"{k}\":{}", object(r, 0)));
        }
    }
    for k in ["name", "category", "groupId", "previousId"] {
        if r.chance(30) {
            m.push(format!("\"{k}\":\"{k}-v\""));
        }
    }
    if r.chance(5) {
        m.push("\"type\":\"page\"".into());
    }
    // Key order varies.
    let n = m.len();
    for i in 0..n {
        let j = r.below(n as u64) as usize;
        m.swap(i, j);
    }
    format!("{{{}}}", m.join(", "))
}

fn line(r: &mut Rng) -> String {
    if r.chance(15) {
        let items: Vec<String> = (0..1 + r.below(4)).map(|_| message(r)).collect();
        let ctx = if r.chance(50) { ",\"context\":{\"library\":{\"name\":\"env\"}}" } else { "" };
        return format!("{{\"batch\":[{}],\"sentAt\":\"2024-06-01T11:59:00Z\"{ctx}}}", items.join(","));
    }
    if r.chance(2) {
        return "not json".into();
    }
    message(r)
}

/// Each table's schema planned the `Record` way: base columns, then what the rows infer.
fn planned_by_records(lines: &[String], opts: &SegmentOptions) -> BTreeMap<String, (Schema, usize)> {
    let mut per_table: BTreeMap<String, SchemaInference> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let Ok(rows) = rows_from_line(l, i as u64 + 1, now(), opts) {
            for row in rows {
                per_table
                    .entry(row.table.clone())
                    .or_insert_with(|| SchemaInference::new(InferMode::Segment))
                    .observe_normalized(&row.record);
            }
        }
    }
    per_table.into_iter().map(|(t, inf)| (t.clone(), finish(&t, inf))).collect()
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

/// The same planned by scanning chunks of `step` lines.
fn planned_by_scan(lines: &[String], opts: &SegmentOptions, step: usize) -> (BTreeMap<String, (Schema, usize)>, u64) {
    let mut scanner = SegmentScanner::new(opts.clone());
    let mut scan = SegmentScan::default();
    for (n, part) in lines.chunks(step.max(1)).enumerate() {
        let text = part.join("\n") + "\n";
        scan.merge(scanner.chunk(text.as_bytes(), (n * step) as u64 + 1, now()));
    }
    let rows = scan.rows;
    (scan.tables.into_iter().map(|(t, s)| (t.clone(), finish(&t, s.inference()))).collect(), rows)
}

/// Row messages (without the entry's framing) of a batch.
fn messages(rows: &[u8], ends: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in ends {
        let entry = &rows[start..end];
        // 0x0A, then the length as a varint.
        let mut i = 1;
        while entry[i] & 0x80 != 0 {
            i += 1;
        }
        out.push(entry[i + 1..].to_vec());
        start = end;
    }
    out
}

fn check(lines: &[String], opts: &SegmentOptions, step: usize) -> Result<usize, TestCaseError> {
    let by_records = planned_by_records(lines, opts);
    let (by_scan, scanned_rows) = planned_by_scan(lines, opts, step);
    prop_assert_eq!(&by_scan, &by_records);
    let expected_rows: u64 = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| rows_from_line(l, i as u64 + 1, now(), opts).map_or(1, |r| r.len() as u64))
        .sum();
    prop_assert_eq!(scanned_rows, expected_rows);

    let plans: HashMap<String, RowDescriptor> =
        by_records.iter().filter_map(|(t, (s, _))| RowDescriptor::new(s).ok().map(|d| (t.clone(), d))).collect();
    let mut transcoder = SegmentTranscoder::new(plans.clone(), opts.clone());
    let cut = Cut { max_rows: 7, max_bytes: 1 << 20 };
    let mut fast: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let mut handed_back = Vec::new();
    for (n, part) in lines.chunks(step.max(1)).enumerate() {
        let text = part.join("\n") + "\n";
        for piece in transcoder.chunk(text.as_bytes(), (n * step) as u64 + 1, now(), cut) {
            match piece {
                Piece::Rows { table, batch } => {
                    prop_assert!(batch.len() <= cut.max_rows);
                    let msgs = messages(&batch.rows, &batch.ends);
                    let entry = fast.entry(table.to_string()).or_default();
                    entry.extend(batch.positions.iter().copied().zip(msgs));
                }
                Piece::Line { number, .. } => handed_back.push(number),
            }
        }
    }
    let mut expected: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let mut encoders: HashMap<String, RowEncoder> = HashMap::new();
    let mut fast_lines = 0;
    for (i, l) in lines.iter().enumerate() {
        let number = i as u64 + 1;
        if l.trim().is_empty() || handed_back.contains(&number) {
            continue;
        }
        fast_lines += 1;
        let rows = rows_from_line(l, number, now(), opts);
        prop_assert!(rows.is_ok(), "line {} went fast but is refused: {}", number, l);
        for row in rows.unwrap_or_default() {
            let enc = match encoders.get_mut(&row.table) {
                Some(e) => e,
                None => {
                    let d = plans.get(&row.table).cloned();
                    prop_assert!(d.is_some(), "no plan for {}", row.table);
                    encoders
                        .entry(row.table.clone())
                        .or_insert_with(|| RowEncoder::new(d.unwrap_or_else(|| unreachable!())))
                }
            };
            let mut buf = BytesMut::new();
            let encoded = enc.encode(&row.record, &mut buf);
            prop_assert!(encoded.is_ok(), "line {} went fast but does not encode: {:?}: {}", number, encoded, l);
            expected.entry(row.table).or_default().push((number - 1, buf.to_vec()));
        }
    }
    prop_assert_eq!(fast, expected);
    Ok(fast_lines)
}

#[test]
fn the_sample_file_plans_and_writes_as_the_record_path_does() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/segment/sample.ndjson"))
            .expect("the sample");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for step in [1, 5, 100] {
        let fast = check(&lines, &SegmentOptions::default(), step).unwrap_or_else(|e| panic!("{e}"));
        assert!(fast * 2 > lines.len(), "most of the sample goes the fast way: {fast} of {}", lines.len());
    }
}

/// Track events whose context always has the same keys, as one source sends them: their event
/// tables extend `tracks`, and their rows start with the `tracks` row's bytes.
fn uniform_track(r: &mut Rng) -> String {
    let event = r.pick(&["Order Completed", "Signed Up", "Song Played"]);
    format!(
        r#"{{"type":"track","event":"{event}","messageId":"m-{}","userId":"u-{}","timestamp":"2024-06-01T11:{:02}:00Z","context":{{"ip":"10.0.0.{}","library":{{"name":"lib","version":"{}"}}}},"properties":{}}}"#,
        r.below(1_000_000),
        r.below(50),
        r.below(60),
        r.below(250),
        r.below(9),
        object(r, 0),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn event_rows_that_start_with_the_tracks_row_are_written_as_the_record_path_does(seed in 1u64.., step in 1usize..40) {
        let mut r = Rng(seed);
        let lines: Vec<String> = (0..80).map(|_| uniform_track(&mut r)).collect();
        let fast = check(&lines, &SegmentOptions::default(), step)?;
        prop_assert!(fast > 10, "the fast path is exercised: {} lines", fast);
    }

    #[test]
    fn random_payloads_plan_and_write_as_the_record_path_does(seed in 1u64.., step in 1usize..40, events in any::<bool>()) {
        let mut r = Rng(seed);
        let lines: Vec<String> = (0..120).map(|_| line(&mut r)).collect();
        let opts = SegmentOptions::default().with_event_tables(events);
        let fast = check(&lines, &opts, step)?;
        prop_assert!(fast > 10, "the fast path is exercised: {} lines", fast);
    }
}
