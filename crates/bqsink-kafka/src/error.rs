//! What can go wrong consuming from Kafka into BigQuery.

/// An error of the Kafka source; each says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (a missing broker list, topic or group, a bad property).
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// librdkafka refused to create the consumer or to subscribe.
    #[error("cannot {what}: {source}; check --brokers, --topic and the -X properties")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Writing to BigQuery failed: the batch's offsets were not committed, so its messages are
    /// read again by the next owner of their partitions.
    #[error("writing to BigQuery failed: {0}")]
    Write(#[from] bqsink::Error),
    /// The dead-letter file could not be written.
    #[error("cannot write the dead-letter file: {0}")]
    DeadLetter(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn kafka(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
        move |source| Error::Kafka { what, source }
    }
}
