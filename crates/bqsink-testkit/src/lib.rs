#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod emulator;

pub use emulator::Emulator;
pub mod broker;
pub use broker::Broker;
pub mod compare;
pub mod oauth;
pub mod refsink;
pub mod rows;
