//! Test-only crash points: `BQSINK_FAILPOINT=NAME` (or `NAME:N` for the N-th time it is reached)
//! aborts the process there, as kill -9 would, so crash tests can hit exact moments. Read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Aborts the process if the fail point `name` is set and due.
pub(crate) fn hit(name: &str) {
    let set = SET.get_or_init(|| {
        let v = std::env::var("BQSINK_FAILPOINT").ok()?;
        let (n, count) = match v.split_once(':') {
            Some((n, c)) => (n.to_owned(), c.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((n, count.max(1)))
    });
    if let Some((n, count)) = set {
        if n == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *count {
            eprintln!("bqsink: fail point {name} reached; aborting");
            std::process::abort();
        }
    }
}
