//! A local stand-in for Google's OAuth2 token endpoint, and throwaway service-account keys that
//! point at it, so that authentication is tested end to end without Google.
//!
//! [`TokenServer`] answers the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//! `assertion=<JWT>`) the way `https://oauth2.googleapis.com/token` does: the JWT's RS256
//! signature must verify against the public key of a service account the server issued (or was
//! told to [trust](TokenServer::trust)), its `aud` must be the server's own
//! [`token_uri`](TokenServer::token_uri), its `scope` must include
//! [`BIGQUERY_SCOPE`], and it must not be expired. A granted request is answered with a fresh
//! random access token; a refused one with `400 {"error": "invalid_grant", ...}`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bqsink_testkit::oauth::TokenServer;
//! let server = TokenServer::start().await?;          // needs a tokio runtime
//! let key = server.issue_service_account()?;          // RSA 2048, token_uri = server.token_uri()
//! let path = std::env::temp_dir().join("sa.json");
//! key.write_to(&path)?;                                // the Google service-account JSON format
//! // ... authenticate with `path`, make a request ...
//! assert_eq!(server.issued(), 1);
//! let token = server.current_token();                  // what `Authorization: Bearer` must carry
//! # let _ = token; Ok(())
//! # }
//! ```
//!
//! Only the service-account (JWT-bearer) grant is implemented: `gcp_auth` 0.12 sends the
//! authorized-user refresh grant to a fixed `https://accounts.google.com` URL and probes a fixed
//! `http://metadata.google.internal`, so neither could be pointed at a local server.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use rand::distributions::Alphanumeric;
use rand::Rng as _;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

/// The OAuth2 scope the server requires in every assertion.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// The JWT-bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `expires_in` the server answers with unless [`TokenServer::set_expires_in`] changed it.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;
/// RSA modulus size of throwaway keys (`ring`, which `gcp_auth` signs with, refuses < 2048).
pub const KEY_BITS: usize = 2048;
/// The longest assertion lifetime Google accepts (`exp - iat`), in seconds.
const MAX_ASSERTION_LIFETIME: i64 = 3600;
/// Clock skew tolerated on `iat`, in seconds.
const CLOCK_SKEW: i64 = 300;

/// Base64url, with or without padding (`gcp_auth` pads its JWT segments; RFC 7515 does not).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A Google service-account key, freshly generated, in the JSON format the Cloud console
/// downloads. Its `Debug` output never shows the private key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The key file's contents (contains the private key).
    pub json: String,
    /// `client_email`, the JWT's `iss`.
    pub client_email: String,
    /// `private_key_id`.
    pub private_key_id: String,
    /// `project_id`.
    pub project_id: String,
    /// `token_uri`, where clients send the JWT-bearer grant (and the JWT's `aud`).
    pub token_uri: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: String,
    public_key: RsaPublicKey,
}

impl ServiceAccountKey {
    /// The public half, which verifies this key's signatures.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }

    /// Writes [`json`](Self::json) to `path`.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.json.as_bytes())
    }

    /// The same identity (`client_email`, `private_key_id`, `token_uri`) with the private key of
    /// `other`: what a client holding the wrong key would sign with.
    pub fn with_private_key_of(&self, other: &ServiceAccountKey) -> anyhow::Result<Self> {
        let mut json: Value = serde_json::from_str(&self.json).context("service-account JSON")?;
        json["private_key"] = Value::String(other.private_key_pem.clone());
        Ok(Self {
            json: json.to_string(),
            private_key_pem: other.private_key_pem.clone(),
            public_key: other.public_key.clone(),
            ..self.clone()
        })
    }

    /// The same key with another `token_uri` (and hence another JWT `aud`).
    pub fn with_token_uri(&self, token_uri: &str) -> anyhow::Result<Self> {
        let mut json: Value = serde_json::from_str(&self.json).context("service-account JSON")?;
        json["token_uri"] = Value::String(token_uri.to_owned());
        Ok(Self { json: json.to_string(), token_uri: token_uri.to_owned(), ..self.clone() })
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Generates a fresh RSA 2048 service-account key whose `token_uri` is `token_uri`.
///
/// Key generation takes about a second in an unoptimized build. A [`TokenServer`] trusts the key
/// only if it [issued](TokenServer::issue_service_account) it or was told to
/// [trust](TokenServer::trust) it.
pub fn throwaway_service_account(token_uri: &str) -> anyhow::Result<ServiceAccountKey> {
    let mut rng = rand::thread_rng();
    let private_key = RsaPrivateKey::new(&mut rng, KEY_BITS).context("generating an RSA key")?;
    let public_key = RsaPublicKey::from(&private_key);
    let private_key_pem =
        private_key.to_pkcs8_pem(LineEnding::LF).context("encoding the RSA key as PKCS#8 PEM")?.to_string();
    let private_key_id: String = (0..40).map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)])).collect();
    let client_id: String = (0..21).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
    let account = format!("throwaway-{}", &private_key_id[..8]);
    let project_id = "bqsink-test".to_owned();
    let client_email = format!("{account}@{project_id}.iam.gserviceaccount.com");
    let json = json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id,
        "private_key": private_key_pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{account}%40{project_id}.iam.gserviceaccount.com"
        ),
        "universe_domain": "googleapis.com",
    });
    Ok(ServiceAccountKey {
        json: serde_json::to_string_pretty(&json).context("service-account JSON")?,
        client_email,
        private_key_id,
        project_id,
        token_uri: token_uri.to_owned(),
        private_key_pem,
        public_key,
    })
}

/// A local OAuth2 token endpoint for the JWT-bearer grant, on `127.0.0.1` and a free port,
/// serving until dropped. See the [module docs](self).
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

struct ServerState {
    token_uri: String,
    expires_in: AtomicU64,
    refused: AtomicUsize,
    /// Keys whose assertions are accepted, by `client_email`.
    trusted: Mutex<Vec<(String, RsaPublicKey)>>,
    /// Every access token issued, oldest first.
    tokens: Mutex<Vec<String>>,
    /// Every assertion received, granted or not, oldest first.
    assertions: Mutex<Vec<String>>,
    last_refusal: Mutex<Option<String>>,
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("token_uri", &self.state.token_uri)
            .field("issued", &self.issued())
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TokenServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime until dropped.
    pub async fn start() -> anyhow::Result<Self> {
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("binding the token server")?;
        let addr = listener.local_addr().context("token server address")?;
        let state = Arc::new(ServerState {
            token_uri: format!("http://{addr}/token"),
            expires_in: AtomicU64::new(DEFAULT_EXPIRES_IN),
            refused: AtomicUsize::new(0),
            trusted: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            assertions: Mutex::new(Vec::new()),
            last_refusal: Mutex::new(None),
        });
        // Every path answers the grant, so that a key whose `token_uri` differs from ours only in
        // its path still reaches this server, and is refused for its `aud`.
        let app = axum::Router::new().fallback(handle).with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "token server stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT/token`: where to send grants, and the `aud` assertions must carry.
    pub fn token_uri(&self) -> &str {
        &self.state.token_uri
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the `expires_in` (seconds) of the tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// A fresh [throwaway service account](throwaway_service_account) whose `token_uri` is this
    /// server, and which this server trusts.
    pub fn issue_service_account(&self) -> anyhow::Result<ServiceAccountKey> {
        let key = throwaway_service_account(self.token_uri())?;
        self.trust(&key);
        Ok(key)
    }

    /// Accepts assertions from `key.client_email` signed by `key`'s private key (replacing any
    /// key trusted for that email before).
    pub fn trust(&self, key: &ServiceAccountKey) {
        let mut trusted = lock(&self.state.trusted);
        trusted.retain(|(email, _)| email != &key.client_email);
        trusted.push((key.client_email.clone(), key.public_key.clone()));
    }

    /// How many access tokens the server has issued.
    pub fn issued(&self) -> usize {
        lock(&self.state.tokens).len()
    }

    /// How many token requests the server has refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// The access token issued last.
    pub fn current_token(&self) -> Option<String> {
        lock(&self.state.tokens).last().cloned()
    }

    /// Every access token issued, oldest first (for leak checks).
    pub fn tokens(&self) -> Vec<String> {
        lock(&self.state.tokens).clone()
    }

    /// The JWT of every token request, granted or not, oldest first: they are credentials too
    /// (for leak checks).
    pub fn assertions(&self) -> Vec<String> {
        lock(&self.state.assertions).clone()
    }

    /// Why the last refused request was refused (the `error_description` it was sent).
    pub fn last_refusal(&self) -> Option<String> {
        lock(&self.state.last_refusal).clone()
    }
}

/// Google's answer to a refused grant.
fn refuse(state: &ServerState, status: StatusCode, error: &str, description: String) -> Response {
    state.refused.fetch_add(1, Ordering::SeqCst);
    *lock(&state.last_refusal) = Some(description.clone());
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn handle(State(state): State<Arc<ServerState>>, method: Method, headers: HeaderMap, body: String) -> Response {
    if method != Method::POST {
        return refuse(&state, StatusCode::METHOD_NOT_ALLOWED, "invalid_request", format!("{method} is not POST"));
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("content-type {content_type:?} is not application/x-www-form-urlencoded"),
        );
    }
    let form = parse_form(&body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match field("grant_type") {
        Some(JWT_BEARER_GRANT) => {}
        Some(other) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            )
        }
        None => return refuse(&state, StatusCode::BAD_REQUEST, "invalid_request", "no grant_type".into()),
    }
    let Some(assertion) = field("assertion") else {
        return refuse(&state, StatusCode::BAD_REQUEST, "invalid_request", "no assertion".into());
    };
    lock(&state.assertions).push(assertion.to_owned());
    let trusted = lock(&state.trusted).clone();
    if let Err(why) = verify_assertion(assertion, &state.token_uri, &trusted, unix_now()) {
        return refuse(&state, StatusCode::BAD_REQUEST, "invalid_grant", why);
    }
    let token = format!("ya29.bqsink-test-{}", random_string(48));
    lock(&state.tokens).push(token.clone());
    let expires_in = state.expires_in.load(Ordering::SeqCst);
    Json(json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer" })).into_response()
}

fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks a JWT-bearer assertion as Google does; `Err` carries the reason (never key material).
fn verify_assertion(jwt: &str, token_uri: &str, trusted: &[(String, RsaPublicKey)], now: i64) -> Result<(), String> {
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the assertion is not a JWT (three dot-separated segments)".into());
    };
    let header = decode_segment(header_b64, "header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(format!("JWT alg is {:?}, not RS256", header.get("alg")));
    }
    let claims = decode_segment(claims_b64, "claims")?;
    let claim_str = |name: &str| claims.get(name).and_then(Value::as_str);
    let claim_int = |name: &str| claims.get(name).and_then(Value::as_i64);

    let iss = claim_str("iss").ok_or("the JWT has no iss")?;
    let Some((_, public_key)) = trusted.iter().find(|(email, _)| email == iss) else {
        return Err(format!("unknown service account {iss:?}"));
    };
    let signature = B64URL.decode(signature_b64).map_err(|_| "the JWT signature is not base64url".to_owned())?;
    let signing_input = &jwt[..header_b64.len() + 1 + claims_b64.len()];
    let digest = sha256(signing_input.as_bytes());
    public_key
        .verify(rs256_padding(), &digest, &signature)
        .map_err(|_| "Invalid JWT Signature: not signed by the service account's key".to_owned())?;

    let aud = claim_str("aud").ok_or("the JWT has no aud")?;
    if aud != token_uri {
        return Err(format!("JWT aud {aud:?} is not the token endpoint {token_uri:?}"));
    }
    let scope = claim_str("scope").ok_or("the JWT has no scope")?;
    if !scope.split(' ').any(|s| s == BIGQUERY_SCOPE) {
        return Err(format!("JWT scope {scope:?} does not include {BIGQUERY_SCOPE}"));
    }
    let iat = claim_int("iat").ok_or("the JWT has no integer iat")?;
    let exp = claim_int("exp").ok_or("the JWT has no integer exp")?;
    if iat > now + CLOCK_SKEW {
        return Err(format!("JWT iat {iat} is in the future (now {now})"));
    }
    if exp <= now {
        return Err(format!("JWT expired at {exp} (now {now})"));
    }
    if exp - iat > MAX_ASSERTION_LIFETIME {
        return Err(format!("JWT lifetime {} s exceeds {MAX_ASSERTION_LIFETIME} s", exp - iat));
    }
    Ok(())
}

fn decode_segment(segment: &str, what: &str) -> Result<Value, String> {
    let bytes = B64URL.decode(segment).map_err(|_| format!("the JWT {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| format!("the JWT {what} is not JSON"))
}

/// RSASSA-PKCS1-v1_5 with SHA-256: the DER `DigestInfo` prefix for SHA-256.
fn rs256_padding() -> Pkcs1v15Sign {
    const SHA256_DIGEST_INFO: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
        0x20,
    ];
    Pkcs1v15Sign { hash_len: Some(32), prefix: Box::new(SHA256_DIGEST_INFO) }
}

/// `application/x-www-form-urlencoded` pairs, percent- and `+`-decoded.
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SHA-256 (FIPS 180-4). The testkit has no hashing crate among its dependencies, and RS256
/// verification needs one; the unit tests check it against the FIPS test vectors, and the
/// integration tests against `ring`'s signatures (`gcp_auth`).
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey as _;

    /// Two keys for all tests: generating one takes seconds in an unoptimized build.
    fn keys() -> anyhow::Result<&'static [ServiceAccountKey; 2]> {
        static KEYS: std::sync::OnceLock<Result<[ServiceAccountKey; 2], String>> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let make = || throwaway_service_account("http://127.0.0.1:1/token").map_err(|e| format!("{e:#}"));
            Ok([make()?, make()?])
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_matches_the_fips_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&[b'a'; 1_000_000])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn form_bodies_are_percent_decoded() {
        let form =
            parse_form("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2%");
        assert_eq!(
            form,
            vec![
                ("grant_type".to_owned(), JWT_BEARER_GRANT.to_owned()),
                ("assertion".to_owned(), "a.b.c".to_owned()),
                ("x".to_owned(), "1 2%".to_owned()),
            ]
        );
    }

    fn sign_jwt(key: &ServiceAccountKey, claims: &Value) -> anyhow::Result<String> {
        let private_key = RsaPrivateKey::from_pkcs8_pem(&key.private_key_pem)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut jwt = format!("{}.{}", b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#), b64.encode(claims.to_string()));
        let signature = private_key.sign(rs256_padding(), &sha256(jwt.as_bytes()))?;
        jwt.push('.');
        jwt.push_str(&b64.encode(signature));
        Ok(jwt)
    }

    #[test]
    fn assertions_are_checked_like_google_does() -> anyhow::Result<()> {
        let uri = "http://127.0.0.1:1/token";
        let [key, other] = keys()?;
        let trusted = vec![(key.client_email.clone(), key.public_key().clone())];
        let now = unix_now();
        let claims = |aud: &str, scope: &str, iat: i64, exp: i64| json!({ "iss": key.client_email, "aud": aud, "scope": scope, "iat": iat, "exp": exp });
        let scopes = format!("https://www.googleapis.com/auth/cloud-platform {BIGQUERY_SCOPE}");

        let good = sign_jwt(key, &claims(uri, &scopes, now, now + 3595))?;
        assert_eq!(verify_assertion(&good, uri, &trusted, now), Ok(()));

        let refused = |jwt: &str| verify_assertion(jwt, uri, &trusted, now).err().unwrap_or_default();
        assert!(refused(&sign_jwt(key, &claims("http://other/token", &scopes, now, now + 60))?).contains("aud"));
        assert!(refused(&sign_jwt(
            key,
            &claims(uri, "https://www.googleapis.com/auth/bigquery.readonly", now, now + 60)
        )?)
        .contains("scope"));
        assert!(refused(&sign_jwt(key, &claims(uri, &scopes, now - 100, now - 1))?).contains("expired"));
        assert!(refused(&sign_jwt(key, &claims(uri, &scopes, now, now + 7200))?).contains("lifetime"));
        assert!(refused(&sign_jwt(key, &claims(uri, &scopes, now + 3600, now + 3700))?).contains("future"));

        // Tampering with the signed claims breaks the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(uri, &scopes, now, now + 3595).to_string().replace("bigquery", "bigquerx"));
        parts[1] = &forged_claims;
        assert!(refused(&parts.join(".")).contains("Signature"));

        // Another key, same identity: refused; an unknown identity: refused.
        let forged = key.with_private_key_of(other)?;
        assert!(refused(&sign_jwt(&forged, &claims(uri, &scopes, now, now + 60))?).contains("Signature"));
        let stranger = json!({ "iss": other.client_email, "aud": uri, "scope": scopes, "iat": now, "exp": now + 60 });
        assert!(refused(&sign_jwt(other, &stranger)?).contains("unknown service account"));
        assert!(refused("not-a-jwt").contains("three"));
        Ok(())
    }

    #[test]
    fn key_debug_redacts_the_private_key() -> anyhow::Result<()> {
        let key = &keys()?[0];
        let debug = format!("{key:?} {key:#?}");
        assert!(debug.contains(&key.client_email));
        for line in key.private_key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "Debug shows part of the private key");
        }
        assert!(!debug.contains("BEGIN PRIVATE KEY"));
        let json: Value = serde_json::from_str(&key.json)?;
        assert_eq!(json["type"], "service_account");
        assert_eq!(json["private_key"], key.private_key_pem.as_str());
        assert!(key.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        Ok(())
    }
}
