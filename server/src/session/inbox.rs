//! What the sink hands the session: written to the client in order, in batches, except
//! the copy of a message that acknowledges it to its sender, which waits until the message
//! is durable, with everything behind it (so the sender still sees its rooms in order). A
//! room's events are read from its feed where its marker stands in the queue, as many as
//! have come (see `path/feed.rs`).

use std::sync::Arc;

use chat_shared::{RoomNotice, ServerMsg};

use super::history::Deferred;
use super::{Exit, MAX_BATCH_BYTES, Session};
use crate::event::{Event, Settled};
use crate::path::feed::{self, At, Sub};
use crate::path::sink::{Item, weight32};
use crate::path::stream::same_nick;
use crate::wire::Wire;

/// Batches a session writes before it looks at its client's input and its shutdown again.
const MAX_ROUNDS: usize = 4;

/// Room for the event that takes a batch past `MAX_BATCH_BYTES`.
const RESERVE_SLACK: usize = 4 * 1024;

/// Where handling the inbox stopped.
enum Batch {
    /// A batch's worth is queued; more may follow.
    Full,
    /// Nothing more to handle now.
    Done,
    /// The front is this client's own message, not durable yet.
    Held,
    /// A join's history needs the store first.
    Deferred(Box<Deferred>),
}

/// What to do with the event at the front of the inbox.
enum Next {
    Send,
    Skip,
    /// Wait: it acknowledges this client's own message, which is not durable yet.
    Hold,
}

impl<W: Wire> Session<W> {
    /// Takes what the sink has and writes it, one flush per batch, until nothing is left,
    /// the front waits for durability (the sink pokes the session when it may go on), or
    /// [`MAX_ROUNDS`] batches were written. Then the session goes back to its loop, so a
    /// busy room can never keep it from its client's input or from shutting down; if more
    /// is waiting, the sink is re-armed and the loop comes straight back here.
    pub(super) async fn deliver(&mut self) -> Result<(), Exit> {
        for _ in 0..MAX_ROUNDS {
            // A poke only says "look again", which this is.
            self.sink.take_poke();
            // What a full batch left behind is handled first, before what is taken now.
            let left = !self.inbox.is_empty();
            let fresh = self.sink.take_all(&mut self.inbox);
            // A batch stops at the first event past MAX_BATCH_BYTES; weights are about
            // the framed size, an upper bound for line mode's. Leftovers were more than a
            // batch already. What a feed has is added when it is read (`read_feed`).
            let coming = if left { usize::MAX } else { fresh };
            self.reserve(coming);
            let batch = self.handle_inbox();
            self.flush().await?;
            let more = match batch {
                Batch::Full => true,
                Batch::Done => false,
                // Only the settling (a poke) or new events (a wake-up) change anything now:
                // looking again before either would spin.
                Batch::Held => return Ok(()),
                Batch::Deferred(deferred) => {
                    // Boxed: it runs rarely, and every connection's task would carry it.
                    Box::pin(self.complete(*deferred)).await;
                    true
                }
            };
            if !more && !self.sink.signalled() {
                if self.inbox.is_empty() && self.inbox.capacity() > 0 {
                    // An idle session keeps no buffer: most are idle most of the time.
                    self.inbox = std::collections::VecDeque::new();
                }
                return Ok(());
            }
        }
        // More is waiting (in the inbox, or queued and possibly announced by a wake-up that
        // a wait for durability took, see `history.rs`): wake the loop again.
        self.sink.rearm();
        Ok(())
    }

    /// Handles inbox items until a batch is full, the inbox is empty or held, or a join
    /// needs the store.
    fn handle_inbox(&mut self) -> Batch {
        while self.wire.pending() < MAX_BATCH_BYTES {
            let next = match self.inbox.front() {
                None => return Batch::Done,
                Some(Item::Feed(sub)) => {
                    let sub = Arc::clone(sub);
                    match self.read_feed(&sub) {
                        // Read up to where it stands now: the marker is spent.
                        Batch::Done => {
                            self.inbox.pop_front();
                            continue;
                        }
                        other => return other,
                    }
                }
                Some(item) => item.event().map_or(Next::Send, |event| self.next(event)),
            };
            if let Next::Hold = next {
                return Batch::Held;
            }
            let Some(item) = self.inbox.pop_front() else {
                return Batch::Done;
            };
            match item {
                Item::Join(join) => {
                    self.handled = self.handled.saturating_add(weight32(join.weight()));
                    if let Some(deferred) = self.join_sequence(*join) {
                        return Batch::Deferred(Box::new(deferred));
                    }
                }
                Item::Event(event) => {
                    self.handled = self.handled.saturating_add(weight32(event.weight()));
                    if let Next::Send = next {
                        self.send(&event);
                    }
                }
                Item::Feed(_) => {}
            }
        }
        Batch::Full
    }

    /// Reads a room's feed from where this session stands in it, until it has read all,
    /// the batch is full, or its own message holds it (`Done`, `Full`, `Held`).
    fn read_feed(&mut self, sub: &Sub) -> Batch {
        loop {
            let pos = sub.position();
            let upto = sub.end();
            if pos.index >= upto {
                return Batch::Done;
            }
            match sub.feed.at(pos.index, pos.msgs) {
                At::Caught => {
                    // Let the next append queue a marker again, then look once more: one
                    // that came before this found the marker still standing.
                    if sub.close() {
                        return Batch::Done;
                    }
                }
                At::Gap { to, missed } => {
                    // More than the budget behind: what was missed is counted, not kept.
                    if let Some(conn) = self.sink.conn() {
                        conn.lagged(1);
                    }
                    let room = sub.feed.room().to_owned();
                    self.send(&Event::new(ServerMsg::Lagged { room, missed }, None));
                    sub.advance(to);
                }
                At::Chunk { chunk, tail } => {
                    self.reserve(feed::weight_to_read(&chunk, pos, tail.min(upto)));
                    let mut last = pos;
                    let mut stop = None;
                    let mut took = 0;
                    for (entry, after) in feed::entries(&chunk, pos.index, tail.min(upto)) {
                        match self.next(&entry.event) {
                            Next::Hold => {
                                stop = Some(Batch::Held);
                                break;
                            }
                            Next::Skip => {}
                            Next::Send => self.send(&entry.event),
                        }
                        took += entry.event.weight();
                        last = after;
                        if self.wire.pending() >= MAX_BATCH_BYTES {
                            stop = Some(Batch::Full);
                            break;
                        }
                    }
                    sub.advance(last);
                    self.read = self.read.saturating_add(weight32(took));
                    if let Some(stop) = stop {
                        return stop;
                    }
                }
            }
        }
    }

    /// Makes room in the write buffer for `weight` more, up to what a batch holds, so that
    /// a batch is one allocation rather than a dozen doublings.
    fn reserve(&mut self, weight: usize) {
        let room = (MAX_BATCH_BYTES + RESERVE_SLACK).saturating_sub(self.wire.pending());
        self.wire.reserve(weight.min(room));
    }

    /// Writes `event` to the client, and forgets a room it was kicked from.
    fn send(&mut self, event: &Event) {
        self.wire.push(event);
        if let ServerMsg::Message(m) = &event.msg
            && let Some(RoomNotice::Kicked { nick, .. }) = &m.event
        {
            self.kicked(&m.room, nick);
        }
    }

    fn next(&self, event: &Arc<Event>) -> Next {
        match event.settled() {
            Settled::Durable => Next::Send,
            // Never stored: not history, and its sender was told.
            Settled::Failed => Next::Skip,
            // Members see a message as soon as the store has taken it; the copy that
            // acknowledges it waits until it is durable.
            Settled::Pending if self.acknowledges(event) => {
                if self.wait_durable(event) {
                    Next::Hold
                } else {
                    // Settled meanwhile: look again.
                    self.next(event)
                }
            }
            Settled::Pending => Next::Send,
        }
    }

    /// Whether this client would take `event` as the acknowledgement of its own message: it
    /// sent it, or it is the same nick again (a client reconnected after sending it).
    fn acknowledges(&self, event: &Event) -> bool {
        if !self.caps.echoes_own {
            return false;
        }
        event.origin == Some(self.id)
            || matches!((&event.msg, &self.nick),
                (ServerMsg::Message(m), Some(nick)) if same_nick(&m.from, nick.as_str()))
    }

    /// A kick this client was shown: if it was this client's, the room is no longer one
    /// of its rooms (the path has removed it already), unless it has joined again since.
    fn kicked(&mut self, room: &str, nick: &str) {
        if !self
            .nick
            .as_ref()
            .is_some_and(|n| same_nick(n.as_str(), nick))
        {
            return;
        }
        let Some(joined) = self.rooms.get(room).cloned() else {
            return;
        };
        if !joined.is_member(self.id) {
            self.rooms.remove(joined.name());
        }
    }

    /// Asks `event`'s room to poke this session when a message settles; false when it has
    /// settled already, or its room is not known here (then it goes out as it is).
    pub(super) fn wait_durable(&self, event: &Event) -> bool {
        let ServerMsg::Message(m) = &event.msg else {
            return false;
        };
        let room = self.rooms.get(&m.room).cloned().or_else(|| {
            // Parted meanwhile: the room still settles it.
            let name = chat_shared::RoomName::parse(&m.room).ok()?;
            self.chat.existing_room(&name)
        });
        room.is_some_and(|room| room.wait_durable(event, &self.sink))
    }
}
