//! Encodes typed 12-column rows in a loop; for profilers (`valgrind --tool=callgrind`).
use bqsink_core::Record;
use bqsink_testkit::rows::{twelve_column_schema, typed_row};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;

fn main() {
    let schema = twelve_column_schema();
    let rows: Vec<Record> = (0..10_000i64).map(typed_row).collect();
    let mut enc = RowEncoder::new(RowDescriptor::new(&schema).expect("schema"));
    let mut buf = BytesMut::with_capacity(4 << 20);
    let start = std::time::Instant::now();
    let rounds = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    for _ in 0..rounds {
        buf.clear();
        for r in &rows {
            enc.encode_row_entry(r, &mut buf).expect("encode");
        }
    }
    let n = rounds * rows.len();
    eprintln!("{n} rows in {:?}: {:.0} rows/s", start.elapsed(), n as f64 / start.elapsed().as_secs_f64());
}
