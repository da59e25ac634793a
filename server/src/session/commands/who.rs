//! `who` and `rooms`: who is in a room, and which rooms exist (a secret room only for its
//! members).

use chat_shared::ServerMsg;

use super::parse_room;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::session::history::Cut;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn who(&mut self, raw: &str) -> Result<(), Refusal> {
        let name = parse_room(raw)?;
        let members = self
            .chat
            .existing_room(&name)
            .map(|r| r.members(self.id))
            .unwrap_or_default();
        self.push_members(&name, &members);
        Ok(())
    }

    pub(super) fn list_rooms(&mut self) {
        let rooms = self.chat.rooms(self.id);
        let event = self.fit(&rooms, false, Cut::Back, |rooms, truncated| {
            ServerMsg::RoomList { rooms, truncated }
        });
        self.wire.push(&event);
    }
}
