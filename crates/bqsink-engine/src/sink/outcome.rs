//! What one request's answer means, and what follows: acknowledged; already written (offsets);
//! resent at the stream's end; some rows refused and the others resent; refused for its data
//! and bisected; or retried after a backoff (see the module docs of [`super`]).

use std::collections::VecDeque;
use std::time::Instant;

use bqsink_core::RowError;
use bqsink_transport::{StatusCode, TransportError};
use tracing::{debug, warn};

use super::refused::{column_of, guess_column, undecodable};
use super::{EngineError, InFlight, TableSink};

impl TableSink {
    /// Settles one request. Bisected halves are pushed to the front of `work`. On a final
    /// failure the request is handed back with the error.
    pub(super) async fn settle_one(
        &mut self,
        mut f: InFlight,
        work: &mut VecDeque<InFlight>,
    ) -> Result<(), (EngineError, InFlight)> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            if self.resync && f.ack.is_none() {
                // Offsets moved below this request: it goes at the stream's end.
                match f.request.with_offset(Some(self.acked_end)) {
                    Ok(r) => f.request = r,
                    Err(e) => return Err((e.into(), f)),
                }
            }
            let outcome = self.round_trip(&mut f).await;
            let offset = f.request.offset();
            self.report_to_breaker(&mut f, &outcome);
            let outcome = match outcome {
                // The stream's end is past this request's first row, but maybe not past its
                // last one (a restart cuts requests elsewhere than the run before it).
                Err(TransportError::Append { code: StatusCode::AlreadyExists, .. })
                    if offset.is_some() && f.request.row_count() > 1 =>
                {
                    self.write_past_end(&f).await.map(|()| bqsink_transport::AppendAck::default())
                }
                other => other,
            };
            match outcome {
                Ok(ack) => {
                    if let Err(e) = self.acknowledged(&f) {
                        return Err((e, f));
                    }
                    if let Some(schema) = ack.updated_schema {
                        debug!(table = %self.table, columns = schema.fields.len(), "BigQuery reports a new table schema");
                        self.updated_schema = Some(schema);
                    }
                    return Ok(());
                }
                // With offsets, ALREADY_EXISTS means an earlier attempt of these very rows was
                // written: they are in the table once, which is the point.
                Err(TransportError::Append { code: StatusCode::AlreadyExists, .. }) if offset.is_some() => {
                    debug!(table = %self.table, ?offset, "rows already written");
                    return self.acknowledged(&f).map_err(|e| (e, f));
                }
                Err(TransportError::Append { code: StatusCode::OutOfRange, message, .. }) if offset.is_some() => {
                    // The stream's end is not where this request expected: send it again at the
                    // end acknowledged so far (bounded like any retry).
                    if attempt >= self.retry.max_attempts {
                        let e = TransportError::Append { code: StatusCode::OutOfRange, message, rejected: Vec::new() };
                        return Err((e.into(), f));
                    }
                    debug!(table = %self.table, ?offset, end = self.acked_end, %message, "offset out of range; resending at the stream's end");
                    attempt += 1;
                    self.resync = true;
                }
                Err(TransportError::Append { rejected, message, .. }) if !rejected.is_empty() => {
                    let bad: std::collections::BTreeMap<usize, String> =
                        rejected.into_iter().map(|r| (r.index as usize, r.message)).collect();
                    let good: Vec<usize> = (0..f.request.row_count()).filter(|i| !bad.contains_key(i)).collect();
                    debug!(table = %self.table, refused = bad.len(), %message, "rows refused; resending the others");
                    let subset = match f.request.subset(&good, offset.map(|_| self.acked_end)) {
                        Ok(r) => r,
                        Err(e) => return Err((e.into(), f)),
                    };
                    for (&i, m) in &bad {
                        let record = f.request.decode_row(i).unwrap_or_else(|e| undecodable(&e));
                        if let Err(e) = self.refuse(RowError::new(column_of(m), m.clone()), record) {
                            return Err((e, f));
                        }
                    }
                    if good.is_empty() {
                        return Ok(());
                    }
                    if self.uses_offsets() {
                        self.resync = true;
                    }
                    f.request = subset;
                }
                Err(e) if is_data_error(&e) => {
                    if matches!(e, TransportError::Grpc { .. }) {
                        // A stream-level refusal closes the connection.
                        self.drop_connection();
                    }
                    if self.uses_offsets() {
                        self.resync = true;
                    }
                    if f.request.row_count() == 1 {
                        let record = f.request.decode_row(0).unwrap_or_else(|e| undecodable(&e));
                        let message = error_message(&e);
                        let mut column = column_of(&message);
                        if column.is_empty() {
                            column = guess_column(&message, f.request.descriptor().schema(), &record);
                        }
                        return self.refuse(RowError::new(column, message), record).map_err(|e| (e, f));
                    }
                    // Bisect: the halves go first, in order, at the stream's end.
                    let n = f.request.row_count();
                    let halves = (
                        f.request.subset(&(0..n / 2).collect::<Vec<_>>(), offset),
                        f.request.subset(&(n / 2..n).collect::<Vec<_>>(), offset),
                    );
                    let (first_req, second_req) = match halves {
                        (Ok(a), Ok(b)) => (a, b),
                        (Err(e), _) | (_, Err(e)) => return Err((e.into(), f)),
                    };
                    debug!(table = %self.table, rows = n, error = %e, "request refused for its data; bisecting");
                    let half = |request| InFlight {
                        request,
                        ack: None,
                        permit: None,
                        generation: 0,
                        sent_at: Instant::now(),
                        maybe_stored: false,
                    };
                    work.push_front(half(second_req));
                    work.push_front(half(first_req));
                    return Ok(());
                }
                Err(e) => {
                    if let Some(reason) = self.shared.abort.reason() {
                        return Err((EngineError::GaveUp(reason), f));
                    }
                    let within_time = started.elapsed() < self.retry.max_elapsed;
                    let Some(wait) = self.retry.backoff(&e, attempt).filter(|_| within_time) else {
                        return Err((e.into(), f));
                    };
                    if !self.budget.withdraw() {
                        warn!(table = %self.table, error = %e, "retry budget spent");
                        return Err((e.into(), f));
                    }
                    self.shared.metrics.record_retry();
                    warn!(table = %self.table, attempt, error = %e, "append failed; retrying in {wait:?}");
                    if !self.uses_offsets() {
                        self.stats.rows_resent_ambiguous += f.request.row_count() as u64;
                    }
                    let abort = self.shared.abort.clone();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        reason = abort.fired() => return Err((EngineError::GaveUp(reason), f)),
                    }
                    attempt += 1;
                    self.stats.retries += 1;
                }
            }
        }
    }
}

impl TableSink {
    /// After ALREADY_EXISTS for `f` (at offset `o`, `n` rows): the stream's end `E` is past `o`
    /// but may fall inside the request. Tails of the request are sent at their own offsets: one
    /// starting exactly at `E` is written, one starting before it is ALREADY_EXISTS, one after
    /// it OUT_OF_RANGE — a binary search that ends with every row in the stream exactly once.
    /// The first guess is that all rows exist (the usual case: a retry of a written request).
    async fn write_past_end(&mut self, f: &InFlight) -> Result<(), TransportError> {
        let n = f.request.row_count();
        let o = f.request.offset().unwrap_or_default();
        // E - o lies in lo..=hi (1 ..= n; n means every row exists).
        let (mut lo, mut hi) = (1usize, n);
        let mut t = n - 1;
        loop {
            if lo >= n {
                return Ok(());
            }
            if lo > hi {
                return Err(TransportError::Protocol(format!(
                    "the end of stream {} moved while its rows from offset {o} were resent",
                    f.request.write_stream()
                )));
            }
            t = t.clamp(lo, hi.min(n - 1));
            let tail = f.request.subset(&(t..n).collect::<Vec<_>>(), Some(o + t as i64))?;
            let mut probe = InFlight {
                request: tail,
                ack: None,
                permit: None,
                generation: 0,
                sent_at: Instant::now(),
                maybe_stored: false,
            };
            match self.round_trip(&mut probe).await {
                Ok(_) => return Ok(()),
                Err(TransportError::Append { code: StatusCode::AlreadyExists, .. }) => lo = t + 1,
                Err(TransportError::Append { code: StatusCode::OutOfRange, .. }) => hi = t - 1,
                Err(e) => return Err(e),
            }
            t = (lo + hi.min(n - 1)) / 2;
        }
    }
}

/// Whether a failure means "these rows cannot be stored" rather than "try again".
fn is_data_error(e: &TransportError) -> bool {
    matches!(
        e.code(),
        Some(StatusCode::InvalidArgument) | Some(StatusCode::Unknown) if !e.is_retryable()
    ) && !is_schema_error(e)
}

/// A refusal of the writer schema itself (no row is to blame): not bisected.
fn is_schema_error(e: &TransportError) -> bool {
    let m = error_message(e).to_ascii_lowercase();
    m.contains("input schema") || m.contains("writer schema") || m.contains("proto schema")
}

fn error_message(e: &TransportError) -> String {
    match e {
        TransportError::Grpc { message, .. } | TransportError::Append { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_bisected_schema_errors_are_not() {
        let e = |code, m: &str| TransportError::Grpc { code, message: m.into() };
        assert!(is_data_error(&e(StatusCode::InvalidArgument, "bad value for field g")));
        assert!(is_data_error(&e(StatusCode::Unknown, "conversion failed")));
        assert!(!is_data_error(&e(StatusCode::InvalidArgument, "Input schema has more fields than BigQuery schema")));
        assert!(!is_data_error(&e(StatusCode::Unavailable, "try again")));
        assert!(!is_data_error(&e(StatusCode::PermissionDenied, "no")));
    }
}
