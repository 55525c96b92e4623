//! Checkpoints: where a restarted load goes on from. A checkpoint maps a source position (a
//! file and a byte offset in it; a Kafka partition's offset later) to the streams written and
//! the offset of their next row. It holds the end of the fully settled prefix of the input —
//! every row before it acknowledged or dead-lettered (and the dead letters flushed) — never
//! just the latest acknowledgement. It is saved atomically: a temporary file, fsync, rename,
//! fsync of the directory; a crash leaves the old checkpoint or the new one, never half.
//!
//! The file is JSON (`"format": "bqsink-checkpoint/1"`):
//! ```json
//! {"format": "bqsink-checkpoint/1", "table": "p.d.t", "mode": "ExactlyOnce",
//!  "inputs": [{"path": "a.ndjson", "size": 1234, "mtime_ns": 1700000000000000000, "head_sha256": "…"}],
//!  "position": {"input": 0, "offset": 1048576},
//!  "streams": [{"table": "p.d.t", "stream": "projects/…/streams/…", "next_offset": 20000}],
//!  "done": false}
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format this code writes and reads.
pub const FORMAT: &str = "bqsink-checkpoint/1";
/// Bytes of each input hashed to tell a changed file from the same one.
pub const HEAD_BYTES: u64 = 1 << 20;

/// One input as it was when the load started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFingerprint {
    /// The path as given.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the epoch.
    pub mtime_ns: u128,
    /// SHA-256 of its first [`HEAD_BYTES`] bytes, in hex.
    pub head_sha256: String,
}

impl InputFingerprint {
    /// Reads `path`'s size, modification time and the hash of its head.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut head = Vec::new();
        std::fs::File::open(path)?.take(HEAD_BYTES).read_to_end(&mut head)?;
        Ok(Self { path: path.display().to_string(), size: meta.len(), mtime_ns, head_sha256: sha256_hex(&head) })
    }
}

/// Where the settled prefix of the input ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Index of the input (file) in the load's list.
    pub input: usize,
    /// Byte offset in that input (after decompression) where the next record starts.
    pub offset: u64,
}

/// A stream written with offsets, and the offset of its next row after the position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOffset {
    /// The table.
    pub table: String,
    /// The write stream's full name.
    pub stream: String,
    /// Offset of the first row after the position.
    pub next_offset: i64,
}

/// A load's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: String,
    /// The table loaded (for a message when a checkpoint is used for another).
    pub table: String,
    /// The write mode, as `Debug` spells it.
    pub mode: String,
    /// The inputs, as they were when the load started.
    pub inputs: Vec<InputFingerprint>,
    /// The end of the settled prefix.
    pub position: Position,
    /// Streams with offsets to go on writing into (ExactlyOnce, Batch).
    pub streams: Vec<StreamOffset>,
    /// Whether the load finished (and, in Batch mode, committed).
    pub done: bool,
}

impl Checkpoint {
    /// A checkpoint at the start of `inputs`.
    pub fn new(table: impl Into<String>, mode: impl Into<String>, inputs: Vec<InputFingerprint>) -> Self {
        Self {
            format: FORMAT.to_owned(),
            table: table.into(),
            mode: mode.into(),
            inputs,
            position: Position::default(),
            streams: Vec::new(),
            done: false,
        }
    }

    /// Reads a checkpoint; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the checkpoint {}: {e}", path.display())),
        };
        let c: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| format!("the checkpoint {} is not a bqsink checkpoint: {e}", path.display()))?;
        if c.format != FORMAT {
            return Err(format!(
                "the checkpoint {} has format {:?}; this bqsink reads {FORMAT:?}",
                path.display(),
                c.format
            ));
        }
        Ok(Some(c))
    }

    /// Why this checkpoint cannot resume a load of `table` in `mode` over `inputs`, if it can't.
    pub fn mismatch(&self, table: &str, mode: &str, inputs: &[InputFingerprint]) -> Option<String> {
        if self.table != table {
            return Some(format!("it is for table {}, not {table}", self.table));
        }
        if self.mode != mode {
            return Some(format!("it was written in mode {}, not {mode}", self.mode));
        }
        if self.inputs.len() != inputs.len() {
            return Some(format!("it lists {} inputs, this load has {}", self.inputs.len(), inputs.len()));
        }
        for (was, now) in self.inputs.iter().zip(inputs) {
            if was.path != now.path {
                return Some(format!("its inputs were {}, not {}", was.path, now.path));
            }
            if was.size != now.size || was.mtime_ns != now.mtime_ns || was.head_sha256 != now.head_sha256 {
                return Some(format!("{} changed since (size, modification time or content)", now.path));
            }
        }
        None
    }

    /// Saves atomically: a temporary file beside `path`, fsync, rename over `path`, fsync of
    /// the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = temp_beside(path);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // Directories can be opened and synced on Unix; elsewhere the rename is what we have.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_loaded_and_compared() {
        let dir = std::env::temp_dir().join(format!("bqsink-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let input = dir.join("in.ndjson");
        std::fs::write(&input, b"{\"id\":1}\n").expect("input");
        let fp = InputFingerprint::of(&input).expect("fingerprint");
        let mut c = Checkpoint::new("p.d.t", "ExactlyOnce", vec![fp.clone()]);
        c.position = Position { input: 0, offset: 9 };
        c.streams.push(StreamOffset { table: "p.d.t".into(), stream: "s".into(), next_offset: 1 });
        let path = dir.join("ckpt.json");
        assert_eq!(Checkpoint::load(&path), Ok(None));
        c.save(&path).expect("saved");
        assert!(!dir.join("ckpt.json.tmp").exists());
        let back = Checkpoint::load(&path).expect("read").expect("there");
        assert_eq!(back, c);
        assert_eq!(back.mismatch("p.d.t", "ExactlyOnce", std::slice::from_ref(&fp)), None);
        assert!(back.mismatch("p.d.u", "ExactlyOnce", std::slice::from_ref(&fp)).is_some());
        assert!(back.mismatch("p.d.t", "Batch", &[fp]).is_some());
        std::fs::write(&input, b"{\"id\":2}\n").expect("changed");
        let changed = InputFingerprint::of(&input).expect("fingerprint");
        assert!(back.mismatch("p.d.t", "ExactlyOnce", &[changed]).is_some_and(|m| m.contains("changed")));
        std::fs::write(&path, b"{}").expect("garbage");
        assert!(Checkpoint::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
