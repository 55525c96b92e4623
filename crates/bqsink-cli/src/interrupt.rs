//! Ctrl-C: during a load, the first one asks for a graceful stop (stop reading, flush what is
//! in flight, print the summary); a second one, or one at any other time, exits at once with 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::EXIT_INTERRUPTED;

/// The process's SIGINT handling.
#[derive(Debug, Clone)]
pub(crate) struct Interrupt {
    graceful: Arc<AtomicBool>,
    fired: watch::Receiver<bool>,
}

impl Interrupt {
    /// Takes over SIGINT for the rest of the process (registered now, so Ctrl-C is ours from
    /// the start). Must be called inside the runtime.
    pub(crate) fn install() -> Self {
        let graceful = Arc::new(AtomicBool::new(false));
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        let sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let graceful_flag = graceful.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let Ok(mut sig) = sig
            else {
                return;
            };
            loop {
                #[cfg(unix)]
                if sig.recv().await.is_none() {
                    return;
                }
                #[cfg(not(unix))]
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                if graceful_flag.load(Ordering::SeqCst) && !*tx.borrow() {
                    eprintln!("bqsink: interrupted; flushing rows in flight (Ctrl-C again to quit at once)");
                    let _ = tx.send(true);
                } else {
                    eprintln!("bqsink: interrupted");
                    std::process::exit(EXIT_INTERRUPTED.into());
                }
            }
        });
        Self { graceful, fired: rx }
    }

    /// While on, the first Ctrl-C is reported through [`Interrupt::wait`] instead of exiting.
    pub(crate) fn set_graceful(&self, on: bool) {
        self.graceful.store(on, Ordering::SeqCst);
    }

    /// Whether a graceful stop was asked for.
    pub(crate) fn fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// Resolves once a graceful stop is asked for.
    pub(crate) async fn wait(&self) {
        let mut rx = self.fired.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
