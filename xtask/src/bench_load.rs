//! The "load a file" section of `cargo xtask bench` (alone: `cargo xtask bench --load-only`):
//! `bqsink load` against peers that do the same work — read a file, parse each row, encode it,
//! write it with the Storage Write API and wait for the acknowledgements.
//!
//! Every client is a whole process run under `measure.py` (wall time from start to exit, CPU
//! and peak RSS of the process from wait4), reading the same generated files
//! (`bench_data`) against one fast sink:
//!
//! - `bqsink load --schema S FILE` with default flags (the release binary) on the 12-column
//!   NDJSON (1M and 10M rows), the 11-column CSV and the same 11 columns as NDJSON;
//! - the Rust peer (`xtask/bench/rust-peer --file`): serde_json into a borrowed struct, prost
//!   rows, `google-cloud-bigquery` 0.15's default-stream writer;
//! - Google's Python client (`python_peer.py --file`): json.loads per line, proto rows,
//!   `AppendRowsStream`;
//! - `bqsink load` pinned to one core, reported apart from the comparison.
//!
//! Placement: the comparison clients are not pinned (they may use every core), and the sink is
//! not pinned either, for every client alike: on a 2-core machine a sink pinned to a core would
//! take that core from any client that runs two threads. The sink's own CPU time per run is
//! recorded next to the client's, so the share it took is visible.
//!
//! Google's own Rust client (`google-cloud-bigquery` 0.19) is not a peer yet: its write client
//! does take a local endpoint (`Write::builder().with_endpoint(..)` with anonymous credentials),
//! but its only public row format is Arrow (`build_arrow`; the proto writer is crate-private), so
//! a peer would have to bring arrow-json and arrow-ipc to turn lines into serialized record
//! batches, and the fast sink would have to read Arrow IPC message headers to count `arrow_rows`
//! — a different pipeline and a much larger build (edition 2024, prost 0.14, aws-lc-sys).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::bench::{peer_batch, peer_inflight, FastSink, Paths};
use crate::bench_data::{self, DataFile, Layout};
use crate::{cargo, run};

/// Row counts of the load section: the headline file and the large one (flat memory).
pub(crate) struct LoadPlan {
    pub(crate) rows: u64,
    pub(crate) rows_large: u64,
}

pub(crate) const LOAD_FULL: LoadPlan = LoadPlan { rows: 1_000_000, rows_large: 10_000_000 };
pub(crate) const LOAD_QUICK: LoadPlan = LoadPlan { rows: 100_000, rows_large: 1_000_000 };

/// Dataset and tables the load clients write to; `bqsink load` creates the tables from the
/// schema files in the fast sink's REST side on first use.
const DATASET: &str = "bench";
const TABLE_12: &str = "load12";
const TABLE_11: &str = "load11";

/// Builds what only this section needs: the CLI (release) and the Rust peer. The fast sink is
/// built by the caller.
pub(crate) fn build(p: &Paths) -> anyhow::Result<()> {
    run(cargo().current_dir(&p.root).args(["build", "--release", "-p", "bqsink-cli", "--bin", "bqsink"]))?;
    Ok(())
}

/// Where a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cores {
    /// Unpinned: every core of the machine.
    All,
    /// `taskset -c 0`.
    One,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Bqsink(Cores),
    RustPeer,
    Python,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Bqsink(Cores::All) => "bqsink load",
            Who::Bqsink(Cores::One) => "bqsink load, 1 core",
            Who::RustPeer => "rust peer",
            Who::Python => "python",
        }
    }
}

/// Runs the section: data files, one unpinned fast sink, every client; returns the summary keys
/// of the section and the raw results under `"load"`.
pub(crate) fn run_section(p: &Paths, plan: &LoadPlan) -> anyhow::Result<Value> {
    let data = p.root.join("target/bench/data");
    let nd12 = bench_data::ensure(&data, Layout::Ndjson12, plan.rows)?;
    let nd12_large = bench_data::ensure(&data, Layout::Ndjson12, plan.rows_large)?;
    let csv11 = bench_data::ensure(&data, Layout::Csv11, plan.rows)?;
    let nd11 = bench_data::ensure(&data, Layout::Ndjson11, plan.rows)?;
    eprintln!(
        "load files: {} ({:.0} bytes a row), {}, {}, {}",
        nd12.path.display(),
        nd12.bytes as f64 / nd12.rows as f64,
        nd12_large.path.display(),
        csv11.path.display(),
        nd11.path.display()
    );

    let mut sink = FastSink::start(&p.fastsink, None)?;
    let mut go =
        |who: Who, file: &DataFile, table: &str, label: &str| load_client(p, &mut sink, who, file, table, label);
    let ndjson = go(Who::Bqsink(Cores::All), &nd12, TABLE_12, "ndjson")?;
    let ndjson_large = go(Who::Bqsink(Cores::All), &nd12_large, TABLE_12, "ndjson")?;
    let csv = go(Who::Bqsink(Cores::All), &csv11, TABLE_11, "csv, 11 columns")?;
    let ndjson11 = go(Who::Bqsink(Cores::All), &nd11, TABLE_11, "ndjson, 11 columns")?;
    let rust_peer = go(Who::RustPeer, &nd12, TABLE_12, "ndjson")?;
    let python = go(Who::Python, &nd12, TABLE_12, "ndjson")?;
    let single = go(Who::Bqsink(Cores::One), &nd12, TABLE_12, "ndjson")?;
    sink.stop();

    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "load_rows": plan.rows,
        "load_rows_large": plan.rows_large,
        "load_ndjson_rows_per_s": ndjson["rows_per_s"],
        "load_ndjson_cpu_us_per_row": ndjson["cpu_us_per_row"],
        "load_csv_rows_per_s": csv["rows_per_s"],
        "load_ndjson11_rows_per_s": ndjson11["rows_per_s"],
        "rust_peer_ndjson_rows_per_s": rust_peer["rows_per_s"],
        "python_ndjson_rows_per_s": python["rows_per_s"],
        "load_ratio_vs_rust_peer": f(&ndjson, "rows_per_s") / f(&rust_peer, "rows_per_s"),
        "load_ratio_vs_python": f(&ndjson, "rows_per_s") / f(&python, "rows_per_s"),
        "load_peak_rss_mib_1m": ndjson["peak_rss_mib"],
        "load_peak_rss_mib_10m": ndjson_large["peak_rss_mib"],
        "load_ndjson_10m_rows_per_s": ndjson_large["rows_per_s"],
        "load_single_core_rows_per_s": single["rows_per_s"],
        "load": {
            "placement": "clients unpinned (all cores), fast sink unpinned; single-core run: client on core 0 (taskset -c 0), sink unpinned",
            "batch_size": peer_batch(),
            "inflight": peer_inflight(),
            "bqsink_ndjson": ndjson,
            "bqsink_ndjson_large": ndjson_large,
            "bqsink_csv11": csv,
            "bqsink_ndjson11": ndjson11,
            "rust_peer_ndjson": rust_peer,
            "python_ndjson": python,
            "bqsink_single_core": single,
        },
    }))
}

fn load_command(p: &Paths, who: Who, file: &DataFile, table: &str, grpc: &str, rest: &str) -> Command {
    let mut cmd = Command::new(&p.python);
    cmd.arg(&p.measure).arg("--");
    let batch = peer_batch().to_string();
    let inflight = peer_inflight().to_string();
    match who {
        Who::Bqsink(cores) => {
            if cores == Cores::One {
                cmd.args(["taskset", "-c", "0"]);
            }
            // Default flags: what a user types. Endpoints from the variables the CLI reads.
            cmd.arg(bqsink_bin(&p.root))
                .env("BIGQUERY_EMULATOR_HOST", rest)
                .env("BIGQUERY_STORAGE_EMULATOR_HOST", grpc)
                .args(["load", "--project", "bench", "--dataset", DATASET, "--table", table, "--schema"])
                .arg(&file.schema)
                .arg(&file.path);
        }
        Who::RustPeer => {
            cmd.arg(&p.rust_peer)
                .args(["--grpc", grpc, "--batch-size", &batch, "--inflight", &inflight, "--table", table, "--file"])
                .arg(&file.path);
        }
        Who::Python => {
            cmd.arg(&p.python)
                .arg(p.root.join("xtask/bench/python_peer.py"))
                .args(["--grpc", grpc, "--batch-size", &batch, "--inflight", &inflight, "--table", table, "--file"])
                .arg(&file.path);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

pub(crate) fn bqsink_bin(root: &Path) -> PathBuf {
    root.join("target/release/bqsink")
}

/// Runs one client on one file; fails unless the process exited 0 and the sink acknowledged
/// every row of the file.
fn load_client(
    p: &Paths,
    sink: &mut FastSink,
    who: Who,
    file: &DataFile,
    table: &str,
    label: &str,
) -> anyhow::Result<Value> {
    let before = sink.stats()?;
    let sink_cpu_before = sink.cpu_s();
    let (grpc, rest) = (sink.grpc.clone(), sink.rest.clone());
    let out = load_command(p, who, file, table, &grpc, &rest)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", who.name()))?;
    let sink_cpu = sink.cpu_s() - sink_cpu_before;
    let after = sink.stats()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let meter = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{}: measure.py printed nothing: {text}", who.name()))?;
    let meter: Value = serde_json::from_str(meter)?;
    if !out.status.success() || meter["exit"].as_i64() != Some(0) {
        bail!("{} on {} failed (exit {}): {text}", who.name(), file.path.display(), meter["exit"]);
    }
    let delta = |k: &str| after[k].as_u64().unwrap_or(0).saturating_sub(before[k].as_u64().unwrap_or(0));
    if delta("rows") != file.rows {
        bail!(
            "{} on {}: the sink acknowledged {} rows, not {}",
            who.name(),
            file.path.display(),
            delta("rows"),
            file.rows
        );
    }
    // The client's own account: bqsink's summary line, the peers' JSON line.
    let reported = match who {
        Who::Bqsink(_) => text.lines().rev().find_map(written_of),
        Who::RustPeer | Who::Python => text
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .rev()
            .nth(1)
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v["rows_acked"].as_u64()),
    };
    if reported != Some(file.rows) {
        bail!(
            "{} on {}: the client reports {reported:?} rows written, not {}",
            who.name(),
            file.path.display(),
            file.rows
        );
    }
    let rows = file.rows as f64;
    let wall = meter["wall_s"].as_f64().context("no wall time")?;
    let cpu = meter["cpu_s"].as_f64().context("no CPU time")?;
    let r = json!({
        "client": who.name(),
        "input": label,
        "file": file.path.display().to_string(),
        "rows": file.rows,
        "file_bytes": file.bytes,
        "cores": match who { Who::Bqsink(Cores::One) => "core 0", _ => "all (unpinned)" },
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "file_mb_per_s": file.bytes as f64 / 1e6 / wall,
        "cpu_user_s": meter["user_s"],
        "cpu_sys_s": meter["sys_s"],
        "cpu_s": cpu,
        "cpu_us_per_row": cpu / rows * 1e6,
        "peak_rss_mib": meter["maxrss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        "sink_requests": delta("requests"),
        "sink_row_bytes": delta("row_bytes"),
        "sink_cpu_s": sink_cpu,
    });
    eprintln!("{}", line(&r));
    Ok(r)
}

/// `written N` from bqsink's summary line `read N, written N, dead-lettered N (…)`.
fn written_of(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("read ")?;
    let after = &rest[rest.find(", written ")? + ", written ".len()..];
    after.split(',').next()?.trim().parse().ok()
}

fn line(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:>20} {:<19} {:>9} rows: {:>9.0} rows/s  {:>6.2} CPU µs/row  peak RSS {:>7.1} MiB  (sink CPU {:.2} s)",
        r["client"].as_str().unwrap_or("?"),
        r["input"].as_str().unwrap_or("?"),
        r["rows"],
        f("rows_per_s"),
        f("cpu_us_per_row"),
        f("peak_rss_mib"),
        f("sink_cpu_s"),
    )
}

/// The section's lines for the closing report.
pub(crate) fn report(s: &Value) -> String {
    let l = &s["load"];
    if !l.is_object() {
        return String::new();
    }
    let mut out = format!(
        "load a file ({} rows per request, {} in flight; {}):\n",
        l["batch_size"],
        l["inflight"],
        l["placement"].as_str().unwrap_or("")
    );
    for k in
        ["bqsink_ndjson", "bqsink_ndjson_large", "bqsink_csv11", "bqsink_ndjson11", "rust_peer_ndjson", "python_ndjson"]
    {
        out += &line(&l[k]);
        out.push('\n');
    }
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    out += &format!(
        "bqsink load ÷ rust peer {:.2}, ÷ python {:.2} (wall rows/s)\nsingle core, reported apart:\n{}\n",
        f("load_ratio_vs_rust_peer"),
        f("load_ratio_vs_python"),
        line(&l["bqsink_single_core"])
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        assert_eq!(written_of("read 10, written 9, dead-lettered 1 (0.1s, 90 rows/s)"), Some(9));
        assert_eq!(written_of("bqsink: progress"), None);
    }
}
