//! A room's ordered stream as this node holds it: the next `seq`, and the newest messages
//! (the cache in front of the store) from which joins and history pages are planned.
//!
//! Only the producer assigns `seq`, and only [`Room::apply`](super::Room::apply) puts a
//! message into the ring, so the ring is in `seq` order and is exactly what members were
//! shown. Joins and history pages are served from it, and only what is older comes from the
//! store (see [`Plan`]).

use std::collections::VecDeque;
use std::sync::Arc;

use chat_shared::{ChatMessage, ServerMsg};
use uuid::Uuid;

use super::ids::MessageIds;
use crate::event::{Event, Settled};
use crate::now_ms;
use crate::store::{Range, RoomLoad};

/// Most messages a `join` with an old `since` reads from the store (the frame limit cuts
/// what is sent further; `history` pages the rest).
const JOIN_FROM_STORE_MAX: usize = 500;

/// Most messages the ring holds past its capacity while the store has not settled them
/// (two of the SQLite writer's batches).
const UNSTORED_MAX: usize = 8192;

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
    /// Paging forwards from `after` (to `before`, if given) with an id not in memory: find
    /// their `seq`s in the store, then read from there (see [`RoomStream::forward_plan`]).
    After {
        after: Uuid,
        before: Option<Uuid>,
        limit: usize,
    },
}

impl Plan {
    /// Messages this plan already holds (a join sequence's weight in its sink).
    pub(crate) fn held(&self) -> &[ChatMessage] {
        match self {
            Self::Done { messages, .. } | Self::Read { messages, .. } => messages,
            Self::Find { .. } | Self::After { .. } => &[],
        }
    }
}

/// Why a history page cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no message {0} in this room")]
pub(crate) struct UnknownBefore(pub(crate) Uuid);

pub(crate) fn chat(ev: &Event) -> &ChatMessage {
    match &ev.msg {
        ServerMsg::Message(m) => m,
        // The ring is only ever given message events (see `Room::apply`).
        other => unreachable!("non-message event in history: {other:?}"),
    }
}

#[derive(Debug)]
pub(crate) struct RoomStream {
    /// Shown `message` events, oldest first, at most `capacity`.
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    pub(crate) next_seq: u64,
    /// The newest `seq` handed to the store to be placed by it (see `Room::post`).
    pub(crate) last_queued: u64,
    /// Older history can be read from a store.
    stored: bool,
    /// Messages older than this many milliseconds are not shown (retention by age).
    retain_ms: Option<i64>,
}

impl RoomStream {
    /// A stream resuming from what the store had (`load`); its ids join the id index.
    pub(crate) fn new(
        load: RoomLoad,
        capacity: usize,
        stored: bool,
        retain_ms: Option<i64>,
        ids: &MessageIds,
    ) -> Self {
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
            history,
            capacity,
            next_seq: load.next_seq.max(1),
            last_queued: 0,
            stored,
            retain_ms,
        }
    }

    /// The seq the ring starts at: where the store's part of the history ends.
    fn first_seq(&self) -> u64 {
        self.history.front().map_or(self.next_seq, |e| chat(e).seq)
    }

    /// The oldest `ts` retention by age still shows.
    fn cutoff(&self) -> i64 {
        self.retain_ms.map_or(i64::MIN, |ms| now_ms() - ms)
    }

    /// Messages of the ring in `range`, without those retention by age no longer keeps.
    fn snapshot(&self, range: std::ops::Range<usize>) -> Vec<ChatMessage> {
        let cutoff = self.cutoff();
        self.history
            .range(range)
            .map(|e| chat(e))
            .filter(|m| m.ts >= cutoff)
            .cloned()
            .collect()
    }

    /// Appends a shown message to the ring; when it is full, forgets the oldest ones (and
    /// their ids) that the store has settled (`stored`: the newest settled `seq`).
    ///
    /// A message is shown before the store's reader can see it (a replica, or a message
    /// placed before its commit). Were the ring to let it go first, a history page asked for
    /// meanwhile would skip it: newer than what the store returns, older than the ring. So
    /// the ring holds those past its capacity, up to [`UNSTORED_MAX`] more (a store that
    /// has stopped keeping up must not grow it without end).
    ///
    /// Returns whether it holds more than its capacity now: it is to be trimmed again once
    /// the store has settled more ([`RoomStream::trim`]).
    pub(crate) fn push(&mut self, ids: &MessageIds, event: Arc<Event>, stored: u64) -> bool {
        if self.capacity == 0 && !self.stored {
            ids.lock().remove(&chat(&event).id);
            return false;
        }
        self.history.push_back(event);
        self.trim(ids, stored)
    }

    /// Forgets the oldest messages past the capacity that the store has settled (all of
    /// them past [`UNSTORED_MAX`]); returns whether more than the capacity is left.
    pub(crate) fn trim(&mut self, ids: &MessageIds, stored: u64) -> bool {
        while self.history.len() > self.capacity {
            let settled = self.history.front().is_some_and(|e| chat(e).seq <= stored);
            if self.stored && !settled && self.history.len() <= self.capacity + UNSTORED_MAX {
                return true;
            }
            if let Some(old) = self.history.pop_front() {
                ids.lock().remove(&chat(&old).id);
            }
        }
        false
    }

    /// Takes a message that was never stored out of the ring: history keeps only what is.
    pub(crate) fn remove(&mut self, event: &Arc<Event>) {
        if let Some(at) = self.history.iter().rposition(|e| Arc::ptr_eq(e, event)) {
            self.history.remove(at);
        }
    }

    /// The stream goes on at `seq`, past `seq`s the ring does not hold: the room was loaded
    /// from a store still being filled behind the live stream (a new node's backfill), or
    /// loaded again before its newest replicas were written. The ring must hold consecutive
    /// messages (what is older than its first comes from the store), so it lets go of what
    /// it has, which the store holds or is writing: the store answers for those, and for
    /// the gap once filled.
    pub(crate) fn skip_to(&mut self, ids: &MessageIds, seq: u64) {
        if seq > self.next_seq && !self.history.is_empty() {
            self.forget_ids(ids);
            self.history.clear();
        }
    }

    /// Removes this room's cached messages from the id index: the room is being forgotten.
    pub(crate) fn forget_ids(&self, ids: &MessageIds) {
        let mut ids = ids.lock();
        for event in &self.history {
            ids.remove(&chat(event).id);
        }
    }

    /// The history a joiner gets: after `since`, or the newest `on_join`.
    pub(crate) fn join_plan(&self, since: Option<u64>, on_join: usize) -> Plan {
        let first = self.first_seq();
        let len = self.history.len();
        let (start, wanted_from_store) = match since {
            Some(since) => {
                let start = self.history.partition_point(|e| chat(e).seq <= since);
                let missing = first.saturating_sub(since.saturating_add(1));
                (start, usize::try_from(missing).unwrap_or(usize::MAX))
            }
            None => {
                let start = len.saturating_sub(on_join);
                (start, on_join - (len - start))
            }
        };
        let messages = self.snapshot(start..len);
        // Messages retention by age hides from the ring count as missing too.
        let hidden = len - start > messages.len();
        let older_exist = first > 1 || start > 0 || hidden;
        match since {
            _ if self.stored && wanted_from_store > 0 && first > 1 => Plan::Read {
                messages,
                range: Range {
                    after: since.unwrap_or(0),
                    before: first,
                    limit: wanted_from_store.min(JOIN_FROM_STORE_MAX) + 1,
                },
                since: since.is_some(),
            },
            Some(since) => Plan::Done {
                messages,
                // Without a store, what the ring lost is gone: say so.
                older: since.saturating_add(1) < first || hidden,
            },
            None => Plan::Done {
                messages,
                older: older_exist,
            },
        }
    }

    /// Up to `limit` messages older than `before` (default: the newest), oldest first.
    ///
    /// # Errors
    /// [`UnknownBefore`] when `before` is not a message of this room (in memory, and there
    /// is no store to look in).
    pub(crate) fn history_plan(
        &self,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Plan, UnknownBefore> {
        let end = match before {
            Some(id) => match self.history.iter().position(|e| chat(e).id == id) {
                Some(end) => end,
                None if self.stored => return Ok(Plan::Find { before: id, limit }),
                None => return Err(UnknownBefore(id)),
            },
            None => self.history.len(),
        };
        let start = end.saturating_sub(limit);
        let messages = self.snapshot(start..end);
        let first = self.first_seq();
        let wanted = limit - messages.len();
        if self.stored && wanted > 0 && first > 1 {
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

    /// Up to `limit` messages newer than `after`, the oldest first; with `before`, only
    /// those between the two, in whichever order the two come, and when more than `limit`
    /// lie between, the ones nearest `after` (IRC's `CHATHISTORY BETWEEN` counts from its
    /// first reference, forwards or backwards).
    ///
    /// # Errors
    /// [`UnknownBefore`] when either id is not a message of this room (and there is no
    /// store to look in).
    pub(crate) fn forward_plan(
        &self,
        after: Uuid,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Plan, UnknownBefore> {
        let find = |id: Uuid| self.history.iter().position(|e| chat(e).id == id);
        let in_store = Plan::After {
            after,
            before,
            limit,
        };
        let from = match find(after) {
            Some(at) => at,
            None if self.stored => return Ok(in_store),
            None => return Err(UnknownBefore(after)),
        };
        let to = match before.map(|id| (id, find(id))) {
            None => None,
            Some((_, Some(at))) => Some(at),
            Some(_) if self.stored => return Ok(in_store),
            Some((id, None)) => return Err(UnknownBefore(id)),
        };
        let range = match to {
            // Backwards from `after`: the newest of those between.
            Some(to) if to < from => (from - limit.min(from - to - 1))..from,
            _ => {
                let end = to.unwrap_or(self.history.len());
                let start = (from + 1).min(end);
                start..end.min(start.saturating_add(limit))
            }
        };
        let between = match to {
            Some(to) => to.abs_diff(from).saturating_sub(1),
            None => self.history.len() - from - 1,
        };
        let more = between > range.len();
        Ok(Plan::Done {
            messages: self.snapshot(range),
            older: more,
        })
    }

    /// The newest message in the ring that `nick` sent and that is not durable yet: seeing
    /// it would acknowledge it (a client reconnecting after a send), so a page holding it
    /// waits until it is settled.
    pub(crate) fn unsettled_by(&self, nick: &str) -> Option<Arc<Event>> {
        // Messages settle in seq order, so the unsettled ones are the newest.
        self.history
            .iter()
            .rev()
            .take_while(|e| e.settled() == Settled::Pending)
            .find(|e| same_nick(&chat(e).from, nick))
            .cloned()
    }
}

/// Whether two nicks are the same person's (nicks are unique without regard to case). Cheap
/// for ASCII nicks: it runs for every pending message a framed session is handed.
pub(crate) fn same_nick(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    !(a.is_ascii() && b.is_ascii())
        && chat_shared::validate::nick_key(a) == chat_shared::validate::nick_key(b)
}
