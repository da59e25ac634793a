//! chat-tui's file transfers against the real `chat-server` with its file service on:
//! `App` + `update` driven by what the real `net` task and the real transfer tasks
//! ([`Transfers`], as the runtime runs them) report, so `/upload` and `/download` go
//! through the same code as in the terminal, over real HTTP.
//!
//! The server's `public_url` points at a TCP proxy in this test, so every upload and
//! download link goes through it: it cuts a connection (or holds it) once a given number of
//! bytes has gone one way. That is how "an upload cut at 40 % resumes", "a download cut at
//! 40 % resumes with `Range`" and "an upload survives a chat reconnect" are checked, with
//! the SHA-256 of what arrives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_shared::ServerMsg;
use chat_shared::message::FileInfo;
use chat_tui::app::{ConnState, EntryKind};
use chat_tui::http::Http;
use chat_tui::net::{self, NetCommand, NetConfig};
use chat_tui::runtime::{Transfers, now_ms};
use chat_tui::transfer::{Direction, TransferEvent, TransferState};
use chat_tui::transport::Transport;
use chat_tui::tus::hash_file;
use chat_tui::{Action, App, NetEvent, update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

mod harness;

use harness::Server;

/// Bound on every wait for something that should happen.
const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;
/// The file every test shares: large enough for several chunks either side of a cut.
const SIZE: usize = 10 * MIB;

/// What the proxy does once a connection has sent `after` bytes in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Drop both sides.
    Cut,
    /// Stop forwarding until [`Proxy::release`].
    Hold,
}

/// A rule of the proxy, applied once, to the first connection that gets that far.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// Client to server (an upload's bodies), or server to client (a download's).
    upstream: bool,
    after: u64,
    act: Act,
}

/// `act` once 40 % of the file has gone one way.
fn at_40_percent(upstream: bool, act: Act) -> Rule {
    Rule {
        upstream,
        after: SIZE as u64 * 4 / 10,
        act,
    }
}

#[derive(Default)]
struct ProxyState {
    rule: Mutex<Option<Rule>>,
    /// Set when the rule fired.
    fired: Mutex<Option<Act>>,
    /// Bytes forwarded, client to server and back, over all connections.
    up: AtomicU64,
    down: AtomicU64,
    /// The head of each request (up to its blank line), as the client sent it.
    heads: Mutex<Vec<String>>,
    /// The live connections, to cut them all at once.
    links: Mutex<Vec<JoinHandle<()>>>,
    /// New connections are closed at once while this is set.
    refusing: Mutex<bool>,
}

/// A TCP proxy to `target`.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    release: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let (release, released) = watch::channel(false);
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *st.refusing.lock().unwrap() {
                    continue; // dropped: the client sees the connection close at once
                }
                let link = tokio::spawn(link(inbound, target, st.clone(), released.clone()));
                st.links.lock().unwrap().push(link);
            }
        });
        Self {
            addr,
            state,
            release,
        }
    }

    fn set(&self, rule: Rule) {
        *self.state.rule.lock().unwrap() = Some(rule);
    }

    fn fired(&self) -> Option<Act> {
        *self.state.fired.lock().unwrap()
    }

    fn release(&self) {
        // Ignored: no link may be waiting.
        let _ = self.release.send(true);
    }

    /// Cuts every live connection and refuses new ones until [`Proxy::admit`].
    fn cut_all(&self) {
        *self.state.refusing.lock().unwrap() = true;
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn admit(&self) {
        *self.state.refusing.lock().unwrap() = false;
    }

    fn heads(&self) -> Vec<String> {
        self.state.heads.lock().unwrap().clone()
    }

    fn bytes(&self) -> (u64, u64) {
        (
            self.state.up.load(Ordering::Relaxed),
            self.state.down.load(Ordering::Relaxed),
        )
    }
}

/// One proxied connection: a pump each way; whichever ends (or cuts) ends both.
async fn link(
    inbound: TcpStream,
    target: SocketAddr,
    state: Arc<ProxyState>,
    released: watch::Receiver<bool>,
) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (client_rd, client_wr) = inbound.into_split();
    let (server_rd, server_wr) = outbound.into_split();
    let up = pump(client_rd, server_wr, true, state.clone(), released.clone());
    let down = pump(server_rd, client_wr, false, state, released);
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    upstream: bool,
    state: Arc<ProxyState>,
    mut released: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut data = &buf[..n];
        if upstream && starts_like_a_request(data) {
            let head = String::from_utf8_lossy(data);
            let head = head.split("\r\n\r\n").next().unwrap_or("").to_owned();
            state.heads.lock().unwrap().push(head);
        }
        let rule = {
            let mut rule = state.rule.lock().unwrap();
            match *rule {
                Some(r) if r.upstream == upstream && sent + n as u64 > r.after => rule.take(),
                _ => None,
            }
        };
        if let Some(rule) = rule {
            let (before, rest) = data.split_at(usize::try_from(rule.after - sent).unwrap());
            if forward(&mut to, before, upstream, &state).await.is_err() {
                return;
            }
            sent += before.len() as u64;
            *state.fired.lock().unwrap() = Some(rule.act);
            if rule.act == Act::Cut {
                return;
            }
            // Ignored: a dropped sender releases too.
            let _ = released.wait_for(|r| *r).await;
            data = rest;
        }
        if forward(&mut to, data, upstream, &state).await.is_err() {
            return;
        }
        sent += data.len() as u64;
    }
}

async fn forward(
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    data: &[u8],
    upstream: bool,
    state: &ProxyState,
) -> std::io::Result<()> {
    to.write_all(data).await?;
    let count = if upstream { &state.up } else { &state.down };
    count.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn starts_like_a_request(data: &[u8]) -> bool {
    ["GET ", "HEAD ", "PATCH ", "OPTIONS ", "DELETE "]
        .iter()
        .any(|m| data.starts_with(m.as_bytes()))
}

/// The real server, its files in a temporary directory, its links through `http`.
struct FileServer {
    server: Server,
    addr: SocketAddr,
    http: Proxy,
    _dir: tempfile::TempDir,
}

impl FileServer {
    /// With `public_url`, in which `{proxy}` and `{server}` stand for the addresses.
    async fn start_with(public_url: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = Proxy::start(addr).await;
        let dir = tempfile::tempdir().unwrap();
        let mut files = chat_server::FilesConfig::in_dir(dir.path().join("files"));
        files.public_url = Some(
            public_url
                .replace("{proxy}", &http.addr.to_string())
                .replace("{server}", &addr.to_string()),
        );
        let config = chat_server::Config {
            files: Some(files),
            ..chat_server::Config::default()
        };
        Self {
            server: Server::start(listener, config),
            addr,
            http,
            _dir: dir,
        }
    }

    async fn start() -> Self {
        Self::start_with("http://{proxy}").await
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// One chat-tui: its state, its network task and its transfer tasks.
struct Client {
    app: App,
    cmd_tx: mpsc::UnboundedSender<NetCommand>,
    net_rx: mpsc::Receiver<NetEvent>,
    net: JoinHandle<()>,
    transfers: Transfers,
    transfer_rx: mpsc::Receiver<TransferEvent>,
    /// Every transfer event, in order.
    events: Vec<TransferEvent>,
    /// Every `upload_slot`: its `ref` (the upload's id), url and offset.
    slots: Vec<(Uuid, String, u64)>,
}

impl Client {
    fn start(nick: &str, addr: SocketAddr) -> Self {
        let (events_tx, net_rx) = mpsc::channel(1024);
        let (cmd_tx, net) = net::spawn(NetConfig::new(addr.to_string()), events_tx);
        let (transfer_tx, transfer_rx) = mpsc::channel(256);
        let mut http = Http::new(addr.to_string(), Transport::Plain);
        http.timeout = Duration::from_secs(10);
        let mut transfers = Transfers::new(http, transfer_tx);
        transfers.chunk = MIB;
        let mut app = App::new(nick, addr.to_string());
        app.now_ms = now_ms();
        Self {
            app,
            cmd_tx,
            net_rx,
            net,
            transfers,
            transfer_rx,
            events: Vec::new(),
            slots: Vec::new(),
        }
    }

    fn apply(&mut self, action: Action) {
        let effects = update(&mut self.app, action);
        for effect in harness::to_net(effects, self.app.conn_gen, &self.cmd_tx) {
            // `Quit` is not typed here; everything else is a transfer's.
            self.transfers.perform(effect);
        }
    }

    fn type_line(&mut self, line: &str) {
        for key in harness::typed(line) {
            self.apply(key);
        }
    }

    /// Feeds what the network and the transfer tasks report (and the slow clock) into
    /// the app until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while !done(self) {
            let action = tokio::select! {
                ev = self.net_rx.recv() => {
                    let ev = ev.unwrap_or_else(|| panic!("{}: network task ended", self.app.nick));
                    if let NetEvent::Message(ServerMsg::UploadSlot { ref_id, url, offset, .. }) = &ev {
                        self.slots.push((*ref_id, url.clone(), *offset));
                    }
                    Action::Net(ev)
                }
                Some(ev) = self.transfer_rx.recv() => {
                    self.events.push(ev.clone());
                    Action::Transfer(ev)
                }
                _ = tick.tick() => Action::Tick { now_ms: now_ms() },
                () = tokio::time::sleep_until(deadline) => panic!(
                    "{}: timed out waiting for {what}; transfers: {:#?}; events: {:?}",
                    self.app.nick,
                    self.app.transfers,
                    self.events.iter().filter(|e| !matches!(e, TransferEvent::Progress { .. })).collect::<Vec<_>>()
                ),
            };
            self.apply(action);
        }
    }

    async fn online_in_lobby(&mut self) {
        self.until("online in the lobby", |c| {
            let app = &c.app;
            app.online()
                && app.current_tab().name == "lobby"
                && app.current_tab().members.iter().any(|m| app.is_me(m))
        })
        .await;
    }

    /// Waits until the transfer `n` (0: the first) is done, and returns its state's detail;
    /// a failure fails the test.
    async fn until_done(&mut self, n: usize) -> String {
        self.until(&format!("transfer {n} done"), |c| {
            c.app.transfers.get(n).is_some_and(|t| {
                assert!(
                    !matches!(t.state, TransferState::Failed { .. }),
                    "{}: {t:?}",
                    c.app.nick
                );
                matches!(t.state, TransferState::Done { .. })
            })
        })
        .await;
        match &self.app.transfers[n].state {
            TransferState::Done { detail } => detail.clone(),
            _ => unreachable!(),
        }
    }

    /// Waits for file `n` (1: the first) of the scrollback.
    async fn until_file(&mut self, n: usize) -> FileInfo {
        self.until(&format!("[file {n}]"), |c| c.app.files.len() >= n)
            .await;
        self.app.files[n - 1].clone()
    }

    fn retried(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, TransferEvent::Retrying { .. }))
    }

    async fn stop(mut self) {
        self.transfers.stop_all();
        // Ignored: the task may already have ended.
        let _ = self.cmd_tx.send(NetCommand::Shutdown);
        timeout(WAIT, self.net).await.unwrap().unwrap();
    }
}

/// `SIZE` bytes that are not all alike, as `dir/name`; the bytes and the SHA-256.
fn sample(dir: &Path, name: &str) -> (PathBuf, Vec<u8>, String) {
    let data: Vec<u8> = (0..SIZE as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let (_, sha) = hash_file(&path).unwrap();
    (path, data, sha)
}

/// How many messages of the lobby carry a file.
fn file_messages(app: &App) -> usize {
    let i = app.room_index("lobby").expect("lobby tab");
    app.tabs[i]
        .entries
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::Message { file: Some(_), .. }))
        .count()
}

/// Alice and bob in the lobby of `server`, alice's chat through `alice_via`.
async fn alice_and_bob(server: &FileServer, alice_via: SocketAddr) -> (Client, Client) {
    let mut alice = Client::start("alice", alice_via);
    alice.online_in_lobby().await;
    let mut bob = Client::start("bob", server.addr);
    bob.online_in_lobby().await;
    (alice, bob)
}

/// Stops both clients, then the server.
async fn finish(server: FileServer, alice: Client, bob: Client) {
    alice.stop().await;
    bob.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_upload_cut_at_40_percent_resumes_and_the_shared_file_is_the_same() {
    let server = FileServer::start().await;
    let (mut alice, mut bob) = alice_and_bob(&server, server.addr).await;
    let src = tempfile::tempdir().unwrap();
    let (path, data, sha) = sample(src.path(), "报告 2024.bin");
    server.http.set(at_40_percent(true, Act::Cut));

    alice.type_line(&format!("/upload {}", path.display()));
    assert_eq!(alice.until_done(0).await, "#lobby");
    assert_eq!(server.http.fired(), Some(Act::Cut), "the upload was cut");
    assert!(alice.retried(), "{:?}", alice.events);
    // Resumed from what the server had (HEAD), not from the start: at most one chunk, the
    // one cut, went twice.
    let (up, _) = server.http.bytes();
    assert!(
        up < (SIZE + 2 * MIB) as u64,
        "{up} bytes sent for {SIZE}: not resumed"
    );
    let heads = server.http.heads();
    assert!(
        heads.iter().any(|h| h.starts_with("HEAD /uploads/")),
        "{heads:?}"
    );
    assert_eq!(alice.slots.len(), 1, "one slot: {:?}", alice.slots);

    // Everyone sees the file as hashed here, once; and what the server serves is it.
    let file = bob.until_file(1).await;
    assert_eq!(
        (file.name.as_str(), file.size, file.sha256.as_str()),
        ("报告 2024.bin", SIZE as u64, sha.as_str())
    );
    assert_eq!(file_messages(&alice.app), 1);
    assert_eq!(file_messages(&bob.app), 1);
    let dir = tempfile::tempdir().unwrap();
    bob.type_line(&format!("/download 1 {}", dir.path().display()));
    bob.until_done(0).await;
    assert!(std::fs::read(dir.path().join("报告 2024.bin")).unwrap() == data);

    finish(server, alice, bob).await;
}

#[tokio::test]
async fn a_download_cut_at_40_percent_resumes_with_range_and_verifies() {
    let server = FileServer::start().await;
    let (mut alice, mut bob) = alice_and_bob(&server, server.addr).await;
    let src = tempfile::tempdir().unwrap();
    let (path, data, _) = sample(src.path(), "年度报告.bin");
    alice.type_line(&format!("/upload {}", path.display()));
    alice.until_done(0).await;
    let file = bob.until_file(1).await;
    assert!(
        file.url
            .starts_with(&format!("http://{}/files/", server.http.addr)),
        "{}",
        file.url
    );

    let (_, before) = server.http.bytes();
    server.http.set(at_40_percent(false, Act::Cut));
    let dir = tempfile::tempdir().unwrap();
    bob.type_line(&format!("/download 1 {}", dir.path().display()));
    let saved = bob.until_done(0).await;
    assert_eq!(
        PathBuf::from(saved),
        dir.path().join("年度报告.bin"),
        "saved under its own name"
    );
    assert_eq!(server.http.fired(), Some(Act::Cut), "the download was cut");
    assert!(bob.retried(), "{:?}", bob.events);
    assert!(std::fs::read(dir.path().join("年度报告.bin")).unwrap() == data);
    assert!(!dir.path().join("年度报告.bin.part").exists());
    // The second GET asked for the rest only, from what had reached the disk.
    let gets: Vec<String> = server
        .http
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("GET /files/"))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(!gets[0].to_ascii_lowercase().contains("range:"), "{gets:?}");
    let from: u64 = gets[1]
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("range: bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("not a ranged request: {gets:?}"));
    assert!(from > 0 && from <= SIZE as u64 * 4 / 10, "{from}");
    let (_, after) = server.http.bytes();
    assert!(
        after - before < (SIZE + MIB) as u64,
        "{} bytes fetched for {SIZE}: not resumed",
        after - before
    );

    finish(server, alice, bob).await;
}

#[tokio::test]
async fn an_upload_goes_on_across_a_chat_reconnect_with_the_same_slot() {
    let server = FileServer::start().await;
    let chat = Proxy::start(server.addr).await;
    let (mut alice, mut bob) = alice_and_bob(&server, chat.addr).await;
    let src = tempfile::tempdir().unwrap();
    let (path, _, sha) = sample(src.path(), "议程.bin");
    // The upload stops at 40 % (its connection open, the bytes held) until released.
    server.http.set(at_40_percent(true, Act::Hold));
    alice.type_line(&format!("/upload {}", path.display()));
    alice
        .until("the upload held at 40 %", |_| {
            server.http.fired() == Some(Act::Hold)
        })
        .await;

    // The chat connection drops and comes back while the upload waits.
    chat.cut_all();
    alice
        .until("the drop", |c| {
            matches!(c.app.conn, ConnState::Offline { .. })
        })
        .await;
    chat.admit();
    alice
        .until("the slot asked for again", |c| c.slots.len() == 2)
        .await;
    let id = alice.app.transfers[0].id;
    let (first, again) = (&alice.slots[0], &alice.slots[1]);
    assert_eq!((first.0, again.0), (id, id), "{:?}", alice.slots);
    assert_eq!(first.1, again.1, "the same slot");
    assert!(
        again.2 > 0 && again.2 <= SIZE as u64 * 4 / 10,
        "the server's offset: {}",
        again.2
    );

    server.http.release();
    assert_eq!(alice.until_done(0).await, "#lobby");
    let t = &alice.app.transfers[0];
    assert_eq!((t.direction, t.done), (Direction::Up, SIZE as u64));
    let file = bob.until_file(1).await;
    assert_eq!(
        (file.size, file.sha256.as_str()),
        (SIZE as u64, sha.as_str())
    );
    // Shared once, by the new connection: the old one's slot moved with the id.
    assert_eq!(file_messages(&bob.app), 1);
    assert_eq!(alice.slots.len(), 2, "{:?}", alice.slots);

    finish(server, alice, bob).await;
}

#[tokio::test]
async fn a_slot_link_that_answers_404_ends_the_upload_without_asking_again_and_again() {
    // A `public_url` that does not lead to the file service (a wrong path prefix).
    let server = FileServer::start_with("http://{server}/not-here").await;
    let (mut alice, bob) = alice_and_bob(&server, server.addr).await;
    let src = tempfile::tempdir().unwrap();
    let (path, _, _) = sample(src.path(), "a.bin");
    alice.type_line(&format!("/upload {}", path.display()));
    alice
        .until("the upload to fail", |c| {
            c.app
                .transfers
                .first()
                .is_some_and(|t| matches!(t.state, TransferState::Failed { .. }))
        })
        .await;
    let TransferState::Failed { error } = &alice.app.transfers[0].state else {
        unreachable!()
    };
    assert!(error.contains("--public-url"), "{error}");
    assert_eq!(
        alice.slots.len(),
        2,
        "asked once more, no more: {:?}",
        alice.slots
    );
    finish(server, alice, bob).await;
}
