//! Line mode: a translation between plain text lines and the protocol, so `nc` and `telnet`
//! users chat with everyone else through the same session logic.
//!
//! Input: the first line is the nick; then a line is a message to the current room and a
//! line starting with `/` is a command. Output: one event per line, prefixed so a person can
//! tell messages (`<nick>`), actions (`*`), DMs (`*nick*`), notices (`-- `) and errors (`! `)
//! apart. Output lines end with `\r\n`, which telnet needs and `nc` shows the same.
//!
//! The adapter keeps the little state a text user has that the protocol does not: its own
//! nick, its rooms in join order (the most recent is the current room), and what it last saw
//! of each room's modes and topic, which `/mode` and `/topic` show without asking the server.

use std::fmt::Write as _;

use bytes::Bytes;
use chat_shared::{
    BanEntry, ByeReason, ChatMessage, ClientMsg, ErrorCode, ModeChange, Password, Request, Role,
    RoomNotice, ServerBanEntry, ServerMsg,
};
use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use super::line_codec::{LineCodec, LineItem};
use super::outbox::Outbox;
use super::reader::Reader;
use super::{Caps, slots};
use super::{Inbound, Wire};
use crate::event::Event;
use crate::path::stream::same_nick;

/// Sent when a client says nothing within the sniff window.
pub(crate) const GREETING: &str = "-- Welcome to chat-server! What is your nick?\r\n";

const HELP: &[&str] = &[
    "commands:",
    "  /join ROOM [KEY]    join (or create) a room; it becomes your current room",
    "  /part [ROOM] [WHY]  leave a room (default: the current one)",
    "  /msg NICK TEXT      private message",
    "  /me TEXT            action, shown as * nick TEXT",
    "  /who [ROOM]         list a room's members",
    "  /rooms              list rooms",
    "  /nick NAME          change your nick",
    "  /register PASSWORD  register your nick (log in later with: NICK PASSWORD)",
    "  /password OLD NEW   change your account's password",
    "  /login NICK PASSWORD  log in to your account now (you become NICK)",
    "  /upload SIZE SHA256 NAME  share a file in your current room: answers with the",
    "                      curl command that uploads it (SIZE in bytes, as from stat -c%s)",
    "  /quit [REASON]      leave the server",
    "  //text              send a line that starts with /",
    "anything else is a message to your current room",
    "in your current room (most of these need an op):",
    "  /topic [TEXT|-]     set the topic, show it, or clear it (-)",
    "  /op /deop NICK      make someone an op, or a member again",
    "  /voice /devoice NICK  let someone speak in a moderated room, or not",
    "  /owner NICK         hand the room over (the owner only)",
    "  /kick NICK [WHY]    remove someone from the room",
    "  /ban /unban NICK    ban someone from the room, or lift it; /bans lists them",
    "  /invite NICK [ROOM] invite someone (into an invite-only room too)",
    "  /mode [ROOM] [CHANGES]  show the modes, or change them: +i -i invite-only,",
    "                      +k KEY -k key, +m -m moderated, +t -t topic for ops only,",
    "                      +s -s secret; several at once, like +mk KEY or +m -t",
    "server admins:",
    "  /kill NICK [WHY]    disconnect someone",
    "  /kline MASK [DURATION] WHY  ban an address, a range (1.2.3.0/24) or an account",
    "                      from the server, for a DURATION like 90s, 30m, 2h, 7d",
    "  /unkline MASK       lift a server ban; /klines lists them",
];

pub(crate) struct LineWire<R, W> {
    reader: Reader<R, LineCodec>,
    writer: W,
    out: Outbox,
    session: Uuid,
    /// Set by `welcome` and by this client's renames; before `welcome`, a line is a nick.
    /// Kept to tell this client's kick from anyone else's: the room gets one `kicked`
    /// notice, and only here does it mean the room is gone.
    nick: Option<Box<str>>,
    /// Joined rooms, least recently joined first: the last is the current room. A boxed
    /// slice and boxed strings: an idle connection holds these for hours, and the slice's
    /// missing capacity word is what makes room for `nick` in the session task's size
    /// class. Joins and parts are rare enough to reallocate it.
    rooms: Box<[Room]>,
    /// The current room's key, when its `joined` was stamped with one: a message stamped
    /// with the same key is in the current room without a look at the name (see
    /// `RoomKey`).
    current_key: Option<crate::event::RoomKey>,
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

/// A joined room, with what this connection last saw of it (the `topic` and `mode` sent
/// after `joined`, then the live notices), so `/topic` and `/mode` can show it.
#[derive(Debug)]
struct Room {
    /// As the server reports it: lowercase.
    name: Box<str>,
    /// The modes that are on: a bit each (`INVITE_ONLY`, `MODERATED`, `TOPIC_LOCKED`,
    /// `SECRET`), as every room has modes and few have more than `+t`.
    modes: u8,
    /// Its topic and key, boxed: most rooms have neither, and then it is `None`.
    extra: Option<Box<RoomExtra>>,
}

/// What few rooms have; never left empty (see [`Room::tidy`]).
#[derive(Debug, Default)]
struct RoomExtra {
    /// The text and who set it.
    topic: Option<(Box<str>, Box<str>)>,
    key: Option<Box<str>>,
}

const INVITE_ONLY: u8 = 1;
const MODERATED: u8 = 2;
const TOPIC_LOCKED: u8 = 4;
const SECRET: u8 = 8;

/// The boolean modes of a change, with the bit [`Room::modes`] keeps each in.
fn mode_bits(change: &ModeChange) -> [(Option<bool>, u8); 4] {
    [
        (change.invite_only, INVITE_ONLY),
        (change.moderated, MODERATED),
        (change.topic_locked, TOPIC_LOCKED),
        (change.secret, SECRET),
    ]
}

impl Room {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            modes: 0,
            extra: None,
        }
    }

    /// Takes in a `mode` event: `all` of the room's modes (the one after `joined`, where a
    /// mode left out is off), or what changed (where it is unchanged).
    fn see_modes(&mut self, change: &ModeChange, all: bool) {
        if all {
            self.modes = 0;
        }
        for (value, bit) in mode_bits(change) {
            match value {
                Some(true) => self.modes |= bit,
                Some(false) => self.modes &= !bit,
                None => {}
            }
        }
        match &change.key {
            Some(key) => self.set_key(key.as_deref()),
            None if all => self.set_key(None),
            None => {}
        }
    }

    fn set_key(&mut self, key: Option<&str>) {
        match key {
            Some(key) => self.extra.get_or_insert_with(Box::default).key = Some(key.into()),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.key = None;
                }
            }
        }
        self.tidy();
    }

    /// Takes in a topic; an empty text is none.
    fn set_topic(&mut self, text: &str, by: &str) {
        if text.is_empty() {
            if let Some(extra) = &mut self.extra {
                extra.topic = None;
            }
        } else {
            self.extra.get_or_insert_with(Box::default).topic = Some((text.into(), by.into()));
        }
        self.tidy();
    }

    /// Frees what no longer holds anything.
    fn tidy(&mut self) {
        if self
            .extra
            .as_ref()
            .is_some_and(|e| e.topic.is_none() && e.key.is_none())
        {
            self.extra = None;
        }
    }

    fn topic(&self) -> Option<(&str, &str)> {
        let (text, by) = self.extra.as_ref()?.topic.as_ref()?;
        Some((text, by))
    }

    /// The modes that are on, as a change that would set them.
    fn modes(&self) -> ModeChange {
        let on = |bit: u8| (self.modes & bit != 0).then_some(true);
        ModeChange {
            invite_only: on(INVITE_ONLY),
            moderated: on(MODERATED),
            topic_locked: on(TOPIC_LOCKED),
            secret: on(SECRET),
            key: self
                .extra
                .as_ref()
                .and_then(|e| e.key.as_deref())
                .map(|k| Some(k.to_owned())),
        }
    }
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
            nick: None,
            rooms: Box::default(),
            current_key: None,
            login: None,
        }
    }
}

impl<R, W> LineWire<R, W> {
    fn current(&self) -> Option<&str> {
        self.rooms.last().map(|r| &*r.name)
    }

    /// Whether `event`, of `room`, is in the current room: by key when both have one.
    fn is_current(&self, event: &Event, room: &str) -> bool {
        match (event.room_key(), self.current_key) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.current() == Some(room),
        }
    }

    /// A joined room by its name as typed: `#` and capitals allowed, as the server takes
    /// them.
    fn room(&self, typed: &str) -> Option<&Room> {
        let name = typed.strip_prefix('#').unwrap_or(typed).to_lowercase();
        self.rooms.iter().find(|r| *r.name == *name)
    }

    /// A joined room by its name as the server reports it.
    fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|r| *r.name == *name)
    }

    /// `room` becomes the current room, with nothing seen of it yet: what the server sends
    /// after `joined` is the whole of it.
    fn enter(&mut self, room: &str, key: Option<crate::event::RoomKey>) {
        let mut rooms = std::mem::take(&mut self.rooms).into_vec();
        rooms.retain(|r| *r.name != *room);
        rooms.push(Room::new(room));
        self.rooms = rooms.into_boxed_slice();
        self.current_key = key;
    }

    /// This client is no longer in `room` (it parted, or was kicked): the current room is
    /// the most recently joined of those left.
    fn leave(&mut self, room: &str) {
        let mut rooms = std::mem::take(&mut self.rooms).into_vec();
        rooms.retain(|r| *r.name != *room);
        self.rooms = rooms.into_boxed_slice();
        // The room before it is current again; its key is not kept, so names decide.
        self.current_key = None;
        match self.current().map(str::to_owned) {
            Some(current) => self.notice(&format!("your current room is #{current}")),
            None => self.notice("you are in no room: /join one to talk"),
        }
    }

    fn is_me(&self, nick: &str) -> bool {
        self.nick.as_deref().is_some_and(|me| same_nick(me, nick))
    }

    fn say_line(&mut self, text: String) {
        self.out.push(text.as_bytes());
    }

    /// A `-- ` line, or one per line of a text that has several (a topic, a server notice).
    fn notice(&mut self, text: &str) {
        self.say_line(prefixed("-- ", text));
    }

    fn complain(&mut self, text: &str) -> Inbound {
        self.say_line(format!("! {text}\r\n"));
        Inbound::Handled
    }

    /// Turns one input line into a request, or answers it locally.
    fn translate(&mut self, line: &str) -> Option<Inbound> {
        let req = |msg| Some(Inbound::Request(Request::new(msg)));
        if self.nick.is_none() {
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
            // A key has no spaces, so more words are a mistake, not part of it.
            "join" if !arg.is_empty() && !tail.contains(char::is_whitespace) => {
                req(ClientMsg::Join {
                    room: arg.into(),
                    since: None,
                    key: some_text(tail),
                })
            }
            "part" => match room_or_current(self) {
                Some(room) => req(ClientMsg::Part {
                    room,
                    reason: some_text(tail),
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
            "upload" => match upload_args(arg, tail) {
                Some((size, sha256, name)) => {
                    Some(self.in_current_room(|room| ClientMsg::Upload {
                        name,
                        size,
                        sha256,
                        room: Some(room),
                        to: None,
                    }))
                }
                None => Some(self.bad_usage(&command)),
            },
            "login" if !arg.is_empty() && !tail.is_empty() => req(ClientMsg::Login {
                nick: arg.into(),
                password: Password::new(tail),
            }),
            "login" => Some(self.complain("usage: /login NICK PASSWORD")),
            "register" => Some(self.complain("usage: /register PASSWORD")),
            "password" => Some(self.complain("usage: /password OLD NEW")),
            "quit" => req(ClientMsg::Quit {
                reason: some_text(rest),
            }),
            "help" => {
                for line in HELP {
                    self.notice(line);
                }
                Some(Inbound::Handled)
            }
            "nick" | "join" | "msg" | "me" => Some(self.bad_usage(&command)),
            _ => match self.moderation(&command, rest) {
                Some(inbound) => Some(inbound),
                None => Some(self.complain(&format!(
                    "unknown command /{name}; /help lists commands, //text sends /text"
                ))),
            },
        }
    }

    fn bad_usage(&mut self, command: &str) -> Inbound {
        self.complain(&format!("usage: {}", usage(command)))
    }

    /// A moderation command (`command` lowercased, `rest` its arguments), or `None` when
    /// `command` is not one. All but the admins' act on the current room, as `/part` does.
    fn moderation(&mut self, command: &str, rest: &str) -> Option<Inbound> {
        let req = |msg| Some(Inbound::Request(Request::new(msg)));
        let (arg, tail) = split_word(rest);
        if let Some(make) = on_member(command) {
            // One nick: more words are a mistake (IRC's `/op a b` ops both), not a nick
            // for the server to refuse.
            if arg.is_empty() || !tail.is_empty() {
                return Some(self.bad_usage(command));
            }
            return Some(self.in_current_room(|room| make(room, arg.to_owned())));
        }
        match command {
            "topic" if rest.is_empty() => Some(self.show_topic()),
            // `/topic -` clears it, as in chat-tui: `/topic` alone shows it.
            "topic" => Some(self.in_current_room(|room| ClientMsg::Topic {
                room,
                text: if rest == "-" {
                    String::new()
                } else {
                    rest.to_owned()
                },
            })),
            "kick" if !arg.is_empty() => Some(self.in_current_room(|room| ClientMsg::Kick {
                room,
                nick: arg.to_owned(),
                reason: some_text(tail),
            })),
            "bans" if rest.is_empty() => {
                Some(self.in_current_room(|room| ClientMsg::Bans { room }))
            }
            "invite" if !arg.is_empty() && !tail.contains(char::is_whitespace) => {
                let nick = arg.to_owned();
                match tail {
                    "" => Some(self.in_current_room(|room| ClientMsg::Invite { room, nick })),
                    room => req(ClientMsg::Invite {
                        room: room.to_owned(),
                        nick,
                    }),
                }
            }
            "mode" => Some(self.mode(rest)),
            "kill" if !arg.is_empty() => req(ClientMsg::Kill {
                nick: arg.to_owned(),
                reason: some_text(tail),
            }),
            "kline" if !arg.is_empty() => Some(self.kline(arg, tail)),
            "unkline" if !arg.is_empty() && tail.is_empty() => req(ClientMsg::ServerUnban {
                mask: arg.to_owned(),
            }),
            "klines" if rest.is_empty() => req(ClientMsg::ServerBans {}),
            "kick" | "bans" | "invite" | "kill" | "kline" | "unkline" | "klines" => {
                Some(self.bad_usage(command))
            }
            _ => None,
        }
    }

    /// `/topic` alone: the current room's topic as this connection last saw it.
    fn show_topic(&mut self) -> Inbound {
        let Some(room) = self.rooms.last() else {
            return self.complain("you are in no room: /join one first");
        };
        let line = match room.topic() {
            Some((text, by)) => topic_line(&room.name, text, by),
            None => format!("#{} has no topic", room.name),
        };
        self.notice(&line);
        Inbound::Handled
    }

    /// `/mode [ROOM] [CHANGES]`: a room (not a change) first names the room; without
    /// changes, the modes as this connection last saw them.
    fn mode(&mut self, rest: &str) -> Inbound {
        let (first, after) = split_word(rest);
        let (room, changes) = if first.is_empty() || first.starts_with(['+', '-']) {
            (self.current().map(str::to_owned), rest)
        } else {
            (Some(first.to_owned()), after)
        };
        let Some(room) = room else {
            return self.complain("you are in no room: /mode ROOM, or /join one first");
        };
        if !changes.is_empty() {
            return match parse_modes(changes) {
                Ok(change) => Inbound::Request(Request::new(ClientMsg::Mode { room, change })),
                Err(why) => self.complain(&format!("{why}; usage: {}", usage("mode"))),
            };
        }
        let Some(seen) = self.room(&room) else {
            return self.complain(&format!(
                "you are not in #{room}: /join it to see its modes"
            ));
        };
        let modes = seen.modes();
        let line = if modes.is_empty() {
            format!("#{} has no modes set", seen.name)
        } else {
            format!("#{} modes: {}", seen.name, modes.describe())
        };
        self.notice(&line);
        Inbound::Handled
    }

    /// `/kline MASK [DURATION] REASON`: a second word that is no duration begins the reason.
    fn kline(&mut self, mask: &str, tail: &str) -> Inbound {
        let (word, after) = split_word(tail);
        let (duration_s, reason) = match parse_duration(word) {
            // Rather than a ban that ends at once, or (as in IRC) one that never does.
            Some(0) => {
                return self.complain(
                    "a /kline DURATION is more than 0; leave it out for a ban until /unkline",
                );
            }
            Some(secs) => (Some(secs), after),
            None => (None, tail),
        };
        if reason.is_empty() {
            return self.bad_usage("kline");
        }
        Inbound::Request(Request::new(ClientMsg::ServerBan {
            mask: mask.to_owned(),
            duration_s,
            reason: Some(reason.to_owned()),
        }))
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
                self.nick = Some(nick.as_str().into());
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
            // Own messages are not echoed: the user's terminal already shows them. What
            // its moderation commands did it has not seen, so those are shown.
            ServerMsg::Message(m) if own && m.event.is_none() => {}
            ServerMsg::Message(m) => {
                let here = self.is_current(event, &m.room);
                let slot = if here {
                    slots::LINE_HERE
                } else {
                    slots::LINE_ELSEWHERE
                };
                let bytes = event.encoded(slot, |msg| encode_message(msg, here));
                self.out.push(bytes);
                if let Some(notice) = &m.event {
                    self.saw(&m.room, &m.from, notice);
                }
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
            ServerMsg::Joined { room, role, .. } if own => {
                self.enter(room, event.room_key());
                // The role after the line's start, which scripts (chat-bench's client
                // among them) wait for as it is.
                let role = match role {
                    Some(Role::Owner) => ", and you own it",
                    Some(Role::Op) => ", and you are an op",
                    Some(Role::Voice) => ", and you have voice",
                    Some(Role::Member) | None => "",
                };
                self.notice(&format!(
                    "you joined #{room}; it is your current room{role}"
                ));
            }
            ServerMsg::Parted { room, .. } if own => {
                self.notice(&format!("you left #{room}"));
                self.leave(room);
            }
            ServerMsg::NickChanged { new, .. } if own => {
                self.nick = Some(new.as_str().into());
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
                ops,
                voiced,
                owner,
            } => {
                let more = if *truncated { ", …" } else { "" };
                let owner = owner
                    .as_ref()
                    .map(|o| format!("; owner: {o}"))
                    .unwrap_or_default();
                self.notice(&format!(
                    "members of #{room} ({}): {}{more}{owner}",
                    nicks.len(),
                    marked_members(nicks, ops, voiced)
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
                // Shown, not taken in: the topic and modes sent after `joined` are newer
                // than any of these, and a kick in history is over.
                let here = self.current() == Some(room.as_str());
                for m in messages {
                    self.say_line(message_lines(m, here));
                }
            }
            // The state right after `joined` (no `seq`): shown as it is, not as a change.
            ServerMsg::Topic {
                room,
                text,
                by,
                seq: None,
                ..
            } => {
                if !text.is_empty() {
                    self.notice(&topic_line(room, text, by));
                }
                if let Some(seen) = self.room_mut(room) {
                    seen.set_topic(text, by);
                }
            }
            ServerMsg::Mode {
                room,
                change,
                seq: None,
                ..
            } => {
                let on = modes_on(change);
                if !on.is_empty() {
                    self.notice(&format!("#{room} modes: {}", on.describe()));
                }
                if let Some(seen) = self.room_mut(room) {
                    seen.see_modes(change, true);
                }
            }
            // The live forms: inside the server these arrive as messages with an `event`
            // (above); should one come as its own type, it reads the same.
            ServerMsg::Topic { room, text, by, .. } => {
                let text = text.clone();
                self.live_notice(room, by, &RoomNotice::Topic { text });
            }
            ServerMsg::Mode {
                room, by, change, ..
            } => self.live_notice(room, by, &RoomNotice::Mode(change.clone())),
            ServerMsg::Kicked {
                room,
                nick,
                by,
                reason,
                ..
            } => {
                let (nick, reason) = (nick.clone(), reason.clone());
                self.live_notice(room, by, &RoomNotice::Kicked { nick, reason });
            }
            ServerMsg::Role {
                room,
                nick,
                role,
                by,
                was,
                ..
            } => {
                let (nick, role, was) = (nick.clone(), *role, *was);
                self.live_notice(room, by, &RoomNotice::Role { nick, role, was });
            }
            ServerMsg::Invited { room, by } => {
                self.notice(&format!("{by} invites you to #{room}: /join {room}"));
            }
            ServerMsg::BanList { room, bans } => self.notice(&ban_list(room, bans)),
            ServerMsg::ServerBanList { bans } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                self.notice(&server_ban_list(bans, now));
            }
            ServerMsg::Notice { text } => self.notice(text),
            ServerMsg::UploadSlot {
                url,
                expires,
                offset,
                ..
            } => self.notice(&upload_hint(url, *expires, *offset)),
            ServerMsg::Lagged { room, missed } => {
                self.complain(&format!(
                    "you fell behind and missed {missed} messages in #{room}"
                ));
            }
            ServerMsg::Error { code, message, .. } => {
                let registering = self.nick.is_none();
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
                let why = message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                match reason {
                    ByeReason::Quit | ByeReason::Shutdown => self.notice(&format!("bye: {text}")),
                    // The last thing the user reads: who ended it, not a bare reason code.
                    ByeReason::Killed => {
                        self.complain(&format!("a server admin disconnected you{why}"));
                    }
                    ByeReason::Banned => {
                        self.complain(&format!("you are banned from this server{why}"));
                    }
                    // Closing because of something the client did, or did not do.
                    _ => {
                        self.complain(&format!("disconnected: {text}"));
                    }
                }
            }
            // Line clients are never pinged, cannot ping, and ignore what they don't know.
            ServerMsg::Ping { .. }
            | ServerMsg::Pong { .. }
            | ServerMsg::Users { .. }
            | ServerMsg::Away { .. }
            | ServerMsg::AccountChanged { .. }
            | ServerMsg::Unknown => {}
        }
    }

    /// A room notice that came as its own event type rather than as a message.
    fn live_notice(&mut self, room: &str, by: &str, notice: &RoomNotice) {
        let here = self.current() == Some(room);
        self.say_line(notice_lines(room, by, notice, here));
        self.saw(room, by, notice);
    }

    /// Takes in a live room notice, once it is shown: a topic or modes are remembered for
    /// `/topic` and `/mode`, and a kick of this client leaves the room as a part would.
    fn saw(&mut self, room: &str, by: &str, notice: &RoomNotice) {
        match notice {
            RoomNotice::Topic { text } => {
                if let Some(seen) = self.room_mut(room) {
                    seen.set_topic(text, by);
                }
            }
            RoomNotice::Mode(change) => {
                if let Some(seen) = self.room_mut(room) {
                    seen.see_modes(change, false);
                }
            }
            RoomNotice::Kicked { nick, reason } if self.is_me(nick) => {
                let why = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                self.notice(&format!("you were kicked from #{room} by {by}{why}"));
                self.leave(room);
            }
            RoomNotice::Kicked { .. } | RoomNotice::Role { .. } => {}
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

/// `/upload SIZE SHA256 NAME`: the name last, so it may hold spaces.
fn upload_args(size: &str, tail: &str) -> Option<(u64, String, String)> {
    let size = size.parse().ok()?;
    let (sha256, name) = split_word(tail);
    (!sha256.is_empty() && !name.is_empty()).then(|| (size, sha256.to_owned(), name.to_owned()))
}

/// An optional text argument: absent when nothing was typed.
fn some_text(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

/// How a command is used, for the `! usage:` line of a bad one.
fn usage(command: &str) -> String {
    let how = match command {
        "nick" => "NAME",
        "join" => "ROOM [KEY]",
        "msg" => "NICK TEXT",
        "me" => "TEXT",
        "upload" => "SIZE SHA256 NAME (for example: /upload 1234 3a7b… report.pdf)",
        "topic" => "[TEXT|-] (without TEXT: show the topic; -: clear it)",
        "kick" | "kill" => "NICK [REASON]",
        "bans" | "klines" => "(no arguments)",
        "invite" => "NICK [ROOM]",
        "mode" => "[ROOM] +i|-i|+k KEY|-k|+m|-m|+t|-t|+s|-s (several at once, like +mk KEY)",
        "kline" => "MASK [DURATION] REASON (DURATION like 90s, 30m, 2h, 7d)",
        "unkline" => "MASK",
        _ => "NICK",
    };
    format!("/{command} {how}")
}

/// The request of a command that takes one nick and acts on the current room.
fn on_member(command: &str) -> Option<fn(String, String) -> ClientMsg> {
    let make: fn(String, String) -> ClientMsg = match command {
        "op" => |room, nick| ClientMsg::Op { room, nick },
        "deop" => |room, nick| ClientMsg::Deop { room, nick },
        "voice" => |room, nick| ClientMsg::Voice { room, nick },
        "devoice" => |room, nick| ClientMsg::Devoice { room, nick },
        "owner" => |room, nick| ClientMsg::Owner { room, nick },
        "ban" => |room, nick| ClientMsg::Ban { room, nick },
        "unban" => |room, nick| ClientMsg::Unban { room, nick },
        _ => return None,
    };
    Some(make)
}

/// IRC-style mode changes, `+mk KEY -t`: each word a run of letters after a sign (which
/// may switch within it, `+im-s`); `+k` takes the next word as its key, whatever it is, so
/// a key may start with `-`.
fn parse_modes(changes: &str) -> Result<ModeChange, String> {
    let mut change = ModeChange::default();
    let mut words = changes.split_whitespace();
    while let Some(word) = words.next() {
        let mut sign = None;
        let mut letters = 0;
        for c in word.chars() {
            let on = match (c, sign) {
                ('+', _) => {
                    sign = Some(true);
                    continue;
                }
                ('-', _) => {
                    sign = Some(false);
                    continue;
                }
                (_, Some(on)) => on,
                (_, None) => return Err(format!("{word} is not a mode change")),
            };
            letters += 1;
            match c {
                'i' => change.invite_only = Some(on),
                'm' => change.moderated = Some(on),
                't' => change.topic_locked = Some(on),
                's' => change.secret = Some(on),
                'k' if on => match words.next() {
                    Some(key) => change.key = Some(Some(key.to_owned())),
                    None => return Err("+k needs a key".into()),
                },
                'k' => change.key = Some(None),
                _ => {
                    let sign = if on { '+' } else { '-' };
                    return Err(format!("there is no mode {sign}{c}"));
                }
            }
        }
        if letters == 0 {
            return Err(format!("{word} changes no mode"));
        }
    }
    Ok(change)
}

/// A `/kline` duration: a whole number of seconds, minutes, hours or days (`90s`, `30m`,
/// `2h`, `7d`). Anything else, a bare number included, is not one.
fn parse_duration(word: &str) -> Option<u64> {
    let unit = word.chars().last()?;
    let digits = &word[..word.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// Of all a room's modes (as sent after `joined`), those that are on: what is worth
/// showing, and what a change would need to set.
fn modes_on(all: &ModeChange) -> ModeChange {
    ModeChange {
        invite_only: all.invite_only.filter(|on| *on),
        moderated: all.moderated.filter(|on| *on),
        topic_locked: all.topic_locked.filter(|on| *on),
        secret: all.secret.filter(|on| *on),
        key: all.key.clone().filter(Option::is_some),
    }
}

fn topic_line(room: &str, text: &str, by: &str) -> String {
    if by.is_empty() {
        format!("topic of #{room}: {text}")
    } else {
        format!("topic of #{room}: {text} (set by {by})")
    }
}

/// ` (op)` after a joiner's nick, when it is more than a member.
fn role_note(role: Option<Role>) -> String {
    match role {
        Some(role) if role != Role::Member => format!(" ({})", role.as_str()),
        _ => String::new(),
    }
}

/// `@alice, +bob, carol`: each nick with its role's mark.
fn marked_members(nicks: &[String], ops: &[String], voiced: &[String]) -> String {
    // Sets, as a room's list may hold thousands of nicks and more than a few ops.
    let ops: std::collections::HashSet<&str> = ops.iter().map(String::as_str).collect();
    let voiced: std::collections::HashSet<&str> = voiced.iter().map(String::as_str).collect();
    let mut out = String::new();
    for (i, nick) in nicks.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let role = if ops.contains(nick.as_str()) {
            Role::Op
        } else if voiced.contains(nick.as_str()) {
            Role::Voice
        } else {
            Role::Member
        };
        out.push_str(role.mark());
        out.push_str(nick);
    }
    out
}

fn ban_list(room: &str, bans: &[BanEntry]) -> String {
    if bans.is_empty() {
        return format!("no bans in #{room}");
    }
    let list: Vec<String> = bans
        .iter()
        .map(|b| format!("{} (by {})", b.nick, b.by))
        .collect();
    format!("bans of #{room}: {}", list.join(", "))
}

/// The server's bans, each with its reason and, if it ends, how long it has left at
/// `now` (Unix milliseconds): a line client has no clock of the server's to compare with.
fn server_ban_list(bans: &[ServerBanEntry], now: i64) -> String {
    if bans.is_empty() {
        return "no server bans".to_owned();
    }
    let list: Vec<String> = bans
        .iter()
        .map(|b| {
            let mut about = format!("by {}", b.by);
            if !b.reason.is_empty() {
                let _ = write!(about, ": {}", b.reason); // writing to a String cannot fail
            }
            if let Some(expires) = b.expires {
                // Rounded up: a ban with 0.4 s left is not over.
                let left = u64::try_from(expires.saturating_sub(now)).unwrap_or(0);
                let _ = write!(about, "; {} left", span(left.div_ceil(1000)));
            }
            format!("{} ({about})", b.mask)
        })
        .collect();
    format!("server bans: {}", list.join(", "))
}

/// `2d 3h`, `5m`, `0s`: a span of seconds in its largest unit and the next, if not zero.
fn span(secs: u64) -> String {
    const UNITS: [(u64, char); 4] = [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')];
    let Some(i) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0s".to_owned();
    };
    let (size, unit) = UNITS[i];
    let mut out = format!("{}{unit}", secs / size);
    if let Some((next, unit)) = UNITS.get(i + 1) {
        let n = secs % size / next;
        if n > 0 {
            let _ = write!(out, " {n}{unit}");
        }
    }
    out
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

/// A room message in line format; `here` when its room is the reader's current room. A
/// moderation event is a notice, whoever's it is, the same live and in history.
fn message_lines(m: &ChatMessage, here: bool) -> String {
    if let Some(notice) = &m.event {
        return notice_lines(&m.room, &m.from, notice, here);
    }
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

/// `-- bob was kicked by alice (spam)`, after `[room] ` like any line of another room:
/// the text itself does not say which room.
fn notice_lines(room: &str, by: &str, notice: &RoomNotice, here: bool) -> String {
    let text = notice.describe(by);
    if here {
        prefixed("-- ", &text)
    } else {
        prefixed(&format!("[{room}] -- "), &text)
    }
}

fn notice_text(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Joined {
            room, nick, role, ..
        } => format!("{nick} joined #{room}{}", role_note(*role)),
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

    fn take_read(&mut self) -> u64 {
        self.reader.take_read()
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

/// How to upload to a slot from a shell: line clients have no tus client, curl is one.
fn upload_hint(url: &str, expires: i64, offset: u64) -> String {
    let minutes = (expires - crate::now_ms()).max(0) / 60_000;
    let until = format!("{}h{:02}", minutes / 60, minutes % 60);
    format!(
        "upload with: curl -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: {offset}' \
-H 'Content-Type: application/offset+octet-stream' --data-binary @FILE {url} \
(the link works for {until})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestWire = LineWire<tokio::io::Empty, Vec<u8>>;

    /// Welcomed as `me`, in `lobby` and then `rust` (the current room).
    fn wire() -> TestWire {
        let mut w = LineWire::new(tokio::io::empty(), Vec::new(), 100, Uuid::nil());
        w.nick = Some("me".into());
        w.rooms = vec![Room::new("lobby"), Room::new("rust")].into_boxed_slice();
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
            msg("/upload 1234 ab12 我的 报告.pdf"),
            ClientMsg::Upload {
                name: "我的 报告.pdf".into(),
                size: 1234,
                sha256: "ab12".into(),
                room: Some("rust".into()),
                to: None,
            }
        );
        assert_eq!(
            msg("/msg bob  hi  there"),
            ClientMsg::Dm {
                to: "bob".into(),
                text: "hi  there".into()
            }
        );
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
        for line in [
            "/help",
            "/msg bob",
            "/join",
            "/frobnicate",
            "/upload x y z",
            "/upload 1 a",
        ] {
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
            file: None,
            account: false,
        };
        assert_eq!(message_lines(&m, true), "<bob> one\r\n<bob> two\r\n");
        assert_eq!(
            message_lines(&m, false),
            "[rust] <bob> one\r\n[rust] <bob> two\r\n"
        );
    }

    // ---- moderation: commands ----

    /// The output queued so far (and clears it).
    fn output(w: &mut TestWire) -> String {
        use futures::FutureExt;
        w.flush()
            .now_or_never()
            .expect("a Vec takes everything at once")
            .unwrap();
        String::from_utf8(std::mem::take(&mut w.writer)).unwrap()
    }

    /// What a line answered locally (it must not become a request).
    fn answer(w: &mut TestWire, line: &str) -> String {
        let got = w.translate(line);
        assert!(matches!(got, Some(Inbound::Handled)), "{line} gave {got:?}");
        output(w)
    }

    fn member_cmd(make: fn(String, String) -> ClientMsg) -> ClientMsg {
        make("rust".into(), "bob".into())
    }

    #[test]
    fn moderation_commands_act_on_the_current_room() {
        let cases = [
            (
                "/op bob",
                member_cmd(|room, nick| ClientMsg::Op { room, nick }),
            ),
            (
                "/deop bob",
                member_cmd(|room, nick| ClientMsg::Deop { room, nick }),
            ),
            (
                "/VOICE bob",
                member_cmd(|room, nick| ClientMsg::Voice { room, nick }),
            ),
            (
                "/devoice bob",
                member_cmd(|room, nick| ClientMsg::Devoice { room, nick }),
            ),
            (
                "/owner bob",
                member_cmd(|room, nick| ClientMsg::Owner { room, nick }),
            ),
            (
                "/ban bob",
                member_cmd(|room, nick| ClientMsg::Ban { room, nick }),
            ),
            (
                "/unban bob",
                member_cmd(|room, nick| ClientMsg::Unban { room, nick }),
            ),
            (
                "/invite bob",
                member_cmd(|room, nick| ClientMsg::Invite { room, nick }),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(msg(line), want, "{line}");
        }
        assert_eq!(
            msg("/kick bob"),
            ClientMsg::Kick {
                room: "rust".into(),
                nick: "bob".into(),
                reason: None
            }
        );
        assert_eq!(
            msg("/kick bob  stop  spamming"),
            ClientMsg::Kick {
                room: "rust".into(),
                nick: "bob".into(),
                reason: Some("stop  spamming".into())
            }
        );
        assert_eq!(
            msg("/bans"),
            ClientMsg::Bans {
                room: "rust".into()
            }
        );
        assert_eq!(
            msg("/topic Rust 2024, and async"),
            ClientMsg::Topic {
                room: "rust".into(),
                text: "Rust 2024, and async".into()
            }
        );
        assert_eq!(
            msg("/topic -"),
            ClientMsg::Topic {
                room: "rust".into(),
                text: String::new()
            }
        );
        assert_eq!(
            msg("/invite bob #lobby"),
            ClientMsg::Invite {
                room: "#lobby".into(),
                nick: "bob".into()
            }
        );
    }

    #[test]
    fn join_takes_an_optional_key() {
        assert_eq!(
            msg("/join #go"),
            ClientMsg::Join {
                room: "#go".into(),
                since: None,
                key: None
            }
        );
        assert_eq!(
            msg("/join go s3cr3t"),
            ClientMsg::Join {
                room: "go".into(),
                since: None,
                key: Some("s3cr3t".into())
            }
        );
    }

    #[test]
    fn admin_commands_translate_to_server_requests() {
        assert_eq!(
            msg("/kill bob"),
            ClientMsg::Kill {
                nick: "bob".into(),
                reason: None
            }
        );
        assert_eq!(
            msg("/kill bob go away"),
            ClientMsg::Kill {
                nick: "bob".into(),
                reason: Some("go away".into())
            }
        );
        assert_eq!(
            msg("/unkline 203.0.113.0/24"),
            ClientMsg::ServerUnban {
                mask: "203.0.113.0/24".into()
            }
        );
        assert_eq!(msg("/klines"), ClientMsg::ServerBans {});
    }

    #[test]
    fn kline_takes_a_duration_only_when_the_second_word_is_one() {
        let kline = |line: &str| match msg(line) {
            ClientMsg::ServerBan {
                mask,
                duration_s,
                reason,
            } => (mask, duration_s, reason.unwrap()),
            other => panic!("{line} gave {other:?}"),
        };
        let cases = [
            (
                "/kline 203.0.113.0/24 30m spam bots",
                Some(1800),
                "spam bots",
            ),
            ("/kline bob 2h flood", Some(7200), "flood"),
            ("/kline bob 2H flood", Some(7200), "flood"),
            ("/kline bob 7d flood", Some(604_800), "flood"),
            ("/kline bob 90s flood", Some(90), "flood"),
            ("/kline bob spam", None, "spam"),
            // Not durations: a bare number, a word, a unit unknown, too large, a sign.
            ("/kline bob 30 spam", None, "30 spam"),
            ("/kline bob 2hours spam", None, "2hours spam"),
            ("/kline bob 3w spam", None, "3w spam"),
            (
                "/kline bob 99999999999999999999d x",
                None,
                "99999999999999999999d x",
            ),
            ("/kline bob -5m x", None, "-5m x"),
            ("/kline bob m x", None, "m x"),
        ];
        for (line, duration, reason) in cases {
            let (mask, got_duration, got_reason) = kline(line);
            assert_eq!(mask, line.split(' ').nth(1).unwrap(), "{line}");
            assert_eq!(got_duration, duration, "{line}");
            assert_eq!(got_reason, reason, "{line}");
        }
    }

    #[test]
    fn a_kline_needs_a_reason_and_a_duration_over_zero() {
        for line in ["/kline", "/kline bob", "/kline bob 2h"] {
            let said = answer(&mut wire(), line);
            assert!(said.starts_with("! usage: /kline MASK"), "{line}: {said}");
        }
        let said = answer(&mut wire(), "/kline bob 0m spam");
        assert!(
            said.starts_with("! a /kline DURATION is more than 0"),
            "{said}"
        );
    }

    #[test]
    fn mode_changes_combine_into_one_request() {
        let mode = |line: &str| match msg(line) {
            ClientMsg::Mode { room, change } => (room, change),
            other => panic!("{line} gave {other:?}"),
        };
        let on = Some(true);
        let off = Some(false);
        let key = |k: &str| Some(Some(k.to_owned()));
        let cases = [
            (
                "/mode +mk KEY",
                ModeChange {
                    moderated: on,
                    key: key("KEY"),
                    ..ModeChange::default()
                },
            ),
            (
                "/mode +m -t",
                ModeChange {
                    moderated: on,
                    topic_locked: off,
                    ..ModeChange::default()
                },
            ),
            (
                "/mode +im-s",
                ModeChange {
                    invite_only: on,
                    moderated: on,
                    secret: off,
                    ..ModeChange::default()
                },
            ),
            (
                "/mode -k",
                ModeChange {
                    key: Some(None),
                    ..ModeChange::default()
                },
            ),
            (
                "/mode -i +k -dash -s",
                ModeChange {
                    invite_only: off,
                    key: key("-dash"),
                    secret: off,
                    ..ModeChange::default()
                },
            ),
            (
                "/mode +m-m",
                ModeChange {
                    moderated: off,
                    ..ModeChange::default()
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(mode(line), ("rust".to_owned(), want), "{line}");
        }
        assert_eq!(
            mode("/mode #lobby +s"),
            (
                "#lobby".to_owned(),
                ModeChange {
                    secret: on,
                    ..ModeChange::default()
                }
            )
        );
    }

    #[test]
    fn a_bad_mode_change_is_refused_with_its_usage() {
        for line in [
            "/mode +x",
            "/mode +o bob",
            "/mode +k",
            "/mode +",
            "/mode + m",
            "/mode rust m",
            "/mode -k oldkey",
        ] {
            let said = answer(&mut wire(), line);
            assert!(said.starts_with("! "), "{line}: {said}");
            assert!(
                said.contains("; usage: /mode [ROOM] +i|-i|+k KEY"),
                "{line}: {said}"
            );
        }
    }

    #[test]
    fn bad_usage_of_a_moderation_command_says_how_to_use_it() {
        let cases = [
            ("/op", "/op NICK"),
            ("/deop bob alice", "/deop NICK"),
            ("/voice", "/voice NICK"),
            ("/devoice", "/devoice NICK"),
            ("/owner", "/owner NICK"),
            ("/ban", "/ban NICK"),
            ("/unban a b", "/unban NICK"),
            ("/kick", "/kick NICK [REASON]"),
            ("/bans rust", "/bans (no arguments)"),
            ("/invite", "/invite NICK [ROOM]"),
            ("/invite bob rust now", "/invite NICK [ROOM]"),
            ("/join go key more", "/join ROOM [KEY]"),
            ("/kill", "/kill NICK [REASON]"),
            ("/unkline", "/unkline MASK"),
            ("/unkline a b", "/unkline MASK"),
            ("/klines all", "/klines (no arguments)"),
        ];
        for (line, usage) in cases {
            let said = answer(&mut wire(), line);
            assert_eq!(said, format!("! usage: {usage}\r\n"), "{line}");
        }
    }

    #[test]
    fn room_commands_without_a_room_ask_for_one() {
        for line in [
            "/op bob",
            "/kick bob",
            "/topic hi",
            "/topic",
            "/bans",
            "/mode +m",
        ] {
            let mut w = wire();
            w.rooms = Box::default();
            let said = answer(&mut w, line);
            assert!(said.starts_with("! you are in no room"), "{line}: {said}");
        }
    }

    #[test]
    fn help_lists_the_moderation_commands() {
        let said = answer(&mut wire(), "/help");
        for command in [
            "/topic",
            "/op",
            "/voice",
            "/owner",
            "/kick",
            "/ban",
            "/invite",
            "/mode",
            "/kill",
            "/kline",
            "/unkline",
            "/join ROOM [KEY]",
        ] {
            assert!(said.contains(command), "{command} missing from /help");
        }
        assert!(said.lines().all(|l| l.starts_with("-- ")), "{said}");
    }

    // ---- moderation: rendering ----

    const ALICE: Option<Uuid> = Some(Uuid::from_u128(7));
    const OWN: Option<Uuid> = Some(Uuid::nil());

    fn show(w: &mut TestWire, origin: Option<Uuid>, msg: ServerMsg) -> String {
        w.push(&Event::new(msg, origin));
        output(w)
    }

    fn room_notice(room: &str, from: &str, event: RoomNotice) -> ChatMessage {
        ChatMessage {
            id: Uuid::nil(),
            room: room.into(),
            seq: 9,
            from: from.into(),
            text: event.describe(from),
            ts: 0,
            action: false,
            account: false,
            event: Some(event),
            file: None,
        }
    }

    fn live(room: &str, from: &str, event: RoomNotice) -> ServerMsg {
        ServerMsg::Message(room_notice(room, from, event))
    }

    fn kicked(nick: &str, reason: &str) -> RoomNotice {
        RoomNotice::Kicked {
            nick: nick.into(),
            reason: reason.into(),
        }
    }

    fn names(w: &TestWire) -> Vec<&str> {
        w.rooms.iter().map(|r| &*r.name).collect()
    }

    #[test]
    fn the_current_room_is_told_by_its_key_and_by_name_where_a_key_is_missing() {
        let key = |n| crate::event::RoomKey::new(n);
        let mut w = LineWire::new(tokio::io::empty(), Vec::new(), 100, Uuid::nil());
        w.nick = Some("me".into());
        let joined = |room: &str| ServerMsg::Joined {
            role: None,
            room: room.into(),
            nick: "me".into(),
            ts: 0,
            account: false,
        };
        let said = |room: &str| {
            ServerMsg::Message(ChatMessage {
                event: None,
                text: "hi".into(),
                ..room_notice(
                    room,
                    "bob",
                    RoomNotice::Topic {
                        text: String::new(),
                    },
                )
            })
        };
        // Joins are this client's own; messages are someone else's.
        let shown = |w: &mut TestWire, msg: ServerMsg, k: Option<u32>| {
            let origin = if matches!(msg, ServerMsg::Joined { .. }) {
                OWN
            } else {
                ALICE
            };
            w.push(&Event::new(msg, origin).in_room(k.and_then(key)));
            output(w)
        };
        shown(&mut w, joined("lobby"), Some(1));
        shown(&mut w, joined("rust"), Some(2));
        assert_eq!(shown(&mut w, said("rust"), Some(2)), "<bob> hi\r\n");
        assert_eq!(
            shown(&mut w, said("lobby"), Some(1)),
            "[lobby] <bob> hi\r\n"
        );
        // Unstamped (history, say): the names decide.
        assert_eq!(shown(&mut w, said("rust"), None), "<bob> hi\r\n");
        assert_eq!(shown(&mut w, said("lobby"), None), "[lobby] <bob> hi\r\n");
        // Back in lobby after leaving rust: its key was not kept, and names still decide.
        w.leave("rust");
        output(&mut w);
        assert_eq!(shown(&mut w, said("lobby"), Some(1)), "<bob> hi\r\n");
        assert_eq!(shown(&mut w, said("rust"), Some(2)), "[rust] <bob> hi\r\n");
    }

    #[test]
    fn room_notices_are_shown_also_when_this_client_caused_them() {
        let mut w = wire();
        let topic = RoomNotice::Topic { text: "hi".into() };
        let role = RoomNotice::Role {
            was: None,
            nick: "bob".into(),
            role: Role::Op,
        };
        let mode = RoomNotice::Mode(ModeChange {
            moderated: Some(true),
            ..ModeChange::default()
        });
        for origin in [OWN, ALICE] {
            let cases = [
                (topic.clone(), "-- alice set the topic: hi\r\n"),
                (
                    kicked("bob", "spam"),
                    "-- bob was kicked by alice (spam)\r\n",
                ),
                (role.clone(), "-- alice made bob an op\r\n"),
                (mode.clone(), "-- alice set mode +m\r\n"),
            ];
            for (notice, line) in cases {
                assert_eq!(show(&mut w, origin, live("rust", "alice", notice)), line);
            }
        }
        // Unlike what it said itself.
        let said = ChatMessage {
            event: None,
            ..room_notice("rust", "me", topic)
        };
        assert_eq!(show(&mut w, OWN, ServerMsg::Message(said)), "");
    }

    #[test]
    fn a_notice_from_another_room_names_it() {
        let mut w = wire();
        let notice = live("lobby", "alice", kicked("bob", ""));
        assert_eq!(
            show(&mut w, ALICE, notice),
            "[lobby] -- bob was kicked by alice\r\n"
        );
    }

    #[test]
    fn being_kicked_leaves_the_room_as_parting_does() {
        let mut w = wire();
        let said = show(&mut w, ALICE, live("rust", "alice", kicked("ME", "spam")));
        assert_eq!(
            said,
            "-- ME was kicked by alice (spam)\r\n\
             -- you were kicked from #rust by alice (spam)\r\n\
             -- your current room is #lobby\r\n"
        );
        assert_eq!(names(&w), ["lobby"]);
        assert_eq!(
            msg_of(&mut w, "still here"),
            ClientMsg::Say {
                room: "lobby".into(),
                text: "still here".into(),
                action: false
            }
        );
        let said = show(&mut w, ALICE, live("lobby", "alice", kicked("me", "")));
        assert!(
            said.ends_with("-- you were kicked from #lobby by alice\r\n-- you are in no room: /join one to talk\r\n"),
            "{said}"
        );
        assert!(w.rooms.is_empty());
    }

    fn msg_of(w: &mut TestWire, line: &str) -> ClientMsg {
        match w.translate(line) {
            Some(Inbound::Request(r)) => r.msg,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn someone_elses_kick_or_an_old_one_leaves_the_rooms_alone() {
        let mut w = wire();
        show(&mut w, ALICE, live("rust", "alice", kicked("bob", "")));
        assert_eq!(names(&w), ["lobby", "rust"]);
        let history = ServerMsg::History {
            room: "rust".into(),
            messages: vec![room_notice("rust", "alice", kicked("me", "old"))],
            truncated: false,
        };
        let said = show(&mut w, None, history);
        assert_eq!(
            said,
            "-- last 1 messages in #rust:\r\n-- me was kicked by alice (old)\r\n"
        );
        assert_eq!(names(&w), ["lobby", "rust"]);
    }

    #[test]
    fn a_kick_follows_this_clients_renames() {
        let mut w = wire();
        let renamed = ServerMsg::NickChanged {
            old: "me".into(),
            new: "neo".into(),
            ts: 0,
        };
        show(&mut w, OWN, renamed);
        show(&mut w, ALICE, live("rust", "alice", kicked("me", "")));
        assert_eq!(names(&w), ["lobby", "rust"], "me is someone else now");
        show(&mut w, ALICE, live("rust", "alice", kicked("neo", "")));
        assert_eq!(names(&w), ["lobby"]);
    }

    fn joined_go(w: &mut TestWire) {
        let joined = ServerMsg::Joined {
            room: "go".into(),
            nick: "me".into(),
            ts: 0,
            role: None,
            account: false,
        };
        show(w, OWN, joined);
    }

    fn topic_after_join(text: &str) -> ServerMsg {
        ServerMsg::Topic {
            room: "go".into(),
            text: text.into(),
            by: "alice".into(),
            ts: 0,
            seq: None,
            id: None,
        }
    }

    /// All five modes, as sent after `joined`.
    fn modes_after_join(moderated: bool, key: Option<&str>) -> ServerMsg {
        ServerMsg::Mode {
            room: "go".into(),
            by: String::new(),
            ts: 0,
            change: ModeChange {
                invite_only: Some(false),
                key: Some(key.map(str::to_owned)),
                moderated: Some(moderated),
                topic_locked: Some(true),
                secret: Some(false),
            },
            seq: None,
            id: None,
        }
    }

    #[test]
    fn the_topic_and_modes_after_joining_are_shown_and_kept_for_topic_and_mode() {
        let mut w = wire();
        joined_go(&mut w);
        assert_eq!(
            show(&mut w, None, topic_after_join("Go things")),
            "-- topic of #go: Go things (set by alice)\r\n"
        );
        assert_eq!(
            show(&mut w, None, modes_after_join(true, Some("k1"))),
            "-- #go modes: +mtk k1\r\n"
        );
        assert_eq!(
            answer(&mut w, "/topic"),
            "-- topic of #go: Go things (set by alice)\r\n"
        );
        assert_eq!(answer(&mut w, "/mode"), "-- #go modes: +mtk k1\r\n");
        assert_eq!(answer(&mut w, "/mode #GO"), "-- #go modes: +mtk k1\r\n");
        assert_eq!(
            answer(&mut w, "/mode rust"),
            "-- #rust has no modes set\r\n"
        );
        let said = answer(&mut w, "/mode elsewhere");
        assert!(said.starts_with("! you are not in #elsewhere"), "{said}");
    }

    #[test]
    fn a_room_with_nothing_set_shows_nothing_and_keeps_no_box() {
        let mut w = wire();
        joined_go(&mut w);
        let mut none = modes_after_join(false, None);
        if let ServerMsg::Mode { change, .. } = &mut none {
            change.topic_locked = Some(false);
        }
        assert_eq!(show(&mut w, None, none), "");
        assert!(w.rooms.last().unwrap().extra.is_none());
        assert_eq!(answer(&mut w, "/mode"), "-- #go has no modes set\r\n");
        assert_eq!(answer(&mut w, "/topic"), "-- #go has no topic\r\n");
        // The +t of a new room is a bit, not an allocation.
        show(&mut w, None, modes_after_join(false, None));
        assert!(w.rooms.last().unwrap().extra.is_none());
        assert_eq!(answer(&mut w, "/mode"), "-- #go modes: +t\r\n");
    }

    #[test]
    fn the_modes_after_joining_replace_what_was_seen_even_when_some_are_left_out() {
        let mut w = wire();
        joined_go(&mut w);
        show(&mut w, None, modes_after_join(true, Some("k1")));
        let only_t = ServerMsg::Mode {
            room: "go".into(),
            by: String::new(),
            ts: 0,
            change: ModeChange {
                topic_locked: Some(true),
                ..ModeChange::default()
            },
            seq: None,
            id: None,
        };
        assert_eq!(show(&mut w, None, only_t), "-- #go modes: +t\r\n");
        assert_eq!(answer(&mut w, "/mode"), "-- #go modes: +t\r\n");
        assert!(w.rooms.last().unwrap().extra.is_none(), "the key is gone");
    }

    #[test]
    fn live_notices_change_what_topic_and_mode_show() {
        let mut w = wire();
        joined_go(&mut w);
        show(&mut w, None, topic_after_join("old"));
        show(&mut w, None, modes_after_join(true, Some("k1")));
        let change = ModeChange {
            moderated: Some(false),
            key: Some(None),
            secret: Some(true),
            ..ModeChange::default()
        };
        show(&mut w, ALICE, live("go", "alice", RoomNotice::Mode(change)));
        assert_eq!(answer(&mut w, "/mode"), "-- #go modes: +ts\r\n");
        let topic = RoomNotice::Topic { text: "new".into() };
        show(&mut w, OWN, live("go", "me", topic));
        assert_eq!(
            answer(&mut w, "/topic"),
            "-- topic of #go: new (set by me)\r\n"
        );
        let cleared = RoomNotice::Topic {
            text: String::new(),
        };
        assert_eq!(
            show(&mut w, ALICE, live("go", "alice", cleared)),
            "-- alice cleared the topic\r\n"
        );
        assert_eq!(answer(&mut w, "/topic"), "-- #go has no topic\r\n");
        assert!(w.rooms.last().unwrap().extra.is_none(), "freed once empty");
    }

    #[test]
    fn leaving_or_joining_again_forgets_what_was_seen() {
        let mut w = wire();
        joined_go(&mut w);
        show(&mut w, None, topic_after_join("old"));
        joined_go(&mut w);
        assert_eq!(answer(&mut w, "/topic"), "-- #go has no topic\r\n");
        show(&mut w, None, topic_after_join("old"));
        let parted = ServerMsg::Parted {
            room: "go".into(),
            nick: "me".into(),
            ts: 0,
            reason: None,
            quit: false,
        };
        show(&mut w, OWN, parted);
        joined_go(&mut w);
        assert_eq!(answer(&mut w, "/topic"), "-- #go has no topic\r\n");
    }

    #[test]
    fn moderation_events_of_their_own_type_read_as_the_messages_do() {
        let mut w = wire();
        let kick = |nick: &str| ServerMsg::Kicked {
            room: "rust".into(),
            nick: nick.into(),
            by: "alice".into(),
            reason: "spam".into(),
            ts: 0,
            seq: Some(3),
            id: None,
        };
        assert_eq!(
            show(&mut w, ALICE, kick("bob")),
            "-- bob was kicked by alice (spam)\r\n"
        );
        let role = ServerMsg::Role {
            was: None,
            room: "lobby".into(),
            nick: "bob".into(),
            role: Role::Voice,
            by: "alice".into(),
            ts: 0,
            seq: Some(4),
            id: None,
        };
        assert_eq!(
            show(&mut w, ALICE, role),
            "[lobby] -- alice gave bob voice\r\n"
        );
        let topic = ServerMsg::Topic {
            room: "rust".into(),
            text: "live".into(),
            by: "alice".into(),
            ts: 0,
            seq: Some(5),
            id: None,
        };
        assert_eq!(
            show(&mut w, ALICE, topic),
            "-- alice set the topic: live\r\n"
        );
        assert_eq!(
            answer(&mut w, "/topic"),
            "-- topic of #rust: live (set by alice)\r\n"
        );
        let mode = ServerMsg::Mode {
            room: "rust".into(),
            by: "alice".into(),
            ts: 0,
            change: ModeChange {
                invite_only: Some(true),
                ..ModeChange::default()
            },
            seq: Some(6),
            id: None,
        };
        assert_eq!(show(&mut w, ALICE, mode), "-- alice set mode +i\r\n");
        assert_eq!(answer(&mut w, "/mode"), "-- #rust modes: +i\r\n");
        let said = show(&mut w, ALICE, kick("me"));
        assert!(said.contains("-- you were kicked from #rust by alice (spam)\r\n"));
        assert_eq!(names(&w), ["lobby"]);
    }

    #[test]
    fn invitations_ban_lists_and_notices_are_lines() {
        let mut w = wire();
        let invited = ServerMsg::Invited {
            room: "go".into(),
            by: "alice".into(),
        };
        assert_eq!(
            show(&mut w, None, invited),
            "-- alice invites you to #go: /join go\r\n"
        );
        let bans = |bans| ServerMsg::BanList {
            room: "go".into(),
            bans,
        };
        assert_eq!(show(&mut w, None, bans(vec![])), "-- no bans in #go\r\n");
        let ban = |nick: &str, by: &str| BanEntry {
            nick: nick.into(),
            by: by.into(),
            ts: 0,
        };
        assert_eq!(
            show(
                &mut w,
                None,
                bans(vec![ban("bob", "alice"), ban("eve", "carol")])
            ),
            "-- bans of #go: bob (by alice), eve (by carol)\r\n"
        );
        let notice = ServerMsg::Notice {
            text: "bob was killed".into(),
        };
        assert_eq!(show(&mut w, None, notice), "-- bob was killed\r\n");
        let none = ServerMsg::ServerBanList { bans: vec![] };
        assert_eq!(show(&mut w, None, none), "-- no server bans\r\n");
    }

    #[test]
    fn server_bans_show_their_reason_and_what_is_left_of_them() {
        let now = 1_000_000_000;
        let ban = |mask: &str, reason: &str, expires: Option<i64>| ServerBanEntry {
            mask: mask.into(),
            by: "root".into(),
            reason: reason.into(),
            ts: 0,
            expires,
        };
        let bans = [
            ban(
                "203.0.113.0/24",
                "spam",
                Some(now + (2 * 3600 + 5 * 60) * 1000),
            ),
            ban("bob", "", None),
            ban("2001:db8::/32", "", Some(now + 400)),
        ];
        assert_eq!(
            server_ban_list(&bans, now),
            "server bans: 203.0.113.0/24 (by root: spam; 2h 5m left), bob (by root), \
             2001:db8::/32 (by root; 1s left)"
        );
    }

    #[test]
    fn spans_show_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3600, "1h"),
            (3661, "1h 1m"),
            (86_400 + 7200, "1d 2h"),
            (86_400 + 61, "1d"),
        ];
        for (secs, want) in cases {
            assert_eq!(span(secs), want, "{secs}");
        }
    }

    #[test]
    fn members_carry_their_roles_marks() {
        let mut w = wire();
        let members = ServerMsg::Members {
            room: "rust".into(),
            nicks: vec!["alice".into(), "bob".into(), "carol".into(), "dave".into()],
            truncated: false,
            ops: vec!["alice".into(), "dave".into()],
            voiced: vec!["bob".into()],
            owner: Some("alice".into()),
        };
        assert_eq!(
            show(&mut w, None, members),
            "-- members of #rust (4): @alice, +bob, carol, @dave; owner: alice\r\n"
        );
    }

    #[test]
    fn a_joiners_role_follows_its_nick() {
        let mut w = wire();
        let joined = |nick: &str, role| ServerMsg::Joined {
            room: "rust".into(),
            nick: nick.into(),
            ts: 0,
            role,
            account: false,
        };
        assert_eq!(
            show(&mut w, ALICE, joined("alice", Some(Role::Op))),
            "-- alice joined #rust (op)\r\n"
        );
        assert_eq!(
            show(&mut w, ALICE, joined("bob", None)),
            "-- bob joined #rust\r\n"
        );
        assert_eq!(
            show(&mut w, OWN, joined("me", Some(Role::Owner))),
            "-- you joined #rust; it is your current room, and you own it\r\n"
        );
    }

    #[test]
    fn a_killed_or_banned_client_is_told_who_ended_it() {
        let bye = |reason, message: Option<&str>| ServerMsg::Bye {
            reason,
            message: message.map(str::to_owned),
        };
        let mut w = wire();
        assert_eq!(
            show(
                &mut w,
                None,
                bye(ByeReason::Killed, Some("killed by root: spam"))
            ),
            "! a server admin disconnected you: killed by root: spam\r\n"
        );
        assert_eq!(
            show(&mut w, None, bye(ByeReason::Banned, None)),
            "! you are banned from this server\r\n"
        );
    }
}
