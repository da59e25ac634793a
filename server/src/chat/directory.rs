//! The nick directory: which session holds which nick, and the DMs (and, in cluster mode,
//! invitations and replacements) routed by it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chat_shared::validate::name_skeleton;
use chat_shared::{ByeReason, DirectMessage, Nick, RoomName, ServerMsg};
use tracing::warn;
use uuid::Uuid;

use super::{Chat, ChatError, lock};
use crate::event::{Event, Settled};
use crate::now_ms;
use crate::path::durability::deliver_dm;
use crate::path::producer::{InFlight, Said};
use crate::path::sink::{Ending, Sink};
use crate::path::{Invitation, Room};
use crate::store::{Job, Record};

#[derive(Debug)]
pub(super) struct Entry {
    session: Uuid,
    nick: Nick,
    sink: Arc<Sink>,
    /// Where the session is connected from (for bans).
    peer: IpAddr,
    /// Away, with why (`away`).
    away: Option<Box<str>>,
}

impl Entry {
    pub(super) fn session(&self) -> Uuid {
        self.session
    }

    pub(super) fn nick(&self) -> &Nick {
        &self.nick
    }
}

/// Someone online, as moderation needs them.
#[derive(Debug, Clone)]
pub(crate) struct Online {
    pub(crate) session: Uuid,
    pub(crate) nick: Nick,
    pub(crate) sink: Arc<Sink>,
    pub(crate) peer: IpAddr,
}

impl Chat {
    /// Claims `nick` for `session`.
    ///
    /// # Errors
    /// [`ChatError::NickTaken`] when someone holds it, in any case;
    /// [`ChatError::NickLooksLike`] when someone holds a nick it imitates.
    pub(crate) fn register(
        &self,
        session: Uuid,
        nick: &Nick,
        sink: &Arc<Sink>,
        peer: IpAddr,
    ) -> Result<(), ChatError> {
        let mut nicks = lock(&self.nicks);
        let key = nick.skeleton();
        if let Some(holder) = nicks.get(&key) {
            return Err(taken(nick, &holder.nick));
        }
        nicks.insert(
            key,
            Entry {
                session,
                nick: nick.clone(),
                sink: Arc::clone(sink),
                peer,
                away: None,
            },
        );
        Ok(())
    }

    /// Who holds `nick` (or a nick it looks like), if anyone.
    pub(crate) fn online(&self, nick: &str) -> Option<Online> {
        lock(&self.nicks).get(&name_skeleton(nick)).map(|e| Online {
            session: e.session,
            nick: e.nick.clone(),
            sink: Arc::clone(&e.sink),
            peer: e.peer,
        })
    }

    /// The session holding `nick` (or a nick it looks like) and its sink, if anyone does.
    pub(crate) fn holder(&self, nick: &str) -> Option<(Uuid, Arc<Sink>)> {
        lock(&self.nicks)
            .get(&name_skeleton(nick))
            .map(|e| (e.session, Arc::clone(&e.sink)))
    }

    /// Who of `nicks` is online (the holder's nick, whether it is away and why), in the
    /// order asked.
    pub(crate) fn lookup(&self, nicks: &[String]) -> Vec<(Nick, Option<Box<str>>)> {
        let held = lock(&self.nicks);
        nicks
            .iter()
            .filter_map(|n| {
                let key = name_skeleton(n);
                match held.get(&key) {
                    Some(e) => Some((e.nick.clone(), e.away.clone())),
                    // On another node (cluster mode); its away text stays there.
                    None => self
                        .peers
                        .as_ref()?
                        .holder(&key)
                        .map(|(nick, _)| (nick, None)),
                }
            })
            .collect()
    }

    /// Marks `session` away with `text` (or back, without) and tells its room-mates with
    /// an `away` event, which is returned for the session itself.
    pub(crate) fn set_away(
        &self,
        session: Uuid,
        nick: &Nick,
        text: Option<Box<str>>,
        rooms: &[Arc<Room>],
    ) -> Arc<Event> {
        if let Some(entry) = lock(&self.nicks)
            .get_mut(&nick.skeleton())
            .filter(|e| e.session == session)
        {
            entry.away = text.clone();
        }
        let mates = rooms.iter().flat_map(|room| room.sinks());
        let away = ServerMsg::Away {
            nick: nick.to_string(),
            text: text.map(String::from),
        };
        tell_mates(session, mates, away)
    }

    /// `session` logged in to the account of `nick` (which it holds) after connecting: its
    /// rooms learn it (roles persist from now on), and its room-mates, once each, get an
    /// `account_changed` event, which is returned for the session itself.
    pub(crate) fn logged_in(&self, session: Uuid, nick: &Nick, rooms: &[Arc<Room>]) -> Arc<Event> {
        let mates = rooms
            .iter()
            .flat_map(|room| room.rename(session, nick, true, now_ms()));
        tell_mates(session, mates, account_changed(nick, true))
    }

    /// Everyone online for whom `hit` holds (a server ban's matches).
    pub(crate) fn online_where(&self, hit: impl Fn(IpAddr, &Nick) -> bool) -> Vec<Online> {
        lock(&self.nicks)
            .values()
            .filter(|e| hit(e.peer, &e.nick))
            .map(|e| Online {
                session: e.session,
                nick: e.nick.clone(),
                sink: Arc::clone(&e.sink),
                peer: e.peer,
            })
            .collect()
    }

    /// Gives `nick` to `session`, which logged in to its account, whoever holds it now (or
    /// a look-alike of it); the holder's session is told it was replaced and ends.
    pub(crate) fn take_over(&self, session: Uuid, nick: &Nick, sink: &Arc<Sink>, peer: IpAddr) {
        let entry = Entry {
            session,
            nick: nick.clone(),
            sink: Arc::clone(sink),
            peer,
            away: None,
        };
        let old = lock(&self.nicks).insert(nick.skeleton(), entry);
        if let Some(old) = old.filter(|old| old.session != session) {
            replaced(&old.sink);
        }
    }

    /// Releases `nick` if `session` holds it.
    pub(crate) fn unregister(&self, session: Uuid, nick: &Nick) {
        let mut nicks = lock(&self.nicks);
        let key = nick.skeleton();
        if nicks.get(&key).is_some_and(|e| e.session == session) {
            nicks.remove(&key);
        }
        if let Some(peers) = &self.peers {
            peers.release(nick, session);
        }
    }

    /// Renames `session` in the directory and in `rooms`, and tells everyone who shares a
    /// room with it, once each however many rooms they share. `account`: whether it is
    /// logged in to the account of `new` afterwards; when that differs from `was`, the
    /// same people also get an `account_changed` event. Returns the events for the renamed
    /// client itself.
    ///
    /// # Errors
    /// [`ChatError::NickTaken`] or [`ChatError::NickLooksLike`] when another session holds
    /// `new` or a nick it imitates (a change of case or of look-alike letters of one's own
    /// nick is allowed).
    pub(crate) fn rename(
        &self,
        session: Uuid,
        old: &Nick,
        new: &Nick,
        rooms: &[Arc<Room>],
        login: (bool, bool),
    ) -> Result<Vec<Arc<Event>>, ChatError> {
        self.renamed(session, old, new, rooms, login, false)
    }

    /// Renames `session` onto the nick of the account it just logged in to (it was logged
    /// in before, or not: `was`), taking the nick from whoever holds it.
    ///
    /// # Errors
    /// As [`Chat::rename`], but never `NickTaken`.
    pub(crate) fn log_in_as(
        &self,
        session: Uuid,
        old: &Nick,
        new: &Nick,
        rooms: &[Arc<Room>],
        was: bool,
    ) -> Result<Vec<Arc<Event>>, ChatError> {
        self.renamed(session, old, new, rooms, (was, true), true)
    }

    fn renamed(
        &self,
        session: Uuid,
        old: &Nick,
        new: &Nick,
        rooms: &[Arc<Room>],
        (was, account): (bool, bool),
        take: bool,
    ) -> Result<Vec<Arc<Event>>, ChatError> {
        let mut nicks = lock(&self.nicks);
        let (old_key, new_key) = (old.skeleton(), new.skeleton());
        if let Some(holder) = nicks.get(&new_key).filter(|e| e.session != session) {
            if !take {
                return Err(taken(new, &holder.nick));
            }
            let holder = nicks
                .remove(&new_key)
                .expect("looked up under the same lock");
            replaced(&holder.sink);
        }
        let Some(mut entry) = nicks.remove(&old_key) else {
            // Not registered: a session bug, but refusing is safer than inventing a member.
            return Err(ChatError::NotRegistered);
        };
        entry.nick = new.clone();
        nicks.insert(new_key, entry);
        drop(nicks);
        let ts = now_ms();
        let mates: HashMap<Uuid, Arc<Sink>> = rooms
            .iter()
            .flat_map(|room| room.rename(session, new, account, ts))
            .collect();
        let renamed = ServerMsg::NickChanged {
            old: old.to_string(),
            new: new.to_string(),
            ts,
        };
        let mut events = vec![tell_mates(session, mates.clone(), renamed)];
        if was != account {
            events.push(tell_mates(session, mates, account_changed(new, account)));
        }
        Ok(events)
    }

    /// Sends a DM from `from` (logged in to its account, or not). Both copies (recipient's and sender's) go to sinks once the DM is
    /// durable; a known id gets the stored original, for the sender alone.
    ///
    /// # Errors
    /// [`ChatError::NoSuchNick`] when nobody has the nick `to`; [`ChatError::StoreBusy`]
    /// when the store is too far behind to take it.
    pub(crate) fn dm(
        &self,
        session: Uuid,
        (from, account): (&Nick, bool),
        sender: &Arc<Sink>,
        to: &str,
        said: Said,
    ) -> Result<(), ChatError> {
        if let Some(peers) = &self.peers {
            return self.dm_via(peers.as_ref(), session, (from, account), sender, to, said);
        }
        let Said { text, id, file, .. } = said;
        let nicks = lock(&self.nicks);
        let recipient = nicks
            .get(&name_skeleton(to))
            .ok_or_else(|| ChatError::NoSuchNick(to.to_owned()))?;
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut ids = self.ids.lock();
        if answered(&ids, id, sender) {
            return Ok(());
        }
        let dm = ServerMsg::Dm(DirectMessage {
            id,
            from: from.to_string(),
            to: recipient.nick.to_string(),
            text,
            ts: now_ms(),
            file,
            account,
        });
        // DMs are delivered only once durable (their rate is a person's, not a room's).
        let event = Arc::new(match self.store {
            Some(_) => Event::pending(dm, Some(session)),
            None => Event::new(dm, Some(session)),
        });
        let to_sink = (recipient.session != session).then(|| Arc::clone(&recipient.sink));
        ids.insert_dm(id, Arc::clone(&event), self.config.dm_history);
        drop(ids);
        drop(nicks);
        let Some(store) = &self.store else {
            deliver_dm(&event, to_sink.as_deref(), sender);
            return Ok(());
        };
        let job = Job {
            record: Record::Dm(Arc::clone(&event)),
            place: false,
            ctx: InFlight::Dm {
                event,
                recipient: to_sink,
                sender: Arc::clone(sender),
            },
        };
        store.append(job).map_err(|_| {
            self.ids.lock().remove(&id);
            ChatError::StoreBusy
        })
    }
}

impl Chat {
    /// A DM in cluster mode: to whoever holds `to` on any node, through the stream.
    fn dm_via(
        &self,
        peers: &dyn super::Peers,
        session: Uuid,
        (from, account): (&Nick, bool),
        sender: &Arc<Sink>,
        to: &str,
        said: Said,
    ) -> Result<(), ChatError> {
        let (to_nick, to_session) = peers
            .holder(&name_skeleton(to))
            .ok_or_else(|| ChatError::NoSuchNick(to.to_owned()))?;
        let id = said.id.unwrap_or_else(Uuid::now_v7);
        let mut ids = self.ids.lock();
        if answered(&ids, id, sender) {
            return Ok(());
        }
        let event = Arc::new(Event::pending(
            ServerMsg::Dm(DirectMessage {
                id,
                from: from.to_string(),
                to: to_nick.to_string(),
                text: said.text,
                ts: now_ms(),
                file: said.file,
                account,
            }),
            Some(session),
        ));
        ids.insert_dm(id, Arc::clone(&event), self.config.dm_history);
        drop(ids);
        peers
            .dm(event, to_session, Arc::clone(sender))
            .inspect_err(|_| self.ids.lock().remove(&id))
    }

    /// A DM the cluster's stream delivered: to its recipient and its sender, if either is
    /// a session of this node.
    pub(crate) fn deliver_stream_dm(
        &self,
        event: &Arc<Event>,
        (from, from_session): (&str, Uuid),
        (to, to_session): (&str, Uuid),
    ) {
        if let ServerMsg::Dm(dm) = &event.msg {
            self.ids
                .lock()
                .insert_dm(dm.id, Arc::clone(event), self.config.dm_history);
        }
        let nicks = lock(&self.nicks);
        let local = |nick: &str, session: Uuid| {
            nicks
                .get(&name_skeleton(nick))
                .filter(|e| e.session == session)
                .map(|e| Arc::clone(&e.sink))
        };
        let recipient = local(to, to_session).filter(|_| to_session != from_session);
        let sender = local(from, from_session);
        drop(nicks);
        if let Some(recipient) = &recipient {
            let _ = recipient.push(event); // dropped only over budget: it hears `lagged`
        }
        if let Some(sender) = &sender {
            let _ = sender.push(event);
        }
    }

    /// An invitation the cluster's stream delivered: its room remembers it, and the
    /// invitee hears of it if it is a session of this node.
    pub(crate) fn deliver_stream_invite(&self, invitation: &Invitation) {
        let (Ok(name), Ok(nick)) = (
            RoomName::parse(&invitation.room),
            Nick::parse(&invitation.nick),
        ) else {
            return;
        };
        match self.room(&name) {
            Ok(room) => room.stream_invite(&nick),
            Err(e) => warn!(room = %name, error = %e, "a room of the cluster is not kept here"),
        }
        if let Some((_, invitee)) = self
            .holder(&invitation.nick)
            .filter(|(s, _)| *s == invitation.to)
        {
            let invited = Event::new(invitation.invited(), Some(invitation.from));
            let _ = invitee.push(&Arc::new(invited)); // dropped only over budget: it hears `lagged`
        }
    }

    /// Ends `session`'s connection if it holds `nick` here, as a login here would end it:
    /// a login on some node wants the nick (cluster mode). Its leaving frees the claim.
    pub(crate) fn end_replaced(&self, nick: &str, session: Uuid) {
        if let Some((_, sink)) = self.holder(nick).filter(|(s, _)| *s == session) {
            replaced(&sink);
        }
    }
}

impl Chat {
    /// Ends every session here that a server ban catches now, but `spared` (the admin who
    /// set it); each is told the ban's reason.
    pub(crate) fn end_server_banned(&self, spared: Option<&Arc<Sink>>) {
        let bans = &self.moderation.server_bans;
        for caught in self
            .online_where(|peer, nick| bans.matches(peer, nick.as_str()).is_some())
            .into_iter()
            .filter(|o| !spared.is_some_and(|s| Arc::ptr_eq(&o.sink, s)))
        {
            let reason = bans
                .matches(caught.peer, caught.nick.as_str())
                .unwrap_or_default();
            let message = if reason.is_empty() {
                "you are banned from this server".to_owned()
            } else {
                format!("you are banned from this server: {reason}")
            };
            caught.sink.end(Ending {
                reason: ByeReason::Banned,
                message,
                part_reason: Some("banned".into()),
            });
        }
    }
}

/// Whether the DM `id` is known already: a resend, answered with the original once that is
/// durable (until then its acknowledgement answers both).
fn answered(ids: &crate::path::ids::IdIndex, id: Uuid, sender: &Sink) -> bool {
    let Some(known) = ids.get(&id) else {
        return false;
    };
    if known.settled() == Settled::Durable {
        let _ = sender.push(known); // dropped only over budget: the client resends
    }
    true
}

/// Hands `msg`, about `session`, to each of `mates` once (however many rooms it is
/// listed for) but `session` itself, for which the event is returned.
fn tell_mates(
    session: Uuid,
    mates: impl IntoIterator<Item = (Uuid, Arc<Sink>)>,
    msg: ServerMsg,
) -> Arc<Event> {
    let mut mates: HashMap<Uuid, Arc<Sink>> = mates.into_iter().collect();
    mates.remove(&session);
    let event = Arc::new(Event::new(msg, Some(session)));
    for sink in mates.values() {
        // Dropped only for a mate over its budget, which hears of its gap.
        let _ = sink.push(&event);
    }
    event
}

fn account_changed(nick: &Nick, account: bool) -> ServerMsg {
    ServerMsg::AccountChanged {
        nick: nick.to_string(),
        account,
    }
}

/// Ends a session whose nick its account's owner took from another connection.
fn replaced(sink: &Sink) {
    sink.end(Ending {
        reason: ByeReason::Replaced,
        message: "your nick's account logged in from another connection".into(),
        part_reason: None,
    });
}

/// `nick` refused because `holder` is online: the same nick, or one it looks like.
fn taken(nick: &Nick, holder: &Nick) -> ChatError {
    if nick.key() == holder.key() {
        ChatError::NickTaken(nick.clone())
    } else {
        ChatError::NickLooksLike {
            nick: nick.clone(),
            online: holder.clone(),
        }
    }
}
