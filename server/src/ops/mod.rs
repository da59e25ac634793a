//! Operability: what an operator sees of a running server without reading debug logs.
//!
//! - [`Ops`]: one per server, reached through `Chat`: the metric handles, the registry of
//!   open connections (for `/clients`) and the server's readiness (for `/readyz`).
//! - `metrics`: every family of `/metrics`, registered once, with handles resolved up front.
//! - `conns`: one entry per connection, atomics its session and sink update; its guard
//!   logs the close line and counts the disconnect.
//! - `audit`: the `info` lines of moderation actions and refused logins.
//! - `http`: the admin listener (`--admin-listen`): `/metrics`, `/healthz`, `/readyz`,
//!   `/clients`, `/rooms`. It never shares the chat port.

pub(crate) mod audit;
pub(crate) mod conns;
pub(crate) mod http;
pub(crate) mod metrics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use uuid::Uuid;

pub(crate) use conns::Conn;
pub(crate) use metrics::Metrics;

/// A connection's wire mode, as the `mode` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Framed,
    Line,
    Irc,
}

impl Mode {
    pub(crate) const ALL: [Self; 3] = [Self::Framed, Self::Line, Self::Irc];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Framed => "framed",
            Self::Line => "line",
            Self::Irc => "irc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where the server is in its life, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Starting = 0,
    Serving = 1,
    ShuttingDown = 2,
}

/// The store's health as its writer reports it: written by the writer thread, read by
/// `/readyz`. Shared by `Arc` because the writer thread outlives no server but is not a
/// task of it either.
#[derive(Debug, Default)]
pub(crate) struct StoreHealth {
    /// The last write or commit failed (cleared by the next successful commit).
    pub(crate) failing: AtomicBool,
    /// The writer thread has ended (a stop, or it died).
    pub(crate) writer_gone: AtomicBool,
    /// The store's count of messages accepted and not yet durable.
    pub(crate) unsaved: OnceLock<Arc<AtomicUsize>>,
}

impl StoreHealth {
    fn usable(&self) -> bool {
        !self.failing.load(Ordering::Acquire) && !self.writer_gone.load(Ordering::Acquire)
    }
}

/// What the store's writer reports to: its histograms and its health.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreOps {
    pub(crate) counters: metrics::StoreCounters,
    pub(crate) health: Arc<StoreHealth>,
}

/// Something the server needs to be reachable to be ready (cluster mode: NATS).
pub(crate) trait Reachable: Send + Sync + std::fmt::Debug {
    fn reachable(&self) -> bool;
}

/// One server's operability state.
#[derive(Debug)]
pub(crate) struct Ops {
    pub(crate) metrics: Metrics,
    /// Open connections by session id. Locked once when a connection opens and once when
    /// it closes, and by the admin endpoints; never on a message's path.
    conns: Mutex<HashMap<Uuid, Arc<Conn>>>,
    phase: AtomicU8,
    /// `None` without a store (history in memory), which is always usable.
    store: OnceLock<Arc<StoreHealth>>,
    /// Cluster mode: whether the cluster is set up, reachable and consumed.
    cluster: OnceLock<Arc<dyn Reachable>>,
}

impl Default for Ops {
    fn default() -> Self {
        Self {
            metrics: Metrics::new(),
            conns: Mutex::default(),
            phase: AtomicU8::new(Phase::Starting as u8),
            store: OnceLock::new(),
            cluster: OnceLock::new(),
        }
    }
}

impl Ops {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Conn>>> {
        // Inserts and removes only: a poisoned map is still sound.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::ShuttingDown,
        }
    }

    /// The store whose health `/readyz` reports.
    pub(crate) fn watch_store(&self, health: Arc<StoreHealth>) {
        let _ = self.store.set(health);
    }

    /// The cluster whose reachability `/readyz` reports.
    pub(crate) fn watch_cluster(&self, ready: Arc<dyn Reachable>) {
        let _ = self.cluster.set(ready);
    }

    /// Why the server is not ready, if it is not.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
        match self.phase() {
            Phase::Starting => return Some("starting"),
            Phase::ShuttingDown => return Some("shutting down"),
            Phase::Serving => {}
        }
        match self.store.get() {
            Some(store) if store.writer_gone.load(Ordering::Acquire) => {
                Some("the store's writer is gone")
            }
            Some(store) if !store.usable() => Some("the store is failing to write"),
            _ => match self.cluster.get() {
                Some(cluster) if !cluster.reachable() => {
                    Some("the cluster (NATS JetStream) cannot be reached")
                }
                _ => None,
            },
        }
    }

    /// Messages accepted and not yet durable (0 without a store).
    pub(crate) fn unsaved(&self) -> usize {
        self.store
            .get()
            .and_then(|s| s.unsaved.get())
            .map_or(0, |u| u.load(Ordering::Relaxed))
    }

    /// Whether `session` is an open connection's.
    pub(crate) fn is_open(&self, session: Uuid) -> bool {
        self.lock().contains_key(&session)
    }

    /// Every open connection, in no order.
    pub(crate) fn connections(&self) -> Vec<Arc<Conn>> {
        self.lock().values().cloned().collect()
    }

    /// Calls `f` with every open connection's sink, under the registry's lock (so `f` is
    /// brief: the keepalive clock's tick, the shutdown's `bye`).
    pub(crate) fn each_sink(&self, mut f: impl FnMut(&crate::path::sink::Sink)) {
        for conn in self.lock().values() {
            if let Some(sink) = conn.sink() {
                f(&sink);
            }
        }
    }
}
