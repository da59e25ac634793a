//! What the cluster is called in NATS: its stream, its buckets and its subjects.
//!
//! Everything lives under one prefix (`--cluster-prefix`), so several chat clusters can
//! share a NATS deployment. A room's subjects carry a token made from its skeleton (the
//! name rooms are told apart by), hex-encoded: room names may hold dots, spaces and any
//! letter, none of which a subject token may.

use uuid::Uuid;

/// Names derived from the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The stream of every room event, DM and node notice.
    pub(crate) stream: String,
    /// Key-value bucket: nick skeleton → who holds it.
    pub(crate) nicks: String,
    /// Key-value bucket: node name → the run holding its lease.
    pub(crate) nodes: String,
    /// Key-value buckets of moderation settings (by key) and accounts (by skeleton).
    pub(crate) settings: String,
    pub(crate) accounts: String,
    /// The subjects' root (the prefix, lower case).
    root: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}_EVENTS"),
            nicks: format!("{prefix}_NICKS"),
            nodes: format!("{prefix}_NODES"),
            settings: format!("{prefix}_SETTINGS"),
            accounts: format!("{prefix}_ACCOUNTS"),
            root: prefix.to_ascii_lowercase(),
        }
    }

    /// Every subject of the stream.
    pub(crate) fn all(&self) -> String {
        format!("{}.>", self.root)
    }

    /// A room's messages: the subject whose last sequence orders its `seq`.
    pub(crate) fn messages(&self, room_skeleton: &str) -> String {
        format!("{}.room.{}.m", self.root, token(room_skeleton))
    }

    /// Every room's messages.
    pub(crate) fn all_messages(&self) -> String {
        format!("{}.room.*.m", self.root)
    }

    /// One member's presence in a room: the last message of each is the member's state,
    /// which is what a starting node reads.
    pub(crate) fn presence(&self, room_skeleton: &str, session: Uuid) -> String {
        format!(
            "{}.room.{}.p.{}",
            self.root,
            token(room_skeleton),
            session.simple()
        )
    }

    /// Every member's presence in every room.
    pub(crate) fn all_presence(&self) -> String {
        format!("{}.room.*.p.*", self.root)
    }

    /// A room's invitations (not presence: a starting node's snapshot skips them).
    pub(crate) fn invites(&self, room_skeleton: &str) -> String {
        format!("{}.room.{}.i", self.root, token(room_skeleton))
    }

    /// Requests to end the connection holding a nick (for a login elsewhere).
    pub(crate) fn replaces(&self) -> String {
        format!("{}.nick", self.root)
    }

    pub(crate) fn dms(&self) -> String {
        format!("{}.dm", self.root)
    }

    pub(crate) fn nodes_subject(&self) -> String {
        format!("{}.node", self.root)
    }
}

/// A key or subject token for any text: its bytes in hex.
pub(crate) fn token(text: &str) -> String {
    crate::hex(text.as_bytes())
}

/// The text a [`token`] was made from.
pub(crate) fn untoken(token: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Whether `name` can name a node: it is a key of the nodes bucket and appears in logs.
pub(crate) fn valid_node(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `prefix` can start the cluster's stream and bucket names.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_subjects_are_single_tokens_whatever_the_name() {
        let n = Names::new("CHAT");
        let s = n.messages("a.b c*>");
        assert_eq!(s.split('.').count(), 4, "{s}");
        assert!(!s.contains(' ') && !s.contains('*') && !s.contains('>'));
        assert_eq!(n.stream, "CHAT_EVENTS");
        assert_eq!(untoken(&token("room/ça va")).as_deref(), Some("room/ça va"));
        assert_eq!(untoken("zz"), None);
    }

    #[test]
    fn node_names_and_prefixes_are_checked() {
        assert!(valid_node("node-1_a"));
        assert!(!valid_node("a.b") && !valid_node("") && !valid_node("a b"));
        assert!(valid_prefix("CHAT_2") && !valid_prefix("chat.x"));
    }
}
