//! Stopping a load on a signal: the first Ctrl-C or SIGTERM starts the grace period, the second
//! one (or the grace period's end) makes the writer give up on the rows in flight, which are
//! then dead-lettered with their fate and counted in the summary.

use std::time::Duration;

use crate::interrupt::Interrupt;

/// `--grace-period`'s default: well under the 30 s Kubernetes waits between SIGTERM and SIGKILL.
pub(crate) const DEFAULT_GRACE_PERIOD: &str = "20s";

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
