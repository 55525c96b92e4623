//! Dead letters that name the Kafka message they came from.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bqsink::{DeadLetter, DeadLetterQueue};

/// Where a message was read: what a dead letter names so a replayed one can be recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagePosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The message's offset in its partition.
    pub offset: i64,
}

/// A dead-letter file (NDJSON, appended) whose lines carry `topic`, `partition` and `offset`
/// next to bqsink's usual fields (`time`, `table`, `row`, `column`, `reason`, `record` | `raw`).
///
/// The source tells it the positions of the batch being written ([`KafkaDeadLetters::begin`]);
/// a dead letter's `row` (its line in the batch) picks its position.
#[derive(Debug)]
pub struct KafkaDeadLetters {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    out: BufWriter<File>,
    batch: Vec<MessagePosition>,
}

impl KafkaDeadLetters {
    /// Opens (creating, appending) the file.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, state: Mutex::new(State { out: BufWriter::new(file), batch: Vec::new() }) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The positions of the batch about to be written: line `i` of the batch is `batch[i]`.
    pub fn begin(&self, batch: Vec<MessagePosition>) {
        if let Ok(mut state) = self.state.lock() {
            state.batch = batch;
        }
    }
}

impl DeadLetterQueue for KafkaDeadLetters {
    fn push(&self, letter: DeadLetter) -> std::io::Result<()> {
        let mut state = self.state.lock().map_err(|_| std::io::Error::other("dead-letter file lock poisoned"))?;
        let position = letter.reason.row.and_then(|r| usize::try_from(r).ok()).and_then(|r| state.batch.get(r));
        let line = with_position(letter.to_json_line(), position);
        state.out.write_all(line.as_bytes())?;
        state.out.write_all(b"\n")
    }

    fn flush(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().map_err(|_| std::io::Error::other("dead-letter file lock poisoned"))?;
        state.out.flush()?;
        state.out.get_ref().sync_data()
    }
}

/// `{…}` with `"topic":…,"partition":…,"offset":…` added at its end (unchanged without a position).
fn with_position(mut line: String, position: Option<&MessagePosition>) -> String {
    let Some(p) = position else {
        return line;
    };
    if line.ends_with('}') {
        line.pop();
        let topic = serde_json::Value::String(p.topic.clone());
        line.push_str(&format!(",\"topic\":{topic},\"partition\":{},\"offset\":{}}}", p.partition, p.offset));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_message() {
        let p = MessagePosition { topic: "t\"x".into(), partition: 3, offset: 42 };
        let line = with_position("{\"row\":0}".into(), Some(&p));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["topic"], "t\"x");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 42);
        assert_eq!(with_position("{}".into(), None), "{}");
    }
}
