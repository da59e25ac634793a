//! The requests of a registered client: one file per command, this short dispatch, and the
//! parsing every command shares. A command returns a [`Refusal`] when it says no; the
//! dispatch answers it with its code (see `errors.rs`).

mod admin;
mod dm;
mod history;
mod join;
mod kick;
mod mode;
mod nick;
mod roles;
mod say;
mod topic;
mod upload;
mod users;
mod who;

use chat_shared::validate::clean_reason;
use chat_shared::{ByeReason, ClientMsg, Nick, Request, RoomName, ServerMsg};
use tokio::time::Instant;

use super::account::AccountJob;
use super::errors::Refusal;
use super::{Exit, Session};
use crate::chat::ChatError;
use crate::limits::Verdict;
use crate::moderation::ModError;
use crate::path::Room;
use crate::path::moderation::RoleChange;
use crate::path::producer::PostError;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    /// Handles one request of a registered client.
    pub(super) fn handle(&mut self, req: Request) -> Result<(), Exit> {
        let ref_id = req.id;
        // Account requests share the message rate (each costs a password hash), and so does
        // every moderation request: each is a room event, an invitation or a kill.
        if rated(&req.msg) {
            let (rate, burst) = {
                let live = self.config.live();
                (live.rate, live.burst)
            };
            match self.rate.check(Instant::now(), rate, burst) {
                Verdict::Allow => {}
                Verdict::Reject => {
                    return self.refuse(&Refusal::RateLimited { rate, burst }, ref_id);
                }
                Verdict::Flood => return Err(Exit::Bye(ByeReason::Flood, "flooding".into())),
            }
        }
        let done = match req.msg {
            ClientMsg::Say { room, text, action } => self.say(&room, &text, action, ref_id),
            ClientMsg::Dm { to, text } => self.dm(&to, &text, ref_id),
            ClientMsg::Join { room, since, key } => {
                parse_room(&room).and_then(|r| self.join(r, since, key.as_deref()))
            }
            ClientMsg::Part { room, reason } => self.part(&room, reason.as_deref()),
            // In cluster mode the new nick is claimed cluster-wide first, off this loop.
            ClientMsg::Nick { nick } if self.chat.peers.is_some() => {
                self.account_job = Some(Box::new(AccountJob::Rename { nick, ref_id }));
                Ok(())
            }
            ClientMsg::Nick { nick } => self.rename(&nick),
            ClientMsg::Who { room } => self.who(&room),
            ClientMsg::Rooms {} => {
                self.list_rooms();
                Ok(())
            }
            ClientMsg::History {
                room,
                before,
                limit,
                after,
            } => self.history(&room, before, after, limit, ref_id),
            ClientMsg::Ping { token } => {
                self.reply(ServerMsg::Pong { token });
                Ok(())
            }
            // Expected: the answer to our ping; receiving it already counted as activity.
            ClientMsg::Pong { .. } => Ok(()),
            ClientMsg::Quit { reason } => {
                let reason = clean_reason(reason.as_deref());
                self.part_reason = reason.map(String::into_boxed_str);
                return Err(Exit::Bye(ByeReason::Quit, "bye".into()));
            }
            ClientMsg::Hello { .. } => Err(Refusal::AlreadyRegistered),
            ClientMsg::Register { password } => {
                self.account_job = Some(Box::new(AccountJob::Register { password, ref_id }));
                Ok(())
            }
            ClientMsg::Login { nick, password } => {
                self.account_job = Some(Box::new(AccountJob::Login {
                    nick,
                    password,
                    ref_id,
                }));
                Ok(())
            }
            ClientMsg::SetPassword { old, new } => {
                self.account_job = Some(Box::new(AccountJob::SetPassword { old, new, ref_id }));
                Ok(())
            }
            ClientMsg::Topic { room, text } => self.topic(&room, &text),
            ClientMsg::Op { room, nick } => self.role(&room, &nick, RoleChange::Op),
            ClientMsg::Deop { room, nick } => self.role(&room, &nick, RoleChange::Deop),
            ClientMsg::Voice { room, nick } => self.role(&room, &nick, RoleChange::Voice),
            ClientMsg::Devoice { room, nick } => self.role(&room, &nick, RoleChange::Devoice),
            ClientMsg::Owner { room, nick } => self.owner(&room, &nick),
            ClientMsg::Kick { room, nick, reason } => self.kick(&room, &nick, reason.as_deref()),
            ClientMsg::Ban { room, nick } => self.ban(&room, &nick),
            ClientMsg::Unban { room, nick } => self.unban(&room, &nick),
            ClientMsg::Bans { room } => self.bans(&room),
            ClientMsg::Mode { room, change } => self.mode(&room, &change),
            ClientMsg::Invite { room, nick } => self.invite(&room, &nick),
            ClientMsg::Kill { nick, reason } => self.kill(&nick, reason.as_deref()),
            ClientMsg::ServerBan {
                mask,
                duration_s,
                reason,
            } => self.server_ban(&mask, duration_s, reason.as_deref()),
            ClientMsg::ServerUnban { mask } => self.server_unban(&mask),
            ClientMsg::ServerBans {} => self.server_bans(),
            ClientMsg::Whois { nicks } => {
                self.whois(&nicks);
                Ok(())
            }
            ClientMsg::Away { text } => {
                self.away(text.as_deref());
                Ok(())
            }
            ClientMsg::Upload {
                name,
                size,
                sha256,
                room,
                to,
            } => {
                let asked = upload::Asked {
                    name: &name,
                    size,
                    sha256: &sha256,
                    room: room.as_deref(),
                    to: to.as_deref(),
                };
                self.upload(&asked, ref_id)
            }
        };
        match done {
            Ok(()) => Ok(()),
            Err(refusal) => self.refuse(&refusal, ref_id),
        }
    }

    /// The refusal for a request a room would not take.
    pub(super) fn posting(&self, room: &Room, e: PostError) -> Refusal {
        match e {
            // Only if the room lost the member behind the session's back (a kick on its
            // way): say so all the same.
            PostError::NotMember => Refusal::NotInRoom(room.name().clone()),
            PostError::Busy(_) => ChatError::StoreBusy.into(),
            PostError::Refused(ModError::NotHere { nick, .. })
                if self.chat.online(&nick).is_none() =>
            {
                ChatError::NoSuchNick(nick).into()
            }
            PostError::Refused(e) => e.into(),
            PostError::Unavailable(_) => ChatError::ClusterUnavailable.into(),
        }
    }

    /// Whether this session is a server admin's: logged in to an account `--admins` names.
    pub(super) fn is_admin(&self) -> bool {
        self.logged_in
            && self
                .nick
                .as_ref()
                .is_some_and(|n| self.config.live().is_admin_skeleton(&n.skeleton()))
    }

    /// A room the client has joined.
    fn joined_room(&self, raw: &str) -> Result<std::sync::Arc<crate::path::Room>, Refusal> {
        // Clients name their rooms as the server reports them: looking that up first spares
        // normalising the name of every message.
        if let Some(room) = self.rooms.get(raw) {
            return Ok(std::sync::Arc::clone(room));
        }
        let name = parse_room(raw)?;
        if let Some(room) = self.rooms.get(name.as_str()) {
            return Ok(std::sync::Arc::clone(room));
        }
        // A look-alike of a joined room's name is that room (see `Chat::room`).
        let key = name.skeleton();
        self.rooms
            .iter()
            .find(|r| r.name().skeleton() == key)
            .cloned()
            .ok_or(Refusal::NotInRoom(name))
    }
}

/// Whether a request counts against the message rate.
fn rated(msg: &ClientMsg) -> bool {
    !matches!(
        msg,
        ClientMsg::Hello { .. }
            | ClientMsg::Join { .. }
            | ClientMsg::Part { .. }
            | ClientMsg::Nick { .. }
            | ClientMsg::Who { .. }
            | ClientMsg::Rooms {}
            | ClientMsg::History { .. }
            | ClientMsg::Ping { .. }
            | ClientMsg::Pong { .. }
            | ClientMsg::Quit { .. }
            | ClientMsg::Bans { .. }
            | ClientMsg::ServerBans {}
            | ClientMsg::Whois { .. }
    )
}

pub(super) fn parse_nick(raw: &str) -> Result<Nick, Refusal> {
    Nick::parse(raw).map_err(|reason| Refusal::NickInvalid {
        raw: raw.to_owned(),
        reason,
    })
}

pub(super) fn parse_room(raw: &str) -> Result<RoomName, Refusal> {
    RoomName::parse(raw).map_err(|reason| Refusal::RoomInvalid {
        raw: raw.to_owned(),
        reason,
    })
}
