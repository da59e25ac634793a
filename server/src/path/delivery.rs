//! Local delivery: the consumer end of a room's ordered path on this node. It knows the
//! room's members here and hands each of them every event, in the order the path applies
//! them, by appending it once to the room's [`Feed`], which each member reads at its own
//! position (see `feed.rs`); a member's [`Sink`] is told only when it has nothing of the
//! room queued already. It never waits: a member more than its budget behind misses the
//! oldest of what it did not read (and hears of it with `lagged`), nobody else is held up.
//!
//! It also keeps the sessions waiting for a message to become durable (a sender holding its
//! own acknowledgement, a page of history holding it), and pokes them when the path applies
//! that message's durability: nobody polls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chat_shared::{Nick, Role};
use uuid::Uuid;

use super::feed::{Feed, Sub};
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

#[derive(Debug)]
pub(crate) struct LocalDelivery {
    feed: Arc<Feed>,
    members: HashMap<Uuid, Reader>,
    /// Members that left and have not read up to where they left yet: their position
    /// still holds the feed.
    leaving: Vec<Arc<Sub>>,
    /// Sessions waiting for a message of this room to settle; poked (and forgotten) at the
    /// next settling, when they look again.
    waiting: Vec<Arc<Sink>>,
}

/// A member and its reading of the feed.
#[derive(Debug)]
struct Reader {
    member: Member,
    sub: Arc<Sub>,
}

impl LocalDelivery {
    /// The delivery of room `room`, whose members fall behind past `budget` bytes.
    pub(crate) fn new(room: &str, budget: usize) -> Self {
        Self {
            feed: Arc::new(Feed::new(room.to_owned(), budget)),
            members: HashMap::new(),
            leaving: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Hands `event` to every member: appended once, and a member's sink told only if
    /// nothing of the room is queued there. Returns how many members it is for.
    pub(crate) fn deliver(&mut self, event: &Arc<Event>) -> u64 {
        let readers = self.members.len() + self.leaving.iter().filter(|s| !s.done()).count();
        if self.feed.append(event, readers) {
            self.trim();
        }
        Feed::appended();
        for r in self.members.values() {
            if r.sub.wants_marker() {
                r.member.sink.push_feed(Arc::clone(&r.sub));
            }
        }
        self.members.len() as u64
    }

    /// Lets the feed go of what every reader is past (see `Feed::trim`).
    fn trim(&mut self) {
        self.leaving
            .retain(|sub| !sub.done() && Arc::strong_count(sub) > 1);
        let slowest = self
            .members
            .values()
            .map(|r| &r.sub)
            .chain(&self.leaving)
            .map(|sub| sub.index())
            .min();
        self.feed.trim(slowest);
    }

    /// Adds (or replaces) a member; it reads what comes from now on. One joining again
    /// reads what came before up to here, then its join sequence, then what comes after,
    /// as the order of its sink has it.
    pub(crate) fn add(&mut self, session: Uuid, member: Member) {
        let sub = Arc::new(Sub::new(&self.feed, self.feed.end()));
        if let Some(old) = self.members.insert(session, Reader { member, sub }) {
            self.left(old);
        }
    }

    pub(crate) fn remove(&mut self, session: Uuid) -> Option<Member> {
        let r = self.members.remove(&session)?;
        Some(self.left(r))
    }

    /// A member left: it still reads what came before (its own `parted`, its `kicked`).
    fn left(&mut self, r: Reader) -> Member {
        r.sub.finish(self.feed.end().index);
        if !r.sub.done() {
            self.leaving.push(r.sub);
        }
        r.member
    }

    pub(crate) fn get(&self, session: Uuid) -> Option<&Member> {
        self.members.get(&session).map(|r| &r.member)
    }

    /// A member's new nick, and whether it is logged in to its account (renaming away from
    /// an account's nick leaves the account; `register` logs in to it).
    pub(crate) fn rename(&mut self, session: Uuid, nick: &Nick, account: bool) {
        if let Some(r) = self.members.get_mut(&session) {
            r.member.nick = nick.clone();
            r.member.account = account;
        }
    }

    /// The member holding `nick` (compared as nicks are: by skeleton).
    pub(crate) fn find(&self, nick: &Nick) -> Option<(Uuid, &Member)> {
        let key = nick.skeleton();
        self.members
            .iter()
            .find(|(_, r)| r.member.nick.skeleton() == key)
            .map(|(id, r)| (*id, &r.member))
    }

    /// Sets the role of the members holding `nick`; true when one of them is logged in
    /// to its account (the role then persists).
    pub(crate) fn set_role(&mut self, nick: &str, role: Role) -> bool {
        let key = chat_shared::validate::name_skeleton(nick);
        let mut account = false;
        for m in self
            .members
            .values_mut()
            .map(|r| &mut r.member)
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
            .filter(|(_, r)| r.member.nick.skeleton() == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.remove(*id);
        }
        gone
    }

    /// The members here.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values().map(|r| &r.member)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Each member with what it has not read of the feed yet.
    pub(crate) fn backlogs(&self) -> impl Iterator<Item = (Uuid, usize)> {
        let weight = self.feed.weight();
        self.members
            .iter()
            .map(move |(id, r)| (*id, r.sub.behind(weight)))
    }

    /// Every member's session and sink.
    pub(crate) fn sinks(&self) -> impl Iterator<Item = (Uuid, &Arc<Sink>)> {
        self.members.iter().map(|(id, r)| (*id, &r.member.sink))
    }

    /// Members' nicks, in the order people expect (without regard to case).
    #[cfg(test)]
    pub(crate) fn nicks(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.members().map(|m| m.nick.to_string()).collect();
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
