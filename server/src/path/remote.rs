//! Rooms whose producer is another process: the seam a cluster fills.
//!
//! With a [`RoomProducer`] (cluster mode) nothing takes effect when a session asks for it:
//! a message, a join or a part is handed to the producer, which appends it to the room's
//! stream, and what the stream delivers is applied here, in the stream's order, on every
//! node alike. The room's members on other nodes are kept in a [`Roster`] beside local
//! delivery, so `members` is the same everywhere; only local members have sinks.
//!
//! A join is applied when it comes back from the stream (so every node sees it at the same
//! place among the messages); meanwhile the joiner may already post (its messages go out
//! after its join on the same ordered path). A part takes effect for the leaver at once,
//! and for everyone else where the stream puts it.

use std::collections::HashMap;
use std::sync::Arc;

use chat_shared::{ChatMessage, Nick, Role, ServerMsg};
use uuid::Uuid;

use super::delivery::Member;
use super::producer::{InFlight, PostError};
use super::sink::Sink;
use super::{Room, RoomEvent, RoomState};
use crate::event::Event;
use crate::store::{Job, Record};

/// Appends a room's events to its shared stream. Implemented by the cluster; calls return
/// at once (the stream's answer comes back as events), and fail only when the stream cannot
/// be reached now.
pub(crate) trait RoomProducer: Send + Sync + std::fmt::Debug {
    /// A message (`seq` not assigned yet: the producer gives it its place). Its sender's
    /// copy is the one the stream delivers back; a failure is told to `sender`.
    ///
    /// # Errors
    /// [`PostError::Unavailable`] when the stream cannot be reached now.
    fn message(
        &self,
        room: &Arc<Room>,
        event: Arc<Event>,
        sender: Arc<Sink>,
    ) -> Result<(), PostError>;

    /// A member joining or leaving.
    ///
    /// # Errors
    /// [`PostError::Unavailable`] when the stream cannot be reached now.
    fn presence(&self, room: &Arc<Room>, change: Presence) -> Result<(), PostError>;
}

/// A change of a room's membership, as the stream carries it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Presence {
    Joined {
        session: Uuid,
        nick: String,
        role: Role,
        account: bool,
        ts: i64,
    },
    Parted {
        session: Uuid,
        nick: String,
        ts: i64,
        reason: Option<String>,
        quit: bool,
    },
    /// `ts` tells one rename from another: a member renamed in several rooms is told of
    /// it once (see the cluster's consumer).
    Renamed {
        session: Uuid,
        old: String,
        nick: String,
        account: bool,
        ts: i64,
    },
}

/// An invitation into a room, as the stream carries it (cluster mode): whom (`nick`,
/// session `to`) and by whom (`by`, session `from`), each on any node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Invitation {
    pub(crate) room: String,
    pub(crate) nick: String,
    pub(crate) to: Uuid,
    pub(crate) by: String,
    pub(crate) from: Uuid,
}

impl Invitation {
    /// What the invitee is told.
    pub(crate) fn invited(&self) -> ServerMsg {
        ServerMsg::Invited {
            room: self.room.clone(),
            by: self.by.clone(),
        }
    }
}

/// A member of the room on another node.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMember {
    pub(crate) nick: Nick,
    pub(crate) role: Role,
    /// Logged in to the account of `nick` (on its node).
    pub(crate) account: bool,
    /// The node holding its connection, and that node's run (a restarted node's old
    /// members are gone).
    pub(crate) node: Arc<str>,
    pub(crate) boot: Uuid,
}

/// The room's members on other nodes, by session.
pub(crate) type Roster = HashMap<Uuid, RemoteMember>;

/// A member, here or on another node, as moderation aims at it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) nick: Nick,
    pub(crate) role: Role,
    pub(crate) account: bool,
}

impl RoomState {
    /// The member holding `nick` (by skeleton), here or on another node.
    pub(crate) fn find(&self, nick: &Nick) -> Option<(Uuid, Target)> {
        if let Some((id, m)) = self.delivery.find(nick) {
            let target = Target {
                nick: m.nick.clone(),
                role: m.role,
                account: m.account,
            };
            return Some((id, target));
        }
        let key = nick.skeleton();
        self.remote
            .iter()
            .find(|(_, m)| m.nick.skeleton() == key)
            .map(|(id, m)| {
                let target = Target {
                    nick: m.nick.clone(),
                    role: m.role,
                    account: m.account,
                };
                (*id, target)
            })
    }
}

/// A local join waiting for the stream to deliver it.
#[derive(Debug)]
pub(crate) struct Joining {
    pub(crate) session: Uuid,
    pub(crate) member: Member,
    pub(crate) since: Option<u64>,
    pub(crate) on_join: usize,
}

/// Where a stream event came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) node: Arc<str>,
    pub(crate) boot: Uuid,
    /// From this very node (this run of it).
    pub(crate) local: bool,
}

impl Room {
    /// Hands a first join to the producer; its join sequence arrives when the stream
    /// delivers it.
    pub(super) fn join_via(
        self: &Arc<Self>,
        st: &mut RoomState,
        producer: &Arc<dyn RoomProducer>,
        joining: Joining,
        ts: i64,
    ) -> Result<(), PostError> {
        let m = &joining.member;
        let change = Presence::Joined {
            session: joining.session,
            nick: m.nick.to_string(),
            role: m.role,
            account: m.account,
            ts,
        };
        producer.presence(self, change)?;
        st.joining.insert(joining.session, joining);
        Ok(())
    }

    /// A message the stream delivered: shown to local members, kept in the cache, and
    /// (with a store) in this node's replica of the stream, `replica` saying where.
    pub(crate) fn stream_message(
        &self,
        msg: ChatMessage,
        origin: Option<Uuid>,
        replica: Option<InFlight>,
    ) {
        let seq = msg.seq;
        let id = msg.id;
        let mut st = self.lock();
        if seq < st.stream.next_seq {
            // Seen already (a consumer restarted behind what it had applied).
            return;
        }
        st.stream.skip_to(&self.ids, seq);
        st.stream.next_seq = seq + 1;
        let event = Arc::new(Event::new(ServerMsg::Message(msg), origin).in_room(self.key()));
        self.ids.lock().insert(id, Arc::clone(&event));
        if let (Some(store), Some(ctx)) = (&self.store, replica) {
            let job = Job {
                record: Record::Message(Arc::clone(&event)),
                place: false,
                ctx,
            };
            if store.append(job).is_err() {
                tracing::warn!(room = %self.name, seq, "the store is too far behind: a message of the stream is not kept here");
            }
        }
        self.apply(&mut st, RoomEvent::Message(event));
    }

    /// A membership change the stream delivered. For a rename on another node, returns
    /// the local members to tell (the consumer tells each once, whatever the rooms).
    pub(crate) fn stream_presence(
        &self,
        change: Presence,
        from: &Origin,
    ) -> Vec<(Uuid, Arc<Sink>)> {
        let mut st = self.lock();
        st.last_active = crate::now_ms();
        match change {
            Presence::Joined {
                session,
                nick,
                role,
                account,
                ts,
            } => {
                let event = Arc::new(Event::new(
                    ServerMsg::Joined {
                        room: self.name.to_string(),
                        nick: nick.clone(),
                        ts,
                        role: (role != Role::Member).then_some(role),
                        account,
                    },
                    Some(session),
                ));
                if from.local {
                    if let Some(j) = st.joining.remove(&session) {
                        self.apply(
                            &mut st,
                            RoomEvent::Joined {
                                session,
                                member: j.member,
                                event,
                                since: j.since,
                                on_join: j.on_join,
                            },
                        );
                    }
                    // Else the joiner left before its join came back: its part follows.
                    return Vec::new();
                }
                let Ok(nick) = Nick::parse(&nick) else {
                    return Vec::new();
                };
                // An invitation is used once, cluster-wide: the joiner's node used it
                // when it let the joiner in, every other node drops it here.
                st.moderation.uninvite(&nick.skeleton());
                let fresh = st
                    .remote
                    .insert(
                        session,
                        RemoteMember {
                            nick,
                            role,
                            account,
                            node: Arc::clone(&from.node),
                            boot: from.boot,
                        },
                    )
                    .is_none();
                if fresh {
                    let queued = st.delivery.deliver(&event);
                    self.counters.deliveries.inc_by(queued);
                }
            }
            Presence::Parted {
                session,
                nick,
                ts,
                reason,
                quit,
            } => {
                if st.remote.remove(&session).is_none() && !from.local {
                    return Vec::new();
                }
                st.joining.remove(&session);
                let event = Arc::new(Event::new(
                    ServerMsg::Parted {
                        room: self.name.to_string(),
                        nick,
                        ts,
                        reason,
                        quit,
                    },
                    Some(session),
                ));
                let queued = st.delivery.deliver(&event);
                self.counters.deliveries.inc_by(queued);
            }
            Presence::Renamed { session, nick, .. } => {
                if let (Some(m), Ok(nick)) = (st.remote.get_mut(&session), Nick::parse(&nick)) {
                    m.nick = nick;
                    return st
                        .delivery
                        .sinks()
                        .map(|(id, sink)| (id, Arc::clone(sink)))
                        .collect();
                }
            }
        }
        Vec::new()
    }

    /// A node is gone (or restarted: `keep` is its new run): its members here leave, and
    /// local members are told as for a quit. Returns whether anyone left.
    pub(crate) fn node_gone(&self, node: &str, keep: Option<Uuid>) -> bool {
        let mut st = self.lock();
        let gone: Vec<(Uuid, Nick)> = st
            .remote
            .iter()
            .filter(|(_, m)| &*m.node == node && Some(m.boot) != keep)
            .map(|(id, m)| (*id, m.nick.clone()))
            .collect();
        let ts = crate::now_ms();
        for (session, nick) in &gone {
            st.remote.remove(session);
            let event = Arc::new(Event::new(
                ServerMsg::Parted {
                    room: self.name.to_string(),
                    nick: nick.to_string(),
                    ts,
                    reason: Some("node lost".into()),
                    quit: true,
                },
                Some(*session),
            ));
            st.delivery.deliver(&event);
        }
        !gone.is_empty()
    }

    /// The nodes (and their runs) holding members of this room, for the lease sweep.
    pub(crate) fn remote_nodes(&self) -> Vec<(Arc<str>, Uuid)> {
        let st = self.lock();
        let mut nodes: Vec<(Arc<str>, Uuid)> = st
            .remote
            .values()
            .map(|m| (Arc::clone(&m.node), m.boot))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The room's settings as another node wrote them (cluster mode): bans, modes, keys
    /// and roles hold here too from now on.
    pub(crate) fn adopt_settings(&self, settings: crate::moderation::room::Settings) {
        self.lock().moderation.replace_settings(settings);
    }

    /// An invitation the stream delivered: remembered here until the invitee joins.
    pub(crate) fn stream_invite(&self, nick: &Nick) {
        self.lock().moderation.remember_invite(nick.skeleton());
    }

    /// Forgets the id of a message that never made it to the stream (a resend may try
    /// again).
    pub(crate) fn forget_pending(&self, id: Uuid) {
        let mut ids = self.ids.lock();
        if ids
            .get(&id)
            .is_some_and(|e| e.settled() == crate::event::Settled::Pending)
        {
            ids.remove(&id);
        }
    }
}
