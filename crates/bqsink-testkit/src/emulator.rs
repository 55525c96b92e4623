//! A fresh, ephemeral [bqemulator](https://pypi.org/project/bqemulator/) per [`Emulator::start`]:
//! a local BigQuery with the REST API and the Storage Write gRPC API, backed by DuckDB.
//!
//! The emulator is installed by `cargo xtask emulator install` (or `cargo xtask test`) into
//! `<workspace>/target/bqemulator/{venv,home}`; see [`Emulator::start`] for how the install is
//! located and what happens when it is missing.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};

/// Environment variable overriding the venv holding bqemulator.
const ENV_VENV: &str = "BQSINK_EMULATOR_VENV";
/// Environment variable overriding the `HOME` given to bqemulator (holds `.duckdb/extensions`).
const ENV_HOME: &str = "BQSINK_EMULATOR_HOME";
/// The DuckDB version whose extensions the install seeds into `HOME/.duckdb/extensions`.
const DUCKDB_VERSION: &str = "1.5.5";
/// Marker written by `cargo xtask emulator install` once an install has completed.
const INSTALL_MARKER: &str = "bqsink-install.txt";
/// How long [`Emulator::start`] waits for the emulator to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Emulator::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a start is retried when a picked port was taken in the meantime.
const START_ATTEMPTS: u32 = 3;
/// How many lines of the emulator's log an error quotes.
const LOG_TAIL_LINES: usize = 40;
/// The readiness probe: the emulator answers 200 with an empty list for any project.
const READY_PATH: &str = "/bigquery/v2/projects/p/datasets";

/// Runs bqemulator's console script in-process, behind a lifeline: a daemon thread reads stdin
/// and, when it closes (the test process closed it, or died, or exited without dropping the
/// [`Emulator`], e.g. from a `static`), sends SIGTERM to the emulator itself, and forces the exit
/// 10 s later if the graceful shutdown hangs. So no emulator outlives the test process.
const LIFELINE: &str = r#"
import os, runpy, signal, sys, threading, time
def _lifeline():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(70)
threading.Thread(target=_lifeline, name="bqsink-lifeline", daemon=True).start()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

/// A running bqemulator on free loopback ports, stopped on [`Emulator::stop`] or drop.
///
/// Every instance is a separate, ephemeral (in-memory) server: nothing is shared between two
/// instances, and nothing survives [`Emulator::stop`]. The emulator's memory grows with every
/// append, so start one per test binary (or per test that needs a clean slate), not one per
/// machine.
///
/// The process is also tied to the test process through a pipe on its stdin: if the test
/// process dies, or exits without dropping the `Emulator` (for instance, one kept in a
/// `static`), the emulator shuts itself down.
#[derive(Debug)]
pub struct Emulator {
    /// `None` once stopped.
    child: Option<Child>,
    /// The lifeline: closing it makes the emulator SIGTERM itself.
    lifeline: Option<ChildStdin>,
    rest_port: u16,
    grpc_port: u16,
    log_path: PathBuf,
}

impl Emulator {
    /// Starts a fresh, ephemeral bqemulator on free loopback ports and waits (up to 30 s) until
    /// its REST API answers and its gRPC port is listening.
    ///
    /// Blocking, and creates no async runtime, so it can be called from sync tests and from
    /// async ones (typically 1.5–2 s).
    ///
    /// The install is looked up in `$BQSINK_EMULATOR_VENV` and `$BQSINK_EMULATOR_HOME` when set,
    /// else in `target/bqemulator/{venv,home}` under the workspace root (the nearest directory
    /// above this crate, or else above the current directory, whose `Cargo.toml` has a
    /// `[workspace]` table). The emulator's stdout and stderr go to a new file under
    /// `target/bqemulator/logs/` (see [`Emulator::log_path`]).
    ///
    /// # Errors
    ///
    /// When the install is missing, the error says so (`bqemulator is not installed at <path>;
    /// run `cargo xtask emulator install` (or `cargo xtask test`, which installs it)`): tests
    /// that need the emulator fail rather than skip. Also when the emulator exits during
    /// start-up or does not answer in time; those errors quote the last 40 lines of its log.
    /// A start that lost one of its ports to another process is retried (3 attempts in all).
    pub fn start() -> anyhow::Result<Emulator> {
        let install = Install::locate()?;
        let mut last_clash = None;
        for attempt in 1..=START_ATTEMPTS {
            match start_once(&install, attempt) {
                Ok(emulator) => return Ok(emulator),
                Err(StartError::PortClash(err)) => last_clash = Some(err),
                Err(StartError::Other(err)) => return Err(err),
            }
        }
        let err = last_clash.unwrap_or_else(|| anyhow!("no start attempt was made"));
        Err(err.context(format!("bqemulator lost one of its ports to another process {START_ATTEMPTS} times in a row")))
    }

    /// `host:port` of the REST API, e.g. `127.0.0.1:40123`.
    pub fn rest_host(&self) -> String {
        format!("127.0.0.1:{}", self.rest_port)
    }

    /// `host:port` of the Storage Write gRPC API (plaintext HTTP/2), e.g. `127.0.0.1:40124`.
    pub fn grpc_host(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Base URL of the REST API, e.g. `http://127.0.0.1:40123` (no trailing slash; BigQuery
    /// paths such as `/bigquery/v2/projects/p/datasets` go after it).
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// The file receiving this emulator's stdout and stderr (kept after it stops).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the emulator: SIGTERM, then SIGKILL if it has not exited within 5 s. Returns once
    /// the process is gone and its ports are closed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Closing the lifeline makes the emulator send itself SIGTERM (see LIFELINE).
        drop(self.lifeline.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) | Err(_) => break,
            }
        }
        eprintln!(
            "bqsink-testkit: bqemulator (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM; \
             killing it (log: {})",
            child.id(),
            self.log_path.display()
        );
        if let Err(err) = child.kill() {
            eprintln!("bqsink-testkit: killing bqemulator (pid {}) failed: {err}", child.id());
        }
        // Reap it, so it does not linger as a zombie.
        let _ = child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where bqemulator is installed and where its logs go.
#[derive(Debug)]
struct Install {
    venv: PathBuf,
    home: PathBuf,
    logs: PathBuf,
}

impl Install {
    fn locate() -> anyhow::Result<Install> {
        let env_path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Install::locate_with(env_path(ENV_VENV), env_path(ENV_HOME), workspace_root())
    }

    fn locate_with(
        env_venv: Option<PathBuf>,
        env_home: Option<PathBuf>,
        root: Option<PathBuf>,
    ) -> anyhow::Result<Install> {
        let default_base = root.as_ref().map(|root| root.join("target").join("bqemulator"));
        let no_root = || {
            anyhow!(
                "cannot locate bqemulator: no workspace root (a Cargo.toml with [workspace]) above \
                 {} or the current directory; set {ENV_VENV} and {ENV_HOME}",
                env!("CARGO_MANIFEST_DIR")
            )
        };
        let venv = match (&env_venv, &default_base) {
            (Some(venv), _) => venv.clone(),
            (None, Some(base)) => base.join("venv"),
            (None, None) => return Err(no_root()),
        };
        let home = match (&env_home, &default_base) {
            (Some(home), _) => home.clone(),
            (None, Some(base)) => base.join("home"),
            (None, None) => return Err(no_root()),
        };
        let logs = match &default_base {
            Some(base) => base.join("logs"),
            None => std::env::temp_dir().join("bqsink-bqemulator-logs"),
        };

        // A default install is complete once the xtask wrote its marker; an overridden venv
        // (made by hand) only needs the executable.
        let venv_ok = venv.join("bin").join("python").exists()
            && venv.join("bin").join("bqemulator").is_file()
            && (env_venv.is_some() || venv.join(INSTALL_MARKER).is_file());
        if !venv_ok {
            return Err(not_installed(&venv));
        }
        if !has_extensions(&home) {
            return Err(not_installed(&home));
        }
        Ok(Install { venv, home, logs })
    }
}

fn not_installed(path: &Path) -> anyhow::Error {
    anyhow!(
        "bqemulator is not installed at {}; run `cargo xtask emulator install` (or `cargo xtask \
         test`, which installs it)",
        path.display()
    )
}

/// Whether `home/.duckdb/extensions/v<duckdb>/<some platform>/` holds both extensions
/// bqemulator loads at start-up (without them DuckDB tries to download them, and fails offline).
fn has_extensions(home: &Path) -> bool {
    let dir = home.join(".duckdb").join("extensions").join(format!("v{DUCKDB_VERSION}"));
    let Ok(platforms) = fs::read_dir(&dir) else {
        return false;
    };
    platforms.flatten().any(|platform| {
        let p = platform.path();
        p.join("spatial.duckdb_extension").is_file() && p.join("avro.duckdb_extension").is_file()
    })
}

/// The nearest directory with a `Cargo.toml` holding a `[workspace]` table, above this crate's
/// manifest directory (as compiled) or else above the current directory.
pub(crate) fn workspace_root() -> Option<PathBuf> {
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let from_cwd = std::env::current_dir().ok();
    [Some(from_manifest), from_cwd]
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().find(|dir| is_workspace_root(dir)).map(Path::to_path_buf))
}

fn is_workspace_root(dir: &Path) -> bool {
    fs::read_to_string(dir.join("Cargo.toml"))
        .map(|text| text.lines().any(|line| line.trim() == "[workspace]"))
        .unwrap_or(false)
}

enum StartError {
    /// One of the picked ports was taken before the emulator bound it: worth another try.
    PortClash(anyhow::Error),
    Other(anyhow::Error),
}

fn start_once(install: &Install, attempt: u32) -> Result<Emulator, StartError> {
    let (rest_port, grpc_port) =
        free_port_pair().context("picking free loopback ports for bqemulator").map_err(StartError::Other)?;
    start_on(install, attempt, rest_port, grpc_port)
}

fn start_on(install: &Install, attempt: u32, rest_port: u16, grpc_port: u16) -> Result<Emulator, StartError> {
    let other = StartError::Other;
    fs::create_dir_all(&install.logs).with_context(|| format!("creating {}", install.logs.display())).map_err(other)?;
    let log_path = install.logs.join(log_file_name(attempt));
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display())).map_err(other)?;
    let log_err =
        log.try_clone().with_context(|| format!("duplicating the handle of {}", log_path.display())).map_err(other)?;

    let bin = install.venv.join("bin");
    let mut child = Command::new(bin.join("python"))
        .arg("-c")
        .arg(LIFELINE)
        .arg(bin.join("bqemulator"))
        .args(["start", "--rest-host", "127.0.0.1", "--rest-port"])
        .arg(rest_port.to_string())
        .args(["--grpc-host", "127.0.0.1", "--grpc-port"])
        .arg(grpc_port.to_string())
        .args(["--ephemeral", "--log-level", "warning"])
        .env("HOME", &install.home)
        .env("PYTHONUNBUFFERED", "1")
        // bqemulator also reads `.bqemu.toml` from its working directory: use one we control.
        .current_dir(&install.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .with_context(|| {
            format!(
                "spawning {} (bqemulator); reinstall with `cargo xtask emulator install` \
                 after deleting {}",
                bin.join("python").display(),
                install.venv.display()
            )
        })
        .map_err(other)?;
    let lifeline = child.stdin.take();
    let mut emulator = Emulator { child: Some(child), lifeline, rest_port, grpc_port, log_path };

    match wait_ready(&mut emulator) {
        Ok(()) => Ok(emulator),
        Err(failure) => {
            emulator.shutdown();
            let tail = log_tail(&emulator.log_path);
            // uvicorn and grpc both say "Address already in use" when a port was taken.
            let clash = fs::read(&emulator.log_path)
                .is_ok_and(|log| String::from_utf8_lossy(&log).to_ascii_lowercase().contains("address already in use"));
            let err = anyhow!(
                "{failure} (REST port {rest_port}, gRPC port {grpc_port}); last {LOG_TAIL_LINES} \
                 lines of {}:\n{tail}",
                emulator.log_path.display()
            );
            Err(if clash { StartError::PortClash(err) } else { StartError::Other(err) })
        }
    }
}

/// Polls until REST answers 200 and the gRPC port is listening (bqemulator binds gRPC only after
/// REST is up). Where `/proc` tells, both ports must be held by our process, so a port taken by
/// another process between picking and binding is never mistaken for readiness (our process
/// then exits, and the start is retried). Returns why it gave up.
fn wait_ready(emulator: &mut Emulator) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + START_TIMEOUT;
    let mut last = String::from("no answer yet");
    let mut rest_ready = false;
    let pid = emulator.child.as_ref().map_or(0, Child::id);
    loop {
        if let Some(exited) = emulator.child_exited() {
            return Err(format!("bqemulator exited during start-up ({exited}) after {:.1?}", started.elapsed()));
        }
        if !rest_ready {
            match http_get_status(emulator.rest_port, READY_PATH) {
                Ok(200) => rest_ready = true,
                Ok(status) => last = format!("GET {READY_PATH} answered {status}"),
                Err(err) => last = format!("GET {READY_PATH}: {err}"),
            }
        }
        if rest_ready {
            match (listens(pid, emulator.rest_port), listens(pid, emulator.grpc_port)) {
                (Some(true), Some(true)) => return Ok(()),
                (Some(false), _) => last = "the REST port answers, but not from our process".into(),
                (_, Some(false)) => last = "the gRPC port is not bound by our process yet".into(),
                // No /proc: fall back to "the gRPC port accepts connections".
                _ => {
                    let grpc = SocketAddrV4::new(Ipv4Addr::LOCALHOST, emulator.grpc_port);
                    match TcpStream::connect_timeout(&grpc.into(), Duration::from_secs(1)) {
                        Ok(_) => return Ok(()),
                        Err(err) => last = format!("gRPC port: {err}"),
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("bqemulator did not become ready within {START_TIMEOUT:?} ({last})"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` holds a socket listening on TCP `port` (IPv4 or IPv6), read from
/// `/proc`; `None` when `/proc` cannot tell (not Linux, or not readable).
fn listens(pid: u32, port: u16) -> Option<bool> {
    let mut inodes = HashSet::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        // `sl local_address rem_address st ... inode`: state 0A is LISTEN, the port is hex.
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let local_port = fields[1].rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Ok(inode) = fields[9].parse::<u64>() {
                    inodes.insert(inode);
                }
            }
        }
    }
    if !readable {
        return None;
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|target| {
                let target = target.to_str()?;
                target.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()
            })
            .is_some_and(|inode| inodes.contains(&inode))
    }))
}

impl Emulator {
    /// `Some(description)` when the process has exited (or cannot be polled).
    fn child_exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(format!("cannot poll the process: {err}")),
        }
    }
}

/// Two distinct free loopback ports (bound together, then released).
fn free_port_pair() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// `emulator-<unix ms>-<pid>-<n>-a<attempt>.log`: unique across processes and within one.
fn log_file_name(attempt: u32) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("emulator-{millis}-{}-{n}-a{attempt}.log", std::process::id())
}

/// Status code of `GET path` on `127.0.0.1:port` (HTTP/1.1, `Connection: close`).
fn http_get_status(port: u16, path: &str) -> io::Result<u16> {
    let addr = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {head:?}")))
}

/// The last lines of the log (each cut to 400 characters), or why it could not be read.
fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            let mut out = String::new();
            for line in &lines[start..] {
                let cut: String = line.chars().take(400).collect();
                out.push_str("  | ");
                out.push_str(&cut);
                if cut.len() < line.len() {
                    out.push_str(" …");
                }
                out.push('\n');
            }
            if out.is_empty() {
                out.push_str("  (empty)\n");
            }
            out
        }
        Err(err) => format!("  (cannot read the log: {err})\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_root() {
        let root = workspace_root().expect("workspace root");
        assert!(root.join("crates").join("bqsink-testkit").is_dir(), "{}", root.display());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("bqsink-testkit-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).expect("write");
        let tail = log_tail(&path);
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.starts_with("  | line 60\n"), "{tail}");
        assert!(tail.ends_with("  | line 99\n"), "{tail}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_install_says_how_to_install() {
        let root = std::env::temp_dir().join(format!("bqsink-testkit-noinstall-{}", std::process::id()));
        let err = Install::locate_with(None, None, Some(root.clone())).expect_err("not installed");
        let venv = root.join("target").join("bqemulator").join("venv");
        assert_eq!(
            err.to_string(),
            format!(
                "bqemulator is not installed at {}; run `cargo xtask emulator install` (or `cargo \
                 xtask test`, which installs it)",
                venv.display()
            )
        );
        let err = Install::locate_with(Some(root.join("v")), None, None).expect_err("no root");
        assert!(err.to_string().contains(ENV_HOME), "{err}");
    }

    /// Runs the real emulator: a taken port must be classified as a clash (so it is retried).
    #[test]
    fn a_taken_port_is_a_clash() {
        let install = Install::locate().expect("bqemulator installed");
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let taken_port = taken.local_addr().expect("addr").port();
        let (free, _) = free_port_pair().expect("ports");
        for (rest, grpc) in [(taken_port, free), (free, taken_port)] {
            match start_on(&install, 1, rest, grpc) {
                Err(StartError::PortClash(err)) => {
                    assert!(err.to_string().contains("exited during start-up"), "{err:#}")
                }
                Err(StartError::Other(err)) => panic!("not classified as a clash: {err:#}"),
                Ok(_) => panic!("started on a taken port"),
            }
        }
    }

    #[test]
    fn listens_sees_our_own_listener() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(listens(std::process::id(), port), Some(true));
        drop(listener);
        assert_eq!(listens(std::process::id(), port), Some(false));
    }

    #[test]
    fn emulator_can_be_shared() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Emulator>();
    }

    #[test]
    fn free_ports_differ() {
        let (a, b) = free_port_pair().expect("ports");
        assert_ne!(a, b);
    }
}
