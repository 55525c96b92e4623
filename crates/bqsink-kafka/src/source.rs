//! The consume loop: poll a batch, write it through the destination, flush, commit its offsets.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bqsink::{Destination, LoadOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::{Error, KafkaConfig, KafkaDeadLetters, MessagePosition};

/// Logs group membership changes.
struct GroupLog;

impl ClientContext for GroupLog {}

impl ConsumerContext for GroupLog {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => info!(partitions = %describe(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => info!(partitions = %describe(tpl), "partitions revoked"),
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect();
    parts.join(",")
}

/// A consumer in a group, subscribed to the configured topics.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<GroupLog>>,
    config: KafkaConfig,
    consumed: Arc<AtomicU64>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("config", &self.config).finish_non_exhaustive()
    }
}

/// What [`KafkaSource::run`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Messages read and settled (written or dead-lettered) with their offsets committed.
    pub messages: u64,
    /// Batches written.
    pub batches: u64,
    /// Offset commits that failed (a rebalance took the partitions away meanwhile): their
    /// messages are read again by the partitions' next owner.
    pub failed_commits: u64,
    /// Whether the stop signal ended the run.
    pub stopped: bool,
}

impl KafkaSource {
    /// Creates the consumer (auto-commit off, reading from the earliest offset when the group
    /// has none) and subscribes to the topics. The group is joined on the first poll.
    pub fn connect(config: KafkaConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let consumer: StreamConsumer<GroupLog> =
            client.create_with_context(GroupLog).map_err(Error::kafka("create the Kafka consumer"))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(Error::kafka("subscribe to the topics"))?;
        Ok(Self { consumer: Arc::new(consumer), config, consumed: Arc::new(AtomicU64::new(0)) })
    }

    /// Messages consumed so far (read and handed to the destination), for progress displays.
    pub fn consumed(&self) -> Arc<AtomicU64> {
        self.consumed.clone()
    }

    /// Consumes until `stop` completes: each batch of messages is written into `dest` as NDJSON
    /// (one message value, one record), flushed until every row is acknowledged or
    /// dead-lettered, and only then are its offsets committed. With `dead_letters` (the queue
    /// `dest` was built with), each dead letter names its message's topic, partition and offset.
    ///
    /// On `stop`, the batch being gathered is written and committed, then the consumer leaves
    /// the group. A write failure returns at once without committing: those messages are read
    /// again by the next owner of their partitions (at-least-once).
    pub async fn run(
        self,
        dest: &Destination,
        dead_letters: Option<&KafkaDeadLetters>,
        stop: impl Future<Output = ()>,
    ) -> Result<RunReport, Error> {
        let mut report = RunReport::default();
        let mut stop = std::pin::pin!(stop);
        let result = loop {
            let (mut batch, stopped) = self.gather(&mut stop).await;
            if !batch.is_empty() {
                if let Err(e) = self.write(dest, dead_letters, &mut batch).await {
                    break Err(e);
                }
                report.batches += 1;
                report.messages += batch.positions.len() as u64;
                if !self.commit(&batch).await {
                    report.failed_commits += 1;
                }
            }
            if stopped {
                report.stopped = true;
                break Ok(report);
            }
        };
        self.leave().await;
        result
    }

    /// Reads one batch: waits for a first message, then takes more until the batch is full or
    /// its time is up. Returns it with whether `stop` fired.
    async fn gather(&self, stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> (Batch, bool) {
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        while batch.positions.len() < self.config.max_batch_messages {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                biased;
                () = stop.as_mut() => return (batch, true),
                () = timer => break,
                msg = self.consumer.recv() => msg,
            };
            match msg {
                Ok(m) => {
                    batch.push(m.topic(), m.partition(), m.offset(), m.payload());
                    self.consumed.fetch_add(1, Ordering::Relaxed);
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.config.max_batch_wait);
                    }
                }
                // librdkafka retries by itself (brokers down, a coordinator moving): say so
                // and keep polling.
                Err(e) => {
                    warn!(error = %e, "Kafka consumer error; retrying");
                    tokio::select! {
                        biased;
                        () = stop.as_mut() => return (batch, true),
                        () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
            }
        }
        (batch, false)
    }

    /// Writes a batch and waits until every row is acknowledged or dead-lettered.
    async fn write(
        &self,
        dest: &Destination,
        dead_letters: Option<&KafkaDeadLetters>,
        batch: &mut Batch,
    ) -> Result<(), Error> {
        if let Some(d) = dead_letters {
            d.begin(batch.positions.clone());
        }
        let started = Instant::now();
        let data = std::mem::take(&mut batch.ndjson);
        dest.load(std::io::Cursor::new(data), LoadOptions::ndjson()).await?;
        dest.flush().await?;
        debug!(messages = batch.positions.len(), elapsed = ?started.elapsed(), "batch written");
        Ok(())
    }

    /// Commits the offset after each partition's last message of the batch; `false` when the
    /// broker refused (the group moved on: the next owner reads them again).
    async fn commit(&self, batch: &Batch) -> bool {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), last) in batch.last_offsets() {
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(last + 1)) {
                warn!(%topic, partition, error = %e, "cannot name an offset to commit");
            }
        }
        let consumer = self.consumer.clone();
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(error = %e, "committing offsets failed (a rebalance?); those messages will be read again");
                false
            }
            Err(e) => {
                warn!(error = %e, "the offset commit task failed; those messages will be read again");
                false
            }
        }
    }

    /// Leaves the group (closing the consumer blocks while librdkafka says goodbye).
    async fn leave(self) {
        self.consumer.unsubscribe();
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}

/// Message values as NDJSON, one line each, and where each line came from.
#[derive(Default)]
struct Batch {
    ndjson: Vec<u8>,
    positions: Vec<MessagePosition>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// One line per message: newlines inside the value are JSON whitespace (a raw newline is
    /// never legal inside a JSON string), so they become spaces; an empty value (a tombstone)
    /// becomes `null`, which the transcoder refuses, so it is dead-lettered, not lost.
    fn push(&mut self, topic: &str, partition: i32, offset: i64, value: Option<&[u8]>) {
        let value = value.unwrap_or_default();
        if value.iter().all(u8::is_ascii_whitespace) {
            self.ndjson.extend_from_slice(b"null");
        } else {
            self.ndjson.extend(value.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
        }
        self.ndjson.push(b'\n');
        self.positions.push(MessagePosition { topic: topic.to_owned(), partition, offset });
    }

    /// The highest offset of each (topic, partition) in the batch.
    fn last_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let mut last = BTreeMap::new();
        for p in &self.positions {
            let e = last.entry((p.topic.clone(), p.partition)).or_insert(p.offset);
            *e = (*e).max(p.offset);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_message() {
        let mut b = Batch::default();
        b.push("t", 0, 5, Some(b"{\"a\":\n1}"));
        b.push("t", 1, 7, None);
        b.push("t", 0, 6, Some(b"{\"a\":2}"));
        assert_eq!(b.ndjson, b"{\"a\": 1}\nnull\n{\"a\":2}\n");
        let last = b.last_offsets();
        assert_eq!(last.get(&("t".to_owned(), 0)), Some(&6));
        assert_eq!(last.get(&("t".to_owned(), 1)), Some(&7));
    }
}
