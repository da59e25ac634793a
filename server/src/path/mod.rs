//! The ordered path of room events: one producer appends each room's events in order, and
//! one consumer, local delivery, hands them to this node's members.
//!
//! Every room event (a message, a join, a part, a rename, a message becoming durable) is a
//! [`RoomEvent`], and [`Room::apply`] is the only place one takes effect: it updates the
//! room's stream (its `seq` and history cache) and its local delivery (members and their
//! send queues) together, under the room's lock. Everything downstream of `apply` (local
//! delivery, sessions, wire adapters) sees one order per room.
//!
//! **The seam.** Today the producer is in-process (`producer.rs`): it assigns `seq`, checks
//! ids, hands messages to the store and applies each event itself; the store's outcomes come
//! back as data and become `Message` (placed) and `Settled` (durable) events
//! (`durability.rs`). A JetStream producer replaces those two files: it publishes what
//! `post`, `join` and `part` build to the room's stream, and its consumer task calls
//! `Room::apply` with what the stream delivers. Stream, delivery, sessions and adapters stay
//! as they are.
//!
//! Layout:
//! - [`Room`], [`RoomEvent`], [`JoinSeq`]: one room and the events of its path.
//! - `producer`: posting a message (seq, ids, store, when it may be shown).
//! - `durability`: the store's outcomes turned into path events.
//! - `stream`: the room's `seq` and history cache, and planning history pages.
//! - `moderation`: moderation requests turned into notices on the path (topic, roles,
//!   kick, modes) or applied at once (bans, invitations).
//! - `delivery`: the room's local members and fan-out.
//! - `feed`: the room's events written once, read by each member at its own position.
//! - `sink`: one session's send queue and its byte budget.
//! - `ids`: the message-id index that recognises resends.
//! - `remote`: the seam for a producer elsewhere (cluster mode): [`RoomProducer`], what the
//!   stream delivers applied in its order, and the members on other nodes.

pub(crate) mod delivery;
pub(crate) mod durability;
pub(crate) mod feed;
pub(crate) mod ids;
pub(crate) mod moderation;
pub(crate) mod producer;
pub(crate) mod remote;
pub(crate) mod sink;
pub(crate) mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::{Nick, Role, RoomName, ServerMsg};
use uuid::Uuid;

use crate::event::{Event, RoomKey, Settled};
use crate::moderation::room::Settings;
use crate::moderation::{Joiner, RoomModeration};
use crate::now_ms;
use crate::store::settings::SettingsWriter;
use crate::store::{RoomLoad, Store};
use delivery::{LocalDelivery, Member, MemberList};
use ids::MessageIds;
use producer::{InFlight, PostError};
pub(crate) use remote::{Invitation, Origin, Presence, RoomProducer};
use remote::{Joining, Roster};
use sink::Sink;
pub(crate) use stream::chat;
use stream::{Plan, RoomStream, UnknownBefore};

/// The store as the path uses it: its jobs carry what the path needs back.
pub(crate) type PathStore = Arc<dyn Store<InFlight>>;

/// One event on a room's ordered path.
#[derive(Debug)]
pub(crate) enum RoomEvent {
    /// A member joins. The others get `event` (the first time only); the joiner gets its
    /// join sequence (`event`, history after `since` or the newest `on_join`, members).
    Joined {
        session: Uuid,
        member: Member,
        event: Arc<Event>,
        since: Option<u64>,
        on_join: usize,
    },
    /// A member leaves; every member, the leaver included, gets `event`.
    Parted { session: Uuid, event: Arc<Event> },
    /// A member's nick or login changed (`account`: logged in to the account of `nick`);
    /// the notices go out once per person, from the directory.
    Renamed {
        session: Uuid,
        nick: Nick,
        account: bool,
    },
    /// A message is shown: into the history cache and to every member. A moderation
    /// notice (a message with `event`) also changes the room as it says, once delivered.
    Message(Arc<Event>),
    /// A message settled (its flag says how): a failed one leaves the cache, and sessions
    /// waiting on it look again. A durable one nobody waits on changes nothing in the room,
    /// so it is not applied at all (see `Room::has_waiters`).
    Settled(Arc<Event>),
}

/// The rest of a join sequence, queued in the joiner's sink behind its `joined`.
#[derive(Debug)]
pub(crate) struct JoinSeq {
    pub(crate) room: RoomName,
    pub(crate) joined: Arc<Event>,
    /// The current topic, if any, then all the modes: right after `joined`.
    pub(crate) topic: Option<ServerMsg>,
    pub(crate) modes: ServerMsg,
    pub(crate) plan: Plan,
    pub(crate) members: MemberList,
    /// The newest message in `plan` that the joiner's nick sent and that is not durable
    /// yet; the history waits for it (see `RoomStream::unsettled_by`).
    pub(crate) unsettled: Option<Arc<Event>>,
}

impl JoinSeq {
    pub(crate) fn weight(&self) -> usize {
        let history: usize = self.plan.held().iter().map(|m| m.text.len() + 96).sum();
        self.joined.weight() + history + self.members.nicks.len() * 16 + 256
    }
}

#[derive(Debug)]
struct RoomState {
    stream: RoomStream,
    delivery: LocalDelivery,
    moderation: RoomModeration,
    /// Unix ms of the last join, part or message; the least recently active empty room is
    /// the one forgotten when the room limit is reached.
    last_active: i64,
    /// Members on other nodes (cluster mode).
    remote: Roster,
    /// Local joins on their way through the stream (cluster mode).
    joining: HashMap<Uuid, Joining>,
}

impl RoomState {
    /// Every member, here and on other nodes.
    fn member_list(&self) -> MemberList {
        let local = self.delivery.members().map(|m| (m.nick.as_str(), m.role));
        let remote = self.remote.values().map(|m| (m.nick.as_str(), m.role));
        MemberList::of(local.chain(remote))
    }

    fn member_count(&self) -> usize {
        self.delivery.len() + self.remote.len()
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    name: RoomName,
    state: Mutex<RoomState>,
    store: Option<PathStore>,
    ids: Arc<MessageIds>,
    /// Every `seq` below this is reserved on disk: a message with one may be shown before
    /// it is durable (a crash cannot make the room give its seq to another message).
    covered: AtomicU64,
    /// The newest `seq` the store has placed or settled: messages queued for placement by
    /// the store are all out of the way once this reaches `RoomStream::last_queued`.
    resolved: AtomicU64,
    /// The newest `seq` the store has settled (stored, or never to be): the history cache
    /// keeps every message after it, whatever its capacity, so that no page of history
    /// falls between the cache and what the store can already be read for.
    stored: AtomicU64,
    /// The cache holds more than its capacity, waiting for the store: the next settle
    /// trims it (only then does a settle take the room's lock for it).
    over: AtomicBool,
    /// How many sessions wait for a message of this room to settle (see `has_waiters`).
    waiting: AtomicUsize,
    /// Where the room's moderation settings persist; `None` without a store.
    settings: Option<SettingsWriter>,
    /// The server's counters of messages and deliveries (handles, resolved once).
    counters: crate::ops::metrics::PathCounters,
    /// Messages shown in this room since it was loaded (`/rooms` derives its rate).
    messages: AtomicU64,
    /// The producer elsewhere that orders this room's events (cluster mode); `None`: this
    /// node orders them itself (`producer.rs`).
    producer: Option<Arc<dyn RoomProducer>>,
    /// This room among the server's, as its messages and its joins are stamped.
    key: Option<RoomKey>,
}

/// The next room's key: counted from 1, never reused while the server runs (none once
/// they are used up).
fn next_room_key() -> Option<RoomKey> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u32::try_from(NEXT.fetch_add(1, Ordering::Relaxed))
        .ok()
        .and_then(RoomKey::new)
}

/// Not a member of the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a member")]
pub(crate) struct NotMember;

impl Room {
    /// A room resuming from what the store had of it (`load`).
    pub(crate) fn new(
        name: RoomName,
        config: &crate::Config,
        store: Option<PathStore>,
        load: RoomLoad,
        ids: Arc<MessageIds>,
        moderation: (Settings, Option<SettingsWriter>),
    ) -> Self {
        let capacity = match config.retain_per_room {
            Some(keep) => config
                .history
                .min(usize::try_from(keep).unwrap_or(usize::MAX)),
            None => config.history,
        };
        let retain_ms = config.retain_days.map(|d| i64::from(d) * 86_400_000);
        // What the store had is stored.
        let stored = load.next_seq.saturating_sub(1);
        let stream = RoomStream::new(load, capacity, store.is_some(), retain_ms, &ids);
        let delivery = LocalDelivery::new(name.as_str(), config.max_sendq);
        Self {
            name,
            state: Mutex::new(RoomState {
                stream,
                delivery,
                moderation: RoomModeration::new(moderation.0, config),
                last_active: now_ms(),
                remote: Roster::default(),
                joining: HashMap::new(),
            }),
            store,
            ids,
            covered: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            stored: AtomicU64::new(stored),
            over: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            settings: moderation.1,
            counters: crate::ops::metrics::PathCounters::default(),
            messages: AtomicU64::new(0),
            producer: None,
            key: next_room_key(),
        }
    }

    /// The key the room stamps its events with (see [`RoomKey`]).
    pub(crate) fn key(&self) -> Option<RoomKey> {
        self.key
    }

    /// The room with its events ordered by `producer` (cluster mode).
    pub(crate) fn with_producer(mut self, producer: Option<Arc<dyn RoomProducer>>) -> Self {
        self.producer = producer;
        self
    }

    /// The room counting into the server's `counters` rather than its own.
    pub(crate) fn with_counters(mut self, counters: crate::ops::metrics::PathCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Messages shown in this room since it was loaded.
    pub(crate) fn message_count(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// The local members, each with the weight of this room's events it has not read yet:
    /// a slow reader's queue is mostly there, not in its sink (see `feed.rs`).
    pub(crate) fn member_backlogs(&self) -> Vec<(Uuid, usize)> {
        self.lock().delivery.backlogs().collect()
    }

    /// Writes the room's moderation settings (off the lock: the writer is a thread).
    fn persist(&self, st: &RoomState) {
        if let Some(w) = &self.settings {
            w.put(Settings::key(&self.name), Some(st.moderation.document()));
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

    /// The one consumer of the room's path: applies `event` to its stream and its local
    /// delivery. Callers hold the room's lock, which is what makes the order one order.
    fn apply(&self, st: &mut RoomState, event: RoomEvent) {
        match event {
            RoomEvent::Message(event) => {
                st.last_active = now_ms();
                // One add per fan-out, not one per recipient.
                let queued = st.delivery.deliver(&event);
                self.counters.deliveries.inc_by(queued);
                self.counters.room_messages.inc();
                self.messages.fetch_add(1, Ordering::Relaxed);
                let m = chat(&event);
                let notice = m.event.clone().map(|n| (n, m.from.clone(), m.ts));
                let stored = self.stored.load(Ordering::SeqCst);
                if st.stream.push(&self.ids, event, stored) {
                    self.over.store(true, Ordering::SeqCst);
                    // A settle between the load and the flag did not see the flag: trim
                    // with what it settled (an idle room would keep its excess otherwise).
                    let now = self.stored.load(Ordering::SeqCst);
                    if now != stored {
                        st.stream.trim(&self.ids, now);
                    }
                }
                if let Some((notice, by, ts)) = notice {
                    self.take_effect(st, &notice, &by, ts);
                }
            }
            RoomEvent::Joined {
                session,
                member,
                event,
                since,
                on_join,
            } => {
                st.last_active = now_ms();
                let sink = Arc::clone(&member.sink);
                let nick = member.nick.clone();
                if st.delivery.get(session).is_none() {
                    st.delivery.deliver(&event);
                }
                st.delivery.add(session, member);
                sink.push_join(JoinSeq {
                    room: self.name.clone(),
                    joined: event,
                    topic: st.moderation.topic_event(&self.name),
                    modes: st.moderation.modes_event(&self.name),
                    plan: st.stream.join_plan(since, on_join),
                    members: st.member_list(),
                    unsettled: st.stream.unsettled_by(nick.as_str()),
                });
            }
            RoomEvent::Parted { session, event } => {
                st.last_active = now_ms();
                if st.delivery.get(session).is_some() {
                    st.delivery.deliver(&event);
                    st.delivery.remove(session);
                }
            }
            RoomEvent::Renamed {
                session,
                nick,
                account,
            } => st.delivery.rename(session, &nick, account),
            RoomEvent::Settled(event) => {
                if event.settled() == Settled::Failed {
                    st.stream.remove(&event);
                }
                st.delivery.settled();
                self.waiting.store(0, Ordering::SeqCst);
            }
        }
    }

    /// Adds (or re-adds) a member, if the room's rules let it in; its join sequence
    /// arrives in its sink. Others hear of the join only the first time.
    ///
    /// # Errors
    /// Why the room's rules keep `joiner` out (banned, invite-only, a key).
    pub(crate) fn join(
        self: &Arc<Self>,
        joiner: &Joiner<'_>,
        sink: &Arc<Sink>,
        since: Option<u64>,
        on_join: usize,
    ) -> Result<(), PostError> {
        let session = joiner.session;
        let mut st = self.lock();
        if st.joining.contains_key(&session) {
            // Its join sequence is on its way already.
            return Ok(());
        }
        let role = match st.delivery.get(session) {
            // Already in: the sequence again, nothing checked again.
            Some(member) => member.role,
            None => {
                let empty = st.member_count() == 0;
                let (role, changed) = st.moderation.admit(&self.name, joiner, empty)?;
                if changed {
                    self.persist(&st);
                }
                role
            }
        };
        let event = Arc::new(
            Event::new(
                ServerMsg::Joined {
                    room: self.name.to_string(),
                    nick: joiner.nick.to_string(),
                    ts: now_ms(),
                    role: (role != Role::Member).then_some(role),
                    account: joiner.account,
                },
                Some(session),
            )
            .in_room(self.key),
        );
        let member = Member {
            nick: joiner.nick.clone(),
            sink: Arc::clone(sink),
            role,
            account: joiner.account,
            admin: joiner.admin,
            ip: joiner.ip,
        };
        if let Some(producer) = &self.producer
            && st.delivery.get(session).is_none()
        {
            let ts = match &event.msg {
                ServerMsg::Joined { ts, .. } => *ts,
                _ => now_ms(),
            };
            let joining = Joining {
                session,
                member,
                since,
                on_join,
            };
            return self.join_via(&mut st, producer, joining, ts);
        }
        self.apply(
            &mut st,
            RoomEvent::Joined {
                session,
                member,
                event,
                since,
                on_join,
            },
        );
        Ok(())
    }

    /// Removes a member; everyone, the leaver included, gets `parted`.
    ///
    /// # Errors
    /// [`NotMember`] when `session` is not a member.
    pub(crate) fn part(
        self: &Arc<Self>,
        session: Uuid,
        reason: Option<String>,
    ) -> Result<(), NotMember> {
        self.leave(session, reason, None)
    }

    /// A member's part on disconnecting: `parted` with `quit` and the `ts` its parts of
    /// every room share (IRC shows them as one `QUIT`).
    ///
    /// # Errors
    /// [`NotMember`] when `session` is not a member.
    pub(crate) fn quit(
        self: &Arc<Self>,
        session: Uuid,
        reason: Option<String>,
        ts: i64,
    ) -> Result<(), NotMember> {
        self.leave(session, reason, Some(ts))
    }

    fn leave(
        self: &Arc<Self>,
        session: Uuid,
        reason: Option<String>,
        quit: Option<i64>,
    ) -> Result<(), NotMember> {
        let mut st = self.lock();
        let joining = st.joining.remove(&session);
        let nick = match (st.delivery.get(session), joining) {
            (Some(member), _) => member.nick.to_string(),
            (None, Some(joining)) => joining.member.nick.to_string(),
            (None, None) => return Err(NotMember),
        };
        let ts = quit.unwrap_or_else(now_ms);
        let event = Arc::new(Event::new(
            ServerMsg::Parted {
                room: self.name.to_string(),
                nick: nick.clone(),
                ts,
                reason: reason.clone(),
                quit: quit.is_some(),
            },
            Some(session),
        ));
        let Some(producer) = &self.producer else {
            self.apply(&mut st, RoomEvent::Parted { session, event });
            return Ok(());
        };
        // The leaver is out at once; everyone else hears of it where the stream puts it.
        if let Some(member) = st.delivery.remove(session) {
            let _ = member.sink.push(&event); // dropped only over budget: it is leaving
        }
        let change = Presence::Parted {
            session,
            nick,
            ts,
            reason,
            quit: quit.is_some(),
        };
        if let Err(e) = producer.presence(self, change) {
            tracing::warn!(room = %self.name, error = %e, "a part could not be shared with the cluster");
        }
        Ok(())
    }

    /// Changes a member's nick or login (`account`: logged in to the account of `nick`);
    /// returns every member's session and sink (the renamed one included), for the
    /// directory to tell each person once.
    pub(crate) fn rename(
        self: &Arc<Self>,
        session: Uuid,
        nick: &Nick,
        account: bool,
        ts: i64,
    ) -> Vec<(Uuid, Arc<Sink>)> {
        let mut st = self.lock();
        if let Some(producer) = &self.producer
            && st.delivery.get(session).is_some()
        {
            let old = st
                .delivery
                .get(session)
                .map(|m| m.nick.to_string())
                .unwrap_or_default();
            let change = Presence::Renamed {
                session,
                old,
                nick: nick.to_string(),
                account,
                ts,
            };
            if let Err(e) = producer.presence(self, change) {
                tracing::warn!(room = %self.name, error = %e, "a rename could not be shared with the cluster");
            }
        }
        self.apply(
            &mut st,
            RoomEvent::Renamed {
                session,
                nick: nick.clone(),
                account,
            },
        );
        st.delivery
            .sinks()
            .map(|(id, sink)| (id, Arc::clone(sink)))
            .collect()
    }

    /// The local members' sinks, for what is about a member rather than the room (`away`).
    pub(crate) fn sinks(&self) -> Vec<(Uuid, Arc<Sink>)> {
        let st = self.lock();
        st.delivery
            .sinks()
            .map(|(id, sink)| (id, Arc::clone(sink)))
            .collect()
    }

    /// Registers `sink` to be poked when a message of this room settles, if `event` is
    /// still pending; false when it has settled already (look at it now).
    pub(crate) fn wait_durable(&self, event: &Event, sink: &Arc<Sink>) -> bool {
        let mut st = self.lock();
        st.delivery.wait(sink);
        self.waiting.store(st.delivery.waiting(), Ordering::SeqCst);
        // Registered before looking (see `has_waiters`): either this sees the message
        // settled, or its settling sees this registration and pokes.
        std::sync::atomic::fence(Ordering::SeqCst);
        event.settled() == Settled::Pending
    }

    /// Whether any session waits for a message of this room to settle. Read after the
    /// settling was stored, paired with `wait_durable`'s store before it looks, so the
    /// durability task skips the room's lock for the many messages nobody waits on.
    pub(crate) fn has_waiters(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// The newest message in the cache that `nick` sent and that is not durable yet.
    pub(crate) fn unsettled_by(&self, nick: &Nick) -> Option<Arc<Event>> {
        self.lock().stream.unsettled_by(nick.as_str())
    }

    /// The members, with their roles; a secret room shows its members to members only
    /// (to anyone else it is as empty as a room that does not exist).
    pub(crate) fn members(&self, asker: Uuid) -> MemberList {
        let st = self.lock();
        if st.moderation.secret() && st.delivery.get(asker).is_none() {
            return MemberList::default();
        }
        st.member_list()
    }

    /// Joins a guest from loopback, for tests of the path that are not about its rules.
    #[cfg(test)]
    pub(crate) fn join_as(
        self: &Arc<Self>,
        session: Uuid,
        nick: &Nick,
        sink: &Arc<Sink>,
        since: Option<u64>,
        on_join: usize,
    ) {
        let joiner = Joiner {
            session,
            nick,
            account: false,
            admin: false,
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            key: None,
        };
        self.join(&joiner, sink, since, on_join)
            .expect("a room without rules lets everyone in");
    }

    /// The members' nicks, for tests.
    #[cfg(test)]
    pub(crate) fn member_nicks(&self) -> Vec<String> {
        self.lock().delivery.nicks()
    }

    /// Whether `asker` may read this room's history: anyone an open room's, members only a
    /// closed one's (secret, invite-only or keyed).
    pub(crate) fn readable_by(&self, asker: Uuid) -> bool {
        let st = self.lock();
        !st.moderation.closed() || st.delivery.get(asker).is_some()
    }

    pub(crate) fn is_member(&self, session: Uuid) -> bool {
        self.lock().delivery.get(session).is_some()
    }

    /// Whether `asker` is shown this room in `rooms`: secret rooms only to their members.
    pub(crate) fn listed_for(&self, asker: Uuid) -> bool {
        let st = self.lock();
        !st.moderation.secret() || st.delivery.get(asker).is_some()
    }

    pub(crate) fn member_count(&self) -> usize {
        self.lock().member_count()
    }

    /// (member count, last activity), for choosing which empty room to forget.
    pub(crate) fn activity(&self) -> (usize, i64) {
        let st = self.lock();
        (st.member_count(), st.last_active)
    }

    /// Removes this room's cached messages from the id index: the room is being forgotten.
    pub(crate) fn forget_ids(&self) {
        self.lock().stream.forget_ids(&self.ids);
    }

    /// Up to `limit` messages older than `before` (default: the newest), oldest first.
    ///
    /// # Errors
    /// [`UnknownBefore`] when `before` is not a message of this room (in memory, and there
    /// is no store to look in).
    pub(crate) fn history(
        &self,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Plan, UnknownBefore> {
        self.lock().stream.history_plan(before, limit)
    }

    /// Up to `limit` messages newer than `after` (and, with `before`, between the two),
    /// oldest first; see [`RoomStream::forward_plan`](stream::RoomStream::forward_plan).
    ///
    /// # Errors
    /// [`UnknownBefore`] when an id is not a message of this room (in memory, and there is
    /// no store to look in).
    pub(crate) fn history_after(
        &self,
        after: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Plan, UnknownBefore> {
        self.lock().stream.forward_plan(after, before, limit)
    }
}

#[cfg(test)]
mod tests;
