//! Stopping a load on a signal: the first Ctrl-C or SIGTERM starts the grace period, the second
//! one (or the grace period's end) makes the writer give up on the rows in flight, which are
//! then dead-lettered with their fate and counted in the summary.

use std::str::FromStr;
use std::time::Duration;

use crate::interrupt::Interrupt;

/// `--grace-period`: how long the rows in flight may take after a stop request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GracePeriod(pub(crate) Duration);

impl FromStr for GracePeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::duration::parse(s).map(GracePeriod)
    }
}

/// Wires `abort` to the process's signals for the length of a load; abort the returned task
/// when the load is over.
pub(crate) fn arm(interrupt: &Interrupt, abort: bqsink::Abort, grace: Duration) -> tokio::task::JoinHandle<()> {
    let second = abort.clone();
    interrupt.on_second(move |reason| second.fire(reason));
    let interrupt = interrupt.clone();
    tokio::spawn(async move {
        interrupt.wait().await;
        tokio::time::sleep(grace).await;
        let secs = grace.as_secs_f64();
        eprintln!("bqsink: the grace period of {secs}s ended; stopping now, rows not written are dead-lettered");
        abort.fire(format!("the grace period of {secs}s after the stop request ended"));
    })
}
