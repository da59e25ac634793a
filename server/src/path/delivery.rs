//! Local delivery: the consumer end of a room's ordered path on this node. It knows the
//! room's members here and hands each of them every event, in the order the path applies
//! them, by pushing a share of one `Arc<Event>` into each member's [`Sink`] (see `fan.rs`:
//! counted once for all of them, not once per member). It never waits: a
//! member over its budget drops the event (and hears of it with `lagged`), nobody else is
//! held up.
//!
//! It also keeps the sessions waiting for a message to become durable (a sender holding its
//! own acknowledgement, a page of history holding it), and pokes them when the path applies
//! that message's durability: nobody polls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chat_shared::{Nick, Role};
use uuid::Uuid;

use super::fan::FanOut;
use super::sink::Sink;
use crate::event::Event;

/// A member of the room on this node.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) nick: Nick,
    pub(crate) sink: Arc<Sink>,
    /// The member's role here; a guest's ends with its membership.
    pub(crate) role: Role,
    /// Logged in to the account of `nick`: its role persists.
    pub(crate) account: bool,
    /// A server admin: acts as an op here.
    pub(crate) admin: bool,
    /// Where it is connected from: a guest's ban holds it.
    pub(crate) ip: IpAddr,
}

/// A room's members as `members` reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MemberList {
    pub(crate) nicks: Vec<String>,
    pub(crate) ops: Vec<String>,
    pub(crate) voiced: Vec<String>,
    pub(crate) owner: Option<String>,
}

impl MemberList {
    /// The list of these members (nick, role), each list sorted as people expect (without
    /// regard to case).
    pub(crate) fn of<'a>(members: impl Iterator<Item = (&'a str, Role)>) -> Self {
        let mut all: Vec<(&str, Role)> = members.collect();
        all.sort_by_cached_key(|(n, _)| chat_shared::validate::nick_key(n));
        let mut list = Self {
            nicks: all.iter().map(|(n, _)| (*n).to_owned()).collect(),
            ..Self::default()
        };
        for (nick, role) in all {
            match role {
                Role::Owner => {
                    list.owner = Some(nick.to_owned());
                    list.ops.push(nick.to_owned());
                }
                Role::Op => list.ops.push(nick.to_owned()),
                Role::Voice => list.voiced.push(nick.to_owned()),
                Role::Member => {}
            }
        }
        list
    }
}

#[derive(Debug, Default)]
pub(crate) struct LocalDelivery {
    members: HashMap<Uuid, Member>,
    /// Sessions waiting for a message of this room to settle; poked (and forgotten) at the
    /// next settling, when they look again.
    waiting: Vec<Arc<Sink>>,
}

impl LocalDelivery {
    /// Hands `event` to every member; returns how many queued it (the others were over
    /// their budget: their sinks count it and report the gap).
    pub(crate) fn deliver(&self, event: &Arc<Event>) -> u64 {
        let mut fan = FanOut::new(event, self.members.len());
        let mut queued = 0;
        for member in self.members.values() {
            let pushed = member.sink.push_shared(event, &mut fan);
            queued += u64::from(pushed == super::sink::Pushed::Queued);
        }
        queued
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

    /// A member's new nick, and whether it is logged in to its account (renaming away from
    /// an account's nick leaves the account; `register` logs in to it).
    pub(crate) fn rename(&mut self, session: Uuid, nick: &Nick, account: bool) {
        if let Some(m) = self.members.get_mut(&session) {
            m.nick = nick.clone();
            m.account = account;
        }
    }

    /// The member holding `nick` (compared as nicks are: by skeleton).
    pub(crate) fn find(&self, nick: &Nick) -> Option<(Uuid, &Member)> {
        let key = nick.skeleton();
        self.members
            .iter()
            .find(|(_, m)| m.nick.skeleton() == key)
            .map(|(id, m)| (*id, m))
    }

    /// Sets the role of the members holding `nick`; true when one of them is logged in
    /// to its account (the role then persists).
    pub(crate) fn set_role(&mut self, nick: &str, role: Role) -> bool {
        let key = chat_shared::validate::name_skeleton(nick);
        let mut account = false;
        for m in self
            .members
            .values_mut()
            .filter(|m| m.nick.skeleton() == key)
        {
            m.role = role;
            account |= m.account;
        }
        account
    }

    /// Removes the members holding `nick`, returning their sessions.
    pub(crate) fn remove_nick(&mut self, nick: &str) -> Vec<Uuid> {
        let key = chat_shared::validate::name_skeleton(nick);
        let gone: Vec<Uuid> = self
            .members
            .iter()
            .filter(|(_, m)| m.nick.skeleton() == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        gone
    }

    /// The members here.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Every member's session and sink.
    pub(crate) fn sinks(&self) -> impl Iterator<Item = (Uuid, &Arc<Sink>)> {
        self.members.iter().map(|(id, m)| (*id, &m.sink))
    }

    /// Members' nicks, in the order people expect (without regard to case).
    #[cfg(test)]
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
