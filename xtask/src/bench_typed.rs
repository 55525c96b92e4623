//! The typed section of `cargo xtask bench` (`--typed-only` runs just this): the 12 benchmark
//! columns as a `#[derive(Serialize)]` struct built per row inside the timed loop and written
//! with `Destination::write_typed` (owned `String`s, then `&str`s), and the Rust peer building its
//! prost structs the same way, each a process of its own on core 0 against one fast sink on
//! core 1. CPU is the client process's user + system time per row.

use std::path::Path;
use std::process::Command;

use anyhow::bail;
use serde_json::{json, Value};

use crate::bench::{measured, peer_batch, peer_inflight, FastSink, Paths};
use crate::{cargo, run};

/// Rows of each typed run.
pub(crate) fn rows(quick: bool) -> u64 {
    if quick {
        200_000
    } else {
        1_000_000
    }
}

pub(crate) fn build(p: &Paths) -> anyhow::Result<()> {
    run(cargo().current_dir(&p.root).args(["build", "--release", "-p", "bqsink", "--example", "bench_typed"]))
}

fn client_bin(root: &Path) -> std::path::PathBuf {
    root.join("target/release/examples/bench_typed")
}

/// Runs the three clients against one fast sink; returns the section's keys.
pub(crate) fn run_section(p: &Paths, rows: u64) -> anyhow::Result<Value> {
    let mut sink = FastSink::start(&p.fastsink, Some("1"))?;
    let owned = one(p, &mut sink, rows, Some("owned"))?;
    let borrowed = one(p, &mut sink, rows, Some("borrowed"))?;
    let peer = one(p, &mut sink, rows, None)?;
    sink.stop();
    let cpu = |r: &Value| r["cpu_us_per_row"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "typed_cpu_us_per_row": cpu(&owned),
        "typed_borrowed_cpu_us_per_row": cpu(&borrowed),
        "rust_peer_cpu_us_per_row": cpu(&peer),
        "typed_vs_rust_peer_cpu": cpu(&peer) / cpu(&owned),
        "typed": { "rows": rows, "owned": owned, "borrowed": borrowed, "rust_peer": peer },
    }))
}

/// One client process (`strings`: a typed run; `None`: the Rust peer), checked against the
/// rows the sink received.
fn one(p: &Paths, sink: &mut FastSink, rows: u64, strings: Option<&str>) -> anyhow::Result<Value> {
    let before = sink.stats()?;
    let mut cmd = Command::new(&p.python);
    cmd.arg(&p.measure).args(["--", "taskset", "-c", "0"]);
    let n = rows.to_string();
    let name = match strings {
        Some(s) => {
            cmd.arg(client_bin(&p.root))
                .env("BIGQUERY_EMULATOR_HOST", &sink.rest)
                .env("BIGQUERY_STORAGE_EMULATOR_HOST", &sink.grpc)
                .args(["--rows", &n, "--strings", s]);
            format!("typed_{s}")
        }
        None => {
            cmd.arg(&p.rust_peer).args([
                "--grpc",
                &sink.grpc,
                "--rows",
                &n,
                "--batch-size",
                &peer_batch().to_string(),
                "--inflight",
                &peer_inflight().to_string(),
            ]);
            "rust_peer".to_owned()
        }
    };
    let r = measured(cmd, &name)?;
    let after = sink.stats()?;
    let got = after["rows"].as_u64().unwrap_or(0) - before["rows"].as_u64().unwrap_or(0);
    if got != rows {
        bail!("{name}: the sink received {got} rows, not {rows}");
    }
    eprintln!(
        "{name:>16} {rows} rows: {:>6.3} CPU µs per row, {:>10.0} rows/s",
        r["cpu_us_per_row"].as_f64().unwrap_or(f64::NAN),
        r["rows_per_s"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(r)
}

pub(crate) fn report(s: &Value) -> String {
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "typed rows: {:.3} CPU µs per row (owned strings), {:.3} (borrowed); rust peer {:.3} → typed_vs_rust_peer_cpu {:.2}",
        f("typed_cpu_us_per_row"),
        f("typed_borrowed_cpu_us_per_row"),
        f("rust_peer_cpu_us_per_row"),
        f("typed_vs_rust_peer_cpu"),
    )
}

/// `--typed-only`: builds what the section runs, runs it, and merges its keys into the last
/// summary (the other sections' figures stay as they were) or starts a new one.
pub(crate) fn typed_only_run(p: &Paths, quick: bool, started: std::time::Instant) -> anyhow::Result<()> {
    crate::bench::build_fastsink(p)?;
    build(p)?;
    crate::bench::build_rust_peer(p)?;
    let built = started.elapsed().as_secs_f64();
    let section = run_section(p, rows(quick))?;
    eprintln!("{}", report(&section));
    let previous = std::fs::read_to_string(p.out.join("summary.json")).ok();
    let mut summary = previous
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({ "machine": crate::bench::machine() }));
    crate::bench::merge(&mut summary, section);
    summary["typed_quick"] = json!(quick);
    summary["typed_build_s"] = json!(built);
    summary["typed_bench_s"] = json!(started.elapsed().as_secs_f64() - built);
    crate::bench::write_summary(p, &summary, true)
}
