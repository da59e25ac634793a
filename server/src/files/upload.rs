//! One upload in progress: its slot (who, what, where to), how far it has come, and the
//! writing of a request's body onto the end of it.
//!
//! The whole file's SHA-256 is computed as the bytes arrive, so the check after the last
//! byte reads nothing back. A request's body is written in blocks of [`BLOCK`] (memory per
//! upload: one block, whatever the file's size); the running hash and the offset move when
//! the request ends, to what is on disk. So what a dropped connection leaves behind is
//! exactly what the next `HEAD` reports, and a request that announced its own checksum, or
//! failed to write, is all or nothing.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_shared::{FileInfo, Nick, RoomName};
use http_body_util::BodyExt as _;
use ring::digest::{Context, SHA256};
use uuid::Uuid;

use super::disk::Writeback;

/// How much of a request's body is gathered before it is written.
const BLOCK: usize = 1 << 20;

/// How long a request waits for another one writing the same upload (the one a dropped
/// connection left behind ends as soon as its read fails).
const WRITER_WAIT: Duration = Duration::from_secs(2);

/// Whose quota a file counts against: an account's, or a guest's connection's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// The account's skeleton (its identity).
    Account(String),
    /// A guest's session.
    Guest(Uuid),
}

impl Owner {
    /// As kept in a share record.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Account(skeleton) => format!("account:{skeleton}"),
            Self::Guest(session) => format!("guest:{session}"),
        }
    }

    pub(crate) fn from_key(key: &str) -> Option<Self> {
        match key.split_once(':')? {
            ("account", skeleton) => Some(Self::Account(skeleton.to_owned())),
            ("guest", session) => session.parse().ok().map(Self::Guest),
            _ => None,
        }
    }
}

/// Where a finished upload is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Room(RoomName),
    Nick(String),
}

/// An upload slot and its progress.
pub(crate) struct Upload {
    /// The capability in its URL: 128 random bits, hex.
    pub(crate) token: String,
    /// The id of the message that will share it.
    pub(crate) id: Uuid,
    pub(crate) owner: Owner,
    pub(crate) nick: Nick,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: [u8; 32],
    pub(crate) target: Target,
    /// Unix milliseconds.
    pub(crate) expires: i64,
    pub(crate) path: PathBuf,
    /// The session it was asked for in (a resent `upload` moves it to a new connection).
    session: Mutex<Uuid>,
    offset: AtomicU64,
    /// The hash of the bytes up to `offset`, held by the one request writing.
    writer: tokio::sync::Mutex<Context>,
    /// Set once the whole file is verified and kept: the share it waits to be posted as.
    kept: std::sync::OnceLock<FileInfo>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

/// Why a request's body was not (all) taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("another request is writing this upload")]
    Busy,
    #[error("the upload is at offset {0}")]
    Offset(u64),
    #[error("the body goes past the upload's length")]
    TooLong,
    #[error("the body does not match its Upload-Checksum")]
    Checksum,
    #[error("the connection ended mid-request; the upload is at {0}")]
    Aborted(u64),
    #[error("the disk: {0}")]
    Disk(#[from] std::io::Error),
}

impl Upload {
    #[allow(clippy::too_many_arguments)] // built in one place, from one offer
    pub(crate) fn new(
        token: String,
        id: Uuid,
        owner: Owner,
        nick: Nick,
        name: String,
        size: u64,
        sha256: [u8; 32],
        target: Target,
        expires: i64,
        path: PathBuf,
        session: Uuid,
    ) -> Self {
        Self {
            token,
            id,
            owner,
            nick,
            name,
            size,
            sha256,
            target,
            expires,
            path,
            session: Mutex::new(session),
            offset: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(Context::new(&SHA256)),
            kept: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire)
    }

    pub(crate) fn session(&self) -> Uuid {
        *self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The share a verified upload was kept as, waiting to be posted.
    pub(crate) fn kept(&self) -> Option<&FileInfo> {
        self.kept.get()
    }

    pub(crate) fn keep_as(&self, file: FileInfo) {
        let _ = self.kept.set(file);
    }

    pub(crate) fn move_to(&self, session: Uuid) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = session;
    }

    /// Appends `body` at `offset`, which must be where the upload is. Returns the new
    /// offset, and once it is the whole length, whether the whole file's SHA-256 is the one
    /// announced. A body that sends nothing for `stall` is taken as cut off there.
    ///
    /// The body is read here and handed on in blocks to a writer on the blocking pool,
    /// which hashes and writes them: reading the next block overlaps hashing and writing
    /// the last, and no async worker spends its time hashing (a busy room's deliveries
    /// share those workers).
    ///
    /// # Errors
    /// See [`WriteError`]; after any of them the upload is where `HEAD` says.
    pub(crate) async fn append(
        &self,
        offset: u64,
        body: axum::body::Body,
        checksum: Option<[u8; 32]>,
        stall: Duration,
    ) -> Result<(u64, Option<bool>), WriteError> {
        let mut hash = tokio::time::timeout(WRITER_WAIT, self.writer.lock())
            .await
            .map_err(|_| WriteError::Busy)?;
        let start = self.offset();
        if offset != start {
            return Err(WriteError::Offset(start));
        }
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            // Whatever lies past the offset is from a write that never counted.
            f.set_len(start)?;
            f.seek(SeekFrom::Start(start))?;
            Ok(f)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (blocks, queue) = tokio::sync::mpsc::channel(QUEUE);
        let writer = Writer {
            file,
            whole: hash.clone(),
            chunk: checksum.map(|_| Context::new(&SHA256)),
            len: 0,
            error: None,
        };
        let writer = tokio::task::spawn_blocking(move || writer.run(queue, start));
        let read = self.read_body(body, start, stall, &blocks).await;
        drop(blocks);
        let written = writer.await.map_err(std::io::Error::other)?;
        let at = start + written.len;
        let keep_partial = matches!(read, Err(WriteError::Aborted(_))) && checksum.is_none();
        let chunk_ok = match (written.chunk, checksum) {
            (Some(chunk), Some(expected)) => chunk.finish().as_ref() == expected,
            _ => true,
        };
        let refused = match (read, written.error) {
            (_, Some(e)) => Some(WriteError::Disk(e)),
            (Err(WriteError::Aborted(_)), None) if keep_partial => None,
            (Err(WriteError::Aborted(_)), None) => Some(WriteError::Aborted(start)),
            (Err(e), None) => Some(e),
            (Ok(()), None) if !chunk_ok => Some(WriteError::Checksum),
            (Ok(()), None) => None,
        };
        if let Some(refused) = refused {
            // All or nothing: the file goes back to where the request found it.
            let file = written.file;
            let _ = tokio::task::spawn_blocking(move || file.set_len(start)).await;
            return Err(refused);
        }
        *hash = written.whole;
        self.offset.store(at, Ordering::Release);
        if keep_partial {
            return Err(WriteError::Aborted(at));
        }
        if at < self.size {
            return Ok((at, None));
        }
        let matches = hash.clone().finish().as_ref() == self.sha256;
        Ok((at, Some(matches)))
    }

    /// Reads `body` in blocks of [`BLOCK`] into `blocks`. `Err(Aborted)` for a body cut
    /// off (or silent for `stall`), `TooLong` for one past the upload's length; the writer
    /// has what came before either.
    async fn read_body(
        &self,
        mut body: axum::body::Body,
        start: u64,
        stall: Duration,
        blocks: &tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<(), WriteError> {
        let mut block = BytesMut::new();
        let mut received = start;
        let ended = loop {
            // A body that stops coming is a connection gone quiet: it ends as a cut one.
            match tokio::time::timeout(stall, body.frame()).await {
                Ok(None) => break Ok(()),
                Ok(Some(Err(_))) | Err(_) => break Err(WriteError::Aborted(start)),
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    received += u64::try_from(data.len()).unwrap_or(u64::MAX);
                    if received > self.size {
                        return Err(WriteError::TooLong);
                    }
                    block.extend_from_slice(&data);
                    // A writer that stopped has its error; the request ends with it.
                    if block.len() >= BLOCK && blocks.send(block.split().freeze()).await.is_err() {
                        return Ok(());
                    }
                }
            }
        };
        if !block.is_empty() {
            let _ = blocks.send(block.freeze()).await;
        }
        ended
    }
}

/// Blocks a request may have read ahead of the writer: memory per upload is at most this
/// many blocks, and one more being read.
const QUEUE: usize = 2;

/// The writing half of a request, on the blocking pool: it hashes and writes each block,
/// and pushes what it wrote out to the disk as it goes.
struct Writer {
    file: std::fs::File,
    /// The whole file's hash, from its start.
    whole: Context,
    /// This request's own, when it announced one.
    chunk: Option<Context>,
    /// Bytes written.
    len: u64,
    error: Option<std::io::Error>,
}

impl Writer {
    fn run(mut self, mut queue: tokio::sync::mpsc::Receiver<Bytes>, at: u64) -> Self {
        let mut writeback = Writeback::new(at);
        while let Some(block) = queue.blocking_recv() {
            if let Some(chunk) = &mut self.chunk {
                chunk.update(&block);
            }
            if let Err(e) = self.file.write_all(&block) {
                self.error = Some(e);
                return self;
            }
            self.whole.update(&block);
            let len = u64::try_from(block.len()).unwrap_or(u64::MAX);
            self.len += len;
            if let Err(e) = writeback.wrote(&self.file, len) {
                self.error = Some(e);
                return self;
            }
        }
        self
    }
}
