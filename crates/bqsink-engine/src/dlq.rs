//! The dead-letter queue: rows that cannot be written, kept with the reason, instead of an
//! error that stops the load. Every input row ends either in the table or here.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bqsink_core::{value::write_json_str, Record, RowError, TableRef, Timestamp};

/// Why a row was dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reason {
    /// Position of the row in its input (0-based), when known.
    pub row: Option<u64>,
    /// The table it was meant for.
    pub table: TableRef,
    /// Dotted path of the offending column, empty when the row as a whole is bad.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

impl Reason {
    /// The reason for a row error in a table.
    pub fn from_row_error(table: &TableRef, e: &RowError) -> Self {
        Self { row: e.row, table: table.clone(), column: e.column.clone(), message: e.message.clone() }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.row {
            write!(f, "row {r}: ")?;
        }
        if self.column.is_empty() {
            write!(f, "{}: {}", self.table, self.message)
        } else {
            write!(f, "{}.{}: {}", self.table.table, self.column, self.message)
        }
    }
}

/// What became of a row bqsink gave up on: the first words of its dead letter's reason, so a
/// reader of the dead-letter file (or a program) can tell the classes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Sent on the default stream and never acknowledged: it may be in the table.
    InDoubt,
    /// Never sent, or known not to be in the table (through offsets).
    NotWritten,
    /// In a pending stream that was never committed (Batch mode): not in the table.
    NotCommitted,
}

impl Fate {
    /// The dead letter's reason for a row of this fate, with the cause (why bqsink gave up).
    pub fn reason(self, cause: &str) -> String {
        match self {
            Fate::InDoubt => format!("in doubt: sent, not acknowledged ({cause}); it may be in the table"),
            Fate::NotWritten => format!("not written: {cause}"),
            Fate::NotCommitted => format!("not committed: {cause}"),
        }
    }

    /// The fate a dead letter's reason names, if it names one.
    pub fn of(reason: &str) -> Option<Fate> {
        if reason.starts_with("in doubt: ") {
            Some(Fate::InDoubt)
        } else if reason.starts_with("not written: ") {
            Some(Fate::NotWritten)
        } else if reason.starts_with("not committed: ") {
            Some(Fate::NotCommitted)
        } else {
            None
        }
    }
}

/// The row as it arrived: a record, or the raw text when it could not even be parsed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// A parsed record.
    Record(Record),
    /// Input text that is not a record.
    Raw(String),
}

/// One dead-lettered row.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Why.
    pub reason: Reason,
    /// The original row.
    pub payload: Payload,
    /// When it was dead-lettered.
    pub time: Timestamp,
}

impl DeadLetter {
    /// A dead letter stamped now.
    pub fn new(reason: Reason, payload: Payload) -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        let time = Timestamp::from_micros(micros).unwrap_or(Timestamp::UNIX_EPOCH);
        Self { reason, payload, time }
    }

    /// One NDJSON line: `{"time", "table", "row", "column", "reason", "record" | "raw"}`.
    pub fn to_json_line(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"time\":");
        write_json_str(&mut out, &self.time.to_string());
        out.push_str(",\"table\":");
        write_json_str(&mut out, &self.reason.table.to_string());
        out.push_str(",\"row\":");
        match self.reason.row {
            Some(r) => out.push_str(&r.to_string()),
            None => out.push_str("null"),
        }
        out.push_str(",\"column\":");
        write_json_str(&mut out, &self.reason.column);
        out.push_str(",\"reason\":");
        write_json_str(&mut out, &self.reason.message);
        match &self.payload {
            Payload::Record(r) => {
                out.push_str(",\"record\":");
                out.push_str(&r.to_json_string());
            }
            Payload::Raw(text) => {
                out.push_str(",\"raw\":");
                write_json_str(&mut out, text);
            }
        }
        out.push('}');
        out
    }
}

/// Where dead letters go.
pub trait DeadLetterQueue: Send + Sync + fmt::Debug {
    /// Keeps one dead letter. An error here means the row would be lost: callers stop.
    fn push(&self, letter: DeadLetter) -> std::io::Result<()>;
    /// Makes everything pushed so far durable.
    fn flush(&self) -> std::io::Result<()>;
}

/// Dead letters appended to a newline-delimited JSON file.
#[derive(Debug)]
pub struct NdjsonFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl NdjsonFile {
    /// Opens (creating, appending) the file.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, out: Mutex::new(BufWriter::new(file)) })
    }
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DeadLetterQueue for NdjsonFile {
    fn push(&self, letter: DeadLetter) -> std::io::Result<()> {
        let line = letter.to_json_line();
        let mut out = self.out.lock().map_err(|_| std::io::Error::other("dead-letter file lock poisoned"))?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    }
    fn flush(&self) -> std::io::Result<()> {
        let mut out = self.out.lock().map_err(|_| std::io::Error::other("dead-letter file lock poisoned"))?;
        out.flush()?;
        out.get_ref().sync_data()
    }
}

/// Dead letters handed to a function (to log, count, or forward them).
pub struct Callback(Box<dyn Fn(DeadLetter) -> std::io::Result<()> + Send + Sync>);

impl Callback {
    /// Calls `f` for every dead letter; an error from `f` stops the writer like a full disk would.
    pub fn new(f: impl Fn(DeadLetter) -> std::io::Result<()> + Send + Sync + 'static) -> Self {
        Self(Box::new(f))
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Callback")
    }
}

impl DeadLetterQueue for Callback {
    fn push(&self, letter: DeadLetter) -> std::io::Result<()> {
        (self.0)(letter)
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Dead letters sent into a channel; the receiving side decides what to do with them.
/// Sending blocks while the channel is full, so a bounded channel bounds memory.
#[derive(Debug, Clone)]
pub struct Channel(crossbeam_channel::Sender<DeadLetter>);

impl Channel {
    /// A queue over a sender, and the receiver to read dead letters from.
    pub fn bounded(capacity: usize) -> (Self, crossbeam_channel::Receiver<DeadLetter>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (Self(tx), rx)
    }
}

impl DeadLetterQueue for Channel {
    fn push(&self, letter: DeadLetter) -> std::io::Result<()> {
        self.0.send(letter).map_err(|_| std::io::Error::other("the dead-letter receiver is gone"))
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_carry_record_reason_table_and_time() {
        let table = TableRef::new("p-123456", "d", "t").expect("table");
        let e = RowError::new("at", "expected TIMESTAMP, got STRING (\"x\")").at_row(7);
        let letter =
            DeadLetter::new(Reason::from_row_error(&table, &e), Payload::Record(Record::new().with("at", "x")));
        let line = letter.to_json_line();
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["table"], "p-123456.d.t");
        assert_eq!(v["row"], 7);
        assert_eq!(v["column"], "at");
        assert_eq!(v["record"]["at"], "x");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(letter.reason.to_string(), "row 7: t.at: expected TIMESTAMP, got STRING (\"x\")");
    }

    #[test]
    fn fates_are_read_back_from_their_reasons() {
        for fate in [Fate::InDoubt, Fate::NotWritten, Fate::NotCommitted] {
            assert_eq!(Fate::of(&fate.reason("UNAVAILABLE: gone")), Some(fate));
        }
        assert_eq!(Fate::of("id: expected INT64, got STRING"), None);
        assert!(Fate::InDoubt.reason("x").ends_with("it may be in the table"));
    }

    #[test]
    fn channel_and_callback_targets_receive_letters() {
        let table = TableRef::new("p-123456", "d", "t").expect("table");
        let letter =
            || DeadLetter::new(Reason::from_row_error(&table, &RowError::new("c", "m")), Payload::Raw("x".into()));
        let (q, rx) = Channel::bounded(4);
        q.push(letter()).expect("sent");
        assert_eq!(rx.try_recv().map(|l| l.reason.column).ok(), Some("c".to_string()));
        drop(rx);
        assert!(q.push(letter()).is_err(), "a gone receiver is an error, not a silent loss");
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s2 = seen.clone();
        let cb = Callback::new(move |_| {
            s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        cb.push(letter()).expect("called");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
