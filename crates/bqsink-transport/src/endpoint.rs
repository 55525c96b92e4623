//! Where BigQuery is: Google's endpoints, or an emulator named by environment variables.

/// Google's REST endpoint.
pub const GOOGLE_REST: &str = "https://bigquery.googleapis.com/bigquery/v2";
/// Google's Storage Write gRPC endpoint.
pub const GOOGLE_GRPC: &str = "https://bigquerystorage.googleapis.com";
/// Environment variable naming an emulator's REST `host:port`.
pub const ENV_REST_EMULATOR: &str = "BIGQUERY_EMULATOR_HOST";
/// Environment variable naming an emulator's gRPC `host:port` (plaintext).
pub const ENV_GRPC_EMULATOR: &str = "BIGQUERY_STORAGE_EMULATOR_HOST";

/// The two endpoints bqsink talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// REST base URL up to and including `/bigquery/v2`.
    pub rest: String,
    /// gRPC URI (`https://…` for TLS, `http://…` for plaintext).
    pub grpc: String,
    /// Whether this is an emulator: plaintext, and no credentials are sent.
    pub emulator: bool,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self::google()
    }
}

impl Endpoints {
    /// Google's production endpoints, over TLS.
    pub fn google() -> Self {
        Self { rest: GOOGLE_REST.into(), grpc: GOOGLE_GRPC.into(), emulator: false }
    }

    /// A local emulator at two `host:port`s, plaintext, no credentials.
    pub fn emulator(rest_host: &str, grpc_host: &str) -> Self {
        Self {
            rest: format!("http://{}/bigquery/v2", strip_scheme(rest_host)),
            grpc: format!("http://{}", strip_scheme(grpc_host)),
            emulator: true,
        }
    }

    /// The emulator when `BIGQUERY_EMULATOR_HOST` / `BIGQUERY_STORAGE_EMULATOR_HOST` are set
    /// (either one alone is used for both when the other is missing), else Google.
    pub fn from_env() -> Self {
        let rest = std::env::var(ENV_REST_EMULATOR).ok().filter(|s| !s.trim().is_empty());
        let grpc = std::env::var(ENV_GRPC_EMULATOR).ok().filter(|s| !s.trim().is_empty());
        match (rest, grpc) {
            (None, None) => Self::google(),
            (Some(r), Some(g)) => Self::emulator(&r, &g),
            (Some(one), None) | (None, Some(one)) => Self::emulator(&one, &one),
        }
    }
}

fn strip_scheme(host: &str) -> &str {
    let h = host.trim().trim_end_matches('/');
    h.strip_prefix("http://").or_else(|| h.strip_prefix("https://")).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_hosts_become_plaintext_urls() {
        let e = Endpoints::emulator("127.0.0.1:9050", "http://127.0.0.1:9060/");
        assert_eq!(e.rest, "http://127.0.0.1:9050/bigquery/v2");
        assert_eq!(e.grpc, "http://127.0.0.1:9060");
        assert!(e.emulator);
        assert!(!Endpoints::google().emulator);
    }
}
