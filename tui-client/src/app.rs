//! The client's state: plain data, no IO, constructible in a plain `#[test]`.
//!
//! Layout:
//! - [`App`]: everything the screen shows and everything the client must remember across
//!   reconnects (rooms with their last `seq`, unacknowledged messages).
//! - [`Tab`]: one room, DM or the status tab, with its scrollback ([`Entry`]), members and
//!   their roles, and a room's topic and [`Modes`].
//! - [`ConnState`] and [`Pending`]: the connection and the messages waiting for their echo.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chat_shared::message::FileInfo;
use chat_shared::validate::nick_key;
use chat_shared::{ChatMessage, ClientMsg, ModeChange, Role};
use uuid::Uuid;

use crate::input::InputLine;
use crate::transfer::Transfer;

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
    /// The server sent us away for good (killed, banned): redialling would only be
    /// refused again, or undo an admin's decision, so nothing happens until `/reconnect`.
    Stopped {
        /// Why, for the status bar.
        reason: String,
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
        /// The file it shares, drawn instead of the text with its `/download` number.
        file: Option<Box<FileInfo>>,
    },
    /// Joins, parts, renames: drawn dimmed.
    Notice(String),
    /// A moderation event of a room's stream (topic, kick, role, mode), live or from
    /// history. It has a place in the stream like a message, so it is ordered and
    /// deduplicated like one, and a page of history never shows it twice.
    Event {
        /// The event's id.
        id: Uuid,
        /// Its `seq`; `None` once the server's numbering restarted.
        seq: Option<u64>,
        /// What happened, for people.
        text: String,
    },
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
            EntryKind::Message { seq, .. } | EntryKind::Event { seq, .. } => *seq,
            _ => None,
        }
    }

    fn id(&self) -> Option<Uuid> {
        match &self.kind {
            EntryKind::Message { id, .. } | EntryKind::Event { id, .. } => Some(*id),
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

/// A room's modes as far as we know them: all off until the server says otherwise (a
/// server without moderation never does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modes {
    /// `+i`: joining needs an invitation.
    pub invite_only: bool,
    /// `+k`: members are told the key, and a rejoin after a reconnect needs it.
    pub key: Option<String>,
    /// `+m`: only voiced members and ops may speak.
    pub moderated: bool,
    /// `+t`: only ops may set the topic.
    pub topic_locked: bool,
    /// `+s`: left out of `/rooms`.
    pub secret: bool,
}

impl Modes {
    /// Takes in what a `mode` event says changed (or, after `joined`, everything).
    pub fn apply(&mut self, change: &ModeChange) {
        let set = |field: &mut bool, value: Option<bool>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut self.invite_only, change.invite_only);
        set(&mut self.moderated, change.moderated);
        set(&mut self.topic_locked, change.topic_locked);
        set(&mut self.secret, change.secret);
        if let Some(key) = &change.key {
            self.key.clone_from(key);
        }
    }

    /// The modes that are on, as a change from nothing: what `ModeChange::describe` spells.
    fn as_change(&self) -> ModeChange {
        let on = |b: bool| b.then_some(true);
        ModeChange {
            invite_only: on(self.invite_only),
            key: self.key.clone().map(Some),
            moderated: on(self.moderated),
            topic_locked: on(self.topic_locked),
            secret: on(self.secret),
        }
    }

    /// IRC's spelling with the key (`+kt KEY`), empty when none is on: for `/mode`.
    pub fn describe(&self) -> String {
        self.as_change().describe()
    }

    /// The letters only (`+kt`), for the status bar, where a key would be read over a
    /// shoulder.
    pub fn flags(&self) -> String {
        let letters: String = [
            (self.invite_only, 'i'),
            (self.key.is_some(), 'k'),
            (self.moderated, 'm'),
            (self.secret, 's'),
            (self.topic_locked, 't'),
        ]
        .into_iter()
        .filter_map(|(on, letter)| on.then_some(letter))
        .collect();
        if letters.is_empty() {
            letters
        } else {
            format!("+{letters}")
        }
    }
}

/// The `seq` a room's topic or modes are known as of, before the join's own history has
/// arrived: that history is older than what `joined` was followed by.
const AT_JOIN: u64 = u64::MAX;

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
    /// Members' roles above `member`, by nick identity (`nick_key`).
    pub roles: HashMap<String, Role>,
    /// The room's topic; empty: none.
    pub topic: String,
    /// Who set the topic.
    pub topic_by: String,
    /// When the topic was set (Unix milliseconds; 0: unknown).
    pub topic_ts: i64,
    /// The topic the tab last told of in a line: the current topic sent after each
    /// `joined` is shown only when it is news (the first join, or changed while away).
    pub topic_announced: String,
    /// The room's modes.
    pub modes: Modes,
    /// The room's banned nicks as last listed, for completing `/unban`.
    pub bans: Vec<String>,
    /// The `seq` of the last topic event taken in ([`AT_JOIN`] between `joined` and its
    /// history): an older one, met in a page of history, must not undo a newer topic.
    topic_seq: u64,
    /// The same for mode events.
    modes_seq: u64,
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
            roles: HashMap::new(),
            topic: String::new(),
            topic_by: String::new(),
            topic_ts: 0,
            topic_announced: String::new(),
            modes: Modes::default(),
            bans: Vec::new(),
            topic_seq: 0,
            modes_seq: 0,
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
                file: None,
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
        let kind = EntryKind::Message {
            id: m.id,
            seq: Some(m.seq),
            from: m.from.clone(),
            text: m.text.clone(),
            action: m.action,
            state,
            file: m.file.clone(),
        };
        Some(self.place(m.id, m.seq, m.ts, kind))
    }

    /// Inserts a moderation event at its `seq` position, like a message; `None` when it is
    /// already shown (it came live and again in a page of history, or the other way round).
    pub fn insert_event(&mut self, id: Uuid, seq: u64, ts: i64, text: String) -> Option<usize> {
        if self.ids.contains(&id) {
            return None;
        }
        let kind = EntryKind::Event {
            id,
            seq: Some(seq),
            text,
        };
        Some(self.place(id, seq, ts, kind))
    }

    /// Puts an entry of the room's stream at its `seq` position and records it.
    fn place(&mut self, id: Uuid, seq: u64, ts: i64, kind: EntryKind) -> usize {
        if self.seqs.contains_key(&seq) {
            self.reset_numbering(ts);
        }
        // Go before pending entries and later messages, and stop at the first earlier
        // message; notices in between stay where they are. Live messages stop at once.
        let mut at = self.entries.len();
        for (i, e) in self.entries.iter().enumerate().rev() {
            match e.seq() {
                Some(s) if s < seq => break,
                Some(_) => at = i,
                None if e.is_pending() => at = i,
                None => {}
            }
        }
        self.ids.insert(id);
        self.seqs.insert(seq, id);
        self.last_seq = self.last_seq.max(seq);
        self.entries.insert(at, Entry { ts, kind });
        at
    }

    /// Forgets the `seq`s of what is shown: they belong to a numbering the server no longer
    /// uses. The old messages stay, in place, and order no longer depends on them; new ones
    /// follow them.
    fn reset_numbering(&mut self, ts: i64) {
        for e in &mut self.entries {
            if let EntryKind::Message { seq, .. } | EntryKind::Event { seq, .. } = &mut e.kind {
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
    pub fn insert_dm(
        &mut self,
        id: Uuid,
        from: &str,
        text: &str,
        ts: i64,
        file: Option<Box<FileInfo>>,
    ) -> bool {
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
                file,
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

    /// The oldest entry of the room's stream with a `seq`, message or moderation event:
    /// the `before` of the next history page (history holds events as messages, by id).
    pub fn oldest_message(&self) -> Option<(Uuid, u64)> {
        self.entries.iter().find_map(|e| Some((e.id()?, e.seq()?)))
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

    /// Removes a member (parts, kicks) and their role; returns whether they were one.
    pub fn remove_member(&mut self, nick: &str) -> bool {
        let key = nick_key(nick);
        self.roles.remove(&key);
        let before = self.members.len();
        self.members.retain(|m| nick_key(m) != key);
        self.members.len() != before
    }

    /// Renames a member, who keeps their role; returns whether they were one.
    pub fn rename_member(&mut self, old: &str, new: &str) -> bool {
        let role = self.role(old);
        if !self.remove_member(old) {
            return false;
        }
        self.add_member(new);
        self.set_role(new, role);
        true
    }

    /// A member's role (`Member` for anyone not known to have more).
    pub fn role(&self, nick: &str) -> Role {
        self.roles
            .get(&nick_key(nick))
            .copied()
            .unwrap_or(Role::Member)
    }

    /// Records a member's new role.
    pub fn set_role(&mut self, nick: &str, role: Role) {
        if role == Role::Member {
            self.roles.remove(&nick_key(nick));
        } else {
            self.roles.insert(nick_key(nick), role);
        }
    }

    /// Replaces every role with what a `members` answer lists.
    pub fn set_roles(&mut self, ops: &[String], voiced: &[String], owner: Option<&str>) {
        self.roles = roles_from(ops, voiced, owner);
    }

    /// We are no longer a member (kicked, or a rejoin refused): the tab stays, with what
    /// it showed, but nobody is listed as here and a reconnect does not rejoin it.
    pub fn leave(&mut self) {
        self.joined = false;
        self.members.clear();
        self.roles.clear();
    }

    /// Our own `joined` arrived: what follows it (topic, modes, history) is the room as it
    /// is now, so what we knew is forgotten, and the join's history must not replay older
    /// topics or modes over it.
    pub fn joining(&mut self) {
        self.topic.clear();
        self.topic_by.clear();
        self.topic_ts = 0;
        self.modes = Modes::default();
        self.topic_seq = AT_JOIN;
        self.modes_seq = AT_JOIN;
    }

    /// Sets the topic. `seq` is the event's (`None`: the current topic, sent after
    /// `joined`); a live event is always the newest, a page's only if
    /// [`Tab::is_newer_topic`] says so.
    pub fn set_topic(&mut self, text: &str, by: &str, ts: i64, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.topic_seq = seq;
        }
        text.clone_into(&mut self.topic);
        by.clone_into(&mut self.topic_by);
        self.topic_ts = ts;
    }

    /// Applies a mode change, as [`Tab::set_topic`] sets the topic.
    pub fn set_modes(&mut self, change: &ModeChange, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.modes_seq = seq;
        }
        self.modes.apply(change);
    }

    /// A page of history arrived that was not an older page: if it was the join's, the
    /// topic and modes the join told us are as of its newest `seq`, and later pages' events
    /// are compared with that.
    pub fn join_history_done(&mut self) {
        for s in [&mut self.topic_seq, &mut self.modes_seq] {
            if *s == AT_JOIN {
                *s = self.last_seq;
            }
        }
    }

    /// Whether a topic event met in a page of history with this `seq` is newer than the
    /// topic shown (a page fetched after `lagged`), so it is taken in.
    pub fn is_newer_topic(&self, seq: u64) -> bool {
        self.topic_seq != AT_JOIN && seq > self.topic_seq
    }

    /// The same for a mode event and the modes.
    pub fn is_newer_modes(&self, seq: u64) -> bool {
        self.modes_seq != AT_JOIN && seq > self.modes_seq
    }
}

/// The roles a `members` answer lists, by nick identity. `ops` includes the owner, who is
/// told apart by `owner`; a nick listed twice keeps the higher role.
pub fn roles_from(ops: &[String], voiced: &[String], owner: Option<&str>) -> HashMap<String, Role> {
    let mut roles = HashMap::new();
    let lists = [(voiced, Role::Voice), (ops, Role::Op)];
    for (nicks, role) in lists {
        for nick in nicks {
            roles.insert(nick_key(nick), role);
        }
    }
    if let Some(owner) = owner {
        roles.insert(nick_key(owner), Role::Owner);
    }
    roles
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
    /// The server being dialled or connected to (one of `--server`'s), for the status bar.
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
    /// Rooms whose `ban_list` should be printed in full (`/bans`); the answers to `/ban`
    /// and `/unban` are lists too, and only counted.
    pub bans_requested: Vec<String>,
    /// Whether a `server_ban_list` should be printed in full (`/klines`).
    pub server_bans_requested: bool,
    /// Our `join` requests not yet answered, by request id: a refusal (`banned`,
    /// `invite_only`, `bad_key`) names no room, only the request.
    pub joins_in_flight: Vec<(Uuid, String)>,
    /// The room of the last invitation we got, joined with one key (Ctrl-J).
    pub invite: Option<String>,
    /// Why we stopped reconnecting (killed, banned), from the `bye` until `/reconnect`.
    pub hold: Option<String>,
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
    /// Uploads and downloads, oldest first: the active ones and those that ended this
    /// session (`/transfers`).
    pub transfers: Vec<Transfer>,
    /// Every shared file seen, in order of appearance: file `N` of `/download N` is
    /// `files[N - 1]`.
    pub files: Vec<FileInfo>,
    /// File id → its number, so a file seen again (history overlap, in two rooms) keeps it.
    pub file_numbers: HashMap<String, usize>,
    /// Where `/download` puts files without a DIR (`--download-dir`, else the current
    /// directory).
    pub download_dir: std::path::PathBuf,
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
            bans_requested: Vec::new(),
            server_bans_requested: false,
            joins_in_flight: Vec::new(),
            invite: None,
            hold: None,
            unwanted_lobby: false,
            quitting: false,
            needs_redraw: true,
            password: None,
            password_asked: None,
            transfers: Vec::new(),
            files: Vec::new(),
            file_numbers: HashMap::new(),
            download_dir: std::path::PathBuf::from("."),
        }
    }

    /// The `/download` number of a shared file, given one when first seen.
    pub fn file_number(&mut self, file: &FileInfo) -> usize {
        if let Some(&n) = self.file_numbers.get(&file.id) {
            return n;
        }
        self.files.push(file.clone());
        let n = self.files.len();
        self.file_numbers.insert(file.id.clone(), n);
        n
    }

    /// The transfer with this id.
    pub fn transfer_mut(&mut self, id: uuid::Uuid) -> Option<&mut Transfer> {
        self.transfers.iter_mut().find(|t| t.id == id)
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
            file: None,
            account: false,
        }
    }

    fn texts(tab: &Tab) -> Vec<String> {
        tab.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Message { text, .. } => text.clone(),
                EntryKind::Notice(t)
                | EntryKind::Info(t)
                | EntryKind::Error(t)
                | EntryKind::Event { text: t, .. } => format!("-- {t}"),
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
