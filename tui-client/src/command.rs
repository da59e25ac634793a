//! Parsing of what the user submits: plain text or a `/command`.
//!
//! Parsing is separate from acting on it (`update`) so the syntax, including its error
//! messages, is testable on its own.
//!
//! Layout:
//! - [`Input`]: a parsed submitted line.
//! - [`parse`]: text → [`Input`] or a message for the user.
//! - [`COMMANDS`] and [`HELP`]: the command list for Tab completion and `/help`.

/// Every command, for Tab completion.
pub const COMMANDS: &[&str] = &[
    "/help",
    "/join",
    "/me",
    "/msg",
    "/nick",
    "/part",
    "/password",
    "/quit",
    "/register",
    "/rooms",
    "/who",
];

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
    "/quit [WHY]         leave (also Ctrl-C)",
    "//text              send \"/text\" literally",
    "keys: Alt-1..9 / Ctrl-N / Ctrl-P switch tabs, PgUp/PgDn or wheel scroll, End live,",
    "      F2 members, Tab complete, Up/Down history, Ctrl-A/E/W/U edit",
];

/// A submitted line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Text for the current room or DM.
    Say(String),
    /// `/me TEXT`.
    Me(String),
    /// `/join ROOM`.
    Join(String),
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
            ("", _) => return usage("/join ROOM"),
            (room, _) => Input::Join(room.to_owned()),
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
        other => return Err(format!("unknown command /{other} (try /help)")),
    };
    Ok(Some(input))
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
    fn commands_parse_their_arguments() {
        assert_eq!(ok("/join #Rust"), Input::Join("#Rust".into()));
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
        assert_eq!(parse("/join").unwrap_err(), "usage: /join ROOM");
        assert_eq!(parse("/msg bob").unwrap_err(), "usage: /msg NICK TEXT");
        assert!(
            parse("/frobnicate")
                .unwrap_err()
                .contains("unknown command")
        );
    }
}
