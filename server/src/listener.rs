//! Accepting connections and deciding each one's wire mode from its first byte.
//!
//! A framed client's first byte is `0x00` (the top byte of a length under 16 MiB); typed text
//! never is. A client that sends nothing within the sniff window is taken for a person at
//! `nc` and greeted; if a slow framed client's `0x00` arrives after that, it still gets framed
//! mode (it skips the greeting, which contains no NUL).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout_at};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use uuid::Uuid;

use bytes::{Bytes, BytesMut};
use chat_shared::{ByeReason, ErrorCode, ServerMsg};
use tokio::time::timeout;

use crate::Shared;
use crate::limits::{Admission, Refusal};
use crate::session::Session;
use crate::wire::framed;
use crate::wire::framed::FramedWire;
use crate::wire::line::{GREETING, LineWire};

/// Accepts until cancelled. Accept errors (out of file descriptors, say) are retried with a
/// growing pause instead of ending the server.
pub(crate) async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                match shared.limits.admit(peer.ip()) {
                    Ok(admission) => {
                        tracker.spawn(connection(stream, peer, Arc::clone(shared), admission));
                    }
                    Err(refusal) => {
                        debug!(%peer, ?refusal, "connection refused");
                        tracker.spawn(refuse(stream, Arc::clone(shared), refusal));
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed; retrying in {backoff:?}");
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Framed,
    Line,
}

/// One connection until its mode is known; then its session runs in a task of its own, sized
/// for that session alone (an idle connection's memory is mostly its task).
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
    let mode = match detect(&stream, &shared, deadline).await {
        Ok(Some(mode)) => mode,
        Ok(None) => return,
        Err(e) => {
            debug!(%peer, error = %e, "connection failed before its first byte");
            return;
        }
    };
    let id = Uuid::now_v7();
    debug!(%peer, session = %id, ?mode, "connected");
    let (reader, writer) = stream.into_split();
    let tracker = shared.tracker.clone();
    match mode {
        Mode::Framed => {
            let wire = FramedWire::new(reader, writer, config.max_frame);
            let session = Session::new(id, wire, &shared);
            tracker.spawn(session.run(deadline, admission));
        }
        Mode::Line => {
            let wire = LineWire::new(reader, writer, config.max_line, id);
            let session = Session::new(id, wire, &shared);
            tracker.spawn(session.run(deadline, admission));
        }
    }
}

/// Waits for the first byte (without consuming it); greets a client that stays silent.
/// `None` when the client left, the handshake timed out, or the server is shutting down.
async fn detect(
    stream: &TcpStream,
    shared: &Shared,
    deadline: Instant,
) -> std::io::Result<Option<Mode>> {
    let mut first = [0u8; 1];
    let sniff_end = (Instant::now() + shared.config.sniff).min(deadline);
    if let Ok(peeked) = timeout_at(sniff_end, stream.peek(&mut first)).await {
        return Ok(mode_of(peeked?, first[0]));
    }
    write_line(stream, GREETING).await?;
    tokio::select! {
        () = shared.cancel.cancelled() => {
            write_line(stream, "-- the server is shutting down\r\n").await?;
            Ok(None)
        }
        peeked = timeout_at(deadline, stream.peek(&mut first)) => match peeked {
            Ok(n) => Ok(mode_of(n?, first[0])),
            Err(_) => {
                write_line(stream, "! no nick given in time, bye\r\n").await?;
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
    let mut first = [0u8; 1];
    let peeked = timeout(shared.config.sniff, stream.peek(&mut first)).await;
    let bytes = if matches!(peeked, Ok(Ok(1..))) && first[0] == 0 {
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

fn mode_of(peeked: usize, first: u8) -> Option<Mode> {
    match (peeked, first) {
        (0, _) => None,
        (_, 0) => Some(Mode::Framed),
        _ => Some(Mode::Line),
    }
}

async fn write_line(stream: &TcpStream, text: &str) -> std::io::Result<()> {
    write_all(stream, text.as_bytes()).await
}

async fn write_all(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    // Written through `&TcpStream` (which has no AsyncWrite) so the stream stays whole for
    // `into_split` afterwards.
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
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    /// An idle connection's memory is mostly its session task; W4 of `chat-bench` measures
    /// the whole. This keeps the task from silently growing back: it was 2.7 KB before the
    /// rare phases were boxed and `run` stopped copying `self`, then 984 / 990 bytes (framed
    /// / line), and 1016 / 1056 once history could come from the store.
    #[tokio::test]
    async fn session_tasks_stay_near_a_kilobyte() {
        const BUDGET: usize = 1088;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(crate::Config::default());
        let shared = Arc::new(Shared {
            hub: Arc::new(crate::hub::Hub::new(Arc::clone(&config), None)),
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
            let (r, w) = stream.into_split();
            let size = if framed {
                let wire: FramedWire<OwnedReadHalf, OwnedWriteHalf> = FramedWire::new(r, w, 1024);
                let task = Session::new(Uuid::nil(), wire, &shared).run(Instant::now(), admission);
                std::mem::size_of_val(&task)
            } else {
                let wire: LineWire<OwnedReadHalf, OwnedWriteHalf> =
                    LineWire::new(r, w, 1024, Uuid::nil());
                let task = Session::new(Uuid::nil(), wire, &shared).run(Instant::now(), admission);
                std::mem::size_of_val(&task)
            };
            sizes.push(size);
        }
        assert!(
            sizes.iter().all(|&s| s <= BUDGET),
            "session task sizes (framed, line): {sizes:?}"
        );
    }
}
