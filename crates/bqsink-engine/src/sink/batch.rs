//! Rows into the batch buffer: encoded one by one or taken encoded from the workers, and cut
//! into a request by row count, bytes and age.

use std::time::{Duration, Instant};

use bqsink_core::{Record, RowError};
use bqsink_transport::{RowDescriptor, RowEncoder};

use super::refused::{decode_all, decode_one};
use super::{EngineError, TableSink};
use crate::breaker::{BreakerState, WhenOpen};
use crate::dlq::Fate;

impl TableSink {
    /// Encodes one row into the current batch, sending the batch when it is full. A row that
    /// cannot be encoded comes back with its error (`Ok(Some(..))`) and nothing else changes.
    pub async fn write(&mut self, record: Record) -> Result<Option<(RowError, Record)>, EngineError> {
        self.admit().await?;
        let row_start = self.buf.len();
        if let Err(e) = self.encoder.encode_row_entry(&record, &mut self.buf) {
            return Ok(Some((e, record)));
        }
        match self.place_row(row_start).await? {
            Some(e) => Ok(Some((e, record))),
            // Encoded: the record is no longer needed (a refused row is read back from its bytes).
            None => Ok(None),
        }
    }

    /// Takes rows the encoding workers encoded (see [`crate::workers`]); returns the rows
    /// refused, each with its position in the chunk. Rows encoded for another schema than the
    /// sink's current one (it changed meanwhile) are encoded again.
    pub async fn write_encoded(
        &mut self,
        chunk: crate::workers::EncodedRows,
    ) -> Result<Vec<(usize, RowError, Record)>, EngineError> {
        let crate::workers::EncodedRows { descriptor, rows, ends, mut refused, positions } = chunk;
        if ends.is_empty() {
            return Ok(refused);
        }
        if !descriptor.same_as(self.encoder.descriptor()) {
            // Encoded for a schema that changed since: read back and encoded again.
            let records = match bqsink_transport::request::decode_entries(&descriptor, &rows) {
                Ok(r) => r,
                Err(e) => return Err(EngineError::Transport(e)),
            };
            for (record, i) in records.into_iter().zip(positions) {
                if let Some((e, r)) = self.write(record).await? {
                    refused.push((i, e, r));
                }
            }
            refused.sort_by_key(|r| r.0);
            return Ok(refused);
        }
        let fits_alone = rows.len() <= self.limits.max_bytes && ends.len() <= self.limits.max_rows;
        let fits_after = self.batch_rows + ends.len() <= self.limits.max_rows
            && self.buf.len() + rows.len() <= self.limits.max_bytes;
        if self.batch_rows > 0 && fits_alone && !fits_after {
            // A partial batch is waiting (the tail of the previous chunk) and this chunk would
            // not join it whole: the partial one goes first, as a request of its own, so this
            // one can be taken without copying its rows one by one.
            if let Err(e) = self.send_buffered().await {
                // This chunk's rows were handed over: dead-lettered, never dropped.
                let cause = self.cause_of(&e);
                for record in decode_all(&descriptor, &rows) {
                    self.refuse_as(Fate::NotWritten, &cause, record)?;
                }
                for (_, error, record) in refused {
                    self.refuse(error, record)?;
                }
                return Err(e);
            }
        }
        if self.batch_rows == 0 && fits_alone {
            // The common case: the chunk is the next request's body as it is, no copy.
            self.buf = rows;
            self.batch_rows = ends.len();
            self.batch_started = Some(Instant::now());
            if self.batch_rows >= self.limits.max_rows || self.buf.len() >= self.limits.max_bytes {
                self.send_buffered().await?;
            }
            return Ok(refused);
        }
        let mut start = 0;
        let mut rest = ends.into_iter().zip(positions);
        while let Some((end, i)) = rest.next() {
            let entry = start..end;
            start = end;
            let row_start = self.buf.len();
            self.buf.extend_from_slice(&rows[entry.clone()]);
            match self.place_row(row_start).await {
                Ok(Some(e)) => refused.push((i, e, decode_one(&descriptor, &rows[entry]))),
                Ok(None) => {}
                Err(e) => {
                    // The rows not yet placed are dead-lettered as not written, never dropped.
                    let cause = self.cause_of(&e);
                    let mut from = start;
                    for (end, _) in rest {
                        let record = decode_one(&descriptor, &rows[from..end]);
                        from = end;
                        self.refuse_as(Fate::NotWritten, &cause, record)?;
                    }
                    for (_, error, record) in refused {
                        self.refuse(error, record)?;
                    }
                    return Err(e);
                }
            }
        }
        refused.sort_by_key(|r| r.0);
        Ok(refused)
    }

    /// Refuses new rows while the breaker is open, when configured to fail fast (call it before
    /// [`TableSink::write_encoded`]; `write` checks by itself). Once accepted, a row is never
    /// failed fast.
    pub async fn admit(&self) -> Result<(), EngineError> {
        let breaker = &self.shared.breaker;
        if breaker.config().when_open == WhenOpen::FailFast && breaker.state() != BreakerState::Closed {
            drop(breaker.acquire().await?);
        }
        Ok(())
    }

    /// Accepts the row just appended to the batch buffer at `row_start`: refuses it when it is
    /// over the configured request size, cuts the batch into a request when it is full.
    async fn place_row(&mut self, row_start: usize) -> Result<Option<RowError>, EngineError> {
        let row_len = self.buf.len() - row_start;
        if row_len > self.limits.max_bytes {
            self.buf.truncate(row_start);
            let limit = self.limits.max_bytes;
            let e = RowError::new(
                "",
                format!("the row is {row_len} bytes encoded, over the request size limit of {limit} bytes (max_request_bytes)"),
            );
            return Ok(Some(e));
        }
        if self.buf.len() > self.limits.max_bytes && self.batch_rows > 0 {
            // This row would overflow the request: send the rows before it, keep it.
            let earlier = self.buf.split_to(row_start);
            let n = std::mem::replace(&mut self.batch_rows, 1);
            self.batch_started = Some(Instant::now());
            self.send(earlier, n).await?;
            return self.send_if_full().await.map(|()| None);
        }
        self.batch_rows += 1;
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        self.send_if_full().await.map(|()| None)
    }

    async fn send_if_full(&mut self) -> Result<(), EngineError> {
        if self.batch_rows >= self.limits.max_rows || self.buf.len() >= self.limits.max_bytes {
            self.send_buffered().await?;
        }
        Ok(())
    }

    /// Sends the current batch when its oldest row has waited at least `age` (the batch
    /// timeout), without waiting for acknowledgements beyond the in-flight bound.
    pub async fn send_if_older_than(&mut self, age: Duration) -> Result<(), EngineError> {
        match self.batch_started {
            Some(t) if t.elapsed() >= age => self.send_buffered().await?,
            _ => {}
        }
        self.settle_answered().await
    }

    /// encoded are sent first with the old writer schema; they stay valid because BigQuery
    /// changes only add or relax columns.
    pub async fn set_descriptor(&mut self, descriptor: RowDescriptor) -> Result<(), EngineError> {
        self.send_buffered().await?;
        self.encoder = RowEncoder::new(descriptor);
        Ok(())
    }

    pub(super) async fn send_buffered(&mut self) -> Result<(), EngineError> {
        if self.batch_rows == 0 {
            return Ok(());
        }
        let rows = self.buf.split();
        let n = std::mem::take(&mut self.batch_rows);
        self.batch_started = None;
        self.send(rows, n).await
    }
}
