//! `say`: a message to a room the client has joined.

use chat_shared::validate::clean_text;
use uuid::Uuid;

use crate::path::producer::{Posted, Said};
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn say(
        &mut self,
        room: &str,
        text: &str,
        action: bool,
        id: Option<Uuid>,
    ) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let text = clean_text(text, self.config.live().max_text)?;
        match room.post(
            self.id,
            &self.sink,
            Said {
                action,
                ..Said::text(text, id)
            },
        ) {
            // The sender's copy (its acknowledgement) comes through its own sink, once the
            // message is durable; a resend of one not durable yet is acknowledged by that
            // same copy.
            Ok(Posted::New | Posted::Pending) => Ok(()),
            Ok(Posted::Duplicate(original)) => {
                self.wire.push(&original);
                Ok(())
            }
            Err(e) => Err(self.posting(&room, e)),
        }
    }
}
