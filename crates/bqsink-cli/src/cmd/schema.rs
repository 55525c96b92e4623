//! `bqsink schema infer FILE` (the inferred BigQuery JSON schema) and `bqsink schema diff FILE
//! --table T` (what bqsink would change on the live table, and what it would refuse), both with
//! bqsink-schema's inference, the latter with its whole-input planning (`reconcile_schema`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use bqsink::{Change, Field, Mode, Schema, TableRef};
use clap::Subcommand;

use bqsink_schema::infer::describe;
use bqsink_schema::InferMode;

use super::{connect, out};
use crate::errors::{explain, Context, Needs};
use crate::input::{self, Format};
use crate::settings::FlagValue;
use crate::{Global, EXIT_SOME_ROWS_FAILED};

const DIFF_AFTER_HELP: &str = "\
Example:
  bqsink schema diff --project my-proj --dataset analytics --table events events-2024-06.ndjson

  + coupon STRING
  ~ price INT64 → FLOAT64
  relax user_id REQUIRED → NULLABLE
  ! events.in_stock: expected BOOL, got STRING
  3 changes, 1 refused

One line per change bqsink would make before loading the file (`+` a new column, `~` a widened
type, `relax` a REQUIRED column made NULLABLE) and one per column it would refuse (`!`: rows
whose values do not convert are dead-lettered). A missing table is shown with the columns it
would be created with. Nothing is changed.

Exit codes: 0 nothing would be refused; 2 something would be; 1 a fatal error.";

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
    #[command(after_help = DIFF_AFTER_HELP)]
    Diff {
        /// NDJSON, CSV or JSON array file
        file: PathBuf,
        /// The live table
        #[arg(long, short = 't', value_name = "ID")]
        table: String,
        /// Input format
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
    },
}

pub(crate) async fn run(command: SchemaCommand, global: &Global) -> anyhow::Result<ExitCode> {
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
        SchemaCommand::Diff { file, table, format } => diff(&file, &table, format, global).await,
    }
}

/// Prints what loading `file` into `table` would change, and what it would refuse.
async fn diff(file: &std::path::Path, table: &str, format: Format, global: &Global) -> anyhow::Result<ExitCode> {
    let settings = global.settings(vec![FlagValue::new("table_id", "--table", table)])?;
    let cx = Context { settings: &settings, needs: Needs::MetadataViewer };
    let fail = |e: bqsink::Error| anyhow!(explain(&e, cx));
    settings.config.validate().map_err(|e| fail(e.into()))?;
    let c = &settings.config;
    let tref = TableRef::new(&c.project_id, &c.dataset_id, &c.table_id).map_err(|e| fail(e.into()))?;

    let inputs = input::expand(&[file.display().to_string()])?;
    let found = crate::infer::over(&inputs, format, InferMode::Generic).await?;
    for c in &found.conflicts {
        eprintln!("bqsink: warning: {c}");
    }
    if found.bad > 0 {
        eprintln!("bqsink: {} lines are not rows and were skipped", found.bad);
    }

    let (_, admin) = connect(&settings, Needs::MetadataViewer).await?;
    let Some(live) = admin.rest().get_table(&tref).await.map_err(|e| fail(e.into()))? else {
        out(&format!("table {tref} does not exist; it would be created with the inferred schema:"));
        for f in &found.schema.fields {
            out(&format!("+ {}", column(&f.name, f)));
        }
        out(&format!("{} columns to create, 0 refused", found.schema.fields.len()));
        return Ok(ExitCode::SUCCESS);
    };
    let plan = bqsink_schema::reconcile_schema(&tref.table, &live.schema, &found.schema);
    for change in &plan.changes {
        out(&change_line(change, &plan.schema));
    }
    for conflict in &plan.conflicts {
        out(&format!("! {conflict}"));
    }
    out(&format!("{} changes, {} refused", plan.changes.len(), plan.conflicts.len()));
    Ok(if plan.conflicts.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SOME_ROWS_FAILED) })
}

/// One change as `diff` prints it; `after` is the schema with the change made.
fn change_line(change: &Change, after: &Schema) -> String {
    match change {
        Change::AddColumn(path) => match find(&after.fields, path) {
            Some(f) => format!("+ {}", column(path, f)),
            None => format!("+ {path}"),
        },
        Change::Widen { column, from, to } => format!("~ {column} {from} → {to}"),
        Change::Relax(path) => format!("relax {path} {} → {}", Mode::Required, Mode::Nullable),
        other => other.to_string(),
    }
}

/// `name TYPE`, `name REPEATED TYPE`, or `name RECORD<a INT64, b STRING>`.
fn column(name: &str, f: &Field) -> String {
    let mut ty = describe(f.field_type, f.mode);
    if !f.fields.is_empty() {
        let inner: Vec<String> = f.fields.iter().map(|c| column(&c.name, c)).collect();
        ty = format!("{ty}<{}>", inner.join(", "));
    }
    format!("{name} {ty}")
}

/// The field at a dotted path.
fn find<'a>(fields: &'a [Field], path: &str) -> Option<&'a Field> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let f = fields.iter().find(|f| f.name.eq_ignore_ascii_case(head))?;
    match rest {
        Some(r) => find(&f.fields, r),
        None => Some(f),
    }
}
