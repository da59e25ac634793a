//! The workloads, W1–W7 and F1, each against one target in one wire mode.
//!
//! Every workload follows the same discipline so that loss can be counted exactly: all
//! receivers are confirmed members before the first message is sent (the login waits for
//! the server's own confirmation of the join), senders stop at a deadline and report how
//! many messages they wrote, and the run ends only when the expected deliveries arrived or
//! nothing more arrived for a while (bounded). W7's joiners, who join while messages flow,
//! are the exception: they measure latency and `lagged`, and loss is counted only for the
//! members that were there before the first send.
//!
//! The server runs with its defaults, so every join also replays up to 50 messages of the
//! room's history; those are never counted as deliveries (see `client`).
//!
//! Layout:
//! - [`Workload`], [`Scale`], [`Params`]: what runs, full size or `--quick`.
//! - [`run`]: one workload against one target.
//! - `fan_out` (W1–W3), `idle_memory` (W4), `many_rooms` (W5), `churn` (W6),
//!   `join_storm` (W7).
//! - [`files`] (F1, in `transfer`): a file shared and downloaded while a room chats.
//! - `Meter`: wall time, server and load-generator CPU over the measured interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

use crate::client::{
    self, AckRole, Acks, Conn, Cross, During, Login, Mode, Pace, SendPlan, Tap, Wake, ns_at,
};
use crate::report::{Churn, Idle, Outcome, Storm};
use crate::server_proc::{ProcSample, ServerHandle, Storage};
use crate::stats::{LocalHist, Span, Tally, loadgen_cpu, merged_latency};

mod transfer;

/// The workloads of issue 4, and issue 10's join storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Fan-out: 100 receivers, 4 windowed senders, as fast as the server takes it.
    W1,
    /// Big room: 1000 receivers, 4 senders, 1000 messages/s in total.
    W2,
    /// Latency: 500 receivers, 10 senders, 200 messages/s in total.
    W3,
    /// Idle memory: 10,000 logged-in connections, in rooms of 100.
    W4,
    /// Many rooms: 200 rooms of 10 members, all chatting.
    W5,
    /// Churn: connect, log in, join, quit, as fast as possible, next to a busy room.
    W6,
    /// Join storm: 1000 clients join one room at once while 4 senders talk in it.
    W7,
    /// Files (issue 15): 1 GiB uploaded with tus and downloaded again, while a room of 100
    /// chats as in W3 (framed mode only, the server as shipped only).
    F1,
}

impl Workload {
    /// All eight, in order.
    pub const ALL: [Workload; 8] = [
        Self::W1,
        Self::W2,
        Self::W3,
        Self::W4,
        Self::W5,
        Self::W6,
        Self::W7,
        Self::F1,
    ];

    /// `W1` … `W7`, `F1`.
    pub fn name(self) -> &'static str {
        match self {
            Self::W1 => "W1",
            Self::W2 => "W2",
            Self::W3 => "W3",
            Self::W4 => "W4",
            Self::W5 => "W5",
            Self::W6 => "W6",
            Self::W7 => "W7",
            Self::F1 => "F1",
        }
    }

    /// Parses `W1` (or `w1`, `1`), `F1` (or `f1`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let name = if s.starts_with(|c: char| c.is_ascii_digit()) {
            format!("W{s}")
        } else {
            s.to_ascii_uppercase()
        };
        Self::ALL.iter().copied().find(|w| w.name() == name)
    }

    /// Whether it runs once, in framed mode, on the server as shipped (`F1`: a file is
    /// shared the same way in every mode, and storage off has no accounts to upload with).
    pub fn framed_only(self) -> bool {
        self == Self::F1
    }

    /// Whether the reflector runs it too: it has no rooms, so only W1–W4.
    pub fn on_reflector(self) -> bool {
        matches!(self, Self::W1 | Self::W2 | Self::W3 | Self::W4)
    }

    /// Whether ngIRCd runs it too (with `--ngircd`, in IRC mode): W1–W4, the workloads
    /// the reflector runs.
    pub fn on_ngircd(self) -> bool {
        self.on_reflector()
    }
}

/// Full size, or the seconds-long smoke test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The sizes of issue 4.
    Full,
    /// Tiny versions of every workload (`--quick`, the test suite).
    Quick,
}

/// Sizes and rates of one workload.
#[derive(Debug, Clone)]
pub struct Params {
    /// Receiving connections (W1–W3, W6's busy room, W7's members before the storm).
    pub receivers: usize,
    /// Sending connections.
    pub senders: usize,
    /// Messages per second over all senders; `None`: windowed, as fast as possible.
    pub rate: Option<f64>,
    /// W1's in-flight messages per sender.
    pub window: u64,
    /// How long senders send (W4: how long the connections are held before measuring).
    pub duration: Duration,
    /// W4's connections.
    pub idle: usize,
    /// W4's members per room.
    pub idle_room: usize,
    /// W5's rooms and members per room.
    pub rooms: usize,
    /// W5's members per room.
    pub members: usize,
    /// W5's messages per second per member.
    pub member_rate: f64,
    /// W6's concurrent churning clients.
    pub churners: usize,
    /// W7's clients that join at once.
    pub joiners: usize,
    /// Logins in flight at once.
    pub login_concurrency: usize,
    /// Bytes of text per message.
    pub text_len: usize,
    /// F1's file, in bytes (a multiple of 8).
    pub file_size: u64,
    /// F1's bytes per PATCH (a multiple of 8).
    pub chunk: u64,
}

impl Params {
    /// The parameters of `w` at `scale`; `duration` overrides the default.
    pub fn of(w: Workload, scale: Scale, duration: Option<Duration>, window: u64) -> Self {
        let quick = scale == Scale::Quick;
        let base = Self {
            receivers: 0,
            senders: 0,
            rate: None,
            window,
            duration: if quick {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(10)
            },
            idle: 0,
            idle_room: 100,
            rooms: 0,
            members: 0,
            member_rate: 0.0,
            churners: 0,
            joiners: 0,
            login_concurrency: if quick { 16 } else { 64 },
            text_len: 64,
            file_size: 0,
            chunk: 0,
        };
        let mut p = match (w, quick) {
            (Workload::W1, false) => Self {
                receivers: 100,
                senders: 4,
                ..base
            },
            (Workload::W1, true) => Self {
                receivers: 10,
                senders: 2,
                window: window.min(16),
                ..base
            },
            (Workload::W2, false) => Self {
                receivers: 1000,
                senders: 4,
                rate: Some(1000.0),
                ..base
            },
            (Workload::W2, true) => Self {
                receivers: 20,
                senders: 2,
                rate: Some(200.0),
                ..base
            },
            (Workload::W3, false) => Self {
                receivers: 500,
                senders: 10,
                rate: Some(200.0),
                ..base
            },
            (Workload::W3, true) => Self {
                receivers: 10,
                senders: 2,
                rate: Some(100.0),
                ..base
            },
            (Workload::W4, false) => Self {
                idle: 10_000,
                duration: Duration::from_secs(2),
                login_concurrency: 128,
                ..base
            },
            (Workload::W4, true) => Self {
                idle: 100,
                duration: Duration::from_millis(200),
                ..base
            },
            (Workload::W5, false) => Self {
                rooms: 200,
                members: 10,
                member_rate: 5.0,
                ..base
            },
            (Workload::W5, true) => Self {
                rooms: 5,
                members: 4,
                member_rate: 20.0,
                ..base
            },
            (Workload::W6, false) => Self {
                receivers: 50,
                senders: 2,
                rate: Some(500.0),
                churners: 8,
                ..base
            },
            (Workload::W6, true) => Self {
                receivers: 5,
                senders: 1,
                rate: Some(100.0),
                churners: 2,
                ..base
            },
            (Workload::W7, false) => Self {
                receivers: 50,
                senders: 4,
                rate: Some(200.0),
                joiners: 1000,
                ..base
            },
            (Workload::W7, true) => Self {
                receivers: 5,
                senders: 1,
                rate: Some(100.0),
                joiners: 50,
                ..base
            },
            // A room of 100, at W3's rate; 64 PATCHes of 16 MiB.
            (Workload::F1, false) => Self {
                receivers: 90,
                senders: 10,
                rate: Some(200.0),
                file_size: 1 << 30,
                chunk: 16 << 20,
                ..base
            },
            // The last PATCH is a short one.
            (Workload::F1, true) => Self {
                receivers: 8,
                senders: 2,
                rate: Some(100.0),
                file_size: (5 << 20) + 24,
                chunk: 2 << 20,
                ..base
            },
        };
        if let Some(d) = duration {
            p.duration = d;
        }
        p
    }
}

/// Which implementation a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `chat-server`, with or without its history database.
    Server(Storage),
    /// The reference reflector (line mode only).
    Reflector,
    /// ngIRCd, the reference IRC server (IRC mode only).
    Ngircd,
    /// `chat-server --cluster` on this many nodes sharing one NATS server (`--cluster`).
    Cluster(usize),
}

/// The most nodes a `--cluster` run starts.
pub const MAX_NODES: usize = 8;

impl TargetKind {
    /// `server`, `server-nodb`, `reflector`, `ngircd`, `cluster-1` … `cluster-8`.
    pub fn name(self) -> &'static str {
        const CLUSTER: [&str; MAX_NODES] = [
            "cluster-1",
            "cluster-2",
            "cluster-3",
            "cluster-4",
            "cluster-5",
            "cluster-6",
            "cluster-7",
            "cluster-8",
        ];
        match self {
            Self::Server(storage) => storage.target_name(),
            Self::Reflector => "reflector",
            Self::Ngircd => "ngircd",
            Self::Cluster(n) => CLUSTER
                .get(n.saturating_sub(1))
                .copied()
                .unwrap_or("cluster"),
        }
    }
}

/// The processes one workload's clients are spread over: one server, or the nodes of a
/// cluster (`--cluster`), and what else is metered beside them (the cluster's NATS server).
#[derive(Debug, Clone)]
pub struct Spread<'a> {
    /// Client `k` of the workload (receivers first, then senders) connects to node
    /// `k % nodes.len()`: round-robin.
    pub nodes: Vec<&'a ServerHandle>,
    /// Metered on its own (`broker_*`), not in the server's figures.
    pub broker: Option<&'a ServerHandle>,
}

impl<'a> Spread<'a> {
    /// One target, nothing beside it.
    pub fn one(target: &'a ServerHandle) -> Self {
        Self {
            nodes: vec![target],
            broker: None,
        }
    }

    /// Where each node listens.
    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    /// The node client `k` connects to.
    fn node_of(&self, k: usize) -> usize {
        k % self.nodes.len().max(1)
    }
}

/// Runs `w` against `target`, which was started fresh for it.
///
/// # Errors
/// A client that cannot log in, or a sender whose socket fails.
pub async fn run(
    w: Workload,
    params: &Params,
    target: &ServerHandle,
    kind: TargetKind,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let mut params = params.clone();
    if mode == Mode::Irc {
        params.window = params.window.min(client::IRC_WINDOW);
    }
    if kind == TargetKind::Ngircd {
        params.login_concurrency = params
            .login_concurrency
            .min(crate::ngircd::LOGIN_CONCURRENCY);
    }
    let params = &params;
    let mut out = match w {
        Workload::W1 | Workload::W2 | Workload::W3 => {
            fan_out(params, &Spread::one(target), mode).await?
        }
        Workload::W4 => idle_memory(params, target, mode).await?,
        Workload::W5 => many_rooms(params, target, mode).await?,
        Workload::W6 => churn(params, target, mode).await?,
        Workload::W7 => join_storm(params, target, mode).await?,
        Workload::F1 => bail!("F1 needs its files folder: run it with `files`"),
    };
    out.workload = w.name();
    out.target = kind.name();
    out.mode = mode.name();
    Ok(out)
}

/// W1–W3 with their clients spread round-robin over `spread`'s nodes (`--cluster`); the
/// outcome's server figures are the nodes' together, `broker_*` the broker's, and with
/// more than one node `cross_latency` is that of the deliveries whose sender was on
/// another node than their receiver.
///
/// # Errors
/// Another workload, a client that cannot log in, or a sender whose socket fails.
pub async fn run_spread(
    w: Workload,
    params: &Params,
    spread: &Spread<'_>,
    kind: TargetKind,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let mut params = params.clone();
    if mode == Mode::Irc {
        params.window = params.window.min(client::IRC_WINDOW);
    }
    let mut out = match w {
        Workload::W1 | Workload::W2 | Workload::W3 => fan_out(&params, spread, mode).await?,
        _ => bail!("{} does not run spread over nodes: only W1–W3 do", w.name()),
    };
    out.workload = w.name();
    out.target = kind.name();
    out.mode = mode.name();
    out.nodes = Some(spread.nodes.len());
    Ok(out)
}

/// F1 against `target`, a server sharing files in `files_dir` (framed mode, the server as
/// shipped).
///
/// # Errors
/// A client that cannot log in, a refused upload, a download that does not match.
pub async fn files(
    params: &Params,
    target: &ServerHandle,
    files_dir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let mut out = transfer::transfer(params, target, files_dir).await?;
    out.workload = Workload::F1.name();
    out.target = TargetKind::Server(Storage::On).name();
    out.mode = Mode::Framed.name();
    Ok(out)
}

/// Wall time and CPU over the measured interval.
struct Meter {
    t0: Instant,
    server0: Option<ProcSample>,
    broker0: Option<ProcSample>,
    gen0: Duration,
}

/// What [`Meter::stop`] read.
struct Usage {
    wall: Duration,
    server: Option<ProcSample>,
    server_cpu: Option<Duration>,
    broker: Option<ProcSample>,
    broker_cpu: Option<Duration>,
    gen_cpu: Duration,
}

/// The nodes' RSS and CPU time added up; `None` if any cannot be read.
fn sample_all(nodes: &[&ServerHandle]) -> Option<ProcSample> {
    nodes.iter().try_fold(ProcSample::default(), |sum, n| {
        let s = n.sample()?;
        Some(ProcSample {
            rss_kib: sum.rss_kib + s.rss_kib,
            cpu: sum.cpu + s.cpu,
        })
    })
}

fn cpu_between(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(b.cpu.saturating_sub(a.cpu)),
        _ => None,
    }
}

impl Meter {
    fn start(target: &ServerHandle) -> Self {
        Self::start_spread(&Spread::one(target))
    }

    fn start_spread(spread: &Spread<'_>) -> Self {
        Self {
            t0: Instant::now(),
            server0: sample_all(&spread.nodes),
            broker0: spread.broker.and_then(ServerHandle::sample),
            gen0: loadgen_cpu(),
        }
    }

    fn stop(&self, target: &ServerHandle, end: Instant) -> Usage {
        self.stop_spread(&Spread::one(target), end)
    }

    fn stop_spread(&self, spread: &Spread<'_>, end: Instant) -> Usage {
        let server = sample_all(&spread.nodes);
        let broker = spread.broker.and_then(ServerHandle::sample);
        Usage {
            wall: end.saturating_duration_since(self.t0),
            server_cpu: cpu_between(self.server0, server),
            server,
            broker_cpu: cpu_between(self.broker0, broker),
            broker,
            gen_cpu: loadgen_cpu().saturating_sub(self.gen0),
        }
    }

    fn fill(usage: &Usage, out: &mut Outcome) {
        let wall = usage.wall.as_secs_f64().max(1e-9);
        out.wall_s = wall;
        out.server_rss_kib = usage.server.map(|s| s.rss_kib);
        out.server_cpu_pct = usage.server_cpu.map(|c| 100.0 * c.as_secs_f64() / wall);
        out.broker_rss_kib = usage.broker.map(|s| s.rss_kib);
        out.broker_cpu_pct = usage.broker_cpu.map(|c| 100.0 * c.as_secs_f64() / wall);
        out.loadgen_cpu_pct = 100.0 * usage.gen_cpu.as_secs_f64() / wall;
    }
}

/// Logs in every `login`, `concurrency` at a time, handing each connection to `ready` as
/// soon as it is confirmed (so receivers read from the start and never back up the server
/// during setup).
async fn login_all<T>(
    addr: SocketAddr,
    mode: Mode,
    logins: Vec<Login>,
    concurrency: usize,
    ready: impl FnMut(usize, Conn) -> T,
) -> anyhow::Result<Vec<T>> {
    login_spread(&[addr], 0, mode, logins, concurrency, ready).await
}

/// [`login_all`] over several nodes, round-robin: login `i` connects to
/// `addrs[(first + i) % addrs.len()]`.
async fn login_spread<T>(
    addrs: &[SocketAddr],
    first: usize,
    mode: Mode,
    logins: Vec<Login>,
    concurrency: usize,
    mut ready: impl FnMut(usize, Conn) -> T,
) -> anyhow::Result<Vec<T>> {
    let Some(&only) = addrs.first() else {
        bail!("no node to log in to");
    };
    let addr_of = |i: usize| {
        addrs
            .get((first + i) % addrs.len())
            .copied()
            .unwrap_or(only)
    };
    let mut results = Vec::with_capacity(logins.len());
    let mut stream = futures::stream::iter(logins.into_iter().enumerate().map(|(i, login)| {
        let addr = addr_of(i);
        async move { client::connect(addr, mode, &login).await.map(|c| (i, c)) }
    }))
    .buffered(concurrency.max(1));
    while let Some((i, conn)) = stream.try_next().await? {
        results.push(ready(i, conn));
    }
    Ok(results)
}

/// Waits until `tally` has `expected` deliveries, or none arrived for `quiet` (bounded by
/// `limit`); returns when the last delivery was seen.
async fn drain(tally: &Tally, expected: u64, quiet: Duration, limit: Duration) -> Instant {
    let give_up = Instant::now() + limit;
    let mut last = tally.delivered();
    let mut last_change = Instant::now();
    loop {
        if last >= expected {
            return Instant::now();
        }
        sleep(Duration::from_millis(1)).await;
        let now = Instant::now();
        let seen = tally.delivered();
        if seen != last {
            last = seen;
            last_change = now;
        } else if now.duration_since(last_change) >= quiet || now >= give_up {
            return last_change;
        }
    }
}

/// Quiet period after which a drain stops waiting.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// Longest drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Connects `count` senders: each keeps reading (framed mode echoes its own messages,
/// which are its acknowledgements) and hands back its write half.
async fn connect_senders(
    addr: SocketAddr,
    mode: Mode,
    logins: Vec<Login>,
    params: &Params,
    taps: impl Fn(usize) -> Tap,
    readers: &mut JoinSet<()>,
) -> anyhow::Result<Vec<OwnedWriteHalf>> {
    connect_senders_spread(&[addr], 0, mode, logins, params, taps, readers).await
}

/// [`connect_senders`] over several nodes, round-robin from client `first` on (see
/// [`login_spread`]).
async fn connect_senders_spread(
    addrs: &[SocketAddr],
    first: usize,
    mode: Mode,
    logins: Vec<Login>,
    params: &Params,
    taps: impl Fn(usize) -> Tap,
    readers: &mut JoinSet<()>,
) -> anyhow::Result<Vec<OwnedWriteHalf>> {
    login_spread(
        addrs,
        first,
        mode,
        logins,
        params.login_concurrency,
        |i, conn| {
            let (rd, wr) = conn.stream.into_split();
            readers.spawn(client::receive(rd, conn.inbuf, mode, taps(i)));
            wr
        },
    )
    .await
}

/// Starts one send task per writer and returns their total, bounded in time, and the
/// writers, which the caller drops (a half-close, which ends the session) only after the
/// drain.
async fn run_senders(
    writers: Vec<OwnedWriteHalf>,
    mode: Mode,
    plans: Vec<SendPlan>,
) -> anyhow::Result<(u64, Vec<OwnedWriteHalf>)> {
    let mut set = JoinSet::new();
    let until = plans
        .iter()
        .map(|p| p.until)
        .max()
        .unwrap_or_else(Instant::now);
    for (mut wr, plan) in writers.into_iter().zip(plans) {
        set.spawn(async move {
            let sent = client::send(&mut wr, mode, &plan).await;
            (sent, wr)
        });
    }
    let mut total = 0;
    let mut keep = Vec::new();
    // A sender blocked on a full socket past the deadline means a stuck server.
    let bound = until + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(bound, set.join_next()).await {
            Ok(Some(joined)) => {
                let (sent, wr) = joined.context("sender task failed")?;
                total += sent.context("sender socket failed")?;
                keep.push(wr);
            }
            Ok(None) => break,
            Err(_) => bail!("senders still blocked 30 s after their deadline"),
        }
    }
    Ok((total, keep))
}

/// A receiver's tap: it counts every delivery and its latency, and takes no part in a
/// window.
fn receiver_tap(i: usize, tally: &Arc<Tally>) -> Tap {
    Tap {
        me: None,
        count: true,
        ack: None,
        tally: Arc::clone(tally),
        shard: i,
        during: None,
        cross: None,
        own: None,
    }
}

/// A sender's tap: it counts deliveries only where `count` (W5's members both send and
/// receive), and takes no part in a window.
fn sender_tap(i: usize, count: bool, tally: &Arc<Tally>) -> Tap {
    Tap {
        me: Some(u32::try_from(i).unwrap_or(u32::MAX)),
        count,
        ack: None,
        tally: Arc::clone(tally),
        shard: i,
        during: None,
        cross: None,
        own: None,
    }
}

/// `params.senders` senders into `room` at `rate` messages/s in total, spread evenly.
fn paced_plans(
    params: &Params,
    room: &str,
    rate: f64,
    start: Instant,
    until: Instant,
) -> Vec<SendPlan> {
    let interval = Duration::from_secs_f64(params.senders as f64 / rate);
    (0..params.senders)
        .map(|i| SendPlan {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            room: room.into(),
            pace: Pace::staggered(interval, start, i, params.senders),
            until,
            text_len: params.text_len,
        })
        .collect()
}

/// W1–W3: one room (`lobby`), `receivers` receivers, `senders` senders, windowed (W1) or
/// paced (W2, W3). Over several nodes, client `k` (the receivers, then the senders) is on
/// node `k % nodes`, and the deliveries from a sender on another node are also recorded on
/// their own (`cross_latency`).
async fn fan_out(params: &Params, spread: &Spread<'_>, mode: Mode) -> anyhow::Result<Outcome> {
    let addrs = spread.addrs();
    let tally = Arc::new(Tally::default());
    let cross_tally = Arc::new(Tally::default());
    let sender_node: Arc<[usize]> = (0..params.senders)
        .map(|j| spread.node_of(params.receivers + j))
        .collect();
    let several = spread.nodes.len() > 1;
    // Every receiver is an observer; in framed mode the senders are too (they receive
    // every message, their own included). In line and IRC mode they never see their own.
    let observers = params.receivers + if mode.echoes_own() { params.senders } else { 0 };
    let acks = Arc::new(Acks::new(params.senders, observers));
    let windowed = params.rate.is_none();
    let mut readers = JoinSet::new();
    let logins = (0..params.receivers)
        .map(|i| Login::lobby(format!("r{i}")))
        .collect();
    login_spread(
        &addrs,
        0,
        mode,
        logins,
        params.login_concurrency,
        |i, conn| {
            let ack = windowed.then(|| AckRole {
                acks: Arc::clone(&acks),
                row: i,
                // Line and IRC mode do not echo a sender's messages: receiver 0 wakes them.
                wake: if !mode.echoes_own() && i == 0 {
                    Wake::Everyone
                } else {
                    Wake::Nobody
                },
            });
            let tap = Tap {
                me: None,
                count: true,
                ack,
                tally: Arc::clone(&tally),
                shard: i,
                during: None,
                cross: several.then(|| Cross {
                    sender_node: Arc::clone(&sender_node),
                    node: spread.node_of(i),
                    tally: Arc::clone(&cross_tally),
                }),
                own: None,
            };
            readers.spawn(client::receive(conn.stream, conn.inbuf, mode, tap));
        },
    )
    .await?;
    let logins = (0..params.senders)
        .map(|i| Login::sender(format!("s{i}")))
        .collect();
    let sender_tally = Arc::new(Tally::default());
    let ack_tally = Arc::new(Tally::default());
    let writers = connect_senders_spread(
        &addrs,
        params.receivers,
        mode,
        logins,
        params,
        |i| Tap {
            me: Some(u32::try_from(i).unwrap_or(u32::MAX)),
            count: false,
            ack: (windowed && mode.echoes_own()).then(|| AckRole {
                acks: Arc::clone(&acks),
                row: params.receivers + i,
                wake: Wake::Own,
            }),
            tally: Arc::clone(&sender_tally),
            shard: i,
            during: None,
            cross: None,
            own: mode.echoes_own().then(|| Arc::clone(&ack_tally)),
        },
        &mut readers,
    )
    .await?;

    let meter = Meter::start_spread(spread);
    let start = Instant::now();
    let until = start + params.duration;
    let plans = (0..params.senders)
        .map(|i| SendPlan {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            room: chat_shared::DEFAULT_ROOM.into(),
            pace: match params.rate {
                None => Pace::Window {
                    size: params.window,
                    acks: Arc::clone(&acks),
                },
                Some(rate) => Pace::staggered(
                    Duration::from_secs_f64(params.senders as f64 / rate),
                    start,
                    i,
                    params.senders,
                ),
            },
            until,
            text_len: params.text_len,
        })
        .collect();
    let (sent, writers) = run_senders(writers, mode, plans).await?;
    let expected = sent * params.receivers as u64;
    let end = drain(&tally, expected, DRAIN_QUIET, DRAIN_LIMIT).await;
    let usage = meter.stop_spread(spread, end);
    readers.abort_all();
    drop(writers);

    let mut out = Outcome::new(params.receivers + params.senders);
    out.sent = sent;
    out.expected = expected;
    out.delivered = tally.delivered();
    out.lag_events = tally.lag_events() + sender_tally.lag_events();
    out.disconnects = tally.disconnects() + sender_tally.disconnects();
    out.latency = tally.latency();
    out.cross_latency = several.then(|| cross_tally.latency());
    out.ack_latency = mode.echoes_own().then(|| ack_tally.latency());
    Meter::fill(&usage, &mut out);
    out.derive_rates();
    Ok(out)
}

/// W4 as a user has it: `idle` connections log in and move from `lobby` to rooms of
/// `idle_room` members (`idle-0`, `idle-1`, …), where they stay, silent; the server's RSS
/// growth per connection is the figure.
async fn idle_memory(
    params: &Params,
    target: &ServerHandle,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let addr = target.addr();
    // Let the fresh process finish starting before its baseline is read.
    sleep(Duration::from_millis(200)).await;
    let before = target.sample();
    let meter = Meter::start(target);
    let tally = Arc::new(Tally::default());
    let mut holders = JoinSet::new();
    let per_room = params.idle_room.max(1);
    let logins = (0..params.idle)
        .map(|i| Login::room(format!("i{i}"), &format!("idle-{}", i / per_room)))
        .collect();
    login_all(addr, mode, logins, params.login_concurrency, |_, conn| {
        holders.spawn(client::idle(conn, mode, Arc::clone(&tally)));
    })
    .await?;
    let logged_in = Instant::now();
    // Held for a while: the figure is for connections that stay, after any lazy freeing.
    sleep(params.duration).await;
    let after = target.sample();
    let usage = meter.stop(target, logged_in);
    let held = params.idle as u64 - tally.disconnects();
    holders.abort_all();

    let mut out = Outcome::new(params.idle);
    Meter::fill(&usage, &mut out);
    out.messages_per_s = params.idle as f64 / out.wall_s;
    out.disconnects = tally.disconnects();
    out.lag_events = tally.lag_events();
    out.idle = Some(Idle {
        connections: params.idle as u64,
        members_per_room: per_room as u64,
        held,
        rss_before_kib: before.map(|s| s.rss_kib),
        rss_after_kib: after.map(|s| s.rss_kib),
        kib_per_conn: match (before, after) {
            (Some(b), Some(a)) => {
                Some(a.rss_kib.saturating_sub(b.rss_kib) as f64 / params.idle.max(1) as f64)
            }
            _ => None,
        },
    });
    out.server_rss_kib = after.map(|s| s.rss_kib);
    Ok(out)
}

/// W5: `rooms` rooms of `members` members, every member sending at `member_rate` and
/// receiving everyone else's messages.
async fn many_rooms(params: &Params, target: &ServerHandle, mode: Mode) -> anyhow::Result<Outcome> {
    let addr = target.addr();
    let tally = Arc::new(Tally::default());
    let total = params.rooms * params.members;
    let mut readers = JoinSet::new();
    let logins = (0..total)
        .map(|i| {
            let room = i / params.members.max(1);
            Login::room(
                format!("m{room}x{}", i % params.members.max(1)),
                &format!("r{room}"),
            )
        })
        .collect();
    let writers = connect_senders(
        addr,
        mode,
        logins,
        params,
        |i| sender_tap(i, true, &tally),
        &mut readers,
    )
    .await?;

    let meter = Meter::start(target);
    let start = Instant::now();
    let until = start + params.duration;
    let interval = Duration::from_secs_f64(1.0 / params.member_rate);
    let plans = (0..total)
        .map(|i| SendPlan {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            room: format!("r{}", i / params.members.max(1)),
            pace: Pace::staggered(interval, start, i, total),
            until,
            text_len: params.text_len,
        })
        .collect();
    let (sent, writers) = run_senders(writers, mode, plans).await?;
    let expected = sent * (params.members as u64 - 1);
    let end = drain(&tally, expected, DRAIN_QUIET, DRAIN_LIMIT).await;
    let usage = meter.stop(target, end);
    readers.abort_all();
    drop(writers);

    let mut out = Outcome::new(total);
    out.sent = sent;
    out.expected = expected;
    out.delivered = tally.delivered();
    out.lag_events = tally.lag_events();
    out.disconnects = tally.disconnects();
    out.latency = tally.latency();
    Meter::fill(&usage, &mut out);
    out.derive_rates();
    Ok(out)
}

/// Most churn cycles one worker runs, whatever the duration: a bound on connections made.
const MAX_CYCLES_PER_CHURNER: u64 = 50_000;

/// W6: `churners` clients connect, log in, join the busy room and quit, over and over,
/// while `senders` keep that room busy for `receivers` members. Both are measured: cycles
/// per second (and their latency), and the busy room's deliveries and loss.
pub(crate) async fn churn(
    params: &Params,
    target: &ServerHandle,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    const ROOM: &str = "busy";
    let addr = target.addr();
    let tally = Arc::new(Tally::default());
    let mut readers = JoinSet::new();
    let logins = (0..params.receivers)
        .map(|i| Login::room(format!("r{i}"), ROOM))
        .collect();
    login_all(addr, mode, logins, params.login_concurrency, |i, conn| {
        let tap = receiver_tap(i, &tally);
        readers.spawn(client::receive(conn.stream, conn.inbuf, mode, tap));
    })
    .await?;
    let sender_tally = Arc::new(Tally::default());
    let logins = (0..params.senders)
        .map(|i| Login::room(format!("s{i}"), ROOM))
        .collect();
    let writers = connect_senders(
        addr,
        mode,
        logins,
        params,
        |i| sender_tap(i, false, &sender_tally),
        &mut readers,
    )
    .await?;

    let meter = Meter::start(target);
    let start = Instant::now();
    let until = start + params.duration;
    let plans = paced_plans(params, ROOM, params.rate.unwrap_or(100.0), start, until);
    let mut churners = JoinSet::new();
    for w in 0..params.churners {
        churners.spawn(async move {
            let mut hist = LocalHist::default();
            let (mut cycles, mut failures, mut lagged) = (0u64, 0u64, 0u64);
            while Instant::now() < until && cycles < MAX_CYCLES_PER_CHURNER {
                let login = Login {
                    nick: format!("c{w}x{cycles}"),
                    part_lobby: false,
                    join: Some(ROOM.into()),
                    sender: false,
                };
                let t = Instant::now();
                match client::churn_cycle(addr, mode, &login).await {
                    Ok(lags) => {
                        hist.record(t.elapsed());
                        lagged += lags;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("chat-bench: churn cycle failed: {e:#}");
                        }
                        if failures >= 100 {
                            break;
                        }
                    }
                }
                cycles += 1;
            }
            (hist, cycles, failures, lagged)
        });
    }
    let (sent, writers) = run_senders(writers, mode, plans).await?;
    let mut hist = LocalHist::default();
    let (mut cycles, mut failures, mut churner_lags) = (0u64, 0u64, 0u64);
    while let Some(joined) = churners.join_next().await {
        let (h, c, f, l) = joined.context("churn task failed")?;
        hist.merge(&h);
        cycles += c;
        failures += f;
        churner_lags += l;
    }
    let churn_end = Instant::now();
    let expected = sent * params.receivers as u64;
    let end = drain(&tally, expected, DRAIN_QUIET, DRAIN_LIMIT).await;
    let usage = meter.stop(target, end.max(churn_end));
    readers.abort_all();
    drop(writers);

    let mut out = Outcome::new(params.receivers + params.senders + params.churners);
    out.sent = sent;
    out.expected = expected;
    out.delivered = tally.delivered();
    out.lag_events = tally.lag_events() + sender_tally.lag_events() + churner_lags;
    out.disconnects = tally.disconnects() + sender_tally.disconnects();
    Meter::fill(&usage, &mut out);
    out.derive_rates();
    let cycle_secs = churn_end
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    out.churn = Some(Churn {
        cycles: cycles - failures,
        failures,
        cycles_per_s: (cycles - failures) as f64 / cycle_secs,
        cycle_latency: hist.latency(),
        room_latency: tally.latency(),
    });
    // The table's latency columns show the cycle for W6; the busy room's is in `churn`.
    out.latency = hist.latency();
    out.messages_per_s = (cycles - failures) as f64 / cycle_secs;
    Ok(out)
}

/// How long W7's senders talk before the storm begins: a fifth of the talk, at most 1 s.
fn storm_lead(duration: Duration) -> Duration {
    (duration / 5).min(Duration::from_secs(1))
}

/// W7, a join storm (what a restart looks like: everyone reconnects at once). `receivers`
/// members and `senders` senders are in `lobby`, and the senders talk at `rate`; a moment
/// later `joiners` clients connect all at once, and logging in joins each to `lobby`.
/// Measured: the time from the first join to the last confirmed one, the latency of the
/// messages sent meanwhile (at every member that has joined, joiners included), `lagged`
/// at any client, and the loss at the members that were there before the first send.
async fn join_storm(params: &Params, target: &ServerHandle, mode: Mode) -> anyhow::Result<Outcome> {
    let addr = target.addr();
    let room = chat_shared::DEFAULT_ROOM;
    // Early members (loss is counted for them), joiners, senders; and the storm's latency.
    let tally = Arc::new(Tally::default());
    let joiner_tally = Arc::new(Tally::default());
    let sender_tally = Arc::new(Tally::default());
    let span = Arc::new(Span::default());
    let storm_tally = Arc::new(Tally::default());
    let tap = |tally: &Arc<Tally>, shard: usize| Tap {
        me: None,
        count: true,
        ack: None,
        tally: Arc::clone(tally),
        shard,
        during: Some(During {
            span: Arc::clone(&span),
            tally: Arc::clone(&storm_tally),
        }),
        cross: None,
        own: None,
    };
    let mut readers = JoinSet::new();
    let logins = (0..params.receivers)
        .map(|i| Login::lobby(format!("r{i}")))
        .collect();
    login_all(addr, mode, logins, params.login_concurrency, |i, conn| {
        readers.spawn(client::receive(
            conn.stream,
            conn.inbuf,
            mode,
            tap(&tally, i),
        ));
    })
    .await?;
    let logins = (0..params.senders)
        .map(|i| Login::lobby(format!("s{i}")))
        .collect();
    let writers = connect_senders(
        addr,
        mode,
        logins,
        params,
        |i| sender_tap(i, false, &sender_tally),
        &mut readers,
    )
    .await?;

    let meter = Meter::start(target);
    let start = Instant::now();
    let until = start + params.duration;
    let plans = paced_plans(params, room, params.rate.unwrap_or(200.0), start, until);
    let storm_at = start + storm_lead(params.duration);
    let storm = async {
        tokio::time::sleep_until(storm_at).await;
        let first = Instant::now();
        span.open(ns_at(first));
        let mut joins = JoinSet::new();
        for j in 0..params.joiners {
            joins.spawn(async move {
                let t = Instant::now();
                let conn = client::connect(addr, mode, &Login::lobby(format!("j{j}"))).await;
                (j, t, Instant::now(), conn)
            });
        }
        let mut hist = LocalHist::default();
        let (mut joined, mut failures) = (0u64, 0u64);
        let mut last = first;
        while let Some(done) = joins.join_next().await {
            let (j, t, at, conn) = done.context("joiner task failed")?;
            match conn {
                Ok(conn) => {
                    hist.record(at.saturating_duration_since(t));
                    joined += 1;
                    last = last.max(at);
                    readers.spawn(client::receive(
                        conn.stream,
                        conn.inbuf,
                        mode,
                        tap(&joiner_tally, params.receivers + j),
                    ));
                }
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("chat-bench: join storm: {e:#}");
                    }
                }
            }
        }
        span.close(ns_at(last));
        Ok::<_, anyhow::Error>((first, last, hist, joined, failures))
    };
    let ((sent, writers), (first, last, hist, joined, failures)) =
        tokio::try_join!(run_senders(writers, mode, plans), storm)?;
    let expected = sent * params.receivers as u64;
    let end = drain(&tally, expected, DRAIN_QUIET, DRAIN_LIMIT).await;
    let usage = meter.stop(target, end.max(last));
    readers.abort_all();
    drop(writers);

    let mut out = Outcome::new(params.receivers + params.senders + params.joiners);
    out.sent = sent;
    out.expected = expected;
    out.delivered = tally.delivered();
    out.lag_events = tally.lag_events() + joiner_tally.lag_events() + sender_tally.lag_events();
    out.disconnects = tally.disconnects() + joiner_tally.disconnects() + sender_tally.disconnects();
    Meter::fill(&usage, &mut out);
    out.derive_rates();
    // The table's latency columns show the talk during the storm; the whole talk is in
    // `storm`.
    out.latency = storm_tally.latency();
    out.storm = Some(Storm {
        early_members: params.receivers as u64,
        joiners: params.joiners as u64,
        joined,
        failures,
        join_all_s: last.saturating_duration_since(first).as_secs_f64(),
        join_latency: hist.latency(),
        outlasted_talk: last > until,
        joiner_lag_events: joiner_tally.lag_events(),
        joiner_deliveries: joiner_tally.delivered(),
        talk_latency: merged_latency(&[&tally, &joiner_tally]),
    });
    Ok(out)
}
