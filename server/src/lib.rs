//! `chat-server`: an async multi-client chat room server.
//!
//! Framed clients (length-prefixed JSON) and plain line clients (`nc`, `telnet`) share one
//! port, in clear or inside TLS; the first bytes a client sends decide its protocol. All
//! meet in the same rooms through one session logic that knows no wire format and no
//! transport.
//!
//! Layout, from the socket inwards:
//! - [`run`]: the whole server, given a bound listener, a [`Config`] and a shutdown signal
//!   ([`run_with_reload`]: and a stream of reloaded configurations).
//! - `config`: every setting and limit, with its default, and the part a reload changes.
//! - [`cli`]: the binary's flags, environment and config file, merged into a [`Config`].
//! - `net`: the accept loop, the protocol sniffer, TLS, the transport's reader and writer.
//! - `server`: one connection from accept to its session; picks the wire adapter.
//! - `wire`: the adapters, one per wire format (framed, line), and their output buffer.
//! - `session`: one client's session: its loop, registration, commands, history, errors.
//! - `chat`: the nick directory and the room registry; DMs.
//! - `moderation`: rooms' roles, topics, modes and bans, server admins and server bans.
//! - `path`: each room's ordered path of events, its producer and local delivery, and each
//!   session's send queue.
//! - `event`: an outgoing event, encoded once per wire format and shared.
//! - `store`: durable history (SQLite) behind an interface that knows nothing of rooms.
//! - `limits`: the message rate limiter and the connection limits.
//! - `ops`: metrics, the connection registry, readiness, and the admin HTTP listener.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

mod auth;
mod chat;
pub mod cli;
mod cluster;
mod config;
mod event;
mod files;
mod limits;
mod moderation;
mod net;
mod ops;
mod path;
mod server;
mod session;
mod store;
mod wire;

pub use config::{
    AdminListener, ClusterConfig, Config, FilesConfig, LIVE_KEYS, Live, LiveCell, Storage,
    TlsSource, host_name,
};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) chat: Arc<chat::Chat>,
    pub(crate) limits: limits::ConnLimits,
    /// Cancelled once, at shutdown: every session says `bye` and ends.
    pub(crate) cancel: CancellationToken,
    /// Every connection and session task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// The TLS acceptor, when a certificate is configured.
    pub(crate) tls: Option<net::tls::Tls>,
    /// File sharing, when it is on: what sessions ask for upload slots.
    pub(crate) files: Option<Arc<files::Files>>,
    /// What serves HTTP connections (file sharing), when it is on.
    pub(crate) http: Option<files::http::HttpSide>,
}

/// Serves `listener` until `shutdown` completes, then says goodbye to every client and
/// waits (up to `shutdown_grace`) for their sessions to end.
///
/// # Errors
/// If the listener's address cannot be read, the TLS certificate cannot be loaded, or the
/// store cannot be opened; accept errors are retried with backoff and a client's errors end
/// only that client.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_reload(listener, config, shutdown, futures::stream::pending()).await
}

/// [`run`], and every item of `reload` (the binary's SIGHUP: the configuration read again)
/// is applied while the server runs:
/// - its live settings ([`Live`]: limits, MOTD, admins) replace the old ones at once, for
///   established sessions too, and each change is logged;
/// - the TLS certificate and key are read again: new handshakes get the new pair,
///   established connections keep theirs, and a pair that fails to load is logged and
///   leaves the old one in use.
///
/// The rest of the new configuration is ignored: it takes effect at a restart (the binary
/// logs which of its settings wait for one).
///
/// # Errors
/// As for [`run`].
pub async fn run_with_reload(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reload: impl Stream<Item = Config> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let grace = config.shutdown_grace;
    // The admin listener comes up first, so `/readyz` can say "starting" while the store
    // opens; it goes last, so it can say "shutting down" while sessions drain.
    let ops = Arc::new(ops::Ops::default());
    let admin_chat = Arc::new(std::sync::OnceLock::new());
    let admin_stop = CancellationToken::new();
    let admin = match config.admin_listener()? {
        Some(admin) => {
            info!("admin listening on {}", admin.local_addr()?);
            Some(tokio::spawn(ops::http::serve(
                admin,
                Arc::clone(&ops),
                Arc::clone(&admin_chat),
                admin_stop.clone(),
            )))
        }
        None => None,
    };
    let tls = config.tls.as_ref().map(net::tls::Tls::new).transpose()?;
    let (outcomes_tx, outcomes_rx) = tokio::sync::mpsc::unbounded_channel();
    let Stores {
        store,
        accounts,
        settings,
    } = open_store(&config, outcomes_tx, &ops)?;
    let cluster = match &config.cluster {
        Some(c) => Some(Arc::new(cluster::Cluster::new(
            c.clone(),
            (config.retain_days, config.retain_per_room),
        )?)),
        None => None,
    };
    // In cluster mode accounts and settings are the cluster's, this node's store their cache.
    let (accounts, settings) = match &cluster {
        Some(cluster) => {
            let docs = Arc::new(cluster::SharedDocs::new(settings, accounts));
            cluster.share(Arc::clone(&docs));
            (
                Some(Arc::clone(&docs) as Arc<dyn store::AccountStore>),
                Some(docs as Arc<dyn store::SettingsStore>),
            )
        }
        None => (accounts, settings),
    };
    let auth = auth::Auth::open(accounts, config.auth())?;
    let moderation = moderation::Moderation::open(settings, &config)?;
    let files = match &config.files {
        Some(files) => {
            let files = Arc::new(files::Files::open(files.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot use the files directory {}: {e}",
                    files.dir.display()
                )
            })?);
            let scheme = if config.require_tls { "https" } else { "http" };
            files.set_base(format!("{scheme}://{addr}"));
            Some(files)
        }
        None => None,
    };
    let config = Arc::new(config);
    // In cluster mode JetStream orders and keeps the messages; the store is this node's
    // replica of the stream (history older than the cache, and restarts).
    let chat = Arc::new(
        chat::Chat::new(Arc::clone(&config), store.clone())
            .with_auth(auth)
            .with_moderation(moderation)
            .with_ops(Arc::clone(&ops))
            .with_peers(
                cluster
                    .as_ref()
                    .map(|c| Arc::new(cluster::Handle(Arc::clone(c))) as Arc<dyn chat::Peers>),
            ),
    );
    let _ = admin_chat.set(Arc::clone(&chat));
    let cluster_stop = CancellationToken::new();
    if let Some(cluster) = &cluster {
        ops.watch_cluster(Arc::clone(cluster) as Arc<dyn ops::Reachable>);
        cluster.start(&chat, cluster_stop.clone());
    }
    // The store's outcomes become events of the rooms' paths; the task ends with the store.
    let durability = tokio::spawn(path::durability::run(outcomes_rx, Arc::clone(&chat.ids)));
    let http = files
        .as_ref()
        .map(|f| files::http::HttpSide::new(Arc::clone(&chat), Arc::clone(f), config.write_timeout))
        .transpose()
        .map_err(|e| anyhow::anyhow!("cannot start the file transfers' threads: {e}"))?;
    let shared = Arc::new(Shared {
        chat,
        limits: limits::ConnLimits::new(config.max_clients, config.max_clients_per_ip),
        config,
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
        tls,
        files: files.clone(),
        http,
    });
    if let Some(files) = files {
        tokio::spawn(files.sweep_until(shared.cancel.clone()));
    }
    tokio::spawn(session::keepalive::run(
        Arc::clone(&ops),
        session::keepalive::tick(&shared.config),
        shared.cancel.clone(),
    ));
    let tracker = shared.tracker.clone();
    let reloader = tokio::spawn(apply_reloads(Arc::clone(&shared), reload));
    info!("listening on {addr}");
    ops.set_phase(ops::Phase::Serving);
    tokio::select! {
        () = net::listener::accept_loop(&listener, &shared.limits, |stream, peer, admission| {
            server::accepted(stream, peer, &shared, admission);
        }) => {}
        () = shutdown => info!("shutting down"),
    }
    ops.set_phase(ops::Phase::ShuttingDown);
    drop(listener);
    reloader.abort();
    shared.cancel.cancel();
    session::shut_down(&ops);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            sessions = tracker.len(),
            "sessions still running after the grace period"
        );
    }
    let settled = Arc::clone(&shared.chat);
    if tokio::task::spawn_blocking(move || settled.moderation.flush())
        .await
        .is_err()
    {
        warn!("the moderation settings were not all written");
    }
    if let Some(store) = store {
        // Sessions are gone; write what is queued and stop the writer (it blocks).
        let closing = tokio::task::spawn_blocking(move || store.close());
        if closing.await.is_err() {
            warn!("the store did not close cleanly");
        }
    }
    // The writer is gone, so its last outcomes are queued and the channel is closing.
    if durability.await.is_err() {
        warn!("the store's outcomes were not all applied");
    }
    cluster_stop.cancel();
    admin_stop.cancel();
    if let Some(admin) = admin
        && admin.await.is_err()
    {
        warn!("the admin listener did not stop cleanly");
    }
    info!("stopped");
    Ok(())
}

/// The configured store, if any (it reports to `outcomes`), its accounts and its
/// moderation settings.
struct Stores {
    store: Option<path::PathStore>,
    accounts: Option<Arc<dyn store::AccountStore>>,
    settings: Option<Arc<dyn store::SettingsStore>>,
}
/// Applies every configuration `reload` yields: see [`run_with_reload`].
async fn apply_reloads(shared: Arc<Shared>, reload: impl Stream<Item = Config>) {
    let mut reload = std::pin::pin!(reload);
    while let Some(new) = reload.next().await {
        let live = Live::of(&new);
        shared.limits.set(live.max_clients, live.max_clients_per_ip);
        let old = shared.config.set_live(live);
        let changes = shared.config.live().changes_from(&old);
        if changes.is_empty() {
            info!("configuration reloaded: no live setting changed");
        }
        for change in changes {
            info!("configuration reloaded: {change}");
        }
        let Some(tls) = shared.tls.clone() else {
            continue;
        };
        // Off the async workers: it reads files.
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(fingerprint)) => {
                info!("TLS certificate reloaded, SHA-256 fingerprint {fingerprint}");
            }
            Ok(Err(e)) => warn!("TLS certificate not reloaded, the old one stays in use: {e}"),
            Err(panicked) => warn!("TLS certificate reload failed: {panicked}"),
        }
    }
}

/// Opens the configured store, if any; it reports to `outcomes`.
fn open_store(
    config: &Config,
    outcomes: store::Outcomes<path::producer::InFlight>,
    ops: &ops::Ops,
) -> anyhow::Result<Stores> {
    match &config.storage {
        Storage::Memory => Ok(Stores {
            store: None,
            accounts: None,
            settings: None,
        }),
        Storage::Sqlite(path) => {
            let retention = store::sqlite::Retention {
                days: config.retain_days,
                per_room: config.retain_per_room,
                interval: config.prune_interval,
            };
            let store_ops = ops::StoreOps {
                counters: ops.metrics.store.clone(),
                health: Arc::default(),
            };
            ops.watch_store(Arc::clone(&store_ops.health));
            let store = store::sqlite::SqliteStore::open_with_ops(
                path,
                config.max_unsaved,
                store::sqlite::GroupCommit {
                    interval: config.commit_interval,
                    batch: config.max_unsettled,
                },
                retention,
                outcomes,
                store_ops,
            )?;
            let accounts: Arc<dyn store::AccountStore> = Arc::new(store.accounts()?);
            let settings: Arc<dyn store::SettingsStore> = Arc::new(store.settings()?);
            let store: path::PathStore = store;
            Ok(Stores {
                store: Some(store),
                accounts: Some(accounts),
                settings: Some(settings),
            })
        }
    }
}

pub use store::default_path as default_db_path;

/// `bytes` as lowercase hex: how file ids, tokens and hashes are named, and how names
/// become NATS subject tokens.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Unix time in milliseconds, the protocol's `ts`.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
