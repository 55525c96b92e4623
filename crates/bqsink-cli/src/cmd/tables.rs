//! `bqsink tables`: the dataset's tables with rows, partitioning and clustering.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use serde_json::json;

use super::{connect, out};
use crate::errors::{explain, Context, Needs};
use crate::Global;

pub(crate) const AFTER_HELP: &str = "\
Example:
  bqsink tables --project my-proj --dataset analytics

  TABLE    TYPE   ROWS     PARTITIONING  CLUSTERING
  events   TABLE  1204331  DAY(at)       event
  users    TABLE  5120     -             -

ROWS counts managed storage plus BigQuery's estimate of the streaming buffer.";

#[derive(clap::Args, Debug)]
pub(crate) struct TablesArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: TablesArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let settings = global.settings(Vec::new())?;
    let cx = Context { settings: &settings, needs: Needs::MetadataViewer };
    settings.config.validate().map_err(|e| anyhow!(explain(&e.into(), cx)))?;
    let (_, admin) = connect(&settings, Needs::MetadataViewer).await?;
    let c = &settings.config;
    let Some(tables) = admin.tables(&c.project_id, &c.dataset_id).await.map_err(|e| anyhow!(explain(&e, cx)))? else {
        bail!("dataset {}.{} does not exist; check --project and --dataset", c.project_id, c.dataset_id);
    };
    if args.json {
        let rows: Vec<_> = tables
            .iter()
            .map(|t| {
                json!({
                    "table": t.table,
                    "type": t.table_type,
                    "rows": t.rows,
                    "bytes": t.bytes,
                    "columns": t.columns,
                    "partitioning": t.time_partitioning,
                    "clustering": t.clustering.as_ref().map(|c| &c.fields),
                })
            })
            .collect();
        out(&serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines =
        vec![["TABLE".to_owned(), "TYPE".into(), "ROWS".into(), "PARTITIONING".into(), "CLUSTERING".into()]];
    for t in &tables {
        lines.push([
            t.table.clone(),
            t.table_type.clone(),
            t.rows.map_or_else(|| "-".into(), |r| r.to_string()),
            t.partitioning_label(),
            t.clustering_label(),
        ]);
    }
    let widths: Vec<usize> = (0..5).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    for l in &lines {
        let mut s = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i + 1 == l.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out(s.trim_end());
    }
    if tables.is_empty() {
        eprintln!("bqsink: {}.{} has no tables", c.project_id, c.dataset_id);
    }
    Ok(ExitCode::SUCCESS)
}
