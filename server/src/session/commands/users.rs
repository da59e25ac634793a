//! `whois` and `away`: who of some nicks is online (logged in, away), from the nick
//! directory; and this client's own away state, which its room-mates are told of.

use std::sync::Arc;

use chat_shared::validate::clean_reason;
use chat_shared::{ServerMsg, UserInfo};

use crate::path::Room;
use crate::session::Session;
use crate::session::history::Cut;
use crate::wire::Wire;

/// Most nicks one `whois` looks up.
const MAX_LOOKUP: usize = 64;

impl<W: Wire> Session<W> {
    pub(super) fn whois(&mut self, nicks: &[String]) {
        let asked = &nicks[..nicks.len().min(MAX_LOOKUP)];
        let users: Vec<UserInfo> = self
            .chat
            .lookup(asked)
            .into_iter()
            .map(|(nick, away)| UserInfo {
                // Holding a registered nick takes logging in to it.
                account: self.chat.auth.is_registered(&nick),
                nick: nick.to_string(),
                away: away.map(String::from),
            })
            .collect();
        let event = self.fit(&users, false, Cut::Back, |users, _| ServerMsg::Users {
            users,
        });
        self.wire.push(&event);
    }

    pub(super) fn away(&mut self, text: Option<&str>) {
        let text = clean_reason(text).map(String::into_boxed_str);
        let rooms: Vec<Arc<Room>> = self.rooms.iter().cloned().collect();
        let event = self.chat.set_away(self.id, self.nick(), text, &rooms);
        self.wire.push(&event);
    }
}
