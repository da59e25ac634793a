//! The client's state: plain data, no IO, constructible in a plain `#[test]`.
//!
//! Layout:
//! - [`App`]: everything the screen shows and everything the client must remember across
//!   reconnects (rooms with their last `seq`, unacknowledged messages).
//! - [`Tab`]: one room, DM or the status tab, with its scrollback ([`Entry`]) and members.
//! - [`ConnState`] and [`Pending`]: the connection and the messages waiting for their echo.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chat_shared::validate::nick_key;
use chat_shared::{ChatMessage, ClientMsg};
use uuid::Uuid;

use crate::input::InputLine;

/// Where the connection is; shown in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the TCP connection; `attempt` counts failures since the last success.
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
    },
    /// Connected, `hello` sent, waiting for `welcome`.
    Registering,
    /// Registered: requests can flow.
    Online,
    /// The connection dropped; the network task retries after `retry_in`.
    Offline {
        /// Why, for the status bar.
        reason: String,
        /// Backoff before the next attempt.
        retry_in: Duration,
    },
}

/// What a tab shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TabKind {
    /// Connection notices, `/help`, `/rooms`: messages that belong to no room.
    Status,
    /// A room; `name` is its lowercase name.
    Room,
    /// Private messages; `name` is the other person's nick.
    Dm,
}

/// How a message is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgState {
    /// Delivered.
    Normal,
    /// Ours, sent but not yet echoed back by the server: dimmed until acknowledged.
    Pending,
    /// Said while we were away or lagging; filled in from `history`.
    Missed,
    /// Ours, refused by the server (the error is shown after it); never resent.
    Failed,
}

/// What one scrollback entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A room message or DM.
    Message {
        /// Message id, for deduplication and acknowledgement.
        id: Uuid,
        /// Room sequence number; `None` for DMs and for our pending messages.
        seq: Option<u64>,
        /// Sender.
        from: String,
        /// Text, possibly several lines.
        text: String,
        /// `/me`.
        action: bool,
        /// Pending, missed, …
        state: MsgState,
    },
    /// Joins, parts, renames: drawn dimmed.
    Notice(String),
    /// Output of `/help`, `/who`, `/rooms`, connection news.
    Info(String),
    /// Something went wrong.
    Error(String),
}

/// One scrollback entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix milliseconds: the server's `ts`, or local time for local notices.
    pub ts: i64,
    /// What it is.
    pub kind: EntryKind,
}

impl Entry {
    fn seq(&self) -> Option<u64> {
        match &self.kind {
            EntryKind::Message { seq, .. } => *seq,
            _ => None,
        }
    }

    fn is_pending(&self) -> bool {
        matches!(
            self.kind,
            EntryKind::Message {
                state: MsgState::Pending,
                ..
            }
        )
    }
}

/// A room, a DM or the status tab.
#[derive(Debug, Clone)]
pub struct Tab {
    /// Room name (lowercase), peer nick, or the server address for the status tab.
    pub name: String,
    /// What it is.
    pub kind: TabKind,
    /// Scrollback, oldest first; room messages are kept in `seq` order.
    pub entries: Vec<Entry>,
    /// Ids of the messages in `entries`, so a message is never shown twice.
    ids: HashSet<Uuid>,
    /// Room `seq`s in `entries` and their message ids. A known `seq` arriving with another
    /// id means the server's numbering restarted (a restart without stored history).
    seqs: HashMap<u64, Uuid>,
    /// Room members, sorted case-insensitively.
    pub members: Vec<String>,
    /// Messages since the tab was last looked at.
    pub unread: usize,
    /// Whether an unread message mentions us.
    pub mentioned: bool,
    /// Rows scrolled up from the live bottom; 0 = live.
    pub scroll: usize,
    /// Messages that arrived below the viewport while scrolled up.
    pub new_below: usize,
    /// Whether we are a member (rooms only): rejoined after a reconnect.
    pub joined: bool,
    /// Highest `seq` seen: `since` on rejoin and the baseline for gap detection.
    pub last_seq: u64,
    /// Messages that arrive through `history` with a `seq` above this were said while we
    /// were away (reconnect) or lagging, and are marked [`MsgState::Missed`].
    pub missed_after: Option<u64>,
    /// An older page was requested; don't ask again until it arrives.
    pub loading_older: bool,
    /// Nothing older exists on the server.
    pub history_complete: bool,
}

impl Tab {
    /// An empty tab.
    pub fn new(name: impl Into<String>, kind: TabKind) -> Self {
        Self {
            name: name.into(),
            kind,
            entries: Vec::new(),
            ids: HashSet::new(),
            seqs: HashMap::new(),
            members: Vec::new(),
            unread: 0,
            mentioned: false,
            scroll: 0,
            new_below: 0,
            joined: false,
            last_seq: 0,
            missed_after: None,
            loading_older: false,
            history_complete: false,
        }
    }

    /// Whether a message with this id is already shown.
    pub fn has(&self, id: &Uuid) -> bool {
        self.ids.contains(id)
    }

    /// Appends a non-message entry.
    pub fn push(&mut self, ts: i64, kind: EntryKind) {
        self.entries.push(Entry { ts, kind });
    }

    /// Adds our own message before the server has it, dimmed until acknowledged.
    pub fn push_pending(&mut self, id: Uuid, from: &str, text: &str, action: bool, ts: i64) {
        self.ids.insert(id);
        self.push(
            ts,
            EntryKind::Message {
                id,
                seq: None,
                from: from.to_owned(),
                text: text.to_owned(),
                action,
                state: MsgState::Pending,
            },
        );
    }

    /// Inserts a room message at its `seq` position. Returns the index it went to, or `None`
    /// when a message with that id is already shown (a duplicate from overlapping history).
    ///
    /// A pending entry with the same id is our own message coming back: it is moved to its
    /// place and stops being pending.
    pub fn insert_message(&mut self, m: &ChatMessage, state: MsgState) -> Option<usize> {
        if self.ids.contains(&m.id) {
            let pending_at = self.entries.iter().rposition(|e| {
                e.is_pending() && matches!(&e.kind, EntryKind::Message { id, .. } if *id == m.id)
            })?;
            self.entries.remove(pending_at);
            self.ids.remove(&m.id);
            let state = match state {
                MsgState::Missed => MsgState::Normal,
                s => s,
            };
            return self.insert_message(m, state);
        }
        if self.seqs.contains_key(&m.seq) {
            self.reset_numbering(m.ts);
        }
        // Go before pending entries and later messages, and stop at the first earlier
        // message; notices in between stay where they are. Live messages stop at once.
        let mut at = self.entries.len();
        for (i, e) in self.entries.iter().enumerate().rev() {
            match e.seq() {
                Some(s) if s < m.seq => break,
                Some(_) => at = i,
                None if e.is_pending() => at = i,
                None => {}
            }
        }
        self.ids.insert(m.id);
        self.seqs.insert(m.seq, m.id);
        self.last_seq = self.last_seq.max(m.seq);
        self.entries.insert(
            at,
            Entry {
                ts: m.ts,
                kind: EntryKind::Message {
                    id: m.id,
                    seq: Some(m.seq),
                    from: m.from.clone(),
                    text: m.text.clone(),
                    action: m.action,
                    state,
                },
            },
        );
        Some(at)
    }

    /// Forgets the `seq`s of what is shown: they belong to a numbering the server no longer
    /// uses. The old messages stay, in place, and order no longer depends on them; new ones
    /// follow them.
    fn reset_numbering(&mut self, ts: i64) {
        for e in &mut self.entries {
            if let EntryKind::Message { seq, .. } = &mut e.kind {
                *seq = None;
            }
        }
        self.seqs.clear();
        self.last_seq = 0;
        self.missed_after = None;
        self.history_complete = false;
        self.push(
            ts,
            EntryKind::Notice("the server restarted its message numbering".into()),
        );
    }

    /// Appends a DM (DMs have no `seq`: arrival order), or acknowledges our pending copy.
    /// Returns whether it is new.
    pub fn insert_dm(&mut self, id: Uuid, from: &str, text: &str, ts: i64) -> bool {
        if self.ids.contains(&id) {
            for e in self.entries.iter_mut().rev() {
                if let EntryKind::Message { id: eid, state, .. } = &mut e.kind
                    && *eid == id
                    && *state == MsgState::Pending
                {
                    *state = MsgState::Normal;
                    e.ts = ts;
                }
            }
            return false;
        }
        self.ids.insert(id);
        self.push(
            ts,
            EntryKind::Message {
                id,
                seq: None,
                from: from.to_owned(),
                text: text.to_owned(),
                action: false,
                state: MsgState::Normal,
            },
        );
        true
    }

    /// Marks our pending message as refused by the server.
    pub fn fail_pending(&mut self, id: Uuid) -> bool {
        for e in self.entries.iter_mut().rev() {
            if let EntryKind::Message { id: eid, state, .. } = &mut e.kind
                && *eid == id
                && *state == MsgState::Pending
            {
                *state = MsgState::Failed;
                return true;
            }
        }
        false
    }

    /// The oldest message with a `seq`: the `before` of the next history page.
    pub fn oldest_message(&self) -> Option<(Uuid, u64)> {
        self.entries.iter().find_map(|e| match &e.kind {
            EntryKind::Message {
                id, seq: Some(s), ..
            } => Some((*id, *s)),
            _ => None,
        })
    }

    /// Replaces the member list.
    pub fn set_members(&mut self, mut nicks: Vec<String>) {
        nicks.sort_by_key(|n| nick_key(n));
        self.members = nicks;
    }

    /// Adds a member (joins).
    pub fn add_member(&mut self, nick: &str) {
        let key = nick_key(nick);
        if !self.members.iter().any(|m| nick_key(m) == key) {
            self.members.push(nick.to_owned());
            self.members.sort_by_key(|n| nick_key(n));
        }
    }

    /// Removes a member (parts); returns whether they were one.
    pub fn remove_member(&mut self, nick: &str) -> bool {
        let key = nick_key(nick);
        let before = self.members.len();
        self.members.retain(|m| nick_key(m) != key);
        self.members.len() != before
    }
}

/// A message sent but not yet acknowledged: resent with the same id after a reconnect, so
/// the server's deduplication makes the resend harmless.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The message id (also the request id).
    pub id: Uuid,
    /// The `say` or `dm`.
    pub msg: ClientMsg,
}

/// The whole client state.
#[derive(Debug, Clone)]
pub struct App {
    /// Our nick: the one asked for until `welcome`, then the server's spelling.
    pub nick: String,
    /// Server address, for the status bar.
    pub server: String,
    /// Connection state, for the status bar and to know whether requests can be sent.
    pub conn: ConnState,
    /// Number of the current connection; requests are tagged with it so none is written to a
    /// newer connection before its `hello`.
    pub conn_gen: u64,
    /// Round-trip time of the last `ping`.
    pub rtt: Option<Duration>,
    /// Tabs in display order; index 0 is the status tab.
    pub tabs: Vec<Tab>,
    /// Index of the visible tab.
    pub current: usize,
    /// The input line.
    pub input: InputLine,
    /// Whether the member list is shown (F2).
    pub show_members: bool,
    /// Local time zone as an offset; a field (not a global) so tests can pin it to UTC.
    pub utc_offset_secs: i32,
    /// Current time in Unix milliseconds, advanced by ticks; stamps local entries.
    pub now_ms: i64,
    /// Terminal size (columns, rows), for scrolling by pages and keeping the view steady.
    pub size: (u16, u16),
    /// Sent `say`/`dm` requests waiting for their echo, oldest first.
    pub pending: Vec<Pending>,
    /// Whether we were ever welcomed: a `nick_taken` on a reconnect is then most likely our
    /// own previous session that the server has not noticed is gone, and worth retrying.
    pub welcomed_once: bool,
    /// When to send `hello` again after `nick_taken` on a reconnect, and how many times it
    /// was tried.
    pub hello_retry: Option<(i64, u32)>,
    /// A room the user asked to `/join`: switch to it when the server confirms.
    pub focus_on_join: Option<String>,
    /// Rooms whose `members` answer should be printed (`/who`), not only stored.
    pub who_requested: Vec<String>,
    /// After a reconnect the user had left the lobby, which the server joins everyone to:
    /// its automatic `joined` is ignored until our `part` is confirmed.
    pub unwanted_lobby: bool,
    /// The user asked to quit: the next `bye` or disconnect is expected.
    pub quitting: bool,
    /// Whether the screen must be redrawn; cleared by the runtime after drawing.
    pub needs_redraw: bool,
    /// The nick's password, sent with every `hello` (reconnects too). Only in memory:
    /// never written to disk, to the input history or to the screen.
    pub password: Option<chat_shared::Password>,
    /// A password sent with `/register` or `/password`, which becomes `password` once the
    /// server confirms it (so a reconnect logs in with it). Memory only, like `password`.
    pub password_asked: Option<chat_shared::Password>,
}

impl App {
    /// A fresh client for `nick` at `server`, not yet connected.
    pub fn new(nick: impl Into<String>, server: impl Into<String>) -> Self {
        let server = server.into();
        Self {
            nick: nick.into(),
            tabs: vec![Tab::new(server.clone(), TabKind::Status)],
            server,
            conn: ConnState::Connecting { attempt: 0 },
            conn_gen: 0,
            rtt: None,
            current: 0,
            input: InputLine::default(),
            show_members: true,
            utc_offset_secs: 0,
            now_ms: 0,
            size: (80, 24),
            pending: Vec::new(),
            welcomed_once: false,
            hello_retry: None,
            focus_on_join: None,
            who_requested: Vec::new(),
            unwanted_lobby: false,
            quitting: false,
            needs_redraw: true,
            password: None,
            password_asked: None,
        }
    }

    /// The visible tab.
    pub fn current_tab(&self) -> &Tab {
        &self.tabs[self.current]
    }

    /// The visible tab, mutably.
    pub fn current_tab_mut(&mut self) -> &mut Tab {
        &mut self.tabs[self.current]
    }

    /// Index of a room's tab (`name` already lowercase).
    pub fn room_index(&self, name: &str) -> Option<usize> {
        self.tabs
            .iter()
            .position(|t| t.kind == TabKind::Room && t.name == name)
    }

    /// Index of the DM tab with `nick` (case-insensitive).
    pub fn dm_index(&self, nick: &str) -> Option<usize> {
        let key = nick_key(nick);
        self.tabs
            .iter()
            .position(|t| t.kind == TabKind::Dm && nick_key(&t.name) == key)
    }

    /// The room's tab, created (after the last room tab) when missing.
    pub fn room_tab(&mut self, name: &str) -> usize {
        if let Some(i) = self.room_index(name) {
            return i;
        }
        self.tabs.push(Tab::new(name, TabKind::Room));
        self.tabs.len() - 1
    }

    /// The DM tab with `nick`, created when missing.
    pub fn dm_tab(&mut self, nick: &str) -> usize {
        if let Some(i) = self.dm_index(nick) {
            return i;
        }
        self.tabs.push(Tab::new(nick, TabKind::Dm));
        self.tabs.len() - 1
    }

    /// Whether `nick` is us.
    pub fn is_me(&self, nick: &str) -> bool {
        nick_key(nick) == nick_key(&self.nick)
    }

    /// Whether requests other than `hello` may be sent now.
    pub fn online(&self) -> bool {
        self.conn == ConnState::Online
    }

    /// Shows an informational line in the visible tab.
    pub fn info(&mut self, text: impl Into<String>) {
        let ts = self.now_ms;
        self.current_tab_mut()
            .push(ts, EntryKind::Info(text.into()));
    }

    /// Shows an error in the visible tab.
    pub fn error(&mut self, text: impl Into<String>) {
        let ts = self.now_ms;
        self.current_tab_mut()
            .push(ts, EntryKind::Error(text.into()));
    }

    /// Switches tabs, clearing the new tab's unread marks.
    pub fn select(&mut self, index: usize) {
        if index < self.tabs.len() {
            self.current = index;
            let tab = &mut self.tabs[index];
            tab.unread = 0;
            tab.mentioned = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, text: &str) -> ChatMessage {
        ChatMessage {
            event: None,
            id: Uuid::now_v7(),
            room: "lobby".into(),
            seq,
            from: "bob".into(),
            text: text.into(),
            ts: seq as i64 * 1000,
            action: false,
        }
    }

    fn texts(tab: &Tab) -> Vec<String> {
        tab.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Message { text, .. } => text.clone(),
                EntryKind::Notice(t) | EntryKind::Info(t) | EntryKind::Error(t) => {
                    format!("-- {t}")
                }
            })
            .collect()
    }

    #[test]
    fn messages_are_ordered_by_seq_and_never_duplicated() {
        let mut tab = Tab::new("lobby", TabKind::Room);
        let (m1, m2, m3) = (msg(1, "one"), msg(2, "two"), msg(3, "three"));
        tab.insert_message(&m3, MsgState::Normal);
        tab.insert_message(&m1, MsgState::Normal);
        tab.push(0, EntryKind::Notice("bob joined".into()));
        tab.insert_message(&m2, MsgState::Normal);
        assert_eq!(tab.insert_message(&m2, MsgState::Normal), None);
        assert_eq!(texts(&tab), ["one", "two", "three", "-- bob joined"]);
        // A gap fill goes before later messages but after what precedes it.
        let mut tab = Tab::new("lobby", TabKind::Room);
        tab.insert_message(&m1, MsgState::Normal);
        tab.insert_message(&m3, MsgState::Normal);
        tab.insert_message(&m2, MsgState::Missed);
        assert_eq!(texts(&tab), ["one", "two", "three"]);
        assert_eq!(tab.last_seq, 3);
    }

    #[test]
    fn a_known_seq_with_a_new_id_means_the_numbering_restarted() {
        let mut tab = Tab::new("lobby", TabKind::Room);
        tab.insert_message(&msg(1, "one"), MsgState::Normal);
        tab.insert_message(&msg(2, "two"), MsgState::Normal);
        // The server restarted without stored history: seq 1 again, another message.
        assert!(
            tab.insert_message(&msg(1, "after restart"), MsgState::Normal)
                .is_some()
        );
        tab.insert_message(&msg(2, "and more"), MsgState::Normal);
        assert_eq!(
            texts(&tab),
            [
                "one",
                "two",
                "-- the server restarted its message numbering",
                "after restart",
                "and more"
            ]
        );
        assert_eq!(tab.last_seq, 2);
    }

    #[test]
    fn acknowledged_pending_message_moves_to_its_seq() {
        let mut tab = Tab::new("lobby", TabKind::Room);
        let mine = msg(2, "mine");
        tab.insert_message(&msg(1, "one"), MsgState::Normal);
        tab.push_pending(mine.id, "alice", "mine", false, 0);
        tab.insert_message(&msg(3, "three"), MsgState::Normal);
        assert_eq!(
            texts(&tab),
            ["one", "three", "mine"],
            "pending stays at the bottom"
        );
        assert_eq!(tab.insert_message(&mine, MsgState::Normal), Some(1));
        assert_eq!(texts(&tab), ["one", "mine", "three"]);
        assert!(!tab.entries.iter().any(Entry::is_pending));
    }
}
