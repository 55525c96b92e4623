//! `cargo xtask fuzz [--seconds N] [TARGET]`: runs the cargo-fuzz targets of `fuzz/` one after
//! the other, each for N seconds (default 60), with a per-input timeout (a slow input is a
//! finding: no input may take more than linear time), and prints each target's executions and
//! corpus size. Needs cargo-fuzz (installed when missing) and a nightly toolchain
//! (`RUSTC_BOOTSTRAP=1` on the default one otherwise).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The targets (`fuzz/fuzz_targets/<name>.rs`) with the longest input each is given.
pub(crate) const TARGETS: &[(&str, usize)] = &[
    ("ndjson", 4096),
    ("csv", 4096),
    ("json_array", 4096),
    ("segment", 8192),
    ("schema_roundtrip", 8192),
    ("chunking", 4096),
    ("config", 2048),
];

/// Seconds one input may take before libFuzzer reports it as a hang.
const TIMEOUT_SECONDS: u32 = 5;

pub(crate) fn fuzz(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut seconds: u64 = 60;
    let mut only = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--seconds" => {
                let n = rest.next().context("--seconds needs a number")?;
                seconds = n.parse().with_context(|| format!("--seconds {n}: not a number"))?;
            }
            name if !name.starts_with('-') && only.is_none() => only = Some(name),
            other => bail!("unknown argument {other}; usage: cargo xtask fuzz [--seconds N] [TARGET]"),
        }
    }
    let targets: Vec<(&str, usize)> = match only {
        Some(name) => match TARGETS.iter().find(|(t, _)| *t == name) {
            Some(t) => vec![*t],
            None => bail!(
                "no fuzz target `{name}`; the targets: {}",
                TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        },
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let nightly = has_nightly();
    if !nightly {
        eprintln!("no nightly toolchain: building with RUSTC_BOOTSTRAP=1 on the default one");
    }
    let dir = root.join("fuzz");
    let logs = dir.join("target").join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut failed = Vec::new();
    let mut report = Vec::new();
    for (target, max_len) in targets {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let before = corpus_size(&corpus);
        let log = logs.join(format!("{target}.log"));
        eprintln!("== {target}: {seconds} s (log: {})", log.display());
        let mut cmd = Command::new("cargo");
        if nightly {
            cmd.arg("+nightly").env_remove("RUSTUP_TOOLCHAIN");
        } else {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        cmd.current_dir(&dir)
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={TIMEOUT_SECONDS}"))
            .arg(format!("-max_len={max_len}"))
            .args(["-print_final_stats=1", "-report_slow_units=1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let execs = stat(&text, "stat::number_of_executed_units").unwrap_or_else(|| "?".into());
        let after = corpus_size(&corpus);
        let line = format!(
            "{target}: {execs} executions in {seconds} s; corpus {} files / {} bytes (was {} / {})",
            after.0, after.1, before.0, before.1
        );
        if status.success() {
            report.push(line);
        } else {
            let finding = text
                .lines()
                .filter(|l| {
                    l.contains("panicked at") || l.contains("ERROR: libFuzzer") || l.contains("Test unit written")
                })
                .collect::<Vec<_>>()
                .join("\n    ");
            report.push(format!("{line}\n    FAILED ({status}):\n    {finding}"));
            failed.push(target);
        }
    }
    println!("\n{}", report.join("\n"));
    if !failed.is_empty() {
        bail!(
            "fuzzing found problems in {}: the inputs are under fuzz/artifacts/<target>/; keep each as \
             fuzz/regressions/<target>/<name> and fix it with a named unit test",
            failed.join(", ")
        );
    }
    println!("\nMinimise a corpus before committing it: cd fuzz && cargo +nightly fuzz cmin <target>");
    Ok(())
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let found = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    eprintln!("cargo-fuzz is missing: installing it (`cargo install cargo-fuzz`, a few minutes)");
    let status = Command::new("cargo").args(["install", "cargo-fuzz"]).status().context("cannot run cargo install")?;
    if !status.success() {
        bail!("`cargo install cargo-fuzz` failed; install it by hand and run again");
    }
    Ok(())
}

fn has_nightly() -> bool {
    Command::new("cargo")
        .args(["+nightly", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The value of libFuzzer's final `name: value` stats line.
fn stat(log: &str, name: &str) -> Option<String> {
    log.lines().rev().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start_matches(':').trim().to_owned())
}

/// Files and bytes in a corpus directory.
fn corpus_size(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
}
