//! The audit lines: one `info` line per moderation action that took effect and one per
//! refused login or password change, each written from one function here so that every
//! wire mode (framed, line, IRC) logs the same fields.
//!
//! They name who, whom, where and why a login failed, never free text: no message, no
//! kick or kill reason, no topic, no room key and never a password.

use std::net::IpAddr;

use chat_shared::ModeChange;
use tracing::info;
use uuid::Uuid;

use crate::auth::AuthError;

/// A moderation action that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Kick,
    Ban,
    Unban,
    Op,
    Deop,
    Voice,
    Devoice,
    Owner,
    Mode,
    Topic,
    Invite,
    Kill,
    ServerBan,
    ServerUnban,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Kick => "kick",
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::Op => "op",
            Self::Deop => "deop",
            Self::Voice => "voice",
            Self::Devoice => "devoice",
            Self::Owner => "owner",
            Self::Mode => "mode",
            Self::Topic => "topic",
            Self::Invite => "invite",
            Self::Kill => "kill",
            Self::ServerBan => "server_ban",
            Self::ServerUnban => "server_unban",
        }
    }
}

/// Logs a moderation action: `session` and `actor` did `action` to `subject` (a nick, a
/// server ban's mask, or `-`) in `room` (`None`: server-wide). (Not `target`: the JSON
/// layer writes the event's own `target`, its module, beside the fields.) `detail` is a fixed-form
/// summary (a mode change without its key, a ban's duration), never free text.
pub(crate) fn moderation(
    session: Uuid,
    actor: &str,
    action: Action,
    room: Option<&str>,
    subject: &str,
    detail: &str,
) {
    info!(
        session = %session,
        actor,
        action = action.as_str(),
        room = room.unwrap_or("-"),
        subject,
        detail,
        "moderation"
    );
}

/// What a refused credential was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthStep {
    /// A `hello` (framed), the nick line (line mode), SASL or `IDENTIFY` (IRC).
    Login,
    /// `set_password`.
    SetPassword,
    /// IRC's `PASS`, the server password of `--irc-password`.
    ServerPassword,
}

/// Logs a refused login, password change or server password: the session, the peer,
/// the nick it was for and a fixed reason ([`auth_reason`] for an [`AuthError`]). The
/// password is not an argument, so it cannot be logged.
pub(crate) fn auth_failure(
    session: Uuid,
    peer: IpAddr,
    nick: &str,
    step: AuthStep,
    reason: &'static str,
) {
    let step = match step {
        AuthStep::Login => "login",
        AuthStep::SetPassword => "set_password",
        AuthStep::ServerPassword => "server_password",
    };
    info!(
        session = %session,
        %peer,
        nick,
        step,
        reason,
        "auth failure"
    );
}

/// A refusal's reason as the `auth failure` line names it.
pub(crate) fn auth_reason(error: &AuthError) -> &'static str {
    match error {
        AuthError::Unavailable => "unavailable",
        AuthError::NickRegistered(_) => "password_required",
        AuthError::LooksLikeRegistered { .. } => "looks_like_registered",
        AuthError::Failed => "wrong_password",
        AuthError::Throttled(_) => "throttled",
        AuthError::TooShort(_) => "password_too_short",
        AuthError::AlreadyRegistered(_) => "already_registered",
        AuthError::NoAccount(_) => "no_account",
        AuthError::NotRegistered(_) => "not_registered",
        AuthError::Store => "store_failed",
    }
}

/// A mode change in IRC's letters (`+i-m+k`), the key itself left out.
pub(crate) fn mode_summary(change: &ModeChange) -> String {
    let mut out = String::new();
    let mut flag = |on: Option<bool>, letter: char| {
        if let Some(on) = on {
            out.push(if on { '+' } else { '-' });
            out.push(letter);
        }
    };
    flag(change.invite_only, 'i');
    flag(change.key.as_ref().map(Option::is_some), 'k');
    flag(change.moderated, 'm');
    flag(change.topic_locked, 't');
    flag(change.secret, 's');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_summary_never_holds_the_key() {
        let change = ModeChange {
            invite_only: Some(true),
            key: Some(Some("hunter2-key".into())),
            moderated: Some(false),
            ..ModeChange::default()
        };
        let summary = mode_summary(&change);
        assert_eq!(summary, "+i+k-m");
        let removed = ModeChange {
            key: Some(None),
            ..ModeChange::default()
        };
        assert_eq!(mode_summary(&removed), "-k");
    }

    #[test]
    fn every_auth_reason_is_a_label() {
        for e in [
            AuthError::Failed,
            AuthError::Throttled(std::time::Duration::from_secs(1)),
            AuthError::NickRegistered("alice".into()),
        ] {
            let r = auth_reason(&e);
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
        }
    }
}
