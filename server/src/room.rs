//! One chat room: its members, its broadcast channel, its recent history and its `seq`.
//!
//! Everything that must happen atomically for a room (assigning `seq`, queueing a message
//! for storage; releasing it into history and the broadcast; snapshotting history and
//! subscribing on join) happens under the room's own short std `Mutex`, never held across an
//! `.await`. That is what gives every member the same order and lets a joiner see each
//! message exactly once: in the history snapshot or through its new receiver, never both,
//! never neither.
//!
//! Without a store a message is released (into the history ring and the broadcast) at once.
//! With one it is released before it is durable, as soon as a crash could no longer give
//! its `seq` to another message, and in `seq` order: at once for an id the server made up,
//! or when the store has checked and written one from the client (which may be a resend);
//! its sender's session holds its own copy back until the store says it is durable (see
//! `subscriptions.rs`). The ring is the cache of the store's newest messages: joins and
//! history pages are served from it, and only what is older comes from the store (see
//! [`Plan`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::{ChatMessage, Nick, RoomName, ServerMsg};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::Config;
use crate::event::{Event, Settled};
use crate::hub::{MessageIds, not_stored};
use crate::mailbox::Mailbox;
use crate::now_ms;
use crate::store::{Job, Range, Record, RoomLoad, Store, Stored};

/// Why a room refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomError {
    NotInRoom,
    UnknownBefore,
    /// The store is too far behind to take another message.
    StoreBusy,
}

/// A page of history, or how to complete it from the store.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Complete from memory; `older` when older messages exist.
    Done {
        messages: Vec<ChatMessage>,
        older: bool,
    },
    /// Read `range` from the store and put it before `messages`. `range.limit` is one more
    /// than wanted: getting it all means older messages exist.
    Read {
        messages: Vec<ChatMessage>,
        range: Range,
        /// A join with `since`: messages after `since` that are no longer stored also make
        /// the history `truncated`.
        since: bool,
    },
    /// `before` is not in memory: find its `seq` in the store, then read `limit` before it.
    Find { before: Uuid, limit: usize },
}

/// What `join` hands the joiner, captured at one instant.
pub(crate) struct Joined {
    /// Subscribed right after the snapshot: everything later arrives here.
    pub(crate) rx: broadcast::Receiver<Arc<Event>>,
    pub(crate) event: Arc<Event>,
    pub(crate) history: Plan,
    pub(crate) members: Vec<String>,
    /// The newest message in `history` that the joiner's nick sent and that is not durable
    /// yet. Seeing it would acknowledge it (a client reconnecting after a send), so the
    /// history waits until it is settled.
    pub(crate) unsettled: Option<Arc<Event>>,
}

/// The outcome of posting a message.
pub(crate) enum Posted {
    /// Broadcast (now or once the store has taken it) and on its way to the disk; the
    /// sender's copy comes through its own subscription, held back until durable.
    New,
    /// The id is known and durable: the stored original, for the sender alone.
    Duplicate(Arc<Event>),
    /// The id is known and not durable yet: its acknowledgement will answer both.
    Pending,
}

#[derive(Debug)]
pub(crate) struct Room {
    name: RoomName,
    tx: broadcast::Sender<Arc<Event>>,
    state: Mutex<RoomState>,
    store: Option<Arc<dyn Store>>,
    /// Messages older than this many milliseconds are not shown (retention by age).
    retain_ms: Option<i64>,
    /// Every `seq` below this is reserved on disk: a message with one may be broadcast
    /// before it is durable (a crash cannot make the room give its seq to another message).
    covered: AtomicU64,
    /// The newest `seq` the store has placed or settled: messages queued for placement by
    /// the store are all out of the way once this reaches `RoomState::last_queued`.
    resolved: AtomicU64,
}

#[derive(Debug)]
struct RoomState {
    members: HashMap<Uuid, Nick>,
    /// Released `message` events, oldest first, at most `capacity`.
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    next_seq: u64,
    /// The newest `seq` handed to the store to be placed by it (see `Room::post`).
    last_queued: u64,
    /// Unix ms of the last join, part or message; the least recently active empty room is
    /// the one forgotten when the room limit is reached.
    last_active: i64,
}

fn chat(ev: &Event) -> &ChatMessage {
    match &ev.msg {
        ServerMsg::Message(m) => m,
        // The history ring is only ever given message events (see `post`).
        other => unreachable!("non-message event in history: {other:?}"),
    }
}

impl RoomState {
    /// The seq the ring starts at: where the store's part of the history ends.
    fn first_seq(&self) -> u64 {
        self.history.front().map_or(self.next_seq, |e| chat(e).seq)
    }
}

impl Room {
    /// A room with what the store had of it (`load`); its ids join the id index.
    pub(crate) fn new(
        name: RoomName,
        config: &Config,
        store: Option<Arc<dyn Store>>,
        load: RoomLoad,
        ids: &MessageIds,
    ) -> Self {
        let (tx, _) = broadcast::channel(config.room_buffer.max(1));
        let capacity = match config.retain_per_room {
            Some(keep) => config
                .history
                .min(usize::try_from(keep).unwrap_or(usize::MAX)),
            None => config.history,
        };
        let mut history = VecDeque::with_capacity(load.tail.len().min(capacity));
        let mut ids = ids.lock();
        let skip = load.tail.len().saturating_sub(capacity);
        for m in load.tail.into_iter().skip(skip) {
            let id = m.id;
            let event = Arc::new(Event::new(ServerMsg::Message(m), None));
            ids.insert(id, Arc::clone(&event));
            history.push_back(event);
        }
        Self {
            name,
            tx,
            state: Mutex::new(RoomState {
                members: HashMap::new(),
                history,
                capacity,
                next_seq: load.next_seq.max(1),
                last_queued: 0,
                last_active: now_ms(),
            }),
            store,
            retain_ms: config.retain_days.map(|d| i64::from(d) * 86_400_000),
            covered: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
        }
    }

    pub(crate) fn name(&self) -> &RoomName {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock leaves consistent data (every update is a few
        // infallible steps), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn broadcast(&self, ev: &Arc<Event>) {
        // An error only means nobody is subscribed right now: nothing to deliver.
        let _ = self.tx.send(Arc::clone(ev));
    }

    /// The oldest `ts` retention by age still shows.
    fn cutoff(&self) -> i64 {
        self.retain_ms.map_or(i64::MIN, |ms| now_ms() - ms)
    }

    /// Messages of the ring from `start`, without those retention by age no longer keeps.
    fn snapshot(&self, st: &RoomState, start: usize) -> Vec<ChatMessage> {
        let cutoff = self.cutoff();
        st.history
            .range(start..)
            .map(|e| chat(e))
            .filter(|m| m.ts >= cutoff)
            .cloned()
            .collect()
    }

    /// The history a joiner gets: after `since`, or the newest `on_join`.
    fn join_plan(&self, st: &RoomState, since: Option<u64>, on_join: usize) -> Plan {
        let first = st.first_seq();
        let (start, wanted_from_store) = match since {
            Some(since) => {
                let start = st.history.partition_point(|e| chat(e).seq <= since);
                let missing = first.saturating_sub(since.saturating_add(1));
                (start, usize::try_from(missing).unwrap_or(usize::MAX))
            }
            None => {
                let start = st.history.len().saturating_sub(on_join);
                (start, on_join - (st.history.len() - start))
            }
        };
        let messages = self.snapshot(st, start);
        // Messages retention by age hides from the ring count as missing too.
        let hidden = st.history.len() - start > messages.len();
        let older_exist = first > 1 || start > 0 || hidden;
        match (&self.store, since) {
            (Some(_), _) if wanted_from_store > 0 && first > 1 => Plan::Read {
                messages,
                range: Range {
                    after: since.unwrap_or(0),
                    before: first,
                    limit: wanted_from_store.min(JOIN_FROM_STORE_MAX) + 1,
                },
                since: since.is_some(),
            },
            (_, Some(since)) => Plan::Done {
                messages,
                // Without a store, what the ring lost is gone: say so.
                older: since.saturating_add(1) < first || hidden,
            },
            (_, None) => Plan::Done {
                messages,
                older: older_exist,
            },
        }
    }

    /// Adds (or re-adds) a member and returns its join sequence.
    ///
    /// With `since`, history is every retained message after that `seq`; without it, the
    /// newest `on_join`. Others hear of the join only the first time.
    pub(crate) fn join(
        &self,
        session: Uuid,
        nick: &Nick,
        since: Option<u64>,
        on_join: usize,
    ) -> Joined {
        let mut st = self.lock();
        let ts = now_ms();
        st.last_active = ts;
        let event = Arc::new(Event::new(
            ServerMsg::Joined {
                room: self.name.to_string(),
                nick: nick.to_string(),
                ts,
            },
            Some(session),
        ));
        if st.members.insert(session, nick.clone()).is_none() {
            self.broadcast(&event);
        }
        let history = self.join_plan(&st, since, on_join);
        let members = sorted_nicks(&st.members);
        let unsettled = unsettled_by(&st, nick);
        let rx = self.tx.subscribe();
        Joined {
            rx,
            event,
            history,
            members,
            unsettled,
        }
    }

    /// Removes a member; the `parted` event (already broadcast to the others) is returned
    /// for the leaver, whose receiver is dropped with the membership.
    ///
    /// # Errors
    /// `NotInRoom` when `session` is not a member.
    pub(crate) fn part(
        &self,
        session: Uuid,
        reason: Option<String>,
    ) -> Result<Arc<Event>, RoomError> {
        let mut st = self.lock();
        let nick = st.members.remove(&session).ok_or(RoomError::NotInRoom)?;
        st.last_active = now_ms();
        let event = Arc::new(Event::new(
            ServerMsg::Parted {
                room: self.name.to_string(),
                nick: nick.to_string(),
                ts: st.last_active,
                reason,
            },
            Some(session),
        ));
        self.broadcast(&event);
        Ok(event)
    }

    /// Takes a message: assigns its `seq`, releases it to history and the broadcast (see the
    /// module's doc for when) and stores it. A known id is not taken again.
    ///
    /// # Errors
    /// `NotInRoom` when `session` is not a member; `StoreBusy` when the store is too far
    /// behind (the message was not taken).
    pub(crate) fn post(
        self: &Arc<Self>,
        ids: &Arc<MessageIds>,
        session: Uuid,
        sender: &Arc<Mailbox>,
        text: String,
        id: Option<Uuid>,
        action: bool,
    ) -> Result<Posted, RoomError> {
        let mut st = self.lock();
        let from = st
            .members
            .get(&session)
            .ok_or(RoomError::NotInRoom)?
            .to_string();
        let fresh_id = id.is_none();
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut index = ids.lock();
        if let Some(known) = index.get(&id) {
            return Ok(match known.settled() {
                Settled::Durable => Posted::Duplicate(Arc::clone(known)),
                Settled::Pending | Settled::Failed => Posted::Pending,
            });
        }
        let ts = now_ms();
        st.last_active = ts;
        let msg = ChatMessage {
            id,
            room: self.name.to_string(),
            seq: st.next_seq,
            from,
            text,
            ts,
            action,
        };
        // Used from here on, whatever becomes of the message: a seq is never reused.
        st.next_seq += 1;
        let Some(store) = &self.store else {
            let event = Arc::new(Event::new(ServerMsg::Message(msg), Some(session)));
            index.insert(id, Arc::clone(&event));
            drop(index);
            self.release(&mut st, ids, event);
            return Ok(Posted::New);
        };
        let seq = msg.seq;
        let event = Arc::new(Event::pending(ServerMsg::Message(msg), Some(session)));
        let event_done = Arc::clone(&event);
        index.insert(id, Arc::clone(&event));
        drop(index);
        // When to broadcast it, before it is durable either way:
        // - an id the server made up cannot be a resend: at once, if its seq is reserved on
        //   disk and nothing queued before it is still waiting to be placed (order);
        // - an id from the client may be a resend of a message stored long ago, which only
        //   the store can tell: the store places it once written (see `store::Job`).
        let at_once = fresh_id
            && seq < self.covered.load(Ordering::Acquire)
            && self.resolved.load(Ordering::Acquire) >= st.last_queued;
        let placed = (!at_once).then(|| {
            let (room, ids, event) = (Arc::clone(self), Arc::clone(ids), Arc::clone(&event));
            Box::new(move || {
                let mut st = room.lock();
                room.resolved.fetch_max(seq, Ordering::AcqRel);
                room.release(&mut st, &ids, event);
            }) as Box<dyn FnOnce() + Send>
        });
        let (room, ids_handle, acker) = (Arc::clone(self), Arc::clone(ids), Arc::clone(sender));
        let job = Job {
            record: Record::Message(Arc::clone(&event)),
            placed,
            done: Box::new(move |stored| room.on_stored(&ids_handle, &event_done, stored, &acker)),
        };
        // Queued under the room lock, so the store sees this room's messages in seq order
        // and places them in that order.
        sender.unsettled_add();
        if store.append(job).is_err() {
            sender.unsettled_sub();
            ids.lock().remove(&id);
            return Err(RoomError::StoreBusy);
        }
        if at_once {
            self.release(&mut st, ids, event);
        } else {
            st.last_queued = seq;
        }
        Ok(Posted::New)
    }

    /// The store's verdict on a message, once it is settled. A new message was placed
    /// (broadcast) before this; its sender's copy waits for this call to be sent.
    fn on_stored(&self, ids: &MessageIds, event: &Arc<Event>, stored: Stored, sender: &Mailbox) {
        let ChatMessage { id, seq, .. } = *chat(event);
        sender.unsettled_sub();
        // Placed or never to be: either way no longer in the way of later messages.
        self.resolved.fetch_max(seq, Ordering::AcqRel);
        match stored {
            Stored::New { covered } => {
                self.covered.fetch_max(covered, Ordering::AcqRel);
                event.settle(Settled::Durable);
                // The sender's session holds its own copy until now: wake it to send it.
                sender.poke();
            }
            Stored::Duplicate(original) => {
                // Stored long ago (before a restart), so never placed: this resend's seq is
                // skipped, and the sender alone gets the original.
                event.settle(Settled::Failed);
                ids.lock().remove(&id);
                let _ = sender.deliver(original); // a full mailbox loses the ack: the client resends
            }
            Stored::Failed(reason) => {
                event.settle(Settled::Failed);
                ids.lock().remove(&id);
                // History keeps only what is stored; whoever received it already keeps it.
                let mut st = self.lock();
                if let Some(at) = st.history.iter().rposition(|e| Arc::ptr_eq(e, event)) {
                    st.history.remove(at);
                }
                drop(st);
                let _ = sender.deliver(Arc::new(not_stored(&reason, id))); // as above
            }
        }
    }

    /// Puts a message into history and broadcasts it (under the room lock): at once without
    /// a store, once the store has taken it with one.
    fn release(&self, st: &mut RoomState, ids: &MessageIds, event: Arc<Event>) {
        if st.capacity > 0 {
            if st.history.len() >= st.capacity
                && let Some(old) = st.history.pop_front()
            {
                ids.lock().remove(&chat(&old).id);
            }
            st.history.push_back(Arc::clone(&event));
        } else {
            ids.lock().remove(&chat(&event).id);
        }
        self.broadcast(&event);
    }

    /// Changes a member's nick; returns every member's session (the renamed one included).
    pub(crate) fn rename(&self, session: Uuid, nick: &Nick) -> Vec<Uuid> {
        let mut st = self.lock();
        if let Some(n) = st.members.get_mut(&session) {
            *n = nick.clone();
        }
        st.members.keys().copied().collect()
    }

    /// The newest message in the history ring that `nick` sent and that is not durable yet
    /// (see `Joined::unsettled`).
    pub(crate) fn unsettled_by(&self, nick: &Nick) -> Option<Arc<Event>> {
        unsettled_by(&self.lock(), nick)
    }

    pub(crate) fn members(&self) -> Vec<String> {
        sorted_nicks(&self.lock().members)
    }

    pub(crate) fn member_count(&self) -> usize {
        self.lock().members.len()
    }

    /// Removes this room's cached messages from the id index: the room is being forgotten.
    pub(crate) fn forget_ids(&self, ids: &MessageIds) {
        let st = self.lock();
        let mut ids = ids.lock();
        for event in &st.history {
            ids.remove(&chat(event).id);
        }
    }

    /// (member count, last activity), for choosing which empty room to forget.
    pub(crate) fn activity(&self) -> (usize, i64) {
        let st = self.lock();
        (st.members.len(), st.last_active)
    }

    /// Up to `limit` messages older than `before` (default: the newest), oldest first.
    ///
    /// # Errors
    /// `UnknownBefore` when `before` is not a message of this room (in memory, and there is
    /// no store to look in).
    pub(crate) fn history(&self, before: Option<Uuid>, limit: usize) -> Result<Plan, RoomError> {
        let st = self.lock();
        let end = match before {
            Some(id) => match st.history.iter().position(|e| chat(e).id == id) {
                Some(end) => end,
                None if self.store.is_some() => return Ok(Plan::Find { before: id, limit }),
                None => return Err(RoomError::UnknownBefore),
            },
            None => st.history.len(),
        };
        let start = end.saturating_sub(limit);
        let cutoff = self.cutoff();
        let messages: Vec<ChatMessage> = st
            .history
            .range(start..end)
            .map(|e| chat(e))
            .filter(|m| m.ts >= cutoff)
            .cloned()
            .collect();
        let first = st.first_seq();
        let wanted = limit - messages.len();
        if self.store.is_some() && wanted > 0 && first > 1 {
            return Ok(Plan::Read {
                messages,
                range: Range {
                    after: 0,
                    before: first,
                    limit: wanted + 1,
                },
                since: false,
            });
        }
        Ok(Plan::Done {
            messages,
            older: start > 0,
        })
    }
}

/// Most messages a `join` with an old `since` reads from the store (the frame limit cuts
/// what is sent further; `history` pages the rest).
const JOIN_FROM_STORE_MAX: usize = 500;

fn unsettled_by(st: &RoomState, nick: &Nick) -> Option<Arc<Event>> {
    // Messages settle in seq order, so the unsettled ones are the newest.
    st.history
        .iter()
        .rev()
        .take_while(|e| e.settled() == Settled::Pending)
        .find(|e| same_nick(&chat(e).from, nick.as_str()))
        .cloned()
}

/// Whether two nicks are the same person's (nicks are unique without regard to case). Cheap
/// for ASCII nicks: it runs for every message a session holds back.
pub(crate) fn same_nick(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    !(a.is_ascii() && b.is_ascii())
        && chat_shared::validate::nick_key(a) == chat_shared::validate::nick_key(b)
}

fn sorted_nicks(members: &HashMap<Uuid, Nick>) -> Vec<String> {
    let mut nicks: Vec<String> = members.values().map(Nick::to_string).collect();
    nicks.sort_by_cached_key(|n| chat_shared::validate::nick_key(n));
    nicks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Busy;

    fn nick(s: &str) -> Nick {
        Nick::parse(s).unwrap()
    }

    fn room(history: usize) -> (Arc<Room>, Arc<MessageIds>) {
        let ids = Arc::new(MessageIds::default());
        let config = Config {
            history,
            room_buffer: 16,
            ..Config::default()
        };
        let room = Room::new(
            RoomName::parse("r").unwrap(),
            &config,
            None,
            RoomLoad::default(),
            &ids,
        );
        (Arc::new(room), ids)
    }

    fn mailbox() -> Arc<Mailbox> {
        Arc::new(Mailbox::new(8))
    }

    fn post(room: &Arc<Room>, ids: &Arc<MessageIds>, who: Uuid, text: &str) {
        assert!(matches!(
            room.post(ids, who, &mailbox(), text.into(), None, false),
            Ok(Posted::New)
        ));
    }

    fn done(plan: Plan) -> (Vec<u64>, bool) {
        match plan {
            Plan::Done { messages, older } => (messages.iter().map(|m| m.seq).collect(), older),
            other => panic!("not served from memory: {other:?}"),
        }
    }

    #[test]
    fn seq_increases_and_history_is_bounded() {
        let (room, ids) = room(3);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..5 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        assert_eq!(
            done(room.history(None, 50).unwrap()),
            (vec![3, 4, 5], false)
        );
        assert_eq!(ids.lock().len(), 3, "evicted ids are forgotten");
    }

    #[test]
    fn join_since_returns_exactly_what_follows() {
        let (room, ids) = room(10);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..6 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        let j = room.join(Uuid::new_v4(), &nick("b"), Some(4), 50);
        assert_eq!(done(j.history), (vec![5, 6], false));
        let j = room.join(Uuid::new_v4(), &nick("c"), None, 2);
        assert_eq!(done(j.history), (vec![5, 6], true));
        assert_eq!(j.members, ["a", "b", "c"]);
    }

    #[test]
    fn join_since_older_than_retained_says_truncated() {
        let (room, ids) = room(2);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..5 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        let j = room.join(Uuid::new_v4(), &nick("b"), Some(1), 50);
        assert_eq!(done(j.history), (vec![4, 5], true), "seq 2 and 3 are gone");
    }

    #[test]
    fn duplicate_ids_return_the_original() {
        let (room, ids) = room(10);
        let a = Uuid::new_v4();
        let mut rx = room.join(a, &nick("a"), None, 50).rx;
        let id = Uuid::now_v7();
        assert!(matches!(
            room.post(&ids, a, &mailbox(), "x".into(), Some(id), false),
            Ok(Posted::New)
        ));
        let Ok(Posted::Duplicate(orig)) =
            room.post(&ids, a, &mailbox(), "y".into(), Some(id), false)
        else {
            panic!("second post with the same id was not a duplicate");
        };
        assert_eq!(chat(&orig).text, "x");
        assert_eq!(chat(&rx.try_recv().unwrap()).seq, 1);
        assert!(rx.try_recv().is_err(), "the duplicate was not broadcast");
    }

    /// A store that keeps its jobs for the test to settle by hand.
    #[derive(Debug, Default)]
    struct HeldStore(Mutex<Vec<Job>>);

    impl std::fmt::Debug for Job {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Job")
        }
    }

    impl Store for HeldStore {
        fn append(&self, job: Job) -> Result<(), Busy> {
            self.0.lock().unwrap().push(job);
            Ok(())
        }
        fn load_room(&self, _: &str, _: usize) -> anyhow::Result<RoomLoad> {
            Ok(RoomLoad::default())
        }
        fn read(&self, _: &str, _: Range) -> anyhow::Result<Vec<ChatMessage>> {
            Ok(Vec::new())
        }
        fn seq_of(&self, _: &str, _: Uuid) -> anyhow::Result<Option<u64>> {
            Ok(None)
        }
        fn close(&self) {}
    }

    fn seqs(rx: &mut broadcast::Receiver<Arc<Event>>) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| chat(&e).seq)
            .collect()
    }

    /// With a store: a message with an id the server made up is broadcast at once once its
    /// seq is reserved, one with the client's id only when the store places it; never out
    /// of seq order; and its sender's copy is held back until it is durable.
    #[test]
    fn with_a_store_broadcasts_before_durable_in_seq_order() {
        let store = Arc::new(HeldStore::default());
        let ids = Arc::new(MessageIds::default());
        let config = Config {
            room_buffer: 16,
            ..Config::default()
        };
        let dyn_store: Arc<dyn Store> = store.clone();
        let room = Arc::new(Room::new(
            RoomName::parse("r").unwrap(),
            &config,
            Some(dyn_store),
            RoomLoad::default(),
            &ids,
        ));
        let a = Uuid::new_v4();
        let mut rx = room.join(a, &nick("a"), None, 50).rx;
        let sender = mailbox();
        let say = |id: Option<Uuid>| {
            assert!(matches!(
                room.post(&ids, a, &sender, "x".into(), id, false),
                Ok(Posted::New)
            ));
        };
        let settle = |n: usize, covered: u64| {
            let jobs: Vec<Job> = store.0.lock().unwrap().drain(..n).collect();
            for mut job in jobs {
                if let Some(placed) = job.placed.take() {
                    placed();
                }
                (job.done)(Stored::New { covered });
            }
        };

        // Nothing is reserved yet: seq 1 waits for the store.
        say(None);
        assert_eq!(seqs(&mut rx), [] as [u64; 0]);
        assert_eq!(sender.unsettled(), 1);
        settle(1, 6);
        assert_eq!(seqs(&mut rx), [1]);
        assert_eq!(sender.unsettled(), 0);
        assert!(
            sender.try_take().is_none(),
            "a poke, not an event, tells the sender"
        );

        // Reserved now: seq 2 goes out at once, still pending.
        say(None);
        let ev = rx.try_recv().unwrap();
        assert_eq!((chat(&ev).seq, ev.settled()), (2, Settled::Pending));
        // A client id (seq 3) waits for the store; seq 4 must not overtake it.
        say(Some(Uuid::now_v7()));
        say(None);
        assert_eq!(seqs(&mut rx), [] as [u64; 0]);
        settle(3, 6);
        assert_eq!(seqs(&mut rx), [3, 4]);
        assert_eq!(ev.settled(), Settled::Durable);
        // Everything placed: fast again.
        say(None);
        assert_eq!(seqs(&mut rx), [5]);
        // Past the reservation (6): waits for the store again.
        say(None);
        assert_eq!(seqs(&mut rx), [] as [u64; 0]);
        settle(2, 200);
        assert_eq!(seqs(&mut rx), [6]);
    }

    #[test]
    fn non_members_cannot_post_and_history_before_must_exist() {
        let (room, ids) = room(10);
        assert!(matches!(
            room.post(&ids, Uuid::new_v4(), &mailbox(), "x".into(), None, false),
            Err(RoomError::NotInRoom)
        ));
        assert_eq!(
            room.history(Some(Uuid::new_v4()), 10).unwrap_err(),
            RoomError::UnknownBefore
        );
    }
}
