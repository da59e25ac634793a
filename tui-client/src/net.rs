//! The network task: one framed connection at a time, reconnecting with backoff until told
//! to hold (the server sent us away for good) and again when told to resume. Given several
//! servers (nodes of one cluster), it tries them in turn: the next one at once when one
//! fails or drops, the backoff only after a full round of them failed ([`Rotation`]).
//!
//! It knows the connection (plain or TLS, opened by [`crate::transport`]), not the chat: it reports each [`ServerMsg`] to the app as a
//! [`NetEvent`] and writes the [`Request`]s the app sends back. The two protocol concerns it
//! owns are timing (`ping` for the round-trip time, and declaring a silent connection dead)
//! and generations: each request carries the number of the connection it was meant for, so
//! nothing written for a connection that has since dropped reaches the next one before its
//! `hello`.
//!
//! Layout:
//! - [`spawn`] and [`NetCommand`]: the task and what the app can ask of it.
//! - `session`: one connection's select loop.
//! - [`Pinger`], [`Rotation`] and [`backoff`]: the timing and rotation rules, pure so they
//!   can be unit-tested.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_shared::{ClientCodec, ClientMsg, Request, ServerMsg};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at, sleep, timeout};
use tokio_util::codec::Framed;

use crate::transport::{self, Stream, Transport};
use crate::update::NetEvent;

/// What the app asks of the network task.
#[derive(Debug, Clone, PartialEq)]
pub enum NetCommand {
    /// Write `req` if connection `generation` is still the current one; drop it otherwise.
    Send {
        /// The connection the request was made for.
        generation: u64,
        /// The request.
        req: Request,
    },
    /// Close the connection (after writing what was already queued) and do not reconnect
    /// until [`NetCommand::Resume`].
    Hold,
    /// Connect now: after [`NetCommand::Hold`], or cutting a backoff short.
    Resume,
    /// Close the connection (after writing what was already queued) and end the task.
    Shutdown,
}

/// One server to dial: its address, how to talk to it, and what the status bar calls it.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    /// `HOST:PORT`.
    pub addr: String,
    /// Plain TCP or TLS; the trust decision made at start is inside, so every reconnect
    /// reuses it.
    pub transport: Transport,
    /// What the status bar shows (`tls://` when encrypted).
    pub label: String,
}

impl ServerAddr {
    /// Plain TCP to `addr`, shown as it is.
    pub fn plain(addr: impl Into<String>) -> Self {
        let addr = addr.into();
        Self {
            label: addr.clone(),
            addr,
            transport: Transport::Plain,
        }
    }
}

/// Where and how the network task connects; a struct so tests can make it fast.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The servers, tried in this order (at least one).
    pub servers: Vec<ServerAddr>,
    /// How often to `ping` for the round-trip time.
    pub ping_every: Duration,
    /// Unanswered pings after which the connection is declared dead (a half-open TCP
    /// connection would otherwise look "online" forever).
    pub max_unanswered: u32,
    /// Longest wait for a TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
}

impl NetConfig {
    /// Defaults for one plain server at `addr`: ping every 5 s, dead after 4 unanswered,
    /// 5 s connect timeout.
    pub fn new(addr: impl Into<String>) -> Self {
        Self::servers(vec![ServerAddr::plain(addr)])
    }

    /// The same defaults for `servers`, tried in turn.
    ///
    /// # Panics
    /// If `servers` is empty.
    pub fn servers(servers: Vec<ServerAddr>) -> Self {
        assert!(!servers.is_empty(), "no server to connect to");
        Self {
            servers,
            ping_every: Duration::from_secs(5),
            max_unanswered: 4,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Starts the network task. Events go to `events_tx`; the returned sender takes commands.
///
/// The command channel is unbounded because its producer is the UI loop, which must never
/// block on the network; its rate is bounded by the user's typing and by answers to what the
/// server sent (which the bounded `events_tx` already throttles).
pub fn spawn(
    config: NetConfig,
    events_tx: mpsc::Sender<NetEvent>,
) -> (mpsc::UnboundedSender<NetCommand>, JoinHandle<()>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(config, events_tx, cmd_rx));
    (cmd_tx, handle)
}

/// How a session ended.
enum End {
    /// The connection is gone; reconnect.
    Lost {
        reason: String,
        /// Whether the server welcomed us: then the next failure starts a fresh backoff.
        welcomed: bool,
    },
    /// The app asked to hold: closed, and not to be redialled until it resumes.
    Held,
    /// The app asked to stop, or is gone.
    Stop,
}

async fn run(
    config: NetConfig,
    events_tx: mpsc::Sender<NetEvent>,
    mut cmd_rx: mpsc::UnboundedReceiver<NetCommand>,
) {
    let mut rotation = Rotation::new(config.servers.len());
    let mut generation: u64 = 0;
    loop {
        let server = &config.servers[rotation.current()];
        let connecting = NetEvent::Connecting {
            attempt: rotation.failures(),
            server: server.label.clone(),
        };
        if events_tx.send(connecting).await.is_err() {
            return;
        }
        let connect = transport::connect(&server.addr, &server.transport, config.connect_timeout);
        let (reason, mut held, next) = match connect.await {
            Ok(stream) => {
                generation += 1;
                if events_tx
                    .send(NetEvent::Connected { generation })
                    .await
                    .is_err()
                {
                    return;
                }
                let framed = Framed::new(stream, ClientCodec::default());
                match session(framed, generation, &config, &mut cmd_rx, &events_tx).await {
                    End::Stop => return,
                    End::Held => ("closed after the server's bye".to_owned(), true, Next::Now),
                    End::Lost { reason, welcomed } => {
                        let next = if welcomed {
                            rotation.lost()
                        } else {
                            rotation.failed()
                        };
                        (reason, false, next)
                    }
                }
            }
            Err(e) => (e.to_string(), false, rotation.failed()),
        };
        let retry_in = match next {
            Next::Backoff(round) if !held => backoff(round, jitter_ms()),
            _ => Duration::ZERO,
        };
        let event = NetEvent::Disconnected { reason, retry_in };
        if events_tx.send(event).await.is_err() {
            return;
        }
        let wait = sleep(retry_in);
        tokio::pin!(wait);
        while !held {
            tokio::select! {
                () = &mut wait => break,
                cmd = cmd_rx.recv() => match cmd {
                    // Expected while offline: the app resends unacknowledged messages after
                    // the next `welcome`; everything else is moot.
                    Some(NetCommand::Send { .. }) => {}
                    Some(NetCommand::Hold) => held = true,
                    Some(NetCommand::Resume) => break,
                    Some(NetCommand::Shutdown) | None => return,
                },
            }
        }
        if held {
            loop {
                match cmd_rx.recv().await {
                    Some(NetCommand::Resume) => break,
                    // Expected while held: nothing to write to, nothing more to hold.
                    Some(NetCommand::Send { .. } | NetCommand::Hold) => {}
                    Some(NetCommand::Shutdown) | None => return,
                }
            }
            rotation.resume();
        }
    }
}

async fn session(
    mut framed: Framed<Stream, ClientCodec>,
    generation: u64,
    config: &NetConfig,
    cmd_rx: &mut mpsc::UnboundedReceiver<NetCommand>,
    events_tx: &mpsc::Sender<NetEvent>,
) -> End {
    let mut pinger = Pinger::new(config.max_unanswered);
    let start = tokio::time::Instant::now() + config.ping_every.min(Duration::from_secs(1));
    let mut ping_tick = interval_at(start, config.ping_every);
    ping_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut welcomed = false;
    let lost = |reason: String, welcomed: bool| End::Lost { reason, welcomed };
    loop {
        tokio::select! {
            frame = framed.next() => match frame {
                Some(Ok(ServerMsg::Pong { token: Some(token) }))
                    if pinger.is_ours(&token) =>
                {
                    if let Some(rtt) = pinger.on_pong(&token, Instant::now())
                        && events_tx.send(NetEvent::Rtt(rtt)).await.is_err()
                    {
                        return End::Stop;
                    }
                }
                Some(Ok(msg)) => {
                    welcomed |= matches!(msg, ServerMsg::Welcome { .. });
                    if events_tx.send(NetEvent::Message(msg)).await.is_err() {
                        return End::Stop;
                    }
                }
                Some(Err(e)) => return lost(e.to_string(), welcomed),
                None => return lost("connection closed by the server".into(), welcomed),
            },
            cmd = cmd_rx.recv() => match cmd {
                Some(NetCommand::Send { generation: g, req }) if g == generation => {
                    if let Err(e) = framed.send(req).await {
                        return lost(e.to_string(), welcomed);
                    }
                }
                // Expected: made for an earlier connection; resent after `welcome` if needed.
                // A resume while connected has nothing to do.
                Some(NetCommand::Send { .. } | NetCommand::Resume) => {}
                Some(NetCommand::Hold) => {
                    close(framed).await;
                    return End::Held;
                }
                Some(NetCommand::Shutdown) | None => {
                    close(framed).await;
                    return End::Stop;
                }
            },
            _ = ping_tick.tick() => {
                let Some(token) = pinger.next_ping(Instant::now()) else {
                    return lost("no answer to ping".into(), welcomed);
                };
                let ping = ClientMsg::Ping { token: Some(Value::from(token)) };
                if let Err(e) = framed.send(Request::new(ping)).await {
                    return lost(e.to_string(), welcomed);
                }
            }
        }
    }
}

/// Flushes and waits briefly for the server to close after our `quit` (or its `bye`), so
/// the close is orderly; never waits long, the user is leaving.
async fn close(mut framed: Framed<Stream, ClientCodec>) {
    let drain = async {
        // Ignored: the connection is being abandoned either way.
        let _ = SinkExt::<Request>::flush(&mut framed).await;
        while let Some(Ok(_)) = framed.next().await {}
    };
    // Ignored: a server that does not close in time is simply dropped.
    let _ = timeout(Duration::from_millis(500), drain).await;
}

/// When to dial after an attempt ended: see [`Rotation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At once: the next server of the round.
    Now,
    /// After [`backoff`] for this many full rounds that failed before (0 for the first).
    Backoff(u32),
}

/// Which server to dial next, and when: round-robin over the servers, the next one at once
/// after a failure, and the backoff only once every server of a round has failed. A lost
/// connection (after a `welcome`) counts as its server's failure in a fresh round, so with
/// one server nothing changes: a backoff before every attempt, doubling while they fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    count: usize,
    /// The server being dialled or connected to.
    current: usize,
    /// Servers that failed in the round under way.
    failed_in_round: usize,
    /// Full rounds that failed since the last good connection.
    rounds: u32,
    /// Failed attempts since the last good connection, whatever the server.
    failures: u32,
}

impl Rotation {
    /// A rotation over `count` servers (at least one), starting with the first.
    pub fn new(count: usize) -> Self {
        Self {
            count: count.max(1),
            current: 0,
            failed_in_round: 0,
            rounds: 0,
            failures: 0,
        }
    }

    /// The index of the server to dial (or connected to).
    pub fn current(&self) -> usize {
        self.current
    }

    /// Failed attempts since the last good connection: what the status bar counts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The current server could not be reached, or dropped us before its `welcome`: move
    /// on to the next one, and say when.
    pub fn failed(&mut self) -> Next {
        self.failures = self.failures.saturating_add(1);
        self.failed_in_round += 1;
        self.current = (self.current + 1) % self.count;
        if self.failed_in_round < self.count {
            return Next::Now;
        }
        self.failed_in_round = 0;
        let round = self.rounds;
        self.rounds = self.rounds.saturating_add(1);
        Next::Backoff(round)
    }

    /// A connection that had been welcomed is gone: a fresh start, from the next server.
    pub fn lost(&mut self) -> Next {
        self.resume();
        self.failed()
    }

    /// After a hold, or when the user asks to reconnect: a fresh round from the current
    /// server.
    pub fn resume(&mut self) {
        self.failed_in_round = 0;
        self.rounds = 0;
        self.failures = 0;
    }
}

/// Reconnect delay: 0.5 s doubling to 15 s, plus up to 250 ms of jitter so that many
/// clients cut off at once by a restart do not come back in lockstep.
pub fn backoff(attempt: u32, jitter_ms: u64) -> Duration {
    let base = 500u64.saturating_mul(1 << attempt.min(5)).min(15_000);
    Duration::from_millis(base + jitter_ms % 250)
}

fn jitter_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// Round-trip timing with numeric tokens, and liveness: too many unanswered pings in a row
/// mean the connection is dead even if TCP has not noticed.
#[derive(Debug)]
pub struct Pinger {
    next_token: u64,
    /// The ping in flight: its token and when it was sent.
    in_flight: Option<(u64, Instant)>,
    unanswered: u32,
    max_unanswered: u32,
}

impl Pinger {
    /// A pinger that gives up after `max_unanswered` pings in a row without a `pong`.
    pub fn new(max_unanswered: u32) -> Self {
        Self {
            next_token: 1,
            in_flight: None,
            unanswered: 0,
            max_unanswered,
        }
    }

    /// The token of the next ping, or `None` when the connection should be declared dead.
    pub fn next_ping(&mut self, now: Instant) -> Option<u64> {
        if self.in_flight.is_some() {
            self.unanswered += 1;
            if self.unanswered >= self.max_unanswered {
                return None;
            }
        }
        let token = self.next_token;
        self.next_token += 1;
        self.in_flight = Some((token, now));
        Some(token)
    }

    /// Whether a pong token is one of ours (numeric, not from the future).
    pub fn is_ours(&self, token: &Value) -> bool {
        token.as_u64().is_some_and(|t| t < self.next_token)
    }

    /// The round-trip time if `token` answers the ping in flight. An older token still
    /// proves the connection alive.
    pub fn on_pong(&mut self, token: &Value, now: Instant) -> Option<Duration> {
        self.unanswered = 0;
        let (sent_token, sent_at) = self.in_flight?;
        if token.as_u64() != Some(sent_token) {
            return None;
        }
        self.in_flight = None;
        Some(now.duration_since(sent_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::FrameCodec;
    use chat_shared::encode_frame;
    use tokio::net::TcpListener;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0, 0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0), Duration::from_millis(1000));
        assert_eq!(backoff(30, 0), Duration::from_millis(15_000));
        assert!(backoff(2, 1_000_003) < Duration::from_millis(2250));
    }

    #[test]
    fn one_server_keeps_the_backoff_before_every_attempt() {
        let mut r = Rotation::new(1);
        assert_eq!((r.current(), r.failures()), (0, 0));
        assert_eq!(r.failed(), Next::Backoff(0));
        assert_eq!(r.failed(), Next::Backoff(1));
        assert_eq!(r.failed(), Next::Backoff(2));
        assert_eq!((r.current(), r.failures()), (0, 3));
        // Welcomed, then lost: a fresh start, the first backoff again.
        assert_eq!(r.lost(), Next::Backoff(0));
        assert_eq!((r.current(), r.failures()), (0, 1));
    }

    #[test]
    fn several_servers_are_tried_in_turn_with_the_backoff_between_rounds() {
        let mut r = Rotation::new(3);
        assert_eq!(r.current(), 0);
        // The first two fail: the next one at once each time.
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), 1);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), 2);
        // The third fails too: the round is over, back off, then start over at the first.
        assert_eq!(r.failed(), Next::Backoff(0));
        assert_eq!((r.current(), r.failures()), (0, 3));
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Backoff(1));
        assert_eq!(r.current(), 0);
        // The first answers this time; its node dies later: the next one, at once.
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), 1);
        assert_eq!(r.lost(), Next::Now);
        assert_eq!((r.current(), r.failures()), (2, 1));
        // A round counts from the server that was lost: 1 (lost), 2, 0 failed.
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Backoff(0));
        assert_eq!(r.current(), 1);
    }

    #[test]
    fn a_resume_starts_a_fresh_round_at_the_current_server() {
        let mut r = Rotation::new(2);
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Backoff(0));
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.current(), 1);
        r.resume();
        assert_eq!((r.current(), r.failures()), (1, 0));
        assert_eq!(r.failed(), Next::Now);
        assert_eq!(r.failed(), Next::Backoff(0));
    }

    #[test]
    fn pinger_measures_rtt_and_detects_a_dead_connection() {
        let t0 = Instant::now();
        let mut p = Pinger::new(3);
        let token = p.next_ping(t0).unwrap();
        assert!(p.is_ours(&Value::from(token)));
        assert!(!p.is_ours(&Value::from("server-token")));
        let rtt = p.on_pong(&Value::from(token), t0 + Duration::from_millis(7));
        assert_eq!(rtt, Some(Duration::from_millis(7)));
        // After three unanswered pings, the next tick declares the connection dead.
        assert!(p.next_ping(t0).is_some());
        assert!(p.next_ping(t0).is_some());
        assert!(p.next_ping(t0).is_some());
        assert_eq!(p.next_ping(t0), None);
    }

    async fn next_event(rx: &mut mpsc::Receiver<NetEvent>) -> NetEvent {
        timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no network event within 5 s")
            .expect("network task ended")
    }

    #[tokio::test]
    async fn reconnects_after_the_server_drops_and_drops_stale_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let (cmd_tx, handle) = spawn(NetConfig::new(addr.clone()), events_tx);

        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connecting {
                attempt: 0,
                server: addr.clone()
            }
        );
        let (first, _) = listener.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 1 }
        );
        drop(first);
        let NetEvent::Disconnected { retry_in, .. } = next_event(&mut events_rx).await else {
            panic!("expected a disconnect");
        };
        assert!(retry_in <= Duration::from_millis(750));
        // Written for connection 1, which is gone: must never reach connection 2.
        let stale = Request::new(ClientMsg::Rooms {});
        cmd_tx
            .send(NetCommand::Send {
                generation: 1,
                req: stale,
            })
            .unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connecting {
                attempt: 1,
                server: addr.clone()
            }
        );
        let (second, _) = listener.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 2 }
        );
        let mut server = Framed::new(second, FrameCodec::new(chat_shared::MAX_FRAME_LEN));
        let hello = Request::new(ClientMsg::Hello {
            nick: "alice".into(),
            version: None,
            client: None,
            password: None,
        });
        cmd_tx
            .send(NetCommand::Send {
                generation: 2,
                req: hello.clone(),
            })
            .unwrap();
        let frame = timeout(Duration::from_secs(5), server.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let got: Request = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            got, hello,
            "the first frame on the new connection is the hello"
        );

        // Events from the server are forwarded as they are.
        let welcome = ServerMsg::Pong {
            token: Some(Value::from("x")),
        };
        let bytes = encode_frame(&welcome).unwrap();
        futures::SinkExt::send(&mut server, bytes.slice(4..))
            .await
            .unwrap();
        assert_eq!(next_event(&mut events_rx).await, NetEvent::Message(welcome));

        cmd_tx.send(NetCommand::Shutdown).unwrap();
        timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn held_it_closes_and_does_not_redial_until_resumed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let (cmd_tx, handle) = spawn(NetConfig::new(addr.clone()), events_tx);
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connecting {
                attempt: 0,
                server: addr.clone()
            }
        );
        let (first, _) = listener.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 1 }
        );
        // As after a `bye{killed}`: the app holds while the connection is still open.
        cmd_tx.send(NetCommand::Hold).unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Disconnected {
                reason: "closed after the server's bye".into(),
                retry_in: Duration::ZERO
            }
        );
        let mut server_side = Framed::new(first, FrameCodec::new(chat_shared::MAX_FRAME_LEN));
        assert!(
            timeout(Duration::from_secs(5), server_side.next())
                .await
                .expect("the client closes its end")
                .is_none()
        );
        // Longer than the first backoff (0.5 s + jitter): nothing is dialled.
        let redial = timeout(Duration::from_millis(1200), listener.accept()).await;
        assert!(redial.is_err(), "redialled while held");
        assert!(events_rx.try_recv().is_err());

        cmd_tx.send(NetCommand::Resume).unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connecting {
                attempt: 0,
                server: addr.clone()
            }
        );
        let (_second, _) = listener.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 2 }
        );
        cmd_tx.send(NetCommand::Shutdown).unwrap();
        timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_hold_during_the_backoff_stops_the_next_attempt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let (cmd_tx, handle) = spawn(NetConfig::new(addr.clone()), events_tx);
        next_event(&mut events_rx).await;
        let (first, _) = listener.accept().await.unwrap();
        next_event(&mut events_rx).await;
        // The server closes first (its `bye`, then FIN); the app's hold comes after.
        drop(first);
        assert!(matches!(
            next_event(&mut events_rx).await,
            NetEvent::Disconnected { .. }
        ));
        cmd_tx.send(NetCommand::Hold).unwrap();
        let redial = timeout(Duration::from_millis(1200), listener.accept()).await;
        assert!(redial.is_err(), "redialled while held");
        cmd_tx.send(NetCommand::Shutdown).unwrap();
        timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_dead_server_is_skipped_and_a_dropped_one_gives_way_to_the_next_at_once() {
        // Nothing listens on the first address (bound, then closed).
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = gone.local_addr().unwrap().to_string();
        drop(gone);
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_addr = b.local_addr().unwrap().to_string();
        let c = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c_addr = c.local_addr().unwrap().to_string();
        let servers = [&dead, &b_addr, &c_addr].map(|a| ServerAddr::plain(a.as_str()));
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let (cmd_tx, handle) = spawn(NetConfig::servers(servers.to_vec()), events_tx);

        let connecting = |attempt, server: &String| NetEvent::Connecting {
            attempt,
            server: server.clone(),
        };
        assert_eq!(next_event(&mut events_rx).await, connecting(0, &dead));
        let NetEvent::Disconnected { retry_in, .. } = next_event(&mut events_rx).await else {
            panic!("expected the dead server's failure");
        };
        assert_eq!(retry_in, Duration::ZERO, "no backoff between servers");
        assert_eq!(next_event(&mut events_rx).await, connecting(1, &b_addr));
        let (on_b, _) = b.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 1 }
        );
        // B welcomes us, then dies: C next, at once.
        let mut on_b = Framed::new(on_b, FrameCodec::new(chat_shared::MAX_FRAME_LEN));
        let welcome = ServerMsg::Welcome {
            nick: "alice".into(),
            session: uuid::Uuid::nil(),
            server: "b".into(),
            motd: None,
            account: false,
        };
        let bytes = encode_frame(&welcome).unwrap();
        futures::SinkExt::send(&mut on_b, bytes.slice(4..))
            .await
            .unwrap();
        assert!(matches!(
            next_event(&mut events_rx).await,
            NetEvent::Message(ServerMsg::Welcome { .. })
        ));
        drop(on_b);
        let NetEvent::Disconnected { retry_in, .. } = next_event(&mut events_rx).await else {
            panic!("expected B's drop");
        };
        assert_eq!(retry_in, Duration::ZERO);
        assert_eq!(next_event(&mut events_rx).await, connecting(1, &c_addr));
        let (_on_c, _) = c.accept().await.unwrap();
        assert_eq!(
            next_event(&mut events_rx).await,
            NetEvent::Connected { generation: 2 }
        );
        cmd_tx.send(NetCommand::Shutdown).unwrap();
        timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
