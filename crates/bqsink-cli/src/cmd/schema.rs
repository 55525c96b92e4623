//! `bqsink schema infer FILE` (the inferred BigQuery JSON schema) and `bqsink schema diff FILE
//! --table T` (what bqsink would change on the live table, and what it would refuse). Wired to
//! bqsink-schema's inference and evolution planning once they are available.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use bqsink_schema::InferMode;

use crate::input::{self, Format};
use crate::Global;

#[derive(Subcommand, Debug)]
pub(crate) enum SchemaCommand {
    /// Print the BigQuery JSON schema inferred from a file
    #[command(
        after_help = "Example:\n  bqsink schema infer events.ndjson > events.schema.json\n  bqsink load --dataset analytics --table events --schema events.schema.json events.ndjson"
    )]
    Infer {
        /// NDJSON, CSV or JSON array file
        file: PathBuf,
        /// Input format
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
    },
    /// Show what loading a file would change on a live table, and what it would refuse
    #[command(hide = true)]
    Diff {
        /// NDJSON, CSV or JSON array file
        file: PathBuf,
        /// The live table
        #[arg(long, short = 't', value_name = "ID")]
        table: String,
    },
}

pub(crate) async fn run(command: SchemaCommand, _global: &Global) -> anyhow::Result<ExitCode> {
    match command {
        SchemaCommand::Infer { file, format } => {
            let inputs = input::expand(&[file.display().to_string()])?;
            let found = crate::infer::over(&inputs, format, InferMode::Generic).await?;
            for c in &found.conflicts {
                eprintln!("bqsink: warning: {c}");
            }
            if found.bad > 0 {
                eprintln!("bqsink: {} lines are not rows and were skipped", found.bad);
            }
            super::out(&serde_json::to_string_pretty(&found.schema.fields)?);
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Diff { .. } => {
            bail!("`bqsink schema diff` is not available in this build yet (it needs bqsink-schema's evolution planning in the facade)")
        }
    }
}
