//! An outgoing event, encoded at most once per wire format and shared by every recipient.
//!
//! A room broadcast carries one `Arc<Event>`; each recipient's wire adapter asks it for its
//! format's bytes. The first recipient of a format pays for the encoding, the rest read the
//! same bytes, so a room of 1,000 members costs one JSON serialisation, not 1,000. Formats
//! nobody in the room speaks are never encoded.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use chat_shared::ServerMsg;
use uuid::Uuid;

/// The encodings an event can be cached in. A new wire format (IRC, WebSocket) adds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// A complete length-prefixed JSON frame.
    Framed,
    /// Line-mode text as seen by a client whose current room is the event's room.
    LineHere,
    /// Line-mode text as seen by a client for which the room is not current (`[room] ` prefix).
    LineElsewhere,
}

const ENCODINGS: usize = 3;

/// One server event plus its lazily built wire encodings.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) msg: ServerMsg,
    /// The session whose request caused the event: line mode does not echo a client's own
    /// messages, and shows its own DMs as sent confirmations.
    pub(crate) origin: Option<Uuid>,
    encoded: [OnceLock<Bytes>; ENCODINGS],
    /// Where a stored message stands (see [`Settled`]); every other event is born durable.
    settled: AtomicU8,
}

/// Where a message stands on its way to the disk.
///
/// A room message is delivered to the room as soon as the store has taken it, before its
/// commit; only the copy that acknowledges it to its sender waits for [`Settled::Durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Written, not yet committed.
    Pending,
    /// On disk (or storage is off).
    Durable,
    /// The commit failed: it was never stored.
    Failed,
}

impl Event {
    pub(crate) fn new(msg: ServerMsg, origin: Option<Uuid>) -> Self {
        Self {
            msg,
            origin,
            encoded: Default::default(),
            settled: AtomicU8::new(Settled::Durable as u8),
        }
    }

    /// A message on its way to the store: [`Settled::Pending`] until the store says.
    pub(crate) fn pending(msg: ServerMsg, origin: Option<Uuid>) -> Self {
        Self {
            settled: AtomicU8::new(Settled::Pending as u8),
            ..Self::new(msg, origin)
        }
    }

    pub(crate) fn settled(&self) -> Settled {
        match self.settled.load(Ordering::Acquire) {
            0 => Settled::Pending,
            1 => Settled::Durable,
            _ => Settled::Failed,
        }
    }

    /// Records the store's verdict; called once, by the store's callback.
    pub(crate) fn settle(&self, to: Settled) {
        self.settled.store(to as u8, Ordering::Release);
    }

    /// This event's bytes in `encoding`, built by `encode` only the first time they are asked
    /// for. Borrowed, not cloned: recipients copy them into their own write buffer, which
    /// spares a reference count shared by every core.
    pub(crate) fn encoded(
        &self,
        encoding: Encoding,
        encode: impl FnOnce(&ServerMsg) -> Bytes,
    ) -> &[u8] {
        self.encoded[encoding as usize].get_or_init(|| encode(&self.msg))
    }

    /// Stores bytes already made for `encoding` (a caller that had to encode to measure
    /// the size need not encode again).
    pub(crate) fn prime(&self, encoding: Encoding, bytes: Bytes) {
        // Already set means someone encoded it first; both encodings are the same.
        let _ = self.encoded[encoding as usize].set(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn each_encoding_is_built_once_and_shared() {
        let ev = Event::new(ServerMsg::Pong { token: None }, None);
        let calls = Cell::new(0);
        let enc = |_: &ServerMsg| {
            calls.set(calls.get() + 1);
            Bytes::from_static(b"frame")
        };
        let a = ev.encoded(Encoding::Framed, enc).as_ptr();
        let b = ev.encoded(Encoding::Framed, enc).as_ptr();
        assert_eq!(calls.get(), 1);
        assert_eq!(a, b, "recipients share one buffer");
        ev.encoded(Encoding::LineHere, enc);
        assert_eq!(calls.get(), 2);
    }
}
