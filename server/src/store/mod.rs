//! Durable history: the seam between the chat logic and wherever messages are kept.
//!
//! The ordered path (`path/`) talks to a [`Store`]; today that is SQLite ([`sqlite`]), and
//! with `--db none` there is no store at all and history lives only in each room's ring.
//! Writes are asynchronous: a record is handed over as a [`Job`] carrying a context `C` that
//! the store never looks into, and the store reports what became of it as [`Outcome`]s, in
//! the order the jobs were appended, on a channel. It calls nothing back: the path turns
//! outcomes into events of its own ("placed", "durable"), so the store knows nothing of
//! rooms, sessions or delivery.
//!
//! Layout:
//! - [`Store`]: the interface (append, load a room, page, find a message's `seq`).
//! - [`Job`], [`Outcome`], [`Record`], [`Stored`]: what is written and what became of it.
//! - [`AccountStore`], [`SettingsStore`]: accounts, and moderation's documents by key.
//! - [`settings`]: the thread that writes those documents, in order, off every lock.
//! - [`sqlite`]: the SQLite implementation (schema, writer thread, retention).
//! - [`default_path`]: where the binary keeps its database unless told otherwise.

pub(crate) mod settings;
pub(crate) mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use chat_shared::ChatMessage;

use crate::event::Event;

/// What is written: a room message or a DM, as the event that will be delivered.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Message(Arc<Event>),
    Dm(Arc<Event>),
}

impl Record {
    pub(crate) fn event(&self) -> &Arc<Event> {
        match self {
            Self::Message(ev) | Self::Dm(ev) => ev,
        }
    }
}

/// What became of a record.
#[derive(Debug)]
pub(crate) enum Stored {
    /// Durable now. For a room message, every `seq` of its room below `covered` is reserved
    /// on disk (see `path::producer`); 0 for a DM.
    New { covered: u64 },
    /// Its id was already stored: this is the stored original (for the sender alone).
    Duplicate(Arc<Event>),
    /// It could not be stored (disk full, I/O error). If it was placed, the room has seen
    /// it; its sender gets an error instead of an acknowledgement.
    Failed(String),
}

/// One write. `place` asks for an [`Outcome::Placed`] as soon as the record is written as
/// new and its `seq` can never be handed out again, before its commit.
pub(crate) struct Job<C> {
    pub(crate) record: Record,
    pub(crate) place: bool,
    /// The caller's, handed back in the outcomes.
    pub(crate) ctx: C,
}

impl<C> std::fmt::Debug for Job<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("record", &self.record)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// What the store reports, in the order the jobs were appended; a job's `Placed` (if any)
/// always comes before its `Settled`.
#[derive(Debug)]
pub(crate) enum Outcome<C> {
    /// Written as new, its `seq` covered by a reservation on disk: it may be shown now.
    Placed(C),
    /// Final: durable, a duplicate, or failed (a failed commit after `Placed` included).
    Settled(C, Stored),
}

/// Where a store sends its outcomes: in batches, one wake-up of the receiver per batch.
pub(crate) type Outcomes<C> = tokio::sync::mpsc::UnboundedSender<Vec<Outcome<C>>>;

/// The store refuses new writes: too many are waiting for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many messages are waiting for the disk")]
pub(crate) struct Busy;

/// A room as stored: where its `seq` goes on, and its newest messages.
#[derive(Debug, Default)]
pub(crate) struct RoomLoad {
    pub(crate) next_seq: u64,
    /// Oldest first.
    pub(crate) tail: Vec<ChatMessage>,
}

/// Which stored messages of a room to read: `seq` in `(after, before)`, at most `limit` of
/// them, the newest ones when more match; returned oldest first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    pub(crate) after: u64,
    pub(crate) before: u64,
    pub(crate) limit: usize,
}

/// Durable history. Reads block (callers run them off the async runtime or, for a room's
/// first load, accept one short wait); writes never block.
pub(crate) trait Store<C>: Send + Sync + std::fmt::Debug {
    /// Queues a write; its outcomes follow on the store's channel.
    ///
    /// # Errors
    /// [`Busy`] when too many writes are waiting for the disk.
    fn append(&self, job: Job<C>) -> Result<(), Busy>;

    /// The room's next `seq` and its newest `limit` messages.
    ///
    /// # Errors
    /// The database's error.
    fn load_room(&self, room: &str, limit: usize) -> anyhow::Result<RoomLoad>;

    /// Messages of `room` in `range`, oldest first.
    ///
    /// # Errors
    /// The database's error.
    fn read(&self, room: &str, range: Range) -> anyhow::Result<Vec<ChatMessage>>;

    /// Whether a message or DM with `id` may be stored already, from before this run or
    /// long enough ago that the path no longer remembers it. `false` is certain: a message
    /// with a client's id that the store cannot have is no resend, and is shown at once
    /// instead of after the store's check.
    fn may_have(&self, id: &uuid::Uuid) -> bool;

    /// The `seq` of a stored message of `room`, if there is one with that id.
    ///
    /// # Errors
    /// The database's error.
    fn seq_of(&self, room: &str, id: uuid::Uuid) -> anyhow::Result<Option<u64>>;

    /// Writes what is queued and stops the writer. Blocks until done.
    fn close(&self);
}

/// A registered account as stored: the nick's skeleton (its key), the nick as registered,
/// and its password hash (a PHC string).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredAccount {
    pub(crate) skeleton: String,
    pub(crate) nick: String,
    pub(crate) hash: String,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out of logs too.
        f.debug_struct("StoredAccount")
            .field("nick", &self.nick)
            .finish_non_exhaustive()
    }
}

/// Registered accounts. Every call blocks on the database: callers run them on the
/// blocking pool. Rare (a registration, a password change), so not batched.
pub(crate) trait AccountStore: Send + Sync + std::fmt::Debug {
    /// Every account, read once at start.
    ///
    /// # Errors
    /// The database's error.
    fn load_all(&self) -> anyhow::Result<Vec<StoredAccount>>;

    /// Stores a new account; `false` when its skeleton is registered already.
    ///
    /// # Errors
    /// The database's error.
    fn create(&self, account: &StoredAccount) -> anyhow::Result<bool>;

    /// Replaces the hash of the account `skeleton`.
    ///
    /// # Errors
    /// The database's error.
    fn set_hash(&self, skeleton: &str, hash: &str) -> anyhow::Result<()>;
}

/// Documents by key: what rooms and the server keep of moderation (see `moderation/`).
/// Every call blocks on the database; reads happen once per room per run (or once at
/// start), and writes go through a [`settings::SettingsWriter`], off every lock.
pub(crate) trait SettingsStore: Send + Sync + std::fmt::Debug {
    /// The document at `key`, if any.
    ///
    /// # Errors
    /// The database's error.
    fn get(&self, key: &str) -> anyhow::Result<Option<String>>;

    /// Stores `value` at `key` (`None` deletes it).
    ///
    /// # Errors
    /// The database's error.
    fn put(&self, key: &str, value: Option<&str>) -> anyhow::Result<()>;
}

/// Where the binary keeps its database by default: `$XDG_DATA_HOME/chat-server/chat.db`,
/// else `$HOME/.local/share/chat-server/chat.db`, else `chat-server.db` in the working
/// directory.
pub fn default_path() -> PathBuf {
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    let data = nonempty("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(dir) => dir.join("chat-server").join("chat.db"),
        None => PathBuf::from("chat-server.db"),
    }
}
