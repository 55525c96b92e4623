//! End-to-end benchmark client: streams the 12-column benchmark rows through `Destination`
//! (Streaming mode) to the endpoints named by `BIGQUERY_EMULATOR_HOST` /
//! `BIGQUERY_STORAGE_EMULATOR_HOST`, then prints one JSON line with what it did.
//!
//! ```text
//! bench_e2e [--rows N] [--api stream|write] [--batch-size B] [--encoders E] [--workers W]
//!           [--project P] [--dataset D] [--table T]
//! bench_e2e --build-only [--rows N]
//! ```
//!
//! `--api stream` (the default) hands the rows to `Destination::write_stream`, which encodes them
//! on the destination's encoding threads (`--encoders`, the builder's `worker_count`); `--api
//! write` calls `Destination::write` once per row. `--workers W` runs W destinations (one
//! AppendRows connection each) side by side, each writing its share of the rows. Options not
//! given keep the destination's defaults. Rows are made
//! as they are written, so memory shows the client's own footprint. `cargo xtask bench` runs this
//! under a CPU and memory meter; see the README's "Benchmarks". `--build-only` makes and drops
//! the rows without writing them: the part of the client's CPU that is the caller's own.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use bqsink::{Destination, Summary};
use bqsink_testkit::rows::{twelve_column_schema, typed_row};
use futures::StreamExt as _;

struct Args {
    rows: u64,
    batch_size: Option<usize>,
    encoders: Option<usize>,
    per_row: bool,
    workers: u64,
    project: String,
    dataset: String,
    table: String,
    build_only: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        rows: 1_000_000,
        batch_size: None,
        encoders: None,
        per_row: false,
        workers: 1,
        project: "bench".into(),
        dataset: "bench".into(),
        table: "rows".into(),
        build_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => a.rows = value()?.parse()?,
            "--batch-size" => a.batch_size = Some(value()?.parse()?),
            "--encoders" => a.encoders = Some(value()?.parse()?),
            "--api" => {
                a.per_row = match value()?.as_str() {
                    "write" => true,
                    "stream" => false,
                    other => anyhow::bail!("--api is stream or write, not {other}"),
                }
            }
            "--workers" => a.workers = value()?.parse::<u64>()?.max(1),
            "--project" => a.project = value()?,
            "--dataset" => a.dataset = value()?,
            "--table" => a.table = value()?,
            "--build-only" => a.build_only = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Peak resident memory of this process so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    if a.build_only {
        let started = Instant::now();
        for i in 0..a.rows {
            drop(std::hint::black_box(typed_row(i as i64)));
        }
        let wall_s = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"rows": a.rows, "build_only": true, "wall_s": wall_s, "vm_hwm_kib": peak_rss_kib()})
        );
        return Ok(());
    }
    let started = Instant::now();
    let mut destinations = Vec::new();
    for _ in 0..a.workers {
        let mut b = Destination::builder()
            .project_id(&a.project)
            .dataset_id(&a.dataset)
            .table_id(&a.table)
            .schema(twelve_column_schema());
        if let Some(n) = a.batch_size {
            b = b.batch_size(n);
        }
        if let Some(n) = a.encoders {
            b = b.worker_count(n);
        }
        destinations.push(b.build().await?);
    }
    let setup_s = started.elapsed().as_secs_f64();

    let writing = Instant::now();
    let mut tasks = Vec::new();
    for (k, dest) in destinations.into_iter().enumerate() {
        let k = k as u64;
        let (from, to) = (a.rows * k / a.workers, a.rows * (k + 1) / a.workers);
        let per_row = a.per_row;
        tasks.push(tokio::spawn(async move {
            if per_row {
                for i in from..to {
                    dest.write(typed_row(i as i64)).await?;
                }
            } else {
                let report = dest.write_stream(futures::stream::iter(from..to).map(|i| typed_row(i as i64))).await?;
                anyhow::ensure!(report.errors.is_empty(), "rows refused: {:?}", report.errors.first());
            }
            anyhow::Ok(dest.close().await?)
        }));
    }
    let mut total = Summary::default();
    for t in tasks {
        let s = t.await??;
        total.rows_read += s.rows_read;
        total.rows_written += s.rows_written;
        total.requests += s.requests;
        total.bytes_written += s.bytes_written;
        total.retries += s.retries;
    }
    let wall_s = writing.elapsed().as_secs_f64();
    anyhow::ensure!(total.rows_written == a.rows, "{} of {} rows were acknowledged", total.rows_written, a.rows);
    println!(
        "{}",
        serde_json::json!({
            "rows": a.rows,
            "rows_written": total.rows_written,
            "requests": total.requests,
            "bytes_written": total.bytes_written,
            "retries": total.retries,
            "workers": a.workers,
            "encoders": a.encoders,
            "api": if a.per_row { "write" } else { "write_stream" },
            "batch_size": a.batch_size,
            "setup_s": setup_s,
            "wall_s": wall_s,
            "vm_hwm_kib": peak_rss_kib(),
        })
    );
    Ok(())
}
