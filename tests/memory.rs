//! Memory stays flat however many rows come in: a counting global allocator records the peak
//! heap while 100k and then 1M rows stream through the engine into the reference sink (which
//! checks and counts the rows without keeping them); the two peaks are the same, within slack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bqsink::{Destination, Endpoints, Record, Schema};
use bqsink_testkit::refsink::RefSink;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

async fn stream_rows(sink: &RefSink, table: &str, n: i64) -> usize {
    let schema = Schema::from_json(
        r#"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "event", "type": "STRING"},
            {"name": "at", "type": "TIMESTAMP"}, {"name": "score", "type": "FLOAT"}]"#,
    )
    .expect("schema");
    let dest = Destination::builder()
        .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
        .project_id("memory-project")
        .dataset_id("memory")
        .table_id(table)
        .schema(schema)
        .build()
        .await
        .expect("destination");
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    let base = CURRENT.load(Ordering::Relaxed);
    for id in 0..n {
        let r = Record::new()
            .with("id", id)
            .with("event", "page_view")
            .with(
                "at",
                bqsink::Timestamp::from_micros(1_700_000_000_000_000 + id)
                    .map_or(bqsink::Value::Null, bqsink::Value::Timestamp),
            )
            .with("score", id as f64);
        dest.write(r).await.expect("write");
    }
    let summary = dest.close().await.expect("close");
    assert_eq!(summary.rows_written, n as u64);
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_heap_is_the_same_for_100k_and_1m_rows() {
    let sink = RefSink::start().await.expect("sink");
    sink.discard_rows(true);
    // Warm up connections and lazily allocated state, so both runs start alike.
    stream_rows(&sink, "warmup", 20_000).await;
    let peak_100k = stream_rows(&sink, "small", 100_000).await;
    let peak_1m = stream_rows(&sink, "large", 1_000_000).await;
    assert!(sink.stats().rows_appended >= 1_120_000);
    eprintln!("peak heap above baseline: 100k rows {} KiB, 1M rows {} KiB", peak_100k / 1024, peak_1m / 1024);
    // Ten times the rows, the same bounded pipeline: the peaks differ by noise only.
    let slack = peak_100k / 4 + 2 * 1024 * 1024;
    assert!(peak_1m <= peak_100k + slack, "peak grew with input: {peak_100k} B for 100k rows, {peak_1m} B for 1M rows");
}
