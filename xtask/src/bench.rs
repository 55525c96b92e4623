//! `cargo xtask bench [--quick]`: bqsink against its peers, in one run.
//!
//! 1. Encoder micro-benchmarks (criterion, `benches/encode.rs`), pinned to core 0.
//! 2. The fast sink (`bqsink-testkit`'s `fastsink`: acks every AppendRows without decoding the
//!    rows) on core 1; each client runs as its own process on core 0 under `measure.py`, which
//!    reads the child's CPU time and peak RSS from wait4(2).
//! 3. Clients: bqsink (`Destination`, default settings, 1M and 10M rows), Google's Python client
//!    (`AppendRowsStream`), the Rust peer (`google-cloud-bigquery`), then bqsink by batch size and
//!    by worker count.
//! 4. Loading a file (`bench_load`): `bqsink load` against the Rust and Python peers reading the
//!    same generated NDJSON/CSV files, each a whole process; `--load-only` runs just this.
//!    Typed rows (`bench_typed`): `Destination::write_typed` against the Rust peer, CPU per row;
//!    `--typed-only` runs just this.
//! 5. Segment events (`bench_segment`): the whole `bqsink segment` process on generated files of
//!    200k and 1M events; `--segment-only` runs just this.
//! 6. bqsink and the Python client loading the same rows into bqemulator.
//! 7. `target/bench/summary.json` and `target/bench/throughput.svg`.
//!
//! Every number comes from the run; a client that does not get all its rows acknowledged by the
//! sink fails the bench.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{bench_chart, bench_load, bench_segment, bench_typed, cargo, emulator, run};

/// Row counts and repetitions of one bench run.
struct Plan {
    quick: bool,
    /// The headline run and the rows of each scaling run.
    rows: u64,
    /// The memory run (flat memory from `rows` to `rows_large`).
    rows_large: u64,
    python_rows: u64,
    emulator_rows: u64,
    batch_sizes: &'static [usize],
    workers: &'static [u64],
    encoders: &'static [usize],
    criterion_args: &'static [&'static str],
}

const FULL: Plan = Plan {
    quick: false,
    rows: 1_000_000,
    rows_large: 10_000_000,
    python_rows: 1_000_000,
    emulator_rows: 200_000,
    batch_sizes: &[100, 500, 1_000, 5_000, 10_000],
    workers: &[1, 2, 4, 8],
    encoders: &[1, 2, 4],
    criterion_args: &["--warm-up-time", "1", "--measurement-time", "4"],
};

const QUICK: Plan = Plan {
    quick: true,
    rows: 100_000,
    rows_large: 1_000_000,
    python_rows: 50_000,
    emulator_rows: 20_000,
    batch_sizes: &[100, 1_000, 10_000],
    workers: &[1, 4],
    encoders: &[1, 4],
    criterion_args: &["--warm-up-time", "0.5", "--measurement-time", "1"],
};

/// Rows per request of the peers: the facade's default batch size.
pub(crate) fn peer_batch() -> usize {
    bqsink::DestinationConfig::default().batch_size
}

/// Requests awaiting an answer in the peers: the facade's default.
pub(crate) fn peer_inflight() -> usize {
    bqsink::DestinationConfig::default().max_concurrent_batches
}
/// Rows per request against bqemulator: it snapshots the table on every append, so few large ones.
const EMULATOR_BATCH: usize = 10_000;

pub(crate) struct Paths {
    pub(crate) root: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) measure: PathBuf,
    pub(crate) fastsink: PathBuf,
    pub(crate) e2e: PathBuf,
    pub(crate) rust_peer: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> anyhow::Result<Paths> {
        let out = root.join("target/bench");
        std::fs::create_dir_all(&out)?;
        Ok(Paths {
            root: root.to_path_buf(),
            python: python_venv(root, &out)?,
            measure: root.join("xtask/bench/measure.py"),
            fastsink: root.join("target/release/fastsink"),
            e2e: root.join("target/release/examples/bench_e2e"),
            rust_peer: out.join("rust-peer-target/release/bqsink-bench-rust-peer"),
            out,
        })
    }
}

pub(crate) fn bench(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut plan = FULL;
    let mut with_emulator = true;
    let mut load_only = false;
    let mut segment_only = false;
    let mut typed_only = false;
    for a in args {
        match *a {
            "--quick" => plan = QUICK,
            "--no-emulator" => with_emulator = false,
            "--load-only" => load_only = true,
            "--segment-only" => segment_only = true,
            "--typed-only" => typed_only = true,
            "--chart-only" => return chart_only(root),
            other => bail!(
                "unknown bench flag {other} (flags: --quick, --no-emulator, --load-only, --segment-only, --typed-only, --chart-only)"
            ),
        }
    }
    let load_plan = if plan.quick { bench_load::LOAD_QUICK } else { bench_load::LOAD_FULL };
    let segment_plan = if plan.quick { &bench_segment::SEGMENT_QUICK } else { &bench_segment::SEGMENT_FULL };
    let started = Instant::now();
    if segment_only {
        return bench_segment::segment_only(root, plan.quick, started);
    }
    let paths = Paths::new(root)?;
    if load_only {
        return load_only_run(&paths, &load_plan, plan.quick, started);
    }
    if typed_only {
        return bench_typed::typed_only_run(&paths, plan.quick, started);
    }
    build(&paths)?;
    let built = started.elapsed().as_secs_f64();

    let encode = criterion(&paths, &plan)?;

    let mut sink = FastSink::start(&paths.fastsink, Some("1"))?;
    let mut e2e = Vec::new();
    let headline = client(&paths, &mut sink, Client::Bqsink(Bq::default()), plan.rows)?;
    let large = client(&paths, &mut sink, Client::Bqsink(Bq::default()), plan.rows_large)?;
    let python = client(&paths, &mut sink, Client::Python { batch: peer_batch() }, plan.python_rows)?;
    let rust_peer = client(&paths, &mut sink, Client::RustPeer { batch: peer_batch() }, plan.rows)?;
    // The caller's share of the client's CPU: making and dropping the same rows, no writing.
    let mut build = Command::new(&paths.python);
    build.arg(&paths.measure).args(["--", "taskset", "-c", "0"]).arg(&paths.e2e).args([
        "--build-only",
        "--rows",
        &plan.rows.to_string(),
    ]);
    let row_build = measured(build, "row_build")?;
    eprintln!(
        "row build only: {:.3} CPU s per 1M rows",
        row_build["cpu_s_per_million_rows"].as_f64().unwrap_or(f64::NAN)
    );
    let mut by_batch = Vec::new();
    for &b in plan.batch_sizes {
        by_batch.push(client(&paths, &mut sink, Client::Bqsink(Bq { batch: Some(b), ..Bq::default() }), plan.rows)?);
    }
    let mut by_encoders = Vec::new();
    for &e in plan.encoders {
        by_encoders.push(client(
            &paths,
            &mut sink,
            Client::Bqsink(Bq { encoders: Some(e), ..Bq::default() }),
            plan.rows,
        )?);
    }
    let per_row = client(&paths, &mut sink, Client::Bqsink(Bq { per_row: true, ..Bq::default() }), plan.rows)?;
    let mut by_workers = Vec::new();
    for &w in plan.workers {
        by_workers.push(client(&paths, &mut sink, Client::Bqsink(Bq { workers: w, ..Bq::default() }), plan.rows)?);
    }
    sink.stop();
    let load = bench_load::run_section(&paths, &load_plan)?;
    let segment = bench_segment::run_section(root, segment_plan)?;
    let typed = bench_typed::run_section(&paths, bench_typed::rows(plan.quick))?;
    e2e.push(headline.clone());
    e2e.push(large.clone());

    let emulator_runs = if with_emulator { Some(emulator_runs(&paths, &plan)?) } else { None };

    let cpu = |r: &Value| r["cpu_us_per_row"].as_f64().unwrap_or(f64::NAN);
    let rss = |r: &Value| r["peak_rss_mib"].clone();
    let mut summary = json!({
        "quick": plan.quick,
        "machine": machine(),
        "encode_typed_rows_per_s": encode["typed_12_columns"]["rows_per_s"],
        "encode_ndjson_rows_per_s": encode["ndjson_parse_and_encode"]["rows_per_s"],
        "encode_ndjson_transcode_rows_per_s": encode["ndjson_transcode"]["rows_per_s"],
        "encode_serialize_rows_per_s": encode["serialize_struct_and_encode"]["rows_per_s"],
        "descriptor_build_us": encode["descriptor_build_12_columns"]["us_per_iter"],
        "encode_segment_track_events_per_s": encode["segment_track_events"]["rows_per_s"],
        "infer_schema_rows_per_s": encode["infer_schema_batch"]["rows_per_s"],
        "e2e_rows_per_s": headline["rows_per_s"],
        "e2e_cpu_s_per_million_rows": headline["cpu_s_per_million_rows"],
        "e2e_mb_per_s": headline["mb_per_s"],
        "e2e_row_build_cpu_s_per_million_rows": row_build["cpu_s_per_million_rows"],
        "e2e_cpu_s_per_million_rows_without_row_build": num(&headline["cpu_s_per_million_rows"]) - num(&row_build["cpu_s_per_million_rows"]),
        "python_rows_per_s": python["rows_per_s"],
        "python_cpu_s_per_million_rows": python["cpu_s_per_million_rows"],
        "rust_peer_rows_per_s": rust_peer["rows_per_s"],
        "rust_peer_cpu_s_per_million_rows": rust_peer["cpu_s_per_million_rows"],
        "ratio_vs_python": cpu(&python) / cpu(&headline),
        "ratio_vs_rust_peer": cpu(&rust_peer) / cpu(&headline),
        "peak_rss_mib_by_rows": { headline["rows"].to_string(): rss(&headline), large["rows"].to_string(): rss(&large) },
        "encode": encode,
        "e2e": e2e,
        "row_build": row_build,
        "python": python,
        "rust_peer": rust_peer,
        "by_batch_size": by_batch,
        "by_workers": by_workers,
        "by_encoders": by_encoders,
        "e2e_write_per_row": per_row,
        "emulator": emulator_runs,
        "build_s": built,
    });
    if !plan.quick {
        summary["peak_rss_mib_1m"] = rss(&headline);
        summary["peak_rss_mib_10m"] = rss(&large);
    }
    merge(&mut summary, load);
    merge(&mut summary, segment);
    merge(&mut summary, typed);
    summary["bench_s"] = json!(started.elapsed().as_secs_f64() - built);
    write_summary(&paths, &summary, plan.quick)
}

/// `--load-only`: builds what the load section runs, runs it, and merges its keys into the last
/// summary (the other sections' figures stay as they were) or starts a new one.
fn load_only_run(paths: &Paths, plan: &bench_load::LoadPlan, quick: bool, started: Instant) -> anyhow::Result<()> {
    build_fastsink(paths)?;
    bench_load::build(paths)?;
    build_rust_peer(paths)?;
    let built = started.elapsed().as_secs_f64();
    let load = bench_load::run_section(paths, plan)?;
    let previous = std::fs::read_to_string(paths.out.join("summary.json")).ok();
    let mut summary = previous
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({ "machine": machine() }));
    merge(&mut summary, load);
    summary["load_quick"] = json!(quick);
    summary["load_build_s"] = json!(built);
    summary["load_bench_s"] = json!(started.elapsed().as_secs_f64() - built);
    write_summary(paths, &summary, true)
}

pub(crate) fn merge(summary: &mut Value, section: Value) {
    if let (Some(s), Value::Object(section)) = (summary.as_object_mut(), section) {
        s.extend(section);
    }
}

/// Writes summary.json and the chart under target/bench; `scratch`: not a full run, so the
/// chart under docs/ is left alone.
pub(crate) fn write_summary(paths: &Paths, summary: &Value, scratch: bool) -> anyhow::Result<()> {
    let summary_path = paths.out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(summary)? + "\n")?;
    let svg = bench_chart::render(summary);
    let chart = paths.out.join("throughput.svg");
    std::fs::write(&chart, &svg)?;
    if !scratch {
        let docs = paths.root.join("docs/bench");
        std::fs::create_dir_all(&docs)?;
        std::fs::write(docs.join("throughput.svg"), &svg)?;
    }
    eprintln!("\n{}", report(summary));
    eprintln!("wrote {} and {}", summary_path.display(), chart.display());
    Ok(())
}

/// Draws the chart again from the last summary.
fn chart_only(root: &Path) -> anyhow::Result<()> {
    let path = root.join("target/bench/summary.json");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("no {}: run `cargo xtask bench` first", path.display()))?,
    )?;
    std::fs::write(root.join("target/bench/throughput.svg"), bench_chart::render(&summary))?;
    eprintln!("{}", report(&summary));
    Ok(())
}

/// The venv of the Python peer under target/bench/py, created and filled from
/// xtask/bench/requirements.txt when missing or out of date.
fn python_venv(root: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let venv = out.join("py");
    let python = venv.join("bin/python");
    let requirements = root.join("xtask/bench/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)?;
    let marker = venv.join(".bench-requirements");
    if python.exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(python);
    }
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&requirements))?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}

fn build(p: &Paths) -> anyhow::Result<()> {
    build_fastsink(p)?;
    run(cargo().current_dir(&p.root).args(["build", "--release", "-p", "bqsink", "--example", "bench_e2e"]))?;
    bench_load::build(p)?;
    bench_typed::build(p)?;
    run(cargo().current_dir(&p.root).args(["bench", "--bench", "encode", "--no-run"]))?;
    build_rust_peer(p)
}

pub(crate) fn build_fastsink(p: &Paths) -> anyhow::Result<()> {
    run(cargo().current_dir(&p.root).args(["build", "--release", "-p", "bqsink-testkit", "--bin", "fastsink"]))
}

pub(crate) fn build_rust_peer(p: &Paths) -> anyhow::Result<()> {
    run(cargo().current_dir(&p.root).env("CARGO_TARGET_DIR", p.out.join("rust-peer-target")).args([
        "build",
        "--release",
        "--manifest-path",
        "xtask/bench/rust-peer/Cargo.toml",
    ]))
}

/// Runs the encoder micro-benchmarks on core 0 and reads criterion's estimates.
fn criterion(p: &Paths, plan: &Plan) -> anyhow::Result<Value> {
    run(Command::new("taskset")
        .current_dir(&p.root)
        .args(["-c", "0"])
        .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "--bench", "encode", "--"])
        .args(plan.criterion_args))?;
    let dir = p.root.join("target/criterion");
    let mut out = json!({});
    for (id, path, rows) in [
        ("typed_12_columns", "encode/typed_12_columns", 10_000.0),
        ("ndjson_parse_and_encode", "encode/ndjson_parse_and_encode", 10_000.0),
        ("ndjson_transcode", "encode/ndjson_transcode", 10_000.0),
        ("serialize_struct_and_encode", "encode/serialize_struct_and_encode", 10_000.0),
        ("descriptor_build_12_columns", "descriptor_build_12_columns", 0.0),
        ("segment_track_events", "segment/track_events", 0.0),
        ("infer_schema_batch", "infer/schema_batch", 0.0),
    ] {
        let file = dir.join(path).join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let est: Value = serde_json::from_str(&text)?;
        let ns = est["mean"]["point_estimate"].as_f64().context("criterion estimate without a mean")?;
        let mut entry = json!({ "ns_per_iter": ns, "us_per_iter": ns / 1e3 });
        let rows = if rows > 0.0 { rows } else { benchmark_rows(&dir.join(path)).unwrap_or(0.0) };
        if rows > 0.0 {
            entry["rows_per_iter"] = json!(rows);
            entry["rows_per_s"] = json!(rows / (ns / 1e9));
        }
        out[id] = entry;
    }
    Ok(out)
}

/// The element throughput criterion recorded for a benchmark, if any.
fn benchmark_rows(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new/benchmark.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["throughput"]["Elements"].as_f64()
}

/// The fast sink process, pinned to a core or not.
pub(crate) struct FastSink {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) grpc: String,
    pub(crate) rest: String,
}

impl FastSink {
    /// Starts the sink, on the cores `pin` names (`taskset -c` syntax) or unpinned.
    pub(crate) fn start(bin: &Path, pin: Option<&str>) -> anyhow::Result<FastSink> {
        let mut cmd = match pin {
            Some(cores) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cores]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("fastsink said {line:?}"))?;
        let grpc = v["grpc"].as_str().context("no grpc address")?.to_owned();
        let rest = v["rest"].as_str().context("no rest address")?.to_owned();
        let place = pin.map_or("unpinned".to_owned(), |c| format!("on core {c}"));
        eprintln!("fast sink {place}: gRPC {grpc}, REST {rest}");
        Ok(FastSink { child, stdin, stdout, grpc, rest })
    }

    /// CPU seconds (user + system) the sink has used so far, from /proc; NaN where unreadable.
    pub(crate) fn cpu_s(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return f64::NAN;
        };
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: Vec<f64> = after.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
        // USER_HZ is 100 on every Linux this runs on.
        if ticks.len() == 2 {
            (ticks[0] + ticks[1]) / 100.0
        } else {
            f64::NAN
        }
    }

    pub(crate) fn stats(&mut self) -> anyhow::Result<Value> {
        writeln!(self.stdin, "stats")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    pub(crate) fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// A bqsink run: `workers` destinations; `encoders` encoding threads each (`None`: the
/// default); `per_row`: `write()` per row instead of `write_stream`.
#[derive(Clone, Copy, Debug)]
struct Bq {
    batch: Option<usize>,
    workers: u64,
    encoders: Option<usize>,
    per_row: bool,
}

impl Default for Bq {
    fn default() -> Self {
        Bq { batch: None, workers: 1, encoders: None, per_row: false }
    }
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Bqsink(Bq),
    Python { batch: usize },
    RustPeer { batch: usize },
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Bqsink(_) => "bqsink",
            Client::Python { .. } => "python",
            Client::RustPeer { .. } => "rust_peer",
        }
    }

    fn command(self, p: &Paths, grpc: &str, rest: &str, rows: u64, table: &str) -> Command {
        let mut cmd = Command::new(&p.python);
        cmd.arg(&p.measure).args(["--", "taskset", "-c", "0"]);
        match self {
            Client::Bqsink(Bq { batch, workers, encoders, per_row }) => {
                cmd.arg(&p.e2e).env("BIGQUERY_EMULATOR_HOST", rest).env("BIGQUERY_STORAGE_EMULATOR_HOST", grpc).args([
                    "--rows",
                    &rows.to_string(),
                    "--workers",
                    &workers.to_string(),
                    "--table",
                    table,
                ]);
                if let Some(b) = batch {
                    cmd.args(["--batch-size", &b.to_string()]);
                }
                if let Some(e) = encoders {
                    cmd.args(["--encoders", &e.to_string()]);
                }
                cmd.args(["--api", if per_row { "write" } else { "stream" }]);
            }
            Client::Python { batch } => {
                cmd.arg(&p.python).arg(p.root.join("xtask/bench/python_peer.py")).args([
                    "--grpc",
                    grpc,
                    "--rows",
                    &rows.to_string(),
                    "--batch-size",
                    &batch.to_string(),
                    "--inflight",
                    &peer_inflight().to_string(),
                    "--table",
                    table,
                ]);
            }
            Client::RustPeer { batch } => {
                cmd.arg(&p.rust_peer).args([
                    "--grpc",
                    grpc,
                    "--rows",
                    &rows.to_string(),
                    "--batch-size",
                    &batch.to_string(),
                    "--inflight",
                    &peer_inflight().to_string(),
                    "--table",
                    table,
                ]);
            }
        }
        cmd
    }
}

/// Runs one client against the fast sink and checks the sink saw all its rows.
fn client(p: &Paths, sink: &mut FastSink, c: Client, rows: u64) -> anyhow::Result<Value> {
    let before = sink.stats()?;
    let (grpc, rest) = (sink.grpc.clone(), sink.rest.clone());
    let mut r = measured(c.command(p, &grpc, &rest, rows, "rows"), c.name())?;
    let after = sink.stats()?;
    let delta = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    if delta("rows") != rows {
        bail!("{}: the sink received {} rows, not {rows}", c.name(), delta("rows"));
    }
    let wall = r["wall_s"].as_f64().unwrap_or(f64::NAN);
    r["sink_requests"] = json!(delta("requests"));
    r["sink_row_bytes"] = json!(delta("row_bytes"));
    r["mb_per_s"] = json!(delta("row_bytes") as f64 / 1e6 / wall);
    if let Client::Bqsink(Bq { batch, workers, encoders, .. }) = c {
        r["batch_size"] = json!(batch);
        r["workers"] = json!(workers);
        r["encoders"] = json!(encoders);
    }
    eprintln!(
        "{:>9} {:>9} rows  {:>12}  batch {:>7}  workers {}  encoders {:>7}: {:>10.0} rows/s  {:>6.3} CPU s per 1M rows  peak RSS {:>6.1} MiB",
        c.name(),
        rows,
        r["api"].as_str().unwrap_or("-"),
        r["batch_size"].as_u64().map_or("default".to_owned(), |b| b.to_string()),
        r["workers"].as_u64().unwrap_or(1),
        r["encoders"].as_u64().map_or("default".to_owned(), |b| b.to_string()),
        r["rows_per_s"].as_f64().unwrap_or(f64::NAN),
        r["cpu_s_per_million_rows"].as_f64().unwrap_or(f64::NAN),
        r["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(r)
}

/// Runs a command under measure.py; returns the client's JSON line with the meter's figures
/// and the derived rates added.
pub(crate) fn measured(mut cmd: Command, name: &str) -> anyhow::Result<Value> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("cannot run {name}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('{')).collect();
    let [.., result, meter] = lines.as_slice() else {
        bail!("{name} printed no result: {text}");
    };
    let meter: Value = serde_json::from_str(meter)?;
    if !out.status.success() || meter["exit"].as_i64() != Some(0) {
        bail!("{name} failed: {meter}");
    }
    let mut r: Value = serde_json::from_str(result)?;
    let rows = r["rows"].as_f64().context("no row count")?;
    let cpu = meter["cpu_s"].as_f64().context("no CPU time")?;
    let wall = r["wall_s"].as_f64().context("no wall time")?;
    r["client"] = json!(name);
    r["cpu_user_s"] = meter["user_s"].clone();
    r["cpu_sys_s"] = meter["sys_s"].clone();
    r["cpu_s"] = json!(cpu);
    r["process_wall_s"] = meter["wall_s"].clone();
    r["cpu_s_per_million_rows"] = json!(cpu / rows * 1e6);
    r["cpu_us_per_row"] = json!(cpu / rows * 1e6);
    r["rows_per_s"] = json!(rows / wall);
    r["peak_rss_mib"] = json!(meter["maxrss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0);
    Ok(r)
}

/// bqsink and the Python client loading the same rows into bqemulator (same table, one after
/// the other), then a count of the table.
fn emulator_runs(p: &Paths, plan: &Plan) -> anyhow::Result<Value> {
    emulator::install(&p.root)?;
    let emu = bqsink_testkit::Emulator::start()?;
    let (rest, grpc) = (emu.rest_host(), emu.grpc_host());
    eprintln!("bqemulator: REST {rest}, gRPC {grpc}");
    let rows = plan.emulator_rows;
    let table = "emulator_rows";
    let mut result = json!({ "rows_each": rows, "batch_size": EMULATOR_BATCH });
    for c in
        [Client::Bqsink(Bq { batch: Some(EMULATOR_BATCH), ..Bq::default() }), Client::Python { batch: EMULATOR_BATCH }]
    {
        let r = measured(c.command(p, &grpc, &rest, rows, table), c.name())?;
        eprintln!(
            "{:>9} → bqemulator {rows} rows: {:>8.0} rows/s, client CPU {:.2} s",
            c.name(),
            r["rows_per_s"].as_f64().unwrap_or(f64::NAN),
            r["cpu_s"].as_f64().unwrap_or(f64::NAN)
        );
        result[c.name()] = r;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let count = rt.block_on(async {
        let endpoints = bqsink::Endpoints::emulator(&rest, &grpc);
        let client = bqsink::RestClient::new(&endpoints, bqsink::Auth::none())?;
        let q = client.query("bench", &format!("SELECT COUNT(*) FROM `bench.bench.{table}`")).await?;
        let n = q.rows.first().and_then(|r| r.first()).and_then(|c| c.as_str()).unwrap_or("0").parse::<u64>()?;
        anyhow::Ok(n)
    })?;
    emu.stop();
    if count != 2 * rows {
        bail!("bqemulator holds {count} rows after two loads of {rows}");
    }
    result["rows_in_table"] = json!(count);
    Ok(result)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub(crate) fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
    });
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "client_core": 0,
        "sink_core": 1,
    })
}

fn report(s: &Value) -> String {
    if !s["e2e"].is_array() {
        return bench_load::report(s) + &bench_segment::report(s);
    }
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let main = format!(
        "encode typed {:.0} rows/s, NDJSON {:.0} rows/s\n\
         end to end: {:.0} rows/s, {:.3} CPU s per 1M rows, {:.1} MB/s\n\
         python: {:.0} rows/s, {:.3} CPU s per 1M rows → ratio_vs_python {:.2} (peer CPU per row / bqsink's)\n\
         rust peer: {:.0} rows/s, {:.3} CPU s per 1M rows → ratio_vs_rust_peer {:.2}\n\
         peak RSS: {}",
        f("encode_typed_rows_per_s"),
        f("encode_ndjson_rows_per_s"),
        f("e2e_rows_per_s"),
        f("e2e_cpu_s_per_million_rows"),
        f("e2e_mb_per_s"),
        f("python_rows_per_s"),
        f("python_cpu_s_per_million_rows"),
        f("ratio_vs_python"),
        f("rust_peer_rows_per_s"),
        f("rust_peer_cpu_s_per_million_rows"),
        f("ratio_vs_rust_peer"),
        s["peak_rss_mib_by_rows"],
    );
    format!("{main}\n{}{}\n{}", bench_load::report(s), bench_segment::report(s), bench_typed::report(s))
}
