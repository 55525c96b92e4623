//! Fuzz target: see `bqsink_fuzzing::json_array`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bqsink_fuzzing::json_array(data));
