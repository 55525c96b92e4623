//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `demo` — install and start bqemulator, load the bundled sample data with `bqsink load`,
//!   query each table back, print it with its row count, load the bundled Segment events with
//!   `bqsink segment` and list the tables they made, stop the emulator.
//! - `test` — install bqemulator and the Kafka test broker if missing, then run every test of
//!   the workspace.
//! - `emulator install` — install bqemulator into `target/bqemulator`.
//! - `kafka install` — install the Kafka test broker (tansu) into `target/kafka`.
//! - `golden` — regenerate the golden protobuf fixtures with Python's `protobuf` package.
//! - `bench [--quick] [--load-only] [--segment-only]` — bqsink against Google's Python client and
//!   a Rust peer on a local fast sink (through the library, and `bqsink load` reading a file),
//!   `bqsink segment` on Segment events, and into bqemulator; writes `target/bench/summary.json`
//!   and `throughput.svg`. `--load-only` runs only the file-loading section, `--segment-only`
//!   only the Segment one.
//! - `fuzz [--seconds N] [TARGET]` — run the cargo-fuzz targets of `fuzz/` (each, or the one
//!   named) for N seconds (default 60) with a per-input timeout; print executions and corpus size.

#![allow(clippy::print_stdout)]

mod bench;
mod bench_chart;
mod bench_data;
mod bench_load;
mod bench_segment;
mod bench_typed;
mod emulator;
mod fuzz;
mod kafka;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["demo"] => demo(&root),
        ["test", rest @ ..] => test(&root, rest),
        ["emulator", "install"] => emulator::install(&root),
        ["kafka", "install"] => kafka::install(&root),
        ["golden"] => golden(&root),
        ["bench", rest @ ..] => bench::bench(&root, rest),
        ["fuzz", rest @ ..] => fuzz::fuzz(&root, rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 demo               load bundled sample data into a local bqemulator and show it\n  \
                 test [ARGS…]       install bqemulator and tansu if missing, run every test (ARGS go to cargo test)\n  \
                 emulator install   install bqemulator into target/bqemulator\n  \
                 kafka install      install the Kafka test broker (tansu) into target/kafka\n  \
                 golden             regenerate tests/fixtures/golden/golden.json with Python protobuf\n  \
                 bench [--quick]    bqsink vs the Python and Rust clients on a local sink; target/bench/summary.json\n  \
                 bench --load-only  only `bqsink load` of a file vs the peers (with --quick: 100k/1M rows)\n  \
                 bench --segment-only  only `bqsink segment` on 200k and 1M events (with --quick: 20k/100k)\n  \
                 fuzz [--seconds N] [TARGET]  run the fuzz targets of fuzz/ (each N s, default 60; nightly + cargo-fuzz)"
            );
            bail!("unknown or missing task")
        }
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(root: &Path, extra: &[&str]) -> anyhow::Result<()> {
    emulator::install(root)?;
    kafka::install(root)?;
    run(cargo().current_dir(root).args(["test", "--workspace", "--all-targets"]).args(extra))?;
    run(cargo().current_dir(root).args(["test", "--workspace", "--doc"]))?;
    Ok(())
}

fn golden(root: &Path) -> anyhow::Result<()> {
    emulator::install(root)?;
    let (venv, _) = emulator::paths(root);
    run(Command::new(venv.join("bin").join("python"))
        .current_dir(root)
        .arg(root.join("tests/fixtures/golden/make_golden.py")))
}

/// Sample tables of the demo: (table, schema file, data file, extra `bqsink load` flags).
const DEMO_TABLES: &[(&str, &str, &str, &[&str])] = &[
    (
        "events",
        "events.schema.json",
        "events.ndjson",
        &["--partition-field", "at", "--partition-type", "DAY", "--cluster", "event"],
    ),
    ("users", "users.schema.json", "users.ndjson", &[]),
];

fn demo(root: &Path) -> anyhow::Result<()> {
    emulator::install(root)?;
    run(cargo().current_dir(root).args(["build", "--quiet", "--package", "bqsink-cli"]))?;
    let bin = root.join("target/debug/bqsink");
    let emu = bqsink_testkit::Emulator::start()?;
    println!("bqemulator: REST {} · gRPC {}", emu.rest_host(), emu.grpc_host());
    let data = root.join("tests/fixtures/demo");
    for (table, schema, file, flags) in DEMO_TABLES {
        println!("\n== bqsink load {table} ==");
        run(Command::new(&bin)
            .env("BIGQUERY_EMULATOR_HOST", emu.rest_host())
            .env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host())
            .args(["load", "--project", "demo-project", "--dataset", "demo", "--create-dataset", "--table", table])
            .arg("--schema")
            .arg(data.join(schema))
            .args(*flags)
            .arg(data.join(file)))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let endpoints = bqsink::Endpoints::emulator(&emu.rest_host(), &emu.grpc_host());
        let rest = bqsink::RestClient::new(&endpoints, bqsink::Auth::none())?;
        for (table, ..) in DEMO_TABLES {
            let count =
                rest.query("demo-project", &format!("SELECT COUNT(*) FROM `demo-project.demo.{table}`")).await?;
            let n = count.rows.first().and_then(|r| r.first()).cloned().unwrap_or_default();
            println!("\n== demo.{table}: {} rows ==", n.as_str().unwrap_or("?"));
            let sample = rest
                .query("demo-project", &format!("SELECT * FROM `demo-project.demo.{table}` ORDER BY 1 LIMIT 5"))
                .await?;
            println!("{}", sample.schema.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(" | "));
            for row in &sample.rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&sample.schema.fields)
                    .map(|(c, f)| match c {
                        // TIMESTAMP cells come back as µs since the epoch.
                        serde_json::Value::String(s) if f.field_type == bqsink::FieldType::Timestamp => s
                            .parse::<i64>()
                            .ok()
                            .and_then(bqsink::Timestamp::from_micros)
                            .map_or_else(|| s.clone(), |t| t.to_string()),
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect();
                println!("{}", cells.join(" | "));
            }
        }
        anyhow::Ok(())
    })?;
    // Analytics events: the bundled Segment sample into Segment's warehouse tables.
    let cli = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.env("BIGQUERY_EMULATOR_HOST", emu.rest_host())
            .env("BIGQUERY_STORAGE_EMULATOR_HOST", emu.grpc_host())
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    };
    println!("\n== bqsink segment (Segment payloads; rows that conflict with a column are dead-lettered) ==");
    let dlq = root.join("target/demo-segment-dlq.ndjson");
    let _ = std::fs::remove_file(&dlq);
    let sample = root.join("tests/fixtures/segment/sample.ndjson");
    let status = cli(&["segment", "--project", "demo-project", "--dataset", "analytics", "--dlq"])
        .arg(&dlq)
        .arg(&sample)
        .status()
        .context("cannot run bqsink segment")?;
    // Exit 2 means "some rows dead-lettered", which the sample is made to show.
    if !matches!(status.code(), Some(0 | 2)) {
        bail!("bqsink segment failed with {status}");
    }
    println!("\n== bqsink tables analytics ==");
    run(&mut cli(&["tables", "--project", "demo-project", "--dataset", "analytics"]))?;
    emu.stop();
    println!("\nbqemulator stopped.");
    Ok(())
}
