//! Opening an input: gzip and zstd recognised by their magic bytes (not the file name) and read
//! as a stream in front of the chunker, and the format of an input given as "auto".

use std::io::{self, BufRead, BufReader, Read};

use crate::chunk::Format;

/// How an input is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (one or more members, as `cat a.gz b.gz` makes).
    Gzip,
    /// Zstandard (one or more frames).
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Bytes read at a time from the underlying file or stream.
pub const READ_BUFFER: usize = 1 << 20;

/// Wraps `raw` in the decompressor its first bytes call for.
pub fn open(raw: Box<dyn Read + Send>) -> io::Result<(Box<dyn Read + Send>, Compression)> {
    let mut r = BufReader::with_capacity(READ_BUFFER, raw);
    let head = r.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        return Ok((Box::new(flate2::read::MultiGzDecoder::new(r)), Compression::Gzip));
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok((Box::new(zstd::stream::read::Decoder::with_buffer(r)?), Compression::Zstd));
    }
    Ok((Box::new(r), Compression::None))
}

/// The format of an input given as "auto": by its extension (a `.gz` or `.zst` suffix looked
/// through), else by its first byte: `[` a JSON array, `{` (or nothing) NDJSON, else CSV.
pub fn detect(name: Option<&str>, head: &[u8]) -> Format {
    let name = name.unwrap_or("").to_ascii_lowercase();
    let name = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).unwrap_or(&name);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "csv" => return Format::Csv,
        "ndjson" | "jsonl" => return Format::Ndjson,
        _ => {}
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
    match first {
        Some(b'[') => Format::JsonArray,
        Some(b'{') | None => Format::Ndjson,
        Some(_) if ext == "json" => Format::Ndjson,
        Some(_) => Format::Csv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn read_all(bytes: Vec<u8>) -> (Vec<u8>, Compression) {
        let (mut r, c) = open(Box::new(io::Cursor::new(bytes))).expect("open");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        (out, c)
    }

    #[test]
    fn compressed_inputs_are_recognised_by_their_bytes() {
        let text = b"{\"a\":1}\n{\"a\":2}\n".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).expect("gzip");
        let mut gz = gz.finish().expect("gzip");
        // Two members, as `cat a.gz b.gz` gives.
        let again = gz.clone();
        gz.extend_from_slice(&again);
        assert_eq!(read_all(gz), ([text.clone(), text.clone()].concat(), Compression::Gzip));
        let zst = zstd::stream::encode_all(&text[..], 1).expect("zstd");
        assert_eq!(read_all(zst), (text.clone(), Compression::Zstd));
        assert_eq!(read_all(text.clone()), (text, Compression::None));
        assert_eq!(read_all(Vec::new()), (Vec::new(), Compression::None));
    }

    #[test]
    fn formats_by_name_then_content() {
        assert_eq!(detect(Some("a.CSV"), b"{"), Format::Csv);
        assert_eq!(detect(Some("a.ndjson.gz"), b"\x1f\x8b"), Format::Ndjson);
        assert_eq!(detect(Some("a.json"), b" [{}]"), Format::JsonArray);
        assert_eq!(detect(None, b"id,name"), Format::Csv);
        assert_eq!(detect(None, b""), Format::Ndjson);
    }
}
