//! `topic`: setting (or, with an empty text, clearing) a room's topic.

use chat_shared::validate::strip_controls;

use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn topic(&mut self, room: &str, text: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        // One line: a topic is shown in a status bar, and IRC's TOPIC has no room for more.
        let text = strip_controls(text)
            .replace(['\n', '\t'], " ")
            .trim()
            .to_owned();
        room.set_topic(self.id, &self.sink, text)
            .map_err(|e| self.posting(&room, e))
    }
}
