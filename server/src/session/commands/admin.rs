//! `kill`, `server_ban`, `server_unban` and `server_bans`: what only server admins may do.

use crate::ops::audit::{self, Action};
use chat_shared::validate::clean_reason;
use chat_shared::{ByeReason, ServerMsg};

use crate::chat::ChatError;
use crate::moderation::ModError;
use crate::path::sink::Ending;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    fn admin(&self) -> Result<(), Refusal> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ModError::NotAdmin.into())
        }
    }

    pub(super) fn kill(&mut self, nick: &str, reason: Option<&str>) -> Result<(), Refusal> {
        self.admin()?;
        let victim = self
            .chat
            .online(nick)
            .ok_or_else(|| ChatError::NoSuchNick(nick.to_owned()))?;
        let reason = clean_reason(reason).unwrap_or_default();
        let by = self.nick().to_string();
        let said = if reason.is_empty() {
            format!("killed by {by}")
        } else {
            format!("killed by {by}: {reason}")
        };
        audit::moderation(self.id, &by, Action::Kill, None, victim.nick.as_str(), "");
        victim.sink.end(Ending {
            reason: ByeReason::Killed,
            message: said.clone(),
            part_reason: Some(said),
        });
        self.reply(ServerMsg::Notice {
            text: format!("{} is disconnected", victim.nick),
        });
        Ok(())
    }

    pub(super) fn server_ban(
        &mut self,
        mask: &str,
        duration_s: Option<u64>,
        reason: Option<&str>,
    ) -> Result<(), Refusal> {
        self.admin()?;
        let reason = clean_reason(reason).unwrap_or_default();
        let by = self.nick().to_string();
        let bans = &self.chat.moderation.server_bans;
        let list = bans.add(mask, duration_s, &reason, &by)?;
        let detail = duration_s.map_or_else(|| "permanent".to_owned(), |s| format!("{s} s"));
        audit::moderation(self.id, &by, Action::ServerBan, None, mask, &detail);
        // Whoever it catches now goes; the admin who set it stays, whatever it matches.
        self.chat.end_server_banned(Some(&self.sink));
        self.reply(ServerMsg::ServerBanList { bans: list });
        Ok(())
    }

    pub(super) fn server_unban(&mut self, mask: &str) -> Result<(), Refusal> {
        self.admin()?;
        let list = self.chat.moderation.server_bans.remove(mask)?;
        audit::moderation(
            self.id,
            self.nick().as_str(),
            Action::ServerUnban,
            None,
            mask,
            "",
        );
        self.reply(ServerMsg::ServerBanList { bans: list });
        Ok(())
    }

    pub(super) fn server_bans(&mut self) -> Result<(), Refusal> {
        self.admin()?;
        let bans = self.chat.moderation.server_bans.list();
        self.reply(ServerMsg::ServerBanList { bans });
        Ok(())
    }
}
