//! The binary's configuration: flags, then `CHAT_*` environment variables, then a TOML
//! config file, then the defaults, merged into one [`Config`].
//!
//! Every setting is a flag first ([`Args`], read by clap, which also reads its variable);
//! the file only fills in what neither gave, so one set of names, parsers and defaults
//! serves all three, and `--help` documents the file too.
//!
//! Layout:
//! - this file: [`Args`], how they become a [`Config`], and [`load`], the merge;
//! - `file`: the config file: its keys and their lines (for errors), and `--print-config`.

mod file;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgGroup, ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::{ClusterConfig, Config, FilesConfig, LIVE_KEYS, Storage, TlsSource};

/// File sharing's defaults, for the flags' `--help`.
static FILES: std::sync::LazyLock<FilesConfig> =
    std::sync::LazyLock::new(|| FilesConfig::in_dir(PathBuf::new()));

pub use file::FileError;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or a variable is wrong, or `--help` / `--version` was asked for: clap's own
    /// message, for `clap::Error::exit`.
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The config file cannot be read or is wrong.
    #[error(transparent)]
    File(#[from] FileError),
}

/// The configuration as read: the settings, the server's [`Config`], and what is needed
/// to read it again (SIGHUP).
#[derive(Debug)]
pub struct Loaded {
    /// Every setting, merged.
    pub args: Args,
    /// The server's configuration.
    pub config: Config,
    /// The command line it was read from.
    argv: Vec<OsString>,
    matches: ArgMatches,
}

/// Reads the configuration from `argv` (the program name first), the environment and the
/// config file `--config` names.
///
/// # Errors
/// A flag, a variable or a key of the file is unknown or has a bad value (the error names
/// the key and its line), or the file cannot be read.
pub fn load<I, T>(argv: I) -> Result<Loaded, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let first = Args::command().try_get_matches_from(&argv)?;
    let matches = match first.get_one::<PathBuf>("config") {
        None => first,
        Some(path) => {
            let entries = file::read(path, &Args::command())?;
            // The file's settings go first, and only those neither a flag nor a variable
            // gave: the flags after them would win anyway, but a variable would not.
            let mut merged: Vec<OsString> = argv.iter().take(1).cloned().collect();
            for entry in entries {
                let given = matches!(
                    first.value_source(&entry.id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
                if !given {
                    merged.extend(entry.args);
                }
            }
            merged.extend(argv.iter().skip(1).cloned());
            Args::command().try_get_matches_from(merged)?
        }
    };
    let args = Args::from_arg_matches(&matches)?;
    let config = args.config();
    Ok(Loaded {
        args,
        config,
        argv,
        matches,
    })
}

impl Loaded {
    /// The effective configuration as a TOML config file, every key with its help: what
    /// `--print-config` prints, and a file that reads back to the same configuration.
    pub fn to_toml(&self) -> String {
        file::print(&Args::command(), &self.matches)
    }

    /// The configuration read again from the same command line, environment and file.
    ///
    /// # Errors
    /// As for [`load`].
    pub fn reload(&self) -> Result<Self, CliError> {
        load(self.argv.clone())
    }

    /// The keys whose value differs in `next` and that take effect only at a restart.
    pub fn waiting_for_restart(&self, next: &Self) -> Vec<String> {
        let (old, new) = (
            file::values(&Args::command(), &self.matches),
            file::values(&Args::command(), &next.matches),
        );
        new.iter()
            .filter(|(key, value)| old.get(*key) != Some(value))
            .map(|(key, _)| key.clone())
            .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
            .filter(|key| !LIVE_KEYS.contains(&key.as_str()))
            .collect()
    }

    /// Whether a config file is read, so a reload can change anything.
    pub fn has_file(&self) -> bool {
        self.args.config.is_some()
    }
}

/// An async multi-client chat room server: framed JSON clients and plain line clients
/// (`nc`, `telnet`) on one port, in clear or over TLS.
#[derive(Debug, Parser)]
#[command(version, about)]
#[command(group(ArgGroup::new("tls").args(["tls_cert", "tls_self_signed"])))]
pub struct Args {
    /// A TOML config file: every flag is a key (its long name: `max-sendq = 1048576`).
    /// Flags and CHAT_* variables win over it; SIGHUP reads it again.
    #[arg(long, env = "CHAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (flags, environment, file, defaults) as TOML,
    /// then exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "CHAT_LISTEN", default_value = chat_shared::DEFAULT_ADDR)]
    pub listen: String,
    /// Connections the kernel queues before the server accepts them: a reconnect storm
    /// (every client of a restarted server at once) must not overflow it. The kernel caps
    /// it at net.core.somaxconn.
    #[arg(long, env = "CHAT_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// History database (SQLite). Default: $XDG_DATA_HOME/chat-server/chat.db (or
    /// ~/.local/share/chat-server/chat.db). `:memory:` for an ephemeral server, `none` to
    /// keep history only in memory, per room (--history).
    #[arg(long, env = "CHAT_DB")]
    pub db: Option<String>,
    /// Delete stored messages older than this many days.
    #[arg(long, env = "CHAT_RETAIN_DAYS")]
    pub retain_days: Option<u32>,
    /// Keep at most this many stored messages per room.
    #[arg(long, env = "CHAT_RETAIN_PER_ROOM")]
    pub retain_per_room: Option<u64>,
    /// Seconds between retention runs.
    #[arg(long, env = "CHAT_PRUNE_INTERVAL", default_value_t = 60)]
    pub prune_interval: u64,
    /// Messages accepted but not yet on disk before new ones are refused (rate_limited).
    #[arg(long, env = "CHAT_MAX_UNSAVED", default_value_t = Config::default().max_unsaved)]
    pub max_unsaved: usize,
    /// Milliseconds a commit to disk gathers messages under load (acknowledgements wait
    /// for it, other members never; after a quiet moment a message is committed at once).
    #[arg(long, env = "CHAT_COMMIT_INTERVAL", default_value_t = Config::default().commit_interval.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub commit_interval: u64,
    /// Largest frame payload in bytes, both directions.
    #[arg(long, env = "CHAT_MAX_FRAME", default_value_t = Config::default().max_frame)]
    pub max_frame: usize,
    /// Largest message text in bytes (after control characters are stripped).
    #[arg(long, env = "CHAT_MAX_TEXT", default_value_t = Config::default().max_text)]
    pub max_text: usize,
    /// Largest line-mode input line in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = Config::default().max_line)]
    pub max_line: usize,
    /// Messages kept per room for history.
    #[arg(long, env = "CHAT_HISTORY", default_value_t = Config::default().history)]
    pub history: usize,
    /// Messages sent when a client joins a room.
    #[arg(long, env = "CHAT_HISTORY_ON_JOIN", default_value_t = Config::default().history_on_join)]
    pub history_on_join: usize,
    /// Milliseconds a new connection may stay silent before it is greeted as a line client.
    #[arg(long, env = "CHAT_SNIFF_MS", default_value_t = 300)]
    pub sniff_ms: u64,
    /// Seconds of silence before an idle framed client is pinged.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 60)]
    pub ping_interval: u64,
    /// Seconds a pinged client has to send anything before it is dropped.
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value_t = 30)]
    pub ping_timeout: u64,
    /// Seconds from connecting to completing hello (or the nick line).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub handshake_timeout: u64,
    /// Seconds a client's writes may make no progress before it is dropped.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 30)]
    pub write_timeout: u64,
    /// Bytes a client may have waiting that the server could not yet write to it; past
    /// this it misses room messages and is told with `lagged` (at most 1 GiB; below
    /// 128 KiB counts as 128 KiB).
    #[arg(long, env = "CHAT_MAX_SENDQ", default_value_t = Config::default().max_sendq as u64,
          value_parser = clap::value_parser!(u64).range(0..=crate::path::sink::MAX_BUDGET as u64))]
    pub max_sendq: u64,
    /// A client's room messages waiting for the disk before its input is no longer read.
    #[arg(long, env = "CHAT_MAX_UNSETTLED", default_value_t = Config::default().max_unsettled)]
    pub max_unsettled: usize,
    /// Rooms kept in memory (idle empty rooms make way for new ones).
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = Config::default().max_rooms)]
    pub max_rooms: usize,
    /// Rooms one client may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CLIENT", default_value_t = Config::default().max_rooms_per_client)]
    pub max_rooms_per_client: usize,
    /// Messages (say, dm) per second per connection.
    #[arg(long, env = "CHAT_RATE", default_value_t = Config::default().rate)]
    pub rate: f64,
    /// Messages a connection may send at once before the rate applies.
    #[arg(long, env = "CHAT_BURST", default_value_t = Config::default().burst)]
    pub burst: u32,
    /// Connections in total.
    #[arg(long, env = "CHAT_MAX_CLIENTS", default_value_t = Config::default().max_clients)]
    pub max_clients: usize,
    /// Connections from one IP address.
    #[arg(long, env = "CHAT_MAX_CLIENTS_PER_IP", default_value_t = Config::default().max_clients_per_ip)]
    pub max_clients_per_ip: usize,
    /// DMs remembered to recognise a resent message id.
    #[arg(long, env = "CHAT_DM_HISTORY", default_value_t = Config::default().dm_history)]
    pub dm_history: usize,
    /// Message of the day, sent to every client on login.
    #[arg(long, env = "CHAT_MOTD")]
    pub motd: Option<String>,
    /// Shortest password an account may have, in characters.
    #[arg(long, env = "CHAT_MIN_PASSWORD_LEN", default_value_t = Config::default().min_password_len)]
    pub min_password_len: usize,
    /// Password hashes computed at once at most (each takes 19 MiB and tens of ms of CPU).
    #[arg(long, env = "CHAT_MAX_HASHING", default_value_t = Config::default().max_hashing)]
    pub max_hashing: usize,
    /// Milliseconds a client waits after a first failed login; doubled per further failure.
    #[arg(long, env = "CHAT_AUTH_BACKOFF_MS", default_value_t = 250)]
    pub auth_backoff_ms: u64,
    /// The longest wait, in seconds, given to an address that keeps failing to log in.
    #[arg(long, env = "CHAT_AUTH_MAX_WAIT_IP", default_value_t = 60)]
    pub auth_max_wait_ip: u64,
    /// The longest wait, in seconds, given to an account that others keep failing to log in
    /// to: all its owner can be made to wait.
    #[arg(long, env = "CHAT_AUTH_MAX_WAIT_ACCOUNT", default_value_t = 5)]
    pub auth_max_wait_account: u64,
    /// Addresses (and accounts) the login throttle tracks at most.
    #[arg(long, env = "CHAT_AUTH_MAX_TRACKED", default_value_t = Config::default().auth_max_tracked)]
    pub auth_max_tracked: usize,
    /// TLS certificate chain (PEM, leaf first), served on the same port as plain clients.
    /// SIGHUP reads it and --tls-key again.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// TLS with a self-signed certificate, generated on the first start into the data
    /// directory and reused after that; its SHA-256 fingerprint is logged at start.
    #[arg(long, env = "CHAT_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Refuse plain connections (they are told why): only TLS is served.
    #[arg(long, env = "CHAT_REQUIRE_TLS", requires = "tls")]
    pub require_tls: bool,
    /// Where the server keeps its own files (the self-signed certificate). Default: the
    /// directory of the history database (--db), or the default database's directory when
    /// history is not in a file.
    #[arg(long, env = "CHAT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Registered accounts with server-wide power: they may kill clients and ban addresses
    /// and accounts from the server, and act as ops in every room (once logged in).
    #[arg(
        long,
        env = "CHAT_ADMINS",
        value_delimiter = ',',
        value_name = "NICK,..."
    )]
    pub admins: Vec<String>,
    /// Longest room topic, in bytes.
    #[arg(long, env = "CHAT_MAX_TOPIC", default_value_t = Config::default().max_topic)]
    pub max_topic: usize,
    /// Bans one room keeps at most.
    #[arg(long, env = "CHAT_MAX_BANS", default_value_t = Config::default().max_bans)]
    pub max_bans: usize,
    /// Server bans kept at most.
    #[arg(long, env = "CHAT_MAX_SERVER_BANS", default_value_t = Config::default().max_server_bans)]
    pub max_server_bans: usize,
    /// Pending invitations one room keeps at most (the oldest is dropped).
    #[arg(long, env = "CHAT_MAX_INVITES", default_value_t = Config::default().max_invites)]
    pub max_invites: usize,
    /// The name the server gives itself to IRC clients (numerics, PONG, WHO, user masks).
    /// Default: the host name.
    #[arg(long, env = "CHAT_SERVER_NAME")]
    pub server_name: Option<String>,
    /// A server password IRC clients must send with PASS (otherwise PASS is ignored).
    #[arg(long, env = "CHAT_IRC_PASSWORD")]
    pub irc_password: Option<String>,
    /// Messages replayed to an IRC client on JOIN at most (default: --history-on-join).
    #[arg(long, env = "CHAT_IRC_REPLAY")]
    pub irc_replay: Option<usize>,
    /// Where shared files are kept: uploads in progress, the files (named by their SHA-256)
    /// and their records. Default: the data directory's files/, or with --db none or
    /// :memory: a temporary directory deleted at exit. `none` turns file sharing off.
    #[arg(long, env = "CHAT_FILES_DIR", value_name = "DIR")]
    pub files_dir: Option<String>,
    /// The base of the links the server gives out (uploads, downloads), as clients reach
    /// it. Default: http:// (https:// with --require-tls) and the listening address.
    #[arg(long, env = "CHAT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The largest file that may be shared, in bytes.
    #[arg(long, env = "CHAT_MAX_FILE_SIZE", default_value_t = FILES.max_file_size)]
    pub max_file_size: u64,
    /// Bytes one account may have shared and be uploading at once.
    #[arg(long, env = "CHAT_QUOTA_PER_USER", default_value_t = FILES.quota_per_user)]
    pub quota_per_user: u64,
    /// Bytes a guest (a nick without an account) may share, per connection.
    #[arg(long, env = "CHAT_GUEST_QUOTA", default_value_t = FILES.guest_quota)]
    pub guest_quota: u64,
    /// Seconds an upload slot lives; an unfinished upload is deleted after it.
    #[arg(long, env = "CHAT_UPLOAD_EXPIRY", default_value_t = 24 * 3600)]
    pub upload_expiry: u64,
    /// Shared files are deleted after this many days (0: kept).
    #[arg(long, env = "CHAT_RETAIN_FILES_DAYS", default_value_t = FILES.retain_days)]
    pub retain_files_days: u32,
    /// Upload slots one uploader may hold at once.
    #[arg(long, env = "CHAT_MAX_UPLOADS", default_value_t = FILES.max_uploads)]
    pub max_uploads: usize,
    /// Upload requests writing at once, server-wide: each holds up to 3 MiB while the disk
    /// catches up; more wait their turn (or get 503 with Retry-After).
    #[arg(long, env = "CHAT_MAX_WRITING_UPLOADS", default_value_t = FILES.max_writing)]
    pub max_writing_uploads: usize,
    /// Downloads also need `Authorization: Bearer SESSION`, the session id of a connection
    /// online now (the links alone are already unguessable).
    #[arg(long, env = "CHAT_FILES_REQUIRE_AUTH")]
    pub files_require_auth: bool,
    /// The CPU priority of file transfers, as a nice value from 0 (the chat's own) to 19
    /// (the lowest): when both want a core, the chat's deliveries get it first (Linux).
    #[arg(long, env = "CHAT_FILES_NICE", default_value_t = FILES.nice,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub files_nice: i32,
    /// The admin HTTP listener (/metrics, /healthz, /readyz, /clients, /rooms); off unless
    /// set. Keep it on a private address: it lists every client. Port 0 picks a free one.
    #[arg(long, env = "CHAT_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Cluster mode: share rooms, nicks and presence with other nodes through NATS
    /// JetStream at these servers (`nats://HOST:PORT`, comma-separated). Off unless set.
    #[arg(long, env = "CHAT_CLUSTER", value_name = "URLS", value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// This node's name in the cluster, unique among its nodes. Default: the host name and
    /// the listening port.
    #[arg(long, env = "CHAT_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// Replicas of the cluster's stream and buckets: 1 for one NATS server, 3 for a
    /// production NATS cluster of three.
    #[arg(long, env = "CHAT_CLUSTER_REPLICAS", default_value_t = 1)]
    pub cluster_replicas: usize,
    /// Seconds a node's lease lives unrenewed: a dead node's nicks and members are freed
    /// within this plus a third of it. Renewed every third of it.
    #[arg(long, env = "CHAT_CLUSTER_LEASE", default_value_t = 15)]
    pub cluster_lease: u64,
    /// Prefix of the cluster's stream and key-value buckets in NATS (letters, digits, _).
    #[arg(long, env = "CHAT_CLUSTER_PREFIX", default_value = "CHAT")]
    pub cluster_prefix: String,
    /// Log format on stderr: text, or json (one object per line).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, colour on a terminal.
    Text,
    /// For collectors: one JSON object per line.
    Json,
}

impl Args {
    /// The server's configuration these settings describe.
    pub fn config(&self) -> Config {
        let storage = match self.db.as_deref() {
            Some("none") => Storage::Memory,
            Some(path) => Storage::Sqlite(path.into()),
            None => Storage::Sqlite(crate::default_db_path()),
        };
        Config {
            storage,
            retain_days: self.retain_days,
            retain_per_room: self.retain_per_room,
            prune_interval: Duration::from_secs(self.prune_interval.max(1)),
            max_unsaved: self.max_unsaved,
            commit_interval: Duration::from_millis(self.commit_interval),
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
            max_sendq: usize::try_from(self.max_sendq).unwrap_or(usize::MAX),
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
                .unwrap_or_else(crate::host_name),
            irc_password: self.irc_password.clone(),
            irc_replay: self.irc_replay,
            files: self.files(),
            cluster: self.cluster(),
            ..Config::default()
        }
    }

    fn files(&self) -> Option<FilesConfig> {
        let ephemeral = matches!(self.db.as_deref(), Some("none" | ":memory:"));
        let (dir, temporary) = match self.files_dir.as_deref() {
            Some("none") => return None,
            Some(dir) => (PathBuf::from(dir), false),
            // Files go the way of the history: nothing of an ephemeral server stays.
            None if ephemeral => (std::env::temp_dir(), true),
            None => (self.data_dir().join("files"), false),
        };
        Some(FilesConfig {
            temporary,
            public_url: self
                .public_url
                .as_deref()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            max_file_size: self.max_file_size,
            quota_per_user: self.quota_per_user,
            guest_quota: self.guest_quota,
            upload_expiry: Duration::from_secs(self.upload_expiry.max(1)),
            retain_days: self.retain_files_days,
            max_uploads: self.max_uploads.max(1),
            max_writing: self.max_writing_uploads.max(1),
            require_auth: self.files_require_auth,
            nice: self.files_nice,
            ..FilesConfig::in_dir(dir)
        })
    }

    fn cluster(&self) -> Option<ClusterConfig> {
        let urls: Vec<String> = self
            .cluster
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let node = self
            .node
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map_or_else(
                || {
                    let port = self.listen.rsplit(':').next().unwrap_or("0");
                    format!("{}-{port}", crate::host_name())
                },
                str::to_owned,
            );
        Some(ClusterConfig {
            replicas: self.cluster_replicas.clamp(1, 5),
            lease: Duration::from_secs(self.cluster_lease.max(3)),
            prefix: self.cluster_prefix.clone(),
            ..ClusterConfig::new(urls, node)
        })
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
            Some("none" | ":memory:") | None => crate::default_db_path(),
            Some(path) => PathBuf::from(path),
        };
        match db.parent() {
            Some(dir) if dir != Path::new("") => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_queue_past_what_a_sink_can_count_is_refused_with_the_range() {
        let max = crate::path::sink::MAX_BUDGET.to_string();
        assert!(Args::try_parse_from(["chat-server", "--max-sendq", &max]).is_ok());
        let err = Args::try_parse_from(["chat-server", "--max-sendq", "1073741825"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--max-sendq") && err.contains("1073741824"),
            "{err}"
        );
    }

    #[test]
    fn the_commit_interval_is_milliseconds_up_to_a_second() {
        let args = Args::try_parse_from(["chat-server", "--commit-interval", "0"]).unwrap();
        assert_eq!(args.config().commit_interval, Duration::ZERO);
        let args = Args::try_parse_from(["chat-server"]).unwrap();
        assert_eq!(args.config().commit_interval, Duration::from_millis(20));
        let err = Args::try_parse_from(["chat-server", "--commit-interval", "1001"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--commit-interval") && err.contains("1000"),
            "{err}"
        );
    }
}
