//! One client's session, independent of its wire format and its transport.
//!
//! A session registers its client (`hello` or the nick line), then runs one loop over its
//! client's requests and its sink (everything local delivery hands it: room events, DMs,
//! notices, and whatever ends it: a kill, a takeover, the server's shutdown). Everything
//! it sends goes through the [`Wire`] adapter, which queues bytes; the loop handles a
//! batch of what is ready and flushes once, so a busy room costs one write per batch
//! rather than one per message.
//!
//! A client that stops reading blocks only its own session: its sink fills up to
//! `--max-sendq` and it misses messages (told with `lagged`), and if a write makes no
//! progress for `write_timeout` it is disconnected. Leaving the chat state (rooms, nick)
//! happens in `Drop`, so no exit path, not even a panic, leaves a ghost member behind.
//!
//! Layout:
//! - this file: the session, its loop, flushing and leaving.
//! - `register`: `hello` (logging in to a registered nick, taking it over) and what is
//!   allowed before it.
//! - `account`: `register` and `set_password`, which hash off the loop.
//! - `commands/`: one file per request, and the short dispatch.
//! - `inbox`: what the sink hands the session, held back where it must be.
//! - `history`: history pages and join sequences completed from the store; lists cut to fit.
//! - `errors`: every refusal and the one table of protocol codes.

mod account;
mod commands;
mod errors;
mod history;
mod inbox;
pub(crate) mod keepalive;
mod register;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;

use chat_shared::{ByeReason, ClientMsg, ErrorCode, Nick, RoomName, ServerMsg};
use futures::FutureExt;
use serde_json::Value;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use uuid::Uuid;

use crate::chat::Chat;
use crate::event::Event;
use crate::limits::RateLimiter;
use crate::ops::audit::{self, AuthStep};
use crate::path::Room;
use crate::path::sink::{Item, Sink};
use crate::wire::{Caps, Inbound, Wire};
use crate::{Config, Shared};
use account::AccountJob;
use errors::Refusal;
use history::Deferred;

/// Flush early once this many bytes are queued, so one busy room cannot delay a flush.
const MAX_BATCH_BYTES: usize = 64 * 1024;
// A batch taken from the sink counts against its budget until written: the smallest budget
// must hold two, or a client reading as fast as it can would be said to fall behind.
const _: () = assert!(2 * MAX_BATCH_BYTES <= crate::path::sink::MIN_BUDGET);
/// Requests handled in one turn of the loop at most, so a client pasting a thousand lines
/// cannot keep its session from its own sink (the sink's budget is counted while it waits).
const MAX_REQUESTS_PER_TURN: usize = 32;
/// Bad requests in a row that end a connection (the contract's number).
const MAX_BAD_IN_A_ROW: u32 = 16;
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
    caps: Caps,
    chat: Arc<Chat>,
    config: Arc<Config>,
    /// The server's shutdown signal.
    cancel: CancellationToken,
    /// Set once registered; then the session holds this nick in the directory.
    nick: Option<Nick>,
    rooms: Rooms,
    sink: Arc<Sink>,
    /// Taken from the sink and not handled yet: the rest of a batch, or what waits behind
    /// an acknowledgement that is not durable yet.
    inbox: VecDeque<Item>,
    /// The sink weight of what was handled since the last flush, given back once written.
    handled: u32,
    /// The weight read from room feeds since the last flush. It is charged to the sink
    /// only if the write has to wait (the only time anyone could see it queued), which
    /// spares a busy room's members two trips through their sink's lock per batch.
    read: u32,
    bad_in_a_row: u32,
    /// Last time any input arrived; an idle pinging client is pinged from here.
    last_heard: Instant,
    /// A ping is outstanding. It was sent when the idle interval ran out, at `last_heard +
    /// ping_interval`, so its deadline needs no instant of its own.
    pinged: bool,
    /// The reason room-mates get in `parted` when the session ends; `None` is "quit", what
    /// nearly every session ends with, so it costs no allocation.
    part_reason: Option<Box<str>>,
    /// A `history` request still owed, waiting on the store.
    deferred: Option<Box<Deferred>>,
    /// A `register` or `set_password` still owed, waiting for its hash.
    account_job: Option<Box<AccountJob>>,
    rate: RateLimiter,
    /// The client's address: failed logins are throttled by it.
    peer: IpAddr,
    /// Logged in to the account of the nick it holds (with its password, or by
    /// registering it).
    logged_in: bool,
    /// File sharing, where `upload` asks for slots (`None`: off).
    files: Option<Arc<crate::files::Files>>,
}

impl<W: Wire> Session<W> {
    /// A session for the connection from `peer`, with its entry in the operators' registry
    /// opened now: its sink counts `lagged` there, its flushes count bytes written, its end
    /// records the reason, and the server's shutdown and the keepalive clock find its sink
    /// there (so no session can miss either).
    pub(crate) fn new(
        id: Uuid,
        wire: W,
        shared: &Shared,
        peer: SocketAddr,
        (mode, tls): (crate::ops::Mode, bool),
    ) -> Self {
        let config = &shared.config;
        let sink = Sink::attached(config.max_sendq, config.max_unsettled, |sink| {
            shared.chat.ops.open(id, peer, (mode, tls), sink)
        });
        Self {
            id,
            caps: wire.caps(),
            wire,
            chat: Arc::clone(&shared.chat),
            files: shared.files.clone(),
            config: Arc::clone(config),
            cancel: shared.cancel.clone(),
            nick: None,
            rooms: Rooms::default(),
            sink,
            inbox: VecDeque::new(),
            handled: 0,
            read: 0,
            bad_in_a_row: 0,
            last_heard: Instant::now(),
            pinged: false,
            part_reason: None,
            deferred: None,
            account_job: None,
            rate: RateLimiter::new(config.live().burst),
            peer: peer.ip(),
            logged_in: false,
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
            if let Some(conn) = self.sink.conn() {
                let bye = match &exit {
                    Exit::Quit(_) => None,
                    Exit::Bye(reason, _) => Some(*reason),
                };
                let nick = self.nick.as_ref().map(Nick::as_str);
                conn.ending(crate::ops::metrics::disconnect_reason(bye), nick);
            }
            match exit {
                Exit::Quit(reason) => {
                    if let Some(reason) = reason {
                        self.part_reason = Some(reason.into());
                    }
                }
                Exit::Bye(reason, message) => {
                    if reason == ByeReason::Timeout {
                        self.part_reason = Some("timeout".into());
                    }
                    self.reply(ServerMsg::Bye {
                        reason,
                        message: Some(message),
                    });
                }
            }
            // The connection is closing anyway; a client that cannot take its last words in
            // time loses them.
            self.count_io();
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

    /// Answers a refusal with its code; a bad request counts towards the streak that ends
    /// the connection.
    fn refuse(&mut self, refusal: &Refusal, ref_id: Option<Uuid>) -> Result<(), Exit> {
        let code = refusal.code();
        let metrics = &self.chat.ops.metrics;
        match (code, refusal) {
            (ErrorCode::RateLimited, _) => metrics.rate_limited.inc(),
            (_, Refusal::Auth(crate::auth::AuthError::Failed)) => metrics.auth_failures.inc(),
            _ => 0,
        };
        let mut error = ServerMsg::error(code, refusal.to_string(), ref_id);
        if let ServerMsg::Error { retry_after_ms, .. } = &mut error {
            *retry_after_ms = refusal.retry_after_ms();
        }
        self.reply(error);
        if code != ErrorCode::BadRequest {
            return Ok(());
        }
        self.bad_in_a_row += 1;
        if self.bad_in_a_row >= MAX_BAD_IN_A_ROW {
            return Err(Exit::Bye(
                ByeReason::BadRequests,
                format!("{MAX_BAD_IN_A_ROW} bad requests in a row"),
            ));
        }
        Ok(())
    }

    /// Counts what is about to be written and what was read since the last count into the
    /// connection's entry (`/clients`, the close line). Written bytes are counted as handed
    /// to the socket, before the write: a count held across the await would make every
    /// connection's task bigger, and a failed write ends the connection anyway. Every turn
    /// of the loops flushes, so read bytes are counted within a turn of their arrival.
    fn count_io(&mut self) {
        self.sink.wrote(self.wire.pending());
        let read = self.wire.take_read();
        if read > 0
            && let Some(conn) = self.sink.conn()
        {
            conn.read(read);
        }
    }

    /// Flushes within the write timeout, then gives the sink back the weight written.
    async fn flush(&mut self) -> Result<(), Exit> {
        self.count_io();
        let read = std::mem::take(&mut self.read) as usize;
        let mut handled = std::mem::take(&mut self.handled) as usize;
        let flushed = {
            let mut flush = std::pin::pin!(self.wire.flush());
            match futures::poll!(flush.as_mut()) {
                Poll::Ready(done) => Ok(done),
                // The socket is full: only now is a timer needed. Boxed, so that every
                // session's task does not carry one for the few flushes that wait.
                Poll::Pending => {
                    // What was read from the feeds now waits here: the sink counts it
                    // (`/clients` shows it, and it leaves less room for what comes).
                    self.sink.took(read);
                    handled += read;
                    Box::pin(timeout(self.config.write_timeout, flush)).await
                }
            }
        };
        match flushed {
            Ok(Ok(())) => {
                self.sink.written(handled);
                Ok(())
            }
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

    /// The main loop of a registered session.
    ///
    /// It waits on two things only, its client and its sink, as the task's size is what
    /// every idle connection costs: the idle ping's timer is the keepalive clock's (see
    /// `keepalive`), and the server's shutdown comes through the sink as a kill does (see
    /// [`shut_down`]). Both are looked for at every turn, so a wait that took their wake-up
    /// (a history's wait for durability) loses neither; see also `Sink::wait_poke`.
    async fn serve(&mut self) -> Exit {
        if self.cancel.is_cancelled() {
            // Registered as the shutdown began, maybe after its sinks were ended.
            return shutdown_exit();
        }
        let sink = Arc::clone(&self.sink);
        self.arm_keepalive();
        loop {
            if let Some(ending) = sink.ending() {
                self.part_reason = ending.part_reason.as_deref().map(Into::into);
                return Exit::Bye(ending.reason, ending.message.clone());
            }
            // Backpressure: a client sending faster than the disk takes its messages is not
            // read until some are durable, rather than refused.
            let paused = sink.unsettled() >= self.config.max_unsettled;
            let step = tokio::select! {
                biased;
                inbound = self.wire.recv(), if !paused => self.on_inbound(inbound),
                // Something was queued, or a message this session waits on settled, or the
                // keepalive clock rang, or something ended the session: a login elsewhere,
                // a kill, a server ban, the shutdown (an ending is seen at the top of the
                // loop, the alarm right before the flush, which takes its ping).
                () = sink.wait() => Ok(false),
            };
            let step = match step {
                Ok(true) => self.more_requests(),
                Ok(false) => Ok(()),
                Err(exit) => Err(exit),
            };
            if let Err(exit) = step {
                return exit;
            }
            if let Some(deferred) = self.deferred.take() {
                Box::pin(self.complete(*deferred)).await;
            }
            if let Some(job) = self.account_job.take()
                && let Err(exit) = Box::pin(self.account(*job)).await
            {
                return exit;
            }
            if let Err(exit) = self.on_alarm() {
                return exit;
            }
            if let Err(exit) = self.deliver().await {
                return exit;
            }
        }
    }

    /// Handles requests that are already read, up to [`MAX_REQUESTS_PER_TURN`]: a turn of
    /// the loop each would pay a select and a flush per request.
    fn more_requests(&mut self) -> Result<(), Exit> {
        for _ in 0..MAX_REQUESTS_PER_TURN {
            if self.sink.unsettled() >= self.config.max_unsettled {
                return Ok(());
            }
            let Some(inbound) = self.wire.recv().now_or_never() else {
                return Ok(());
            };
            if !self.on_inbound(inbound)? {
                return Ok(());
            }
        }
        Ok(())
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

    /// Asks the keepalive clock for a wake-up when the client is next due a ping (or due
    /// to have answered one).
    fn arm_keepalive(&self) {
        if self.caps.pings {
            self.sink.set_alarm(keepalive::at_ms(self.ping_at()));
        }
    }

    /// The keepalive clock rang: ping the client, or give up on it, if it is due (input
    /// since the alarm was set moves the time on), and set the next alarm.
    fn on_alarm(&mut self) -> Result<(), Exit> {
        if !self.sink.take_alarm() {
            return Ok(());
        }
        if self.caps.pings && Instant::now() >= self.ping_at() {
            self.on_ping_due()?;
        }
        self.arm_keepalive();
        Ok(())
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

    /// Handles one input. `Ok(true)`: the next request, if already read, may be handled
    /// before this one's events are delivered. Only messages say so: a join, a part or a
    /// rename changes what the client's next lines mean (line mode's current room, its
    /// nick), so what it causes is delivered first.
    fn on_inbound(&mut self, inbound: std::io::Result<Option<Inbound>>) -> Result<bool, Exit> {
        self.last_heard = Instant::now();
        self.pinged = false;
        match inbound {
            Ok(Some(Inbound::Request(req))) => {
                self.bad_in_a_row = 0;
                let batchable = matches!(
                    req.msg,
                    ClientMsg::Say { .. } | ClientMsg::Dm { .. } | ClientMsg::Pong { .. }
                );
                self.handle(req).map(|()| batchable)
            }
            Ok(Some(other)) => self.unreadable(other).map(|()| true),
            // The client closed or the socket failed: it vanished, which is a quit.
            Ok(None) | Err(_) => Err(Exit::Quit(None)),
        }
    }

    /// Answers input that is not a request.
    fn unreadable(&mut self, inbound: Inbound) -> Result<(), Exit> {
        match inbound {
            Inbound::Request(_) | Inbound::Handled => Ok(()),
            Inbound::Invalid { ref_id, reason } => self.refuse(&Refusal::Malformed(reason), ref_id),
            Inbound::FrameTooLarge { max } => {
                let message = format!("frame larger than {max} bytes");
                self.reply(ServerMsg::error(
                    ErrorCode::FrameTooLarge,
                    message.clone(),
                    None,
                ));
                Err(Exit::Bye(ByeReason::FrameTooLarge, message))
            }
            Inbound::BadServerPassword { nick } => {
                let (step, reason) = (AuthStep::ServerPassword, "wrong_server_password");
                audit::auth_failure(self.id, self.peer, &nick, step, reason);
                Err(Exit::Bye(ByeReason::Quit, "bad server password".into()))
            }
        }
    }

    fn nick(&self) -> &Nick {
        self.nick
            .as_ref()
            .expect("requests are handled only after registration")
    }
}

impl<W> Session<W> {
    /// Leaves every room and frees the nick; does nothing the second time.
    fn leave(&mut self) {
        let Some(nick) = self.nick.take() else {
            return;
        };
        let ts = crate::now_ms();
        for room in self.rooms.iter() {
            // Err only if not a member, which is what leaving wants anyway.
            let _ = room.quit(self.id, Some(self.part_reason().to_owned()), ts);
        }
        self.rooms.clear();
        self.chat.unregister(self.id, &nick);
        info!(session = %self.id, %nick, reason = %self.part_reason(), "left");
    }
}

impl<W> Session<W> {
    fn part_reason(&self) -> &str {
        self.part_reason.as_deref().unwrap_or("quit")
    }
}

impl<W> Drop for Session<W> {
    /// Synchronous, so leaving happens on every exit path, a panic included.
    fn drop(&mut self) {
        self.leave();
        if let Some(conn) = self.sink.conn() {
            conn.close();
        }
    }
}

/// The rooms a session is in. A short list searched by name: a client is in a few rooms
/// (at most `--max-rooms-per-client`), and a map's buckets would cost every idle
/// connection more than the search ever does.
#[derive(Default)]
struct Rooms(Vec<Arc<Room>>);

impl Rooms {
    fn get(&self, name: &str) -> Option<&Arc<Room>> {
        self.0.iter().find(|r| r.name().as_str() == name)
    }

    fn insert(&mut self, room: Arc<Room>) {
        if self.get(room.name().as_str()).is_none() {
            self.0.push(room);
        }
    }

    fn remove(&mut self, name: &RoomName) {
        self.0.retain(|r| r.name() != name);
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Room>> {
        self.0.iter()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Vec::new();
    }
}

/// The `bye` of the server's shutdown.
const SHUTDOWN_MESSAGE: &str = "the server is shutting down";

fn shutdown_exit() -> Exit {
    Exit::Bye(ByeReason::Shutdown, SHUTDOWN_MESSAGE.into())
}

/// The server is shutting down: every open connection's session is ended through its
/// sink, as a kill ends one. (Sessions not yet registered see the cancellation itself.)
pub(crate) fn shut_down(ops: &crate::ops::Ops) {
    ops.each_sink(|sink| {
        sink.end(crate::path::sink::Ending {
            reason: ByeReason::Shutdown,
            message: SHUTDOWN_MESSAGE.into(),
            part_reason: None,
        });
    });
}
