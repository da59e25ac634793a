//! Cluster mode (issue 16), black-box: nodes of `chat_server::run` in this process, joined
//! through a real `nats-server -js` on a free loopback port with a temporary store, and
//! clients on different nodes talking over real sockets with the unchanged protocol.
//!
//! Every node has a lease of 3 s (so a node that is gone frees its nicks and members within
//! 4 s) and a publish timeout of 2 s, and an admin listener for `/readyz`. Each test is
//! bounded by [`LIMIT`] and has its own nats-server, killed by its PID when the test ends.
//! Without nats-server installed the tests are skipped, unless `CI` is set. `kill -9` of a
//! node needs the real binary: that test is `server/tests/cluster_binary.rs`.
//!
//! `RUST_LOG=info cargo test -p chat-tests --test cluster -- --nocapture NAME` shows the
//! nodes' logs.

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{AdminListener, ClusterConfig, Config, Storage};
use chat_shared::{ChatMessage, ClientMsg, ErrorCode, Request, ServerMsg};
use common::{Client, Next, TestServer, say_req, spawn_server};
use nats::Nats;
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

/// Each node's lease in these tests.
const LEASE: Duration = Duration::from_secs(3);
/// Each node's publish timeout in these tests: a message NATS does not store is refused
/// after this at the latest.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// A dead node's nicks and members are free within its lease plus one sweep (a third of
/// the lease); this is that and 4 s more for a loaded machine.
const FREED: Duration = Duration::from_secs(8);
/// A nick given up on purpose (a quit, a rename) is free everywhere within this.
const RELEASED: Duration = Duration::from_secs(5);
/// A node's start, until `/readyz` says 200.
const READY: Duration = Duration::from_secs(15);
/// The bound on a whole test.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Runs a test's body within [`LIMIT`]; with `RUST_LOG` set, the nodes log to stderr.
async fn bounded(body: impl Future<Output = ()>) {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    timeout(LIMIT, body)
        .await
        .unwrap_or_else(|_| panic!("the test took over {LIMIT:?}"));
}

/// The configuration of node `name` of the cluster at `nats`: the tests' defaults, a lease
/// of [`LEASE`], a publish timeout of [`PUBLISH_TIMEOUT`], and no rate limit to speak of.
fn node_config(nats: &Nats, name: &str) -> Config {
    Config {
        rate: 1000.0,
        burst: 1000,
        cluster: Some(ClusterConfig {
            lease: LEASE,
            publish_timeout: PUBLISH_TIMEOUT,
            ..ClusterConfig::new(vec![nats.url()], name)
        }),
        ..common::cfg()
    }
}

/// [`node_config`] with a store in the SQLite file `db` and a cache of `history` messages
/// per room. A file, as nodes have it: an in-memory database's readers get SQLITE_LOCKED
/// rather than waiting while the writer commits (shared cache), and the replica writes all
/// the time.
fn with_store(nats: &Nats, name: &str, db: &std::path::Path, history: usize) -> Config {
    Config {
        storage: Storage::Sqlite(db.to_owned()),
        history,
        ..node_config(nats, name)
    }
}

/// A node of the cluster, in this process, with its admin listener.
struct Node {
    name: String,
    addr: SocketAddr,
    admin: SocketAddr,
    server: Option<TestServer>,
}

impl Node {
    /// Starts node `name` and waits until its `/readyz` says 200.
    async fn start(nats: &Nats, name: &str) -> Self {
        Self::start_with(node_config(nats, name)).await
    }

    /// Starts a node with `config` (see [`node_config`]) and waits until its `/readyz`
    /// says 200.
    async fn start_with(config: Config) -> Self {
        let name = config
            .cluster
            .as_ref()
            .expect("a cluster node")
            .node
            .clone();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind admin");
        let admin_addr = admin.local_addr().expect("admin addr");
        let server = spawn_server(Config {
            admin_listener: Some(AdminListener::new(admin)),
            ..config
        })
        .await;
        let mut node = Self {
            name,
            addr: server.addr,
            admin: admin_addr,
            server: Some(server),
        };
        node.wait_readyz(200, READY).await;
        node
    }

    /// Polls `/readyz` until it answers `status`, within `within`.
    async fn wait_readyz(&mut self, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = get(self.admin, "/readyz").await;
            if matches!(&got, Ok((s, _)) if *s == status) {
                return;
            }
            if let Some(server) = &mut self.server
                && server.handle.is_finished()
            {
                let ended = (&mut server.handle).await;
                panic!("node {} stopped by itself: {ended:?}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "node {}'s /readyz still answers {got:?} after {within:?}, not {status}",
                self.name
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts the node down (its `run` returns within 5 s).
    async fn shutdown(mut self) {
        self.server.take().expect("running").shutdown().await;
    }
}

/// `GET path` over a fresh connection: the status and the body.
async fn get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    common::admin_get::get(admin, path, common::WAIT).await
}

/// Logs in as `nick` on `addr`, trying again (on a new connection) while the nick is taken,
/// for up to `within`.
async fn login_when_free(addr: SocketAddr, nick: &str, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    loop {
        let mut c = Client::connect(addr).await;
        match c.hello(nick).await {
            ServerMsg::Welcome { .. } => {
                c.recv_until("the lobby `members` after welcome", |m| match m {
                    ServerMsg::Members { room, .. } if room == "lobby" => Some(()),
                    _ => None,
                })
                .await;
                return c;
            }
            ServerMsg::Error {
                code: ErrorCode::NickTaken,
                ..
            } if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
            other => panic!("hello as {nick} on {addr}: {other:?} (tried for {within:?})"),
        }
    }
}

/// `hello` as `nick` on a new connection must be refused with `nick_taken`.
async fn assert_taken(node: &Node, nick: &str) {
    let mut c = Client::connect(node.addr).await;
    match c.hello(nick).await {
        ServerMsg::Error {
            code: ErrorCode::NickTaken,
            ..
        } => {}
        other => panic!("hello as {nick} on node {}: {other:?}", node.name),
    }
}

/// Sends `join room` and waits for its answer: `joined`, or the error's code.
async fn try_join(c: &mut Client, room: &str) -> Result<(), ErrorCode> {
    c.send(ClientMsg::Join {
        room: room.into(),
        since: None,
        key: None,
    })
    .await;
    let nick = c.nick.clone();
    c.recv_until(
        &format!("{nick} joining {room}: joined or an error"),
        |m| match m {
            ServerMsg::Error { code, .. } => Some(Err(*code)),
            ServerMsg::Joined {
                room: r, nick: n, ..
            } if r == room && *n == nick => Some(Ok(())),
            _ => None,
        },
    )
    .await
}

/// Joins `room` (parting again when let in) until the join is refused with `code`, within
/// [`RELEASED`]: a room's setting made on another node takes a moment to hold here.
async fn refused_until(c: &mut Client, room: &str, code: ErrorCode) {
    let deadline = Instant::now() + RELEASED;
    loop {
        let answer = try_join(c, room).await;
        if answer == Err(code) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] joining {room}: {answer:?}, not {code:?} after {RELEASED:?}",
            c.nick
        );
        if answer.is_ok() {
            part(c, room).await;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Parts `room` and waits for one's own `parted`.
async fn part(c: &mut Client, room: &str) {
    c.send(ClientMsg::Part {
        room: room.into(),
        reason: None,
    })
    .await;
    let nick = c.nick.clone();
    c.recv_parted(room, &nick).await;
}

/// `who room`: the members, sorted.
async fn who(c: &mut Client, room: &str) -> Vec<String> {
    c.send(ClientMsg::Who { room: room.into() }).await;
    let mut nicks = c
        .recv_until(&format!("members of {room}"), |m| match m {
            ServerMsg::Members { room: r, nicks, .. } if r == room => Some(nicks.clone()),
            _ => None,
        })
        .await;
    nicks.sort();
    nicks
}

/// Polls `who room` until its sorted members are `want`, within `within`.
async fn who_until(c: &mut Client, room: &str, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = who(c, room).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] who {room} still says {got:?} after {within:?}, not {want:?}",
            c.nick
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// `rooms`: (name, members), sorted.
async fn rooms(c: &mut Client) -> Vec<(String, usize)> {
    c.send(ClientMsg::Rooms {}).await;
    let mut list = c
        .recv_until("room_list", |m| match m {
            ServerMsg::RoomList { rooms, .. } => Some(
                rooms
                    .iter()
                    .map(|r| (r.name.clone(), r.members))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .await;
    list.sort();
    list
}

/// Polls `rooms` until it is `want`, within [`RELEASED`].
async fn rooms_until(c: &mut Client, want: &[(&str, usize)]) {
    let want: Vec<(String, usize)> = want.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
    let deadline = Instant::now() + RELEASED;
    loop {
        let got = rooms(c).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] rooms still says {got:?} after {RELEASED:?}, not {want:?}",
            c.nick
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// The whole retained history of `room`, oldest first, paged back with `history before`.
async fn full_history(c: &mut Client, room: &str) -> Vec<ChatMessage> {
    let mut all = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let (page, _) = c.history(room, before, Some(100)).await;
        let Some(first) = page.first() else {
            return all;
        };
        before = Some(first.id);
        all.splice(0..0, page);
    }
    panic!("[{}] over 100 pages of history in {room}", c.nick);
}

/// What must be the same about a message wherever it is seen.
fn key(m: &ChatMessage) -> (u64, Uuid, String, String) {
    (m.seq, m.id, m.from.clone(), m.text.clone())
}

fn keys(ms: &[ChatMessage]) -> Vec<(u64, Uuid, String, String)> {
    ms.iter().map(key).collect()
}

/// Seqs one after the other, with no gap.
fn assert_dense(ms: &[ChatMessage], what: &str) {
    for pair in ms.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "{what}: seq {} follows {}: {:#?}",
            pair[1].seq,
            pair[0].seq,
            keys(ms)
        );
    }
}

/// Sends `n` messages to `room` at once (with ids), then reads until `total` messages of the
/// room arrived (its own acknowledgements among them); returns the ids sent and every
/// message of the room in the order it arrived.
async fn burst(
    c: &mut Client,
    room: &str,
    n: usize,
    total: usize,
) -> (Vec<Uuid>, Vec<ChatMessage>) {
    let mut sent = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4();
        c.send_req(say_req(id, room, &format!("{} says {i}", c.nick)))
            .await;
        sent.push(id);
    }
    let mut seen = Vec::new();
    while seen.len() < total {
        let nick = c.nick.clone();
        let m = c
            .recv_until(
                &format!("message {} of {total}", seen.len() + 1),
                |m| match m {
                    ServerMsg::Message(cm) if cm.room == room => Some(cm.clone()),
                    ServerMsg::Error { .. } => panic!("[{nick}] refused: {m:?}"),
                    _ => None,
                },
            )
            .await;
        seen.push(m);
    }
    (sent, seen)
}

/// Sends a `dm` with `id`.
async fn dm(c: &mut Client, id: Uuid, to: &str, text: &str) {
    c.send_req(Request::with_id(
        id,
        ClientMsg::Dm {
            to: to.into(),
            text: text.into(),
        },
    ))
    .await;
}

/// `from` sends `to` a DM: `to` receives it, `from` its confirmation.
async fn dm_across(from: &mut Client, to: &mut Client) {
    let id = Uuid::new_v4();
    let text = format!("psst {} from {}", to.nick, from.nick);
    let recipient = to.nick.clone();
    dm(from, id, &recipient, &text).await;
    let got = recv_dm_id(to, id).await;
    assert_eq!(
        (got.from.as_str(), got.to.as_str(), got.text.as_str()),
        (from.nick.as_str(), to.nick.as_str(), text.as_str())
    );
    let confirmed = recv_dm_id(from, id).await;
    assert_eq!(confirmed.to, to.nick);
}

/// Skips to the `dm` with `id`.
async fn recv_dm_id(c: &mut Client, id: Uuid) -> chat_shared::DirectMessage {
    let nick = c.nick.clone();
    c.recv_until(&format!("dm {id}"), |m| match m {
        ServerMsg::Dm(d) if d.id == id => Some(d.clone()),
        ServerMsg::Error { ref_id, .. } if *ref_id == Some(id) => {
            panic!("[{nick}] dm {id} refused: {m:?}")
        }
        _ => None,
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Clients on nodes A, B and C in one room: every one sees every message (30 sent at once,
/// 10 from each node) with the same seq in the same order, dense; `history` answers the same
/// on every node; DMs cross nodes both ways (an unknown nick is `no_such_nick`); `members`
/// on join, `who` and `rooms` list everyone on every node; a part and a quit on C reach A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_share_a_room_dms_members_and_rooms() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let c = Node::start(&nats, "c").await;
        let mut ann = Client::login(a.addr, "ann").await;
        let mut bob = Client::login(b.addr, "bob").await;
        let mut cal = Client::login(c.addr, "cal").await;
        ann.recv_joined("lobby", "bob").await;
        ann.recv_joined("lobby", "cal").await;
        bob.recv_joined("lobby", "cal").await;

        // `members` on join lists the members on other nodes.
        let (history, _, members) = ann.join("den", None).await;
        assert!(history.is_empty(), "{history:?}");
        assert_eq!(members, ["ann"]);
        let (_, _, mut members) = bob.join("den", None).await;
        members.sort();
        assert_eq!(members, ["ann", "bob"], "bob's join on B");
        let (_, _, mut members) = cal.join("den", None).await;
        members.sort();
        assert_eq!(members, ["ann", "bob", "cal"], "cal's join on C");
        ann.recv_joined("den", "bob").await;
        ann.recv_joined("den", "cal").await;
        bob.recv_joined("den", "cal").await;

        // One order, one seq, everywhere.
        const N: usize = 10;
        let ((sa, seen_a), (sb, seen_b), (sc, seen_c)) = tokio::join!(
            burst(&mut ann, "den", N, 3 * N),
            burst(&mut bob, "den", N, 3 * N),
            burst(&mut cal, "den", N, 3 * N),
        );
        assert_eq!(keys(&seen_a), keys(&seen_b), "A and B saw another order");
        assert_eq!(keys(&seen_a), keys(&seen_c), "A and C saw another order");
        assert_dense(&seen_a, "den live");
        let sent: HashSet<Uuid> = sa.into_iter().chain(sb).chain(sc).collect();
        let got: HashSet<Uuid> = seen_a.iter().map(|m| m.id).collect();
        assert_eq!(got, sent, "the messages seen are not the messages sent");
        for client in [&mut ann, &mut bob, &mut cal] {
            let history = full_history(client, "den").await;
            assert_eq!(
                keys(&history),
                keys(&seen_a),
                "[{}] history differs from what was seen live",
                client.nick
            );
        }

        // DMs across nodes, both ways.
        dm_across(&mut ann, &mut cal).await;
        dm_across(&mut cal, &mut ann).await;
        dm_across(&mut bob, &mut ann).await;
        dm(&mut ann, Uuid::new_v4(), "nobody", "hello?").await;
        ann.recv_error(ErrorCode::NoSuchNick).await;

        // Everyone is listed on every node.
        for client in [&mut ann, &mut bob, &mut cal] {
            who_until(client, "den", &["ann", "bob", "cal"], RELEASED).await;
            who_until(client, "lobby", &["ann", "bob", "cal"], RELEASED).await;
            rooms_until(client, &[("den", 3), ("lobby", 3)]).await;
        }

        // Leaving on C is seen on A and B.
        part(&mut cal, "den").await;
        ann.recv_parted("den", "cal").await;
        bob.recv_parted("den", "cal").await;
        who_until(&mut ann, "den", &["ann", "bob"], RELEASED).await;
        cal.quit().await;
        ann.recv_parted("lobby", "cal").await;
        rooms_until(&mut bob, &[("den", 2), ("lobby", 2)]).await;
        drop((a, b, c));
    })
    .await;
}

/// History older than the cache (`--history`, here 20) comes from each node's store, its
/// replica of the stream (`--db :memory:` here): 60 messages said on A page back whole,
/// the same, on A and on B, and `join since` on B gets all those after a seq before the
/// cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_cache_is_the_same_on_every_node() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let (_dir_a, db_a) = common::temp_db();
        let (_dir_b, db_b) = common::temp_db();
        let a = Node::start_with(with_store(&nats, "a", &db_a, 20)).await;
        let b = Node::start_with(with_store(&nats, "b", &db_b, 20)).await;
        let mut alice = Client::login(a.addr, "alice").await;
        let mut bob = Client::login(b.addr, "bob").await;
        alice.recv_joined("lobby", "bob").await;
        let mut said = Vec::new();
        for i in 0..60 {
            said.push(alice.say("lobby", &format!("number {i}")).await);
        }
        bob.recv_message("lobby", "number 59").await;
        for client in [&mut alice, &mut bob] {
            let history = full_history(client, "lobby").await;
            assert!(
                keys(&history) == keys(&said),
                "[{}] history pages back to {} messages, seq {:?}, not the 60 said (seq 1 to 60)",
                client.nick,
                history.len(),
                history.first().map(|m| m.seq)..history.last().map(|m| m.seq + 1),
            );
        }
        let mut carol = Client::login(b.addr, "carol").await;
        let since = said[9].seq;
        let (history, truncated, _) = carol.join("lobby", Some(since)).await;
        assert!(!truncated);
        assert!(
            keys(&history) == keys(&said[10..]),
            "join since {since} on B: {} messages, seq {:?}, not the 50 after it",
            history.len(),
            history.first().map(|m| m.seq)..history.last().map(|m| m.seq + 1),
        );
    })
    .await;
}

/// A node that joins with an empty store reads only the stream's last `warm` messages live
/// (5 here), and backfills its store with the older ones behind them: once
/// `/metrics` says the backfill is done, 40 messages said on A alone (one stream message
/// each) page back whole and the same on B as on A, and `join since` an old seq answers
/// the same on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_backfills_its_store_with_the_older_messages() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let (_dir_a, db_a) = common::temp_db();
        let (_dir_b, db_b) = common::temp_db();
        let warm_5 = |name: &str, db: &std::path::Path| {
            let mut config = with_store(&nats, name, db, 10);
            config.cluster.as_mut().expect("a cluster node").warm = 5;
            config
        };
        let a = Node::start_with(warm_5("a", &db_a)).await;
        let mut alice = Client::login(a.addr, "alice").await;
        alice.join("den", None).await;
        let mut said = Vec::new();
        for i in 0..40 {
            // One at a time, acknowledged: each its own stream message.
            said.push(alice.say("den", &format!("number {i}")).await);
        }

        let b = Node::start_with(warm_5("b", &db_b)).await;
        backfilled(&b).await;
        let mut bob = Client::login(b.addr, "bob").await;
        bob.join("den", None).await;
        let on_a = full_history(&mut alice, "den").await;
        let on_b = full_history(&mut bob, "den").await;
        assert!(
            keys(&on_a) == keys(&said),
            "history on A: {} messages",
            on_a.len()
        );
        assert!(
            keys(&on_b) == keys(&on_a),
            "history on B pages back to {} messages, seq {:?}, not A's {}",
            on_b.len(),
            on_b.first().map(|m| m.seq)..on_b.last().map(|m| m.seq + 1),
            on_a.len(),
        );

        let since = said[2].seq;
        let mut carol = Client::login(a.addr, "carol").await;
        let mut dave = Client::login(b.addr, "dave").await;
        let (from_a, truncated_a, _) = carol.join("den", Some(since)).await;
        let (from_b, truncated_b, _) = dave.join("den", Some(since)).await;
        assert!(!truncated_a && !truncated_b);
        assert!(keys(&from_a) == keys(&said[3..]), "join since {since} on A");
        assert!(
            keys(&from_b) == keys(&from_a),
            "join since {since} on B: {} messages, seq {:?}, not A's {}",
            from_b.len(),
            from_b.first().map(|m| m.seq)..from_b.last().map(|m| m.seq + 1),
            from_a.len(),
        );
    })
    .await;
}

/// Waits until `node`'s `/metrics` says its backfill is done and kept something.
async fn backfilled(node: &Node) {
    let metric = |body: &str, name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
    };
    let deadline = Instant::now() + READY;
    loop {
        let body = get(node.admin, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        let left = metric(&body, "chat_cluster_backfill_left_sequences");
        let kept = metric(&body, "chat_cluster_backfill_kept_messages");
        if left == Some(0) && kept.is_some_and(|k| k > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {}'s backfill: {left:?} sequences left, {kept:?} kept after {READY:?}",
            node.name
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// A nick is held once in the cluster: taken on A, it is refused on B and on C (in any
/// case), also as a rename; a rename on B is seen on A, frees the old nick everywhere and
/// takes the new one everywhere; a quit frees the nick for another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nick_is_held_once_across_nodes() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let c = Node::start(&nats, "c").await;
        let mut alice = Client::login(a.addr, "alice").await;
        assert_taken(&b, "alice").await;
        assert_taken(&c, "ALICE").await;
        assert_taken(&a, "Alice").await;

        let mut bob = Client::login(b.addr, "bob").await;
        alice.recv_joined("lobby", "bob").await;
        bob.send(ClientMsg::Nick {
            nick: "alice".into(),
        })
        .await;
        bob.recv_error(ErrorCode::NickTaken).await;

        // A rename on B: seen on A, the new nick taken on C, the old one free there.
        bob.send(ClientMsg::Nick {
            nick: "bobby".into(),
        })
        .await;
        let renamed = |m: &ServerMsg| match m {
            ServerMsg::NickChanged { old, new, .. } if old == "bob" && new == "bobby" => Some(()),
            _ => None,
        };
        bob.recv_until("nick_changed bob → bobby", renamed).await;
        alice
            .recv_until("nick_changed bob → bobby on A", renamed)
            .await;
        assert_taken(&c, "bobby").await;
        let _bob_again = login_when_free(c.addr, "bob", RELEASED).await;

        // A quit on A frees alice for B.
        alice.quit().await;
        let _alice_again = login_when_free(b.addr, "alice", RELEASED).await;
        assert_taken(&a, "alice").await;
    })
    .await;
}

/// Three clients say `hello` with one nick at the same moment, one on each node: exactly
/// one is welcomed, the others get `nick_taken`; afterwards the nick is refused on every
/// node and listed once. Six rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_racing_for_one_nick_give_it_to_exactly_one() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let nodes = [
            Node::start(&nats, "a").await,
            Node::start(&nats, "b").await,
            Node::start(&nats, "c").await,
        ];
        let mut watcher = Client::login(nodes[0].addr, "watcher").await;
        for round in 0..6 {
            let nick = format!("racer{round}");
            let mut x = Client::connect(nodes[0].addr).await;
            let mut y = Client::connect(nodes[1].addr).await;
            let mut z = Client::connect(nodes[2].addr).await;
            // Two racers in even rounds (A and B), three in odd ones.
            let answers = if round % 2 == 0 {
                let (p, q) = tokio::join!(x.hello(&nick), y.hello(&nick));
                vec![p, q]
            } else {
                let (p, q, r) = tokio::join!(x.hello(&nick), y.hello(&nick), z.hello(&nick));
                vec![p, q, r]
            };
            let welcomed = answers
                .iter()
                .filter(|m| matches!(m, ServerMsg::Welcome { .. }))
                .count();
            let taken = answers
                .iter()
                .filter(|m| {
                    matches!(
                        m,
                        ServerMsg::Error {
                            code: ErrorCode::NickTaken,
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(
                (welcomed, taken),
                (1, answers.len() - 1),
                "round {round}: {answers:#?}"
            );
            for node in &nodes {
                assert_taken(node, &nick).await;
            }
            let deadline = Instant::now() + RELEASED;
            loop {
                let members = who(&mut watcher, "lobby").await;
                let listed = members.iter().filter(|n| **n == nick).count();
                assert!(
                    listed <= 1,
                    "round {round}: {nick} listed twice: {members:?}"
                );
                if listed == 1 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: {nick} is not in lobby: {members:?}"
                );
                sleep(Duration::from_millis(50)).await;
            }
            // The winner is still connected and can talk.
            let winner = [&mut x, &mut y, &mut z]
                .into_iter()
                .zip(&answers)
                .find(|(_, m)| matches!(m, ServerMsg::Welcome { .. }))
                .map(|(c, _)| c)
                .expect("a winner");
            winner.roundtrip().await;
        }
    })
    .await;
}

/// NATS stopped (`kill PID`) and started again on the same port and store: while it is
/// down a `say` is refused with `unavailable` (never acknowledged, never delivered, never
/// stored later), `/readyz` says 503 on every node, and the connections stay; once it is
/// back, sending works again by itself and `/readyz` says 200, with the history from
/// before the outage kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_and_started_again() {
    bounded(async {
        let Some(mut nats) = Nats::start().await else {
            return;
        };
        let mut a = Node::start(&nats, "a").await;
        let mut b = Node::start(&nats, "b").await;
        let mut alice = Client::login(a.addr, "alice").await;
        let mut bob = Client::login(b.addr, "bob").await;
        alice.recv_joined("lobby", "bob").await;
        let before = alice.say("lobby", "before the outage").await;
        bob.recv_message("lobby", "before the outage").await;

        nats.stop().await;
        let mut refused = Vec::new();
        let id = Uuid::new_v4();
        alice
            .send_req(say_req(id, "lobby", "during the outage"))
            .await;
        let code = alice
            .recv_until_within(
                PUBLISH_TIMEOUT + Duration::from_secs(5),
                "the refusal of a message while NATS is down",
                |m| match m {
                    ServerMsg::Error { code, ref_id, .. } if *ref_id == Some(id) => Some(*code),
                    ServerMsg::Message(cm) if cm.id == id => {
                        panic!("acknowledged while NATS is down: {cm:?}")
                    }
                    _ => None,
                },
            )
            .await;
        assert_eq!(code, ErrorCode::Unavailable);
        refused.push(id);
        a.wait_readyz(503, Duration::from_secs(10)).await;
        b.wait_readyz(503, Duration::from_secs(10)).await;
        alice.roundtrip().await;
        bob.roundtrip().await;

        nats.restart().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut attempt = 0;
        let after = loop {
            attempt += 1;
            let id = Uuid::new_v4();
            let text = format!("after the outage, attempt {attempt}");
            alice.send_req(say_req(id, "lobby", &text)).await;
            let got = alice
                .recv_until_within(
                    PUBLISH_TIMEOUT + Duration::from_secs(5),
                    &format!("an answer to {text:?}"),
                    |m| match m {
                        ServerMsg::Message(cm) if cm.id == id => Some(Ok(cm.clone())),
                        ServerMsg::Error { code, ref_id, .. } if *ref_id == Some(id) => {
                            Some(Err(*code))
                        }
                        _ => None,
                    },
                )
                .await;
            match got {
                Ok(cm) => break cm,
                Err(ErrorCode::Unavailable) => {
                    refused.push(id);
                    assert!(
                        Instant::now() < deadline,
                        "still unavailable 20 s after NATS came back"
                    );
                    sleep(Duration::from_millis(250)).await;
                }
                Err(code) => panic!("{text:?} refused with {code:?}"),
            }
        };
        assert!(after.seq > before.seq, "{after:?} after {before:?}");
        let seen = bob
            .recv_until_all(
                "the first message after the outage",
                |m| matches!(m, ServerMsg::Message(cm) if cm.id == after.id),
            )
            .await;
        for m in &seen {
            if let ServerMsg::Message(cm) = m {
                assert!(
                    !refused.contains(&cm.id),
                    "a refused message arrived: {cm:?}"
                );
            }
        }
        a.wait_readyz(200, Duration::from_secs(10)).await;
        b.wait_readyz(200, Duration::from_secs(10)).await;
        let back = bob.say("lobby", "bob is back too").await;
        alice.recv_message("lobby", "bob is back too").await;

        bob.expect_none(
            Duration::from_secs(1),
            "refused message",
            |m| matches!(m, ServerMsg::Message(cm) if refused.contains(&cm.id)),
        )
        .await;
        for client in [&mut alice, &mut bob] {
            let history = full_history(client, "lobby").await;
            let ids: Vec<Uuid> = history.iter().map(|m| m.id).collect();
            for kept in [before.id, after.id, back.id] {
                assert_eq!(
                    ids.iter().filter(|i| **i == kept).count(),
                    1,
                    "[{}] {kept} not once in {:#?}",
                    client.nick,
                    keys(&history)
                );
            }
            for id in &refused {
                assert!(
                    !ids.contains(id),
                    "[{}] refused {id} was stored",
                    client.nick
                );
            }
        }
    })
    .await;
}

/// Node B shut down and started again with the same name: its client, back on it, gets
/// exactly what was said while it was away with `join since`, `history` answers as on A,
/// and live messages flow both ways again with seq going on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let mut alice = Client::login(a.addr, "alice").await;
        let mut bob = Client::login(b.addr, "bob").await;
        alice.join("den", None).await;
        bob.join("den", None).await;
        alice.recv_joined("den", "bob").await;
        let one = alice.say("den", "one").await;
        assert_eq!(bob.recv_message("den", "one").await.seq, one.seq);

        b.shutdown().await;
        let deadline = Instant::now() + common::WAIT;
        while !matches!(bob.next(common::WAIT).await, Next::Eof) {
            assert!(
                Instant::now() < deadline,
                "bob's connection outlived node B"
            );
        }
        who_until(&mut alice, "den", &["alice"], FREED).await;
        let mut missed = Vec::new();
        for i in 2..=6 {
            missed.push(alice.say("den", &format!("while B is down {i}")).await);
        }

        let b = Node::start(&nats, "b").await;
        let mut bob = login_when_free(b.addr, "bob", FREED).await;
        let (history, truncated, mut members) = bob.join("den", Some(one.seq)).await;
        assert!(!truncated);
        assert_eq!(keys(&history), keys(&missed), "join since {}", one.seq);
        members.sort();
        assert_eq!(members, ["alice", "bob"]);
        assert_eq!(
            keys(&full_history(&mut bob, "den").await),
            keys(&full_history(&mut alice, "den").await),
            "history on B and on A"
        );

        let seven = alice.say("den", "seven").await;
        assert_eq!(seven.seq, missed.last().expect("missed").seq + 1);
        assert_eq!(bob.recv_message("den", "seven").await.seq, seven.seq);
        let eight = bob.say("den", "eight").await;
        assert_eq!(alice.recv_message("den", "eight").await.seq, eight.seq);
        assert_eq!(eight.seq, seven.seq + 1);
        drop((a, b));
    })
    .await;
}

/// A message acknowledged on A and resent with the same id on B (its sender back on another
/// node) is not stored or delivered again: the sender alone gets the stored original (same
/// seq and ts), the watchers on A and B nothing, and history has it once on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_resent_to_another_node_is_not_delivered_twice() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let mut wendy = Client::login(a.addr, "wendy").await;
        let mut walt = Client::login(b.addr, "walt").await;
        let mut sam = Client::login(a.addr, "sam").await;
        walt.recv_joined("lobby", "sam").await;

        let id = Uuid::new_v4();
        sam.send_req(say_req(id, "lobby", "only once")).await;
        let original = sam.await_ack(id).await;
        assert_eq!(wendy.recv_message("lobby", "only once").await.id, id);
        assert_eq!(walt.recv_message("lobby", "only once").await.id, id);

        sam.quit().await;
        let mut sam = login_when_free(b.addr, "sam", RELEASED).await;
        sam.send_req(say_req(id, "lobby", "only once")).await;
        let again = sam.await_ack(id).await;
        assert_eq!(
            (again.seq, again.ts, &again.from, &again.text),
            (original.seq, original.ts, &original.from, &original.text),
            "the resend's answer is not the stored original"
        );
        let twice = |m: &ServerMsg| matches!(m, ServerMsg::Message(cm) if cm.id == id);
        tokio::join!(
            wendy.expect_none(Duration::from_secs(1), "second copy", twice),
            walt.expect_none(Duration::from_secs(1), "second copy", twice),
        );
        for client in [&mut wendy, &mut walt] {
            let history = full_history(client, "lobby").await;
            assert_eq!(
                history.iter().filter(|m| m.id == id).count(),
                1,
                "[{}] {:#?}",
                client.nick,
                keys(&history)
            );
        }
    })
    .await;
}

/// A DM from A to B, resent with its id from C (its sender back on a third node), reaches
/// its recipient once; the sender gets the original back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_resent_to_another_node_is_not_delivered_twice() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let c = Node::start(&nats, "c").await;
        let mut rita = Client::login(b.addr, "rita").await;
        let mut sam = Client::login(a.addr, "sam").await;

        let id = Uuid::new_v4();
        dm(&mut sam, id, "rita", "just once").await;
        let received = recv_dm_id(&mut rita, id).await;
        let original = recv_dm_id(&mut sam, id).await;
        assert_eq!(received.text, "just once");

        sam.quit().await;
        let mut sam = login_when_free(c.addr, "sam", RELEASED).await;
        dm(&mut sam, id, "rita", "just once").await;
        let again = recv_dm_id(&mut sam, id).await;
        assert_eq!(
            (&again.from, &again.to, &again.text, again.ts),
            (&original.from, &original.to, &original.text, original.ts),
            "the resend's answer is not the original"
        );
        rita.expect_none(
            Duration::from_secs(1),
            "second copy of the dm",
            |m| matches!(m, ServerMsg::Dm(d) if d.id == id),
        )
        .await;
    })
    .await;
}

/// Accounts and room settings are the cluster's: an account registered on A needs its
/// password on B (and logs in there with it), a ban set on A keeps the banned nick out of
/// the room on B, and an op on A kicks a member on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_bans_and_kicks_hold_on_every_node() {
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;

        // An account registered on A.
        let mut alice = Client::login(a.addr, "alice").await;
        register(&mut alice, "correct horse battery").await;
        alice.quit().await;
        // On B, without its password it is refused; with it, it logs in.
        let deadline = Instant::now() + RELEASED;
        loop {
            let mut c = Client::connect(b.addr).await;
            let answer = c.hello("alice").await;
            match answer {
                ServerMsg::Error {
                    code: ErrorCode::NickRegistered,
                    ..
                } => break,
                // Still held by the quitting connection, or the account not seen yet.
                other => assert!(
                    Instant::now() < deadline,
                    "hello alice on B without a password: {other:?}"
                ),
            }
            sleep(Duration::from_millis(100)).await;
        }
        let (_again, answer) = hello_with(b.addr, "alice", "correct horse battery").await;
        assert!(
            matches!(answer, ServerMsg::Welcome { account: true, .. }),
            "hello alice on B with her password: {answer:?}"
        );

        // A room made on A: its owner bans dave (on B) and kicks erin (on B).
        let mut carol = Client::login(a.addr, "carol").await;
        carol.join("den", None).await;
        let mut erin = Client::login(b.addr, "erin").await;
        erin.join("den", None).await;
        carol.recv_joined("den", "erin").await;
        carol
            .send(ClientMsg::Ban {
                room: "den".into(),
                nick: "dave".into(),
            })
            .await;
        carol
            .recv_until("the bans", |m| {
                matches!(m, ServerMsg::BanList { .. }).then_some(())
            })
            .await;
        let mut dave = Client::login(b.addr, "dave").await;
        refused_until(&mut dave, "den", ErrorCode::Banned).await;
        carol
            .send(ClientMsg::Kick {
                room: "den".into(),
                nick: "erin".into(),
                reason: Some("out".into()),
            })
            .await;
        erin.recv_until("erin's kick", |m| match m {
            ServerMsg::Kicked { room, nick, .. } if room == "den" && nick == "erin" => Some(()),
            _ => None,
        })
        .await;
        who_until(&mut carol, "den", &["carol"], RELEASED).await;
    })
    .await;
}

/// Someone who leaves while NATS is down is gone from every node once NATS is back: its
/// part waits for NATS, and its nick, whose release failed, is freed by its own node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quit_during_an_outage_reaches_the_other_nodes_afterwards() {
    bounded(async {
        let Some(mut nats) = Nats::start().await else {
            return;
        };
        let mut a = Node::start(&nats, "a").await;
        let mut b = Node::start(&nats, "b").await;
        let mut carol = Client::login(a.addr, "carol").await;
        let dan = Client::login(b.addr, "dan").await;
        carol.recv_joined("lobby", "dan").await;

        nats.stop().await;
        a.wait_readyz(503, Duration::from_secs(10)).await;
        dan.quit().await;
        sleep(Duration::from_millis(300)).await;
        // Still listed on A: the part has not reached it.
        assert!(who(&mut carol, "lobby").await.contains(&"dan".to_owned()));

        nats.restart().await;
        a.wait_readyz(200, READY).await;
        b.wait_readyz(200, READY).await;
        who_until(&mut carol, "lobby", &["carol"], Duration::from_secs(10)).await;
        // The nick is free again, on either node.
        let dan = login_when_free(a.addr, "dan", Duration::from_secs(10)).await;
        dan.quit().await;
    })
    .await;
}

/// Registers the client's nick with `password` and waits for `registered`.
async fn register(c: &mut Client, password: &str) {
    c.send(ClientMsg::Register {
        password: chat_shared::Password::new(password),
    })
    .await;
    c.recv_until("registered", |m| {
        matches!(m, ServerMsg::Registered { .. }).then_some(())
    })
    .await;
}

/// A server ban set by an admin on A holds on B: whom it catches on B is disconnected
/// there with `bye{banned}`, and a new `hello` on B is turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ban_holds_on_every_node() {
    use chat_shared::Password;
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let with_admin = |name: &str| Config {
            admins: vec!["root".into()],
            ..node_config(&nats, name)
        };
        let a = Node::start_with(with_admin("a")).await;
        let b = Node::start_with(with_admin("b")).await;
        let secret = "the admin's own secret";
        let mut root = Client::login(a.addr, "root").await;
        register(&mut root, secret).await;
        // An account's power counts only once logged in with its password.
        root.quit().await;
        let mut root = login_when_free(a.addr, "root-guest", RELEASED).await;
        root.send(ClientMsg::Login {
            nick: "root".into(),
            password: Password::new(secret),
        })
        .await;
        root.recv_until("logged in", |m| match m {
            ServerMsg::NickChanged { new, .. } if new == "root" => Some(()),
            _ => None,
        })
        .await;
        let mut mallory = Client::login(b.addr, "mallory").await;
        root.send(ClientMsg::ServerBan {
            mask: "mallory".into(),
            duration_s: None,
            reason: Some("abuse".into()),
        })
        .await;
        root.recv_until("the server bans", |m| {
            matches!(m, ServerMsg::ServerBanList { .. }).then_some(())
        })
        .await;
        let bye = mallory
            .recv_until_within(RELEASED, "mallory's bye on B", |m| match m {
                ServerMsg::Bye { reason, .. } => Some(*reason),
                _ => None,
            })
            .await;
        assert_eq!(bye, chat_shared::ByeReason::Banned);
        let mut again = Client::connect(b.addr).await;
        let answer = again.hello("mallory").await;
        assert!(
            matches!(answer, ServerMsg::Bye { .. } | ServerMsg::Error { .. }),
            "mallory's hello on B after the ban: {answer:?}"
        );
    })
    .await;
}

/// An invitation is the cluster's: alice, op of #den on A, makes it invite-only and
/// invites bob, who is on B; bob hears of it on B and joins there, and alice is told it was
/// sent. It is used once on every node: carol, on C, sees bob's join (so C has applied
/// it), and bob, after parting and coming back on C, is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_made_on_one_node_lets_the_invitee_in_once_on_any_node() {
    use chat_shared::ModeChange;
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let c = Node::start(&nats, "c").await;
        let mut alice = Client::login(a.addr, "alice").await;
        alice.join("den", None).await;
        let mut carol = Client::login(c.addr, "carol").await;
        carol.join("den", None).await;
        alice.recv_joined("den", "carol").await;
        alice
            .send(ClientMsg::Mode {
                room: "den".into(),
                change: ModeChange {
                    invite_only: Some(true),
                    ..ModeChange::default()
                },
            })
            .await;
        let mut bob = Client::login(b.addr, "bob").await;
        refused_until(&mut bob, "den", ErrorCode::InviteOnly).await;

        // Invited from A, bob hears of it on B, and his join there is let in.
        alice
            .send(ClientMsg::Invite {
                room: "den".into(),
                nick: "bob".into(),
            })
            .await;
        let invited = bob
            .recv_until("bob's invitation", |m| match m {
                ServerMsg::Invited { room, by } => Some((room.clone(), by.clone())),
                _ => None,
            })
            .await;
        assert_eq!(invited, ("den".to_owned(), "alice".to_owned()));
        let notice = alice
            .recv_until("the inviter's notice", |m| match m {
                ServerMsg::Notice { text } => Some(text.clone()),
                _ => None,
            })
            .await;
        assert!(notice.contains("bob") && notice.contains("den"), "{notice}");
        assert_eq!(try_join(&mut bob, "den").await, Ok(()));
        alice.recv_joined("den", "bob").await;
        carol.recv_joined("den", "bob").await;

        // Used: refused on B again, and on C, where bob comes back.
        part(&mut bob, "den").await;
        assert_eq!(try_join(&mut bob, "den").await, Err(ErrorCode::InviteOnly));
        bob.quit().await;
        let mut bob = login_when_free(c.addr, "bob", RELEASED).await;
        assert_eq!(try_join(&mut bob, "den").await, Err(ErrorCode::InviteOnly));
        // Nobody is found on any node by a nick nobody holds.
        alice
            .send(ClientMsg::Invite {
                room: "den".into(),
                nick: "nobody".into(),
            })
            .await;
        alice.recv_error(ErrorCode::NoSuchNick).await;
    })
    .await;
}

/// Sends `hello` as `nick` with `password` on a new connection to `addr` and returns it
/// with the answer.
async fn hello_with(addr: SocketAddr, nick: &str, password: &str) -> (Client, ServerMsg) {
    let mut c = Client::connect(addr).await;
    c.send(ClientMsg::Hello {
        nick: nick.into(),
        version: Some(1),
        client: None,
        password: Some(chat_shared::Password::new(password)),
    })
    .await;
    let answer = c.recv().await;
    c.nick = nick.into();
    (c, answer)
}

/// A login takes its account's nick from a connection on another node, as on one node:
/// alice's connection on A gets `bye{replaced}` when bob, on B, logs in to her account;
/// bob becomes alice (`nick_changed`, `account_changed`), and carol, on A, sees alice quit
/// and bob renamed. A `hello` with the password on A then replaces the connection on B,
/// and another on A the one on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_replaces_the_connection_holding_the_nick_on_another_node() {
    use chat_shared::{ByeReason, Password};
    bounded(async {
        let Some(nats) = Nats::start().await else {
            return;
        };
        let a = Node::start(&nats, "a").await;
        let b = Node::start(&nats, "b").await;
        let secret = "correct horse battery";
        let mut alice = Client::login(a.addr, "alice").await;
        register(&mut alice, secret).await;
        let mut carol = Client::login(a.addr, "carol").await;
        let mut bob = Client::login(b.addr, "bob").await;
        carol.recv_joined("lobby", "bob").await;

        bob.send(ClientMsg::Login {
            nick: "alice".into(),
            password: Password::new(secret),
        })
        .await;
        alice.expect_bye_then_eof(ByeReason::Replaced).await;
        let renamed = |m: &ServerMsg| match m {
            ServerMsg::NickChanged { old, new, .. } if old == "bob" && new == "alice" => Some(()),
            _ => None,
        };
        bob.recv_until("bob's own rename", renamed).await;
        bob.recv_until("bob's own login", |m| match m {
            ServerMsg::AccountChanged {
                nick,
                account: true,
            } if nick == "alice" => Some(()),
            _ => None,
        })
        .await;
        bob.nick = "alice".into();
        let seen = carol
            .recv_until_all("alice's quit and bob's rename", |m| {
                renamed(m).is_some()
            })
            .await;
        let quit = |m: &ServerMsg| {
            matches!(m, ServerMsg::Parted { room, nick, quit: true, .. } if room == "lobby" && nick == "alice")
        };
        if !seen.iter().any(quit) {
            carol
                .recv_until("alice's quit", |m| quit(m).then_some(()))
                .await;
        }
        who_until(&mut carol, "lobby", &["alice", "carol"], RELEASED).await;
        let said = bob.say("lobby", "it is me").await;
        assert!(said.account && said.from == "alice", "{said:?}");
        carol.recv_message("lobby", "it is me").await;

        // The other way round, by `hello` with the password; then on the same node.
        let (mut again, answer) = hello_with(a.addr, "alice", secret).await;
        assert!(
            matches!(answer, ServerMsg::Welcome { account: true, .. }),
            "hello alice on A with her password: {answer:?}"
        );
        bob.expect_bye_then_eof(ByeReason::Replaced).await;
        let (_third, answer) = hello_with(a.addr, "alice", secret).await;
        assert!(
            matches!(answer, ServerMsg::Welcome { account: true, .. }),
            "hello alice on A again: {answer:?}"
        );
        again.expect_bye_then_eof(ByeReason::Replaced).await;
    })
    .await;
}
