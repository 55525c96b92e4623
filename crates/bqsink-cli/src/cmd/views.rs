//! `bqsink views`: the SQL views bqsink-schema defines over Segment tables (a de-duplicated
//! view per table, sessions, users' current state); printed, or created with `--apply` through
//! query jobs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bqsink_schema::ViewOptions;

use super::{connect, out};
use crate::errors::{explain, Context, Needs};
use crate::Global;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  bqsink views --project my-proj --dataset segment            # print the CREATE OR REPLACE VIEW statements
  bqsink views --project my-proj --dataset segment --apply    # create them

Views: <table>_deduped for each table (the latest row of each id by loaded_at); sessions over
tracks, pages and screens (a visitor's events with no gap longer than --session-gap); users_current
from identifies (each user's latest identify call).";

#[derive(clap::Args, Debug)]
pub(crate) struct ViewsArgs {
    /// Create the views (CREATE OR REPLACE VIEW through query jobs) instead of printing them
    #[arg(long)]
    pub(crate) apply: bool,
    /// Inactivity, in minutes, that ends a session
    #[arg(long, value_name = "MINUTES", default_value_t = 30)]
    pub(crate) session_gap: u64,
}

pub(crate) async fn run(args: ViewsArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let settings = global.settings(Vec::new())?;
    let needs = if args.apply { Needs::DataEditor } else { Needs::MetadataViewer };
    let cx = Context { settings: &settings, needs };
    settings.config.validate().map_err(|e| anyhow!(explain(&e.into(), cx)))?;
    let (_, admin) = connect(&settings, needs).await?;
    let c = &settings.config;
    let Some(tables) = admin.tables(&c.project_id, &c.dataset_id).await.map_err(|e| anyhow!(explain(&e, cx)))? else {
        bail!("dataset {}.{} does not exist; check --project and --dataset", c.project_id, c.dataset_id);
    };
    let names: Vec<&str> = tables.iter().filter(|t| t.table_type == "TABLE").map(|t| t.table.as_str()).collect();
    let opts = ViewOptions::default().with_session_gap(Duration::from_secs(args.session_gap.saturating_mul(60)));
    let defs = bqsink_schema::views(&c.project_id, &c.dataset_id, &names, &opts)?;
    if defs.is_empty() {
        eprintln!("bqsink: {}.{} has no tables to make views over", c.project_id, c.dataset_id);
        return Ok(ExitCode::SUCCESS);
    }
    for def in &defs {
        if args.apply {
            admin.rest().query(&c.project_id, &def.sql).await.map_err(|e| anyhow!(explain(&e.into(), cx)))?;
            out(&format!("created view {}.{}.{}", c.project_id, c.dataset_id, def.name));
        } else {
            out(&format!("{};\n", def.sql));
        }
    }
    Ok(ExitCode::SUCCESS)
}
