//! What every writer settles before it connects: the credentials, and whether it may send DDL
//! (`BIGQUERY_AUTO_TABLE_MANAGEMENT`).

use std::path::Path;

use bqsink_transport::{Auth, Endpoints};

use crate::Error;

/// Resolves credentials the way [`crate::Destination`] does: none for an emulator, else the key
/// file when given, else discovered ones (`GOOGLE_APPLICATION_CREDENTIALS`, Application Default
/// Credentials, the metadata server, `gcloud`).
pub async fn resolve_auth(endpoints: &Endpoints, credentials_path: Option<&Path>) -> Result<Auth, Error> {
    Ok(match credentials_path {
        _ if endpoints.emulator => Auth::none(),
        Some(path) => Auth::from_key_file(path)?,
        None => Auth::discover().await?,
    })
}

/// Whether `BIGQUERY_AUTO_TABLE_MANAGEMENT` allows DDL (default `true`; `false`, `0`, `no`, `off`
/// turn it off).
pub fn auto_table_management_from_env() -> Result<bool, Error> {
    match std::env::var("BIGQUERY_AUTO_TABLE_MANAGEMENT") {
        Err(_) => Ok(true),
        Ok(v) if v.trim().is_empty() => Ok(true),
        Ok(v) => parse_switch(&v).ok_or_else(|| {
            bqsink_core::ConfigError::new("BIGQUERY_AUTO_TABLE_MANAGEMENT", format!("`{v}`: expected true or false"))
                .into()
        }),
    }
}

/// An on/off setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
pub fn parse_switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}
