//! `bqsink segment`: Segment payloads (track, identify, page, screen, group, alias) into one
//! table per event, following the Segment layout of bqsink-schema. Wired once that layout is
//! available to the facade; until then it says so.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::Global;

#[derive(clap::Args, Debug)]
pub(crate) struct SegmentArgs {
    /// Files of Segment payloads (NDJSON or a JSON array), globs, or `-` for stdin
    #[arg(value_name = "FILE|GLOB|-")]
    pub(crate) inputs: Vec<String>,
    /// Append payloads that cannot be written, with the reason, to this NDJSON file
    #[arg(long, value_name = "PATH")]
    pub(crate) dlq: Option<PathBuf>,
}

pub(crate) async fn run(_args: SegmentArgs, _global: &Global) -> anyhow::Result<ExitCode> {
    bail!("`bqsink segment` is not available in this build yet (it needs the Segment layout of bqsink-schema)")
}
