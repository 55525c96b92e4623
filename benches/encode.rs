//! Encoder micro-benchmarks: typed 12-column rows, the same rows parsed from NDJSON (through
//! `Record`s, and transcoded straight to row bytes as `bqsink load` does), serde
//! structs, descriptor builds, Segment `track` events (NDJSON → rows → protobuf) and schema
//! inference on a batch. Run with `cargo bench --bench encode`; `cargo xtask bench` runs them too
//! and reads criterion's estimates.

use bqsink_core::Record;
use bqsink_testkit::rows::{twelve_column_schema, typed_row};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ROWS: usize = 10_000;

fn typed_rows() -> Vec<Record> {
    (0..ROWS as i64).map(typed_row).collect()
}

fn ndjson_lines() -> Vec<String> {
    (0..ROWS)
        .map(|i| {
            format!(
                r#"{{"id":{i},"score":{},"ok":{},"event":"page_view","user_id":"user-{}","page":"/pricing","agent":"Mozilla/5.0 (X11; Linux x86_64)","at":"2023-11-14T22:13:20.{:06}Z","day":"2023-12-09","amount":"1234.56","props":{{"plan":"pro"}},"tags":["a","b"]}}"#,
                i as f64 * 0.5,
                i % 3 == 0,
                i % 1000,
                i % 1_000_000
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let schema = twelve_column_schema();
    let descriptor = RowDescriptor::new(&schema).expect("valid schema");
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(ROWS as u64));

    let rows = typed_rows();
    let mut encoder = RowEncoder::new(descriptor.clone());
    let mut buf = BytesMut::with_capacity(4 << 20);
    group.bench_function("typed_12_columns", |b| {
        b.iter(|| {
            buf.clear();
            for r in &rows {
                encoder.encode_row_entry(r, &mut buf).expect("encodes");
            }
            buf.len()
        })
    });

    let lines = ndjson_lines();
    group.bench_function("ndjson_parse_and_encode", |b| {
        b.iter(|| {
            buf.clear();
            for l in &lines {
                let r = Record::from_json_str(l).expect("json");
                encoder.encode_row_entry(&r, &mut buf).expect("encodes");
            }
            buf.len()
        })
    });

    // The same lines as one chunk of a file, straight to row bytes (the `bqsink load` path).
    let chunk = lines.join("\n").into_bytes();
    let mut transcoder = bqsink_formats::JsonTranscoder::new(descriptor.clone());
    let cut = bqsink_formats::Cut { max_rows: 1_000, max_bytes: 9_500_000 };
    group.bench_function("ndjson_transcode", |b| {
        b.iter(|| {
            let batches = transcoder.ndjson_chunk(&chunk, 1, cut);
            assert!(batches.iter().all(|b| b.refused.is_empty()));
            batches.len()
        })
    });

    #[derive(serde::Serialize)]
    struct Event<'a> {
        id: i64,
        score: f64,
        ok: bool,
        event: &'a str,
        user_id: String,
        page: &'a str,
        agent: &'a str,
        at: &'a str,
        day: &'a str,
        amount: &'a str,
        tags: Vec<&'a str>,
    }
    group.bench_function("serialize_struct_and_encode", |b| {
        b.iter_batched(
            || (),
            |()| {
                buf.clear();
                for i in 0..ROWS as i64 {
                    let e = Event {
                        id: i,
                        score: 0.5,
                        ok: true,
                        event: "page_view",
                        user_id: format!("user-{i}"),
                        page: "/pricing",
                        agent: "Mozilla/5.0",
                        at: "2023-11-14T22:13:20Z",
                        day: "2023-12-09",
                        amount: "1234.56",
                        tags: vec!["a", "b"],
                    };
                    let r = Record::from_serialize(&e).expect("struct");
                    encoder.encode_row_entry(&r, &mut buf).expect("encodes");
                }
                buf.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    c.bench_function("descriptor_build_12_columns", |b| b.iter(|| RowDescriptor::new(&schema).expect("valid")));
}

/// A Segment `track` call of about 500 bytes, with context.
fn track_event(i: usize) -> String {
    format!(
        concat!(
            r#"{{"type":"track","event":"Order Completed","messageId":"msg-{i:08}","anonymousId":"anon-{a}","#,
            r#""userId":"user-{u}","timestamp":"2024-06-03T09:{m:02}:{s:02}.{ms:03}Z","#,
            r#""sentAt":"2024-06-03T09:{m:02}:{s:02}.{ms:03}Z","receivedAt":"2024-06-03T09:{m:02}:{s:02}.{ms:03}Z","#,
            r#""properties":{{"order_id":"order-{i}","revenue":{rev},"currency":"USD","coupon":"SPRING","#,
            r#""items":{items},"gift":{gift}}},"#,
            r#""context":{{"ip":"203.0.113.7","locale":"en-GB","library":{{"name":"analytics.js","version":"4.1.0"}},"#,
            r#""page":{{"path":"/checkout","url":"https://shop.example.com/checkout","title":"Checkout","#,
            r#""referrer":"https://shop.example.com/cart"}},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}}}}"#
        ),
        i = i,
        a = i % 5000,
        u = i % 1000,
        m = (i / 60_000) % 60,
        s = (i / 1000) % 60,
        ms = i % 1000,
        rev = (i % 10_000) as f64 / 100.0,
        items = i % 7,
        gift = i & 1 == 0,
    )
}

fn segment(c: &mut Criterion) {
    use bqsink_schema::{rows_from_line, InferMode, SchemaInference, SegmentOptions};
    use std::collections::HashMap;

    let lines: Vec<String> = (0..ROWS).map(track_event).collect();
    let now = bqsink_core::Timestamp::from_micros(1_717_405_200_000_000).expect("valid");
    let opts = SegmentOptions::default();
    // The plan: one schema per table, inferred from the events, and its encoder.
    let mut inference: HashMap<String, SchemaInference> = HashMap::new();
    for (n, l) in lines.iter().enumerate() {
        for row in rows_from_line(l, n as u64 + 1, now, &opts).expect("segment rows") {
            inference
                .entry(row.table)
                .or_insert_with(|| SchemaInference::new(InferMode::Segment))
                .observe_normalized(&row.record);
        }
    }
    let mut encoders: HashMap<String, RowEncoder> = inference
        .into_iter()
        .map(|(t, i)| (t, RowEncoder::new(RowDescriptor::new(&i.schema()).expect("valid schema"))))
        .collect();
    let mut buf = BytesMut::with_capacity(16 << 20);

    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(ROWS as u64));
    // Each iteration takes a while: fewer samples keep the run short.
    group.sample_size(10);
    group.bench_function("track_events", |b| {
        b.iter(|| {
            buf.clear();
            for (n, l) in lines.iter().enumerate() {
                for row in rows_from_line(l, n as u64 + 1, now, &opts).expect("segment rows") {
                    let encoder = encoders.get_mut(&row.table).expect("planned table");
                    encoder.encode_row_entry(&row.record, &mut buf).expect("encodes");
                }
            }
            buf.len()
        })
    });
    group.finish();

    let records: Vec<Record> = ndjson_lines().iter().map(|l| Record::from_json_str(l).expect("json")).collect();
    let mut group = c.benchmark_group("infer");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.bench_function("schema_batch", |b| {
        b.iter(|| {
            let mut inference = SchemaInference::new(InferMode::Generic);
            for r in &records {
                inference.observe(r);
            }
            inference.finish().schema.fields.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench, segment);
criterion_main!(benches);
