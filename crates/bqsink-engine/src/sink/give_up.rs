//! Giving up: when a request cannot be settled within the retry policy, a fatal error comes
//! back, or the destination is told to abort, every row the sink still holds is dead-lettered
//! with its fate (see [`crate::dlq::Fate`]) and the cause, so that `read = written +
//! dead-lettered` holds at every exit:
//! - a request sent and never answered (no answer in time, a connection that ended under it,
//!   an abort while it waited): *in doubt* (Streaming and ExactlyOnce: the server may have
//!   stored it), *not committed* in Batch mode;
//! - a request never sent, or whose every attempt the server itself refused, and the batch
//!   being built: *not written*;
//! - Batch mode: the rows already acknowledged into the pending stream: *not committed* (the
//!   stream is never committed after this; later rows are refused).

use bqsink_core::{Record, RowError, WriteMode};
use bqsink_transport::{AckFuture, TransportError};

use super::refused::{decode_all, decode_request};
use super::{EngineError, InFlight, TableSink};
use crate::dlq::Fate;

impl TableSink {
    /// Dead-letters every row the sink holds — `work` first (the request being settled and
    /// what it was split into), then the requests in flight, the batch being built and, in
    /// Batch mode, the uncommitted stream — each with its fate and `cause`.
    pub(super) fn give_up(&mut self, cause: &str, work: Vec<InFlight>) -> Result<(), EngineError> {
        self.freeze_marks();
        let mut held = Vec::with_capacity(work.len() + self.inflight.len());
        let queued: Vec<InFlight> = self.inflight.drain(..).collect();
        for f in &queued {
            self.shared.metrics.sub_in_flight(f.request.row_count() as u64, f.request.encoded_len() as u64);
        }
        for mut f in work.into_iter().chain(queued) {
            // An answer that already arrived settles its request's fate.
            match f.ack.as_mut().and_then(AckFuture::try_answer) {
                None => held.push(f),
                Some(Ok(_)) => {
                    f.ack = None;
                    self.acknowledged(&f)?;
                }
                Some(Err(e)) => {
                    f.ack = None;
                    // The server's own refusal stores nothing; anything else may have.
                    f.maybe_stored |= !matches!(e, TransportError::Append { .. });
                    held.push(f);
                }
            }
        }
        let batch_mode = self.mode == WriteMode::Batch;
        if batch_mode && self.gave_up.is_none() {
            // Acknowledged rows first: they were read first.
            let mut pending = std::mem::take(&mut self.pending);
            self.stats.rows_pending = 0;
            pending.drain(|record| self.refuse_as(Fate::NotCommitted, cause, record))?;
            self.gave_up = Some(cause.to_owned());
        }
        for f in held {
            let uncertain = f.maybe_stored || f.ack.is_some();
            let fate = match (uncertain, batch_mode) {
                (false, _) => Fate::NotWritten,
                (true, true) => Fate::NotCommitted,
                (true, false) => Fate::InDoubt,
            };
            for record in decode_request(&f.request) {
                self.refuse_as(fate, cause, record)?;
            }
        }
        if self.batch_rows > 0 {
            let rows = self.buf.split();
            self.batch_rows = 0;
            self.batch_started = None;
            let descriptor = self.encoder.descriptor().clone();
            for record in decode_all(&descriptor, &rows) {
                self.refuse_as(Fate::NotWritten, cause, record)?;
            }
        }
        // Whatever was on the connection is abandoned; with offsets, the stream's end is
        // unknown now, so later rows go to a new stream (ExactlyOnce) or nowhere (Batch).
        self.drop_connection();
        self.resync = false;
        if self.mode == WriteMode::ExactlyOnce {
            self.write_stream = None;
        }
        Ok(())
    }

    /// Dead-letters one row with its fate.
    pub(super) fn refuse_as(&mut self, fate: Fate, cause: &str, record: Record) -> Result<(), EngineError> {
        if fate == Fate::InDoubt {
            self.stats.rows_in_doubt += 1;
        }
        self.refuse(RowError::new("", fate.reason(cause)), record)
    }

    /// Batch mode, a commit that was not answered: the stream's rows may be in the table.
    pub(super) fn pending_in_doubt(&mut self, cause: &str) -> Result<(), EngineError> {
        let mut pending = std::mem::take(&mut self.pending);
        self.stats.rows_pending = 0;
        self.gave_up = Some(cause.to_owned());
        pending.drain(|record| self.refuse_as(Fate::InDoubt, cause, record))
    }

    /// The cause a dead letter names for `e`: the abort's reason when the destination was told
    /// to stop, else the error.
    pub(super) fn cause_of(&self, e: &EngineError) -> String {
        self.shared.abort.reason().unwrap_or_else(|| e.to_string())
    }

    /// Batch mode after giving up: rows are refused before they are sent.
    pub(super) fn refused_for_good(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    /// Gives up on everything the sink holds, from outside (a destination that stops without
    /// waiting for its requests' answers). Later writes start afresh, except in Batch mode.
    pub fn abandon(&mut self, cause: &str) -> Result<(), EngineError> {
        self.give_up(cause, Vec::new())
    }
}
