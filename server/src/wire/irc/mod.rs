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
//! - [`register`]: registration's commands (`CAP`, `NICK`, `USER`, `PASS`, SASL, NickServ);
//! - [`render`]: events to IRC lines, the shared (cached per variant) and the personal;
//! - [`label`]: labeled-response, the replies to a labeled command gathered and tagged;
//! - [`numerics`]: the protocol's error codes as IRC numerics.
//!
//! Capabilities are negotiated per connection and consulted per event. `echo-message` in
//! particular is decided here at run time: the session always sends a client its own
//! messages (its [`Caps::echoes_own`] is on, so their acknowledgement waits for the disk as
//! for framed clients) and this adapter drops them for clients that did not ask for it.

pub(crate) mod caps;
pub(crate) mod codec;
mod commands;
mod label;
mod numerics;
mod register;
mod render;

use std::sync::Arc;

use chat_shared::{Request, ServerMsg};
use tokio::io::{AsyncRead, AsyncWrite};

use self::caps::CapSet;
use self::codec::{IrcCodec, IrcItem};
use super::outbox::Outbox;
use super::reader::Reader;
#[cfg(test)]
use super::slots;
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
    /// `MODE +b` (true) or `-b`.
    Ban(bool),
    Bans,
    Invite,
    Who,
    Names,
    List,
    History,
    Account,
    /// `ISON`, `USERHOST`, `WHOIS`: a `whois` each, answered as the command wants.
    Ison,
    Userhost,
    Whois,
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
    /// A `CHATHISTORY` answered by more than one `history` page.
    compound: Option<Box<Compound>>,
    /// The labeled command being answered: its label and its replies so far.
    label: Option<label::Labeled>,
    /// A labeled `PRIVMSG`'s message id, whose echo is its reply, and (once the command's
    /// other replies turned out to be none) the label it is to carry.
    echo: Option<(uuid::Uuid, Option<Box<str>>)>,
    /// Disconnects shown as `QUIT` lately (nick, `ts`): their parts of other rooms are not
    /// shown again. Forgotten after `render::QUIT_MEMORY_MS` (at a flush).
    quits: Vec<(Box<str>, i64)>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.away.is_none()
            && self.queue.is_empty()
            && self.who.is_empty()
            && self.replay.is_none()
            && self.compound.is_none()
            && self.label.is_none()
            && self.echo.is_none()
            && self.quits.is_empty()
    }
}

/// A `CHATHISTORY` whose answer is collected from several `history` pages.
#[derive(Debug)]
enum Compound {
    /// `AROUND`: first the page after the reference (`after` is `None` until it came),
    /// then the page up to and including the reference, `limit` in all.
    Around {
        room: Box<str>,
        limit: u32,
        after: Option<Vec<chat_shared::ChatMessage>>,
    },
    /// `TARGETS`: the newest message of each joined room, those within `from..=to` (Unix
    /// milliseconds) kept; `waiting` are the rooms not answered yet.
    Targets {
        from: i64,
        to: i64,
        limit: usize,
        waiting: Vec<Box<str>>,
        found: Vec<(Box<str>, i64)>,
    },
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
        } else if let Some(labeled) = self.extra.as_mut().and_then(|e| e.label.as_mut()) {
            labeled.replies.extend_from_slice(bytes);
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

    /// Forgets the quits shown long enough ago, so that the rare state can be freed.
    fn forget_quits(&mut self) {
        let Some(extra) = self.extra.as_mut().filter(|e| !e.quits.is_empty()) else {
            return;
        };
        let now = crate::now_ms();
        extra
            .quits
            .retain(|(_, at)| *at >= now - render::QUIT_MEMORY_MS);
        self.tidy();
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
        // What the last command caused so far is its answer.
        self.close_label();
        let item = match self.reader.next().await {
            None => return Ok(None),
            Some(item) => item?,
        };
        Ok(Some(match item {
            IrcItem::Line(msg) => {
                self.open_label(msg.label.as_deref());
                self.command(msg)
            }
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
        // A labeled answer being gathered is output too: it counts towards the batch.
        let labeled = self
            .extra
            .as_ref()
            .and_then(|e| e.label.as_ref())
            .map_or(0, |l| l.replies.len());
        self.out.len() + labeled
    }

    fn take_read(&mut self) -> u64 {
        self.reader.take_read()
    }

    fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.flushing_label();
        self.forget_quits();
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

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::{ChatMessage, ClientMsg, ErrorCode, Password};
    use codec::parse;

    type TestWire = IrcWire<tokio::io::Empty, Vec<u8>>;

    fn wire() -> TestWire {
        let config = Config {
            server_name: "srv".into(),
            ..Config::default()
        };
        IrcWire::new(tokio::io::empty(), Vec::new(), Arc::new(config))
    }

    /// Sends one line; the request it became, if any.
    fn line(w: &mut TestWire, text: &str) -> Option<ClientMsg> {
        match w.command(parse(text).unwrap().unwrap()) {
            Inbound::Request(req) => Some(req.msg),
            _ => None,
        }
    }

    /// What the client has been sent so far (taken).
    fn sent(w: &mut TestWire) -> String {
        futures::executor::block_on(w.flush()).unwrap();
        String::from_utf8(std::mem::take(&mut w.writer)).unwrap()
    }

    fn welcome(nick: &str, account: bool) -> Event {
        Event::new(
            ServerMsg::Welcome {
                nick: nick.into(),
                session: Uuid::nil(),
                server: "chat-server".into(),
                motd: None,
                account,
            },
            None,
        )
    }

    use uuid::Uuid;

    #[test]
    fn nick_and_user_without_cap_register_at_once() {
        let mut w = wire();
        assert_eq!(line(&mut w, "NICK alice"), None);
        let Some(ClientMsg::Hello { nick, password, .. }) = line(&mut w, "USER a 0 * :A") else {
            panic!("no hello");
        };
        assert_eq!((nick.as_str(), password), ("alice", None));
        w.push(&welcome("alice", false));
        let out = sent(&mut w);
        for numeric in [
            " 001 alice ",
            " 005 alice ",
            "CASEMAPPING=rfc8265",
            " 422 alice ",
        ] {
            assert!(out.contains(numeric), "{numeric} missing in {out}");
        }
    }

    #[test]
    fn registration_waits_for_cap_end_and_sasl_logs_in_the_account() {
        let mut w = wire();
        assert_eq!(line(&mut w, "CAP LS 302"), None);
        assert!(sent(&mut w).contains("sasl=PLAIN"));
        line(&mut w, "NICK alice");
        assert_eq!(line(&mut w, "USER a 0 * :A"), None, "held until CAP END");
        line(&mut w, "CAP REQ :sasl server-time");
        assert!(sent(&mut w).contains("ACK :sasl server-time"));
        line(&mut w, "AUTHENTICATE PLAIN");
        assert_eq!(sent(&mut w), "AUTHENTICATE +\r\n");
        // base64("\0alice\0hunter22")
        let Some(ClientMsg::Hello { nick, password, .. }) =
            line(&mut w, "AUTHENTICATE AGFsaWNlAGh1bnRlcjIy")
        else {
            panic!("no hello");
        };
        assert_eq!(nick, "alice");
        assert_eq!(password.as_ref().map(Password::expose), Some("hunter22"));
        w.push(&welcome("alice", true));
        let out = sent(&mut w);
        assert!(
            out.contains(" 900 alice ") && out.contains(" 903 alice "),
            "{out}"
        );
        assert!(!out.contains(" 001 "), "the burst waits for CAP END: {out}");
        line(&mut w, "CAP END");
        assert!(sent(&mut w).contains(" 001 alice "));
    }

    /// irssi's order: CAP, SASL, CAP END, and only then NICK and USER.
    #[test]
    fn a_sasl_login_before_nick_and_user_is_welcomed_once_they_come() {
        let mut w = wire();
        line(&mut w, "CAP LS 302");
        line(&mut w, "CAP REQ :sasl");
        line(&mut w, "AUTHENTICATE PLAIN");
        assert!(line(&mut w, "AUTHENTICATE AGFsaWNlAGh1bnRlcjIy").is_some());
        w.push(&welcome("alice", true));
        line(&mut w, "CAP END");
        assert!(!sent(&mut w).contains(" 001 "), "held until USER");
        assert_eq!(line(&mut w, "NICK alice"), None);
        assert_eq!(line(&mut w, "USER alice 0 * :A"), None);
        let out = sent(&mut w);
        assert!(
            out.contains(" 001 alice ") && !out.contains(" 462 "),
            "{out}"
        );
    }

    #[test]
    fn a_failed_sasl_login_is_904_and_a_registered_nick_433_with_how_to_log_in() {
        let mut w = wire();
        line(&mut w, "CAP LS 302");
        line(&mut w, "NICK alice");
        line(&mut w, "USER a 0 * :A");
        line(&mut w, "AUTHENTICATE PLAIN");
        line(&mut w, "AUTHENTICATE AGFsaWNlAGh1bnRlcjIy");
        let refused = |code| Event::new(ServerMsg::error(code, "no", None), None);
        w.push(&refused(ErrorCode::AuthFailed));
        assert!(sent(&mut w).contains(" 904 * "));
        assert!(matches!(
            line(&mut w, "CAP END"),
            Some(ClientMsg::Hello { password: None, .. })
        ));
        w.push(&refused(ErrorCode::NickRegistered));
        let out = sent(&mut w);
        assert!(out.contains(" 433 * alice :no (log in with SASL"), "{out}");
        assert!(matches!(
            line(&mut w, "NICK alice_"),
            Some(ClientMsg::Hello { .. })
        ));
    }

    #[test]
    fn with_a_server_password_registration_without_pass_is_464_and_a_quit() {
        let config = Config {
            irc_password: Some("letmein".into()),
            ..Config::default()
        };
        let mut w = IrcWire::new(tokio::io::empty(), Vec::new(), Arc::new(config));
        line(&mut w, "NICK alice");
        let user = parse("USER a 0 * :A").unwrap().unwrap();
        assert!(matches!(
            w.command(user),
            Inbound::BadServerPassword { nick } if nick == "alice"
        ));
        assert!(sent(&mut w).contains(" 464 * "));
        let mut w = IrcWire::new(
            tokio::io::empty(),
            Vec::new(),
            Arc::new(Config {
                irc_password: Some("letmein".into()),
                ..Config::default()
            }),
        );
        line(&mut w, "PASS letmein");
        line(&mut w, "NICK alice");
        assert!(matches!(
            line(&mut w, "USER a 0 * :A"),
            Some(ClientMsg::Hello { .. })
        ));
    }

    #[test]
    fn commands_before_registration_are_451_and_unknown_ones_421() {
        let mut w = wire();
        assert_eq!(line(&mut w, "JOIN #rust"), None);
        assert!(sent(&mut w).contains(" 451 * "));
        w.nick = Some("me".into());
        w.reg = None;
        assert_eq!(line(&mut w, "FROB x"), None);
        assert!(sent(&mut w).contains(" 421 me FROB "));
    }

    #[test]
    fn join_lists_become_one_request_each_with_their_keys() {
        let mut w = wire();
        w.nick = Some("me".into());
        w.reg = None;
        let first = line(&mut w, "JOIN #a,#b,&c k1");
        assert_eq!(
            first,
            Some(ClientMsg::Join {
                room: "a".into(),
                since: None,
                key: Some("k1".into())
            })
        );
        assert!(sent(&mut w).contains(" 403 me &c "));
        let Some(Request { msg, .. }) = w.queued() else {
            panic!("the second join is lost");
        };
        assert!(matches!(msg, ClientMsg::Join { room, key: None, .. } if room == "b"));
        assert!(
            w.queued().is_none() && w.extra.is_none(),
            "rare state freed"
        );
    }

    #[test]
    fn mode_changes_map_onto_roles_bans_and_one_mode_request() {
        let mut w = wire();
        w.nick = Some("me".into());
        w.reg = None;
        let first = line(&mut w, "MODE #r +mk-t+o key bob");
        let Some(ClientMsg::Mode { room, change }) = first else {
            panic!("no mode: {first:?}");
        };
        assert_eq!(room, "r");
        assert_eq!(change.moderated, Some(true));
        assert_eq!(change.topic_locked, Some(false));
        assert_eq!(change.key, Some(Some("key".into())));
        let next = w.queued().map(|r| r.msg);
        assert!(matches!(next, Some(ClientMsg::Op { nick, .. }) if nick == "bob"));
        let ban = line(&mut w, "MODE #r +b bob!*@*");
        assert!(matches!(ban, Some(ClientMsg::Ban { nick, .. }) if nick == "bob"));
        assert!(matches!(
            line(&mut w, "MODE #r b"),
            Some(ClientMsg::Bans { .. })
        ));
    }

    #[test]
    fn a_privmsg_over_the_text_limit_is_refused_with_417_not_cut() {
        let mut w = IrcWire::new(
            tokio::io::empty(),
            Vec::new(),
            Arc::new(Config {
                max_text: 10,
                ..Config::default()
            }),
        );
        w.nick = Some("me".into());
        w.reg = None;
        assert_eq!(line(&mut w, "PRIVMSG #r :12345678901"), None);
        assert!(sent(&mut w).contains(" 417 me "));
        let action = line(&mut w, "PRIVMSG #r :\x01ACTION waves\x01");
        assert!(
            matches!(action, Some(ClientMsg::Say { action: true, text, .. }) if text == "waves")
        );
    }

    #[test]
    fn chathistory_subcommands_are_history_pages_and_bad_ones_a_fail() {
        let mut w = wire();
        w.nick = Some("me".into());
        w.reg = None;
        let latest = line(&mut w, "CHATHISTORY LATEST #Rust * 20");
        assert_eq!(
            latest,
            Some(ClientMsg::History {
                room: "rust".into(),
                before: None,
                limit: Some(20),
                after: None,
            })
        );
        let (id, id2) = (Uuid::now_v7(), Uuid::now_v7());
        let before = line(&mut w, &format!("CHATHISTORY BEFORE #rust msgid={id} 5"));
        assert!(matches!(before, Some(ClientMsg::History { before: Some(b), .. }) if b == id));
        let after = line(&mut w, &format!("CHATHISTORY AFTER #rust msgid={id} 5"));
        assert!(
            matches!(after, Some(ClientMsg::History { after: Some(a), before: None, .. }) if a == id)
        );
        let between = line(
            &mut w,
            &format!("CHATHISTORY BETWEEN #rust msgid={id} msgid={id2} 9"),
        );
        assert!(matches!(between,
            Some(ClientMsg::History { after: Some(a), before: Some(b), limit: Some(9), .. })
                if a == id && b == id2));
        let latest = line(
            &mut w,
            "CHATHISTORY LATEST #rust timestamp=2026-01-01T00:00:00.000Z 5",
        );
        assert!(matches!(
            latest,
            Some(ClientMsg::History {
                before: None,
                after: None,
                ..
            })
        ));
        assert_eq!(line(&mut w, "CHATHISTORY AROUND #rust * 5"), None);
        assert_eq!(
            line(
                &mut w,
                "CHATHISTORY AFTER #rust timestamp=2026-01-01T00:00:00.000Z 5"
            ),
            None
        );
        assert_eq!(line(&mut w, "CHATHISTORY AFTER #rust"), None);
        assert_eq!(line(&mut w, "CHATHISTORY FROB #rust * 5"), None);
        let out = sent(&mut w);
        for fail in [
            "FAIL CHATHISTORY INVALID_PARAMS AROUND",
            "FAIL CHATHISTORY INVALID_PARAMS AFTER :references are msgid",
            "FAIL CHATHISTORY NEED_MORE_PARAMS AFTER",
            "FAIL CHATHISTORY INVALID_PARAMS FROB",
        ] {
            assert!(out.contains(fail), "{fail} missing in {out}");
        }
    }

    fn said(from: &str) -> Event {
        Event::new(
            ServerMsg::Message(ChatMessage {
                id: Uuid::nil(),
                room: "r".into(),
                seq: 1,
                from: from.into(),
                text: "hi".into(),
                ts: 0,
                action: false,
                account: false,
                event: None,
                file: None,
            }),
            None,
        )
    }

    #[test]
    fn own_messages_are_echoed_only_with_echo_message() {
        let mut w = wire();
        w.nick = Some("me".into());
        w.reg = None;
        w.push(&said("me"));
        assert_eq!(sent(&mut w), "");
        w.push(&said("bob"));
        assert_eq!(sent(&mut w), ":bob!bob@srv PRIVMSG #r :hi\r\n");
        line(&mut w, "CAP REQ echo-message");
        sent(&mut w);
        w.push(&said("me"));
        assert_eq!(sent(&mut w), ":me!me@srv PRIVMSG #r :hi\r\n");
    }

    #[test]
    fn recipients_of_one_variant_share_one_encoding() {
        let event = said("bob");
        let mut a = wire();
        let mut b = wire();
        for w in [&mut a, &mut b] {
            w.nick = Some("me".into());
            w.reg = None;
            line(w, "CAP REQ :message-tags server-time");
            sent(w);
        }
        a.push(&event);
        let first = event
            .encoded(slots::IRC_MSGID_TIME, |_| panic!("not cached"))
            .as_ptr();
        b.push(&event);
        let again = event
            .encoded(slots::IRC_MSGID_TIME, |_| panic!("not cached"))
            .as_ptr();
        assert_eq!(first, again);
        assert_eq!(sent(&mut a), sent(&mut b));
    }
}
