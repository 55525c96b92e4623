//! `bqsink views`: the SQL views bqsink-schema defines over loaded tables (for example, one
//! view across Segment event tables); printed, or created with `--apply` through jobs.query.

use std::process::ExitCode;

use anyhow::bail;

use crate::Global;

#[derive(clap::Args, Debug)]
pub(crate) struct ViewsArgs {
    /// Create the views (CREATE OR REPLACE VIEW through a query job) instead of printing them
    #[arg(long)]
    pub(crate) apply: bool,
}

pub(crate) async fn run(_args: ViewsArgs, _global: &Global) -> anyhow::Result<ExitCode> {
    bail!("`bqsink views` is not available in this build yet (it needs the view definitions of bqsink-schema)")
}
