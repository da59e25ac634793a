//! The protocol's error codes as IRC numerics: the one table, by code and by the command
//! refused (a ban is 474 when joining but 404 when speaking). A code IRC has no numeric
//! for (`rate_limited`, `unavailable`, most `bad_request`s) is a server `NOTICE`.

use chat_shared::ErrorCode;

use super::Cmd;

/// The numeric for `code` answering `cmd` about `target` (a `#room`, a nick, or for
/// `INVITE` "nick #room"), with its parameters before the message; `None`: a `NOTICE`.
pub(super) fn numeric(
    code: ErrorCode,
    cmd: Cmd,
    target: &str,
) -> (Option<&'static str>, Vec<String>) {
    let target = if target.is_empty() { "*" } else { target };
    // A target may name a channel and a nick (`INVITE`, `KICK`, bans): `#` tells which.
    let channel = word(target, true);
    let nick = word(target, false);
    let one = |s: &str| vec![s.to_owned()];
    let (numeric, params) = match code {
        ErrorCode::NickInvalid => ("432", one(target)),
        ErrorCode::NickTaken => ("433", one(target)),
        // 433 makes clients try another nick; its text says how to log in instead.
        ErrorCode::NickRegistered => ("433", one(target)),
        ErrorCode::AuthFailed | ErrorCode::AuthThrottled => ("464", Vec::new()),
        ErrorCode::NotRegistered => ("451", Vec::new()),
        ErrorCode::NoSuchNick => ("401", one(&nick)),
        ErrorCode::RoomInvalid => ("479", one(&channel)),
        ErrorCode::NotInRoom if cmd == Cmd::Say => ("404", one(&channel)),
        ErrorCode::NotInRoom if matches!(cmd, Cmd::Kick | Cmd::Mode) => {
            // Either the op or the target is not in the room; the message says which.
            ("441", vec![nick, channel])
        }
        ErrorCode::NotInRoom => ("442", one(&channel)),
        ErrorCode::NotOp | ErrorCode::NotOwner => ("482", one(&channel)),
        ErrorCode::NotAdmin => ("481", Vec::new()),
        ErrorCode::Banned if cmd == Cmd::Say => ("404", one(&channel)),
        ErrorCode::Banned => ("474", one(&channel)),
        ErrorCode::InviteOnly => ("473", one(&channel)),
        ErrorCode::BadKey => ("475", one(&channel)),
        ErrorCode::Moderated => ("404", one(&channel)),
        ErrorCode::AccountRequired => ("477", one(&channel)),
        ErrorCode::TooManyRooms => ("405", one(&channel)),
        ErrorCode::TextInvalid if matches!(cmd, Cmd::Say | Cmd::Dm) => ("417", Vec::new()),
        ErrorCode::TextInvalid if cmd == Cmd::Topic => ("417", Vec::new()),
        ErrorCode::BadRequest if matches!(cmd, Cmd::Ban(_)) => {
            ("696", vec![channel, "b".into(), "*".into()])
        }
        _ => return (None, Vec::new()),
    };
    (Some(numeric), params)
}

/// The word of `target` that is a channel (`#…`) or, with `channel` false, the one that
/// is not; `target` itself when there is none.
fn word(target: &str, channel: bool) -> String {
    target
        .split(' ')
        .find(|w| w.starts_with('#') == channel)
        .unwrap_or(target)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_refusal_gets_the_numeric_of_what_was_refused() {
        let n = |code, cmd| numeric(code, cmd, "#rust").0;
        assert_eq!(n(ErrorCode::Banned, Cmd::Join), Some("474"));
        assert_eq!(n(ErrorCode::Banned, Cmd::Say), Some("404"));
        assert_eq!(n(ErrorCode::NotInRoom, Cmd::Part), Some("442"));
        assert_eq!(n(ErrorCode::NotInRoom, Cmd::Say), Some("404"));
        assert_eq!(n(ErrorCode::NotOp, Cmd::Kick), Some("482"));
        assert_eq!(n(ErrorCode::InviteOnly, Cmd::Join), Some("473"));
        assert_eq!(n(ErrorCode::BadKey, Cmd::Join), Some("475"));
        assert_eq!(n(ErrorCode::Moderated, Cmd::Say), Some("404"));
        assert_eq!(n(ErrorCode::RateLimited, Cmd::Say), None);
        assert_eq!(
            numeric(ErrorCode::NoSuchNick, Cmd::Invite, "zed #rust").1,
            ["zed"]
        );
        assert_eq!(
            numeric(ErrorCode::InviteOnly, Cmd::Invite, "zed #rust").1,
            ["#rust"]
        );
    }
}
