//! Cutting an input into large chunks at record boundaries, so workers can transcode them in
//! parallel while requests keep input order.
//!
//! - NDJSON: at the last newline of a chunk; a line longer than a chunk grows the chunk.
//! - CSV: at the last newline outside quotes (a quoted field may hold newlines); the header
//!   record is taken apart first.
//! - A JSON array: read here, on the reader's thread, element by element (a small state machine
//!   over the bytes); each element is handed on as one line, its whitespace newlines blanked
//!   (raw newlines cannot occur inside JSON strings; one in broken input becomes a `\r`, so the
//!   element stays on its line and is still refused), so the NDJSON transcoder reads it.

use std::io::{self, Read};

/// An input's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header record.
    Csv,
    /// One JSON array of objects.
    JsonArray,
}

/// Default bytes per chunk: a few requests' worth of rows.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest single read.
const READ_AT_ONCE: usize = 1 << 20;
/// Smallest read asked for after a short one.
const MIN_READ: usize = 8 * 1024;

/// A run of whole records.
#[derive(Debug)]
pub struct Chunk {
    /// The records' bytes (for a JSON array, one element per line).
    pub data: Vec<u8>,
    /// 1-based number of the first record's first line (an element number for a JSON array).
    pub first_line: u64,
}

/// Reads an input chunk by chunk.
pub struct Chunker<R> {
    reader: R,
    format: Format,
    chunk_bytes: usize,
    /// Bytes read past the last boundary, carried into the next chunk.
    carry: Vec<u8>,
    next_line: u64,
    eof: bool,
    header: Option<Vec<u8>>,
    array: ArrayState,
    /// Why a JSON array broke off, reported after the elements read before it.
    failed: Option<io::Error>,
    /// How far `carry` was searched for a record end: bytes arriving a few at a time (a pipe)
    /// are searched once, not again on every read.
    scan: Scan,
    /// Bytes to ask of the next read.
    read_size: usize,
}

/// The search for the last record end in `carry`, resumed where it stopped.
#[derive(Default)]
struct Scan {
    /// Bytes of `carry` searched.
    at: usize,
    /// End of the last whole record found.
    last: Option<usize>,
    /// The CSV reader's state at `at`.
    csv: Option<csv_core::Reader>,
}

impl Scan {
    /// End (after its newline) of the last whole record of `carry` (which starts at a record).
    fn last_end(&mut self, carry: &[u8], format: Format) -> Option<usize> {
        let new = carry.get(self.at..).unwrap_or_default();
        if format == Format::Csv {
            let reader = self.csv.get_or_insert_with(crate::csv::reader);
            let mut fields = [0u8; 4096];
            let mut ends = [0usize; 256];
            let mut at = 0;
            while at < new.len() {
                let (result, used, _, _) = reader.read_record(&new[at..], &mut fields, &mut ends);
                at += used;
                match result {
                    csv_core::ReadRecordResult::Record if at > 0 && new[at - 1] == b'\n' => {
                        self.last = Some(self.at + at);
                    }
                    csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => break,
                    _ => {}
                }
            }
        } else if let Some(at) = memchr::memrchr(b'\n', new) {
            self.last = Some(self.at + at + 1);
        }
        self.at = carry.len();
        self.last
    }
}

impl<R> std::fmt::Debug for Chunker<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").field("format", &self.format).field("next_line", &self.next_line).finish()
    }
}

impl<R: Read> Chunker<R> {
    /// A chunker of `format` over `reader`, cutting about every `chunk_bytes` bytes.
    pub fn new(reader: R, format: Format, chunk_bytes: usize) -> Self {
        Self {
            reader,
            format,
            chunk_bytes: chunk_bytes.max(64),
            carry: Vec::new(),
            next_line: 1,
            eof: false,
            header: None,
            array: ArrayState::default(),
            failed: None,
            scan: Scan::default(),
            read_size: READ_AT_ONCE,
        }
    }

    /// The same chunker numbering lines from `line` (1-based): for an input read from the
    /// middle, as a resumed load does.
    pub fn starting_at_line(mut self, line: u64) -> Self {
        self.next_line = line.max(1);
        self
    }

    /// The CSV header record (raw bytes, without its line end), read before the first chunk;
    /// `None` for an empty input or another format.
    pub fn csv_header(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.format != Format::Csv {
            return Ok(None);
        }
        if self.header.is_none() {
            loop {
                if let Some(end) = first_record_end(&self.carry) {
                    let rest = self.carry.split_off(end);
                    self.scan = Scan::default();
                    let mut header = std::mem::replace(&mut self.carry, rest);
                    self.next_line += memchr::memchr_iter(b'\n', &header).count() as u64;
                    while header.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        header.pop();
                    }
                    self.header = Some(header);
                    break;
                }
                if self.eof {
                    let header = std::mem::take(&mut self.carry);
                    self.header = Some(header);
                    break;
                }
                self.read_once(64 * 1024)?;
            }
        }
        Ok(self.header.clone().filter(|h| !h.is_empty()))
    }

    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.format == Format::JsonArray {
            return self.next_array_chunk();
        }
        if self.format == Format::Csv && self.header.is_none() {
            self.csv_header()?;
        }
        let mut want = self.chunk_bytes;
        loop {
            if !self.eof && self.carry.len() < want {
                // A short read means no more is ready now (a pipe, a terminal): hand on what
                // is here rather than wait for a full chunk, so slow inputs keep moving.
                let asked = (want - self.carry.len()).min(self.read_size);
                let got = self.read_once(asked)?;
                // The room asked for is zeroed first: after a short read ask for little more
                // than came, so bytes arriving a few at a time cost linear time, not quadratic.
                self.read_size = if got < asked { (2 * got).max(MIN_READ) } else { (2 * asked).min(READ_AT_ONCE) };
                if got == asked && self.carry.len() < want {
                    continue;
                }
            }
            let cut = self.scan.last_end(&self.carry, self.format);
            let end = match cut {
                _ if self.eof => self.carry.len(),
                Some(end) => end,
                // No boundary yet: a record longer than a chunk, or one still arriving.
                None => {
                    if self.carry.len() >= want {
                        want = self.carry.len() * 2;
                    }
                    continue;
                }
            };
            if end == 0 {
                return Ok(None);
            }
            let rest = self.carry[end..].to_vec();
            self.scan = Scan::default();
            let mut data = std::mem::replace(&mut self.carry, rest);
            data.truncate(end);
            let first_line = self.next_line;
            self.next_line += memchr::memchr_iter(b'\n', &data).count() as u64;
            return Ok(Some(Chunk { data, first_line }));
        }
    }

    /// One read of at most `n` bytes onto the end of `carry`; 0 marks the end of the input.
    fn read_once(&mut self, n: usize) -> io::Result<usize> {
        let at = self.carry.len();
        if self.carry.capacity() < at + n {
            self.carry.reserve((at + n).max(self.chunk_bytes) - at);
        }
        self.carry.resize(at + n, 0);
        let got = loop {
            match self.reader.read(&mut self.carry[at..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                self.carry.truncate(at);
                return Err(e);
            }
        };
        self.carry.truncate(at + got);
        if got == 0 {
            self.eof = true;
        }
        Ok(got)
    }

    fn next_array_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut out = Vec::with_capacity(self.chunk_bytes + 1024);
        let first_line = self.array.element + 1;
        let mut pos = 0;
        loop {
            if pos >= self.carry.len() {
                if self.eof {
                    if let Err(e) = self.array.finish() {
                        // The whole elements read before the break are handed on first.
                        out.truncate(memchr::memrchr(b'\n', &out).map_or(0, |at| at + 1));
                        if out.is_empty() {
                            return Err(e);
                        }
                        self.failed = Some(e);
                    }
                    break;
                }
                self.carry.clear();
                pos = 0;
                self.read_once(self.chunk_bytes)?;
                continue;
            }
            let (used, boundary) = match self.array.feed(&self.carry[pos..], &mut out) {
                Ok(fed) => fed,
                Err(e) => {
                    // As at the end of the input: the whole elements read before the break are
                    // handed on first, however the input was cut into chunks.
                    out.truncate(memchr::memrchr(b'\n', &out).map_or(0, |at| at + 1));
                    if out.is_empty() {
                        return Err(e);
                    }
                    self.failed = Some(e);
                    break;
                }
            };
            pos += used;
            if boundary && out.len() >= self.chunk_bytes {
                break;
            }
        }
        self.carry.drain(..pos.min(self.carry.len()));
        Ok((!out.is_empty()).then_some(Chunk { data: out, first_line }))
    }
}

/// End (after its newline) of the last whole CSV record of `b` (which starts at a record).
#[cfg(test)]
fn last_record_end(b: &[u8]) -> Option<usize> {
    Scan::default().last_end(b, Format::Csv)
}

/// End (after its newline) of the first CSV record of `b`, if `b` holds a whole one: also the
/// length of a CSV input's header line, for a reader that resumes after it. Records are read by
/// the CSV transcoder's rules (a quote opens a quoted field only at the start of a field) here
/// and in [`Scan`]: cut anywhere else, records would read differently in chunks.
pub fn first_record_end(b: &[u8]) -> Option<usize> {
    let mut reader = crate::csv::reader();
    let mut fields = [0u8; 4096];
    let mut ends = [0usize; 256];
    let mut at = 0;
    let mut last = None;
    while at < b.len() {
        let (result, used, _, _) = reader.read_record(&b[at..], &mut fields, &mut ends);
        at += used;
        match result {
            csv_core::ReadRecordResult::Record if at > 0 && b[at - 1] == b'\n' => {
                last = Some(at);
                break;
            }
            csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => break,
            _ => {}
        }
    }
    last
}

/// A byte of an element's string as written to its line: a raw newline (not JSON, but it occurs
/// in broken input) becomes a raw `\r`, which keeps the element on one line and still invalid.
fn string_byte(c: u8) -> u8 {
    if c == b'\n' {
        b'\r'
    } else {
        c
    }
}

/// Where the reader is in a JSON array.
#[derive(Debug, Default)]
struct ArrayState {
    phase: Phase,
    /// Nesting inside the current element.
    depth: u32,
    in_string: bool,
    escape: bool,
    /// Elements seen so far.
    element: u64,
    /// Where the current element's text starts in the chunk being written.
    start: usize,
    /// Bytes of the input consumed, for messages.
    offset: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `[` (whitespace and a byte-order mark allowed).
    #[default]
    Start,
    /// After `[` or `,`: an element (or `]` right after `[`).
    Element,
    /// Inside an element.
    InElement,
    /// After an element: `,` or `]`.
    After,
    /// After `]`: only whitespace.
    Done,
}

impl ArrayState {
    fn bad(&self, what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what} at byte {}", self.offset + 1))
    }

    /// Consumes bytes, appending element text to `out`; returns the bytes used and whether it
    /// stopped right after an element (a place to cut).
    fn feed(&mut self, b: &[u8], out: &mut Vec<u8>) -> io::Result<(usize, bool)> {
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match self.phase {
                Phase::Start => match c {
                    b'[' => self.phase = Phase::Element,
                    0xEF | 0xBB | 0xBF => {}
                    c if c.is_ascii_whitespace() => {}
                    _ => return Err(self.bad("expected `[`")),
                },
                Phase::Element => match c {
                    c if c.is_ascii_whitespace() => {}
                    b']' if self.element == 0 => self.phase = Phase::Done,
                    b',' | b']' => return Err(self.bad("expected an element")),
                    _ => {
                        self.phase = Phase::InElement;
                        self.depth = 0;
                        self.start = out.len();
                        continue;
                    }
                },
                Phase::InElement => {
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                            out.push(string_byte(c));
                            i += 1;
                            self.offset += 1;
                            continue;
                        }
                        // Copy the string's run up to a quote, backslash or raw newline at once.
                        let run = memchr::memchr3(b'"', b'\\', b'\n', &b[i..]).unwrap_or(b.len() - i);
                        if run > 0 {
                            out.extend_from_slice(&b[i..i + run]);
                            i += run;
                            self.offset += run as u64;
                            continue;
                        }
                        match c {
                            b'\\' => self.escape = true,
                            b'\n' => {}
                            _ => self.in_string = false,
                        }
                        out.push(string_byte(c));
                    } else {
                        match c {
                            b'"' => self.in_string = true,
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' if self.depth > 0 => self.depth -= 1,
                            b',' | b']' if self.depth == 0 => {
                                // The `,` or `]` is read again in the `After` phase.
                                self.end_element(out)?;
                                return Ok((i, true));
                            }
                            b'\n' | b'\r' => {
                                out.push(b' ');
                                i += 1;
                                self.offset += 1;
                                continue;
                            }
                            _ => {}
                        }
                        out.push(c);
                    }
                }
                Phase::After => match c {
                    c if c.is_ascii_whitespace() => {}
                    b',' => self.phase = Phase::Element,
                    b']' => self.phase = Phase::Done,
                    _ => return Err(self.bad("expected `,` or `]`")),
                },
                Phase::Done => {
                    if !c.is_ascii_whitespace() {
                        return Err(self.bad("text after the end of the array"));
                    }
                }
            }
            i += 1;
            self.offset += 1;
        }
        Ok((i, false))
    }

    fn end_element(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        // Bytes the NDJSON transcoder skips as a blank line (a vertical tab, a byte-order mark)
        // are no element: the array has a hole, not a row less.
        let text = std::str::from_utf8(out.get(self.start..).unwrap_or_default());
        if text.is_ok_and(|t| t.trim().trim_start_matches('\u{feff}').is_empty()) {
            return Err(self.bad("expected an element"));
        }
        out.push(b'\n');
        self.element += 1;
        self.phase = Phase::After;
        Ok(())
    }

    fn finish(&self) -> io::Result<()> {
        match self.phase {
            Phase::Done => Ok(()),
            Phase::Start => Ok(()),
            _ => Err(self.bad("the array ends early")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], format: Format, size: usize) -> Vec<(u64, String)> {
        let mut c = Chunker::new(input, format, size);
        let mut out = Vec::new();
        while let Some(chunk) = c.next_chunk().expect("read") {
            out.push((chunk.first_line, String::from_utf8(chunk.data).expect("utf-8")));
        }
        out
    }

    #[test]
    fn ndjson_is_cut_at_newlines_and_long_lines_grow_the_chunk() {
        let text = "{\"a\":1}\n{\"a\":22222222222222222222222222222222}\n{\"a\":3}";
        for size in [64, 100, 1 << 20] {
            let got = chunks(text.as_bytes(), Format::Ndjson, size);
            assert_eq!(got.iter().map(|c| c.1.as_str()).collect::<String>(), text, "{size}");
            let mut line = 1;
            for (first, data) in &got {
                assert_eq!(*first, line);
                assert!(data.ends_with('\n') || data.ends_with('}'));
                line += data.matches('\n').count() as u64;
            }
        }
    }

    #[test]
    fn csv_quoted_newlines_are_not_cut() {
        let body = "1,\"two\nlines\"\n2,x\n".repeat(20);
        let text = format!("id,s\n{body}");
        let mut c = Chunker::new(text.as_bytes(), Format::Csv, 64);
        assert_eq!(c.csv_header().expect("header"), Some(b"id,s".to_vec()));
        let mut all = String::new();
        let mut line = 2;
        while let Some(chunk) = c.next_chunk().expect("read") {
            let data = String::from_utf8(chunk.data).expect("utf-8");
            assert_eq!(chunk.first_line, line);
            assert!(data.starts_with("1,") || data.starts_with("2,"), "{data:?}");
            line += data.matches('\n').count() as u64;
            all.push_str(&data);
        }
        assert_eq!(all, body);
    }

    #[test]
    fn json_arrays_become_one_element_per_line() {
        let text = "\u{feff} [ {\"a\": \"x,]\\\"\"},\n 2 ,{\"b\":\n[1,{\"c\":[]}]} ] \n";
        for size in [64, 1 << 20] {
            let got = chunks(text.as_bytes(), Format::JsonArray, size);
            let all: String = got.iter().map(|c| c.1.as_str()).collect();
            assert_eq!(all, "{\"a\": \"x,]\\\"\"}\n2 \n{\"b\": [1,{\"c\":[]}]} \n");
            assert_eq!(got[0].0, 1);
        }
        // Elements before a break are handed on, then the break is reported.
        let mut broken = Chunker::new(&b"[1,2"[..], Format::JsonArray, 64);
        assert_eq!(broken.next_chunk().expect("the first element").map(|c| c.data), Some(b"1\n".to_vec()));
        assert!(broken.next_chunk().is_err());
        let mut broken = Chunker::new(&b"[1,,2]"[..], Format::JsonArray, 64);
        assert_eq!(broken.next_chunk().expect("the first element").map(|c| c.data), Some(b"1\n".to_vec()));
        assert!(broken.next_chunk().is_err());
        let mut broken = Chunker::new(&b"[1] x"[..], Format::JsonArray, 64);
        assert_eq!(broken.next_chunk().expect("the element").map(|c| c.data), Some(b"1\n".to_vec()));
        assert!(broken.next_chunk().is_err());
        assert!(chunks(b"[]", Format::JsonArray, 64).is_empty());
    }

    /// Found by fuzzing: a break after whole elements lost them when it came in the same chunk
    /// as they did (but not when they came in earlier chunks).
    #[test]
    fn a_break_after_whole_elements_hands_them_on_in_any_chunking() {
        let text = format!("[{{\"a\":\"{}\"}}, 2] x", "y".repeat(100));
        for size in [64, 1 << 20] {
            let mut c = Chunker::new(text.as_bytes(), Format::JsonArray, size);
            let mut elements = 0;
            let mut err = None;
            while err.is_none() {
                match c.next_chunk() {
                    Ok(Some(chunk)) => elements += chunk.data.iter().filter(|b| **b == b'\n').count(),
                    Ok(None) => panic!("the break is reported"),
                    Err(e) => err = Some(e),
                }
            }
            assert_eq!(elements, 2, "{size}");
            assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("text after the end of the array at byte 115"));
        }
    }

    /// Found by fuzzing: an "element" of only a vertical tab or a byte-order mark (no JSON
    /// whitespace, so the chunker took it for an element) was skipped by the transcoder as a
    /// blank line: a row vanished without a refusal.
    #[test]
    fn an_element_the_transcoder_would_skip_is_a_hole_in_the_array() {
        for text in ["[1,\u{b} ]", "[\u{feff}]", "[1, \u{a0} ,2]"] {
            let mut c = Chunker::new(text.as_bytes(), Format::JsonArray, 64);
            let mut err = None;
            while err.is_none() {
                match c.next_chunk() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{text:?}: the hole is reported"),
                    Err(e) => err = Some(e.to_string()),
                }
            }
            assert!(err.is_some_and(|e| e.starts_with("expected an element")), "{text:?}");
        }
    }

    /// Found by fuzzing: a CSV quote in the middle of a field (data to csv-core) was taken by
    /// the chunker for the start of a quoted field, so chunks were cut where records did not end.
    #[test]
    fn csv_chunks_end_where_records_end() {
        let text = "id,s\n1,a\"b\n2,\"x\ny\"\n3,c\"\n4,d\n";
        for size in [64, 1 << 20] {
            let mut c = Chunker::new(text.as_bytes(), Format::Csv, size);
            c.csv_header().expect("header");
            let mut all = String::new();
            while let Some(chunk) = c.next_chunk().expect("read") {
                all.push_str(std::str::from_utf8(&chunk.data).expect("utf-8"));
            }
            assert_eq!(all, "1,a\"b\n2,\"x\ny\"\n3,c\"\n4,d\n");
        }
        assert_eq!(last_record_end(b"1,a\"b\n2,\"x\ny"), Some(6));
        assert_eq!(last_record_end(b"1,a\"b\n2,\"x\ny\"\n3"), Some(14));
        assert_eq!(first_record_end(b"a,\"b\nc\",d\ne"), Some(10));
    }

    /// Found replaying the fuzz corpus: a reader handing on a few bytes at a time (a pipe) made
    /// the chunker search the whole carry again on every read, quadratic in a record's length.
    #[test]
    fn a_long_record_arriving_a_byte_at_a_time_is_searched_once() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let line = format!("{{\"s\":\"{}\"}}\n", "x".repeat(40_000));
        let csv = format!("a,b\n1,\"{}\n\"\n2,y\n", "x,\"\"".repeat(8_000));
        let started = std::time::Instant::now();
        for (text, format) in [(line.as_str(), Format::Ndjson), (csv.as_str(), Format::Csv)] {
            let mut c = Chunker::new(Trickle(text.as_bytes()), format, 64);
            let mut all = Vec::new();
            while let Some(chunk) = c.next_chunk().expect("read") {
                all.extend(chunk.data);
            }
            let body = if format == Format::Csv { &text.as_bytes()[4..] } else { text.as_bytes() };
            assert_eq!(all, body);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    /// Found by fuzzing: a raw newline inside a string (not JSON) split its element into several
    /// lines, so one element was refused several times and the later ones were misnumbered.
    #[test]
    fn a_raw_newline_in_a_string_keeps_its_element_on_one_line() {
        let got = chunks(b"[{\"a\":\"x\ny\\\nz\"}, {\"b\":1}]", Format::JsonArray, 64);
        let all: String = got.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(all, "{\"a\":\"x\ry\\\rz\"}\n{\"b\":1}\n");
    }
}
