//! The chat state of this node: who is online (the nick directory) and which rooms exist.
//!
//! Rooms carry their own ordered path (`path/`); the chat state only finds them, creates and
//! forgets them, and routes what is not a room event (DMs, rename notices) to the sessions'
//! sinks. Sessions keep an `Arc<Room>` for every room they are in, so posting a message
//! never touches these locks.
//!
//! Lock order: directory → room → message ids; room registry → room. No lock is held across
//! an `.await`.
//!
//! Layout:
//! - [`Chat`] and [`ChatError`]: the state and why it refuses a request.
//! - `directory`: nicks (register, rename, release) and DMs.
//! - `rooms`: the room registry (create or load, forget the idlest, list).

mod directory;
mod rooms;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chat_shared::{Nick, RoomName};

use crate::Config;
use crate::auth::Auth;
use crate::event::Event;
use crate::moderation::Moderation;
use crate::path::ids::MessageIds;
use crate::path::sink::Sink;
use crate::path::{Invitation, PathStore, Room, RoomProducer};
use directory::Entry;

/// Why the chat state refused a request. Each maps to one protocol code, in one table
/// (`session/errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChatError {
    #[error("nick {0} is already taken")]
    NickTaken(Nick),
    /// Another spelling of a nick that is online: a look-alike (`аlice` for `alice`).
    #[error("nick {nick} looks like {online}, who is online: choose another")]
    NickLooksLike { nick: Nick, online: Nick },
    #[error("nobody is called {0:?}")]
    NoSuchNick(String),
    #[error("the server has no space for another room: all {0} rooms have members")]
    ServerRoomsFull(usize),
    #[error("#{0}'s history cannot be read right now")]
    StoreUnavailable(RoomName),
    #[error("the server is busy storing messages; this one was dropped, try again")]
    StoreBusy,
    #[error("this session holds no nick")]
    NotRegistered,
    /// Cluster mode, and NATS cannot be reached: nothing new is taken until it is back.
    #[error("the cluster cannot be reached right now; try again")]
    ClusterUnavailable,
    /// Cluster mode: a login wants its account's nick, and the node holding it for another
    /// connection did not end that connection in time.
    #[error("the connection holding {0} on another node did not end in time; try again")]
    NotReplaced(Nick),
}

/// What the chat state shares with other nodes (cluster mode): nicks claimed cluster-wide,
/// DMs and invitations to anyone on any node, and the producer of every room's events.
pub(crate) trait Peers: Send + Sync + std::fmt::Debug {
    /// Claims `nick` for this node's `session`, cluster-wide.
    fn claim<'a>(
        &'a self,
        nick: &'a Nick,
        session: uuid::Uuid,
    ) -> futures::future::BoxFuture<'a, Result<(), ChatError>>;
    /// Claims `nick` for `session`, which logged in to its account: a connection holding
    /// it, on any node, is ended first (`bye{replaced}`), as on one node.
    ///
    /// # Errors
    /// [`ChatError::NotReplaced`] when the holder's node does not end it in time.
    fn take<'a>(
        &'a self,
        nick: &'a Nick,
        session: uuid::Uuid,
    ) -> futures::future::BoxFuture<'a, Result<(), ChatError>>;
    /// Gives `nick` up if `session` holds it (in the background).
    fn release(&self, nick: &Nick, session: uuid::Uuid);
    /// Who holds the nick with this skeleton on any node: its nick and session.
    fn holder(&self, skeleton: &str) -> Option<(Nick, uuid::Uuid)>;
    /// Sends a DM through the cluster: both copies come back from the stream.
    ///
    /// # Errors
    /// [`ChatError::ClusterUnavailable`] when NATS cannot be reached now.
    fn dm(&self, event: Arc<Event>, to: uuid::Uuid, sender: Arc<Sink>) -> Result<(), ChatError>;
    /// Sends an invitation through the cluster: every node remembers it, and the invitee
    /// hears of it from the stream; a failure to publish it is told to `sender`.
    ///
    /// # Errors
    /// [`ChatError::ClusterUnavailable`] when NATS cannot be reached now.
    fn invite(&self, invitation: Invitation, sender: Arc<Sink>) -> Result<(), ChatError>;
    /// The producer of every room's events.
    fn rooms(&self) -> Arc<dyn RoomProducer>;
    /// The cluster path's counters, for `/metrics`.
    fn stats(&self) -> ClusterStats;
}

/// What `/metrics` shows of the cluster path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClusterStats {
    /// Stream messages this node has not applied yet.
    pub(crate) behind: u64,
    /// Room messages published, in how many stream messages (a batch is one), and the
    /// total time JetStream took to store those, in µs.
    pub(crate) published: u64,
    pub(crate) publishes: u64,
    pub(crate) publish_micros: u64,
    /// Publishes made again because another node took their `seq`.
    pub(crate) conflicts: u64,
    /// A new node's backfill of its store: older messages kept so far, and the stream
    /// sequences it has yet to read (0: done, or none to do).
    pub(crate) backfill_kept: u64,
    pub(crate) backfill_left: u64,
}

#[derive(Debug)]
pub(crate) struct Chat {
    config: Arc<Config>,
    /// Keyed by `Nick::skeleton`, so nicks are unique without regard to case, width or
    /// look-alike letters: `alice`, `ALICE`, `ＡＬＩＣＥ` and `аlice` are one.
    nicks: Mutex<HashMap<String, Entry>>,
    /// Keyed by `RoomName::skeleton`: a look-alike name leads to the room it imitates.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    pub(crate) ids: Arc<MessageIds>,
    /// Durable history; `None` keeps history in the rooms' caches only.
    pub(crate) store: Option<PathStore>,
    /// Registered nicks and logging in to them.
    pub(crate) auth: Auth,
    /// Rooms' settings, admins, server bans.
    pub(crate) moderation: Moderation,
    /// Metrics, the connection registry and readiness: what the admin listener shows.
    pub(crate) ops: Arc<crate::ops::Ops>,
    /// The other nodes (cluster mode); `None`: this node is alone.
    pub(crate) peers: Option<Arc<dyn Peers>>,
}

impl Chat {
    pub(crate) fn new(config: Arc<Config>, store: Option<PathStore>) -> Self {
        Self {
            nicks: Mutex::default(),
            rooms: Mutex::default(),
            ids: Arc::default(),
            store,
            // No accounts until `with_auth` gives the server's.
            auth: Auth::open(None, crate::Config::default().auth())
                .expect("accounts without a store cannot fail to open"),
            moderation: Moderation::in_memory(&config),
            config,
            ops: Arc::default(),
            peers: None,
        }
    }

    /// The chat state of a node of a cluster.
    pub(crate) fn with_peers(mut self, peers: Option<Arc<dyn Peers>>) -> Self {
        self.peers = peers;
        self
    }

    /// The chat state with `moderation` for its rooms' settings, admins and server bans.
    pub(crate) fn with_moderation(mut self, moderation: Moderation) -> Self {
        self.moderation = moderation;
        self
    }

    /// The chat state reporting to the server's `ops`.
    pub(crate) fn with_ops(mut self, ops: Arc<crate::ops::Ops>) -> Self {
        self.ops = ops;
        self
    }

    /// The chat state with `auth` for its accounts.
    pub(crate) fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

impl Chat {
    /// Every room kept in memory (for the admin endpoints).
    pub(crate) fn all_rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// How many rooms are kept in memory.
    pub(crate) fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Every registered session with its nick.
    pub(crate) fn sessions(&self) -> Vec<(uuid::Uuid, Nick)> {
        lock(&self.nicks)
            .values()
            .map(|e| (e.session(), e.nick().clone()))
            .collect()
    }

    /// How many sessions hold a nick.
    pub(crate) fn session_count(&self) -> usize {
        lock(&self.nicks).len()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every update under
/// these locks is a few infallible steps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
