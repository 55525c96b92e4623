//! `bqsink health`: the facade's health check, one line per check.

use std::process::ExitCode;

use anyhow::anyhow;
use bqsink::{DestinationBuilder, Error, WriteMode};

use super::{connect, out};
use crate::errors::{explain, Context, Needs};
use crate::settings::FlagValue;
use crate::Global;

pub(crate) const AFTER_HELP: &str = "\
Example:
  bqsink health --project my-proj --dataset analytics --table events

  ok    connectivity  BigQuery answered at https://bigquery.googleapis.com/bigquery/v2
  ok    dataset       my-proj.analytics is accessible
  ok    table         my-proj.analytics.events exists with 12 columns
  ok    error_rate    0 errors in 0 requests (0.0%), circuit breaker closed

Exit code 0 when every check passes, 1 otherwise. Without --table, only connectivity and the
dataset are checked.";

#[derive(clap::Args, Debug)]
pub(crate) struct HealthArgs {
    /// Also check this table, and that the Storage Write API accepts a connection for it
    #[arg(long, short = 't', value_name = "ID")]
    pub(crate) table: Option<String>,
}

pub(crate) async fn run(args: HealthArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let mut flags = Vec::new();
    if let Some(t) = &args.table {
        flags.push(FlagValue::new("table_id", "--table", t));
    }
    let settings = global.settings(flags)?;
    let cx = Context { settings: &settings, needs: Needs::MetadataViewer };
    settings.config.validate().map_err(|e| anyhow!(explain(&e.into(), cx)))?;
    let c = &settings.config;
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let (auth, admin) = match connect(&settings, Needs::MetadataViewer).await {
        Ok(pair) => pair,
        Err(e) => {
            print(&[("credentials".into(), false, e.to_string())]);
            return Ok(ExitCode::FAILURE);
        }
    };
    let health = match &args.table {
        None => admin.health(&c.project_id, &c.dataset_id, None).await,
        Some(table) => {
            // A destination that never creates anything and writes nothing.
            let built = DestinationBuilder::from_config(c.clone())
                .endpoints(settings.endpoints.clone())
                .auth(auth)
                .create_disposition(bqsink::CreateDisposition::CreateNever)
                .write_mode(WriteMode::Streaming)
                .build()
                .await;
            match built {
                Ok(dest) => dest.health().await,
                Err(e) => {
                    let health = admin.health(&c.project_id, &c.dataset_id, Some(table)).await;
                    if !matches!(e, Error::TableNotFound { .. }) && health.is_healthy() {
                        checks.push(("storage_write".into(), false, explain(&e, cx)));
                    }
                    health
                }
            }
        }
    };
    let mut all: Vec<(String, bool, String)> =
        health.checks.iter().map(|c| (c.name.to_owned(), c.ok, c.detail.clone())).collect();
    all.extend(checks);
    print(&all);
    Ok(if all.iter().all(|(_, ok, _)| *ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print(checks: &[(String, bool, String)]) {
    let width = checks.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    for (name, ok, detail) in checks {
        let status = if *ok { "ok" } else { "FAIL" };
        out(&format!("{status:<4}  {name:<width$}  {}", crate::errors::one_line(detail)));
    }
}
