//! Authentication against a local OAuth2 token endpoint ([`bqsink_testkit::oauth::TokenServer`]):
//! the header carries exactly the token the server issued for a correctly signed assertion,
//! tokens are refreshed before they expire, discovery honours `GOOGLE_APPLICATION_CREDENTIALS`
//! and gives up in bounded time, and no token or key material reaches `Debug` or tracing.
//!
//! Tests that need a controlled environment (`GOOGLE_APPLICATION_CREDENTIALS`, `HOME`, `PATH`)
//! run this test binary again as a child process with that environment (the `child_*` tests,
//! ignored on their own), so that no test mutates the environment of this process.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};
use bqsink_testkit::oauth::{throwaway_service_account, ServiceAccountKey, TokenServer};
use bqsink_transport::auth::{CREDENTIALS_ENV, DISCOVERY_TIMEOUT};
use bqsink_transport::{Auth, TransportError};

type Result<T = ()> = anyhow::Result<T>;

/// Where a child test writes what the parent checks; set only for children.
const CHILD_OUT: &str = "BQSINK_AUTH_TEST_CHILD_OUT";
/// The file the fake `gcloud` touches when run.
const GCLOUD_MARKER: &str = "BQSINK_AUTH_TEST_GCLOUD_MARKER";
/// Discovery must fail within this (the brief allows `DISCOVERY_TIMEOUT` plus 1 s of slack).
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(6);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Two RSA keys for all tests of this process: generating one takes seconds unoptimized.
fn keys() -> Result<&'static [ServiceAccountKey; 2]> {
    static KEYS: OnceLock<std::result::Result<[ServiceAccountKey; 2], String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || throwaway_service_account("http://127.0.0.1:1/token").map_err(|e| format!("{e:#}"));
        Ok([make()?, make()?])
    })
    .as_ref()
    .map_err(|e| anyhow!("generating throwaway keys: {e}"))
}

/// The shared key, with `server` as its `token_uri`, trusted by `server`.
fn key_for(server: &TokenServer) -> Result<ServiceAccountKey> {
    let key = keys()?[0].with_token_uri(server.token_uri())?;
    server.trust(&key);
    Ok(key)
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "bqsink-auth-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write_key(&self, key: &ServiceAccountKey) -> Result<PathBuf> {
        let path = self.0.join(format!("{}.json", key.private_key_id));
        key.write_to(&path)?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bearer(server: &TokenServer) -> Result<String> {
    Ok(format!("Bearer {}", server.current_token().ok_or_else(|| anyhow!("the server issued no token"))?))
}

/// Everything written by a TRACE-level `fmt` subscriber, spans' enter/exit included.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Captures all events of this thread (and of threads that inherit its dispatcher).
fn capture_tracing() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// The secrets of `key` worth looking for: every line of the PEM body.
fn key_material(key: &ServiceAccountKey) -> Vec<String> {
    key.private_key_pem.lines().filter(|l| !l.starts_with("-----")).map(str::to_owned).collect()
}

fn assert_no_secrets(text: &str, what: &str, secrets: &[String]) {
    assert!(!text.contains("PRIVATE KEY"), "{what} shows a private key");
    for secret in secrets.iter().filter(|s| s.len() >= 16) {
        assert!(!text.contains(secret.as_str()), "{what} shows a secret ({}...)", &secret[..8]);
    }
}

/// Runs the ignored test `name` of this binary in a child process with `env` (on top of ours,
/// without `GOOGLE_APPLICATION_CREDENTIALS` unless given) and returns what it wrote to
/// [`CHILD_OUT`].
async fn run_child(name: &str, env: &[(&str, OsString)]) -> Result<String> {
    let dir = TempDir::new("child")?;
    let out = dir.path().join("out.txt");
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env_remove(CREDENTIALS_ENV)
        .env_remove("CLOUDSDK_CONFIG")
        .env(CHILD_OUT, &out)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow!("child test {name} did not finish within 120 s"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "child test {name} failed:\n{stdout}\n{stderr}");
    ensure!(stdout.contains("1 passed"), "child test {name} did not run:\n{stdout}\n{stderr}");
    std::fs::read_to_string(&out).with_context(|| format!("child test {name} wrote nothing"))
}

/// In a child test: where to write, or `None` when run directly (then the test does nothing).
fn child_out() -> Option<PathBuf> {
    let out = std::env::var_os(CHILD_OUT).map(PathBuf::from);
    if out.is_none() {
        eprintln!("not run by its parent test: nothing to do");
    }
    out
}

fn assert_names_the_three_ways(message: &str) {
    for needle in [
        "credentials_path",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcloud auth application-default login",
        "metadata server",
    ] {
        assert!(message.contains(needle), "the error does not mention {needle:?}: {message}");
    }
}

// ---------------------------------------------------------------------------------------------
// Service-account keys against the token server

#[tokio::test]
async fn key_file_header_is_exactly_the_issued_token_and_is_cached() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("key")?;
    let path = dir.write_key(&key_for(&server)?)?;

    let auth = Auth::from_key_file(&path)?;
    assert!(auth.is_enabled());
    assert_eq!(server.issued(), 0, "a token was fetched before it was needed");

    let header = auth.authorization_header().await?;
    assert_eq!(header, Some(bearer(&server)?));
    assert_eq!(server.issued(), 1);
    assert_eq!(server.refused(), 0);

    // Valid for an hour: the next request reuses it.
    assert_eq!(auth.authorization_header().await?, header);
    assert_eq!(server.issued(), 1, "a valid token was fetched again");

    assert_eq!(Auth::none().authorization_header().await?, None);
    assert!(!Auth::none().is_enabled());
    Ok(())
}

#[tokio::test]
async fn key_signed_by_another_rsa_key_is_refused() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("forged")?;
    // The server trusts keys()[0]; the file claims its identity but holds keys()[1]'s private key.
    let forged = key_for(&server)?.with_private_key_of(&keys()?[1])?;
    let auth = Auth::from_key_file(&dir.write_key(&forged)?)?;

    match auth.authorization_header().await {
        Err(TransportError::Auth(message)) => assert!(message.contains("access token"), "{message}"),
        other => panic!("expected an Auth error, got {other:?}"),
    }
    assert_eq!(server.issued(), 0);
    assert!(server.refused() >= 1);
    let why = server.last_refusal().unwrap_or_default();
    assert!(why.contains("Signature"), "refused for another reason: {why}");

    // The genuine key is accepted by the same server.
    let genuine = Auth::from_key_file(&dir.write_key(&key_for(&server)?)?)?;
    assert_eq!(genuine.authorization_header().await?, Some(bearer(&server)?));
    Ok(())
}

#[tokio::test]
async fn assertion_for_another_audience_is_refused() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("aud")?;
    // Same server, another path: the JWT's aud is no longer the server's token_uri.
    let key = key_for(&server)?.with_token_uri(&format!("http://{}/oauth2/v4/token", server.addr()))?;
    let auth = Auth::from_key_file(&dir.write_key(&key)?)?;

    assert!(matches!(auth.authorization_header().await, Err(TransportError::Auth(_))));
    assert_eq!(server.issued(), 0);
    let why = server.last_refusal().unwrap_or_default();
    assert!(why.contains("aud"), "refused for another reason: {why}");
    Ok(())
}

#[tokio::test]
async fn missing_or_malformed_key_file_is_an_auth_error() -> Result {
    let dir = TempDir::new("bad")?;
    let missing = dir.path().join("missing.json");
    match Auth::from_key_file(&missing) {
        Err(TransportError::Auth(m)) => assert!(m.contains("missing.json"), "{m}"),
        other => panic!("expected an Auth error, got {other:?}"),
    }
    let not_a_key = dir.path().join("not-a-key.json");
    std::fs::write(&not_a_key, r#"{"type": "authorized_user"}"#)?;
    assert!(matches!(Auth::from_key_file(&not_a_key), Err(TransportError::Auth(_))));
    Ok(())
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("refresh")?;
    let auth = Auth::from_key_file(&dir.write_key(&key_for(&server)?)?)?;

    // gcp_auth refreshes once fewer than 20 s remain: a 22 s token is reused for 2 s only.
    server.set_expires_in(22);
    let first = auth.authorization_header().await?;
    assert_eq!(first, Some(bearer(&server)?));
    assert_eq!(auth.authorization_header().await?, first, "refreshed while more than 20 s remained");
    assert_eq!(server.issued(), 1);

    // Tokens the server answers with less than that margin are fetched for every request.
    server.set_expires_in(15);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = auth.authorization_header().await?;
    assert_ne!(second, first, "an expiring token was reused");
    assert_eq!(second, Some(bearer(&server)?));
    assert_eq!(server.issued(), 2);
    let third = auth.authorization_header().await?;
    assert_ne!(third, second);
    assert_eq!(third, Some(bearer(&server)?));
    assert_eq!(server.issued(), 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// No secrets in Debug or tracing
//
// The capture runs in a child process: tracing caches each callsite's interest process-wide, so
// a parallel test that reaches a gcp_auth callsite first, on a thread without a subscriber,
// would silence it for a thread-local capture too.

#[tokio::test]
async fn debug_and_tracing_show_no_token_or_key() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("secrets")?;
    let key = key_for(&server)?;
    let forged = key.with_private_key_of(&keys()?[1])?;
    let good_path = dir.write_key(&key)?;
    let forged_path = dir.path().join("forged.json");
    forged.write_to(&forged_path)?;
    server.set_expires_in(15); // every header fetches a new token

    let out = run_child(
        "child_tracing_capture",
        &[("BQSINK_AUTH_TEST_KEY", good_path.into()), ("BQSINK_AUTH_TEST_FORGED", forged_path.into())],
    )
    .await?;
    assert_eq!(server.tokens().len(), 2);
    assert_eq!(server.assertions().len(), 2 + server.refused());
    assert!(server.refused() >= 1);

    let mut secrets = key_material(&key);
    secrets.extend(key_material(&keys()?[1]));
    secrets.extend(server.tokens());
    secrets.extend(server.assertions());
    assert!(out.contains("requesting token"), "the capture missed gcp_auth's events:\n{out}");
    assert!(out.contains("token request failed"), "the capture missed the refusal:\n{out}");
    assert!(out.contains("redacted"), "{out}");
    assert_no_secrets(&out, "the tracing, Debug or Display output", &secrets);

    // And in this process: the key, the server, an Auth with a token behind it.
    let auth = Auth::from_key_file(&dir.write_key(&key)?)?;
    auth.authorization_header().await?;
    secrets.extend(server.tokens());
    let shown = format!("{auth:?} {auth:#?} {key:?} {key:#?} {forged:?} {server:?}");
    assert_no_secrets(&shown, "Debug", &secrets);
    Ok(())
}

#[tokio::test]
#[ignore = "run by debug_and_tracing_show_no_token_or_key"]
async fn child_tracing_capture() -> Result {
    let Some(out) = child_out() else { return Ok(()) };
    let (captured, _guard) = capture_tracing();
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from).ok_or_else(|| anyhow!("{name} is not set"));

    let auth = Auth::from_key_file(&var("BQSINK_AUTH_TEST_KEY")?)?;
    let first = auth.authorization_header().await?;
    let second = auth.authorization_header().await?;
    assert_ne!(first, second, "expected a fetch per header (expires_in below the margin)");
    let forged = Auth::from_key_file(&var("BQSINK_AUTH_TEST_FORGED")?)?;
    let error = forged.authorization_header().await.err().ok_or_else(|| anyhow!("the forged key was accepted"))?;

    let shown = format!("{auth:?}\n{auth:#?}\n{forged:?}\n{error}\n{error:?}");
    std::fs::write(out, format!("{}\n{shown}", captured.text()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Discovery, in child processes with a controlled environment

#[tokio::test]
async fn discover_uses_google_application_credentials() -> Result {
    let server = TokenServer::start().await?;
    let dir = TempDir::new("gac")?;
    let key = key_for(&server)?;
    let path = dir.write_key(&key)?;
    let home = TempDir::new("home")?;
    let bin = TempDir::new("bin")?;

    let out = run_child(
        "child_discover_with_key_env",
        &[(CREDENTIALS_ENV, path.into_os_string()), ("HOME", home.path().into()), ("PATH", bin.path().into())],
    )
    .await?;
    let (header, log) = out.split_once('\n').ok_or_else(|| anyhow!("unexpected child output: {out}"))?;
    assert_eq!(header, bearer(&server)?);
    assert_eq!(server.issued(), 1);
    // gcp_auth's event from the discovery thread reached the caller's subscriber.
    assert!(log.contains(CREDENTIALS_ENV), "the discovery thread's events were lost:\n{log}");
    let mut secrets = key_material(&key);
    secrets.extend(server.tokens());
    secrets.extend(server.assertions());
    assert_no_secrets(log, "the child's tracing output", &secrets);
    Ok(())
}

#[tokio::test]
#[ignore = "run by discover_uses_google_application_credentials"]
async fn child_discover_with_key_env() -> Result {
    let Some(out) = child_out() else { return Ok(()) };
    let (captured, _guard) = capture_tracing();
    let started = Instant::now();
    let auth = Auth::discover().await?;
    assert!(started.elapsed() < Duration::from_secs(2), "reading the key took {:?}", started.elapsed());
    let header = auth.authorization_header().await?.ok_or_else(|| anyhow!("no header"))?;
    let shown = format!("{auth:?}");
    assert!(!shown.contains(&header[7..]), "Debug shows the token");
    std::fs::write(out, format!("{header}\n{}", captured.text()))?;
    Ok(())
}

#[tokio::test]
async fn discover_without_credentials_fails_fast_naming_the_three_ways() -> Result {
    let home = TempDir::new("home")?;
    let bin = TempDir::new("bin")?; // no gcloud
    let out = run_child("child_discover_fails", &[("HOME", home.path().into()), ("PATH", bin.path().into())]).await?;
    let (elapsed, message) = out.split_once('\n').ok_or_else(|| anyhow!("unexpected child output: {out}"))?;
    let elapsed = Duration::from_millis(elapsed.parse()?);
    assert!(elapsed < DISCOVERY_DEADLINE, "discovery took {elapsed:?}");
    assert!(message.starts_with("authentication failed: no Google credentials found"), "{message}");
    assert_names_the_three_ways(message);
    eprintln!("discovery without credentials failed after {elapsed:?}: {message}");
    Ok(())
}

#[tokio::test]
async fn discover_is_bounded_when_gcloud_hangs() -> Result {
    let home = TempDir::new("home")?;
    let bin = TempDir::new("bin")?;
    let marker = home.path().join("gcloud-was-run");
    let gcloud = bin.path().join("gcloud");
    std::fs::write(&gcloud, format!("#!/bin/sh\n: > \"${GCLOUD_MARKER}\"\nPATH=/usr/bin:/bin exec sleep 20\n"))?;
    std::process::Command::new("/bin/chmod").arg("755").arg(&gcloud).status()?;

    let out = run_child(
        "child_discover_fails",
        &[("HOME", home.path().into()), ("PATH", bin.path().into()), (GCLOUD_MARKER, marker.clone().into())],
    )
    .await?;
    let (elapsed, message) = out.split_once('\n').ok_or_else(|| anyhow!("unexpected child output: {out}"))?;
    let elapsed = Duration::from_millis(elapsed.parse()?);
    assert!(elapsed < DISCOVERY_DEADLINE, "discovery took {elapsed:?}");
    // Either the metadata probe or the hanging gcloud outlasted the limit.
    assert!(message.contains(&format!("did not finish within {DISCOVERY_TIMEOUT:?}")), "{message}");
    assert_names_the_three_ways(message);
    eprintln!("gcloud was reached: {}; discovery gave up after {elapsed:?}", marker.exists());
    Ok(())
}

#[tokio::test]
async fn discover_with_a_missing_key_file_names_it() -> Result {
    let home = TempDir::new("home")?;
    let missing = home.path().join("no-such-key.json");
    let out =
        run_child("child_discover_fails", &[(CREDENTIALS_ENV, missing.into_os_string()), ("HOME", home.path().into())])
            .await?;
    let (elapsed, message) = out.split_once('\n').ok_or_else(|| anyhow!("unexpected child output: {out}"))?;
    assert!(Duration::from_millis(elapsed.parse()?) < Duration::from_secs(2), "took {elapsed} ms");
    assert!(message.contains("GOOGLE_APPLICATION_CREDENTIALS") && message.contains("no-such-key.json"), "{message}");
    assert_names_the_three_ways(message);
    Ok(())
}

#[tokio::test]
#[ignore = "run by the discover_* tests"]
async fn child_discover_fails() -> Result {
    let Some(out) = child_out() else { return Ok(()) };
    let started = Instant::now();
    let result = Auth::discover().await;
    let elapsed = started.elapsed();
    let message = match result {
        Err(e @ TransportError::Auth(_)) => e.to_string(),
        Err(other) => return Err(anyhow!("expected an Auth error, got {other:?}")),
        Ok(auth) => return Err(anyhow!("discovery found credentials: {auth:?}")),
    };
    std::fs::write(out, format!("{}\n{message}", elapsed.as_millis()))?;
    Ok(())
}
