//! `op`, `deop`, `voice`, `devoice` and `owner`: changing someone's role in a room.

use chat_shared::ServerMsg;

use super::parse_nick;
use crate::path::moderation::RoleChange;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn role(
        &mut self,
        room: &str,
        nick: &str,
        change: RoleChange,
    ) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let unchanged = room
            .set_role(self.id, &self.sink, &nick, change)
            .map_err(|e| self.posting(&room, e))?;
        if let Some(text) = unchanged {
            self.reply(ServerMsg::Notice { text });
        }
        Ok(())
    }

    pub(super) fn owner(&mut self, room: &str, nick: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let unchanged = room
            .hand_over(self.id, &self.sink, &nick)
            .map_err(|e| self.posting(&room, e))?;
        if let Some(text) = unchanged {
            self.reply(ServerMsg::Notice { text });
        }
        Ok(())
    }
}
