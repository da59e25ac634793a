//! Moderation: what a room keeps of who may do what (owner, roles, topic, modes, bans,
//! invitations), the server's bans, and why a moderation request is refused.
//!
//! The rules live here as plain data and functions, apart from the ordered path: a room
//! checks a request against its [`RoomModeration`] under its lock, turns it into a
//! `RoomNotice` on its path, and applies that notice to the same state when the path
//! delivers it (`RoomModeration::apply`). State follows the stream, so a node that only
//! consumes a room's stream (a cluster's) ends up with the same roles, topic and modes.
//! Bans and invitations are not events of the stream (a guest's ban holds an address that
//! is nobody's business): they change at once.
//!
//! Layout:
//! - [`ModError`]: every refusal of this layer (mapped to codes in `session/errors.rs`).
//! - `room`: a room's moderation state, its persisted document, and its rules.
//! - `server_bans`: bans of addresses, ranges and accounts from the whole server.

pub(crate) mod room;
pub(crate) mod server_bans;

use std::sync::Arc;

use anyhow::Context;
use chat_shared::RoomName;

use crate::store::SettingsStore;
use crate::store::settings::SettingsWriter;
pub(crate) use room::{Joiner, RoomModeration};
pub(crate) use server_bans::ServerBans;

/// The server's side of moderation: where rooms' settings persist,
/// and the server bans.
#[derive(Debug)]
pub(crate) struct Moderation {
    /// Rooms' settings are read from here when a room is loaded; `None` without a store.
    pub(crate) store: Option<Arc<dyn SettingsStore>>,
    pub(crate) writer: Option<SettingsWriter>,
    pub(crate) server_bans: ServerBans,
}

impl Moderation {
    /// Moderation over `store` (none: in memory only), with the stored server bans.
    ///
    /// # Errors
    /// The stored server bans cannot be read, or the writer cannot start.
    pub(crate) fn open(
        store: Option<Arc<dyn SettingsStore>>,
        config: &crate::Config,
    ) -> anyhow::Result<Self> {
        let document = match &store {
            Some(s) => s
                .get(server_bans::KEY)
                .context("cannot read the server bans")?,
            None => None,
        };
        let writer = store
            .clone()
            .map(SettingsWriter::start)
            .transpose()
            .context("cannot start the settings writer")?;
        Ok(Self {
            server_bans: ServerBans::new(
                document.as_deref(),
                config.max_server_bans,
                writer.clone(),
            ),
            store,
            writer,
        })
    }

    /// Moderation in memory (tests, and before the server's is given).
    pub(crate) fn in_memory(config: &crate::Config) -> Self {
        Self {
            store: None,
            writer: None,
            server_bans: ServerBans::new(None, config.max_server_bans, None),
        }
    }

    /// Waits until the settings handed to the writer are written.
    pub(crate) fn flush(&self) {
        if let Some(w) = &self.writer {
            w.flush();
        }
    }
}

/// Why a moderation request (or a join, or a message in a moderated room) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ModError {
    #[error("only ops of #{0} may do that")]
    NotOp(RoomName),
    #[error("only the owner of #{room} may {what}")]
    NotOwner { room: RoomName, what: &'static str },
    #[error("only server admins may do that")]
    NotAdmin,
    #[error("you are banned from #{0}")]
    Banned(RoomName),
    #[error("#{0} is invite-only: ask an op for an invitation")]
    InviteOnly(RoomName),
    #[error("#{0} has a key: join with the right one")]
    BadKey(RoomName),
    #[error("#{0} is moderated: only voiced members and ops may speak")]
    Moderated(RoomName),
    #[error("{0} is not a registered account logged in here: only an account can own a room")]
    AccountRequired(String),
    /// The nick acted on is not a member; the session tells whether it is online at all.
    #[error("{nick} is not in #{room}")]
    NotHere { nick: String, room: RoomName },
    #[error("{nick} is not banned from #{room}")]
    NotBanned { nick: String, room: RoomName },
    #[error("{0} is not banned from this server")]
    NotServerBanned(String),
    #[error("the topic is longer than {0} bytes")]
    TopicTooLong(usize),
    #[error("a key is 1 to 64 bytes, without spaces or control characters")]
    KeyInvalid,
    #[error("a mask is an IP address, a CIDR range (203.0.113.0/24) or a nick: {0}")]
    MaskInvalid(String),
    #[error("#{0} has as many bans as it may keep ({1}): lift one first")]
    TooManyBans(RoomName, usize),
    #[error("the server has as many bans as it may keep ({0}): lift one first")]
    TooManyServerBans(usize),
    #[error("{0} is already in #{1}")]
    AlreadyHere(String, RoomName),
}
