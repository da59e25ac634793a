//! The message-id index: every retained message by id, so a resent message is recognised
//! and answered with its stored original instead of being delivered twice. It is a property
//! of the ordered path (a JetStream stream de-duplicates by `Nats-Msg-Id` the same way),
//! consulted by the producer before a message gets a `seq`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::event::Event;

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

    pub(crate) fn insert_dm(&mut self, id: Uuid, event: Arc<Event>, capacity: usize) {
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
