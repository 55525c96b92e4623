//! The Segment section of `cargo xtask bench` (alone: `cargo xtask bench --segment-only`): the
//! whole `bqsink segment` process (the release binary, default flags) loading a generated file
//! of Segment track events into the fast sink.
//!
//! The sink's REST side (the reference sink's) takes the dataset and the tables `bqsink segment`
//! creates and changes; its gRPC side acknowledges every AppendRows request at once and counts
//! the rows. Each run is one process under `measure.py` (wall time from start to exit, CPU and
//! peak RSS from wait4), on a fresh dataset so each run creates its tables; client and sink are
//! unpinned, as in the load section, and the sink's CPU time is recorded beside the client's.
//!
//! Two files from one generator: the headline (200,000 events, about 152 MB) and a large one
//! (1M events, about 760 MB) for memory: `segment_peak_rss_mib_200k` and `_1m`. An event is a
//! Segment call (a payload), wherever it sits: alone on its line or inside a batch envelope. A
//! track call makes two rows (`tracks` and its event's table), so every run must end with twice
//! as many rows acknowledged by the sink, and reported written by `bqsink segment`, as the file
//! has events, and none dead-lettered; anything else fails the bench.
//!
//! The files: track calls of five events, each with its own properties (strings, integers,
//! floats, booleans, a nested object, sometimes an array), `messageId`, `anonymousId`, a
//! `userId` on most, `timestamp` and `sentAt`, and a nested `context` (library, page,
//! userAgent, ip, locale, sometimes a campaign). Every 50th line is a
//! `{"batch": [...]}` envelope of two to six calls that carry neither `sentAt` nor `context`:
//! the envelope's own apply to them. Each event depends only on its index and [`SEED`], so the
//! files are byte-identical from run to run; they are cached under `target/bench/data/`.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::bench::FastSink;
use crate::bench_chart;
use crate::bench_data::{write_atomically, Day, Rng};
use crate::{cargo, run};

/// Events in the headline file and in the large one.
pub(crate) struct SegmentPlan {
    pub(crate) events: u64,
    pub(crate) events_large: u64,
}

pub(crate) const SEGMENT_FULL: SegmentPlan = SegmentPlan { events: 200_000, events_large: 1_000_000 };
pub(crate) const SEGMENT_QUICK: SegmentPlan = SegmentPlan { events: 20_000, events_large: 100_000 };

/// The project the runs write to; each run has its own dataset.
const PROJECT: &str = "bench";
/// Rows a track call makes: `tracks` and its event's table.
const ROWS_PER_EVENT: u64 = 2;

/// Seed of the per-event generator; change [`VERSION`] with it so cached files are rewritten.
const SEED: u64 = 0x7365_676d_656e_7401;
/// Part of every file name: bump when the generator's output changes.
const VERSION: &str = "v1";
/// Every this many lines, one is a batch envelope.
const LINES_PER_ENVELOPE: u64 = 50;
/// Mixed into the seed for the envelopes' own draws (an envelope is numbered by its line).
const ENVELOPE_STREAM: u64 = 0x656e_7665_6c6f_7065;
/// Mixed into the seed for a user's anonymous id (a user is numbered).
const USER_STREAM: u64 = 0x7573_6572;
/// 2024-06-03T00:00:00Z in ms since the epoch: the first event's `timestamp`.
const START_MS: i64 = 1_717_372_800_000;
/// Events are this many ms apart on average (25 a second).
const EVENT_SPACING_MS: u64 = 40;
/// Distinct users the events come from.
const USERS: u64 = 250_000;

/// The five track events, each with its own properties (and so its own table).
const EVENT_NAMES: [&str; 5] =
    ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Video Played"];

const LIBRARIES: &[(&str, &str)] = &[
    ("analytics.js", "4.1.0"),
    ("analytics-next", "1.66.0"),
    ("analytics-ios", "4.1.8"),
    ("analytics-android", "4.11.3"),
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
];
const LOCALES: &[&str] = &["en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR"];
const PAGES: &[(&str, &str)] = &[
    ("/", "Example Shop"),
    ("/c/shoes", "Shoes"),
    ("/c/outdoor/tents", "Tents | Outdoor"),
    ("/p/trail-runner-2", "Trail Runner 2"),
    ("/cart", "Your cart"),
    ("/checkout/payment", "Payment | Checkout"),
    ("/watch/summer-collection", "Summer collection"),
];
const REFERRERS: &[&str] =
    &["https://www.google.com/", "https://shop.example.com/", "https://news.example.org/trail-running", ""];
const CAMPAIGNS: &[(&str, &str, &str)] =
    &[("summer_sale", "newsletter", "email"), ("retargeting_q2", "facebook", "cpc"), ("brand_search", "google", "cpc")];
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("Trail Runner 2", "Shoes", "Northpeak"),
    ("Ultralight Tent 2P", "Outdoor", "Campwell"),
    ("Merino Base Layer", "Clothing", "Woolly & Co"),
    ("Insulated Bottle 750ml", "Accessories", "Hydra"),
    ("Rain Shell Jacket", "Clothing", "Northpeak"),
    ("Headlamp 400lm", "Outdoor", "Lumen"),
];
const COLORS: &[&str] = &["black", "forest green", "slate", "red", "sand"];
const SIZES: &[&str] = &["S", "M", "L", "XL", "42", "44"];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP"];
const PAYMENTS: &[(&str, &str)] = &[("card", "stripe"), ("paypal", "paypal"), ("card", "adyen"), ("klarna", "klarna")];
const CITIES: &[(&str, &str)] = &[("Lyon", "FR"), ("Leeds", "GB"), ("Austin", "US"), ("Osaka", "JP"), ("Porto", "PT")];
const VIDEOS: &[(&str, &str)] = &[
    ("Summer collection 2024", "lookbook"),
    ("How to pitch the Ultralight Tent", "how-to"),
    ("Trail running in the Alps", "stories"),
];

/// A generated Segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentFile {
    pub(crate) path: PathBuf,
    pub(crate) events: u64,
    pub(crate) bytes: u64,
}

/// The file of `events` events under `dir`, written when missing.
pub(crate) fn ensure(dir: &Path, events: u64) -> anyhow::Result<SegmentFile> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("segment-{VERSION}-{events}.ndjson"));
    if !path.exists() {
        let started = Instant::now();
        write_atomically(&path, |w| write_events(w, events))?;
        eprintln!("generated {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    }
    let bytes = std::fs::metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?.len();
    Ok(SegmentFile { path, events, bytes })
}

/// Writes `events` events: one track call a line, every 50th line a batch envelope.
fn write_events(w: &mut impl std::io::Write, events: u64) -> anyhow::Result<()> {
    let mut line = String::with_capacity(16 << 10);
    let (mut next, mut n) = (0u64, 0u64);
    while next < events {
        line.clear();
        if (n + 1).is_multiple_of(LINES_PER_ENVELOPE) {
            let mut r = Rng::seeded(SEED ^ ENVELOPE_STREAM, n);
            let items = (2 + r.below(5)).min(events - next);
            envelope(&mut line, &mut r, next..next + items);
            next += items;
        } else {
            track(&mut line, next, false);
            next += 1;
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
        n += 1;
    }
    Ok(())
}

/// A batch envelope of the events `items`, with its own `sentAt` and `context`.
fn envelope(out: &mut String, r: &mut Rng, items: Range<u64>) {
    out.push_str(r#"{"batch":["#);
    let sent = at_ms(items.end) + 200 + r.below(3_000) as i64;
    for (k, i) in items.enumerate() {
        if k > 0 {
            out.push(',');
        }
        track(out, i, true);
    }
    let _ = write!(out, r#"],"sentAt":"{}","context":"#, Millis(sent));
    context(out, r, false);
    out.push('}');
}

/// The `timestamp` of event `i`, before its jitter.
fn at_ms(i: u64) -> i64 {
    START_MS + (i * EVENT_SPACING_MS) as i64
}

/// Track call `i`; `batched`: inside an envelope, so without `sentAt` and `context`.
fn track(out: &mut String, i: u64, batched: bool) {
    let mut r = Rng::seeded(SEED, i);
    let kind = r.below(EVENT_NAMES.len() as u64) as usize;
    let user = r.below(USERS);
    let at = at_ms(i) + r.below(EVENT_SPACING_MS) as i64;
    let _ = write!(
        out,
        r#"{{"type":"track","event":"{}","messageId":"{}","anonymousId":"{}""#,
        EVENT_NAMES[kind],
        Uuid(r.next(), r.next()),
        anonymous_id(user),
    );
    if r.below(10) < 7 {
        let _ = write!(out, r#","userId":"user-{user:07}""#);
    }
    let _ = write!(out, r#","timestamp":"{}""#, Millis(at));
    if !batched {
        let _ = write!(out, r#","sentAt":"{}""#, Millis(at + 20 + r.below(1_500) as i64));
    }
    out.push_str(r#","properties":"#);
    match kind {
        0 => product_viewed(out, &mut r),
        1 => product_added(out, &mut r),
        2 => checkout_started(out, &mut r),
        3 => order_completed(out, &mut r),
        _ => video_played(out, &mut r),
    }
    if !batched {
        out.push_str(r#","context":"#);
        context(out, &mut r, true);
    }
    out.push('}');
}

/// A user's anonymous id: the same for every event of the user.
fn anonymous_id(user: u64) -> Uuid {
    let mut r = Rng::seeded(SEED ^ USER_STREAM, user);
    Uuid(r.next(), r.next())
}

/// `context`: library, user agent, ip, locale; on a browser event also the page and,
/// on about a quarter of them, the campaign.
fn context(out: &mut String, r: &mut Rng, browser: bool) {
    let (library, version) = LIBRARIES[r.below(LIBRARIES.len() as u64) as usize];
    let _ = write!(out, r#"{{"library":{{"name":"{library}","version":"{version}"}}"#);
    if browser {
        let (path, title) = PAGES[r.below(PAGES.len() as u64) as usize];
        let _ = write!(
            out,
            r#","page":{{"path":"{path}","referrer":"{}","title":"{title}","url":"https://shop.example.com{path}"}}"#,
            r.pick(REFERRERS),
        );
    }
    let _ = write!(
        out,
        r#","userAgent":"{}","ip":"{}.{}.{}.{}","locale":"{}""#,
        r.pick(AGENTS),
        1 + r.below(223),
        r.below(256),
        r.below(256),
        1 + r.below(254),
        r.pick(LOCALES),
    );
    if browser && r.below(4) == 0 {
        let (name, source, medium) = CAMPAIGNS[r.below(CAMPAIGNS.len() as u64) as usize];
        let _ = write!(out, r#","campaign":{{"name":"{name}","source":"{source}","medium":"{medium}"}}"#);
    }
    out.push('}');
}

fn product_viewed(out: &mut String, r: &mut Rng) {
    let (name, category, brand) = PRODUCTS[r.below(PRODUCTS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"productId":"sku-{:05}","name":"{name}","category":"{category}","brand":"{brand}","price":{},"currency":"{}","position":{},"inStock":{},"variant":{{"color":"{}","size":"{}"}}"#,
        r.below(100_000),
        Money(500 + r.below(50_000)),
        r.pick(CURRENCIES),
        1 + r.below(48),
        r.below(5) > 0,
        r.pick(COLORS),
        r.pick(SIZES),
    );
    if r.below(4) == 0 {
        out.push_str(r#","badges":["new","free-shipping"]"#);
    }
    out.push('}');
}

fn product_added(out: &mut String, r: &mut Rng) {
    let (name, _, _) = PRODUCTS[r.below(PRODUCTS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"cartId":"cart-{:08x}","productId":"sku-{:05}","name":"{name}","price":{},"quantity":{},"currency":"{}","giftWrap":{},"attributes":{{"color":"{}","size":"{}"}}"#,
        r.next() as u32,
        r.below(100_000),
        Money(500 + r.below(50_000)),
        1 + r.below(4),
        r.pick(CURRENCIES),
        r.below(10) == 0,
        r.pick(COLORS),
        r.pick(SIZES),
    );
    if r.below(5) == 0 {
        let _ = write!(out, r#","recommendedIds":["sku-{:05}","sku-{:05}"]"#, r.below(100_000), r.below(100_000));
    }
    out.push('}');
}

fn checkout_started(out: &mut String, r: &mut Rng) {
    let (city, country) = CITIES[r.below(CITIES.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"checkoutId":"chk-{:010}","value":{},"shipping":{},"currency":"{}","step":{},"isGift":{},"shippingAddress":{{"city":"{city}","country":"{country}","postalCode":"{:05}"}}"#,
        r.below(10_000_000_000),
        Money(1_000 + r.below(90_000)),
        Money(r.below(2_000)),
        r.pick(CURRENCIES),
        1 + r.below(3),
        r.below(8) == 0,
        r.below(100_000),
    );
    if r.below(3) == 0 {
        let _ =
            write!(out, r#","products":[{{"productId":"sku-{:05}","quantity":{}}}]"#, r.below(100_000), 1 + r.below(3));
    }
    out.push('}');
}

fn order_completed(out: &mut String, r: &mut Rng) {
    let (method, provider) = PAYMENTS[r.below(PAYMENTS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"orderId":"ord-{:010}","total":{},"revenue":{},"currency":"{}","itemCount":{},"firstOrder":{},"payment":{{"method":"{method}","provider":"{provider}","installments":{}}}"#,
        r.below(10_000_000_000),
        Money(1_000 + r.below(90_000)),
        Money(800 + r.below(80_000)),
        r.pick(CURRENCIES),
        1 + r.below(6),
        r.below(4) == 0,
        1 + r.below(3),
    );
    if r.below(4) == 0 {
        out.push_str(r#","coupon":"SUMMER24""#);
    }
    out.push('}');
}

fn video_played(out: &mut String, r: &mut Rng) {
    let (title, genre) = VIDEOS[r.below(VIDEOS.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"videoId":"vid-{:06}","title":"{title}","position":{},"totalLength":{},"fullScreen":{},"sound":{},"content":{{"genre":"{genre}","season":{},"episode":{}}}"#,
        r.below(1_000_000),
        r.below(600),
        600 + r.below(1_800),
        r.below(3) == 0,
        Money(r.below(101)),
        1 + r.below(4),
        1 + r.below(12),
    );
    if r.below(5) == 0 {
        out.push_str(r#","adBreaks":[0,300]"#);
    }
    out.push('}');
}

/// Hundredths printed with two decimals ("12.30"), so a float column never reads as an integer.
struct Money(u64);

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`, as Segment's libraries send it.
struct Millis(i64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DAY_MS: i64 = 86_400_000;
        let (days, in_day) = (self.0.div_euclid(DAY_MS), self.0.rem_euclid(DAY_MS));
        let (secs, ms) = (in_day / 1_000, in_day % 1_000);
        write!(f, "{}T{:02}:{:02}:{:02}.{ms:03}Z", Day(days), secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// A version-4 UUID made of two draws.
struct Uuid(u64, u64);

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.0, self.1);
        write!(
            f,
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The programs a run needs, checked before anything starts.
struct Bins {
    bqsink: PathBuf,
    fastsink: PathBuf,
    measure: PathBuf,
}

impl Bins {
    fn find(root: &Path) -> anyhow::Result<Bins> {
        let bins = Bins {
            bqsink: crate::bench_load::bqsink_bin(root),
            fastsink: root.join("target/release/fastsink"),
            measure: root.join("xtask/bench/measure.py"),
        };
        for (path, how) in [
            (&bins.bqsink, "cargo build --release -p bqsink-cli --bin bqsink"),
            (&bins.fastsink, "cargo build --release -p bqsink-testkit --bin fastsink"),
        ] {
            if !path.is_file() {
                bail!("{} is missing: build it with `{how}` (`cargo xtask bench` builds it)", path.display());
            }
        }
        if !bins.measure.is_file() {
            bail!("{} is missing: it is part of the repository, restore it with git", bins.measure.display());
        }
        let python = Command::new("python3").arg("--version").stdout(Stdio::null()).status();
        if !python.is_ok_and(|s| s.success()) {
            bail!("cannot run python3, which measure.py needs to read the process's CPU time and peak RSS: install Python 3");
        }
        Ok(bins)
    }
}

/// Builds what the section runs: the CLI and the fast sink (release), each as the rest of the
/// bench builds it, so the binaries are shared.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    run(cargo().current_dir(root).args(["build", "--release", "-p", "bqsink-testkit", "--bin", "fastsink"]))?;
    run(cargo().current_dir(root).args(["build", "--release", "-p", "bqsink-cli", "--bin", "bqsink"]))
}

/// "200k", "1m": the short name of an event count, in summary keys.
fn count_name(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Runs the section: the two files, one unpinned fast sink, one `bqsink segment` process per
/// file; returns the summary keys of the section and the raw results under `"segment"`.
pub(crate) fn run_section(root: &Path, plan: &SegmentPlan) -> anyhow::Result<Value> {
    let bins = Bins::find(root)?;
    let data = root.join("target/bench/data");
    let small = ensure(&data, plan.events)?;
    let large = ensure(&data, plan.events_large)?;
    for f in [&small, &large] {
        eprintln!(
            "segment file: {} ({} events, {:.1} MB, {:.0} bytes an event)",
            f.path.display(),
            f.events,
            f.bytes as f64 / 1e6,
            f.bytes as f64 / f.events as f64
        );
    }
    let mut sink = FastSink::start(&bins.fastsink, None)?;
    let headline = segment_client(&bins, &mut sink, &small);
    let big = headline.as_ref().ok().map(|_| segment_client(&bins, &mut sink, &large));
    sink.stop();
    let (headline, big) = (headline?, big.context("the headline run failed")??);

    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let mut keys = json!({
        "segment_events": plan.events,
        "segment_events_large": plan.events_large,
        "segment_events_per_s": headline["events_per_s"],
        "segment_rows_per_s": headline["rows_per_s"],
        "segment_cpu_us_per_event": headline["cpu_us_per_event"],
        "segment_large_events_per_s": big["events_per_s"],
        "segment_peak_rss_ratio_large_to_headline": f(&big, "peak_rss_mib") / f(&headline, "peak_rss_mib"),
        "segment": {
            "placement": "client unpinned (all cores), fast sink unpinned",
            "rows_per_event": ROWS_PER_EVENT,
            "headline": headline,
            "large": big,
        },
    });
    keys[format!("segment_peak_rss_mib_{}", count_name(plan.events))] = headline["peak_rss_mib"].clone();
    keys[format!("segment_peak_rss_mib_{}", count_name(plan.events_large))] = big["peak_rss_mib"].clone();
    Ok(keys)
}

/// One `bqsink segment` process on one file, in a dataset of its own; fails unless it exited 0,
/// reported every row written and none dead-lettered, and the sink acknowledged every row.
fn segment_client(bins: &Bins, sink: &mut FastSink, file: &SegmentFile) -> anyhow::Result<Value> {
    let dataset = format!("segment_{}", count_name(file.events));
    let rows = file.events * ROWS_PER_EVENT;
    let load_before = load_average();
    let before = sink.stats()?;
    let sink_cpu_before = sink.cpu_s();
    let out = Command::new("python3")
        .arg(&bins.measure)
        .arg("--")
        .arg(&bins.bqsink)
        .env("BIGQUERY_EMULATOR_HOST", &sink.rest)
        .env("BIGQUERY_STORAGE_EMULATOR_HOST", &sink.grpc)
        .args(["segment", "--project", PROJECT, "--dataset", &dataset])
        .arg(&file.path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run python3 measure.py")?;
    let sink_cpu = sink.cpu_s() - sink_cpu_before;
    let after = sink.stats()?;
    let what = format!("bqsink segment on {}", file.path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let meter = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{what}: measure.py printed nothing: {text}"))?;
    let meter: Value = serde_json::from_str(meter)?;
    if !out.status.success() || meter["exit"].as_i64() != Some(0) {
        bail!("{what} failed (exit {}): {text}", meter["exit"]);
    }
    let delta = |k: &str| after[k].as_u64().unwrap_or(0).saturating_sub(before[k].as_u64().unwrap_or(0));
    if delta("rows") != rows {
        bail!(
            "{what}: the sink acknowledged {} rows, not {rows} ({} events × {ROWS_PER_EVENT})",
            delta("rows"),
            file.events
        );
    }
    let summary = text.lines().rev().find_map(Summary::parse);
    let Some(summary) = summary else {
        bail!("{what}: no `read N, written N, dead-lettered N` line on stdout: {text}");
    };
    if summary != (Summary { read: rows, written: rows, dead_lettered: 0 }) {
        bail!("{what}: expected {rows} rows read and written and none dead-lettered, the process reports {summary:?}");
    }
    let events = file.events as f64;
    let wall = meter["wall_s"].as_f64().context("no wall time")?;
    let cpu = meter["cpu_s"].as_f64().context("no CPU time")?;
    let r = json!({
        "client": "bqsink segment",
        "file": file.path.display().to_string(),
        "dataset": dataset,
        "events": file.events,
        "rows": rows,
        "file_bytes": file.bytes,
        "cores": "all (unpinned)",
        "wall_s": wall,
        "events_per_s": events / wall,
        "rows_per_s": rows as f64 / wall,
        "file_mb_per_s": file.bytes as f64 / 1e6 / wall,
        "cpu_user_s": meter["user_s"],
        "cpu_sys_s": meter["sys_s"],
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / events * 1e6,
        "peak_rss_mib": meter["maxrss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        "sink_requests": delta("requests"),
        "sink_row_bytes": delta("row_bytes"),
        "sink_cpu_s": sink_cpu,
        "load_average_1m_before": load_before,
    });
    eprintln!("{}", line(&r));
    Ok(r)
}

/// The machine's 1-minute load average (from /proc/loadavg; NaN where unreadable): other work on
/// the machine shows in it, and takes cores from the run.
fn load_average() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(f64::NAN)
}

/// bqsink's last line on stdout: `read N, written N, dead-lettered N (elapsed, rows/s)`.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    read: u64,
    written: u64,
    dead_lettered: u64,
}

impl Summary {
    fn parse(line: &str) -> Option<Summary> {
        let counts = line.strip_prefix("read ")?.split(" (").next()?;
        let mut parts = counts.split(", ");
        let read = parts.next()?.trim().parse().ok()?;
        let written = parts.next()?.strip_prefix("written ")?.trim().parse().ok()?;
        let dead_lettered = parts.next()?.strip_prefix("dead-lettered ")?.trim().parse().ok()?;
        Some(Summary { read, written, dead_lettered })
    }
}

/// `--segment-only`: builds the CLI and the sink, runs the section, and merges its keys into
/// the last summary (the other sections' figures stay as they were) or starts a new one.
pub(crate) fn segment_only(root: &Path, quick: bool, started: Instant) -> anyhow::Result<()> {
    build(root)?;
    let built = started.elapsed().as_secs_f64();
    let section = run_section(root, if quick { &SEGMENT_QUICK } else { &SEGMENT_FULL })?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let summary_path = out.join("summary.json");
    let previous = std::fs::read_to_string(&summary_path).ok();
    let mut summary = previous
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({ "machine": crate::bench::machine() }));
    if let (Some(s), Value::Object(section)) = (summary.as_object_mut(), section) {
        // A quick run's keys name other event counts: none of the last run's may stay behind.
        s.retain(|k, _| !k.starts_with("segment"));
        s.extend(section);
    }
    summary["segment_quick"] = json!(quick);
    summary["segment_build_s"] = json!(built);
    summary["segment_bench_s"] = json!(started.elapsed().as_secs_f64() - built);
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)? + "\n")?;
    let chart = out.join("throughput.svg");
    std::fs::write(&chart, bench_chart::render(&summary))?;
    eprintln!("\n{}", report(&summary));
    eprintln!("wrote {} and {}", summary_path.display(), chart.display());
    Ok(())
}

fn line(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "bqsink segment {:>9} events ({:>5.0} MB): {:>8.0} events/s  {:>8.0} rows/s  {:>6.2} CPU µs/event  peak RSS {:>7.1} MiB  (sink CPU {:.2} s, load average before {:.2})",
        r["events"],
        f("file_bytes") / 1e6,
        f("events_per_s"),
        f("rows_per_s"),
        f("cpu_us_per_event"),
        f("peak_rss_mib"),
        f("sink_cpu_s"),
        f("load_average_1m_before"),
    )
}

/// The section's lines for the closing report.
pub(crate) fn report(s: &Value) -> String {
    let seg = &s["segment"];
    if !seg.is_object() {
        return String::new();
    }
    format!(
        "segment ({} rows per track event; {}):\n{}\n{}\npeak RSS large ÷ headline {:.2}\n",
        seg["rows_per_event"],
        seg["placement"].as_str().unwrap_or(""),
        line(&seg["headline"]),
        line(&seg["large"]),
        s["segment_peak_rss_ratio_large_to_headline"].as_f64().unwrap_or(f64::NAN),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn generate(events: u64) -> String {
        let mut out = Vec::new();
        write_events(&mut out, events).expect("writes to memory");
        String::from_utf8(out).expect("UTF-8")
    }

    /// The JSON kind of a value, for the one-type-per-column check.
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Every leaf under `prefix` with its kind, arrays as leaves.
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, &'static str)>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| leaves(&format!("{prefix}.{k}"), v, out)),
            v => out.push((prefix.to_owned(), kind(v))),
        }
    }

    #[test]
    fn events_envelopes_and_types() {
        let events = 5_003;
        let text = generate(events);
        assert_eq!(text, generate(events), "the same file every time");
        let mut seen = 0u64;
        let mut names = BTreeSet::new();
        // (event, property path) → kinds seen: one each, so no column gets values of two types.
        let mut kinds: BTreeMap<(String, String), BTreeSet<&'static str>> = BTreeMap::new();
        let mut with_array = 0;
        for (n, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line).expect("each line is JSON");
            let (items, envelope) = match v.get("batch") {
                Some(batch) => (batch.as_array().expect("batch is an array").clone(), true),
                None => (vec![v.clone()], false),
            };
            assert_eq!(envelope, (n as u64 + 1).is_multiple_of(LINES_PER_ENVELOPE), "line {n}");
            if envelope {
                assert!((2..=6).contains(&items.len()) || seen + items.len() as u64 == events);
                assert!(v["sentAt"].is_string() && v["context"]["library"].is_object());
            }
            for e in &items {
                seen += 1;
                assert_eq!(e["type"], "track");
                assert!(e["messageId"].is_string() && e["anonymousId"].is_string() && e["timestamp"].is_string());
                assert_eq!(e.get("sentAt").is_none(), envelope);
                assert_eq!(e.get("context").is_none(), envelope);
                if !envelope {
                    assert!(e["context"]["page"]["url"].is_string() && e["context"]["userAgent"].is_string());
                }
                let name = e["event"].as_str().expect("event name").to_owned();
                let props = &e["properties"];
                assert!(props.as_object().is_some_and(|p| p.values().any(Value::is_object)), "nested object");
                with_array += u32::from(props.as_object().is_some_and(|p| p.values().any(Value::is_array)));
                let mut l = Vec::new();
                leaves("properties", props, &mut l);
                if let Some(c) = e.get("context") {
                    leaves("context", c, &mut l);
                }
                for (path, k) in l {
                    kinds.entry((name.clone(), path)).or_default().insert(k);
                }
                names.insert(name);
            }
        }
        assert_eq!(seen, events);
        assert_eq!(names.len(), 5);
        assert!(with_array > 100, "some events carry an array");
        for ((event, path), k) in &kinds {
            assert_eq!(k.len(), 1, "{event} {path}: {k:?}");
        }
        let per_event = text.len() as f64 / events as f64;
        assert!((720.0..800.0).contains(&per_event), "{per_event:.0} bytes an event");
    }

    #[test]
    fn formats() {
        assert_eq!(Millis(START_MS + 3_723_004).to_string(), "2024-06-03T01:02:03.004Z");
        assert_eq!(Money(1_230).to_string(), "12.30");
        assert_eq!(Money(5).to_string(), "0.05");
        let id = Uuid(u64::MAX, 0).to_string();
        assert_eq!(id, "ffffffff-ffff-4fff-8000-000000000000");
        assert_eq!(
            (count_name(200_000), count_name(1_000_000), count_name(1_500)),
            ("200k".into(), "1m".into(), "1500".into())
        );
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            Summary::parse("read 400000, written 399998, dead-lettered 2 (14.2s, 28169 rows/s)"),
            Some(Summary { read: 400_000, written: 399_998, dead_lettered: 2 })
        );
        assert_eq!(Summary::parse("bqsink: planned 6 tables"), None);
    }
}
