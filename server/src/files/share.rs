//! A finished upload becomes a message: posted as its uploader, into its room or as a DM,
//! through the same path as anything said, so it has a `seq`, is stored and kept in
//! history, and its id de-duplicates it. The uploader's own copy is its acknowledgement.

use std::sync::Arc;

use chat_shared::{ErrorCode, FileInfo, ServerMsg};
use tracing::info;

use super::names::{human_size, short_hash};
use super::{Files, Owner, Target, Upload};
use crate::chat::{Chat, ChatError};
use crate::event::Event;
use crate::path::producer::{PostError, Posted, Said};
use crate::path::sink::Sink;

/// Why a verified file was not shared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShareError {
    #[error("the uploader is no longer online")]
    Offline,
    #[error("the uploader is no longer in #{0}")]
    NotInRoom(String),
    #[error("{0} is not online")]
    NoSuchNick(String),
    #[error("the server is too busy to store the message; upload again later")]
    Busy,
    #[error("{0}")]
    Refused(String),
}

/// What line and IRC clients see, and framed ones next to the `file` object:
/// `[file] 报告.pdf (1.2 MiB, sha256 3a7b…e1) http://HOST:PORT/files/ID/报告.pdf`.
pub(crate) fn describe(file: &FileInfo) -> String {
    format!(
        "[file] {} ({}, sha256 {}) {}",
        file.name,
        human_size(file.size),
        short_hash(&file.sha256),
        file.url
    )
}

/// What posting did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    /// A new message shares the file.
    New,
    /// A message with this id was already shared (an upload resent after it was done): the
    /// uploader got that one again, and this copy of the file is not needed.
    Already,
}

/// Posts `file` as `upload`'s uploader.
///
/// # Errors
/// [`ShareError`] says why it was not posted (nothing was).
fn post(chat: &Chat, upload: &Upload, file: FileInfo) -> Result<Shared, ShareError> {
    let (session, sink) = uploader(chat, upload).ok_or(ShareError::Offline)?;
    let said = Said {
        text: describe(&file),
        id: Some(upload.id),
        action: false,
        file: Some(Box::new(file)),
    };
    match &upload.target {
        Target::Room(name) => {
            let room = chat
                .existing_room(name)
                .ok_or_else(|| ShareError::NotInRoom(name.to_string()))?;
            match room.post(session, &sink, said) {
                Ok(Posted::New) => Ok(Shared::New),
                Ok(Posted::Pending) => Ok(Shared::Already),
                Ok(Posted::Duplicate(original)) => {
                    let _ = sink.push(&original);
                    Ok(Shared::Already)
                }
                Err(PostError::NotMember) => Err(ShareError::NotInRoom(name.to_string())),
                Err(PostError::Busy(_) | PostError::Unavailable(_)) => Err(ShareError::Busy),
                Err(PostError::Refused(e)) => Err(ShareError::Refused(e.to_string())),
            }
        }
        Target::Nick(to) => chat
            .dm(session, (&upload.nick, logged_in(upload)), &sink, to, said)
            // A resent DM's id is answered with the original, as a new one is (a share
            // record too many at worst).
            .map(|()| Shared::New)
            .map_err(|e| match e {
                ChatError::NoSuchNick(nick) => ShareError::NoSuchNick(nick),
                ChatError::StoreBusy => ShareError::Busy,
                other => ShareError::Refused(other.to_string()),
            }),
    }
}

/// Whether the uploader was logged in to its account (only an account's uploads are
/// owned by it; a room post reads the member's login itself).
fn logged_in(upload: &Upload) -> bool {
    matches!(upload.owner, Owner::Account(_))
}

/// What became of a kept upload.
#[derive(Debug)]
pub(crate) enum Published {
    /// Shared now, or before (a resent upload): its slot is done.
    Shared,
    /// Its uploader is away: kept, and shared when it comes back for its slot.
    Waiting,
    /// Not shared, and deleted; the uploader (if online) was told why.
    Refused(ShareError),
}

/// Posts a kept upload's share, and does the bookkeeping of every outcome.
pub(crate) fn publish(chat: &Chat, files: &Files, upload: &Upload) -> Published {
    let Some(file) = upload.kept().cloned() else {
        return Published::Refused(ShareError::Refused("the upload is not finished".into()));
    };
    let id = file.id.clone();
    match post(chat, upload, file) {
        Ok(Shared::New) => {
            chat.ops.metrics.files.shared.inc();
            info!(file = %id, size = upload.size, by = %upload.nick, "file shared");
            files.done(upload);
            Published::Shared
        }
        Ok(Shared::Already) => {
            files.done(upload);
            files.unshare(&id);
            Published::Shared
        }
        Err(ShareError::Offline) => Published::Waiting,
        Err(e) => {
            chat.ops.metrics.files.failed("not_shared");
            files.abandon(upload);
            let text = format!("{} was not shared: {e}", upload.name);
            tell(chat, upload, ErrorCode::BadRequest, text);
            Published::Refused(e)
        }
    }
}

/// Tells the uploader, if it is online, that its upload failed.
pub(crate) fn tell(chat: &Chat, upload: &Upload, code: ErrorCode, message: String) {
    if let Some((_, sink)) = uploader(chat, upload) {
        let error = ServerMsg::error(code, message, Some(upload.id));
        let _ = sink.push(&Arc::new(Event::new(error, None)));
    }
}

/// The uploader's session now: for an account, whoever holds its nick (only it can); for
/// a guest, only the connection the slot was last asked for in.
fn uploader(chat: &Chat, upload: &Upload) -> Option<(uuid::Uuid, Arc<Sink>)> {
    let (session, sink) = chat.holder(upload.nick.as_str())?;
    // A registered nick is held only by a connection logged in to its account.
    let same = match upload.owner {
        Owner::Account(_) => true,
        Owner::Guest(_) => session == upload.session(),
    };
    same.then_some((session, sink))
}
