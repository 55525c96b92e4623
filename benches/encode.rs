//! Encoder micro-benchmarks: typed 12-column rows, the same rows parsed from NDJSON, serde
//! structs, and descriptor builds. Run with `cargo bench --bench encode`.

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

criterion_group!(benches, bench);
criterion_main!(benches);
