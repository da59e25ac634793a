//! `history`: a page of a room's messages older than `before`, or newer than `after` (open
//! rooms' to anyone, closed rooms' to their members).

use uuid::Uuid;

use super::parse_room;
use crate::path::stream::Plan;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::session::history::Deferred;
use crate::wire::Wire;

/// Default and largest `limit` of a `history` request.
const HISTORY_PAGE: usize = 50;
const HISTORY_PAGE_MAX: usize = 500;

impl<W: Wire> Session<W> {
    pub(super) fn history(
        &mut self,
        raw: &str,
        before: Option<Uuid>,
        after: Option<Uuid>,
        limit: Option<u32>,
        ref_id: Option<Uuid>,
    ) -> Result<(), Refusal> {
        let name = parse_room(raw)?;
        let limit = limit.map_or(HISTORY_PAGE, |l| (l as usize).min(HISTORY_PAGE_MAX));
        // With a store, a room nobody has joined since the start is still in it.
        let room = match &self.chat.store {
            Some(_) => Some(self.chat.room(&name)?),
            None => self.chat.existing_room(&name),
        };
        // A closed room (secret, invite-only or keyed) shows its history to its members only.
        if let Some(room) = &room
            && !room.readable_by(self.id)
            && !self.is_admin()
        {
            return Err(Refusal::NotInRoom(room.name().clone()));
        }
        let plan = match &room {
            Some(room) => match after {
                Some(after) => room.history_after(after, before, limit),
                None => room.history(before, limit),
            }
            .map_err(|e| Refusal::UnknownBefore(e.0, name.clone()))?,
            None => match after.or(before) {
                Some(id) => return Err(Refusal::UnknownBefore(id, name)),
                None => Plan::Done {
                    messages: Vec::new(),
                    older: false,
                },
            },
        };
        // As for a join: a page holding this client's own message must not acknowledge it
        // before it is durable.
        let unsettled = room
            .filter(|_| self.caps.echoes_own)
            .and_then(|r| r.unsettled_by(self.nick()));
        match (plan, unsettled) {
            (Plan::Done { messages, older }, None) => self.push_history(&name, messages, older),
            (plan, unsettled) => {
                self.deferred = Some(Box::new(Deferred {
                    room: name,
                    plan,
                    members: None,
                    ref_id,
                    unsettled,
                }));
            }
        }
        Ok(())
    }
}
