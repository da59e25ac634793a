//! Protocol messages as serde types.
//!
//! Every message is one JSON object whose `"type"` field names the variant (snake_case).
//! Unknown fields are ignored on input, so the protocol can grow by adding fields. Clients
//! parse [`ServerMsg`] and get [`ServerMsg::Unknown`], [`ErrorCode::Other`] or
//! [`ByeReason::Other`] for anything newer than they are, instead of an error.
//!
//! Layout:
//! - [`Request`]: the envelope of every client request (its optional `id`) around a
//!   [`ClientMsg`].
//! - [`ServerMsg`] and the records it carries: [`ChatMessage`], [`DirectMessage`],
//!   [`RoomInfo`], and the codes [`ErrorCode`] and [`ByeReason`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::moderation::{BanEntry, ModeChange, Role, RoomNotice, ServerBanEntry};

/// A client request: any request may carry an `id` (a UUID).
///
/// For `say` and `dm` the `id` is the message id, which makes a resend idempotent; for every
/// other request it only ties an `error` to its request (`ref`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Request id, echoed as `ref` in an `error` that answers this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The request itself.
    #[serde(flatten)]
    pub msg: ClientMsg,
}

impl Request {
    /// A request without an id.
    pub fn new(msg: ClientMsg) -> Self {
        Self { id: None, msg }
    }

    /// A request with the given id.
    pub fn with_id(id: Uuid, msg: ClientMsg) -> Self {
        Self { id: Some(id), msg }
    }
}

impl From<ClientMsg> for Request {
    fn from(msg: ClientMsg) -> Self {
        Self::new(msg)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A password on its way to the server. Its `Debug` shows nothing, so no log line, panic
/// message or test failure that prints a request can leak one; on the wire it is a string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for hashing or checking.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

/// Client → server requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Must be the first request; answered by `welcome` or an `error`.
    Hello {
        /// Requested nick.
        nick: String,
        /// Protocol version; absent means 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
        /// Free-text client name, for logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// The nick's password, to log in to a registered nick. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Password>,
    },
    /// Post to a joined room.
    Say {
        /// Target room.
        room: String,
        /// Message text.
        text: String,
        /// An action (`/me`).
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
    },
    /// Private message.
    Dm {
        /// Recipient nick.
        to: String,
        /// Message text.
        text: String,
    },
    /// Join (and create) a room.
    Join {
        /// Room to join.
        room: String,
        /// The last `seq` the client already has; 0 = everything retained.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// The room's key, if it has one. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Leave a room.
    Part {
        /// Room to leave.
        room: String,
        /// Shown to the other members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Rename.
    Nick {
        /// The new nick.
        nick: String,
    },
    /// List a room's members.
    Who {
        /// Room to list.
        room: String,
    },
    /// List rooms with members.
    Rooms {},
    /// Page back through a room's history.
    History {
        /// Room to page.
        room: String,
        /// Return messages older than this message id; absent = the newest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Uuid>,
        /// Maximum number of messages (default 50, at most 500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Page forwards instead: the oldest messages newer than this message id (and,
        /// with `before`, older than that one). Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Uuid>,
    },
    /// Liveness check; answered by `pong` with the same token.
    Ping {
        /// Any JSON value, echoed back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Value>,
    },
    /// The answer to a server `ping`.
    Pong {
        /// The token of the server's `ping`.
        token: Value,
    },
    /// Leave the server.
    Quit {
        /// Shown to the members of the client's rooms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Register the current nick with a password; answered by `registered`. Optional v1
    /// addition.
    Register {
        /// The new account's password.
        password: Password,
    },
    /// Log in to a registered account after connecting: the connection takes the account's
    /// nick (from whoever holds it, as `hello` with a password does), and its rooms see a
    /// `nick_changed` and an `account_changed`. Optional v1 addition.
    Login {
        /// The account's nick.
        nick: String,
        /// Its password.
        password: Password,
    },
    /// Change the password of the account one is logged in to; answered by
    /// `password_changed`. Optional v1 addition.
    SetPassword {
        /// The current password.
        old: Password,
        /// The new one.
        new: Password,
    },
    /// Set (or, with an empty text, clear) a room's topic. Optional v1 addition, as are
    /// all the moderation requests below.
    Topic {
        /// The room.
        room: String,
        /// The new topic.
        text: String,
    },
    /// Make a member an op.
    Op {
        /// The room.
        room: String,
        /// The member.
        nick: String,
    },
    /// Make an op a member again (the owner only).
    Deop {
        /// The room.
        room: String,
        /// The op.
        nick: String,
    },
    /// Let a member speak in a moderated room.
    Voice {
        /// The room.
        room: String,
        /// The member.
        nick: String,
    },
    /// Take a member's voice away.
    Devoice {
        /// The room.
        room: String,
        /// The member.
        nick: String,
    },
    /// Hand the room over to another registered member (the owner only).
    Owner {
        /// The room.
        room: String,
        /// The new owner.
        nick: String,
    },
    /// Remove a member from the room.
    Kick {
        /// The room.
        room: String,
        /// The member.
        nick: String,
        /// Why, shown to everyone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ban a nick from the room (its account, or a guest's nick and address).
    Ban {
        /// The room.
        room: String,
        /// Whom.
        nick: String,
    },
    /// Lift a ban.
    Unban {
        /// The room.
        room: String,
        /// The banned nick.
        nick: String,
    },
    /// List a room's bans: `ban_list`.
    Bans {
        /// The room.
        room: String,
    },
    /// Change some of a room's modes.
    Mode {
        /// The room.
        room: String,
        /// What to change.
        #[serde(flatten)]
        change: ModeChange,
    },
    /// Invite a nick into the room: it may join an invite-only room once.
    Invite {
        /// The room.
        room: String,
        /// Whom.
        nick: String,
    },
    /// Disconnect a client (server admins only).
    Kill {
        /// Whom.
        nick: String,
        /// Why, shown to the client and its rooms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ban an IP address, a CIDR range or an account from the server (admins only).
    ServerBan {
        /// `203.0.113.7`, `2001:db8::/32`, or a nick.
        mask: String,
        /// How long; absent: until lifted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift a server ban (admins only).
    ServerUnban {
        /// The mask as it was banned.
        mask: String,
    },
    /// List the server bans (admins only): `server_ban_list`.
    ServerBans {},
    /// Which of `nicks` are online: `users`. Optional v1 addition.
    Whois {
        /// Nicks to look up (at most 64 are looked at).
        nicks: Vec<String>,
    },
    /// Marks this client away with `text`, or back without: its room-mates receive
    /// `away`. Optional v1 addition.
    Away {
        /// Why; absent or empty: back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Asks for an upload slot for a file to share in `room` or with `to` (exactly one):
    /// answered by `upload_slot`. The request's `id` becomes the sharing message's id.
    /// Optional v1 addition.
    Upload {
        /// The file's name as the uploader has it.
        name: String,
        /// Its length in bytes.
        size: u64,
        /// Its SHA-256, 64 hex digits.
        sha256: String,
        /// A joined room to share it in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// A nick to send it to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
}

impl ClientMsg {
    /// The `type` tag, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Register { .. } => "register",
            Self::Login { .. } => "login",
            Self::SetPassword { .. } => "set_password",
            Self::Say { .. } => "say",
            Self::Dm { .. } => "dm",
            Self::Join { .. } => "join",
            Self::Part { .. } => "part",
            Self::Nick { .. } => "nick",
            Self::Who { .. } => "who",
            Self::Rooms {} => "rooms",
            Self::History { .. } => "history",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::Quit { .. } => "quit",
            Self::Topic { .. } => "topic",
            Self::Op { .. } => "op",
            Self::Deop { .. } => "deop",
            Self::Voice { .. } => "voice",
            Self::Devoice { .. } => "devoice",
            Self::Owner { .. } => "owner",
            Self::Kick { .. } => "kick",
            Self::Ban { .. } => "ban",
            Self::Unban { .. } => "unban",
            Self::Bans { .. } => "bans",
            Self::Mode { .. } => "mode",
            Self::Invite { .. } => "invite",
            Self::Kill { .. } => "kill",
            Self::ServerBan { .. } => "server_ban",
            Self::ServerUnban { .. } => "server_unban",
            Self::ServerBans {} => "server_bans",
            Self::Whois { .. } => "whois",
            Self::Away { .. } => "away",
            Self::Upload { .. } => "upload",
        }
    }
}

/// Someone online, as `users` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The nick as its holder has it.
    pub nick: String,
    /// Logged in to the account of that nick.
    pub account: bool,
    /// Away, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
}

/// A room message, as relayed live and as kept in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Message id (the client's, or a server-generated UUIDv7).
    pub id: Uuid,
    /// Room, lowercase.
    pub room: String,
    /// Per-room sequence number, from 1, never reused.
    pub seq: u64,
    /// Sender's nick at the time of sending.
    pub from: String,
    /// Text, control characters stripped.
    pub text: String,
    /// Unix milliseconds, assigned by the server.
    pub ts: i64,
    /// An action (`/me`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub action: bool,
    /// A moderation event rather than something said: `from` did this, and `text`
    /// describes it for people. Only in history; live, it arrives as its own event type
    /// (see [`ChatMessage::live`]). Optional v1 addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoomNotice>,
    /// The file this message shares. Optional v1 addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileInfo>>,
    /// The sender was logged in to the account of `from` when it sent this (IRC's
    /// `account-tag`). Optional v1 addition: absent means a guest, as for every message
    /// stored before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub account: bool,
}

impl ChatMessage {
    /// The event a moderation notice is sent as live (`topic`, `kicked`, `role`, `mode`);
    /// `None` for a message someone said.
    pub fn live(&self) -> Option<ServerMsg> {
        let (room, by, ts, seq, id) = (
            self.room.clone(),
            self.from.clone(),
            self.ts,
            Some(self.seq),
            Some(self.id),
        );
        Some(match self.event.clone()? {
            RoomNotice::Topic { text } => ServerMsg::Topic {
                room,
                text,
                by,
                ts,
                seq,
                id,
            },
            RoomNotice::Kicked { nick, reason } => ServerMsg::Kicked {
                room,
                nick,
                by,
                reason,
                ts,
                seq,
                id,
            },
            RoomNotice::Role { nick, role, was } => ServerMsg::Role {
                room,
                nick,
                role,
                was,
                by,
                ts,
                seq,
                id,
            },
            RoomNotice::Mode(change) => ServerMsg::Mode {
                room,
                by,
                ts,
                change,
                seq,
                id,
            },
        })
    }
}

/// A live moderation event taken apart: the inverse of [`ChatMessage::live`], for clients
/// and adapters that handle the live and the history forms alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNotice {
    /// Room.
    pub room: String,
    /// What happened.
    pub notice: RoomNotice,
    /// Who did it.
    pub by: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// Its place in the room's stream (absent: the current topic or modes after `joined`).
    pub seq: Option<u64>,
    /// Its id (absent with `seq`).
    pub id: Option<Uuid>,
}

impl ServerMsg {
    /// A `topic`, `kicked`, `role` or `mode` event as a [`LiveNotice`]; `None` for any
    /// other event.
    pub fn to_notice(&self) -> Option<LiveNotice> {
        let (room, notice, by, ts, seq, id) = match self.clone() {
            Self::Topic {
                room,
                text,
                by,
                ts,
                seq,
                id,
            } => (room, RoomNotice::Topic { text }, by, ts, seq, id),
            Self::Kicked {
                room,
                nick,
                by,
                reason,
                ts,
                seq,
                id,
            } => (room, RoomNotice::Kicked { nick, reason }, by, ts, seq, id),
            Self::Role {
                room,
                nick,
                role,
                by,
                ts,
                seq,
                id,
                was,
            } => (room, RoomNotice::Role { nick, role, was }, by, ts, seq, id),
            Self::Mode {
                room,
                by,
                ts,
                change,
                seq,
                id,
            } => (room, RoomNotice::Mode(change), by, ts, seq, id),
            _ => return None,
        };
        Some(LiveNotice {
            room,
            notice,
            by,
            ts,
            seq,
            id,
        })
    }
}

/// A private message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessage {
    /// Message id.
    pub id: Uuid,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Text, control characters stripped.
    pub text: String,
    /// Unix milliseconds, assigned by the server.
    pub ts: i64,
    /// The file this message shares. Optional v1 addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileInfo>>,
    /// The sender was logged in to the account of `from` when it sent this. Optional v1
    /// addition.
    #[serde(default, skip_serializing_if = "is_false")]
    pub account: bool,
}

/// A shared file, as a `message` or `dm` carries it. Boxed where it is carried: most
/// messages share none, and every event in every queue would pay for the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The download's id: 128 random bits, 32 hex digits.
    pub id: String,
    /// The file's name, cleaned.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// Where to download it.
    pub url: String,
}

/// One entry of `room_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room name, lowercase.
    pub name: String,
    /// Number of members.
    pub members: usize,
}

/// Server → client events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Registration succeeded.
    Welcome {
        /// The nick as registered (NFC-normalised).
        nick: String,
        /// This connection's session id.
        session: Uuid,
        /// Server name and version.
        server: String,
        /// Message of the day.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        motd: Option<String>,
        /// The nick is registered and this connection is logged in to it. Optional v1
        /// addition.
        #[serde(default, skip_serializing_if = "is_false")]
        account: bool,
    },
    /// A room message.
    Message(ChatMessage),
    /// A private message, to its recipient and (as confirmation) its sender.
    Dm(DirectMessage),
    /// Someone joined a room.
    Joined {
        /// Room.
        room: String,
        /// Who joined.
        nick: String,
        /// Unix milliseconds.
        ts: i64,
        /// The joiner's role when it is more than a member's. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// The joiner is logged in to the account of its nick. Optional v1 addition.
        #[serde(default, skip_serializing_if = "is_false")]
        account: bool,
    },
    /// Someone left a room.
    Parted {
        /// Room.
        room: String,
        /// Who left.
        nick: String,
        /// Unix milliseconds.
        ts: i64,
        /// `quit`, `timeout`, or the leaver's own text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The leaver disconnected: it left every room it was in, each with this same
        /// `ts`. Optional v1 addition.
        #[serde(default, skip_serializing_if = "is_false")]
        quit: bool,
    },
    /// Someone (perhaps this client) was renamed.
    NickChanged {
        /// Previous nick.
        old: String,
        /// New nick.
        new: String,
        /// Unix milliseconds.
        ts: i64,
    },
    /// A room's members.
    Members {
        /// Room.
        room: String,
        /// Member nicks.
        nicks: Vec<String>,
        /// The list was cut to fit the frame limit. Added to v1.
        #[serde(default, skip_serializing_if = "is_false")]
        truncated: bool,
        /// The members who are ops, the owner included. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ops: Vec<String>,
        /// The members with voice. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        voiced: Vec<String>,
        /// The room's owner, if it has one and they are here. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Rooms with at least one member.
    RoomList {
        /// The rooms.
        rooms: Vec<RoomInfo>,
        /// The list was cut to fit the frame limit. Added to v1.
        #[serde(default, skip_serializing_if = "is_false")]
        truncated: bool,
    },
    /// A page of a room's history, oldest first.
    History {
        /// Room.
        room: String,
        /// Messages, oldest first.
        messages: Vec<ChatMessage>,
        /// More messages matched than were sent.
        truncated: bool,
    },
    /// This client fell behind a room's stream and skipped messages.
    Lagged {
        /// Room.
        room: String,
        /// How many messages were skipped.
        missed: u64,
    },
    /// The server checks an idle client; answer with `pong`.
    Ping {
        /// Echo this in the `pong`.
        token: Value,
    },
    /// The answer to a client `ping`.
    Pong {
        /// The client's token, verbatim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Value>,
    },
    /// A request failed.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The `id` of the request this answers.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        ref_id: Option<Uuid>,
        /// For `auth_throttled`: how long to wait before the next try. Optional v1 addition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The current nick is now registered (the answer to `register`). Optional v1
    /// addition.
    Registered {
        /// The registered nick.
        nick: String,
    },
    /// The password was changed (the answer to `set_password`). Optional v1 addition.
    PasswordChanged {},
    /// A room's topic: set (with `seq` and `id`, as it happens in the room's stream), or
    /// the current one right after `joined` (without them). An empty text: no topic.
    /// Optional v1 addition, as are all the moderation events below.
    Topic {
        /// Room.
        room: String,
        /// The topic.
        text: String,
        /// Who set it.
        by: String,
        /// Unix milliseconds when it was set.
        ts: i64,
        /// Its place in the room's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Its id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Uuid>,
    },
    /// A member was removed from the room; every member, the kicked one included, gets it.
    Kicked {
        /// Room.
        room: String,
        /// Who was kicked.
        nick: String,
        /// Who kicked.
        by: String,
        /// Why (may be empty).
        #[serde(default)]
        reason: String,
        /// Unix milliseconds.
        ts: i64,
        /// Its place in the room's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Its id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Uuid>,
    },
    /// A member's role changed.
    Role {
        /// Room.
        room: String,
        /// Whose role.
        nick: String,
        /// The new role.
        role: Role,
        /// The role before, when known (see `RoomNotice::Role`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        was: Option<Role>,
        /// Who changed it.
        by: String,
        /// Unix milliseconds.
        ts: i64,
        /// Its place in the room's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Its id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Uuid>,
    },
    /// Some of a room's modes changed; right after `joined`, all of them (without `seq`).
    Mode {
        /// Room.
        room: String,
        /// Who changed them (after `joined`: who changed them last, or empty).
        by: String,
        /// Unix milliseconds.
        ts: i64,
        /// What changed.
        #[serde(flatten)]
        change: ModeChange,
        /// Its place in the room's stream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Its id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Uuid>,
    },
    /// An op invited this client into a room.
    Invited {
        /// Room.
        room: String,
        /// Who invited.
        by: String,
    },
    /// A room's bans: the answer to `bans`, `ban` and `unban`.
    BanList {
        /// Room.
        room: String,
        /// The bans, oldest first.
        bans: Vec<BanEntry>,
    },
    /// The server's bans: the answer to `server_ban`, `server_unban` and `server_bans`.
    ServerBanList {
        /// The bans in force, oldest first.
        bans: Vec<ServerBanEntry>,
    },
    /// The answer to `whois`: those of the nicks asked for who are online, in the order
    /// asked. Optional v1 addition.
    Users {
        /// Who is online.
        users: Vec<UserInfo>,
    },
    /// A room-mate (or this client) logged in to the account of its nick after connecting
    /// (`register`, a `nick` with the account's password) or left it (a rename away from
    /// it). Each person sharing a room is told once. Optional v1 addition.
    AccountChanged {
        /// Who, by the nick they hold now.
        nick: String,
        /// Logged in now (false: no longer).
        account: bool,
    },
    /// A room-mate (or this client, as the answer to its `away`) went away or came back.
    /// Optional v1 addition.
    Away {
        /// Who.
        nick: String,
        /// Why; absent: back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Where to upload a file: the answer to `upload`. Optional v1 addition.
    UploadSlot {
        /// The upload's id (the request's, or one the server chose), which the sharing
        /// message will carry.
        #[serde(rename = "ref")]
        ref_id: Uuid,
        /// The tus 1.0 upload.
        url: String,
        /// Unix milliseconds after which the slot is gone.
        expires: i64,
        /// Bytes the server already has.
        #[serde(default)]
        offset: u64,
    },
    /// A line for people from the server (the confirmation of a `kill`, for one).
    Notice {
        /// What it says.
        text: String,
    },
    /// The server is about to close the connection.
    Bye {
        /// Why.
        reason: ByeReason,
        /// For people.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// An event type newer than this client; produced only by parsing, never sent.
    #[serde(other)]
    Unknown,
}

impl ServerMsg {
    /// An `error` event.
    pub fn error(code: ErrorCode, message: impl Into<String>, ref_id: Option<Uuid>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            ref_id,
            retry_after_ms: None,
        }
    }
}

/// Error codes of `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, unknown type, missing or wrongly typed field, or a request that makes
    /// no sense in the current state.
    BadRequest,
    /// A length prefix over the maximum frame size.
    FrameTooLarge,
    /// A request other than `hello`, `ping` or `quit` before `welcome`.
    NotRegistered,
    /// `hello` asked for a protocol version this server does not speak.
    UnsupportedVersion,
    /// The nick is in use (compared without regard to case).
    NickTaken,
    /// The nick breaks the nick rules.
    NickInvalid,
    /// The room name breaks the room rules.
    RoomInvalid,
    /// The request names a room the client has not joined.
    NotInRoom,
    /// No client has that nick.
    NoSuchNick,
    /// Empty or too long text.
    TextInvalid,
    /// Over the message rate; the message was dropped.
    RateLimited,
    /// No room for another connection.
    ServerFull,
    /// Over the limit on rooms (server-wide or joined by one client). Added to v1.
    TooManyRooms,
    /// The server could not store the message (or read history); nothing was delivered.
    /// Added to v1.
    Unavailable,
    /// The nick is registered: it needs its password (`hello` with `password`). Optional v1
    /// addition.
    NickRegistered,
    /// Wrong password. Optional v1 addition.
    AuthFailed,
    /// Too many failed logins: wait `retry_after_ms`. Optional v1 addition.
    AuthThrottled,
    /// The server accepts only TLS connections (`--require-tls`) and this one is plain; it
    /// is closed. Added to v1.
    TlsRequired,
    /// Only the room's ops (or server admins) may do that. Optional v1 addition, as are
    /// the moderation codes below.
    NotOp,
    /// Only the room's owner may do that (demote an op, hand the room over).
    NotOwner,
    /// Only server admins may do that.
    NotAdmin,
    /// The nick is banned from the room (or the client from the server).
    Banned,
    /// The room is invite-only and the client has no invitation.
    InviteOnly,
    /// The room has a key and the `join` gave none, or the wrong one.
    BadKey,
    /// The room is moderated: only voiced members and ops may speak.
    Moderated,
    /// The nick acted on must be a registered account's (a room's owner).
    AccountRequired,
    /// A file over `--max-file-size`. Optional v1 addition, as are the file codes below.
    FileTooLarge,
    /// A file that would take its uploader over its quota.
    QuotaExceeded,
    /// A file name that cannot be one (empty, too long, `/`, `..`, NUL).
    NameInvalid,
    /// The uploaded file's SHA-256 is not the one announced: it was deleted.
    ChecksumMismatch,
    /// A code newer than this client; produced only by parsing, never sent.
    #[serde(other)]
    Other,
}

/// Reasons of `bye` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    /// The client asked to quit.
    Quit,
    /// The server is shutting down.
    Shutdown,
    /// The client kept sending over the rate limit.
    Flood,
    /// The client's writes made no progress.
    TooSlow,
    /// The client did not answer pings.
    Timeout,
    /// The client did not complete `hello` in time.
    HandshakeTimeout,
    /// The client sent a length prefix over the maximum.
    FrameTooLarge,
    /// The client sent too many bad requests in a row.
    BadRequests,
    /// No room for another connection.
    ServerFull,
    /// Another connection logged in to this nick's account and took the nick over.
    /// Optional v1 addition.
    Replaced,
    /// A plain connection to a server that requires TLS. Added to v1.
    TlsRequired,
    /// A server admin disconnected the client (`kill`). Optional v1 addition.
    Killed,
    /// The client's address or account is banned from the server. Optional v1 addition.
    Banned,
    /// A reason newer than this client; produced only by parsing, never sent.
    #[serde(other)]
    Other,
}

impl ByeReason {
    /// The wire name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::Shutdown => "shutdown",
            Self::Flood => "flood",
            Self::TooSlow => "too_slow",
            Self::Timeout => "timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::FrameTooLarge => "frame_too_large",
            Self::BadRequests => "bad_requests",
            Self::ServerFull => "server_full",
            Self::Replaced => "replaced",
            Self::TlsRequired => "tls_required",
            Self::Killed => "killed",
            Self::Banned => "banned",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Request, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn request_id_sits_beside_the_type() {
        let id = Uuid::now_v7();
        let req = Request::with_id(
            id,
            ClientMsg::Say {
                room: "lobby".into(),
                text: "hi".into(),
                action: false,
            },
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({"id": id.to_string(), "type": "say", "room": "lobby", "text": "hi"})
        );
        assert_eq!(parse(v).unwrap(), req);
    }

    #[test]
    fn unit_like_requests_parse_with_and_without_extra_fields() {
        assert_eq!(
            parse(json!({"type": "rooms"})).unwrap().msg,
            ClientMsg::Rooms {}
        );
        assert_eq!(
            parse(json!({"type": "rooms", "future": 1})).unwrap().msg,
            ClientMsg::Rooms {}
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(parse(json!({"type": "shout", "text": "x"})).is_err());
        assert!(parse(json!({"text": "no type"})).is_err());
        assert!(parse(json!({"type": "say", "room": "lobby"})).is_err());
        assert!(parse(json!({"type": "say", "room": 5, "text": "x"})).is_err());
        assert!(parse(json!({"type": "pong"})).is_err());
        assert!(
            parse(json!({"type": "say", "room": "a", "text": "x", "id": "not-a-uuid"})).is_err()
        );
    }

    #[test]
    fn ping_token_is_any_json_and_keeps_key_order() {
        let req = parse(json!({"type": "ping", "token": {"z": 1, "a": [1, 2.5, "x"]}})).unwrap();
        let ClientMsg::Ping { token: Some(token) } = req.msg else {
            panic!("not a ping: {req:?}");
        };
        let pong = ServerMsg::Pong { token: Some(token) };
        assert_eq!(
            serde_json::to_string(&pong).unwrap(),
            r#"{"type":"pong","token":{"z":1,"a":[1,2.5,"x"]}}"#
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let msg = ServerMsg::Message(ChatMessage {
            id: Uuid::now_v7(),
            room: "lobby".into(),
            seq: 7,
            from: "小明".into(),
            text: "你好 👋".into(),
            ts: 1_700_000_000_000,
            action: true,
            account: false,
            event: None,
            file: None,
        });
        let s = serde_json::to_string(&msg).unwrap();
        assert!(s.starts_with(r#"{"type":"message","id":"#), "{s}");
        assert_eq!(serde_json::from_str::<ServerMsg>(&s).unwrap(), msg);

        let err = ServerMsg::error(ErrorCode::NickTaken, "taken", None);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"type": "error", "code": "nick_taken", "message": "taken"})
        );
    }

    #[test]
    fn clients_tolerate_what_is_newer_than_them() {
        let ev: ServerMsg = serde_json::from_value(json!({"type": "typing", "nick": "a"})).unwrap();
        assert_eq!(ev, ServerMsg::Unknown);
        let ev: ServerMsg =
            serde_json::from_value(json!({"type": "error", "code": "new_code", "message": "m"}))
                .unwrap();
        assert!(matches!(
            ev,
            ServerMsg::Error {
                code: ErrorCode::Other,
                ..
            }
        ));
        let ev: ServerMsg =
            serde_json::from_value(json!({"type": "bye", "reason": "maintenance"})).unwrap();
        assert!(matches!(
            ev,
            ServerMsg::Bye {
                reason: ByeReason::Other,
                ..
            }
        ));
    }

    #[test]
    fn a_mode_request_flattens_its_change_and_null_removes_the_key() {
        let req =
            parse(json!({"type": "mode", "room": "r", "key": null, "moderated": true})).unwrap();
        let ClientMsg::Mode { room, change } = req.msg else {
            panic!("not a mode: {req:?}");
        };
        assert_eq!(room, "r");
        assert_eq!(change.key, Some(None));
        assert_eq!(change.moderated, Some(true));
        assert_eq!(change.secret, None);
    }

    #[test]
    fn a_notice_in_history_is_a_message_and_live_its_own_event() {
        let id = Uuid::now_v7();
        let m = ChatMessage {
            id,
            room: "r".into(),
            seq: 4,
            from: "alice".into(),
            text: "bob was kicked by alice (spam)".into(),
            ts: 5,
            action: false,
            account: false,
            event: Some(RoomNotice::Kicked {
                nick: "bob".into(),
                reason: "spam".into(),
            }),
            file: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["event"],
            json!({"type": "kicked", "nick": "bob", "reason": "spam"})
        );
        assert_eq!(serde_json::from_value::<ChatMessage>(v).unwrap(), m);
        let back = m.live().unwrap().to_notice().unwrap();
        assert_eq!(
            (back.notice, back.by.as_str(), back.seq, back.id),
            (m.event.clone().unwrap(), "alice", Some(4), Some(id))
        );
        let live = serde_json::to_value(m.live().unwrap()).unwrap();
        assert_eq!(
            live,
            json!({"type": "kicked", "room": "r", "nick": "bob", "by": "alice",
                   "reason": "spam", "ts": 5, "seq": 4, "id": id.to_string()})
        );
        let mode = ServerMsg::Mode {
            room: "r".into(),
            by: "alice".into(),
            ts: 1,
            change: ModeChange {
                key: Some(None),
                ..ModeChange::default()
            },
            seq: None,
            id: None,
        };
        let s = serde_json::to_string(&mode).unwrap();
        assert_eq!(
            s,
            r#"{"type":"mode","room":"r","by":"alice","ts":1,"key":null}"#
        );
        assert_eq!(serde_json::from_str::<ServerMsg>(&s).unwrap(), mode);
    }
}
