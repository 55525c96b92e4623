//! Flushing a dead-letter queue from async code, for every writer's `flush` and `close`.

use std::sync::Arc;

use bqsink_engine::DeadLetterQueue;

use crate::Error;

/// Flushes the dead-letter queue on a blocking thread: files sync and tables wait for acks.
pub(crate) async fn flush_dead_letters(dlq: &Option<Arc<dyn DeadLetterQueue>>) -> Result<(), Error> {
    let Some(q) = dlq.clone() else { return Ok(()) };
    tokio::task::spawn_blocking(move || q.flush())
        .await
        .map_err(|e| Error::DeadLetter(format!("cannot flush the dead-letter queue: {e}")))?
        .map_err(|e| Error::DeadLetter(format!("cannot flush the dead-letter queue: {e}")))
}
