//! An outgoing event, encoded at most once per wire format and shared by every recipient.
//!
//! Local delivery hands every member one `Arc<Event>`; each recipient's wire adapter asks
//! it for its format's bytes. The first recipient of a format pays for the encoding, the
//! rest read the same bytes, so a room of 1,000 members costs one JSON serialisation, not
//! 1,000. Formats nobody in the room speaks are never encoded. Which formats exist is the
//! adapters' business: each claims [`Slot`]s of the cache (see `wire::slots`); this file
//! only knows how many there are.

use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use chat_shared::ServerMsg;
use once_cell::race::OnceBox;
use uuid::Uuid;

/// How many encodings an event can cache inline; an adapter with a new variant raises it.
pub(crate) const SLOTS: usize = 7;

/// How many more an event can cache in a box of its own, allocated by the first recipient
/// that asks for one: variants only some events ever have (IRC's `account-tag` lines of a
/// logged-in sender's messages), which would otherwise cost every event a pointer each.
pub(crate) const RARE_SLOTS: usize = 4;

/// One cached encoding of an event, claimed by one wire adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(usize);

impl Slot {
    /// # Panics
    /// At compile time (slots are constants) when `index` is not below [`SLOTS`] +
    /// [`RARE_SLOTS`] (indices from [`SLOTS`] on are the rare ones).
    pub(crate) const fn new(index: usize) -> Self {
        assert!(
            index < SLOTS + RARE_SLOTS,
            "raise event::SLOTS or RARE_SLOTS for a new encoding"
        );
        Self(index)
    }
}

/// One server event plus its lazily built wire encodings.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) msg: ServerMsg,
    /// The session whose request caused the event: line mode does not echo a client's own
    /// messages, and shows its own DMs as sent confirmations.
    pub(crate) origin: Option<Uuid>,
    encoded: [OnceBox<Bytes>; SLOTS],
    /// The rare slots, once one is asked for.
    rare: OnceBox<[OnceBox<Bytes>; RARE_SLOTS]>,
    /// Where a stored message stands (see [`Settled`]); every other event is born durable.
    settled: AtomicU8,
    /// See [`Event::weight`]; computed once, as every recipient's queue asks for it.
    weight: u32,
    /// The room it happened in, where the path stamped it (see [`RoomKey`]).
    room: Option<RoomKey>,
}

/// A room as a number: what tells a recipient "this is my current room" without comparing
/// names. A line client's session asked that of every message it was handed, and reading
/// its current room's name fetched two cold cache lines per delivery (`memcmp` was 1.7 %
/// of the server's samples in W2). Unique among a server's rooms for its lifetime (past
/// 2^32 - 1 rooms, new ones get none): equal keys mean the same room; unequal or missing
/// keys say nothing, and names are compared. 32 bits, as a line session's task has room
/// for no more.
pub(crate) type RoomKey = std::num::NonZeroU32;

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
    /// The commit failed, or it was a resend: it was never stored.
    Failed,
}

/// What an event costs a recipient's send queue beyond its text: the JSON around it. A
/// message's frame is 142 bytes besides its room, nick and text (its length prefix, the
/// keys, a 36-character id, a seq of up to 20 digits and a 13-digit ts), and the weights
/// of a batch size its write buffer: an estimate short of that made nearly every busy
/// batch reallocate (and copy) its buffer on the way, 5 % of the server's time in W1.
const OVERHEAD: usize = 144;

impl Event {
    pub(crate) fn new(msg: ServerMsg, origin: Option<Uuid>) -> Self {
        let weight = u32::try_from(weight_of(&msg)).unwrap_or(u32::MAX);
        Self {
            msg,
            origin,
            encoded: Default::default(),
            rare: OnceBox::new(),
            settled: AtomicU8::new(Settled::Durable as u8),
            weight,
            room: None,
        }
    }

    /// The event, stamped as one of the room `key`'s (if it has one).
    pub(crate) fn in_room(mut self, key: Option<RoomKey>) -> Self {
        self.room = key;
        self
    }

    /// The room the path stamped the event with, if it did.
    pub(crate) fn room_key(&self) -> Option<RoomKey> {
        self.room
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

    /// Records the store's verdict; called once, by the ordered path.
    pub(crate) fn settle(&self, to: Settled) {
        self.settled.store(to as u8, Ordering::Release);
    }

    /// About how many bytes this event takes on the wire: what it weighs in a recipient's
    /// send queue. An estimate from its free text (the encodings are built later, by the
    /// recipients' adapters, and differ), close to the framed size for the events that are
    /// queued in bulk: messages and notices.
    pub(crate) fn weight(&self) -> usize {
        self.weight as usize
    }

    /// This event's bytes in `slot`, built by `encode` only if nobody has yet. Borrowed,
    /// not cloned: recipients copy them into their own write buffer, which spares a
    /// reference count shared by every core.
    ///
    /// Never waits: a recipient that finds no encoding builds one, and whichever is stored
    /// first is kept (`once_cell::race`). A `OnceLock` would block worker threads while the
    /// first recipient encodes, which in a busy room is every event; racing costs at most
    /// one extra encoding per worker thread, and only on a tie.
    pub(crate) fn encoded(&self, slot: Slot, encode: impl FnOnce(&ServerMsg) -> Bytes) -> &[u8] {
        let cell = match slot.0.checked_sub(SLOTS) {
            None => &self.encoded[slot.0],
            // Racing here too: a box built twice is empty, and one of the two is dropped.
            Some(rare) => &self.rare.get_or_init(Box::default)[rare],
        };
        cell.get_or_init(|| Box::new(encode(&self.msg)))
    }
}

/// See [`Event::weight`].
fn weight_of(msg: &ServerMsg) -> usize {
    OVERHEAD
        + match msg {
            ServerMsg::Message(m) => m.text.len() + m.from.len() + m.room.len(),
            ServerMsg::Dm(d) => d.text.len() + d.from.len() + d.to.len(),
            ServerMsg::Joined { room, nick, .. } => room.len() + nick.len(),
            ServerMsg::Parted {
                room, nick, reason, ..
            } => room.len() + nick.len() + reason.as_ref().map_or(0, String::len),
            ServerMsg::NickChanged { old, new, .. } => old.len() + new.len(),
            _ => 0,
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
        let (a, b) = (Slot::new(0), Slot::new(1));
        let first = ev.encoded(a, enc).as_ptr();
        let again = ev.encoded(a, enc).as_ptr();
        assert_eq!(calls.get(), 1);
        assert_eq!(first, again, "recipients share one buffer");
        ev.encoded(b, enc);
        assert_eq!(calls.get(), 2);
        let rare = Slot::new(SLOTS + RARE_SLOTS - 1);
        assert!(
            ev.rare.get().is_none(),
            "no rare box until one is asked for"
        );
        let first = ev.encoded(rare, enc).as_ptr();
        assert_eq!(ev.encoded(rare, enc).as_ptr(), first);
        assert_eq!(calls.get(), 3);
    }
}
