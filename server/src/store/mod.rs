//! Durable history: the seam between the chat logic and wherever messages are kept.
//!
//! The rooms and the hub talk to a [`Store`]; today that is SQLite ([`sqlite`]), and with
//! `--db none` there is no store at all and history lives only in each room's ring. Writes
//! are asynchronous: a message is handed over as a [`Job`]. Its `placed` callback runs once
//! the store has taken it (written, not yet committed, its id checked against everything
//! stored and its `seq` covered by a durable reservation), and the room broadcasts it then;
//! `done` runs once it is durable, and only then does its sender get the copy that
//! acknowledges it. So the disk's latency is paid by the acknowledgement, not by the
//! fan-out, and nothing acknowledged is lost by a crash.
//!
//! Layout:
//! - [`Store`]: the interface (append, load a room, page, find a message's `seq`).
//! - [`Job`], [`Record`], [`Stored`]: what is written and what became of it.
//! - [`sqlite`]: the SQLite implementation, with its writer thread and migrations.
//! - [`default_path`]: where the binary keeps its database unless told otherwise.

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

/// What became of a record.
#[derive(Debug)]
pub(crate) enum Stored {
    /// Durable now. For a room message, every `seq` of its room below `covered` is reserved
    /// on disk (see `Room::post`); 0 for a DM.
    New { covered: u64 },
    /// Its id was already stored: this is the stored original (for the sender alone).
    Duplicate(Arc<Event>),
    /// It could not be stored (disk full, I/O error). If it was placed, the room has seen
    /// it; its sender gets an error instead of an acknowledgement.
    Failed(String),
}

/// One write, with what to do once it is taken and once it is durable. Callbacks run in the
/// order the jobs were appended, and a job's `placed` (if it runs) before its `done`.
pub(crate) struct Job {
    pub(crate) record: Record,
    /// Runs when the record is written as new, before its commit, once its `seq` can never
    /// be handed out again whatever happens next. Not run for a duplicate or a failed write.
    pub(crate) placed: Option<Box<dyn FnOnce() + Send>>,
    /// Runs once the record is durable, or is known to be a duplicate, or failed (a failed
    /// commit after `placed` included).
    pub(crate) done: Box<dyn FnOnce(Stored) + Send>,
}

/// The store refuses new writes: too many are waiting for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
    /// Queues a write; its `done` runs once it is durable.
    ///
    /// # Errors
    /// [`Busy`] when too many writes are waiting for the disk.
    fn append(&self, job: Job) -> Result<(), Busy>;

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

    /// The `seq` of a stored message of `room`, if there is one with that id.
    ///
    /// # Errors
    /// The database's error.
    fn seq_of(&self, room: &str, id: uuid::Uuid) -> anyhow::Result<Option<u64>>;

    /// Writes what is queued and stops the writer. Blocks until done.
    fn close(&self);
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
