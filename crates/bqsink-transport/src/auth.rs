//! Credentials: none for an emulator, otherwise OAuth2 access tokens from `gcp_auth`
//! (a service-account key, Application Default Credentials, the metadata server, or `gcloud`).
//!
//! What `gcp_auth` 0.12 does, and what this module adds:
//!
//! - **Caching and refresh.** A provider caches its token and fetches a new one once fewer than
//!   20 s of its `expires_in` remain, so every [`Auth::authorization_header`] carries a token
//!   valid for at least 20 s more. Headers are built per request and per stream open, never
//!   cached here.
//! - **Service-account keys** are read from the path given (`credentials_path`) or from
//!   `GOOGLE_APPLICATION_CREDENTIALS`; the JWT-bearer grant goes to the key's `token_uri`.
//! - **Discovery** ([`Auth::discover`]) tries, in order: `GOOGLE_APPLICATION_CREDENTIALS`;
//!   `$HOME/.config/gcloud/application_default_credentials.json` (an `authorized_user` file,
//!   refreshed at the fixed `https://accounts.google.com/o/oauth2/token`); the metadata server at
//!   the fixed `http://metadata.google.internal` (`GCE_METADATA_HOST` is *not* honoured); and
//!   `gcloud auth print-access-token` from `PATH`. Neither the metadata probe nor the token
//!   requests have a timeout of their own (and the `gcloud` call blocks its thread), so
//!   discovery runs on a thread of its own and is bounded by [`DISCOVERY_TIMEOUT`], and every
//!   token fetch by [`TOKEN_TIMEOUT`].
//! - **Secrets stay out of output.** `Debug` of [`Auth`] names only the kind of credentials; error
//!   messages carry no token, assertion or key material, and neither do `gcp_auth`'s tracing
//!   events (its `Token` `Debug` is redacted).

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::TransportError;

/// OAuth2 scope for BigQuery.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// The longest [`Auth::discover`] takes, the metadata-server probe and `gcloud` included.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest fetching one access token takes (`gcp_auth` tries a failing request 5 times,
/// 750 ms of back-off in all, with no timeout per attempt).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable naming a service-account key file.
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// The three ways to provide credentials, for error messages.
const HOW_TO_PROVIDE: &str = "provide one of: (1) a service-account key file, via `credentials_path` or the \
     GOOGLE_APPLICATION_CREDENTIALS environment variable; (2) Application Default Credentials, created by \
     `gcloud auth application-default login`; (3) running on Google Cloud, where the metadata server \
     provides the attached service account's credentials";

/// Where the tokens come from (for `Debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    None,
    KeyFile,
    Discovered,
    Provider,
}

/// How requests are authenticated.
#[derive(Clone)]
pub struct Auth {
    provider: Option<Arc<dyn gcp_auth::TokenProvider>>,
    source: Source,
}

impl Default for Auth {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.source {
            Source::None => "Auth(none)",
            Source::KeyFile => "Auth(oauth2: service-account key file; token redacted)",
            Source::Discovered => "Auth(oauth2: discovered credentials; token redacted)",
            Source::Provider => "Auth(oauth2: custom token provider; token redacted)",
        })
    }
}

impl Auth {
    /// No credentials (emulators).
    pub fn none() -> Self {
        Self { provider: None, source: Source::None }
    }

    /// Tokens from a provider.
    pub fn from_provider(provider: Arc<dyn gcp_auth::TokenProvider>) -> Self {
        Self { provider: Some(provider), source: Source::Provider }
    }

    /// A service-account key file (JSON, as downloaded from the Cloud console). Reads and parses
    /// it now; the first token is fetched from its `token_uri` on first use.
    pub fn from_key_file(path: &Path) -> Result<Self, TransportError> {
        let sa = gcp_auth::CustomServiceAccount::from_file(path)
            .map_err(|e| TransportError::Auth(format!("cannot use the service-account key {}: {e}", path.display())))?;
        Ok(Self { provider: Some(Arc::new(sa)), source: Source::KeyFile })
    }

    /// Finds credentials the way Google's client libraries do: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then Application Default Credentials, then the metadata server, then the `gcloud` CLI.
    ///
    /// Takes at most [`DISCOVERY_TIMEOUT`]; fails with [`TransportError::Auth`] naming the ways
    /// to provide credentials.
    pub async fn discover() -> Result<Self, TransportError> {
        Self::discover_within(DISCOVERY_TIMEOUT).await
    }

    /// [`Auth::discover`], taking at most `limit`.
    ///
    /// Discovery runs on a thread of its own, so even a blocking step (`gcloud` is run
    /// synchronously) cannot hold up the caller past `limit`. When `limit` passes, that thread
    /// is abandoned and ends when its step does.
    pub async fn discover_within(limit: Duration) -> Result<Self, TransportError> {
        let key_env = std::env::var_os(CREDENTIALS_ENV);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("bqsink-auth-discovery".into())
            .spawn(move || {
                let _dispatch = tracing::dispatcher::set_default(&dispatch);
                let _span = span.enter();
                let found = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime.block_on(gcp_auth::provider()).map_err(|e| explain(&e)),
                    Err(e) => Err(format!("cannot start the discovery runtime: {e}")),
                };
                // The receiver is gone only if the caller gave up: nothing to report to.
                let _ = tx.send(found);
            })
            .map_err(|e| TransportError::Auth(format!("cannot start credential discovery: {e}")))?;

        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(provider))) => {
                tracing::debug!(from_env = key_env.is_some(), "discovered Google credentials");
                Ok(Self { provider: Some(provider), source: Source::Discovered })
            }
            Ok(Ok(Err(reason))) => Err(no_credentials(key_env, &reason)),
            Ok(Err(_)) => Err(no_credentials(key_env, "credential discovery stopped unexpectedly")),
            Err(_) => {
                tracing::warn!(?limit, "Google credential discovery timed out");
                Err(no_credentials(
                    key_env,
                    &format!(
                        "discovery did not finish within {limit:?} (the metadata-server probe or `gcloud` \
                         did not answer)"
                    ),
                ))
            }
        }
    }

    /// Whether requests carry a token.
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exactly what requests send as their `authorization` header (REST) or metadata (gRPC):
    /// `Bearer <access token>`, or `None` without credentials.
    ///
    /// The token is cached by the provider and refreshed once fewer than 20 s of its lifetime
    /// remain; a fetch taking longer than [`TOKEN_TIMEOUT`] fails.
    pub async fn authorization_header(&self) -> Result<Option<String>, TransportError> {
        let Some(p) = &self.provider else { return Ok(None) };
        let token = tokio::time::timeout(TOKEN_TIMEOUT, p.token(&[BIGQUERY_SCOPE]))
            .await
            .map_err(|_| TransportError::Auth(format!("fetching an access token took longer than {TOKEN_TIMEOUT:?}")))?
            .map_err(|e| TransportError::Auth(format!("cannot fetch an access token: {e}")))?;
        Ok(Some(format!("Bearer {}", token.as_str())))
    }

    /// The `authorization` header value, if any.
    pub(crate) async fn header(&self) -> Result<Option<String>, TransportError> {
        self.authorization_header().await
    }
}

/// The discovery error, with what each way reported.
fn explain(e: &gcp_auth::Error) -> String {
    match e {
        gcp_auth::Error::NoAuthMethod(gcloud, metadata, adc) => {
            format!("Application Default Credentials: {adc}; metadata server: {metadata}; gcloud: {gcloud}")
        }
        other => other.to_string(),
    }
}

fn no_credentials(key_env: Option<OsString>, reason: &str) -> TransportError {
    match key_env {
        Some(path) => TransportError::Auth(format!(
            "cannot use the service-account key named by {CREDENTIALS_ENV} ({}): {reason}; {HOW_TO_PROVIDE}",
            Path::new(&path).display()
        )),
        None => TransportError::Auth(format!("no Google credentials found ({reason}); {HOW_TO_PROVIDE}")),
    }
}
