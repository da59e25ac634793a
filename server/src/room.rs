//! One chat room: its members, its broadcast channel, its recent history and its `seq`.
//!
//! Everything that must happen atomically for a room (assigning `seq`, appending to history,
//! broadcasting; snapshotting history and subscribing on join) happens under the room's own
//! short std `Mutex`, never held across an `.await`. That is what gives every member the same
//! order and lets a joiner see each message exactly once: in the history snapshot or through
//! its new receiver, never both, never neither.
//!
//! The broadcast channel is the fan-out: one `Arc<Event>` per message, however many members.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::{ChatMessage, Nick, RoomName, ServerMsg};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::event::Event;
use crate::hub::MessageIds;
use crate::now_ms;

/// Why a room refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomError {
    NotInRoom,
    UnknownBefore,
}

/// What `join` hands the joiner, captured at one instant.
pub(crate) struct Joined {
    /// Subscribed right after the snapshot: everything later arrives here.
    pub(crate) rx: broadcast::Receiver<Arc<Event>>,
    pub(crate) event: Arc<Event>,
    pub(crate) history: Vec<ChatMessage>,
    /// Messages matched that are not in `history` (not retained, or over the count).
    pub(crate) truncated: bool,
    pub(crate) members: Vec<String>,
}

/// The outcome of posting a message.
pub(crate) enum Posted {
    /// Stored and broadcast (the sender receives it through its subscription).
    New,
    /// The id was already known: the stored original, for the sender alone.
    Duplicate(Arc<Event>),
}

#[derive(Debug)]
pub(crate) struct Room {
    name: RoomName,
    tx: broadcast::Sender<Arc<Event>>,
    state: Mutex<RoomState>,
}

#[derive(Debug)]
struct RoomState {
    members: HashMap<Uuid, Nick>,
    /// `message` events, oldest first, at most `capacity`.
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    next_seq: u64,
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

impl Room {
    pub(crate) fn new(name: RoomName, history: usize, buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self {
            name,
            tx,
            state: Mutex::new(RoomState {
                members: HashMap::new(),
                history: VecDeque::new(),
                capacity: history,
                next_seq: 1,
                last_active: now_ms(),
            }),
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
        let (start, truncated) = match since {
            Some(since) => {
                let first_kept = st.history.front().map_or(st.next_seq, |e| chat(e).seq);
                let start = st.history.partition_point(|e| chat(e).seq <= since);
                (start, since + 1 < first_kept)
            }
            None => {
                let start = st.history.len().saturating_sub(on_join);
                (start, start > 0)
            }
        };
        let history = st.history.range(start..).map(|e| chat(e).clone()).collect();
        let members = sorted_nicks(&st.members);
        let rx = self.tx.subscribe();
        Joined {
            rx,
            event,
            history,
            truncated,
            members,
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

    /// Stores and broadcasts a message, unless its id is already known.
    ///
    /// # Errors
    /// `NotInRoom` when `session` is not a member.
    pub(crate) fn post(
        &self,
        ids: &MessageIds,
        session: Uuid,
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
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut ids = ids.lock();
        if let Some(original) = ids.get(&id) {
            return Ok(Posted::Duplicate(Arc::clone(original)));
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
        st.next_seq += 1;
        let event = Arc::new(Event::new(ServerMsg::Message(msg), Some(session)));
        if st.capacity > 0 {
            if st.history.len() == st.capacity
                && let Some(old) = st.history.pop_front()
            {
                ids.remove(&chat(&old).id);
            }
            st.history.push_back(Arc::clone(&event));
            ids.insert(id, Arc::clone(&event));
        }
        drop(ids);
        self.broadcast(&event);
        Ok(Posted::New)
    }

    /// Changes a member's nick; returns every member's session (the renamed one included).
    pub(crate) fn rename(&self, session: Uuid, nick: &Nick) -> Vec<Uuid> {
        let mut st = self.lock();
        if let Some(n) = st.members.get_mut(&session) {
            *n = nick.clone();
        }
        st.members.keys().copied().collect()
    }

    pub(crate) fn members(&self) -> Vec<String> {
        sorted_nicks(&self.lock().members)
    }

    pub(crate) fn member_count(&self) -> usize {
        self.lock().members.len()
    }

    /// (member count, last activity), for choosing which empty room to forget.
    pub(crate) fn activity(&self) -> (usize, i64) {
        let st = self.lock();
        (st.members.len(), st.last_active)
    }

    /// Up to `limit` messages older than `before` (default: the newest), oldest first, and
    /// whether older ones exist.
    ///
    /// # Errors
    /// `UnknownBefore` when `before` is not a retained message of this room.
    pub(crate) fn history(
        &self,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, bool), RoomError> {
        let st = self.lock();
        let end = match before {
            Some(id) => st
                .history
                .iter()
                .position(|e| chat(e).id == id)
                .ok_or(RoomError::UnknownBefore)?,
            None => st.history.len(),
        };
        let start = end.saturating_sub(limit);
        let page = st
            .history
            .range(start..end)
            .map(|e| chat(e).clone())
            .collect();
        Ok((page, start > 0))
    }
}

fn sorted_nicks(members: &HashMap<Uuid, Nick>) -> Vec<String> {
    let mut nicks: Vec<String> = members.values().map(Nick::to_string).collect();
    nicks.sort_by_cached_key(|n| chat_shared::validate::nick_key(n));
    nicks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nick {
        Nick::parse(s).unwrap()
    }

    fn post(room: &Room, ids: &MessageIds, who: Uuid, text: &str) {
        assert!(matches!(
            room.post(ids, who, text.into(), None, false),
            Ok(Posted::New)
        ));
    }

    #[test]
    fn seq_increases_and_history_is_bounded() {
        let ids = MessageIds::default();
        let room = Room::new(RoomName::parse("r").unwrap(), 3, 16);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..5 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        let (page, older) = room.history(None, 50).unwrap();
        let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert!(!older);
        assert_eq!(ids.lock().len(), 3, "evicted ids are forgotten");
    }

    #[test]
    fn join_since_returns_exactly_what_follows() {
        let ids = MessageIds::default();
        let room = Room::new(RoomName::parse("r").unwrap(), 10, 16);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..6 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        let j = room.join(Uuid::new_v4(), &nick("b"), Some(4), 50);
        assert_eq!(j.history.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
        assert!(!j.truncated);
        let j = room.join(Uuid::new_v4(), &nick("c"), None, 2);
        assert_eq!(j.history.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
        assert!(j.truncated);
        assert_eq!(j.members, ["a", "b", "c"]);
    }

    #[test]
    fn join_since_older_than_retained_says_truncated() {
        let ids = MessageIds::default();
        let room = Room::new(RoomName::parse("r").unwrap(), 2, 16);
        let a = Uuid::new_v4();
        room.join(a, &nick("a"), None, 50);
        for i in 0..5 {
            post(&room, &ids, a, &format!("m{i}"));
        }
        let j = room.join(Uuid::new_v4(), &nick("b"), Some(1), 50);
        assert_eq!(j.history.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
        assert!(j.truncated, "seq 2 and 3 are gone");
    }

    #[test]
    fn duplicate_ids_return_the_original() {
        let ids = MessageIds::default();
        let room = Room::new(RoomName::parse("r").unwrap(), 10, 16);
        let a = Uuid::new_v4();
        let mut rx = room.join(a, &nick("a"), None, 50).rx;
        let id = Uuid::now_v7();
        assert!(matches!(
            room.post(&ids, a, "x".into(), Some(id), false),
            Ok(Posted::New)
        ));
        let Ok(Posted::Duplicate(orig)) = room.post(&ids, a, "y".into(), Some(id), false) else {
            panic!("second post with the same id was not a duplicate");
        };
        assert_eq!(chat(&orig).text, "x");
        assert_eq!(chat(&rx.try_recv().unwrap()).seq, 1);
        assert!(rx.try_recv().is_err(), "the duplicate was not broadcast");
    }

    #[test]
    fn non_members_cannot_post_and_history_before_must_exist() {
        let ids = MessageIds::default();
        let room = Room::new(RoomName::parse("r").unwrap(), 10, 16);
        assert!(matches!(
            room.post(&ids, Uuid::new_v4(), "x".into(), None, false),
            Err(RoomError::NotInRoom)
        ));
        assert_eq!(
            room.history(Some(Uuid::new_v4()), 10).unwrap_err(),
            RoomError::UnknownBefore
        );
    }
}
