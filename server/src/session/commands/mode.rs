//! `mode` and `invite`: a room's modes, and letting someone past them.

use std::sync::Arc;

use chat_shared::{ModeChange, ServerMsg};

use super::parse_nick;
use crate::chat::ChatError;
use crate::event::Event;
use crate::path::Invitation;
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

    /// Invites someone online, here or (cluster mode) on any node. In cluster mode the
    /// invitation goes through the stream, so that every node remembers it, and the
    /// invitee hears of it from there; the inviter is answered at once either way (IRC's
    /// 341 is the answer to its `INVITE`).
    pub(super) fn invite(&mut self, room: &str, nick: &str) -> Result<(), Refusal> {
        let room = self.joined_room(room)?;
        let nick = parse_nick(nick)?;
        let online = self.chat.online(nick.as_str());
        let invitee = match &online {
            Some(o) => Some((o.nick.clone(), o.session)),
            None => (self.chat.peers.as_ref()).and_then(|p| p.holder(&nick.skeleton())),
        };
        let (invitee, to) = invitee.ok_or_else(|| ChatError::NoSuchNick(nick.to_string()))?;
        room.invite(self.id, &invitee)
            .map_err(|e| self.posting(&room, e))?;
        let invitation = Invitation {
            room: room.name().to_string(),
            nick: invitee.to_string(),
            to,
            by: self.nick().to_string(),
            from: self.id,
        };
        if let Some(peers) = &self.chat.peers {
            peers.invite(invitation, Arc::clone(&self.sink))?;
        } else if let Some(online) = online {
            // Dropped only for an invitee over its budget, which is told it lagged.
            let invited = Event::new(invitation.invited(), Some(self.id));
            let _ = online.sink.push(&Arc::new(invited));
        }
        self.reply(ServerMsg::Notice {
            text: format!("{invitee} is invited to #{}", room.name()),
        });
        Ok(())
    }
}
