//! `--cluster` (issue 16): W1 and W3 against `chat-server --cluster` on 1, 2 and 3 nodes
//! sharing one NATS server, with the clients spread round-robin over the nodes, beside the
//! single-node server with its SQLite history in the same run.
//!
//! Everything runs on this machine, on loopback. Each case (a workload on one target in
//! one mode) gets fresh processes: for a cluster of N, a `nats-server -js -a 127.0.0.1 -p
//! PORT -sd DIR` with an empty store in a temporary folder, then N `chat-server` nodes as
//! shipped (the bench's usual flags, [`crate::server_proc::server_args`], a fresh database
//! each in the same folder, and `--cluster nats://127.0.0.1:PORT --node nK`, each on a
//! port of its own). Each node also gets an admin listener on a free loopback port
//! (`--admin-listen`): a node serves connections before it has set the cluster up, so the
//! bench waits for its `/readyz` before any client logs in, and reads its `/metrics` once
//! at the end ([`NodeStats`]: what JetStream took to store each message, and the `seq`
//! conflicts between nodes). After the case the nodes and then the NATS server are killed
//! by their pids and the folder is removed; each case is bounded in time ([`case_bound`]).
//!
//! Client `k` of a workload (the receivers first, then the senders) is on node `k % N`.
//! With more than one node, a receiver records the deliveries from senders on another node
//! on their own as well: W3's cross-node latency, which issue 16 wants within 3 × the
//! single node's p99 ([`crate::report::cluster_report`]).
//!
//! Layout:
//! - [`locate_nats`], [`Nats`]: the NATS server of one case.
//! - [`Cluster`]: the NATS server and the nodes of one case.
//! - [`ClusterOptions`] / [`run_cluster`]: the cases in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::report::NodeStats;
use crate::server_proc::{self, ChildServer, DbDir, ServerHandle, Storage};
use crate::workloads::{self, MAX_NODES, Params, Spread, TargetKind};
use crate::{Mode, Outcome, SERVER_LOG, Scale, ServerSpec, Workload};

/// What a `--cluster` run runs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// W1 and W3 by default (W2 may be added); run in this order.
    pub workloads: Vec<Workload>,
    /// Wire modes (framed by default: its echo is the sender's acknowledgement, given once
    /// JetStream has stored the message).
    pub modes: Vec<Mode>,
    /// Cluster sizes, in this order (1, 2, 3 by default).
    pub nodes: Vec<usize>,
    /// Full size or the smoke test.
    pub scale: Scale,
    /// Overrides each workload's sending time.
    pub duration: Option<Duration>,
    /// W1's in-flight messages per sender.
    pub window: u64,
    /// The server.
    pub server: ServerSpec,
    /// The `nats-server` binary.
    pub nats: PathBuf,
    /// Rounds of every case; the report uses medians.
    pub repeat: usize,
}

impl ClusterOptions {
    /// Every case of a round, in order: each workload, each mode, the single node first
    /// and then each cluster size, so that what is compared runs seconds apart.
    fn cases(&self) -> Vec<(Workload, Mode, TargetKind)> {
        let mut cases = Vec::new();
        for &w in &self.workloads {
            for &mode in &self.modes {
                cases.push((w, mode, TargetKind::Server(Storage::On)));
                for &n in &self.nodes {
                    cases.push((w, mode, TargetKind::Cluster(n)));
                }
            }
        }
        cases
    }
}

/// `nats-server` at `explicit`, or on `PATH` (or in `/usr/sbin`, where Debian puts it, or
/// `/usr/local/sbin`); `None` when there is none.
pub fn locate_nats(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A port on `127.0.0.1` that nobody listened on a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(probe.local_addr()?.port())
}

/// The arguments of one benchmark NATS server: JetStream on, loopback only, its store in
/// `store`.
pub fn nats_args(port: u16, store: &Path) -> Vec<String> {
    vec![
        "-js".to_owned(),
        "-a".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-sd".to_owned(),
        store.display().to_string(),
    ]
}

/// A NATS server with JetStream for one case, its store (and its log, `nats.log`) in a
/// fresh folder, which is also where the case's nodes keep their databases.
#[derive(Debug)]
pub struct Nats {
    /// The process; killed by its pid when dropped.
    pub handle: ServerHandle,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// Removed when dropped (after the handle: fields drop in order).
    pub dir: DbDir,
}

impl Nats {
    /// Starts `program` on a free loopback port with an empty store.
    ///
    /// # Errors
    /// If the folder cannot be made, or the server does not start or accept connections.
    pub fn start(program: &Path) -> anyhow::Result<Self> {
        let dir = DbDir::new()?;
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        // A port taken between the probe and the server's bind fails the start: another.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let args = nats_args(port, &store);
            match ChildServer::spawn_at(program, &args, &dir.join("nats.log"), addr) {
                Ok(child) => {
                    return Ok(Self {
                        handle: ServerHandle::Process(child),
                        url: format!("nats://{addr}"),
                        dir,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }
}

/// The processes of one cluster case: `nodes` chat-server nodes and their NATS server.
#[derive(Debug)]
pub struct Cluster {
    /// Node `k` is `n{k+1}`; dropped (killed) before the NATS server.
    pub nodes: Vec<ServerHandle>,
    /// Each node's admin listener.
    pub admins: Vec<SocketAddr>,
    /// The NATS server.
    pub nats: Nats,
}

/// How long a started node may take to set the cluster up (its `/readyz`).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the admin listener at `admin` says the node is ready.
///
/// # Errors
/// Not ready within [`READY_TIMEOUT`], with what `/readyz` said last.
async fn wait_ready(admin: SocketAddr) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let last = match crate::scrape::fetch(admin, "/readyz").await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= give_up {
            bail!("not ready within {READY_TIMEOUT:?}: /readyz {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cluster counters of the node whose admin listener is `admin`, from its `/metrics`.
///
/// # Errors
/// The fetch's, or a counter missing.
async fn node_stats(admin: SocketAddr) -> anyhow::Result<NodeStats> {
    let text = crate::scrape::fetch(admin, "/metrics").await?;
    let read = |name: &str| {
        crate::scrape::metric(&text, name)
            .map(|v| v as u64)
            .with_context(|| format!("no {name} in /metrics"))
    };
    Ok(NodeStats {
        published: read("chat_cluster_published_messages")?,
        publishes: read("chat_cluster_publishes")?,
        publish_us: read("chat_cluster_publish_microseconds")?,
        conflicts: read("chat_cluster_seq_conflicts")?,
        behind: read("chat_cluster_behind_messages")?,
    })
}

/// The name of node `k` (from 0): `n1`, `n2`, …
fn node_name(k: usize) -> String {
    format!("n{}", k + 1)
}

/// The flags of cluster node `k`: the bench's usual ones ([`server_proc::server_args`]),
/// with its own fresh database `db`, and `--cluster URL --node nK`. Each node listens on
/// a port of its own (`127.0.0.1:0`).
pub fn node_args(db: &Path, url: &str, k: usize, admin: SocketAddr) -> Vec<String> {
    let mut args = server_proc::server_args(Some(db));
    args.extend([
        "--cluster".to_owned(),
        url.to_owned(),
        "--node".to_owned(),
        node_name(k),
        "--admin-listen".to_owned(),
        admin.to_string(),
    ]);
    args
}

impl Cluster {
    /// Starts a fresh NATS server, then `n` nodes on it, one after the other, and waits
    /// until every node has set the cluster up.
    ///
    /// # Errors
    /// If the NATS server or a node does not start, or a node is not ready in time.
    pub async fn start(spec: &ServerSpec, nats: &Path, n: usize) -> anyhow::Result<Self> {
        let nats = Nats::start(nats).context("starting nats-server")?;
        let mut nodes = Vec::with_capacity(n);
        let mut admins = Vec::with_capacity(n);
        for k in 0..n {
            let admin = std::net::TcpListener::bind("127.0.0.1:0")?;
            let admin_addr = admin.local_addr()?;
            let node = match spec {
                ServerSpec::Binary(path) => {
                    // Free again for the node to bind: nothing else on loopback takes it
                    // in between.
                    drop(admin);
                    let db = nats.dir.join(&format!("{}.db", node_name(k)));
                    ServerHandle::spawn(
                        path,
                        &node_args(&db, &nats.url, k, admin_addr),
                        &[("RUST_LOG", SERVER_LOG)],
                    )
                }
                ServerSpec::InProcess => {
                    let mut config = server_proc::in_process_config(Storage::On);
                    config.cluster = Some(chat_server::ClusterConfig::new(
                        vec![nats.url.clone()],
                        node_name(k),
                    ));
                    config.admin_listener = Some(chat_server::AdminListener::new(admin));
                    ServerHandle::in_process_with(config).await
                }
            }
            .with_context(|| format!("starting cluster node {} of {n}", node_name(k)))?;
            nodes.push(node);
            admins.push(admin_addr);
        }
        for (k, &admin) in admins.iter().enumerate() {
            wait_ready(admin)
                .await
                .with_context(|| format!("cluster node {} of {n}", node_name(k)))?;
        }
        Ok(Self {
            nodes,
            admins,
            nats,
        })
    }

    /// Every node's cluster counters added up (`behind`: the most any node is behind).
    ///
    /// # Errors
    /// A node whose `/metrics` cannot be read.
    pub async fn stats(&self) -> anyhow::Result<NodeStats> {
        let mut sum = NodeStats::default();
        for &admin in &self.admins {
            let s = node_stats(admin).await?;
            sum.published += s.published;
            sum.publishes += s.publishes;
            sum.publish_us += s.publish_us;
            sum.conflicts += s.conflicts;
            sum.behind = sum.behind.max(s.behind);
        }
        Ok(sum)
    }

    /// The nodes and the NATS server, as a workload spreads over them.
    pub fn spread(&self) -> Spread<'_> {
        Spread {
            nodes: self.nodes.iter().collect(),
            broker: Some(&self.nats.handle),
        }
    }

    /// Stops the nodes, then the NATS server (each killed by its pid), and removes the
    /// folder.
    pub async fn stop(self) {
        let Self { nodes, nats, .. } = self;
        for node in nodes {
            node.stop().await;
        }
        nats.handle.stop().await;
        drop(nats.dir);
    }
}

/// Longest a case may take beyond its sending time: starting the processes (10 s each at
/// most), the logins (20 s each at most, 64 at a time), the senders' own bound (30 s) and
/// the drain (15 s). A case past it fails the run, and its processes are killed.
pub fn case_bound(params: &Params, nodes: usize) -> Duration {
    params.duration + Duration::from_secs(120 + 10 * nodes as u64)
}

/// Runs every case of `opts` `opts.repeat` times; `on_outcome` sees each result as soon as
/// it is complete.
///
/// # Errors
/// A process that does not start, a workload that fails (a login refused, a socket error),
/// or a case that outlasts [`case_bound`].
pub async fn run_cluster(
    opts: &ClusterOptions,
    mut on_outcome: impl FnMut(&Outcome),
) -> anyhow::Result<Vec<Outcome>> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat-bench: could not raise the file descriptor limit: {e}");
    }
    if let Some(&n) = opts.nodes.iter().find(|&&n| n == 0 || n > MAX_NODES) {
        bail!("--nodes: {n} is not between 1 and {MAX_NODES}");
    }
    let mut outcomes = Vec::new();
    for _ in 0..opts.repeat.max(1) {
        for (w, mode, kind) in opts.cases() {
            let params = Params::of(w, opts.scale, opts.duration, opts.window);
            let nodes = match kind {
                TargetKind::Cluster(n) => n,
                _ => 1,
            };
            let what = format!("{} {} {}", w.name(), kind.name(), mode.name());
            let out = tokio::time::timeout(
                case_bound(&params, nodes),
                run_case(opts, w, &params, mode, kind),
            )
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{what} took longer than {:?}: stopped",
                    case_bound(&params, nodes)
                )
            })?
            .with_context(|| what.clone())?;
            on_outcome(&out);
            outcomes.push(out);
        }
    }
    Ok(outcomes)
}

/// One case on fresh processes, stopped afterwards (also when it fails or is abandoned:
/// every process is killed by its pid when its handle drops).
async fn run_case(
    opts: &ClusterOptions,
    w: Workload,
    params: &Params,
    mode: Mode,
    kind: TargetKind,
) -> anyhow::Result<Outcome> {
    match kind {
        TargetKind::Cluster(n) => {
            let cluster = Cluster::start(&opts.server, &opts.nats, n).await?;
            let pids: Vec<String> = cluster
                .nodes
                .iter()
                .filter_map(ServerHandle::pid)
                .map(|p| p.to_string())
                .collect();
            eprintln!(
                "chat-bench: {} {} {}: nats-server pid {}, nodes' pids {}",
                w.name(),
                kind.name(),
                mode.name(),
                cluster
                    .nats
                    .handle
                    .pid()
                    .map_or_else(|| "-".into(), |p| p.to_string()),
                if pids.is_empty() {
                    "- (in process)".into()
                } else {
                    pids.join(", ")
                }
            );
            let out = workloads::run_spread(w, params, &cluster.spread(), kind, mode).await;
            let out = match out {
                Ok(mut out) => match cluster.stats().await {
                    Ok(stats) => {
                        out.cluster = Some(stats);
                        Ok(out)
                    }
                    Err(e) => Err(e.context("reading the nodes' /metrics")),
                },
                Err(e) => Err(e),
            };
            cluster.stop().await;
            out
        }
        _ => {
            // The single node as shipped: SQLite history in a fresh folder.
            let dir = DbDir::new()?;
            let target = match &opts.server {
                ServerSpec::Binary(path) => ServerHandle::spawn(
                    path,
                    &server_proc::server_args(Some(&dir.db())),
                    &[("RUST_LOG", SERVER_LOG)],
                )?,
                ServerSpec::InProcess => ServerHandle::in_process_server(Storage::On, None).await?,
            };
            if let Some(pid) = target.pid() {
                eprintln!(
                    "chat-bench: {} {} {}: pid {pid}",
                    w.name(),
                    kind.name(),
                    mode.name()
                );
            }
            let out = workloads::run_spread(w, params, &Spread::one(&target), kind, mode).await;
            target.stop().await;
            drop(dir);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_listens_on_loopback_with_jetstream_in_its_own_store() {
        let args = nats_args(4222, Path::new("/tmp/x/jetstream")).join(" ");
        assert_eq!(args, "-js -a 127.0.0.1 -p 4222 -sd /tmp/x/jetstream");
    }

    #[test]
    fn nodes_run_as_shipped_with_their_own_database_and_name() {
        let admin = SocketAddr::from(([127, 0, 0, 1], 9187));
        let args =
            node_args(Path::new("/tmp/x/n2.db"), "nats://127.0.0.1:4222", 1, admin).join(" ");
        assert!(
            args.ends_with(
                "--db /tmp/x/n2.db --cluster nats://127.0.0.1:4222 --node n2 \
                 --admin-listen 127.0.0.1:9187"
            ),
            "{args}"
        );
        assert!(args.starts_with("--listen 127.0.0.1:0 "), "{args}");
    }

    #[test]
    fn a_round_runs_the_single_node_before_each_cluster_size() {
        let opts = ClusterOptions {
            workloads: vec![Workload::W1, Workload::W3],
            modes: vec![Mode::Framed],
            nodes: vec![1, 2, 3],
            scale: Scale::Quick,
            duration: None,
            window: crate::DEFAULT_WINDOW,
            server: ServerSpec::InProcess,
            nats: PathBuf::from("nats-server"),
            repeat: 1,
        };
        let names: Vec<String> = opts
            .cases()
            .iter()
            .map(|(w, _, k)| format!("{} {}", w.name(), k.name()))
            .collect();
        assert_eq!(
            names,
            [
                "W1 server",
                "W1 cluster-1",
                "W1 cluster-2",
                "W1 cluster-3",
                "W3 server",
                "W3 cluster-1",
                "W3 cluster-2",
                "W3 cluster-3"
            ]
        );
    }

    #[test]
    fn an_explicit_path_that_is_not_a_file_is_none() {
        assert_eq!(
            locate_nats(Some(Path::new("/nonexistent/nats-server"))),
            None
        );
    }
}
