//! Wire adapters: each turns one wire format's bytes into [`Request`]s and events into bytes.
//!
//! The session (`session/`) knows no wire format; it talks to a [`Wire`], whose
//! capabilities ([`Caps`]) are decided per connection at run time. Framed mode is a thin
//! JSON adapter; line mode is a translation (text and `/commands` ↔ requests and events),
//! not a second server. A third format (IRC, WebSocket) is one more adapter: a file here, its
//! encoding slots in [`slots`], and one arm where `server.rs` picks the adapter.
//!
//! Layout:
//! - [`framed`]: length-prefixed JSON.
//! - [`line`]: plain text lines for `nc` and `telnet`.
//! - [`irc`]: IRC, for irssi, weechat, hexchat and bots (a translation, like line mode).
//! - [`line_codec`]: line mode's byte-level decoder (CRLF, telnet, UTF-8, line limit).
//! - [`outbox`]: the outgoing byte buffer both adapters write with one syscall per batch.
//! - [`reader`]: decoding input without holding a read buffer while idle.

pub(crate) mod framed;
pub(crate) mod irc;
pub(crate) mod line;
pub(crate) mod line_codec;
pub(crate) mod outbox;
pub(crate) mod reader;

use std::time::Duration;

use chat_shared::Request;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::timeout;
use uuid::Uuid;

use crate::event::Event;

/// The event-cache slots (see `event.rs`), one per encoding variant; each adapter claims
/// its own here, so two can never share one.
pub(crate) mod slots {
    use crate::event::Slot;

    /// A complete length-prefixed JSON frame.
    pub(crate) const FRAMED: Slot = Slot::new(0);
    /// Line-mode text as seen by a client whose current room is the event's room.
    pub(crate) const LINE_HERE: Slot = Slot::new(1);
    /// Line-mode text as seen by a client for which the room is not current (`[room] `).
    pub(crate) const LINE_ELSEWHERE: Slot = Slot::new(2);
    /// IRC lines without tags (and every IRC event that carries none).
    pub(crate) const IRC: Slot = Slot::new(3);
    /// IRC lines with `time` (server-time without message-tags).
    pub(crate) const IRC_TIME: Slot = Slot::new(4);
    /// IRC lines with `msgid` (message-tags without server-time).
    pub(crate) const IRC_MSGID: Slot = Slot::new(5);
    /// IRC lines with `msgid` and `time`.
    pub(crate) const IRC_MSGID_TIME: Slot = Slot::new(6);
    /// The four IRC variants above with `account-tag`'s `account`, for the messages of a
    /// logged-in sender (rare slots: other events never have them).
    pub(crate) const IRC_ACCOUNT: Slot = Slot::new(7);
    pub(crate) const IRC_ACCOUNT_TIME: Slot = Slot::new(8);
    pub(crate) const IRC_ACCOUNT_MSGID: Slot = Slot::new(9);
    pub(crate) const IRC_ACCOUNT_MSGID_TIME: Slot = Slot::new(10);
}

/// What a connection's client can do, decided when it connects (a future adapter may
/// negotiate them, as IRC's `echo-message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// The session pings this client when it is idle. Line clients cannot answer a ping;
    /// TCP keepalive watches them instead.
    pub(crate) pings: bool,
    /// The client receives its own room messages, as their acknowledgement. Line clients do
    /// not (their terminal already shows what they typed).
    pub(crate) echoes_own: bool,
}

/// What an adapter read from its client.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A well-formed request.
    Request(Request),
    /// Input that is not a valid request: answered with `bad_request`, connection kept.
    Invalid {
        /// The request's `id`, when one could be read, for the error's `ref`.
        ref_id: Option<Uuid>,
        reason: String,
    },
    /// The adapter answered the input itself (line mode's `/help`, a usage error); the
    /// session only has to flush.
    Handled,
    /// A length prefix over the frame limit: the stream cannot be resynchronised.
    FrameTooLarge { max: usize },
    /// A credential the adapter checks itself was wrong (IRC's server password, `PASS`,
    /// answered 464 already): the session logs the failure and closes the connection.
    BadServerPassword { nick: String },
}

/// One client connection in some wire format, as the session sees it.
pub(crate) trait Wire {
    /// What this client can do.
    fn caps(&self) -> Caps;

    /// The next input, or `None` at end of stream. Cancel-safe: a partly read frame or line
    /// stays buffered.
    async fn recv(&mut self) -> std::io::Result<Option<Inbound>>;

    /// Queues an event for the client (nothing is written until [`Wire::flush`]).
    fn push(&mut self, event: &Event);

    /// Bytes queued and not yet written.
    fn pending(&self) -> usize;

    /// Bytes read from the client since the last call (for `/clients`' `bytes_in`).
    fn take_read(&mut self) -> u64;

    /// About `bytes` more are coming before the next flush (a batch's weight): room for
    /// them is made at once, rather than by growing the buffer message by message.
    fn reserve(&mut self, bytes: usize);

    /// How large `event` is in the protocol's terms, to keep lists (history, members, rooms)
    /// within one frame of `--max-frame` for every client alike.
    fn size_of(&self, event: &Event) -> usize {
        framed::payload_len(event)
    }

    /// Writes everything queued.
    async fn flush(&mut self) -> std::io::Result<()>;

    /// Ends the connection gracefully; see [`linger`].
    async fn close(&mut self);
}

/// How long a closing connection's input is read and discarded, at most (a client that
/// closes too ends it at once). Long enough for a client still reading a full kernel send
/// buffer (megabytes of a busy room's messages) to reach its last frames: closing earlier
/// with its input unread sends a reset, which destroys them. At shutdown this fits in the
/// grace period after the last words' flush (3 s − 1 s). 500 ms was too short once a busy
/// room stopped skipping messages for readers that keep up (issue 10).
const LINGER: Duration = Duration::from_millis(2000);

/// Half-closes `writer` (FIN), then reads and discards `reader` until the client closes too,
/// or [`LINGER`] passes.
///
/// Closing a socket that still has unread input makes the kernel send a reset, and a reset
/// can destroy the last frames sent (`bye`, the reason for a disconnect) before the client
/// reads them. Flooders and oversized frames are exactly the clients that still have input
/// in flight when they are disconnected.
pub(crate) async fn linger<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Errors mean the peer is already gone, which is what closing wants.
    let _ = writer.shutdown().await;
    let discard = std::future::poll_fn(|cx| {
        loop {
            // On the stack of this poll, not in the future: every connection's task holds
            // its future for its whole life.
            let mut scratch = [0u8; 1024];
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    });
    // Timing out is the other normal end: the client keeps sending.
    let _ = timeout(LINGER, discard).await;
}
