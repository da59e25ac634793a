//! One client's session, independent of its wire format.
//!
//! A session registers its client (`hello` or the nick line), then runs one loop over four
//! sources: the client's requests, its rooms' broadcasts, its private mailbox (DMs, rename
//! notices) and the server's shutdown signal. Everything it sends goes through the [`Wire`]
//! adapter, which queues bytes; the loop then drains whatever else is ready and flushes once,
//! so a busy room costs one write per batch rather than one per message.
//!
//! A client that stops reading blocks only its own session: its room receivers fall behind
//! (it is told with `lagged`), and if a write makes no progress for `write_timeout` it is
//! disconnected. Leaving the hub (rooms, nick) happens in `Drop`, so no exit path, not even
//! a panic, leaves a ghost member behind.

use std::collections::HashMap;
use std::sync::Arc;

use chat_shared::validate::{NameError, clean_reason, clean_text};
use chat_shared::{
    ByeReason, ChatMessage, ClientMsg, ErrorCode, Nick, PROTOCOL_VERSION, Request, RoomName,
    ServerMsg,
};
use serde_json::Value;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use uuid::Uuid;

use crate::event::{Encoding, Event, Settled};
use crate::hub::{Hub, HubError};
use crate::limits::{RateLimiter, Verdict};
use crate::mailbox::Mailbox;
use crate::room::{Plan, Posted, Room, RoomError, same_nick};
use crate::store::{Range, Store};
use crate::subscriptions::{Delivery, Subscriptions};
use crate::wire::{Inbound, Wire, framed};
use crate::{Config, Shared};

/// Most events handled between two flushes, so one busy room cannot delay a flush forever.
const MAX_BATCH: usize = 256;
/// Flush early once this many bytes are queued.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Bad requests in a row that end a connection (the contract's number).
const MAX_BAD_IN_A_ROW: u32 = 16;
/// Default and largest `limit` of a `history` request.
const HISTORY_PAGE: usize = 50;
const HISTORY_PAGE_MAX: usize = 500;
/// How often a session looks again at a message it holds back until durable, when nothing
/// wakes it sooner (its own messages' settling pokes it; a namesake's does not).
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// How long a closing connection gets to take its last words (`bye`).
const LAST_WORDS: std::time::Duration = std::time::Duration::from_secs(1);

/// How a session ends; decides the `bye` and what room-mates are told.
#[derive(Debug)]
enum Exit {
    /// The client asked (`quit`) or vanished; `parted` carries this reason.
    Quit(Option<String>),
    /// A `bye` to send first, then close.
    Bye(ByeReason, String),
}

pub(crate) struct Session<W> {
    id: Uuid,
    wire: W,
    hub: Arc<Hub>,
    config: Arc<Config>,
    /// The server's shutdown signal.
    cancel: CancellationToken,
    /// Set once registered; then the session holds this nick in the hub.
    nick: Option<Nick>,
    rooms: HashMap<RoomName, Arc<Room>>,
    subs: Subscriptions,
    mailbox: Arc<Mailbox>,
    bad_in_a_row: u32,
    /// Last time any input arrived; an idle framed client is pinged from here.
    last_heard: Instant,
    /// A ping is outstanding. It was sent when the idle interval ran out, at `last_heard +
    /// ping_interval`, so its deadline needs no instant of its own.
    pinged: bool,
    /// The reason room-mates get in `parted` when the session ends.
    part_reason: Box<str>,
    /// History a join or a `history` request still owes, waiting on the store.
    deferred: Option<Box<Deferred>>,
    rate: RateLimiter,
}

fn error(code: ErrorCode, message: impl Into<String>, ref_id: Option<Uuid>) -> ServerMsg {
    ServerMsg::error(code, message, ref_id)
}

fn name_error(what: &str, raw: &str, e: &NameError) -> String {
    format!("{what} {raw:?} is not valid: {e}")
}

impl<W: Wire> Session<W> {
    pub(crate) fn new(id: Uuid, wire: W, shared: &Shared) -> Self {
        Self {
            id,
            wire,
            hub: Arc::clone(&shared.hub),
            config: Arc::clone(&shared.config),
            cancel: shared.cancel.clone(),
            nick: None,
            rooms: HashMap::new(),
            subs: Subscriptions::default(),
            mailbox: Arc::new(Mailbox::new(shared.config.mailbox)),
            bad_in_a_row: 0,
            last_heard: Instant::now(),
            pinged: false,
            part_reason: "quit".into(),
            deferred: None,
            rate: RateLimiter::new(shared.config.burst),
        }
    }

    /// Runs the session to its end. `deadline` bounds registration (the handshake timeout);
    /// `guard` (the connection's slot) is released when the session ends.
    ///
    /// This is a connection's task, alive as long as the connection, so its size is most of
    /// what an idle connection costs: the phases that run once (registration, closing) are
    /// boxed, taking their state to the heap only while they run.
    /// (Written as a function returning an `async move` block, not an `async fn`: an async
    /// fn copies its arguments into the future twice, and this one's `self` is big.)
    #[allow(clippy::manual_async_fn)] // deliberately not an async fn: see above
    pub(crate) fn run<G>(mut self, deadline: Instant, guard: G) -> impl Future<Output = ()> {
        async move {
            let registered = Box::pin(self.register(deadline)).await;
            let exit = match registered {
                Ok(()) => self.serve().await,
                Err(exit) => exit,
            };
            debug!(session = %self.id, ?exit, "session ends");
            match exit {
                Exit::Quit(reason) => {
                    if let Some(reason) = reason {
                        self.part_reason = reason.into();
                    }
                }
                Exit::Bye(reason, message) => {
                    if reason == ByeReason::Timeout {
                        self.part_reason = "timeout".into();
                    }
                    self.reply(ServerMsg::Bye {
                        reason,
                        message: Some(message),
                    });
                }
            }
            // The connection is closing anyway; a client that cannot take its last words in
            // time loses them.
            let _ = timeout(LAST_WORDS, self.wire.flush()).await;
            // Room-mates hear of the departure now, not after the lingering close.
            self.leave();
            Box::pin(self.wire.close()).await;
            drop(guard);
        }
    }

    fn reply(&mut self, msg: ServerMsg) {
        self.wire.push(&Event::new(msg, Some(self.id)));
    }

    fn bad_request(&mut self, message: impl Into<String>, ref_id: Option<Uuid>) -> Option<Exit> {
        self.reply(error(ErrorCode::BadRequest, message, ref_id));
        self.bad_in_a_row += 1;
        (self.bad_in_a_row >= MAX_BAD_IN_A_ROW).then(|| {
            Exit::Bye(
                ByeReason::BadRequests,
                format!("{MAX_BAD_IN_A_ROW} bad requests in a row"),
            )
        })
    }

    /// Flushes within the write timeout.
    async fn flush(&mut self) -> Result<(), Exit> {
        match timeout(self.config.write_timeout, self.wire.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(session = %self.id, error = %e, "write failed");
                Err(Exit::Quit(None))
            }
            Err(_) => Err(Exit::Bye(
                ByeReason::TooSlow,
                "your connection is not reading what the server sends".into(),
            )),
        }
    }

    /// Reads until a `hello` succeeds; answers what is allowed before it.
    async fn register(&mut self, deadline: Instant) -> Result<(), Exit> {
        loop {
            let inbound = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(shutdown_exit()),
                () = sleep_until(deadline) => return Err(Exit::Bye(
                    ByeReason::HandshakeTimeout,
                    "no nick given in time".into(),
                )),
                inbound = self.wire.recv() => inbound,
            };
            let req = match inbound {
                Ok(Some(Inbound::Request(req))) => req,
                Ok(Some(other)) => {
                    if let Some(exit) = self.unreadable(other) {
                        return Err(exit);
                    }
                    self.flush().await?;
                    continue;
                }
                Ok(None) | Err(_) => return Err(Exit::Quit(None)),
            };
            self.bad_in_a_row = 0;
            let ref_id = req.id;
            match req.msg {
                ClientMsg::Hello {
                    nick,
                    version,
                    client,
                } => {
                    if version.is_some_and(|v| v != PROTOCOL_VERSION) {
                        self.reply(error(
                            ErrorCode::UnsupportedVersion,
                            format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                            ref_id,
                        ));
                    } else if self.hello(&nick, ref_id, client.as_deref()) {
                        if self.deferred.is_some() {
                            Box::pin(self.complete()).await;
                        }
                        self.flush().await?;
                        return Ok(());
                    }
                }
                ClientMsg::Ping { token } => self.reply(ServerMsg::Pong { token }),
                ClientMsg::Quit { .. } => {
                    return Err(Exit::Bye(ByeReason::Quit, "bye".into()));
                }
                other => self.reply(error(
                    ErrorCode::NotRegistered,
                    format!("say hello before {}", other.kind()),
                    ref_id,
                )),
            }
            self.flush().await?;
        }
    }

    /// Registers `nick`, sends `welcome` and joins the default room. False when refused.
    fn hello(&mut self, raw: &str, ref_id: Option<Uuid>, client: Option<&str>) -> bool {
        let Some(nick) = self.parse_nick(raw, ref_id) else {
            return false;
        };
        if self
            .hub
            .register(self.id, &nick, Arc::clone(&self.mailbox))
            .is_err()
        {
            self.reply(error(
                ErrorCode::NickTaken,
                format!("nick {nick} is already taken"),
                ref_id,
            ));
            return false;
        }
        info!(session = %self.id, %nick, client = client.unwrap_or("-"), "registered");
        self.reply(ServerMsg::Welcome {
            nick: nick.to_string(),
            session: self.id,
            server: concat!("chat-server ", env!("CARGO_PKG_VERSION")).into(),
            motd: self.config.motd.clone(),
        });
        self.nick = Some(nick);
        let lobby = RoomName::parse(chat_shared::DEFAULT_ROOM).expect("the default room is valid");
        self.join(lobby, None, None);
        true
    }

    /// The main loop of a registered session.
    async fn serve(&mut self) -> Exit {
        let mailbox = Arc::clone(&self.mailbox);
        loop {
            // One timer for two jobs: the idle ping, and looking again at a message held
            // back until durable (see `on_broadcast`).
            let holding = self.subs.holding();
            let wake_at = self.wake_at(holding);
            // Backpressure: a client sending faster than the disk takes its messages is not
            // read until some are durable, rather than lagging behind its own messages.
            let paused = self.mailbox.unsettled() >= self.config.max_unsettled();
            let step = tokio::select! {
                biased;
                () = self.cancel.cancelled() => Err(shutdown_exit()),
                inbound = self.wire.recv(), if !paused => self.on_inbound(inbound),
                event = mailbox.take() => {
                    // `None`: a poke, a held message has settled; the drain below sends it.
                    if let Some(event) = event {
                        self.wire.push(&event);
                    }
                    Ok(())
                }
                delivery = self.subs.next(), if !self.subs.is_empty() => {
                    self.on_broadcast(delivery);
                    Ok(())
                }
                () = sleep_until(wake_at), if W::PINGS || holding => {
                    if W::PINGS && Instant::now() >= self.ping_at() {
                        self.on_ping_due()
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(exit) = step {
                return exit;
            }
            if self.deferred.is_some() {
                Box::pin(self.complete()).await;
            }
            self.drain_ready();
            if let Err(exit) = self.flush().await {
                return exit;
            }
        }
    }

    /// Queues whatever else is already waiting, without waiting, up to one batch.
    fn drain_ready(&mut self) {
        for _ in 0..MAX_BATCH {
            if self.wire.pending() >= MAX_BATCH_BYTES {
                return;
            }
            if let Some(event) = self.mailbox.try_take() {
                self.wire.push(&event);
                continue;
            }
            match self.subs.try_next() {
                Some(delivery) => self.on_broadcast(delivery),
                None => return,
            }
        }
    }

    /// When the idle client is due a ping (or, with one outstanding, due to answer it).
    fn ping_at(&self) -> Instant {
        let at = self.last_heard + self.config.ping_interval;
        if self.pinged {
            at + self.config.ping_timeout
        } else {
            at
        }
    }

    /// When the loop's timer fires: the ping's time, or sooner to look at a held message
    /// (without pings, the timer runs only while holding).
    fn wake_at(&self, holding: bool) -> Instant {
        let look_again = Instant::now() + HOLD_POLL;
        match (W::PINGS, holding) {
            (true, true) => self.ping_at().min(look_again),
            (true, false) => self.ping_at(),
            (false, _) => look_again,
        }
    }

    fn on_broadcast(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Event(event) => match event.settled() {
                Settled::Durable => self.wire.push(&event),
                // Its commit failed: it is not history, and its sender was told.
                Settled::Failed => {}
                // Members see a message as soon as the store has taken it; the copy that
                // acknowledges it waits until it is durable, holding its room back.
                Settled::Pending if self.acknowledges(&event) => self.subs.hold(event),
                Settled::Pending => self.wire.push(&event),
            },
            // Expected for a slow reader: it skipped messages and may fetch them.
            Delivery::Lagged { room, missed } => self.reply(ServerMsg::Lagged {
                room: room.to_string(),
                missed,
            }),
        }
    }

    /// Whether this client would take `event` as the acknowledgement of its own message: it
    /// sent it, or it is the same nick again (a client reconnected after sending it).
    fn acknowledges(&self, event: &Event) -> bool {
        if !W::ECHOES_OWN {
            return false;
        }
        event.origin == Some(self.id)
            || matches!((&event.msg, &self.nick),
                (ServerMsg::Message(m), Some(nick)) if same_nick(&m.from, nick.as_str()))
    }

    fn on_ping_due(&mut self) -> Result<(), Exit> {
        if self.pinged {
            return Err(Exit::Bye(ByeReason::Timeout, "no answer to ping".into()));
        }
        self.pinged = true;
        self.reply(ServerMsg::Ping {
            token: Value::from(crate::now_ms()),
        });
        Ok(())
    }

    fn on_inbound(&mut self, inbound: std::io::Result<Option<Inbound>>) -> Result<(), Exit> {
        self.last_heard = Instant::now();
        self.pinged = false;
        match inbound {
            Ok(Some(Inbound::Request(req))) => {
                self.bad_in_a_row = 0;
                self.handle(req)
            }
            Ok(Some(other)) => match self.unreadable(other) {
                Some(exit) => Err(exit),
                None => Ok(()),
            },
            // The client closed or the socket failed: it vanished, which is a quit.
            Ok(None) | Err(_) => Err(Exit::Quit(None)),
        }
    }

    /// Answers input that is not a request.
    fn unreadable(&mut self, inbound: Inbound) -> Option<Exit> {
        match inbound {
            Inbound::Request(_) | Inbound::Handled => None,
            Inbound::Invalid { ref_id, reason } => {
                self.bad_request(format!("bad request: {reason}"), ref_id)
            }
            Inbound::FrameTooLarge { max } => {
                let message = format!("frame larger than {max} bytes");
                self.reply(error(ErrorCode::FrameTooLarge, message.clone(), None));
                Some(Exit::Bye(ByeReason::FrameTooLarge, message))
            }
        }
    }

    fn nick(&self) -> &Nick {
        self.nick
            .as_ref()
            .expect("serve runs only after registration")
    }

    /// Handles one request of a registered client.
    fn handle(&mut self, req: Request) -> Result<(), Exit> {
        let ref_id = req.id;
        if matches!(req.msg, ClientMsg::Say { .. } | ClientMsg::Dm { .. }) {
            match self
                .rate
                .check(Instant::now(), self.config.rate, self.config.burst)
            {
                Verdict::Allow => {}
                Verdict::Reject => {
                    self.reply(error(
                        ErrorCode::RateLimited,
                        format!(
                            "slow down: at most {} messages a second (bursts of {}); this one was dropped",
                            self.config.rate, self.config.burst
                        ),
                        ref_id,
                    ));
                    return Ok(());
                }
                Verdict::Flood => {
                    return Err(Exit::Bye(ByeReason::Flood, "flooding".into()));
                }
            }
        }
        match req.msg {
            ClientMsg::Say { room, text, action } => self.say(&room, &text, action, ref_id),
            ClientMsg::Dm { to, text } => self.dm(&to, &text, ref_id),
            ClientMsg::Join { room, since } => {
                if let Some(name) = self.parse_room(&room, ref_id) {
                    self.join(name, since, ref_id);
                }
            }
            ClientMsg::Part { room, reason } => self.part(&room, reason.as_deref(), ref_id),
            ClientMsg::Nick { nick } => self.rename(&nick, ref_id),
            ClientMsg::Who { room } => self.who(&room, ref_id),
            ClientMsg::Rooms {} => {
                let rooms = self.hub.rooms();
                let event = fit(
                    &rooms,
                    false,
                    Cut::Back,
                    |rooms, truncated| ServerMsg::RoomList { rooms, truncated },
                    self.config.max_frame,
                );
                self.wire.push(&event);
            }
            ClientMsg::History {
                room,
                before,
                limit,
            } => self.history(&room, before, limit, ref_id),
            ClientMsg::Ping { token } => self.reply(ServerMsg::Pong { token }),
            // Expected: the answer to our ping; receiving it already counted as activity.
            ClientMsg::Pong { .. } => {}
            ClientMsg::Quit { reason } => {
                let reason = clean_reason(reason.as_deref());
                self.part_reason = reason.map_or_else(|| "quit".into(), String::into_boxed_str);
                return Err(Exit::Bye(ByeReason::Quit, "bye".into()));
            }
            ClientMsg::Hello { .. } => {
                if let Some(exit) = self.bad_request("already registered", ref_id) {
                    return Err(exit);
                }
            }
        }
        Ok(())
    }

    /// Parses a room name, answering `room_invalid` when it breaks the rules.
    fn parse_room(&mut self, raw: &str, ref_id: Option<Uuid>) -> Option<RoomName> {
        RoomName::parse(raw)
            .map_err(|e| {
                let message = name_error("room", raw, &e);
                self.reply(error(ErrorCode::RoomInvalid, message, ref_id));
            })
            .ok()
    }

    /// Parses a nick, answering `nick_invalid` when it breaks the rules.
    fn parse_nick(&mut self, raw: &str, ref_id: Option<Uuid>) -> Option<Nick> {
        Nick::parse(raw)
            .map_err(|e| {
                let message = name_error("nick", raw, &e);
                self.reply(error(ErrorCode::NickInvalid, message, ref_id));
            })
            .ok()
    }

    /// Resolves a room the client must have joined, answering `not_in_room` otherwise.
    fn joined_room(&mut self, raw: &str, ref_id: Option<Uuid>) -> Option<Arc<Room>> {
        let name = self.parse_room(raw, ref_id)?;
        let room = self.rooms.get(&name).cloned();
        if room.is_none() {
            let message = format!("you are not in #{name}");
            self.reply(error(ErrorCode::NotInRoom, message, ref_id));
        }
        room
    }

    fn text(&mut self, raw: &str, ref_id: Option<Uuid>) -> Option<String> {
        match clean_text(raw, self.config.max_text) {
            Ok(text) => Some(text),
            Err(e) => {
                self.reply(error(ErrorCode::TextInvalid, e.to_string(), ref_id));
                None
            }
        }
    }

    fn say(&mut self, room: &str, text: &str, action: bool, ref_id: Option<Uuid>) {
        let Some(room) = self.joined_room(room, ref_id) else {
            return;
        };
        let Some(text) = self.text(text, ref_id) else {
            return;
        };
        match room.post(&self.hub.ids, self.id, &self.mailbox, text, ref_id, action) {
            // The sender's copy (its acknowledgement) comes through its own subscription,
            // once the message is durable; a resend of one not durable yet is acknowledged
            // by that same copy.
            Ok(Posted::New | Posted::Pending) => {}
            Ok(Posted::Duplicate(original)) => self.wire.push(&original),
            Err(RoomError::StoreBusy) => self.reply(error(
                ErrorCode::RateLimited,
                "the server is busy storing messages; this one was dropped, try again",
                ref_id,
            )),
            // Unreachable while `self.rooms` mirrors memberships; answered all the same.
            Err(RoomError::NotInRoom | RoomError::UnknownBefore) => {
                self.reply(error(ErrorCode::NotInRoom, "not in that room", ref_id));
            }
        }
    }

    fn dm(&mut self, to: &str, text: &str, ref_id: Option<Uuid>) {
        let Some(text) = self.text(text, ref_id) else {
            return;
        };
        let from = self.nick().clone();
        // Both copies, the recipient's and this sender's, come through mailboxes.
        match self.hub.dm(self.id, &from, &self.mailbox, to, text, ref_id) {
            Ok(()) => {}
            Err(HubError::StoreFailed) => self.reply(error(
                ErrorCode::RateLimited,
                "the server is busy storing messages; this one was dropped, try again",
                ref_id,
            )),
            Err(_) => self.reply(error(
                ErrorCode::NoSuchNick,
                format!("nobody is called {to:?}"),
                ref_id,
            )),
        }
    }

    fn join(&mut self, name: RoomName, since: Option<u64>, ref_id: Option<Uuid>) {
        if !self.rooms.contains_key(&name) && self.rooms.len() >= self.config.max_rooms_per_client {
            self.reply(error(
                ErrorCode::TooManyRooms,
                format!(
                    "you are in {} rooms, the limit; part one first",
                    self.rooms.len()
                ),
                ref_id,
            ));
            return;
        }
        let room = match self.hub.room(&name) {
            Ok(room) => room,
            Err(HubError::StoreFailed) => {
                self.reply(error(
                    ErrorCode::Unavailable,
                    "the room's history cannot be read right now",
                    ref_id,
                ));
                return;
            }
            Err(_) => {
                self.reply(error(
                    ErrorCode::TooManyRooms,
                    "the server has no space for another room",
                    ref_id,
                ));
                return;
            }
        };
        let nick = self.nick().clone();
        let joined = room.join(self.id, &nick, since, self.config.history_on_join);
        // Replaces any earlier receiver of this room: the snapshot below covers up to now.
        self.subs.insert(name.clone(), joined.rx);
        self.rooms.insert(name.clone(), room);
        self.wire.push(&joined.event);
        match (joined.history, joined.unsettled.filter(|_| W::ECHOES_OWN)) {
            (Plan::Done { messages, older }, None) => {
                self.push_history(name.as_str(), messages, older);
                self.push_members(&name, &joined.members);
            }
            (plan, unsettled) => {
                self.deferred = Some(Box::new(Deferred {
                    room: name,
                    plan,
                    members: Some(joined.members),
                    ref_id,
                    unsettled,
                }));
            }
        }
    }

    fn part(&mut self, raw: &str, reason: Option<&str>, ref_id: Option<Uuid>) {
        let Some(room) = self.joined_room(raw, ref_id) else {
            return;
        };
        let name = room.name().clone();
        self.rooms.remove(&name);
        self.subs.remove(&name);
        match room.part(self.id, clean_reason(reason)) {
            Ok(event) => self.wire.push(&event),
            Err(RoomError::NotInRoom | RoomError::UnknownBefore | RoomError::StoreBusy) => {
                self.reply(error(ErrorCode::NotInRoom, "not in that room", ref_id));
            }
        }
    }

    fn rename(&mut self, raw: &str, ref_id: Option<Uuid>) {
        let Some(new) = self.parse_nick(raw, ref_id) else {
            return;
        };
        let old = self.nick().clone();
        let rooms: Vec<Arc<Room>> = self.rooms.values().cloned().collect();
        match self.hub.rename(self.id, &old, &new, &rooms) {
            Ok(event) => {
                self.nick = Some(new);
                self.wire.push(&event);
            }
            Err(HubError::NickTaken) => self.reply(error(
                ErrorCode::NickTaken,
                format!("nick {new} is already taken"),
                ref_id,
            )),
            Err(HubError::NoSuchNick | HubError::TooManyRooms | HubError::StoreFailed) => {
                self.reply(error(ErrorCode::BadRequest, "rename failed", ref_id));
            }
        }
    }

    fn who(&mut self, raw: &str, ref_id: Option<Uuid>) {
        let Some(name) = self.parse_room(raw, ref_id) else {
            return;
        };
        let nicks = self
            .hub
            .existing_room(&name)
            .map(|r| r.members())
            .unwrap_or_default();
        self.push_members(&name, &nicks);
    }

    fn history(
        &mut self,
        raw: &str,
        before: Option<Uuid>,
        limit: Option<u32>,
        ref_id: Option<Uuid>,
    ) {
        let Some(name) = self.parse_room(raw, ref_id) else {
            return;
        };
        let limit = limit.map_or(HISTORY_PAGE, |l| (l as usize).min(HISTORY_PAGE_MAX));
        // With a store, a room nobody has joined since the start is still in it.
        let room = match &self.hub.store {
            Some(_) => self.hub.room(&name).ok(),
            None => self.hub.existing_room(&name),
        };
        let plan = match &room {
            Some(room) => room.history(before, limit),
            None if before.is_some() => Err(RoomError::UnknownBefore),
            None => Ok(Plan::Done {
                messages: Vec::new(),
                older: false,
            }),
        };
        // As for a join: a page holding this client's own message must not acknowledge it
        // before it is durable.
        let unsettled = room
            .filter(|_| W::ECHOES_OWN)
            .and_then(|r| r.unsettled_by(self.nick()));
        match (plan, unsettled) {
            (Ok(Plan::Done { messages, older }), None) => {
                self.push_history(name.as_str(), messages, older);
            }
            (Ok(plan), unsettled) => {
                self.deferred = Some(Box::new(Deferred {
                    room: name,
                    plan,
                    members: None,
                    ref_id,
                    unsettled,
                }));
            }
            (Err(_), _) => {
                // A bad `before` counts towards the bad-request streak like any other.
                let _ = self.bad_request("history: unknown message id in before", ref_id);
            }
        }
    }

    /// Completes a join's or a `history` request's history from the store (and, for a join,
    /// sends the members after it, as the join sequence requires).
    async fn complete(&mut self) {
        let Some(deferred) = self.deferred.take() else {
            return;
        };
        let Deferred {
            room,
            plan,
            members,
            ref_id,
            unsettled,
        } = *deferred;
        if let Some(event) = &unsettled {
            // Settles with its commit, a few milliseconds at most unless the disk stalls.
            while event.settled() == Settled::Pending {
                tokio::time::sleep(HOLD_POLL).await;
            }
        }
        let result = match (plan, self.hub.store.clone()) {
            (Plan::Done { messages, older }, _) => Ok((messages, older)),
            (plan, Some(store)) => resolve(store, room.to_string(), plan).await,
            (_, None) => Err(Unresolved::Store),
        };
        match result {
            Ok((mut messages, older)) => {
                if let Some(failed) = unsettled.filter(|e| e.settled() == Settled::Failed) {
                    let id = match &failed.msg {
                        ServerMsg::Message(m) => m.id,
                        _ => Uuid::nil(),
                    };
                    messages.retain(|m| m.id != id);
                }
                self.push_history(room.as_str(), messages, older);
            }
            Err(Unresolved::UnknownBefore) => {
                // A bad `before` counts towards the bad-request streak like any other.
                let _ = self.bad_request("history: unknown message id in before", ref_id);
            }
            Err(Unresolved::Store) => {
                self.reply(error(
                    ErrorCode::Unavailable,
                    "older history cannot be read right now",
                    ref_id,
                ));
                if members.is_some() {
                    // The join sequence still needs its history: what memory had.
                    self.push_history(room.as_str(), Vec::new(), true);
                }
            }
        }
        if let Some(members) = members {
            self.push_members(&room, &members);
        }
    }

    /// Sends a `history`, cut (oldest first) to fit the frame limit.
    fn push_history(&mut self, room: &str, messages: Vec<ChatMessage>, truncated: bool) {
        let event = fit(
            &messages,
            truncated,
            Cut::Front,
            |messages, truncated| ServerMsg::History {
                room: room.to_owned(),
                messages,
                truncated,
            },
            self.config.max_frame,
        );
        self.wire.push(&event);
    }

    fn push_members(&mut self, room: &RoomName, nicks: &[String]) {
        let event = fit(
            nicks,
            false,
            Cut::Back,
            |nicks, truncated| ServerMsg::Members {
                room: room.to_string(),
                nicks,
                truncated,
            },
            self.config.max_frame,
        );
        self.wire.push(&event);
    }
}

impl<W> Session<W> {
    /// Leaves every room and frees the nick; does nothing the second time.
    fn leave(&mut self) {
        let Some(nick) = self.nick.take() else {
            return;
        };
        for room in self.rooms.values() {
            // Err only if not a member, which is what leaving wants anyway.
            let _ = room.part(self.id, Some(self.part_reason.to_string()));
        }
        self.rooms.clear();
        self.subs.clear();
        self.hub.unregister(self.id, &nick);
        info!(session = %self.id, %nick, reason = %self.part_reason, "left");
    }
}

impl<W> Drop for Session<W> {
    /// Synchronous, so leaving happens on every exit path, a panic included.
    fn drop(&mut self) {
        self.leave();
    }
}

/// History still owed to the client, waiting on a store read.
struct Deferred {
    room: RoomName,
    plan: Plan,
    /// For a join: the members, sent after the history.
    members: Option<Vec<String>>,
    ref_id: Option<Uuid>,
    /// The history waits for this message to settle (see `Joined::unsettled`).
    unsettled: Option<Arc<Event>>,
}

/// Why a plan could not be completed.
enum Unresolved {
    UnknownBefore,
    Store,
}

/// Completes a history plan from the store, on a blocking thread (SQLite reads block).
async fn resolve(
    store: Arc<dyn Store>,
    room: String,
    plan: Plan,
) -> Result<(Vec<ChatMessage>, bool), Unresolved> {
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (messages, range, since) = match plan {
            Plan::Done { messages, older } => return Ok(Some((messages, older))),
            Plan::Read {
                messages,
                range,
                since,
            } => (messages, range, since),
            Plan::Find { before, limit } => match store.seq_of(&room, before)? {
                Some(seq) => (
                    Vec::new(),
                    Range {
                        after: 0,
                        before: seq,
                        limit: limit + 1,
                    },
                    false,
                ),
                None => return Ok(None),
            },
        };
        let mut older = store.read(&room, range)?;
        // One more than wanted was asked for: getting it means older ones exist.
        let mut truncated = older.len() >= range.limit;
        if truncated {
            older.remove(0);
        }
        // After `since`, a missing first message means it is no longer kept.
        let first = older.first().map_or(range.before, |m| m.seq);
        truncated |= since && first > range.after.saturating_add(1);
        older.extend(messages);
        Ok(Some((older, truncated)))
    });
    match read.await {
        Ok(Ok(Some(page))) => Ok(page),
        Ok(Ok(None)) => Err(Unresolved::UnknownBefore),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "history read failed");
            Err(Unresolved::Store)
        }
        Err(e) => {
            tracing::warn!(error = %e, "history read task failed");
            Err(Unresolved::Store)
        }
    }
}

fn shutdown_exit() -> Exit {
    Exit::Bye(ByeReason::Shutdown, "the server is shutting down".into())
}

/// Which end of a list to drop from when it does not fit in a frame.
#[derive(Clone, Copy)]
enum Cut {
    /// Drop the oldest (history keeps the newest).
    Front,
    /// Drop the tail.
    Back,
}

/// Builds a list event from as many of `items` as fit in one frame of `max` bytes, setting
/// its `truncated` flag when some were cut, and primes the event with that frame so it is not
/// encoded twice. The contract promises the server never sends a frame over the limit.
fn fit<T: Clone>(
    items: &[T],
    truncated: bool,
    cut: Cut,
    make: impl Fn(Vec<T>, bool) -> ServerMsg,
    max: usize,
) -> Event {
    let mut range = 0..items.len();
    let mut truncated = truncated;
    loop {
        let msg = make(items[range.clone()].to_vec(), truncated);
        let frame = framed::encode(&msg);
        let size = chat_shared::codec::payload_len(&frame);
        if size <= max || range.is_empty() {
            let event = Event::new(msg, None);
            event.prime(Encoding::Framed, frame);
            return event;
        }
        // Scale down by the overshoot, aiming 10% low so one more round is rarely needed,
        // and always drop at least one item.
        let keep = (range.len() * max / size * 9 / 10).min(range.len() - 1);
        match cut {
            Cut::Front => range.start = range.end - keep,
            Cut::Back => range.end = range.start + keep,
        }
        truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_lists_to_the_frame_limit() {
        let nicks: Vec<String> = (0..5000).map(|i| format!("nick{i:05}")).collect();
        let make = |nicks, truncated| ServerMsg::Members {
            room: "r".into(),
            nicks,
            truncated,
        };
        let event = fit(&nicks, false, Cut::Back, make, 4096);
        let frame = event.encoded(Encoding::Framed, framed::encode);
        assert!(chat_shared::codec::payload_len(frame) <= 4096);
        let ServerMsg::Members {
            nicks: kept,
            truncated,
            ..
        } = &event.msg
        else {
            panic!("not members");
        };
        assert!(*truncated && kept.len() > 100 && kept[0] == "nick00000");

        let event = fit(&nicks, false, Cut::Front, make, 4096);
        let ServerMsg::Members { nicks: kept, .. } = &event.msg else {
            panic!("not members");
        };
        assert_eq!(
            kept.last().unwrap(),
            "nick04999",
            "the front cut keeps the newest"
        );

        let event = fit(&nicks[..3], false, Cut::Back, make, 4096);
        assert!(matches!(
            event.msg,
            ServerMsg::Members {
                truncated: false,
                ..
            }
        ));
    }
}
