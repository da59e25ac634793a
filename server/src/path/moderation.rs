//! Moderation requests on a room's path.
//!
//! Each request is checked against the room's state under its lock, by the rules in
//! `moderation::room`, and becomes a notice posted on the room's path like a message
//! (`Room::post_notice`): it takes the next `seq`, is stored, and reaches every member in
//! order with the messages around it. What it changes (a role, the topic, the modes, a
//! membership) changes when the path applies it ([`Room::take_effect`]), so the room's
//! state is the one its stream describes. Bans change at once: they are not events of the
//! stream. So do invitations on one node; in cluster mode an invitation is remembered when
//! the cluster's stream delivers it, on every node (`Room::stream_invite`).
//!
//! Each request that took effect logs its audit line (`ops::audit`) here, once the room's
//! lock is released: every wire mode's moderation comes through these functions.

use std::net::IpAddr;
use std::sync::Arc;

use chat_shared::{ModeChange, Nick, Role, RoomNotice, ServerMsg};
use uuid::Uuid;

use super::producer::PostError;
use super::sink::Sink;
use super::{Room, RoomState};
use crate::moderation::ModError;
use crate::moderation::room::{Actor, RoomModeration};
use crate::now_ms;
use crate::ops::audit::{self, Action};

/// Which role change an op asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleChange {
    Op,
    Deop,
    Voice,
    Devoice,
}

/// What a request did, when it did nothing the room sees.
pub(crate) type Unchanged = Option<String>;

/// What the room knows of a nick to ban that is not a member: whether it is a registered
/// account, and, for an online guest, its address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Absent {
    pub(crate) account: bool,
    pub(crate) ip: Option<IpAddr>,
}

fn actor(st: &RoomState, session: Uuid) -> Result<(Actor, Nick), PostError> {
    let m = st.delivery.get(session).ok_or(PostError::NotMember)?;
    Ok((
        Actor {
            role: m.role,
            admin: m.admin,
        },
        m.nick.clone(),
    ))
}

impl Room {
    fn not_here(&self, nick: &Nick) -> PostError {
        ModError::NotHere {
            nick: nick.to_string(),
            room: self.name.clone(),
        }
        .into()
    }

    /// Applies a notice the path delivered: memberships and roles here, then the room's
    /// settings (persisted when they changed).
    pub(super) fn take_effect(&self, st: &mut RoomState, notice: &RoomNotice, by: &str, ts: i64) {
        let account = match notice {
            RoomNotice::Kicked { nick, .. } => {
                // Each kicked session sees its own `kicked` and forgets the room then (on
                // its own node, which applies this notice as every node does).
                st.delivery.remove_nick(nick);
                let key = chat_shared::validate::name_skeleton(nick);
                st.remote.retain(|_, m| m.nick.skeleton() != key);
                false
            }
            RoomNotice::Role { nick, role, .. } => {
                let key = chat_shared::validate::name_skeleton(nick);
                let mut account = false;
                for m in st.remote.values_mut().filter(|m| m.nick.skeleton() == key) {
                    m.role = *role;
                    account |= m.account;
                }
                st.delivery.set_role(nick, *role) | account
            }
            RoomNotice::Topic { .. } | RoomNotice::Mode(_) => false,
        };
        if st.moderation.apply(notice, by, ts, account) {
            self.persist(st);
        }
    }

    pub(crate) fn set_topic(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        text: String,
    ) -> Result<(), PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        st.moderation.check_topic(&self.name, actor, &text)?;
        let detail = if text.is_empty() { "cleared" } else { "set" };
        self.post_notice(&mut st, session, sender, RoomNotice::Topic { text })?;
        drop(st);
        self.audit(session, &by, Action::Topic, "-", detail);
        Ok(())
    }

    /// The audit line of an action in this room.
    fn audit(&self, session: Uuid, by: &Nick, action: Action, target: &str, detail: &str) {
        audit::moderation(
            session,
            by.as_str(),
            action,
            Some(self.name.as_str()),
            target,
            detail,
        );
    }

    pub(crate) fn set_role(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        nick: &Nick,
        change: RoleChange,
    ) -> Result<Unchanged, PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        let (target, member) = st.find(nick).ok_or_else(|| self.not_here(nick))?;
        let (current, nick) = (member.role, member.nick.to_string());
        let own = target == session;
        // Anything but `op` aimed at an op is aimed at an equal or better, even when it
        // would change nothing (an op has no voice to take).
        if current.is_op() && change != RoleChange::Op && !own {
            RoomModeration::check_remove(&self.name, actor, current)?;
        }
        let to = match (change, current) {
            (RoleChange::Op, _) => Role::Op,
            (RoleChange::Deop, c) if c.is_op() => Role::Member,
            (RoleChange::Voice, c) if !c.is_op() => Role::Voice,
            (RoleChange::Devoice, Role::Voice) => Role::Member,
            _ => current,
        };
        if !RoomModeration::check_role(&self.name, actor, current, to, own)? {
            return Ok(Some(format!(
                "{nick} is {} in #{} already",
                role_name(current),
                self.name
            )));
        }
        self.post_notice(
            &mut st,
            session,
            sender,
            RoomNotice::Role {
                nick: nick.clone(),
                role: to,
                was: Some(current),
            },
        )?;
        drop(st);
        let action = match change {
            RoleChange::Op => Action::Op,
            RoleChange::Deop => Action::Deop,
            RoleChange::Voice => Action::Voice,
            RoleChange::Devoice => Action::Devoice,
        };
        self.audit(session, &by, action, &nick, "");
        Ok(None)
    }

    /// Hands the room over to `nick`; the old owner stays an op.
    pub(crate) fn hand_over(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        nick: &Nick,
    ) -> Result<Unchanged, PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        let (_, member) = st.find(nick).ok_or_else(|| self.not_here(nick))?;
        let (new, account, current) = (member.nick.to_string(), member.account, member.role);
        RoomModeration::check_owner(&self.name, actor, &new, account)?;
        if current == Role::Owner {
            return Ok(Some(format!("{new} owns #{} already", self.name)));
        }
        let old = st.moderation.owner().map(str::to_owned);
        let role = RoomNotice::Role {
            nick: new.clone(),
            role: Role::Owner,
            was: Some(current),
        };
        self.post_notice(&mut st, session, sender, role)?;
        if let Some(old) = old {
            let role = RoomNotice::Role {
                nick: old,
                role: Role::Op,
                was: Some(Role::Owner),
            };
            self.post_notice(&mut st, session, sender, role)?;
        }
        drop(st);
        self.audit(session, &by, Action::Owner, &new, "");
        Ok(None)
    }

    pub(crate) fn kick(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        nick: &Nick,
        reason: String,
    ) -> Result<(), PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        let (_, member) = st.find(nick).ok_or_else(|| self.not_here(nick))?;
        RoomModeration::check_remove(&self.name, actor, member.role)?;
        let nick = member.nick.to_string();
        let kicked = RoomNotice::Kicked {
            nick: nick.clone(),
            reason,
        };
        self.post_notice(&mut st, session, sender, kicked)?;
        drop(st);
        self.audit(session, &by, Action::Kick, &nick, "");
        Ok(())
    }

    /// Bans `nick` (kicking it if it is here); answers the room's bans.
    pub(crate) fn ban(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        nick: &Nick,
        absent: Absent,
    ) -> Result<ServerMsg, PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        let present = st
            .delivery
            .find(nick)
            .map(|(_, m)| (m.nick.to_string(), m.role, m.account, m.ip));
        let (name, role, account, ip) = present.clone().unwrap_or_else(|| {
            let role = st.moderation.kept_role(nick.as_str(), absent.account);
            let ip = absent.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            (nick.to_string(), role, absent.account, ip)
        });
        RoomModeration::check_remove(&self.name, actor, role)?;
        let ip = (present.is_some() || absent.ip.is_some()).then_some(ip);
        st.moderation
            .ban(&self.name, &name, account, ip, by.as_str(), now_ms())?;
        self.persist(&st);
        let detail = match (present.is_some(), account) {
            (true, true) => "account, kicked",
            (true, false) => "guest and address, kicked",
            (false, true) => "account",
            (false, false) if ip.is_some() => "guest and address",
            (false, false) => "guest",
        };
        if present.is_some() {
            let kick = RoomNotice::Kicked {
                nick: name.clone(),
                reason: "banned".into(),
            };
            self.post_notice(&mut st, session, sender, kick)?;
        }
        let list = st.moderation.ban_list(&self.name);
        drop(st);
        self.audit(session, &by, Action::Ban, &name, detail);
        Ok(list)
    }

    pub(crate) fn unban(&self, session: Uuid, nick: &Nick) -> Result<ServerMsg, PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        RoomModeration::check_remove(&self.name, actor, Role::Member)?;
        st.moderation.unban(&self.name, nick.as_str())?;
        self.persist(&st);
        let list = st.moderation.ban_list(&self.name);
        drop(st);
        self.audit(session, &by, Action::Unban, nick.as_str(), "");
        Ok(list)
    }

    pub(crate) fn bans(&self, session: Uuid) -> Result<ServerMsg, PostError> {
        let st = self.lock();
        actor(&st, session)?;
        Ok(st.moderation.ban_list(&self.name))
    }

    /// Changes the modes. A request naming no mode asks for them: it is answered with all
    /// of them; one that changes nothing is answered with nothing (as IRC does).
    pub(crate) fn set_modes(
        self: &Arc<Self>,
        session: Uuid,
        sender: &Arc<Sink>,
        change: &ModeChange,
    ) -> Result<Option<ServerMsg>, PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        if change.is_empty() {
            return Ok(Some(st.moderation.modes_event(&self.name)));
        }
        let change = st.moderation.check_mode(&self.name, actor, change)?;
        if change.is_empty() {
            return Ok(None);
        }
        let summary = audit::mode_summary(&change);
        self.post_notice(&mut st, session, sender, RoomNotice::Mode(change))?;
        drop(st);
        self.audit(session, &by, Action::Mode, "-", &summary);
        Ok(None)
    }

    /// Lets `nick` in once past invite-only and the key. In cluster mode this only checks:
    /// the invitation is remembered when the stream delivers it.
    pub(crate) fn invite(&self, session: Uuid, nick: &Nick) -> Result<(), PostError> {
        let mut st = self.lock();
        let (actor, by) = actor(&st, session)?;
        if let Some((_, m)) = st.find(nick) {
            return Err(ModError::AlreadyHere(m.nick.to_string(), self.name.clone()).into());
        }
        if self.producer.is_some() {
            st.moderation.check_invite(&self.name, actor)?;
        } else {
            st.moderation.invite(&self.name, actor, nick)?;
        }
        drop(st);
        self.audit(session, &by, Action::Invite, nick.as_str(), "");
        Ok(())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "the owner",
        Role::Op => "an op",
        Role::Voice => "voiced",
        Role::Member => "a member",
    }
}
