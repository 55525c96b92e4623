//! Steady state allocates nothing per row: transcoding a chunk of NDJSON or CSV, or encoding
//! `Serialize` rows, makes a few allocations per request (its buffers), none per row, whatever
//! the number of rows.

use std::alloc::System;

use bqsink_core::{Field, FieldType, Schema};
use bqsink_formats::{CsvTranscoder, Cut, JsonTranscoder, TypedEncoder};
use bqsink_transport::{RowDescriptor, UnknownFields};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROWS: usize = 20_000;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("score", FieldType::Float64),
        Field::new("ok", FieldType::Bool),
        Field::new("event", FieldType::String),
        Field::new("at", FieldType::Timestamp),
        Field::new("day", FieldType::Date),
        Field::new("amount", FieldType::Numeric),
        Field::new("props", FieldType::Json),
        Field::new("tags", FieldType::String).repeated(),
    ])
}

#[test]
fn ndjson_csv_and_serialize_allocate_per_request_not_per_row() {
    let d = RowDescriptor::new(&schema()).expect("schema");
    let cut = Cut { max_rows: 1_000, max_bytes: 9_500_000 };
    let mut ndjson = String::new();
    let mut csv = String::new();
    for i in 0..ROWS {
        ndjson.push_str(&format!(
            "{{\"id\":{i},\"score\":{}.5,\"ok\":true,\"event\":\"caf\\u00e9 {i}\",\"at\":\"2023-11-14T22:13:20.{:06}Z\",\"day\":\"2023-12-09\",\"amount\":\"1234.56\",\"props\":{{\"plan\":\"pro\",\"n\":[1,2]}},\"tags\":[\"a\",\"b\"]}}\n",
            i % 100,
            i % 1_000_000
        ));
        csv.push_str(&format!(
            "{i},{}.5,true,\"ev, {i}\",2023-11-14T22:13:20Z,2023-12-09,1234.56,\"{{\"\"plan\"\":1}}\"\n",
            i % 100
        ));
    }
    let mut json = JsonTranscoder::new(d.clone());
    let mut table = CsvTranscoder::new(d, b"id,score,ok,event,at,day,amount,props", UnknownFields::Reject);
    // Warm up: the transcoders' own buffers reach their working size.
    json.ndjson_chunk(ndjson.as_bytes(), 1, cut);
    table.chunk(csv.as_bytes(), 2, cut);

    let region = Region::new(GLOBAL);
    let batches = json.ndjson_chunk(ndjson.as_bytes(), 1, cut);
    let allocations = region.change().allocations + region.change().reallocations;
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), ROWS);
    assert!(allocations < ROWS / 50, "NDJSON: {allocations} allocations for {ROWS} rows");
    drop(batches);

    let region = Region::new(GLOBAL);
    let batches = table.chunk(csv.as_bytes(), 2, cut);
    let allocations = region.change().allocations + region.change().reallocations;
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), ROWS, "{:?}", batches[0].refused.first());
    assert!(allocations < ROWS / 50, "CSV: {allocations} allocations for {ROWS} rows");
    drop(batches);

    serialize_rows_allocate_per_request_not_per_row();
}

#[derive(serde::Serialize)]
struct Props<'a> {
    plan: &'a str,
    n: [u8; 2],
}

#[derive(serde::Serialize)]
struct Row<'a> {
    id: u64,
    score: f64,
    ok: bool,
    event: &'a str,
    at: &'a str,
    day: &'a str,
    amount: &'a str,
    props: Props<'a>,
    tags: [&'a str; 2],
}

/// Called from the test above: the allocation counter is global, so the counts are taken one
/// after the other, never while another test runs.
fn serialize_rows_allocate_per_request_not_per_row() {
    let d = RowDescriptor::new(&schema()).expect("schema");
    let cut = Cut { max_rows: 1_000, max_bytes: 9_500_000 };
    let mut enc = TypedEncoder::new(d);
    let row = |i: usize| Row {
        id: i as u64,
        score: i as f64 + 0.5,
        ok: true,
        event: "caf\u{e9}",
        at: "2023-11-14T22:13:20.000001Z",
        day: "2023-12-09",
        amount: "1234.56",
        props: Props { plan: "pro", n: [1, 2] },
        tags: ["a", "b"],
    };
    let mut warm = (0..ROWS).map(row);
    enc.encode_batches(&mut warm, 0, cut);

    let region = Region::new(GLOBAL);
    let mut rows = (0..ROWS).map(row);
    let mut written = 0;
    loop {
        let batches = enc.encode_batches(&mut rows, written as u64, cut);
        if batches.is_empty() {
            break;
        }
        for b in batches {
            assert!(b.refused.is_empty(), "{:?}", b.refused.first());
            written += b.len();
        }
    }
    let allocations = region.change().allocations + region.change().reallocations;
    assert_eq!(written, ROWS);
    assert!(allocations < ROWS / 50, "typed: {allocations} allocations for {ROWS} rows");
}
