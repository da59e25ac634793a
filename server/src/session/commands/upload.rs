//! `upload`: a slot to upload a file to, for sharing in a joined room or with a nick online.

use chat_shared::ServerMsg;
use uuid::Uuid;

use crate::chat::ChatError;
use crate::files::{FileError, Offer, Owner, Target};
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

/// The `upload` request's fields.
pub(crate) struct Asked<'a> {
    pub(crate) name: &'a str,
    pub(crate) size: u64,
    pub(crate) sha256: &'a str,
    pub(crate) room: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
}

impl<W: Wire> Session<W> {
    pub(super) fn upload(&mut self, asked: &Asked<'_>, id: Option<Uuid>) -> Result<(), Refusal> {
        let files = self.files.clone().ok_or(FileError::Off)?;
        let target = match (asked.room, asked.to) {
            (Some(room), None) => Target::Room(self.joined_room(room)?.name().clone()),
            (None, Some(to)) => {
                let (_, _) = self
                    .chat
                    .holder(to)
                    .ok_or_else(|| ChatError::NoSuchNick(to.to_owned()))?;
                Target::Nick(to.to_owned())
            }
            _ => return Err(FileError::Bad("give exactly one of room and to").into()),
        };
        let nick = self.nick().clone();
        let owner = if self.logged_in {
            Owner::Account(nick.skeleton())
        } else {
            Owner::Guest(self.id)
        };
        let slot = files.offer(Offer {
            id: id.unwrap_or_else(Uuid::now_v7),
            name: asked.name.to_owned(),
            size: asked.size,
            sha256: asked.sha256.to_owned(),
            target,
            owner,
            nick,
            session: self.id,
        })?;
        self.reply(ServerMsg::UploadSlot {
            ref_id: slot.id,
            url: slot.url,
            expires: slot.expires,
            offset: slot.offset,
        });
        // Its last byte arrived while this uploader was away: shared now that it is back.
        if let Some(upload) = files.waiting(slot.id) {
            let _ = crate::files::share::publish(&self.chat, &files, &upload);
        }
        Ok(())
    }
}
