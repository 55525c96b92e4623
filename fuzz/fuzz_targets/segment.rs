//! Fuzz target: see `bqsink_fuzzing::segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bqsink_fuzzing::segment(data));
