//! `kick`, `ban`, `unban` and `bans`: removing someone from a room, and keeping them out.

use chat_shared::validate::clean_reason;

use super::parse_nick;
use crate::path::moderation::Absent;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn kick(
        &mut self,
        room: &str,
        nick: &str,
        reason: Option<&str>,
    ) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let reason = clean_reason(reason).unwrap_or_default();
        room.kick(self.id, &self.sink, &nick, reason)
            .map_err(|e| self.posting(&room, e))
    }

    /// Bans a nick, present or not: an account's nick, or a guest's nick and, when the
    /// guest is online, its address.
    pub(super) fn ban(&mut self, room: &str, nick: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let online = self.chat.online(nick.as_str());
        let absent = Absent {
            account: self.chat.auth.is_registered(&nick),
            ip: online.map(|o| o.peer),
        };
        let list = room
            .ban(self.id, &self.sink, &nick, absent)
            .map_err(|e| self.posting(&room, e))?;
        self.reply(list);
        Ok(())
    }

    pub(super) fn unban(&mut self, room: &str, nick: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let list = room
            .unban(self.id, &nick)
            .map_err(|e| self.posting(&room, e))?;
        self.reply(list);
        Ok(())
    }

    pub(super) fn bans(&mut self, room: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let list = room.bans(self.id).map_err(|e| self.posting(&room, e))?;
        self.reply(list);
        Ok(())
    }
}
