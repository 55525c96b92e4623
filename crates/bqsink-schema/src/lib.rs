#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

pub mod evolution;

pub use evolution::{plan_alter, Change, Refusal};
