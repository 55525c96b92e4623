//! `bqsink schema infer FILE` (the inferred BigQuery JSON schema) and `bqsink schema diff FILE
//! --table T` (what bqsink would change on the live table, and what it would refuse). Wired to
//! bqsink-schema's inference and evolution planning once they are available.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::Global;

#[derive(Subcommand, Debug)]
pub(crate) enum SchemaCommand {
    /// Print the BigQuery JSON schema inferred from a file
    Infer {
        /// NDJSON, CSV or JSON array file
        file: PathBuf,
    },
    /// Show what loading a file would change on a live table, and what it would refuse
    Diff {
        /// NDJSON, CSV or JSON array file
        file: PathBuf,
        /// The live table
        #[arg(long, short = 't', value_name = "ID")]
        table: String,
    },
}

pub(crate) async fn run(command: SchemaCommand, _global: &Global) -> anyhow::Result<ExitCode> {
    let name = match command {
        SchemaCommand::Infer { .. } => "schema infer",
        SchemaCommand::Diff { .. } => "schema diff",
    };
    bail!("`bqsink {name}` is not available in this build yet (it needs the type inference of bqsink-schema)")
}
