//! Errors a person can act on: one line saying what went wrong and what to do about it.

use bqsink::{Error, StatusCode, TransportError};

use crate::settings::Settings;

/// The IAM role a command needs, named when BigQuery refuses for lack of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Write rows and create tables.
    DataEditor,
    /// Read table metadata.
    MetadataViewer,
}

impl Needs {
    fn roles(self) -> &'static str {
        match self {
            Self::DataEditor => {
                "roles/bigquery.dataEditor on the dataset (and roles/bigquery.user on the project to create datasets)"
            }
            Self::MetadataViewer => "roles/bigquery.metadataViewer (or roles/bigquery.dataViewer) on the dataset",
        }
    }
}

/// What a message needs to say where and with what the failure happened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) needs: Needs,
}

/// One line for `e`, with what to do.
pub(crate) fn explain(e: &Error, cx: Context<'_>) -> String {
    let config = &cx.settings.config;
    let place = if config.dataset_id.is_empty() {
        format!("project {}", config.project_id)
    } else {
        format!("{}.{}", config.project_id, config.dataset_id)
    };
    match e {
        Error::Transport(TransportError::Connect { endpoint, message }) => match cx.settings.emulator_hint() {
            Some(vars) => format!(
                "cannot reach the BigQuery emulator at {endpoint} (from {vars}): {message}; start it, or unset \
                 {vars} to use BigQuery itself"
            ),
            None => format!("cannot reach BigQuery at {endpoint}: {message}; check the network, proxy and firewall"),
        },
        Error::Transport(TransportError::Auth(message)) if message.starts_with("no Google credentials found") => {
            "no Google credentials found; provide them one of three ways: (1) --credentials KEY.json or \
             GOOGLE_APPLICATION_CREDENTIALS=KEY.json (a service-account key), (2) `gcloud auth \
             application-default login`, (3) run on Google Cloud with a service account attached"
                .to_owned()
        }
        Error::Transport(t) if is_permission_denied(t) => {
            format!("permission denied on {place}: {}; the account needs {}", detail(t), cx.needs.roles())
        }
        Error::Transport(t) if is_unauthenticated(t) => format!(
            "BigQuery refused the credentials: {}; check that the key is current, or run `gcloud auth \
             application-default login` again",
            detail(t)
        ),
        Error::TableNotFound { table, .. } => {
            if config.create_disposition == bqsink::CreateDisposition::CreateNever {
                format!(
                    "table {table} does not exist; create it, or pass --create-disposition CREATE_IF_NEEDED with \
                     --schema FILE"
                )
            } else {
                format!("table {table} does not exist; pass --schema FILE (a BigQuery JSON schema) to create it")
            }
        }
        Error::Config(c) => match flag_for(c.key) {
            Some(flag) => format!("{}: {} (set it with {flag})", c.key, c.message),
            None => format!("{}: {}", c.key, c.message),
        },
        other => one_line(&other.to_string()),
    }
}

/// The flag (and environment variable) that sets a property.
pub(crate) fn flag_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "project_id" => "--project or BIGQUERY_PROJECT_ID",
        "dataset_id" => "--dataset or BIGQUERY_DATASET",
        "table_id" => "--table",
        "credentials_path" => "--credentials or GOOGLE_APPLICATION_CREDENTIALS",
        "location" => "--location",
        "batch_size" => "--batch-size",
        "write_mode" => "--mode",
        "create_disposition" => "--create-disposition",
        "write_disposition" => "--write-disposition",
        "partition_field" => "--partition-field",
        "partition_type" => "--partition-type",
        "clustering_fields" => "--cluster",
        _ => return None,
    })
}

fn is_permission_denied(t: &TransportError) -> bool {
    matches!(t, TransportError::Rest { status: 403, .. }) || t.code() == Some(StatusCode::PermissionDenied)
}

fn is_unauthenticated(t: &TransportError) -> bool {
    matches!(t, TransportError::Rest { status: 401, .. }) || t.code() == Some(StatusCode::Unauthenticated)
}

fn detail(t: &TransportError) -> String {
    match t {
        TransportError::Rest { message, .. }
        | TransportError::Grpc { message, .. }
        | TransportError::Append { message, .. } => one_line(message),
        other => one_line(&other.to_string()),
    }
}

/// Newlines folded, so a message stays one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
