//! Rows acknowledged into a pending stream but not committed yet (Batch mode), kept on disk:
//! if the commit never happens they are dead-lettered as not committed, so they need their
//! bytes, and memory must not grow with the load. The file is unlinked at once and gone with
//! the process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use bqsink_core::Record;
use bqsink_transport::RowDescriptor;

#[derive(Default)]
pub(super) struct Spill {
    file: Option<File>,
    /// Runs of rows written with one descriptor: (descriptor, byte offset, length, rows).
    runs: Vec<(RowDescriptor, u64, u64, usize)>,
    len: u64,
    rows: usize,
}

impl Spill {
    /// Keeps the `serialized_rows` entries of an acknowledged request.
    pub(super) fn keep(&mut self, descriptor: &RowDescriptor, rows: &[u8], n: usize) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(anonymous_file()?),
        };
        file.write_all(rows)?;
        match self.runs.last_mut() {
            Some((d, _, len, count)) if d.same_as(descriptor) => {
                *len += rows.len() as u64;
                *count += n;
            }
            _ => self.runs.push((descriptor.clone(), self.len, rows.len() as u64, n)),
        }
        self.len += rows.len() as u64;
        self.rows += n;
        Ok(())
    }

    /// Reads every kept row back, in order, and forgets them; `each` is called per row.
    pub(super) fn drain(
        &mut self,
        mut each: impl FnMut(Record) -> Result<(), super::EngineError>,
    ) -> Result<(), super::EngineError> {
        let runs = std::mem::take(&mut self.runs);
        let file = self.file.take();
        self.len = 0;
        self.rows = 0;
        let Some(mut file) = file else { return Ok(()) };
        for (descriptor, at, len, n) in runs {
            let mut bytes = vec![0; len as usize];
            let read = file.seek(SeekFrom::Start(at)).and_then(|_| file.read_exact(&mut bytes));
            let records = match read {
                Ok(()) => bqsink_transport::request::decode_entries(&descriptor, &bytes)
                    .unwrap_or_else(|e| (0..n).map(|_| super::undecodable(&e)).collect()),
                Err(e) => {
                    (0..n).map(|_| super::undecodable(&format!("cannot read the pending row back: {e}"))).collect()
                }
            };
            for r in records {
                each(r)?;
            }
        }
        Ok(())
    }

    /// Forgets every kept row (they were committed).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A file in the temporary directory that no other process can open: unlinked once created.
fn anonymous_file() -> std::io::Result<File> {
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(".bqsink-pending-{}-{nanos}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file for pending rows"))
}
