//! Line mode: a translation between plain text lines and the protocol, so `nc` and `telnet`
//! users chat with everyone else through the same session logic.
//!
//! Input: the first line is the nick; then a line is a message to the current room and a
//! line starting with `/` is a command. Output: one event per line, prefixed so a person can
//! tell messages (`<nick>`), actions (`*`), DMs (`*nick*`), notices (`-- `) and errors (`! `)
//! apart. Output lines end with `\r\n`, which telnet needs and `nc` shows the same.
//!
//! The adapter keeps the little state a text user has that the protocol does not: its own
//! nick and its rooms in join order (the most recent is the current room).

use std::fmt::Write as _;

use bytes::Bytes;
use chat_shared::{ByeReason, ChatMessage, ClientMsg, ErrorCode, Password, Request, ServerMsg};
use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use super::line_codec::{LineCodec, LineItem};
use super::outbox::Outbox;
use super::reader::Reader;
use super::{Caps, slots};
use super::{Inbound, Wire};
use crate::event::Event;

/// Sent when a client says nothing within the sniff window.
pub(crate) const GREETING: &str = "-- Welcome to chat-server! What is your nick?\r\n";

const HELP: &[&str] = &[
    "commands:",
    "  /join ROOM          join (or create) a room; it becomes your current room",
    "  /part [ROOM] [WHY]  leave a room (default: the current one)",
    "  /msg NICK TEXT      private message",
    "  /me TEXT            action, shown as * nick TEXT",
    "  /who [ROOM]         list a room's members",
    "  /rooms              list rooms",
    "  /nick NAME          change your nick",
    "  /register PASSWORD  register your nick (log in later with: NICK PASSWORD)",
    "  /password OLD NEW   change your account's password",
    "  /quit [REASON]      leave the server",
    "  //text              send a line that starts with /",
    "anything else is a message to your current room",
];

pub(crate) struct LineWire<R, W> {
    reader: Reader<R, LineCodec>,
    writer: W,
    out: Outbox,
    session: Uuid,
    /// Set by `welcome`; before it, a line is a nick (the server's notices name the nick,
    /// so the adapter keeps none of its own).
    welcomed: bool,
    /// Joined rooms, least recently joined first: the last is the current room. Boxed
    /// strings: an idle connection holds these for hours.
    rooms: Vec<Box<str>>,
    /// Before `welcome`: the nick of the last `hello`, and whether the next line is its
    /// password (the server said it is registered).
    login: Option<Box<Login>>,
}

/// Line mode's login state before `welcome` (boxed: it lives only that long).
#[derive(Debug, Default)]
struct Login {
    nick: String,
    password_next: bool,
}

/// Telnet: "I will echo" (so the client stops echoing what is typed), and "I won't".
const WILL_ECHO: &[u8] = &[255, 251, 1];
const WONT_ECHO: &[u8] = &[255, 252, 1];

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> LineWire<R, W> {
    pub(crate) fn new(reader: R, writer: W, max_line: usize, session: Uuid) -> Self {
        Self {
            reader: Reader::new(reader, LineCodec::new(max_line)),
            writer,
            out: Outbox::default(),
            session,
            welcomed: false,
            rooms: Vec::new(),
            login: None,
        }
    }
}

impl<R, W> LineWire<R, W> {
    fn current(&self) -> Option<&str> {
        self.rooms.last().map(|r| &**r)
    }

    fn say_line(&mut self, text: String) {
        self.out.push(text.as_bytes());
    }

    fn notice(&mut self, text: &str) {
        self.say_line(format!("-- {text}\r\n"));
    }

    fn complain(&mut self, text: &str) -> Inbound {
        self.say_line(format!("! {text}\r\n"));
        Inbound::Handled
    }

    /// Turns one input line into a request, or answers it locally.
    fn translate(&mut self, line: &str) -> Option<Inbound> {
        let req = |msg| Some(Inbound::Request(Request::new(msg)));
        if !self.welcomed {
            return self.login_line(line);
        }
        if line.trim().is_empty() {
            return None;
        }
        let Some(command) = line.strip_prefix('/').filter(|c| !c.starts_with('/')) else {
            // `//text` sends `/text`.
            let text = line.strip_prefix('/').unwrap_or(line);
            return Some(self.in_current_room(|room| ClientMsg::Say {
                room,
                text: text.to_owned(),
                action: false,
            }));
        };
        let (name, rest) = split_word(command);
        let (arg, tail) = split_word(rest);
        let room_or_current = |wire: &Self| {
            if arg.is_empty() {
                wire.current().map(str::to_owned)
            } else {
                Some(arg.to_owned())
            }
        };
        let command = name.to_ascii_lowercase();
        match command.as_str() {
            // The whole rest, so "John Smith" is refused with a reason, not cut to "John".
            "nick" if !arg.is_empty() => req(ClientMsg::Nick { nick: rest.into() }),
            "join" if !arg.is_empty() => req(ClientMsg::Join {
                room: arg.into(),
                since: None,
                key: None,
            }),
            "part" => match room_or_current(self) {
                Some(room) => req(ClientMsg::Part {
                    room,
                    reason: Some(tail.to_owned()).filter(|t| !t.is_empty()),
                }),
                None => Some(self.complain("you are in no room")),
            },
            "msg" if !arg.is_empty() && !tail.is_empty() => req(ClientMsg::Dm {
                to: arg.into(),
                text: tail.into(),
            }),
            "me" if !rest.is_empty() => Some(self.in_current_room(|room| ClientMsg::Say {
                room,
                text: rest.to_owned(),
                action: true,
            })),
            "who" => match room_or_current(self) {
                Some(room) => req(ClientMsg::Who { room }),
                None => Some(self.complain("you are in no room: /who ROOM")),
            },
            "rooms" => req(ClientMsg::Rooms {}),
            "register" if !arg.is_empty() => req(ClientMsg::Register {
                password: Password::new(rest),
            }),
            "password" if !arg.is_empty() && !tail.is_empty() => req(ClientMsg::SetPassword {
                old: Password::new(arg),
                new: Password::new(tail),
            }),
            "register" => Some(self.complain("usage: /register PASSWORD")),
            "password" => Some(self.complain("usage: /password OLD NEW")),
            "quit" => req(ClientMsg::Quit {
                reason: Some(rest.to_owned()).filter(|t| !t.is_empty()),
            }),
            "help" => {
                for line in HELP {
                    self.notice(line);
                }
                Some(Inbound::Handled)
            }
            "nick" | "join" | "msg" | "me" => {
                let usage = match command.as_str() {
                    "nick" => "/nick NAME",
                    "join" => "/join ROOM",
                    "msg" => "/msg NICK TEXT",
                    _ => "/me TEXT",
                };
                Some(self.complain(&format!("usage: {usage}")))
            }
            _ => Some(self.complain(&format!(
                "unknown command /{name}; /help lists commands, //text sends /text"
            ))),
        }
    }

    /// A line before `welcome`: `NICK`, `NICK PASSWORD`, or the password the server asked
    /// for. A password is never echoed back or kept past its `hello`.
    fn login_line(&mut self, line: &str) -> Option<Inbound> {
        let login = self.login.get_or_insert_with(Box::default);
        let (nick, password) = if login.password_next {
            login.password_next = false;
            if self.reader.codec().is_telnet() {
                self.out.push(WONT_ECHO);
                self.out.push(b"\r\n");
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                self.login = None;
                return Some(self.complain("no password given; type your nick"));
            }
            (login.nick.clone(), Some(Password::new(password)))
        } else {
            let (nick, password) = split_word(line.trim());
            let password = password.trim();
            match nick {
                "" => return None,
                "/quit" => {
                    return Some(Inbound::Request(Request::new(ClientMsg::Quit {
                        reason: None,
                    })));
                }
                _ => {}
            }
            login.nick = nick.to_owned();
            (
                nick.to_owned(),
                Some(password).filter(|p| !p.is_empty()).map(Password::new),
            )
        };
        Some(Inbound::Request(Request::new(ClientMsg::Hello {
            nick,
            version: None,
            client: Some("line".into()),
            password,
        })))
    }

    /// Asks for the password of the nick just refused as registered; a telnet client is
    /// told not to echo it.
    fn ask_password(&mut self) {
        let Some(login) = self.login.as_mut() else {
            return;
        };
        login.password_next = true;
        let prompt = format!(
            "-- password for {} (type it on the next line):\r\n",
            login.nick
        );
        if self.reader.codec().is_telnet() {
            self.out.push(WILL_ECHO);
        }
        self.say_line(prompt);
    }

    fn in_current_room(&mut self, make: impl FnOnce(String) -> ClientMsg) -> Inbound {
        match self.current() {
            Some(room) => Inbound::Request(Request::new(make(room.to_owned()))),
            None => self.complain("you are in no room: /join one to talk"),
        }
    }

    fn render(&mut self, event: &Event) {
        let own = event.origin == Some(self.session);
        match &event.msg {
            ServerMsg::Welcome {
                nick,
                motd,
                account,
                ..
            } => {
                self.welcomed = true;
                self.login = None;
                if *account {
                    self.notice(&format!("logged in to your account {nick}"));
                }
                self.notice(&format!(
                    "welcome, {nick}! type to talk, /help lists commands"
                ));
                if let Some(motd) = motd {
                    for line in motd.lines() {
                        self.notice(line);
                    }
                }
            }
            // Own messages are not echoed: the user's terminal already shows them.
            ServerMsg::Message(_) if own => {}
            ServerMsg::Message(m) => {
                let here = self.current() == Some(m.room.as_str());
                let slot = if here {
                    slots::LINE_HERE
                } else {
                    slots::LINE_ELSEWHERE
                };
                let bytes = event.encoded(slot, |msg| encode_message(msg, here));
                self.out.push(bytes);
            }
            ServerMsg::Dm(d) => {
                // `to` and `from` are both canonical nicks, so a DM to oneself has them equal.
                let text = if own && d.to != d.from {
                    prefixed(&format!("-> *{}* ", d.to), &d.text)
                } else {
                    prefixed(&format!("*{}* ", d.from), &d.text)
                };
                self.say_line(text);
            }
            ServerMsg::Joined { room, .. } if own => {
                self.rooms.retain(|r| **r != **room);
                self.rooms.push(room.as_str().into());
                self.notice(&format!("you joined #{room}; it is your current room"));
            }
            ServerMsg::Parted { room, .. } if own => {
                self.rooms.retain(|r| **r != **room);
                self.notice(&format!("you left #{room}"));
                match self.current().map(str::to_owned) {
                    Some(current) => self.notice(&format!("your current room is #{current}")),
                    None => self.notice("you are in no room: /join one to talk"),
                }
            }
            ServerMsg::NickChanged { new, .. } if own => {
                self.notice(&format!("you are now known as {new}"));
            }
            ServerMsg::Joined { .. } | ServerMsg::Parted { .. } | ServerMsg::NickChanged { .. } => {
                let bytes = event.encoded(slots::LINE_HERE, encode_notice);
                self.out.push(bytes);
            }
            ServerMsg::Members {
                room,
                nicks,
                truncated,
                ..
            } => {
                let more = if *truncated { ", …" } else { "" };
                self.notice(&format!(
                    "members of #{room} ({}): {}{more}",
                    nicks.len(),
                    nicks.join(", ")
                ));
            }
            ServerMsg::RoomList { rooms, .. } if rooms.is_empty() => self.notice("no rooms"),
            ServerMsg::RoomList { rooms, .. } => {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("#{} ({})", r.name, r.members))
                    .collect();
                self.notice(&format!("rooms: {}", list.join(", ")));
            }
            ServerMsg::History { messages, .. } if messages.is_empty() => {}
            ServerMsg::History {
                room,
                messages,
                truncated,
            } => {
                let older = if *truncated {
                    " (older ones not shown)"
                } else {
                    ""
                };
                self.notice(&format!(
                    "last {} messages in #{room}{older}:",
                    messages.len()
                ));
                let here = self.current() == Some(room.as_str());
                for m in messages {
                    self.say_line(message_lines(m, here));
                }
            }
            ServerMsg::Lagged { room, missed } => {
                self.complain(&format!(
                    "you fell behind and missed {missed} messages in #{room}"
                ));
            }
            ServerMsg::Error { code, message, .. } => {
                let registering = !self.welcomed;
                let asked = self.login.as_ref().is_some_and(|l| !l.nick.is_empty());
                let again = match code {
                    ErrorCode::NickRegistered if registering && asked => {
                        self.complain(message);
                        self.ask_password();
                        return;
                    }
                    ErrorCode::NickTaken | ErrorCode::NickInvalid | ErrorCode::NickRegistered
                        if registering =>
                    {
                        "; type another nick"
                    }
                    ErrorCode::AuthFailed | ErrorCode::AuthThrottled if registering => {
                        "; type your nick (and password) again"
                    }
                    _ => "",
                };
                self.complain(&format!("{message}{again}"));
            }
            ServerMsg::Registered { nick } => self.notice(&format!(
                "{nick} is registered to you; next time log in with: {nick} PASSWORD"
            )),
            ServerMsg::PasswordChanged {} => self.notice("your password is changed"),
            ServerMsg::Bye { reason, message } => {
                let text = message
                    .clone()
                    .unwrap_or_else(|| reason.as_str().to_owned());
                match reason {
                    ByeReason::Quit | ByeReason::Shutdown => self.notice(&format!("bye: {text}")),
                    // Closing because of something the client did, or did not do.
                    _ => {
                        self.complain(&format!("disconnected: {text}"));
                    }
                }
            }
            // Line clients are never pinged, cannot ping, and ignore what they don't know.
            _ => {}
        }
    }
}

/// A room message's lines; `here` when the room is the reader's current room.
fn encode_message(msg: &ServerMsg, here: bool) -> Bytes {
    match msg {
        ServerMsg::Message(m) => Bytes::from(message_lines(m, here)),
        _ => Bytes::new(),
    }
}

fn encode_notice(msg: &ServerMsg) -> Bytes {
    Bytes::from(format!("-- {}\r\n", notice_text(msg)))
}

/// Splits off the first space-separated word; the rest has its leading spaces removed.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `text` with `prefix` on every one of its lines, each ended by `\r\n`.
fn prefixed(prefix: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + prefix.len() + 2);
    for line in text.split('\n') {
        out.push_str(prefix);
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// A room message in line format; `here` when its room is the reader's current room.
fn message_lines(m: &ChatMessage, here: bool) -> String {
    let mut prefix = String::new();
    if !here {
        let _ = write!(prefix, "[{}] ", m.room); // writing to a String cannot fail
    }
    if m.action {
        let _ = write!(prefix, "* {} ", m.from);
    } else {
        let _ = write!(prefix, "<{}> ", m.from);
    }
    prefixed(&prefix, &m.text)
}

fn notice_text(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Joined { room, nick, .. } => format!("{nick} joined #{room}"),
        ServerMsg::Parted {
            room, nick, reason, ..
        } => match reason {
            Some(reason) => format!("{nick} left #{room} ({reason})"),
            None => format!("{nick} left #{room}"),
        },
        ServerMsg::NickChanged { old, new, .. } => format!("{old} is now known as {new}"),
        _ => String::new(),
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Wire for LineWire<R, W> {
    fn caps(&self) -> Caps {
        Caps {
            pings: false,
            echoes_own: false,
        }
    }

    async fn recv(&mut self) -> std::io::Result<Option<Inbound>> {
        loop {
            let item = match self.reader.next().await {
                None => return Ok(None),
                Some(item) => item?,
            };
            let inbound = match item {
                LineItem::Line(line) => self.translate(&line),
                LineItem::TooLong(len) => Some(self.complain(&format!(
                    "line too long ({len} bytes, the limit is {}): ignored",
                    self.reader.codec().max_line()
                ))),
            };
            if let Some(inbound) = inbound {
                return Ok(Some(inbound));
            }
        }
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
        self.out.flush(&mut self.writer).await
    }

    async fn close(&mut self) {
        super::linger(self.reader.get_mut(), &mut self.writer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> LineWire<tokio::io::Empty, tokio::io::Sink> {
        let mut w = LineWire::new(tokio::io::empty(), tokio::io::sink(), 100, Uuid::nil());
        w.welcomed = true;
        w.rooms = vec!["lobby".into(), "rust".into()];
        w
    }

    fn msg(line: &str) -> ClientMsg {
        match wire().translate(line) {
            Some(Inbound::Request(r)) => r.msg,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn plain_lines_go_to_the_current_room() {
        assert_eq!(
            msg("hello there"),
            ClientMsg::Say {
                room: "rust".into(),
                text: "hello there".into(),
                action: false
            }
        );
        assert_eq!(
            msg("//help me"),
            ClientMsg::Say {
                room: "rust".into(),
                text: "/help me".into(),
                action: false
            }
        );
    }

    #[test]
    fn commands_translate_to_requests() {
        assert_eq!(
            msg("/msg bob  hi  there"),
            ClientMsg::Dm {
                to: "bob".into(),
                text: "hi  there".into()
            }
        );
        assert_eq!(
            msg("/part"),
            ClientMsg::Part {
                room: "rust".into(),
                reason: None
            }
        );
        assert_eq!(
            msg("/part lobby see you"),
            ClientMsg::Part {
                room: "lobby".into(),
                reason: Some("see you".into())
            }
        );
        assert_eq!(
            msg("/me waves"),
            ClientMsg::Say {
                room: "rust".into(),
                text: "waves".into(),
                action: true
            }
        );
        assert_eq!(
            msg("/WHO"),
            ClientMsg::Who {
                room: "rust".into()
            }
        );
        assert_eq!(
            msg("/quit gone fishing"),
            ClientMsg::Quit {
                reason: Some("gone fishing".into())
            }
        );
    }

    #[test]
    fn local_answers_for_help_usage_and_unknown_commands() {
        for line in ["/help", "/msg bob", "/join", "/frobnicate"] {
            let mut w = wire();
            assert!(
                matches!(w.translate(line), Some(Inbound::Handled)),
                "{line}"
            );
            assert!(w.pending() > 0, "{line} got no answer");
        }
    }

    #[test]
    fn multi_line_text_repeats_the_prefix() {
        let m = ChatMessage {
            event: None,
            id: Uuid::nil(),
            room: "rust".into(),
            seq: 1,
            from: "bob".into(),
            text: "one\ntwo".into(),
            ts: 0,
            action: false,
        };
        assert_eq!(message_lines(&m, true), "<bob> one\r\n<bob> two\r\n");
        assert_eq!(
            message_lines(&m, false),
            "[rust] <bob> one\r\n[rust] <bob> two\r\n"
        );
    }
}
