//! A session's send queue: everything local delivery hands one client, in order, with a
//! byte budget that is the client's alone.
//!
//! A room used to buffer its events in one ring shared by its members, and a member that
//! fell a ring's length behind skipped messages. That made a busy room, not a slow reader,
//! the cause of loss: four senders bursting into a room of a hundred overran a 256-slot ring
//! while every reader was keeping up. Here each recipient has its own queue, and it falls
//! behind only when what it has been handed and the server could not yet write to it
//! exceeds `--max-sendq` (the event's [`weight`](Event::weight), counted from the moment it
//! is queued until the session has written it). Past that, the queue takes nothing more of
//! its rooms' messages, counts what it misses per room, and once the client has read half
//! of its backlog it is told with `lagged` exactly where its gap is, as before. Memory
//! follows what is queued: an idle sink holds no buffer, and the events themselves are
//! shared with every other recipient.
//!
//! Pushing costs the producer one short lock and, only when the session is not already due
//! to wake, one notification: a burst of a thousand messages wakes a reader once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::{ByeReason, ServerMsg};
use once_cell::race::OnceBox;
use tokio::sync::Notify;

use super::JoinSeq;
use crate::event::Event;

/// The smallest budget: two of a session's write batches. What a session has taken counts
/// until it is written, so a budget of one batch or less would lag a client that reads as
/// fast as it can.
pub(crate) const MIN_BUDGET: usize = 2 * 64 * 1024;

/// Items an empty sink makes room for at its first push (256 bytes, freed once taken), at
/// least: a sink that was handed more last time makes room for half as many again.
const FIRST_CAPACITY: usize = 16;

/// The most items a sink makes room for at once (16 KiB of handles); past that it grows.
const MAX_FIRST_CAPACITY: usize = 1024;

/// Why something other than its client ends a session (see `Sink::end`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) reason: ByeReason,
    /// The `bye`'s message.
    pub(crate) message: String,
    /// What its rooms are told in `parted` (`None`: "quit").
    pub(crate) part_reason: Option<String>,
}

/// What a sink holds.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Arc<Event>),
    /// The rest of a join sequence (history, then members): whatever the room does after
    /// the join queues behind it, so the joiner sees each message once, in order.
    Join(Box<JoinSeq>),
}

/// Whether a push was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Over budget: dropped (a room message is counted, and reported with `lagged`).
    Dropped,
}

#[derive(Debug)]
pub(crate) struct Sink {
    state: Mutex<State>,
    /// Wakes the session. A `Notify` rather than a registered waker: a push while the
    /// session is busy (not waiting) leaves a permit instead of scheduling its task again.
    notify: Notify,
    /// Something other than an item wants the session awake: a message it waits on is
    /// durable (see `Room::wait_durable`).
    poked: AtomicBool,
    /// Rung by the keepalive clock: the session's alarm time passed (see `alarm_at`).
    alarmed: AtomicBool,
    /// When the session wants the keepalive clock to wake it (to ping its client, or to
    /// give up on the answer), in the clock's milliseconds; `u64::MAX`: never. One word
    /// here instead of a timer in every session's task, which cost each idle connection
    /// more than a hundred bytes.
    alarm_at: AtomicU64,
    /// Set when something else ends the session: another connection logged in to its
    /// account and took its nick (`bye{replaced}`), an admin killed it, a server ban
    /// caught it. One pointer, empty for nearly every session's whole life.
    ending: OnceBox<Ending>,
    /// The session's room messages on their way to the disk (its input is not read past
    /// `--max-unsettled`).
    unsettled: AtomicUsize,
    /// At this many unsettled messages the session stops reading its client.
    pause_at: usize,
    budget: usize,
    /// The connection's entry in the admin registry, when the server keeps one: the sink
    /// counts its `lagged` notices there.
    conn: std::sync::OnceLock<Arc<crate::ops::Conn>>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    /// Weight queued here or taken by the session and not yet written.
    bytes: usize,
    /// Weight queued here and not taken yet: what the session's next batch will write, so
    /// it can size its write buffer once instead of growing it.
    fresh: usize,
    /// Set by a push and cleared when the session takes what is queued: while set, further
    /// pushes need not wake it again. Under the lock, not an atomic of its own: a push
    /// holds the lock's cache line already, and a flag on another line cost every push a
    /// second transfer between cores (a third of its time, measured).
    signalled: bool,
    /// While over budget: messages missed, per room, in the order the gaps began. Boxed
    /// so that the many sinks that never fall behind pay one word for it, not three.
    #[allow(clippy::box_collection)] // deliberately: see above
    missed: Option<Box<Vec<(String, u64)>>>,
    /// How many items the session took last time: what the next burst makes room for at
    /// once. A busy member's queue started at 16 and doubled its way to a batch's hundred
    /// or more on every turn, each doubling a reallocation (3 % of the server's time in
    /// W1); sized by the last batch, it allocates once. Fits beside `signalled`.
    last_taken: u32,
}

impl Sink {
    /// A sink whose client falls behind past `budget` (at least [`MIN_BUDGET`]).
    pub(crate) fn new(budget: usize, pause_at: usize) -> Self {
        let budget = budget.max(MIN_BUDGET);
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            poked: AtomicBool::new(false),
            alarmed: AtomicBool::new(false),
            alarm_at: AtomicU64::new(u64::MAX),
            ending: OnceBox::new(),
            unsettled: AtomicUsize::new(0),
            pause_at,
            budget,
            conn: std::sync::OnceLock::new(),
        }
    }

    /// Ties the sink to its connection's registry entry (once; later calls do nothing).
    pub(crate) fn attach(&self, conn: Arc<crate::ops::Conn>) {
        let _ = self.conn.set(conn);
    }

    /// The connection's registry entry, if attached.
    pub(crate) fn conn(&self) -> Option<&Arc<crate::ops::Conn>> {
        self.conn.get()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few infallible steps: a poisoned lock still holds sound data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the sink signalled (under its lock); true when the session must be woken.
    fn signal(st: &mut State) -> bool {
        !std::mem::replace(&mut st.signalled, true)
    }

    /// Queues an event, unless the client is over its budget.
    pub(crate) fn push(&self, event: &Arc<Event>) -> Pushed {
        let weight = event.weight();
        let wake = {
            let mut st = self.lock();
            if st.missed.is_some() || st.bytes + weight > self.budget {
                // Messages are counted; a room's notices name the room with nothing counted,
                // so a gap of notices alone is still reported (`lagged` with `missed: 0`).
                let (room, n) = match &event.msg {
                    ServerMsg::Message(m) => (Some(&m.room), 1),
                    ServerMsg::Joined { room, .. } | ServerMsg::Parted { room, .. } => {
                        (Some(room), 0)
                    }
                    _ => (None, 0),
                };
                let missed = st.missed.get_or_insert_with(Box::default);
                if let Some(room) = room {
                    match missed.iter_mut().find(|(r, _)| r == room) {
                        Some((_, count)) => *count += n,
                        None => missed.push((room.clone(), n)),
                    }
                }
                return Pushed::Dropped;
            }
            st.bytes += weight;
            st.fresh += weight;
            if st.items.capacity() == 0 {
                // Busy rooms hand over dozens at a time: skip the doublings.
                // Half as many again: bursts vary, and one doubling copies more than that.
                let last = st.last_taken as usize;
                let hint = (last + last / 2).clamp(FIRST_CAPACITY, MAX_FIRST_CAPACITY);
                st.items.reserve(hint);
            }
            st.items.push_back(Item::Event(Arc::clone(event)));
            Self::signal(&mut st)
        };
        if wake {
            self.notify.notify_one();
        }
        Pushed::Queued
    }

    /// Queues the rest of a join sequence; never refused (it is bounded by one frame and
    /// the joiner is the one who asked for it).
    pub(crate) fn push_join(&self, join: JoinSeq) {
        let wake = {
            let mut st = self.lock();
            st.bytes += join.weight();
            st.fresh += join.weight();
            st.items.push_back(Item::Join(Box::new(join)));
            Self::signal(&mut st)
        };
        if wake {
            self.notify.notify_one();
        }
    }

    /// Moves everything queued to the back of `into`, and returns its weight. What is taken
    /// still counts against the budget until [`Sink::written`].
    pub(crate) fn take_all(&self, into: &mut VecDeque<Item>) -> usize {
        let mut st = self.lock();
        st.signalled = false;
        st.last_taken = u32::try_from(st.items.len()).unwrap_or(u32::MAX);
        if into.is_empty() {
            std::mem::swap(into, &mut st.items);
        } else {
            into.extend(st.items.drain(..));
        }
        if st.items.capacity() > 0 {
            // Give the memory back: most sinks stay empty for hours.
            st.items = VecDeque::new();
        }
        std::mem::take(&mut st.fresh)
    }

    /// The session wrote `weight` of what it took. A client that fell behind and has now
    /// read half its budget's worth gets `lagged` for each of its gaps, queued right where
    /// they end.
    pub(crate) fn written(&self, weight: usize) {
        if weight == 0 {
            return;
        }
        let mut st = self.lock();
        st.bytes = st.bytes.saturating_sub(weight);
        if st.missed.is_some() && st.bytes <= self.budget / 2 {
            let missed = st.missed.take().map(|m| *m).unwrap_or_default();
            if let Some(conn) = self.conn.get() {
                conn.lagged(missed.len() as u64);
            }
            for (room, missed) in missed {
                let lagged = Arc::new(Event::new(ServerMsg::Lagged { room, missed }, None));
                st.bytes += lagged.weight();
                st.fresh += lagged.weight();
                st.items.push_back(Item::Event(lagged));
            }
            let wake = Self::signal(&mut st);
            drop(st);
            if wake {
                self.notify.notify_one();
            }
        }
    }

    /// Wakes the session without an item (see `poked`).
    pub(crate) fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Asks the keepalive clock to wake the session once `at_ms` (its milliseconds) has
    /// passed; replaces any earlier alarm.
    pub(crate) fn set_alarm(&self, at_ms: u64) {
        self.alarm_at.store(at_ms, Ordering::Relaxed);
    }

    /// The keepalive clock's tick: wakes the session if its alarm time is past, once.
    pub(crate) fn ring(&self, now_ms: u64) {
        let at = self.alarm_at.load(Ordering::Relaxed);
        if at <= now_ms
            && self
                .alarm_at
                .compare_exchange(at, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.alarmed.store(true, Ordering::Release);
            self.notify.notify_one();
        }
    }

    /// Whether the alarm rang since the last call (a load first: this is asked every turn
    /// of the session's loop, and it nearly never rang).
    pub(crate) fn take_alarm(&self) -> bool {
        self.alarmed.load(Ordering::Relaxed) && self.alarmed.swap(false, Ordering::Acquire)
    }

    /// Ends the session (the first ending given is the one it takes), and wakes it.
    pub(crate) fn end(&self, ending: Ending) {
        let _ = self.ending.set(Box::new(ending));
        self.notify.notify_one();
    }

    /// Why something else ended the session, if it did.
    pub(crate) fn ending(&self) -> Option<&Ending> {
        self.ending.get()
    }

    /// Makes the session's next wait return at once: it stopped with work left.
    pub(crate) fn rearm(&self) {
        self.notify.notify_one();
    }

    /// Whether something was queued that the session has not taken yet.
    pub(crate) fn signalled(&self) -> bool {
        self.lock().signalled
    }

    /// Whether a poke came since the last call.
    pub(crate) fn take_poke(&self) -> bool {
        self.poked.swap(false, Ordering::AcqRel)
    }

    /// Waits until something is pushed or poked. Cancel-safe: a notification that arrives
    /// while nobody waits is kept for the next wait.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Waits for a poke alone (what is queued meanwhile stays queued), and takes it. A
    /// wake-up taken meanwhile for the keepalive alarm or an ending is given back, so the
    /// session's next wait sees it.
    pub(crate) async fn wait_poke(&self) {
        while !self.take_poke() {
            self.notify.notified().await;
        }
        if self.alarmed.load(Ordering::Relaxed) || self.ending.get().is_some() {
            self.notify.notify_one();
        }
    }

    pub(crate) fn unsettled_add(&self) {
        self.unsettled.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn unsettled_sub(&self) {
        if self.unsettled.fetch_sub(1, Ordering::AcqRel) == self.pause_at {
            // It was paused: it may read its client again.
            self.poke();
        }
    }

    pub(crate) fn unsettled(&self) -> usize {
        self.unsettled.load(Ordering::Acquire)
    }

    /// Weight queued or in the session's hands, not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::ChatMessage;
    use std::time::Duration;
    use uuid::Uuid;

    fn message(room: &str, seq: u64) -> Arc<Event> {
        Arc::new(Event::new(
            ServerMsg::Message(ChatMessage {
                event: None,
                id: Uuid::nil(),
                room: room.into(),
                seq,
                from: "a".into(),
                text: "x".repeat(100),
                ts: 0,
                action: false,
                file: None,
                account: false,
            }),
            None,
        ))
    }

    fn seqs(items: &VecDeque<Item>) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(e) => match &e.msg {
                    ServerMsg::Message(m) => format!("{}:{}", m.room, m.seq),
                    ServerMsg::Lagged { room, missed } => format!("lagged {room} {missed}"),
                    other => format!("{other:?}"),
                },
                Item::Join(_) => "join".into(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiter_once_per_drain() {
        let sink = Arc::new(Sink::new(1 << 20, 8));
        let waiter = tokio::spawn({
            let sink = Arc::clone(&sink);
            async move { sink.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        for seq in 1..=100 {
            sink.push(&message("r", seq));
        }
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        let mut taken = VecDeque::new();
        sink.take_all(&mut taken);
        assert_eq!(taken.len(), 100);
        assert!(!sink.signalled(), "taking resets the signal");
        assert_eq!(
            sink.lock().items.capacity(),
            0,
            "an empty sink holds no memory"
        );
        sink.push(&message("r", 101));
        assert!(
            sink.lock().items.capacity() >= 100,
            "the next burst gets room for as many as the last at once"
        );
    }

    #[test]
    fn over_budget_it_drops_counts_per_room_and_reports_the_gap_once_read() {
        let weight = message("r", 0).weight();
        let sink = Sink {
            budget: weight * 4,
            ..Sink::new(0, 8)
        };
        let mut taken = VecDeque::new();
        for seq in 1..=4 {
            assert_eq!(sink.push(&message("a", seq)), Pushed::Queued);
        }
        assert_eq!(sink.push(&message("a", 5)), Pushed::Dropped);
        assert_eq!(sink.push(&message("b", 1)), Pushed::Dropped);
        let notice = Arc::new(Event::new(
            ServerMsg::Joined {
                role: None,
                room: "c".into(),
                nick: "x".into(),
                ts: 0,
                account: false,
            },
            None,
        ));
        assert_eq!(sink.push(&notice), Pushed::Dropped);
        sink.take_all(&mut taken);
        // Still over budget until written: the gap goes on.
        assert_eq!(sink.push(&message("a", 6)), Pushed::Dropped);
        sink.written(weight * 3);
        assert_eq!(sink.push(&message("a", 7)), Pushed::Queued);
        sink.take_all(&mut taken);
        assert_eq!(
            seqs(&taken),
            [
                "a:1",
                "a:2",
                "a:3",
                "a:4",
                "lagged a 2",
                "lagged b 1",
                "lagged c 0",
                "a:7"
            ]
        );
        let lagged = Event::new(
            ServerMsg::Lagged {
                room: "a".into(),
                missed: 2,
            },
            None,
        )
        .weight();
        assert_eq!(sink.queued(), weight * 2 + lagged * 3);
    }

    #[tokio::test]
    async fn the_alarm_rings_once_when_its_time_has_passed_and_survives_a_wait_for_a_poke() {
        let sink = Arc::new(Sink::new(MIN_BUDGET, 8));
        sink.ring(1_000);
        assert!(!sink.take_alarm(), "no alarm set: nothing rings");
        sink.set_alarm(2_000);
        sink.ring(1_999);
        assert!(!sink.take_alarm(), "not yet");
        sink.ring(2_000);
        sink.ring(2_001);
        // Rung once: it woke the session (a permit is left) and the flag is taken once.
        tokio::time::timeout(Duration::from_secs(1), sink.wait())
            .await
            .expect("the ring woke the session");
        assert!(sink.take_alarm());
        assert!(!sink.take_alarm());
        sink.ring(5_000);
        assert!(!sink.take_alarm(), "a rung alarm is spent until set again");

        // A wait for a poke takes the ring's wake-up, and gives it back.
        sink.set_alarm(6_000);
        let waiting = tokio::spawn({
            let sink = Arc::clone(&sink);
            async move { sink.wait_poke().await }
        });
        tokio::task::yield_now().await;
        sink.ring(6_000);
        // The waiter takes the ring's wake-up, finds no poke, and waits again.
        tokio::task::yield_now().await;
        sink.poke();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the poke ended the wait")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), sink.wait())
            .await
            .expect("the ring's wake-up was given back");
        assert!(sink.take_alarm());
    }
}
