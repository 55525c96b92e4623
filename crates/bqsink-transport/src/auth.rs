//! Credentials: none for an emulator, otherwise OAuth2 tokens from `gcp_auth` (service-account
//! key, Application Default Credentials, or the metadata server). Tokens never reach `Debug`.

use std::fmt;
use std::sync::Arc;

use crate::error::TransportError;

/// OAuth2 scope for BigQuery.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// How requests are authenticated.
#[derive(Clone, Default)]
pub struct Auth {
    provider: Option<Arc<dyn gcp_auth::TokenProvider>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.provider.is_some() { "Auth(oauth2, redacted)" } else { "Auth(none)" })
    }
}

impl Auth {
    /// No credentials (emulators).
    pub fn none() -> Self {
        Self { provider: None }
    }

    /// Tokens from a provider.
    pub fn from_provider(provider: Arc<dyn gcp_auth::TokenProvider>) -> Self {
        Self { provider: Some(provider) }
    }

    /// A service-account key file.
    pub fn from_key_file(path: &std::path::Path) -> Result<Self, TransportError> {
        let sa = gcp_auth::CustomServiceAccount::from_file(path).map_err(|e| {
            TransportError::Auth(format!("cannot read the service-account key {}: {e}", path.display()))
        })?;
        Ok(Self::from_provider(Arc::new(sa)))
    }

    /// `GOOGLE_APPLICATION_CREDENTIALS`, then Application Default Credentials, then the
    /// metadata server.
    pub async fn discover() -> Result<Self, TransportError> {
        gcp_auth::provider().await.map(Self::from_provider).map_err(|e| {
            TransportError::Auth(format!(
                "no Google credentials found ({e}); provide one of: a service-account key file \
                 (credentials_path or GOOGLE_APPLICATION_CREDENTIALS), Application Default \
                 Credentials (`gcloud auth application-default login`), or run on Google Cloud \
                 with a metadata server"
            ))
        })
    }

    /// Whether requests carry a token.
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The `authorization` header value, if any.
    pub(crate) async fn header(&self) -> Result<Option<String>, TransportError> {
        let Some(p) = &self.provider else { return Ok(None) };
        let token = p
            .token(&[BIGQUERY_SCOPE])
            .await
            .map_err(|e| TransportError::Auth(format!("cannot fetch an access token: {e}")))?;
        Ok(Some(format!("Bearer {}", token.as_str())))
    }
}
