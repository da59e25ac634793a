//! The featureless reference: every line a client sends is written to every other client.
//!
//! It is what a chat server costs with nothing of a chat server in it (no rooms, no
//! validation, no history, no `seq`), so the server's results divided by the reflector's,
//! measured in the same run on the same machine, say how much the features cost; absolute
//! figures on a shared 2-core machine are noise by comparison.
//!
//! It speaks just enough of line mode for the same load clients to drive it: the first line
//! is the nick, answered with the welcome and join notices a client waits for; `/part`,
//! `/join` and `/quit` are acknowledged the same way; any other line goes out to everyone
//! else as `<nick> line`. One tokio broadcast channel is the fan-out, and each connection
//! writes everything that is pending in one `write` (write batching).
//!
//! Layout:
//! - [`serve`]: accept loop until the shutdown future completes.
//! - `connection`: one client: lines in, broadcast out, batched writes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Messages buffered for the slowest client before it is told it fell behind. This is the
/// reflector's own choice: the server under test runs with its defaults (issue 10).
const BUFFER: usize = 4096;

/// Largest line kept; a longer one is cut (the load never sends one).
const MAX_LINE: usize = 8192;

/// A line on its way to everyone: who sent it (not echoed to them), and the bytes.
type Out = Arc<(u64, Vec<u8>)>;

/// Serves `listener` until `shutdown` completes. Accept errors are retried.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let (tx, _) = broadcast::channel::<Out>(BUFFER);
    let ids = AtomicU64::new(0);
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(stream, id, tx.clone()));
                }
                Err(_) => {
                    // Out of descriptors, most likely: pause instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

/// Runs the reflector as this process's whole job: `chat-bench reflector --listen ADDR`.
/// Prints `listening on ADDR` to stderr, as `chat-server` does; the parent kills it (and
/// the kernel does, should the parent die first).
///
/// # Errors
/// If `listen` cannot be bound.
pub async fn main(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    serve(listener, std::future::pending()).await;
    Ok(())
}

async fn recv(rx: &mut Option<broadcast::Receiver<Out>>) -> Result<Out, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One client. The read buffer lives on the stack only while a read is handled, so an idle
/// connection costs its task, its socket and its broadcast receiver, nothing more.
async fn connection(mut stream: TcpStream, id: u64, tx: broadcast::Sender<Out>) {
    // Errors here only cost latency; the benchmark sets it on the server too.
    let _ = stream.set_nodelay(true);
    let mut nick: Option<Vec<u8>> = None;
    let mut partial: Vec<u8> = Vec::new();
    let mut rx: Option<broadcast::Receiver<Out>> = None;
    let mut out: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            ready = stream.readable() => {
                if ready.is_err() {
                    return;
                }
                let step = read_lines(&stream, id, &mut nick, &mut partial, &mut rx, &tx, &mut out);
                if step == Step::Closed {
                    return;
                }
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                if step == Step::Quit {
                    // The peer may be gone already; closing is all that is left.
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            msg = recv(&mut rx) => {
                match msg {
                    Ok(m) => push(&mut out, &m, id),
                    Err(RecvError::Lagged(n)) => out.extend_from_slice(
                        format!("! you fell behind and missed {n} messages\r\n").as_bytes(),
                    ),
                    Err(RecvError::Closed) => return,
                }
                // Batch: everything already pending goes out in the same write.
                if let Some(r) = rx.as_mut() {
                    loop {
                        match r.try_recv() {
                            Ok(m) => push(&mut out, &m, id),
                            Err(TryRecvError::Lagged(n)) => out.extend_from_slice(
                                format!("! you fell behind and missed {n} messages\r\n").as_bytes(),
                            ),
                            Err(_) => break,
                        }
                        if out.len() >= 256 * 1024 {
                            break;
                        }
                    }
                }
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                if out.capacity() > 64 * 1024 {
                    // A burst grew it; an idle connection should not keep that.
                    out = Vec::new();
                }
            }
        }
    }
}

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Lines handled (or nothing ready after all).
    More,
    /// The client sent `/quit`.
    Quit,
    /// End of stream or an error.
    Closed,
}

/// Reads what is ready and handles every complete line. Not async, so the read buffer is
/// on the stack only here and never part of the connection's future.
fn read_lines(
    stream: &TcpStream,
    id: u64,
    nick: &mut Option<Vec<u8>>,
    partial: &mut Vec<u8>,
    rx: &mut Option<broadcast::Receiver<Out>>,
    tx: &broadcast::Sender<Out>,
    out: &mut Vec<u8>,
) -> Step {
    let mut chunk = [0u8; 16 * 1024];
    let n = match stream.try_read(&mut chunk) {
        Ok(0) => return Step::Closed,
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Step::More,
        Err(_) => return Step::Closed,
    };
    let mut quit = false;
    let mut data = &chunk[..n];
    while let Some(i) = memchr::memchr(b'\n', data) {
        let (head, rest) = data.split_at(i);
        data = &rest[1..];
        let line = if partial.is_empty() {
            head
        } else {
            partial.extend_from_slice(head);
            &partial[..]
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        quit |= handle_line(line, id, nick, rx, tx, out);
        partial.clear();
    }
    if partial.len() + data.len() <= MAX_LINE {
        partial.extend_from_slice(data);
    }
    if quit { Step::Quit } else { Step::More }
}

fn push(out: &mut Vec<u8>, m: &Out, me: u64) {
    if m.0 != me {
        out.extend_from_slice(&m.1);
    }
}

/// Handles one line; true when the client quits.
fn handle_line(
    line: &[u8],
    id: u64,
    nick: &mut Option<Vec<u8>>,
    rx: &mut Option<broadcast::Receiver<Out>>,
    tx: &broadcast::Sender<Out>,
    out: &mut Vec<u8>,
) -> bool {
    let Some(name) = nick.as_deref() else {
        let name = line.trim_ascii().to_vec();
        out.extend_from_slice(b"-- welcome, ");
        out.extend_from_slice(&name);
        out.extend_from_slice(b"!\r\n-- you joined #lobby; it is your current room\r\n");
        *nick = Some(name);
        *rx = Some(tx.subscribe());
        return false;
    };
    if let Some(cmd) = line.strip_prefix(b"/") {
        let word = cmd.split(|&c| c == b' ').next().unwrap_or_default();
        let arg = cmd.get(word.len() + 1..).unwrap_or_default().trim_ascii();
        match word {
            b"quit" => return true,
            b"part" => {
                *rx = None;
                out.extend_from_slice(b"-- you left #");
                out.extend_from_slice(if arg.is_empty() { b"lobby" } else { arg });
                out.extend_from_slice(b"\r\n");
            }
            b"join" => {
                if rx.is_none() {
                    *rx = Some(tx.subscribe());
                }
                out.extend_from_slice(b"-- you joined #");
                out.extend_from_slice(arg);
                out.extend_from_slice(b"; it is your current room\r\n");
            }
            // Everything else a chat server does is exactly what this one leaves out.
            _ => {}
        }
        return false;
    }
    let mut msg = Vec::with_capacity(name.len() + line.len() + 5);
    msg.push(b'<');
    msg.extend_from_slice(name);
    msg.extend_from_slice(b"> ");
    msg.extend_from_slice(line);
    msg.extend_from_slice(b"\r\n");
    // Err only when nobody is subscribed, and then there is nobody to deliver to.
    let _ = tx.send(Arc::new((id, msg)));
    false
}
