//! `chat-bench`: the benchmark of `chat-server` (issue 4; the server as shipped and the join
//! storm W7 since issue 10; file sharing, F1, since issue 15).
//!
//! It starts the real `chat-server` binary as a child process (so its memory and CPU time
//! can be read from `/proc`), drives it over loopback from many clients in this one process,
//! in framed, line and IRC mode, and runs the same fan-out workloads against a featureless
//! reflector in the same run (and, in IRC mode, against ngIRCd). Every server figure is
//! also given as a ratio to the reflector's (and to ngIRCd's): on a shared 2-core machine
//! the absolute numbers drift from run to run, the ratio much less.
//!
//! Layout:
//! - [`Options`] / [`run`]: which workloads, modes and targets; runs them in order, each on
//!   a freshly started target.
//! - [`server_proc`]: the target process (or in-process task), `/proc` sampling.
//! - [`reflector`]: the reference reflector.
//! - [`ngircd`]: ngIRCd as the reference IRC server (`--ngircd`).
//! - [`scrape`]: an operator's scraper of the admin listener (`--scrape`).
//! - [`client`]: the load clients, all three wire modes.
//! - [`workloads`]: the workloads, W1–W7 and F1 (a 1 GiB file shared and downloaded while a
//!   room chats).
//! - [`soak`]: rounds of churn and chatter, checking that descriptors and memory return.
//! - [`cluster`]: `--cluster` (issue 16), W1 and W3 over 1, 2 and 3 `chat-server
//!   --cluster` nodes sharing one `nats-server`, beside the single node.
//! - [`stats`]: counters, latency histograms, the load generator's own CPU time.
//! - [`report`]: the table, JSON lines, ratios and targets; `--cluster`'s report.
//!
//! The server runs with its default flags except the rate and connection limits (see
//! [`server_proc::server_args`]), as a user would run it; for F1 also the largest file and
//! the quota, which are 100 MiB and 1 GiB by default ([`server_proc::files_args`]).

pub mod client;
pub mod cluster;
pub mod ngircd;
pub mod reflector;
pub mod report;
pub mod scrape;
pub mod server_proc;
pub mod soak;
pub mod stats;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

pub use client::Mode;
pub use report::Outcome;
pub use server_proc::{DbDir, ServerHandle, Storage};
pub use workloads::{Scale, Workload};

use workloads::{Params, TargetKind};

/// The server's log filter: the `listening on` line, warnings, and not one line per login.
pub(crate) const SERVER_LOG: &str = "warn,chat_server=info,chat_server::session=warn";

/// The server under test.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// The `chat-server` binary at this path, as a child process.
    Binary(PathBuf),
    /// `chat_server::run` in this process (no RSS or CPU figures).
    InProcess,
}

/// The reference reflector.
#[derive(Debug, Clone)]
pub enum ReflectorSpec {
    /// This executable, re-run as `chat-bench reflector --listen 127.0.0.1:0`.
    Process(PathBuf),
    /// A task in this process (no RSS or CPU figures).
    InProcess,
    /// Not run; no ratios.
    Off,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workloads, run in this order.
    pub workloads: Vec<Workload>,
    /// Wire modes the server is driven in (the reflector speaks line mode only).
    pub modes: Vec<Mode>,
    /// ngIRCd, run on W1–W4 beside the server's IRC mode, each round right before it.
    pub ngircd: Option<PathBuf>,
    /// Full size or the smoke test.
    pub scale: Scale,
    /// Overrides each workload's sending time.
    pub duration: Option<Duration>,
    /// W1's in-flight messages per sender.
    pub window: u64,
    /// The server.
    pub server: ServerSpec,
    /// The reflector.
    pub reflector: ReflectorSpec,
    /// The server with its history database, without, or both (the cost of storage).
    pub storage: Vec<Storage>,
    /// Runs of each server case. With storage on and off, the two alternate, so that both
    /// see the same drift of a shared machine; the verdicts use medians.
    pub repeat: usize,
    /// Overrides F1's file size, in bytes (a multiple of 8; a profile needs a smaller one).
    pub file_size: Option<u64>,
}

/// W1's default window: each of the 4 senders has at most 128 messages that some member has
/// not received yet (issue 10's burst is 4 senders with 256 each: `--window 256`).
pub const DEFAULT_WINDOW: u64 = 128;

impl Options {
    /// The `--quick` smoke test: tiny workloads, everything in this process, all three
    /// modes, no ngIRCd.
    pub fn quick() -> Self {
        Self {
            workloads: Workload::ALL.to_vec(),
            modes: vec![Mode::Line, Mode::Framed, Mode::Irc],
            ngircd: None,
            scale: Scale::Quick,
            duration: None,
            window: DEFAULT_WINDOW,
            server: ServerSpec::InProcess,
            reflector: ReflectorSpec::InProcess,
            storage: vec![Storage::On, Storage::Off],
            repeat: 1,
            file_size: None,
        }
    }
}

/// Runs every selected workload: against the reflector first (W1–W4), then the server in
/// each mode (in IRC mode after ngIRCd, W1–W4, when `opts.ngircd` is set); `on_outcome`
/// sees each result as soon as it is complete (ratios included).
///
/// # Errors
/// A target that does not start, or a workload that fails (a login refused, a socket error).
pub async fn run(
    opts: &Options,
    mut on_outcome: impl FnMut(&Outcome),
) -> anyhow::Result<Vec<Outcome>> {
    // 10,000 idle connections (W4) need as many descriptors; the usual soft limit is 1024.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat-bench: could not raise the file descriptor limit: {e}");
    }
    let mut outcomes = Vec::new();
    for &w in &opts.workloads {
        let mut params = Params::of(w, opts.scale, opts.duration, opts.window);
        if let Some(bytes) = opts.file_size {
            params.file_size = bytes;
        }
        if w.framed_only() {
            // F1: the server as shipped, in framed mode, whatever --mode and --storage say.
            for _ in 0..opts.repeat.max(1) {
                let (target, beside, files) = start_files_server(&opts.server).await?;
                if let Some(pid) = target.pid() {
                    eprintln!("chat-bench: {} server framed: pid {pid}", w.name());
                }
                let out = workloads::files(&params, &target, &files)
                    .await
                    .with_context(|| format!("{} on the server", w.name()))?;
                target.stop().await;
                drop(beside);
                on_outcome(&out);
                outcomes.push(out);
            }
            continue;
        }
        let mut reference: Option<Outcome> = None;
        let reflector = w.on_reflector() && !matches!(opts.reflector, ReflectorSpec::Off);
        // Round after round: the reflector first, then storage on and off side by side, mode
        // by mode, so what is compared runs minutes apart at most, and each round's ratios are
        // to its own reflector (this machine drifts over a run). In IRC mode ngIRCd runs first
        // in each mode's turn, and the server's IRC results of that round are compared to it.
        let ngircd = opts.ngircd.as_deref().filter(|_| w.on_ngircd());
        let cases = (0..opts.repeat.max(1)).flat_map(|_| {
            let round = opts.modes.iter().flat_map(move |&mode| {
                let reference = (mode == Mode::Irc && ngircd.is_some()).then_some(Case::Ngircd);
                reference.into_iter().chain(
                    opts.storage
                        .iter()
                        .map(move |&storage| Case::Server(mode, storage)),
                )
            });
            reflector
                .then_some(Case::Reflector)
                .into_iter()
                .chain(round)
        });
        let mut irc_reference: Option<Outcome> = None;
        for case in cases {
            let (kind, mode) = match case {
                Case::Reflector => {
                    let target = start_reflector(&opts.reflector).await?;
                    if let Some(pid) = target.pid() {
                        eprintln!("chat-bench: {} reflector line: pid {pid}", w.name());
                    }
                    let out =
                        workloads::run(w, &params, &target, TargetKind::Reflector, Mode::Line)
                            .await
                            .with_context(|| format!("{} on the reflector", w.name()))?;
                    target.stop().await;
                    on_outcome(&out);
                    reference = Some(out.clone());
                    outcomes.push(out);
                    continue;
                }
                Case::Server(mode, storage) => (TargetKind::Server(storage), mode),
                Case::Ngircd => (TargetKind::Ngircd, Mode::Irc),
            };
            let (target, mut beside) = match (case, ngircd) {
                (Case::Server(_, storage), _) => start_server(&opts.server, storage).await?,
                (Case::Ngircd, Some(program)) => {
                    let (t, dir) = ngircd::start(program)
                        .with_context(|| format!("starting ngIRCd for {}", w.name()))?;
                    (t, Beside::folder(dir))
                }
                // Run above.
                (Case::Reflector, _) | (Case::Ngircd, None) => continue,
            };
            if let Some(pid) = target.pid() {
                // For `perf record -p PID` while it runs.
                eprintln!(
                    "chat-bench: {} {} {}: pid {pid}",
                    w.name(),
                    kind.name(),
                    mode.name()
                );
            }
            let mut out = workloads::run(w, &params, &target, kind, mode)
                .await
                .with_context(|| {
                    format!("{} on the {}, {} mode", w.name(), kind.name(), mode.name())
                })?;
            beside.scraper = None;
            target.stop().await;
            // IRC mode's W1 runs with a window of its own (`client::IRC_WINDOW`), the
            // reflector's with `--window`: no ratio between those.
            let same_shape = !(mode == Mode::Irc && w == Workload::W1);
            if let Some(r) = reference.as_ref().filter(|_| same_shape) {
                out.compare(r);
            }
            match kind {
                TargetKind::Ngircd => irc_reference = Some(out.clone()),
                _ if mode == Mode::Irc => {
                    if let Some(r) = &irc_reference {
                        out.compare_ngircd(r);
                    }
                }
                _ => {}
            }
            on_outcome(&out);
            outcomes.push(out);
        }
    }
    Ok(outcomes)
}

/// Soaks a freshly started server in each of `modes`: a warm-up round, then `rounds` rounds
/// of `round`; `on_report` sees each mode's report as soon as it is complete.
///
/// # Errors
/// A server that does not start, or a round that fails.
pub async fn run_soak(
    server: &ServerSpec,
    modes: &[Mode],
    scale: Scale,
    round: std::time::Duration,
    rounds: usize,
    mut on_report: impl FnMut(&soak::SoakReport),
) -> anyhow::Result<Vec<soak::SoakReport>> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat-bench: could not raise the file descriptor limit: {e}");
    }
    let mut reports = Vec::new();
    for &mode in modes {
        // The server as shipped: with its history database.
        let (target, _beside) = start_server(server, Storage::On).await?;
        let report = soak::soak(&target, mode, scale, round, rounds)
            .await
            .with_context(|| format!("soak in {} mode", mode.name()))?;
        target.stop().await;
        on_report(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// One run of a workload after the reflector's.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// The reflector (line mode), which each round's ratios are to.
    Reflector,
    /// The server in this mode.
    Server(Mode, Storage),
    /// ngIRCd (IRC mode).
    Ngircd,
}

/// What lives beside a started target, as long as it runs: its folder (the server's
/// database, ngIRCd's files) and, for [`Storage::Scraped`], the scraper (dropped before the
/// target is stopped, so it never reports the stop as a failure).
#[derive(Debug, Default)]
struct Beside {
    _folder: Option<DbDir>,
    scraper: Option<scrape::Scraper>,
}

impl Beside {
    fn folder(dir: DbDir) -> Self {
        Self {
            _folder: Some(dir),
            scraper: None,
        }
    }
}

/// Starts the server; with storage on, in a fresh database folder that lives as long as the
/// returned guard (drop it after stopping the server); scraped, with its admin listener on
/// a free port and a scraper on it.
async fn start_server(
    spec: &ServerSpec,
    storage: Storage,
) -> anyhow::Result<(ServerHandle, Beside)> {
    let admin = match storage {
        Storage::Scraped => Some(std::net::TcpListener::bind("127.0.0.1:0")?),
        Storage::On | Storage::Off => None,
    };
    let admin_addr = admin
        .as_ref()
        .map(std::net::TcpListener::local_addr)
        .transpose()?;
    let (handle, folder) = match spec {
        ServerSpec::Binary(path) => {
            let dir = match storage {
                Storage::On | Storage::Scraped => Some(DbDir::new()?),
                Storage::Off => None,
            };
            let mut args = server_proc::server_args(dir.as_ref().map(DbDir::db).as_deref());
            if let Some(addr) = admin_addr {
                // Free again for the server to bind: nothing else on loopback takes it
                // in between.
                drop(admin);
                args.extend(["--admin-listen".to_owned(), addr.to_string()]);
            }
            let handle = ServerHandle::spawn(path, &args, &[("RUST_LOG", SERVER_LOG)])?;
            (handle, dir)
        }
        ServerSpec::InProcess => (ServerHandle::in_process_server(storage, admin).await?, None),
    };
    Ok((
        handle,
        Beside {
            _folder: folder,
            scraper: admin_addr.map(scrape::Scraper::start),
        },
    ))
}

/// Starts the server as shipped (storage on) with file sharing in a fresh folder's
/// `files/` (where the server would keep them anyway, beside its database, under the
/// system's temporary folder), and room for F1's file ([`server_proc::files_args`]).
/// Returns the folder's guard and the files' folder.
async fn start_files_server(spec: &ServerSpec) -> anyhow::Result<(ServerHandle, Beside, PathBuf)> {
    let dir = DbDir::new()?;
    let files = dir.join("files");
    let handle = match spec {
        ServerSpec::Binary(path) => {
            let mut args = server_proc::server_args(Some(&dir.db()));
            args.extend(server_proc::files_args(&files));
            ServerHandle::spawn(path, &args, &[("RUST_LOG", SERVER_LOG)])?
        }
        ServerSpec::InProcess => {
            let mut config = server_proc::in_process_config(Storage::On);
            config.files = Some(chat_server::FilesConfig {
                max_file_size: server_proc::F1_FILE_LIMIT,
                quota_per_user: server_proc::F1_FILE_LIMIT,
                ..chat_server::FilesConfig::in_dir(files.clone())
            });
            ServerHandle::in_process_with(config).await?
        }
    };
    Ok((handle, Beside::folder(dir), files))
}

async fn start_reflector(spec: &ReflectorSpec) -> anyhow::Result<ServerHandle> {
    match spec {
        ReflectorSpec::Process(exe) => ServerHandle::spawn(
            exe,
            &["reflector".into(), "--listen".into(), "127.0.0.1:0".into()],
            &[],
        ),
        ReflectorSpec::InProcess | ReflectorSpec::Off => ServerHandle::in_process_reflector().await,
    }
}

/// One paragraph about this machine, for the report: CPU, cores, memory, kernel.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.1}", kib / 1024.0 / 1024.0));
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "{model}, {cores} CPUs, {mem_gib} GiB RAM, Linux {}",
        kernel.trim()
    )
}
