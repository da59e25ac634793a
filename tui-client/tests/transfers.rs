//! The transfer tasks over real HTTP against a fake file server in this process: tus
//! uploads and ranged downloads whose connections are cut at 40 %, a chunk refused once
//! (460), resuming, and the SHA-256 at the end. The fake keeps to `docs/PROTOCOL.md`
//! "Files"; the same flows against the real `chat-server` are in `transfers_server.rs`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chat_shared::message::FileInfo;
use chat_tui::download;
use chat_tui::http::Http;
use chat_tui::transfer::{DownloadJob, TransferEvent, UploadJob};
use chat_tui::transport::Transport;
use chat_tui::tus::{self, checksum_header, hash_file};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;

/// What the fake server holds and was asked.
#[derive(Default)]
struct State {
    /// The upload's announced length.
    length: u64,
    /// What the upload has so far.
    received: Vec<u8>,
    /// Cut the connection of the `PATCH` that would take the upload past this many bytes,
    /// once (keeping nothing of it, as a `PATCH` with a checksum).
    cut_upload_at: Option<u64>,
    /// Answer 460 to the next `PATCH` at this offset, once.
    refuse_chunk_at: Option<u64>,
    /// The file served by `GET`.
    file: Vec<u8>,
    /// Cut the first download after this many bytes of its body, once.
    cut_download_at: Option<usize>,
    /// Every request: method, `Upload-Offset` or `Range`.
    log: Vec<String>,
}

type Shared = Arc<Mutex<State>>;
type Body = BoxBody<Bytes, io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

fn status(code: u16) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    res
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The fake server's answer; `Err` drops the connection without one.
async fn serve(state: Shared, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
    let method = req.method().as_str().to_owned();
    let cut = || io::Error::new(io::ErrorKind::ConnectionReset, "cut on purpose");
    match method.as_str() {
        "HEAD" => {
            let s = state.lock().unwrap();
            let mut res = status(200);
            let h = res.headers_mut();
            h.insert("upload-offset", s.received.len().into());
            h.insert("upload-length", s.length.into());
            drop(s);
            state.lock().unwrap().log.push("HEAD".into());
            Ok(res)
        }
        "PATCH" => {
            assert_eq!(header(&req, "tus-resumable"), "1.0.0");
            assert_eq!(
                header(&req, "content-type"),
                "application/offset+octet-stream"
            );
            let offset: u64 = header(&req, "upload-offset").parse().unwrap();
            let checksum = header(&req, "upload-checksum").to_owned();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(io::Error::other)?
                .to_bytes();
            let mut s = state.lock().unwrap();
            s.log.push(format!("PATCH {offset}"));
            if offset != s.received.len() as u64 {
                return Ok(status(409));
            }
            if s.refuse_chunk_at == Some(offset) {
                s.refuse_chunk_at = None;
                return Ok(status(460));
            }
            if checksum != checksum_header(&body) {
                return Ok(status(460));
            }
            if let Some(at) = s.cut_upload_at
                && offset + body.len() as u64 > at
            {
                s.cut_upload_at = None;
                return Err(cut());
            }
            s.received.extend_from_slice(&body);
            let mut res = status(204);
            res.headers_mut()
                .insert("upload-offset", s.received.len().into());
            Ok(res)
        }
        "GET" => {
            let mut s = state.lock().unwrap();
            let range = header(&req, "range").to_owned();
            s.log.push(format!("GET {range}"));
            let start: usize = range
                .strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .map_or(0, |r| r.parse().unwrap());
            let len = s.file.len();
            let rest = Bytes::copy_from_slice(&s.file[start..]);
            let mut res = if start > 0 {
                let mut res = Response::new(empty());
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                res.headers_mut().insert(
                    "content-range",
                    format!("bytes {start}-{}/{len}", len - 1).parse().unwrap(),
                );
                res
            } else {
                Response::new(empty())
            };
            res.headers_mut()
                .insert("content-length", rest.len().into());
            let body = match s.cut_download_at.take() {
                Some(at) => {
                    let frames: Vec<Result<Frame<Bytes>, io::Error>> =
                        vec![Ok(Frame::data(rest.slice(..at - start))), Err(cut())];
                    StreamBody::new(futures::stream::iter(frames)).boxed()
                }
                None => full(rest),
            };
            *res.body_mut() = body;
            Ok(res)
        }
        _ => Ok(status(405)),
    }
}

async fn start(state: Shared) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| serve(state.clone(), req));
                // Ignored: the cut connections end in an error on purpose.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// 10 MiB that are not all alike, written to `dir/name`.
fn sample(dir: &Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let data: Vec<u8> = (0..10 * MIB as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (data, path)
}

/// Events until (and with) the task's last one.
async fn run_to_end(mut rx: mpsc::Receiver<TransferEvent>) -> Vec<TransferEvent> {
    let mut events = Vec::new();
    loop {
        let ev = timeout(WAIT, rx.recv())
            .await
            .expect("the transfer took too long")
            .expect("the task ended without a last event");
        let last = !matches!(
            ev,
            TransferEvent::Progress { .. } | TransferEvent::Retrying { .. }
        );
        events.push(ev);
        if last {
            return events;
        }
    }
}

/// Starts the upload task; its id and its events.
fn start_upload(
    addr: SocketAddr,
    path: std::path::PathBuf,
    url: String,
    offset: u64,
    size: u64,
    chunk: usize,
) -> (Uuid, mpsc::Receiver<TransferEvent>) {
    let id = Uuid::now_v7();
    let job = UploadJob {
        id,
        path,
        url,
        offset,
        size,
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(tus::upload(http(addr), job, chunk, tx));
    (id, rx)
}

/// Runs the download task of `file` into `dir` to its end.
async fn run_download(addr: SocketAddr, file: FileInfo, dir: &Path) -> (Uuid, Vec<TransferEvent>) {
    let id = Uuid::now_v7();
    let job = DownloadJob {
        id,
        file,
        dir: dir.to_owned(),
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(download::download(http(addr), job, tx));
    (id, run_to_end(rx).await)
}

fn http(addr: SocketAddr) -> Http {
    let mut http = Http::new(addr.to_string(), Transport::Plain);
    http.timeout = Duration::from_secs(5);
    http
}

#[tokio::test]
async fn an_upload_cut_at_40_percent_resumes_from_head_and_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (data, path) = sample(dir.path(), "报告.bin");
    let (size, _) = hash_file(&path).unwrap();
    let state = Shared::default();
    {
        let mut s = state.lock().unwrap();
        s.length = size;
        s.cut_upload_at = Some(size * 4 / 10);
        // A chunk damaged on the way: refused, nothing kept, sent again.
        s.refuse_chunk_at = Some(MIB as u64);
    }
    let addr = start(state.clone()).await;
    let (id, rx) = start_upload(
        addr,
        path,
        format!("http://{addr}/tus/0123456789abcdef"),
        0,
        size,
        MIB,
    );
    let events = run_to_end(rx).await;
    assert_eq!(events.last(), Some(&TransferEvent::Uploaded { id }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TransferEvent::Retrying { .. })),
        "{events:?}"
    );
    let s = state.lock().unwrap();
    assert!(s.received == data, "the server has exactly the file");
    // Cut at the chunk that crossed 40 % (4 MiB): HEAD, then on from 4 MiB.
    let head = s.log.iter().position(|l| l == "HEAD").expect("a HEAD");
    assert_eq!(s.log[head - 1], "PATCH 4194304", "{:?}", s.log);
    assert_eq!(s.log[head + 1], "PATCH 4194304", "{:?}", s.log);
    assert_eq!(
        s.log.iter().filter(|l| *l == "PATCH 1048576").count(),
        2,
        "the refused chunk is sent again: {:?}",
        s.log
    );
}

#[tokio::test]
async fn an_upload_resumes_from_the_slots_offset_without_resending_what_the_server_has() {
    let dir = tempfile::tempdir().unwrap();
    let (data, path) = sample(dir.path(), "a.bin");
    let state = Shared::default();
    {
        let mut s = state.lock().unwrap();
        s.length = data.len() as u64;
        s.received = data[..3 * MIB].to_vec();
    }
    let addr = start(state.clone()).await;
    let (id, rx) = start_upload(
        addr,
        path,
        format!("http://{addr}/tus/x"),
        3 * MIB as u64,
        data.len() as u64,
        2 * MIB,
    );
    let events = run_to_end(rx).await;
    assert_eq!(events.last(), Some(&TransferEvent::Uploaded { id }));
    let s = state.lock().unwrap();
    assert!(s.received == data);
    assert_eq!(s.log.first().map(String::as_str), Some("PATCH 3145728"));
}

fn file_info(addr: SocketAddr, data: &[u8], sha256: &str) -> FileInfo {
    FileInfo {
        id: "0123456789abcdef0123456789abcdef".into(),
        name: "../报告.bin".into(),
        size: data.len() as u64,
        sha256: sha256.into(),
        url: format!("http://{addr}/files/0123456789abcdef0123456789abcdef/报告.bin"),
    }
}

#[tokio::test]
async fn a_download_cut_at_40_percent_resumes_with_range_verifies_and_never_overwrites() {
    let src = tempfile::tempdir().unwrap();
    let (data, path) = sample(src.path(), "报告.bin");
    let (_, sha) = hash_file(&path).unwrap();
    let state = Shared::default();
    {
        let mut s = state.lock().unwrap();
        s.file = data.clone();
        s.cut_download_at = Some(data.len() * 4 / 10);
    }
    let addr = start(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("报告.bin"), b"mine").unwrap();
    let (id, events) = run_download(addr, file_info(addr, &data, &sha), dir.path()).await;
    let saved = dir.path().join("报告 (1).bin");
    assert_eq!(
        events.last(),
        Some(&TransferEvent::Saved {
            id,
            path: saved.clone()
        })
    );
    assert!(std::fs::read(&saved).unwrap() == data);
    assert_eq!(std::fs::read(dir.path().join("报告.bin")).unwrap(), b"mine");
    assert!(!dir.path().join("报告.bin.part").exists());
    // Resumed from what reached the disk before the cut (at most the 40 % sent).
    let s = state.lock().unwrap();
    assert_eq!(s.log.len(), 2, "{:?}", s.log);
    assert_eq!(s.log[0], "GET ");
    let resumed_at: usize = s.log[1]
        .strip_prefix("GET bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("not a resume: {:?}", s.log));
    assert!(
        resumed_at > 0 && resumed_at <= data.len() * 4 / 10,
        "{resumed_at}"
    );
}

#[tokio::test]
async fn a_partial_file_is_resumed_and_a_wrong_sha256_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let (data, _) = sample(src.path(), "x.bin");
    let state = Shared::default();
    state.lock().unwrap().file = data.clone();
    let addr = start(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // What an earlier run left: the first 3 MiB.
    std::fs::write(dir.path().join("报告.bin.part"), &data[..3 * MIB]).unwrap();
    let wrong = "0".repeat(64);
    let (_, events) = run_download(addr, file_info(addr, &data, &wrong), dir.path()).await;
    assert!(
        matches!(events.last(), Some(TransferEvent::Failed { error, .. }) if error.contains("SHA-256 mismatch")),
        "{events:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing is kept"
    );
    // Resumed from the part first; after the mismatch, once more from the start.
    let s = state.lock().unwrap();
    assert_eq!(
        s.log,
        [format!("GET bytes={}-", 3 * MIB), "GET ".to_owned()]
    );
}

#[tokio::test]
async fn a_slot_that_is_gone_is_reported_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.bin");
    std::fs::write(&path, b"abc").unwrap();
    // A server that knows no slot at all.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async { Ok::<_, Infallible>(status(404)) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let (id, rx) = start_upload(addr, path, format!("http://{addr}/tus/expired"), 0, 3, MIB);
    assert_eq!(run_to_end(rx).await, [TransferEvent::SlotGone { id }]);
}
