//! The moderation vocabulary of the protocol (optional v1 additions): roles, room modes,
//! the room notices that travel a room's ordered stream, and ban entries.
//!
//! A moderation event that changes a room (a topic, a kick, a role, a mode) is a room event
//! like a message: it takes the room's next `seq`, is stored, and is kept in history. Live
//! it arrives as its own event type (`topic`, `kicked`, `role`, `mode`, each with `seq` and
//! `id`); in a history page it is a message object whose `event` field says what happened
//! (see [`RoomNotice`]), and whose `text` describes it for clients older than this.
//! [`crate::ChatMessage::live`] turns one form into the other, so every client and every
//! adapter reads them the same way.

use serde::{Deserialize, Deserializer, Serialize};

/// A member's standing in a room, from the most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May do everything an op may, demote ops and hand the room over. A registered
    /// account; at most one per room.
    Owner,
    /// May set the topic, change roles below op, kick, ban, invite and change modes.
    Op,
    /// May speak in a moderated room.
    Voice,
    /// Everyone else.
    Member,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Op => "op",
            Self::Voice => "voice",
            Self::Member => "member",
        }
    }

    /// An op or the owner.
    pub fn is_op(self) -> bool {
        matches!(self, Self::Owner | Self::Op)
    }

    /// May speak in a moderated room.
    pub fn may_speak_moderated(self) -> bool {
        self != Self::Member
    }

    /// The mark shown before a nick: `@` for ops (and the owner), `+` for voice.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Owner | Self::Op => "@",
            Self::Voice => "+",
            Self::Member => "",
        }
    }
}

/// Some of a room's modes: each field present is set to its value, each absent one is left
/// as it is. In a `mode` request it is what to change; in a `mode` event, what changed (or,
/// right after `joined`, all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeChange {
    /// A `join` needs an invitation or an op's role (IRC `+i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_only: Option<bool>,
    /// The key a `join` must give (IRC `+k`): `Some(None)` (JSON `null`) removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub key: Option<Option<String>>,
    /// Only voiced members and ops may speak (IRC `+m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderated: Option<bool>,
    /// Only ops may set the topic (IRC `+t`); the default for new rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_locked: Option<bool>,
    /// The room is absent from `rooms`, and `who` answers only its members (IRC `+s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<bool>,
}

/// A field that is present, `null` included, is `Some`: `key: null` removes a key, while an
/// absent `key` leaves it alone.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl ModeChange {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// IRC's spelling of the change, as line clients are shown it: `+m-k`, `+k KEY`.
    pub fn describe(&self) -> String {
        let mut flags = String::new();
        let mut args = Vec::new();
        let mut sign = ' ';
        let mut put = |on: bool, letter: char, flags: &mut String| {
            let s = if on { '+' } else { '-' };
            if s != sign {
                flags.push(s);
                sign = s;
            }
            flags.push(letter);
        };
        let bools = [
            (self.invite_only, 'i'),
            (self.moderated, 'm'),
            (self.topic_locked, 't'),
            (self.secret, 's'),
        ];
        for (value, letter) in bools {
            if let Some(on) = value {
                put(on, letter, &mut flags);
            }
        }
        match &self.key {
            Some(Some(key)) => {
                put(true, 'k', &mut flags);
                args.push(key.clone());
            }
            Some(None) => put(false, 'k', &mut flags),
            None => {}
        }
        if args.is_empty() {
            flags
        } else {
            format!("{flags} {}", args.join(" "))
        }
    }
}

/// What a moderation event in a room's stream did. `by` is the message's `from`, and its
/// room, `seq`, `id` and `ts` are the message's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomNotice {
    /// The topic was set; an empty text cleared it.
    Topic {
        /// The new topic.
        text: String,
    },
    /// A member was removed from the room.
    Kicked {
        /// Who was kicked.
        nick: String,
        /// Why (may be empty).
        #[serde(default)]
        reason: String,
    },
    /// A member's role changed.
    Role {
        /// Whose role.
        nick: String,
        /// The new role.
        role: Role,
        /// The role before: what an adapter whose roles are flags (IRC's `+o`, `+v`) needs
        /// to say exactly what changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        was: Option<Role>,
    },
    /// Some of the room's modes changed.
    Mode(ModeChange),
}

impl RoomNotice {
    /// For people: what the event did, as a line client shows it after `-- `.
    pub fn describe(&self, by: &str) -> String {
        match self {
            Self::Topic { text } if text.is_empty() => format!("{by} cleared the topic"),
            Self::Topic { text } => format!("{by} set the topic: {text}"),
            Self::Kicked { nick, reason } if reason.is_empty() => {
                format!("{nick} was kicked by {by}")
            }
            Self::Kicked { nick, reason } => format!("{nick} was kicked by {by} ({reason})"),
            Self::Role { nick, role, .. } => match role {
                Role::Owner => format!("{by} made {nick} the owner"),
                Role::Op => format!("{by} made {nick} an op"),
                Role::Voice => format!("{by} gave {nick} voice"),
                Role::Member => format!("{by} made {nick} a member"),
            },
            Self::Mode(change) => format!("{by} set mode {}", change.describe()),
        }
    }
}

/// One entry of a room's `ban_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// The banned nick (an account's nick, or a guest's, whose address is banned too).
    pub nick: String,
    /// The op who banned it.
    pub by: String,
    /// Unix milliseconds.
    pub ts: i64,
}

/// One entry of `server_ban_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerBanEntry {
    /// An IP address, a CIDR range, or an account's nick.
    pub mask: String,
    /// The admin who set it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Unix milliseconds when it was set.
    pub ts: i64,
    /// Unix milliseconds when it ends; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_null_key_removes_it_and_an_absent_one_leaves_it() {
        let c: ModeChange = serde_json::from_value(json!({"key": null})).unwrap();
        assert_eq!(c.key, Some(None));
        let c: ModeChange = serde_json::from_value(json!({"moderated": true})).unwrap();
        assert_eq!(c.key, None);
        assert_eq!(c.moderated, Some(true));
        let c: ModeChange = serde_json::from_value(json!({"key": "s3"})).unwrap();
        assert_eq!(c.key, Some(Some("s3".into())));
        assert_eq!(
            serde_json::to_value(ModeChange {
                key: Some(None),
                ..ModeChange::default()
            })
            .unwrap(),
            json!({"key": null})
        );
    }

    #[test]
    fn changes_read_as_irc_spells_them() {
        let c = ModeChange {
            invite_only: Some(true),
            moderated: Some(true),
            secret: Some(false),
            key: Some(Some("k".into())),
            ..ModeChange::default()
        };
        assert_eq!(c.describe(), "+im-s+k k");
        assert_eq!(
            RoomNotice::Mode(ModeChange {
                key: Some(None),
                ..ModeChange::default()
            })
            .describe("alice"),
            "alice set mode -k"
        );
    }

    #[test]
    fn roles_rank_from_the_owner_down() {
        assert!(Role::Owner < Role::Op && Role::Op < Role::Voice && Role::Voice < Role::Member);
        assert!(Role::Owner.is_op() && !Role::Voice.is_op());
        assert_eq!(Role::Voice.mark(), "+");
    }
}
