//! Ctrl-C and SIGTERM (what systemd, Docker and Kubernetes send to stop a process). During a
//! load the first one asks for a graceful stop: stop reading, write the rows in flight within
//! the grace period, print the summary. The second one (or the grace period running out) gives
//! up at once: every row not yet written is dead-lettered with its fate, and the summary is
//! still printed. A third one, or one outside a load, exits at once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{EXIT_INTERRUPTED, EXIT_TERMINATED};

type Hook = Box<dyn Fn(&str) + Send + Sync>;

/// The process's SIGINT and SIGTERM handling.
#[derive(Clone)]
pub(crate) struct Interrupt {
    graceful: Arc<AtomicBool>,
    fired: watch::Receiver<bool>,
    /// The exit code the first signal asks for (130 SIGINT, 143 SIGTERM); 0 before any.
    code: Arc<AtomicU8>,
    /// Called by the second signal: gives up on the rows in flight.
    force: Arc<Mutex<Option<Hook>>>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt").field("fired", &*self.fired.borrow()).finish_non_exhaustive()
    }
}

impl Interrupt {
    /// Takes over SIGINT and SIGTERM for the rest of the process (registered now, so they are
    /// ours from the start). Must be called inside the runtime.
    pub(crate) fn install() -> Self {
        let graceful = Arc::new(AtomicBool::new(false));
        let code = Arc::new(AtomicU8::new(0));
        let force: Arc<Mutex<Option<Hook>>> = Arc::new(Mutex::new(None));
        let (tx, rx) = watch::channel(false);
        let (graceful_flag, code_cell, force_hook) = (graceful.clone(), code.clone(), force.clone());
        tokio::spawn(async move {
            let mut signals = Signals::new();
            let mut count = 0u32;
            loop {
                let Some((name, exit)) = signals.next().await else { return };
                count += 1;
                let hook = force_hook.lock().ok().and_then(|mut h| if count == 2 { h.take() } else { None });
                if count == 1 && graceful_flag.load(Ordering::SeqCst) {
                    code_cell.store(exit, Ordering::SeqCst);
                    eprintln!("bqsink: {name}; writing the rows in flight (send it again to stop at once)");
                    let _ = tx.send(true);
                } else if let Some(hook) = hook {
                    eprintln!("bqsink: {name} again; stopping now, rows not written are dead-lettered");
                    hook(&format!("stopped by a second {name}"));
                } else {
                    eprintln!("bqsink: {name}");
                    std::process::exit(exit.into());
                }
            }
        });
        Self { graceful, fired: rx, code, force }
    }

    /// While on, the first signal is reported through [`Interrupt::wait`] instead of exiting.
    pub(crate) fn set_graceful(&self, on: bool) {
        self.graceful.store(on, Ordering::SeqCst);
    }

    /// What the second signal does instead of exiting: give up on the rows in flight, with
    /// the reason it is called with.
    pub(crate) fn on_second(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut h) = self.force.lock() {
            *h = Some(Box::new(hook));
        }
    }

    /// Whether a graceful stop was asked for.
    pub(crate) fn fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// The exit code of the signal that asked for the stop (130 for SIGINT, 143 for SIGTERM).
    pub(crate) fn exit_code(&self) -> u8 {
        match self.code.load(Ordering::SeqCst) {
            0 => EXIT_INTERRUPTED,
            c => c,
        }
    }

    /// Resolves once a graceful stop is asked for.
    pub(crate) async fn wait(&self) {
        let mut rx = self.fired.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGINT and SIGTERM as one stream of (name, exit code).
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self { int: signal(SignalKind::interrupt()).ok(), term: signal(SignalKind::terminate()).ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) -> Option<(&'static str, u8)> {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
                match s {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                r = recv(&mut self.int) => r.map(|()| ("interrupted", EXIT_INTERRUPTED)),
                r = recv(&mut self.term) => r.map(|()| ("SIGTERM", EXIT_TERMINATED)),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| ("interrupted", EXIT_INTERRUPTED))
        }
    }
}
