//! Progress while loading: a bar on a terminal, one plain line every few seconds otherwise,
//! nothing with `--quiet`. Everything goes to stderr; stdout carries only the summary.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bqsink::Destination;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// A plain line on stderr at this interval.
    Lines(Duration),
    /// Nothing.
    Quiet,
}

impl Style {
    /// The bar on a terminal, plain lines every `interval` elsewhere, nothing when `quiet`.
    pub(crate) fn choose(quiet: bool, interval: Duration) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines(interval)
        }
    }
}

/// Counters the load loop keeps; the destination's metrics give the rest.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Rows taken from the input.
    pub(crate) read: AtomicU64,
    /// Rows refused before they reached BigQuery (bad input, values that do not fit).
    pub(crate) refused: AtomicU64,
    /// Input bytes read.
    pub(crate) bytes: Arc<AtomicU64>,
}

/// One reading of the counters.
#[derive(Clone, Copy, Debug)]
struct Reading {
    read: u64,
    written: u64,
    dead: u64,
    bytes: u64,
}

impl Reading {
    /// `None` once the destination is being closed.
    fn take(counters: &Counters, dest: &Weak<Destination>) -> Option<Self> {
        let m = dest.upgrade()?.metrics();
        Some(Self {
            read: counters.read.load(Ordering::Relaxed),
            written: m.records_written,
            dead: counters.refused.load(Ordering::Relaxed) + m.rows_dead_lettered,
            bytes: counters.bytes.load(Ordering::Relaxed),
        })
    }

    fn rates(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        format!("{:.0} rows/s, {:.1} MB/s", self.written as f64 / secs, self.bytes as f64 / 1e6 / secs)
    }
}

/// The running display.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress of `dest`; `total` is the input size in bytes, when known.
    pub(crate) fn start(style: Style, total: Option<u64>, counters: Arc<Counters>, dest: Weak<Destination>) -> Self {
        let started = Instant::now();
        match style {
            Style::Quiet => Self { bar: None, task: None },
            Style::Bar => {
                let bar = match total {
                    Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    ),
                    None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                bar.enable_steady_tick(Duration::from_millis(100));
                let shown = bar.clone();
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(BAR_REFRESH);
                    loop {
                        tick.tick().await;
                        let Some(r) = Reading::take(&counters, &dest) else { continue };
                        shown.set_position(r.bytes);
                        shown.set_message(format!(
                            "read {}, written {}, dead-lettered {} ({})",
                            r.read,
                            r.written,
                            r.dead,
                            r.rates(started.elapsed())
                        ));
                    }
                });
                Self { bar: Some(bar), task: Some(task) }
            }
            Style::Lines(every) => {
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tick.tick().await;
                        let Some(r) = Reading::take(&counters, &dest) else { continue };
                        let percent = match total {
                            Some(t) if t > 0 => format!(", {:.0}%", (r.bytes as f64 / t as f64 * 100.0).min(100.0)),
                            _ => String::new(),
                        };
                        eprintln!(
                            "bqsink: progress: read {}, written {}, dead-lettered {} ({}{percent}, {:.0}s)",
                            r.read,
                            r.written,
                            r.dead,
                            r.rates(started.elapsed()),
                            started.elapsed().as_secs_f64()
                        );
                    }
                });
                Self { bar: None, task: Some(task) }
            }
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Replaces the bar's message (the counters stop updating).
    pub(crate) fn set_message(&self, message: &str) {
        if let (Some(bar), Some(task)) = (&self.bar, &self.task) {
            task.abort();
            bar.set_message(message.to_owned());
        }
    }

    /// Stops and clears the display.
    pub(crate) fn finish(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
