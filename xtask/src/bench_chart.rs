//! The bench chart: horizontal bars of rows/s, per client and per bqsink setting, drawn as
//! plain SVG from `summary.json`.

use std::fmt::Write as _;

use serde_json::Value;

const WIDTH: f64 = 1100.0;
const LABEL_W: f64 = 330.0;
const BAR_W: f64 = 480.0;
const BAR_H: f64 = 22.0;
const GAP: f64 = 8.0;

struct Panel {
    title: String,
    /// (label, value, note after the value).
    bars: Vec<(String, f64, String)>,
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    RowsPerSecond,
    CpuMicrosPerRow,
    EventsPerSecond,
}

impl Unit {
    fn value(self, v: f64) -> String {
        match self {
            Unit::RowsPerSecond => rate(v),
            Unit::CpuMicrosPerRow => format!("{v:.2} µs CPU per row"),
            Unit::EventsPerSecond => rate(v).replace("rows", "events"),
        }
    }
    fn tick(self, t: f64) -> String {
        match self {
            Unit::RowsPerSecond | Unit::EventsPerSecond if t == 0.0 => "0".into(),
            Unit::RowsPerSecond | Unit::EventsPerSecond if t >= 1e6 => format!("{}M", trim(t / 1e6)),
            Unit::RowsPerSecond | Unit::EventsPerSecond => format!("{}k", trim(t / 1e3)),
            Unit::CpuMicrosPerRow => trim(t),
        }
    }
    fn axis(self) -> &'static str {
        match self {
            Unit::RowsPerSecond => "rows per second (higher is better)",
            Unit::CpuMicrosPerRow => "client CPU microseconds per row, user + system (lower is better)",
            Unit::EventsPerSecond => "Segment events per second (higher is better)",
        }
    }
}

/// A tick value without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M rows/s", v / 1e6)
    } else if v >= 1e5 {
        format!("{:.0}k rows/s", v / 1e3)
    } else {
        format!("{:.1}k rows/s", v / 1e3)
    }
}

/// 1000000 → "1,000,000".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round step for about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn panels(s: &Value) -> Vec<Panel> {
    // A summary of `--load-only` alone holds only the load section.
    let mut out = if s["e2e"].is_array() { library_panels(s) } else { Vec::new() };
    if let Some(p) = load_panel(s) {
        out.push(p);
    }
    if let Some(p) = segment_panel(s) {
        out.push(p);
    }
    if s["emulator"].is_object() {
        let em = &s["emulator"];
        out.push(Panel {
            title: format!(
                "Into bqemulator ({} rows each, {} per request): the emulator is the bottleneck",
                num(&em["rows_each"]),
                num(&em["batch_size"])
            ),
            bars: vec![
                (
                    "bqsink".into(),
                    num(&em["bqsink"]["rows_per_s"]),
                    format!("client CPU {:.2} s", num(&em["bqsink"]["cpu_s"])),
                ),
                (
                    "Python".into(),
                    num(&em["python"]["rows_per_s"]),
                    format!("client CPU {:.2} s", num(&em["python"]["cpu_s"])),
                ),
            ],
            unit: Unit::RowsPerSecond,
        });
    }
    out
}

/// "Load a file": each client a whole process from start to exit, same files, same sink.
fn load_panel(s: &Value) -> Option<Panel> {
    let l = s["load"].as_object()?;
    let runs = [
        ("bqsink load, NDJSON", "bqsink_ndjson"),
        ("bqsink load, NDJSON", "bqsink_ndjson_large"),
        ("bqsink load, CSV 11 columns", "bqsink_csv11"),
        ("bqsink load, NDJSON 11 columns", "bqsink_ndjson11"),
        ("Rust peer (serde + prost + gcb 0.15), NDJSON", "rust_peer_ndjson"),
        ("Python client, NDJSON", "python_ndjson"),
    ];
    let bars = runs
        .iter()
        .filter_map(|(name, key)| {
            let r = l.get(*key)?;
            Some((
                format!("{name}, {} rows", thousands(num(&r["rows"]))),
                num(&r["rows_per_s"]),
                format!("{:.2} CPU µs/row, {:.0} MiB", num(&r["cpu_us_per_row"]), num(&r["peak_rss_mib"])),
            ))
        })
        .collect();
    Some(Panel {
        title: "Load a file: rows/s, file to acks, whole process (clients and sink unpinned)".into(),
        bars,
        unit: Unit::RowsPerSecond,
    })
}

/// `bqsink segment`: events/s, file to acks, whole process; peak RSS beside each.
fn segment_panel(s: &Value) -> Option<Panel> {
    let seg = s["segment"].as_object()?;
    let bars = ["headline", "large"]
        .iter()
        .filter_map(|key| {
            let r = seg.get(*key)?;
            Some((
                format!(
                    "bqsink segment, {} events ({:.0} MB)",
                    thousands(num(&r["events"])),
                    num(&r["file_bytes"]) / 1e6
                ),
                num(&r["events_per_s"]),
                format!("{:.2} CPU µs/event, peak RSS {:.0} MiB", num(&r["cpu_us_per_event"]), num(&r["peak_rss_mib"])),
            ))
        })
        .collect();
    Some(Panel {
        title: "Segment events: events/s, file to acks, whole process (2 rows per track; client and sink unpinned)"
            .into(),
        bars,
        unit: Unit::EventsPerSecond,
    })
}

fn library_panels(s: &Value) -> Vec<Panel> {
    let e2e = &s["e2e"][0];
    let cpu_note = |r: &Value| format!("{:.2} CPU s / 1M rows", num(&r["cpu_s_per_million_rows"]));
    let clients = [
        ("bqsink: Destination::write_stream", e2e),
        ("bqsink: Destination::write per row", &s["e2e_write_per_row"]),
        ("Rust peer: google-cloud-bigquery 0.15", &s["rust_peer"]),
        ("Python: google-cloud-bigquery-storage", &s["python"]),
    ];
    let named = |name: &str, r: &Value| format!("{name}, {} rows", thousands(num(&r["rows"])));
    let peers = Panel {
        title: format!(
            "Rows/s per client to the same local sink ({} rows per request, client pinned to one core)",
            num(&s["python"]["batch_size"])
        ),
        bars: clients.iter().map(|(n, r)| (named(n, r), num(&r["rows_per_s"]), cpu_note(r))).collect(),
        unit: Unit::RowsPerSecond,
    };
    let cpu = Panel {
        title: "Client CPU per row, same runs (the headline: it does not depend on the sink)".into(),
        bars: clients
            .iter()
            .map(|(n, r)| (named(n, r), num(&r["cpu_us_per_row"]), format!("{:.0} rows/s", num(&r["rows_per_s"]))))
            .collect(),
        unit: Unit::CpuMicrosPerRow,
    };
    let by = |key: &str, label: &dyn Fn(&Value) -> String| -> Vec<(String, f64, String)> {
        s[key]
            .as_array()
            .map(|runs| runs.iter().map(|r| (label(r), num(&r["rows_per_s"]), cpu_note(r))).collect())
            .unwrap_or_default()
    };
    let batches = Panel {
        title: "bqsink rows/s by batch size (rows per AppendRows request)".into(),
        bars: by("by_batch_size", &|r| format!("batch {}", num(&r["batch_size"]))),
        unit: Unit::RowsPerSecond,
    };
    let encoders = Panel {
        title: "bqsink rows/s by encoding threads (worker_count; write_stream, on one core)".into(),
        bars: by("by_encoders", &|r| format!("{} encoding thread(s)", num(&r["encoders"]))),
        unit: Unit::RowsPerSecond,
    };
    let workers = Panel {
        title: "bqsink rows/s by connections (destinations writing side by side, on one core)".into(),
        bars: by("by_workers", &|r| format!("{} connection(s)", num(&r["workers"]))),
        unit: Unit::RowsPerSecond,
    };
    vec![peers, cpu, batches, encoders, workers]
}

/// The chart for a summary.
pub(crate) fn render(s: &Value) -> String {
    let panels = panels(s);
    let mut body = String::new();
    let mut y = 50.0;
    for p in &panels {
        let max = p.bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
        let step = tick_step(max);
        let top = (max / step).ceil() * step;
        let x0 = LABEL_W;
        let _ = writeln!(body, r#"<text x="20" y="{}" class="title">{}</text>"#, y, escape(&p.title));
        y += 14.0;
        let plot_top = y;
        let axis_y = plot_top + p.bars.len() as f64 * (BAR_H + GAP);
        // Grid and ticks first, so the bars are drawn over them.
        let mut t = 0.0;
        while t <= top + step * 0.01 {
            let x = x0 + t / top * BAR_W;
            let _ = writeln!(
                body,
                r#"<line x1="{x:.1}" y1="{plot_top}" x2="{x:.1}" y2="{}" class="grid"/><text x="{x:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
                axis_y + 4.0,
                axis_y + 16.0,
                p.unit.tick(t)
            );
            t += step;
        }
        let _ = writeln!(body, r#"<line x1="{x0}" y1="{axis_y}" x2="{}" y2="{axis_y}" class="axis"/>"#, x0 + BAR_W);
        for (label, value, note) in &p.bars {
            let w = (value / top * BAR_W).max(1.0);
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{:.1}" class="label" text-anchor="end">{}</text><rect x="{x0}" y="{y}" width="{w:.1}" height="{BAR_H}" class="bar"/><text x="{:.1}" y="{:.1}" class="value">{} · {}</text>"#,
                x0 - 8.0,
                y + BAR_H * 0.7,
                escape(label),
                x0 + w + 6.0,
                y + BAR_H * 0.7,
                escape(&p.unit.value(*value)),
                escape(note)
            );
            y += BAR_H + GAP;
        }
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{}" class="axislabel" text-anchor="middle">{}</text>"#,
            x0 + BAR_W / 2.0,
            axis_y + 32.0,
            p.unit.axis()
        );
        y = axis_y + 62.0;
    }
    let height = y;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">
<style>
.title {{ font-size: 14px; font-weight: bold; fill: #222; }}
.label {{ font-size: 12px; fill: #222; }}
.value {{ font-size: 11px; fill: #333; }}
.tick {{ font-size: 10px; fill: #555; }}
.axislabel {{ font-size: 11px; fill: #555; }}
.bar {{ fill: #3b73b9; }}
.axis {{ stroke: #444; stroke-width: 1; }}
.grid {{ stroke: #ddd; stroke-width: 1; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="26" font-size="17" font-weight="bold" fill="#111">bqsink benchmark: rows/s ({})</text>
{body}</svg>
"##,
        escape(&format!(
            "{} CPUs, {}",
            num(&s["machine"]["cpus"]),
            s["machine"]["cpu_model"].as_str().unwrap_or("unknown CPU")
        ))
    )
}
