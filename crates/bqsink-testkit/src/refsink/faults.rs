//! Fault injection for AppendRows (see [`FaultHandle`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
pub use tonic::Code;

/// How an injected error reaches the client (see [`FaultHandle::fail_next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// In `AppendRowsResponse.error`: the request's rows are not stored and the connection stays
    /// open, like BigQuery's per-request errors.
    InResponse,
    /// As the gRPC status of the whole AppendRows call: the connection ends.
    StreamStatus,
}

/// Controls faults the sink injects into AppendRows; cheap to clone, every clone controls the same
/// sink. Faults apply to AppendRows requests on every connection, counted in the order the sink
/// receives them. Other calls (CreateWriteStream, REST, …) are never faulted.
///
/// For each AppendRows request, in this order:
/// 1. the delay set by [`set_delay`](Self::set_delay), if any, is waited;
/// 2. while [`hang`](Self::hang) is on, the request waits (unanswered) until
///    [`release`](Self::release) (or [`clear`](Self::clear), or the sink stops);
/// 3. a pending [`reset_after`](Self::reset_after) / [`close_after`](Self::close_after) counts the
///    request; when it is due, the connection ends without answering the request;
/// 4. a pending [`fail_next`](Self::fail_next) answers the request with its error instead of
///    processing it;
/// 5. otherwise the request is processed normally.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    plan: Mutex<Plan>,
    hang: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Plan {
    /// Requests still to let through before ending a connection, and how to end it.
    reset: Option<(u64, Ending)>,
    /// Requests still to fail, and how.
    fail: Option<(u64, Code, FailMode)>,
    delay: Duration,
    injected: u64,
    /// Requests are processed but never answered.
    answers_lost: bool,
}

/// How an injected reset ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// gRPC status UNAVAILABLE.
    Unavailable,
    /// The response stream simply ends (status OK), the request unanswered.
    Eof,
}

/// What to do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub(crate) end: Option<Ending>,
    pub(crate) fail: Option<(Code, FailMode)>,
}

impl FaultHandle {
    pub(crate) fn new() -> Self {
        let (hang, _) = watch::channel(false);
        Self { inner: Arc::new(Inner { plan: Mutex::new(Plan::default()), hang }) }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.inner.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the next `n` AppendRows requests through, then ends the connection that receives the
    /// one after them with gRPC status UNAVAILABLE, without answering it (the rows are not stored).
    /// One-shot; `reset_after(0)` resets at the next request. Replaces a pending reset or close.
    pub fn reset_after(&self, n: u64) {
        self.plan().reset = Some((n, Ending::Unavailable));
    }

    /// Like [`reset_after`](Self::reset_after), but the response stream ends cleanly (no error
    /// status; the client sees end-of-stream with the request unanswered), like a server that drops
    /// a connection while draining.
    pub fn close_after(&self, n: u64) {
        self.plan().reset = Some((n, Ending::Eof));
    }

    /// Answers the next `k` AppendRows requests with `code` instead of processing them (no rows
    /// stored), [`FailMode::InResponse`] or as the call's status ([`FailMode::StreamStatus`], each
    /// ending its connection). Replaces a pending `fail_next`; `k = 0` cancels it.
    pub fn fail_next(&self, k: u64, code: Code, mode: FailMode) {
        self.plan().fail = (k > 0).then_some((k, code, mode));
    }

    /// Waits this long before handling each AppendRows request (`Duration::ZERO` turns it off).
    /// Requests on one connection are handled one after the other, so delays add up per connection.
    pub fn set_delay(&self, delay: Duration) {
        self.plan().delay = delay;
    }

    /// From now on, AppendRows requests are held unanswered until [`release`](Self::release).
    pub fn hang(&self) {
        self.inner.hang.send_replace(true);
    }

    /// Ends [`hang`](Self::hang): held requests are handled, in order.
    pub fn release(&self) {
        self.inner.hang.send_replace(false);
    }

    /// While on, AppendRows requests are processed as usual (their rows stored) but never
    /// answered, like a proxy that stops passing answers back: the client cannot know its rows
    /// are in the table.
    pub fn lose_answers(&self, on: bool) {
        self.plan().answers_lost = on;
    }

    pub(crate) fn answers_lost(&self) -> bool {
        self.plan().answers_lost
    }

    /// Turns every fault off (and releases held requests).
    pub fn clear(&self) {
        let mut plan = self.plan();
        plan.answers_lost = false;
        plan.reset = None;
        plan.fail = None;
        plan.delay = Duration::ZERO;
        drop(plan);
        self.release();
    }

    /// How many requests a reset, close or failure has been applied to so far.
    pub fn injected(&self) -> u64 {
        self.plan().injected
    }

    pub(crate) fn delay(&self) -> Duration {
        self.plan().delay
    }

    pub(crate) fn hang_watch(&self) -> watch::Receiver<bool> {
        self.inner.hang.subscribe()
    }

    /// Counts one request against the pending reset and failure.
    pub(crate) fn decide(&self) -> Decision {
        let mut plan = self.plan();
        let mut d = Decision::default();
        if let Some((n, ending)) = plan.reset {
            if n == 0 {
                plan.reset = None;
                d.end = Some(ending);
            } else {
                plan.reset = Some((n - 1, ending));
            }
        }
        if d.end.is_none() {
            if let Some((k, code, mode)) = plan.fail {
                plan.fail = (k > 1).then_some((k - 1, code, mode));
                d.fail = Some((code, mode));
            }
        }
        if d.end.is_some() || d.fail.is_some() {
            plan.injected += 1;
        }
        d
    }
}
