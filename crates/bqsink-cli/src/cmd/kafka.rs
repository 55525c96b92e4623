//! `bqsink kafka`: N identical processes in one Kafka consumer group, each writing the
//! partitions Kafka assigns it into one table; offsets committed only after the rows before them
//! are written or dead-lettered (at-least-once).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bqsink::{DestinationBuilder, WriteMode};
use bqsink_kafka::{KafkaConfig, KafkaDeadLetters, KafkaSource};

use super::connect;
use super::load::{ensure_dataset, finish, summary_line, ModeArg};
use crate::errors::{explain, Context, Needs};
use crate::interrupt::Interrupt;
use crate::settings::FlagValue;
use crate::Global;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  # Three workers (on one machine or three), one group: Kafka shares the partitions among them.
  bqsink kafka --brokers k1:9092,k2:9092 --topic events --group bq-events \\
      --project my-proj --dataset analytics --table events --schema events.schema.json --dlq refused.ndjson
  # librdkafka properties pass through (SASL/TLS where the build has them):
  bqsink kafka --brokers k1:9093 --topic events --group g --table events \\
      -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN -X sasl.username=u -X sasl.password=…

Each message value is one JSON record (NDJSON). Messages are written in batches; a batch's
offsets are committed only once each of its rows is acknowledged by BigQuery or dead-lettered,
so a crash or a rebalance replays at most the batches not yet committed: at-least-once.
Dead letters name their message (topic, partition, offset). The table must exist, or be created
from --schema.

Ctrl-C or SIGTERM stops consuming, writes and commits the batch in hand, leaves the group, prints
the summary and exits 130 / 143 (2 when a row read was not written).";

/// Message value formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KafkaFormat {
    /// One JSON object per message
    Ndjson,
    /// One Segment payload per message (not built yet)
    Segment,
}

#[derive(clap::Args, Debug)]
pub(crate) struct KafkaArgs {
    /// Kafka brokers to bootstrap from
    #[arg(long, value_name = "HOST:PORT[,…]", env = "BQSINK_KAFKA_BROKERS")]
    pub(crate) brokers: String,
    /// Topics to consume (comma-separated); all go into the one table
    #[arg(long, value_delimiter = ',', required = true, value_name = "T[,…]")]
    pub(crate) topic: Vec<String>,
    /// Consumer group: every process with the same group shares the partitions
    #[arg(long, value_name = "G", env = "BQSINK_KAFKA_GROUP")]
    pub(crate) group: String,
    /// Table to write into
    #[arg(long, short = 't', value_name = "ID")]
    pub(crate) table: String,
    /// Message value format
    #[arg(long, value_enum, default_value_t = KafkaFormat::Ndjson)]
    pub(crate) format: KafkaFormat,
    /// Write mode (only streaming is built so far)
    #[arg(long, value_enum, default_value_t = ModeArg::Streaming)]
    pub(crate) mode: ModeArg,
    /// BigQuery JSON schema to create the table with when it does not exist
    #[arg(long, value_name = "FILE")]
    pub(crate) schema: Option<PathBuf>,
    /// Create the dataset when it does not exist (in --location)
    #[arg(long)]
    pub(crate) create_dataset: bool,
    /// Append rows that cannot be written, with the reason and their topic, partition and
    /// offset, to this NDJSON file
    #[arg(long, value_name = "PATH")]
    pub(crate) dlq: Option<PathBuf>,
    /// A librdkafka property, passed through (repeatable)
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub(crate) property: Vec<String>,
    /// Messages per batch (written, then committed)
    #[arg(long, value_name = "N", default_value_t = bqsink_kafka::DEFAULT_MAX_BATCH_MESSAGES)]
    pub(crate) batch_messages: usize,
    /// Longest a batch waits for more messages
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = crate::resilience::parse_duration)]
    pub(crate) batch_wait: Duration,
    /// After Ctrl-C or SIGTERM, how long the batch in hand may take to be written before bqsink
    /// gives up on it (dead-lettered with its fate, offsets not committed)
    #[arg(long, value_name = "DURATION", default_value = crate::stop::DEFAULT_GRACE_PERIOD, value_parser = crate::resilience::parse_duration)]
    pub(crate) grace_period: Duration,
}

pub(crate) async fn run(args: KafkaArgs, global: &Global, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    match args.mode {
        ModeArg::Streaming => {}
        ModeArg::ExactlyOnce => bail!(
            "--mode exactly-once is not built yet for `bqsink kafka` (it needs a committed stream per \
             partition and a checkpoint shared by the group); use --mode streaming, which is at-least-once"
        ),
        ModeArg::Batch => {
            bail!("--mode batch does not fit a stream that never ends; use --mode streaming (at-least-once)")
        }
    }
    if args.format == KafkaFormat::Segment {
        bail!(
            "--format segment is not built yet for `bqsink kafka`; use --format ndjson, or `bqsink segment` on files"
        );
    }
    let mut kafka = KafkaConfig::new(&args.brokers, args.topic.iter().map(|t| t.trim().to_owned()), &args.group);
    kafka.max_batch_messages = args.batch_messages;
    kafka.max_batch_wait = args.batch_wait;
    for p in &args.property {
        let (k, v) = KafkaConfig::parse_property(p)?;
        kafka = kafka.property(k, v);
    }
    kafka.validate()?;

    let flags = vec![
        FlagValue::new("table_id", "--table", &args.table),
        FlagValue::new("write_mode", "--mode", WriteMode::Streaming),
    ];
    let settings = global.settings(flags)?;
    let cx = Context { settings: &settings, needs: Needs::DataEditor };
    let fail = |e: bqsink::Error| anyhow!(explain(&e, cx));
    settings.config.validate().map_err(|e| fail(e.into()))?;
    let schema = args.schema.as_deref().map(super::load::read_schema).transpose()?;

    let (auth, admin) = connect(&settings, Needs::DataEditor).await?;
    ensure_dataset(
        &admin,
        &settings,
        args.create_dataset,
        "; pass --create-dataset to create it (with --location for its region), or check --project and --dataset",
        global.quiet,
    )
    .await?;
    let c = &settings.config;
    let table = bqsink::TableRef::new(&c.project_id, &c.dataset_id, &c.table_id).map_err(|e| fail(e.into()))?;
    if schema.is_none() && admin.rest().get_table(&table).await.map_err(|e| fail(e.into()))?.is_none() {
        bail!(
            "table {table} does not exist; pass --schema FILE (a BigQuery JSON schema) to create it \
             (a stream's schema is not inferred)"
        );
    }

    let mut builder =
        DestinationBuilder::from_config(settings.config.clone()).endpoints(settings.endpoints.clone()).auth(auth);
    if let Some(s) = schema {
        builder = builder.schema(s);
    }
    let dead_letters = match &args.dlq {
        Some(path) => Some(Arc::new(
            KafkaDeadLetters::open(path)
                .map_err(|e| anyhow!("cannot open the dead-letter file {}: {e}", path.display()))?,
        )),
        None => None,
    };
    if let Some(d) = &dead_letters {
        builder = builder.dead_letter_queue(d.clone());
    }
    let dest = builder.build().await.map_err(fail)?;

    let source = KafkaSource::connect(kafka)?;
    if !global.quiet {
        eprintln!("bqsink: consuming {} in group {} into {table} (at-least-once)", args.topic.join(","), args.group);
    }
    interrupt.set_graceful(true);
    let stopper = crate::stop::arm(interrupt, dest.abort_handle(), args.grace_period);
    let consumed = source.consumed();
    let outcome = source.run(&dest, dead_letters.as_deref(), interrupt.wait()).await;
    let read = consumed.load(Ordering::Relaxed);
    let fatal = match outcome {
        Ok(report) => {
            if report.failed_commits > 0 {
                eprintln!(
                    "bqsink: {} offset commits failed (rebalances); their messages are read again by the \
                     partitions' next owner",
                    report.failed_commits
                );
            }
            None
        }
        Err(e) => Some(anyhow!("{e}")),
    };
    let result = dest.close().await;
    stopper.abort();
    let interrupted = interrupt.fired();
    let secs = started.elapsed().as_secs_f64();
    let (s, cause) = match result {
        Ok(s) => (s, None),
        Err(bqsink::Error::Incomplete { summary, cause }) => (summary, Some(fail(*cause))),
        Err(e) => {
            summary_line(read, 0, 0, 0, secs, interrupted);
            return Err(fail(e));
        }
    };
    let failed = s.rows_dead_lettered + s.rows_rejected;
    if failed > 0 {
        match &args.dlq {
            Some(path) if s.rows_dead_lettered > 0 => {
                eprintln!("bqsink: {} rows dead-lettered to {}", s.rows_dead_lettered, path.display())
            }
            _ => eprintln!("bqsink: {failed} rows refused; pass --dlq PATH to keep them with the reason"),
        }
    }
    summary_line(s.rows_read, s.rows_written, failed, s.rows_in_doubt, secs, interrupted);
    finish(fatal.or(cause), s.rows_read, s.rows_written, interrupted.then(|| interrupt.exit_code()))
}
