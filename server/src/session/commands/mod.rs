//! The requests of a registered client: one file per command, this short dispatch, and the
//! parsing every command shares. A command returns a [`Refusal`] when it says no; the
//! dispatch answers it with its code (see `errors.rs`).

mod dm;
mod history;
mod join;
mod nick;
mod say;
mod who;

use chat_shared::validate::clean_reason;
use chat_shared::{ByeReason, ClientMsg, Nick, Request, RoomName, ServerMsg};
use tokio::time::Instant;

use super::account::AccountJob;
use super::errors::Refusal;
use super::{Exit, Session};
use crate::limits::Verdict;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    /// Handles one request of a registered client.
    pub(super) fn handle(&mut self, req: Request) -> Result<(), Exit> {
        let ref_id = req.id;
        // Account requests share the message rate: each costs a password hash.
        if matches!(
            req.msg,
            ClientMsg::Say { .. }
                | ClientMsg::Dm { .. }
                | ClientMsg::Register { .. }
                | ClientMsg::SetPassword { .. }
        ) {
            let (rate, burst) = (self.config.rate, self.config.burst);
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
            ClientMsg::Join { room, since, .. } => {
                parse_room(&room).and_then(|r| self.join(r, since))
            }
            ClientMsg::Part { room, reason } => self.part(&room, reason.as_deref()),
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
            } => self.history(&room, before, limit, ref_id),
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
            ClientMsg::SetPassword { old, new } => {
                self.account_job = Some(Box::new(AccountJob::SetPassword { old, new, ref_id }));
                Ok(())
            }
            _ => Err(Refusal::Malformed("not implemented yet".into())),
        };
        match done {
            Ok(()) => Ok(()),
            Err(refusal) => self.refuse(&refusal, ref_id),
        }
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
