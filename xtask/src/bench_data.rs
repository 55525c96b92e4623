//! Input files for the "load a file" bench: NDJSON and CSV of the 12-column benchmark rows
//! (the column types of `bqsink_testkit::rows`), written the way a user's export would hold
//! them — TIMESTAMP, DATE and NUMERIC as JSON strings, the JSON column as a nested object — and
//! the BigQuery JSON schema files (`bq show --schema` format) to load them with.
//!
//! Written here rather than through the library so the files do not move when the library's
//! value types or formatting change. Values vary row by row from a seeded generator (string
//! lengths, tag counts, numbers) so parsers see realistic data; each row depends only on its
//! index and [`SEED`], so the files are byte-identical from run to run. Files are cached under
//! `target/bench/data/` and written to a temporary name first, so a file that exists is whole.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Seed of the per-row generator; change [`VERSION`] with it so cached files are rewritten.
const SEED: u64 = 0x6271_7369_6e6b_0001;
/// Part of every file name: bump when the generator's output changes.
const VERSION: &str = "v1";
/// 1970-01-01 plus this many µs is 2023-11-14T22:13:20Z, the start of the benchmark rows' `at`.
const AT_START_US: i64 = 1_700_000_000_000_000;

const EVENTS: &[&str] = &["page_view", "signup", "add_to_cart", "checkout", "search", "logout"];
const PAGES: &[&str] = &[
    "/pricing",
    "/docs/getting-started",
    "/",
    "/blog/2024/05/streaming-into-bigquery",
    "/account/settings",
    "/products/42?ref=home",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/125.0.0.0",
    "curl/8.5.0",
];
const PLANS: &[&str] = &["free", "pro", "team", "enterprise"];
const TAGS: &[&str] = &["web", "beta", "android", "ios", "promo"];

/// One column of the generated files: name, type and mode as `bq show --schema` prints them.
const COLUMNS: &[(&str, &str, &str)] = &[
    ("id", "INTEGER", "REQUIRED"),
    ("score", "FLOAT", "NULLABLE"),
    ("ok", "BOOLEAN", "NULLABLE"),
    ("event", "STRING", "NULLABLE"),
    ("user_id", "STRING", "NULLABLE"),
    ("page", "STRING", "NULLABLE"),
    ("agent", "STRING", "NULLABLE"),
    ("at", "TIMESTAMP", "NULLABLE"),
    ("day", "DATE", "NULLABLE"),
    ("amount", "NUMERIC", "NULLABLE"),
    ("props", "JSON", "NULLABLE"),
    ("tags", "STRING", "REPEATED"),
];

/// The row layouts the bench loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// All 12 columns, NDJSON.
    Ndjson12,
    /// The 11 non-repeated columns, NDJSON: the like-for-like partner of [`Layout::Csv11`].
    Ndjson11,
    /// The 11 non-repeated columns, CSV with a header line.
    Csv11,
}

impl Layout {
    fn columns(self) -> usize {
        match self {
            Layout::Ndjson12 => 12,
            Layout::Ndjson11 | Layout::Csv11 => 11,
        }
    }

    fn file_name(self, rows: u64) -> String {
        match self {
            Layout::Ndjson12 => format!("rows12-{VERSION}-{rows}.ndjson"),
            Layout::Ndjson11 => format!("rows11-{VERSION}-{rows}.ndjson"),
            Layout::Csv11 => format!("rows11-{VERSION}-{rows}.csv"),
        }
    }
}

/// A generated input: the data file and the schema file that describes it.
#[derive(Clone, Debug)]
pub(crate) struct DataFile {
    pub(crate) path: PathBuf,
    pub(crate) schema: PathBuf,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// The file of `rows` rows in `layout` under `dir`, written when missing.
pub(crate) fn ensure(dir: &Path, layout: Layout, rows: u64) -> anyhow::Result<DataFile> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let schema = dir.join(format!("schema{}-{VERSION}.json", layout.columns()));
    if !schema.exists() {
        write_atomically(&schema, |w| Ok(w.write_all(schema_json(layout.columns()).as_bytes())?))?;
    }
    let path = dir.join(layout.file_name(rows));
    if !path.exists() {
        let started = std::time::Instant::now();
        write_atomically(&path, |w| write_rows(w, layout, rows))?;
        eprintln!("generated {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    }
    let bytes = std::fs::metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?.len();
    Ok(DataFile { path, schema, rows, bytes })
}

/// Writes through `fill` into `path.tmp`, then renames: an interrupted run leaves no half file.
pub(crate) fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    fill(&mut w).with_context(|| format!("cannot write {}", tmp.display()))?;
    w.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The first `columns` columns as a BigQuery JSON schema.
fn schema_json(columns: usize) -> String {
    let fields: Vec<serde_json::Value> = COLUMNS[..columns]
        .iter()
        .map(|(name, ty, mode)| serde_json::json!({"name": name, "type": ty, "mode": mode}))
        .collect();
    serde_json::to_string_pretty(&fields).unwrap_or_default() + "\n"
}

/// splitmix64: a small, fast generator whose stream depends only on its seed.
pub(crate) struct Rng(u64);

impl Rng {
    fn for_row(i: u64) -> Rng {
        Rng::seeded(SEED, i)
    }

    /// The stream of item `i` of a generator seeded with `seed`.
    pub(crate) fn seeded(seed: u64, i: u64) -> Rng {
        Rng(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// The values of row `i`, before formatting.
struct Row {
    id: u64,
    /// Hundredths: `score` is this / 100, printed with two decimals at most.
    score_cents: u64,
    ok: bool,
    event: &'static str,
    user: u64,
    page: &'static str,
    agent: &'static str,
    at_us: i64,
    amount_cents: u64,
    plan: &'static str,
    seats: u64,
    tags: Vec<&'static str>,
}

fn row(i: u64) -> Row {
    let mut r = Rng::for_row(i);
    let tag_count = r.below(4) as usize;
    Row {
        id: i,
        score_cents: r.below(10_000_000),
        ok: r.below(3) == 0,
        event: r.pick(EVENTS),
        user: r.below(1_000_000),
        page: r.pick(PAGES),
        agent: r.pick(AGENTS),
        // About a thousand rows a second, from the start date on.
        at_us: AT_START_US + i as i64 * 1_000 + r.below(1_000) as i64,
        amount_cents: r.below(100_000_000),
        plan: r.pick(PLANS),
        seats: 1 + r.below(500),
        tags: (0..tag_count).map(|_| r.pick(TAGS)).collect(),
    }
}

fn write_rows(w: &mut impl std::io::Write, layout: Layout, rows: u64) -> anyhow::Result<()> {
    if layout == Layout::Csv11 {
        let names: Vec<&str> = COLUMNS[..11].iter().map(|c| c.0).collect();
        writeln!(w, "{}", names.join(","))?;
    }
    let mut line = String::with_capacity(512);
    for i in 0..rows {
        line.clear();
        let r = row(i);
        match layout {
            Layout::Ndjson12 | Layout::Ndjson11 => ndjson_line(&mut line, &r, layout == Layout::Ndjson12),
            Layout::Csv11 => csv_line(&mut line, &r),
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

fn ndjson_line(out: &mut String, r: &Row, with_tags: bool) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        r#"{{"id":{},"score":{},"ok":{},"event":"{}","user_id":"user-{:06}","page":"{}","agent":"{}","at":"{}","day":"{}","amount":"{}","props":{{"plan":"{}","seats":{}}}"#,
        r.id,
        Cents(r.score_cents),
        r.ok,
        r.event,
        r.user,
        r.page,
        r.agent,
        Rfc3339(r.at_us),
        Day(r.at_us.div_euclid(DAY_US)),
        Cents(r.amount_cents),
        r.plan,
        r.seats,
    );
    if with_tags {
        out.push_str(r#","tags":["#);
        for (n, t) in r.tags.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{t}\"");
        }
        out.push(']');
    }
    out.push('}');
}

/// The 11 non-repeated columns; cells quoted only when they hold a comma or a quote, as most
/// CSV writers do.
fn csv_line(out: &mut String, r: &Row) {
    use std::fmt::Write as _;
    let _ = write!(out, "{},{},{},{},user-{:06},{},", r.id, Cents(r.score_cents), r.ok, r.event, r.user, r.page);
    csv_cell(out, r.agent);
    let _ = write!(out, ",{},{},{},", Rfc3339(r.at_us), Day(r.at_us.div_euclid(DAY_US)), Cents(r.amount_cents));
    csv_cell(out, &format!(r#"{{"plan":"{}","seats":{}}}"#, r.plan, r.seats));
}

fn csv_cell(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

const DAY_US: i64 = 86_400_000_000;

/// A count of hundredths as a decimal: 123456 → "1234.56", 120 → "1.2", 100 → "1".
struct Cents(u64);

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{whole}"),
            _ if frac % 10 == 0 => write!(f, "{whole}.{}", frac / 10),
            _ => write!(f, "{whole}.{frac:02}"),
        }
    }
}

/// Days since 1970-01-01 as YYYY-MM-DD.
pub(crate) struct Day(pub(crate) i64);

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// µs since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
struct Rfc3339(i64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.0.div_euclid(DAY_US);
        let in_day = self.0.rem_euclid(DAY_US);
        let (secs, micros) = (in_day / 1_000_000, in_day % 1_000_000);
        write!(f, "{}T{:02}:{:02}:{:02}.{micros:06}Z", Day(days), secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// The proleptic Gregorian date of a day count from 1970-01-01, by 400-year eras (146,097 days
/// each) with March-based years so the leap day falls at the end of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_700), (2023, 12, 9));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(Rfc3339(AT_START_US + 5).to_string(), "2023-11-14T22:13:20.000005Z");
        assert_eq!(
            (Cents(123_456).to_string(), Cents(120).to_string(), Cents(100).to_string()),
            ("1234.56".into(), "1.2".into(), "1".into())
        );
    }

    #[test]
    fn lines_parse_and_agree() {
        let r = row(7);
        let mut nd = String::new();
        ndjson_line(&mut nd, &r, true);
        let v: serde_json::Value = serde_json::from_str(&nd).expect("valid JSON");
        assert_eq!(v.as_object().map(|o| o.len()), Some(12));
        assert_eq!(v["id"], 7);
        assert!(v["props"].is_object());
        let mut csv = String::new();
        csv_line(&mut csv, &r);
        assert!(csv.starts_with("7,"));
        assert!(csv.ends_with(&format!(r#""{{""plan"":""{}"",""seats"":{}}}""#, r.plan, r.seats)));
    }
}
