//! The update: `Action` in, state change and [`Effect`]s out. Pure: no IO, no clock, no
//! randomness (message ids are the exception: `Uuid::now_v7()` for each sent message).
//!
//! This is where the client's protocol behaviour lives: acknowledging pending messages by
//! their echo, deduplicating by id, filling `seq` gaps and `lagged` holes from `history`,
//! rejoining with `since` and resending unacknowledged messages after a reconnect.
//!
//! Layout:
//! - [`Action`] and [`NetEvent`]: what happened (terminal, network, clock).
//! - [`Effect`]: what the runtime must do (send a request, quit).
//! - [`update`]: the dispatcher; below it the key, command, scroll and server-event handlers.

use std::time::Duration;

use chat_shared::validate::{Nick, RoomName, clean_text, nick_key};
use chat_shared::{
    ChatMessage, ClientMsg, DEFAULT_ROOM, ErrorCode, MAX_TEXT_LEN, Request, ServerMsg,
};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use uuid::Uuid;

use crate::app::{App, ConnState, EntryKind, MsgState, Pending, TabKind};
use crate::command::{self, COMMANDS, HELP, Input};
use crate::text::mentions;
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
    /// SIGTERM or SIGHUP: leave like `/quit`.
    Terminate,
}

/// What the network task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// Opening a connection; `attempt` counts failures since the last good connection.
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
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
            let nicks = app.current_tab().members.clone();
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
    match app.hello_retry {
        Some((due, _)) if now_ms >= due && app.conn == ConnState::Registering => {
            fx.push(hello(app));
            true
        }
        _ => false,
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
        entry_rows(entry, RowContext::of(app), w).len()
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
        Input::Join(raw) => join(app, &raw, fx),
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
    }
}

fn quit(app: &mut App, reason: Option<String>, fx: &mut Vec<Effect>) {
    app.quitting = true;
    if app.online() {
        fx.push(send(ClientMsg::Quit { reason }));
    }
    fx.push(Effect::Quit);
}

fn join(app: &mut App, raw: &str, fx: &mut Vec<Effect>) {
    let room = match RoomName::parse(raw) {
        Ok(r) => r.to_string(),
        Err(e) => return app.error(format!("room {raw:?}: {e}")),
    };
    if let Some(i) = app.room_index(&room).filter(|&i| app.tabs[i].joined) {
        return app.select(i);
    }
    if app.online() {
        app.focus_on_join = Some(room.clone());
        fx.push(send(ClientMsg::Join {
            room,
            since: None,
            key: None,
        }));
    } else {
        // Joined for real with the others once the connection is back.
        let i = app.room_tab(&room);
        app.tabs[i].joined = true;
        app.select(i);
        app.info("not connected: joining when reconnected");
    }
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
        TabKind::Room if app.online() => fx.push(send(ClientMsg::Part {
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
        NetEvent::Connecting { attempt } => app.conn = ConnState::Connecting { attempt },
        NetEvent::Connected { generation } => {
            app.conn_gen = generation;
            app.conn = ConnState::Registering;
            app.hello_retry = None;
            fx.push(hello(app));
        }
        NetEvent::Rtt(rtt) => app.rtt = Some(rtt),
        NetEvent::Disconnected { reason, retry_in } => {
            let was_up = matches!(app.conn, ConnState::Online | ConnState::Registering);
            app.conn = ConnState::Offline {
                reason: reason.clone(),
                retry_in,
            };
            app.rtt = None;
            for tab in &mut app.tabs {
                // The request died with the connection; scrolling up asks again.
                tab.loading_older = false;
            }
            if was_up && !app.quitting {
                let ts = app.now_ms;
                let text = format!("disconnected: {reason}; reconnecting");
                for tab in app.tabs.iter_mut().filter(|t| t.kind != TabKind::Dm) {
                    tab.push(ts, EntryKind::Error(text.clone()));
                }
            }
        }
        NetEvent::Message(msg) => return on_server(app, msg, fx),
    }
    true
}

fn on_server(app: &mut App, msg: ServerMsg, fx: &mut Vec<Effect>) -> bool {
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
            if app.tabs[i].insert_dm(d.id, &d.from, &d.text, d.ts) {
                let last = app.tabs[i].entries.len() - 1;
                added_below(app, i, last);
                if i != app.current {
                    app.tabs[i].unread += 1;
                    app.tabs[i].mentioned = true;
                }
            }
        }
        ServerMsg::Joined { room, nick, ts, .. } => on_joined(app, &room, &nick, ts),
        ServerMsg::Parted {
            room,
            nick,
            ts,
            reason,
        } => on_parted(app, &room, &nick, ts, reason),
        ServerMsg::NickChanged { old, new, ts } => {
            if app.is_me(&old) {
                app.nick = new.clone();
                app.info(format!("you are now {new}"));
            }
            for tab in &mut app.tabs {
                if tab.kind == TabKind::Room && tab.remove_member(&old) {
                    tab.add_member(&new);
                    tab.push(ts, EntryKind::Notice(format!("{old} is now {new}")));
                } else if tab.kind == TabKind::Dm && nick_key(&tab.name) == nick_key(&old) {
                    tab.name = new.clone();
                    tab.push(ts, EntryKind::Notice(format!("{old} is now {new}")));
                }
            }
        }
        ServerMsg::Members { room, nicks, .. } => {
            if let Some(pos) = app.who_requested.iter().position(|r| *r == room) {
                app.who_requested.remove(pos);
                app.info(format!("#{room} ({}): {}", nicks.len(), nicks.join(" ")));
            }
            if let Some(i) = app.room_index(&room) {
                app.tabs[i].set_members(nicks);
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
        } => on_error(app, code, &message, ref_id),
        ServerMsg::Bye { reason, message } => {
            if !app.quitting {
                let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
                app.error(format!(
                    "server closed the connection ({}){detail}",
                    reason.as_str()
                ));
            }
        }
        // Expected: an event type newer than this client.
        // Moderation events: shown once chat-tui learns them (issue 12).
        _ => return false,
    }
    true
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
        EntryKind::Info(format!("connected to {server} as {}", app.nick)),
    );
    if let Some(motd) = motd {
        status.push(ts, EntryKind::Info(motd));
    }
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
            tab.push(ts, EntryKind::Info("reconnected".into()));
        }
        fx.push(send(ClientMsg::Join {
            room: tab.name.clone(),
            since,
            key: None,
        }));
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
}

fn on_joined(app: &mut App, room: &str, nick: &str, ts: i64) {
    if !app.is_me(nick) {
        if let Some(i) = app.room_index(room) {
            let tab = &mut app.tabs[i];
            tab.add_member(nick);
            tab.push(ts, EntryKind::Notice(format!("{nick} joined #{room}")));
        }
        return;
    }
    let asked = app.focus_on_join.as_deref() == Some(room);
    if room == DEFAULT_ROOM && app.unwanted_lobby && !asked {
        // Expected: the automatic lobby join after a reconnect, parted again at once.
        return;
    }
    let i = app.room_tab(room);
    let tab = &mut app.tabs[i];
    let first = !tab.joined;
    tab.joined = true;
    tab.add_member(nick);
    if first {
        tab.push(ts, EntryKind::Notice(format!("you joined #{room}")));
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
    let Some(i) = app.room_index(&m.room) else {
        // Expected: a message that crossed our `part` on the wire.
        return;
    };
    let was_pending = app.pending.iter().any(|p| p.id == m.id);
    app.pending.retain(|p| p.id != m.id);
    let tab = &mut app.tabs[i];
    if tab.last_seq > 0 && m.seq > tab.last_seq + 1 && !tab.has(&m.id) {
        // A hole in the stream (lagged, or lost across a reconnect): fetch exactly it.
        let hole = m.seq - tab.last_seq - 1;
        tab.missed_after = Some(tab.last_seq);
        fx.push(send(ClientMsg::History {
            room: m.room.clone(),
            before: Some(m.id),
            limit: Some(u32::try_from(hole).unwrap_or(HISTORY_MAX).min(HISTORY_MAX)),
        }));
    }
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

fn on_error(app: &mut App, code: ErrorCode, message: &str, ref_id: Option<Uuid>) {
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

#[cfg(test)]
mod tests;
