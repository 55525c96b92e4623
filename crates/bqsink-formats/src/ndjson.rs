//! Newline-delimited JSON: a chunk of whole lines into batches of rows.

use bqsink_core::RowError;

use crate::batch::{Batch, Batches, Cut};
use crate::json::JsonTranscoder;

/// Why a line that is not UTF-8 is refused.
pub const NOT_UTF8: &str = "the line is not valid UTF-8";

impl JsonTranscoder {
    /// Transcodes a chunk of NDJSON (whole lines; the last may lack its newline) whose first
    /// line is line `first_line` (1-based) of its input. Blank lines are skipped; a line that
    /// cannot be written is refused with its text. Rows keep input order across the batches.
    pub fn ndjson_chunk(&mut self, chunk: &[u8], first_line: u64, cut: Cut) -> Vec<Batch> {
        let mut batches = Batches::new(self.descriptor(), cut, chunk.len());
        match std::str::from_utf8(chunk) {
            Ok(text) => {
                for (n, line) in lines(text.as_bytes()).enumerate() {
                    let line = &text[line];
                    self.line(line, first_line + n as u64, &mut batches);
                }
            }
            // Only some lines are bad: each is checked alone.
            Err(_) => {
                for (n, line) in lines(chunk).enumerate() {
                    let number = first_line + n as u64;
                    match std::str::from_utf8(&chunk[line.clone()]) {
                        Ok(text) => self.line(text, number, &mut batches),
                        Err(_) => {
                            let raw = String::from_utf8_lossy(&chunk[line]).trim().to_owned();
                            batches.refuse(number - 1, RowError::new("", NOT_UTF8), raw);
                        }
                    }
                }
            }
        }
        batches.finish()
    }

    fn line(&mut self, line: &str, number: u64, batches: &mut Batches) {
        let text = line.trim().trim_start_matches('\u{feff}');
        if text.is_empty() {
            return;
        }
        if let Err(e) = batches.write_row(number - 1, |out| self.transcode(text, out)) {
            batches.refuse(number - 1, e, text.to_owned());
        }
    }
}

/// Byte ranges of the lines of `b` (without their `\n`), the last one even when empty only if
/// `b` does not end with a newline.
pub(crate) fn lines(b: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr(b'\n', &b[start..]) {
            Some(at) => {
                let r = start..start + at;
                start += at + 1;
                if start == b.len() {
                    done = true;
                }
                Some(r)
            }
            None => {
                done = true;
                (start < b.len()).then_some(start..b.len())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_a_chunk() {
        fn all(s: &str) -> Vec<&str> {
            lines(s.as_bytes()).map(|r| &s[r]).collect()
        }
        assert_eq!(all("a\nb\n"), vec!["a", "b"]);
        assert_eq!(all("a\n\nb"), vec!["a", "", "b"]);
        assert_eq!(all(""), Vec::<&str>::new());
        assert_eq!(all("\n"), vec![""]);
    }
}
