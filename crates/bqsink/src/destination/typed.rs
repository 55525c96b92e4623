//! Rows of the caller's own types: any `serde::Serialize` value written straight to row bytes
//! by the table's plan ([`TypedEncoder`]), on the caller's thread, one request's worth at a
//! time, and handed to the sink as the load path hands transcoded rows.

use std::sync::atomic::Ordering;

use bqsink_core::RowError;
use bqsink_engine::{EncodedRows, Payload};
use bqsink_formats::{Cut, TypedEncoder};
use serde::Serialize;

use super::Destination;
use crate::Error;

impl Destination {
    /// Writes rows of your own types (`#[derive(Serialize)]` structs, maps) straight to wire
    /// bytes: no `Record`, no JSON tree, nothing allocated per row. A row is written exactly as
    /// its JSON text would be by [`Destination::load`] (fields matched to columns by name, the
    /// same coercions), and refused with the same message; refused rows go to the dead-letter
    /// queue with their JSON text and come back here with their index in `rows`. Fails as a
    /// whole only when BigQuery cannot take the rows.
    ///
    /// Rows are encoded on the calling task while earlier requests are sent; pass an iterator
    /// that makes the rows (or borrows them: `&T` is `Serialize` too).
    pub async fn write_typed<T: Serialize>(&self, rows: impl IntoIterator<Item = T>) -> Result<Vec<RowError>, Error> {
        self.take_deferred()?;
        let mut rows = rows.into_iter();
        let (descriptor, limits) = {
            let sink = self.inner.sink.lock().await;
            (sink.descriptor().clone(), sink.limits())
        };
        let cut =
            Cut { max_rows: self.inner.config.batch_size.max(1).min(limits.max_rows), max_bytes: limits.max_bytes };
        let mut encoder = TypedEncoder::new(descriptor);
        let mut refused = Vec::new();
        let mut position = 0u64;
        loop {
            let batches = encoder.encode_batches(&mut rows, position, cut);
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                position += batch.rows_read() as u64;
                let (encoded, bad) = EncodedRows::from_batch(batch);
                for r in bad {
                    let e = r.error.at_row(r.position);
                    self.inner.rows_read.fetch_add(1, Ordering::Relaxed);
                    self.refuse(e.clone(), Payload::Raw(r.raw))?;
                    refused.push(e);
                }
                self.place_encoded(0, encoded, &mut refused).await?;
            }
            // The table's schema may have changed (rows written for the old one stay valid).
            let current = self.inner.sink.lock().await.descriptor().clone();
            if !current.same_as(encoder.descriptor()) {
                encoder = TypedEncoder::new(current);
            }
        }
        Ok(refused)
    }
}
