//! `chat-server`: an async multi-client chat room server.
//!
//! Framed clients (length-prefixed JSON) and plain line clients (`nc`, `telnet`) share one
//! port; the first byte a client sends decides its mode. Both meet in the same rooms through
//! one session logic that knows no wire format.
//!
//! Layout:
//! - [`run`] and [`Config`]: the whole server, given a bound listener and a shutdown signal.
//! - `listener`: accept loop, mode detection, shutdown and waiting for sessions to end.
//! - `session`: one client's session, independent of the wire format.
//! - `wire`: the adapters, one per wire format (framed, line), and the output queue.
//! - `hub` and `room`: who is online, the rooms, fan-out, history and message ids.
//! - `limits`: the message rate limiter and the connection limits.
//! - `event`: an outgoing event, encoded once per wire format and shared.
//! - `store`: durable history (SQLite) behind a small interface.
//! - `mailbox`: a session's private queue for DMs and rename notices.
//! - `subscriptions`: a session's room receivers, drained without a future per message.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

mod event;
mod hub;
mod limits;
mod listener;
mod mailbox;
mod room;
mod session;
mod store;
mod subscriptions;
mod wire;

/// Where history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Only in memory (the `--history` ring per room): gone with the process.
    Memory,
    /// An SQLite database at this path; `:memory:` is an SQLite database in memory.
    Sqlite(std::path::PathBuf),
}

/// Server settings. Every limit is here, with the contract's default; `chat-server --help`
/// lists the flag for each.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where history is kept. `Config::default()` keeps it in memory; the binary's default is
    /// an SQLite file in the user's data directory.
    pub storage: Storage,
    /// Delete stored messages older than this many days (`None`: keep).
    pub retain_days: Option<u32>,
    /// Keep at most this many stored messages per room (`None`: keep all).
    pub retain_per_room: Option<u64>,
    /// How often retention runs.
    pub prune_interval: Duration,
    /// Messages accepted but not yet durable; past this, new messages are refused with
    /// `rate_limited` until the disk catches up.
    pub max_unsaved: usize,
    /// Largest frame payload in bytes, both directions.
    pub max_frame: usize,
    /// Largest message text in bytes, after control characters are stripped.
    pub max_text: usize,
    /// Largest line-mode input line in bytes (before its terminator).
    pub max_line: usize,
    /// Messages kept per room for history.
    pub history: usize,
    /// Messages sent on `join` without `since`.
    pub history_on_join: usize,
    /// How long a new connection may stay silent before it is taken for a person at `nc`
    /// and greeted.
    pub sniff: Duration,
    /// An idle framed client is pinged after this long without input.
    pub ping_interval: Duration,
    /// A pinged client that sends nothing for this long is dropped.
    pub ping_timeout: Duration,
    /// Time from connecting to completing `hello` or the nick line.
    pub handshake_timeout: Duration,
    /// A client whose writes make no progress for this long is dropped.
    pub write_timeout: Duration,
    /// Messages a room buffers for its slowest member before that member lags.
    pub room_buffer: usize,
    /// Rooms the server keeps; the least recently active empty room makes way for a new one.
    pub max_rooms: usize,
    /// Rooms one client may be in at once.
    pub max_rooms_per_client: usize,
    /// Messages (`say`, `dm`) per second per connection, sustained.
    pub rate: f64,
    /// Messages a connection may send at once before the rate applies.
    pub burst: u32,
    /// Connections in total.
    pub max_clients: usize,
    /// Connections from one IP address.
    pub max_clients_per_ip: usize,
    /// Pending DMs and rename notices per client before further ones are dropped.
    pub mailbox: usize,
    /// DMs remembered for recognising a resent message id.
    pub dm_history: usize,
    /// How long shutdown waits for sessions to say goodbye.
    pub shutdown_grace: Duration,
    /// Sent in `welcome`.
    pub motd: Option<String>,
}

impl Config {
    /// How many of one client's room messages may wait for the disk before its input is no
    /// longer read: half the room buffer, so its own messages, placed in a burst when the
    /// disk catches up, cannot make it lag in its own room.
    pub(crate) fn max_unsettled(&self) -> usize {
        (self.room_buffer / 2).max(1)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            retain_days: None,
            retain_per_room: None,
            prune_interval: Duration::from_secs(60),
            max_unsaved: 100_000,
            max_frame: chat_shared::MAX_FRAME_LEN,
            max_text: chat_shared::MAX_TEXT_LEN,
            max_line: 4 * 1024,
            history: 200,
            history_on_join: 50,
            sniff: Duration::from_millis(300),
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            room_buffer: 256,
            max_rooms: 10_000,
            max_rooms_per_client: 100,
            rate: 5.0,
            burst: 10,
            max_clients: 10_000,
            max_clients_per_ip: 32,
            mailbox: 256,
            dm_history: 10_000,
            shutdown_grace: Duration::from_secs(3),
            motd: None,
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) hub: Arc<hub::Hub>,
    pub(crate) limits: limits::ConnLimits,
    /// Cancelled once, at shutdown: every session says `bye` and ends.
    pub(crate) cancel: CancellationToken,
    /// Every connection and session task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
}

/// Serves `listener` until `shutdown` completes, then says goodbye to every client and
/// waits (up to `shutdown_grace`) for their sessions to end.
///
/// # Errors
/// Only if the listener's address cannot be read; accept errors are retried with backoff
/// and a client's errors end only that client.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let grace = config.shutdown_grace;
    let store = open_store(&config)?;
    let config = Arc::new(config);
    let shared = Arc::new(Shared {
        hub: Arc::new(hub::Hub::new(Arc::clone(&config), store.clone())),
        limits: limits::ConnLimits::new(config.max_clients, config.max_clients_per_ip),
        config,
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
    });
    let tracker = shared.tracker.clone();
    info!("listening on {addr}");
    tokio::select! {
        () = listener::accept_loop(&listener, &shared, &tracker) => {}
        () = shutdown => info!("shutting down"),
    }
    drop(listener);
    shared.cancel.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            sessions = tracker.len(),
            "sessions still running after the grace period"
        );
    }
    if let Some(store) = store {
        // Sessions are gone; write what is queued and stop the writer (it blocks).
        let closing = tokio::task::spawn_blocking(move || store.close());
        if closing.await.is_err() {
            warn!("the store did not close cleanly");
        }
    }
    info!("stopped");
    Ok(())
}

/// Opens the configured store, if any.
fn open_store(config: &Config) -> anyhow::Result<Option<Arc<dyn store::Store>>> {
    match &config.storage {
        Storage::Memory => Ok(None),
        Storage::Sqlite(path) => {
            let retention = store::sqlite::Retention {
                days: config.retain_days,
                per_room: config.retain_per_room,
                interval: config.prune_interval,
            };
            let store = store::sqlite::SqliteStore::open(path, config.max_unsaved, retention)?;
            info!(path = %path.display(), "history stored in SQLite");
            Ok(Some(store))
        }
    }
}

pub use store::default_path as default_db_path;

/// Unix time in milliseconds, the protocol's `ts`.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
