//! Issue 13: IRC on the same port, over real sockets. A scripted IRC client (raw lines in,
//! parsed `@tags :prefix COMMAND params :trailing` out) against the in-process server, in
//! rooms with framed and line users; and the real clients, weechat-headless and irssi (in
//! tmux), against the same server.
//!
//! These tests were written from the issue before the adapter existed. A server without it
//! takes an IRC connection for a line client (`NICK alice` is then an invalid nick), so every
//! test here fails at its first IRC step, naming what it waited for. What they expect is what
//! the issue says; where it allows two answers (403 or 479, 417 or `FAIL`, 433 or `FAIL`, a
//! 417 or a notice for an overlong line), either passes.
//!
//! The real-client tests are skipped with a message when their binary (or tmux) is missing,
//! unless `CI` is set: then they fail. `.ci/run` installs them.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chat_server::{Config, Storage};
use chat_shared::{ClientMsg, ModeChange, Password, Request, ServerMsg};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

use common::{Client, Line, Next, QUIET, WAIT, cfg, connect_from, spawn_server, temp_db};

// =============================================================================================
// The scripted IRC client
// =============================================================================================

/// One IRC line from the server, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// IRCv3 tags, values unescaped, in order.
    pub tags: Vec<(String, String)>,
    /// The source, without its `:`.
    pub prefix: Option<String>,
    /// The command or three-digit numeric.
    pub command: String,
    /// Middle parameters and the trailing one (without its `:`), in order.
    pub params: Vec<String>,
    /// The line as received.
    pub raw: String,
}

/// Unescapes an IRCv3 tag value (`\:` `;`, `\s` space, `\\` `\`, `\r`, `\n`; a lone `\`
/// before anything else is dropped).
fn unescape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

impl Msg {
    /// Parses one line (without its terminator); `None` if there is no command.
    pub fn parse(line: &str) -> Option<Msg> {
        let mut rest = line.trim_start_matches(' ');
        let mut tags = Vec::new();
        if let Some(r) = rest.strip_prefix('@') {
            let (t, r) = r.split_once(' ')?;
            for kv in t.split(';').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                tags.push((k.to_owned(), unescape_tag(v)));
            }
            rest = r.trim_start_matches(' ');
        }
        let mut prefix = None;
        if let Some(r) = rest.strip_prefix(':') {
            let (p, r) = r.split_once(' ')?;
            prefix = Some(p.to_owned());
            rest = r.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            let r = rest.trim_start_matches(' ');
            if r.is_empty() {
                break;
            }
            if let Some(trailing) = r.strip_prefix(':') {
                params.push(trailing.to_owned());
                break;
            }
            match r.split_once(' ') {
                Some((p, more)) => {
                    params.push(p.to_owned());
                    rest = more;
                }
                None => {
                    params.push(r.to_owned());
                    break;
                }
            }
        }
        Some(Msg {
            tags,
            prefix,
            command: command.to_owned(),
            params,
            raw: line.to_owned(),
        })
    }

    /// Whether the command is `cmd` (case-insensitive).
    pub fn is(&self, cmd: &str) -> bool {
        self.command.eq_ignore_ascii_case(cmd)
    }

    /// Whether the command is one of `cmds`.
    pub fn is_any(&self, cmds: &[&str]) -> bool {
        cmds.iter().any(|c| self.is(c))
    }

    /// The tag `key`'s value, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter `i`, or `""`.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The last parameter (the trailing one, usually), or `""`.
    pub fn last(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }

    /// The nick of the source (`nick` of `nick!user@host`), if there is a source.
    pub fn nick(&self) -> Option<&str> {
        self.prefix
            .as_deref()
            .map(|p| p.split(['!', '@']).next().unwrap_or(p))
    }

    /// A `PRIVMSG` to `target` (case-insensitive) from `from`.
    pub fn is_privmsg(&self, from: &str, target: &str) -> bool {
        self.is("PRIVMSG")
            && self.nick().is_some_and(|n| n.eq_ignore_ascii_case(from))
            && self.param(0).eq_ignore_ascii_case(target)
    }
}

/// Formats a list of lines for a failure message, most recent last.
fn tail(items: &[Msg]) -> String {
    let start = items.len().saturating_sub(16);
    let mut s = String::new();
    for m in &items[start..] {
        s.push_str(&format!("\n    {:?}", m.raw));
    }
    if s.is_empty() {
        s.push_str(" (nothing)");
    }
    s
}

/// A scripted IRC client over any stream's halves (TCP by default, TLS in one test).
pub struct Irc<R = OwnedReadHalf, W = OwnedWriteHalf> {
    /// The nick it registers with (for failure messages and for `is_privmsg` checks).
    pub nick: String,
    line: Line<R, W>,
    /// Answer server `PING`s (and hide them) inside `next`.
    pub auto_pong: bool,
}

impl Irc {
    /// Connects without sending anything.
    pub async fn connect(addr: SocketAddr) -> Self {
        let l = Line::connect(addr).await;
        Self::wrap(l)
    }

    /// Connects from the local address `from` (another peer as far as the server can tell).
    pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> Self {
        let (r, w) = connect_from(addr, from).await.into_split();
        Self::from_halves(r, w)
    }

    /// Connects, sends `NICK`/`USER` and waits for the welcome burst through the MOTD.
    pub async fn login(addr: SocketAddr, nick: &str) -> Self {
        let mut c = Self::connect(addr).await;
        c.register(nick).await;
        c
    }

    /// Connects, negotiates `caps` (`CAP LS 302`, one `CAP REQ`, `ACK`, `CAP END`) around
    /// `NICK`/`USER`, and waits for the welcome burst.
    pub async fn login_caps(addr: SocketAddr, nick: &str, caps: &[&str]) -> Self {
        let mut c = Self::connect(addr).await;
        c.register_caps(nick, caps).await;
        c
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Irc<R, W> {
    /// A client over a connected stream's halves, nothing sent yet.
    pub fn from_halves(r: R, w: W) -> Self {
        Self::wrap(Line::from_halves(r, w))
    }

    fn wrap(line: Line<R, W>) -> Self {
        Self {
            nick: String::new(),
            line,
            auto_pong: true,
        }
    }

    fn who(&self) -> &str {
        if self.nick.is_empty() {
            "irc"
        } else {
            &self.nick
        }
    }

    /// Sends one line, `\r\n` appended.
    pub async fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.line.send_bytes(&bytes).await;
    }

    /// Writes arbitrary bytes (invalid UTF-8, bare `\n`, no terminator, …).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.line.send_bytes(bytes).await;
    }

    /// The next parsed line, end of file, or a timeout after `dur`. Empty lines are skipped;
    /// a line that does not parse fails the test.
    pub async fn next(&mut self, dur: Duration) -> Next<Msg> {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.line.next(left).await {
                Next::Timeout => return Next::Timeout,
                Next::Eof => return Next::Eof,
                Next::Item(l) if l.trim().is_empty() => {}
                Next::Item(l) => {
                    let Some(m) = Msg::parse(&l) else {
                        panic!(
                            "[{}] the server sent an unparsable IRC line {l:?}",
                            self.who()
                        );
                    };
                    if self.auto_pong && m.is("PING") {
                        let pong = format!("PONG :{}", m.last());
                        self.send(&pong).await;
                        continue;
                    }
                    return Next::Item(m);
                }
            }
        }
    }

    /// Skips lines until `pred` holds, returns every line read, the match last; bounded by
    /// [`WAIT`] overall.
    pub async fn recv_until_all(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Msg) -> bool,
    ) -> Vec<Msg> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(m) => {
                    let done = pred(&m);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
                Next::Eof => panic!(
                    "[{}] connection closed while waiting for {what}; lines:{}",
                    self.who(),
                    tail(&seen)
                ),
                Next::Timeout => panic!(
                    "[{}] timed out after {WAIT:?} waiting for {what}; lines:{}",
                    self.who(),
                    tail(&seen)
                ),
            }
        }
    }

    /// Skips lines until `pred` holds and returns that line.
    pub async fn recv_until(&mut self, what: &str, pred: impl FnMut(&Msg) -> bool) -> Msg {
        self.recv_until_all(what, pred)
            .await
            .pop()
            .expect("at least the match")
    }

    /// Skips to the first line whose command is one of `cmds` (numerics or words).
    pub async fn recv_cmd(&mut self, cmds: &[&str]) -> Msg {
        self.recv_until(&format!("one of {cmds:?}"), |m| m.is_any(cmds))
            .await
    }

    /// Skips to a `PRIVMSG` from `from` to `target` whose text is `text`.
    pub async fn recv_privmsg(&mut self, from: &str, target: &str, text: &str) -> Msg {
        self.recv_until(&format!(":{from}!… PRIVMSG {target} :{text}"), |m| {
            m.is_privmsg(from, target) && m.last() == text
        })
        .await
    }

    /// Reads for `dur` and fails if any line matches `bad` (end of file ends the watch).
    pub async fn expect_none(&mut self, dur: Duration, what: &str, bad: impl Fn(&Msg) -> bool) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Timeout | Next::Eof => return,
                Next::Item(m) if bad(&m) => {
                    panic!("[{}] expected no {what}, got {:?}", self.who(), m.raw)
                }
                Next::Item(_) => {}
            }
        }
    }

    /// Asserts that the server closes the connection within [`WAIT`]; returns what came
    /// before.
    pub async fn expect_eof(&mut self) -> Vec<Msg> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Eof => return seen,
                Next::Item(m) => seen.push(m),
                Next::Timeout => panic!(
                    "[{}] expected the connection to close within {WAIT:?}; lines:{}",
                    self.who(),
                    tail(&seen)
                ),
            }
        }
    }

    /// A liveness round trip: `PING` with a fresh token, skip to its `PONG`. Fails if the
    /// connection closed.
    pub async fn alive(&mut self) {
        let token = format!("alive-{}", Uuid::new_v4().simple());
        self.send(&format!("PING {token}")).await;
        self.recv_until(&format!("PONG for {token}"), |m| {
            m.is("PONG") && m.last() == token
        })
        .await;
    }

    /// Sends `NICK` and `USER`.
    pub async fn send_nick_user(&mut self, nick: &str) {
        self.nick = nick.to_owned();
        self.line.nick = nick.to_owned();
        self.send(&format!("NICK {nick}")).await;
        self.send(&format!("USER {nick} 0 * :chat-tests {nick}"))
            .await;
    }

    /// Reads the welcome burst through the end of the MOTD (376 or 422); returns it. An
    /// error numeric (4xx, 5xx) on the way fails the test.
    pub async fn welcome(&mut self) -> Vec<Msg> {
        let who = self.who().to_owned();
        let burst = self
            .recv_until_all("the welcome burst (001 … 376 or 422)", |m| {
                // 451 answers commands sent before registration, not the registration.
                if m.command.len() == 3
                    && (m.command.starts_with('4') || m.command.starts_with('5'))
                    && m.command != "422"
                    && m.command != "451"
                {
                    panic!("[{who}] an error during registration: {:?}", m.raw);
                }
                m.is_any(&["376", "422"])
            })
            .await;
        let first = burst
            .iter()
            .find(|m| m.is("001"))
            .unwrap_or_else(|| panic!("[{who}] no 001 before the MOTD:{}", tail(&burst)));
        // The nick the server gave us: 001's target.
        self.nick = first.param(0).to_owned();
        self.line.nick = self.nick.clone();
        burst
    }

    /// `NICK`/`USER` and the welcome burst.
    pub async fn register(&mut self, nick: &str) -> Vec<Msg> {
        self.send_nick_user(nick).await;
        self.welcome().await
    }

    /// Sends `CAP LS 302` and collects the advertised caps (names with their `=values`)
    /// across continuation lines (`CAP * LS * :…`).
    pub async fn cap_ls(&mut self) -> Vec<String> {
        self.send("CAP LS 302").await;
        let mut caps = Vec::new();
        loop {
            let m = self
                .recv_until("CAP * LS", |m| {
                    m.is("CAP") && m.param(1).eq_ignore_ascii_case("LS")
                })
                .await;
            caps.extend(m.last().split_whitespace().map(str::to_owned));
            // `CAP * LS * :caps` has four parameters: more lines follow.
            if !(m.params.len() >= 4 && m.param(2) == "*") {
                return caps;
            }
        }
    }

    /// Sends `CAP REQ :caps` and returns the answer (`ACK` or `NAK`) line.
    pub async fn cap_req(&mut self, caps: &[&str]) -> Msg {
        self.send(&format!("CAP REQ :{}", caps.join(" "))).await;
        self.recv_until(&format!("CAP ACK or NAK for {caps:?}"), |m| {
            m.is("CAP")
                && ["ACK", "NAK"]
                    .iter()
                    .any(|s| m.param(1).eq_ignore_ascii_case(s))
        })
        .await
    }

    /// `CAP LS 302`, `NICK`/`USER`, `CAP REQ :caps` (must be `ACK`ed), `CAP END`, and the
    /// welcome burst.
    pub async fn register_caps(&mut self, nick: &str, caps: &[&str]) -> Vec<Msg> {
        self.cap_ls().await;
        self.send_nick_user(nick).await;
        if !caps.is_empty() {
            let answer = self.cap_req(caps).await;
            assert!(
                answer.param(1).eq_ignore_ascii_case("ACK"),
                "[{nick}] CAP REQ {caps:?} was not acknowledged: {:?}",
                answer.raw
            );
        }
        self.send("CAP END").await;
        self.welcome().await
    }

    /// Joins `#room` (give the name with its `#`) and reads through 366; returns every line
    /// read. A join error numeric fails the test.
    pub async fn join(&mut self, channel: &str) -> Vec<Msg> {
        self.send(&format!("JOIN {channel}")).await;
        self.join_answer(channel).await
    }

    /// Reads the answer to a `JOIN` of `channel` through 366.
    pub async fn join_answer(&mut self, channel: &str) -> Vec<Msg> {
        let who = self.who().to_owned();
        let lines = self
            .recv_until_all(&format!("366 after JOIN {channel}"), |m| {
                if m.is_any(&[
                    "403", "405", "471", "473", "474", "475", "476", "477", "479",
                ]) {
                    panic!("[{who}] JOIN {channel} refused: {:?}", m.raw);
                }
                m.is("366") && m.param(1).eq_ignore_ascii_case(channel)
            })
            .await;
        assert!(
            lines.iter().any(|m| m.is("JOIN")
                && m.nick().is_some_and(|n| n.eq_ignore_ascii_case(&who))
                && m.param(0).eq_ignore_ascii_case(channel)),
            "[{who}] no JOIN {channel} echo before 366:{}",
            tail(&lines)
        );
        lines
    }

    /// Sends `PRIVMSG target :text`.
    pub async fn privmsg(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}")).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// The test configuration, with a rate limit no test here runs into.
fn mem() -> Config {
    Config {
        rate: 1000.0,
        burst: 1000,
        ..cfg()
    }
}

/// [`mem`] with SQLite at `db` (accounts need a database).
fn stored(db: &Path) -> Config {
    Config {
        storage: Storage::Sqlite(db.to_path_buf()),
        ..mem()
    }
}

const SECRET: &str = "correct horse battery staple";

/// Registers `nick` with [`SECRET`] from a framed client, which then quits.
async fn register_account(addr: SocketAddr, nick: &str) {
    let mut c = Client::login(addr, nick).await;
    c.send(ClientMsg::Register {
        password: Password::new(SECRET),
    })
    .await;
    c.recv_until_all("registered", |m| matches!(m, ServerMsg::Registered { .. }))
        .await;
    c.quit().await;
}

/// A framed client that is the first member (so an op) of `room`.
async fn op_of(addr: SocketAddr, nick: &str, room: &str) -> Client {
    let mut c = Client::login(addr, nick).await;
    c.join(room, None).await;
    c
}

/// Sends a moderation request from a framed client.
async fn request(c: &mut Client, msg: ClientMsg) {
    c.send_req(Request::with_id(Uuid::new_v4(), msg)).await;
}

/// Sets modes on `room` from framed op `c` and waits for the `mode` event.
async fn set_mode(c: &mut Client, room: &str, change: ModeChange) {
    let want = change.clone();
    request(
        c,
        ClientMsg::Mode {
            room: room.into(),
            change,
        },
    )
    .await;
    // A change that is already in effect has no event; a `mode` naming no mode asks for all
    // five, so one of the two answers shows the wanted state either way.
    request(
        c,
        ClientMsg::Mode {
            room: room.into(),
            change: ModeChange::default(),
        },
    )
    .await;
    let nick = c.nick.clone();
    let holds = |got: &ModeChange| {
        (want.invite_only.is_none() || got.invite_only == want.invite_only)
            && (want.key.is_none() || got.key == want.key)
            && (want.moderated.is_none() || got.moderated == want.moderated)
            && (want.topic_locked.is_none() || got.topic_locked == want.topic_locked)
            && (want.secret.is_none() || got.secret == want.secret)
    };
    c.recv_until_all(&format!("mode {want:?} in {room}"), |m| match m {
        ServerMsg::Mode {
            room: r, change, ..
        } => r == room && holds(change),
        ServerMsg::Error { .. } => panic!("[{nick}] mode in {room}: {m:?}"),
        _ => false,
    })
    .await;
    // The other answer (the query's, after a real change) is not left for a later check.
    c.drain(QUIET).await;
}

/// The ISUPPORT tokens of a welcome burst (every 005's parameters between the target and the
/// trailing text).
fn isupport(burst: &[Msg]) -> Vec<String> {
    burst
        .iter()
        .filter(|m| m.is("005"))
        .flat_map(|m| {
            let n = m.params.len();
            m.params[1..n.saturating_sub(1).max(1)].to_vec()
        })
        .collect()
}

/// The value of ISUPPORT token `name` (`Some("")` for a token without `=`).
fn token<'a>(tokens: &'a [String], name: &str) -> Option<&'a str> {
    tokens.iter().find_map(|t| {
        let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
        (k == name).then_some(v)
    })
}

/// Standard base64 (with padding), for SASL.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Unix milliseconds as IRCv3 `server-time`: `YYYY-MM-DDThh:mm:ss.sssZ` (UTC).
fn server_time(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Another loopback address: another peer as far as the server can tell.
fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[test]
fn the_test_clients_parser_and_encoders_do_what_they_say() {
    let m = Msg::parse("@msgid=abc;time=2024-01-02T03:04:05.678Z;x=a\\sb\\:c :alice!a@host PRIVMSG #room :hello  there").unwrap();
    assert_eq!(m.tag("msgid"), Some("abc"));
    assert_eq!(m.tag("x"), Some("a b;c"));
    assert_eq!(m.nick(), Some("alice"));
    assert_eq!(m.command, "PRIVMSG");
    assert_eq!(m.params, vec!["#room", "hello  there"]);
    let m = Msg::parse(":srv 005 bob CHANTYPES=# PREFIX=(ov)@+ :are supported").unwrap();
    assert_eq!(
        isupport(&[m]),
        vec!["CHANTYPES=#".to_owned(), "PREFIX=(ov)@+".to_owned()]
    );
    assert_eq!(Msg::parse("PING").unwrap().params, Vec::<String>::new());
    assert_eq!(Msg::parse("PING tok").unwrap().last(), "tok");
    assert_eq!(Msg::parse(":only-a-prefix"), None);
    assert_eq!(base64(b"\0nick\0pw"), "AG5pY2sAcHc=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(server_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(server_time(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
}

// =============================================================================================
// Registration (issue item 2)
// =============================================================================================

#[tokio::test]
async fn nick_and_user_get_001_to_005_with_truthful_isupport_and_the_motd() {
    let server = spawn_server(Config {
        max_topic: 300,
        ..mem()
    })
    .await;
    let mut c = Irc::connect(server.addr).await;
    let burst = c.register("ivy").await;
    let numerics: Vec<&str> = burst
        .iter()
        .map(|m| m.command.as_str())
        .filter(|c| ["001", "002", "003", "004", "005"].contains(c))
        .collect();
    let mut firsts = numerics.clone();
    firsts.dedup();
    assert_eq!(
        firsts,
        ["001", "002", "003", "004", "005"],
        "001 to 005 in order:{}",
        tail(&burst)
    );
    assert_eq!(burst[0].command, "001", "the burst starts with 001");
    assert_eq!(burst[0].param(0), "ivy", "001 is addressed to the nick");
    let tokens = isupport(&burst);
    assert_eq!(token(&tokens, "CHANTYPES"), Some("#"), "{tokens:?}");
    assert_eq!(token(&tokens, "PREFIX"), Some("(ov)@+"), "{tokens:?}");
    let casemapping = token(&tokens, "CASEMAPPING").expect("CASEMAPPING");
    assert!(
        !casemapping.is_empty() && !["ascii", "rfc1459", "strict-rfc1459"].contains(&casemapping),
        "we fold Unicode, so CASEMAPPING must not claim {casemapping:?}"
    );
    let nicklen: usize = token(&tokens, "NICKLEN")
        .expect("NICKLEN")
        .parse()
        .expect("NICKLEN is a number");
    assert!(
        nicklen >= 32,
        "NICKLEN={nicklen}: our nicks have up to 32 characters"
    );
    assert_eq!(
        token(&tokens, "TOPICLEN"),
        Some("300"),
        "TOPICLEN is the configured --max-topic"
    );
    let last = burst.last().unwrap();
    if last.is("376") {
        assert!(burst.iter().any(|m| m.is("375")), "376 without 375");
    }
    c.alive().await;
}

#[tokio::test]
async fn cap_ls_302_lists_the_caps_and_holds_registration_until_cap_end() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::connect(server.addr).await;
    let caps = c.cap_ls().await;
    let names: Vec<&str> = caps
        .iter()
        .map(|c| c.split('=').next().unwrap_or(c))
        .collect();
    for want in ["message-tags", "server-time", "echo-message", "sasl"] {
        assert!(names.contains(&want), "CAP LS lacks {want}: {caps:?}");
    }
    c.send_nick_user("capper").await;
    c.expect_none(QUIET * 2, "welcome before CAP END", |m| m.is("001"))
        .await;
    c.send("CAP END").await;
    c.welcome().await;
}

#[tokio::test]
async fn cap_req_acks_message_tags_server_time_echo_message_and_naks_an_unknown_cap() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::connect(server.addr).await;
    c.cap_ls().await;
    c.send_nick_user("requester").await;
    let ack = c
        .cap_req(&["message-tags", "server-time", "echo-message"])
        .await;
    assert!(ack.param(1).eq_ignore_ascii_case("ACK"), "{:?}", ack.raw);
    let mut acked: Vec<&str> = ack.last().split_whitespace().collect();
    acked.sort_unstable();
    assert_eq!(acked, ["echo-message", "message-tags", "server-time"]);
    let nak = c.cap_req(&["no-such-cap.example/thing"]).await;
    assert!(nak.param(1).eq_ignore_ascii_case("NAK"), "{:?}", nak.raw);
    assert_eq!(nak.last().trim(), "no-such-cap.example/thing");
    c.send("CAP END").await;
    c.welcome().await;
}

#[tokio::test]
async fn ping_gets_a_pong_with_the_same_token() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::login(server.addr, "pinger").await;
    c.send("PING :some token 42").await;
    let pong = c.recv_cmd(&["PONG"]).await;
    assert_eq!(pong.last(), "some token 42", "{:?}", pong.raw);
}

#[tokio::test]
async fn quit_before_registration_answers_error_and_closes() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::connect(server.addr).await;
    c.send("NICK quitter").await;
    c.send("QUIT :changed my mind").await;
    let before = c.expect_eof().await;
    assert!(
        before.iter().any(|m| m.is("ERROR")),
        "ERROR before the close:{}",
        tail(&before)
    );
    assert!(!before.iter().any(|m| m.is("001")), "no welcome after QUIT");
}

#[tokio::test]
async fn an_invalid_nick_gets_432_and_a_taken_one_433_and_a_good_one_then_registers() {
    let server = spawn_server(mem()).await;
    let _holder = Client::login(server.addr, "taken").await;
    let mut c = Irc::connect(server.addr).await;
    c.send("USER someone 0 * :someone").await;
    // Our nick rules: letters, digits, '-' and '_'.
    c.send("NICK bad.nick").await;
    let m = c.recv_cmd(&["432"]).await;
    assert!(
        m.raw.contains("bad.nick"),
        "432 names the nick: {:?}",
        m.raw
    );
    c.send("NICK taken").await;
    let m = c.recv_cmd(&["433"]).await;
    assert!(m.raw.contains("taken"), "433 names the nick: {:?}", m.raw);
    c.expect_none(QUIET, "a welcome without a valid nick", |m| m.is("001"))
        .await;
    c.send_nick_user("free-nick").await;
    c.welcome().await;
    assert_eq!(c.nick, "free-nick");
}

#[tokio::test]
async fn a_registered_nick_without_login_gets_433_or_a_fail() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    register_account(server.addr, "owned").await;
    let mut c = Irc::connect(server.addr).await;
    c.send_nick_user("owned").await;
    let m = c.recv_cmd(&["433", "FAIL", "001"]).await;
    assert!(
        m.is_any(&["433", "FAIL"]),
        "a registered nick without login: {:?}",
        m.raw
    );
}

#[tokio::test]
async fn commands_before_registration_get_451() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::connect(server.addr).await;
    // The first line decides the mode; after it, commands that need registration get 451.
    c.send("NICK early").await;
    c.send("JOIN #early").await;
    c.recv_cmd(&["451"]).await;
    c.send("PRIVMSG #early :too soon").await;
    c.recv_cmd(&["451"]).await;
    c.send("USER early 0 * :early").await;
    c.welcome().await;
}

// =============================================================================================
// Accounts: SASL PLAIN (issue item 3)
// =============================================================================================

/// `CAP LS 302`, `NICK`/`USER`, `CAP REQ :sasl`, `AUTHENTICATE PLAIN`, then the credentials;
/// returns the lines up to the SASL outcome (903 or 904/905).
async fn sasl_plain(c: &mut Irc, nick: &str, password: &str) -> Vec<Msg> {
    c.cap_ls().await;
    c.send_nick_user(nick).await;
    let ack = c.cap_req(&["sasl"]).await;
    assert!(ack.param(1).eq_ignore_ascii_case("ACK"), "{:?}", ack.raw);
    c.send("AUTHENTICATE PLAIN").await;
    c.recv_until("AUTHENTICATE +", |m| {
        m.is("AUTHENTICATE") && m.last() == "+"
    })
    .await;
    let creds = base64(format!("\0{nick}\0{password}").as_bytes());
    c.send(&format!("AUTHENTICATE {creds}")).await;
    c.recv_until_all("the SASL outcome (903, 904 or 905)", |m| {
        m.is_any(&["903", "904", "905"])
    })
    .await
}

#[tokio::test]
async fn sasl_plain_logs_in_a_registered_account_with_900_and_903() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    register_account(server.addr, "sasha").await;
    let mut c = Irc::connect(server.addr).await;
    let lines = sasl_plain(&mut c, "sasha", SECRET).await;
    assert!(lines.last().unwrap().is("903"), "{}", tail(&lines));
    let logged_in = lines
        .iter()
        .find(|m| m.is("900"))
        .unwrap_or_else(|| panic!("900 before 903:{}", tail(&lines)));
    assert!(
        logged_in.params.iter().any(|p| p == "sasha"),
        "900 names the account: {:?}",
        logged_in.raw
    );
    c.send("CAP END").await;
    c.welcome().await;
    assert_eq!(c.nick, "sasha");
    // Logged in as the account: a framed user sees that nick join.
    let mut watcher = op_of(server.addr, "watcher", "saslroom").await;
    c.join("#saslroom").await;
    watcher.recv_joined("saslroom", "sasha").await;
}

#[tokio::test]
async fn sasl_plain_with_a_wrong_password_gets_904() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    register_account(server.addr, "sasha").await;
    let mut c = Irc::connect(server.addr).await;
    let lines = sasl_plain(&mut c, "sasha", "not the password at all").await;
    assert!(lines.last().unwrap().is("904"), "{}", tail(&lines));
    assert!(!lines.iter().any(|m| m.is("900")), "no 900 on failure");
}

// =============================================================================================
// Chat across modes (issue item 4)
// =============================================================================================

#[tokio::test]
async fn an_irc_a_framed_and_a_line_user_in_one_room_each_see_the_others_messages() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut larry = Line::login_seen_by(addr, "larry", &mut alice).await;
    larry.send_line("/join room").await;
    alice.recv_joined("room", "larry").await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#room").await;
    alice.recv_joined("room", "ian").await;
    larry
        .read_until("ian's join in line mode", |l| l.contains("ian"))
        .await;

    // Framed → IRC and line.
    alice.say("room", "hello from framed").await;
    let m = ian
        .recv_privmsg("alice", "#room", "hello from framed")
        .await;
    let prefix = m.prefix.as_deref().unwrap();
    assert!(
        prefix.starts_with("alice!"),
        "a full nick!user@host source: {prefix:?}"
    );
    larry.expect_line("<alice> hello from framed").await;

    // IRC → framed and line.
    ian.privmsg("#room", "hello from irc").await;
    let got = alice.recv_message("room", "hello from irc").await;
    assert_eq!(got.from, "ian");
    larry.expect_line("<ian> hello from irc").await;

    // Line → IRC and framed.
    larry.send_line("hello from line").await;
    ian.recv_privmsg("larry", "#room", "hello from line").await;
    assert_eq!(
        alice.recv_message("room", "hello from line").await.from,
        "larry"
    );
}

#[tokio::test]
async fn dms_go_both_ways_between_irc_and_framed_and_line_users() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut larry = Line::login(addr, "larry").await;
    let mut ian = Irc::login(addr, "ian").await;

    ian.privmsg("alice", "psst alice").await;
    let dm = alice.recv_dm().await;
    assert_eq!((dm.from.as_str(), dm.text.as_str()), ("ian", "psst alice"));

    alice
        .send(ClientMsg::Dm {
            to: "ian".into(),
            text: "psst ian".into(),
        })
        .await;
    ian.recv_privmsg("alice", "ian", "psst ian").await;

    ian.privmsg("larry", "psst larry").await;
    larry.expect_line("*ian* psst larry").await;
    larry.send_line("/msg ian psst back").await;
    ian.recv_privmsg("larry", "ian", "psst back").await;
}

#[tokio::test]
async fn ctcp_action_and_framed_action_map_onto_each_other() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#room").await;
    alice.recv_joined("room", "ian").await;

    ian.privmsg("#room", "\u{1}ACTION waves\u{1}").await;
    let got = alice.recv_message("room", "waves").await;
    assert!(got.action, "a CTCP ACTION is a framed action: {got:?}");
    assert_eq!(got.from, "ian");

    let id = Uuid::new_v4();
    alice
        .send_req(Request::with_id(
            id,
            ClientMsg::Say {
                room: "room".into(),
                text: "dances".into(),
                action: true,
            },
        ))
        .await;
    ian.recv_privmsg("alice", "#room", "\u{1}ACTION dances\u{1}")
        .await;
}

#[tokio::test]
async fn names_lists_members_with_op_marks_in_353_then_366() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = Irc::login(addr, "ian").await;
    let lines = ian.join("#room").await;
    alice.recv_joined("room", "ian").await;
    let names = |lines: &[Msg]| -> Vec<String> {
        lines
            .iter()
            .filter(|m| m.is("353") && m.params.iter().any(|p| p.eq_ignore_ascii_case("#room")))
            .flat_map(|m| {
                m.last()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let on_join = names(&lines);
    assert!(
        on_join.contains(&"@alice".to_owned()),
        "alice is op: {on_join:?}"
    );
    assert!(
        on_join.contains(&"ian".to_owned()),
        "ian is a plain member: {on_join:?}"
    );

    ian.send("NAMES #room").await;
    let lines = ian.recv_until_all("366 after NAMES", |m| m.is("366")).await;
    let asked = names(&lines);
    assert!(
        asked.contains(&"@alice".to_owned()) && asked.contains(&"ian".to_owned()),
        "NAMES #room: {asked:?}"
    );
    assert!(lines.last().unwrap().param(1).eq_ignore_ascii_case("#room"));
}

#[tokio::test]
async fn a_framed_multi_line_message_arrives_as_several_privmsgs_from_the_sender() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#room").await;
    alice.recv_joined("room", "ian").await;
    alice.say("room", "line one\nline two\nline three").await;
    for text in ["line one", "line two", "line three"] {
        // In order: each is the next PRIVMSG from alice.
        let m = ian
            .recv_until("the next PRIVMSG from alice", |m| {
                m.is_privmsg("alice", "#room")
            })
            .await;
        assert_eq!(m.last(), text, "{:?}", m.raw);
    }
}

// =============================================================================================
// IRCv3 (issue item 5)
// =============================================================================================

#[tokio::test]
async fn with_message_tags_every_irc_user_sees_the_framed_message_id_as_msgid() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = Irc::login_caps(addr, "ian", &["message-tags", "echo-message"]).await;
    ian.join("#room").await;
    let mut ivy = Irc::login_caps(addr, "ivy", &["message-tags"]).await;
    ivy.join("#room").await;
    alice.recv_joined("room", "ivy").await;

    let sent = alice.say("room", "tagged").await;
    for c in [&mut ian, &mut ivy] {
        let m = c.recv_privmsg("alice", "#room", "tagged").await;
        assert_eq!(
            m.tag("msgid"),
            Some(sent.id.to_string().as_str()),
            "{:?}",
            m.raw
        );
    }

    // An IRC user's message: the framed id, the echo's msgid and the other IRC user's agree.
    ian.privmsg("#room", "from irc, tagged").await;
    let framed = alice.recv_message("room", "from irc, tagged").await;
    let echo = ian.recv_privmsg("ian", "#room", "from irc, tagged").await;
    let other = ivy.recv_privmsg("ian", "#room", "from irc, tagged").await;
    let id = framed.id.to_string();
    assert_eq!(echo.tag("msgid"), Some(id.as_str()), "{:?}", echo.raw);
    assert_eq!(other.tag("msgid"), Some(id.as_str()), "{:?}", other.raw);
}

#[tokio::test]
async fn server_time_tags_messages_with_the_servers_timestamp() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = Irc::login_caps(addr, "ian", &["server-time"]).await;
    ian.join("#room").await;
    alice.recv_joined("room", "ian").await;
    let sent = alice.say("room", "what time is it").await;
    let m = ian.recv_privmsg("alice", "#room", "what time is it").await;
    assert_eq!(
        m.tag("time"),
        Some(server_time(sent.ts).as_str()),
        "{:?}",
        m.raw
    );

    // Without the cap, no tags at all.
    let mut plain = Irc::login(addr, "plain").await;
    plain.join("#room").await;
    alice.recv_joined("room", "plain").await;
    alice.say("room", "untagged").await;
    let m = plain.recv_privmsg("alice", "#room", "untagged").await;
    assert!(m.tags.is_empty(), "no tags without caps: {:?}", m.raw);
}

#[tokio::test]
async fn echo_message_on_sends_the_sender_its_privmsg_back_and_off_does_not() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut echoed = Irc::login_caps(addr, "echoed", &["echo-message"]).await;
    echoed.join("#room").await;
    let mut quiet = Irc::login(addr, "quiet").await;
    quiet.join("#room").await;
    alice.recv_joined("room", "quiet").await;

    echoed.privmsg("#room", "echo me").await;
    alice.recv_message("room", "echo me").await;
    echoed.recv_privmsg("echoed", "#room", "echo me").await;

    quiet.privmsg("#room", "do not echo me").await;
    alice.recv_message("room", "do not echo me").await;
    echoed
        .recv_privmsg("quiet", "#room", "do not echo me")
        .await;
    quiet
        .expect_none(QUIET, "an echo without echo-message", |m| {
            m.is("PRIVMSG") && m.last() == "do not echo me"
        })
        .await;

    // A DM is echoed too.
    echoed.privmsg("alice", "echoed dm").await;
    alice.recv_dm().await;
    echoed.recv_privmsg("echoed", "alice", "echoed dm").await;
}

// =============================================================================================
// Moderation mapped onto IRC (issue item 4)
// =============================================================================================

#[tokio::test]
async fn a_framed_ops_topic_mode_op_and_kick_arrive_as_native_irc_events() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "modroom").await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#modroom").await;
    alice.recv_joined("modroom", "ian").await;

    request(
        &mut alice,
        ClientMsg::Topic {
            room: "modroom".into(),
            text: "a fine topic".into(),
        },
    )
    .await;
    let m = ian.recv_until("TOPIC #modroom", |m| m.is("TOPIC")).await;
    assert_eq!(m.nick(), Some("alice"), "{:?}", m.raw);
    assert!(m.param(0).eq_ignore_ascii_case("#modroom"));
    assert_eq!(m.last(), "a fine topic");

    set_mode(
        &mut alice,
        "modroom",
        ModeChange {
            moderated: Some(true),
            ..ModeChange::default()
        },
    )
    .await;
    let m = ian.recv_until("MODE #modroom +m", |m| m.is("MODE")).await;
    assert_eq!(m.nick(), Some("alice"), "{:?}", m.raw);
    assert!(m.param(0).eq_ignore_ascii_case("#modroom"));
    assert_eq!(m.param(1), "+m", "{:?}", m.raw);

    request(
        &mut alice,
        ClientMsg::Op {
            room: "modroom".into(),
            nick: "ian".into(),
        },
    )
    .await;
    let m = ian
        .recv_until("MODE #modroom +o ian", |m| m.is("MODE"))
        .await;
    assert_eq!((m.param(1), m.param(2)), ("+o", "ian"), "{:?}", m.raw);
    assert_eq!(m.nick(), Some("alice"));

    // An op cannot kick an op: ian steps down first (anyone may give up a role).
    ian.send("MODE #modroom -o ian").await;
    let m = ian
        .recv_until("MODE #modroom -o ian", |m| m.is("MODE"))
        .await;
    assert_eq!((m.param(1), m.param(2)), ("-o", "ian"), "{:?}", m.raw);

    request(
        &mut alice,
        ClientMsg::Kick {
            room: "modroom".into(),
            nick: "ian".into(),
            reason: Some("out you go".into()),
        },
    )
    .await;
    let m = ian.recv_until("KICK #modroom ian", |m| m.is("KICK")).await;
    assert_eq!(m.nick(), Some("alice"), "{:?}", m.raw);
    assert!(m.param(0).eq_ignore_ascii_case("#modroom"));
    assert_eq!(m.param(1), "ian");
    assert_eq!(m.last(), "out you go");
}

#[tokio::test]
async fn an_irc_op_sets_the_topic_and_modes_invites_and_kicks() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    // First in the room: ian is its op.
    let mut ian = Irc::login(addr, "ian").await;
    let lines = ian.join("#iroom").await;
    assert!(
        lines
            .iter()
            .any(|m| m.is("353") && m.last().split_whitespace().any(|n| n == "@ian")),
        "the first member is op:{}",
        tail(&lines)
    );
    let mut alice = Client::login(addr, "alice").await;
    alice.join("iroom", None).await;
    ian.recv_until("alice's JOIN", |m| {
        m.is("JOIN") && m.nick() == Some("alice")
    })
    .await;

    ian.send("TOPIC #iroom :set from irc").await;
    alice
        .recv_until_all("topic from ian", |m| {
            matches!(m, ServerMsg::Topic { room, text, by, .. }
                if room == "iroom" && text == "set from irc" && by == "ian")
        })
        .await;

    ian.send("MODE #iroom +m").await;
    alice
        .recv_until_all("mode +m from ian", |m| {
            matches!(m, ServerMsg::Mode { room, by, change, .. }
                if room == "iroom" && by == "ian" && change.moderated == Some(true))
        })
        .await;

    ian.send("MODE #iroom +i").await;
    alice
        .recv_until_all(
            "mode +i from ian",
            |m| matches!(m, ServerMsg::Mode { change, .. } if change.invite_only == Some(true)),
        )
        .await;
    let mut carol = Client::login(addr, "carol").await;
    ian.send("INVITE carol #iroom").await;
    let m = ian.recv_cmd(&["341"]).await;
    assert!(
        m.params.iter().any(|p| p == "carol"),
        "341 names the invitee: {:?}",
        m.raw
    );
    carol
        .recv_until_all(
            "invited to iroom",
            |m| matches!(m, ServerMsg::Invited { room, by } if room == "iroom" && by == "ian"),
        )
        .await;
    carol.join("iroom", None).await;

    ian.send("KICK #iroom alice :enough").await;
    alice
        .recv_until_all("kicked by ian", |m| {
            matches!(m, ServerMsg::Kicked { room, nick, by, reason, .. }
                if room == "iroom" && nick == "alice" && by == "ian" && reason == "enough")
        })
        .await;
    // The op sees its own kick as a KICK too.
    ian.recv_until("KICK #iroom alice", |m| {
        m.is("KICK") && m.param(1) == "alice"
    })
    .await;
}

#[tokio::test]
async fn a_non_op_gets_482_for_kick_mode_and_a_locked_topic() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "ops").await;
    set_mode(
        &mut alice,
        "ops",
        ModeChange {
            topic_locked: Some(true),
            ..ModeChange::default()
        },
    )
    .await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#ops").await;
    alice.recv_joined("ops", "ian").await;
    for cmd in [
        "KICK #ops alice :no",
        "MODE #ops +m",
        "TOPIC #ops :mine now",
    ] {
        ian.send(cmd).await;
        let m = ian.recv_cmd(&["482"]).await;
        assert!(
            m.raw.to_lowercase().contains("#ops"),
            "482 names the channel: {:?}",
            m.raw
        );
    }
    alice
        .expect_none(QUIET, "a change made by a non-op", |m| {
            matches!(
                m,
                ServerMsg::Kicked { .. } | ServerMsg::Mode { .. } | ServerMsg::Topic { .. }
            )
        })
        .await;
}

#[tokio::test]
async fn parting_a_channel_not_joined_gets_442_and_an_unknown_nick_401() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let _alice = op_of(addr, "alice", "elsewhere").await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.send("PART #elsewhere").await;
    ian.recv_cmd(&["442"]).await;
    ian.privmsg("nobody-here", "hello?").await;
    let m = ian.recv_cmd(&["401"]).await;
    assert!(
        m.raw.contains("nobody-here"),
        "401 names the nick: {:?}",
        m.raw
    );
    ian.send("INVITE nobody-here #elsewhere").await;
    ian.recv_cmd(&["401", "442"]).await;
}

#[tokio::test]
async fn a_banned_user_gets_474_on_join() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "banroom").await;
    // From another address: a guest's ban bans its address, and alice's must stay free.
    let mut ian = Irc::connect_from(addr, lo(2)).await;
    ian.register("ian").await;
    ian.join("#banroom").await;
    alice.recv_joined("banroom", "ian").await;
    request(
        &mut alice,
        ClientMsg::Ban {
            room: "banroom".into(),
            nick: "ian".into(),
        },
    )
    .await;
    // A banned member who is present is kicked.
    ian.recv_until("KICK #banroom ian", |m| m.is("KICK") && m.param(1) == "ian")
        .await;
    ian.send("JOIN #banroom").await;
    ian.recv_cmd(&["474"]).await;
}

#[tokio::test]
async fn an_invite_only_room_gets_473_and_a_keyed_room_475_with_a_wrong_key() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "closed").await;
    set_mode(
        &mut alice,
        "closed",
        ModeChange {
            invite_only: Some(true),
            ..ModeChange::default()
        },
    )
    .await;
    alice.join("keyed", None).await;
    set_mode(
        &mut alice,
        "keyed",
        ModeChange {
            key: Some(Some("sesame".into())),
            ..ModeChange::default()
        },
    )
    .await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.send("JOIN #closed").await;
    ian.recv_cmd(&["473"]).await;
    ian.send("JOIN #keyed wrong").await;
    ian.recv_cmd(&["475"]).await;
    ian.send("JOIN #keyed").await;
    ian.recv_cmd(&["475"]).await;
    ian.send("JOIN #keyed sesame").await;
    ian.join_answer("#keyed").await;
    alice.recv_joined("keyed", "ian").await;
}

#[tokio::test]
async fn a_member_speaking_in_a_moderated_room_gets_404() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "hush").await;
    set_mode(
        &mut alice,
        "hush",
        ModeChange {
            moderated: Some(true),
            ..ModeChange::default()
        },
    )
    .await;
    let mut ian = Irc::login(addr, "ian").await;
    ian.join("#hush").await;
    alice.recv_joined("hush", "ian").await;
    ian.privmsg("#hush", "can anyone hear me").await;
    ian.recv_cmd(&["404"]).await;
    alice
        .expect_none(
            QUIET,
            "a message from a member of a moderated room",
            |m| matches!(m, ServerMsg::Message(cm) if cm.text == "can anyone hear me"),
        )
        .await;
    // Voice lets it speak.
    request(
        &mut alice,
        ClientMsg::Voice {
            room: "hush".into(),
            nick: "ian".into(),
        },
    )
    .await;
    let m = ian.recv_until("MODE #hush +v ian", |m| m.is("MODE")).await;
    assert_eq!((m.param(1), m.param(2)), ("+v", "ian"), "{:?}", m.raw);
    ian.privmsg("#hush", "now you hear me").await;
    alice.recv_message("hush", "now you hear me").await;
}

#[tokio::test]
async fn a_room_name_without_hash_gets_403_or_479() {
    let server = spawn_server(mem()).await;
    let mut ian = Irc::login(server.addr, "ian").await;
    // The server puts every client in #lobby after the welcome: that JOIN is not an
    // answer to the JOINs below.
    ian.recv_until("366 of the server's own JOIN #lobby", |m| m.is("366"))
        .await;
    for channel in ["lobby", "&lobby", "+room", "!room"] {
        ian.send(&format!("JOIN {channel}")).await;
        let m = ian
            .recv_until(&format!("403 or 479 for JOIN {channel}"), |m| {
                m.is_any(&["403", "479"]) || m.is("JOIN")
            })
            .await;
        assert!(m.is_any(&["403", "479"]), "JOIN {channel}: {:?}", m.raw);
    }
    ian.alive().await;
}

// =============================================================================================
// Limits and bad input (issue item 7)
// =============================================================================================

#[tokio::test]
async fn an_unknown_command_gets_421_and_the_connection_stays() {
    let server = spawn_server(mem()).await;
    let mut ian = Irc::login(server.addr, "ian").await;
    ian.send("FROBNICATE #room :now").await;
    let m = ian.recv_cmd(&["421"]).await;
    assert!(
        m.raw.to_uppercase().contains("FROBNICATE"),
        "421 names the command: {:?}",
        m.raw
    );
    ian.alive().await;
}

/// A framed op of `room` and an IRC member of it (with `caps`).
async fn room_with_irc(addr: SocketAddr, room: &str, caps: &[&str]) -> (Client, Irc) {
    let mut alice = op_of(addr, "alice", room).await;
    let mut ian = Irc::login_caps(addr, "ian", caps).await;
    ian.join(&format!("#{room}")).await;
    alice.recv_joined(room, "ian").await;
    (alice, ian)
}

#[tokio::test]
async fn a_privmsg_over_the_text_limit_gets_417_or_fail_and_is_never_cut() {
    let server = spawn_server(Config {
        max_text: 100,
        ..mem()
    })
    .await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "room", &[]).await;
    let long = "y".repeat(150);
    ian.privmsg("#room", &long).await;
    let m = ian.recv_cmd(&["417", "FAIL"]).await;
    assert!(m.is_any(&["417", "FAIL"]), "{:?}", m.raw);
    alice
        .expect_none(
            QUIET,
            "any part of the overlong message",
            |m| matches!(m, ServerMsg::Message(cm) if cm.from == "ian"),
        )
        .await;
    // At the limit it passes whole.
    let exact = "z".repeat(100);
    ian.privmsg("#room", &exact).await;
    alice.recv_message("room", &exact).await;
}

#[tokio::test]
async fn a_line_over_512_bytes_is_refused_with_417_or_a_notice_and_the_connection_stays() {
    let server = spawn_server(mem()).await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "room", &[]).await;
    // 600 bytes of text: under the text limit (4 KiB), over IRC's 512-byte line.
    let long = "w".repeat(600);
    ian.privmsg("#room", &long).await;
    let m = ian.recv_cmd(&["417", "NOTICE"]).await;
    assert!(m.is_any(&["417", "NOTICE"]), "{:?}", m.raw);
    alice
        .expect_none(
            QUIET,
            "any part of the overlong line",
            |m| matches!(m, ServerMsg::Message(cm) if cm.from == "ian"),
        )
        .await;
    ian.alive().await;
    ian.privmsg("#room", "short again").await;
    alice.recv_message("room", "short again").await;
}

#[tokio::test]
async fn tags_up_to_8191_bytes_do_not_count_against_the_512_byte_rule() {
    let server = spawn_server(mem()).await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "room", &["message-tags"]).await;
    let pad = "p".repeat(3000);
    ian.send(&format!(
        "@+example.com/pad={pad} PRIVMSG #room :tagged and fine"
    ))
    .await;
    alice.recv_message("room", "tagged and fine").await;
    ian.alive().await;
}

#[tokio::test]
async fn invalid_utf8_is_replaced_and_never_disconnects() {
    let server = spawn_server(mem()).await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "room", &[]).await;
    ian.send_bytes(b"PRIVMSG #room :caf\xff and more\r\n").await;
    alice.recv_message("room", "caf\u{FFFD} and more").await;
    ian.alive().await;
}

#[tokio::test]
async fn garbage_lines_cause_no_panic_and_the_connection_stays() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let garbage: &[&[u8]] = &[
        b"\r\n",
        b"   \r\n",
        b":\r\n",
        b":only-a-prefix\r\n",
        b"@\r\n",
        b"@a=b\r\n",
        b"@;;;= :x\r\n",
        b"\x00\x01\x02\x7f\r\n",
        b"PRIVMSG\r\n",
        b"PRIVMSG #room\r\n",
        b"PRIVMSG :\r\n",
        b"JOIN\r\n",
        b"JOIN ,,,\r\n",
        b"MODE\r\n",
        b"MODE #room +kkkkkkkk\r\n",
        b"NICK\r\n",
        b"CAP\r\n",
        b"CAP FOO\r\n",
        b"CAP REQ\r\n",
        b"AUTHENTICATE\r\n",
        b"AUTHENTICATE ====\r\n",
        b"KICK #room\r\n",
        b"TOPIC\r\n",
        b"PING\r\n",
        b"\r\r\r\n",
        b"\n\n\n",
    ];
    // Before registration, after the first line has chosen IRC.
    let mut ian = Irc::connect(addr).await;
    ian.send("CAP LS 302").await;
    for g in garbage {
        ian.send_bytes(g).await;
    }
    let many_params = format!("PRIVMSG {}:x", "a ".repeat(200));
    ian.send(&many_params).await;
    // Whatever the garbage was answered with (451 for commands before registration) comes
    // before the answer to this PING, and is not part of the welcome burst.
    ian.send("PING sync").await;
    ian.recv_until("PONG sync after the garbage", |m| m.is("PONG"))
        .await;
    ian.send("CAP END").await;
    ian.register("ian").await;
    ian.join("#room").await;
    for g in garbage {
        ian.send_bytes(g).await;
    }
    ian.send(&many_params).await;
    ian.alive().await;
    assert!(!server.handle.is_finished(), "the server is still running");
    // Everyone else is fine too.
    let mut bob = Client::login(addr, "bob").await;
    bob.roundtrip().await;
}

// =============================================================================================
// History for clients without chathistory (issue item 6)
// =============================================================================================

/// Reads until PRIVMSGs from `from` to `channel` ending with each of `texts` have arrived, in
/// that order, starting with the lines already read in `lines`; returns them.
async fn replayed(
    c: &mut Irc,
    mut lines: Vec<Msg>,
    from: &str,
    channel: &str,
    texts: &[&str],
) -> Vec<Msg> {
    let deadline = Instant::now() + WAIT;
    let mut found = Vec::new();
    let mut i = 0;
    loop {
        for m in lines.drain(..) {
            if found.len() < texts.len()
                && m.is_privmsg(from, channel)
                && m.last().ends_with(texts[found.len()])
            {
                found.push(m);
            }
        }
        if found.len() == texts.len() {
            return found;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Next::Item(m) => lines.push(m),
            Next::Eof | Next::Timeout => panic!(
                "[{}] replay: found {} of {texts:?} from {from} in {channel} (after {i} more lines)",
                c.nick,
                found.len()
            ),
        }
        i += 1;
    }
}

#[tokio::test]
async fn join_replays_history_as_privmsgs_with_a_time_prefix_for_a_plain_client() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "past").await;
    let texts = ["first said", "second said", "third said"];
    for t in texts {
        alice.say("past", t).await;
    }
    let mut ian = Irc::login(addr, "ian").await;
    let lines = ian.join("#past").await;
    let got = replayed(&mut ian, lines, "alice", "#past", &texts).await;
    for (m, t) in got.iter().zip(texts) {
        let prefix = m.last().strip_suffix(t).unwrap();
        assert!(
            prefix.chars().any(|c| c.is_ascii_digit()),
            "without server-time a replayed message has a time prefix: {:?}",
            m.raw
        );
    }
}

#[tokio::test]
async fn join_replays_history_with_time_tags_when_server_time_is_on() {
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "past").await;
    let texts = ["first said", "second said"];
    let mut sent = Vec::new();
    for t in texts {
        sent.push(alice.say("past", t).await);
    }
    let mut ian = Irc::connect(addr).await;
    ian.cap_ls().await;
    ian.send_nick_user("ian").await;
    let ack = ian.cap_req(&["server-time"]).await;
    assert!(ack.param(1).eq_ignore_ascii_case("ACK"), "{:?}", ack.raw);
    // `batch` too if offered (the replay may then be a batch): its own request, so that a NAK
    // does not take server-time with it.
    ian.cap_req(&["batch"]).await;
    ian.send("CAP END").await;
    ian.welcome().await;
    let lines = ian.join("#past").await;
    let got = replayed(&mut ian, lines, "alice", "#past", &texts).await;
    for (m, cm) in got.iter().zip(&sent) {
        assert_eq!(
            m.tag("time"),
            Some(server_time(cm.ts).as_str()),
            "{:?}",
            m.raw
        );
    }
}

// =============================================================================================
// draft/chathistory (issue item 5, phase 2)
// =============================================================================================

const HISTORY_CAPS: [&str; 4] = ["message-tags", "server-time", "batch", "draft/chathistory"];

/// Sends `CHATHISTORY …` and reads its `chathistory` batch; the texts of its PRIVMSGs, in
/// order. Every line of the batch must carry its `batch` tag and a msgid.
async fn chathistory(c: &mut Irc, command: &str) -> Vec<String> {
    c.send(command).await;
    let open = c
        .recv_until(&format!("BATCH + answering {command}"), |m| {
            if m.is("FAIL") {
                panic!("{command} failed: {:?}", m.raw);
            }
            m.is("BATCH") && m.param(0).starts_with('+') && m.param(1) == "chathistory"
        })
        .await;
    let reference = open.param(0)[1..].to_owned();
    let lines = c
        .recv_until_all(&format!("BATCH -{reference}"), |m| {
            m.is("BATCH") && m.param(0) == format!("-{reference}")
        })
        .await;
    let mut texts = Vec::new();
    for m in &lines[..lines.len() - 1] {
        assert_eq!(m.tag("batch"), Some(reference.as_str()), "{:?}", m.raw);
        assert!(m.is("PRIVMSG") && m.tag("msgid").is_some(), "{:?}", m.raw);
        texts.push(m.last().to_owned());
    }
    texts
}

/// A framed user says `m1` … `m6` in `#hist`; an IRC client with chathistory is in it too.
async fn six_messages(
    config: Config,
) -> (
    common::TestServer,
    Client,
    Irc,
    Vec<chat_shared::ChatMessage>,
) {
    let server = spawn_server(config).await;
    let mut alice = op_of(server.addr, "alice", "hist").await;
    let mut said = Vec::new();
    for i in 1..=6 {
        said.push(alice.say("hist", &format!("m{i}")).await);
    }
    let mut ian = Irc::login_caps(server.addr, "ian", &HISTORY_CAPS).await;
    ian.join("#hist").await;
    (server, alice, ian, said)
}

async fn pages_after_between_and_around(ian: &mut Irc, said: &[chat_shared::ChatMessage]) {
    let id = |i: usize| said[i - 1].id;
    let got = chathistory(ian, &format!("CHATHISTORY AFTER #hist msgid={} 2", id(2))).await;
    assert_eq!(got, ["m3", "m4"], "AFTER: the oldest after the reference");
    let got = chathistory(ian, &format!("CHATHISTORY AFTER #hist msgid={} 50", id(6))).await;
    assert!(got.is_empty(), "nothing after the newest: {got:?}");
    let between = format!(
        "CHATHISTORY BETWEEN #hist msgid={} msgid={} 50",
        id(1),
        id(5)
    );
    assert_eq!(chathistory(ian, &between).await, ["m2", "m3", "m4"]);
    let backwards = format!(
        "CHATHISTORY BETWEEN #hist msgid={} msgid={} 2",
        id(6),
        id(1)
    );
    assert_eq!(
        chathistory(ian, &backwards).await,
        ["m4", "m5"],
        "BETWEEN counts from its first reference, here backwards"
    );
    let around = format!("CHATHISTORY AROUND #hist msgid={} 3", id(3));
    assert_eq!(chathistory(ian, &around).await, ["m2", "m3", "m4"]);
    let around = format!("CHATHISTORY AROUND #hist msgid={} 4", id(6));
    assert_eq!(chathistory(ian, &around).await, ["m3", "m4", "m5", "m6"]);
    let before = format!("CHATHISTORY BEFORE #hist msgid={} 2", id(3));
    assert_eq!(chathistory(ian, &before).await, ["m1", "m2"]);
}

#[tokio::test]
async fn chathistory_after_between_and_around_page_by_msgid_from_memory() {
    let (_server, _alice, mut ian, said) = six_messages(mem()).await;
    pages_after_between_and_around(&mut ian, &said).await;
}

#[tokio::test]
async fn chathistory_after_between_and_around_page_by_msgid_from_the_store() {
    let (_dir, db) = temp_db();
    // A ring of two: every reference but the newest two is found in the store.
    let config = Config {
        history: 2,
        ..stored(&db)
    };
    let (_server, _alice, mut ian, said) = six_messages(config).await;
    pages_after_between_and_around(&mut ian, &said).await;
}

#[tokio::test]
async fn chathistory_targets_lists_rooms_with_messages_between_two_timestamps() {
    let (_server, mut alice, mut ian, said) = six_messages(mem()).await;
    alice.join("quiet", None).await;
    ian.join("#quiet").await;
    let (first, last) = (said[0].ts, said[5].ts);
    ian.send(&format!(
        "CHATHISTORY TARGETS timestamp={} timestamp={} 10",
        server_time(first - 60_000),
        server_time(last + 60_000)
    ))
    .await;
    let lines = ian
        .recv_until_all("the end of the targets batch", |m| {
            m.is("BATCH") && m.param(0).starts_with('-')
        })
        .await;
    let open = lines
        .iter()
        .find(|m| m.is("BATCH") && m.param(0).starts_with('+'))
        .unwrap_or_else(|| panic!("no BATCH +:{}", tail(&lines)));
    assert_eq!(open.param(1), "draft/chathistory-targets", "{:?}", open.raw);
    let targets: Vec<(&str, &str)> = lines
        .iter()
        .filter(|m| m.is("CHATHISTORY") && m.param(0) == "TARGETS")
        .map(|m| (m.param(1), m.param(2)))
        .collect();
    let newest = server_time(last);
    assert_eq!(
        targets,
        [("#hist", newest.as_str())],
        "the quiet room has no message"
    );
    // Bounds that end before the first message: no target.
    ian.send(&format!(
        "CHATHISTORY TARGETS timestamp={} timestamp={} 10",
        server_time(first - 120_000),
        server_time(first - 60_000)
    ))
    .await;
    let lines = ian
        .recv_until_all("the end of the second targets batch", |m| {
            m.is("BATCH") && m.param(0).starts_with('-')
        })
        .await;
    assert!(
        !lines.iter().any(|m| m.is("CHATHISTORY")),
        "{}",
        tail(&lines)
    );
}

#[tokio::test]
async fn chathistory_with_an_unknown_msgid_or_a_timestamp_reference_fails_and_the_connection_stays()
{
    let (_server, _alice, mut ian, _said) = six_messages(mem()).await;
    ian.send(&format!(
        "CHATHISTORY AFTER #hist msgid={} 5",
        Uuid::new_v4()
    ))
    .await;
    let fail = ian.recv_cmd(&["FAIL", "BATCH"]).await;
    assert!(
        fail.is("FAIL") && fail.param(0) == "CHATHISTORY" && fail.param(1) == "MESSAGE_ERROR",
        "{:?}",
        fail.raw
    );
    ian.send("CHATHISTORY AFTER #hist timestamp=2026-01-01T00:00:00.000Z 5")
        .await;
    let fail = ian.recv_cmd(&["FAIL", "BATCH"]).await;
    assert!(
        fail.is("FAIL") && fail.param(1) == "INVALID_PARAMS",
        "MSGREFTYPES=msgid: {:?}",
        fail.raw
    );
    for garbage in [
        "CHATHISTORY",
        "CHATHISTORY AROUND",
        "CHATHISTORY BETWEEN #hist msgid=x",
        "CHATHISTORY TARGETS timestamp=now timestamp=then 5",
        "CHATHISTORY LATEST #hist * -1",
    ] {
        ian.send(garbage).await;
        let fail = ian.recv_cmd(&["FAIL", "BATCH"]).await;
        assert!(fail.is("FAIL"), "{garbage}: {:?}", fail.raw);
    }
    ian.alive().await;
}

// =============================================================================================
// labeled-response (issue item 5, phase 2)
// =============================================================================================

/// The answer to a labeled command: the one line carrying `label` (a reply or an `ACK`), or
/// a `labeled-response` batch carrying it, returned whole (its `BATCH` lines included).
/// Lines before it that carry no label are skipped; a second line with the label fails.
async fn labeled(c: &mut Irc, label: &str) -> Vec<Msg> {
    let first = c
        .recv_until(&format!("a line with label={label}"), |m| {
            m.tag("label") == Some(label)
        })
        .await;
    if !(first.is("BATCH") && first.param(0).starts_with('+')) {
        c.expect_none(QUIET, "a second labeled line", |m| {
            m.tag("label") == Some(label)
        })
        .await;
        return vec![first];
    }
    assert_eq!(first.param(1), "labeled-response", "{:?}", first.raw);
    let reference = first.param(0)[1..].to_owned();
    let mut lines = vec![first];
    lines.extend(
        c.recv_until_all(&format!("BATCH -{reference}"), |m| {
            m.is("BATCH") && m.param(0) == format!("-{reference}")
        })
        .await,
    );
    for m in &lines[1..lines.len() - 1] {
        assert!(
            m.tag("label").is_none(),
            "the label is on the batch only: {:?}",
            m.raw
        );
        assert!(
            m.tag("batch").is_some(),
            "a line of the batch without its tag: {:?}",
            m.raw
        );
    }
    lines
}

const LABEL_CAPS: [&str; 3] = ["labeled-response", "batch", "message-tags"];

#[tokio::test]
async fn a_labeled_ping_gets_one_labeled_pong_and_a_labeled_names_a_labeled_batch() {
    let server = spawn_server(mem()).await;
    let mut ian = Irc::login_caps(server.addr, "ian", &LABEL_CAPS).await;
    ian.send("@label=p1 PING tok").await;
    let pong = labeled(&mut ian, "p1").await;
    assert!(
        pong.len() == 1 && pong[0].is("PONG") && pong[0].last() == "tok",
        "{pong:?}"
    );
    ian.send("@label=n1 NAMES #lobby").await;
    let names = labeled(&mut ian, "n1").await;
    let inner: Vec<&str> = names[1..names.len() - 1]
        .iter()
        .map(|m| m.command.as_str())
        .collect();
    assert_eq!(inner, ["353", "366"], "{names:?}");
    // A command without a label is answered as before.
    ian.send("PING plain").await;
    let pong = ian.recv_cmd(&["PONG"]).await;
    assert!(pong.tag("label").is_none(), "{:?}", pong.raw);
}

#[tokio::test]
async fn a_labeled_privmsg_is_acked_or_with_echo_message_answered_by_its_labeled_echo() {
    let server = spawn_server(mem()).await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "lab", &LABEL_CAPS).await;
    ian.send("@label=m1 PRIVMSG #lab :no echo").await;
    let ack = labeled(&mut ian, "m1").await;
    assert!(ack.len() == 1 && ack[0].is("ACK"), "{ack:?}");
    alice.recv_message("lab", "no echo").await;

    let mut caps = LABEL_CAPS.to_vec();
    caps.push("echo-message");
    let mut eve = Irc::login_caps(server.addr, "eve", &caps).await;
    eve.join("#lab").await;
    eve.send("@label=m2 PRIVMSG #lab :echoed").await;
    let echo = labeled(&mut eve, "m2").await;
    assert!(
        echo.len() == 1 && echo[0].is_privmsg("eve", "#lab") && echo[0].last() == "echoed",
        "{echo:?}"
    );
    let said = alice.recv_message("lab", "echoed").await;
    assert_eq!(echo[0].tag("msgid"), Some(said.id.to_string().as_str()));
    // A refusal is the answer: no ACK, no echo.
    eve.send("@label=m3 PRIVMSG #elsewhere :nobody").await;
    let refused = labeled(&mut eve, "m3").await;
    assert!(
        refused.len() == 1 && refused[0].is_any(&["404", "442", "403"]),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_labeled_join_and_chathistory_come_back_whole_in_one_labeled_batch() {
    let server = spawn_server(mem()).await;
    let mut alice = op_of(server.addr, "alice", "lab").await;
    let mut said = Vec::new();
    for i in 1..=3 {
        said.push(alice.say("lab", &format!("m{i}")).await);
    }
    let mut caps = LABEL_CAPS.to_vec();
    caps.extend(["server-time", "draft/chathistory"]);
    let mut ian = Irc::login_caps(server.addr, "ian", &caps).await;
    ian.send("@label=j1 JOIN #lab").await;
    let join = labeled(&mut ian, "j1").await;
    for cmd in ["JOIN", "353", "366"] {
        assert!(
            join.iter().any(|m| m.is(cmd)),
            "{cmd} not in the answer: {join:?}"
        );
    }
    ian.send(&format!(
        "@label=h1 CHATHISTORY AROUND #lab msgid={} 3",
        said[1].id
    ))
    .await;
    let page = labeled(&mut ian, "h1").await;
    let texts: Vec<&str> = page
        .iter()
        .filter(|m| m.is("PRIVMSG"))
        .map(Msg::last)
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3"], "{page:?}");
    assert!(
        page.iter()
            .any(|m| m.is("BATCH") && m.param(1) == "chathistory"),
        "the chathistory batch is inside the labeled one: {page:?}"
    );
}

// =============================================================================================
// WHOIS, ISON, USERHOST and away-notify (issue item 4, phase 2)
// =============================================================================================

#[tokio::test]
async fn whois_ison_and_userhost_answer_for_other_users_from_the_nick_directory() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    // alice holds a registered nick (so is logged in to it); bob is a line guest.
    let mut alice = Client::login(server.addr, "alice").await;
    alice
        .send(ClientMsg::Register {
            password: Password::new(SECRET),
        })
        .await;
    alice
        .recv_until_all("registered", |m| matches!(m, ServerMsg::Registered { .. }))
        .await;
    let _bob = Line::login_seen_by(server.addr, "bob", &mut alice).await;
    let mut ian = Irc::login(server.addr, "ian").await;

    ian.send("ISON Alice bob zed ian").await;
    let ison = ian.recv_cmd(&["303"]).await;
    assert_eq!(
        ison.last(),
        "alice bob ian",
        "online, as their holders spell them"
    );

    ian.send("USERHOST alice zed").await;
    let userhost = ian.recv_cmd(&["302"]).await;
    assert!(
        userhost.last().starts_with("alice=+alice@") && !userhost.last().contains("zed"),
        "{:?}",
        userhost.raw
    );

    ian.send("WHOIS alice").await;
    let lines = ian.recv_until_all("318 for alice", |m| m.is("318")).await;
    assert!(
        lines.iter().any(|m| m.is("311") && m.param(1) == "alice"),
        "{}",
        tail(&lines)
    );
    assert!(
        lines.iter().any(|m| m.is("330") && m.param(2) == "alice"),
        "the account of a registered nick: {}",
        tail(&lines)
    );
    ian.send("WHOIS bob").await;
    let lines = ian.recv_until_all("318 for bob", |m| m.is("318")).await;
    assert!(
        lines.iter().any(|m| m.is("311") && m.param(1) == "bob"),
        "{}",
        tail(&lines)
    );
    assert!(
        !lines.iter().any(|m| m.is("330")),
        "a guest has no account: {}",
        tail(&lines)
    );
    ian.send("WHOIS zed").await;
    let lines = ian.recv_until_all("318 for zed", |m| m.is("318")).await;
    assert!(
        lines.iter().any(|m| m.is("401") && m.param(1) == "zed"),
        "{}",
        tail(&lines)
    );
    ian.send("WHOIS").await;
    ian.recv_cmd(&["431"]).await;
    ian.send("ISON").await;
    ian.recv_cmd(&["461"]).await;
    ian.alive().await;
}

#[tokio::test]
async fn away_is_shown_to_room_mates_with_away_notify_and_in_whois_and_userhost() {
    let server = spawn_server(mem()).await;
    let (mut alice, mut ian) = room_with_irc(server.addr, "afk", &["away-notify"]).await;
    let mut zoe = Irc::login(server.addr, "zoe").await;
    zoe.join("#afk").await;
    let mut eve = Irc::login(server.addr, "eve").await;
    eve.join("#afk").await;
    ian.recv_until("eve's JOIN", |m| m.is("JOIN") && m.nick() == Some("eve"))
        .await;

    eve.send("AWAY :at lunch").await;
    eve.recv_cmd(&["306"]).await;
    let away = ian
        .recv_until("eve's AWAY", |m| m.is("AWAY") && m.nick() == Some("eve"))
        .await;
    assert_eq!(away.last(), "at lunch", "{:?}", away.raw);
    let framed = alice
        .recv_until("away from eve", |m| match m {
            ServerMsg::Away { nick, text } if nick == "eve" => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(framed.as_deref(), Some("at lunch"));
    ian.send("USERHOST eve").await;
    let userhost = ian.recv_cmd(&["302"]).await;
    assert!(
        userhost.last().starts_with("eve=-eve@"),
        "away is -: {:?}",
        userhost.raw
    );
    ian.send("WHOIS eve").await;
    let lines = ian.recv_until_all("318 for eve", |m| m.is("318")).await;
    assert!(
        lines.iter().any(|m| m.is("301") && m.last() == "at lunch"),
        "{}",
        tail(&lines)
    );

    eve.send("AWAY").await;
    eve.recv_cmd(&["305"]).await;
    let back = ian
        .recv_until("eve's AWAY without text", |m| {
            m.is("AWAY") && m.nick() == Some("eve")
        })
        .await;
    assert!(back.params.is_empty(), "back is AWAY alone: {:?}", back.raw);
    zoe.expect_none(QUIET, "AWAY without away-notify", |m| m.is("AWAY"))
        .await;
}

#[tokio::test]
async fn extended_join_names_the_joiners_account_or_a_star_and_plain_join_stays_plain() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    register_account(server.addr, "alice").await;
    let mut ian = Irc::login_caps(server.addr, "ian", &["extended-join"]).await;
    let own = ian.join("#ext").await;
    let own = own
        .iter()
        .find(|m| m.is("JOIN") && m.param(0) == "#ext")
        .expect("own JOIN");
    assert_eq!(own.params, ["#ext", "*", "ian"], "a guest: {:?}", own.raw);
    let mut zoe = Irc::login(server.addr, "zoe").await;
    zoe.join("#ext").await;
    // alice logs in with SASL.
    let mut alice = Irc::connect(server.addr).await;
    sasl_plain(&mut alice, "alice", SECRET).await;
    alice.send("CAP END").await;
    alice.welcome().await;
    alice.join("#ext").await;
    let seen = ian
        .recv_until("alice's JOIN", |m| {
            m.is("JOIN") && m.nick() == Some("alice") && m.param(0) == "#ext"
        })
        .await;
    assert_eq!(seen.params, ["#ext", "alice", "alice"], "{:?}", seen.raw);
    let plain = zoe
        .recv_until("alice's JOIN", |m| {
            m.is("JOIN") && m.nick() == Some("alice") && m.param(0) == "#ext"
        })
        .await;
    assert_eq!(plain.params, ["#ext"], "{:?}", plain.raw);
}

#[tokio::test]
async fn a_disconnect_is_one_quit_for_irc_room_mates_and_a_part_stays_a_part() {
    let server = spawn_server(mem()).await;
    let mut ian = Irc::login(server.addr, "ian").await;
    ian.join("#q1").await;
    ian.join("#q2").await;
    let mut bob = Client::login(server.addr, "bob").await;
    bob.join("q1", None).await;
    bob.join("q2", None).await;
    let mut watcher = Client::login(server.addr, "watcher").await;
    watcher.join("q2", None).await;
    ian.recv_until("bob's JOIN #q2", |m| {
        m.is("JOIN") && m.nick() == Some("bob") && m.param(0) == "#q2"
    })
    .await;
    bob.send(ClientMsg::Part {
        room: "q1".into(),
        reason: Some("later".into()),
    })
    .await;
    let part = ian
        .recv_until("bob's PART", |m| {
            m.is_any(&["PART", "QUIT"]) && m.nick() == Some("bob")
        })
        .await;
    assert!(part.is("PART") && part.param(0) == "#q1", "{:?}", part.raw);

    bob.send(ClientMsg::Quit {
        reason: Some("gone fishing".into()),
    })
    .await;
    let quit = ian
        .recv_until("bob's QUIT", |m| {
            m.is_any(&["PART", "QUIT"]) && m.nick() == Some("bob")
        })
        .await;
    assert!(
        quit.is("QUIT") && quit.last() == "gone fishing",
        "{:?}",
        quit.raw
    );
    // bob was in #lobby and #q2 with ian: one QUIT, no PART.
    ian.expect_none(QUIET, "a second QUIT or a PART from bob", |m| {
        m.is_any(&["PART", "QUIT"]) && m.nick() == Some("bob")
    })
    .await;
    // Framed room-mates still get a parted per room, marked as a quit.
    let quit = watcher
        .recv_until("bob's parted", |m| match m {
            ServerMsg::Parted { nick, quit, .. } if nick == "bob" => Some(*quit),
            _ => None,
        })
        .await;
    assert!(quit, "parted on a disconnect says quit");
}

#[tokio::test]
async fn framed_clients_may_ask_whois_and_set_away_too() {
    let server = spawn_server(mem()).await;
    let mut alice = Client::login(server.addr, "alice").await;
    let _ian = Irc::login(server.addr, "ian").await;
    request(
        &mut alice,
        ClientMsg::Whois {
            nicks: vec!["IAN".into(), "nobody".into()],
        },
    )
    .await;
    let users = alice
        .recv_until("users", |m| match m {
            ServerMsg::Users { users } => Some(users.clone()),
            _ => None,
        })
        .await;
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].nick.as_str(), users[0].account), ("ian", false));
    request(
        &mut alice,
        ClientMsg::Away {
            text: Some("brb".into()),
        },
    )
    .await;
    alice
        .recv_until("its own away", |m| match m {
            ServerMsg::Away { nick, text } if nick == "alice" && text.as_deref() == Some("brb") => {
                Some(())
            }
            _ => None,
        })
        .await;
}

// =============================================================================================
// Over TLS (issue item 1)
// =============================================================================================

mod tls {
    use super::*;
    pub use crate::common::{Cert, make_cert};
    use chat_server::TlsSource;
    use rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    pub fn tls_cfg(cert: &Cert) -> Config {
        Config {
            tls: Some(TlsSource::Files {
                cert: cert.cert.clone(),
                key: cert.key.clone(),
            }),
            ..mem()
        }
    }

    pub type TlsIrc = Irc<ReadHalf<TlsStream<TcpStream>>, WriteHalf<TlsStream<TcpStream>>>;

    pub async fn connect(addr: SocketAddr, cert: &Cert) -> TlsIrc {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der.clone()).expect("a valid root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let name = ServerName::try_from("localhost").expect("name");
        let stream = timeout(
            WAIT,
            TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
        let (r, w) = tokio::io::split(stream);
        Irc::from_halves(r, w)
    }
}

#[tokio::test]
async fn registration_and_chat_work_over_tls() {
    let cert = tls::make_cert();
    let server = spawn_server(tls::tls_cfg(&cert)).await;
    let addr = server.addr;
    let mut alice = op_of(addr, "alice", "room").await;
    let mut ian = tls::connect(addr, &cert).await;
    let burst = ian.register_caps("ian", &["server-time"]).await;
    let tokens = isupport(&burst);
    assert_eq!(token(&tokens, "CHANTYPES"), Some("#"), "{tokens:?}");
    ian.join("#room").await;
    alice.recv_joined("room", "ian").await;
    ian.privmsg("#room", "over tls").await;
    alice.recv_message("room", "over tls").await;
    alice.say("room", "back over tls").await;
    ian.recv_privmsg("alice", "#room", "back over tls").await;
    ian.alive().await;
}

// =============================================================================================
// Real clients (issue item 9): weechat-headless and irssi in tmux
// =============================================================================================

/// The bound on each real-client test as a whole.
const REAL_CLIENT_BOUND: Duration = Duration::from_secs(20);

/// Whether `bin` runs (its version flag succeeds: `-V` for tmux, `--version` otherwise).
fn runs(bin: &str) -> bool {
    let flag = if bin == "tmux" { "-V" } else { "--version" };
    Command::new(bin)
        .arg(flag)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether framed client `c` gets a message matching `pred` within `within` (no panic on
/// a timeout, so the caller can say what the real client was doing).
async fn saw(c: &mut Client, within: Duration, pred: impl Fn(&ServerMsg) -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Next::Item(m) if pred(&m) => return true,
            Next::Item(_) => {}
            Next::Eof | Next::Timeout => return false,
        }
    }
}

/// `joined{room, nick}`.
fn joined(room: &'static str, nick: &'static str) -> impl Fn(&ServerMsg) -> bool {
    move |m| matches!(m, ServerMsg::Joined { room: r, nick: n, .. } if r == room && n == nick)
}

/// Whether to skip `test`: one of `bins` is missing and `CI` is not set (with `CI`, it
/// panics).
fn skip_without(bins: &[&str], test: &str) -> bool {
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !runs(b)).collect();
    if missing.is_empty() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} required for {test} in CI (CI is set) but not found"
    );
    eprintln!("skipping {test}: {missing:?} not installed (set CI to make this fail)");
    true
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `within`.
async fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = check() {
            return Some(t);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Every regular file's text under `dir`, recursively (lossy UTF-8), with its path.
fn files_text(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        // `file_type` does not follow links; only regular files are read (reading the FIFO
        // would block).
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            out.extend(files_text(&p));
        } else if !kind.is_file() {
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// weechat-headless in a temporary `--dir`, killed by PID on drop (also when the test fails).
struct Weechat {
    child: Child,
    dir: tempfile::TempDir,
}

impl Weechat {
    /// Starts weechat-headless: a logger writing every line at once under `DIR/logs`, a FIFO
    /// at `DIR/fifo`, and server `test` at `addr` (plain) with nick `nick` and autojoin
    /// `#lobby`, connected at once (all through `-r`).
    fn start(addr: SocketAddr, nick: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        // weechat 4 renamed the server's `ssl` option to `tls`.
        let version = Command::new("weechat-headless")
            .arg("--version")
            .output()
            .expect("weechat-headless --version");
        let major: u32 = String::from_utf8_lossy(&version.stdout)
            .trim()
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(4);
        let no_tls = if major >= 4 { "-notls" } else { "-nossl" };
        let commands = [
            format!("/set logger.file.path {d}/logs"),
            "/set logger.file.auto_log on".to_owned(),
            "/set logger.file.flush_delay 0".to_owned(),
            "/set logger.level.irc 9".to_owned(),
            format!("/set fifo.file.path {d}/fifo"),
            "/set fifo.file.enabled on".to_owned(),
            format!("/server add test {}/{} {no_tls}", addr.ip(), addr.port()),
            format!("/set irc.server.test.nicks {nick}"),
            "/set irc.server.test.autojoin #lobby".to_owned(),
            "/connect test".to_owned(),
        ]
        .join(";");
        let stdout = std::fs::File::create(dir.path().join("stdout.txt")).expect("stdout file");
        let child = Command::new("weechat-headless")
            .args(["--dir", &d, "--stdout", "--no-script", "-r", &commands])
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("clone"))
            .stderr(stdout)
            .spawn()
            .expect("start weechat-headless");
        Self { child, dir }
    }

    /// Runs a weechat command in the server buffer through the FIFO.
    fn command(&self, command: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = self.dir.path().join("fifo");
        // Non-blocking: opening a FIFO for writing blocks until a reader has it open, and
        // a weechat that died has not; this way that is an error (ENXIO) instead of a hang.
        const O_NONBLOCK: i32 = 0o4000; // Linux
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
            .unwrap_or_else(|e| panic!("open weechat's FIFO {}: {e}", fifo.display()));
        writeln!(f, "irc.server.test *{command}").expect("write to the FIFO");
    }

    /// Whether #lobby's log file (under `DIR/logs`, named after the buffer) contains `text`.
    fn logged(&self, text: &str) -> bool {
        files_text(&self.dir.path().join("logs"))
            .iter()
            .any(|(p, t)| p.to_string_lossy().contains("lobby") && t.contains(text))
    }

    /// weechat's own output and logs, for a failure message.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (p, t) in files_text(self.dir.path()) {
            if p.extension().is_some_and(|e| e == "conf") {
                continue;
            }
            let start = t.len().saturating_sub(3000);
            let start = (start..t.len())
                .find(|i| t.is_char_boundary(*i))
                .unwrap_or(0);
            s.push_str(&format!("\n--- {}:\n{}", p.display(), &t[start..]));
        }
        s
    }
}

impl Drop for Weechat {
    fn drop(&mut self) {
        // Ignored: it may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weechat_headless_joins_lobby_sees_the_replay_and_chats_with_a_framed_user() {
    let test = "weechat_headless_joins_lobby_sees_the_replay_and_chats_with_a_framed_user";
    if skip_without(&["weechat-headless"], test) {
        return;
    }
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let body = async {
        let mut alice = Client::login(addr, "alice").await;
        alice.say("lobby", "said before weechat came").await;
        let weechat = Weechat::start(addr, "weebot");
        let joined = saw(
            &mut alice,
            Duration::from_secs(10),
            joined("lobby", "weebot"),
        )
        .await;
        assert!(
            joined,
            "weechat never joined #lobby:{}",
            weechat.diagnostics()
        );
        let fifo = weechat.dir.path().join("fifo");
        assert!(
            poll(Duration::from_secs(3), || fifo.exists().then_some(()))
                .await
                .is_some(),
            "weechat made no FIFO:{}",
            weechat.diagnostics()
        );
        // Alice sees the join as soon as the session registers, but weechat is told of
        // its welcome only after its capability negotiation ends: until weechat has shown
        // the join itself, it is not connected and refuses `/msg` ("must be executed on
        // connected irc server").
        assert!(
            poll(Duration::from_secs(10), || weechat
                .logged("has joined #lobby")
                .then_some(()))
            .await
            .is_some(),
            "weechat never showed its join:{}",
            weechat.diagnostics()
        );
        weechat.command("/msg #lobby hello from weechat");
        let got = saw(&mut alice, Duration::from_secs(10), |m| {
            matches!(m, ServerMsg::Message(cm)
                if cm.room == "lobby" && cm.text == "hello from weechat" && cm.from == "weebot")
        })
        .await;
        assert!(
            got,
            "weechat's message never reached alice:{}",
            weechat.diagnostics()
        );

        alice.say("lobby", "hello weechat from alice").await;
        let seen = poll(Duration::from_secs(5), || {
            (weechat.logged("hello weechat from alice")
                && weechat.logged("said before weechat came"))
            .then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "weechat's logs lack alice's message or the replay:{}",
            weechat.diagnostics()
        );
        weechat.command("/quit");
    };
    timeout(REAL_CLIENT_BOUND, body)
        .await
        .unwrap_or_else(|_| panic!("{test} took over {REAL_CLIENT_BOUND:?}"));
}

/// A tmux server on its own socket, killed on drop (also when the test fails).
struct Tmux {
    socket: String,
    /// The socket file, removed on drop: tmux leaves it behind when its server exits.
    socket_path: Option<String>,
}

impl Tmux {
    /// A tmux server on socket `chat-irc-tests-NAME-PID` running `command` in a pane.
    fn start(name: &str, command: &str) -> Self {
        let mut tmux = Self {
            socket: format!("chat-irc-tests-{name}-{}", std::process::id()),
            socket_path: None,
        };
        let started = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "irc",
            "-x",
            "160",
            "-y",
            "50",
            command,
        ]);
        assert!(
            started.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let out = tmux.cmd(&["display-message", "-p", "-t", "irc", "#{socket_path}"]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        tmux.socket_path = Some(path).filter(|p| !p.is_empty());
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-u", "-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .expect("running tmux")
    }

    fn capture(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "irc"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "irc", "-l", text])
                .status
                .success()
        );
        assert!(
            self.cmd(&["send-keys", "-t", "irc", "Enter"])
                .status
                .success()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ignored: the server may already be gone.
        let _ = self.cmd(&["kill-server"]);
        if let Some(path) = self.socket_path.take() {
            // Ignored: tmux may have removed its socket itself.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irssi_in_tmux_joins_lobby_sees_the_replay_and_chats_with_a_framed_user() {
    let test = "irssi_in_tmux_joins_lobby_sees_the_replay_and_chats_with_a_framed_user";
    if skip_without(&["irssi", "tmux"], test) {
        return;
    }
    let server = spawn_server(mem()).await;
    let addr = server.addr;
    let home = tempfile::tempdir().expect("temp dir");
    let body = async {
        let mut alice = Client::login(addr, "alice").await;
        alice.say("lobby", "said before irssi came").await;
        let command = format!(
            "irssi --home={} -c {} -p {} -n irsnick",
            home.path().display(),
            addr.ip(),
            addr.port()
        );
        let tmux = Tmux::start("irssi", &command);
        // irssi answers `/join` only once registered: type it until alice sees the join.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tmux.type_line("/join #lobby");
            if saw(
                &mut alice,
                Duration::from_secs(2),
                joined("lobby", "irsnick"),
            )
            .await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "irssi never joined #lobby; its screen:\n{}",
                tmux.capture()
            );
        }
        // The join alice saw may be the server's own (it puts every client in #lobby),
        // which irssi opens a window for without showing it: show it.
        tmux.type_line("/window goto #lobby");
        let replay = poll(Duration::from_secs(5), || {
            tmux.capture()
                .contains("said before irssi came")
                .then_some(())
        })
        .await;
        assert!(
            replay.is_some(),
            "no replay on irssi's screen:\n{}",
            tmux.capture()
        );

        tmux.type_line("hello from irssi");
        let got = alice.recv_message("lobby", "hello from irssi").await;
        assert_eq!(got.from, "irsnick");

        alice.say("lobby", "hello irssi from alice").await;
        let shown = poll(Duration::from_secs(5), || {
            tmux.capture()
                .lines()
                .any(|l| l.contains("alice") && l.contains("hello irssi from alice"))
                .then_some(())
        })
        .await;
        assert!(
            shown.is_some(),
            "alice's message not on irssi's screen:\n{}",
            tmux.capture()
        );
        tmux.type_line("/quit");
    };
    timeout(REAL_CLIENT_BOUND, body)
        .await
        .unwrap_or_else(|_| panic!("{test} took over {REAL_CLIENT_BOUND:?}"));
}

// =============================================================================================
// account-tag, account-notify and chghost (issue item 5, phase 3)
// =============================================================================================

/// Logs `nick` in to its account (registered with [`SECRET`]) with SASL, requests `caps`
/// as well and waits for the welcome burst.
async fn irc_account(addr: SocketAddr, nick: &str, caps: &[&str]) -> Irc {
    let mut c = Irc::connect(addr).await;
    let lines = sasl_plain(&mut c, nick, SECRET).await;
    assert!(lines.last().unwrap().is("903"), "{}", tail(&lines));
    if !caps.is_empty() {
        let ack = c.cap_req(caps).await;
        assert!(ack.param(1).eq_ignore_ascii_case("ACK"), "{:?}", ack.raw);
    }
    c.send("CAP END").await;
    c.welcome().await;
    c
}

#[tokio::test]
async fn cap_ls_offers_account_tag_account_notify_and_chghost() {
    let server = spawn_server(mem()).await;
    let mut c = Irc::connect(server.addr).await;
    let caps = c.cap_ls().await;
    for cap in ["account-tag", "account-notify", "chghost"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} not in {caps:?}");
    }
}

#[tokio::test]
async fn account_tag_names_a_logged_in_senders_account_live_in_dms_in_replay_and_chathistory() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    register_account(server.addr, "alice").await;
    let mut alice = irc_account(server.addr, "alice", &[]).await;
    alice.join("#acct").await;
    let mut ian = Irc::login_caps(server.addr, "ian", &["account-tag"]).await;
    ian.join("#acct").await;
    let mut zoe = Irc::login(server.addr, "zoe").await;
    zoe.join("#acct").await;
    let mut bob = Client::login(server.addr, "bob").await;
    bob.join("acct", None).await;

    alice.privmsg("#acct", "from an account").await;
    // The framed wire says it too.
    let framed = bob.recv_message("acct", "from an account").await;
    assert!(framed.account, "{framed:?}");
    bob.say("acct", "from a guest").await;
    let said = ian.recv_privmsg("alice", "#acct", "from an account").await;
    assert_eq!(said.tag("account"), Some("alice"), "{:?}", said.raw);
    let guest = ian.recv_privmsg("bob", "#acct", "from a guest").await;
    assert_eq!(guest.tag("account"), None, "{:?}", guest.raw);
    let plain = zoe.recv_privmsg("alice", "#acct", "from an account").await;
    assert!(plain.tags.is_empty(), "no cap, no tag: {:?}", plain.raw);
    alice.privmsg("ian", "psst").await;
    let dm = ian.recv_privmsg("alice", "ian", "psst").await;
    assert_eq!(dm.tag("account"), Some("alice"), "{:?}", dm.raw);

    // After a restart the history comes from the database, which kept who was logged in.
    drop((alice, ian, zoe, bob));
    server.shutdown().await;
    let server = spawn_server(stored(&db)).await;
    let mut kim = Irc::login_caps(server.addr, "kim", &["account-tag", "server-time"]).await;
    let lines = kim.join("#acct").await;
    let lines = [
        lines,
        kim.recv_until_all("the replay", |m| m.is_privmsg("bob", "#acct"))
            .await,
    ]
    .concat();
    let replayed = |from: &str| {
        lines
            .iter()
            .find(|m| m.is_privmsg(from, "#acct"))
            .unwrap_or_else(|| panic!("{from}'s message not replayed:{}", tail(&lines)))
    };
    assert_eq!(replayed("alice").tag("account"), Some("alice"));
    assert_eq!(replayed("bob").tag("account"), None);

    let mut eve = Irc::login_caps(
        server.addr,
        "eve",
        &["account-tag", "batch", "draft/chathistory", "message-tags"],
    )
    .await;
    eve.join("#acct").await;
    eve.send("CHATHISTORY LATEST #acct * 10").await;
    let page = eve
        .recv_until_all("the chathistory batch's end", |m| {
            m.is("BATCH") && m.param(0).starts_with('-')
        })
        .await;
    let paged = page
        .iter()
        .find(|m| m.is_privmsg("alice", "#acct"))
        .unwrap_or_else(|| panic!("no page:{}", tail(&page)));
    assert_eq!(paged.tag("account"), Some("alice"), "{:?}", paged.raw);
    assert!(paged.tag("msgid").is_some() && paged.tag("batch").is_some());
}

#[tokio::test]
async fn account_notify_tells_room_mates_once_of_a_register_and_of_a_rename_off_the_account() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    let mut ian = Irc::login_caps(server.addr, "ian", &["account-notify"]).await;
    let mut zoe = Irc::login(server.addr, "zoe").await;
    let mut watcher = Client::login(server.addr, "watcher").await;
    let mut bob = Irc::login(server.addr, "bob").await;
    // ian and bob share two rooms: still one ACCOUNT each time.
    for room in ["#an1", "#an2"] {
        ian.join(room).await;
        bob.join(room).await;
    }
    zoe.join("#an1").await;
    watcher.join("an1", None).await;
    ian.recv_until("bob's JOIN #an2", |m| {
        m.is("JOIN") && m.nick() == Some("bob") && m.param(0) == "#an2"
    })
    .await;

    bob.privmsg("NickServ", "REGISTER hunter2hunter2").await;
    let own = bob.recv_cmd(&["900"]).await;
    assert!(own.params.iter().any(|p| p == "bob"), "{:?}", own.raw);
    let account = ian.recv_cmd(&["ACCOUNT"]).await;
    assert_eq!(
        (account.nick(), account.params.as_slice()),
        (Some("bob"), &["bob".to_owned()][..]),
        "{:?}",
        account.raw
    );
    let framed = watcher
        .recv_until("account_changed", |m| match m {
            ServerMsg::AccountChanged { nick, account } if nick == "bob" => Some(*account),
            _ => None,
        })
        .await;
    assert!(framed);
    ian.expect_none(QUIET, "a second ACCOUNT for one login", |m| m.is("ACCOUNT"))
        .await;
    bob.expect_none(QUIET, "a second 900", |m| m.is("900"))
        .await;

    bob.send("NICK bobby").await;
    let lines = ian
        .recv_until_all("ACCOUNT * after the rename", |m| m.is("ACCOUNT"))
        .await;
    assert!(
        lines.iter().any(|m| m.is("NICK") && m.last() == "bobby"),
        "NICK first:{}",
        tail(&lines)
    );
    let gone = lines.last().unwrap();
    assert_eq!(gone.nick(), Some("bobby"));
    assert_eq!(gone.params, ["*"], "{:?}", gone.raw);
    bob.recv_cmd(&["901"]).await;
    ian.expect_none(QUIET, "a second ACCOUNT for one logout", |m| {
        m.is("ACCOUNT")
    })
    .await;
    zoe.expect_none(QUIET, "ACCOUNT without account-notify", |m| m.is("ACCOUNT"))
        .await;
    // The room knows too: bobby's messages carry no account any more.
    bob.privmsg("#an1", "a guest again").await;
    let said = watcher.recv_message("an1", "a guest again").await;
    assert!(!said.account, "{said:?}");
}

/// A client without SASL registers as a guest (its own nick is registered, so it got 433
/// and took another), then `IDENTIFY ACCOUNT PASSWORD` logs it in: it becomes the account's
/// nick, room-mates see the `NICK` (and with account-notify the `ACCOUNT`), and the
/// connection that held the nick is replaced.
#[tokio::test]
async fn identify_after_registering_logs_in_and_takes_the_accounts_nick() {
    let (_dir, db) = temp_db();
    let server = spawn_server(stored(&db)).await;
    let mut first = Irc::login(server.addr, "rita").await;
    first.privmsg("NickServ", "REGISTER s3cret-pass").await;
    first.recv_cmd(&["900"]).await;
    let mut ian = Irc::login_caps(server.addr, "ian", &["account-notify"]).await;
    let mut rita = Irc::login(server.addr, "rita_").await;
    for c in [&mut ian, &mut rita] {
        c.join("#idf").await;
    }
    ian.recv_until("rita_'s JOIN", |m| {
        m.is("JOIN") && m.nick() == Some("rita_")
    })
    .await;

    rita.privmsg("NickServ", "IDENTIFY rita wrong-pass").await;
    rita.recv_cmd(&["464"]).await;
    // A failed login is throttled like any (250 ms by default).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    rita.privmsg("NickServ", "IDENTIFY rita s3cret-pass").await;
    let renamed = rita.recv_cmd(&["NICK"]).await;
    assert_eq!((renamed.nick(), renamed.last()), (Some("rita_"), "rita"));
    let logged = rita.recv_cmd(&["900"]).await;
    assert!(
        logged.params.iter().any(|p| p == "rita"),
        "{:?}",
        logged.raw
    );
    let seen = ian
        .recv_until_all("rita's ACCOUNT", |m| m.is("ACCOUNT"))
        .await;
    assert!(
        seen.iter().any(|m| m.is("NICK") && m.last() == "rita"),
        "NICK first:{}",
        tail(&seen)
    );
    assert_eq!(seen.last().unwrap().params, ["rita"]);
    first
        .recv_until("ERROR for the replaced connection", |m| m.is("ERROR"))
        .await;
    // Messages now carry the account.
    rita.privmsg("#idf", "it is me").await;
    let said = ian
        .recv_until("rita's message", |m| {
            m.is("PRIVMSG") && m.last() == "it is me"
        })
        .await;
    assert_eq!(said.nick(), Some("rita"));
}
