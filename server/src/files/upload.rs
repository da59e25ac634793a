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
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .await?;
        let mut file = Some(file.into_std().await);
        // Whatever lies past the offset is from a write that never counted.
        blocking(&mut file, move |f| {
            f.set_len(start)?;
            f.seek(SeekFrom::Start(start)).map(|_| ())
        })
        .await?;
        let mut whole = hash.clone();
        let mut chunk = checksum.map(|_| Context::new(&SHA256));
        let mut block = BytesMut::new();
        let mut at = start;
        let mut body = body;
        let ended = loop {
            // A body that stops coming is a connection gone quiet: it ends as a cut one.
            match tokio::time::timeout(stall, body.frame()).await {
                Ok(None) => break Ok(()),
                Ok(Some(Err(_))) | Err(_) => break Err(()),
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let pending = u64::try_from(block.len()).unwrap_or(u64::MAX);
                    if at + pending + u64::try_from(data.len()).unwrap_or(u64::MAX) > self.size {
                        self.roll_back(&mut file, start).await;
                        return Err(WriteError::TooLong);
                    }
                    if let Some(chunk) = &mut chunk {
                        chunk.update(&data);
                    }
                    block.extend_from_slice(&data);
                    whole.update(&data);
                    if block.len() >= BLOCK {
                        at += self.write_block(&mut file, &mut block, start).await?;
                    }
                }
            }
        };
        at += self.write_block(&mut file, &mut block, start).await?;
        match (ended, &chunk) {
            (Err(()), Some(_)) => {
                self.roll_back(&mut file, start).await;
                return Err(WriteError::Aborted(start));
            }
            (Err(()), None) => {
                *hash = whole;
                self.offset.store(at, Ordering::Release);
                return Err(WriteError::Aborted(at));
            }
            (Ok(()), _) => {}
        }
        if let (Some(chunk), Some(expected)) = (chunk, checksum)
            && chunk.finish().as_ref() != expected
        {
            self.roll_back(&mut file, start).await;
            return Err(WriteError::Checksum);
        }
        *hash = whole;
        self.offset.store(at, Ordering::Release);
        if at < self.size {
            return Ok((at, None));
        }
        let matches = hash.clone().finish().as_ref() == self.sha256;
        Ok((at, Some(matches)))
    }

    /// Writes `block` (emptying it) and returns its length. A failed write takes the file
    /// back to `start`: a full disk leaves nothing of the request.
    async fn write_block(
        &self,
        file: &mut Option<std::fs::File>,
        block: &mut BytesMut,
        start: u64,
    ) -> Result<u64, WriteError> {
        if block.is_empty() {
            return Ok(0);
        }
        let bytes: Bytes = block.split().freeze();
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if let Err(e) = blocking(file, move |f| f.write_all(&bytes)).await {
            self.roll_back(file, start).await;
            return Err(e.into());
        }
        Ok(len)
    }

    async fn roll_back(&self, file: &mut Option<std::fs::File>, start: u64) {
        self.offset.store(start, Ordering::Release);
        let _ = blocking(file, move |f| f.set_len(start)).await;
    }
}

/// Runs `op` on the file off the async workers, and puts the file back.
async fn blocking(
    file: &mut Option<std::fs::File>,
    op: impl FnOnce(&mut std::fs::File) -> std::io::Result<()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(mut f) = file.take() else {
        return Err(std::io::Error::other("the upload's file is gone"));
    };
    let (f, done) = tokio::task::spawn_blocking(move || {
        let done = op(&mut f);
        (f, done)
    })
    .await
    .map_err(std::io::Error::other)?;
    *file = Some(f);
    done
}
