//! Local delivery: the consumer end of a room's ordered path on this node. It knows the
//! room's members here and hands each of them every event, in the order the path applies
//! them, by pushing one shared `Arc<Event>` into each member's [`Sink`]. It never waits: a
//! member over its budget drops the event (and hears of it with `lagged`), nobody else is
//! held up.
//!
//! It also keeps the sessions waiting for a message to become durable (a sender holding its
//! own acknowledgement, a page of history holding it), and pokes them when the path applies
//! that message's durability: nobody polls.

use std::collections::HashMap;
use std::sync::Arc;

use chat_shared::Nick;
use uuid::Uuid;

use super::sink::Sink;
use crate::event::Event;

/// A member of the room on this node.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) nick: Nick,
    pub(crate) sink: Arc<Sink>,
}

#[derive(Debug, Default)]
pub(crate) struct LocalDelivery {
    members: HashMap<Uuid, Member>,
    /// Sessions waiting for a message of this room to settle; poked (and forgotten) at the
    /// next settling, when they look again.
    waiting: Vec<Arc<Sink>>,
}

impl LocalDelivery {
    /// Hands `event` to every member.
    pub(crate) fn deliver(&self, event: &Arc<Event>) {
        for member in self.members.values() {
            // Dropped means over budget: the sink counts it and reports the gap.
            let _ = member.sink.push(event);
        }
    }

    /// Adds (or replaces) a member.
    pub(crate) fn add(&mut self, session: Uuid, member: Member) {
        self.members.insert(session, member);
    }

    pub(crate) fn remove(&mut self, session: Uuid) -> Option<Member> {
        self.members.remove(&session)
    }

    pub(crate) fn get(&self, session: Uuid) -> Option<&Member> {
        self.members.get(&session)
    }

    pub(crate) fn rename(&mut self, session: Uuid, nick: &Nick) {
        if let Some(m) = self.members.get_mut(&session) {
            m.nick = nick.clone();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Every member's session and sink.
    pub(crate) fn sinks(&self) -> impl Iterator<Item = (Uuid, &Arc<Sink>)> {
        self.members.iter().map(|(id, m)| (*id, &m.sink))
    }

    /// Members' nicks, in the order people expect (without regard to case).
    pub(crate) fn nicks(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.members.values().map(|m| m.nick.to_string()).collect();
        nicks.sort_by_cached_key(|n| chat_shared::validate::nick_key(n));
        nicks
    }

    /// Remembers a session to poke at the next settling.
    pub(crate) fn wait(&mut self, sink: &Arc<Sink>) {
        if !self.waiting.iter().any(|s| Arc::ptr_eq(s, sink)) {
            self.waiting.push(Arc::clone(sink));
        }
    }

    /// How many sessions wait.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A message settled: every waiting session looks again.
    pub(crate) fn settled(&mut self) {
        for sink in self.waiting.drain(..) {
            sink.poke();
        }
    }
}
