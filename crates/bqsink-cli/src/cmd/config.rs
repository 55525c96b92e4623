//! `bqsink config`: the configuration in effect, as a TOML file would set it, with where each
//! value came from. Secrets are never printed: a key file is described, never quoted.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::Value as Json;

use super::out;
use crate::errors::{explain, Context, Needs};
use crate::resilience::RetryArgs;
use crate::settings::{self, FlagValue};
use crate::Global;

pub(crate) const AFTER_HELP: &str = "\
Example:
  BIGQUERY_DATASET=analytics bqsink config --project my-proj --config bqsink.toml

  project_id = \"my-proj\"        # flag --project
  dataset_id = \"analytics\"      # env BIGQUERY_DATASET
  batch_size = 5000             # file bqsink.toml
  …

The output is itself a valid --config file. Exit code 1 when the configuration is not valid.";

#[derive(clap::Args, Debug)]
pub(crate) struct ConfigArgs {
    /// Include this table
    #[arg(long, short = 't', value_name = "ID")]
    pub(crate) table: Option<String>,
    /// The retry flags `load` and `segment` take, to see their effect
    #[command(flatten)]
    pub(crate) retry: RetryArgs,
}

pub(crate) fn run(args: ConfigArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let mut flags = Vec::new();
    if let Some(t) = &args.table {
        flags.push(FlagValue::new("table_id", "--table", t));
    }
    args.retry.push_flags(&mut flags);
    let settings = global.settings(flags)?;
    let values = serde_json::to_value(&settings.config)?;
    let mut lines: Vec<(String, String)> = Vec::new();
    lines.push((
        "# bqsink configuration in effect: flags > environment > --config file > defaults".into(),
        String::new(),
    ));
    for (key, _) in settings::defaults() {
        let value = &values[&key];
        let source = settings.source(&key);
        let mut note = source.to_string();
        if key == "credentials_path" {
            if let Some(path) = value.as_str() {
                note.push_str("; ");
                note.push_str(&describe_key_file(Path::new(path)));
            }
        }
        let line = match toml_value(value) {
            Some(v) => format!("{key} = {}", redact(&v)),
            None => format!("# {key} = (not set)"),
        };
        lines.push((line, note));
    }
    let endpoints = &settings.endpoints;
    let (kind, from) = match &settings.endpoint_source {
        Some(vars) => ("emulator", format!("env {vars}")),
        None => ("Google", "default".to_owned()),
    };
    lines.push((format!("# endpoints: {kind}, REST {}, Storage Write {}", endpoints.rest, endpoints.grpc), from));
    let width = lines.iter().filter(|(_, n)| !n.is_empty()).map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    for (line, note) in &lines {
        if note.is_empty() {
            out(line);
        } else {
            out(&format!("{line:<width$}  # {note}"));
        }
    }
    let cx = Context { settings: &settings, needs: Needs::MetadataViewer };
    settings.config.validate().map_err(|e| anyhow!(explain(&e.into(), cx)))?;
    Ok(ExitCode::SUCCESS)
}

/// A value as TOML writes it; `None` for an unset option.
fn toml_value(v: &Json) -> Option<String> {
    if v.is_null() {
        return None;
    }
    toml::Value::try_from(v).ok().map(|t| t.to_string())
}

/// Anything that looks like key material is replaced, whatever property it sits in.
fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.contains("-----begin") || lower.contains("private_key") {
        "\"<redacted>\"".into()
    } else {
        text.to_owned()
    }
}

/// What a credentials file is, without a byte of its secret.
fn describe_key_file(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "the file cannot be read".into();
    };
    let Ok(json) = serde_json::from_str::<Json>(&text) else {
        return "not a JSON key file".into();
    };
    let kind = json["type"].as_str().unwrap_or("unknown");
    match json["client_email"].as_str() {
        Some(email) => format!("{kind} {email}, key redacted"),
        None => format!("{kind} credentials, secrets redacted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_is_redacted() {
        assert_eq!(redact("\"-----BEGIN PRIVATE KEY-----\\nabc\""), "\"<redacted>\"");
        assert_eq!(redact("\"analytics\""), "\"analytics\"");
    }
}
