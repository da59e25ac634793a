//! One entry per open connection: what `/clients` shows and what the close line logs.
//!
//! The entry is allocated once per connection, off the session's task (whose size is what
//! an idle connection costs). The session and its sink update its atomics; the admin
//! endpoints read them. No message text or password ever reaches it. The session closes
//! it (see [`Conn::close`]), which logs the close line and counts the disconnect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use once_cell::race::OnceBox;
use tracing::info;
use uuid::Uuid;

use super::{Mode, Ops, metrics};
use crate::path::sink::Sink;

/// A connection as the admin endpoints see it. Every connection holds one for its whole
/// life, so it is kept within a 128-byte allocation: what is set once is set at
/// construction (no `OnceLock`s), the rare end is boxed, and the duration comes from
/// `since_ms` rather than an `Instant` of its own.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: Uuid,
    pub(crate) peer: SocketAddr,
    pub(crate) mode: Mode,
    pub(crate) tls: bool,
    /// Unix ms when its session started.
    pub(crate) since_ms: i64,
    /// Bytes read from the client (counted by the session at each flush).
    bytes_in: AtomicU64,
    /// `lagged` notices the client was sent.
    lagged: AtomicU64,
    /// The session's send queue; weak, as the sink holds this entry.
    sink: Weak<Sink>,
    /// What the session ended with, once it says (see [`Conn::ending`]).
    ending: OnceBox<Ending>,
    closed: AtomicBool,
    ops: Weak<Ops>,
}

/// A session's end as its close line tells it.
#[derive(Debug)]
struct Ending {
    /// The disconnect label (`chat_disconnects_total{reason}`).
    reason: &'static str,
    /// The nick it held, if it had one.
    nick: Option<Box<str>>,
}

impl Conn {
    /// Bytes the session wrote to the client: counted by its sink (which a flush touches
    /// anyway), so readable while the session lasts, its close line included.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.sink.upgrade().map_or(0, |s| s.bytes_out())
    }

    /// `bytes` more were read from the client.
    pub(crate) fn read(&self, bytes: u64) {
        if bytes > 0 {
            self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// The client was sent `n` lagged notices.
    pub(crate) fn lagged(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
        if let Some(ops) = self.ops.upgrade() {
            ops.metrics.path.lagged.inc_by(n);
        }
    }

    pub(crate) fn lagged_count(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// The part of its send queue in its sink: what is the client's alone, and what it
    /// read from its rooms' feeds and waits to write. `/clients` and `chat_sendq_bytes` add
    /// what it has not read of its rooms' feeds yet (see `http.rs`).
    pub(crate) fn sendq(&self) -> usize {
        self.sink.upgrade().map_or(0, |s| s.queued())
    }

    /// The session's send queue, while the session lasts.
    pub(crate) fn sink(&self) -> Option<Arc<Sink>> {
        self.sink.upgrade()
    }

    /// The session is ending with `reason` (a disconnect label), holding `nick`. The first
    /// call is what the close line tells.
    pub(crate) fn ending(&self, reason: &'static str, nick: Option<&str>) {
        let _ = self.ending.set(Box::new(Ending {
            reason,
            nick: nick.map(Into::into),
        }));
    }
}

impl Ops {
    /// Registers a connection whose session (with `sink`) starts now, and logs its open
    /// line.
    pub(crate) fn open(
        self: &Arc<Self>,
        id: Uuid,
        peer: SocketAddr,
        (mode, tls): (Mode, bool),
        sink: Weak<Sink>,
    ) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id,
            peer,
            mode,
            tls,
            since_ms: crate::now_ms(),
            bytes_in: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            sink,
            ending: OnceBox::new(),
            closed: AtomicBool::new(false),
            ops: Arc::downgrade(self),
        });
        self.lock().insert(id, Arc::clone(&conn));
        self.metrics.connections[mode.index()].inc();
        self.metrics.connections_total[mode.index()].inc();
        info!(session = %id, %peer, mode = mode.as_str(), tls, "connection opened");
        conn
    }
}

impl Conn {
    /// The connection is closed: removes it from the registry, counts the disconnect and
    /// logs the close line. The session calls it from its `Drop`, so every exit path, a
    /// panic included, closes it; only the first call counts. (Not a guard in the session
    /// task: that would make every connection's task a word larger.)
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(ops) = self.ops.upgrade() else {
            return;
        };
        let conn = self;
        ops.lock().remove(&conn.id);
        ops.metrics.connections[conn.mode.index()].dec();
        let (reason, nick) = conn.ending.get().map_or_else(
            || (metrics::disconnect_reason(None), None),
            |e| (e.reason, e.nick.as_deref()),
        );
        ops.metrics.disconnected(reason);
        info!(
            session = %conn.id,
            peer = %conn.peer,
            mode = conn.mode.as_str(),
            nick = nick.unwrap_or("-"),
            duration_ms = u64::try_from(crate::now_ms().saturating_sub(conn.since_ms)).unwrap_or(0),
            bytes_in = conn.bytes_in(),
            bytes_out = conn.bytes_out(),
            lagged = conn.lagged_count(),
            reason,
            "connection closed"
        );
    }
}
