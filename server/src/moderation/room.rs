//! One room's moderation state and its rules.
//!
//! [`Settings`] is what persists, one JSON document per room (`room/<skeleton>` in the
//! settings store): the owner, the roles of registered accounts, the topic, the modes and
//! the bans. Guests' roles are not here: they live on their membership and end with it.
//! Invitations are kept in memory only, bounded.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use chat_shared::validate::name_skeleton;
use chat_shared::{BanEntry, ModeChange, Nick, Role, RoomName, RoomNotice, ServerMsg};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ModError;

/// A registered account named in a room's document: the nick as registered, and its
/// skeleton (the key accounts are found by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    nick: String,
    skeleton: String,
}

impl Account {
    fn of(nick: &str) -> Self {
        Self {
            nick: nick.to_owned(),
            skeleton: name_skeleton(nick),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Topic {
    text: String,
    by: String,
    ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Modes {
    invite_only: bool,
    key: Option<String>,
    moderated: bool,
    topic_locked: bool,
    secret: bool,
    /// Who changed them last (empty: nobody), and when.
    by: String,
    ts: i64,
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            invite_only: false,
            key: None,
            moderated: false,
            // New rooms are topic-locked: a stranger cannot deface a room's topic.
            topic_locked: true,
            secret: false,
            by: String::new(),
            ts: 0,
        }
    }
}

/// One ban. An account's ban is its nick's; a guest's is its nick's and the address it
/// was connected from (which is never shown to anyone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ban {
    nick: String,
    skeleton: String,
    account: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    by: String,
    ts: i64,
}

/// What a room keeps of moderation across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Settings {
    owner: Option<Account>,
    /// Registered accounts' roles below owner, by skeleton.
    roles: BTreeMap<String, (String, Role)>,
    topic: Option<Topic>,
    modes: Modes,
    bans: Vec<Ban>,
}

impl Settings {
    /// The settings store's key of a room's document.
    pub(crate) fn key(room: &RoomName) -> String {
        format!("room/{}", room.skeleton())
    }

    /// Reads a stored document; a damaged one is reported and the room starts afresh
    /// rather than not at all.
    pub(crate) fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// Who wants to join, as the room's rules see them.
#[derive(Debug)]
pub(crate) struct Joiner<'a> {
    pub(crate) session: Uuid,
    pub(crate) nick: &'a Nick,
    /// Logged in to the account of `nick`.
    pub(crate) account: bool,
    pub(crate) admin: bool,
    pub(crate) ip: IpAddr,
    pub(crate) key: Option<&'a str>,
}

/// Someone acting on the room: their role there, and whether they are a server admin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor {
    pub(crate) role: Role,
    pub(crate) admin: bool,
}

impl Actor {
    fn is_op(self) -> bool {
        self.admin || self.role.is_op()
    }

    /// May act on someone of `target`'s role: the owner (and admins) on anyone, an op on
    /// those below op.
    fn outranks(self, target: Role) -> bool {
        self.admin || self.role == Role::Owner || (self.role.is_op() && !target.is_op())
    }
}

/// A room's moderation: its settings, plus the invitations not used yet.
#[derive(Debug)]
pub(crate) struct RoomModeration {
    settings: Settings,
    /// Skeletons of invited nicks, oldest first.
    invites: VecDeque<String>,
    max_invites: usize,
    max_bans: usize,
    max_topic: usize,
}

/// The lobby everyone is put in is the server's: arriving first in it (after a restart,
/// anyone may) makes nobody its op or owner. Admins moderate it.
fn claimable(room: &RoomName) -> bool {
    room.as_str() != chat_shared::DEFAULT_ROOM
}

impl RoomModeration {
    pub(crate) fn new(settings: Settings, config: &crate::Config) -> Self {
        Self {
            settings,
            invites: VecDeque::new(),
            max_invites: config.max_invites.max(1),
            max_bans: config.max_bans,
            max_topic: config.max_topic,
        }
    }

    /// Takes the settings another node wrote (cluster mode); invitations are not settings
    /// (they come through the stream).
    pub(crate) fn replace_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The document to persist.
    pub(crate) fn document(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    pub(crate) fn moderated(&self) -> bool {
        self.settings.modes.moderated
    }

    pub(crate) fn secret(&self) -> bool {
        self.settings.modes.secret
    }

    /// Not open to anyone: secret, invite-only or keyed.
    pub(crate) fn closed(&self) -> bool {
        let m = &self.settings.modes;
        m.secret || m.invite_only || m.key.is_some()
    }

    /// The owner's nick, if the room has one.
    pub(crate) fn owner(&self) -> Option<&str> {
        self.settings.owner.as_ref().map(|o| o.nick.as_str())
    }

    /// The role an account has in this room, kept from before.
    fn account_role(&self, skeleton: &str) -> Option<Role> {
        if self
            .settings
            .owner
            .as_ref()
            .is_some_and(|o| o.skeleton == skeleton)
        {
            return Some(Role::Owner);
        }
        self.settings.roles.get(skeleton).map(|(_, r)| *r)
    }

    /// Lets `joiner` in, or says why not, and gives the role it joins with. `empty`: the
    /// room has no members. Returns whether the settings changed (a new owner) and must be
    /// persisted.
    ///
    /// # Errors
    /// [`ModError::Banned`], [`ModError::InviteOnly`], [`ModError::BadKey`].
    pub(crate) fn admit(
        &mut self,
        room: &RoomName,
        joiner: &Joiner<'_>,
        empty: bool,
    ) -> Result<(Role, bool), ModError> {
        let skeleton = joiner.nick.skeleton();
        let kept = joiner
            .account
            .then(|| self.account_role(&skeleton))
            .flatten();
        let privileged = joiner.admin || kept.is_some_and(Role::is_op);
        if !privileged && self.banned(&skeleton, joiner.ip) {
            return Err(ModError::Banned(room.clone()));
        }
        let invited = self.invites.iter().position(|s| *s == skeleton);
        let modes = &self.settings.modes;
        if !privileged && invited.is_none() {
            if modes.invite_only {
                return Err(ModError::InviteOnly(room.clone()));
            }
            if let Some(key) = &modes.key
                && joiner.key != Some(key.as_str())
            {
                return Err(ModError::BadKey(room.clone()));
            }
        }
        if let Some(at) = invited {
            self.invites.remove(at);
        }
        if let Some(role) = kept {
            return Ok((role, false));
        }
        if empty && self.settings.owner.is_none() && claimable(room) {
            if joiner.account {
                self.settings.owner = Some(Account::of(joiner.nick.as_str()));
                return Ok((Role::Owner, true));
            }
            return Ok((Role::Op, false));
        }
        Ok((Role::Member, false))
    }

    fn banned(&self, skeleton: &str, ip: IpAddr) -> bool {
        self.settings
            .bans
            .iter()
            .any(|b| b.skeleton == skeleton || b.ip == Some(ip))
    }

    /// Checks that `actor` may set the topic and that it fits.
    ///
    /// # Errors
    /// [`ModError::NotOp`] in a topic-locked room; [`ModError::TopicTooLong`].
    pub(crate) fn check_topic(
        &self,
        room: &RoomName,
        actor: Actor,
        text: &str,
    ) -> Result<(), ModError> {
        if self.settings.modes.topic_locked && !actor.is_op() {
            return Err(ModError::NotOp(room.clone()));
        }
        if text.len() > self.max_topic {
            return Err(ModError::TopicTooLong(self.max_topic));
        }
        Ok(())
    }

    /// Checks a role change of a member whose role is `current` to `to` (below owner), and
    /// says whether it changes anything. `own`: the actor acts on itself.
    ///
    /// # Errors
    /// [`ModError::NotOp`], [`ModError::NotOwner`].
    pub(crate) fn check_role(
        room: &RoomName,
        actor: Actor,
        current: Role,
        to: Role,
        own: bool,
    ) -> Result<bool, ModError> {
        if current == to {
            return Ok(false);
        }
        // Giving up one's own standing needs no one's leave.
        if own && to > current {
            return Ok(true);
        }
        if !actor.is_op() {
            return Err(ModError::NotOp(room.clone()));
        }
        if current == Role::Owner {
            return Err(ModError::NotOwner {
                room: room.clone(),
                what: "hand the room over",
            });
        }
        if current == Role::Op && !actor.outranks(current) {
            return Err(ModError::NotOwner {
                room: room.clone(),
                what: "demote an op",
            });
        }
        Ok(true)
    }

    /// Checks that `actor` may hand the room over.
    ///
    /// # Errors
    /// [`ModError::NotOwner`]; [`ModError::AccountRequired`] for a guest.
    pub(crate) fn check_owner(
        room: &RoomName,
        actor: Actor,
        nick: &str,
        account: bool,
    ) -> Result<(), ModError> {
        if !(actor.admin || actor.role == Role::Owner) {
            return Err(ModError::NotOwner {
                room: room.clone(),
                what: "hand the room over",
            });
        }
        if !account {
            return Err(ModError::AccountRequired(nick.to_owned()));
        }
        Ok(())
    }

    /// Checks that `actor` may remove (kick or ban) someone whose role is `target`.
    ///
    /// # Errors
    /// [`ModError::NotOp`], [`ModError::NotOwner`].
    pub(crate) fn check_remove(
        room: &RoomName,
        actor: Actor,
        target: Role,
    ) -> Result<(), ModError> {
        if !actor.is_op() {
            return Err(ModError::NotOp(room.clone()));
        }
        if !actor.outranks(target) {
            return Err(ModError::NotOwner {
                room: room.clone(),
                what: "act against an op",
            });
        }
        Ok(())
    }

    /// The role an absent nick has here, for the ban rules (only accounts keep one).
    pub(crate) fn kept_role(&self, nick: &str, account: bool) -> Role {
        if !account {
            return Role::Member;
        }
        self.account_role(&name_skeleton(nick))
            .unwrap_or(Role::Member)
    }

    /// Checks a mode change and keeps only what it changes.
    ///
    /// # Errors
    /// [`ModError::NotOp`]; [`ModError::KeyInvalid`] for a bad key.
    pub(crate) fn check_mode(
        &self,
        room: &RoomName,
        actor: Actor,
        change: &ModeChange,
    ) -> Result<ModeChange, ModError> {
        if !actor.is_op() {
            return Err(ModError::NotOp(room.clone()));
        }
        if let Some(Some(key)) = &change.key
            && (key.is_empty()
                || key.len() > 64
                || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ModError::KeyInvalid);
        }
        let m = &self.settings.modes;
        let differs = |new: Option<bool>, old: bool| new.filter(|n| *n != old);
        Ok(ModeChange {
            invite_only: differs(change.invite_only, m.invite_only),
            key: change.key.clone().filter(|k| *k != m.key),
            moderated: differs(change.moderated, m.moderated),
            topic_locked: differs(change.topic_locked, m.topic_locked),
            secret: differs(change.secret, m.secret),
        })
    }

    /// Checks that `actor` may invite, and remembers the invitation.
    ///
    /// # Errors
    /// [`ModError::NotOp`] in an invite-only room.
    pub(crate) fn invite(
        &mut self,
        room: &RoomName,
        actor: Actor,
        nick: &Nick,
    ) -> Result<(), ModError> {
        self.check_invite(room, actor)?;
        self.remember_invite(nick.skeleton());
        Ok(())
    }

    /// Checks that `actor` may invite (cluster mode: the invitation is remembered when
    /// the stream delivers it, on every node).
    ///
    /// # Errors
    /// [`ModError::NotOp`] in an invite-only room.
    pub(crate) fn check_invite(&self, room: &RoomName, actor: Actor) -> Result<(), ModError> {
        if self.settings.modes.invite_only && !actor.is_op() {
            return Err(ModError::NotOp(room.clone()));
        }
        Ok(())
    }

    /// Remembers an invitation of the nick with this skeleton (the oldest is forgotten at
    /// the limit).
    pub(crate) fn remember_invite(&mut self, skeleton: String) {
        if !self.invites.contains(&skeleton) {
            if self.invites.len() >= self.max_invites {
                self.invites.pop_front();
            }
            self.invites.push_back(skeleton);
        }
    }

    /// Forgets the invitation of the nick with this skeleton, if any (it joined).
    pub(crate) fn uninvite(&mut self, skeleton: &str) {
        self.invites.retain(|s| s != skeleton);
    }

    /// Bans `nick` (with `ip` for a guest).
    ///
    /// # Errors
    /// [`ModError::TooManyBans`].
    pub(crate) fn ban(
        &mut self,
        room: &RoomName,
        nick: &str,
        account: bool,
        ip: Option<IpAddr>,
        by: &str,
        ts: i64,
    ) -> Result<(), ModError> {
        let skeleton = name_skeleton(nick);
        let ip = if account { None } else { ip };
        if let Some(old) = self
            .settings
            .bans
            .iter_mut()
            .find(|b| b.skeleton == skeleton)
        {
            old.ip = ip.or(old.ip);
            return Ok(());
        }
        if self.settings.bans.len() >= self.max_bans {
            return Err(ModError::TooManyBans(room.clone(), self.max_bans));
        }
        self.settings.bans.push(Ban {
            nick: nick.to_owned(),
            skeleton,
            account,
            ip,
            by: by.to_owned(),
            ts,
        });
        Ok(())
    }

    /// Lifts the ban of `nick`.
    ///
    /// # Errors
    /// [`ModError::NotBanned`].
    pub(crate) fn unban(&mut self, room: &RoomName, nick: &str) -> Result<(), ModError> {
        let skeleton = name_skeleton(nick);
        let before = self.settings.bans.len();
        self.settings.bans.retain(|b| b.skeleton != skeleton);
        if self.settings.bans.len() == before {
            return Err(ModError::NotBanned {
                nick: nick.to_owned(),
                room: room.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn ban_list(&self, room: &RoomName) -> ServerMsg {
        ServerMsg::BanList {
            room: room.to_string(),
            bans: self
                .settings
                .bans
                .iter()
                .map(|b| BanEntry {
                    nick: b.nick.clone(),
                    by: b.by.clone(),
                    ts: b.ts,
                })
                .collect(),
        }
    }

    /// Applies a notice of the room's stream; `account` tells whether a member of that
    /// nick is logged in to its account (whose role then persists). Returns whether the
    /// settings changed.
    pub(crate) fn apply(&mut self, notice: &RoomNotice, by: &str, ts: i64, account: bool) -> bool {
        let s = &mut self.settings;
        match notice {
            RoomNotice::Topic { text } => {
                s.topic = (!text.is_empty()).then(|| Topic {
                    text: text.clone(),
                    by: by.to_owned(),
                    ts,
                });
                true
            }
            RoomNotice::Mode(change) => {
                let m = &mut s.modes;
                if let Some(v) = change.invite_only {
                    m.invite_only = v;
                }
                if let Some(k) = &change.key {
                    m.key.clone_from(k);
                }
                if let Some(v) = change.moderated {
                    m.moderated = v;
                }
                if let Some(v) = change.topic_locked {
                    m.topic_locked = v;
                }
                if let Some(v) = change.secret {
                    m.secret = v;
                }
                by.clone_into(&mut m.by);
                m.ts = ts;
                true
            }
            RoomNotice::Role { nick, role, .. } => {
                let skeleton = name_skeleton(nick);
                let was_owner = s.owner.as_ref().is_some_and(|o| o.skeleton == skeleton);
                match role {
                    Role::Owner if account => {
                        s.roles.remove(&skeleton);
                        // The old owner stays an op: the handover's second event says so.
                        if let Some(old) = s.owner.replace(Account::of(nick)) {
                            s.roles.insert(old.skeleton, (old.nick, Role::Op));
                        }
                        true
                    }
                    _ if was_owner => {
                        s.owner = None;
                        if *role != Role::Member {
                            s.roles.insert(skeleton, (nick.clone(), *role));
                        }
                        true
                    }
                    Role::Member => s.roles.remove(&skeleton).is_some(),
                    _ if account => {
                        s.roles.insert(skeleton, (nick.clone(), *role));
                        true
                    }
                    _ => false,
                }
            }
            RoomNotice::Kicked { .. } => false,
        }
    }

    /// The current topic, for a joiner (`None` without one).
    pub(crate) fn topic_event(&self, room: &RoomName) -> Option<ServerMsg> {
        self.settings.topic.as_ref().map(|t| ServerMsg::Topic {
            room: room.to_string(),
            text: t.text.clone(),
            by: t.by.clone(),
            ts: t.ts,
            seq: None,
            id: None,
        })
    }

    /// All the current modes, for a joiner.
    pub(crate) fn modes_event(&self, room: &RoomName) -> ServerMsg {
        let m = &self.settings.modes;
        ServerMsg::Mode {
            room: room.to_string(),
            by: m.by.clone(),
            ts: m.ts,
            change: ModeChange {
                invite_only: Some(m.invite_only),
                key: Some(m.key.clone()),
                moderated: Some(m.moderated),
                topic_locked: Some(m.topic_locked),
                secret: Some(m.secret),
            },
            seq: None,
            id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomName {
        RoomName::parse("rust").unwrap()
    }

    fn moderation() -> RoomModeration {
        RoomModeration::new(Settings::default(), &crate::Config::default())
    }

    fn joiner<'a>(nick: &'a Nick, account: bool, key: Option<&'a str>) -> Joiner<'a> {
        Joiner {
            session: Uuid::nil(),
            nick,
            account,
            admin: false,
            ip: "192.0.2.1".parse().unwrap(),
            key,
        }
    }

    const MEMBER: Actor = Actor {
        role: Role::Member,
        admin: false,
    };
    const OP: Actor = Actor {
        role: Role::Op,
        admin: false,
    };
    const OWNER: Actor = Actor {
        role: Role::Owner,
        admin: false,
    };

    #[test]
    fn the_first_member_is_op_and_a_registered_creator_owns_the_room_for_good() {
        let (alice, bob) = (Nick::parse("alice").unwrap(), Nick::parse("bob").unwrap());
        let mut m = moderation();
        assert_eq!(
            m.admit(&room(), &joiner(&bob, false, None), true),
            Ok((Role::Op, false))
        );
        let mut m2 = moderation();
        assert_eq!(
            m2.admit(&room(), &joiner(&alice, true, None), true),
            Ok((Role::Owner, true))
        );
        let again = RoomModeration::new(
            Settings::parse(&m2.document()).unwrap(),
            &crate::Config::default(),
        );
        let mut again = again;
        assert_eq!(
            again.admit(&room(), &joiner(&alice, true, None), false),
            Ok((Role::Owner, false)),
            "owner again after a restart, whoever else is there"
        );
        assert_eq!(
            m.admit(&room(), &joiner(&alice, false, None), false),
            Ok((Role::Member, false))
        );
    }

    #[test]
    fn arriving_first_in_the_lobby_makes_nobody_its_op() {
        let lobby = RoomName::parse(chat_shared::DEFAULT_ROOM).unwrap();
        let alice = Nick::parse("alice").unwrap();
        let mut m = moderation();
        assert_eq!(
            m.admit(&lobby, &joiner(&alice, true, None), true),
            Ok((Role::Member, false))
        );
    }

    #[test]
    fn only_the_owner_demotes_an_op_and_anyone_may_step_down() {
        let r = room();
        assert!(matches!(
            RoomModeration::check_role(&r, OP, Role::Op, Role::Member, false),
            Err(ModError::NotOwner { .. })
        ));
        assert_eq!(
            RoomModeration::check_role(&r, OWNER, Role::Op, Role::Member, false),
            Ok(true)
        );
        assert_eq!(
            RoomModeration::check_role(&r, OP, Role::Op, Role::Member, true),
            Ok(true)
        );
        assert!(matches!(
            RoomModeration::check_role(&r, MEMBER, Role::Member, Role::Op, false),
            Err(ModError::NotOp(_))
        ));
        assert_eq!(
            RoomModeration::check_role(&r, OP, Role::Voice, Role::Voice, false),
            Ok(false)
        );
        assert!(RoomModeration::check_remove(&r, OP, Role::Op).is_err());
        assert!(RoomModeration::check_remove(&r, OWNER, Role::Op).is_ok());
    }

    #[test]
    fn bans_keys_and_invitations_decide_who_gets_in() {
        let bob = Nick::parse("bob").unwrap();
        let carol = Nick::parse("carol").unwrap();
        let r = room();
        let mut m = moderation();
        m.ban(
            &r,
            "bob",
            false,
            Some("192.0.2.1".parse().unwrap()),
            "alice",
            1,
        )
        .unwrap();
        assert_eq!(
            m.admit(&r, &joiner(&carol, false, None), false),
            Err(ModError::Banned(r.clone())),
            "a guest's ban holds its address too"
        );
        m.unban(&r, "bob").unwrap();
        assert!(m.unban(&r, "bob").is_err());
        let change = ModeChange {
            key: Some(Some("s3cret".into())),
            invite_only: Some(true),
            ..ModeChange::default()
        };
        let change = m.check_mode(&r, OP, &change).unwrap();
        m.apply(&RoomNotice::Mode(change), "alice", 2, false);
        assert_eq!(
            m.admit(&r, &joiner(&bob, false, Some("s3cret")), false),
            Err(ModError::InviteOnly(r.clone()))
        );
        m.invite(&r, OP, &bob).unwrap();
        assert!(m.admit(&r, &joiner(&bob, false, None), false).is_ok());
        assert_eq!(
            m.admit(&r, &joiner(&bob, false, None), false),
            Err(ModError::InviteOnly(r.clone())),
            "an invitation is used once"
        );
        // Cluster mode: remembered from the stream, dropped when the join came elsewhere.
        m.remember_invite(bob.skeleton());
        m.uninvite(&bob.skeleton());
        assert_eq!(
            m.admit(&r, &joiner(&bob, false, None), false),
            Err(ModError::InviteOnly(r.clone())),
            "an invitation used on another node"
        );
        let open = m
            .check_mode(
                &r,
                OP,
                &ModeChange {
                    invite_only: Some(false),
                    topic_locked: Some(true),
                    ..ModeChange::default()
                },
            )
            .unwrap();
        assert_eq!(open.topic_locked, None, "unchanged modes are left out");
        m.apply(&RoomNotice::Mode(open), "alice", 3, false);
        assert_eq!(
            m.admit(&r, &joiner(&bob, false, Some("wrong")), false),
            Err(ModError::BadKey(r.clone()))
        );
        assert!(
            m.admit(&r, &joiner(&bob, false, Some("s3cret")), false)
                .is_ok()
        );
    }

    #[test]
    fn a_handover_makes_the_old_owner_an_op_of_record() {
        let mut m = moderation();
        let alice = Nick::parse("alice").unwrap();
        m.admit(&room(), &joiner(&alice, true, None), true).unwrap();
        let notice = RoomNotice::Role {
            was: None,
            nick: "dave".into(),
            role: Role::Owner,
        };
        assert!(m.apply(&notice, "alice", 1, true));
        assert_eq!(m.owner(), Some("dave"));
        assert_eq!(m.kept_role("alice", true), Role::Op);
        assert!(
            m.check_topic(&room(), MEMBER, "hi").is_err(),
            "new rooms are topic-locked"
        );
        assert!(matches!(
            m.check_topic(&room(), OP, &"x".repeat(391)),
            Err(ModError::TopicTooLong(390))
        ));
    }
}
