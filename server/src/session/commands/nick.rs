//! `nick`: renaming, in the directory and in every room the client is in.

use std::sync::Arc;

use super::parse_nick;
use crate::path::Room;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn rename(&mut self, raw: &str) -> Result<(), Refusal> {
        let new = parse_nick(raw)?;
        let old = self.nick().clone();
        let rooms: Vec<Arc<Room>> = self.rooms.iter().cloned().collect();
        let event = self.chat.rename(self.id, &old, &new, &rooms)?;
        self.nick = Some(new);
        self.wire.push(&event);
        Ok(())
    }
}
