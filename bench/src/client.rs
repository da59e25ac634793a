//! Load clients for both wire modes: log in, send timestamped messages, receive and count.
//!
//! A receiver in a 1000-member room handles a million deliveries a second, so it never
//! JSON-decodes one: it finds the text of a `message` frame (or the `<nick> ` line) in the
//! raw bytes and reads the send time, sender and sequence number that the sender wrote at
//! the start of the text: `t=<ns since BASE> s=<sender> n=<seq> xxx…`. Every client lives in
//! this one process, so one monotonic base serves them all.
//!
//! History replayed on join carries the same markers, and is never a delivery: in framed
//! mode it comes in one `history` frame, which is not a `message` frame; in line mode it is
//! the lines right after the `-- last N messages in #room:` header, which [`receive`] skips.
//!
//! Layout:
//! - [`Mode`], [`Login`], [`connect`]: a logged-in connection, ready when the server has
//!   confirmed the last room change it asked for.
//! - [`Acks`]: how far each sender's messages have got, for W1's bounded in-flight window.
//! - [`Tap`] / [`receive`]: the read loop, counting deliveries into a [`Tally`].
//! - [`Pace`] / [`send`]: the send loop, windowed or at a fixed rate.
//! - [`churn_cycle`], [`idle`]: W6's connect-join-quit cycle and W4's silent connection,
//!   which count `lagged` notices in the raw bytes ([`LagCounter`]) without parsing them.
//! - Byte-level helpers ([`InBuf`], [`scan`], [`parse_text`]), tested below.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use chat_shared::{ClientMsg, Request, ServerMsg, encode_frame};
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use crate::stats::{Span, Tally};

/// Bound on logging in (connect, hello, the room changes).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Lateness of a paced send that is put down to the timer rather than to the target.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Initial read buffer of a receiving connection; it grows for a large frame.
const READ_BUF: usize = 16 * 1024;

/// Wire mode of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Length-prefixed JSON.
    Framed,
    /// Plain text lines.
    Line,
    /// IRC (issue 13): `NICK`/`USER`, `JOIN #room`, `PRIVMSG #room`; no capability is
    /// negotiated, so nothing is echoed and lines carry no tags, as for a plain client.
    /// The same client drives ngIRCd.
    Irc,
}

impl Mode {
    /// `framed`, `line` or `irc`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Framed => "framed",
            Self::Line => "line",
            Self::Irc => "irc",
        }
    }

    /// Whether a sender receives its own messages (framed mode's acknowledgements). Line
    /// and IRC clients never see their own (no `echo-message` is asked for).
    pub fn echoes_own(self) -> bool {
        self == Self::Framed
    }
}

/// W1's window in IRC mode, whatever `--window` says (a smaller one is honoured). ngIRCd
/// reads a client into a 2048-byte buffer and closes the connection when a read finds it
/// full ("Receive buffer space exhausted"); it handles 3 commands per read (10 for an
/// operator with mode `+F`), so a sender that writes faster than that is cut off. A
/// message is in flight until every member has it, so the window bounds what can wait in
/// that buffer: 24 `PRIVMSG #lobby :` lines of W1's 64-byte texts are 1,968 bytes. Both
/// IRC targets run with it, so their figures compare; a line-mode W1 figure (window 128)
/// does not compare with it.
pub const IRC_WINDOW: u64 = 24;

/// ngIRCd's read buffer per connection ([`IRC_WINDOW`]).
pub const NGIRCD_READ_BUFFER: usize = 2048;

static BASE: OnceLock<std::time::Instant> = OnceLock::new();

/// Nanoseconds from the process-wide base to `at`; the send time carried in each message.
pub fn ns_at(at: Instant) -> u64 {
    let base = *BASE.get_or_init(std::time::Instant::now);
    u64::try_from(at.into_std().saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// What a client does to log in, and so what "ready" means.
#[derive(Debug, Clone)]
pub struct Login {
    /// Nick (ASCII, unique per server).
    pub nick: String,
    /// Leave `lobby`, which the server joins every client to.
    pub part_lobby: bool,
    /// Then join this room.
    pub join: Option<String>,
    /// A sender (IRC mode): on an IRC server other than chat-server, it becomes an
    /// operator with user mode `+F`, ngIRCd's relaxed flood protection (see `ngircd`).
    pub sender: bool,
}

impl Login {
    /// Stay in `lobby`.
    pub fn lobby(nick: String) -> Self {
        Self {
            nick,
            part_lobby: false,
            join: None,
            sender: false,
        }
    }

    /// Stay in `lobby`, and send.
    pub fn sender(nick: String) -> Self {
        Self {
            sender: true,
            ..Self::lobby(nick)
        }
    }

    /// Leave `lobby` and join `room`.
    pub fn room(nick: String, room: &str) -> Self {
        Self {
            nick,
            part_lobby: true,
            join: Some(room.to_owned()),
            sender: false,
        }
    }

    /// Leave `lobby` and stay in no room.
    pub fn idle(nick: String) -> Self {
        Self {
            nick,
            part_lobby: true,
            join: None,
            sender: false,
        }
    }

    /// The room whose confirmation ends the login: `(room, joined?)`.
    fn ready(&self) -> (&str, bool) {
        match (&self.join, self.part_lobby) {
            (Some(room), _) => (room, true),
            (None, true) => (chat_shared::DEFAULT_ROOM, false),
            (None, false) => (chat_shared::DEFAULT_ROOM, true),
        }
    }

    /// Every request of the login, written at once: the server handles them in order.
    fn bytes(&self, mode: Mode) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        match mode {
            Mode::Line => {
                out.extend_from_slice(self.nick.as_bytes());
                out.push(b'\n');
                if self.part_lobby {
                    out.extend_from_slice(b"/part lobby\n");
                }
                if let Some(room) = &self.join {
                    out.extend_from_slice(format!("/join {room}\n").as_bytes());
                }
            }
            // The rest when the welcome is over: `irc_after_welcome`.
            Mode::Irc => {
                let nick = &self.nick;
                out.extend_from_slice(
                    format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes(),
                );
            }
            Mode::Framed => {
                let mut push = |msg: ClientMsg| -> anyhow::Result<()> {
                    out.extend_from_slice(&encode_frame(&Request::new(msg))?);
                    Ok(())
                };
                push(ClientMsg::Hello {
                    nick: self.nick.clone(),
                    version: Some(chat_shared::PROTOCOL_VERSION),
                    client: Some("chat-bench".into()),
                    password: None,
                })?;
                if self.part_lobby {
                    push(ClientMsg::Part {
                        room: chat_shared::DEFAULT_ROOM.into(),
                        reason: None,
                    })?;
                }
                if let Some(room) = &self.join {
                    push(ClientMsg::Join {
                        room: room.clone(),
                        since: None,
                        key: None,
                    })?;
                }
            }
        }
        Ok(out)
    }
}

impl Login {
    /// IRC: what follows registration, written once the welcome is over (the end of the
    /// MOTD). chat-server (`ours`, told by its 004) has joined the client to `lobby` by
    /// then; another IRC server has no `lobby` and is asked to join it, and a sender
    /// becomes an operator with `+F` there (the bench's own ngIRCd has the `bench`
    /// operator). Written after the welcome, not with `NICK`, so that ngIRCd never has
    /// more than 3 commands of a client to handle at once, which it does only one loop
    /// turn (or a second) later.
    fn irc_after_welcome(&self, ours: bool) -> Vec<u8> {
        let mut out = String::new();
        if self.sender && !ours {
            let _ = write!(
                out,
                "OPER {NGIRCD_OPER} {NGIRCD_OPER}\r\nMODE {} +F\r\n",
                self.nick
            );
        }
        if self.part_lobby && ours {
            out.push_str("PART #lobby\r\n");
        }
        match (&self.join, self.part_lobby) {
            (Some(room), _) => {
                let _ = write!(out, "JOIN #{room}\r\n");
            }
            (None, false) if !ours => out.push_str("JOIN #lobby\r\n"),
            (None, false) => {}
            // Ready once the server answers this, after the PART.
            (None, true) => out.push_str("PING :parted\r\n"),
        }
        out.into_bytes()
    }
}

/// The operator name and password of the bench's ngIRCd (`ngircd::config`).
pub const NGIRCD_OPER: &str = "bench";

/// A logged-in connection, with whatever arrived after the login confirmation.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read but not yet scanned (history, members, early messages).
    pub inbuf: InBuf,
}

/// Connects to `addr` and logs in; returns once the server confirmed the login's last room
/// change (so a receiver is a member before any sender starts).
///
/// # Errors
/// Connection errors, a refused nick or room (the server's `error` / `! ` text), or no
/// confirmation within [`LOGIN_TIMEOUT`].
pub async fn connect(addr: SocketAddr, mode: Mode, login: &Login) -> anyhow::Result<Conn> {
    timeout(LOGIN_TIMEOUT, connect_inner(addr, mode, login))
        .await
        .with_context(|| format!("{} login timed out", login.nick))?
}

async fn connect_inner(addr: SocketAddr, mode: Mode, login: &Login) -> anyhow::Result<Conn> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    stream.write_all(&login.bytes(mode)?).await?;
    let (room, joined) = login.ready();
    let marker = match (mode, joined) {
        // The end of the names list that follows one's own JOIN, on any IRC server.
        (Mode::Irc, true) => format!(" 366 {} #{room} ", login.nick),
        (Mode::Irc, false) => String::new(),
        (_, true) => format!("-- you joined #{room};"),
        (_, false) => format!("-- you left #{room}"),
    };
    let mut irc = IrcWelcome::default();
    let mut inbuf = InBuf::with_capacity(4096);
    loop {
        let n = stream.read(inbuf.spare()).await?;
        if n == 0 {
            bail!("{}: server closed the connection during login", login.nick);
        }
        inbuf.filled(n);
        let mut outcome: Option<anyhow::Result<()>> = None;
        let used = scan(mode, inbuf.data(), |item| {
            if outcome.is_some() {
                return false;
            }
            if let Item::Other(unit) = item {
                outcome = match mode {
                    Mode::Line => login_line(unit, &marker),
                    Mode::Framed => login_frame(unit, &login.nick, room, joined),
                    Mode::Irc => {
                        irc.see(unit);
                        login_irc(unit, &marker)
                    }
                };
            }
            outcome.is_none()
        });
        inbuf.consume(used);
        if mode == Mode::Irc && irc.over() {
            stream.write_all(&login.irc_after_welcome(irc.ours)).await?;
        }
        match outcome {
            Some(Ok(())) => return Ok(Conn { stream, inbuf }),
            Some(Err(e)) => return Err(e.context(format!("{} login", login.nick))),
            None => {}
        }
    }
}

fn login_line(line: &[u8], marker: &str) -> Option<anyhow::Result<()>> {
    if line.starts_with(marker.as_bytes()) {
        Some(Ok(()))
    } else {
        line.strip_prefix(b"! ").map(|err| {
            Err(anyhow::anyhow!(
                "server said: {}",
                String::from_utf8_lossy(err)
            ))
        })
    }
}

/// Where an IRC login stands in the server's welcome.
#[derive(Debug, Default)]
struct IrcWelcome {
    /// The server's 004 says it is chat-server (its version `chat-server-…`).
    ours: bool,
    /// The welcome ended (376 or 422).
    ended: bool,
    /// [`IrcWelcome::over`] said so.
    told: bool,
}

impl IrcWelcome {
    fn see(&mut self, line: &[u8]) {
        match irc_numeric(line) {
            Some(b"004") => self.ours = memmem::find(line, b" chat-server-").is_some(),
            Some(b"376" | b"422") => self.ended = true,
            _ => {}
        }
    }

    /// Once: the welcome is over.
    fn over(&mut self) -> bool {
        let now = self.ended && !self.told;
        self.told |= now;
        now
    }
}

/// IRC numerics that refuse a login or a join: the nick (432, 433), the server (464,
/// 465), the channel (405, 471, 473–475, 477, 479).
const IRC_REFUSALS: [&[u8]; 11] = [
    b"432", b"433", b"464", b"465", b"405", b"471", b"473", b"474", b"475", b"477", b"479",
];

/// One IRC line during the login: ready at `marker` (a 366; empty: the `PONG` of the
/// `PING :parted` that follows a lone `PART`), refused at `ERROR` or a refusing numeric.
fn login_irc(line: &[u8], marker: &str) -> Option<anyhow::Result<()>> {
    let ready = if marker.is_empty() {
        memmem::find(line, b" PONG ").is_some() && line.ends_with(b"parted")
    } else {
        memmem::find(line, marker.as_bytes()).is_some()
    };
    if ready {
        return Some(Ok(()));
    }
    let refused = line.starts_with(b"ERROR ")
        || irc_numeric(line).is_some_and(|code| IRC_REFUSALS.contains(&code));
    refused.then(|| {
        Err(anyhow::anyhow!(
            "server said: {}",
            String::from_utf8_lossy(line)
        ))
    })
}

/// The command of `:source CODE …` when it is a three-digit numeric.
fn irc_numeric(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b":")?;
    let space = memchr::memchr(b' ', rest)?;
    let code = rest.get(space + 1..space + 4)?;
    (code.iter().all(u8::is_ascii_digit) && rest.get(space + 4) == Some(&b' ')).then_some(code)
}

fn login_frame(frame: &[u8], me: &str, room: &str, joined: bool) -> Option<anyhow::Result<()>> {
    // Login frames are few, so decoding them properly is affordable here.
    match serde_json::from_slice::<ServerMsg>(frame) {
        Ok(ServerMsg::Joined { room: r, nick, .. }) if joined && r == room && nick == me => {
            Some(Ok(()))
        }
        Ok(ServerMsg::Parted { room: r, nick, .. }) if !joined && r == room && nick == me => {
            Some(Ok(()))
        }
        Ok(ServerMsg::Error { code, message, .. }) => {
            Some(Err(anyhow::anyhow!("server said: {code:?}: {message}")))
        }
        Ok(ServerMsg::Bye { reason, message }) => Some(Err(anyhow::anyhow!(
            "server said bye: {reason:?} {}",
            message.unwrap_or_default()
        ))),
        Ok(_) => None,
        Err(e) => Some(Err(anyhow::anyhow!("undecodable frame during login: {e}"))),
    }
}

/// How far each sender's messages have got at every member that must receive them, so a
/// windowed sender counts a message in flight until the *slowest* member has it. Judging
/// by one member only would let the others fall behind by more than the server's room
/// buffer, and the run would measure loss instead of throughput.
///
/// Each observing connection owns a row and is its only writer (one store per sender per
/// read batch); a cell is a cache line of its own, so two receivers on two threads never
/// share one.
#[derive(Debug)]
pub struct Acks {
    senders: usize,
    cells: Vec<Cell>,
    wake: Vec<Notify>,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(AtomicU64);

/// Whom an observer wakes when it reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Nobody: its progress is read when a sender checks (and by the sender's 1 ms poll).
    Nobody,
    /// The sender it is (framed mode: its own echoed copy).
    Own,
    /// Every sender (line mode, where nothing is echoed: one designated receiver).
    Everyone,
}

/// One connection's part in [`Acks`].
#[derive(Debug, Clone)]
pub struct AckRole {
    /// The shared table.
    pub acks: Arc<Acks>,
    /// This connection's row.
    pub row: usize,
    /// Whom it wakes.
    pub wake: Wake,
}

/// How long a sender with a full window waits for a wake-up before looking again (a
/// straggler's progress wakes nobody).
const WINDOW_POLL: Duration = Duration::from_millis(1);

impl Acks {
    /// A table for `senders` senders and `observers` observing connections.
    pub fn new(senders: usize, observers: usize) -> Self {
        Self {
            senders,
            cells: (0..senders * observers).map(|_| Cell::default()).collect(),
            wake: (0..senders).map(|_| Notify::new()).collect(),
        }
    }

    /// Observer `row` has seen `count` of `sender`'s messages.
    fn report(&self, row: usize, sender: usize, count: u64) {
        if let Some(cell) = self.cells.get(row * self.senders + sender) {
            cell.0.store(count, Ordering::Relaxed);
        }
    }

    /// How many of `sender`'s messages every observer has seen.
    fn acked(&self, sender: u32) -> u64 {
        let s = sender as usize;
        if s >= self.senders {
            return 0;
        }
        self.cells
            .iter()
            .skip(s)
            .step_by(self.senders)
            .map(|c| c.0.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    async fn changed(&self, sender: u32) {
        if let Some(n) = self.wake.get(sender as usize) {
            // Elapsed: a straggler may have moved without waking anyone; look again.
            let _ = timeout(WINDOW_POLL, n.notified()).await;
        } else {
            // Not a sender with a slot: nothing will ever change.
            std::future::pending::<()>().await;
        }
    }
}

/// What a read loop does with the messages it sees.
#[derive(Debug, Clone)]
pub struct Tap {
    /// This connection's own sender id: its own messages (framed mode echoes them) are
    /// acknowledgements, not deliveries.
    pub me: Option<u32>,
    /// Count deliveries and latency (receivers; senders only in W5, where all members are
    /// both).
    pub count: bool,
    /// Report progress for windowed senders (W1).
    pub ack: Option<AckRole>,
    /// Where deliveries are counted.
    pub tally: Arc<Tally>,
    /// Spreads histogram locks; any number stable per connection.
    pub shard: usize,
    /// Also record the latency of messages sent within a span of time into a tally of its
    /// own (W7: the talk during the join storm).
    pub during: Option<During>,
    /// Also record the latency of messages from senders on other nodes of a cluster into
    /// a tally of their own (`--cluster`).
    pub cross: Option<Cross>,
    /// Record the latency of this connection's own messages, as they come back, into this
    /// tally: in framed mode a sender's own copy is its acknowledgement, which waits for
    /// the disk (the group commit), unlike the other members' copies.
    pub own: Option<Arc<Tally>>,
}

/// Where a cluster's senders are, so that a receiver tells cross-node deliveries apart.
#[derive(Debug, Clone)]
pub struct Cross {
    /// The node of each sender id.
    pub sender_node: Arc<[usize]>,
    /// This connection's node.
    pub node: usize,
    /// Where the latencies of messages from other nodes are recorded.
    pub tally: Arc<Tally>,
}

impl Cross {
    /// Whether a message from `sender` came from another node (an unknown sender: no).
    fn is_remote(&self, sender: u32) -> bool {
        self.sender_node
            .get(sender as usize)
            .is_some_and(|&n| n != self.node)
    }
}

/// A span of send times whose latencies go into a tally of their own as well.
#[derive(Debug, Clone)]
pub struct During {
    /// The span, in [`ns_at`] times.
    pub span: Arc<Span>,
    /// Where those latencies are recorded.
    pub tally: Arc<Tally>,
}

/// Reads and counts until the connection ends (or the task is aborted).
pub async fn receive<R: AsyncRead + Unpin>(mut rd: R, mut inbuf: InBuf, mode: Mode, tap: Tap) {
    let mut latencies = Vec::with_capacity(512);
    let mut during = Vec::new();
    let mut cross = Vec::new();
    let mut own_latencies = Vec::new();
    // Line mode: lines of join history still to come after their header.
    let mut history_left = 0u64;
    // Per sender: messages seen, and whether that changed in this batch.
    let senders = tap.ack.as_ref().map_or(0, |a| a.acks.senders);
    let mut seen = vec![0u64; senders];
    let mut moved = vec![false; senders];
    inbuf.reserve(READ_BUF);
    let mut pending = !inbuf.data().is_empty();
    loop {
        if !pending {
            match rd.read(inbuf.spare()).await {
                Ok(0) | Err(_) => {
                    tap.tally.disconnected();
                    return;
                }
                Ok(n) => inbuf.filled(n),
            }
        }
        pending = false;
        let now = ns_at(Instant::now());
        latencies.clear();
        during.clear();
        cross.clear();
        own_latencies.clear();
        let used = scan(mode, inbuf.data(), |item| {
            if history_left > 0 && !matches!(item, Item::History(_)) {
                // Replayed on join (the server writes them right after their header): sent
                // before this client joined, so neither a delivery nor a latency.
                history_left -= 1;
                return true;
            }
            match item {
                Item::Msg(p) => {
                    let own = tap.me == Some(p.sender);
                    if let Some(s) = seen.get_mut(p.sender as usize) {
                        *s = (*s).max(p.seq + 1);
                        moved[p.sender as usize] = true;
                    }
                    if own && tap.own.is_some() {
                        own_latencies.push(now.saturating_sub(p.t_ns));
                    }
                    if tap.count && !own {
                        let latency = now.saturating_sub(p.t_ns);
                        latencies.push(latency);
                        if tap.during.as_ref().is_some_and(|d| d.span.contains(p.t_ns)) {
                            during.push(latency);
                        }
                        if tap.cross.as_ref().is_some_and(|c| c.is_remote(p.sender)) {
                            cross.push(latency);
                        }
                    }
                }
                Item::Lagged => tap.tally.lagged(),
                Item::History(lines) => history_left = lines,
                // Notices, joins and parts of others, members lists, framed history: not
                // measured.
                Item::Other(_) => {}
            }
            true
        });
        inbuf.consume(used);
        tap.tally.record(tap.shard, &latencies);
        if let Some(d) = &tap.during {
            d.tally.record(tap.shard, &during);
        }
        if let Some(c) = &tap.cross {
            c.tally.record(tap.shard, &cross);
        }
        if let Some(t) = &tap.own {
            t.record(tap.shard, &own_latencies);
        }
        if let Some(role) = &tap.ack {
            for (s, m) in moved.iter_mut().enumerate() {
                if !std::mem::take(m) {
                    continue;
                }
                role.acks.report(role.row, s, seen[s]);
                let wake = match role.wake {
                    Wake::Nobody => false,
                    Wake::Own => tap.me == Some(u32::try_from(s).unwrap_or(u32::MAX)),
                    Wake::Everyone => true,
                };
                if wake {
                    role.acks.wake[s].notify_one();
                }
            }
        }
    }
}

/// How a sender paces itself.
#[derive(Debug, Clone)]
pub enum Pace {
    /// As fast as the server takes it, with at most `size` messages that some member has
    /// not received yet.
    Window {
        /// Messages in flight.
        size: u64,
        /// Where acknowledgements arrive.
        acks: Arc<Acks>,
    },
    /// One message every `interval`, the first at `first`. A late sender catches up with a
    /// burst, and each message carries its scheduled time (give or take the timer's
    /// resolution), so a stall shows as latency instead of disappearing (no coordinated
    /// omission).
    Rate {
        /// Time between messages.
        interval: Duration,
        /// When the first is due.
        first: Instant,
    },
}

impl Pace {
    /// One message every `interval` for sender `i` of `n`, the senders spread over one
    /// interval after `start` instead of in step.
    pub fn staggered(interval: Duration, start: Instant, i: usize, n: usize) -> Self {
        Self::Rate {
            interval,
            first: start + interval.mul_f64(i as f64 / n.max(1) as f64),
        }
    }
}

/// One sender's plan.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Sender id, written into each message.
    pub id: u32,
    /// Room the messages go to (framed and IRC; in line mode the current room is used,
    /// which is the one joined last).
    pub room: String,
    /// Pacing.
    pub pace: Pace,
    /// No message is sent at or after this instant.
    pub until: Instant,
    /// Text length in bytes (the timestamp header, then padding).
    pub text_len: usize,
}

/// Sends per `plan`; returns how many messages were written.
///
/// # Errors
/// The socket's.
pub async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mode: Mode,
    plan: &SendPlan,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut sent = 0u64;
    match &plan.pace {
        Pace::Window { size, acks } => loop {
            let now = Instant::now();
            if now >= plan.until {
                break;
            }
            let in_flight = sent.saturating_sub(acks.acked(plan.id));
            let room = size.saturating_sub(in_flight);
            if room == 0 {
                if timeout_at(plan.until, acks.changed(plan.id)).await.is_err() {
                    break;
                }
                continue;
            }
            buf.clear();
            let t = ns_at(now);
            for _ in 0..room {
                encode_say(&mut buf, mode, &plan.room, t, plan.id, sent, plan.text_len);
                sent += 1;
            }
            wr.write_all(&buf).await?;
        },
        Pace::Rate { interval, first } => loop {
            let due = *first + *interval * u32::try_from(sent).unwrap_or(u32::MAX);
            if due >= plan.until {
                break;
            }
            sleep_until(due).await;
            let now = Instant::now();
            buf.clear();
            loop {
                let due = *first + *interval * u32::try_from(sent).unwrap_or(u32::MAX);
                if due > now || due >= plan.until {
                    break;
                }
                // A timer that fired late (tokio's resolution is 1 ms) is this process's
                // delay, not the target's: within TIMER_SLACK the real send time is carried.
                // Beyond it the schedule is, so a stall still shows as latency.
                let stamp = if now.saturating_duration_since(due) <= TIMER_SLACK {
                    now
                } else {
                    due
                };
                encode_say(
                    &mut buf,
                    mode,
                    &plan.room,
                    ns_at(stamp),
                    plan.id,
                    sent,
                    plan.text_len,
                );
                sent += 1;
            }
            wr.write_all(&buf).await?;
        },
    }
    wr.flush().await?;
    Ok(sent)
}

/// Appends one `say` (framed) or text line (line mode) carrying `t`, `sender` and `seq`.
pub fn encode_say(
    buf: &mut Vec<u8>,
    mode: Mode,
    room: &str,
    t: u64,
    sender: u32,
    seq: u64,
    text_len: usize,
) {
    use std::io::Write;
    let start = buf.len();
    if mode == Mode::Irc {
        buf.extend_from_slice(b"PRIVMSG #");
        buf.extend_from_slice(room.as_bytes());
        buf.extend_from_slice(b" :");
    }
    if mode == Mode::Framed {
        buf.extend_from_slice(&[0; 4]);
        // Like chat-tui, every framed message carries its own id (what a client resends
        // by); the server must then check it against everything stored before fanning out.
        let _ = write!(
            buf,
            "{{\"type\":\"say\",\"id\":\"{}\",\"room\":\"",
            message_id()
        );
        buf.extend_from_slice(room.as_bytes());
        buf.extend_from_slice(b"\",\"text\":\"");
    }
    let text_start = buf.len();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "t={t} s={sender} n={seq} ");
    let pad = text_len.saturating_sub(buf.len() - text_start);
    buf.resize(buf.len() + pad, b'x');
    match mode {
        Mode::Framed => {
            buf.extend_from_slice(b"\"}");
            let len = u32::try_from(buf.len() - start - 4).unwrap_or(u32::MAX);
            buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        Mode::Line => buf.push(b'\n'),
        Mode::Irc => buf.extend_from_slice(b"\r\n"),
    }
}

/// A message id unique to this process: a random prefix and a counter (cheaper than a
/// random id per message, and never repeated by a sender that reconnects).
fn message_id() -> uuid::Uuid {
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = *RUN.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    uuid::Uuid::from_u64_pair(run, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The quit request.
fn quit_bytes(mode: Mode) -> anyhow::Result<Vec<u8>> {
    Ok(match mode {
        Mode::Line => b"/quit\n".to_vec(),
        Mode::Irc => b"QUIT :bye\r\n".to_vec(),
        Mode::Framed => encode_frame(&Request::new(ClientMsg::Quit { reason: None }))?.to_vec(),
    })
}

/// W6's cycle: connect, log in, join `login.join`, quit, and read until the server closes
/// (so the server, not this side, holds the TIME_WAIT and ports are not exhausted).
/// Returns the `lagged` notices it saw after its login.
///
/// # Errors
/// Any step's failure, or the server not closing within [`LOGIN_TIMEOUT`] after `quit`.
pub async fn churn_cycle(addr: SocketAddr, mode: Mode, login: &Login) -> anyhow::Result<u64> {
    let Conn { mut stream, inbuf } = connect(addr, mode, login).await?;
    stream.write_all(&quit_bytes(mode)?).await?;
    let mut lags = LagCounter::new(mode);
    lags.feed(inbuf.data());
    let drain = async {
        let mut scratch = vec![0u8; 8192];
        loop {
            let n = stream.read(&mut scratch).await?;
            if n == 0 {
                break;
            }
            lags.feed(&scratch[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    timeout(LOGIN_TIMEOUT, drain)
        .await
        .context("server did not close after quit")??;
    Ok(lags.count())
}

/// Holds a logged-in connection silently until the server closes it (counted in `tally`)
/// or the task is aborted, counting any `lagged` notice. Keeps no buffer between reads
/// beyond [`LagCounter`]'s few bytes: 10,000 of these are W4.
pub async fn idle(conn: Conn, mode: Mode, tally: Arc<Tally>) {
    let Conn { stream, inbuf } = conn;
    let mut lags = LagCounter::new(mode);
    let mut counted = lags.feed(inbuf.data());
    drop(inbuf);
    loop {
        for _ in 0..counted {
            tally.lagged();
        }
        if stream.readable().await.is_err() {
            break;
        }
        let mut scratch = [0u8; 512];
        counted = match stream.try_read(&mut scratch) {
            Ok(0) => break,
            Ok(n) => lags.feed(&scratch[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => break,
        };
    }
    tally.disconnected();
}

/// Counts `lagged` notices (framed `{"type":"lagged"`, line `! you fell behind`) in a byte
/// stream fed in arbitrary pieces, matches across piece boundaries included, keeping only
/// the last few bytes between pieces.
#[derive(Debug)]
pub struct LagCounter {
    finder: &'static memmem::Finder<'static>,
    /// The end of what was fed so far, shorter than the needle.
    tail: [u8; 32],
    tail_len: usize,
    count: u64,
}

static LINE_LAGGED: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("! you fell behind"));
static FRAME_LAGGED: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("{\"type\":\"lagged\""));
/// The server's `NOTICE` for `lagged` in IRC mode.
static IRC_LAGGED: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("You fell behind and missed"));

impl LagCounter {
    /// A counter for `mode`'s notices.
    pub fn new(mode: Mode) -> Self {
        Self {
            finder: match mode {
                Mode::Line => &LINE_LAGGED,
                Mode::Framed => &FRAME_LAGGED,
                Mode::Irc => &IRC_LAGGED,
            },
            tail: [0; 32],
            tail_len: 0,
            count: 0,
        }
    }

    /// Feeds the next bytes; returns the notices that ended in them.
    pub fn feed(&mut self, bytes: &[u8]) -> u64 {
        let keep = self.finder.needle().len() - 1;
        // A match that starts in the tail ends within the first `keep` bytes.
        let mut joint = [0u8; 64];
        let head = bytes.len().min(keep);
        joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joint[self.tail_len..self.tail_len + head].copy_from_slice(&bytes[..head]);
        // Neither the tail nor `head` alone can hold a whole needle: these straddle.
        let mut found = self
            .finder
            .find_iter(&joint[..self.tail_len + head])
            .count();
        found += self.finder.find_iter(bytes).count();
        // The new tail: the last `keep` bytes of tail + bytes.
        if bytes.len() >= keep {
            self.tail[..keep].copy_from_slice(&bytes[bytes.len() - keep..]);
            self.tail_len = keep;
        } else {
            // `joint` holds all of tail + bytes then.
            let all = self.tail_len + bytes.len();
            let from = all.saturating_sub(keep);
            self.tail_len = all - from;
            self.tail[..self.tail_len].copy_from_slice(&joint[from..all]);
        }
        let found = found as u64;
        self.count += found;
        found
    }

    /// Notices seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

// -------------------------------------------------------------------------------------------
// Bytes
// -------------------------------------------------------------------------------------------

/// A read buffer: a window of filled bytes in a vector that is compacted, or grown when a
/// unit (a large frame) does not fit.
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer of `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: vec![0; cap.max(64)],
            start: 0,
            end: 0,
        }
    }

    fn reserve(&mut self, cap: usize) {
        if self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
    }

    /// Filled, unscanned bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops `n` scanned bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space after the filled bytes, never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len().max(64) * 2;
                self.buf.resize(len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`InBuf::spare`] as filled.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

/// The header a sender writes at the start of each text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Send time, ns since the base.
    pub t_ns: u64,
    /// Sender id.
    pub sender: u32,
    /// Sender's sequence number, from 0.
    pub seq: u64,
}

/// One unit of input: a line, or a frame's payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A benchmark message.
    Msg(Payload),
    /// The server skipped messages for this client.
    Lagged,
    /// Line mode's header of the history replayed on join: this many lines follow.
    History(u64),
    /// Anything else.
    Other(&'a [u8]),
}

static LINE_TEXT: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("> t="));
static FRAME_TEXT: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("\"text\":\"t="));
/// The trailing parameter of a `PRIVMSG` whose text is a benchmark message. A replayed
/// one starts `[HH:MM] ` instead, so join history never matches.
static IRC_TEXT: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(" :t="));

/// Calls `f` for each complete unit at the start of `data` while it returns true; returns
/// the bytes those units took.
pub fn scan(mode: Mode, data: &[u8], mut f: impl FnMut(Item<'_>) -> bool) -> usize {
    let mut pos = 0;
    match mode {
        Mode::Line | Mode::Irc => {
            let classify = if mode == Mode::Irc {
                classify_irc
            } else {
                classify_line
            };
            while let Some(i) = memchr::memchr(b'\n', &data[pos..]) {
                let raw = &data[pos..pos + i];
                pos += i + 1;
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !f(classify(line)) {
                    break;
                }
            }
        }
        Mode::Framed => {
            while data.len() - pos >= 4 {
                let len =
                    u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                        as usize;
                if data.len() - pos - 4 < len {
                    break;
                }
                let frame = &data[pos + 4..pos + 4 + len];
                pos += 4 + len;
                if !f(classify_frame(frame)) {
                    break;
                }
            }
        }
    }
    pos
}

fn classify_line(line: &[u8]) -> Item<'_> {
    match line.first() {
        Some(b'<' | b'[') => match LINE_TEXT
            .find(line)
            .and_then(|i| parse_text(&line[i + 2..]))
        {
            Some(p) => Item::Msg(p),
            None => Item::Other(line),
        },
        Some(b'!') if line.starts_with(b"! you fell behind") => Item::Lagged,
        Some(b'-') => history_header(line).map_or(Item::Other(line), Item::History),
        _ => Item::Other(line),
    }
}

fn classify_irc(line: &[u8]) -> Item<'_> {
    if let Some(p) = IRC_TEXT.find(line).and_then(|i| parse_text(&line[i + 2..])) {
        return Item::Msg(p);
    }
    if IRC_LAGGED.find(line).is_some() {
        return Item::Lagged;
    }
    Item::Other(line)
}

/// `-- last N messages in #room…:` → N.
fn history_header(line: &[u8]) -> Option<u64> {
    let (n, rest) = number(line.strip_prefix(b"-- last ")?)?;
    rest.starts_with(b" messages in #").then_some(n)
}

fn classify_frame(frame: &[u8]) -> Item<'_> {
    if frame.starts_with(b"{\"type\":\"message\"") {
        if let Some(p) = FRAME_TEXT
            .find(frame)
            .and_then(|i| parse_text(&frame[i + "\"text\":\"".len()..]))
        {
            return Item::Msg(p);
        }
    } else if frame.starts_with(b"{\"type\":\"lagged\"") {
        return Item::Lagged;
    }
    Item::Other(frame)
}

/// Reads `t=<u64> s=<u32> n=<u64>` at the start of `b`.
pub fn parse_text(b: &[u8]) -> Option<Payload> {
    let (t_ns, b) = number(b.strip_prefix(b"t=")?)?;
    let (sender, b) = number(b.strip_prefix(b" s=")?)?;
    let (seq, _) = number(b.strip_prefix(b" n=")?)?;
    Some(Payload {
        t_ns,
        sender: u32::try_from(sender).ok()?,
        seq,
    })
}

fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = b[..digits]
        .iter()
        .fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'));
    Some((n, &b[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ChatMessage;

    #[test]
    fn parses_the_text_header() {
        assert_eq!(
            parse_text(b"t=123 s=4 n=56 xxxx"),
            Some(Payload {
                t_ns: 123,
                sender: 4,
                seq: 56
            })
        );
        assert_eq!(parse_text(b"t=1 s=x n=2"), None);
        assert_eq!(parse_text(b"hello"), None);
    }

    #[test]
    fn encodes_padded_texts_in_every_mode() {
        let mut buf = Vec::new();
        encode_say(&mut buf, Mode::Line, "lobby", 7, 1, 2, 40);
        assert_eq!(buf.len(), 41);
        assert!(buf.starts_with(b"t=7 s=1 n=2 xxx"));
        assert!(buf.ends_with(b"x\n"));

        let mut buf = Vec::new();
        encode_say(&mut buf, Mode::Irc, "lobby", 7, 1, 2, 40);
        assert_eq!(buf.len(), "PRIVMSG #lobby :".len() + 40 + 2);
        assert!(buf.starts_with(b"PRIVMSG #lobby :t=7 s=1 n=2 xxx"));
        assert!(buf.ends_with(b"x\r\n"));

        let mut buf = Vec::new();
        encode_say(&mut buf, Mode::Framed, "r1", 7, 1, 2, 40);
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        let req: Request = serde_json::from_slice(&buf[4..]).unwrap();
        match req.msg {
            ClientMsg::Say { room, text, .. } => {
                assert!(req.id.is_some(), "framed messages carry an id");
                assert_eq!(room, "r1");
                assert_eq!(text.len(), 40);
                assert!(text.starts_with("t=7 s=1 n=2 "));
            }
            other => panic!("not a say: {other:?}"),
        }
    }

    /// What `scan` makes of `data`, and the bytes it took.
    fn items_of(mode: Mode, data: &[u8]) -> (Vec<String>, usize) {
        let mut items = Vec::new();
        let used = scan(mode, data, |i| {
            items.push(format!("{i:?}"));
            true
        });
        (items, used)
    }

    #[test]
    fn finds_messages_in_server_lines() {
        let data = b"-- alice joined #lobby\r\n<s1> t=9 s=1 n=3 xx\r\n[r2] <s2> t=8 s=2 n=0 y\r\n! you fell behind and missed 3 messages in #lobby\r\n<partial";
        let (items, used) = items_of(Mode::Line, data);
        assert_eq!(&data[used..], b"<partial");
        assert_eq!(items.len(), 4);
        assert!(items[1].contains("t_ns: 9"), "{items:?}");
        assert!(items[2].contains("sender: 2"), "{items:?}");
        assert_eq!(items[3], "Lagged");
    }

    #[test]
    fn finds_messages_in_irc_lines_but_not_replayed_history() {
        let data = b":srv 366 r0 #lobby :End of /NAMES list.\r\n:s1!s1@srv PRIVMSG #lobby :t=9 s=1 n=3 xx\r\n:s0!s0@srv PRIVMSG #lobby :[12:00] t=1 s=0 n=0 x\r\n:s2!~s2@127.0.0.1 PRIVMSG #lobby :t=8 s=2 n=0 y\r\n:srv NOTICE r0 :You fell behind and missed 3 messages in #lobby\r\n:s1!s1@srv PRIV";
        let (items, used) = items_of(Mode::Irc, data);
        assert_eq!(&data[used..], b":s1!s1@srv PRIV");
        assert_eq!(items.len(), 5, "{items:?}");
        assert!(items[0].starts_with("Other"), "{items:?}");
        assert!(
            items[1].contains("t_ns: 9") && items[1].contains("seq: 3"),
            "{items:?}"
        );
        assert!(
            items[2].starts_with("Other"),
            "a replay is no delivery: {items:?}"
        );
        assert!(items[3].contains("sender: 2"), "ngIRCd's mask: {items:?}");
        assert_eq!(items[4], "Lagged");
    }

    #[test]
    fn irc_logins_end_at_the_names_list_and_fail_at_refusals() {
        let login = Login::room("i7".into(), "idle-0");
        let bytes = String::from_utf8(login.bytes(Mode::Irc).unwrap()).unwrap();
        assert_eq!(bytes, "NICK i7\r\nUSER i7 0 * :i7\r\n");
        let after = |login: &Login, ours| String::from_utf8(login.irc_after_welcome(ours)).unwrap();
        assert_eq!(after(&login, true), "PART #lobby\r\nJOIN #idle-0\r\n");
        assert_eq!(
            after(&login, false),
            "JOIN #idle-0\r\n",
            "no lobby elsewhere"
        );
        let sender = Login::sender("s0".into());
        assert_eq!(after(&sender, true), "", "chat-server joined it to lobby");
        assert_eq!(
            after(&sender, false),
            "OPER bench bench\r\nMODE s0 +F\r\nJOIN #lobby\r\n"
        );
        assert_eq!(
            after(&Login::idle("x".into()), true),
            "PART #lobby\r\nPING :parted\r\n"
        );
        let mut ngircd = IrcWelcome::default();
        let mut ours = IrcWelcome::default();
        ngircd.see(b":ngircd.bench 004 r1 ngircd.bench ngircd-26.1 abBcCFiIoqrRswx abeh");
        ours.see(b":srv 004 r1 srv chat-server-0.1.0 o bikmnostv bkov");
        for w in [&mut ngircd, &mut ours] {
            assert!(!w.over(), "not before the end of the welcome");
            w.see(b":srv 376 r1 :End of MOTD command");
            assert!(w.over() && !w.over(), "once");
        }
        assert!(ours.ours && !ngircd.ours);
        let marker = " 366 i7 #idle-0 ";
        assert!(login_irc(b":srv 403 i7 #lobby :No such channel", marker).is_none());
        assert!(login_irc(b":srv 366 i7 #lobby :End", marker).is_none());
        assert!(matches!(
            login_irc(b":ngircd.bench 366 i7 #idle-0 :End of NAMES list", marker),
            Some(Ok(()))
        ));
        assert!(matches!(
            login_irc(b":srv 433 * i7 :Nickname is already in use", marker),
            Some(Err(_))
        ));
        assert!(matches!(
            login_irc(b"ERROR :Closing link", marker),
            Some(Err(_))
        ));
        assert!(matches!(
            login_irc(b":srv PONG srv :parted", ""),
            Some(Ok(()))
        ));
        assert_eq!(irc_numeric(b":srv 001 me :hi"), Some(&b"001"[..]));
        assert_eq!(irc_numeric(b":a!b@c PRIVMSG #x :433 y"), None);
    }

    #[test]
    fn finds_messages_in_server_frames() {
        let msg = ServerMsg::Message(ChatMessage {
            event: None,
            id: uuid_v4_like(),
            room: "lobby".into(),
            seq: 1,
            from: "s0".into(),
            text: "t=77 s=0 n=5 xxxx".into(),
            ts: 1,
            action: false,
            file: None,
            account: false,
        });
        let mut data = encode_frame(&msg).unwrap().to_vec();
        data.extend_from_slice(
            &encode_frame(&ServerMsg::Lagged {
                room: "lobby".into(),
                missed: 2,
            })
            .unwrap(),
        );
        data.extend_from_slice(&[0, 0, 1]);
        let (items, used) = items_of(Mode::Framed, &data);
        assert_eq!(used, data.len() - 3);
        assert_eq!(items.len(), 2);
        assert!(
            items[0].contains("t_ns: 77") && items[0].contains("seq: 5"),
            "{items:?}"
        );
        assert_eq!(items[1], "Lagged");
    }

    fn tally_of(mode: Mode, data: &[u8]) -> Arc<Tally> {
        let tally = Arc::new(Tally::default());
        let tap = Tap {
            me: None,
            count: true,
            ack: None,
            tally: Arc::clone(&tally),
            shard: 0,
            during: None,
            cross: None,
            own: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Half of it as if read during the login, the rest from the socket.
        let (early, rest) = data.split_at(data.len() / 2);
        let mut inbuf = InBuf::with_capacity(early.len());
        inbuf.spare()[..early.len()].copy_from_slice(early);
        inbuf.filled(early.len());
        rt.block_on(receive(rest, inbuf, mode, tap));
        tally
    }

    #[test]
    fn join_history_is_not_a_delivery_in_line_mode() {
        let data = b"-- last 2 messages in #lobby:\r\n<s0> t=1 s=0 n=0 x\r\n<s0> t=2 s=0 n=1 x\r\n-- members of #lobby (3): a, b, c\r\n<s0> t=3 s=0 n=2 x\r\n-- last 1 messages in #other (older ones not shown):\r\n[other] <s1> t=4 s=1 n=9 x\r\n<s0> t=5 s=0 n=3 x\r\n";
        let tally = tally_of(Mode::Line, data);
        assert_eq!(tally.delivered(), 2, "only n=2 and n=3 are live");
        assert_eq!(history_header(b"-- last 50 messages in #lobby:"), Some(50));
        assert_eq!(history_header(b"-- last words"), None);
    }

    #[test]
    fn join_history_is_not_a_delivery_in_framed_mode() {
        let m = |seq, text: &str| ChatMessage {
            event: None,
            id: uuid_v4_like(),
            room: "lobby".into(),
            seq,
            from: "s0".into(),
            text: text.into(),
            ts: 1,
            action: false,
            file: None,
            account: false,
        };
        let mut data = encode_frame(&ServerMsg::History {
            room: "lobby".into(),
            messages: vec![m(1, "t=1 s=0 n=0 x"), m(2, "t=2 s=0 n=1 x")],
            truncated: false,
        })
        .unwrap()
        .to_vec();
        data.extend_from_slice(&encode_frame(&ServerMsg::Message(m(3, "t=3 s=0 n=2 x"))).unwrap());
        let tally = tally_of(Mode::Framed, &data);
        assert_eq!(tally.delivered(), 1);
    }

    #[test]
    fn lag_counter_finds_notices_split_anywhere() {
        let lagged = encode_frame(&ServerMsg::Lagged {
            room: "lobby".into(),
            missed: 2,
        })
        .unwrap();
        let mut framed = b"xx".to_vec();
        framed.extend_from_slice(&lagged);
        framed.extend_from_slice(&lagged);
        let line =
            b"-- a\r\n! you fell behind and missed 3 messages in #a\r\n! you fell behind x\r\n"
                .to_vec();
        let irc = b":srv NOTICE r0 :You fell behind and missed 3 messages in #a\r\n:srv NOTICE r0 :You fell behind and missed 1 messages in #b\r\n".to_vec();
        for (mode, data) in [(Mode::Framed, framed), (Mode::Line, line), (Mode::Irc, irc)] {
            for cut in 0..=data.len() {
                for step in [1, 3, 7, data.len().max(1)] {
                    let mut c = LagCounter::new(mode);
                    let mut found = c.feed(&data[..cut]);
                    for piece in data[cut..].chunks(step) {
                        found += c.feed(piece);
                    }
                    assert_eq!((found, c.count()), (2, 2), "{mode:?} cut {cut} step {step}");
                }
            }
        }
    }

    fn uuid_v4_like() -> uuid::Uuid {
        uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001)
    }

    #[test]
    fn inbuf_compacts_and_grows() {
        let mut b = InBuf::with_capacity(64);
        let n = b.spare().len();
        b.spare()[..n].fill(b'a');
        b.filled(n);
        b.consume(10);
        assert_eq!(b.spare().len(), 10, "compacted");
        b.filled(10);
        assert!(b.spare().len() >= 64, "grown");
        assert_eq!(b.data().len(), 64);
    }
}
