//! `bqsink`: load records into BigQuery through the Storage Write API, and look at what
//! happened. One module per subcommand under `cmd/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// jemalloc, chosen by measurement (`bqsink load`, 1M rows, both cores: the least CPU per row of
/// jemalloc, glibc's malloc and mimalloc, and a flat peak RSS). The transcoding path allocates
/// nothing per row whichever is used; requests, responses and the runtime still allocate, across
/// threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cmd;
mod errors;
mod failpoint;
mod infer;
mod input;
mod interrupt;
mod progress;
mod resilience;
mod resume;
mod settings;
mod stop;

use settings::{FlagValue, Settings};

/// Exit code of a fatal error.
pub(crate) const EXIT_FATAL: u8 = 1;
/// Exit code when some rows were dead-lettered (or refused).
pub(crate) const EXIT_SOME_ROWS_FAILED: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + SIGTERM).
pub(crate) const EXIT_TERMINATED: u8 = 143;

const AFTER_HELP: &str = "\
Configuration, highest first: flags > environment (BIGQUERY_PROJECT_ID, BIGQUERY_DATASET,
BIGQUERY_AUTO_TABLE_MANAGEMENT, GOOGLE_APPLICATION_CREDENTIALS, BIGQUERY_EMULATOR_HOST,
BIGQUERY_STORAGE_EMULATOR_HOST) > the --config TOML file > defaults. `bqsink config` shows the result.

Exit codes: 0 every row written; 2 some rows not written (dead-lettered, refused or in doubt);
1 a fatal error with every row read written (or none read); 130 after Ctrl-C, 143 after SIGTERM, when
every row read was written.

Examples:
  bqsink load --project my-proj --dataset analytics --table events --schema events.json events.ndjson
  bqsink segment --project my-proj --dataset segment --dlq refused.ndjson events.ndjson
  bqsink schema diff --project my-proj --dataset analytics --table events events.ndjson
  bqsink tables --project my-proj --dataset analytics
  bqsink health --project my-proj --dataset analytics --table events";

#[derive(Parser, Debug)]
#[command(
    name = "bqsink",
    version,
    about = "Load records into Google BigQuery through the Storage Write API",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
    #[command(flatten)]
    global: Global,
}

/// Options every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Global {
    /// Google Cloud project [env: BIGQUERY_PROJECT_ID]
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) project: Option<String>,
    /// Dataset [env: BIGQUERY_DATASET]
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) dataset: Option<String>,
    /// Service-account key file [env: GOOGLE_APPLICATION_CREDENTIALS]; default: Application
    /// Default Credentials or the metadata server
    #[arg(long, global = true, value_name = "KEY.json")]
    pub(crate) credentials: Option<PathBuf>,
    /// Location of a dataset bqsink creates (US, EU, a region)
    #[arg(long, global = true, value_name = "LOCATION")]
    pub(crate) location: Option<String>,
    /// TOML file of settings with the library's property names (project_id, dataset_id,
    /// batch_size, …); flags and the environment win over it
    #[arg(long, global = true, value_name = "FILE.toml")]
    pub(crate) config: Option<PathBuf>,
    /// More log output on stderr: -v info, -vv debug (RUST_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// No progress output (the summary line is still printed)
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

impl Global {
    /// The settings in effect given these options and a command's own `flags`.
    pub(crate) fn settings(&self, mut flags: Vec<FlagValue>) -> anyhow::Result<Settings> {
        let mut own = Vec::new();
        if let Some(v) = &self.project {
            own.push(FlagValue::new("project_id", "--project", v));
        }
        if let Some(v) = &self.dataset {
            own.push(FlagValue::new("dataset_id", "--dataset", v));
        }
        if let Some(v) = &self.credentials {
            own.push(FlagValue::new("credentials_path", "--credentials", v));
        }
        if let Some(v) = &self.location {
            own.push(FlagValue::new("location", "--location", v));
        }
        own.append(&mut flags);
        settings::resolve(self.config.as_deref(), &|k| std::env::var(k).ok(), &own)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bqsink: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let result = runtime.block_on(async {
        let interrupt = interrupt::Interrupt::install();
        cmd::run(cli.command, &cli.global, &interrupt).await
    });
    // Do not wait for the input thread, which may be blocked reading a silent pipe.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bqsink: {}", errors::one_line(&format!("{e:#}")));
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn init_tracing(verbose: u8) {
    // gcp_auth warns on every retry of credential discovery; the one-line error says it all.
    let default = match verbose {
        0 => "warn,gcp_auth=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
