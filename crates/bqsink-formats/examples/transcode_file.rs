//! Transcodes an NDJSON file on one thread and prints the time per row: a harness for
//! profiling the transcoder alone (`perf record`, `valgrind --tool=callgrind`).
//!
//! `cargo run --release -p bqsink-formats --example transcode_file -- SCHEMA.json FILE.ndjson`

use std::time::Instant;

use bqsink_core::Schema;
use bqsink_formats::{Chunker, Cut, Format, JsonTranscoder};
use bqsink_transport::RowDescriptor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(schema), Some(file)) = (args.get(1), args.get(2)) else {
        return Err("usage: transcode_file SCHEMA.json FILE.ndjson".into());
    };
    let schema = Schema::from_json(&std::fs::read_to_string(schema)?)?;
    let descriptor = RowDescriptor::new(&schema)?;
    let mut t = JsonTranscoder::new(descriptor);
    let mut chunker = Chunker::new(std::fs::File::open(file)?, Format::Ndjson, 1 << 20);
    let cut = Cut { max_rows: 1000, max_bytes: 9_500_000 };
    let (mut rows, mut refused, mut bytes) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let mut busy = std::time::Duration::ZERO;
    while let Some(chunk) = chunker.next_chunk()? {
        let t0 = Instant::now();
        for b in t.ndjson_chunk(&chunk.data, chunk.first_line, cut) {
            rows += b.len();
            refused += b.refused.len();
            bytes += b.rows.len();
        }
        busy += t0.elapsed();
    }
    eprintln!(
        "{rows} rows ({refused} refused, {bytes} row bytes) in {:.2}s; transcoding {:.0} ns/row",
        started.elapsed().as_secs_f64(),
        busy.as_nanos() as f64 / rows.max(1) as f64
    );
    Ok(())
}
