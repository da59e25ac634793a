//! What the stream carries: one JSON record per NATS message, saying which node (and which
//! run of it) published it.

use chat_shared::{ChatMessage, DirectMessage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::path::{Invitation, Presence};

/// One stream message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) node: String,
    pub(crate) boot: Uuid,
    #[serde(flatten)]
    pub(crate) body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Body {
    /// Messages of one room with consecutive `seq`s, oldest first: what its publisher had
    /// queued, in one stream message (one round trip for all of them).
    Messages { messages: Vec<Said> },
    /// A member of `room` joined, left or was renamed.
    Presence { room: String, change: Presence },
    /// A DM between two sessions (either may be on any node).
    Dm {
        from: Uuid,
        to: Uuid,
        dm: DirectMessage,
    },
    /// An invitation into a room: every node remembers it until the invitee joins, and
    /// the invitee's node tells it.
    Invite(Invitation),
    /// A login on some node wants `nick`: the node where `session` holds it ends that
    /// connection as a login there would (`bye{replaced}`), which frees the nick.
    Replace { nick: String, session: Uuid },
    /// A node's run is over (`keep`: its current run, whose members stay): its members
    /// leave every room.
    Gone { gone: String, keep: Option<Uuid> },
}

impl Record {
    pub(crate) fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("records serialise: plain data")
            .into()
    }

    /// # Errors
    /// The payload is not a record (another writer on the stream's subjects).
    pub(crate) fn decode(payload: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(payload)
    }
}

/// A room message with its `seq`; `origin` is the sender's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Said {
    pub(crate) origin: Uuid,
    pub(crate) msg: ChatMessage,
}

/// Who holds a nick, as its key-value entry says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) nick: String,
    pub(crate) node: String,
    pub(crate) boot: Uuid,
    pub(crate) session: Uuid,
}
