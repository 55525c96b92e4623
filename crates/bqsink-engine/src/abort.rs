//! Giving up at once: a second Ctrl-C or SIGTERM, or a grace period that ran out. Sinks watch
//! the signal wherever they would wait (an answer, a backoff, the breaker) and give up on what
//! they hold, dead-lettering every row with its fate instead of dropping it.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared by the sinks of one destination; fired once, with the reason.
#[derive(Clone, Debug)]
pub struct Abort(Arc<watch::Sender<Option<String>>>);

impl Default for Abort {
    fn default() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }
}

impl Abort {
    /// Asks every sink to give up now; the first reason given is kept.
    pub fn fire(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.0.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
            true
        });
    }

    /// Why it fired, if it did.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves with the reason once fired.
    pub async fn fired(&self) -> String {
        let mut rx = self.0.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            // The sender lives in `self`: it cannot be gone while this waits.
            Err(_) => String::new(),
        };
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let a = Abort::default();
        assert_eq!(a.reason(), None);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.fired().await }
        });
        a.fire("second signal");
        a.fire("later");
        assert_eq!(waiter.await.ok().as_deref(), Some("second signal"));
        assert_eq!(a.fired().await, "second signal");
    }
}
