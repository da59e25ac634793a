//! One connection from accept to its session: socket options, protocol sniffing, the
//! greeting for a silent client, the refusal of one over a connection limit, and the
//! choice of wire adapter. Here, and only here, transports meet adapters and sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_shared::{ByeReason, ErrorCode, ServerMsg};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tracing::debug;
use uuid::Uuid;

use crate::Shared;
use crate::limits::{Admission, Refusal};
use crate::net::sniff::{Proto, Sniffed, sniff};
use crate::net::stream;
use crate::session::Session;
use crate::wire::framed::{self, FramedWire};
use crate::wire::line::{GREETING, LineWire};

/// Runs one accepted connection, admitted or not, in a task of its own.
pub(crate) fn accepted(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    admission: Result<Admission, Refusal>,
) {
    let shared_conn = Arc::clone(shared);
    match admission {
        Ok(admission) => {
            shared
                .tracker
                .spawn(connection(stream, peer, shared_conn, admission));
        }
        Err(refusal) => {
            debug!(%peer, ?refusal, "connection refused");
            shared.tracker.spawn(refuse(stream, shared_conn, refusal));
        }
    }
}

/// One connection until its protocol is known; then its session runs in a task of its
/// own, sized for that session alone (an idle connection's memory is mostly its task).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    admission: Admission,
) {
    let config = &shared.config;
    // The server batches its own writes, so Nagle's algorithm would only add latency.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "set_nodelay failed");
    }
    // Line clients cannot answer pings; keepalive finds the ones that vanished.
    let keepalive = TcpKeepalive::new()
        .with_time(config.ping_interval)
        .with_interval(Duration::from_secs(10));
    if let Err(e) = SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        debug!(%peer, error = %e, "keepalive failed");
    }
    let deadline = Instant::now() + config.handshake_timeout;
    let mut sniffed = BytesMut::new();
    let proto = match detect(&stream, &shared, &mut sniffed, deadline).await {
        Ok(Some(proto)) => proto,
        Ok(None) => return,
        Err(e) => {
            debug!(%peer, error = %e, "connection failed before its first byte");
            return;
        }
    };
    let id = Uuid::now_v7();
    debug!(%peer, session = %id, ?proto, "connected");
    let (reader, writer) = stream::split(stream, sniffed.freeze());
    let tracker = shared.tracker.clone();
    match proto {
        Proto::Framed => {
            let wire = FramedWire::new(reader, writer, config.max_frame);
            tracker.spawn(Session::new(id, wire, &shared, peer.ip()).run(deadline, admission));
        }
        // TLS, IRC and HTTP are reserved for their adapters; until then they are served as
        // line mode, as before the sniffer knew them.
        Proto::Line | Proto::Tls | Proto::Irc | Proto::Http => {
            let wire = LineWire::new(reader, writer, config.max_line, id);
            tracker.spawn(Session::new(id, wire, &shared, peer.ip()).run(deadline, admission));
        }
    }
}

/// Sniffs the protocol; greets a client that stays silent through the sniff window (a
/// person at `nc`). A slow framed client's `0x00` after the greeting still gets framed mode
/// (it skips the greeting, which holds no NUL). `None` when the client left, the handshake
/// timed out, or the server is shutting down.
async fn detect(
    stream: &TcpStream,
    shared: &Shared,
    sniffed: &mut BytesMut,
    deadline: Instant,
) -> std::io::Result<Option<Proto>> {
    let sniff_end = (Instant::now() + shared.config.sniff).min(deadline);
    match sniff(stream, sniffed, sniff_end).await? {
        Sniffed::Proto(proto) => return Ok(Some(proto)),
        Sniffed::Closed => return Ok(None),
        Sniffed::Silent => {}
    }
    write_all(stream, GREETING.as_bytes()).await?;
    tokio::select! {
        () = shared.cancel.cancelled() => {
            write_all(stream, b"-- the server is shutting down\r\n").await?;
            Ok(None)
        }
        found = sniff(stream, sniffed, deadline) => match found? {
            Sniffed::Proto(proto) => Ok(Some(proto)),
            Sniffed::Closed => Ok(None),
            Sniffed::Silent => {
                write_all(stream, b"! no nick given in time, bye\r\n").await?;
                Ok(None)
            }
        },
    }
}

/// Tells a client over a connection limit why it is closed, in its own mode when it has
/// shown one within the sniff window, then closes.
async fn refuse(stream: TcpStream, shared: Arc<Shared>, refusal: Refusal) {
    let text = match refusal {
        Refusal::Full => "the server is full, try again later",
        Refusal::TooManyFromIp => "too many connections from your address",
    };
    let mut sniffed = BytesMut::new();
    let until = Instant::now() + shared.config.sniff;
    let found = sniff(&stream, &mut sniffed, until).await;
    let bytes = if matches!(found, Ok(Sniffed::Proto(Proto::Framed))) {
        let mut frames = BytesMut::new();
        frames.extend_from_slice(&framed::encode(&ServerMsg::error(
            ErrorCode::ServerFull,
            text,
            None,
        )));
        frames.extend_from_slice(&framed::encode(&ServerMsg::Bye {
            reason: ByeReason::ServerFull,
            message: Some(text.into()),
        }));
        frames.freeze()
    } else {
        Bytes::from(format!("! {text}\r\n"))
    };
    // Best effort: the client may already be gone, and it is being closed either way.
    let _ = timeout(Duration::from_secs(1), write_all(&stream, &bytes)).await;
    let (mut reader, mut writer) = stream.into_split();
    crate::wire::linger(&mut reader, &mut writer).await;
}

async fn write_all(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    // Written through `&TcpStream` (which has no AsyncWrite) so the stream stays whole for
    // splitting afterwards.
    let mut written = 0;
    while written < bytes.len() {
        stream.writable().await?;
        match stream.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::stream::{Reader, Writer};
    use tokio::net::TcpListener;
    use tokio_util::task::TaskTracker;

    /// An idle connection's memory is mostly its session task; W4 of `chat-bench` measures
    /// the whole. This keeps the task from silently growing back: it was 2.7 KB before the
    /// rare phases were boxed and `run` stopped copying `self`, then 984 / 990 bytes (framed
    /// / line), 1016 / 1056 once history could come from the store, and 1088 / 1120 once
    /// the idle-ping timer and the shutdown future were made once per session instead of
    /// once per wake-up (issue 10: they cost a timer-wheel update and a lock shared by every
    /// session on every wake-up) and a join's history read was boxed like a page's; 1136 /
    /// 1176 with accounts (issue 11: the client's address, by which failed logins are
    /// throttled, the login flag, an account request waiting for its hash, and line mode's
    /// boxed login state). W4 measured 2.1 KiB per idle connection in all before them.
    #[tokio::test]
    async fn session_tasks_stay_near_a_kilobyte() {
        const BUDGET: usize = 1184;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(crate::Config::default());
        let shared = Arc::new(Shared {
            chat: Arc::new(crate::chat::Chat::new(Arc::clone(&config), None)),
            limits: crate::limits::ConnLimits::new(10, 10),
            config,
            cancel: tokio_util::sync::CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let mut sizes = Vec::new();
        for framed in [true, false] {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            let admission = shared.limits.admit(peer.ip()).unwrap();
            let (r, w) = stream::split(stream, Bytes::new());
            fn task_size<W: crate::wire::Wire, G>(wire: W, shared: &Shared, guard: G) -> usize {
                let peer = std::net::Ipv4Addr::LOCALHOST.into();
                let task = Session::new(Uuid::nil(), wire, shared, peer).run(Instant::now(), guard);
                std::mem::size_of_val(&task)
            }
            let size = if framed {
                let wire: FramedWire<Reader, Writer> = FramedWire::new(r, w, 1024);
                task_size(wire, &shared, admission)
            } else {
                let wire: LineWire<Reader, Writer> = LineWire::new(r, w, 1024, Uuid::nil());
                task_size(wire, &shared, admission)
            };
            sizes.push(size);
        }
        eprintln!("session task sizes (framed, line): {sizes:?}");
        assert!(
            sizes.iter().all(|&s| s <= BUDGET),
            "session task sizes (framed, line): {sizes:?}"
        );
    }
}
