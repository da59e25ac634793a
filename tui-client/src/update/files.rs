//! File sharing in the update: `/upload`, `/download` and `/transfers`, the server's
//! `upload_slot` and the acknowledging `message`, and what transfer tasks report. Pure like
//! the rest of `update`: hashing, HTTP and the disk are [`Effect`]s the runtime carries out.
//!
//! An upload goes: hash ([`Effect::Hash`]) → `upload` with a fresh id → `upload_slot` →
//! tus ([`Effect::Upload`]) → the server's `message`/`dm` with that id, which ends it. After
//! a reconnect, or when the task stalls, `upload` is sent again with the same id: the server
//! answers with the same slot and its offset, and the upload goes on from there.

use std::path::PathBuf;

use chat_shared::message::FileInfo;
use chat_shared::validate::{Nick, RoomName};
use chat_shared::{ClientMsg, ErrorCode, Request};
use uuid::Uuid;

use super::Effect;
use crate::app::{App, TabKind};
use crate::transfer::{
    Direction, DownloadJob, Target, Transfer, TransferEvent, TransferState, UploadJob, human_size,
};

/// How long a stalled upload waits before asking for its slot again.
const STALLED_RETRY_MS: i64 = 10_000;

/// Slots in a row whose link is "gone" before the upload fails: one lost slot (expired, or
/// the server restarted) is asked for again; a second one without any progress in between
/// means the link itself does not work (a server whose `--public-url` leads elsewhere
/// answers the same slot each time, and asking again at once would only run into its rate
/// limit).
const MAX_SLOTS_LOST: u32 = 2;

/// `/upload PATH [#ROOM|@NICK]`.
pub(super) fn upload(app: &mut App, path: String, target: Option<String>, fx: &mut Vec<Effect>) {
    let target = match upload_target(app, target) {
        Ok(t) => t,
        Err(e) => return app.error(e),
    };
    let path = PathBuf::from(path);
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return app.error(format!("{}: not a file name", path.display()));
    };
    let id = Uuid::now_v7();
    app.info(format!("sharing {name} in {}: reading it…", target.label()));
    app.transfers
        .push(Transfer::upload(id, path.clone(), name, target));
    fx.push(Effect::Hash { id, path });
}

fn upload_target(app: &App, raw: Option<String>) -> Result<Target, String> {
    match raw {
        Some(raw) if raw.starts_with('@') => Nick::parse(&raw[1..])
            .map(|n| Target::Nick(n.to_string()))
            .map_err(|e| format!("nick {raw:?}: {e}")),
        Some(raw) => RoomName::parse(&raw)
            .map(|r| Target::Room(r.to_string()))
            .map_err(|e| format!("room {raw:?}: {e}")),
        None => {
            let tab = app.current_tab();
            match tab.kind {
                TabKind::Room if tab.joined => Ok(Target::Room(tab.name.clone())),
                TabKind::Room => Err(format!("you are not in #{0}: /join {0} first", tab.name)),
                TabKind::Dm => Ok(Target::Nick(tab.name.clone())),
                TabKind::Status => {
                    Err("usage: /upload PATH #ROOM|@NICK (or use it in a room or DM tab)".into())
                }
            }
        }
    }
}

/// The `upload` request of a hashed upload.
fn upload_request(t: &Transfer) -> Effect {
    let (room, to) = match &t.target {
        Some(Target::Room(room)) => (Some(room.clone()), None),
        Some(Target::Nick(nick)) => (None, Some(nick.clone())),
        None => (None, None),
    };
    Effect::Send(Request::with_id(
        t.id,
        ClientMsg::Upload {
            name: t.name.clone(),
            size: t.size,
            sha256: t.sha256.clone(),
            room,
            to,
        },
    ))
}

/// Asks for the slot of `id` again (same id: same slot), now if online, else after the
/// next `welcome`.
fn ask_slot(app: &mut App, id: Uuid, fx: &mut Vec<Effect>) {
    let online = app.online();
    if let Some(t) = app.transfer_mut(id) {
        t.state = TransferState::WaitingSlot;
        if online {
            fx.push(upload_request(t));
        }
    }
}

/// After `welcome`: every upload not yet acknowledged asks for its slot again, which
/// tells where the server is.
pub(super) fn resume(app: &mut App, fx: &mut Vec<Effect>) {
    let ids: Vec<Uuid> = app
        .transfers
        .iter()
        .filter(|t| t.direction == Direction::Up && t.is_active())
        .filter(|t| t.state != TransferState::Hashing)
        .map(|t| t.id)
        .collect();
    for id in ids {
        let running = app
            .transfer_mut(id)
            .is_some_and(|t| matches!(t.state, TransferState::Running));
        if running {
            // The HTTP side may be fine while the chat dropped: the task goes on, and the
            // slot answered is the one it uses.
            if let Some(t) = app.transfer_mut(id) {
                fx.push(upload_request(t));
            }
        } else {
            ask_slot(app, id, fx);
        }
    }
}

/// The slow clock: stalled uploads ask for their slot again when due.
pub(super) fn on_tick(app: &mut App, now_ms: i64, fx: &mut Vec<Effect>) -> bool {
    if !app.online() {
        return false;
    }
    let due: Vec<Uuid> = app
        .transfers
        .iter()
        .filter(
            |t| matches!(t.state, TransferState::Stalled { retry_at, .. } if now_ms >= retry_at),
        )
        .map(|t| t.id)
        .collect();
    for &id in &due {
        ask_slot(app, id, fx);
    }
    !due.is_empty()
}

/// `upload_slot`: start (or restart) the tus upload from the server's offset; a slot for an
/// upload whose task is running already changes nothing.
pub(super) fn on_slot(
    app: &mut App,
    id: Uuid,
    url: String,
    offset: u64,
    fx: &mut Vec<Effect>,
) -> bool {
    let Some(t) = app.transfer_mut(id) else {
        // Expected: the answer for an upload given up meanwhile.
        return false;
    };
    if !t.is_active() || t.direction != Direction::Up {
        return false;
    }
    if t.state == TransferState::Running && t.url.as_deref() == Some(url.as_str()) {
        return false;
    }
    t.url = Some(url.clone());
    t.state = TransferState::Running;
    t.restart_at(offset);
    fx.push(Effect::Upload(UploadJob {
        id,
        path: t.path.clone(),
        url,
        offset,
        size: t.size,
    }));
    true
}

/// What a transfer task reports.
pub(super) fn on_event(app: &mut App, ev: TransferEvent, fx: &mut Vec<Effect>) -> bool {
    let id = ev.id();
    let now = app.now_ms;
    let Some(t) = app.transfer_mut(id) else {
        return false;
    };
    if !t.is_active() {
        // Expected: a task's last words after the upload was refused or acknowledged.
        return false;
    }
    match ev {
        TransferEvent::Hashed { size, sha256, .. } => {
            t.size = size;
            t.sha256 = sha256;
            if size == 0 {
                let name = t.name.clone();
                t.state = TransferState::Failed {
                    error: "the file is empty".into(),
                };
                app.error(format!("{name} is empty: nothing to share"));
                return true;
            }
            ask_slot(app, id, fx);
        }
        TransferEvent::Progress { done, at_ms, .. } => {
            if done > t.done {
                t.slots_lost = 0;
            }
            if matches!(t.state, TransferState::Retrying { .. }) {
                t.state = TransferState::Running;
            }
            t.progress(at_ms, done);
        }
        TransferEvent::Retrying { reason, .. } => t.state = TransferState::Retrying { reason },
        TransferEvent::Stalled { reason, .. } => {
            t.state = TransferState::Stalled {
                reason,
                retry_at: now + STALLED_RETRY_MS,
            };
        }
        TransferEvent::SlotGone { .. } => {
            t.slots_lost += 1;
            if t.slots_lost < MAX_SLOTS_LOST {
                ask_slot(app, id, fx);
            } else {
                let url = t.url.clone().unwrap_or_default();
                fail(
                    app,
                    id,
                    format!(
                        "the server's upload link {url} answers 404 (not found), also when \
                         asked for again: is the server's --public-url right?"
                    ),
                    fx,
                );
            }
        }
        TransferEvent::Uploaded { .. } => {
            let size = t.size;
            t.progress(now, size);
            t.state = TransferState::Sharing;
        }
        TransferEvent::Saved { path, .. } => {
            let size = t.size;
            t.progress(now, size);
            let shown = path.display().to_string();
            t.path = path;
            t.state = TransferState::Done {
                detail: shown.clone(),
            };
            let name = t.name.clone();
            app.info(format!(
                "downloaded {name}: SHA-256 verified, saved as {shown}"
            ));
        }
        TransferEvent::Failed { error, .. } => fail(app, id, error, fx),
    }
    true
}

/// Ends transfer `id` with `error`: its task stopped, and the reason said.
fn fail(app: &mut App, id: Uuid, error: String, fx: &mut Vec<Effect>) {
    let Some(t) = app.transfer_mut(id) else {
        return;
    };
    let (arrow, name) = (t.arrow(), t.name.clone());
    t.state = TransferState::Failed {
        error: error.clone(),
    };
    fx.push(Effect::Cancel(id));
    app.error(format!("{arrow} {name}: {error}"));
}

/// A `message` or `dm` with `id` arrived: if it is one of our uploads, it is shared.
pub(super) fn shared(app: &mut App, id: Uuid, place: String) {
    let Some(t) = app.transfer_mut(id) else {
        return;
    };
    if t.direction != Direction::Up || !t.is_active() {
        return;
    }
    let size = t.size;
    t.done = size;
    t.state = TransferState::Done { detail: place };
}

/// An `error` whose `ref` is one of our uploads ends it; returns whether it was.
pub(super) fn on_error(
    app: &mut App,
    ref_id: Uuid,
    code: ErrorCode,
    message: &str,
    fx: &mut Vec<Effect>,
) -> bool {
    let Some(t) = app.transfer_mut(ref_id) else {
        return false;
    };
    if t.direction != Direction::Up || !t.is_active() {
        return false;
    }
    let why = match code {
        ErrorCode::FileTooLarge => format!("too large ({}): {message}", human_size(t.size)),
        ErrorCode::QuotaExceeded => format!("over your quota: {message}"),
        ErrorCode::NameInvalid => format!("the server refuses its name: {message}"),
        ErrorCode::ChecksumMismatch => {
            format!("its SHA-256 did not match (did it change while uploading?): {message}")
        }
        _ => message.to_owned(),
    };
    let name = t.name.clone();
    t.state = TransferState::Failed { error: why.clone() };
    fx.push(Effect::Cancel(ref_id));
    app.error(format!("upload of {name} failed: {why}"));
    true
}

/// `/download N|ID [DIR]`.
pub(super) fn download(app: &mut App, which: String, dir: Option<String>, fx: &mut Vec<Effect>) {
    let file = match find_file(app, &which) {
        Ok(f) => f,
        Err(e) => return app.error(e),
    };
    let dir = dir.map_or_else(|| app.download_dir.clone(), PathBuf::from);
    let busy = app.transfers.iter().any(|t| {
        t.direction == Direction::Down
            && t.is_active()
            && t.sha256 == file.sha256
            && t.name == file.name
            && t.path == dir
    });
    if busy {
        return app.error(format!("{} is being downloaded already", file.name));
    }
    let id = Uuid::now_v7();
    app.info(format!(
        "downloading {} ({}) into {}",
        file.name,
        human_size(file.size),
        dir.display()
    ));
    app.transfers
        .push(Transfer::download(id, &file, dir.clone()));
    fx.push(Effect::Download(DownloadJob { id, file, dir }));
}

/// File `N` of the scrollback, or the file with this id (or a unique start of it).
fn find_file(app: &App, which: &str) -> Result<FileInfo, String> {
    if let Ok(n) = which.parse::<usize>()
        && which.len() < 8
    {
        return match n.checked_sub(1).and_then(|i| app.files.get(i)) {
            Some(f) => Ok(f.clone()),
            None if app.files.is_empty() => Err("no file has been shared here yet".into()),
            None => Err(format!(
                "no file {n}: the scrollback shows files 1 to {}",
                app.files.len()
            )),
        };
    }
    let wanted = which.to_ascii_lowercase();
    let mut found = app.files.iter().filter(|f| f.id.starts_with(&wanted));
    match (found.next(), found.next()) {
        (Some(f), None) => Ok(f.clone()),
        (Some(_), Some(_)) => Err(format!("{which}: more than one file id starts so")),
        (None, _) => Err(format!(
            "{which}: no such file (use the number of [file N])"
        )),
    }
}

/// `/transfers`.
pub(super) fn list(app: &mut App) {
    if app.transfers.is_empty() {
        return app.info("no transfers yet: /upload PATH, /download N");
    }
    let lines: Vec<String> = app
        .transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let whither = match (&t.direction, &t.target) {
                (Direction::Up, Some(target)) => format!(" → {}", target.label()),
                _ => String::new(),
            };
            format!(
                "{} {} {}{whither}: {}",
                i + 1,
                t.arrow(),
                t.name,
                t.describe_state()
            )
        })
        .collect();
    let active = app.transfers.iter().filter(|t| t.is_active()).count();
    app.info(format!("transfers ({active} active):"));
    for line in lines {
        app.info(line);
    }
}
