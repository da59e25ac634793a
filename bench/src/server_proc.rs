//! The system under test: the real `chat-server` binary (or the reflector) as a child
//! process, so that its memory and CPU time are its own and can be read from `/proc`.
//!
//! A fresh process serves each workload, so one workload's leftovers (rooms, buffers, the
//! allocator's high-water mark) never colour the next one's figures.
//!
//! Layout:
//! - [`ServerHandle`]: a running target, a child process or a task in this process (the
//!   `--quick` test, which must not need a release build); stopped on drop.
//! - [`locate_server`]: finds `chat-server` next to this executable.
//! - [`server_args`]: the server's limits, relaxed for benchmarking; [`files_args`]: F1's.
//! - [`ProcSample`] / [`sample`]: RSS and CPU time of a process, from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a child may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the server under test keeps history in SQLite (its default) or only in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `--db DIR/bench.db`, a fresh database in a temporary folder.
    On,
    /// `--db none`.
    Off,
    /// As `On`, and the admin listener on, scraped as an operator's Prometheus would
    /// (`/metrics` and `/clients?sort=sendq` every second): what exposing metrics costs.
    Scraped,
}

impl Storage {
    /// The name the server's rows carry in the results: `server` is the server as shipped.
    pub fn target_name(self) -> &'static str {
        match self {
            Self::On => "server",
            Self::Off => "server-nodb",
            Self::Scraped => "server-scraped",
        }
    }
}

/// A temporary folder for one target's files (the server's database, ngIRCd's
/// configuration and log), removed on drop.
#[derive(Debug)]
pub struct DbDir(PathBuf);

impl DbDir {
    /// A new, empty folder under the system's temporary folder.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new() -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// The database file in it.
    pub fn db(&self) -> PathBuf {
        self.0.join("bench.db")
    }

    /// A file (or folder) named `name` in it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for DbDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary folder is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's flags for benchmarking: the server as shipped (issue 10), with only its
/// rate and connection limits lifted (no rate limit, room for W4's 10,000 connections and
/// W5's rooms), and the given history database (`None`: `--db none`). Everything else,
/// the room's buffering and the history sent on join included, is the server's default.
pub fn server_args(db: Option<&Path>) -> Vec<String> {
    let db = db.map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--rate",
        "1000000000",
        "--burst",
        "1000000000",
        "--max-clients",
        "20000",
        "--max-clients-per-ip",
        "20000",
        "--max-rooms",
        "20000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["--db".to_owned(), db]);
    args
}

/// F1's largest file and quota (the server's defaults are 100 MiB and 1 GiB, by issue 15's
/// own spec): room for its 1 GiB file. The only flags F1 adds to [`server_args`].
pub const F1_FILE_LIMIT: u64 = 4 << 30;

/// F1's flags on top of [`server_args`]: the files in `dir` (where the server would keep
/// them anyway, beside its database) and [`F1_FILE_LIMIT`] as the largest file and the
/// quota.
pub fn files_args(dir: &Path) -> Vec<String> {
    vec![
        "--files-dir".to_owned(),
        dir.display().to_string(),
        "--max-file-size".to_owned(),
        F1_FILE_LIMIT.to_string(),
        "--quota-per-user".to_owned(),
        F1_FILE_LIMIT.to_string(),
    ]
}

/// The in-process equivalent of [`server_args`]: the default configuration with the same
/// limits lifted; storage on is SQLite in memory.
pub fn in_process_config(storage: Storage) -> chat_server::Config {
    chat_server::Config {
        storage: match storage {
            Storage::On | Storage::Scraped => chat_server::Storage::Sqlite(":memory:".into()),
            Storage::Off => chat_server::Storage::Memory,
        },
        rate: 1e9,
        burst: u32::MAX,
        max_clients: 20_000,
        max_clients_per_ip: 100_000,
        max_rooms: 20_000,
        ..chat_server::Config::default()
    }
}

/// `chat-server` next to this executable (`target/release` when run with `cargo run
/// --release`), or `explicit`.
///
/// # Errors
/// When the binary does not exist, with the command that builds it.
pub fn locate_server(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe().context("cannot find this executable")?;
            let dir = exe.parent().context("this executable has no directory")?;
            dir.join("chat-server")
        }
    };
    if !path.is_file() {
        bail!(
            "chat-server binary not found at {}: build it first with \
             `cargo build --release -p chat-server` (or pass --server PATH)",
            path.display()
        );
    }
    Ok(path)
}

/// Resident memory and CPU time of one process at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// utime + stime.
    pub cpu: Duration,
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s CPU times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// RSS and CPU time of `pid`; `None` if it is gone or `/proc` is unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample {
        rss_kib,
        cpu: parse_stat_cpu(&stat, clock_ticks())?,
    })
}

/// utime + stime from a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may contain spaces, so fields are counted from the last `)`.
fn parse_stat_cpu(stat: &str, ticks: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let total = utime + stime;
    Some(
        Duration::from_secs(total / ticks)
            + Duration::from_nanos((total % ticks) * 1_000_000_000 / ticks),
    )
}

/// A running benchmark target.
#[derive(Debug)]
pub enum ServerHandle {
    /// A child process, killed (by its pid) on drop.
    Process(ChildServer),
    /// `chat_server::run` (or the reflector) as a task of this process; its memory and CPU
    /// cannot be told apart from the load generator's.
    InProcess {
        /// Where it listens.
        addr: SocketAddr,
        /// Dropping it stops the task.
        stop: Option<oneshot::Sender<()>>,
        /// The task.
        task: JoinHandle<()>,
    },
}

impl ServerHandle {
    /// Starts `program args…` and waits for its `listening on ADDR` line on stderr.
    ///
    /// # Errors
    /// If it cannot start, exits, or does not announce its address within 10 s.
    pub fn spawn(program: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        ChildServer::spawn(program, args, env).map(Self::Process)
    }

    /// `chat_server::run` on `127.0.0.1:0` inside this process, with `admin` as its admin
    /// listener if one is given.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub async fn in_process_server(
        storage: Storage,
        admin: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        let mut config = in_process_config(storage);
        config.admin_listener = admin.map(chat_server::AdminListener::new);
        Self::in_process_with(config).await
    }

    /// `chat_server::run` with `config` on `127.0.0.1:0` inside this process.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub async fn in_process_with(config: chat_server::Config) -> anyhow::Result<Self> {
        Self::in_process(move |listener, shutdown| async move {
            if let Err(e) = chat_server::run(listener, config, shutdown).await {
                eprintln!("chat-bench: in-process server failed: {e:#}");
            }
        })
        .await
    }

    /// The reflector on `127.0.0.1:0` inside this process.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub async fn in_process_reflector() -> anyhow::Result<Self> {
        Self::in_process(crate::reflector::serve).await
    }

    /// Binds `127.0.0.1:0` and runs `serve` on it as a task until the handle is stopped
    /// (or dropped).
    async fn in_process<F, Fut>(serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(TcpListener, futures::future::BoxFuture<'static, ()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            // Err means the handle was dropped, which also means stop.
            let _ = rx.await;
        });
        let task = tokio::spawn(serve(listener, shutdown));
        Ok(Self::InProcess {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Process(c) => c.addr,
            Self::InProcess { addr, .. } => *addr,
        }
    }

    /// The child's RSS and CPU time; `None` in process (they would include the load
    /// generator) or if `/proc` cannot be read.
    pub fn sample(&self) -> Option<ProcSample> {
        match self {
            Self::Process(c) => sample(c.child.id()),
            Self::InProcess { .. } => None,
        }
    }

    /// The child's pid, for `perf record -p`.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(c) => Some(c.child.id()),
            Self::InProcess { .. } => None,
        }
    }

    /// Stops it and waits (bounded) for it to end.
    pub async fn stop(mut self) {
        if let Self::InProcess { stop, task, .. } = &mut self {
            drop(stop.take());
            // The server's own shutdown grace is 3 s; after that the task is abandoned.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                eprintln!("chat-bench: in-process target did not stop within 5 s");
            }
        }
        // A child process is killed by ChildServer's Drop.
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Self::InProcess { task, .. } = self {
            task.abort();
        }
    }
}

/// A child process serving the benchmark; killed (by its pid) when dropped.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

/// `program args…` with no input, killed by the kernel should this process die first.
fn command(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl, which is async-signal-safe. It makes the kernel kill the child if this
    // process dies without running destructors (SIGKILL, abort), so no server outlives
    // the benchmark. (A child that changes its user id loses this; see `ngircd`.)
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

impl ChildServer {
    /// Starts `program args…` with its output appended to `log`, and waits until `addr`
    /// accepts a connection (a program that does not say where it listens, like ngIRCd).
    ///
    /// # Errors
    /// If it cannot start, exits, or does not accept within 10 s; with the log's end.
    pub(crate) fn spawn_at(
        program: &Path,
        args: &[String],
        log: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = command(program, args);
        cmd.stdout(out.try_clone()?).stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut this = Self { child, addr };
        let give_up = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = this.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its log:\n{}",
                    program.display(),
                    log_tail(log)
                );
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(this);
            }
            if std::time::Instant::now() >= give_up {
                bail!(
                    "{} did not accept connections on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                    program.display(),
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(program: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = command(program, args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stderr = child.stderr.take().context("child stderr not piped")?;
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let name = program.display().to_string();
        // What it said before its address, for the error message should it never say that.
        let startup = Arc::new(Mutex::new(Vec::<String>::new()));
        let startup_log = Arc::clone(&startup);
        // The child's stderr must be drained for its whole life, or a full pipe would block
        // its logging and with it the server. The thread ends when the child does.
        std::thread::spawn(move || {
            const MAX_SHOWN: usize = 20;
            let mut addr_tx = Some(addr_tx);
            let mut shown = 0;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = &addr_tx
                    && let Some(addr) = parse_listening(&line)
                {
                    // Err means the parent stopped waiting; nothing to tell then.
                    let _ = tx.send(addr);
                    addr_tx = None;
                    continue;
                }
                if addr_tx.is_some() {
                    let mut log = startup_log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if log.len() < MAX_SHOWN {
                        log.push(line);
                    }
                    continue;
                }
                // Warnings and errors are shown, a few at most: a flood of identical
                // warnings would bury the results.
                if (line.contains("WARN") || line.contains("ERROR")) && shown < MAX_SHOWN {
                    shown += 1;
                    eprintln!("[{name}] {line}");
                    if shown == MAX_SHOWN {
                        eprintln!("[{name}] (further log lines not shown)");
                    }
                }
            }
        });
        let mut this = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                this.addr = addr;
                Ok(this)
            }
            Err(_) => {
                let status = this.child.try_wait().ok().flatten();
                let log = startup
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .join("\n");
                bail!(
                    "{} did not print `listening on ADDR` within {START_TIMEOUT:?} \
                     (exit status: {status:?}); its output:\n{log}",
                    program.display()
                )
            }
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Err: it already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The address in a `… listening on 127.0.0.1:PORT` log line.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    // The admin listener says so first (`admin listening on ADDR`): not the chat port.
    if line.contains("admin listening on ") {
        return None;
    }
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        assert_eq!(
            parse_listening("2025-01-01T00:00:00Z  INFO chat_server: listening on 127.0.0.1:4567"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(parse_listening("starting"), None);
        assert_eq!(
            parse_listening("INFO chat_server: admin listening on 127.0.0.1:9187"),
            None
        );
    }

    #[test]
    fn parses_stat_cpu_after_the_command_name() {
        let stat = "42 (chat server) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("/proc/self readable");
        assert!(s.rss_kib > 0);
    }
}
