//! F1 (issue 15): one file shared with tus and downloaded again over loopback, while a room
//! chats as in W3. The same room chats first without the transfer, for the baseline p99.
//!
//! - The file is pseudo-random and never held whole: every 8-byte word is a function of its
//!   position ([`fill`]), so any piece can be made again. One pass before the run (not
//!   measured) computes the whole file's SHA-256, announced in `upload`, and each PATCH's.
//! - The upload is one PATCH per chunk (`Upload-Checksum` included) over one keep-alive
//!   HTTP/1.1 connection ([`Http`], a lean raw client), its body written as it is made, a
//!   MiB at a time. It is timed from its first byte to the server's `message` sharing the
//!   file, which comes after the server's whole-file SHA-256 check and its fsync.
//! - The download is a `GET` of the shared `url`, hashed as it arrives, timed to the last
//!   byte and checked against the announced hash.
//! - The server's RSS is sampled every 10 ms during each; the growth is the peak minus the
//!   sample right before it.
//! - The room (W3-style: receivers, paced senders, `lobby`, framed) chats in rounds of
//!   [`ROUND`] while a transfer runs, and drains between phases; each phase's latencies are
//!   told apart with [`crate::stats::Snapshot`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use chat_shared::{ClientMsg, FileInfo, Password, Request, ServerMsg, encode_frame};
use ring::digest::{Context, SHA256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

use super::{
    DRAIN_LIMIT, DRAIN_QUIET, Meter, Params, connect_senders, drain, login_all, paced_plans,
    receiver_tap, run_senders, sender_tap,
};
use crate::client::{self, InBuf, Item, Login, Mode};
use crate::report::{Outcome, Transfer};
use crate::server_proc::{self, ServerHandle};
use crate::stats::Tally;

/// The room: the server's default one, as in W1–W3.
const ROOM: &str = chat_shared::DEFAULT_ROOM;

/// Chat rounds while a transfer runs: the senders stop at most this long after it ended.
const ROUND: Duration = Duration::from_millis(250);

/// What is generated, hashed and written at once.
const PIECE: usize = 1 << 20;

/// Read buffer of the download.
const READ_PIECE: usize = 256 << 10;

/// Bound on one PATCH, the `message` after the last, and the download.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Bound on the chat connection's answers (`registered`, `upload_slot`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the server's RSS is read during a transfer.
const RSS_EVERY: Duration = Duration::from_millis(10);

/// The uploader's nick and password (it registers: a guest's quota is 100 MiB).
const UPLOADER: &str = "f1up";
const PASSWORD: &str = "f1-bench-password";

/// Seed of the generator.
const SEED: u64 = 0x4631_2d62_656e_6368;

/// The word at position `i` of the file: splitmix64 of `i`, so any piece can be made alone.
fn word(i: u64) -> u64 {
    let mut z = i.wrapping_add(SEED).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The file's bytes at `offset` (a multiple of 8), `buf.len()` of them (a multiple of 8).
fn fill(buf: &mut [u8], offset: u64) {
    let first = offset / 8;
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&word(first + k as u64).to_le_bytes());
    }
}

/// The file to share: its length, how it is cut into PATCHes, and the hashes.
#[derive(Debug, Clone)]
struct FilePlan {
    size: u64,
    chunk: u64,
    sha256: String,
    chunk_sums: Vec<String>,
}

impl FilePlan {
    /// Generates the whole file once, piece by piece, for its hashes (blocking: a second or
    /// so for 1 GiB).
    fn new(size: u64, chunk: u64) -> anyhow::Result<Self> {
        ensure!(
            size > 0 && size.is_multiple_of(8) && chunk > 0 && chunk.is_multiple_of(8),
            "F1's sizes must be multiples of 8 bytes"
        );
        let mut buf = vec![0u8; PIECE];
        let mut whole = Context::new(&SHA256);
        let mut chunk_sums = Vec::new();
        let mut off = 0;
        while off < size {
            let end = (off + chunk).min(size);
            let mut part = Context::new(&SHA256);
            let mut at = off;
            while at < end {
                let n = piece_len(at, end);
                fill(&mut buf[..n], at);
                whole.update(&buf[..n]);
                part.update(&buf[..n]);
                at += n as u64;
            }
            chunk_sums.push(base64::engine::general_purpose::STANDARD.encode(part.finish()));
            off = end;
        }
        Ok(Self {
            size,
            chunk,
            sha256: hex(whole.finish().as_ref()),
            chunk_sums,
        })
    }
}

fn piece_len(at: u64, end: u64) -> usize {
    usize::try_from((end - at).min(PIECE as u64)).unwrap_or(PIECE)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The path of a link the server gave out (`http://HOST:PORT/PATH` → `/PATH`); the
/// connection always goes to the target's address.
fn url_path(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("a link without a scheme")?;
    Ok(rest.find('/').map_or("/", |i| &rest[i..]))
}

/// A response's status line and headers.
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length")?.trim().parse().ok()
    }
}

/// One HTTP/1.1 keep-alive connection, requests one after another.
struct Http {
    stream: TcpStream,
    host: String,
    inbuf: Vec<u8>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            inbuf: Vec::with_capacity(READ_PIECE),
        })
    }

    /// Reads a response's head (and keeps what follows it).
    async fn head(&mut self) -> anyhow::Result<Head> {
        let end = loop {
            if let Some(i) = memchr::memmem::find(&self.inbuf, b"\r\n\r\n") {
                break i;
            }
            ensure!(self.inbuf.len() < 64 << 10, "a response head over 64 KiB");
            let mut buf = [0u8; 8192];
            let n = self.stream.read(&mut buf).await?;
            ensure!(n > 0, "the server closed the HTTP connection");
            self.inbuf.extend_from_slice(&buf[..n]);
        };
        let text = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
        self.inbuf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .context("a response without a status")?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Head { status, headers })
    }

    /// Reads `len` bytes of body, handing each piece to `f` as it arrives.
    async fn body(&mut self, len: u64, mut f: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut left = len;
        let have = usize::try_from(left.min(self.inbuf.len() as u64)).unwrap_or(0);
        if have > 0 {
            f(&self.inbuf[..have]);
            self.inbuf.drain(..have);
            left -= have as u64;
        }
        let mut buf = vec![0u8; READ_PIECE];
        while left > 0 {
            let want = usize::try_from(left.min(READ_PIECE as u64)).unwrap_or(READ_PIECE);
            let n = self.stream.read(&mut buf[..want]).await?;
            ensure!(
                n > 0,
                "the server closed the connection {left} bytes before the end"
            );
            f(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }

    /// A response's body as text (an error's), at most 4 KiB of it shown.
    async fn text(&mut self, head: &Head) -> String {
        let mut text = Vec::new();
        if let Some(len) = head.content_length().filter(|&l| l <= 64 << 10) {
            let _ = self.body(len, |b| text.extend_from_slice(b)).await;
        }
        text.truncate(4096);
        String::from_utf8_lossy(&text).trim().to_owned()
    }

    /// Uploads the whole file to `path`, one PATCH per chunk; returns when its last byte
    /// was written.
    async fn upload(&mut self, path: &str, plan: &FilePlan) -> anyhow::Result<Instant> {
        let mut buf = vec![0u8; PIECE];
        let mut written = Instant::now();
        for (c, sum) in plan.chunk_sums.iter().enumerate() {
            let off = c as u64 * plan.chunk;
            let end = (off + plan.chunk).min(plan.size);
            let patch = async {
                let head = format!(
                    "PATCH {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\n\
                     Content-Type: application/offset+octet-stream\r\nUpload-Offset: {off}\r\n\
                     Upload-Checksum: sha256 {sum}\r\nContent-Length: {}\r\n\r\n",
                    self.host,
                    end - off
                );
                self.stream.write_all(head.as_bytes()).await?;
                let mut at = off;
                while at < end {
                    let n = piece_len(at, end);
                    fill(&mut buf[..n], at);
                    self.stream.write_all(&buf[..n]).await?;
                    at += n as u64;
                }
                written = Instant::now();
                let head = self.head().await?;
                if head.status != 204 {
                    let text = self.text(&head).await;
                    bail!("PATCH at offset {off}: {} {text}", head.status);
                }
                let now_at = head
                    .get("upload-offset")
                    .and_then(|v| v.parse::<u64>().ok());
                ensure!(
                    now_at == Some(end),
                    "PATCH at offset {off}: Upload-Offset {now_at:?}, expected {end}"
                );
                Ok(())
            };
            timeout(STEP_TIMEOUT, patch)
                .await
                .with_context(|| format!("PATCH at offset {off} timed out"))??;
        }
        Ok(written)
    }

    /// Downloads `path`, hashing as it arrives; returns the SHA-256 (hex) and the length.
    async fn download(&mut self, path: &str) -> anyhow::Result<(String, u64)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream.write_all(request.as_bytes()).await?;
        let head = self.head().await?;
        if head.status != 200 {
            let text = self.text(&head).await;
            bail!("GET {path}: {} {text}", head.status);
        }
        let len = head
            .content_length()
            .context("a download without Content-Length")?;
        let mut hash = Context::new(&SHA256);
        self.body(len, |b| hash.update(b)).await?;
        Ok((hex(hash.finish().as_ref()), len))
    }
}

/// The uploader's chat connection: registered, in the room, read all the time (the room's
/// chatter included) by a task that passes on the frames F1 waits for.
struct Uploader {
    wr: OwnedWriteHalf,
    events: mpsc::UnboundedReceiver<ServerMsg>,
}

impl Uploader {
    async fn connect(addr: SocketAddr, readers: &mut JoinSet<()>) -> anyhow::Result<Self> {
        let conn = client::connect(addr, Mode::Framed, &Login::lobby(UPLOADER.into())).await?;
        let (rd, wr) = conn.stream.into_split();
        let (tx, events) = mpsc::unbounded_channel();
        readers.spawn(watch(rd, conn.inbuf, tx));
        let mut this = Self { wr, events };
        this.send(Request::new(ClientMsg::Register {
            password: Password::new(PASSWORD),
        }))
        .await?;
        this.answer(|m| matches!(m, ServerMsg::Registered { .. }).then_some(()))
            .await
            .context("registering the uploader")?;
        Ok(this)
    }

    async fn send(&mut self, request: Request) -> anyhow::Result<()> {
        self.wr.write_all(&encode_frame(&request)?).await?;
        Ok(())
    }

    /// The first frame `pick` takes, within [`ANSWER_TIMEOUT`]; an `error` ends the wait.
    async fn answer<T>(&mut self, pick: impl FnMut(ServerMsg) -> Option<T>) -> anyhow::Result<T> {
        self.wait(ANSWER_TIMEOUT, pick).await
    }

    async fn wait<T>(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(ServerMsg) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .context("no answer in time")?
                .context("the chat connection ended")?;
            if let ServerMsg::Error { code, message, .. } = &msg {
                bail!("server said {code:?}: {message}");
            }
            if let Some(t) = pick(msg) {
                return Ok(t);
            }
        }
    }

    /// Asks for a slot for `plan` in the room; returns the upload's id and its URL.
    async fn slot(&mut self, plan: &FilePlan) -> anyhow::Result<(Uuid, String)> {
        let id = Uuid::now_v7();
        self.send(Request::with_id(
            id,
            ClientMsg::Upload {
                name: "f1.bin".into(),
                size: plan.size,
                sha256: plan.sha256.clone(),
                room: Some(ROOM.into()),
                to: None,
            },
        ))
        .await?;
        let (url, offset) = self
            .answer(|m| match m {
                ServerMsg::UploadSlot {
                    ref_id,
                    url,
                    offset,
                    ..
                } if ref_id == id => Some((url, offset)),
                _ => None,
            })
            .await
            .context("asking for an upload slot")?;
        ensure!(offset == 0, "a fresh slot at offset {offset}");
        Ok((id, url))
    }

    /// The `message` that shares upload `id`.
    async fn shared(&mut self, id: Uuid) -> anyhow::Result<FileInfo> {
        self.wait(STEP_TIMEOUT, |m| match m {
            ServerMsg::Message(msg) if msg.id == id => msg.file.map(|f| *f),
            _ => None,
        })
        .await
        .context("waiting for the message that shares the file")
    }
}

/// The uploader's read loop: the room's chatter is skipped unparsed, the frames F1 waits
/// for (a `message` only if it shares a file) are decoded and passed on.
async fn watch(mut rd: OwnedReadHalf, mut inbuf: InBuf, tx: mpsc::UnboundedSender<ServerMsg>) {
    const WANTED: [&[u8]; 3] = [
        b"{\"type\":\"registered\"",
        b"{\"type\":\"upload_slot\"",
        b"{\"type\":\"error\"",
    ];
    let wanted = |frame: &[u8]| {
        WANTED.iter().any(|w| frame.starts_with(w))
            || (frame.starts_with(b"{\"type\":\"message\"")
                && memchr::memmem::find(frame, b"\"file\":{").is_some())
    };
    let mut pending = !inbuf.data().is_empty();
    loop {
        if !pending {
            match rd.read(inbuf.spare()).await {
                Ok(0) | Err(_) => return,
                Ok(n) => inbuf.filled(n),
            }
        }
        pending = false;
        let used = client::scan(Mode::Framed, inbuf.data(), |item| {
            if let Item::Other(frame) = item
                && wanted(frame)
                && let Ok(msg) = serde_json::from_slice::<ServerMsg>(frame)
            {
                // Err: F1 stopped waiting; the frames no longer matter.
                let _ = tx.send(msg);
            }
            true
        });
        inbuf.consume(used);
    }
}

/// The server's RSS, read every [`RSS_EVERY`] until stopped; the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            async move {
                let Some(pid) = pid else { return };
                let mut tick = tokio::time::interval(RSS_EVERY);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if let Some(s) = server_proc::sample(pid) {
                        peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { stop, peak, task }
    }

    /// The peak RSS in KiB (`None` in process).
    async fn stop(self, pid: Option<u32>) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        // One last look, so a peak right at the end is not missed.
        let last = pid.and_then(server_proc::sample).map_or(0, |s| s.rss_kib);
        pid.map(|_| self.peak.load(Ordering::Relaxed).max(last))
    }
}

/// The filesystem that holds `path`: `TYPE DEVICE on MOUNTPOINT`, from `/proc/self/mounts`.
fn filesystem_of(path: &std::path::Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at)
                .then(|| (at.len(), format!("{fs} {dev} on {at}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, s)| s)
}

/// What one timed transfer measured.
struct Phase {
    secs: f64,
    rss_before: Option<u64>,
    rss_peak: Option<u64>,
    server_cpu_pct: Option<f64>,
    loadgen_cpu_pct: f64,
}

impl Phase {
    fn mb_s(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.secs.max(1e-9)
    }

    fn growth(&self) -> Option<u64> {
        Some(self.rss_peak?.saturating_sub(self.rss_before?))
    }
}

/// The room's senders chat in rounds of [`ROUND`] until `work` is done; returns the
/// messages sent, the writers, and what `work` returned.
async fn chat_while<T>(
    mut writers: Vec<OwnedWriteHalf>,
    params: &Params,
    work: impl Future<Output = T>,
) -> anyhow::Result<(u64, Vec<OwnedWriteHalf>, T)> {
    let mut work = std::pin::pin!(work);
    let mut result = None;
    let mut sent = 0;
    let rate = params.rate.unwrap_or(200.0);
    loop {
        let start = Instant::now();
        let plans = paced_plans(params, ROOM, rate, start, start + ROUND);
        let mut round = std::pin::pin!(run_senders(writers, Mode::Framed, plans));
        let (n, back) = loop {
            tokio::select! {
                done = &mut work, if result.is_none() => result = Some(done),
                ended = &mut round => break ended?,
            }
        };
        sent += n;
        writers = back;
        if let Some(done) = result {
            return Ok((sent, writers, done));
        }
    }
}

/// Times `work` (a transfer) with the room chatting meanwhile, the server's RSS watched
/// and its CPU metered; then lets the room's deliveries drain. Returns the messages sent,
/// the writers, the measurement, and what `work` returned.
async fn timed<T>(
    target: &ServerHandle,
    writers: Vec<OwnedWriteHalf>,
    params: &Params,
    work: impl Future<Output = anyhow::Result<(Instant, Instant, T)>>,
) -> anyhow::Result<(u64, Vec<OwnedWriteHalf>, Phase, T)> {
    let pid = target.pid();
    let rss_before = target.sample().map(|s| s.rss_kib);
    let rss = RssWatch::start(pid);
    let meter = Meter::start(target);
    let (sent, writers, done) = chat_while(writers, params, work).await?;
    let (first, last, value) = done?;
    let rss_peak = rss.stop(pid).await;
    let usage = meter.stop(target, last);
    let wall = usage.wall.as_secs_f64().max(1e-9);
    let phase = Phase {
        secs: last.saturating_duration_since(first).as_secs_f64(),
        rss_before,
        rss_peak,
        server_cpu_pct: usage.server_cpu.map(|c| 100.0 * c.as_secs_f64() / wall),
        loadgen_cpu_pct: 100.0 * usage.gen_cpu.as_secs_f64() / wall,
    };
    Ok((sent, writers, phase, value))
}

/// Runs a transfer's client on a thread and runtime of its own, as if on another machine:
/// making and hashing a GiB is CPU the room's clients must not wait for behind it in one
/// task, or the room's p99 would measure the load generator instead of the server. (The
/// two still share the cores, as the server does.)
async fn elsewhere<T, F>(job: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("f1-transfer".into())
        .spawn(move || {
            let done = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the transfer's runtime")
                .and_then(|rt| rt.block_on(job()));
            let _ = tx.send(done);
        })
        .context("the transfer's thread")?;
    rx.await.context("the transfer's thread panicked")?
}

/// F1 against `target` (a server with file sharing on and room for the file).
pub(super) async fn transfer(
    params: &Params,
    target: &ServerHandle,
    files_dir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let addr = target.addr();
    let (size, chunk) = (params.file_size, params.chunk);
    let plan = tokio::task::spawn_blocking(move || FilePlan::new(size, chunk))
        .await
        .context("hashing the file")??;

    // The room, as in W3, and the uploader in it.
    let tally = Arc::new(Tally::default());
    let mut readers = JoinSet::new();
    let logins = (0..params.receivers)
        .map(|i| Login::lobby(format!("r{i}")))
        .collect();
    login_all(
        addr,
        Mode::Framed,
        logins,
        params.login_concurrency,
        |i, conn| {
            let tap = receiver_tap(i, &tally);
            readers.spawn(client::receive(conn.stream, conn.inbuf, Mode::Framed, tap));
        },
    )
    .await?;
    let sender_tally = Arc::new(Tally::default());
    let logins = (0..params.senders)
        .map(|i| Login::sender(format!("s{i}")))
        .collect();
    let writers = connect_senders(
        addr,
        Mode::Framed,
        logins,
        params,
        |i| sender_tap(i, false, &sender_tally),
        &mut readers,
    )
    .await?;
    let mut uploader = Uploader::connect(addr, &mut readers).await?;
    let receivers = params.receivers as u64;
    let empty = tally.snapshot();

    // The baseline: the room without a transfer.
    let start = Instant::now();
    let chat_start = start;
    let rate = params.rate.unwrap_or(200.0);
    let plans = paced_plans(params, ROOM, rate, start, start + params.duration);
    let (mut sent, writers) = run_senders(writers, Mode::Framed, plans).await?;
    drain(&tally, sent * receivers, DRAIN_QUIET, DRAIN_LIMIT).await;
    let before = tally.snapshot();

    // The upload, to the server's `message`.
    let (id, url) = uploader.slot(&plan).await?;
    let path = url_path(&url)?.to_owned();
    let plan = Arc::new(plan);
    let upload = async {
        let first = Instant::now();
        let written = elsewhere({
            let plan = Arc::clone(&plan);
            move || async move { Http::connect(addr).await?.upload(&path, &plan).await }
        })
        .await?;
        let patched = Instant::now();
        let file = uploader.shared(id).await?;
        let shared = patched.max(Instant::now());
        Ok::<_, anyhow::Error>((first, shared, (file, shared.duration_since(written))))
    };
    let (n, writers, up, (file, finishing)) = timed(target, writers, params, upload).await?;
    sent += n;
    drain(&tally, sent * receivers, DRAIN_QUIET, DRAIN_LIMIT).await;
    let uploaded = tally.snapshot();
    ensure!(
        file.size == plan.size && file.sha256 == plan.sha256,
        "the server shared {} bytes with SHA-256 {}, not {} with {}",
        file.size,
        file.sha256,
        plan.size,
        plan.sha256
    );

    // The download, hashed as it arrives.
    let path = url_path(&file.url)?.to_owned();
    let download = async {
        let first = Instant::now();
        let got = elsewhere(move || async move {
            let mut http = Http::connect(addr).await?;
            timeout(STEP_TIMEOUT, http.download(&path))
                .await
                .context("the download timed out")?
        })
        .await?;
        Ok::<_, anyhow::Error>((first, Instant::now(), got))
    };
    let (n, writers, down, (sha256, len)) = timed(target, writers, params, download).await?;
    sent += n;
    drain(&tally, sent * receivers, DRAIN_QUIET, DRAIN_LIMIT).await;
    let downloaded = tally.snapshot();
    let end_sample = target.sample();
    readers.abort_all();
    drop((writers, uploader));

    let chat_baseline = before.since(&empty);
    let chat_upload = uploaded.since(&before);
    let chat_download = downloaded.since(&uploaded);
    let worst = chat_upload.p99_us.max(chat_download.p99_us);
    let mut out = Outcome::new(params.receivers + params.senders + 1);
    out.sent = sent;
    out.expected = sent * receivers;
    out.delivered = tally.delivered();
    out.lag_events = tally.lag_events() + sender_tally.lag_events();
    out.disconnects = tally.disconnects() + sender_tally.disconnects();
    out.wall_s = up.secs + down.secs;
    out.derive_rates();
    // The room's rates are over all its chat, the baseline's included.
    let chatted = chat_start.elapsed().as_secs_f64().max(1e-9);
    out.deliveries_per_s = out.delivered as f64 / chatted;
    out.messages_per_s = out.sent as f64 / chatted;
    // The table's latency: the room's during both transfers.
    out.latency = downloaded.since(&before);
    out.server_rss_kib = end_sample.map(|s| s.rss_kib);
    out.server_cpu_pct = match (up.server_cpu_pct, down.server_cpu_pct) {
        (Some(a), Some(b)) => Some((a * up.secs + b * down.secs) / out.wall_s.max(1e-9)),
        _ => None,
    };
    out.loadgen_cpu_pct =
        (up.loadgen_cpu_pct * up.secs + down.loadgen_cpu_pct * down.secs) / out.wall_s.max(1e-9);
    out.transfer = Some(Transfer {
        bytes: plan.size,
        patches: plan.chunk_sums.len() as u64,
        patch_bytes: plan.chunk,
        files_fs: filesystem_of(files_dir),
        upload_s: up.secs,
        upload_mb_s: up.mb_s(plan.size),
        upload_finish_s: finishing.as_secs_f64(),
        download_s: down.secs,
        download_mb_s: down.mb_s(len),
        sha256_verified: sha256 == plan.sha256 && len == plan.size,
        upload_rss_before_kib: up.rss_before,
        upload_rss_peak_kib: up.rss_peak,
        upload_rss_growth_kib: up.growth(),
        download_rss_before_kib: down.rss_before,
        download_rss_peak_kib: down.rss_peak,
        download_rss_growth_kib: down.growth(),
        upload_server_cpu_pct: up.server_cpu_pct,
        download_server_cpu_pct: down.server_cpu_pct,
        upload_loadgen_cpu_pct: up.loadgen_cpu_pct,
        download_loadgen_cpu_pct: down.loadgen_cpu_pct,
        chat_members: params.receivers as u64 + params.senders as u64,
        chat_baseline,
        chat_upload,
        chat_download,
        p99_ratio: if chat_baseline.p99_us > 0.0 {
            worst / chat_baseline.p99_us
        } else {
            0.0
        },
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_the_same_however_they_are_cut() {
        let mut whole = vec![0u8; 64];
        fill(&mut whole, 0);
        let mut part = vec![0u8; 24];
        fill(&mut part, 16);
        assert_eq!(&whole[16..40], &part[..]);
        assert_ne!(&whole[..8], &whole[8..16]);
    }

    #[test]
    fn a_plan_hashes_the_file_and_each_patch() {
        let plan = FilePlan::new(3 * 1024 + 8, 1024).expect("valid sizes");
        assert_eq!(plan.chunk_sums.len(), 4);
        let mut all = vec![0u8; 3 * 1024 + 8];
        fill(&mut all, 0);
        assert_eq!(
            plan.sha256,
            hex(ring::digest::digest(&SHA256, &all).as_ref())
        );
        let last = base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&SHA256, &all[3 * 1024..]));
        assert_eq!(plan.chunk_sums[3], last);
        assert!(FilePlan::new(7, 1024).is_err());
    }

    #[test]
    fn links_are_cut_to_their_path() {
        assert_eq!(
            url_path("http://127.0.0.1:4567/uploads/abc").ok(),
            Some("/uploads/abc")
        );
        assert_eq!(
            url_path("https://h/files/1/x.bin").ok(),
            Some("/files/1/x.bin")
        );
        assert!(url_path("no-scheme").is_err());
    }

    #[test]
    fn the_filesystem_of_a_path_is_found() {
        assert_ne!(filesystem_of(std::path::Path::new("/")), "unknown");
    }
}
