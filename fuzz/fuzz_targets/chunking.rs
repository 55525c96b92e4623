//! Fuzz target: see `bqsink_fuzzing::chunking`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bqsink_fuzzing::chunking(data));
