//! Helpers shared by every integration test: a real server on `127.0.0.1:0` and the clients
//! that talk to it over real sockets.
//!
//! Layout:
//! - [`spawn_server`] / [`TestServer`]: `chat_server::run` on an ephemeral port, stopped by a
//!   oneshot so the shutdown path is exercised too.
//! - [`Client`]: a typed framed client (`ClientCodec`), plus raw writes for hand-made bytes;
//!   over TCP by default, over any stream (TLS) with [`Client::from_io`].
//! - [`RawFramed`]: frames in and out as bytes, for checks on the literal JSON.
//! - [`Line`]: a plain-text client, as `nc` or `telnet` would be; over any stream's halves
//!   with [`Line::from_halves`].
//! - Small helpers: [`cfg`], [`frame`], [`say_req`], [`assert_pair_chats`], [`fill_room`].
//!
//! Every wait is bounded by [`WAIT`]; a timeout is a test failure that names what was awaited.

#![allow(dead_code)] // Each test module uses a different subset of the helpers.

#[allow(dead_code)] // not every test binary sends admin requests
pub mod admin_get;

use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_server::Config;
use chat_shared::{
    ByeReason, ChatMessage, ClientCodec, ClientMsg, DirectMessage, ErrorCode, FrameCodec, Request,
    ServerMsg,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::codec::Framed;
use uuid::Uuid;

/// The bound on every single wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(250);

/// Sniff window used by most tests: short, so a silent line client is greeted quickly.
pub const SNIFF: Duration = Duration::from_millis(100);

/// The test configuration: contract defaults with a short sniff window.
pub fn cfg() -> Config {
    Config {
        sniff: SNIFF,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A server running in this test's runtime.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Fires the shutdown future given to `run`.
    pub stop: Option<oneshot::Sender<()>>,
    /// The task running `run`.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Binds `127.0.0.1:0` and spawns `chat_server::run` with a shutdown future driven by `stop`.
pub async fn spawn_server(cfg: Config) -> TestServer {
    // The binary's listen backlog (`--backlog` 4096), not `TcpListener::bind`'s 1024: a
    // join storm of 1,000 beside other tests' connections overflowed that on a busy
    // machine, and a dropped SYN is retried only after seconds.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind 127.0.0.1:0");
    let listener = socket.listen(4096).expect("listen");
    let addr = listener.local_addr().expect("local_addr");
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(chat_server::run(listener, cfg, async move {
        // An Err means the sender was dropped, which also means "stop".
        let _ = rx.await;
    }));
    TestServer {
        addr,
        stop: Some(stop),
        handle,
    }
}

/// A server with [`cfg`].
pub async fn server() -> TestServer {
    spawn_server(cfg()).await
}

impl TestServer {
    /// Fires `stop` and asserts that `run` returns `Ok` within 5 s.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // Err only if `run` already dropped the receiver; the join below tells.
            let _ = stop.send(());
        }
        match timeout(WAIT, &mut self.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("run returned an error after shutdown: {e:#}"),
            Ok(Err(e)) => panic!("the server task panicked or was cancelled: {e}"),
            Err(_) => panic!("run did not return within {WAIT:?} after the stop future fired"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed framed client
// ---------------------------------------------------------------------------------------------

/// What one read from a connection produced.
#[derive(Debug)]
pub enum Next<T> {
    /// An item.
    Item(T),
    /// End of file (or a reset, which is how a closed socket may look).
    Eof,
    /// Nothing within the time given.
    Timeout,
}

/// A typed framed client over `Framed<S, ClientCodec>`.
pub struct Client<S = TcpStream> {
    /// The nick this client registered with (empty before `hello`).
    pub nick: String,
    io: Framed<S, ClientCodec>,
    /// Answer server `ping`s automatically (and hide them) inside `recv*`.
    pub auto_pong: bool,
}

/// Formats a list of messages for a failure message, most recent last.
fn tail<T: Debug>(items: &[T]) -> String {
    let start = items.len().saturating_sub(12);
    let mut s = String::new();
    for item in &items[start..] {
        s.push_str(&format!("\n    {item:?}"));
    }
    if s.is_empty() {
        s.push_str(" (nothing)");
    }
    s
}

impl Client {
    /// Connects without sending anything.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::from_stream(stream)
    }

    /// Connects with a client codec that accepts frames up to `max_frame` bytes.
    pub async fn connect_with_max_frame(addr: SocketAddr, max_frame: usize) -> Self {
        let mut c = Self::connect(addr).await;
        c.io = Framed::new(c.io.into_inner(), ClientCodec::new(max_frame));
        c
    }

    /// Wraps a connected stream (for example one that was greeted in line mode first).
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_nodelay(true).expect("nodelay");
        Self::from_io(stream)
    }

    /// Connects, says `hello`, and waits for `welcome` and the whole `lobby` join sequence.
    pub async fn login(addr: SocketAddr, nick: &str) -> Self {
        Self::connect(addr).await.register(nick).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Wraps any connected stream.
    pub fn from_io(io: S) -> Self {
        Self {
            nick: String::new(),
            io: Framed::new(io, ClientCodec::default()),
            auto_pong: true,
        }
    }

    /// Says `hello` on this connection and waits for `welcome` and the `lobby` join sequence.
    pub async fn register(self, nick: &str) -> Self {
        let mut c = self;
        let answer = c.hello(nick).await;
        let ServerMsg::Welcome { nick: got, .. } = &answer else {
            panic!("hello as {nick:?}: expected welcome, got {answer:?}");
        };
        c.nick = got.clone();
        c.recv_until("the lobby `members` after welcome", |m| match m {
            ServerMsg::Members { room, .. } if room == "lobby" => Some(()),
            _ => None,
        })
        .await;
        c
    }

    /// Sends `hello` (version 1) and returns the answer (`welcome` or `error`).
    pub async fn hello(&mut self, nick: &str) -> ServerMsg {
        self.send(ClientMsg::Hello {
            nick: nick.into(),
            version: Some(1),
            client: Some("chat-tests".into()),
            password: None,
        })
        .await;
        let answer = self.recv().await;
        if let ServerMsg::Welcome { nick, .. } = &answer {
            self.nick = nick.clone();
        }
        answer
    }

    /// Sends one request without an id.
    pub async fn send(&mut self, msg: ClientMsg) {
        self.send_req(Request::new(msg)).await;
    }

    /// Sends one request.
    pub async fn send_req(&mut self, req: Request) {
        let kind = req.msg.kind();
        timeout(WAIT, self.io.send(req))
            .await
            .unwrap_or_else(|_| panic!("[{}] sending {kind} timed out", self.nick))
            .unwrap_or_else(|e| panic!("[{}] sending {kind}: {e}", self.nick));
    }

    /// Writes arbitrary bytes to the socket, bypassing the codec.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stream = self.io.get_mut();
        timeout(WAIT, stream.write_all(bytes))
            .await
            .expect("raw write timed out")
            .expect("raw write");
    }

    /// Writes one frame with a correct length prefix around an arbitrary payload.
    pub async fn send_payload(&mut self, payload: &[u8]) {
        self.send_bytes(&frame(payload)).await;
    }

    /// The next message, end of file, or a timeout after `dur`.
    pub async fn next(&mut self, dur: Duration) -> Next<ServerMsg> {
        let deadline = Instant::now() + dur;
        loop {
            let got = match tokio::time::timeout_at(deadline, self.io.next()).await {
                Err(_) => return Next::Timeout,
                Ok(got) => got,
            };
            match got {
                None => return Next::Eof,
                Some(Err(chat_shared::CodecError::Io(_))) => return Next::Eof,
                Some(Err(e)) => panic!("[{}] undecodable frame from the server: {e}", self.nick),
                Some(Ok(ServerMsg::Ping { token })) if self.auto_pong => {
                    self.send(ClientMsg::Pong { token }).await;
                }
                Some(Ok(msg)) => return Next::Item(msg),
            }
        }
    }

    /// The next message; a timeout or end of file fails the test.
    pub async fn recv(&mut self) -> ServerMsg {
        match self.next(WAIT).await {
            Next::Item(m) => m,
            Next::Eof => panic!(
                "[{}] connection closed while waiting for a message",
                self.nick
            ),
            Next::Timeout => panic!("[{}] no message within {WAIT:?}", self.nick),
        }
    }

    /// Skips messages until `f` returns `Some`, and returns that; bounded by [`WAIT`] overall.
    pub async fn recv_until<T>(&mut self, what: &str, f: impl FnMut(&ServerMsg) -> Option<T>) -> T {
        self.recv_until_within(WAIT, what, f).await
    }

    /// [`Client::recv_until`], bounded by `within` instead of [`WAIT`].
    pub async fn recv_until_within<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> T {
        let mut seen = Vec::new();
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(m) => {
                    if let Some(t) = f(&m) {
                        return t;
                    }
                    seen.push(m);
                }
                Next::Eof => panic!(
                    "[{}] connection closed while waiting for {what}; skipped:{}",
                    self.nick,
                    tail(&seen)
                ),
                Next::Timeout => panic!(
                    "[{}] timed out after {within:?} waiting for {what}; skipped:{}",
                    self.nick,
                    tail(&seen)
                ),
            }
        }
    }

    /// Like [`Client::recv_until`] but returns every message read, the match last.
    pub async fn recv_until_all(
        &mut self,
        what: &str,
        mut f: impl FnMut(&ServerMsg) -> bool,
    ) -> Vec<ServerMsg> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(m) => {
                    let done = f(&m);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
                Next::Eof => panic!(
                    "[{}] connection closed while waiting for {what}; skipped:{}",
                    self.nick,
                    tail(&seen)
                ),
                Next::Timeout => panic!(
                    "[{}] timed out after {WAIT:?} waiting for {what}; skipped:{}",
                    self.nick,
                    tail(&seen)
                ),
            }
        }
    }

    /// Asserts that nothing at all arrives (and the connection stays open) for `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) {
        match self.next(dur).await {
            Next::Timeout => {}
            Next::Item(m) => panic!("[{}] expected silence, got {m:?}", self.nick),
            Next::Eof => panic!(
                "[{}] expected silence, but the connection closed",
                self.nick
            ),
        }
    }

    /// Reads for `dur` and fails if any message matches `bad`.
    pub async fn expect_none(
        &mut self,
        dur: Duration,
        what: &str,
        bad: impl Fn(&ServerMsg) -> bool,
    ) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Timeout => return,
                Next::Eof => return,
                Next::Item(m) if bad(&m) => {
                    panic!("[{}] expected no {what}, got {m:?}", self.nick)
                }
                Next::Item(_) => {}
            }
        }
    }

    /// Reads whatever is pending until `dur` passes with nothing new.
    pub async fn drain(&mut self, dur: Duration) -> Vec<ServerMsg> {
        let mut seen = Vec::new();
        while let Next::Item(m) = self.next(dur).await {
            seen.push(m);
        }
        seen
    }

    /// Asserts that the server closes the connection next, without sending anything more.
    pub async fn expect_eof(&mut self) {
        match self.next(WAIT).await {
            Next::Eof => {}
            Next::Item(m) => panic!("[{}] expected end of file, got {m:?}", self.nick),
            Next::Timeout => panic!(
                "[{}] expected end of file, but the connection stayed open for {WAIT:?}",
                self.nick
            ),
        }
    }

    /// Skips to a `bye`, asserts its reason, then asserts end of file.
    pub async fn expect_bye_then_eof(&mut self, reason: ByeReason) {
        let got = self
            .recv_until(&format!("bye{{{}}}", reason.as_str()), |m| match m {
                ServerMsg::Bye { reason, .. } => Some(*reason),
                _ => None,
            })
            .await;
        assert_eq!(got, reason, "[{}] bye reason", self.nick);
        self.expect_eof().await;
    }

    /// The next message must be `error{code}`; returns its `ref`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Option<Uuid> {
        match self.recv().await {
            ServerMsg::Error {
                code: got, ref_id, ..
            } if got == code => ref_id,
            other => panic!("[{}] expected error{{{code:?}}}, got {other:?}", self.nick),
        }
    }

    /// Skips to the first `error`, asserts its code and returns its `ref`.
    pub async fn recv_error(&mut self, code: ErrorCode) -> Option<Uuid> {
        let (got, ref_id) = self
            .recv_until(&format!("error{{{code:?}}}"), |m| match m {
                ServerMsg::Error { code, ref_id, .. } => Some((*code, *ref_id)),
                _ => None,
            })
            .await;
        assert_eq!(got, code, "[{}] error code", self.nick);
        ref_id
    }

    /// A liveness round trip: `ping` with a fresh token, skip to the matching `pong`.
    pub async fn roundtrip(&mut self) {
        let token = serde_json::json!(Uuid::new_v4().to_string());
        self.send(ClientMsg::Ping {
            token: Some(token.clone()),
        })
        .await;
        self.recv_until("pong for the liveness ping", |m| match m {
            ServerMsg::Pong { token: Some(t) } if *t == token => Some(()),
            _ => None,
        })
        .await;
    }

    /// Says `text` in `room` with a fresh id and waits for the echo (the acknowledgement).
    pub async fn say(&mut self, room: &str, text: &str) -> ChatMessage {
        let id = Uuid::new_v4();
        self.send_req(say_req(id, room, text)).await;
        self.await_ack(id).await
    }

    /// Waits for the `message` with `id`; an `error` that refers to `id` fails the test.
    pub async fn await_ack(&mut self, id: Uuid) -> ChatMessage {
        let nick = self.nick.clone();
        self.recv_until(&format!("the echo of message {id}"), |m| match m {
            ServerMsg::Message(cm) if cm.id == id => Some(cm.clone()),
            ServerMsg::Error { ref_id, .. } if *ref_id == Some(id) => {
                panic!("[{nick}] message {id} was refused: {m:?}")
            }
            _ => None,
        })
        .await
    }

    /// Skips to the `message` in `room` whose text is `text`.
    pub async fn recv_message(&mut self, room: &str, text: &str) -> ChatMessage {
        self.recv_until(&format!("message {text:?} in {room}"), |m| match m {
            ServerMsg::Message(cm) if cm.room == room && cm.text == text => Some(cm.clone()),
            _ => None,
        })
        .await
    }

    /// Skips to the `message` with text `text`, in any room.
    pub async fn recv_message_anywhere(&mut self, text: &str) -> ChatMessage {
        self.recv_until(&format!("message {text:?}"), |m| match m {
            ServerMsg::Message(cm) if cm.text == text => Some(cm.clone()),
            _ => None,
        })
        .await
    }

    /// Skips to the next `message` of any kind.
    pub async fn recv_any_message(&mut self) -> ChatMessage {
        self.recv_until("a message", |m| match m {
            ServerMsg::Message(cm) => Some(cm.clone()),
            _ => None,
        })
        .await
    }

    /// Skips to the next `dm`.
    pub async fn recv_dm(&mut self) -> DirectMessage {
        self.recv_until("a dm", |m| match m {
            ServerMsg::Dm(dm) => Some(dm.clone()),
            _ => None,
        })
        .await
    }

    /// Joins `room` and returns (`history` messages, `truncated`, `members`), checking that
    /// `joined`, `history` and `members` come in that order.
    pub async fn join(
        &mut self,
        room: &str,
        since: Option<u64>,
    ) -> (Vec<ChatMessage>, bool, Vec<String>) {
        self.send(ClientMsg::Join {
            key: None,
            room: room.into(),
            since,
        })
        .await;
        let nick = self.nick.clone();
        let canon = room.trim_start_matches('#').to_lowercase();
        self.recv_until(&format!("joined {{{canon}, {nick}}}"), |m| match m {
            ServerMsg::Joined { room, nick: n, .. } if *room == canon && *n == nick => Some(()),
            ServerMsg::Error { .. } => panic!("[{nick}] join {canon}: {m:?}"),
            _ => None,
        })
        .await;
        let (messages, truncated) = self
            .recv_until(&format!("history of {canon} after joined"), |m| match m {
                ServerMsg::History {
                    room,
                    messages,
                    truncated,
                } if *room == canon => Some((messages.clone(), *truncated)),
                ServerMsg::Members { room, .. } if *room == canon => {
                    panic!("[{nick}] members of {canon} came before its history")
                }
                _ => None,
            })
            .await;
        let members = self
            .recv_until(&format!("members of {canon} after history"), |m| match m {
                ServerMsg::Members { room, nicks, .. } if *room == canon => Some(nicks.clone()),
                _ => None,
            })
            .await;
        (messages, truncated, members)
    }

    /// Sends `history` and returns (`messages`, `truncated`).
    pub async fn history(
        &mut self,
        room: &str,
        before: Option<Uuid>,
        limit: Option<u32>,
    ) -> (Vec<ChatMessage>, bool) {
        self.send(ClientMsg::History {
            room: room.into(),
            before,
            limit,
            after: None,
        })
        .await;
        let nick = self.nick.clone();
        self.recv_until(&format!("history of {room}"), |m| match m {
            ServerMsg::History {
                room: r,
                messages,
                truncated,
            } if r == room => Some((messages.clone(), *truncated)),
            ServerMsg::Error { .. } => panic!("[{nick}] history of {room}: {m:?}"),
            _ => None,
        })
        .await
    }

    /// Skips to `joined{room, nick}`.
    pub async fn recv_joined(&mut self, room: &str, nick: &str) {
        self.recv_until(&format!("joined {{{room}, {nick}}}"), |m| match m {
            ServerMsg::Joined {
                room: r, nick: n, ..
            } if r == room && n == nick => Some(()),
            _ => None,
        })
        .await
    }

    /// Skips to `parted{room, nick}` and returns its reason.
    pub async fn recv_parted(&mut self, room: &str, nick: &str) -> Option<String> {
        self.recv_until(&format!("parted {{{room}, {nick}}}"), |m| match m {
            ServerMsg::Parted {
                room: r,
                nick: n,
                reason,
                ..
            } if r == room && n == nick => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// Sends `quit` and waits for `bye{quit}` and end of file.
    pub async fn quit(mut self) {
        self.send(ClientMsg::Quit { reason: None }).await;
        self.expect_bye_then_eof(ByeReason::Quit).await;
    }
}

/// A `say` request with an id.
pub fn say_req(id: Uuid, room: &str, text: &str) -> Request {
    Request::with_id(
        id,
        ClientMsg::Say {
            room: room.into(),
            text: text.into(),
            action: false,
        },
    )
}

/// A length prefix (big-endian u32) followed by `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("payload under 4 GiB");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Two well-behaved clients still chat both ways (each sees the other's message).
pub async fn assert_pair_chats<A, B>(a: &mut Client<A>, b: &mut Client<B>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let text_a = format!("still here from {} {}", a.nick, Uuid::new_v4());
    a.say("lobby", &text_a).await;
    let got = b.recv_message("lobby", &text_a).await;
    assert_eq!(got.from, a.nick);
    let text_b = format!("still here from {} {}", b.nick, Uuid::new_v4());
    b.say("lobby", &text_b).await;
    let got = a.recv_message("lobby", &text_b).await;
    assert_eq!(got.from, b.nick);
}

/// A connection whose receive buffer is pinned small, so the server's writes to it block
/// after a few megabytes (its own send buffer) instead of tens (autotuned receive buffers).
pub fn small_window_stream(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    TcpStream::from_std(socket.into()).unwrap()
}

/// Posts `n` messages `"<prefix> <i>"` (i from 0) to `room`, one at a time and acknowledged,
/// from short-lived senders that each stay under the rate limit's burst; returns them in order.
pub async fn fill_room(addr: SocketAddr, room: &str, prefix: &str, n: usize) -> Vec<ChatMessage> {
    const PER_SENDER: usize = 8;
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let nick = format!("filler-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let mut sender = Client::login(addr, &nick).await;
        if room != "lobby" {
            sender.join(room, None).await;
        }
        for _ in 0..PER_SENDER.min(n - i) {
            out.push(sender.say(room, &format!("{prefix} {i}")).await);
            i += 1;
        }
        sender.quit().await;
    }
    out
}

/// Connects to `addr` from the local address `from`, so one test can be clients at several
/// addresses. On Linux every address of 127.0.0.0/8 is the loopback interface's, so
/// `127.0.0.2` and the like work without any setup; the server sees them as other peers.
pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let socket = match from {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind the client side to {from}: {e}"));
    let stream = timeout(WAIT, socket.connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect from {from} timed out"))
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream
}

impl Client {
    /// Connects from the local address `from` (see [`connect_from`]) without sending anything.
    pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> Self {
        Self::from_stream(connect_from(addr, from).await)
    }

    /// Like [`Client::login`], from the local address `from`.
    pub async fn login_from(addr: SocketAddr, from: IpAddr, nick: &str) -> Self {
        Self::connect_from(addr, from).await.register(nick).await
    }
}

impl Line {
    /// Connects from the local address `from` (see [`connect_from`]) without sending anything.
    pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> Self {
        let (r, w) = connect_from(addr, from).await.into_split();
        Self::from_halves(r, w)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw framed client
// ---------------------------------------------------------------------------------------------

/// Frames as bytes in both directions: for checks on the literal JSON the server writes.
pub struct RawFramed {
    io: Framed<TcpStream, FrameCodec>,
}

impl RawFramed {
    /// Connects without sending anything.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            io: Framed::new(stream, FrameCodec::new(chat_shared::MAX_FRAME_LEN)),
        }
    }

    /// Sends `payload` as one frame.
    pub async fn send_payload(&mut self, payload: &[u8]) {
        timeout(WAIT, self.io.send(Bytes::copy_from_slice(payload)))
            .await
            .expect("raw send timed out")
            .expect("raw send");
    }

    /// Writes arbitrary bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.io.get_mut().write_all(bytes))
            .await
            .expect("raw write timed out")
            .expect("raw write");
    }

    /// The next frame's payload as text; a timeout or end of file fails the test.
    pub async fn recv_text(&mut self) -> String {
        let got: Option<Result<BytesMut, _>> = timeout(WAIT, self.io.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within {WAIT:?}"));
        let payload = got
            .expect("connection closed while waiting for a frame")
            .expect("frame decode");
        String::from_utf8(payload.to_vec()).expect("frames are UTF-8 JSON")
    }

    /// Skips frames until one whose text contains `needle`.
    pub async fn recv_text_containing(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, self.io.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no frame containing {needle:?} within {WAIT:?}; saw:{}",
                        tail(&seen)
                    )
                })
                .expect("connection closed")
                .expect("frame decode");
            let text = String::from_utf8(got.to_vec()).expect("UTF-8");
            if text.contains(needle) {
                return text;
            }
            seen.push(text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Line client
// ---------------------------------------------------------------------------------------------

/// A plain-text client, as `nc` would be.
pub struct Line<R = OwnedReadHalf, W = OwnedWriteHalf> {
    /// The nick this client registered with (empty before).
    pub nick: String,
    reader: BufReader<R>,
    writer: W,
    /// Bytes of a line not yet complete; kept across timeouts (`read_until` appends here).
    partial: Vec<u8>,
    /// Every raw byte received so far, for checks such as "no telnet answer".
    pub raw_log: Vec<u8>,
}

impl Line {
    /// Connects without sending anything.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (r, w) = stream.into_split();
        Self::from_halves(r, w)
    }

    /// Connects, sends `nick` at once, and waits for a non-error line that names the nick
    /// (the welcome or the lobby notices).
    pub async fn login(addr: SocketAddr, nick: &str) -> Self {
        Self::connect(addr).await.named(nick).await
    }

    /// Like [`Line::login`], and waits until `observer` (in `lobby`) sees the join, so that
    /// everything said in `lobby` afterwards reaches this client.
    pub async fn login_seen_by(addr: SocketAddr, nick: &str, observer: &mut Client) -> Self {
        let l = Self::login(addr, nick).await;
        observer.recv_joined("lobby", nick).await;
        l
    }

    /// Gives back the socket halves' stream (for a framed client after a greeting).
    pub fn into_stream(self) -> TcpStream {
        let r = self.reader.into_inner();
        r.reunite(self.writer).expect("halves of one stream")
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Line<R, W> {
    /// A client over a connected stream's halves, nothing sent yet.
    pub fn from_halves(reader: R, writer: W) -> Self {
        Self {
            nick: String::new(),
            reader: BufReader::new(reader),
            writer,
            partial: Vec::new(),
            raw_log: Vec::new(),
        }
    }

    /// Sends `nick` as the nick line and waits for a non-error line that names it (the
    /// welcome or the lobby notices).
    pub async fn named(mut self, nick: &str) -> Self {
        self.send_line(nick).await;
        self.nick = nick.to_owned();
        self.read_until(
            &format!("a notice naming {nick} after the nick line"),
            |line| {
                assert!(!line.starts_with("! "), "nick {nick:?} refused: {line:?}");
                line.contains(nick)
            },
        )
        .await;
        self
    }

    /// Writes `line` and `\n`.
    pub async fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send_bytes(&bytes).await;
    }

    /// Writes arbitrary bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.writer.write_all(bytes))
            .await
            .expect("line write timed out")
            .expect("line write");
    }

    /// The next complete line (terminator and a trailing `\r` removed, lossy UTF-8), end of
    /// file, or a timeout.
    pub async fn next(&mut self, dur: Duration) -> Next<String> {
        let before = self.partial.len();
        let got = timeout(dur, self.reader.read_until(b'\n', &mut self.partial)).await;
        self.raw_log.extend_from_slice(&self.partial[before..]);
        match got {
            Err(_) => Next::Timeout,
            Ok(Err(_)) | Ok(Ok(0)) if self.partial.is_empty() => Next::Eof,
            Ok(Err(_)) | Ok(Ok(_)) => {
                let mut bytes = std::mem::take(&mut self.partial);
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                Next::Item(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The next line; a timeout or end of file fails the test.
    pub async fn read_line(&mut self) -> String {
        match self.next(WAIT).await {
            Next::Item(l) => l,
            Next::Eof => panic!("[{}] connection closed while waiting for a line", self.nick),
            Next::Timeout => panic!("[{}] no line within {WAIT:?}", self.nick),
        }
    }

    /// Skips lines until `pred` holds, returns that line; bounded by [`WAIT`] overall.
    pub async fn read_until(&mut self, what: &str, pred: impl FnMut(&str) -> bool) -> String {
        self.read_until_all(what, pred)
            .await
            .pop()
            .expect("at least the match")
    }

    /// Like [`Line::read_until`] but returns every line read, the match last.
    pub async fn read_until_all(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(l) => {
                    let done = pred(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Next::Eof => panic!(
                    "[{}] connection closed while waiting for {what}; lines:{}",
                    self.nick,
                    tail(&seen)
                ),
                Next::Timeout => panic!(
                    "[{}] timed out after {WAIT:?} waiting for {what}; lines:{}{}",
                    self.nick,
                    tail(&seen),
                    if self.partial.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "\n    incomplete: {:?}",
                            String::from_utf8_lossy(&self.partial)
                        )
                    }
                ),
            }
        }
    }

    /// Skips to the exact line `want`.
    pub async fn expect_line(&mut self, want: &str) {
        self.read_until(&format!("the line {want:?}"), |l| l == want)
            .await;
    }

    /// Skips to the first line starting with `! ` and returns it.
    pub async fn expect_error_line(&mut self) -> String {
        self.read_until("a `! ` error line", |l| l.starts_with("! "))
            .await
    }

    /// Asserts that nothing at all arrives (and the connection stays open) for `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) {
        match self.next(dur).await {
            Next::Timeout => {
                assert!(
                    self.partial.is_empty(),
                    "[{}] expected silence, got the partial line {:?}",
                    self.nick,
                    String::from_utf8_lossy(&self.partial)
                );
            }
            Next::Item(l) => panic!("[{}] expected silence, got {l:?}", self.nick),
            Next::Eof => panic!(
                "[{}] expected silence, but the connection closed",
                self.nick
            ),
        }
    }

    /// Reads for `dur` and fails if any line matches `bad`.
    pub async fn expect_no_line(&mut self, dur: Duration, what: &str, bad: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Timeout | Next::Eof => return,
                Next::Item(l) if bad(&l) => panic!("[{}] expected no {what}, got {l:?}", self.nick),
                Next::Item(_) => {}
            }
        }
    }

    /// Reads lines until `dur` passes with nothing new; returns them.
    pub async fn drain(&mut self, dur: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        while let Next::Item(l) = self.next(dur).await {
            seen.push(l);
        }
        seen
    }

    /// Waits up to `dur` for the first bytes, then collects whatever follows until a short
    /// pause; returns it as text (for a greeting that may not end in a newline).
    pub async fn read_text(&mut self, dur: Duration) -> String {
        let mut out = std::mem::take(&mut self.partial);
        let mut buf = [0u8; 4096];
        let mut wait = dur;
        loop {
            match timeout(wait, self.reader.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    out.extend_from_slice(&buf[..n]);
                    self.raw_log.extend_from_slice(&buf[..n]);
                    wait = Duration::from_millis(150);
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Asserts that the server closes the connection within [`WAIT`]; returns the lines that
    /// came before.
    pub async fn expect_eof(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Eof => return seen,
                Next::Item(l) => seen.push(l),
                Next::Timeout => panic!(
                    "[{}] expected end of file within {WAIT:?}; lines:{}",
                    self.nick,
                    tail(&seen)
                ),
            }
        }
    }
}

/// A fresh temporary directory and the database path inside it; the directory lives as
/// long as the returned guard.
pub fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("chat.db");
    (dir, db)
}

/// A certificate for `localhost` and its key, as PEM files in a directory of their own.
pub struct Cert {
    pub _dir: tempfile::TempDir,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

/// A new self-signed [`Cert`].
pub fn make_cert() -> Cert {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    Cert {
        der: made.cert.der().clone(),
        _dir: dir,
        cert,
        key,
    }
}
