//! IRC commands to requests, or answered here: the dispatch of every command, what IRC
//! answers from the connection's own state (`PING`, `TOPIC #room`, `MODE #room`, `OPER`),
//! and everything else as the request it means. A command with a comma list (`JOIN
//! #a,#b`) becomes several requests, queued. Registration's commands are in
//! `register.rs`.

use chat_shared::{ClientMsg, ModeChange, Request};

use super::codec::Message;
use super::{Cmd, Compound, IrcWire, Last};
use super::{INVITE_ONLY, MODERATED, SECRET, TOPIC_LOCKED};
use crate::wire::Inbound;

/// Commands allowed before registration.
const BEFORE_WELCOME: [&str; 9] = [
    "CAP",
    "NICK",
    "USER",
    "PASS",
    "PING",
    "PONG",
    "QUIT",
    "AUTHENTICATE",
    "PRIVMSG",
];

/// The most messages one `CHATHISTORY` returns (ISUPPORT `CHATHISTORY`), the protocol's
/// largest `history` page.
pub(super) const HISTORY_MAX: u32 = 500;

/// The pseudo-user that takes `IDENTIFY` and `REGISTER`, as on most networks.
pub(super) const NICKSERV: &str = "NickServ";

impl<R, W> IrcWire<R, W> {
    /// Turns one line into a request, or answers it.
    pub(super) fn command(&mut self, msg: Message) -> Inbound {
        let registering = self.nick.is_none();
        if registering && !BEFORE_WELCOME.contains(&msg.command.as_str()) {
            self.numeric("451", &[], "You have not registered");
            return Inbound::Handled;
        }
        match msg.command.as_str() {
            "CAP" => self.cap(&msg),
            "NICK" => self.nick_cmd(&msg),
            "USER" => self.user(&msg),
            "PASS" => self.pass(&msg),
            "AUTHENTICATE" => self.authenticate(&msg),
            "PING" => {
                let server = self.server().to_owned();
                let line = format!(":{server} PONG {server} :{}\r\n", msg.arg(0));
                self.put(line.as_bytes());
                Inbound::Handled
            }
            // Only a registered client is pinged; an early PONG answers nothing.
            "PONG" if registering => Inbound::Handled,
            "PONG" => self.request(
                Cmd::Other,
                "",
                ClientMsg::Pong {
                    token: token(msg.arg(0)),
                },
            ),
            "QUIT" => self.request(
                Cmd::Other,
                "",
                ClientMsg::Quit {
                    reason: some(msg.arg(0)),
                },
            ),
            "PRIVMSG" | "NOTICE" => self.privmsg(&msg),
            "JOIN" => self.join(&msg),
            "PART" => self.part(&msg),
            "TOPIC" => self.topic(&msg),
            "NAMES" => self.names(&msg, Cmd::Names),
            "WHO" => self.names(&msg, Cmd::Who),
            "LIST" => self.request(Cmd::List, "", ClientMsg::Rooms {}),
            "KICK" => self.kick(&msg),
            "INVITE" => self.invite(&msg),
            "MODE" => self.mode(&msg),
            "AWAY" => self.away(&msg),
            "ISON" => self.lookup(&msg, Cmd::Ison),
            "USERHOST" => self.lookup(&msg, Cmd::Userhost),
            "WHOIS" => self.lookup(&msg, Cmd::Whois),
            "OPER" => self.oper(&msg),
            "KILL" if !msg.arg(0).is_empty() => self.request(
                Cmd::Other,
                msg.arg(0),
                ClientMsg::Kill {
                    nick: msg.arg(0).to_owned(),
                    reason: some(msg.arg(1)),
                },
            ),
            "CHATHISTORY" => self.chathistory(&msg),
            "NICKSERV" | "NS" => self.nickserv(&msg.params.join(" ")),
            "USERHOSTS" | "MOTD" => {
                self.motd();
                Inbound::Handled
            }
            _ => {
                self.numeric("421", &[&msg.command], "Unknown command");
                Inbound::Handled
            }
        }
    }

    /// Hands `msg` to the session, remembering what it was about.
    pub(super) fn request(&mut self, cmd: Cmd, target: &str, msg: ClientMsg) -> Inbound {
        self.last = Some(Box::new(Last {
            cmd,
            target: target.to_owned(),
        }));
        Inbound::Request(Request::new(msg))
    }

    /// Several requests of one command: the first now, the rest queued.
    pub(super) fn requests(&mut self, mut all: Vec<(Cmd, String, ClientMsg)>) -> Inbound {
        if all.is_empty() {
            return Inbound::Handled;
        }
        let (cmd, target, first) = all.remove(0);
        if !all.is_empty() {
            let extra = self.extra();
            for (cmd, target, msg) in all.into_iter().rev() {
                extra.queue.push((cmd, target, Request::new(msg)));
            }
        }
        self.request(cmd, &target, first)
    }

    pub(super) fn need_params(&mut self, msg: &Message, n: usize) -> bool {
        if msg.params.len() < n || msg.params.iter().take(n).any(String::is_empty) {
            self.numeric("461", &[&msg.command], "Not enough parameters");
            return false;
        }
        true
    }

    fn privmsg(&mut self, msg: &Message) -> Inbound {
        let notice = msg.command == "NOTICE";
        if msg.arg(0).is_empty() {
            self.numeric("411", &[], &format!("No recipient given ({})", msg.command));
            return Inbound::Handled;
        }
        if msg.params.len() < 2 || msg.arg(1).is_empty() {
            self.numeric("412", &[], "No text to send");
            return Inbound::Handled;
        }
        let (text, action) = match ctcp(msg.arg(1)) {
            Some(("ACTION", text)) => (text, true),
            // Other CTCP (VERSION, PING, …) has no place in the protocol: not passed on.
            Some(_) => return Inbound::Handled,
            None => (msg.arg(1), false),
        };
        let max_text = self.config.live().max_text;
        if text.len() > max_text {
            let why = format!(
                "Message too long ({} bytes, the limit is {max_text}): not sent",
                text.len(),
            );
            self.numeric("417", &[], &why);
            return Inbound::Handled;
        }
        let mut all = Vec::new();
        for target in msg.arg(0).split(',').filter(|t| !t.is_empty()) {
            if target.eq_ignore_ascii_case(NICKSERV) {
                if !notice {
                    let inbound = self.nickserv(text);
                    if !matches!(inbound, Inbound::Handled) {
                        return inbound;
                    }
                }
                continue;
            }
            if self.nick.is_none() {
                self.numeric("451", &[], "You have not registered");
                return Inbound::Handled;
            }
            if let Some(room) = target.strip_prefix('#') {
                all.push((
                    Cmd::Say,
                    target.to_owned(),
                    ClientMsg::Say {
                        room: room.to_owned(),
                        text: text.to_owned(),
                        action,
                    },
                ));
            } else if target.starts_with(['&', '+', '!', '$']) {
                self.numeric("403", &[target], "No such channel (rooms begin with #)");
            } else {
                all.push((
                    Cmd::Dm,
                    target.to_owned(),
                    ClientMsg::Dm {
                        to: target.to_owned(),
                        // An action DM has no flag of its own: it reads as one.
                        text: if action {
                            format!("* {text}")
                        } else {
                            text.to_owned()
                        },
                    },
                ));
            }
        }
        // A labeled message under echo-message is answered by its echo: told by its id.
        if all.len() == 1 && self.caps.has(super::caps::ECHO_MESSAGE) && self.label_open() {
            let id = uuid::Uuid::now_v7();
            self.extra().echo = Some((id, None));
            let mut inbound = self.requests(all);
            if let Inbound::Request(req) = &mut inbound {
                req.id = Some(id);
            }
            return inbound;
        }
        self.requests(all)
    }

    /// A room name from `#room`; anything else is answered 403 and is `None`.
    fn channel<'a>(&mut self, target: &'a str) -> Option<&'a str> {
        match target.strip_prefix('#') {
            Some(room) if !room.is_empty() => Some(room),
            _ => {
                self.numeric("403", &[target], "No such channel (rooms begin with #)");
                None
            }
        }
    }

    fn join(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 1) {
            return Inbound::Handled;
        }
        if msg.arg(0) == "0" {
            let all = self
                .rooms
                .iter()
                .map(|r| {
                    let msg = ClientMsg::Part {
                        room: r.name.to_string(),
                        reason: None,
                    };
                    (Cmd::Part, format!("#{}", r.name), msg)
                })
                .collect();
            return self.requests(all);
        }
        let mut keys = msg.arg(1).split(',');
        let mut all = Vec::new();
        for target in msg.arg(0).split(',').filter(|t| !t.is_empty()) {
            let key = keys.next().filter(|k| !k.is_empty()).map(str::to_owned);
            if let Some(room) = self.channel(target) {
                let msg = ClientMsg::Join {
                    room: room.to_owned(),
                    since: None,
                    key,
                };
                all.push((Cmd::Join, target.to_owned(), msg));
            }
        }
        self.requests(all)
    }

    fn part(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 1) {
            return Inbound::Handled;
        }
        let mut all = Vec::new();
        for target in msg.arg(0).split(',').filter(|t| !t.is_empty()) {
            if let Some(room) = self.channel(target) {
                let msg = ClientMsg::Part {
                    room: room.to_owned(),
                    reason: some(msg.arg(1)),
                };
                all.push((Cmd::Part, target.to_owned(), msg));
            }
        }
        self.requests(all)
    }

    /// `TOPIC #room` shows the topic as last seen (332/333, or 331); with a text, sets it
    /// (an empty text clears it).
    fn topic(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 1) {
            return Inbound::Handled;
        }
        let target = msg.arg(0);
        let Some(room) = self.channel(target) else {
            return Inbound::Handled;
        };
        if msg.params.len() >= 2 {
            let text = msg.arg(1).to_owned();
            return self.request(
                Cmd::Topic,
                target,
                ClientMsg::Topic {
                    room: room.to_owned(),
                    text,
                },
            );
        }
        match self.room(&room.to_lowercase()) {
            None => self.numeric("442", &[target], "You're not on that channel"),
            Some(seen) => match seen.topic.as_deref() {
                Some(topic) => {
                    let (text, by, ts) = (topic.text.clone(), topic.by.clone(), topic.ts);
                    self.topic_numerics(target, &text, &by, ts);
                }
                None => self.numeric("331", &[target], "No topic is set"),
            },
        }
        Inbound::Handled
    }

    /// `NAMES` and `WHO` for rooms ask for the member list; its answer is rendered as one
    /// or the other.
    fn names(&mut self, msg: &Message, cmd: Cmd) -> Inbound {
        let targets: Vec<String> = if msg.arg(0).is_empty() {
            self.rooms.iter().map(|r| format!("#{}", r.name)).collect()
        } else {
            msg.arg(0).split(',').map(str::to_owned).collect()
        };
        let mut all = Vec::new();
        for target in targets {
            let Some(room) = target.strip_prefix('#').filter(|r| !r.is_empty()) else {
                // A nick or a mask: phase 2 (a lookup the protocol has no request for).
                let end = if cmd == Cmd::Who { "315" } else { "366" };
                let what = if cmd == Cmd::Who {
                    "End of WHO list"
                } else {
                    "End of NAMES list"
                };
                self.numeric(end, &[&target], what);
                continue;
            };
            let room = room.to_lowercase();
            if cmd == Cmd::Who {
                self.extra().who.push(room.as_str().into());
            }
            all.push((cmd, target.clone(), ClientMsg::Who { room }));
        }
        self.requests(all)
    }

    fn kick(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 2) {
            return Inbound::Handled;
        }
        let target = msg.arg(0).to_owned();
        let Some(room) = self.channel(&target).map(str::to_owned) else {
            return Inbound::Handled;
        };
        let all = msg
            .arg(1)
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|nick| {
                let msg = ClientMsg::Kick {
                    room: room.clone(),
                    nick: nick.to_owned(),
                    reason: some(msg.arg(2)),
                };
                (Cmd::Kick, format!("{target} {nick}"), msg)
            })
            .collect();
        self.requests(all)
    }

    fn invite(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 2) {
            return Inbound::Handled;
        }
        let Some(room) = self.channel(msg.arg(1)).map(str::to_owned) else {
            return Inbound::Handled;
        };
        let target = format!("{} {}", msg.arg(0), msg.arg(1));
        self.request(
            Cmd::Invite,
            &target,
            ClientMsg::Invite {
                room,
                nick: msg.arg(0).to_owned(),
            },
        )
    }

    /// `MODE #room [changes]` and `MODE nick`: room changes map onto the moderation
    /// requests (`o` and `v` onto roles, `b` onto bans, `i k m t s` onto one `mode`).
    fn mode(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 1) {
            return Inbound::Handled;
        }
        let target = msg.arg(0).to_owned();
        let Some(room) = target.strip_prefix('#').map(str::to_lowercase) else {
            if self.is_me(&target) {
                // No user modes are kept; `MODE me +i`, which clients send, changes nothing.
                self.numeric("221", &[], "+");
            } else {
                self.numeric("502", &[], "Can't change mode for other users");
            }
            return Inbound::Handled;
        };
        if msg.params.len() < 2 {
            self.channel_modes(&target, &room);
            return Inbound::Handled;
        }
        let mut args = msg.params[2..].iter().map(String::as_str);
        let mut change = ModeChange::default();
        let mut all = Vec::new();
        let mut sign = true;
        for c in msg.arg(1).chars() {
            let on = sign;
            match c {
                '+' => sign = true,
                '-' => sign = false,
                'i' => change.invite_only = Some(on),
                'm' => change.moderated = Some(on),
                't' => change.topic_locked = Some(on),
                's' => change.secret = Some(on),
                'n' => {} // no outside messages: always so here
                'k' if on => match args.next() {
                    Some(key) => change.key = Some(Some(key.to_owned())),
                    None => self.numeric("696", &[&target, "k", "*"], "You must specify a key"),
                },
                'k' => {
                    let _ = args.next(); // `-k KEY` names the key it removes
                    change.key = Some(None);
                }
                'o' | 'v' | 'b' => {
                    let Some(arg) = args.next() else {
                        if c == 'b' {
                            all.push((
                                Cmd::Bans,
                                target.clone(),
                                ClientMsg::Bans { room: room.clone() },
                            ));
                        }
                        continue;
                    };
                    // A ban mask `nick!user@host` bans the nick: bans are by account, or a
                    // guest's nick and address, not by mask.
                    let nick = arg.split('!').next().unwrap_or(arg).to_owned();
                    let room = room.clone();
                    let (cmd, msg) = match (c, on) {
                        ('o', true) => (Cmd::Mode, ClientMsg::Op { room, nick }),
                        ('o', false) => (Cmd::Mode, ClientMsg::Deop { room, nick }),
                        ('v', true) => (Cmd::Mode, ClientMsg::Voice { room, nick }),
                        ('v', false) => (Cmd::Mode, ClientMsg::Devoice { room, nick }),
                        (_, true) => (Cmd::Ban(true), ClientMsg::Ban { room, nick }),
                        (_, false) => (Cmd::Ban(false), ClientMsg::Unban { room, nick }),
                    };
                    all.push((cmd, format!("{target} {arg}"), msg));
                }
                other => {
                    self.numeric(
                        "472",
                        &[&other.to_string()],
                        "is an unknown mode char to me",
                    );
                }
            }
        }
        if !change.is_empty() {
            all.insert(
                0,
                (Cmd::Mode, target.clone(), ClientMsg::Mode { room, change }),
            );
        }
        self.requests(all)
    }

    /// `CHATHISTORY`, mapped onto `history` pages by message id: `LATEST` and `BEFORE` page
    /// back, `AFTER` and `BETWEEN` forwards (`after`, and `before` for `BETWEEN`'s second
    /// reference), `AROUND` is a page after the reference and then one up to it (see
    /// [`Compound`]), and `TARGETS` the newest message of each joined room. References are
    /// `msgid=` (the only `MSGREFTYPES`: the protocol pages by id); `TARGETS` takes the
    /// spec's `timestamp=` bounds. `LATEST` after a msgid or a timestamp is answered as
    /// `LATEST *`: more than asked, which clients drop by msgid.
    fn chathistory(&mut self, msg: &Message) -> Inbound {
        let sub = msg.arg(0).to_ascii_uppercase();
        let fail = |w: &mut Self, code: &str, text: &str| {
            let line = format!(
                ":{} FAIL CHATHISTORY {code} {} :{text}\r\n",
                w.server(),
                if sub.is_empty() { "*" } else { &sub }
            );
            w.put(line.as_bytes());
            Inbound::Handled
        };
        if !matches!(
            sub.as_str(),
            "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "BETWEEN" | "TARGETS"
        ) {
            return fail(self, "INVALID_PARAMS", "unknown subcommand");
        }
        let last = if sub == "BETWEEN" { 4 } else { 3 };
        if msg.params.len() <= last {
            return fail(self, "NEED_MORE_PARAMS", "missing parameters");
        }
        let Some(limit) = msg.arg(last).parse::<u32>().ok().filter(|&l| l > 0) else {
            return fail(self, "INVALID_PARAMS", "the limit is a number above 0");
        };
        let limit = limit.min(HISTORY_MAX);
        if sub == "TARGETS" {
            let (Some(from), Some(to)) = (
                msg.arg(1).strip_prefix("timestamp=").and_then(parse_iso),
                msg.arg(2).strip_prefix("timestamp=").and_then(parse_iso),
            ) else {
                return fail(
                    self,
                    "INVALID_PARAMS",
                    "TARGETS takes two timestamp= bounds",
                );
            };
            return self.targets(from.min(to), from.max(to), limit);
        }
        let target = msg.arg(1).to_owned();
        let Some(room) = target
            .strip_prefix('#')
            .filter(|r| !r.is_empty())
            .map(str::to_lowercase)
        else {
            return fail(self, "INVALID_TARGET", "only #rooms have history here");
        };
        let reference = |i: usize| -> Result<Option<uuid::Uuid>, ()> {
            match msg.arg(i) {
                "*" => Ok(None),
                r => r
                    .strip_prefix("msgid=")
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    .map(Some)
                    .ok_or(()),
            }
        };
        // `LATEST` takes any reference (see above); the others only message ids.
        let first = if sub == "LATEST" {
            Ok(None)
        } else {
            reference(2)
        };
        let Ok(first) = first else {
            return fail(
                self,
                "INVALID_PARAMS",
                "references are msgid=ID (MSGREFTYPES=msgid)",
            );
        };
        let second = match sub.as_str() {
            "BETWEEN" => reference(3).unwrap_or(None),
            _ => None,
        };
        let (before, after) = match (sub.as_str(), first, second) {
            ("LATEST", _, _) => (None, None),
            ("BEFORE", Some(id), _) => (Some(id), None),
            ("AFTER" | "AROUND", Some(id), _) => (None, Some(id)),
            ("BETWEEN", Some(a), Some(b)) => (Some(b), Some(a)),
            _ => return fail(self, "INVALID_PARAMS", "a msgid=ID reference is needed"),
        };
        let limit = if sub == "AROUND" {
            // The page after the reference first, at most half; then the rest up to it.
            self.extra().compound = Some(Box::new(Compound::Around {
                room: room.as_str().into(),
                limit,
                after: None,
            }));
            (limit / 2).max(1)
        } else {
            limit
        };
        let msg = ClientMsg::History {
            room,
            before,
            limit: Some(limit),
            after,
        };
        self.request(Cmd::History, &target, msg)
    }

    /// `CHATHISTORY TARGETS`: the newest message of each joined room (history keeps no
    /// DMs), asked for room by room; [`IrcWire::compound_page`] collects the answers.
    fn targets(&mut self, from: i64, to: i64, limit: u32) -> Inbound {
        let rooms: Vec<Box<str>> = self.rooms.iter().map(|r| r.name.clone()).collect();
        let all = rooms
            .iter()
            .map(|room| {
                let msg = ClientMsg::History {
                    room: room.to_string(),
                    before: None,
                    limit: Some(1),
                    after: None,
                };
                (Cmd::History, format!("#{room}"), msg)
            })
            .collect();
        let limit = limit as usize;
        let empty = rooms.is_empty();
        self.extra().compound = Some(Box::new(Compound::Targets {
            from,
            to,
            limit,
            waiting: rooms,
            found: Vec::new(),
        }));
        if empty {
            self.targets_done();
            return Inbound::Handled;
        }
        self.requests(all)
    }

    /// `MODE #room`: 324 from what this connection last saw.
    fn channel_modes(&mut self, target: &str, room: &str) {
        let Some(seen) = self.room(room) else {
            self.numeric("442", &[target], "You're not on that channel");
            return;
        };
        let mut modes = String::from("+n");
        for (bit, c) in [
            (INVITE_ONLY, 'i'),
            (MODERATED, 'm'),
            (TOPIC_LOCKED, 't'),
            (SECRET, 's'),
        ] {
            if seen.modes & bit != 0 {
                modes.push(c);
            }
        }
        let mut params = vec![target.to_owned()];
        if let Some(key) = &seen.key {
            modes.push('k');
            params.push(modes.clone());
            params.push(key.to_string());
        } else {
            params.push(modes.clone());
        }
        let me = self.me().to_owned();
        let server = self.server().to_owned();
        let line = format!(":{server} 324 {me} {}\r\n", params.join(" "));
        self.put(line.as_bytes());
    }

    /// `AWAY [:text]`: an `away` request; its answer (305/306) and room-mates'
    /// `AWAY` lines are rendered from the `away` event.
    fn away(&mut self, msg: &Message) -> Inbound {
        let text = some(msg.arg(0));
        self.request(Cmd::Other, "", ClientMsg::Away { text })
    }

    /// `ISON`, `USERHOST` and `WHOIS`: who of the nicks named is online, from the nick
    /// directory (a `whois` request), answered as `cmd` wants (see `render::users`).
    fn lookup(&mut self, msg: &Message, cmd: Cmd) -> Inbound {
        let nicks: Vec<String> = match cmd {
            // `WHOIS [server] nick[,nick]`: the last parameter names them.
            Cmd::Whois => msg
                .params
                .last()
                .map(|p| p.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            _ => msg
                .params
                .iter()
                .flat_map(|p| p.split(' '))
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let nicks: Vec<String> = nicks.into_iter().filter(|n| !n.is_empty()).collect();
        if nicks.is_empty() {
            if cmd == Cmd::Whois {
                self.numeric("431", &[], "No nickname given");
            } else {
                self.numeric("461", &[&msg.command], "Not enough parameters");
            }
            return Inbound::Handled;
        }
        let target = nicks.join(" ");
        self.request(cmd, &target, ClientMsg::Whois { nicks })
    }

    /// `OPER NAME PASSWORD`: admins are the accounts `--admins` names, and an admin's
    /// powers come with logging in to the account, so this only confirms them.
    fn oper(&mut self, msg: &Message) -> Inbound {
        if !self.need_params(msg, 2) {
            return Inbound::Handled;
        }
        let name = msg.arg(0);
        let admin = self.is_me(name)
            && self
                .config
                .live()
                .is_admin_skeleton(&chat_shared::validate::name_skeleton(name));
        if !admin {
            self.numeric(
                "491",
                &[],
                "No O-lines for your host (admins are --admins accounts)",
            );
        } else if !self.account {
            self.numeric(
                "464",
                &[],
                "Log in to the account first (SASL, or NickServ IDENTIFY)",
            );
        } else {
            self.numeric("381", &[], "You are now an IRC operator");
        }
        Inbound::Handled
    }
}

/// The token of a `PONG`: a number when it is one (the session pings with numbers).
fn token(s: &str) -> serde_json::Value {
    s.parse::<i64>()
        .map_or_else(|_| serde_json::Value::from(s), serde_json::Value::from)
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

/// server-time's `2026-12-01T15:10:05.123Z` (milliseconds optional) as Unix milliseconds;
/// `None` for anything else.
pub(super) fn parse_iso(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    if ms.is_empty() || ms.len() > 9 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{ms:0<3}").get(..3)?.parse().ok()?;
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&min)
        && (0..=60).contains(&sec)
        && (0..=9999).contains(&y);
    if !valid {
        return None;
    }
    // Howard Hinnant's `days_from_civil`, the inverse of `render::civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms)
}

/// A CTCP message (`\x01VERB text\x01`) taken apart.
fn ctcp(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    Some(inner.split_once(' ').unwrap_or((inner, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctcp_action_is_taken_apart_and_plain_text_is_not_ctcp() {
        assert_eq!(ctcp("\x01ACTION waves\x01"), Some(("ACTION", "waves")));
        assert_eq!(ctcp("\x01VERSION\x01"), Some(("VERSION", "")));
        assert_eq!(ctcp("hello"), None);
    }

    #[test]
    fn server_time_parses_back_to_the_milliseconds_it_was_made_from() {
        for ms in [0, 951_782_400_000, 1_700_000_000_123, 4_102_444_799_999] {
            assert_eq!(parse_iso(&super::super::render::iso_time(ms)), Some(ms));
        }
        assert_eq!(parse_iso("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        for bad in [
            "",
            "Z",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "x-1-1T0:0:0Z",
            "2023-11-14T22:13:20.x1Z",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }
}
