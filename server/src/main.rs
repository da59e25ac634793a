//! `chat-server` binary: command line, logging, signals; the server itself is the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chat_server::{Config, Storage, TlsSource, run_with_reload};
use clap::{ArgGroup, Parser};
use tokio::net::{TcpListener, TcpSocket};
use tracing::info;

/// The allocator. Every delivery allocates on one worker thread and frees on another (an
/// event's encoding, a write batch); glibc's malloc took an arena lock for those frees,
/// which under a busy room showed up as futex calls and a tenth of the server's CPU.
/// jemalloc frees across threads without that, and it also holds an idle connection in
/// less memory (W4: 2.1 KiB instead of 2.4–2.5; mimalloc, tried too, took 2.7).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An async multi-client chat room server: framed JSON clients and plain line clients
/// (`nc`, `telnet`) on one port, in clear or over TLS.
#[derive(Debug, Parser)]
#[command(version, about)]
#[command(group(ArgGroup::new("tls").args(["tls_cert", "tls_self_signed"])))]
struct Args {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "CHAT_LISTEN", default_value = chat_shared::DEFAULT_ADDR)]
    listen: String,
    /// Connections the kernel queues before the server accepts them: a reconnect storm
    /// (every client of a restarted server at once) must not overflow it. The kernel caps
    /// it at net.core.somaxconn.
    #[arg(long, env = "CHAT_BACKLOG", default_value_t = 4096)]
    backlog: u32,
    /// History database (SQLite). Default: $XDG_DATA_HOME/chat-server/chat.db (or
    /// ~/.local/share/chat-server/chat.db). `:memory:` for an ephemeral server, `none` to
    /// keep history only in memory, per room (--history).
    #[arg(long, env = "CHAT_DB")]
    db: Option<String>,
    /// Delete stored messages older than this many days.
    #[arg(long, env = "CHAT_RETAIN_DAYS")]
    retain_days: Option<u32>,
    /// Keep at most this many stored messages per room.
    #[arg(long, env = "CHAT_RETAIN_PER_ROOM")]
    retain_per_room: Option<u64>,
    /// Seconds between retention runs.
    #[arg(long, env = "CHAT_PRUNE_INTERVAL", default_value_t = 60)]
    prune_interval: u64,
    /// Messages accepted but not yet on disk before new ones are refused (rate_limited).
    #[arg(long, env = "CHAT_MAX_UNSAVED", default_value_t = Config::default().max_unsaved)]
    max_unsaved: usize,
    /// Largest frame payload in bytes, both directions.
    #[arg(long, env = "CHAT_MAX_FRAME", default_value_t = Config::default().max_frame)]
    max_frame: usize,
    /// Largest message text in bytes (after control characters are stripped).
    #[arg(long, env = "CHAT_MAX_TEXT", default_value_t = Config::default().max_text)]
    max_text: usize,
    /// Largest line-mode input line in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = Config::default().max_line)]
    max_line: usize,
    /// Messages kept per room for history.
    #[arg(long, env = "CHAT_HISTORY", default_value_t = Config::default().history)]
    history: usize,
    /// Messages sent when a client joins a room.
    #[arg(long, env = "CHAT_HISTORY_ON_JOIN", default_value_t = Config::default().history_on_join)]
    history_on_join: usize,
    /// Milliseconds a new connection may stay silent before it is greeted as a line client.
    #[arg(long, env = "CHAT_SNIFF_MS", default_value_t = 300)]
    sniff_ms: u64,
    /// Seconds of silence before an idle framed client is pinged.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 60)]
    ping_interval: u64,
    /// Seconds a pinged client has to send anything before it is dropped.
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value_t = 30)]
    ping_timeout: u64,
    /// Seconds from connecting to completing hello (or the nick line).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// Seconds a client's writes may make no progress before it is dropped.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 30)]
    write_timeout: u64,
    /// Bytes a client may have waiting that the server could not yet write to it; past
    /// this it misses room messages and is told with `lagged`.
    #[arg(long, env = "CHAT_MAX_SENDQ", default_value_t = Config::default().max_sendq)]
    max_sendq: usize,
    /// A client's room messages waiting for the disk before its input is no longer read.
    #[arg(long, env = "CHAT_MAX_UNSETTLED", default_value_t = Config::default().max_unsettled)]
    max_unsettled: usize,
    /// Rooms kept in memory (idle empty rooms make way for new ones).
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = Config::default().max_rooms)]
    max_rooms: usize,
    /// Rooms one client may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CLIENT", default_value_t = Config::default().max_rooms_per_client)]
    max_rooms_per_client: usize,
    /// Messages (say, dm) per second per connection.
    #[arg(long, env = "CHAT_RATE", default_value_t = Config::default().rate)]
    rate: f64,
    /// Messages a connection may send at once before the rate applies.
    #[arg(long, env = "CHAT_BURST", default_value_t = Config::default().burst)]
    burst: u32,
    /// Connections in total.
    #[arg(long, env = "CHAT_MAX_CLIENTS", default_value_t = Config::default().max_clients)]
    max_clients: usize,
    /// Connections from one IP address.
    #[arg(long, env = "CHAT_MAX_CLIENTS_PER_IP", default_value_t = Config::default().max_clients_per_ip)]
    max_clients_per_ip: usize,
    /// DMs remembered to recognise a resent message id.
    #[arg(long, env = "CHAT_DM_HISTORY", default_value_t = Config::default().dm_history)]
    dm_history: usize,
    /// Message of the day, sent to every client on login.
    #[arg(long, env = "CHAT_MOTD")]
    motd: Option<String>,
    /// Shortest password an account may have, in characters.
    #[arg(long, env = "CHAT_MIN_PASSWORD_LEN", default_value_t = Config::default().min_password_len)]
    min_password_len: usize,
    /// Password hashes computed at once at most (each takes 19 MiB and tens of ms of CPU).
    #[arg(long, env = "CHAT_MAX_HASHING", default_value_t = Config::default().max_hashing)]
    max_hashing: usize,
    /// Milliseconds a client waits after a first failed login; doubled per further failure.
    #[arg(long, env = "CHAT_AUTH_BACKOFF_MS", default_value_t = 250)]
    auth_backoff_ms: u64,
    /// The longest wait, in seconds, given to an address that keeps failing to log in.
    #[arg(long, env = "CHAT_AUTH_MAX_WAIT_IP", default_value_t = 60)]
    auth_max_wait_ip: u64,
    /// The longest wait, in seconds, given to an account that others keep failing to log in
    /// to: all its owner can be made to wait.
    #[arg(long, env = "CHAT_AUTH_MAX_WAIT_ACCOUNT", default_value_t = 5)]
    auth_max_wait_account: u64,
    /// Addresses (and accounts) the login throttle tracks at most.
    #[arg(long, env = "CHAT_AUTH_MAX_TRACKED", default_value_t = Config::default().auth_max_tracked)]
    auth_max_tracked: usize,
    /// TLS certificate chain (PEM, leaf first), served on the same port as plain clients.
    /// SIGHUP reads it and --tls-key again.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// TLS with a self-signed certificate, generated on the first start into the data
    /// directory and reused after that; its SHA-256 fingerprint is logged at start.
    #[arg(long, env = "CHAT_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Refuse plain connections (they are told why): only TLS is served.
    #[arg(long, env = "CHAT_REQUIRE_TLS", requires = "tls")]
    require_tls: bool,
    /// Where the server keeps its own files (the self-signed certificate). Default: the
    /// directory of the history database (--db), or the default database's directory when
    /// history is not in a file.
    #[arg(long, env = "CHAT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Registered accounts with server-wide power: they may kill clients and ban addresses
    /// and accounts from the server, and act as ops in every room (once logged in).
    #[arg(
        long,
        env = "CHAT_ADMINS",
        value_delimiter = ',',
        value_name = "NICK,..."
    )]
    admins: Vec<String>,
    /// Longest room topic, in bytes.
    #[arg(long, env = "CHAT_MAX_TOPIC", default_value_t = Config::default().max_topic)]
    max_topic: usize,
    /// Bans one room keeps at most.
    #[arg(long, env = "CHAT_MAX_BANS", default_value_t = Config::default().max_bans)]
    max_bans: usize,
    /// Server bans kept at most.
    #[arg(long, env = "CHAT_MAX_SERVER_BANS", default_value_t = Config::default().max_server_bans)]
    max_server_bans: usize,
    /// Pending invitations one room keeps at most (the oldest is dropped).
    #[arg(long, env = "CHAT_MAX_INVITES", default_value_t = Config::default().max_invites)]
    max_invites: usize,
    /// The name the server gives itself to IRC clients (numerics, PONG, WHO, user masks).
    /// Default: the host name.
    #[arg(long, env = "CHAT_SERVER_NAME")]
    server_name: Option<String>,
    /// A server password IRC clients must send with PASS (otherwise PASS is ignored).
    #[arg(long, env = "CHAT_IRC_PASSWORD")]
    irc_password: Option<String>,
    /// Messages replayed to an IRC client on JOIN at most (default: --history-on-join).
    #[arg(long, env = "CHAT_IRC_REPLAY")]
    irc_replay: Option<usize>,
    /// The admin HTTP listener (/metrics, /healthz, /readyz, /clients, /rooms); off unless
    /// set. Keep it on a private address: it lists every client. Port 0 picks a free one.
    #[arg(long, env = "CHAT_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Log format on stderr: text, or json (one object per line).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people: one line per event, colour on a terminal.
    Text,
    /// For collectors: one JSON object per line.
    Json,
}

impl Args {
    fn config(&self) -> Config {
        let storage = match self.db.as_deref() {
            Some("none") => Storage::Memory,
            Some(path) => Storage::Sqlite(path.into()),
            None => Storage::Sqlite(chat_server::default_db_path()),
        };
        Config {
            storage,
            retain_days: self.retain_days,
            retain_per_room: self.retain_per_room,
            prune_interval: Duration::from_secs(self.prune_interval.max(1)),
            max_unsaved: self.max_unsaved,
            max_frame: self.max_frame,
            max_text: self.max_text,
            max_line: self.max_line,
            history: self.history,
            history_on_join: self.history_on_join,
            sniff: Duration::from_millis(self.sniff_ms),
            ping_interval: Duration::from_secs(self.ping_interval),
            ping_timeout: Duration::from_secs(self.ping_timeout),
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            write_timeout: Duration::from_secs(self.write_timeout),
            max_sendq: self.max_sendq,
            max_unsettled: self.max_unsettled.max(1),
            max_rooms: self.max_rooms,
            max_rooms_per_client: self.max_rooms_per_client,
            rate: self.rate,
            burst: self.burst,
            max_clients: self.max_clients,
            max_clients_per_ip: self.max_clients_per_ip,
            dm_history: self.dm_history,
            // The operator's text, but relayed to every terminal all the same.
            motd: self
                .motd
                .as_deref()
                .map(|m| chat_shared::validate::strip_controls(m).into_owned()),
            min_password_len: self.min_password_len,
            max_hashing: self.max_hashing.max(1),
            auth_backoff: Duration::from_millis(self.auth_backoff_ms),
            auth_max_wait_ip: Duration::from_secs(self.auth_max_wait_ip),
            auth_max_wait_account: Duration::from_secs(self.auth_max_wait_account),
            auth_max_tracked: self.auth_max_tracked.max(1),
            tls: self.tls(),
            require_tls: self.require_tls,
            admins: self
                .admins
                .iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            max_topic: self.max_topic,
            max_bans: self.max_bans,
            max_server_bans: self.max_server_bans,
            max_invites: self.max_invites.max(1),
            admin_listen: self.admin_listen,
            server_name: self
                .server_name
                .clone()
                .filter(|n| !n.trim().is_empty() && !n.contains(char::is_whitespace))
                .unwrap_or_else(chat_server::host_name),
            irc_password: self.irc_password.clone(),
            irc_replay: self.irc_replay,
            ..Config::default()
        }
    }

    fn tls(&self) -> Option<TlsSource> {
        if self.tls_self_signed {
            return Some(TlsSource::SelfSigned {
                dir: self.data_dir(),
            });
        }
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(TlsSource::Files { cert, key })
    }

    /// `--data-dir`, else the database's directory, else the default database's.
    fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let db = match self.db.as_deref() {
            Some("none" | ":memory:") | None => chat_server::default_db_path(),
            Some(path) => PathBuf::from(path),
        };
        match db.parent() {
            Some(dir) if dir != Path::new("") => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// A stream of SIGHUPs, when there is a certificate to reload: without TLS the signal keeps
/// its usual meaning (the end of the process). Installed before the server listens, as
/// the stop signals are.
///
/// # Errors
/// The handler cannot be installed.
fn reload_signal(tls: bool) -> std::io::Result<futures::stream::BoxStream<'static, ()>> {
    use futures::StreamExt;
    #[cfg(unix)]
    if tls {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup())?;
        return Ok(futures::stream::unfold(hangup, |mut hangup| async move {
            hangup.recv().await?;
            info!("SIGHUP received: reloading the TLS certificate");
            Some(((), hangup))
        })
        .boxed());
    }
    let _ = tls;
    Ok(futures::stream::pending().boxed())
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled: a signal that arrives as soon as
/// the server has said where it listens must stop it gracefully, not kill it.
///
/// # Errors
/// A handler cannot be installed.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // Ctrl-C is the only stop signal here; an error means no handler, so never stop.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level, beside `timestamp`, `level`, `message` and `target`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // Each client is a file descriptor; the usual soft limit (1024) is far below
    // --max-clients, while the hard limit rarely is.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!("file descriptor limit {n}"),
        Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
    }
    // Before the address is known to anyone: see `stop_signal`.
    let stop = stop_signal().context("cannot install the signal handlers")?;
    let config = args.config();
    let reload =
        reload_signal(config.tls.is_some()).context("cannot install the SIGHUP handler")?;
    let listener = bind(&args.listen, args.backlog)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    run_with_reload(listener, config, stop, reload).await
}

/// Binds `addr` (the first address it resolves to) with a listen backlog of `backlog`.
/// (`TcpListener::bind` takes no backlog, and its own is too short for a reconnect storm.)
async fn bind(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted server can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
