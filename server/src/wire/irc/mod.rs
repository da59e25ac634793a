//! IRC mode: a translation between IRC lines and the protocol, so irssi, weechat, hexchat
//! and bots chat with framed and line users through the same session logic. The session
//! never learns IRC; like line mode, this adapter turns commands into requests (or answers
//! them itself) and events into IRC lines.
//!
//! Layout:
//! - this file: the adapter's state (registration, capabilities, rooms) and the [`Wire`]
//!   implementation;
//! - [`codec`]: bytes to parsed lines, within IRC's 512 / 8191-byte limits;
//! - [`caps`]: the IRCv3 capabilities offered and a connection's negotiated set;
//! - [`commands`]: IRC commands to requests, or local answers;
//! - [`render`]: events to IRC lines, the shared (cached per variant) and the personal;
//! - [`numerics`]: the protocol's error codes as IRC numerics.
//!
//! Capabilities are negotiated per connection and consulted per event. `echo-message` in
//! particular is decided here at run time: the session always sends a client its own
//! messages (its [`Caps::echoes_own`] is on, so their acknowledgement waits for the disk as
//! for framed clients) and this adapter drops them for clients that did not ask for it.

pub(crate) mod caps;
pub(crate) mod codec;
mod commands;
mod numerics;
mod render;

use std::sync::Arc;

use chat_shared::{Request, ServerMsg};
use tokio::io::{AsyncRead, AsyncWrite};

use self::caps::CapSet;
use self::codec::{IrcCodec, IrcItem};
use super::outbox::Outbox;
use super::reader::Reader;
use super::{Caps, Inbound, Wire};
use crate::Config;
use crate::event::Event;
use crate::path::stream::same_nick;

/// Output held back while capabilities are negotiated is released past this size even
/// without `CAP END`: a client that never ends negotiation cannot make it grow for ever.
const MAX_HELD: usize = 64 * 1024;

pub(crate) struct IrcWire<R, W> {
    reader: Reader<R, IrcCodec>,
    writer: W,
    out: Outbox,
    /// The server name, the limits and `--irc-*` settings; shared by every connection.
    config: Arc<Config>,
    caps: CapSet,
    /// Logged in to the account of its nick (`welcome` said so, or `registered`).
    account: bool,
    /// Set by `welcome` and this client's renames.
    nick: Option<Box<str>>,
    /// Joined rooms with what this connection last saw of them, for `TOPIC #room` and
    /// `MODE #room`, which IRC answers without a round trip. Boxed slice: see line mode.
    rooms: Box<[Room]>,
    /// Registration, until `welcome` and the end of capability negotiation (boxed: it
    /// lives only that long).
    reg: Option<Box<Registration>>,
    /// What few connections hold for long: an away message, requests queued behind the
    /// first of a comma list, a join's history waiting for its names list.
    extra: Option<Box<Extra>>,
    /// The request last handed to the session, so an `error` answering it can name its
    /// channel or nick as the numerics want. Errors are answered while the request is
    /// handled, before the next flush, which forgets it.
    last: Option<Box<Last>>,
}

/// What the request last handed to the session was about.
#[derive(Debug)]
struct Last {
    cmd: Cmd,
    /// The channel (`#room`) or nick it named; may be empty.
    target: String,
}

/// The IRC command behind a request, for the numeric of its refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Hello,
    Join,
    Part,
    Say,
    Dm,
    Nick,
    Topic,
    Kick,
    Mode,
    Ban,
    Bans,
    Invite,
    Who,
    Names,
    List,
    Account,
    Other,
}

/// Registration state.
#[derive(Debug, Default)]
struct Registration {
    /// From `NICK`.
    nick: Option<String>,
    /// `USER` was sent.
    user: bool,
    /// `PASS` matched `--irc-password` (or none is set).
    pass_ok: bool,
    /// `CAP LS` or `CAP REQ` came, `CAP END` not yet: registration waits.
    negotiating: bool,
    sasl: Sasl,
    /// A `hello` is out, waiting for `welcome` or an error.
    hello_sent: bool,
    /// `welcome` came; output waits in `held` until `CAP END`.
    welcomed: bool,
    held: Vec<u8>,
}

/// Where SASL stands.
#[derive(Debug, Default, PartialEq, Eq)]
enum Sasl {
    #[default]
    Idle,
    /// `AUTHENTICATE PLAIN` came and was answered `+`; the payload comes next, in chunks
    /// of 400 (collected here) until a shorter one.
    Plain(String),
    /// The credentials are in a `hello`.
    InFlight,
    /// Logged in.
    Done,
}

/// See [`IrcWire::extra`].
#[derive(Debug, Default)]
struct Extra {
    away: Option<Box<str>>,
    /// Requests after the first of one command (`JOIN #a,#b`), last first.
    queue: Vec<(Cmd, String, Request)>,
    /// Rooms whose next member list answers `WHO`, not `NAMES`.
    who: Vec<Box<str>>,
    /// A join's history, rendered, waiting for the room's names list to be sent first,
    /// as IRC clients expect after `JOIN`.
    replay: Option<(Box<str>, Vec<u8>)>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.away.is_none() && self.queue.is_empty() && self.who.is_empty() && self.replay.is_none()
    }
}

/// A joined room, as this connection last saw it.
#[derive(Debug)]
struct Room {
    /// As the server reports it: lowercase, without `#`.
    name: Box<str>,
    /// `i`, `m`, `t`, `s`: a bit each.
    modes: u8,
    key: Option<Box<str>>,
    topic: Option<Box<Topic>>,
}

#[derive(Debug)]
struct Topic {
    text: String,
    by: String,
    ts: i64,
}

const INVITE_ONLY: u8 = 1;
const MODERATED: u8 = 2;
const TOPIC_LOCKED: u8 = 4;
const SECRET: u8 = 8;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> IrcWire<R, W> {
    pub(crate) fn new(reader: R, writer: W, config: Arc<Config>) -> Self {
        let pass_ok = config.irc_password.is_none();
        Self {
            reader: Reader::new(reader, IrcCodec::default()),
            writer,
            out: Outbox::default(),
            config,
            caps: CapSet::default(),
            account: false,
            nick: None,
            rooms: Box::default(),
            reg: Some(Box::new(Registration {
                pass_ok,
                ..Registration::default()
            })),
            extra: None,
            last: None,
        }
    }
}

impl<R, W> IrcWire<R, W> {
    fn server(&self) -> &str {
        &self.config.server_name
    }

    /// The nick numerics are addressed to: `*` before registration.
    fn me(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    fn is_me(&self, nick: &str) -> bool {
        self.nick.as_deref().is_some_and(|me| same_nick(me, nick))
    }

    /// Output goes out, or into the hold while negotiation is still going on after
    /// `welcome`.
    fn put(&mut self, bytes: &[u8]) {
        if let Some(reg) = self.reg.as_mut().filter(|r| r.welcomed) {
            reg.held.extend_from_slice(bytes);
            if reg.held.len() > MAX_HELD {
                self.release();
            }
        } else {
            self.out.push(bytes);
        }
    }

    /// Registration is over: what was held goes out.
    fn release(&mut self) {
        if let Some(reg) = self.reg.take() {
            self.out.push(&reg.held);
        }
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Frees the rare state once it holds nothing.
    fn tidy(&mut self) {
        if self.extra.as_ref().is_some_and(|e| e.is_empty()) {
            self.extra = None;
        }
    }

    fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| *r.name == *name)
    }

    fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|r| *r.name == *name)
    }

    fn enter(&mut self, name: &str) {
        let mut rooms = std::mem::take(&mut self.rooms).into_vec();
        rooms.retain(|r| *r.name != *name);
        rooms.push(Room {
            name: name.into(),
            modes: 0,
            key: None,
            topic: None,
        });
        self.rooms = rooms.into_boxed_slice();
    }

    fn leave(&mut self, name: &str) {
        let mut rooms = std::mem::take(&mut self.rooms).into_vec();
        rooms.retain(|r| *r.name != *name);
        self.rooms = rooms.into_boxed_slice();
    }

    /// The next request of a comma list, if one is queued.
    fn queued(&mut self) -> Option<Request> {
        let (cmd, target, req) = self.extra.as_mut()?.queue.pop()?;
        self.tidy();
        self.last = Some(Box::new(Last { cmd, target }));
        Some(req)
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Wire for IrcWire<R, W> {
    fn caps(&self) -> Caps {
        Caps {
            pings: true,
            // Always: the adapter drops them for clients without `echo-message`.
            echoes_own: true,
        }
    }

    async fn recv(&mut self) -> std::io::Result<Option<Inbound>> {
        if let Some(req) = self.queued() {
            return Ok(Some(Inbound::Request(req)));
        }
        let item = match self.reader.next().await {
            None => return Ok(None),
            Some(item) => item?,
        };
        Ok(Some(match item {
            IrcItem::Line(msg) => self.command(msg),
            IrcItem::TooLong => {
                self.numeric("417", &[], "Input line was too long");
                Inbound::Handled
            }
        }))
    }

    fn push(&mut self, event: &Event) {
        self.render(event);
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.last = None;
        self.out.flush(&mut self.writer).await
    }

    async fn close(&mut self) {
        super::linger(self.reader.get_mut(), &mut self.writer).await;
    }
}

impl<R, W> IrcWire<R, W> {
    /// Whether `msg` is a message this client sent: without `echo-message` it is not
    /// shown. Told by its sender's nick, not the session, as IRC's echo is about what a
    /// user said (the same nick reconnected included); a moderation notice is always
    /// shown, as IRC servers show a `KICK` or `MODE` to whoever made it.
    fn own_echo(&self, msg: &ServerMsg) -> bool {
        match msg {
            ServerMsg::Message(m) => m.event.is_none() && self.is_me(&m.from),
            // A DM to oneself arrives once, as received.
            ServerMsg::Dm(d) => d.to != d.from && self.is_me(&d.from),
            _ => false,
        }
    }
}
