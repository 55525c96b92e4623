//! `--file PATH`: the work of `bqsink load` done the way a Rust user would write it with
//! published crates — NDJSON lines read through a 1 MiB `BufReader`, each parsed by serde_json
//! straight into the prost row (one struct with both derives; TIMESTAMP, DATE and JSON borrowed
//! from the line while they are converted), rows encoded one by one and sent `--batch-size` per
//! request with up to `--inflight` requests awaiting an answer.
//!
//! Parsing runs on its own thread and hands full batches to the writer over a channel as deep as
//! the requests in flight, so reading, parsing and sending overlap; more parsing threads would
//! need the file split by lines, which a user of these crates would not write for a load.

use std::borrow::Cow;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;
use google_cloud_bigquery::storage_write::stream::default::DefaultStream;
use google_cloud_bigquery::storage_write::AppendRowsRequestBuilder;
use prost::Message as _;
use prost_types::DescriptorProto;
use serde::{Deserialize, Deserializer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// One line of the 12-column file: proto2 field numbers as in `crate::descriptor()`; serde
/// reads the JSON names, converting the strings BigQuery's proto rows want as numbers.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub(crate) struct FileRow {
    #[prost(int64, required, tag = "1")]
    pub(crate) id: i64,
    #[prost(double, optional, tag = "2")]
    #[serde(default)]
    pub(crate) score: Option<f64>,
    #[prost(bool, optional, tag = "3")]
    #[serde(default)]
    pub(crate) ok: Option<bool>,
    #[prost(string, optional, tag = "4")]
    #[serde(default)]
    pub(crate) event: Option<String>,
    #[prost(string, optional, tag = "5")]
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[prost(string, optional, tag = "6")]
    #[serde(default)]
    pub(crate) page: Option<String>,
    #[prost(string, optional, tag = "7")]
    #[serde(default)]
    pub(crate) agent: Option<String>,
    /// TIMESTAMP: RFC 3339 in the file, µs since the epoch on the wire.
    #[prost(int64, optional, tag = "8")]
    #[serde(default, deserialize_with = "timestamp")]
    pub(crate) at: Option<i64>,
    /// DATE: YYYY-MM-DD in the file, days since the epoch on the wire.
    #[prost(int32, optional, tag = "9")]
    #[serde(default, deserialize_with = "date")]
    pub(crate) day: Option<i32>,
    /// NUMERIC as the decimal string of the file.
    #[prost(string, optional, tag = "10")]
    #[serde(default)]
    pub(crate) amount: Option<String>,
    /// JSON: the object's text as it stands in the line.
    #[prost(string, optional, tag = "11")]
    #[serde(default, deserialize_with = "json_text")]
    pub(crate) props: Option<String>,
    #[prost(string, repeated, tag = "12")]
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

/// A string of the line, borrowed unless it holds escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(Text(s)) = Option::<Text<'de>>::deserialize(d)? else { return Ok(None) };
    parse_timestamp(&s).map(Some).ok_or_else(|| serde::de::Error::custom(format!("bad TIMESTAMP {s:?}")))
}

fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let Some(Text(s)) = Option::<Text<'de>>::deserialize(d)? else { return Ok(None) };
    parse_date(&s).map(|days| Some(days as i32)).ok_or_else(|| serde::de::Error::custom(format!("bad DATE {s:?}")))
}

fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<&'de serde_json::value::RawValue>::deserialize(d)?;
    Ok(raw.map(|r| r.get().to_owned()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date, by 400-year eras with March-based years.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |v, b| v * 10 + i64::from(b - b'0')))
}

/// `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}](Z|+00:00)` as µs since the epoch (UTC only, as exported).
fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = parse_date(s.get(..10)?)?;
    let (h, mi, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let mut rest = &b[19..];
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let kept = &frac[..n.min(6)];
        micros = digits(kept)? * 10i64.pow(6 - kept.len() as u32);
        rest = &frac[n..];
    }
    if !matches!(rest, b"Z" | b"z" | b"+00:00") {
        return None;
    }
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + micros)
}

/// What the file mode did.
pub(crate) struct Outcome {
    pub(crate) rows: u64,
    pub(crate) requests: u64,
    pub(crate) row_bytes: u64,
    pub(crate) rows_acked: u64,
}

/// Encoded rows of one request.
struct Batch {
    rows: Vec<Vec<u8>>,
    bytes: u64,
}

/// Reads and parses the file on this thread, sending batches of `batch_size` encoded rows.
fn parse_file(path: &PathBuf, batch_size: usize, tx: tokio::sync::mpsc::Sender<Batch>) -> anyhow::Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(1024);
    let mut batch = Batch { rows: Vec::with_capacity(batch_size), bytes: 0 };
    let (mut rows, mut number) = (0u64, 0u64);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let row: FileRow =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{} line {number}: {e}", path.display()))?;
        let bytes = row.encode_to_vec();
        batch.bytes += bytes.len() as u64;
        batch.rows.push(bytes);
        rows += 1;
        if batch.rows.len() == batch_size {
            let full = std::mem::replace(&mut batch, Batch { rows: Vec::with_capacity(batch_size), bytes: 0 });
            tx.blocking_send(full).map_err(|_| anyhow::anyhow!("the writer stopped"))?;
        }
    }
    if !batch.rows.is_empty() {
        tx.blocking_send(batch).map_err(|_| anyhow::anyhow!("the writer stopped"))?;
    }
    Ok(rows)
}

/// Loads the file into `stream`; fails unless every request is answered without row errors.
pub(crate) async fn load(
    stream: DefaultStream,
    schema: DescriptorProto,
    path: PathBuf,
    batch_size: usize,
    inflight: usize,
) -> anyhow::Result<Outcome> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(inflight);
    let parser = std::thread::spawn(move || parse_file(&path, batch_size, tx));
    let stream = Arc::new(stream);
    let permits = Arc::new(Semaphore::new(inflight));
    let mut calls: JoinSet<anyhow::Result<u64>> = JoinSet::new();
    let (mut requests, mut row_bytes, mut rows_acked) = (0u64, 0u64, 0u64);
    while let Some(first) = rx.recv().await {
        // What is parsed already goes in one call: one gRPC stream per call, up to `inflight`
        // requests in flight across calls.
        let mut group = vec![first];
        while group.len() < inflight {
            match rx.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let held = permits.clone().acquire_many_owned(group.len() as u32).await?;
        requests += group.len() as u64;
        row_bytes += group.iter().map(|b| b.bytes).sum::<u64>();
        let counts: Vec<u64> = group.iter().map(|b| b.rows.len() as u64).collect();
        let built: Vec<AppendRowsRequestBuilder> =
            group.into_iter().map(|b| AppendRowsRequestBuilder::new(schema.clone(), b.rows)).collect();
        let stream = stream.clone();
        calls.spawn(async move {
            let mut responses = stream.append_rows(built).await?;
            let mut acked = 0;
            let mut answered = 0;
            while let Some(r) = responses.next().await {
                let r = r?;
                anyhow::ensure!(r.row_errors.is_empty(), "rows refused: {:?}", r.row_errors);
                acked += counts.get(answered).copied().unwrap_or(0);
                answered += 1;
            }
            anyhow::ensure!(answered == counts.len(), "{answered} answers to {} requests", counts.len());
            drop(held);
            Ok(acked)
        });
        while let Some(done) = calls.try_join_next() {
            rows_acked += done??;
        }
    }
    while let Some(done) = calls.join_next().await {
        rows_acked += done??;
    }
    let rows = parser.join().map_err(|_| anyhow::anyhow!("the parser panicked"))??;
    Ok(Outcome { rows, requests, row_bytes, rows_acked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-12-09"), Some(19_700));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.000005Z"), Some(1_700_000_000_000_005));
        assert_eq!(parse_timestamp("2023-11-14 22:13:20+00:00"), Some(1_700_000_000_000_000));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500_000));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20"), None);
    }

    #[test]
    fn line_to_row() {
        let line = r#"{"id":1,"score":2.5,"ok":true,"event":"e","at":"1970-01-01T00:00:01Z","day":"1970-01-02","amount":"1.5","props":{"a":[1, 2]},"tags":["x"]}"#;
        let r: FileRow = serde_json::from_str(line).expect("parses");
        assert_eq!((r.id, r.at, r.day), (1, Some(1_000_000), Some(1)));
        assert_eq!(r.props.as_deref(), Some(r#"{"a":[1, 2]}"#));
        assert_eq!(r.tags, vec!["x".to_owned()]);
        assert_eq!(r.user_id, None);
    }
}
