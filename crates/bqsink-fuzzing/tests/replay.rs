//! Replays every fuzz target's body over its committed corpus (`fuzz/corpus/<target>/*`) and the
//! crashes kept as regressions (`fuzz/regressions/<target>/*`), on stable: `cargo test` runs what
//! `cargo xtask fuzz` found, without nightly or libFuzzer.

use std::path::{Path, PathBuf};
use std::time::Instant;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("ndjson", bqsink_fuzzing::ndjson),
    ("csv", bqsink_fuzzing::csv),
    ("json_array", bqsink_fuzzing::json_array),
    ("segment", bqsink_fuzzing::segment),
    ("schema_roundtrip", bqsink_fuzzing::schema_roundtrip),
    ("chunking", bqsink_fuzzing::chunking),
    ("config", bqsink_fuzzing::config),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

fn replay(name: &str, target: Target) {
    let started = Instant::now();
    let mut count = 0;
    for sub in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(sub).join(name)) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} fails (replay it with `cargo fuzz run {name} {}`)",
                path.display(),
                path.display()
            );
            count += 1;
        }
    }
    assert!(count > 0, "{name}: no corpus under fuzz/corpus/{name}");
    eprintln!("{name}: {count} inputs in {:.1?}", started.elapsed());
}

#[test]
fn ndjson() {
    replay(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn csv() {
    replay(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn json_array() {
    replay(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn segment() {
    replay(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn schema_roundtrip() {
    replay(TARGETS[4].0, TARGETS[4].1);
}

#[test]
fn chunking() {
    replay(TARGETS[5].0, TARGETS[5].1);
}

#[test]
fn config() {
    replay(TARGETS[6].0, TARGETS[6].1);
}
