//! The in-process producer: turns a posted message into the room's next event.
//!
//! Under the room's lock it checks the sender is a member and the id is new, assigns the
//! `seq`, and hands the message to the store. Without a store the message is shown at once.
//! With one it is shown before it is durable, as soon as a crash could no longer give its
//! `seq` to another message, and in `seq` order: at once for an id the server made up or
//! one the store certainly does not have, or, for a client's id the store may have (a
//! resend of a message stored long ago, or a false positive of its filter), when the store
//! has checked and written it; its sender's copy waits for the `Settled` event (see
//! `session/inbox.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chat_shared::{ChatMessage, FileInfo, RoomNotice, ServerMsg};
use uuid::Uuid;

use super::sink::Sink;
use super::{Room, RoomEvent, RoomState, chat};
use crate::event::{Event, Settled};
use crate::moderation::ModError;
use crate::now_ms;
use crate::store::{Busy, Job, Record, Stored};

/// What a store job carries back to the path in its outcomes.
#[derive(Debug, Clone)]
pub(crate) enum InFlight {
    Message {
        room: Arc<Room>,
        event: Arc<Event>,
        sender: Arc<Sink>,
    },
    Dm {
        event: Arc<Event>,
        /// `None` for a DM to oneself (the sender's copy is the only one).
        recipient: Option<Arc<Sink>>,
        sender: Arc<Sink>,
    },
    /// Cluster mode: a message the stream delivered, kept in this node's store as its
    /// replica of the stream (for history older than the cache, and restarts). Once it
    /// is stored, `replicated` rises to its stream sequence, and its room's history cache
    /// may let it go.
    Replica {
        stream_seq: u64,
        replicated: Arc<std::sync::atomic::AtomicU64>,
        room: Arc<Room>,
        seq: u64,
    },
    /// Cluster mode: an older message of the stream, read by a new node's backfill and
    /// kept in its store only (never shown: its room's seq and cache are the live
    /// consumer's).
    Backfill {
        stream_seq: u64,
        progress: Arc<Backfilled>,
    },
}

/// How far a backfill of this node's replica has got (see `cluster/backfill.rs`): what the
/// store has settled of it, which the backfill saves and `/metrics` shows.
#[derive(Debug, Default)]
pub(crate) struct Backfilled {
    /// Appended and not settled yet: the backfill keeps this small, so the live replica's
    /// messages (which are dropped when the store is busy) always find room in the queue.
    pub(crate) queued: std::sync::atomic::AtomicU64,
    /// Settled: kept as new, found stored already, or not kept.
    pub(crate) kept: std::sync::atomic::AtomicU64,
    pub(crate) there: std::sync::atomic::AtomicU64,
    pub(crate) failed: std::sync::atomic::AtomicU64,
    /// The newest stream sequence settled; settled in append order, so every message
    /// before it is settled too.
    pub(crate) upto: std::sync::atomic::AtomicU64,
}

/// What someone says: a room message or a DM before the server gives it its place.
#[derive(Debug, Default)]
pub(crate) struct Said {
    /// Cleaned text.
    pub(crate) text: String,
    /// The client's id for it (`None`: the server makes one).
    pub(crate) id: Option<Uuid>,
    /// An action (`/me`).
    pub(crate) action: bool,
    /// The file it shares.
    pub(crate) file: Option<Box<FileInfo>>,
}

impl Said {
    /// Plain text, with the client's id if it gave one.
    pub(crate) fn text(text: String, id: Option<Uuid>) -> Self {
        Self {
            text,
            id,
            ..Self::default()
        }
    }
}

/// The outcome of posting a message.
#[derive(Debug)]
pub(crate) enum Posted {
    /// On its way: shown to the room now or once the store has taken it; the sender's copy
    /// comes through its own sink, held back until durable.
    New,
    /// The id is known and durable: the stored original, for the sender alone.
    Duplicate(Arc<Event>),
    /// The id is known and not durable yet: its acknowledgement will answer both.
    Pending,
}

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PostError {
    #[error("not a member of the room")]
    NotMember,
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The room's rules refuse it (a moderated room, a moderation request's rules).
    #[error(transparent)]
    Refused(#[from] ModError),
    /// The room's stream cannot be reached (cluster mode: NATS is down).
    #[error("the cluster cannot be reached: {0}")]
    Unavailable(String),
}

impl Room {
    /// Takes a message: assigns its `seq`, shows it (see the module's doc for when) and
    /// stores it. A known id is not taken again.
    ///
    /// # Errors
    /// [`PostError::NotMember`] when `session` is not a member; [`PostError::Busy`] when the
    /// store is too far behind (the message was not taken).
    pub(crate) fn post(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        said: Said,
    ) -> Result<Posted, PostError> {
        let mut st = self.lock();
        let member = st
            .delivery
            .get(session)
            .or_else(|| st.joining.get(&session).map(|j| &j.member))
            .ok_or(PostError::NotMember)?;
        if st.moderation.moderated() && !member.role.may_speak_moderated() && !member.admin {
            return Err(ModError::Moderated(self.name.clone()).into());
        }
        let from = (member.nick.to_string(), member.account);
        self.post_locked(&mut st, session, sender, from, said, None)
    }

    /// Takes a moderation notice from `session` onto the room's path, like a message: it
    /// gets the next `seq`, is stored and kept in history, and takes effect when applied.
    /// Called with the room's lock held, right after the request was checked against the
    /// same state.
    pub(super) fn post_notice(
        self: &Arc<Self>,
        st: &mut RoomState,
        session: Uuid,
        sender: &Arc<Sink>,
        notice: RoomNotice,
    ) -> Result<(), PostError> {
        let member = st.delivery.get(session).ok_or(PostError::NotMember)?;
        let by = (member.nick.to_string(), member.account);
        let text = notice.describe(&by.0);
        self.post_locked(
            st,
            session,
            sender,
            by,
            Said::text(text, None),
            Some(notice),
        )
        .map(|_| ())
    }

    /// Posts what `from` (the member `session`: its nick, and whether it is logged in to
    /// its account) said or did, under the room's lock.
    fn post_locked(
        self: &Arc<Self>,
        st: &mut RoomState,
        session: Uuid,
        sender: &Arc<Sink>,
        (from, account): (String, bool),
        said: Said,
        event: Option<RoomNotice>,
    ) -> Result<Posted, PostError> {
        let Said {
            text,
            id,
            action,
            file,
        } = said;
        let accepted = std::time::Instant::now();
        let fresh_id = id.is_none();
        let id = id.unwrap_or_else(Uuid::now_v7);
        let mut index = self.ids.lock();
        if let Some(known) = index.get(&id) {
            return Ok(match known.settled() {
                Settled::Durable => Posted::Duplicate(Arc::clone(known)),
                Settled::Pending | Settled::Failed => Posted::Pending,
            });
        }
        let msg = ChatMessage {
            id,
            room: self.name.to_string(),
            seq: st.stream.next_seq,
            from,
            text,
            ts: now_ms(),
            action,
            event,
            file,
            account,
        };
        if let Some(producer) = &self.producer {
            // The stream gives it its seq; its sender's copy comes back from the stream.
            let event = Arc::new(
                Event::pending(ServerMsg::Message(msg), Some(session)).in_room(self.key()),
            );
            index.insert(id, Arc::clone(&event));
            drop(index);
            sender.unsettled_add();
            if let Err(e) = producer.message(self, event, Arc::clone(sender)) {
                sender.unsettled_sub();
                self.ids.lock().remove(&id);
                return Err(e);
            }
            return Ok(Posted::New);
        }
        // Used from here on, whatever becomes of the message: a seq is never reused.
        st.stream.next_seq += 1;
        let Some(store) = &self.store else {
            let event =
                Arc::new(Event::new(ServerMsg::Message(msg), Some(session)).in_room(self.key()));
            index.insert(id, Arc::clone(&event));
            drop(index);
            self.apply(st, RoomEvent::Message(event));
            self.delivered(accepted.elapsed());
            return Ok(Posted::New);
        };
        let seq = msg.seq;
        let event =
            Arc::new(Event::pending(ServerMsg::Message(msg), Some(session)).in_room(self.key()));
        index.insert(id, Arc::clone(&event));
        drop(index);
        // When to show it, before it is durable either way:
        // - an id the server made up cannot be a resend: at once, if its seq is reserved on
        //   disk and nothing queued before it is still waiting to be placed (order);
        // - an id from the client may be a resend of a message stored long ago: at once too
        //   if the store certainly has no such id (nearly always), else shown when the
        //   store has looked it up and reports it placed.
        let at_once = (fresh_id || !store.may_have(&id))
            && seq < self.covered.load(Ordering::Acquire)
            && self.resolved.load(Ordering::Acquire) >= st.stream.last_queued;
        let job = Job {
            record: Record::Message(Arc::clone(&event)),
            place: !at_once,
            ctx: InFlight::Message {
                room: Arc::clone(self),
                event: Arc::clone(&event),
                sender: Arc::clone(sender),
            },
        };
        // Queued under the room lock, so the store sees this room's messages in seq order
        // and reports them in that order.
        sender.unsettled_add();
        if let Err(busy) = store.append(job) {
            sender.unsettled_sub();
            self.ids.lock().remove(&id);
            return Err(busy.into());
        }
        if at_once {
            self.apply(st, RoomEvent::Message(event));
            self.delivered(accepted.elapsed());
        } else {
            st.stream.last_queued = seq;
        }
        Ok(Posted::New)
    }

    /// The store placed a message (written, its `seq` reserved): show it.
    pub(crate) fn placed(&self, event: Arc<Event>) {
        let (seq, ts) = (chat(&event).seq, chat(&event).ts);
        let mut st = self.lock();
        self.resolved.fetch_max(seq, Ordering::AcqRel);
        self.apply(&mut st, RoomEvent::Message(event));
        drop(st);
        // Accepted before the store looked it up: only its `ts` (ms) tells when.
        let waited = u64::try_from(crate::now_ms().saturating_sub(ts)).unwrap_or(0);
        self.delivered(std::time::Duration::from_millis(waited));
    }

    /// A message accepted `elapsed` ago is now queued for its last local recipient.
    fn delivered(&self, elapsed: std::time::Duration) {
        self.counters
            .delivery_seconds
            .0
            .observe(elapsed.as_secs_f64());
    }

    /// The store settled this room's messages up to `seq`: the history cache may let them
    /// go (see `RoomStream::push`). Called in the store's order, so never for less than
    /// before. It takes the room's lock only when the cache is over its capacity.
    pub(crate) fn stored(&self, seq: u64) {
        self.stored.fetch_max(seq, Ordering::SeqCst);
        if self.over.swap(false, Ordering::SeqCst) {
            let mut st = self.lock();
            // Under the lock: the newest settled, whoever stored it.
            let stored = self.stored.load(Ordering::SeqCst);
            if st.stream.trim(&self.ids, stored) {
                self.over.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The store's verdict on a message. A new one was shown before this; its sender's copy
    /// waits for the `Settled` event applied here.
    pub(crate) fn settle(&self, event: Arc<Event>, stored: Stored, sender: &Sink) {
        let ChatMessage { id, seq, .. } = *chat(&event);
        sender.unsettled_sub();
        // Placed or never to be: either way no longer in the way of later messages.
        self.resolved.fetch_max(seq, Ordering::AcqRel);
        self.stored(seq);
        match stored {
            Stored::New { covered } => {
                self.covered.fetch_max(covered, Ordering::AcqRel);
                event.settle(Settled::Durable);
            }
            Stored::Duplicate(original) => {
                // Stored long ago (before a restart), so never shown: this resend's seq is
                // skipped, and the sender alone gets the original.
                event.settle(Settled::Failed);
                self.ids.lock().remove(&id);
                let _ = sender.push(&original); // dropped only over budget: the client resends
            }
            Stored::Failed(reason) => {
                event.settle(Settled::Failed);
                self.ids.lock().remove(&id);
                // Whoever was shown it already keeps it; the history cache does not.
                let _ = sender.push(&Arc::new(super::durability::not_stored(&reason, id)));
            }
        }
        // A durable message nobody waits on changes nothing in the room: no lock for it.
        if event.settled() == Settled::Failed || self.has_waiters() {
            let mut st = self.lock();
            self.apply(&mut st, RoomEvent::Settled(event));
        }
    }
}
