//! A session's send queue: everything that is one client's alone (DMs, errors, join
//! sequences) and the markers that send it to read its rooms' feeds (see `feed.rs`), in
//! order, with a byte budget that is the client's alone.
//!
//! A room used to buffer its events in one ring shared by its members, and a member that
//! fell a ring's length behind skipped messages: a busy room, not a slow reader, was the
//! cause of loss. Now a room's events wait in its feed, each member at its own position, and
//! only what is this client's goes through here. What is queued here, and what the session
//! has read from its feeds and waits on a full socket, counts against `--max-sendq` until
//! written (the event's [`weight`](Event::weight)). Past that, the queue takes nothing more
//! that may be dropped, counts what it misses per room, and once the client has read half
//! of its backlog it is told with `lagged` exactly where its gap is. Memory follows what is queued: an idle sink
//! holds no buffer.
//!
//! Pushing costs the producer one short lock and, only when the session is not already due
//! to wake, one notification: a burst of a thousand items wakes a reader once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::{ByeReason, ServerMsg};
use once_cell::race::OnceBox;

use super::JoinSeq;
use super::feed::Sub;
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

/// The largest budget (1 GiB): a sink counts its bytes in 32 bits, signed, which keeps
/// everything a push touches in one cache line (see [`Sink`]).
pub(crate) const MAX_BUDGET: usize = 1 << 30;

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
    /// A room has events for the session to read from its feed, from where it stands (see
    /// `feed.rs`): one marker however many come.
    Feed(Arc<Sub>),
    /// The rest of a join sequence (history, then members): whatever the room does after
    /// the join queues behind it, so the joiner sees each message once, in order.
    Join(Box<JoinSeq>),
}

impl Item {
    /// The event, if this is one.
    pub(crate) fn event(&self) -> Option<&Arc<Event>> {
        match self {
            Self::Event(event) => Some(event),
            Self::Feed(_) | Self::Join(_) => None,
        }
    }
}

/// Whether a push was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Over budget: dropped (a room message is counted, and reported with `lagged`).
    Dropped,
}

/// Laid out by hand, in two cache lines: a room's fan-out pushes into every member's sink
/// one after another, and each session then looks at its own once per turn, so every line
/// a delivery touches is one a thousand-member room pays a thousand times, as a miss when
/// the other core wrote it last. The first line is the lock and everything under it: the
/// queue, its budget and the session's waker, so a push (queue and wake-up) and the
/// session's turn (wait, take, written) share that one line and nothing else. The second
/// holds what the session alone touches on every turn, and what others touch rarely (the
/// keepalive clock, a poke, an ending). Left to the compiler, the same fields spread over
/// three lines, and a waker of its own (a `Notify`, then an `AtomicWaker`) took a fourth;
/// `perf` on W2 showed the first touch of each as a hot spot of its own.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Sink {
    state: Mutex<State>,
    /// The session's room messages on their way to the disk (its input is not read past
    /// `pause_at`).
    unsettled: AtomicU32,
    /// At this many unsettled messages the session stops reading its client.
    pause_at: u32,
    /// Something other than an item wants the session awake: a message it waits on is
    /// durable (see `Room::wait_durable`).
    poked: AtomicBool,
    /// Rung by the keepalive clock: the session's alarm time passed (see `alarm_at`).
    alarmed: AtomicBool,
    /// `--max-sendq` (at most [`MAX_BUDGET`]); a push needs only what is left of it (see
    /// `State::room`).
    budget: u32,
    /// When the session wants the keepalive clock to wake it (to ping its client, or to
    /// give up on the answer), in the clock's milliseconds; `u64::MAX`: never. One word
    /// here instead of a timer in every session's task, which cost each idle connection
    /// more than a hundred bytes.
    alarm_at: AtomicU64,
    /// Set when something else ends the session: another connection logged in to its
    /// account and took its nick (`bye{replaced}`), an admin killed it, a server ban
    /// caught it. One pointer, empty for nearly every session's whole life.
    ending: OnceBox<Ending>,
    /// Bytes the session handed its socket (`/clients`, the close line). Here rather than
    /// in the registry's entry, which would be one more line for every flush to fetch.
    bytes_out: AtomicU64,
    /// The connection's entry in the admin registry, when the server keeps one: the sink
    /// counts its `lagged` notices there. Given at construction (see [`Sink::attached`]),
    /// so it is a plain pointer rather than a cell.
    conn: Option<Arc<crate::ops::Conn>>,
    /// While over budget (`State::lagging`): messages missed, per room, in the order the
    /// gaps began; locked only under `state`, and only then. Boxed so that the many sinks
    /// that never fall behind pay one word for it, not three.
    missed: Mutex<Missed>,
}

/// Messages missed per room (see `Sink::missed`).
#[allow(clippy::box_collection)] // deliberately: see there
type Missed = Option<Box<Vec<(String, u64)>>>;

// The layout above, held: a field added to the sink must find its line, not make a third.
const _: () = assert!(std::mem::size_of::<Sink>() == 128);
const _: () = assert!(std::mem::size_of::<Mutex<State>>() == 64);

#[derive(Debug, Default)]
struct State {
    /// Only ever appended to and taken whole: a `Vec`, a word smaller than a ring.
    items: Vec<Item>,
    /// The waiting session's waker. Taken by the wake-up that uses it, so a push while the
    /// session is running does not schedule its task again (`woken` is enough).
    waker: Option<std::task::Waker>,
    /// What is left of the budget: it less the weight queued here or taken by the session
    /// and not yet written. Below zero only by what is never refused (a join's history,
    /// `lagged` notices).
    room: i32,
    /// Weight queued here and not taken yet: what the session's next batch will write, so
    /// it can size its write buffer once instead of growing it.
    fresh: u32,
    /// How many items the session took last time (at most `MAX_FIRST_CAPACITY`): what
    /// the next burst makes room for at once. A busy member's queue started at 16 and
    /// doubled its way to a batch's hundred or more on every turn, each doubling a
    /// reallocation (3 % of the server's time in W1); sized by the last batch, it
    /// allocates once.
    last_taken: u16,
    /// Set by a push and cleared when the session takes what is queued: while set, further
    /// pushes need not wake it again.
    signalled: bool,
    /// Set by every wake-up and taken by the wait it ends: a wake-up while the session is
    /// busy (not waiting) is kept for its next wait, as a `Notify`'s permit would be.
    woken: bool,
    /// Over budget: the sink takes none of its rooms' messages, and counts them in
    /// `Sink::missed`, until the client has read half of its backlog.
    lagging: bool,
}

impl Sink {
    /// A sink whose client falls behind past `budget` (clamped to [`MIN_BUDGET`] ..=
    /// [`MAX_BUDGET`]), and whose session pauses its input at `pause_at` unsettled messages.
    pub(crate) fn new(budget: usize, pause_at: usize) -> Self {
        let budget = u32::try_from(budget.clamp(MIN_BUDGET, MAX_BUDGET)).unwrap_or(u32::MAX);
        Self {
            state: Mutex::new(State {
                room: i32::try_from(budget).unwrap_or(i32::MAX),
                ..State::default()
            }),
            budget,
            missed: Mutex::default(),
            poked: AtomicBool::new(false),
            alarmed: AtomicBool::new(false),
            alarm_at: AtomicU64::new(u64::MAX),
            ending: OnceBox::new(),
            unsettled: AtomicU32::new(0),
            pause_at: u32::try_from(pause_at).unwrap_or(u32::MAX),
            bytes_out: AtomicU64::new(0),
            conn: None,
        }
    }

    /// A sink tied to its connection's registry entry, which `open` makes with a handle
    /// to the sink (the registry finds sessions' sinks through it).
    pub(crate) fn attached(
        budget: usize,
        pause_at: usize,
        open: impl FnOnce(std::sync::Weak<Self>) -> Arc<crate::ops::Conn>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            conn: Some(open(weak.clone())),
            ..Self::new(budget, pause_at)
        })
    }

    /// The connection's registry entry, if attached.
    pub(crate) fn conn(&self) -> Option<&Arc<crate::ops::Conn>> {
        self.conn.as_ref()
    }

    /// The session is about to write `bytes` to its client.
    pub(crate) fn wrote(&self, bytes: usize) {
        if bytes > 0 {
            self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Bytes the session has written to its client.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few infallible steps: a poisoned lock still holds sound data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the sink signalled (under its lock), and returns the waker to wake once the
    /// lock is let go, when the session is not already due to look.
    fn signal(st: &mut State) -> Option<std::task::Waker> {
        if std::mem::replace(&mut st.signalled, true) {
            return None;
        }
        st.woken = true;
        st.waker.take()
    }

    /// Counts a message (or a room's notice) the client misses while over budget.
    fn miss(&self, event: &Event) {
        // Messages are counted; a room's notices name the room with nothing counted, so a
        // gap of notices alone is still reported (`lagged` with `missed: 0`).
        let (room, n) = match &event.msg {
            ServerMsg::Message(m) => (&m.room, 1),
            ServerMsg::Joined { room, .. } | ServerMsg::Parted { room, .. } => (room, 0),
            _ => return,
        };
        let mut missed = self.missed.lock().unwrap_or_else(|p| p.into_inner());
        let missed = missed.get_or_insert_with(Box::default);
        match missed.iter_mut().find(|(r, _)| r == room) {
            Some((_, count)) => *count += n,
            None => missed.push((room.clone(), n)),
        }
    }

    /// Queues an event, unless the client is over its budget.
    pub(crate) fn push(&self, event: &Arc<Event>) -> Pushed {
        let weight = weight32(event.weight());
        let wake = {
            let mut st = self.lock();
            if st.lagging || i64::from(weight) > i64::from(st.room) {
                st.lagging = true;
                self.miss(event);
                return Pushed::Dropped;
            }
            st.room -= i32::try_from(weight).unwrap_or(i32::MAX);
            st.fresh += weight;
            if st.items.capacity() == 0 {
                // Busy sessions are handed dozens at a time: skip the doublings.
                // Half as many again: bursts vary, and one doubling copies more than that.
                let last = st.last_taken as usize;
                let hint = (last + last / 2).clamp(FIRST_CAPACITY, MAX_FIRST_CAPACITY);
                st.items.reserve(hint);
            }
            st.items.push(Item::Event(Arc::clone(event)));
            Self::signal(&mut st)
        };
        if let Some(waker) = wake {
            waker.wake();
        }
        Pushed::Queued
    }

    /// Tells the session that a room's feed has events for it. Never refused: what it
    /// reads there is bounded by the feed (see `feed.rs`), not by this budget.
    pub(crate) fn push_feed(&self, sub: Arc<Sub>) {
        let wake = {
            let mut st = self.lock();
            st.items.push(Item::Feed(sub));
            Self::signal(&mut st)
        };
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// Queues the rest of a join sequence; never refused (it is bounded by one frame and
    /// the joiner is the one who asked for it).
    pub(crate) fn push_join(&self, join: JoinSeq) {
        let wake = {
            let mut st = self.lock();
            Self::charge(&mut st, join.weight());
            st.items.push(Item::Join(Box::new(join)));
            Self::signal(&mut st)
        };
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// What the session read from its rooms' feeds waits on a full socket: it counts, as
    /// what was taken from here does, until [`Sink::written`] (so `queued` shows what is on
    /// its way). A write that completes at once is never counted: nobody could see it.
    pub(crate) fn took(&self, weight: usize) {
        if weight > 0 {
            let mut st = self.lock();
            let weight = i32::try_from(weight).unwrap_or(i32::MAX);
            st.room = st.room.saturating_sub(weight);
        }
    }

    /// Counts what is queued without regard to the budget.
    fn charge(st: &mut State, weight: usize) {
        let weight = weight32(weight);
        st.room = st
            .room
            .saturating_sub(i32::try_from(weight).unwrap_or(i32::MAX));
        st.fresh = st.fresh.saturating_add(weight);
    }

    /// Moves everything queued to the back of `into`, and returns its weight. What is taken
    /// still counts against the budget until [`Sink::written`].
    pub(crate) fn take_all(&self, into: &mut VecDeque<Item>) -> usize {
        let (items, fresh) = {
            let mut st = self.lock();
            st.signalled = false;
            st.last_taken = u16::try_from(st.items.len().min(MAX_FIRST_CAPACITY)).unwrap_or(0);
            // Taken whole: the sink holds no memory once empty (most stay empty for hours),
            // and what the session frees it frees outside the lock.
            (std::mem::take(&mut st.items), std::mem::take(&mut st.fresh))
        };
        if into.is_empty() {
            // Without copying: a `VecDeque` takes over a `Vec`'s buffer as it is.
            *into = VecDeque::from(items);
        } else {
            into.extend(items);
        }
        fresh as usize
    }

    /// The session wrote `weight` of what it took. A client that fell behind and has now
    /// read half its budget's worth gets `lagged` for each of its gaps, queued right where
    /// they end.
    pub(crate) fn written(&self, weight: usize) {
        if weight == 0 {
            return;
        }
        let mut st = self.lock();
        st.room = st
            .room
            .saturating_add(i32::try_from(weight).unwrap_or(i32::MAX));
        if st.lagging && i64::from(st.room) >= i64::from(self.budget - self.budget / 2) {
            st.lagging = false;
            let missed = self
                .missed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(|m| *m)
                .unwrap_or_default();
            if let Some(conn) = self.conn.as_ref() {
                conn.lagged(missed.len() as u64);
            }
            for (room, missed) in missed {
                let lagged = Arc::new(Event::new(ServerMsg::Lagged { room, missed }, None));
                Self::charge(&mut st, lagged.weight());
                st.items.push(Item::Event(lagged));
            }
            let wake = Self::signal(&mut st);
            drop(st);
            if let Some(waker) = wake {
                waker.wake();
            }
        }
    }

    /// Wakes the session without an item (see `poked`).
    pub(crate) fn poke(&self) {
        self.poked.store(true, Ordering::Release);
        self.wake();
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
            self.wake();
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
        self.wake();
    }

    /// Why something else ended the session, if it did.
    pub(crate) fn ending(&self) -> Option<&Ending> {
        self.ending.get()
    }

    /// Makes the session's next wait return at once: it stopped with work left.
    pub(crate) fn rearm(&self) {
        self.wake();
    }

    /// Whether something was queued that the session has not taken yet.
    pub(crate) fn signalled(&self) -> bool {
        self.lock().signalled
    }

    /// Whether a poke came since the last call.
    pub(crate) fn take_poke(&self) -> bool {
        // Read first: nearly always false, and a load does not take the line exclusively.
        self.poked.load(Ordering::Relaxed) && self.poked.swap(false, Ordering::AcqRel)
    }

    /// Wakes the session, or, if it is not waiting, makes its next wait return at once.
    fn wake(&self) {
        let waker = {
            let mut st = self.lock();
            st.woken = true;
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until something is pushed or poked. Cancel-safe: a wake-up that arrives while
    /// nobody waits is kept for the next wait. The waker is kept under the queue's lock,
    /// whose line the session's turn fetches anyway.
    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if std::mem::take(&mut st.woken) {
                return std::task::Poll::Ready(());
            }
            match &st.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            std::task::Poll::Pending
        })
        .await;
    }

    /// Waits for a poke alone (what is queued meanwhile stays queued), and takes it. A
    /// wake-up taken meanwhile for the keepalive alarm or an ending is given back, so the
    /// session's next wait sees it.
    pub(crate) async fn wait_poke(&self) {
        while !self.take_poke() {
            self.wait().await;
        }
        if self.alarmed.load(Ordering::Relaxed) || self.ending.get().is_some() {
            self.wake();
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
        self.unsettled.load(Ordering::Acquire) as usize
    }

    /// Weight queued or in the session's hands, not yet written.
    pub(crate) fn queued(&self) -> usize {
        let room = self.lock().room;
        usize::try_from(i64::from(self.budget) - i64::from(room)).unwrap_or(0)
    }
}

/// An event's weight as the sink counts it (a frame is far below 4 GiB; saturating anyway).
pub(crate) fn weight32(weight: usize) -> u32 {
    u32::try_from(weight).unwrap_or(u32::MAX)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chat_shared::ChatMessage;
    use std::time::Duration;
    use uuid::Uuid;

    /// A room message of 100 bytes of text (the feed's tests use it too).
    pub(in crate::path) fn message(room: &str, seq: u64) -> Arc<Event> {
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
            .map(|i| match i.event().map(|e| &e.msg) {
                Some(ServerMsg::Message(m)) => format!("{}:{}", m.room, m.seq),
                Some(ServerMsg::Lagged { room, missed }) => format!("lagged {room} {missed}"),
                Some(other) => format!("{other:?}"),
                None => "join".into(),
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
            budget: weight32(weight * 4),
            ..Sink::new(0, 8)
        };
        sink.lock().room = i32::try_from(weight * 4).unwrap();
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
