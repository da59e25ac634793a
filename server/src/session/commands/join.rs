//! `join` and `part`: entering a room (registration joins `lobby` this way too) and
//! leaving it. The join sequence (`joined`, `history`, `members`) arrives through the sink,
//! in order with the room's other events.

use chat_shared::RoomName;
use chat_shared::validate::clean_reason;

use crate::moderation::Joiner;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    /// Joins `name` (the join sequence arrives through the sink).
    pub(in crate::session) fn join(
        &mut self,
        name: RoomName,
        since: Option<u64>,
        key: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.rooms.get(name.as_str()).is_none()
            && self.rooms.len() >= self.config.max_rooms_per_client
        {
            return Err(Refusal::TooManyRooms(self.rooms.len()));
        }
        let room = self.chat.room(&name)?;
        let nick = self.nick().clone();
        let joiner = Joiner {
            session: self.id,
            nick: &nick,
            account: self.logged_in,
            admin: self.is_admin(),
            ip: self.peer,
            key,
        };
        room.join(&joiner, &self.sink, since, self.config.history_on_join)
            .map_err(|e| self.posting(&room, e))?;
        self.rooms.insert(room);
        Ok(())
    }

    pub(super) fn part(&mut self, raw: &str, reason: Option<&str>) -> Result<(), Refusal> {
        let room = self.joined_room(raw)?;
        let name = room.name().clone();
        self.rooms.remove(&name);
        // The leaver's own `parted` comes through its sink, after the room's earlier events.
        room.part(self.id, clean_reason(reason))
            .map_err(|_| Refusal::NotInRoom(name))
    }
}
