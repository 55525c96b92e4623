//! `cargo xtask emulator install`: installs bqemulator (a local BigQuery, REST + Storage Write gRPC,
//! backed by DuckDB) into `target/bqemulator/` for the integration tests.
//!
//! Layout (the testkit's `Emulator::start` looks in the same place):
//!
//! ```text
//! target/bqemulator/venv/                       Python venv with bqemulator and its pinned deps
//! target/bqemulator/venv/bqsink-install.txt     marker: the requirement set that was installed
//! target/bqemulator/home/.duckdb/extensions/v1.5.5/<platform>/{spatial,avro}.duckdb_extension
//! ```
//!
//! The emulator is started with `HOME=target/bqemulator/home`: DuckDB would otherwise try to
//! download its `spatial` and `avro` extensions at start-up, which fails offline. The pip
//! packages `duckdb-extension-{spatial,avro}` ship those files, so the install copies them into
//! DuckDB's extension directory.
//!
//! The install is idempotent: when the marker matches the pinned requirements and the executable
//! and both extension files are in place, it returns at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};

/// The DuckDB version the extensions are built for; must match the `duckdb` pin below.
const DUCKDB_VERSION: &str = "1.5.5";

/// What gets pip-installed. `google-cloud-bigquery-storage` (the Storage Write API protos) is a
/// dependency of bqemulator itself, so it is not listed here.
const REQUIREMENTS: &[&str] = &[
    "bqemulator==1.4.0",
    "duckdb==1.5.5",
    "duckdb-extension-spatial==1.5.5",
    "duckdb-extension-avro==1.5.5",
    "numpy",
    "protobuf",
];

/// The DuckDB extensions bqemulator loads at start-up, as (pip package dir, extension name).
const EXTENSIONS: &[(&str, &str)] = &[("duckdb_extension_spatial", "spatial"), ("duckdb_extension_avro", "avro")];

/// Name of the marker file written into the venv once the install has completed.
const MARKER: &str = "bqsink-install.txt";

/// How to retry, appended to every error.
const RETRY: &str = "fix the cause and run `cargo xtask emulator install` again \
                     (delete target/bqemulator to start from scratch)";

/// `(venv, home)` of the bqemulator install under the workspace `root`:
/// `target/bqemulator/venv` and `target/bqemulator/home`.
pub(crate) fn paths(root: &Path) -> (PathBuf, PathBuf) {
    let base = root.join("target").join("bqemulator");
    (base.join("venv"), base.join("home"))
}

/// Installs bqemulator into `target/bqemulator/` under the workspace `root` (see the module docs).
///
/// Fast no-op when already installed. Needs Python >= 3.11 with `venv` and network access to
/// PyPI on a fresh install (about 1–2 minutes). Progress goes to stderr.
pub(crate) fn install(root: &Path) -> anyhow::Result<()> {
    let (venv, home) = paths(root);
    let marker_text = marker_text();

    if let Some(platform) = installed_platform(&venv, &home, &marker_text) {
        eprintln!("xtask: bqemulator already installed at {} (duckdb platform {platform})", venv.display());
        return Ok(());
    }

    let started = Instant::now();
    eprintln!("xtask: installing bqemulator into {}", venv.display());

    let python = find_python()?;
    eprintln!("xtask: using {python}");

    if venv.exists() {
        eprintln!("xtask: removing incomplete or outdated venv at {}", venv.display());
        fs::remove_dir_all(&venv).with_context(|| format!("removing {} failed; {RETRY}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {} failed; {RETRY}", parent.display()))?;
    }

    eprintln!("xtask: creating venv");
    run(
        Command::new(&python).arg("-m").arg("venv").arg(&venv),
        "creating the Python venv (on Debian, `apt-get install python3-venv` may be missing)",
    )?;

    let venv_python = venv.join("bin").join("python");
    eprintln!("xtask: pip install {} (this takes a minute or two)", REQUIREMENTS.join(" "));
    run(
        Command::new(&venv_python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input"])
            .args(REQUIREMENTS),
        "pip install of bqemulator and its dependencies (needs access to PyPI)",
    )?;

    let purelib = python_output(
        &venv_python,
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        "locating the venv's site-packages",
    )?;
    let platform = python_output(
        &venv_python,
        "import duckdb; print(duckdb.connect().execute('PRAGMA platform').fetchone()[0])",
        "asking duckdb for its platform",
    )?;

    let ext_dir = extension_dir(&home, &platform);
    eprintln!("xtask: seeding DuckDB extensions into {}", ext_dir.display());
    fs::create_dir_all(&ext_dir).with_context(|| format!("creating {} failed; {RETRY}", ext_dir.display()))?;
    for (package, name) in EXTENSIONS {
        let file = format!("{name}.duckdb_extension");
        let src = Path::new(&purelib).join(package).join("extensions").join(format!("v{DUCKDB_VERSION}")).join(&file);
        let dst = ext_dir.join(&file);
        fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {} failed; {RETRY}", src.display(), dst.display()))?;
    }

    // Smoke check: the CLI imports and runs.
    run(
        Command::new(venv.join("bin").join("bqemulator")).arg("version"),
        "running `bqemulator version` in the fresh venv",
    )?;

    let marker = venv.join(MARKER);
    fs::write(&marker, format!("{marker_text}platform={platform}\n"))
        .with_context(|| format!("writing {} failed; {RETRY}", marker.display()))?;

    eprintln!(
        "xtask: bqemulator installed in {:.0?} (venv {}, home {})",
        started.elapsed(),
        venv.display(),
        home.display()
    );
    Ok(())
}

/// The marker's content, minus the platform line: changes whenever the pins change.
fn marker_text() -> String {
    let mut text = String::new();
    for req in REQUIREMENTS {
        text.push_str(req);
        text.push('\n');
    }
    text
}

/// `<home>/.duckdb/extensions/v<duckdb>/<platform>`.
fn extension_dir(home: &Path, platform: &str) -> PathBuf {
    home.join(".duckdb").join("extensions").join(format!("v{DUCKDB_VERSION}")).join(platform)
}

/// The DuckDB platform of a complete, current install, or `None` when (re)installing is needed.
fn installed_platform(venv: &Path, home: &Path, expected: &str) -> Option<String> {
    let marker = fs::read_to_string(venv.join(MARKER)).ok()?;
    let rest = marker.strip_prefix(expected)?;
    let platform = rest.trim().strip_prefix("platform=")?.trim().to_owned();
    if platform.is_empty() || platform.contains('/') || !venv.join("bin").join("bqemulator").is_file() {
        return None;
    }
    let ext_dir = extension_dir(home, &platform);
    EXTENSIONS.iter().all(|(_, name)| ext_dir.join(format!("{name}.duckdb_extension")).is_file()).then_some(platform)
}

/// A Python interpreter >= 3.11 (bqemulator's floor): `$BQSINK_PYTHON`, else the first of
/// `python3`, `python3.13`, `python3.12`, `python3.11` that is new enough.
fn find_python() -> anyhow::Result<String> {
    if let Ok(python) = std::env::var("BQSINK_PYTHON") {
        return match python_version(&python) {
            Some(v) if v >= (3, 11) => Ok(python),
            Some((major, minor)) => bail!(
                "BQSINK_PYTHON={python} is Python {major}.{minor}, bqemulator needs >= 3.11; \
                 point BQSINK_PYTHON at a newer interpreter and run `cargo xtask emulator install` again"
            ),
            None => bail!(
                "BQSINK_PYTHON={python} could not be run; point it at a Python >= 3.11 and run \
                 `cargo xtask emulator install` again"
            ),
        };
    }
    let mut seen = Vec::new();
    for candidate in ["python3", "python3.13", "python3.12", "python3.11"] {
        match python_version(candidate) {
            Some(v) if v >= (3, 11) => return Ok(candidate.to_owned()),
            Some((major, minor)) => seen.push(format!("{candidate} is {major}.{minor}")),
            None => {}
        }
    }
    bail!(
        "no Python >= 3.11 found (bqemulator needs it){}; install one (e.g. `apt-get install \
         python3 python3-venv`) or set BQSINK_PYTHON, then run `cargo xtask emulator install` again",
        if seen.is_empty() { String::new() } else { format!(": {}", seen.join(", ")) }
    )
}

/// `(major, minor)` of a Python interpreter, or `None` when it can't be run.
fn python_version(python: &str) -> Option<(u32, u32)> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.version_info[0], sys.version_info[1])"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
        _ => None,
    }
}

/// Runs `cmd` with inherited stdio; errors say what failed and how to retry.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: could not start {:?}; {RETRY}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status}); {RETRY}");
    }
    Ok(())
}

/// Runs `python -c code` and returns its trimmed stdout.
fn python_output(python: &Path, code: &str, what: &str) -> anyhow::Result<String> {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .with_context(|| format!("{what}: could not start {}; {RETRY}", python.display()))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}; {RETRY}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8(out.stdout).with_context(|| format!("{what}: output is not UTF-8; {RETRY}"))?;
    let text = text.trim();
    if text.is_empty() {
        bail!("{what}: no output; {RETRY}");
    }
    Ok(text.to_owned())
}
