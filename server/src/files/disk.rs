//! Where files live on disk, under names only the server chooses:
//!
//! ```text
//! DIR/partial/TOKEN     uploads in progress (named by their slot's random token)
//! DIR/blobs/SHA256      shared files, one per content: the same file shared twice is one
//! DIR/shares/ID.json    one record per share (ID: the download's random id)
//! ```
//!
//! Nothing a client sends becomes part of a path: tokens and ids are hex the server made,
//! checked again before use, and a file's own name lives only in its record.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;
use uuid::Uuid;

/// One share of a file: what a download link leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShareRecord {
    /// The download's id (32 hex digits).
    pub(crate) id: String,
    /// The content's SHA-256 (64 hex digits), which names the blob.
    pub(crate) sha256: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    /// Whose quota it counts against (see `Owner::key`).
    pub(crate) owner: String,
    /// The nick that shared it.
    pub(crate) nick: String,
    /// The message that shared it.
    pub(crate) message: Uuid,
    /// Unix milliseconds.
    pub(crate) created: i64,
}

/// The directory and its three parts.
#[derive(Debug)]
pub(crate) struct Disk {
    partial: PathBuf,
    blobs: PathBuf,
    shares: PathBuf,
}

pub(crate) use crate::hex;

/// How much is written before it is pushed out to the disk, so the sync before a file is
/// shared has little left to do (a 1 GiB file synced only at its end took over half a
/// second).
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Pushes a file out to the disk behind its writer, a range at a time.
///
/// On Linux the writer never waits for the range it just wrote: `sync_file_range` starts
/// its writeback, and waits only for the range before, which has had a whole range's time
/// to get there. Hashing and writing go on while the disk works, and at most two ranges
/// are dirty. It promises nothing about durability (metadata, the disk's cache): the file
/// is synced before it is shared, as before, with little left to do then.
#[derive(Debug)]
pub(crate) struct Writeback {
    /// Where the range not yet started begins, and where writing is.
    from: u64,
    at: u64,
    /// The range whose writeback was started last.
    started: Option<(u64, u64)>,
}

impl Writeback {
    /// For a file written from `at` on.
    pub(crate) fn new(at: u64) -> Self {
        Self {
            from: at,
            at,
            started: None,
        }
    }

    /// `len` more bytes were written to `file`.
    ///
    /// # Errors
    /// The disk's (an I/O error of an earlier range shows here).
    pub(crate) fn wrote(&mut self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        self.at += len;
        if self.at - self.from < WRITEBACK_EVERY {
            return Ok(());
        }
        let range = (self.from, self.at);
        self.from = self.at;
        push_out(file, range, self.started.replace(range))
    }
}

/// Starts writing `range` back and waits for `before`.
#[cfg(target_os = "linux")]
fn push_out(
    file: &std::fs::File,
    range: (u64, u64),
    before: Option<(u64, u64)>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let sync = |(from, to): (u64, u64), flags: u32| {
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
            return Ok(());
        };
        // SAFETY: a descriptor we own, for the call's duration, and plain integers.
        let done = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    sync(range, libc::SYNC_FILE_RANGE_WRITE)?;
    match before {
        Some(before) => sync(
            before,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        ),
        None => Ok(()),
    }
}

/// Elsewhere a plain data sync of everything so far.
#[cfg(not(target_os = "linux"))]
fn push_out(
    file: &std::fs::File,
    _range: (u64, u64),
    _before: Option<(u64, u64)>,
) -> std::io::Result<()> {
    file.sync_data()
}

/// Whether `s` is `len` lowercase hex digits: the only names this module puts in a path.
pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Disk {
    /// Opens (creating) `dir`. Uploads left by an earlier run are deleted: their slots
    /// lived in that run's memory.
    ///
    /// # Errors
    /// A directory cannot be created or read.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        let disk = Self {
            partial: dir.join("partial"),
            blobs: dir.join("blobs"),
            shares: dir.join("shares"),
        };
        for part in [&disk.partial, &disk.blobs, &disk.shares] {
            std::fs::create_dir_all(part)?;
        }
        for entry in std::fs::read_dir(&disk.partial)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(disk)
    }

    pub(crate) fn partial(&self, token: &str) -> PathBuf {
        debug_assert!(is_hex(token, 32));
        self.partial.join(token)
    }

    pub(crate) fn blob(&self, sha256: &str) -> PathBuf {
        debug_assert!(is_hex(sha256, 64));
        self.blobs.join(sha256)
    }

    fn record(&self, id: &str) -> PathBuf {
        debug_assert!(is_hex(id, 32));
        self.shares.join(format!("{id}.json"))
    }

    /// Every share record; unreadable ones are logged and skipped.
    pub(crate) fn load(&self) -> std::io::Result<Vec<ShareRecord>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.shares)? {
            let path = entry?.path();
            let named = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(|id| is_hex(id, 32));
            if !named {
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<ShareRecord>(&bytes).map_err(|e| e.to_string())
                });
            match read {
                Ok(r) if is_hex(&r.id, 32) && is_hex(&r.sha256, 64) => records.push(r),
                Ok(_) => warn!(path = %path.display(), "share record with a bad id skipped"),
                Err(e) => warn!(path = %path.display(), error = %e, "share record skipped"),
            }
        }
        Ok(records)
    }

    /// Makes a finished upload a blob (or drops it when the blob exists: same content),
    /// then writes its record. Both are on disk, synced, before this returns.
    ///
    /// # Errors
    /// The disk's; nothing is left half done that a restart would show.
    pub(crate) fn commit(&self, token: &str, record: &ShareRecord) -> std::io::Result<()> {
        let partial = self.partial(token);
        let blob = self.blob(&record.sha256);
        if blob.exists() {
            std::fs::remove_file(&partial)?;
        } else {
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &blob)?;
        }
        let tmp = self.shares.join(format!("{}.tmp", record.id));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.record(&record.id))?;
        sync_dir(&self.shares);
        sync_dir(&self.blobs);
        Ok(())
    }

    /// Deletes a share's record, and its blob when `last` (no other share has the content).
    pub(crate) fn remove(&self, record: &ShareRecord, last: bool) {
        if let Err(e) = std::fs::remove_file(self.record(&record.id)) {
            warn!(id = %record.id, error = %e, "share record not deleted");
        }
        if last && let Err(e) = std::fs::remove_file(self.blob(&record.sha256)) {
            warn!(sha256 = %record.sha256, error = %e, "shared file not deleted");
        }
    }

    /// Deletes an upload in progress.
    pub(crate) fn discard(&self, token: &str) {
        let _ = std::fs::remove_file(self.partial(token));
    }
}

/// Makes renames into `dir` durable; best effort (some file systems refuse).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_starts_a_range_at_a_time_and_waits_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = std::fs::File::create(dir.path().join("f")).unwrap();
        let block = vec![7u8; 1 << 20];
        let mut wb = Writeback::new(0);
        for _ in 0..40 {
            file.write_all(&block).unwrap();
            wb.wrote(&file, block.len() as u64).unwrap();
        }
        let range = WRITEBACK_EVERY;
        assert_eq!(
            wb.started,
            Some((range, 2 * range)),
            "the second range, last"
        );
        assert_eq!((wb.from, wb.at), (2 * range, 40 << 20), "the rest not yet");
        assert_eq!(file.metadata().unwrap().len(), 40 << 20);
    }

    fn record(id: &str, sha: &str) -> ShareRecord {
        ShareRecord {
            id: id.into(),
            sha256: sha.into(),
            name: "报告.pdf".into(),
            size: 3,
            owner: "account:alice".into(),
            nick: "alice".into(),
            message: Uuid::nil(),
            created: 1,
        }
    }

    #[test]
    fn the_same_content_is_stored_once_and_records_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let sha = "a".repeat(64);
        for (token, id) in [
            ("1".repeat(32), "b".repeat(32)),
            ("2".repeat(32), "c".repeat(32)),
        ] {
            std::fs::write(disk.partial(&token), b"abc").unwrap();
            disk.commit(&token, &record(&id, &sha)).unwrap();
            assert!(!disk.partial(&token).exists());
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1
        );
        std::fs::write(disk.partial(&"3".repeat(32)), b"left over").unwrap();
        std::fs::write(dir.path().join("shares/../shares/x.json"), b"{}").unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("partial"))
                .unwrap()
                .count(),
            0
        );
        let mut loaded = disk.load().unwrap();
        loaded.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            loaded,
            vec![record(&"b".repeat(32), &sha), record(&"c".repeat(32), &sha)]
        );
        disk.remove(&loaded[0], false);
        assert!(disk.blob(&sha).exists());
        disk.remove(&loaded[1], true);
        assert!(!disk.blob(&sha).exists());
        assert!(disk.load().unwrap().is_empty());
    }

    #[test]
    fn only_hex_of_the_right_length_names_anything() {
        assert!(is_hex(&"0f".repeat(16), 32));
        for bad in ["../../etc/passwd", "ABCDEF", "0f0f", &"0g".repeat(16)] {
            assert!(!is_hex(bad, 32), "{bad}");
        }
    }
}
