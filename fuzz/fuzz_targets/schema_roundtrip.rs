//! Fuzz target: see `bqsink_fuzzing::schema_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bqsink_fuzzing::schema_roundtrip(data));
