//! The update: `Action` in, state change and [`Effect`]s out. Pure: no IO, no clock, no
//! randomness (message ids are the exception: `Uuid::now_v7()` for each sent message).
//!
//! This is where the client's protocol behaviour lives: acknowledging pending messages by
//! their echo, deduplicating by id, filling `seq` gaps and `lagged` holes from `history`,
//! rejoining with `since` and resending unacknowledged messages after a reconnect, and
//! room moderation: topics, roles, modes, kicks, bans and invitations, whose events take
//! their place in a room's stream like messages.
//!
//! Layout:
//! - [`Action`] and [`NetEvent`]: what happened (terminal, network, clock).
//! - [`Effect`]: what the runtime must do (send a request, quit, stop or resume
//!   reconnecting).
//! - [`update`]: the dispatcher; below it the key, command, scroll and server-event
//!   handlers, the moderation ones last.
//! - `files`: file sharing (`/upload`, `/download`, `/transfers`, slots, transfer events).

use std::time::Duration;

use chat_shared::validate::{Nick, RoomName, clean_text, nick_key};
use chat_shared::{
    BanEntry, ByeReason, ChatMessage, ClientMsg, DEFAULT_ROOM, ErrorCode, MAX_TEXT_LEN, ModeChange,
    Request, Role, RoomNotice, ServerBanEntry, ServerMsg,
};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use uuid::Uuid;

use crate::app::{App, ConnState, EntryKind, MsgState, Pending, Tab, TabKind, roles_from};
use crate::command::{self, ANY_NICK_COMMANDS, COMMANDS, HELP, Input, RoleChange};
use crate::text::{format_date, mentions};
use crate::transfer::{DownloadJob, TransferEvent, UploadJob};
use crate::view::{RowContext, areas, entry_rows, input_columns};

/// Rows one mouse-wheel notch scrolls.
const WHEEL_ROWS: usize = 3;

/// Messages asked for per older-history page.
const HISTORY_PAGE: u32 = 100;

/// The server's maximum `limit` for `history`.
const HISTORY_MAX: u32 = 500;

/// Longest wait between `hello` retries while our previous session still holds the nick.
const MAX_HELLO_RETRY_MS: i64 = 16_000;

/// Something that happened, fed to [`update`] by the runtime (or by a test).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A key press.
    Key(KeyEvent),
    /// Bracketed paste: the whole pasted text at once, newlines included.
    Paste(String),
    /// Mouse wheel (other mouse events are ignored).
    Mouse(MouseEvent),
    /// The terminal was resized to (columns, rows).
    Resize(u16, u16),
    /// The slow clock: current Unix milliseconds.
    Tick {
        /// Now, in Unix milliseconds.
        now_ms: i64,
    },
    /// The network task reports something.
    Net(NetEvent),
    /// A transfer task (or the hashing of a file to upload) reports something.
    Transfer(TransferEvent),
    /// SIGTERM or SIGHUP: leave like `/quit`.
    Terminate,
}

/// What the network task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// Opening a connection to `server`; `attempt` counts failures since the last good
    /// connection (of any of the servers).
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
        /// The server being dialled, as the status bar shows it.
        server: String,
    },
    /// Connected; requests tagged with `generation` go to this connection.
    Connected {
        /// Connection number.
        generation: u64,
    },
    /// An event from the server.
    Message(ServerMsg),
    /// Round-trip time of our last `ping`.
    Rtt(Duration),
    /// The connection is gone; the next attempt starts after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// Backoff.
        retry_in: Duration,
    },
}

/// Work for the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a request on the current connection (dropped if it is gone: what matters is
    /// resent after the reconnect).
    Send(Request),
    /// Leave: restore the terminal and exit.
    Quit,
    /// Do not reconnect when this connection ends, and close it: the server sent us away
    /// (killed, banned), and dialling again would be refused or would undo an admin.
    StopReconnecting,
    /// Connect now (`/reconnect`), after [`Effect::StopReconnecting`] or during a backoff.
    Reconnect,
    /// Read the file at `path` for its length and SHA-256 (off the UI task), reported as
    /// [`TransferEvent::Hashed`] or `Failed`.
    Hash {
        /// The upload.
        id: Uuid,
        /// The file, as typed (`~/` is the home directory).
        path: std::path::PathBuf,
    },
    /// Start the tus upload (replacing a task already running for the same id).
    Upload(UploadJob),
    /// Start a download.
    Download(DownloadJob),
    /// Stop the task of this transfer, if one runs.
    Cancel(Uuid),
}

fn send(msg: ClientMsg) -> Effect {
    Effect::Send(Request::new(msg))
}

/// Applies `action` to `app` and returns the work it implies. Sets `app.needs_redraw` when
/// the screen changed.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    let changed = match action {
        Action::Key(key) => on_key(app, key, &mut fx),
        Action::Paste(text) => {
            app.input.insert_str(&text);
            go_live(app);
            true
        }
        Action::Mouse(m) => on_mouse(app, m, &mut fx),
        Action::Resize(w, h) => {
            app.size = (w, h);
            true
        }
        Action::Tick { now_ms } => on_tick(app, now_ms, &mut fx),
        Action::Net(ev) => on_net(app, ev, &mut fx),
        Action::Transfer(ev) => files::on_event(app, ev, &mut fx),
        Action::Terminate => {
            quit(app, Some("terminated".into()), &mut fx);
            true
        }
    };
    if changed {
        app.input.scroll_to_cursor(input_columns(app.size.0));
        app.needs_redraw = true;
    }
    fx
}

fn on_key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) -> bool {
    if key.kind == KeyEventKind::Release {
        return false;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::Char('c') if ctrl => quit(app, None, fx),
        KeyCode::Char('a') if ctrl => app.input.home(),
        KeyCode::Char('e') if ctrl => app.input.end(),
        KeyCode::Char('w') if ctrl => app.input.delete_word(),
        KeyCode::Char('u') if ctrl => app.input.delete_to_start(),
        KeyCode::Char('n') if ctrl => next_tab(app, 1),
        KeyCode::Char('p') if ctrl => next_tab(app, app.tabs.len() - 1),
        KeyCode::Char('l') if ctrl => {}
        KeyCode::Char('j') if ctrl => match app.invite.take() {
            Some(room) => join(app, &room, None, fx),
            // Expected: nothing to accept; a stray Ctrl-J (a newline) does nothing.
            None => return false,
        },
        KeyCode::Char(c @ '1'..='9') if alt => app.select(c as usize - '1' as usize),
        KeyCode::Char(_) if ctrl || alt => return false,
        KeyCode::Char(c) => {
            app.input.insert_char(c);
            go_live(app);
        }
        KeyCode::Enter => submit(app, fx),
        KeyCode::Left => app.input.left(),
        KeyCode::Right => app.input.right(),
        KeyCode::Home => app.input.home(),
        KeyCode::End => {
            app.input.end();
            go_live(app);
        }
        KeyCode::Backspace => app.input.backspace(),
        KeyCode::Delete => app.input.delete(),
        KeyCode::Up => app.input.history_prev(),
        KeyCode::Down => app.input.history_next(),
        KeyCode::Tab => {
            let nicks = completion_nicks(app);
            return app.input.complete(COMMANDS, &nicks);
        }
        KeyCode::PageUp => {
            let page = page_rows(app);
            scroll_up(app, page, fx);
        }
        KeyCode::PageDown => {
            let page = page_rows(app);
            scroll_down(app, page);
        }
        KeyCode::Esc => go_live(app),
        KeyCode::F(2) => app.show_members = !app.show_members,
        _ => return false,
    }
    true
}

/// The nicks Tab offers for the word being typed: the room's members, but for `/unban`
/// the room's banned nicks and for commands aimed outside the room every nick we know.
fn completion_nicks(app: &App) -> Vec<String> {
    let line = app.input.text();
    let command = line
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('/') && line.len() > w.len())
        .map(str::to_lowercase);
    let tab = app.current_tab();
    match command.as_deref() {
        Some("/unban") if !tab.bans.is_empty() => tab.bans.clone(),
        Some(c) if ANY_NICK_COMMANDS.contains(&c) => {
            let mut all: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let rooms = app.tabs.iter().filter(|t| t.kind == TabKind::Room);
            let nicks = rooms.flat_map(|t| t.members.iter());
            let peers = app.tabs.iter().filter(|t| t.kind == TabKind::Dm);
            for nick in nicks.chain(peers.map(|t| &t.name)) {
                if seen.insert(nick_key(nick)) {
                    all.push(nick.clone());
                }
            }
            all
        }
        _ => tab.members.clone(),
    }
}

fn next_tab(app: &mut App, step: usize) {
    let next = (app.current + step) % app.tabs.len();
    app.select(next);
}

fn on_mouse(app: &mut App, m: MouseEvent, fx: &mut Vec<Effect>) -> bool {
    match m.kind {
        MouseEventKind::ScrollUp => scroll_up(app, WHEEL_ROWS, fx),
        MouseEventKind::ScrollDown => scroll_down(app, WHEEL_ROWS),
        // Expected: motion and clicks arrive because mouse capture is on; they do nothing.
        _ => return false,
    }
    true
}

fn on_tick(app: &mut App, now_ms: i64, fx: &mut Vec<Effect>) -> bool {
    app.now_ms = now_ms;
    // A moving transfer's ETA changes every second.
    let moving = app.transfers.iter().any(|t| t.is_active());
    let retried = files::on_tick(app, now_ms, fx);
    match app.hello_retry {
        Some((due, _)) if now_ms >= due && app.conn == ConnState::Registering => {
            fx.push(hello(app));
            true
        }
        _ => moving || retried,
    }
}

fn hello(app: &App) -> Effect {
    send(ClientMsg::Hello {
        nick: app.nick.clone(),
        version: Some(chat_shared::PROTOCOL_VERSION),
        client: Some(concat!("chat-tui ", env!("CARGO_PKG_VERSION")).into()),
        password: app.password.clone(),
    })
}

// ---------------------------------------------------------------------------------------
// Scrolling

/// Width and height of the scrollback viewport at the current terminal size.
fn body_size(app: &App) -> (usize, usize) {
    let body = areas(app, Rect::new(0, 0, app.size.0, app.size.1)).body;
    (usize::from(body.width), usize::from(body.height))
}

fn page_rows(app: &App) -> usize {
    body_size(app).1.saturating_sub(1).max(1)
}

fn go_live(app: &mut App) {
    let tab = app.current_tab_mut();
    tab.scroll = 0;
    tab.new_below = 0;
}

fn scroll_down(app: &mut App, rows: usize) {
    let tab = app.current_tab_mut();
    tab.scroll = tab.scroll.saturating_sub(rows);
    if tab.scroll == 0 {
        tab.new_below = 0;
    }
}

/// Scrolls up by `rows`, stopping at the top; reaching the top asks for an older page.
/// Counts rows only as far as needed, like the view.
fn scroll_up(app: &mut App, rows: usize, fx: &mut Vec<Effect>) {
    let (w, h) = body_size(app);
    let want = app.current_tab().scroll + rows;
    let total = {
        let ctx = RowContext::of(app);
        let mut total = 0;
        for e in app.current_tab().entries.iter().rev() {
            total += entry_rows(e, ctx, w).len();
            if total >= want + h {
                break;
            }
        }
        total
    };
    let online = app.online();
    let tab = app.current_tab_mut();
    if total >= want + h {
        tab.scroll = want;
        return;
    }
    tab.scroll = total.saturating_sub(h);
    if tab.kind != TabKind::Room || tab.loading_older || tab.history_complete || !online {
        return;
    }
    match tab.oldest_message() {
        Some((_, seq)) if seq <= 1 => tab.history_complete = true,
        Some((id, _)) => {
            tab.loading_older = true;
            fx.push(send(ClientMsg::History {
                room: tab.name.clone(),
                before: Some(id),
                limit: Some(HISTORY_PAGE),
                after: None,
            }));
        }
        // Expected: the join's history was empty, so the room has none.
        None => tab.history_complete = true,
    }
}

/// Keeps the viewport on the same lines when an entry is added below it.
fn added_below(app: &mut App, tab_index: usize, entry_index: usize) {
    let (w, _) = body_size(app);
    let rows = {
        let entry = &app.tabs[tab_index].entries[entry_index];
        entry_rows(entry, RowContext::for_tab(app, tab_index), w).len()
    };
    let tab = &mut app.tabs[tab_index];
    if tab.scroll > 0 {
        tab.scroll += rows;
        tab.new_below += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Commands

fn submit(app: &mut App, fx: &mut Vec<Effect>) {
    let line = app.input.submit();
    go_live(app);
    match command::parse(&line) {
        Ok(Some(input)) => run(app, input, fx),
        // Expected: Enter on an empty line.
        Ok(None) => {}
        Err(e) => app.error(e),
    }
}

fn run(app: &mut App, input: Input, fx: &mut Vec<Effect>) {
    match input {
        Input::Register(password) => {
            app.password_asked = Some(password.clone());
            fx.push(send(ClientMsg::Register { password }));
        }
        Input::SetPassword { old, new } => {
            // Reconnects log in with the new one once the server confirms; until then the
            // old one is still the account's.
            app.password_asked = Some(new.clone());
            fx.push(send(ClientMsg::SetPassword { old, new }));
        }
        Input::Say(_) | Input::Me(_) if !here(app) => not_here(app),
        Input::Say(text) => match app.current_tab().kind {
            TabKind::Room => {
                let room = app.current_tab().name.clone();
                say(app, room, text, false, fx);
            }
            TabKind::Dm => {
                let to = app.current_tab().name.clone();
                direct(app, to, text, fx);
            }
            TabKind::Status => app.error("this is the status tab: /join a room or /msg someone"),
        },
        Input::Me(text) => match app.current_tab().kind {
            TabKind::Room => {
                let room = app.current_tab().name.clone();
                say(app, room, text, true, fx);
            }
            _ => app.error("/me works in rooms"),
        },
        Input::Join { room, key } => join(app, &room, key, fx),
        Input::Part { room, reason } => part(app, room, reason, fx),
        Input::Nick(raw) => match Nick::parse(&raw) {
            Err(e) => app.error(format!("nick {raw:?}: {e}")),
            Ok(nick) if app.conn == ConnState::Registering => {
                app.nick = nick.to_string();
                app.hello_retry = None;
                fx.push(hello(app));
            }
            Ok(nick) if app.online() => fx.push(send(ClientMsg::Nick {
                nick: nick.to_string(),
            })),
            Ok(nick) => {
                app.nick = nick.to_string();
                app.info(format!("you will be {nick} when reconnected"));
            }
        },
        Input::Msg { to, text } => match Nick::parse(&to) {
            Err(e) => app.error(format!("nick {to:?}: {e}")),
            Ok(nick) => {
                let i = app.dm_tab(nick.as_str());
                app.select(i);
                direct(app, nick.to_string(), text, fx);
            }
        },
        Input::Who(room) => {
            let room = match room {
                Some(raw) => RoomName::parse(&raw).map(|r| r.to_string()),
                None if app.current_tab().kind == TabKind::Room => {
                    Ok(app.current_tab().name.clone())
                }
                None => return app.error("usage: /who ROOM (or use it in a room)"),
            };
            match room {
                Err(e) => app.error(format!("room: {e}")),
                Ok(_) if !app.online() => app.error("not connected"),
                Ok(room) => {
                    app.who_requested.push(room.clone());
                    fx.push(send(ClientMsg::Who { room }));
                }
            }
        }
        Input::Rooms if app.online() => fx.push(send(ClientMsg::Rooms {})),
        Input::Rooms => app.error("not connected"),
        Input::Help => {
            for line in HELP {
                app.info(*line);
            }
        }
        Input::Quit(reason) => quit(app, reason, fx),
        Input::Reconnect => reconnect(app, fx),
        Input::Topic { room, text } => topic(app, room, text, fx),
        Input::Role { room, nick, change } => {
            let usage = format!("/{} [#ROOM] NICK", change.name());
            moderate(
                app,
                room,
                Some(&nick),
                &usage,
                fx,
                |room, nick| match change {
                    RoleChange::Op => ClientMsg::Op { room, nick },
                    RoleChange::Deop => ClientMsg::Deop { room, nick },
                    RoleChange::Voice => ClientMsg::Voice { room, nick },
                    RoleChange::Devoice => ClientMsg::Devoice { room, nick },
                    RoleChange::Owner => ClientMsg::Owner { room, nick },
                },
            );
        }
        Input::Kick { room, nick, reason } => {
            let usage = "/kick [#ROOM] NICK [REASON]";
            moderate(app, room, Some(&nick), usage, fx, |room, nick| {
                ClientMsg::Kick { room, nick, reason }
            });
        }
        Input::Ban { room, nick } => {
            moderate(
                app,
                room,
                Some(&nick),
                "/ban [#ROOM] NICK",
                fx,
                |room, nick| ClientMsg::Ban { room, nick },
            );
        }
        Input::Unban { room, nick } => {
            moderate(
                app,
                room,
                Some(&nick),
                "/unban [#ROOM] NICK",
                fx,
                |room, nick| ClientMsg::Unban { room, nick },
            );
        }
        Input::Bans(room) => {
            if let Some(room) = moderate(app, room, None, "/bans [ROOM]", fx, |room, _| {
                ClientMsg::Bans { room }
            }) {
                app.bans_requested.push(room);
            }
        }
        Input::Invite { nick, room } => {
            moderate(
                app,
                room,
                Some(&nick),
                "/invite NICK [ROOM]",
                fx,
                |room, nick| ClientMsg::Invite { room, nick },
            );
        }
        Input::Mode { room, change } => mode(app, room, change, fx),
        Input::Kill { nick, reason } => match Nick::parse(&nick) {
            Err(e) => app.error(format!("nick {nick:?}: {e}")),
            Ok(nick) => request(
                app,
                fx,
                ClientMsg::Kill {
                    nick: nick.to_string(),
                    reason,
                },
            ),
        },
        Input::Kline {
            mask,
            duration_s,
            reason,
        } => request(
            app,
            fx,
            ClientMsg::ServerBan {
                mask,
                duration_s,
                reason: Some(reason),
            },
        ),
        Input::Unkline(mask) => request(app, fx, ClientMsg::ServerUnban { mask }),
        Input::Upload { path, target } => files::upload(app, path, target, fx),
        Input::Download { which, dir } => files::download(app, which, dir, fx),
        Input::Transfers => files::list(app),
        Input::Klines => {
            if app.online() {
                app.server_bans_requested = true;
            }
            request(app, fx, ClientMsg::ServerBans {});
        }
    }
}

/// Whether what is typed in the current tab has somewhere to go: not a room we were
/// kicked from or refused.
fn here(app: &App) -> bool {
    let tab = app.current_tab();
    tab.kind != TabKind::Room || tab.joined
}

fn not_here(app: &mut App) {
    let room = app.current_tab().name.clone();
    app.error(format!(
        "you are not in #{room}: /join {room} to go back in, or /part to close the tab"
    ));
}

/// Sends a request that only makes sense online.
fn request(app: &mut App, fx: &mut Vec<Effect>, msg: ClientMsg) {
    if app.online() {
        fx.push(send(msg));
    } else {
        app.error("not connected");
    }
}

/// The room a moderation command acts on: the one named (`#` optional), else the current
/// room tab, which we must be in.
fn target_room(app: &App, named: Option<String>, usage: &str) -> Result<String, String> {
    match named {
        Some(raw) => RoomName::parse(&raw)
            .map(|r| r.to_string())
            .map_err(|e| format!("room {raw:?}: {e}")),
        None => {
            let tab = app.current_tab();
            match tab.kind {
                TabKind::Room if tab.joined => Ok(tab.name.clone()),
                TabKind::Room => Err(format!("you are not in #{0}: /join {0} first", tab.name)),
                _ => Err(format!("usage: {usage} (or use it in a room tab)")),
            }
        }
    }
}

/// Checks the room and nick of a moderation command and sends what `make` builds of
/// them; returns the room when it was sent.
fn moderate(
    app: &mut App,
    room: Option<String>,
    nick: Option<&str>,
    usage: &str,
    fx: &mut Vec<Effect>,
    make: impl FnOnce(String, String) -> ClientMsg,
) -> Option<String> {
    let room = match target_room(app, room, usage) {
        Ok(room) => room,
        Err(e) => {
            app.error(e);
            return None;
        }
    };
    let nick = match nick.map(Nick::parse) {
        None => String::new(),
        Some(Ok(nick)) => nick.to_string(),
        Some(Err(e)) => {
            app.error(format!("nick {:?}: {e}", nick.unwrap_or_default()));
            return None;
        }
    };
    if !app.online() {
        app.error("not connected");
        return None;
    }
    fx.push(send(make(room.clone(), nick)));
    Some(room)
}

fn topic(app: &mut App, room: Option<String>, text: Option<String>, fx: &mut Vec<Effect>) {
    let usage = "/topic [#ROOM] [TEXT]";
    let Some(text) = text else {
        let room = match target_room(app, room, usage) {
            Ok(room) => room,
            Err(e) => return app.error(e),
        };
        let Some(i) = app.room_index(&room) else {
            return app.error(format!("not in #{room}"));
        };
        let tab = &app.tabs[i];
        let line = if tab.topic.is_empty() {
            format!("#{room} has no topic")
        } else {
            let by = match (tab.topic_by.as_str(), tab.topic_ts) {
                ("", _) => String::new(),
                (by, 0) => format!(" (set by {by})"),
                (by, ts) => format!(" (set by {by}, {})", format_date(ts, app.utc_offset_secs)),
            };
            format!("topic of #{room}: {}{by}", tab.topic)
        };
        return app.info(line);
    };
    let text = if text.is_empty() {
        text
    } else {
        match clean_text(&text, MAX_TEXT_LEN) {
            Ok(t) => t,
            Err(e) => return app.error(format!("topic: {e}")),
        }
    };
    moderate(app, room, None, usage, fx, |room, _| ClientMsg::Topic {
        room,
        text,
    });
}

fn mode(app: &mut App, room: Option<String>, change: ModeChange, fx: &mut Vec<Effect>) {
    let usage = "/mode [ROOM] +i|-i|+k KEY|-k|+m|-m|+t|-t|+s|-s";
    if !change.is_empty() {
        moderate(app, room, None, usage, fx, |room, _| ClientMsg::Mode {
            room,
            change,
        });
        return;
    }
    let room = match target_room(app, room, usage) {
        Ok(room) => room,
        Err(e) => return app.error(e),
    };
    let Some(i) = app.room_index(&room) else {
        return app.error(format!("not in #{room}"));
    };
    let modes = app.tabs[i].modes.describe();
    if modes.is_empty() {
        app.info(format!("#{room} has no modes set"));
    } else {
        app.info(format!("#{room} modes: {modes}"));
    }
}

fn reconnect(app: &mut App, fx: &mut Vec<Effect>) {
    match app.conn {
        ConnState::Online | ConnState::Registering => app.info("already connected"),
        ConnState::Connecting { .. } => app.info("already connecting"),
        ConnState::Offline { .. } | ConnState::Stopped { .. } => {
            app.hold = None;
            app.conn = ConnState::Connecting { attempt: 0 };
            app.info("reconnecting");
            fx.push(Effect::Reconnect);
        }
    }
}

fn quit(app: &mut App, reason: Option<String>, fx: &mut Vec<Effect>) {
    app.quitting = true;
    if app.online() {
        fx.push(send(ClientMsg::Quit { reason }));
    }
    fx.push(Effect::Quit);
}

fn join(app: &mut App, raw: &str, key: Option<String>, fx: &mut Vec<Effect>) {
    let room = match RoomName::parse(raw) {
        Ok(r) => r.to_string(),
        Err(e) => return app.error(format!("room {raw:?}: {e}")),
    };
    if let Some(i) = app.room_index(&room).filter(|&i| app.tabs[i].joined) {
        return app.select(i);
    }
    if app.online() {
        app.focus_on_join = Some(room.clone());
        fx.push(join_request(app, room, None, key));
    } else {
        // Joined for real with the others once the connection is back.
        let i = app.room_tab(&room);
        app.tabs[i].joined = true;
        if key.is_some() {
            // The rejoin after a reconnect gives the key the room is known to have.
            app.tabs[i].modes.key = key;
        }
        app.select(i);
        app.info("not connected: joining when reconnected");
    }
}

/// A `join` with an id, remembered until answered: a refusal names only the request.
fn join_request(app: &mut App, room: String, since: Option<u64>, key: Option<String>) -> Effect {
    let id = Uuid::now_v7();
    app.joins_in_flight.push((id, room.clone()));
    Effect::Send(Request::with_id(id, ClientMsg::Join { room, since, key }))
}

fn part(app: &mut App, room: Option<String>, reason: Option<String>, fx: &mut Vec<Effect>) {
    let index = match room {
        Some(raw) => match RoomName::parse(&raw) {
            Ok(r) => match app.room_index(r.as_str()) {
                Some(i) => i,
                None => return app.error(format!("not in #{r}")),
            },
            Err(e) => return app.error(format!("room {raw:?}: {e}")),
        },
        None => app.current,
    };
    match app.tabs[index].kind {
        TabKind::Status => app.error("the status tab cannot be closed"),
        TabKind::Dm => close_tab(app, index),
        TabKind::Room if app.online() && app.tabs[index].joined => fx.push(send(ClientMsg::Part {
            room: app.tabs[index].name.clone(),
            reason,
        })),
        TabKind::Room => close_tab(app, index),
    }
}

fn close_tab(app: &mut App, index: usize) {
    app.tabs.remove(index);
    if app.current >= index && app.current > 0 {
        app.current -= 1;
    }
    let current = app.current;
    app.select(current);
}

/// Checks text before sending; trailing blank lines (a paste ending in a newline) go.
fn outgoing_text(app: &mut App, text: &str) -> Option<String> {
    match clean_text(text.trim_end_matches(['\n', ' ']), MAX_TEXT_LEN) {
        Ok(t) => Some(t),
        Err(e) => {
            app.error(format!("not sent: {e}"));
            None
        }
    }
}

fn say(app: &mut App, room: String, text: String, action: bool, fx: &mut Vec<Effect>) {
    let Some(text) = outgoing_text(app, &text) else {
        return;
    };
    let id = Uuid::now_v7();
    let (nick, ts) = (app.nick.clone(), app.now_ms);
    app.current_tab_mut()
        .push_pending(id, &nick, &text, action, ts);
    queue(app, id, ClientMsg::Say { room, text, action }, fx);
}

fn direct(app: &mut App, to: String, text: String, fx: &mut Vec<Effect>) {
    let Some(text) = outgoing_text(app, &text) else {
        return;
    };
    let id = Uuid::now_v7();
    let (nick, ts) = (app.nick.clone(), app.now_ms);
    app.current_tab_mut()
        .push_pending(id, &nick, &text, false, ts);
    queue(app, id, ClientMsg::Dm { to, text }, fx);
}

/// Remembers a message until its echo arrives, and sends it now if possible.
fn queue(app: &mut App, id: Uuid, msg: ClientMsg, fx: &mut Vec<Effect>) {
    if app.online() {
        fx.push(Effect::Send(Request::with_id(id, msg.clone())));
    }
    app.pending.push(Pending { id, msg });
}

// ---------------------------------------------------------------------------------------
// Network events

fn on_net(app: &mut App, ev: NetEvent, fx: &mut Vec<Effect>) -> bool {
    match ev {
        // Expected while held: the network task closes what it had begun.
        NetEvent::Connecting { .. } | NetEvent::Connected { .. } if app.hold.is_some() => {
            return false;
        }
        NetEvent::Connecting { attempt, server } => {
            app.conn = ConnState::Connecting { attempt };
            app.server = server;
        }
        NetEvent::Connected { generation } => {
            app.conn_gen = generation;
            app.conn = ConnState::Registering;
            app.hello_retry = None;
            fx.push(hello(app));
        }
        NetEvent::Rtt(rtt) => app.rtt = Some(rtt),
        NetEvent::Disconnected { reason, retry_in } => {
            let was_up = matches!(app.conn, ConnState::Online | ConnState::Registering);
            app.conn = match &app.hold {
                Some(why) => ConnState::Stopped {
                    reason: why.clone(),
                },
                None => ConnState::Offline {
                    reason: reason.clone(),
                    retry_in,
                },
            };
            app.rtt = None;
            app.joins_in_flight.clear();
            for tab in &mut app.tabs {
                // The request died with the connection; scrolling up asks again.
                tab.loading_older = false;
            }
            if was_up && !app.quitting {
                let ts = app.now_ms;
                let text = match &app.hold {
                    Some(why) => {
                        format!("disconnected ({why}); not reconnecting: /reconnect to try again")
                    }
                    None => format!("disconnected: {reason}; reconnecting"),
                };
                // When held, the status tab and the visible one have said why already.
                let told = |i: usize| app.hold.is_some() && (i == 0 || i == app.current);
                let untold: Vec<usize> = (0..app.tabs.len()).filter(|&i| !told(i)).collect();
                for i in untold {
                    if app.tabs[i].kind != TabKind::Dm {
                        app.tabs[i].push(ts, EntryKind::Error(text.clone()));
                    }
                }
            }
        }
        NetEvent::Message(msg) => return on_server(app, msg, fx),
    }
    true
}

fn on_server(app: &mut App, msg: ServerMsg, fx: &mut Vec<Effect>) -> bool {
    // Live moderation events are drawn as their history form is.
    if let Some(n) = msg.to_notice() {
        on_room_event(app, &n.room, n.notice, &n.by, n.ts, place(n.seq, n.id), fx);
        return true;
    }
    match msg {
        ServerMsg::Welcome {
            nick, server, motd, ..
        } => on_welcome(app, nick, &server, motd, fx),
        ServerMsg::Message(m) => on_message(app, &m, fx),
        ServerMsg::Registered { nick } => {
            app.password = app.password_asked.take().or(app.password.take());
            app.info(format!(
                "{nick} is registered to you: next time start chat-tui with its password \
                 (--password-file, CHAT_PASSWORD or the prompt)"
            ));
        }
        ServerMsg::PasswordChanged {} => {
            app.password = app.password_asked.take().or(app.password.take());
            app.info("your password is changed");
        }
        ServerMsg::Dm(d) => {
            app.now_ms = app.now_ms.max(d.ts);
            let peer = if app.is_me(&d.from) { &d.to } else { &d.from };
            let i = app.dm_tab(peer);
            app.pending.retain(|p| p.id != d.id);
            if let Some(file) = &d.file {
                app.file_number(file);
                files::shared(app, d.id, format!("@{peer}"));
            }
            if app.tabs[i].insert_dm(d.id, &d.from, &d.text, d.ts, d.file.clone()) {
                let last = app.tabs[i].entries.len() - 1;
                added_below(app, i, last);
                if i != app.current {
                    app.tabs[i].unread += 1;
                    app.tabs[i].mentioned = true;
                }
            }
        }
        ServerMsg::Joined {
            room,
            nick,
            ts,
            role,
            ..
        } => on_joined(app, &room, &nick, ts, role),
        ServerMsg::Parted {
            room,
            nick,
            ts,
            reason,
            ..
        } => on_parted(app, &room, &nick, ts, reason),
        ServerMsg::NickChanged { old, new, ts } => {
            if app.is_me(&old) {
                app.nick = new.clone();
                app.info(format!("you are now {new}"));
            }
            for tab in &mut app.tabs {
                if tab.kind == TabKind::Room && tab.rename_member(&old, &new) {
                    tab.push(ts, EntryKind::Notice(format!("{old} is now {new}")));
                } else if tab.kind == TabKind::Dm && nick_key(&tab.name) == nick_key(&old) {
                    tab.name = new.clone();
                    tab.push(ts, EntryKind::Notice(format!("{old} is now {new}")));
                }
            }
        }
        ServerMsg::Members {
            room,
            nicks,
            ops,
            voiced,
            owner,
            ..
        } => {
            let roles = roles_from(&ops, &voiced, owner.as_deref());
            if let Some(pos) = app.who_requested.iter().position(|r| *r == room) {
                app.who_requested.remove(pos);
                let mark = |n: &str| roles.get(&nick_key(n)).map_or("", |r| r.mark());
                let marked: Vec<String> = nicks.iter().map(|n| format!("{}{n}", mark(n))).collect();
                app.info(format!("#{room} ({}): {}", nicks.len(), marked.join(" ")));
            }
            if let Some(i) = app.room_index(&room) {
                let tab = &mut app.tabs[i];
                tab.set_members(nicks);
                tab.roles = roles;
            }
        }
        ServerMsg::RoomList { rooms, .. } => {
            let list: Vec<String> = rooms
                .iter()
                .map(|r| format!("#{} ({})", r.name, r.members))
                .collect();
            app.info(format!("rooms: {}", list.join(", ")));
        }
        ServerMsg::History {
            room,
            messages,
            truncated,
        } => on_history(app, &room, &messages, truncated, fx),
        ServerMsg::Lagged { room, missed } => {
            let Some(i) = app.room_index(&room) else {
                return false;
            };
            let ts = app.now_ms;
            let tab = &mut app.tabs[i];
            // Joins and parts in the gap were skipped too: the member list is asked again.
            if missed == 0 {
                tab.push(
                    ts,
                    EntryKind::Notice("fell behind; refreshing who is here".into()),
                );
            } else {
                tab.missed_after = Some(tab.last_seq);
                tab.push(
                    ts,
                    EntryKind::Notice(format!("fell behind by {missed} messages; fetching them")),
                );
                let limit = u32::try_from(missed.saturating_add(20)).unwrap_or(HISTORY_MAX);
                fx.push(send(ClientMsg::History {
                    room: room.clone(),
                    before: None,
                    limit: Some(limit.clamp(HISTORY_PAGE, HISTORY_MAX)),
                    after: None,
                }));
            }
            fx.push(send(ClientMsg::Who { room }));
        }
        ServerMsg::Ping { token } => {
            fx.push(send(ClientMsg::Pong { token }));
            return false;
        }
        // Expected: our pings are timed by the network task; a stray pong means nothing.
        ServerMsg::Pong { .. } => return false,
        ServerMsg::Error {
            code,
            message,
            ref_id,
            ..
        } => on_error(app, code, &message, ref_id, fx),
        ServerMsg::Bye { reason, message } => on_bye(app, reason, message, fx),
        ServerMsg::Invited { room, by } => {
            app.info(format!(
                "{by} invites you to #{room}: press Ctrl-J to join (or /join {room})"
            ));
            app.invite = Some(room);
        }
        ServerMsg::BanList { room, bans } => on_ban_list(app, &room, &bans),
        ServerMsg::ServerBanList { bans } => on_server_ban_list(app, &bans),
        ServerMsg::Notice { text } => app.info(text),
        ServerMsg::UploadSlot {
            ref_id,
            url,
            offset,
            ..
        } => return files::on_slot(app, ref_id, url, offset, fx),
        // Taken apart above.
        ServerMsg::Topic { .. }
        | ServerMsg::Kicked { .. }
        | ServerMsg::Role { .. }
        | ServerMsg::Mode { .. } => {}
        // Not asked for by this client (`whois`, `away` are IRC's).
        ServerMsg::Users { .. } | ServerMsg::Away { .. } | ServerMsg::AccountChanged { .. } => {}
        // Expected: an event type newer than this client.
        ServerMsg::Unknown => return false,
    }
    true
}

/// A live event's place in its room's stream; the protocol sends `seq` and `id` together.
fn place(seq: Option<u64>, id: Option<Uuid>) -> Option<(u64, Uuid)> {
    seq.zip(id)
}

fn on_bye(app: &mut App, reason: ByeReason, message: Option<String>, fx: &mut Vec<Effect>) {
    if app.quitting {
        return;
    }
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    let (why, text) = match reason {
        ByeReason::Killed => ("killed", format!("a server admin disconnected you{detail}")),
        ByeReason::Banned => ("banned", format!("you are banned from this server{detail}")),
        // Another connection logged in to this account: redialling would take the nick
        // back, and the two would replace each other for ever.
        ByeReason::Replaced => (
            "replaced",
            format!("your account logged in from another connection{detail}"),
        ),
        _ => {
            return app.error(format!(
                "server closed the connection ({}){detail}",
                reason.as_str()
            ));
        }
    };
    // Redialling would be refused (banned), undo an admin's decision (killed) or take
    // the nick back from the other connection (replaced); a person decides when to try
    // again.
    app.hold = Some(why.to_owned());
    fx.push(Effect::StopReconnecting);
    let text = format!("{text}. Not reconnecting: /reconnect to try again");
    if app.current != 0 {
        app.tabs[0].push(app.now_ms, EntryKind::Error(text.clone()));
    }
    app.error(text);
}

fn on_welcome(
    app: &mut App,
    nick: String,
    server: &str,
    motd: Option<String>,
    fx: &mut Vec<Effect>,
) {
    let reconnect = app.welcomed_once;
    app.conn = ConnState::Online;
    app.welcomed_once = true;
    app.hello_retry = None;
    app.nick = nick;
    let ts = app.now_ms;
    let status = &mut app.tabs[0];
    status.push(
        ts,
        EntryKind::Info(format!(
            "connected to {server} at {} as {}",
            app.server, app.nick
        )),
    );
    if let Some(motd) = motd {
        status.push(ts, EntryKind::Info(motd));
    }
    let mut rejoins = Vec::new();
    for tab in app
        .tabs
        .iter_mut()
        .filter(|t| t.kind == TabKind::Room && t.joined)
    {
        let since = (tab.last_seq > 0).then_some(tab.last_seq);
        if since.is_some() {
            tab.missed_after = since;
        }
        if reconnect {
            tab.push(
                ts,
                EntryKind::Info(format!("reconnected to {}", app.server)),
            );
        }
        rejoins.push((tab.name.clone(), since, tab.modes.key.clone()));
    }
    for (room, since, key) in rejoins {
        let join = join_request(app, room, since, key);
        fx.push(join);
    }
    app.unwanted_lobby = reconnect && app.room_index(DEFAULT_ROOM).is_none();
    if app.unwanted_lobby {
        // The server puts everyone in the lobby; the user had left it.
        fx.push(send(ClientMsg::Part {
            room: DEFAULT_ROOM.into(),
            reason: None,
        }));
    }
    for p in &app.pending {
        fx.push(Effect::Send(Request::with_id(p.id, p.msg.clone())));
    }
    files::resume(app, fx);
}

fn on_joined(app: &mut App, room: &str, nick: &str, ts: i64, role: Option<Role>) {
    let role = role.unwrap_or(Role::Member);
    if !app.is_me(nick) {
        if let Some(i) = app.room_index(room) {
            let tab = &mut app.tabs[i];
            tab.add_member(nick);
            tab.set_role(nick, role);
            tab.push(ts, EntryKind::Notice(format!("{nick} joined #{room}")));
        }
        return;
    }
    app.joins_in_flight.retain(|(_, r)| r != room);
    let asked = app.focus_on_join.as_deref() == Some(room);
    if room == DEFAULT_ROOM && app.unwanted_lobby && !asked {
        // Expected: the automatic lobby join after a reconnect, parted again at once.
        return;
    }
    if app.invite.as_deref() == Some(room) {
        app.invite = None;
    }
    let i = app.room_tab(room);
    let tab = &mut app.tabs[i];
    let first = !tab.joined;
    tab.joined = true;
    tab.joining();
    tab.add_member(nick);
    tab.set_role(nick, role);
    if first {
        let seat = match role {
            Role::Owner => " as its owner",
            Role::Op => " as an op",
            Role::Voice => " with voice",
            Role::Member => "",
        };
        tab.push(ts, EntryKind::Notice(format!("you joined #{room}{seat}")));
    }
    if asked || app.current == 0 {
        app.focus_on_join = None;
        app.select(i);
    }
}

fn on_parted(app: &mut App, room: &str, nick: &str, ts: i64, reason: Option<String>) {
    if room == DEFAULT_ROOM && app.is_me(nick) {
        app.unwanted_lobby = false;
    }
    let Some(i) = app.room_index(room) else {
        return;
    };
    if app.is_me(nick) {
        close_tab(app, i);
        app.tabs[0].push(ts, EntryKind::Info(format!("you left #{room}")));
        return;
    }
    let tab = &mut app.tabs[i];
    tab.remove_member(nick);
    let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    tab.push(ts, EntryKind::Notice(format!("{nick} left #{room}{why}")));
}

fn on_message(app: &mut App, m: &ChatMessage, fx: &mut Vec<Effect>) {
    app.now_ms = app.now_ms.max(m.ts);
    if let Some(file) = &m.file {
        app.file_number(file);
        files::shared(app, m.id, format!("#{}", m.room));
    }
    let Some(i) = app.room_index(&m.room) else {
        // Expected: a message that crossed our `part` on the wire.
        return;
    };
    let was_pending = app.pending.iter().any(|p| p.id == m.id);
    app.pending.retain(|p| p.id != m.id);
    let tab = &mut app.tabs[i];
    fill_hole(tab, m.seq, m.id, fx);
    let Some(at) = tab.insert_message(m, MsgState::Normal) else {
        return;
    };
    if was_pending {
        return;
    }
    if at + 1 == tab.entries.len() {
        added_below(app, i, at);
    }
    if i != app.current {
        let me = app.nick.clone();
        let tab = &mut app.tabs[i];
        tab.unread += 1;
        if !same_nick(&me, &m.from) && mentions(&m.text, &me) {
            tab.mentioned = true;
        }
    }
}

/// A live entry of the room's stream (message or event) past a hole (lagged, or lost
/// across a reconnect): fetches exactly the hole.
fn fill_hole(tab: &mut Tab, seq: u64, id: Uuid, fx: &mut Vec<Effect>) {
    if tab.last_seq > 0 && seq > tab.last_seq + 1 && !tab.has(&id) {
        let hole = seq - tab.last_seq - 1;
        tab.missed_after = Some(tab.last_seq);
        fx.push(send(ClientMsg::History {
            room: tab.name.clone(),
            before: Some(id),
            limit: Some(u32::try_from(hole).unwrap_or(HISTORY_MAX).min(HISTORY_MAX)),
            after: None,
        }));
    }
}

fn same_nick(a: &str, b: &str) -> bool {
    nick_key(a) == nick_key(b)
}

fn on_history(
    app: &mut App,
    room: &str,
    messages: &[ChatMessage],
    truncated: bool,
    fx: &mut Vec<Effect>,
) {
    let Some(i) = app.room_index(room) else {
        // Expected: the answer for a room we left meanwhile.
        return;
    };
    for m in messages {
        if let Some(file) = &m.file {
            app.file_number(file);
            files::shared(app, m.id, format!("#{room}"));
        }
    }
    let me = app.nick.clone();
    let current = app.current;
    let mut acked = Vec::new();
    let tab = &mut app.tabs[i];
    let oldest_before = tab.oldest_message().map(|(_, s)| s);
    let older_page = tab.loading_older
        && messages
            .last()
            .is_none_or(|m| oldest_before.is_none_or(|o| m.seq < o));
    let mut missed = 0;
    for m in messages {
        if let Some(notice) = &m.event {
            history_event(tab, m, notice, older_page);
            continue;
        }
        let state = match tab.missed_after {
            Some(after) if m.seq > after => MsgState::Missed,
            _ => MsgState::Normal,
        };
        if tab.insert_message(m, state).is_some() {
            acked.push(m.id);
            if state == MsgState::Missed && !same_nick(&me, &m.from) {
                missed += 1;
                if i != current {
                    tab.unread += 1;
                    tab.mentioned |= mentions(&m.text, &me);
                }
            }
        }
    }
    if older_page {
        tab.loading_older = false;
    } else {
        tab.join_history_done();
    }
    if messages.is_empty() && older_page || tab.oldest_message().is_some_and(|(_, s)| s <= 1) {
        tab.history_complete = true;
    }
    if let (true, Some(after), Some(first)) = (truncated, tab.missed_after, messages.first())
        && !older_page
        && first.seq > after + 1
    {
        // More was missed than one answer holds: fetch the rest of the hole.
        let hole = first.seq - after - 1;
        fx.push(send(ClientMsg::History {
            room: room.to_owned(),
            before: Some(first.id),
            limit: Some(u32::try_from(hole).unwrap_or(HISTORY_MAX).min(HISTORY_MAX)),
            after: None,
        }));
    }
    if missed > 0 {
        let ts = app.now_ms;
        let noun = if missed == 1 { "message" } else { "messages" };
        tab.push(
            ts,
            EntryKind::Notice(format!("{missed} missed {noun} filled in above (marked »)")),
        );
    }
    app.pending.retain(|p| !acked.contains(&p.id));
}

/// A moderation event met in a page of history: a line at its place, drawn as what it is
/// rather than as its author saying its text. Its effect on the topic or modes is taken in
/// only when it is newer than what the tab knows (a page fetched after `lagged`): pages of
/// older history, and the join's own, are older than the topic and modes the join sent.
/// Roles and kicks are left to the `members` that follows a join or a lag.
fn history_event(tab: &mut Tab, m: &ChatMessage, notice: &RoomNotice, older_page: bool) {
    tab.insert_event(m.id, m.seq, m.ts, notice.describe(&m.from));
    match notice {
        RoomNotice::Topic { text } if !older_page && tab.is_newer_topic(m.seq) => {
            tab.set_topic(text, &m.from, m.ts, Some(m.seq));
        }
        RoomNotice::Mode(change) if !older_page && tab.is_newer_modes(m.seq) => {
            tab.set_modes(change, Some(m.seq));
        }
        _ => {}
    }
}

/// A moderation event as it arrives live: its effect on the tab (topic, modes, roles,
/// members), then its line at its place in the stream (`at`: its `seq` and id). Without a
/// place it is the room's state sent after our `joined`, not something that just happened.
fn on_room_event(
    app: &mut App,
    room: &str,
    notice: RoomNotice,
    by: &str,
    ts: i64,
    at: Option<(u64, Uuid)>,
    fx: &mut Vec<Effect>,
) {
    let seq = at.map(|(seq, _)| seq);
    app.now_ms = app.now_ms.max(ts);
    let Some(i) = app.room_index(room) else {
        // Expected: an event that crossed our `part` on the wire.
        return;
    };
    let me_kicked = matches!(&notice, RoomNotice::Kicked { nick, .. } if app.is_me(nick));
    let tab = &mut app.tabs[i];
    if let Some((seq, id)) = at {
        fill_hole(tab, seq, id, fx);
    }
    match &notice {
        RoomNotice::Topic { text } => {
            if seq.is_none() && !text.is_empty() && *text != tab.topic_announced {
                let set_by = if by.is_empty() {
                    String::new()
                } else {
                    format!(" (set by {by})")
                };
                tab.push(
                    ts,
                    EntryKind::Notice(format!("topic of #{room}: {text}{set_by}")),
                );
            }
            tab.set_topic(text, by, ts, seq);
            text.clone_into(&mut tab.topic_announced);
        }
        RoomNotice::Mode(change) => tab.set_modes(change, seq),
        RoomNotice::Role { nick, role, .. } => tab.set_role(nick, *role),
        RoomNotice::Kicked { .. } if me_kicked => tab.leave(),
        RoomNotice::Kicked { nick, .. } => {
            tab.remove_member(nick);
        }
    }
    // Without a place: the room's state after `joined`, shown above if at all.
    let line = at.and_then(|(seq, id)| tab.insert_event(id, seq, ts, notice.describe(by)));
    if let Some(line) = line
        && line + 1 == app.tabs[i].entries.len()
    {
        added_below(app, i, line);
    }
    if let RoomNotice::Kicked { reason, .. } = &notice
        && me_kicked
    {
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        let text = format!(
            "you were kicked from #{room} by {by}{why}: /join {room} to go back in, \
             /part to close the tab"
        );
        let tab = &mut app.tabs[i];
        tab.push(ts, EntryKind::Error(text));
        if i != app.current {
            tab.unread += 1;
            tab.mentioned = true;
        }
    }
}

fn on_ban_list(app: &mut App, room: &str, bans: &[BanEntry]) {
    let full = match app.bans_requested.iter().position(|r| r == room) {
        Some(pos) => {
            app.bans_requested.remove(pos);
            true
        }
        None => false,
    };
    let tab_index = app.room_index(room);
    if let Some(i) = tab_index {
        app.tabs[i].bans = bans.iter().map(|b| b.nick.clone()).collect();
    }
    let count = match bans.len() {
        0 => format!("no bans in #{room}"),
        1 => format!("1 ban in #{room}"),
        n => format!("{n} bans in #{room}"),
    };
    if !full {
        // The answer to /ban or /unban: the room's own news.
        let ts = app.now_ms;
        let i = tab_index.unwrap_or(app.current);
        app.tabs[i].push(
            ts,
            EntryKind::Info(format!("{count} now (/bans lists them)")),
        );
        return;
    }
    // Asked for: shown where it was asked.
    app.info(count);
    for b in bans {
        let when = format_date(b.ts, app.utc_offset_secs);
        app.info(format!("  {} (by {}, {when})", b.nick, b.by));
    }
}

fn on_server_ban_list(app: &mut App, bans: &[ServerBanEntry]) {
    let full = std::mem::take(&mut app.server_bans_requested);
    let count = match bans.len() {
        0 => "no server bans".to_owned(),
        1 => "1 server ban".to_owned(),
        n => format!("{n} server bans"),
    };
    if !full {
        return app.info(format!("{count} in force (/klines lists them)"));
    }
    app.info(count);
    let offset = app.utc_offset_secs;
    for b in bans {
        let until = match b.expires {
            Some(t) => format!("until {}", format_date(t, offset)),
            None => "permanent".to_owned(),
        };
        let set = format_date(b.ts, offset);
        app.info(format!(
            "  {}: {} (by {}, {set}; {until})",
            b.mask, b.reason, b.by
        ));
    }
}

/// A refused `join`: the room's tab (if any) is no longer joined, so a reconnect does not
/// try again, and the line says what would let us in.
fn join_refused(app: &mut App, room: &str, code: ErrorCode, message: &str) {
    if app.focus_on_join.as_deref() == Some(room) {
        app.focus_on_join = None;
    }
    let text = match code {
        ErrorCode::Banned => format!("you are banned from #{room}: {message}"),
        ErrorCode::InviteOnly => {
            format!("#{room} is invite-only: {message} (an op can /invite you)")
        }
        ErrorCode::BadKey => format!("#{room} needs its key: {message} (/join {room} KEY)"),
        _ => format!("cannot join #{room}: {message}"),
    };
    match app.room_index(room) {
        Some(i) => {
            app.tabs[i].leave();
            let ts = app.now_ms;
            app.tabs[i].push(ts, EntryKind::Error(text.clone()));
            if i != app.current {
                app.error(text);
            }
        }
        None => app.error(text),
    }
}

fn on_error(
    app: &mut App,
    code: ErrorCode,
    message: &str,
    ref_id: Option<Uuid>,
    fx: &mut Vec<Effect>,
) {
    let registering = app.conn == ConnState::Registering;
    if registering && code == ErrorCode::NickTaken && app.welcomed_once {
        // Most likely our own previous session, not yet noticed gone by the server.
        let attempt = app.hello_retry.map_or(0, |(_, a)| a);
        let delay = (1000_i64 << attempt.min(4)).min(MAX_HELLO_RETRY_MS);
        app.hello_retry = Some((app.now_ms + delay, attempt + 1));
        let text = format!(
            "nick {} is still taken (our previous session?); retrying in {}s",
            app.nick,
            delay / 1000
        );
        app.tabs[0].push(app.now_ms, EntryKind::Info(text.clone()));
        if app.current != 0 {
            app.info(text);
        }
        return;
    }
    if registering && matches!(code, ErrorCode::NickTaken | ErrorCode::NickInvalid) {
        return app.error(format!("{message} — choose another nick with /nick NAME"));
    }
    if registering
        && matches!(
            code,
            ErrorCode::NickRegistered | ErrorCode::AuthFailed | ErrorCode::AuthThrottled
        )
    {
        return app.error(format!(
            "{message} — restart with the password (--password-file, CHAT_PASSWORD or the \
             prompt), or choose another nick with /nick NAME"
        ));
    }
    if let Some(id) = ref_id
        && files::on_error(app, id, code, message, fx)
    {
        return;
    }
    if let Some(id) = ref_id
        && let Some(pos) = app.joins_in_flight.iter().position(|(j, _)| *j == id)
    {
        let (_, room) = app.joins_in_flight.remove(pos);
        return join_refused(app, &room, code, message);
    }
    if let Some(id) = ref_id
        && let Some(pos) = app.pending.iter().position(|p| p.id == id)
    {
        // Refused for good (rate limit, invalid text, not in room): never resend it.
        app.pending.remove(pos);
        let ts = app.now_ms;
        for tab in &mut app.tabs {
            if tab.fail_pending(id) {
                tab.push(ts, EntryKind::Error(format!("not sent: {message}")));
            }
        }
        return;
    }
    app.error(message.to_owned());
}

mod files;

#[cfg(test)]
mod tests;
