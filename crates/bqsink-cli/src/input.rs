//! Input: files, globs or stdin, as newline-delimited JSON, CSV with a header, or one JSON array.
//!
//! A reader thread parses the input and hands rows over a bounded channel, so reading stops as
//! soon as the loader stops taking rows (backpressure, or Ctrl-C) and memory does not grow with
//! the input. A plain thread, not the runtime's blocking pool, so a read blocked on a silent pipe
//! never holds up the process's exit.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use bqsink::{Record, Value};
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use tokio::sync::mpsc;

/// Rows parsed ahead of the loader.
const CHANNEL_ROWS: usize = 1024;
/// Read buffer per input.
const READ_BUFFER: usize = 1 << 20;

/// How the input is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// By extension (`.csv`, `.ndjson`, `.jsonl`, `.json`), else by the first character:
    /// `[` a JSON array, `{` NDJSON, anything else CSV.
    Auto,
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header line; empty cells are NULL.
    Csv,
    /// One JSON array of objects.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
            Self::Json => "json",
        })
    }
}

/// One input: a file, or stdin.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    /// `None` for stdin.
    pub(crate) path: Option<PathBuf>,
    /// Its size, when it is a regular file.
    pub(crate) size: Option<u64>,
}

impl Input {
    /// The name used in messages.
    pub(crate) fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "stdin".into(),
        }
    }
}

/// Expands the command line's inputs: `-` is stdin, a pattern with `*`, `?` or `[` is a glob
/// (that must match at least one file), anything else a file that must exist.
pub(crate) fn expand(args: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    for arg in args {
        if arg == "-" {
            out.push(Input { path: None, size: None });
            continue;
        }
        let paths: Vec<PathBuf> = if arg.contains(['*', '?', '[']) {
            let mut found = Vec::new();
            for entry in glob::glob(arg).with_context(|| format!("invalid glob pattern {arg}"))? {
                let path = entry.with_context(|| format!("cannot read a match of {arg}"))?;
                if path.is_file() {
                    found.push(path);
                }
            }
            if found.is_empty() {
                bail!("no file matches {arg}");
            }
            found.sort();
            found
        } else {
            vec![PathBuf::from(arg)]
        };
        for path in paths {
            let meta = std::fs::metadata(&path).with_context(|| format!("cannot open the input {}", path.display()))?;
            if meta.is_dir() {
                bail!("{} is a directory; give files or a glob such as {}/*.ndjson", path.display(), path.display());
            }
            out.push(Input { size: meta.is_file().then_some(meta.len()), path: Some(path) });
        }
    }
    if out.iter().filter(|i| i.path.is_none()).count() > 1 {
        bail!("stdin (`-`) can be read only once");
    }
    Ok(out)
}

/// What the reader found, in input order.
#[derive(Debug)]
pub(crate) enum Item {
    /// A row.
    Row(Position, Record),
    /// Input that is not a row (invalid JSON, not an object, wrong number of CSV fields, …).
    Bad(Position, String, String),
    /// The input cannot be read on (an I/O error, a broken JSON array): the rest is lost.
    Fatal(String),
}

/// Where an item was in its input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position {
    /// Index into the inputs.
    pub(crate) input: usize,
    /// What `number` counts.
    pub(crate) unit: Unit,
    /// 1-based line, or element of a JSON array.
    pub(crate) number: u64,
}

/// What a [`Position`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Line,
    Element,
}

impl Position {
    /// 0-based position, as the dead-letter queue's `row` records it.
    pub(crate) fn index(&self) -> u64 {
        self.number.saturating_sub(1)
    }
}

/// Starts the reader thread; rows come out of the returned channel.
pub(crate) fn spawn(inputs: Vec<Input>, format: Format, bytes: Arc<AtomicU64>) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let spawned = std::thread::Builder::new().name("bqsink-input".into()).spawn({
        let tx = tx.clone();
        move || {
            for (i, input) in inputs.iter().enumerate() {
                match read_one(i, input, format, &bytes, &tx) {
                    Ok(()) => {}
                    Err(Stop::Closed) => return,
                    Err(Stop::Failed(message)) => {
                        let _ = tx.blocking_send(Item::Fatal(message));
                        return;
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        let _ = tx.try_send(Item::Fatal(format!("cannot start the input reader: {e}")));
    }
    rx
}

/// Why reading stopped early.
enum Stop {
    /// The loader hung up.
    Closed,
    /// The input could not be read.
    Failed(String),
}

/// Counts the bytes read, for progress.
pub(crate) struct Counting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    /// `inner`, adding what it reads to `bytes`.
    pub(crate) fn new(inner: R, bytes: Arc<AtomicU64>) -> Self {
        Self { inner, bytes }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn read_one(
    i: usize,
    input: &Input,
    format: Format,
    bytes: &Arc<AtomicU64>,
    tx: &mpsc::Sender<Item>,
) -> Result<(), Stop> {
    let name = input.name();
    let raw: Box<dyn Read + Send> = match &input.path {
        Some(p) => Box::new(File::open(p).map_err(|e| Stop::Failed(format!("cannot open {name}: {e}")))?),
        None => Box::new(io::stdin()),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, Counting { inner: raw, bytes: bytes.clone() });
    let format = match format {
        Format::Auto => detect(input, &mut reader).map_err(|e| Stop::Failed(format!("cannot read {name}: {e}")))?,
        f => f,
    };
    let send = |item: Item| tx.blocking_send(item).map_err(|_| Stop::Closed);
    match format {
        Format::Csv => read_csv(i, &name, reader, send),
        Format::Json => read_array(i, &name, reader, send),
        Format::Ndjson | Format::Auto => read_ndjson(i, &name, reader, send),
    }
}

/// The format of an input given as `auto`.
fn detect(input: &Input, reader: &mut impl BufRead) -> io::Result<Format> {
    let ext = input
        .path
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => return Ok(Format::Csv),
        "ndjson" | "jsonl" => return Ok(Format::Ndjson),
        _ => {}
    }
    let buf = reader.fill_buf()?;
    let first = buf.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
    Ok(match first {
        Some(b'[') => Format::Json,
        Some(b'{') | None => Format::Ndjson,
        Some(_) if ext == "json" => Format::Ndjson,
        Some(_) => Format::Csv,
    })
}

fn read_ndjson(
    i: usize,
    name: &str,
    reader: impl BufRead,
    send: impl Fn(Item) -> Result<(), Stop>,
) -> Result<(), Stop> {
    each_line(name, reader, |number, text| {
        let at = Position { input: i, unit: Unit::Line, number };
        match text {
            Err(lossy) => send(Item::Bad(at, lossy, "the line is not valid UTF-8".into())),
            Ok(text) => match Record::from_json_str(text) {
                Ok(r) => send(Item::Row(at, r)),
                Err(e) => send(Item::Bad(at, text.to_owned(), e.message)),
            },
        }
    })
}

/// Calls `f` with each non-blank line (1-based number, trimmed, without a byte-order mark), or
/// with the line made readable when it is not UTF-8.
fn each_line(
    name: &str,
    mut reader: impl BufRead,
    mut f: impl FnMut(u64, Result<&str, String>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| Stop::Failed(format!("cannot read {name}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        match std::str::from_utf8(&line) {
            Ok(t) => {
                let text = t.trim().trim_start_matches('\u{feff}');
                if !text.is_empty() {
                    f(number, Ok(text))?;
                }
            }
            Err(_) => f(number, Err(String::from_utf8_lossy(&line).trim().to_owned()))?,
        }
    }
}

/// One line of an input read as text, for commands that parse lines themselves.
#[derive(Debug)]
pub(crate) enum Line {
    /// A non-blank line, trimmed.
    Text(Position, String),
    /// A line that is not UTF-8: its text made readable, and why.
    Bad(Position, String, String),
    /// The input cannot be read on: the rest is lost.
    Fatal(String),
}

/// Starts a reader thread over `inputs` (each with its index among the command's inputs, for
/// messages), sending every non-blank line.
pub(crate) fn spawn_lines(inputs: Vec<(usize, Input)>, bytes: Arc<AtomicU64>) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let spawned = std::thread::Builder::new().name("bqsink-lines".into()).spawn({
        let tx = tx.clone();
        move || {
            for (i, input) in &inputs {
                match read_lines(*i, input, &bytes, &tx) {
                    Ok(()) => {}
                    Err(Stop::Closed) => return,
                    Err(Stop::Failed(message)) => {
                        let _ = tx.blocking_send(Line::Fatal(message));
                        return;
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        let _ = tx.try_send(Line::Fatal(format!("cannot start the input reader: {e}")));
    }
    rx
}

fn read_lines(i: usize, input: &Input, bytes: &Arc<AtomicU64>, tx: &mpsc::Sender<Line>) -> Result<(), Stop> {
    let name = input.name();
    let raw: Box<dyn Read + Send> = match &input.path {
        Some(p) => Box::new(File::open(p).map_err(|e| Stop::Failed(format!("cannot open {name}: {e}")))?),
        None => Box::new(io::stdin()),
    };
    let reader = BufReader::with_capacity(READ_BUFFER, Counting { inner: raw, bytes: bytes.clone() });
    each_line(&name, reader, |number, text| {
        let at = Position { input: i, unit: Unit::Line, number };
        let line = match text {
            Ok(t) => Line::Text(at, t.to_owned()),
            Err(lossy) => Line::Bad(at, lossy, "the line is not valid UTF-8".into()),
        };
        tx.blocking_send(line).map_err(|_| Stop::Closed)
    })
}

fn read_csv(i: usize, name: &str, reader: impl Read, send: impl Fn(Item) -> Result<(), Stop>) -> Result<(), Stop> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let headers: Vec<String> = match csv.byte_headers() {
        Ok(h) => h
            .iter()
            .enumerate()
            .map(|(n, h)| {
                let h = String::from_utf8_lossy(h);
                let h = h.trim().trim_start_matches('\u{feff}');
                if h.is_empty() {
                    format!("column_{}", n + 1)
                } else {
                    h.to_owned()
                }
            })
            .collect(),
        Err(e) => return Err(Stop::Failed(format!("cannot read the CSV header of {name}: {e}"))),
    };
    if headers.is_empty() {
        return Ok(());
    }
    let mut record = csv::ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => return Err(Stop::Failed(format!("cannot read {name} as CSV: {e}"))),
        }
        let number = record.position().map_or(0, |p| p.line());
        let at = Position { input: i, unit: Unit::Line, number };
        let raw = || record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect::<Vec<_>>().join(",");
        if record.len() == 1 && record.get(0).is_some_and(|f| f.is_empty()) && headers.len() > 1 {
            continue;
        }
        if record.len() != headers.len() {
            let why = format!("expected {} fields (as in the header), got {}", headers.len(), record.len());
            send(Item::Bad(at, raw(), why))?;
            continue;
        }
        let mut row = Record::with_capacity(headers.len());
        let mut bad = None;
        for (h, field) in headers.iter().zip(record.iter()) {
            match std::str::from_utf8(field) {
                Ok("") => row.push(h.clone(), Value::Null),
                Ok(s) => row.push(h.clone(), Value::String(s.to_owned())),
                Err(_) => {
                    bad = Some(format!("{h}: not valid UTF-8"));
                    break;
                }
            }
        }
        match bad {
            Some(why) => send(Item::Bad(at, raw(), why))?,
            None => send(Item::Row(at, row))?,
        }
    }
}

fn read_array(i: usize, name: &str, reader: impl Read, send: impl Fn(Item) -> Result<(), Stop>) -> Result<(), Stop> {
    struct Elements<'a, F> {
        input: usize,
        send: &'a F,
        stopped: &'a std::cell::Cell<bool>,
    }
    impl<'de, F: Fn(Item) -> Result<(), Stop>> Visitor<'de> for Elements<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut number = 0u64;
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                number += 1;
                let at = Position { input: self.input, unit: Unit::Element, number };
                let item = match Value::from(v) {
                    Value::Record(r) => Item::Row(at, r),
                    other => {
                        let kind = other.kind();
                        Item::Bad(at, other.to_json_string(), format!("expected a JSON object, got {kind}"))
                    }
                };
                if (self.send)(item).is_err() {
                    self.stopped.set(true);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let stopped = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = de.deserialize_seq(Elements { input: i, send: &send, stopped: &stopped }).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(()),
        Err(_) if stopped.get() => Err(Stop::Closed),
        Err(e) => Err(Stop::Failed(format!("{name} is not a valid JSON array: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str, format: Format) -> Vec<Item> {
        let dir = std::env::temp_dir().join(format!("bqsink-cli-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join(format!("in-{}", text.len()));
        std::fs::write(&path, text).expect("write");
        let inputs = expand(&[path.display().to_string()]).expect("expand");
        let mut rx = spawn(inputs, format, Arc::new(AtomicU64::new(0)));
        let mut out = Vec::new();
        while let Some(i) = rx.blocking_recv() {
            out.push(i);
        }
        out
    }

    fn summary(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Row(p, r) => format!("{}:{}", p.number, r.to_json_string()),
                Item::Bad(p, raw, why) => format!("{}!{raw}!{why}", p.number),
                Item::Fatal(m) => format!("fatal {m}"),
            })
            .collect()
    }

    #[test]
    fn csv_with_a_header() {
        let items = collect("id,name,at\n1,ann,2024-01-01\n2,,\n3,bob\n", Format::Csv);
        assert_eq!(
            summary(&items),
            vec![
                r#"2:{"id":"1","name":"ann","at":"2024-01-01"}"#.to_owned(),
                r#"3:{"id":"2","name":null,"at":null}"#.to_owned(),
                "4!3,bob!expected 3 fields (as in the header), got 2".to_owned(),
            ]
        );
    }

    #[test]
    fn a_json_array() {
        let items = collect("[{\"a\":1},\n 2, {\"a\":3}]", Format::Auto);
        assert_eq!(
            summary(&items),
            vec![
                r#"1:{"a":1}"#.to_owned(),
                "2!2!expected a JSON object, got INT64".to_owned(),
                r#"3:{"a":3}"#.to_owned()
            ]
        );
        let items = collect("[{\"a\":1}, {\"a\":", Format::Json);
        assert!(matches!(items.last(), Some(Item::Fatal(m)) if m.contains("not a valid JSON array")), "{items:?}");
    }

    #[test]
    fn ndjson_skips_blank_lines_and_keeps_bad_ones() {
        let items = collect("{\"a\":1}\n\n{oops}\n", Format::Auto);
        assert_eq!(summary(&items).len(), 2);
        assert!(matches!(&items[1], Item::Bad(p, raw, _) if p.number == 3 && raw == "{oops}"));
    }

    #[test]
    fn globs_must_match() {
        assert!(expand(&["/nonexistent-dir-bqsink/*.csv".into()]).is_err());
        assert!(expand(&["-".into(), "-".into()]).is_err());
    }
}
