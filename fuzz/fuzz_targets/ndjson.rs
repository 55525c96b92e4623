//! Fuzz target: see `bqsink_fuzzing::ndjson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bqsink_fuzzing::ndjson(data));
