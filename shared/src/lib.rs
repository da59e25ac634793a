//! Wire protocol v1 of `chat-server`, shared by the server, `chat-tui` and the tests.
//!
//! The contract itself is `docs/PROTOCOL.md`; this crate is its Rust form, so the server and
//! every client agree on it by construction rather than by convention.
//!
//! Layout:
//! - [`message`]: the client → server requests ([`Request`], [`ClientMsg`]) and server → client
//!   events ([`ServerMsg`]) as serde types, internally tagged by `"type"`.
//! - [`codec`]: the framed mode: `LengthDelimitedCodec` with an explicit maximum frame length,
//!   plus JSON; [`codec::ClientCodec`] for clients, [`codec::encode_frame`] for the server,
//!   which encodes an event once and shares the bytes.
//! - [`validate`]: the naming and text rules both sides enforce: nicks, rooms, text limits and
//!   control-character stripping.
//! - [`moderation`]: roles, room modes, room notices and ban entries (optional v1
//!   additions).
//! - [`error`]: the codec's error type.

pub mod codec;
pub mod error;
pub mod message;
pub mod moderation;
pub mod validate;

pub use codec::{ClientCodec, FrameCodec, encode_frame};
pub use error::CodecError;
pub use message::{
    ByeReason, ChatMessage, ClientMsg, DirectMessage, ErrorCode, FileInfo, LiveNotice, Password,
    Request, RoomInfo, ServerMsg, UserInfo,
};
pub use moderation::{BanEntry, ModeChange, Role, RoomNotice, ServerBanEntry};
pub use validate::{Nick, RoomName};

/// Protocol version this crate speaks (`version` in `hello`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Default TCP address of the server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// Default maximum frame payload in bytes, in both directions (`--max-frame`).
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Default maximum message text in bytes of UTF-8, after stripping (`--max-text`).
pub const MAX_TEXT_LEN: usize = 4 * 1024;

/// Name of the room every client joins after `welcome`.
pub const DEFAULT_ROOM: &str = "lobby";
