//! Cluster mode (issue 16) with the real binary: `kill -9` of one of three nodes while
//! clients on all three send. Three `chat-server --cluster` processes share a real
//! `nats-server -js` on a free loopback port with a temporary store (the harness is
//! `tests/common/nats.rs`, shared with `tests/cluster.rs`); skipped without nats-server
//! unless `CI` is set.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use chat_shared::{ChatMessage, ClientCodec, ClientMsg, ErrorCode, Request, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Framed;
use uuid::Uuid;

#[path = "../../tests/common/admin_get.rs"]
mod admin_get;
mod common;
#[path = "../../tests/common/nats.rs"]
mod nats;

use common::{Run, Server};
use nats::Nats;

/// Each node's lease (`--cluster-lease`).
const LEASE_SECS: u64 = 3;
/// A dead node's nicks and members are free within its lease plus one sweep (a third of
/// the lease); this is that and 4 s more for a loaded machine.
const FREED: Duration = Duration::from_secs(8);
/// The bound on each single wait for something that should happen.
const WAIT: Duration = Duration::from_secs(5);
/// The bound on the whole test.
const LIMIT: Duration = Duration::from_secs(30);
/// A chatting client's pause between two messages.
const PACE: Duration = Duration::from_millis(5);
/// Messages one chatting client sends at most: three of them stay within the room's cache
/// (`--history`, 200), so this test is about the kill, not about paging past the cache
/// (`tests/cluster.rs` has that).
const MAX_EACH: usize = 60;

/// A `chat-server --cluster` process, its log kept.
struct Node {
    name: String,
    server: Server,
    addr: String,
    admin: String,
    log: Receiver<String>,
    lines: Vec<String>,
}

impl Node {
    /// Starts node `name` of the cluster at `nats` and waits until its `/readyz` says 200.
    async fn start(nats: &Nats, name: &str, dir: &Path) -> Self {
        let lease = LEASE_SECS.to_string();
        let args = [
            "--db",
            ":memory:",
            "--cluster",
            &nats.url(),
            "--node",
            name,
            "--cluster-lease",
            &lease,
            "--rate",
            "1000",
            "--burst",
            "1000",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        let (server, addr, log) = Run {
            args: args.map(str::to_owned).to_vec(),
            dir,
            env: Vec::new(),
            unset: Vec::new(),
        }
        .start_logged();
        let mut node = Self {
            name: name.to_owned(),
            server,
            addr,
            admin: String::new(),
            log,
            lines: Vec::new(),
        };
        let line = node.logged("admin listening on ");
        let rest = line.split("admin listening on ").nth(1).unwrap_or("");
        node.admin = rest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = get(&node.admin, "/readyz").await;
            if matches!(&got, Ok((200, _))) {
                return node;
            }
            if Instant::now() > deadline {
                let tail = node.log_tail();
                panic!("node {name}'s /readyz still answers {got:?}\n{tail}");
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first line (from the start) containing `needle`, within [`WAIT`].
    fn logged(&mut self, needle: &str) -> String {
        if let Some(line) = self.lines.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let tail = self.log_tail();
                    panic!(
                        "node {}: no log line containing {needle:?}\n{tail}",
                        self.name
                    )
                }
            }
        }
    }

    /// Its last 60 log lines.
    fn log_tail(&mut self) -> String {
        self.lines.extend(self.log.try_iter());
        let start = self.lines.len().saturating_sub(60);
        self.lines[start..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = self.log_tail();
            eprintln!("--- node {} logged:\n{tail}", self.name);
        }
    }
}

/// `GET path` on an admin listener: the status and the body.
async fn get(admin: &str, path: &str) -> std::io::Result<(u16, String)> {
    admin_get::get(admin, path, WAIT).await
}

/// What one read gave.
enum Got {
    Msg(ServerMsg),
    Closed,
    Quiet,
}

/// A framed client that survives its server's death: a write or a read that fails is an
/// answer, not a panic.
struct Peer {
    nick: String,
    io: Framed<TcpStream, ClientCodec>,
}

impl Peer {
    /// Logs in as `nick`: `Ok` once in `lobby`, `Err` with the refusal.
    async fn hello(addr: &str, nick: &str) -> Result<Self, ServerMsg> {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut peer = Self {
            nick: nick.to_owned(),
            io: Framed::new(stream, ClientCodec::default()),
        };
        let hello = ClientMsg::Hello {
            nick: nick.into(),
            version: Some(1),
            client: Some("cluster_binary".into()),
            password: None,
        };
        assert!(peer.send(Request::new(hello)).await, "[{nick}] hello");
        match peer.next(WAIT).await {
            Got::Msg(ServerMsg::Welcome { .. }) => {}
            Got::Msg(other) => return Err(other),
            Got::Closed => panic!("[{nick}] closed before an answer to hello"),
            Got::Quiet => panic!("[{nick}] no answer to hello within {WAIT:?}"),
        }
        peer.until("the lobby members", WAIT, |m| {
            matches!(m, ServerMsg::Members { room, .. } if room == "lobby").then_some(())
        })
        .await;
        Ok(peer)
    }

    /// Logs in as `nick`, trying again on a new connection while it is taken, until
    /// `deadline`.
    async fn hello_when_free(addr: &str, nick: &str, deadline: Instant) -> Self {
        loop {
            match Self::hello(addr, nick).await {
                Ok(peer) => return peer,
                Err(ServerMsg::Error {
                    code: ErrorCode::NickTaken,
                    ..
                }) if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
                Err(other) => panic!("hello as {nick} on {addr}: {other:?}"),
            }
        }
    }

    /// Sends `req`; `false` if the connection is gone.
    async fn send(&mut self, req: Request) -> bool {
        matches!(timeout(WAIT, self.io.send(req)).await, Ok(Ok(())))
    }

    /// The next message (pings answered and hidden), the end, or nothing within `dur`.
    async fn next(&mut self, dur: Duration) -> Got {
        let deadline = Instant::now() + dur;
        loop {
            match tokio::time::timeout_at(deadline, self.io.next()).await {
                Err(_) => return Got::Quiet,
                Ok(None | Some(Err(_))) => return Got::Closed,
                Ok(Some(Ok(ServerMsg::Ping { token }))) => {
                    let _ = self.send(Request::new(ClientMsg::Pong { token })).await;
                }
                Ok(Some(Ok(msg))) => return Got::Msg(msg),
            }
        }
    }

    /// Skips to the message `f` picks, within `within`; the end or a timeout fails.
    async fn until<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            match self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Got::Msg(m) => match f(&m) {
                    Some(t) => return t,
                    None => skipped.push(m),
                },
                Got::Closed => panic!("[{}] closed while waiting for {what}", self.nick),
                Got::Quiet => {
                    let start = skipped.len().saturating_sub(12);
                    panic!(
                        "[{}] no {what} within {within:?}; skipped: {:#?}",
                        self.nick,
                        &skipped[start..]
                    )
                }
            }
        }
    }

    /// Joins `room`: (`history` messages, `truncated`, sorted `members`).
    async fn join(
        &mut self,
        room: &str,
        since: Option<u64>,
    ) -> (Vec<ChatMessage>, bool, Vec<String>) {
        let join = ClientMsg::Join {
            room: room.into(),
            since,
            key: None,
        };
        assert!(self.send(Request::new(join)).await, "[{}] join", self.nick);
        let nick = self.nick.clone();
        self.until(&format!("joined {room}"), WAIT, |m| match m {
            ServerMsg::Joined {
                room: r, nick: n, ..
            } if r == room && *n == nick => Some(()),
            ServerMsg::Error { .. } => panic!("[{nick}] join {room}: {m:?}"),
            _ => None,
        })
        .await;
        let (messages, truncated) = self
            .until(&format!("history of {room}"), WAIT, |m| match m {
                ServerMsg::History {
                    room: r,
                    messages,
                    truncated,
                } if r == room => Some((messages.clone(), *truncated)),
                _ => None,
            })
            .await;
        let mut members = self
            .until(&format!("members of {room}"), WAIT, |m| match m {
                ServerMsg::Members { room: r, nicks, .. } if r == room => Some(nicks.clone()),
                _ => None,
            })
            .await;
        members.sort();
        (messages, truncated, members)
    }

    /// `who room`, sorted.
    async fn who(&mut self, room: &str) -> Vec<String> {
        let who = ClientMsg::Who { room: room.into() };
        assert!(self.send(Request::new(who)).await, "[{}] who", self.nick);
        let mut nicks = self
            .until(&format!("members of {room}"), WAIT, |m| match m {
                ServerMsg::Members { room: r, nicks, .. } if r == room => Some(nicks.clone()),
                _ => None,
            })
            .await;
        nicks.sort();
        nicks
    }

    /// The whole retained history of `room`, oldest first, paged back 100 at a time.
    async fn full_history(&mut self, room: &str) -> Vec<ChatMessage> {
        let mut all = Vec::new();
        let mut before = None;
        for _ in 0..100 {
            let history = ClientMsg::History {
                room: room.into(),
                before,
                limit: Some(100),
                after: None,
            };
            assert!(
                self.send(Request::new(history)).await,
                "[{}] history",
                self.nick
            );
            let nick = self.nick.clone();
            let page = self
                .until(&format!("history of {room}"), WAIT, |m| match m {
                    ServerMsg::History {
                        room: r, messages, ..
                    } if r == room => Some(messages.clone()),
                    ServerMsg::Error { .. } => panic!("[{nick}] history of {room}: {m:?}"),
                    _ => None,
                })
                .await;
            let Some(first) = page.first() else {
                return all;
            };
            before = Some(first.id);
            all.splice(0..0, page);
        }
        panic!("[{}] over 100 pages of history", self.nick);
    }

    /// Reads until nothing arrives for `quiet`, keeping the messages of `room`.
    async fn drain(&mut self, room: &str, quiet: Duration, into: &mut Vec<ChatMessage>) {
        loop {
            match self.next(quiet).await {
                Got::Msg(ServerMsg::Message(m)) if m.room == room => into.push(m),
                Got::Msg(_) => {}
                Got::Closed => panic!("[{}] closed while draining", self.nick),
                Got::Quiet => return,
            }
        }
    }
}

/// What a chatting client did and saw.
#[derive(Default)]
struct Tally {
    /// Its own messages, as acknowledged.
    acked: Vec<ChatMessage>,
    /// Every message of the room it received, in order (its acknowledgements included).
    seen: Vec<ChatMessage>,
    /// The message it had sent and not yet seen acknowledged when its connection ended.
    in_flight: Option<(Uuid, String)>,
    /// Its connection ended.
    closed: bool,
}

/// Sends messages with ids to `room`, one at a time (each waits for its acknowledgement,
/// recording whatever else arrives, then [`PACE`]), until `stop`, `max`, or the
/// connection's end; counts its acknowledgements in `acks`.
async fn chatter(
    mut peer: Peer,
    room: &'static str,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    max: usize,
) -> (Peer, Tally) {
    let mut tally = Tally::default();
    'sending: for i in 0..max {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if i > 0 {
            sleep(PACE).await;
        }
        let id = Uuid::new_v4();
        let text = format!("{} {i}", peer.nick);
        let say = ClientMsg::Say {
            room: room.into(),
            text: text.clone(),
            action: false,
        };
        if !peer.send(Request::with_id(id, say)).await {
            tally.in_flight = Some((id, text));
            tally.closed = true;
            break;
        }
        loop {
            match peer.next(Duration::from_secs(10)).await {
                Got::Msg(ServerMsg::Message(m)) if m.room == room => {
                    let mine = m.id == id;
                    if mine {
                        tally.acked.push(m.clone());
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    tally.seen.push(m);
                    if mine {
                        break;
                    }
                }
                Got::Msg(ServerMsg::Error { ref_id, .. }) if ref_id == Some(id) => {
                    panic!("[{}] message {i} refused", peer.nick)
                }
                Got::Msg(_) => {}
                Got::Closed => {
                    tally.in_flight = Some((id, text));
                    tally.closed = true;
                    break 'sending;
                }
                Got::Quiet => panic!("[{}] no acknowledgement of message {i} in 10 s", peer.nick),
            }
        }
    }
    (peer, tally)
}

/// What must be the same about a message wherever it is seen.
fn keys(ms: &[ChatMessage]) -> Vec<(u64, Uuid, String, String)> {
    ms.iter()
        .map(|m| (m.seq, m.id, m.from.clone(), m.text.clone()))
        .collect()
}

/// `kill -9` of node B while clients on A (ann), B (bea) and C (cal) send into one room
/// with client ids. Afterwards: A and C answer the same history, in strictly increasing
/// seq, every id once, every acknowledged message in it with its acknowledged seq; ann and
/// cal each saw exactly that history live, bea a prefix of it. B's members leave `who` on
/// A and C and bea's nick is free within the lease and a margin; bea, back on A, gets with
/// `join since` exactly what she missed; her message in flight when B died, resent with its
/// id, ends up stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_stream_loses_no_acknowledged_message() {
    timeout(LIMIT, kill_9_of_a_node())
        .await
        .unwrap_or_else(|_| panic!("the test took over {LIMIT:?}"));
}

async fn kill_9_of_a_node() {
    const ROOM: &str = "den";
    let Some(nats) = Nats::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&nats, "a", dir.path()).await;
    let b = Node::start(&nats, "b", dir.path()).await;
    let c = Node::start(&nats, "c", dir.path()).await;

    let mut ann = Peer::hello(&a.addr, "ann").await.expect("ann on A");
    let mut bea = Peer::hello(&b.addr, "bea").await.expect("bea on B");
    let mut cal = Peer::hello(&c.addr, "cal").await.expect("cal on C");
    ann.join(ROOM, None).await;
    bea.join(ROOM, None).await;
    cal.join(ROOM, None).await;
    // Everyone is in before anyone sends, so each sees every message live.
    for peer in [&mut ann, &mut bea, &mut cal] {
        let deadline = Instant::now() + WAIT;
        loop {
            let members = peer.who(ROOM).await;
            if members == ["ann", "bea", "cal"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {ROOM} lists {members:?}, not all three",
                peer.nick
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let bea_acks = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(AtomicUsize::new(0));
    let ann_task = tokio::spawn(chatter(ann, ROOM, stop.clone(), others.clone(), MAX_EACH));
    let bea_task = tokio::spawn(chatter(bea, ROOM, stop.clone(), bea_acks.clone(), MAX_EACH));
    let cal_task = tokio::spawn(chatter(cal, ROOM, stop.clone(), others.clone(), MAX_EACH));
    let deadline = Instant::now() + Duration::from_secs(10);
    while bea_acks.load(Ordering::SeqCst) < 10 {
        assert!(
            Instant::now() < deadline,
            "bea has {} acknowledgements after 10 s",
            bea_acks.load(Ordering::SeqCst)
        );
        sleep(Duration::from_millis(2)).await;
    }
    b.server.signal("-KILL");
    let killed = Instant::now();
    let others_at_kill = others.load(Ordering::SeqCst);
    sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ann, mut ta) = ann_task.await.expect("ann's task");
    let (_, tb) = bea_task.await.expect("bea's task");
    let (mut cal, mut tc) = cal_task.await.expect("cal's task");
    assert!(tb.closed, "bea's connection outlived kill -9 of node B");
    assert!(!ta.closed && !tc.closed, "a connection to A or C ended");
    let others_after = others.load(Ordering::SeqCst) - others_at_kill;
    assert!(
        others_after > 0,
        "ann and cal sent nothing acknowledged after the kill"
    );
    eprintln!(
        "acknowledged: ann {}, bea {} (in flight: {:?}), cal {}; {others_after} on A and C after the kill",
        ta.acked.len(),
        tb.acked.len(),
        tb.in_flight,
        tc.acked.len()
    );
    ann.drain(ROOM, Duration::from_millis(500), &mut ta.seen)
        .await;
    cal.drain(ROOM, Duration::from_millis(500), &mut tc.seen)
        .await;

    // One history, the same on A and C: strictly increasing seq, each id once.
    let history = ann.full_history(ROOM).await;
    assert_eq!(
        keys(&history),
        keys(&cal.full_history(ROOM).await),
        "history on A and on C"
    );
    for pair in history.windows(2) {
        assert!(
            pair[1].seq > pair[0].seq,
            "seq {} after {}: {:#?}",
            pair[1].seq,
            pair[0].seq,
            keys(&history)
        );
    }
    let gaps: Vec<(u64, u64)> = history
        .windows(2)
        .filter(|p| p[1].seq != p[0].seq + 1)
        .map(|p| (p[0].seq, p[1].seq))
        .collect();
    eprintln!(
        "{} messages in history; gaps in seq: {gaps:?}",
        history.len()
    );
    let mut ids: Vec<Uuid> = history.iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), history.len(), "an id twice in history");
    // Every acknowledged message is there, with its acknowledged seq.
    for acked in ta.acked.iter().chain(&tb.acked).chain(&tc.acked) {
        let found: Vec<&ChatMessage> = history.iter().filter(|m| m.id == acked.id).collect();
        assert_eq!(
            found.len(),
            1,
            "acknowledged {} ({:?}, seq {}) is not in history once",
            acked.id,
            acked.text,
            acked.seq
        );
        assert_eq!(found[0].seq, acked.seq, "{:?}", acked.text);
    }
    // Each survivor saw exactly that, live; bea a prefix of it.
    assert_eq!(keys(&ta.seen), keys(&history), "ann's live view (on A)");
    assert_eq!(keys(&tc.seen), keys(&history), "cal's live view (on C)");
    assert!(
        tb.seen.len() <= history.len(),
        "bea saw more than history has"
    );
    assert_eq!(
        keys(&tb.seen),
        keys(&history[..tb.seen.len()]),
        "bea's live view (on B) is not a prefix of history"
    );

    // B's members leave, as seen from A and C.
    let deadline = killed + FREED;
    for peer in [&mut ann, &mut cal] {
        loop {
            let members = peer.who(ROOM).await;
            if members == ["ann", "cal"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {ROOM} still lists {members:?} {FREED:?} after node B's death",
                peer.nick
            );
            sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "[{}] bea left {ROOM} {:?} after the kill",
            peer.nick,
            killed.elapsed()
        );
    }
    // Her nick is free: she is back, on A.
    let mut bea = Peer::hello_when_free(&a.addr, "bea", deadline).await;
    eprintln!("bea back on A {:?} after the kill", killed.elapsed());
    let last = tb.seen.last().map_or(0, |m| m.seq);
    let (missed, truncated, members) = bea.join(ROOM, Some(last)).await;
    assert!(!truncated, "join since {last} truncated");
    assert_eq!(members, ["ann", "bea", "cal"]);
    let expected: Vec<ChatMessage> = history.iter().filter(|m| m.seq > last).cloned().collect();
    assert_eq!(keys(&missed), keys(&expected), "join since {last}");
    for m in &missed {
        assert!(
            tb.seen.iter().all(|s| s.id != m.id),
            "{m:?} was seen already"
        );
    }

    // The message in flight when B died, resent with its id: stored once, whether B had
    // stored it or not.
    if let Some((id, text)) = tb.in_flight.clone() {
        let stored = history.iter().find(|m| m.id == id).cloned();
        let say = ClientMsg::Say {
            room: ROOM.into(),
            text: text.clone(),
            action: false,
        };
        assert!(bea.send(Request::with_id(id, say)).await, "bea's resend");
        let ack = bea
            .until("the resend's acknowledgement", WAIT, |m| match m {
                ServerMsg::Message(m) if m.id == id => Some(m.clone()),
                ServerMsg::Error { ref_id, .. } if *ref_id == Some(id) => {
                    panic!("the resend was refused: {m:?}")
                }
                _ => None,
            })
            .await;
        if let Some(stored) = &stored {
            assert_eq!(
                (ack.seq, ack.ts),
                (stored.seq, stored.ts),
                "the stored original"
            );
        }
        let copies = usize::from(stored.is_none());
        for (peer, seen) in [(&mut ann, &mut ta.seen), (&mut cal, &mut tc.seen)] {
            let before = seen.len();
            peer.drain(ROOM, Duration::from_millis(500), seen).await;
            let got = seen[before..].iter().filter(|m| m.id == id).count();
            assert_eq!(got, copies, "[{}] copies of the resend", peer.nick);
        }
        let after = bea.full_history(ROOM).await;
        assert_eq!(after.iter().filter(|m| m.id == id).count(), 1, "{text:?}");
    }
    drop((a, b, c));
}
