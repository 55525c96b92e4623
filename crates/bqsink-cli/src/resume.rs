//! `--checkpoint PATH`: a load that goes on where a killed one stopped. The checkpoint (see
//! `bqsink::checkpoint`) keeps the end of the settled prefix of the inputs and the streams'
//! next offsets; it is saved at most every `--checkpoint-interval` (default [`SAVE_EVERY`]) as the prefix grows, and marked done
//! once the load is over.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bqsink::checkpoint::{Checkpoint, InputFingerprint, Position, StreamOffset};
use bqsink::Settled;

use crate::input::Input;

/// Longest the saved checkpoint lags behind the settled prefix, by default: a restart redoes
/// at most this much work, and a checkpoint costs an fsync or two.
pub(crate) const SAVE_EVERY: &str = "200ms";

/// A load's checkpoint file and its latest state.
pub(crate) struct Resume {
    path: PathBuf,
    /// Longest the saved checkpoint lags behind the settled prefix.
    every: Duration,
    state: Mutex<(Checkpoint, Instant)>,
    table: String,
    /// The input being loaded, and the offset its reader started at.
    current: Mutex<(usize, u64)>,
}

/// What [`Resume::open`] found.
pub(crate) enum Opened {
    /// A load to run, from the checkpoint's position (the start for a new one).
    Run(Arc<Resume>),
    /// The checkpoint says the load is done.
    Done,
}

impl Resume {
    /// Opens (or starts) the checkpoint of a load of `table` in `mode` over `inputs`; refuses
    /// stdin and a checkpoint made for other inputs.
    pub(crate) fn open(
        path: &Path,
        every: Duration,
        table: &str,
        mode: &str,
        inputs: &[Input],
    ) -> anyhow::Result<Opened> {
        let mut prints = Vec::with_capacity(inputs.len());
        for i in inputs {
            let Some(p) = &i.path else {
                bail!("--checkpoint needs files: stdin cannot be read again from where a load stopped")
            };
            prints.push(InputFingerprint::of(p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?);
        }
        let checkpoint = match Checkpoint::load(path).map_err(|e| anyhow!(e))? {
            Some(c) => {
                if let Some(why) = c.mismatch(table, mode, &prints) {
                    bail!("the checkpoint {} belongs to another load: {why}; remove it to start over", path.display());
                }
                if c.done {
                    return Ok(Opened::Done);
                }
                c
            }
            None => {
                let c = Checkpoint::new(table, mode, prints);
                c.save(path).map_err(|e| anyhow!("cannot write the checkpoint {}: {e}", path.display()))?;
                c
            }
        };
        Ok(Opened::Run(Arc::new(Resume {
            path: path.to_owned(),
            every,
            state: Mutex::new((checkpoint, Instant::now())),
            table: table.to_owned(),
            current: Mutex::new((0, 0)),
        })))
    }

    /// Where the load goes on from.
    pub(crate) fn position(&self) -> Position {
        self.state.lock().map(|s| s.0.position).unwrap_or_default()
    }

    /// The stream to go on writing into, with its next offset (ExactlyOnce, Batch).
    pub(crate) fn stream(&self) -> Option<(String, i64)> {
        let s = self.state.lock().ok()?;
        s.0.streams.iter().find(|s| s.table == self.table).map(|s| (s.stream.clone(), s.next_offset))
    }

    /// Records the stream rows are about to be written to, before any is sent.
    pub(crate) fn set_stream(&self, stream: Option<(String, i64)>) -> anyhow::Result<()> {
        if let Ok(mut s) = self.state.lock() {
            s.0.streams = stream
                .into_iter()
                .map(|(stream, next_offset)| StreamOffset { table: self.table.clone(), stream, next_offset })
                .collect();
        }
        self.save(false)
    }

    /// Input `input` is read from byte `base` on.
    pub(crate) fn begin_input(&self, input: usize, base: u64) {
        if let Ok(mut c) = self.current.lock() {
            *c = (input, base);
        }
    }

    /// The prefix of the current input is settled up to `settled.position` (from where its
    /// reader started): kept, and saved when the last save is old enough.
    pub(crate) fn settled(&self, settled: &Settled) -> anyhow::Result<()> {
        let (input, base) = self.current.lock().map(|c| *c).unwrap_or_default();
        let Ok(mut s) = self.state.lock() else { bail!("the checkpoint state is unusable") };
        s.0.position = Position { input, offset: base + settled.position };
        s.0.streams = settled
            .stream
            .iter()
            .map(|stream| StreamOffset {
                table: self.table.clone(),
                stream: stream.clone(),
                next_offset: settled.next_offset,
            })
            .collect();
        if s.1.elapsed() >= self.every {
            write(&s.0, &self.path)?;
            s.1 = Instant::now();
        }
        Ok(())
    }

    /// Saves the latest state now; `done` marks the load finished.
    pub(crate) fn save(&self, done: bool) -> anyhow::Result<()> {
        let Ok(mut s) = self.state.lock() else { bail!("the checkpoint state is unusable") };
        s.0.done = done;
        write(&s.0, &self.path)?;
        s.1 = Instant::now();
        Ok(())
    }
}

fn write(checkpoint: &Checkpoint, path: &Path) -> anyhow::Result<()> {
    crate::failpoint::hit("before-checkpoint-save");
    checkpoint.save(path).map_err(|e| anyhow!("cannot write the checkpoint {}: {e}", path.display()))
}

/// Skips the first `bytes` of `reader` (records already settled), returning how many lines
/// they held.
pub(crate) fn skip(reader: &mut dyn Read, bytes: u64) -> std::io::Result<u64> {
    let mut left = bytes;
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the input is shorter than the checkpoint's position",
            ));
        }
        lines += memchr_count(&buf[..n]);
        left -= n as u64;
    }
    Ok(lines)
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}
