//! The hub: who is online (nicks → sessions), which rooms exist, and the message-id index.
//!
//! Rooms do their own fan-out (see `room.rs`); the hub only finds them and routes what is not
//! a room broadcast — DMs and rename notices — to each session's private mailbox. Sessions
//! keep an `Arc<Room>` for every room they are in, so posting a message never touches the
//! hub's lock.
//!
//! Lock order: hub state → room state → message ids. No lock is held across an `.await`.
//!
//! Seam: a multi-node deployment replaces the local `broadcast`/mailbox delivery behind
//! `Room::post` and `Hub::dm` with a relay (NATS) that feeds the same local delivery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_shared::validate::nick_key;
use chat_shared::{DirectMessage, Nick, RoomInfo, RoomName, ServerMsg};
use tracing::warn;
use uuid::Uuid;

use crate::Config;
use crate::event::Event;
use crate::mailbox::{Full, Mailbox};
use crate::now_ms;
use crate::room::Room;

/// Why the hub refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HubError {
    NickTaken,
    NoSuchNick,
    TooManyRooms,
}

/// Every retained message by id, so a resent message is recognised and answered with its
/// stored original instead of being delivered twice.
#[derive(Debug, Default)]
pub(crate) struct MessageIds(Mutex<IdIndex>);

#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    by_id: HashMap<Uuid, Arc<Event>>,
    /// DMs are retained only here (rooms retain theirs in their history), oldest first.
    dms: VecDeque<Uuid>,
}

impl MessageIds {
    pub(crate) fn lock(&self) -> MutexGuard<'_, IdIndex> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IdIndex {
    pub(crate) fn get(&self, id: &Uuid) -> Option<&Arc<Event>> {
        self.by_id.get(id)
    }

    pub(crate) fn insert(&mut self, id: Uuid, ev: Arc<Event>) {
        self.by_id.insert(id, ev);
    }

    pub(crate) fn remove(&mut self, id: &Uuid) {
        self.by_id.remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert_dm(&mut self, id: Uuid, ev: Arc<Event>, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if self.dms.len() == capacity
            && let Some(old) = self.dms.pop_front()
        {
            self.by_id.remove(&old);
        }
        self.dms.push_back(id);
        self.by_id.insert(id, ev);
    }
}

#[derive(Debug)]
struct Member {
    session: Uuid,
    nick: Nick,
    mailbox: Arc<Mailbox>,
}

#[derive(Debug, Default)]
struct HubState {
    /// Keyed by `Nick::key`, so nicks are unique without regard to case.
    nicks: HashMap<String, Member>,
    rooms: HashMap<RoomName, Arc<Room>>,
}

#[derive(Debug)]
pub(crate) struct Hub {
    config: Arc<Config>,
    state: Mutex<HubState>,
    pub(crate) ids: MessageIds,
}

impl Hub {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            state: Mutex::default(),
            ids: MessageIds::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `nick` for `session`.
    ///
    /// # Errors
    /// `NickTaken` when someone holds it, in any case.
    pub(crate) fn register(
        &self,
        session: Uuid,
        nick: &Nick,
        mailbox: Arc<Mailbox>,
    ) -> Result<(), HubError> {
        let mut st = self.lock();
        let key = nick.key();
        if st.nicks.contains_key(&key) {
            return Err(HubError::NickTaken);
        }
        st.nicks.insert(
            key,
            Member {
                session,
                nick: nick.clone(),
                mailbox,
            },
        );
        Ok(())
    }

    /// Releases `nick` if `session` holds it.
    pub(crate) fn unregister(&self, session: Uuid, nick: &Nick) {
        let mut st = self.lock();
        let key = nick.key();
        if st.nicks.get(&key).is_some_and(|m| m.session == session) {
            st.nicks.remove(&key);
        }
    }

    /// Renames `session` in the registry and in `rooms`, and tells everyone who shares a room
    /// with it, once each however many rooms they share. Returns the notice for the renamed
    /// client itself.
    ///
    /// # Errors
    /// `NickTaken` when another session holds `new` (a change of case only is allowed).
    pub(crate) fn rename(
        &self,
        session: Uuid,
        old: &Nick,
        new: &Nick,
        rooms: &[Arc<Room>],
    ) -> Result<Arc<Event>, HubError> {
        let mut st = self.lock();
        let (old_key, new_key) = (old.key(), new.key());
        if st.nicks.get(&new_key).is_some_and(|m| m.session != session) {
            return Err(HubError::NickTaken);
        }
        let Some(mut member) = st.nicks.remove(&old_key) else {
            // Not registered: a session bug, but refusing is safer than inventing a member.
            return Err(HubError::NoSuchNick);
        };
        member.nick = new.clone();
        st.nicks.insert(new_key, member);
        let mut mates = HashSet::new();
        for room in rooms {
            mates.extend(room.rename(session, new));
        }
        let event = Arc::new(Event::new(
            ServerMsg::NickChanged {
                old: old.to_string(),
                new: new.to_string(),
                ts: now_ms(),
            },
            Some(session),
        ));
        mates.remove(&session);
        let mailboxes: HashMap<Uuid, &Mailbox> = st
            .nicks
            .values()
            .map(|m| (m.session, m.mailbox.as_ref()))
            .collect();
        for mate in mates {
            if let Some(mailbox) = mailboxes.get(&mate) {
                deliver(mailbox, &event);
            }
        }
        Ok(event)
    }

    /// The room called `name`, created if needed. At the room limit, the least recently
    /// active empty room is forgotten to make space (with its in-memory history).
    ///
    /// # Errors
    /// `TooManyRooms` when the limit is reached and every room has members.
    pub(crate) fn room(&self, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let mut st = self.lock();
        if let Some(room) = st.rooms.get(name) {
            return Ok(Arc::clone(room));
        }
        if st.rooms.len() >= self.config.max_rooms {
            let idle = st
                .rooms
                .iter()
                .map(|(n, r)| (n, r.activity()))
                .filter(|(_, (members, _))| *members == 0)
                .min_by_key(|(_, (_, last))| *last)
                .map(|(n, _)| n.clone());
            match idle {
                Some(idle) => {
                    st.rooms.remove(&idle);
                }
                None => return Err(HubError::TooManyRooms),
            }
        }
        let room = Arc::new(Room::new(
            name.clone(),
            self.config.history,
            self.config.room_buffer,
        ));
        st.rooms.insert(name.clone(), Arc::clone(&room));
        Ok(room)
    }

    /// The room called `name` if it exists; never creates one.
    pub(crate) fn existing_room(&self, name: &RoomName) -> Option<Arc<Room>> {
        self.lock().rooms.get(name).cloned()
    }

    /// Rooms with at least one member, by name.
    pub(crate) fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.lock().rooms.values().cloned().collect();
        let mut list: Vec<RoomInfo> = rooms
            .iter()
            .map(|r| RoomInfo {
                name: r.name().to_string(),
                members: r.member_count(),
            })
            .filter(|r| r.members > 0)
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Sends a DM; returns the sender's copy (the recipient's went to its mailbox). A known
    /// id returns the stored original and delivers nothing.
    ///
    /// # Errors
    /// `NoSuchNick` when nobody has the nick `to`.
    pub(crate) fn dm(
        &self,
        session: Uuid,
        from: &Nick,
        to: &str,
        text: String,
        id: Option<Uuid>,
    ) -> Result<Arc<Event>, HubError> {
        let st = self.lock();
        let recipient = st.nicks.get(&nick_key(to)).ok_or(HubError::NoSuchNick)?;
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut ids = self.ids.lock();
        if let Some(original) = ids.get(&id) {
            return Ok(Arc::clone(original));
        }
        let event = Arc::new(Event::new(
            ServerMsg::Dm(DirectMessage {
                id,
                from: from.to_string(),
                to: recipient.nick.to_string(),
                text,
                ts: now_ms(),
            }),
            Some(session),
        ));
        ids.insert_dm(id, Arc::clone(&event), self.config.dm_history);
        drop(ids);
        if recipient.session != session {
            deliver(&recipient.mailbox, &event);
        }
        Ok(event)
    }
}

/// Puts an event in a session's mailbox without waiting.
fn deliver(mailbox: &Mailbox, event: &Arc<Event>) {
    if mailbox.deliver(Arc::clone(event)) == Err(Full) {
        // The recipient has not read its mailbox for a long time: it is a slow consumer,
        // and waiting for it would stall the sender; it loses this notice instead.
        warn!("mailbox full, notice dropped for a slow client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(config: Config) -> Hub {
        Hub::new(Arc::new(config))
    }

    fn nick(s: &str) -> Nick {
        Nick::parse(s).unwrap()
    }

    #[test]
    fn nicks_are_unique_without_regard_to_case() {
        let hub = hub(Config::default());
        let mailbox = Arc::new(Mailbox::new(4));
        hub.register(Uuid::new_v4(), &nick("Alice"), Arc::clone(&mailbox))
            .unwrap();
        assert_eq!(
            hub.register(Uuid::new_v4(), &nick("aLICE"), mailbox),
            Err(HubError::NickTaken)
        );
    }

    #[test]
    fn rename_notifies_each_room_mate_once() {
        let hub = hub(Config::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let a_box = Arc::new(Mailbox::new(4));
        let b_box = Arc::new(Mailbox::new(4));
        hub.register(a, &nick("a"), a_box).unwrap();
        hub.register(b, &nick("b"), Arc::clone(&b_box)).unwrap();
        let r1 = hub.room(&RoomName::parse("one").unwrap()).unwrap();
        let r2 = hub.room(&RoomName::parse("two").unwrap()).unwrap();
        for r in [&r1, &r2] {
            r.join(a, &nick("a"), None, 0);
            r.join(b, &nick("b"), None, 0);
        }
        hub.rename(a, &nick("a"), &nick("A2"), &[r1.clone(), r2.clone()])
            .unwrap();
        assert!(matches!(
            b_box.try_take().unwrap().msg,
            ServerMsg::NickChanged { .. }
        ));
        assert!(b_box.try_take().is_none(), "one notice, not one per room");
        assert_eq!(r1.members(), ["A2", "b"]);
    }

    #[test]
    fn room_limit_forgets_the_idlest_empty_room() {
        let hub = hub(Config {
            max_rooms: 2,
            ..Config::default()
        });
        let s = Uuid::new_v4();
        let busy = hub.room(&RoomName::parse("busy").unwrap()).unwrap();
        busy.join(s, &nick("a"), None, 0);
        hub.room(&RoomName::parse("empty").unwrap()).unwrap();
        hub.room(&RoomName::parse("third").unwrap()).unwrap();
        assert!(
            hub.existing_room(&RoomName::parse("empty").unwrap())
                .is_none()
        );
        let third = hub
            .existing_room(&RoomName::parse("third").unwrap())
            .unwrap();
        third.join(s, &nick("a"), None, 0);
        assert_eq!(
            hub.room(&RoomName::parse("fourth").unwrap()).unwrap_err(),
            HubError::TooManyRooms
        );
    }
}
