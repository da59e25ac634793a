//! Events to IRC lines.
//!
//! What every IRC member of a room reads the same (a `PRIVMSG`, a `JOIN`, a `KICK`) is
//! encoded once per variant and kept in the event (see `event.rs`): the variants are the
//! tags a client negotiated (none, `time`, `msgid`, both), not the client. A client's own
//! message, echoed with `echo-message`, is the same line as everyone else's. What is
//! personal (numerics, which name the client, and the replies to its requests) is rendered
//! for it alone.

use std::fmt::Write as _;

use bytes::Bytes;
use chat_shared::{
    ChatMessage, ClientMsg, ErrorCode, ModeChange, Request, Role, RoomNotice, ServerMsg,
};
use uuid::Uuid;

use super::caps::{
    ACCOUNT_NOTIFY, ACCOUNT_TAG, ECHO_MESSAGE, EXTENDED_JOIN, MESSAGE_TAGS, SERVER_TIME,
};
use super::commands::NICKSERV;
use super::{Cmd, Compound, IrcWire, Last, Room, Sasl, Topic};
use super::{INVITE_ONLY, MODERATED, SECRET, TOPIC_LOCKED};
use crate::event::{Event, Slot};
use crate::path::stream::same_nick;
use crate::wire::slots;

/// How long a disconnect's `QUIT` is remembered, to drop its parts of other rooms.
pub(super) const QUIT_MEMORY_MS: i64 = 10_000;

/// Longest text of one `PRIVMSG` line sent; longer lines are split (at a space where
/// there is one), so a client's 512-byte reader never cuts a message.
const MAX_TEXT_PER_LINE: usize = 400;

/// The user part of a nick's mask. The nick itself: accounts are nicks, and there is no
/// ident to show.
pub(super) fn user_of(nick: &str) -> String {
    nick.to_owned()
}

/// `nick!nick@server`, the source of everything a user does.
fn mask(out: &mut String, nick: &str, server: &str) {
    let _ = write!(out, ":{nick}!{nick}@{server}"); // writing to a String cannot fail
}

/// The tags a client reads shared lines with: a variant of the encoding (see
/// [`IrcWire::shared`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Variant {
    /// `msgid` (message-tags).
    pub(super) msgid: bool,
    /// `time` (server-time).
    pub(super) time: bool,
    /// `account` (account-tag), on the messages of a sender logged in to its account.
    pub(super) account: bool,
}

/// The tags of a line in variant `v`; `account` is the sender's account, if it was logged
/// in to one.
fn tags(out: &mut String, account: Option<&str>, id: Option<Uuid>, ts: i64, v: Variant) {
    let account = account.filter(|_| v.account);
    let id = id.filter(|_| v.msgid);
    if account.is_none() && id.is_none() && !v.time {
        return;
    }
    let mut sep = '@';
    if let Some(account) = account {
        // A nick needs no escaping as a tag value: no space, `;`, `\\` or control.
        let _ = write!(out, "{sep}account={account}");
        sep = ';';
    }
    if let Some(id) = id {
        let _ = write!(out, "{sep}msgid={id}");
        sep = ';';
    }
    if v.time {
        out.push(sep);
        out.push_str("time=");
        out.push_str(&iso_time(ts));
    }
    out.push(' ');
}

/// Unix milliseconds as `2026-12-01T15:10:05.123Z` (server-time's format).
pub(super) fn iso_time(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil(days);
    let secs = rest / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1000
    )
}

/// `[15:10] `: the time of a replayed message for clients without server-time (UTC).
fn hhmm(ms: i64) -> String {
    let secs = ms.rem_euclid(86_400_000) / 1000;
    format!("[{:02}:{:02}] ", secs / 3600, secs / 60 % 60)
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `text` in pieces of at most [`MAX_TEXT_PER_LINE`] bytes, one per line of it, cut at
/// char boundaries (at a space where there is one).
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|line| {
        let mut rest = line;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            if rest.len() <= MAX_TEXT_PER_LINE {
                return Some(std::mem::take(&mut rest));
            }
            let mut cut = MAX_TEXT_PER_LINE;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // A space late enough that the piece is not mostly empty (a replay's time
            // stamp in front of one long word, say).
            if let Some(space) = rest[..cut].rfind(' ').filter(|&i| i > cut / 2) {
                cut = space + 1;
            }
            let (piece, after) = rest.split_at(cut);
            rest = after;
            Some(piece)
        })
    })
}

/// A room message's `PRIVMSG` lines (a multi-line message is several, from the same
/// sender; the first carries the msgid, which is the message's id), or a room notice as
/// the native command.
fn message_lines(out: &mut String, m: &ChatMessage, server: &str, v: Variant) {
    if let Some(notice) = &m.event {
        tags(out, None, Some(m.id), m.ts, v);
        notice_line(out, &m.room, &m.from, notice, server);
        return;
    }
    let account = m.account.then_some(m.from.as_str());
    let mut first = true;
    for piece in pieces(&m.text) {
        tags(out, account, Some(m.id).filter(|_| first), m.ts, v);
        first = false;
        mask(out, &m.from, server);
        if m.action {
            let _ = write!(out, " PRIVMSG #{} :\x01ACTION {piece}\x01\r\n", m.room);
        } else {
            let _ = write!(out, " PRIVMSG #{} :{piece}\r\n", m.room);
        }
    }
}

/// A moderation notice as IRC says it: `TOPIC`, `KICK`, or `MODE`.
fn notice_line(out: &mut String, room: &str, by: &str, notice: &RoomNotice, server: &str) {
    let start = out.len();
    if by.is_empty() {
        let _ = write!(out, ":{server}");
    } else {
        mask(out, by, server);
    }
    let _ = match notice {
        RoomNotice::Topic { text } => write!(out, " TOPIC #{room} :{text}\r\n"),
        RoomNotice::Kicked { nick, reason } => {
            let reason = if reason.is_empty() { by } else { reason };
            write!(out, " KICK #{room} {nick} :{reason}\r\n")
        }
        // IRC's roles are flags (`o`, `v`; an owner is an op to it): say which flags went
        // and which came, from the role before when the event tells it.
        RoomNotice::Role { nick, role, was } => {
            let (from, to) = (flags(*was), flags(Some(*role)));
            let gone: String = from.chars().filter(|f| !to.contains(*f)).collect();
            let came: String = to.chars().filter(|f| !from.contains(*f)).collect();
            let mut change = String::new();
            if !came.is_empty() {
                change.push('+');
                change.push_str(&came);
            }
            if !gone.is_empty() {
                change.push('-');
                change.push_str(&gone);
            }
            if change.is_empty() {
                // Owner to op, say: the same to IRC, so no line at all.
                out.truncate(start);
                return;
            }
            let nicks = vec![nick.as_str(); came.len() + gone.len()].join(" ");
            write!(out, " MODE #{room} {change} {nicks}\r\n")
        }
        RoomNotice::Mode(change) => write!(out, " MODE #{room} {}\r\n", change.describe()),
    };
}

/// A role's IRC flags; an unknown role before (an event without `was`) may have had any.
fn flags(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Owner | Role::Op) => "o",
        Some(Role::Voice) => "v",
        Some(Role::Member) => "",
        None => "ov",
    }
}

/// The encoding of `msg` that all IRC clients of one variant share; see the module docs.
///
/// `extended`: extended-join's `JOIN #room account :realname` (the realname is the nick:
/// none is kept).
fn encode_shared(msg: &ServerMsg, server: &str, v: Variant, extended: bool) -> Bytes {
    let mut out = String::new();
    match msg {
        ServerMsg::Message(m) => message_lines(&mut out, m, server, v),
        ServerMsg::Joined {
            room,
            nick,
            role,
            account,
            ..
        } => {
            mask(&mut out, nick, server);
            let _ = if extended {
                let account = if *account { nick.as_str() } else { "*" };
                write!(out, " JOIN #{room} {account} :{nick}\r\n")
            } else {
                write!(out, " JOIN #{room}\r\n")
            };
            let mark = match role {
                Some(Role::Owner | Role::Op) => "+o",
                Some(Role::Voice) => "+v",
                _ => "",
            };
            if !mark.is_empty() {
                let _ = write!(out, ":{server} MODE #{room} {mark} {nick}\r\n");
            }
        }
        ServerMsg::Parted {
            room,
            nick,
            reason,
            quit,
            ..
        } => {
            mask(&mut out, nick, server);
            match reason {
                // A disconnect: one QUIT for all its rooms (the rest are dropped, see
                // `IrcWire::seen_quit`).
                _ if *quit => {
                    let reason = reason.as_deref().unwrap_or("quit");
                    let _ = write!(out, " QUIT :{reason}\r\n");
                }
                Some(reason) => {
                    let _ = write!(out, " PART #{room} :{reason}\r\n");
                }
                None => {
                    let _ = write!(out, " PART #{room}\r\n");
                }
            }
        }
        ServerMsg::NickChanged { old, new, .. } => {
            mask(&mut out, old, server);
            let _ = write!(out, " NICK :{new}\r\n");
        }
        ServerMsg::AccountChanged { nick, account } => {
            mask(&mut out, nick, server);
            let name = if *account { nick.as_str() } else { "*" };
            let _ = write!(out, " ACCOUNT {name}\r\n");
        }
        other => {
            if let Some(live) = other.to_notice() {
                if live.seq.is_some() {
                    tags(&mut out, None, live.id, live.ts, v);
                }
                notice_line(&mut out, &live.room, &live.by, &live.notice, server);
            }
        }
    }
    Bytes::from(out)
}

/// The slot of a variant.
fn slot(v: Variant) -> Slot {
    match (v.account, v.msgid, v.time) {
        (false, false, false) => slots::IRC,
        (false, false, true) => slots::IRC_TIME,
        (false, true, false) => slots::IRC_MSGID,
        (false, true, true) => slots::IRC_MSGID_TIME,
        (true, false, false) => slots::IRC_ACCOUNT,
        (true, false, true) => slots::IRC_ACCOUNT_TIME,
        (true, true, false) => slots::IRC_ACCOUNT_MSGID,
        (true, true, true) => slots::IRC_ACCOUNT_MSGID_TIME,
    }
}

impl<R, W> IrcWire<R, W> {
    /// `:server CODE me params… :trailing`.
    pub(super) fn numeric(&mut self, code: &str, params: &[&str], trailing: &str) {
        let mut line = format!(":{} {code} {}", self.server(), self.me());
        for p in params {
            line.push(' ');
            line.push_str(p);
        }
        line.push_str(" :");
        line.push_str(trailing);
        line.push_str("\r\n");
        self.put(line.as_bytes());
    }

    /// A line of text for the client from the server, one `NOTICE` per line of it.
    fn server_notice(&mut self, text: &str) {
        let (server, me) = (self.server().to_owned(), self.me().to_owned());
        for line in text.lines() {
            let line = format!(":{server} NOTICE {me} :{line}\r\n");
            self.put(line.as_bytes());
        }
    }

    pub(super) fn nickserv_says(&mut self, text: &str) {
        let line = format!(
            ":{NICKSERV}!{NICKSERV}@{} NOTICE {} :{text}\r\n",
            self.server(),
            self.me()
        );
        self.put(line.as_bytes());
    }

    /// 332 and 333 for a room's topic.
    pub(super) fn topic_numerics(&mut self, target: &str, text: &str, by: &str, ts: i64) {
        self.numeric("332", &[target], text);
        if !by.is_empty() {
            let secs = (ts / 1000).to_string();
            let line = format!(
                ":{} 333 {} {target} {by} {secs}\r\n",
                self.server(),
                self.me()
            );
            self.put(line.as_bytes());
        }
    }

    pub(super) fn motd(&mut self) {
        let server = self.server().to_owned();
        match self.config.live().motd.clone() {
            Some(motd) => {
                self.numeric("375", &[], &format!("- {server} Message of the day - "));
                for line in motd.lines() {
                    self.numeric("372", &[], &format!("- {line}"));
                }
                self.numeric("376", &[], "End of /MOTD command.");
            }
            None => self.numeric("422", &[], "MOTD File is missing"),
        }
    }

    /// 001–005 and the MOTD.
    fn welcome_burst(&mut self) {
        let server = self.server().to_owned();
        let me = self.me().to_owned();
        let version = concat!("chat-server-", env!("CARGO_PKG_VERSION"));
        self.numeric(
            "001",
            &[],
            &format!("Welcome to the {server} IRC network, {me}"),
        );
        self.numeric(
            "002",
            &[],
            &format!("Your host is {server}, running version {version}"),
        );
        self.numeric(
            "003",
            &[],
            "This server speaks IRC beside chat-server's own protocol",
        );
        let line = format!(":{server} 004 {me} {server} {version} o bikmnostv bkov\r\n");
        self.put(line.as_bytes());
        let isupport = format!(
            "CHANTYPES=# PREFIX=(ov)@+ CHANMODES=b,k,,imnst NICKLEN={n} CHANNELLEN={c} \
             TOPICLEN={t} CASEMAPPING=rfc8265 UTF8ONLY NETWORK={server} CHATHISTORY=500 \
             MSGREFTYPES=msgid",
            n = chat_shared::validate::MAX_NAME_CHARS,
            c = chat_shared::validate::MAX_NAME_CHARS + 1,
            t = self.config.max_topic,
        );
        let isupport: Vec<&str> = isupport.split(' ').collect();
        self.numeric("005", &isupport, "are supported by this server");
        self.motd();
    }

    /// The variant this client reads shared lines in.
    fn variant(&self) -> Variant {
        Variant {
            msgid: self.caps.has(MESSAGE_TAGS),
            time: self.caps.has(SERVER_TIME),
            account: self.caps.has(ACCOUNT_TAG),
        }
    }

    /// Puts `event`'s shared encoding for this client's variant.
    fn shared(&mut self, event: &Event) {
        let mut v = self.variant();
        // Only these carry tags: the rest are the same in every variant. Only a logged-in
        // sender's message carries `account`: for the rest, the variant without it is the
        // same bytes, and its slot is shared.
        match &event.msg {
            ServerMsg::Message(m) => v.account &= m.account && m.event.is_none(),
            ServerMsg::Topic { .. }
            | ServerMsg::Kicked { .. }
            | ServerMsg::Role { .. }
            | ServerMsg::Mode { .. } => v.account = false,
            _ => v = Variant::default(),
        }
        // A JOIN carries no tags, so extended-join's JOIN takes a tag variant's slot.
        let extended =
            self.caps.has(EXTENDED_JOIN) && matches!(event.msg, ServerMsg::Joined { .. });
        let slot = if extended { slots::IRC_MSGID } else { slot(v) };
        let server = &self.config.server_name;
        let bytes = event.encoded(slot, |msg| encode_shared(msg, server, v, extended));
        // `put` borrows self mutably; the bytes borrow the event, not self.
        let bytes: &[u8] = bytes;
        self.put(bytes);
    }

    pub(super) fn render(&mut self, event: &Event) {
        if !self.caps.has(ECHO_MESSAGE) && self.own_echo(&event.msg) {
            return;
        }
        let id = match &event.msg {
            ServerMsg::Message(m) => Some(m.id),
            ServerMsg::Dm(d) => Some(d.id),
            _ => None,
        };
        if let Some(label) = id.and_then(|id| self.echo_label(id)) {
            self.labeled_echo(label, event);
            return;
        }
        self.render_event(event);
    }

    /// Renders one event (see [`IrcWire::render`]).
    pub(super) fn render_event(&mut self, event: &Event) {
        match &event.msg {
            ServerMsg::Welcome { nick, account, .. } => self.welcomed(nick, *account),
            ServerMsg::Message(m) => {
                self.shared(event);
                if let Some(notice) = &m.event {
                    self.saw(&m.room, &m.from, m.ts, notice);
                }
            }
            ServerMsg::Topic { seq: Some(_), .. }
            | ServerMsg::Kicked { .. }
            | ServerMsg::Role { .. }
            | ServerMsg::Mode { seq: Some(_), .. } => {
                self.shared(event);
                if let Some(live) = event.msg.to_notice() {
                    self.saw(&live.room, &live.by, live.ts, &live.notice);
                }
            }
            // The state right after `joined`.
            ServerMsg::Topic {
                room, text, by, ts, ..
            } => {
                if !text.is_empty() {
                    self.topic_numerics(&format!("#{room}"), text, by, *ts);
                }
                let text = text.clone();
                self.saw(room, by, *ts, &RoomNotice::Topic { text });
            }
            ServerMsg::Mode { room, change, .. } => {
                if let Some(seen) = self.room_mut(room) {
                    seen.modes = 0;
                    seen.key = None;
                    see_modes(seen, change);
                }
            }
            ServerMsg::Joined { room, nick, .. } => {
                self.shared(event);
                if self.is_me(nick) {
                    self.enter(room);
                    // The join's history waits here for its names list.
                    self.extra().replay = Some((room.as_str().into(), Vec::new()));
                }
            }
            ServerMsg::Parted {
                room,
                nick,
                quit,
                ts,
                ..
            } => {
                if self.is_me(nick) {
                    self.leave(room);
                } else if *quit && self.seen_quit(nick, *ts) {
                    return;
                }
                self.shared(event);
            }
            ServerMsg::NickChanged { old, new, .. } => {
                self.shared(event);
                if self.is_me(old) {
                    self.nick = Some(new.as_str().into());
                }
            }
            ServerMsg::Dm(d) => {
                let mut line = String::new();
                let v = self.variant();
                let server = self.config.server_name.clone();
                let account = d.account.then_some(d.from.as_str());
                let mut first = true;
                for piece in pieces(&d.text) {
                    tags(&mut line, account, Some(d.id).filter(|_| first), d.ts, v);
                    first = false;
                    mask(&mut line, &d.from, &server);
                    let _ = write!(line, " PRIVMSG {} :{piece}\r\n", d.to);
                }
                self.put(line.as_bytes());
            }
            ServerMsg::Members {
                room,
                nicks,
                ops,
                voiced,
                ..
            } => self.members(room, nicks, ops, voiced),
            ServerMsg::RoomList { rooms, .. } => {
                self.numeric("321", &["Channel"], "Users  Name");
                for r in rooms {
                    let count = r.members.to_string();
                    self.numeric("322", &[&format!("#{}", r.name), &count], "");
                }
                self.numeric("323", &[], "End of /LIST");
            }
            ServerMsg::History { room, messages, .. } => {
                if !self.compound_page(room, messages) {
                    self.replay(room, messages);
                }
            }
            ServerMsg::Lagged { room, missed } => self.server_notice(&format!(
                "You fell behind and missed {missed} messages in #{room}"
            )),
            ServerMsg::Ping { token } => {
                let token = match token {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let line = format!("PING :{token}\r\n");
                self.put(line.as_bytes());
            }
            ServerMsg::Pong { .. } | ServerMsg::Unknown => {}
            ServerMsg::Error { code, message, .. } => self.error(*code, message),
            ServerMsg::Registered { nick } => {
                self.account = true;
                let mask = format!("{nick}!{nick}@{}", self.server());
                self.numeric(
                    "900",
                    &[&mask, nick],
                    &format!("You are now logged in as {nick}"),
                );
                self.nickserv_says(&format!("{nick} is now registered to you"));
            }
            ServerMsg::PasswordChanged {} => self.nickserv_says("Your password is changed"),
            ServerMsg::Invited { room, by } => {
                let mut line = String::new();
                mask(&mut line, by, &self.config.server_name);
                let _ = write!(line, " INVITE {} #{room}\r\n", self.me());
                self.put(line.as_bytes());
            }
            ServerMsg::BanList { room, bans } => self.ban_list(room, bans),
            ServerMsg::ServerBanList { bans } => {
                for b in bans {
                    self.server_notice(&format!("K-line {} (by {}) {}", b.mask, b.by, b.reason));
                }
                self.server_notice(&format!("{} server bans", bans.len()));
            }
            ServerMsg::Users { users } => self.users(users),
            ServerMsg::Away { nick, text } => self.away_event(nick, text.as_deref()),
            // IRC clients have no `upload`: nothing asks for a slot.
            ServerMsg::UploadSlot { .. } => {}
            ServerMsg::AccountChanged { nick, account } => {
                if self.is_me(nick) {
                    self.logged(nick, *account);
                } else if self.caps.has(ACCOUNT_NOTIFY) {
                    self.shared(event);
                }
            }
            ServerMsg::Notice { text } => {
                let invite = self.last.as_ref().filter(|l| l.cmd == Cmd::Invite);
                if let Some(target) = invite.map(|l| l.target.clone()) {
                    let params: Vec<&str> = target.split(' ').collect();
                    self.numeric("341", &params, "");
                    let _ = params;
                } else {
                    self.server_notice(text);
                }
            }
            ServerMsg::Bye { reason, message } => {
                let text = message.as_deref().unwrap_or(reason.as_str());
                let line = format!("ERROR :Closing link: {} ({text})\r\n", self.me());
                // The last words go out even during negotiation.
                self.release();
                self.put(line.as_bytes());
            }
        }
    }

    /// This client's own login changed after registration: 900 (unless `registered` said
    /// it already) or 901.
    fn logged(&mut self, nick: &str, account: bool) {
        let was = std::mem::replace(&mut self.account, account);
        let mask = format!("{nick}!{nick}@{}", self.server());
        if account && !was {
            let text = format!("You are now logged in as {nick}");
            self.numeric("900", &[&mask, nick], &text);
        } else if !account && was {
            self.numeric("901", &[&mask], "You are now logged out");
        }
    }

    /// `welcome`: SASL's 900/903 at once, then the burst (held until `CAP END` if the
    /// client is still negotiating).
    fn welcomed(&mut self, nick: &str, account: bool) {
        self.nick = Some(nick.into());
        self.account = account;
        let sasl = self.reg.as_ref().is_some_and(|r| r.sasl == Sasl::InFlight);
        let mask = format!("{nick}!{nick}@{}", self.server());
        if account {
            self.numeric(
                "900",
                &[&mask, nick],
                &format!("You are now logged in as {nick}"),
            );
        }
        if sasl {
            self.numeric("903", &[], "SASL authentication successful");
        }
        // Held while negotiation goes on, or until USER when SASL came first.
        let hold = match self.reg.as_deref_mut() {
            Some(reg) => {
                reg.sasl = Sasl::Done;
                reg.welcomed = true;
                reg.negotiating || !reg.user
            }
            None => false,
        };
        if !hold {
            self.release();
        }
        self.welcome_burst();
        if account && !sasl {
            self.nickserv_says(&format!("You are now identified for {nick}"));
        }
    }

    /// A refusal as its numeric; see `numerics.rs`.
    fn error(&mut self, code: ErrorCode, message: &str) {
        let registering = self.reg.as_ref().is_some_and(|r| !r.welcomed);
        if registering {
            let sasl = match self.reg.as_deref_mut() {
                Some(reg) => {
                    reg.hello_sent = false;
                    std::mem::replace(&mut reg.sasl, Sasl::Idle) == Sasl::InFlight
                }
                None => false,
            };
            if sasl {
                self.numeric(
                    "904",
                    &[],
                    &format!("SASL authentication failed: {message}"),
                );
                return;
            }
        }
        let (cmd, target) = match &self.last {
            Some(last) => (last.cmd, last.target.clone()),
            None => (Cmd::Other, String::new()),
        };
        if cmd == Cmd::History {
            // The chathistory spec answers every failure so, numerics or not.
            if let Some(extra) = self.extra.as_mut() {
                extra.compound = None;
            }
            self.tidy();
            let line = format!(
                ":{} FAIL CHATHISTORY MESSAGE_ERROR {target} :{message}\r\n",
                self.server()
            );
            self.put(line.as_bytes());
            return;
        }
        let (numeric, params) = super::numerics::numeric(code, cmd, &target);
        let message = if code == ErrorCode::NickRegistered && registering {
            format!("{message} (log in with SASL, or: /msg {NICKSERV} IDENTIFY PASSWORD)")
        } else {
            message.to_owned()
        };
        let message = message.as_str();
        match numeric {
            Some(numeric) => {
                let params: Vec<&str> = params.iter().map(String::as_str).collect();
                self.numeric(numeric, &params, message);
            }
            None if self.caps.has(super::caps::STANDARD_REPLIES) => {
                let line = format!(
                    ":{} FAIL {} {} :{message}\r\n",
                    self.server(),
                    command_of(cmd),
                    reply_code(code)
                );
                self.put(line.as_bytes());
            }
            None => self.server_notice(message),
        }
    }

    /// `members`: 353/366, or 352/315 when it answers `WHO`; then a join's held history.
    fn members(&mut self, room: &str, nicks: &[String], ops: &[String], voiced: &[String]) {
        let target = format!("#{room}");
        let server = self.server().to_owned();
        let ops: std::collections::HashSet<&str> = ops.iter().map(String::as_str).collect();
        let voiced: std::collections::HashSet<&str> = voiced.iter().map(String::as_str).collect();
        let mark = |n: &str| {
            if ops.contains(n) {
                "@"
            } else if voiced.contains(n) {
                "+"
            } else {
                ""
            }
        };
        let who = match self.extra.as_mut() {
            Some(extra) => match extra.who.iter().position(|r| **r == *room) {
                Some(i) => {
                    extra.who.remove(i);
                    true
                }
                None => false,
            },
            None => false,
        };
        if who {
            for n in nicks {
                let flags = format!("H{}", mark(n));
                let real = format!("0 {n}");
                self.numeric("352", &[&target, n, &server, &server, n, &flags], &real);
            }
            self.numeric("315", &[&target], "End of WHO list");
            self.tidy();
            return;
        }
        let userhost = self.caps.has(super::caps::USERHOST_IN_NAMES);
        let mut line = String::new();
        for n in nicks {
            if line.len() > 350 {
                self.numeric("353", &["=", &target], &line);
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(mark(n));
            line.push_str(n);
            if userhost {
                let _ = write!(line, "!{n}@{server}");
            }
        }
        if !line.is_empty() {
            self.numeric("353", &["=", &target], &line);
        }
        self.numeric("366", &[&target], "End of /NAMES list");
        let replay = self.extra.as_mut().and_then(|e| {
            if e.replay.as_ref().is_some_and(|(r, _)| **r == *room) {
                e.replay.take()
            } else {
                None
            }
        });
        if let Some((_, bytes)) = replay {
            self.put(&bytes);
        }
        self.tidy();
    }

    /// A join's history (or a page asked for): as `PRIVMSG`s with their time, as a tag
    /// with server-time, else in front of the text. At most `--irc-replay` of a join's;
    /// held until the room's names list. A client with chathistory asks for history
    /// itself: a join's is not replayed to it, and a page it asked for is all of it.
    fn replay(&mut self, room: &str, messages: &[ChatMessage]) {
        let joining = self
            .extra
            .as_ref()
            .and_then(|e| e.replay.as_ref())
            .is_some_and(|(r, _)| **r == *room);
        let asked = self.caps.has(super::caps::CHATHISTORY);
        // A page asked for is answered even when empty; a join's history only when it has
        // messages and the client does not ask for history itself.
        let page = asked && !joining;
        if !page && (messages.is_empty() || asked) {
            return;
        }
        let keep = if joining {
            self.config
                .irc_replay
                .unwrap_or(self.config.history_on_join)
        } else {
            usize::MAX
        };
        let skip = messages.len().saturating_sub(keep);
        let v = self.variant();
        let server = self.config.server_name.clone();
        let mut out = String::new();
        for m in &messages[skip..] {
            if v.time {
                message_lines(&mut out, m, &server, v);
                continue;
            }
            let mut m = m.clone();
            if let Some(notice) = m.event.take() {
                m.text = notice.describe(&m.from);
                let _ = write!(
                    out,
                    ":{server} NOTICE #{} :{}{}\r\n",
                    m.room,
                    hhmm(m.ts),
                    m.text
                );
                continue;
            }
            let stamp = hhmm(m.ts);
            m.text = m
                .text
                .split('\n')
                .map(|l| format!("{stamp}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            message_lines(&mut out, &m, &server, v);
        }
        if self.caps.has(super::caps::BATCH) {
            // An empty page (one asked for) is an empty batch, which tells the client so.
            let reference = format!("history{}", messages.get(skip).map_or(0, |m| m.seq));
            out = in_batch(&out, &reference, &format!("chathistory #{room}"), &server);
        }
        // Held for after the names list when it belongs to the join under way.
        match self.extra.as_mut().and_then(|e| e.replay.as_mut()) {
            Some((r, held)) if **r == *room => held.extend_from_slice(out.as_bytes()),
            _ => self.put(out.as_bytes()),
        }
    }

    /// Whether this connection was already shown the `QUIT` of `nick`'s disconnect at
    /// `ts` (its parts of every room share that `ts`); remembers it if not. Quits more
    /// than a few seconds older than `ts` are forgotten: a disconnect's parts are applied
    /// together.
    fn seen_quit(&mut self, nick: &str, ts: i64) -> bool {
        let quits = &mut self.extra().quits;
        quits.retain(|(_, at)| *at >= ts - QUIT_MEMORY_MS);
        let seen = quits.iter().any(|(n, at)| *at == ts && same_nick(n, nick));
        if !seen {
            quits.push((nick.into(), ts));
        }
        seen
    }

    /// `users`, answering `ISON` (303), `USERHOST` (302: `nick=+nick@server`, `-` when
    /// away) or `WHOIS` (311, 312, 301 when away, 330 when logged in, 318; 401 for a nick
    /// nobody holds).
    fn users(&mut self, users: &[chat_shared::UserInfo]) {
        let (cmd, asked) = match self.last.as_deref() {
            Some(last) => (last.cmd, last.target.clone()),
            None => (Cmd::Other, String::new()),
        };
        let server = self.server().to_owned();
        match cmd {
            Cmd::Ison => {
                let on: Vec<&str> = users.iter().map(|u| u.nick.as_str()).collect();
                self.numeric("303", &[], &on.join(" "));
            }
            Cmd::Userhost => {
                let replies: Vec<String> = users
                    .iter()
                    .take(5) // USERHOST answers five at most
                    .map(|u| {
                        let here = if u.away.is_some() { '-' } else { '+' };
                        format!("{n}={here}{n}@{server}", n = u.nick)
                    })
                    .collect();
                self.numeric("302", &[], &replies.join(" "));
            }
            _ => {
                for nick in asked.split(' ').filter(|n| !n.is_empty()) {
                    let Some(u) = users.iter().find(|u| same_nick(&u.nick, nick)) else {
                        self.numeric("401", &[nick], "No such nick/channel");
                        self.numeric("318", &[nick], "End of /WHOIS list");
                        continue;
                    };
                    let n = u.nick.as_str();
                    self.numeric("311", &[n, &user_of(n), &server, "*"], n);
                    self.numeric("312", &[n, &server], "chat-server");
                    if let Some(away) = &u.away {
                        self.numeric("301", &[n], away);
                    }
                    if u.account {
                        self.numeric("330", &[n, n], "is logged in as");
                    }
                    self.numeric("318", &[n], "End of /WHOIS list");
                }
            }
        }
    }

    /// `away`: this client's own is 305/306; a room-mate's an `AWAY` line under
    /// away-notify.
    fn away_event(&mut self, nick: &str, text: Option<&str>) {
        if self.is_me(nick) {
            let extra = self.extra();
            extra.away = text.map(Into::into);
            self.tidy();
            match text {
                Some(_) => self.numeric("306", &[], "You have been marked as being away"),
                None => self.numeric("305", &[], "You are no longer marked as being away"),
            }
            return;
        }
        if !self.caps.has(super::caps::AWAY_NOTIFY) {
            return;
        }
        let mut line = String::new();
        mask(&mut line, nick, &self.config.server_name);
        let _ = match text {
            Some(text) => write!(line, " AWAY :{text}\r\n"),
            None => write!(line, " AWAY\r\n"),
        };
        self.put(line.as_bytes());
    }

    /// A page that belongs to a [`Compound`] `CHATHISTORY` goes to it (`true`), not out.
    fn compound_page(&mut self, room: &str, messages: &[ChatMessage]) -> bool {
        let Some(compound) = self.extra.as_mut().and_then(|e| e.compound.as_deref_mut()) else {
            return false;
        };
        match compound {
            Compound::Around {
                room: r,
                limit,
                after,
            } if **r == *room => {
                let Some(later) = after.take() else {
                    // The page after the reference: keep at most half, then ask for the
                    // rest up to the reference, which the page before the first one kept
                    // includes (with nothing after it, the newest are up to it).
                    let keep = messages.len().min(*limit as usize / 2);
                    let before = messages.first().map(|m| m.id);
                    let rest = *limit - u32::try_from(keep).unwrap_or(0);
                    *after = Some(messages[..keep].to_vec());
                    let msg = ClientMsg::History {
                        room: room.to_owned(),
                        before,
                        limit: Some(rest),
                        after: None,
                    };
                    let next = (Cmd::History, format!("#{room}"), Request::new(msg));
                    self.extra().queue.push(next);
                    return true;
                };
                let mut page = messages.to_vec();
                page.extend(later);
                self.extra().compound = None;
                self.tidy();
                self.replay(room, &page);
                true
            }
            Compound::Targets { waiting, found, .. } => {
                let Some(at) = waiting.iter().position(|r| **r == *room) else {
                    return false;
                };
                waiting.remove(at);
                if let Some(newest) = messages.last() {
                    found.push((room.into(), newest.ts));
                }
                if waiting.is_empty() {
                    self.targets_done();
                }
                true
            }
            Compound::Around { .. } => false,
        }
    }

    /// `CHATHISTORY TARGETS`' answer, once every room's newest message is in: the rooms
    /// whose newest message is within the bounds, oldest activity first, in a
    /// `draft/chathistory-targets` batch.
    pub(super) fn targets_done(&mut self) {
        let Some(compound) = self.extra.as_mut().and_then(|e| e.compound.take()) else {
            return;
        };
        self.tidy();
        let Compound::Targets {
            from,
            to,
            limit,
            mut found,
            ..
        } = *compound
        else {
            return;
        };
        found.retain(|(_, ts)| (from..=to).contains(ts));
        found.sort_by_key(|(_, ts)| *ts);
        found.truncate(limit);
        let server = self.config.server_name.clone();
        let mut out = String::new();
        for (room, ts) in &found {
            let _ = write!(
                out,
                ":{server} CHATHISTORY TARGETS #{room} {}\r\n",
                iso_time(*ts)
            );
        }
        if self.caps.has(super::caps::BATCH) {
            out = in_batch(&out, "targets", "draft/chathistory-targets", &server);
        }
        self.put(out.as_bytes());
    }

    /// A room's bans: 367/368, or, answering `MODE +b`/`-b`, the change as IRC says it.
    fn ban_list(&mut self, room: &str, bans: &[chat_shared::BanEntry]) {
        let target = format!("#{room}");
        if let Some(Last {
            cmd: Cmd::Ban(on),
            target: what,
        }) = self.last.as_deref()
        {
            let sign = if *on { '+' } else { '-' };
            let banned = what.split(' ').find(|w| !w.starts_with('#')).unwrap_or("*");
            let mut line = String::new();
            let me = self.me().to_owned();
            mask(&mut line, &me, &self.config.server_name);
            let _ = write!(line, " MODE {target} {sign}b {banned}\r\n");
            self.put(line.as_bytes());
            return;
        }
        for b in bans {
            let mask = format!("{}!*@*", b.nick);
            let secs = (b.ts / 1000).to_string();
            self.numeric("367", &[&target, &mask, &b.by, &secs], "");
        }
        self.numeric("368", &[&target], "End of channel ban list");
    }

    /// Takes in a notice: topics and modes are kept for `TOPIC` and `MODE`, and this
    /// client's kick leaves the room.
    fn saw(&mut self, room: &str, by: &str, ts: i64, notice: &RoomNotice) {
        match notice {
            RoomNotice::Topic { text } => {
                if let Some(seen) = self.room_mut(room) {
                    seen.topic = (!text.is_empty()).then(|| {
                        Box::new(Topic {
                            text: text.clone(),
                            by: by.to_owned(),
                            ts,
                        })
                    });
                }
            }
            RoomNotice::Mode(change) => {
                if let Some(seen) = self.room_mut(room) {
                    see_modes(seen, change);
                }
            }
            RoomNotice::Kicked { nick, .. } if self.is_me(nick) => self.leave(room),
            RoomNotice::Kicked { .. } | RoomNotice::Role { .. } => {}
        }
    }
}

/// `lines` as a batch of type and parameters `header` (`chathistory #room`): between
/// `BATCH +reference` and `BATCH -reference`, each line tagged `batch=reference`.
pub(super) fn in_batch(lines: &str, reference: &str, header: &str, server: &str) -> String {
    let mut out = format!(":{server} BATCH +{reference} {header}\r\n");
    for line in lines.split_inclusive("\r\n") {
        match line.strip_prefix('@') {
            Some(tagged) => {
                let _ = write!(out, "@batch={reference};{tagged}");
            }
            None => {
                let _ = write!(out, "@batch={reference} {line}");
            }
        }
    }
    let _ = write!(out, ":{server} BATCH -{reference}\r\n");
    out
}

/// An error code as standard-replies write codes: `RATE_LIMITED`.
fn reply_code(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_ascii_uppercase))
        .unwrap_or_else(|| "UNKNOWN".to_owned())
}

/// The IRC command a request came from, for a `FAIL`.
fn command_of(cmd: Cmd) -> &'static str {
    match cmd {
        Cmd::Hello => "NICK",
        Cmd::Join => "JOIN",
        Cmd::Part => "PART",
        Cmd::Say | Cmd::Dm => "PRIVMSG",
        Cmd::Nick => "NICK",
        Cmd::Topic => "TOPIC",
        Cmd::Kick => "KICK",
        Cmd::Mode | Cmd::Ban(_) | Cmd::Bans => "MODE",
        Cmd::Invite => "INVITE",
        Cmd::Who => "WHO",
        Cmd::Names => "NAMES",
        Cmd::List => "LIST",
        Cmd::History => "CHATHISTORY",
        Cmd::Account => "REGISTER",
        Cmd::Ison => "ISON",
        Cmd::Userhost => "USERHOST",
        Cmd::Whois => "WHOIS",
        Cmd::Other => "*",
    }
}

fn see_modes(seen: &mut Room, change: &ModeChange) {
    for (value, bit) in [
        (change.invite_only, INVITE_ONLY),
        (change.moderated, MODERATED),
        (change.topic_locked, TOPIC_LOCKED),
        (change.secret, SECRET),
    ] {
        match value {
            Some(true) => seen.modes |= bit,
            Some(false) => seen.modes &= !bit,
            None => {}
        }
    }
    if let Some(key) = &change.key {
        seen.key = key.as_deref().map(Into::into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_tags_every_line_and_keeps_the_other_tags() {
        let lines = "@time=x :a!a@s PRIVMSG #r :1\r\n:a!a@s PRIVMSG #r :2\r\n";
        assert_eq!(
            in_batch(lines, "h1", "chathistory #r", "s"),
            ":s BATCH +h1 chathistory #r\r\n@batch=h1;time=x :a!a@s PRIVMSG #r :1\r\n\
             @batch=h1 :a!a@s PRIVMSG #r :2\r\n:s BATCH -h1\r\n"
        );
        assert_eq!(reply_code(ErrorCode::RateLimited), "RATE_LIMITED");
    }

    #[test]
    fn server_time_is_iso_8601_in_utc_with_milliseconds() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(hhmm(1_700_000_000_123), "[22:13] ");
    }

    #[test]
    fn long_and_multi_line_texts_become_several_lines_without_losing_a_byte() {
        let long = "é".repeat(300);
        let got: Vec<&str> = pieces(&long).collect();
        assert!(got.len() == 2 && got.iter().all(|p| p.len() <= MAX_TEXT_PER_LINE));
        assert_eq!(got.concat(), long);
        let got: Vec<&str> = pieces("one\ntwo").collect();
        assert_eq!(got, ["one", "two"]);
    }

    fn message(text: &str) -> ChatMessage {
        ChatMessage {
            id: Uuid::nil(),
            room: "rust".into(),
            seq: 1,
            from: "bob".into(),
            text: text.into(),
            ts: 0,
            action: false,
            account: false,
            event: None,
            file: None,
        }
    }

    #[test]
    fn a_multi_line_message_is_several_privmsgs_and_only_the_first_has_the_msgid() {
        let msg = ServerMsg::Message(message("a\nb"));
        let plain = encode_shared(&msg, "srv", Variant::default(), false);
        assert_eq!(
            &plain[..],
            b":bob!bob@srv PRIVMSG #rust :a\r\n:bob!bob@srv PRIVMSG #rust :b\r\n"
        );
        let v = Variant {
            msgid: true,
            time: true,
            account: true,
        };
        let tagged = String::from_utf8(encode_shared(&msg, "srv", v, false).to_vec()).unwrap();
        let lines: Vec<&str> = tagged.lines().collect();
        assert!(lines[0].starts_with(&format!("@msgid={};time=1970", Uuid::nil())));
        assert!(lines[1].starts_with("@time=1970") && !lines[1].contains("msgid"));
        // A logged-in sender's lines each carry its account, first of the tags.
        let mut m = message("a\nb");
        m.account = true;
        let tagged = encode_shared(&ServerMsg::Message(m), "srv", v, false);
        let tagged = String::from_utf8(tagged.to_vec()).unwrap();
        let lines: Vec<&str> = tagged.lines().collect();
        assert!(lines[0].starts_with("@account=bob;msgid="), "{tagged}");
        assert!(lines[1].starts_with("@account=bob;time=1970"), "{tagged}");
    }

    #[test]
    fn room_notices_are_native_irc_commands() {
        let mut m = message("");
        m.from = "alice".into();
        let cases = [
            (
                RoomNotice::Kicked {
                    nick: "bob".into(),
                    reason: "spam".into(),
                },
                ":alice!alice@srv KICK #rust bob :spam\r\n",
            ),
            (
                RoomNotice::Topic { text: "hi".into() },
                ":alice!alice@srv TOPIC #rust :hi\r\n",
            ),
            (
                RoomNotice::Role {
                    nick: "bob".into(),
                    role: Role::Op,
                    was: Some(Role::Member),
                },
                ":alice!alice@srv MODE #rust +o bob\r\n",
            ),
            (
                RoomNotice::Role {
                    nick: "bob".into(),
                    role: Role::Op,
                    was: Some(Role::Voice),
                },
                ":alice!alice@srv MODE #rust +o-v bob bob\r\n",
            ),
            (
                RoomNotice::Role {
                    nick: "bob".into(),
                    role: Role::Member,
                    was: None,
                },
                ":alice!alice@srv MODE #rust -ov bob bob\r\n",
            ),
            (
                RoomNotice::Mode(ModeChange {
                    moderated: Some(true),
                    key: Some(Some("k".into())),
                    ..ModeChange::default()
                }),
                ":alice!alice@srv MODE #rust +mk k\r\n",
            ),
        ];
        for (notice, want) in cases {
            m.event = Some(notice);
            let msg = ServerMsg::Message(m.clone());
            let got = encode_shared(&msg, "srv", Variant::default(), false);
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }
}
