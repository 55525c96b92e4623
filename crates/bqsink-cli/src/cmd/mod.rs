//! The subcommands, one module each.

use std::process::ExitCode;

use clap::Subcommand;

use crate::interrupt::Interrupt;
use crate::Global;

pub(crate) mod config;
pub(crate) mod health;
pub(crate) mod kafka;
pub(crate) mod load;
pub(crate) mod schema;
pub(crate) mod segment;
pub(crate) mod tables;
pub(crate) mod views;

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Load NDJSON, CSV or a JSON array (files, globs or stdin) into a table
    #[command(after_help = load::AFTER_HELP)]
    Load(load::LoadArgs),
    /// Consume Kafka topics in a consumer group into a table (N processes share the partitions)
    #[command(after_help = kafka::AFTER_HELP)]
    Kafka(kafka::KafkaArgs),
    /// List the dataset's tables with their rows, partitioning and clustering
    #[command(after_help = tables::AFTER_HELP)]
    Tables(tables::TablesArgs),
    /// Check connectivity, the dataset, the table and the error rate, one line per check
    #[command(after_help = health::AFTER_HELP)]
    Health(health::HealthArgs),
    /// Print the configuration in effect and where each value came from (secrets redacted)
    #[command(after_help = config::AFTER_HELP)]
    Config(config::ConfigArgs),
    /// Load Segment payloads (track, identify, page, …) into Segment's tables and one table per event
    #[command(after_help = segment::AFTER_HELP)]
    Segment(segment::SegmentArgs),
    /// Infer a file's BigQuery JSON schema, or show what loading it would change on a live table
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Print (or create, with --apply) SQL views over Segment tables: de-duplicated, sessions, users
    #[command(after_help = views::AFTER_HELP)]
    Views(views::ViewsArgs),
}

/// Runs one subcommand to its exit code.
pub(crate) async fn run(command: Command, global: &Global, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    match command {
        Command::Load(args) => load::run(args, global, interrupt).await,
        Command::Kafka(args) => kafka::run(args, global, interrupt).await,
        Command::Tables(args) => tables::run(args, global).await,
        Command::Health(args) => health::run(args, global).await,
        Command::Config(args) => config::run(args, global),
        Command::Segment(args) => segment::run(args, global, interrupt).await,
        Command::Schema(cmd) => schema::run(cmd, global).await,
        Command::Views(args) => views::run(args, global).await,
    }
}

/// Prints one line on stdout (the command's output, as opposed to messages on stderr).
pub(crate) fn out(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}

/// Credentials and an admin client for the settings' endpoints; errors explained.
pub(crate) async fn connect(
    settings: &crate::settings::Settings,
    needs: crate::errors::Needs,
) -> anyhow::Result<(bqsink::Auth, bqsink::Admin)> {
    let cx = crate::errors::Context { settings, needs };
    let fail = |e: bqsink::Error| anyhow::anyhow!(crate::errors::explain(&e, cx));
    let auth = bqsink::admin::resolve_auth(&settings.endpoints, settings.config.credentials_path.as_deref())
        .await
        .map_err(fail)?;
    let admin = bqsink::Admin::new(&settings.endpoints, auth.clone()).map_err(fail)?;
    Ok((auth, admin))
}
