//! The server's settings: every limit, with its default. The binary's flags and config
//! file fill this in (`crate::cli`); tests and the bench build it directly.
//!
//! Layout:
//! - this file: [`Config`], its parts and its defaults;
//! - `live`: the part a reload changes while the server runs ([`Live`]).

mod live;

pub use live::{LIVE_KEYS, Live, LiveCell};

use std::path::PathBuf;
use std::time::Duration;

/// Where history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Only in memory (the `--history` ring per room): gone with the process.
    Memory,
    /// An SQLite database at this path; `:memory:` is an SQLite database in memory.
    Sqlite(std::path::PathBuf),
}

/// Where the TLS certificate and its key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the certificate chain (leaf first) and its private key.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A self-signed certificate kept in this directory: generated on the first start,
    /// reused on every later one, so clients that trusted its fingerprint keep trusting it.
    SelfSigned {
        /// The server's data directory.
        dir: PathBuf,
    },
}

/// File sharing's settings (see `crate::files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// Where uploads, shared files and their records are kept.
    pub dir: PathBuf,
    /// Keep them in a new directory inside `dir`, deleted when the server stops: for a
    /// server whose history is not kept either (`--db none` or `:memory:`).
    pub temporary: bool,
    /// The base of links (`None`: `http://` or `https://` and the listening address).
    pub public_url: Option<String>,
    /// The largest file, in bytes.
    pub max_file_size: u64,
    /// What one account may have shared and be uploading, in bytes.
    pub quota_per_user: u64,
    /// The same for a guest, per connection.
    pub guest_quota: u64,
    /// How long an upload slot lives.
    pub upload_expiry: Duration,
    /// Shared files are deleted after this many days (0: kept).
    pub retain_days: u32,
    /// Upload slots one uploader may hold at once.
    pub max_uploads: usize,
    /// Upload requests writing at once, server-wide (each holds up to three 1 MiB blocks).
    pub max_writing: usize,
    /// Downloads need `Authorization: Bearer SESSION` of a connection online now.
    pub require_auth: bool,
    /// The nice value of the threads transfers run on (0: the chat's priority; Linux).
    pub nice: i32,
}

impl FilesConfig {
    /// The defaults, with files kept in `dir`.
    pub fn in_dir(dir: PathBuf) -> Self {
        Self {
            dir,
            temporary: false,
            public_url: None,
            max_file_size: 100 << 20,
            quota_per_user: 1 << 30,
            guest_quota: 100 << 20,
            upload_expiry: Duration::from_secs(24 * 3600),
            retain_days: 30,
            max_uploads: 8,
            max_writing: 64,
            require_auth: false,
            nice: 5,
        }
    }
}

/// An admin listener bound by the caller (tests bind `127.0.0.1:0` and read its port
/// first); the server takes it once.
#[derive(Debug, Clone)]
pub struct AdminListener(std::sync::Arc<std::sync::Mutex<Option<std::net::TcpListener>>>);

impl AdminListener {
    /// Wraps a bound listener.
    pub fn new(listener: std::net::TcpListener) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Some(listener))))
    }

    fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
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
    /// How long the store keeps a transaction open under load, gathering messages into one
    /// commit; acknowledgements wait for it, the fan-out does not. After a quiet moment a
    /// message is committed at once, and a transaction holding `max_unsettled` messages
    /// commits at once too.
    pub commit_interval: Duration,
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
    /// Bytes a client may have queued that the server could not yet write to it (about
    /// the framed size of the events); past this it falls behind: it misses room messages
    /// and is told with `lagged`. Only its own slowness counts, never how busy a room is.
    pub max_sendq: usize,
    /// A client's room messages waiting for the disk before its input is no longer read
    /// (until some are durable): a fast sender is slowed by TCP instead of being refused.
    pub max_unsettled: usize,
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
    /// DMs remembered for recognising a resent message id.
    pub dm_history: usize,
    /// How long shutdown waits for sessions to say goodbye.
    pub shutdown_grace: Duration,
    /// Sent in `welcome`.
    pub motd: Option<String>,
    /// Shortest password an account may have, in characters.
    pub min_password_len: usize,
    /// Password hashes computed at once at most (each takes 19 MiB and tens of ms of CPU).
    pub max_hashing: usize,
    /// The wait after a first failed login; it doubles with each further failure.
    pub auth_backoff: Duration,
    /// The longest wait an address that keeps failing is given.
    pub auth_max_wait_ip: Duration,
    /// The longest wait an account is given: all an owner can be made to wait by guessers
    /// elsewhere.
    pub auth_max_wait_account: Duration,
    /// Addresses (and accounts) the login throttle tracks at most.
    pub auth_max_tracked: usize,
    /// TLS on the same port (a connection whose first byte is a handshake's `0x16`); `None`:
    /// plain only, and a `0x16` is taken for line-mode text.
    pub tls: Option<TlsSource>,
    /// Plain connections are told so and closed: only TLS is served.
    pub require_tls: bool,
    /// Registered accounts with server-wide power (`kill`, server bans; ops in every room).
    /// Nicks as given; they count only when logged in.
    pub admins: Vec<String>,
    /// Longest room topic in bytes, after control characters are stripped.
    pub max_topic: usize,
    /// Bans one room keeps at most.
    pub max_bans: usize,
    /// Server bans kept at most.
    pub max_server_bans: usize,
    /// Pending invitations one room keeps at most (the oldest is dropped).
    pub max_invites: usize,
    /// Where the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/clients`,
    /// `/rooms`) listens; `None`: it is off. Port 0 picks a free port (it is logged).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// An admin listener already bound; takes precedence over `admin_listen`.
    pub admin_listener: Option<AdminListener>,
    /// The name the server gives itself to IRC clients: in numerics, `PONG`, `WHO` and
    /// the masks of users (`nick!nick@NAME`). Default: the host name.
    pub server_name: String,
    /// IRC clients must send this with `PASS` (a server password, not an account's).
    pub irc_password: Option<String>,
    /// Messages an IRC client without chathistory is replayed on `JOIN`, at most;
    /// `None`: as many as `history_on_join`.
    pub irc_replay: Option<usize>,
    /// File sharing (`None`: off). `Config::default()` has it off; the binary keeps files
    /// in the data directory's `files/`.
    pub files: Option<FilesConfig>,
    /// Cluster mode: rooms, nicks and presence shared with other nodes through NATS
    /// JetStream (`None`: a single node, nothing shared).
    pub cluster: Option<ClusterConfig>,
    /// The live settings once the server runs (see [`Live`]); leave it at its default.
    pub live: LiveCell,
}

/// How this node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS servers (`nats://HOST:PORT`), tried in turn.
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster: members and nicks say which node holds them.
    pub node: String,
    /// Replicas of the stream and the key-value buckets (3 on a 3-server NATS cluster).
    pub replicas: usize,
    /// How long a node's lease lives without renewal: a node that died holds its nicks and
    /// members no longer than this (plus one sweep, `lease / 3`).
    pub lease: Duration,
    /// How long a publish to JetStream may take before the message is refused with
    /// `unavailable`.
    pub publish_timeout: Duration,
    /// Stream messages a starting node reads back to warm its rooms' caches (and its
    /// index of message ids, which recognises resends); not a full replay.
    pub warm: u64,
    /// Prefix of the stream's and buckets' names, so several chat clusters can share one NATS.
    pub prefix: String,
}

impl ClusterConfig {
    /// A node called `node` of the cluster at `urls`, with the defaults.
    pub fn new(urls: Vec<String>, node: impl Into<String>) -> Self {
        Self {
            urls,
            node: node.into(),
            replicas: 1,
            lease: Duration::from_secs(15),
            publish_timeout: Duration::from_secs(5),
            warm: 10_000,
            prefix: "CHAT".into(),
        }
    }
}

/// The host name, for [`Config::server_name`]; `chat-server` where there is none to read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "chat-server".to_owned())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            retain_days: None,
            retain_per_room: None,
            prune_interval: Duration::from_secs(60),
            max_unsaved: 100_000,
            commit_interval: Duration::from_millis(20),
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
            max_sendq: 1 << 20,
            max_unsettled: 256,
            max_rooms: 10_000,
            max_rooms_per_client: 100,
            rate: 5.0,
            burst: 10,
            max_clients: 10_000,
            max_clients_per_ip: 32,
            dm_history: 10_000,
            shutdown_grace: Duration::from_secs(3),
            motd: None,
            min_password_len: 8,
            max_hashing: 2,
            auth_backoff: Duration::from_millis(250),
            auth_max_wait_ip: Duration::from_secs(60),
            auth_max_wait_account: Duration::from_secs(5),
            auth_max_tracked: 100_000,
            tls: None,
            require_tls: false,
            admins: Vec::new(),
            max_topic: 390,
            max_bans: 500,
            max_server_bans: 10_000,
            max_invites: 256,
            admin_listen: None,
            admin_listener: None,
            server_name: host_name(),
            irc_password: None,
            irc_replay: None,
            files: None,
            cluster: None,
            live: LiveCell::default(),
        }
    }
}

impl Config {
    /// The admin listener, if one is configured: the bound one given, else `admin_listen`
    /// bound now.
    ///
    /// # Errors
    /// The address cannot be bound, or the given listener cannot be used by tokio.
    pub(crate) fn admin_listener(&self) -> std::io::Result<Option<tokio::net::TcpListener>> {
        let std_listener = match (&self.admin_listener, self.admin_listen) {
            (Some(given), _) => given.take(),
            (None, Some(addr)) => Some(std::net::TcpListener::bind(addr)?),
            (None, None) => None,
        };
        std_listener
            .map(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            })
            .transpose()
    }
}

impl Config {
    /// The accounts' settings.
    pub(crate) fn auth(&self) -> crate::auth::AuthConfig {
        crate::auth::AuthConfig {
            min_password_len: self.min_password_len,
            max_hashing: self.max_hashing,
            throttle: crate::auth::throttle::ThrottleConfig {
                base: self.auth_backoff,
                max_per_ip: self.auth_max_wait_ip,
                max_per_account: self.auth_max_wait_account,
                max_entries: self.auth_max_tracked,
            },
        }
    }
}
