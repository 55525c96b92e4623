#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod dead_letters;
mod error;
mod source;

pub use config::{KafkaConfig, DEFAULT_MAX_BATCH_MESSAGES, DEFAULT_MAX_BATCH_WAIT};
pub use dead_letters::{KafkaDeadLetters, MessagePosition};
pub use error::Error;
pub use source::{KafkaSource, RunReport};
