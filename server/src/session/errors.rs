//! Every refusal a session answers, and the one table that maps it to a protocol code.
//!
//! Each layer says why in its own error type (the chat state's [`ChatError`], the naming
//! rules' `NameError`, the text rules' `TextError`); a command returns them wrapped in a
//! [`Refusal`], whose message is what the client reads, and [`Refusal::code`] is the only
//! place a cause becomes an [`ErrorCode`].

use chat_shared::validate::{NameError, TextError};
use chat_shared::{ErrorCode, RoomName};
use uuid::Uuid;

use crate::auth::AuthError;
use crate::chat::ChatError;
use crate::files::FileError;
use crate::moderation::ModError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("nick {raw:?} is not valid: {reason}")]
    NickInvalid { raw: String, reason: NameError },
    #[error("room {raw:?} is not valid: {reason}")]
    RoomInvalid { raw: String, reason: NameError },
    #[error("{0}")]
    TextInvalid(#[from] TextError),
    #[error("you are not in #{0}")]
    NotInRoom(RoomName),
    #[error("you are in {0} rooms, the limit; part one first")]
    TooManyRooms(usize),
    #[error(
        "slow down: at most {rate} messages a second (bursts of {burst}); this one was dropped"
    )]
    RateLimited { rate: f64, burst: u32 },
    #[error("say hello before {0}")]
    NotRegistered(&'static str),
    #[error("this server speaks protocol version {0}")]
    UnsupportedVersion(u32),
    #[error("already registered: hello comes once")]
    AlreadyRegistered,
    #[error("history: no message {0} in #{1}")]
    UnknownBefore(Uuid, RoomName),
    #[error("bad request: {0}")]
    Malformed(String),
    #[error("older history of #{0} cannot be read right now")]
    HistoryUnavailable(RoomName),
    #[error(transparent)]
    Mod(#[from] ModError),
    #[error(transparent)]
    Files(#[from] FileError),
    /// Ends the connection rather than answering (see `register.rs`).
    #[error("banned from this server: {0}")]
    ServerBanned(String),
}

impl Refusal {
    /// How long a throttled client is to wait, for the error's `retry_after_ms`.
    pub(crate) fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Auth(AuthError::Throttled(wait)) => {
                Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            }
            _ => None,
        }
    }

    /// The protocol's code for this refusal: the one mapping, cause by cause.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Chat(e) => match e {
                ChatError::NickTaken(_) | ChatError::NickLooksLike { .. } => ErrorCode::NickTaken,
                ChatError::NoSuchNick(_) => ErrorCode::NoSuchNick,
                ChatError::ServerRoomsFull(_) => ErrorCode::TooManyRooms,
                ChatError::StoreUnavailable(_) => ErrorCode::Unavailable,
                // The message says the server is busy; the client retries as for its rate.
                ChatError::StoreBusy => ErrorCode::RateLimited,
                ChatError::NotRegistered => ErrorCode::NotRegistered,
                ChatError::ClusterUnavailable | ChatError::NotReplaced(_) => ErrorCode::Unavailable,
            },
            Self::Auth(e) => match e {
                AuthError::Unavailable | AuthError::Store => ErrorCode::Unavailable,
                AuthError::NickRegistered(_)
                | AuthError::LooksLikeRegistered { .. }
                | AuthError::AlreadyRegistered(_) => ErrorCode::NickRegistered,
                AuthError::Failed | AuthError::NotRegistered(_) => ErrorCode::AuthFailed,
                AuthError::Throttled(_) => ErrorCode::AuthThrottled,
                AuthError::TooShort(_) | AuthError::NoAccount(_) => ErrorCode::BadRequest,
            },
            Self::NickInvalid { .. } => ErrorCode::NickInvalid,
            Self::RoomInvalid { .. } => ErrorCode::RoomInvalid,
            Self::TextInvalid(_) => ErrorCode::TextInvalid,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::TooManyRooms(_) => ErrorCode::TooManyRooms,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::NotRegistered(_) => ErrorCode::NotRegistered,
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::AlreadyRegistered | Self::UnknownBefore(..) | Self::Malformed(_) => {
                ErrorCode::BadRequest
            }
            Self::HistoryUnavailable(_) => ErrorCode::Unavailable,
            Self::Mod(e) => match e {
                ModError::NotOp(_) => ErrorCode::NotOp,
                ModError::NotOwner { .. } => ErrorCode::NotOwner,
                ModError::NotAdmin => ErrorCode::NotAdmin,
                ModError::Banned(_) => ErrorCode::Banned,
                ModError::InviteOnly(_) => ErrorCode::InviteOnly,
                ModError::BadKey(_) => ErrorCode::BadKey,
                ModError::Moderated(_) => ErrorCode::Moderated,
                ModError::AccountRequired(_) => ErrorCode::AccountRequired,
                ModError::NotHere { .. } => ErrorCode::NotInRoom,
                ModError::TopicTooLong(_) => ErrorCode::TextInvalid,
                ModError::NotBanned { .. }
                | ModError::NotServerBanned(_)
                | ModError::KeyInvalid
                | ModError::MaskInvalid(_)
                | ModError::TooManyBans(..)
                | ModError::TooManyServerBans(_)
                | ModError::AlreadyHere(..) => ErrorCode::BadRequest,
            },
            Self::ServerBanned(_) => ErrorCode::Banned,
            Self::Files(e) => match e {
                FileError::Off => ErrorCode::Unavailable,
                FileError::TooLarge { .. } => ErrorCode::FileTooLarge,
                FileError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
                FileError::NameInvalid { .. } => ErrorCode::NameInvalid,
                FileError::TooManyUploads(_) => ErrorCode::RateLimited,
                FileError::Bad(_) | FileError::IdInUse => ErrorCode::BadRequest,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::Nick;

    /// A refusal keeps its cause: the lossy mappings of old (every failed join reported as
    /// `too_many_rooms`, every failed DM as `no_such_nick`) cannot come back unseen.
    #[test]
    fn each_cause_keeps_its_own_code_and_names_what_it_refused() {
        let room = RoomName::parse("rust").unwrap();
        let cases = [
            (
                Refusal::from(ChatError::NickTaken(Nick::parse("bob").unwrap())),
                ErrorCode::NickTaken,
                "bob",
            ),
            (
                ChatError::NoSuchNick("zed".into()).into(),
                ErrorCode::NoSuchNick,
                "zed",
            ),
            (
                ChatError::ServerRoomsFull(10).into(),
                ErrorCode::TooManyRooms,
                "server",
            ),
            (Refusal::TooManyRooms(3), ErrorCode::TooManyRooms, "3 rooms"),
            (
                ChatError::StoreUnavailable(room.clone()).into(),
                ErrorCode::Unavailable,
                "rust",
            ),
            (ChatError::StoreBusy.into(), ErrorCode::RateLimited, "busy"),
            (
                Refusal::NotInRoom(room.clone()),
                ErrorCode::NotInRoom,
                "#rust",
            ),
            (
                Refusal::UnknownBefore(Uuid::nil(), room),
                ErrorCode::BadRequest,
                "no message",
            ),
        ];
        for (refusal, code, says) in cases {
            assert_eq!(refusal.code(), code, "{refusal}");
            assert!(refusal.to_string().contains(says), "{refusal}");
        }
    }
}
