//! `mode` and `invite`: a room's modes, and letting someone past them.

use chat_shared::{ModeChange, ServerMsg};

use super::parse_nick;
use crate::chat::ChatError;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn mode(&mut self, room: &str, change: &ModeChange) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let current = room
            .set_modes(self.id, &self.sink, change)
            .map_err(|e| self.posting(&room, e))?;
        // Asked, not changed: the modes as they are.
        if let Some(modes) = current {
            self.reply(modes);
        }
        Ok(())
    }

    pub(super) fn invite(&mut self, room: &str, nick: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let invitee = self
            .chat
            .online(nick.as_str())
            .ok_or_else(|| ChatError::NoSuchNick(nick.to_string()))?;
        room.invite(self.id, &invitee.nick)
            .map_err(|e| self.posting(&room, e))?;
        let invited = ServerMsg::Invited {
            room: room.name().to_string(),
            by: self.nick().to_string(),
        };
        // Dropped only for an invitee over its budget, which is told it lagged.
        let _ = invitee
            .sink
            .push(&std::sync::Arc::new(crate::event::Event::new(
                invited,
                Some(self.id),
            )));
        self.reply(ServerMsg::Notice {
            text: format!("{} is invited to #{}", invitee.nick, room.name()),
        });
        Ok(())
    }
}
