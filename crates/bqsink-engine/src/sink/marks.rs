//! Source positions settled: the caller marks a position in its input after handing the rows
//! before it to the sink (the batch is cut there, so the position falls between requests), and
//! learns, once every request before the mark is acknowledged or dead-lettered, that the
//! input up to it is settled — with the stream and the offset of the next row, so a restart
//! can go on from there (see [`crate::checkpoint`]).

use super::{EngineError, TableSink};

/// The end of the settled prefix of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settled {
    /// The position the caller marked.
    pub position: u64,
    /// The stream written to, with offsets (ExactlyOnce, Batch); `None` on the default stream.
    pub stream: Option<String>,
    /// Offset in `stream` of the first row after the position.
    pub next_offset: i64,
}

/// What [`TableSink::resume`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Rows go on into the stream.
    Resumed,
    /// Batch mode: the pending stream was committed already (the run before was killed after
    /// its commit): the load is over.
    AlreadyCommitted,
}

impl Settled {
    /// A position settled on the default stream (no stream offsets to keep).
    pub fn at(position: u64) -> Self {
        Self { position, stream: None, next_offset: 0 }
    }
}

impl TableSink {
    /// Marks `position` in the caller's input: every row handed over before is in a request
    /// now, and [`TableSink::take_settled`] reports the position once they are all settled.
    pub async fn mark(&mut self, position: u64) -> Result<(), EngineError> {
        self.send_buffered().await?;
        if !self.marks_frozen {
            self.marked = true;
            self.marks.push_back((self.requests_sent, position));
            self.advance_marks();
        }
        Ok(())
    }

    /// The furthest position marked whose rows are all settled, once (`None` if it did not
    /// move since the last call).
    pub fn take_settled(&mut self) -> Option<Settled> {
        std::mem::take(&mut self.settled_moved).then(|| self.settled.clone()).flatten()
    }

    /// The furthest position marked whose rows are all settled, if any is; `None` also when
    /// nothing was marked (see [`TableSink::was_marked`]).
    pub fn latest_settled(&self) -> Option<&Settled> {
        self.settled.as_ref()
    }

    /// Whether a position was ever marked on this sink.
    pub fn was_marked(&self) -> bool {
        self.marked
    }

    /// Writes on into an existing stream from `next_offset` (a restart from a checkpoint):
    /// ExactlyOnce and Batch only; rows already there are answered ALREADY_EXISTS and counted
    /// as written.
    pub async fn resume(&mut self, stream: String, next_offset: i64) -> Result<Resumed, EngineError> {
        if !self.uses_offsets() {
            return Ok(Resumed::Resumed);
        }
        if self.mode == bqsink_core::WriteMode::Batch {
            // A run killed after its commit and before it could say so: nothing left to write.
            let info = self.client.get_write_stream(&stream).await?;
            if info.committed {
                return Ok(Resumed::AlreadyCommitted);
            }
        }
        self.write_stream = Some(stream);
        self.next_offset = next_offset;
        self.acked_end = next_offset;
        self.keep_open = true;
        Ok(Resumed::Resumed)
    }

    /// The stream rows go to, created now if it is not yet (ExactlyOnce, Batch), with the
    /// offset of the next row: a checkpoint names it before any row is sent, so a restart
    /// never writes the same rows into a second stream. `None` on the default stream.
    pub async fn open_stream(&mut self) -> Result<Option<(String, i64)>, EngineError> {
        if !self.uses_offsets() {
            return Ok(None);
        }
        let name = self.stream_name().await?;
        // A restart may go on writing into it: ExactlyOnce leaves it open at the end (a
        // COMMITTED stream's rows are visible without finalizing it).
        self.keep_open = true;
        Ok(Some((name, self.next_offset)))
    }

    /// Called as each request is settled: marks whose requests are all settled move on.
    pub(super) fn advance_marks(&mut self) {
        while let Some(&(sent, position)) = self.marks.front() {
            if sent > self.requests_settled {
                break;
            }
            self.marks.pop_front();
            let stream = self.write_stream.clone().filter(|_| self.uses_offsets());
            self.settled = Some(Settled { position, stream, next_offset: self.acked_end });
            self.settled_moved = true;
        }
    }

    /// After giving up, nothing more is settled in this run: a restart goes on from the last
    /// position reported.
    pub(super) fn freeze_marks(&mut self) {
        self.marks.clear();
        self.marks_frozen = true;
    }
}
