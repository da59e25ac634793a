//! Parsing of what the user submits: plain text or a `/command`.
//!
//! Parsing is separate from acting on it (`update`) so the syntax, including its error
//! messages, is testable on its own.
//!
//! Layout:
//! - [`Input`]: a parsed submitted line, with [`RoleChange`] for the role commands.
//! - [`parse`]: text → [`Input`] or a message for the user; below it the moderation
//!   commands' pieces: an optional leading `#room`, `/mode` flags, `/kline` durations.
//! - [`COMMANDS`] and [`HELP`]: the command list for Tab completion and `/help`.

use chat_shared::ModeChange;

/// Every command, for Tab completion.
pub const COMMANDS: &[&str] = &[
    "/ban",
    "/bans",
    "/deop",
    "/devoice",
    "/download",
    "/help",
    "/invite",
    "/join",
    "/kick",
    "/kill",
    "/kline",
    "/klines",
    "/me",
    "/mode",
    "/msg",
    "/nick",
    "/op",
    "/owner",
    "/part",
    "/password",
    "/quit",
    "/reconnect",
    "/register",
    "/rooms",
    "/topic",
    "/transfers",
    "/unban",
    "/unkline",
    "/upload",
    "/voice",
    "/who",
];

/// Commands whose nick argument is usually someone outside the current room, so Tab offers
/// every nick the client knows rather than the room's members.
pub const ANY_NICK_COMMANDS: &[&str] = &["/invite", "/kill", "/kline", "/msg", "/query"];

/// The `/help` text, one line per entry.
pub const HELP: &[&str] = &[
    "/join ROOM          join (or create) a room and switch to it",
    "/part [ROOM] [WHY]  leave the current room (or ROOM); closes a DM tab",
    "/nick NAME          change your nick",
    "/msg NICK TEXT      private message; opens a DM tab",
    "/me TEXT            action, shown as \"* nick TEXT\"",
    "/who [ROOM]         list the members of the current room (or ROOM)",
    "/rooms              list the rooms on the server",
    "/register PASSWORD  register your nick (start with --password-file next time)",
    "/password OLD NEW   change your account's password",
    "/upload PATH [#ROOM|@NICK]  share a file here (or in ROOM, or with NICK)",
    "/download N|ID [DIR]  save file N of the scrollback ([file N]) into DIR",
    "/transfers          uploads and downloads, with their progress",
    "/help               this list",
    "/quit [WHY]         leave (also Ctrl-C)",
    "//text              send \"/text\" literally",
    "room moderation (the current room, or #ROOM as the first argument):",
    "/topic [TEXT]       show the topic, or set it (/topic - clears it)",
    "/op /deop NICK      make NICK an op, or a member again",
    "/voice /devoice NICK  let NICK speak in a moderated (+m) room, or not",
    "/owner NICK         hand the room over to NICK (a registered nick)",
    "/kick NICK [WHY]    remove NICK from the room",
    "/ban NICK, /unban NICK, /bans  ban NICK (kicked if here), lift it, list bans",
    "/invite NICK [ROOM] invite NICK (lets them past +i and the key once)",
    "/join ROOM [KEY]    join a room that has a key (+k)",
    "/mode [ROOM] [+i|-i|+k KEY|-k|+m|-m|+t|-t|+s|-s ...]  show or change modes",
    "      i invite-only, k key, m moderated, t topic for ops only, s secret",
    "server admins: /kill NICK [WHY], /kline MASK [30m|2h|7d] WHY, /unkline MASK, /klines",
    "/reconnect          connect again after being killed or banned",
    "keys: Alt-1..9 / Ctrl-N / Ctrl-P switch tabs, PgUp/PgDn or wheel scroll, End live,",
    "      F2 members, Tab complete, Up/Down history, Ctrl-A/E/W/U edit,",
    "      Ctrl-J join the room you were last invited to",
];

/// Longest room key the server accepts, in bytes.
const MAX_KEY_LEN: usize = 64;

/// A submitted line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Text for the current room or DM.
    Say(String),
    /// `/me TEXT`.
    Me(String),
    /// `/join ROOM [KEY]`.
    Join {
        /// The room.
        room: String,
        /// The room's key (`+k`).
        key: Option<String>,
    },
    /// `/part [ROOM] [REASON]`; `None` is the current tab.
    Part {
        /// The room, if named.
        room: Option<String>,
        /// Shown to the other members.
        reason: Option<String>,
    },
    /// `/nick NAME`.
    Nick(String),
    /// `/msg NICK TEXT`.
    Msg {
        /// Recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// `/who [ROOM]`.
    Who(Option<String>),
    /// `/rooms`.
    Rooms,
    /// `/help`.
    Help,
    /// `/quit [REASON]`.
    Quit(Option<String>),
    /// `/register PASSWORD`.
    Register(chat_shared::Password),
    /// `/password OLD NEW`.
    SetPassword {
        /// The current password.
        old: chat_shared::Password,
        /// The new one.
        new: chat_shared::Password,
    },
    /// `/topic [#ROOM] [TEXT]`: `None` shows it, `Some("")` (typed `/topic -`) clears it.
    Topic {
        /// The room, if named.
        room: Option<String>,
        /// The new topic.
        text: Option<String>,
    },
    /// `/op`, `/deop`, `/voice`, `/devoice`, `/owner` `[#ROOM] NICK`.
    Role {
        /// The room, if named.
        room: Option<String>,
        /// Whose role.
        nick: String,
        /// Which command.
        change: RoleChange,
    },
    /// `/kick [#ROOM] NICK [REASON]`.
    Kick {
        /// The room, if named.
        room: Option<String>,
        /// Whom.
        nick: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/ban [#ROOM] NICK`.
    Ban {
        /// The room, if named.
        room: Option<String>,
        /// Whom.
        nick: String,
    },
    /// `/unban [#ROOM] NICK`.
    Unban {
        /// The room, if named.
        room: Option<String>,
        /// Whom.
        nick: String,
    },
    /// `/bans [ROOM]`.
    Bans(Option<String>),
    /// `/invite NICK [ROOM]`.
    Invite {
        /// Whom.
        nick: String,
        /// The room, if named.
        room: Option<String>,
    },
    /// `/mode [ROOM] [CHANGES]`: an empty change shows the modes.
    Mode {
        /// The room, if named.
        room: Option<String>,
        /// What to change.
        change: ModeChange,
    },
    /// `/kill NICK [REASON]`.
    Kill {
        /// Whom.
        nick: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/kline MASK [DURATION] REASON`.
    Kline {
        /// An address, a CIDR range or a nick.
        mask: String,
        /// Seconds; `None`: until lifted.
        duration_s: Option<u64>,
        /// Why.
        reason: String,
    },
    /// `/unkline MASK`.
    Unkline(String),
    /// `/klines`.
    Klines,
    /// `/reconnect`.
    Reconnect,
    /// `/upload PATH [#ROOM|@NICK]`.
    Upload {
        /// The local file (may contain spaces).
        path: String,
        /// `#room` or `@nick` as typed; `None`: the current tab.
        target: Option<String>,
    },
    /// `/download N|ID [DIR]`.
    Download {
        /// A number from the scrollback's `[file N]`, or a file id.
        which: String,
        /// Where to put it; `None`: `--download-dir` or the current directory.
        dir: Option<String>,
    },
    /// `/transfers`.
    Transfers,
}

/// Which role command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// `/op`.
    Op,
    /// `/deop`.
    Deop,
    /// `/voice`.
    Voice,
    /// `/devoice`.
    Devoice,
    /// `/owner`.
    Owner,
}

impl RoleChange {
    /// The command's name, for its usage line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Op => "op",
            Self::Deop => "deop",
            Self::Voice => "voice",
            Self::Devoice => "devoice",
            Self::Owner => "owner",
        }
    }
}

/// Whether `line` carries a password (`/register`, `/password`): such a line is never kept
/// in the input history.
pub fn has_password(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('/') else {
        return false;
    };
    let cmd = word(rest).0.to_lowercase();
    cmd == "register" || cmd == "password"
}

/// `/upload PATH [#ROOM|@NICK]`: the last word is the target when it starts with `#` or
/// `@` and something comes before it, so a path may contain spaces unquoted.
fn upload(args: &str) -> Result<Input, String> {
    let args = args.trim();
    if args.is_empty() {
        return Err("usage: /upload PATH [#ROOM|@NICK]".into());
    }
    let (path, target) = match args.rsplit_once(char::is_whitespace) {
        Some((path, last)) if last.starts_with(['#', '@']) && !path.trim().is_empty() => {
            (path.trim_end(), Some(last.to_owned()))
        }
        _ => (args, None),
    };
    Ok(Input::Upload {
        path: path.to_owned(),
        target,
    })
}

/// Splits off the first whitespace-separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Parses a submitted line. `Ok(None)` for a blank line.
///
/// # Errors
/// A message for the user when the line is a command with missing arguments or an unknown
/// command.
pub fn parse(line: &str) -> Result<Option<Input>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Input::Say(line.to_owned())));
    };
    if rest.starts_with('/') {
        return Ok(Some(Input::Say(rest.to_owned())));
    }
    let (cmd, args) = word(rest);
    let usage = |u: &str| Err(format!("usage: {u}"));
    let input = match cmd.to_lowercase().as_str() {
        "join" | "j" => match word(args) {
            ("", _) => return usage("/join ROOM [KEY]"),
            (room, rest) => match word(rest) {
                ("", _) => Input::Join {
                    room: room.to_owned(),
                    key: None,
                },
                (key, "") => Input::Join {
                    room: room.to_owned(),
                    key: Some(checked_key(key)?),
                },
                _ => return usage("/join ROOM [KEY]"),
            },
        },
        "part" | "leave" => {
            let (first, more) = word(args);
            // A first word that is not a room name (e.g. "/part see you") is a reason.
            if first.is_empty() {
                Input::Part {
                    room: None,
                    reason: None,
                }
            } else if first.starts_with('#')
                || chat_shared::validate::RoomName::parse(first).is_ok() && more.is_empty()
            {
                Input::Part {
                    room: Some(first.to_owned()),
                    reason: non_empty(more),
                }
            } else {
                Input::Part {
                    room: None,
                    reason: non_empty(args),
                }
            }
        }
        "nick" => match word(args) {
            ("", _) => return usage("/nick NAME"),
            (nick, _) => Input::Nick(nick.to_owned()),
        },
        "msg" | "query" => match word(args) {
            (to, text) if !to.is_empty() && !text.trim().is_empty() => Input::Msg {
                to: to.to_owned(),
                text: text.to_owned(),
            },
            _ => return usage("/msg NICK TEXT"),
        },
        "me" => match non_empty(args) {
            Some(text) => Input::Me(text),
            None => return usage("/me TEXT"),
        },
        "who" | "names" => Input::Who(non_empty(word(args).0)),
        "upload" | "send" => upload(args)?,
        "download" | "get" => match word(args) {
            ("", _) => return usage("/download N|ID [DIR]"),
            (which, dir) => Input::Download {
                which: which.to_owned(),
                dir: non_empty(dir),
            },
        },
        "transfers" => Input::Transfers,
        "rooms" | "list" => Input::Rooms,
        "help" => Input::Help,
        "quit" | "exit" => Input::Quit(non_empty(args)),
        "register" => match args.trim() {
            "" => return usage("/register PASSWORD"),
            password => Input::Register(chat_shared::Password::new(password)),
        },
        "password" => match word(args) {
            (old, new) if !old.is_empty() && !new.trim().is_empty() => Input::SetPassword {
                old: chat_shared::Password::new(old),
                new: chat_shared::Password::new(new.trim()),
            },
            _ => return usage("/password OLD NEW"),
        },
        "topic" | "t" => {
            let (room, text) = room_first(args);
            let text = match text.trim() {
                "" => None,
                "-" => Some(String::new()),
                t => Some(t.to_owned()),
            };
            Input::Topic { room, text }
        }
        "op" => role(args, RoleChange::Op)?,
        "deop" => role(args, RoleChange::Deop)?,
        "voice" => role(args, RoleChange::Voice)?,
        "devoice" => role(args, RoleChange::Devoice)?,
        "owner" => role(args, RoleChange::Owner)?,
        "kick" | "k" => {
            let (room, rest) = room_first(args);
            match word(rest) {
                ("", _) => return usage("/kick [#ROOM] NICK [REASON]"),
                (nick, reason) => Input::Kick {
                    room,
                    nick: nick.to_owned(),
                    reason: non_empty(reason),
                },
            }
        }
        "ban" => {
            let (room, nick) = room_and_nick(args, "/ban [#ROOM] NICK")?;
            Input::Ban { room, nick }
        }
        "unban" => {
            let (room, nick) = room_and_nick(args, "/unban [#ROOM] NICK")?;
            Input::Unban { room, nick }
        }
        "bans" => match word(args) {
            (room, "") => Input::Bans(non_empty(room)),
            _ => return usage("/bans [ROOM]"),
        },
        "invite" => match word(args) {
            ("", _) => return usage("/invite NICK [ROOM]"),
            (nick, rest) => match word(rest) {
                (room, "") => Input::Invite {
                    nick: nick.to_owned(),
                    room: non_empty(room),
                },
                _ => return usage("/invite NICK [ROOM]"),
            },
        },
        "mode" => {
            let (first, rest) = word(args);
            let (room, flags) = if first.is_empty() || first.starts_with(['+', '-']) {
                (None, args)
            } else {
                (Some(first.to_owned()), rest)
            };
            Input::Mode {
                room,
                change: mode_change(flags)?,
            }
        }
        "kill" => match word(args) {
            ("", _) => return usage("/kill NICK [REASON]"),
            (nick, reason) => Input::Kill {
                nick: nick.to_owned(),
                reason: non_empty(reason),
            },
        },
        "kline" => {
            let kline = "/kline MASK [DURATION] REASON (DURATION like 30m, 2h, 7d)";
            let (mask, rest) = word(args);
            let (second, after) = word(rest);
            let (duration_s, reason) = match duration(second) {
                Some(Ok(secs)) => (Some(secs), after),
                Some(Err(e)) => return Err(e),
                None => (None, rest),
            };
            match (mask, non_empty(reason)) {
                ("", _) | (_, None) => return usage(kline),
                (mask, Some(reason)) => Input::Kline {
                    mask: mask.to_owned(),
                    duration_s,
                    reason,
                },
            }
        }
        "unkline" => match word(args) {
            (mask, "") if !mask.is_empty() => Input::Unkline(mask.to_owned()),
            _ => return usage("/unkline MASK"),
        },
        "klines" => Input::Klines,
        "reconnect" => Input::Reconnect,
        other => return Err(format!("unknown command /{other} (try /help)")),
    };
    Ok(Some(input))
}

/// Splits off a leading `#room`: nicks never start with `#`, so the first argument of a
/// moderation command can name a room without ambiguity.
fn room_first(args: &str) -> (Option<String>, &str) {
    match word(args) {
        (first, rest) if first.starts_with('#') && first.len() > 1 => {
            (Some(first.to_owned()), rest)
        }
        _ => (None, args.trim_start()),
    }
}

/// `[#ROOM] NICK` and nothing else.
fn room_and_nick(args: &str, usage: &str) -> Result<(Option<String>, String), String> {
    let (room, rest) = room_first(args);
    match word(rest) {
        (nick, "") if !nick.is_empty() => Ok((room, nick.to_owned())),
        _ => Err(format!("usage: {usage}")),
    }
}

fn role(args: &str, change: RoleChange) -> Result<Input, String> {
    let usage = format!("/{} [#ROOM] NICK", change.name());
    let (room, nick) = room_and_nick(args, &usage)?;
    Ok(Input::Role { room, nick, change })
}

/// A room key as the server takes it: 1–64 bytes, no spaces (they end the word) or
/// control characters. Checked here so a typo gets a clear line instead of `bad_request`.
fn checked_key(key: &str) -> Result<String, String> {
    if key.len() > MAX_KEY_LEN {
        return Err(format!("a room key is at most {MAX_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("a room key cannot hold control characters".into());
    }
    Ok(key.to_owned())
}

/// `/mode` changes: words of `+`/`-` and letters (`+mk`, `-t`, `+i-s`), each `+k`'s key
/// in a word after it (`+mk KEY`, `+k KEY -t`). A later letter overrides an earlier one.
fn mode_change(flags: &str) -> Result<ModeChange, String> {
    let usage = || "usage: /mode [ROOM] +i|-i|+k KEY|-k|+m|-m|+t|-t|+s|-s ...".to_owned();
    let mut change = ModeChange::default();
    // Every `k` in order (whether it was `+k`), and the keys given for the `+k`s.
    let mut ks: Vec<bool> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for w in flags.split_whitespace() {
        if !w.starts_with(['+', '-']) {
            if keys.len() >= ks.iter().filter(|&&on| on).count() {
                return Err(usage());
            }
            keys.push(checked_key(w)?);
            continue;
        }
        let mut on = true;
        for c in w.chars() {
            match c {
                '+' => on = true,
                '-' => on = false,
                'i' => change.invite_only = Some(on),
                'm' => change.moderated = Some(on),
                't' => change.topic_locked = Some(on),
                's' => change.secret = Some(on),
                'k' => ks.push(on),
                'o' => return Err("to make someone an op: /op NICK (or /deop NICK)".into()),
                'v' => return Err("to give voice: /voice NICK (or /devoice NICK)".into()),
                'b' => return Err("to ban: /ban NICK (or /unban NICK, /bans)".into()),
                other => {
                    return Err(format!(
                        "unknown mode {other:?}: the modes are i (invite-only), k KEY (key), \
                         m (moderated), t (topic for ops only), s (secret)"
                    ));
                }
            }
        }
    }
    if keys.len() < ks.iter().filter(|&&on| on).count() {
        return Err("usage: +k needs the key: /mode +k KEY".into());
    }
    change.key = match ks.last() {
        None => None,
        Some(false) => Some(None),
        Some(true) => keys.pop().map(Some),
    };
    Ok(change)
}

/// A `/kline` duration: digits and a unit (`s`, `m`, `h`, `d`, `w`), in seconds. `None`
/// when the word is not shaped like one (it is the reason's first word).
fn duration(word: &str) -> Option<Result<u64, String>> {
    let unit = word.chars().last()?;
    let digits = &word[..word.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    Some(
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|&s| s > 0)
            .ok_or_else(|| format!("{word}: a duration is a positive number of s, m, h, d or w")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(line: &str) -> Input {
        parse(line).unwrap().unwrap()
    }

    #[test]
    fn text_and_escaped_slash_are_messages() {
        assert_eq!(ok("hello /there"), Input::Say("hello /there".into()));
        assert_eq!(ok("//etc/passwd"), Input::Say("/etc/passwd".into()));
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn file_commands_take_paths_with_spaces_and_an_optional_target() {
        let up = |path: &str, target: Option<&str>| Input::Upload {
            path: path.into(),
            target: target.map(Into::into),
        };
        assert_eq!(ok("/upload 报告.pdf"), up("报告.pdf", None));
        assert_eq!(
            ok("/upload ~/my report.pdf #rust"),
            up("~/my report.pdf", Some("#rust"))
        );
        assert_eq!(
            ok("/upload notes.txt @小明"),
            up("notes.txt", Some("@小明"))
        );
        // A lone `#name` is a path: there is nothing before it to upload.
        assert_eq!(ok("/upload #weird"), up("#weird", None));
        assert!(parse("/upload").is_err());
        assert_eq!(
            ok("/download 3 ~/Downloads/my files"),
            Input::Download {
                which: "3".into(),
                dir: Some("~/Downloads/my files".into())
            }
        );
        assert_eq!(
            ok("/download 0123abcd"),
            Input::Download {
                which: "0123abcd".into(),
                dir: None
            }
        );
        assert!(parse("/download").is_err());
        assert_eq!(ok("/transfers"), Input::Transfers);
    }

    #[test]
    fn commands_parse_their_arguments() {
        assert_eq!(
            ok("/join #Rust"),
            Input::Join {
                room: "#Rust".into(),
                key: None
            }
        );
        assert_eq!(
            ok("/msg 小明 你好 世界"),
            Input::Msg {
                to: "小明".into(),
                text: "你好 世界".into()
            }
        );
        assert_eq!(ok("/me waves"), Input::Me("waves".into()));
        assert_eq!(ok("/QUIT bye all"), Input::Quit(Some("bye all".into())));
        assert_eq!(ok("/who"), Input::Who(None));
        assert_eq!(ok("/rooms"), Input::Rooms);
    }

    #[test]
    fn part_tells_rooms_from_reasons() {
        assert_eq!(
            ok("/part #rust gone fishing"),
            Input::Part {
                room: Some("#rust".into()),
                reason: Some("gone fishing".into())
            }
        );
        assert_eq!(
            ok("/part rust"),
            Input::Part {
                room: Some("rust".into()),
                reason: None
            }
        );
        assert_eq!(
            ok("/part see you"),
            Input::Part {
                room: None,
                reason: Some("see you".into())
            }
        );
    }

    #[test]
    fn missing_arguments_and_unknown_commands_are_errors() {
        assert_eq!(parse("/join").unwrap_err(), "usage: /join ROOM [KEY]");
        assert_eq!(parse("/msg bob").unwrap_err(), "usage: /msg NICK TEXT");
        assert!(
            parse("/frobnicate")
                .unwrap_err()
                .contains("unknown command")
        );
    }

    fn mode(line: &str) -> ModeChange {
        match ok(line) {
            Input::Mode { change, .. } => change,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mode_flags_combine_and_each_plus_k_takes_the_next_key() {
        assert_eq!(
            mode("/mode +mk KEY"),
            ModeChange {
                moderated: Some(true),
                key: Some(Some("KEY".into())),
                ..ModeChange::default()
            }
        );
        assert_eq!(
            mode("/mode +m -t"),
            ModeChange {
                moderated: Some(true),
                topic_locked: Some(false),
                ..ModeChange::default()
            }
        );
        assert_eq!(
            mode("/mode +i-s+k k1 -k"),
            ModeChange {
                invite_only: Some(true),
                secret: Some(false),
                key: Some(None),
                ..ModeChange::default()
            },
            "the last k decides"
        );
        assert_eq!(
            mode("/mode +k first -k +k second").key,
            Some(Some("second".into()))
        );
        assert_eq!(mode("/mode +m-m").moderated, Some(false));
        assert_eq!(
            ok("/mode #Rust"),
            Input::Mode {
                room: Some("#Rust".into()),
                change: ModeChange::default()
            }
        );
        assert_eq!(
            ok("/mode rust +s"),
            Input::Mode {
                room: Some("rust".into()),
                change: ModeChange {
                    secret: Some(true),
                    ..ModeChange::default()
                }
            }
        );
    }

    #[test]
    fn bad_mode_changes_are_refused_with_a_reason() {
        assert!(parse("/mode +x").unwrap_err().contains("unknown mode 'x'"));
        assert!(parse("/mode +k").unwrap_err().contains("+k needs the key"));
        assert!(
            parse("/mode +m stray")
                .unwrap_err()
                .starts_with("usage: /mode")
        );
        assert!(
            parse("/mode key +k")
                .unwrap_err()
                .contains("+k needs the key")
        );
        assert!(parse("/mode +b bob").unwrap_err().contains("/ban NICK"));
        let long = format!("/mode +k {}", "k".repeat(65));
        assert!(parse(&long).unwrap_err().contains("at most 64 bytes"));
    }

    #[test]
    fn kline_reads_an_optional_duration_and_needs_a_reason() {
        let kline = |line: &str| match ok(line) {
            Input::Kline {
                mask,
                duration_s,
                reason,
            } => (mask, duration_s, reason),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kline("/kline 203.0.113.7 30m go away"),
            ("203.0.113.7".into(), Some(1800), "go away".into())
        );
        assert_eq!(kline("/kline x 7d r").1, Some(7 * 86_400));
        assert_eq!(kline("/kline x 1w r").1, Some(7 * 86_400));
        assert_eq!(kline("/kline x 45s r").1, Some(45));
        assert_eq!(
            kline("/kline mallory 2nd warning"),
            ("mallory".into(), None, "2nd warning".into()),
            "a word that is no duration starts the reason"
        );
        assert!(
            parse("/kline 1.2.3.4")
                .unwrap_err()
                .starts_with("usage: /kline")
        );
        assert!(
            parse("/kline 1.2.3.4 2h")
                .unwrap_err()
                .starts_with("usage: /kline")
        );
        assert!(parse("/kline x 0h r").unwrap_err().contains("positive"));
        let huge = format!("/kline x {}d r", u64::MAX);
        assert!(parse(&huge).unwrap_err().contains("positive"));
    }

    #[test]
    fn a_leading_hash_names_the_room_of_a_moderation_command() {
        assert_eq!(
            ok("/kick #rust bob for spam"),
            Input::Kick {
                room: Some("#rust".into()),
                nick: "bob".into(),
                reason: Some("for spam".into())
            }
        );
        assert_eq!(
            ok("/kick bob"),
            Input::Kick {
                room: None,
                nick: "bob".into(),
                reason: None
            }
        );
        assert_eq!(
            ok("/topic #rust"),
            Input::Topic {
                room: Some("#rust".into()),
                text: None
            }
        );
        assert_eq!(
            ok("/topic -"),
            Input::Topic {
                room: None,
                text: Some(String::new())
            }
        );
        assert_eq!(
            ok("/DEVOICE #rust 小明"),
            Input::Role {
                room: Some("#rust".into()),
                nick: "小明".into(),
                change: RoleChange::Devoice
            }
        );
        assert_eq!(
            ok("/join rust s3cret"),
            Input::Join {
                room: "rust".into(),
                key: Some("s3cret".into())
            }
        );
    }

    #[test]
    fn moderation_commands_missing_arguments_say_their_usage() {
        for (line, usage) in [
            ("/op", "usage: /op [#ROOM] NICK"),
            ("/owner #rust", "usage: /owner [#ROOM] NICK"),
            ("/ban", "usage: /ban [#ROOM] NICK"),
            ("/ban bob extra", "usage: /ban [#ROOM] NICK"),
            ("/unban", "usage: /unban [#ROOM] NICK"),
            ("/kick", "usage: /kick [#ROOM] NICK [REASON]"),
            ("/invite", "usage: /invite NICK [ROOM]"),
            ("/invite bob rust extra", "usage: /invite NICK [ROOM]"),
            ("/bans rust extra", "usage: /bans [ROOM]"),
            ("/kill", "usage: /kill NICK [REASON]"),
            ("/unkline", "usage: /unkline MASK"),
            ("/join rust key extra", "usage: /join ROOM [KEY]"),
        ] {
            assert_eq!(parse(line).unwrap_err(), usage, "{line}");
        }
    }
}
