#![doc = include_str!("../../README.md")]
//! (The workspace README, compiled here so its examples stay true.)
