//! `nick`: renaming, in the directory and in every room the client is in. A registered
//! nick cannot be renamed into; leaving one's account's nick leaves the account.

use std::sync::Arc;

use super::parse_nick;
use crate::path::Room;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(in crate::session) fn rename(&mut self, raw: &str) -> Result<(), Refusal> {
        let new = parse_nick(raw)?;
        let old = self.nick().clone();
        // Another spelling of one's own account's nick keeps the login; any other nick
        // must not be registered (a rename carries no password).
        let own = self.logged_in && new.key() == old.key();
        if !own {
            self.chat.auth.free(&new)?;
        }
        if let Some(reason) = self.chat.moderation.server_bans.nick_banned(new.as_str()) {
            return Err(Refusal::ServerBanned(reason));
        }
        let rooms: Vec<Arc<Room>> = self.rooms.iter().cloned().collect();
        let login = (self.logged_in, own);
        let events = self.chat.rename(self.id, &old, &new, &rooms, login)?;
        self.logged_in = own;
        self.nick = Some(new);
        for event in &events {
            self.wire.push(event);
        }
        Ok(())
    }
}
