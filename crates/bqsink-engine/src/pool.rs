//! A small pool of AppendRows connections shared by the default streams of many tables.
//!
//! Every request carries its `write_stream` and writer schema, so any connection can carry any
//! table's rows (multiplexing); a table always uses the same connection (by hash), which keeps
//! its requests in order. A connection that ended is replaced once, for every table on it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use bqsink_transport::{AppendStream, WriteClient};

/// Default connections in a pool: a handful carry thousands of tables.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// Shared AppendRows connections.
#[derive(Debug)]
pub struct ConnectionPool {
    client: WriteClient,
    slots: Vec<Mutex<Option<(AppendStream, u64)>>>,
    /// Generations handed out so far (shared by all slots, so they never repeat).
    generations: std::sync::atomic::AtomicU64,
}

impl ConnectionPool {
    /// A pool of `size` connections (at least one), opened lazily.
    pub fn new(client: WriteClient, size: usize) -> Self {
        Self {
            client,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            // 0 and 1 are never handed out: 0 marks requests never sent (see the sink).
            generations: std::sync::atomic::AtomicU64::new(2),
        }
    }

    /// Connections in the pool.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.lock().ok().and_then(|g| g.as_ref().map(|(c, _)| !c.is_closed())).unwrap_or(false))
            .count()
    }

    /// The connection for a write stream, opening or replacing it when needed, and its
    /// generation (which changes whenever the connection is replaced).
    pub fn connection(&self, write_stream: &str) -> (AppendStream, u64, bool) {
        let mut h = DefaultHasher::new();
        write_stream.hash(&mut h);
        let i = (h.finish() as usize) % self.slots.len();
        let mut slot = match self.slots[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match slot.as_ref() {
            Some((c, g)) if !c.is_closed() => (c.clone(), *g, false),
            previous => {
                let replaced = previous.is_some();
                let g = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let c = self.client.append_stream(write_stream);
                *slot = Some((c.clone(), g));
                (c, g, replaced)
            }
        }
    }
}
