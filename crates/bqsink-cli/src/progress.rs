//! Progress while loading: a bar on a terminal, one plain line every few seconds otherwise,
//! nothing with `--quiet`. Everything goes to stderr; stdout carries only the summary.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bqsink::{Destination, SegmentWriter};
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

/// What progress reads from the writer: rows acknowledged, and rows it dead-lettered itself.
pub(crate) trait Watch: Send + Sync {
    /// `(written, dead-lettered)` so far.
    fn written_and_dead(&self) -> (u64, u64);
}

impl Watch for Destination {
    fn written_and_dead(&self) -> (u64, u64) {
        let m = self.metrics();
        (m.records_written, m.rows_dead_lettered)
    }
}

impl Watch for SegmentWriter {
    fn written_and_dead(&self) -> (u64, u64) {
        let m = self.dataset().metrics();
        (m.records_written, m.rows_dead_lettered)
    }
}

/// What the bar's percentage measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Total {
    /// Input bytes (read as they are parsed).
    Bytes(u64),
    /// Rows (read as they are handed to the writer), once the input has been read ahead.
    Rows(u64),
}

/// Counters the load loop keeps; the writer's metrics give the rest.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Rows taken from the input.
    pub(crate) read: Arc<AtomicU64>,
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
    /// `None` once the writer is being closed.
    fn take(counters: &Counters, dest: &Weak<dyn Watch>) -> Option<Self> {
        let (written, dead) = dest.upgrade()?.written_and_dead();
        Some(Self {
            read: counters.read.load(Ordering::Relaxed),
            written,
            dead: counters.refused.load(Ordering::Relaxed) + dead,
            bytes: counters.bytes.load(Ordering::Relaxed),
        })
    }

    /// Progress towards `total`.
    fn position(&self, total: Option<Total>) -> u64 {
        match total {
            Some(Total::Rows(_)) => self.read,
            _ => self.bytes,
        }
    }

    /// `, 42%` when the total is known.
    fn percent(&self, total: Option<Total>) -> String {
        match total {
            Some(Total::Bytes(t) | Total::Rows(t)) if t > 0 => {
                format!(", {:.0}%", (self.position(total) as f64 / t as f64 * 100.0).min(100.0))
            }
            _ => String::new(),
        }
    }

    fn rates(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        format!("{:.0} rows/s, {:.1} MB/s", self.written as f64 / secs, self.bytes as f64 / 1e6 / secs)
    }
}

/// The running display.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Where the bar is when the counters stop updating it.
    last: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("bar", &self.bar.is_some()).finish()
    }
}

impl Progress {
    /// Starts showing progress of `dest`; `total` is the size of the input, when known.
    pub(crate) fn start<W: Watch + 'static>(
        style: Style,
        total: Option<Total>,
        counters: Arc<Counters>,
        dest: Weak<W>,
    ) -> Self {
        let dest: Weak<dyn Watch> = dest;
        let started = Instant::now();
        match style {
            Style::Quiet => Self { bar: None, task: None, last: None },
            Style::Bar => {
                let bar = match total {
                    Some(Total::Bytes(t) | Total::Rows(t)) => {
                        ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        )
                    }
                    None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                bar.enable_steady_tick(Duration::from_millis(100));
                let shown = bar.clone();
                let last: Box<dyn Fn() -> u64 + Send + Sync> = {
                    let (counters, dest) = (counters.clone(), dest.clone());
                    Box::new(move || Reading::take(&counters, &dest).map_or(0, |r| r.position(total)))
                };
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(BAR_REFRESH);
                    loop {
                        tick.tick().await;
                        let Some(r) = Reading::take(&counters, &dest) else { continue };
                        shown.set_position(r.position(total));
                        shown.set_message(format!(
                            "read {}, written {}, dead-lettered {} ({})",
                            r.read,
                            r.written,
                            r.dead,
                            r.rates(started.elapsed())
                        ));
                    }
                });
                Self { bar: Some(bar), task: Some(task), last: Some(last) }
            }
            Style::Lines(every) => {
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tick.tick().await;
                        let Some(r) = Reading::take(&counters, &dest) else { continue };
                        let percent = r.percent(total);
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
                Self { bar: None, task: Some(task), last: None }
            }
        }
    }

    /// A handle that prints lines like [`Progress::println`], for other threads.
    pub(crate) fn printer(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |line: &str| match &bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Replaces the bar's message (the counters stop updating; the bar shows where they got).
    pub(crate) fn set_message(&self, message: &str) {
        if let (Some(bar), Some(task)) = (&self.bar, &self.task) {
            task.abort();
            if let Some(last) = &self.last {
                bar.set_position(last());
            }
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
