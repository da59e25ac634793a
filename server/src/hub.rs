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
use chat_shared::{DirectMessage, ErrorCode, Nick, RoomInfo, RoomName, ServerMsg};
use tracing::warn;
use uuid::Uuid;

use crate::Config;
use crate::event::{Event, Settled};
use crate::mailbox::{Full, Mailbox};
use crate::now_ms;
use crate::room::Room;
use crate::store::{Job, Record, RoomLoad, Store, Stored};

/// Why the hub refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HubError {
    NickTaken,
    NoSuchNick,
    TooManyRooms,
    /// The store cannot be read or is too far behind.
    StoreFailed,
}

/// Every retained message by id, so a resent message is recognised and answered with its
/// stored original instead of being delivered twice.
#[derive(Debug, Default)]
pub(crate) struct MessageIds(Mutex<IdIndex>);

#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    /// The event's [`Settled`](crate::event::Settled) state says whether it is durable yet.
    /// A resend of a message that is not durable yet gets no answer of its own: the
    /// original's acknowledgement, once durable, acknowledges both.
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

    pub(crate) fn insert(&mut self, id: Uuid, event: Arc<Event>) {
        self.by_id.insert(id, event);
    }

    pub(crate) fn remove(&mut self, id: &Uuid) {
        self.by_id.remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert_dm(&mut self, id: Uuid, event: Arc<Event>, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if self.dms.len() == capacity
            && let Some(old) = self.dms.pop_front()
        {
            self.by_id.remove(&old);
        }
        self.dms.push_back(id);
        self.insert(id, event);
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
    pub(crate) ids: Arc<MessageIds>,
    /// Durable history; `None` keeps history in the rooms' rings only.
    pub(crate) store: Option<Arc<dyn Store>>,
}

impl Hub {
    pub(crate) fn new(config: Arc<Config>, store: Option<Arc<dyn Store>>) -> Self {
        Self {
            config,
            state: Mutex::default(),
            ids: Arc::default(),
            store,
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

    /// The room called `name`, created if needed (with its stored tail and `seq`, read once,
    /// while the hub waits: a room is loaded once per run of the server). At the room limit,
    /// the least recently active empty room is forgotten to make space; with storage on it
    /// comes back from the store, without it its history is gone.
    ///
    /// # Errors
    /// `TooManyRooms` when the limit is reached and every room has members; `StoreFailed`
    /// when the store cannot be read.
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
                    if let Some(forgotten) = st.rooms.remove(&idle) {
                        forgotten.forget_ids(&self.ids);
                    }
                }
                None => return Err(HubError::TooManyRooms),
            }
        }
        let load = match &self.store {
            Some(store) => store
                .load_room(name.as_str(), self.config.history)
                .map_err(|e| {
                    warn!(room = %name, error = %e, "cannot load a room from the store");
                    HubError::StoreFailed
                })?,
            None => RoomLoad::default(),
        };
        let room = Arc::new(Room::new(
            name.clone(),
            &self.config,
            self.store.clone(),
            load,
            &self.ids,
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

    /// Sends a DM. Both copies (recipient's and sender's) go to mailboxes once the DM is
    /// durable; a known id gets the stored original, for the sender alone.
    ///
    /// # Errors
    /// `NoSuchNick` when nobody has the nick `to`; `StoreFailed` when the store is too far
    /// behind to take it.
    pub(crate) fn dm(
        &self,
        session: Uuid,
        from: &Nick,
        sender: &Arc<Mailbox>,
        to: &str,
        text: String,
        id: Option<Uuid>,
    ) -> Result<(), HubError> {
        let st = self.lock();
        let recipient = st.nicks.get(&nick_key(to)).ok_or(HubError::NoSuchNick)?;
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut ids = self.ids.lock();
        if let Some(known) = ids.get(&id) {
            if known.settled() == Settled::Durable {
                deliver(sender, known);
            }
            return Ok(());
        }
        let dm = ServerMsg::Dm(DirectMessage {
            id,
            from: from.to_string(),
            to: recipient.nick.to_string(),
            text,
            ts: now_ms(),
        });
        // DMs are delivered only once durable (their rate is a person's, not a room's).
        let event = Arc::new(match self.store {
            Some(_) => Event::pending(dm, Some(session)),
            None => Event::new(dm, Some(session)),
        });
        let to_box = (recipient.session != session).then(|| Arc::clone(&recipient.mailbox));
        let capacity = self.config.dm_history;
        let Some(store) = &self.store else {
            ids.insert_dm(id, Arc::clone(&event), capacity);
            drop(ids);
            deliver_dm(&event, to_box.as_deref(), sender);
            return Ok(());
        };
        ids.insert_dm(id, Arc::clone(&event), capacity);
        drop(ids);
        drop(st);
        let hub_ids = Arc::clone(&self.ids);
        let sender = Arc::clone(sender);
        let job = Job {
            record: Record::Dm(Arc::clone(&event)),
            placed: None,
            done: Box::new(move |stored| match stored {
                Stored::New { .. } => {
                    event.settle(Settled::Durable);
                    deliver_dm(&event, to_box.as_deref(), &sender);
                }
                Stored::Duplicate(original) => {
                    event.settle(Settled::Failed);
                    hub_ids.lock().remove(&id);
                    deliver(&sender, &original);
                }
                Stored::Failed(reason) => {
                    event.settle(Settled::Failed);
                    hub_ids.lock().remove(&id);
                    deliver(&sender, &Arc::new(not_stored(&reason, id)));
                }
            }),
        };
        store.append(job).map_err(|_| {
            self.ids.lock().remove(&id);
            HubError::StoreFailed
        })
    }
}

/// The error a sender gets for a message the store could not keep.
pub(crate) fn not_stored(reason: &str, id: Uuid) -> Event {
    Event::new(
        ServerMsg::error(
            ErrorCode::Unavailable,
            format!("the message could not be stored and was not delivered: {reason}"),
            Some(id),
        ),
        None,
    )
}

/// Both copies of a DM: the recipient's (unless it is the sender) and the sender's.
fn deliver_dm(event: &Arc<Event>, recipient: Option<&Mailbox>, sender: &Mailbox) {
    if let Some(recipient) = recipient {
        deliver(recipient, event);
    }
    deliver(sender, event);
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
        Hub::new(Arc::new(config), None)
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
        let empty = hub.room(&RoomName::parse("empty").unwrap()).unwrap();
        empty.join(s, &nick("a"), None, 0);
        let mailbox = Arc::new(Mailbox::new(4));
        for text in ["x", "y"] {
            empty
                .post(&hub.ids, s, &mailbox, text.into(), None, false)
                .unwrap();
        }
        empty.part(s, None).unwrap();
        assert_eq!(hub.ids.lock().len(), 2);
        hub.room(&RoomName::parse("third").unwrap()).unwrap();
        assert_eq!(
            hub.ids.lock().len(),
            0,
            "a forgotten room's ids are forgotten too"
        );
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
