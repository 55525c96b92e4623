//! Scans and transcodes a file of Segment payloads on one thread, as `bqsink segment` does on
//! each of its threads, and prints the time per payload line of each pass and how many lines
//! took the `Record` path: a harness for profiling (`perf record`, `valgrind --tool=callgrind`).
//!
//! `cargo run --release -p bqsink-formats --example segment_file -- FILE.ndjson`

use std::collections::HashMap;
use std::time::Instant;

use bqsink_core::Timestamp;
use bqsink_formats::{Chunker, Cut, Format, Piece, SegmentScan, SegmentScanner, SegmentTranscoder};
use bqsink_schema::segment::table_schema;
use bqsink_schema::SegmentOptions;
use bqsink_transport::RowDescriptor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).ok_or("usage: segment_file FILE.ndjson")?;
    let now = Timestamp::parse("2024-06-01T12:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH);
    let options = SegmentOptions::default();

    let started = Instant::now();
    let mut scanner = SegmentScanner::new(options.clone());
    let mut scan = SegmentScan::default();
    let mut chunker = Chunker::new(std::fs::File::open(&file)?, Format::Ndjson, 1 << 20);
    while let Some(chunk) = chunker.next_chunk()? {
        scan.merge(scanner.chunk(&chunk.data, chunk.first_line, now));
    }
    let scanned = started.elapsed();

    let mut plans = HashMap::new();
    for (table, t) in &scan.tables {
        let inferred = t.inference().finish();
        let mut schema = table_schema(table);
        for f in inferred.schema.fields {
            if schema.field(&f.name).is_none() {
                schema.fields.push(f);
            }
        }
        plans.insert(table.clone(), RowDescriptor::new(&schema)?);
    }
    let started = Instant::now();
    let mut transcoder = SegmentTranscoder::new(plans, options);
    let cut = Cut { max_rows: 1000, max_bytes: 9_500_000 };
    let (mut rows, mut handed_back, mut bytes) = (0usize, 0usize, 0usize);
    let mut chunker = Chunker::new(std::fs::File::open(&file)?, Format::Ndjson, 1 << 20);
    while let Some(chunk) = chunker.next_chunk()? {
        for piece in transcoder.chunk(&chunk.data, chunk.first_line, now, cut) {
            match piece {
                Piece::Rows { batch, .. } => {
                    rows += batch.len();
                    bytes += batch.rows.len();
                }
                Piece::Line { number, text, .. } => {
                    if handed_back < 3 {
                        eprintln!(
                            "line {number} takes the Record path: {}",
                            text.chars().take(300).collect::<String>()
                        );
                    }
                    handed_back += 1;
                }
            }
        }
    }
    let written = started.elapsed();
    let lines = scan.lines.max(1) as f64;
    eprintln!(
        "{} lines, {} tables, {} rows planned; scan {:.3} µs/line; transcode {:.3} µs/line: {rows} rows, {bytes} bytes, {handed_back} lines handed back",
        scan.lines,
        scan.tables.len(),
        scan.rows,
        scanned.as_secs_f64() * 1e6 / lines,
        written.as_secs_f64() * 1e6 / lines,
    );
    Ok(())
}
