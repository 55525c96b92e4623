//! The consumer's settings.

use std::fmt;
use std::time::Duration;

use crate::Error;

/// Messages gathered into one batch before it is written and its offsets committed.
pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 10_000;
/// Longest a batch waits for more messages once it holds one: bounds the latency of a quiet
/// topic and how much a crash replays.
pub const DEFAULT_MAX_BATCH_WAIT: Duration = Duration::from_millis(500);

/// Property keys whose values are secrets, never printed (matched as substrings, any case).
const SECRET_KEYS: &[&str] = &["password", "secret", "sasl.jaas", "key.pem", "token"];

/// What to consume and how: brokers, topics, the consumer group, and librdkafka properties that
/// pass through as they are (`security.protocol`, `sasl.*`, `ssl.*`, `session.timeout.ms`, …).
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Topics to consume; all go into the one table.
    pub topics: Vec<String>,
    /// The consumer group (`group.id`): every process of the group shares the partitions.
    pub group: String,
    /// Extra librdkafka properties, applied after bqsink's own (so they win).
    pub properties: Vec<(String, String)>,
    /// See [`DEFAULT_MAX_BATCH_MESSAGES`].
    pub max_batch_messages: usize,
    /// See [`DEFAULT_MAX_BATCH_WAIT`].
    pub max_batch_wait: Duration,
}

impl KafkaConfig {
    /// A configuration with the default batch limits and no extra properties.
    pub fn new(
        brokers: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        group: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            group: group.into(),
            properties: Vec::new(),
            max_batch_messages: DEFAULT_MAX_BATCH_MESSAGES,
            max_batch_wait: DEFAULT_MAX_BATCH_WAIT,
        }
    }

    /// The same configuration with one more librdkafka property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Parses `key=value` (the CLI's `-X`).
    pub fn parse_property(text: &str) -> Result<(String, String), Error> {
        match text.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(Error::Config(format!(
                "`{text}` is not a property: write it as key=value, e.g. -X session.timeout.ms=10000"
            ))),
        }
    }

    /// Checks what librdkafka would only report later, or not clearly.
    pub fn validate(&self) -> Result<(), Error> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config("no brokers: pass --brokers HOST:PORT[,HOST:PORT…]".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::Config("no topic (or an empty one): pass --topic T[,T…]".into()));
        }
        if self.group.trim().is_empty() {
            return Err(Error::Config("no consumer group: pass --group G".into()));
        }
        if self.max_batch_messages == 0 {
            return Err(Error::Config("max_batch_messages must be at least 1".into()));
        }
        for (key, value) in &self.properties {
            if key == "enable.auto.commit" && value.trim() != "false" {
                return Err(Error::Config(
                    "enable.auto.commit cannot be turned on: bqsink commits offsets itself, only \
                     after the rows before them are written or dead-lettered"
                        .into(),
                ));
            }
            if key == "group.id" || key == "bootstrap.servers" {
                return Err(Error::Config(format!("set {key} with --group / --brokers, not as a property")));
            }
        }
        Ok(())
    }

    /// Whether a property's value must not be printed.
    pub(crate) fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        SECRET_KEYS.iter().any(|s| key.contains(s))
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if KafkaConfig::is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("properties", &props)
            .field("max_batch_messages", &self.max_batch_messages)
            .field("max_batch_wait", &self.max_batch_wait)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = KafkaConfig::new("b:9092", ["t"], "g");
        assert_eq!(c.max_batch_messages, DEFAULT_MAX_BATCH_MESSAGES);
        assert_eq!(c.max_batch_wait, DEFAULT_MAX_BATCH_WAIT);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = KafkaConfig::new("b:9092", ["t"], "g")
            .property("sasl.password", "hunter2")
            .property("session.timeout.ms", "6000");
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("6000"), "{text}");
    }

    #[test]
    fn refuses_auto_commit_and_bad_properties() {
        let c = KafkaConfig::new("b:9092", ["t"], "g").property("enable.auto.commit", "true");
        assert!(c.validate().is_err());
        assert!(KafkaConfig::parse_property("novalue").is_err());
        assert_eq!(KafkaConfig::parse_property("a.b=c=d").ok(), Some(("a.b".to_owned(), "c=d".to_owned())));
        assert!(KafkaConfig::new("", ["t"], "g").validate().is_err());
        assert!(KafkaConfig::new("b", Vec::<String>::new(), "g").validate().is_err());
    }
}
