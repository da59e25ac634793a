//! Issue 15: file sharing over real sockets. A framed client asks for a slot, uploads with
//! tus over HTTP on the chat port (this file's own small HTTP/1.1 client, and curl), and
//! room-mates in every mode see the file and download it, with `Range`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use chat_server::{Config, FilesConfig, Storage};
use chat_shared::{ChatMessage, ClientMsg, ErrorCode, FileInfo, Request, ServerMsg};
use common::{Client, QUIET, TestServer, WAIT, cfg, spawn_server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use uuid::Uuid;

fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// Bytes that are not all alike, so a misplaced block shows.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The test configuration with file sharing in `dir`.
fn files_cfg(dir: &Path) -> Config {
    Config {
        files: Some(FilesConfig {
            max_file_size: 8 << 20,
            quota_per_user: 16 << 20,
            guest_quota: 12 << 20,
            ..FilesConfig::in_dir(dir.to_owned())
        }),
        ..cfg()
    }
}

/// A server sharing files in a directory of its own (its configuration changed by
/// `tweak`), and alice logged in to it.
async fn start(tweak: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = files_cfg(dir.path());
    tweak(&mut config);
    let server = spawn_server(config).await;
    let alice = Client::login(server.addr, "alice").await;
    (dir, server, alice)
}

/// The file sharing part of a configuration made by [`files_cfg`].
fn sharing(config: &mut Config) -> &mut FilesConfig {
    config.files.as_mut().expect("files_cfg turns sharing on")
}

/// One HTTP response, whole.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = TcpStream::connect(addr).await.expect("connect");
    http_on(stream, method, path, headers, body).await
}

/// [`http`] over a connection of any kind (TLS too).
async fn http_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PATCH" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    timeout(WAIT, read_response(stream, method == "HEAD"))
        .await
        .expect("an HTTP response in time")
}

async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: S, head_only: bool) -> Response {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header with a colon");
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let mut body = Vec::new();
    if !head_only {
        reader.read_to_end(&mut body).await.expect("body");
    }
    Response {
        status,
        headers,
        body,
    }
}

/// The path part of a URL the server gave.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    &rest[rest.find('/').expect("a path")..]
}

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

async fn patch(addr: SocketAddr, url: &str, offset: u64, chunk: &[u8], sum: bool) -> Response {
    let offset = offset.to_string();
    let sum_value = checksum(chunk);
    let mut headers = vec![TUS, OCTETS, ("Upload-Offset", offset.as_str())];
    if sum {
        headers.push(("Upload-Checksum", sum_value.as_str()));
    }
    http(addr, "PATCH", path_of(url), &headers, chunk).await
}

/// The head of a `PATCH` from offset 0 announcing `len` bytes, for requests a test sends
/// (or holds back) by hand.
fn patch_head(url: &str, len: usize) -> String {
    format!(
        "PATCH {} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: \
         application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {len}\r\n\r\n",
        path_of(url)
    )
}

async fn head_offset(addr: SocketAddr, url: &str) -> Option<u64> {
    let r = http(addr, "HEAD", path_of(url), &[TUS], b"").await;
    if r.status != 200 {
        return None;
    }
    r.header("Upload-Offset").and_then(|v| v.parse().ok())
}

/// Asks for a slot: `Ok(url)` or the error's code.
async fn ask(
    client: &mut Client,
    id: Uuid,
    name: &str,
    data: &[u8],
    room: Option<&str>,
    to: Option<&str>,
) -> Result<(String, u64), ErrorCode> {
    ask_raw(
        client,
        id,
        name,
        data.len() as u64,
        &sha256_hex(data),
        room,
        to,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn ask_raw(
    client: &mut Client,
    id: Uuid,
    name: &str,
    size: u64,
    sha256: &str,
    room: Option<&str>,
    to: Option<&str>,
) -> Result<(String, u64), ErrorCode> {
    let upload = ClientMsg::Upload {
        name: name.into(),
        size,
        sha256: sha256.into(),
        room: room.map(Into::into),
        to: to.map(Into::into),
    };
    client.send_req(Request::with_id(id, upload)).await;
    client
        .recv_until("upload_slot or error", |m| match m {
            ServerMsg::UploadSlot {
                ref_id,
                url,
                offset,
                ..
            } if *ref_id == id => Some(Ok((url.clone(), *offset))),
            ServerMsg::Error { code, ref_id, .. } if *ref_id == Some(id) => Some(Err(*code)),
            _ => None,
        })
        .await
}

/// The room message that shares the upload `id`.
async fn shared(client: &mut Client, id: Uuid) -> ChatMessage {
    client
        .recv_until("the file's message", |m| match m {
            ServerMsg::Message(m) if m.id == id => Some(m.clone()),
            _ => None,
        })
        .await
}

fn file_of(m: &ChatMessage) -> FileInfo {
    *m.file.clone().expect("a message with a file")
}

/// Uploads `data` in `chunks` requests with checksums; returns the last response.
async fn upload_all(addr: SocketAddr, url: &str, data: &[u8], chunks: usize) -> Response {
    let size = data.len().div_ceil(chunks);
    let mut at = 0;
    loop {
        let end = (at + size).min(data.len());
        let r = patch(addr, url, at as u64, &data[at..end], true).await;
        if end == data.len() || r.status != 204 {
            return r;
        }
        assert_eq!(r.header("Upload-Offset"), Some(end.to_string().as_str()));
        at = end;
    }
}

#[tokio::test]
async fn a_file_is_uploaded_shared_with_every_mode_and_downloaded_with_ranges() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let (_dir, server, mut alice) = start(|c| {
        c.admin_listener = Some(chat_server::AdminListener::new(admin));
    })
    .await;
    let addr = server.addr;
    let mut bob = Client::login(addr, "bob").await;
    let mut line = common::Line::login(addr, "carol").await;
    alice.roundtrip().await;
    bob.roundtrip().await;

    let options = http(addr, "OPTIONS", "/uploads/00", &[], b"").await;
    assert_eq!(options.status, 204);
    assert_eq!(options.header("Tus-Version"), Some("1.0.0"));
    assert!(
        options
            .header("Tus-Extension")
            .unwrap()
            .contains("checksum")
    );
    assert_eq!(options.header("Tus-Checksum-Algorithm"), Some("sha256"));

    let data = content(300_000);
    let id = Uuid::new_v4();
    let (url, offset) = ask(&mut alice, id, "报告 final.pdf", &data, Some("lobby"), None)
        .await
        .expect("a slot");
    assert_eq!(offset, 0);
    assert!(url.starts_with(&format!("http://{addr}/uploads/")), "{url}");
    assert_eq!(head_offset(addr, &url).await, Some(0));
    let done = upload_all(addr, &url, &data, 3).await;
    assert_eq!(
        done.status,
        204,
        "{:?}",
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(done.header("Upload-Offset"), Some("300000"));

    let own = shared(&mut alice, id).await;
    let theirs = shared(&mut bob, id).await;
    assert_eq!(own, theirs);
    let file = file_of(&theirs);
    assert_eq!(file.name, "报告 final.pdf");
    assert_eq!(file.size, 300_000);
    assert_eq!(file.sha256, sha256_hex(&data));
    assert_eq!(file.id.len(), 32);
    assert!(
        file.url.ends_with(&format!(
            "/files/{}/%E6%8A%A5%E5%91%8A%20final.pdf",
            file.id
        )),
        "{}",
        file.url
    );
    let short = format!("{}…{}", &file.sha256[..4], &file.sha256[62..]);
    let expected = format!(
        "[file] 报告 final.pdf (293.0 KiB, sha256 {short}) {}",
        file.url
    );
    assert_eq!(theirs.text, expected);
    line.expect_line(&format!("<alice> {expected}")).await;
    // Finished: the slot is gone.
    assert_eq!(head_offset(addr, &url).await, None);

    let got = http(addr, "GET", path_of(&file.url), &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data);
    assert_eq!(got.header("Content-Type"), Some("application/octet-stream"));
    assert_eq!(got.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(
        got.header("ETag"),
        Some(format!("\"{}\"", file.sha256).as_str())
    );
    assert_eq!(
        got.header("Content-Disposition"),
        Some(
            "attachment; filename=\"__ final.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20final.pdf"
        )
    );
    let part = http(
        addr,
        "GET",
        path_of(&file.url),
        &[("Range", "bytes=100000-")],
        b"",
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[100_000..]);
    assert_eq!(
        part.header("Content-Range"),
        Some("bytes 100000-299999/300000")
    );
    let bad = http(
        addr,
        "GET",
        path_of(&file.url),
        &[("Range", "bytes=400000-")],
        b"",
    )
    .await;
    assert_eq!(bad.status, 416);
    let head = http(addr, "HEAD", path_of(&file.url), &[], b"").await;
    assert_eq!(head.header("Content-Length"), Some("300000"));
    let etag = format!("\"{}\"", file.sha256);
    let same = http(
        addr,
        "GET",
        path_of(&file.url),
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(same.status, 304);

    // In history too, with its file.
    let (history, _) = bob.history("lobby", None, Some(10)).await;
    assert!(history.iter().any(|m| m.file.as_deref() == Some(&file)));
    // And counted: the bytes, the share, the three answers with the file (200, 206, HEAD).
    let metrics = http(admin_addr, "GET", "/metrics", &[], b"").await.body;
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "chat_file_upload_bytes_total 300000",
        "chat_files_shared_total 1",
        "chat_file_downloads_total 3",
        "chat_file_uploads_failed_total{reason=\"checksum\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_cut_at_40_percent_resumes_where_the_server_stopped() {
    let (_dir, server, mut alice) = start(|_| {}).await;
    let addr = server.addr;
    let data = content(2_000_000);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "big.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    // One PATCH for the whole file, cut off after 40 % of it.
    let cut = data.len() * 4 / 10;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = patch_head(&url, data.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..cut]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    // The server keeps what arrived: all of it, once the cut request has ended.
    let mut offset = 0;
    for _ in 0..50 {
        offset = head_offset(addr, &url).await.unwrap();
        if offset == cut as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        offset, cut as u64,
        "the server kept {offset} of {cut} bytes"
    );
    // A reconnected client asks again with the same id: the same slot, where it was.
    drop(alice);
    let mut alice = Client::login(addr, "alice").await;
    let (again, at) = ask(&mut alice, id, "big.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!((again.as_str(), at), (url.as_str(), cut as u64));
    let rest = patch(addr, &url, at, &data[cut..], true).await;
    assert_eq!(rest.status, 204, "{}", String::from_utf8_lossy(&rest.body));
    let file = file_of(&shared(&mut alice, id).await);
    assert_eq!(file.sha256, sha256_hex(&data));
    let got = http(addr, "GET", path_of(&file.url), &[], b"").await;
    assert_eq!(sha256_hex(&got.body), sha256_hex(&data));
    server.shutdown().await;
}

#[tokio::test]
async fn corrupt_chunks_and_wrong_files_are_refused_and_not_kept() {
    let (dir, server, mut alice) = start(|_| {}).await;
    let addr = server.addr;
    let data = content(10_000);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "a.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    let first = patch(addr, &url, 0, &data[..4000], true).await;
    assert_eq!(first.status, 204);
    // A chunk whose Upload-Checksum is another's: 460, and nothing of it is written.
    let mut corrupt = data[4000..8000].to_vec();
    corrupt[17] ^= 1;
    let sum = checksum(&data[4000..8000]);
    let r = http(
        addr,
        "PATCH",
        path_of(&url),
        &[
            TUS,
            OCTETS,
            ("Upload-Offset", "4000"),
            ("Upload-Checksum", &sum),
        ],
        &corrupt,
    )
    .await;
    assert_eq!(r.status, 460);
    assert_eq!(head_offset(addr, &url).await, Some(4000));
    // The wrong offset: 409 with the right one.
    let r = patch(addr, &url, 5000, &data[5000..6000], false).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("Upload-Offset"), Some("4000"));
    // Past the announced length: 413, nothing kept.
    let mut long = data[4000..].to_vec();
    long.push(0);
    let r = patch(addr, &url, 4000, &long, false).await;
    assert_eq!(r.status, 413);
    assert_eq!(head_offset(addr, &url).await, Some(4000));
    // Without Tus-Resumable: 412.
    let r = http(addr, "HEAD", path_of(&url), &[], b"").await;
    assert_eq!(r.status, 412);

    // A whole file whose hash is not the one announced.
    let other = Uuid::new_v4();
    let announced = sha256_hex(b"something else");
    let (url2, _) = ask_raw(
        &mut alice,
        other,
        "b.bin",
        5000,
        &announced,
        Some("lobby"),
        None,
    )
    .await
    .unwrap();
    let r = patch(addr, &url2, 0, &data[..5000], true).await;
    assert_eq!(r.status, 460);
    assert_eq!(
        alice.recv_error(ErrorCode::ChecksumMismatch).await,
        Some(other)
    );
    assert_eq!(head_offset(addr, &url2).await, None, "deleted");
    let partial = std::fs::read_dir(dir.path().join("partial"))
        .unwrap()
        .count();
    assert_eq!(partial, 1, "only the first upload is still in progress");
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
        0
    );

    // Abandoned with DELETE: gone, and its partial file too.
    let r = http(addr, "DELETE", path_of(&url), &[TUS], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(head_offset(addr, &url).await, None);
    assert_eq!(
        std::fs::read_dir(dir.path().join("partial"))
            .unwrap()
            .count(),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn offers_that_break_a_rule_get_their_code() {
    let (_dir, server, mut alice) = start(|_| {}).await;
    let addr = server.addr;
    let small = b"hello";
    let sha = sha256_hex(small);
    let asks = |name: &'static str, size: u64, room: Option<&'static str>, to| {
        let sha = sha.clone();
        (name, size, sha, room, to)
    };
    let cases = [
        (
            asks("x.bin", 9 << 20, Some("lobby"), None),
            ErrorCode::FileTooLarge,
        ),
        (
            asks("../../etc/passwd", 5, Some("lobby"), None),
            ErrorCode::NameInvalid,
        ),
        (
            asks("a\u{0}b", 5, Some("lobby"), None),
            ErrorCode::NameInvalid,
        ),
        (asks("..", 5, Some("lobby"), None), ErrorCode::NameInvalid),
        (
            asks("x.bin", 5, Some("elsewhere"), None),
            ErrorCode::NotInRoom,
        ),
        (
            asks("x.bin", 5, None, Some("nobody")),
            ErrorCode::NoSuchNick,
        ),
        (asks("x.bin", 0, Some("lobby"), None), ErrorCode::BadRequest),
        (asks("x.bin", 5, None, None), ErrorCode::BadRequest),
    ];
    for ((name, size, sha, room, to), code) in cases {
        let got = ask_raw(&mut alice, Uuid::new_v4(), name, size, &sha, room, to).await;
        assert_eq!(got, Err(code), "{name} {size} {room:?} {to:?}");
    }
    // A guest's quota (12 MiB here): 8 MiB, then 5 more is over.
    let eight = 8 << 20;
    ask_raw(
        &mut alice,
        Uuid::new_v4(),
        "a",
        eight,
        &sha,
        Some("lobby"),
        None,
    )
    .await
    .unwrap();
    let over = ask_raw(
        &mut alice,
        Uuid::new_v4(),
        "b",
        5 << 20,
        &sha,
        Some("lobby"),
        None,
    )
    .await;
    assert_eq!(over, Err(ErrorCode::QuotaExceeded));
    // Unknown and malformed slots and files.
    for path in [
        "/uploads/0123456789abcdef0123456789abcdef",
        "/uploads/..%2F..%2Fetc%2Fpasswd",
        "/files/0123456789abcdef0123456789abcdef/x",
        "/files/..%2F..%2Fetc/passwd",
        "/files/../../etc/passwd",
        "/",
    ] {
        let r = http(addr, "GET", path, &[TUS], b"").await;
        assert!(matches!(r.status, 404 | 405), "{path}: {}", r.status);
        let r = http(addr, "HEAD", path, &[TUS], b"").await;
        assert!(matches!(r.status, 404 | 405), "{path}: {}", r.status);
    }
    // The chat is untouched by all of it.
    alice.roundtrip().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_same_file_twice_is_stored_once_and_a_dm_shares_too() {
    let (dir, server, mut alice) = start(|_| {}).await;
    let addr = server.addr;
    let mut bob = Client::login(addr, "bob").await;
    bob.roundtrip().await;
    let data = content(50_000);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (url, _) = ask(&mut alice, a, "one.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(upload_all(addr, &url, &data, 1).await.status, 204);
    let first = file_of(&shared(&mut alice, a).await);
    let (url, _) = ask(&mut alice, b, "two.bin", &data, None, Some("bob"))
        .await
        .unwrap();
    assert_eq!(upload_all(addr, &url, &data, 2).await.status, 204);
    let dm = bob
        .recv_until("the DM with the file", |m| match m {
            ServerMsg::Dm(d) if d.id == b => Some(d.clone()),
            _ => None,
        })
        .await;
    let second = *dm.file.expect("a DM with a file");
    assert_ne!(first.id, second.id);
    assert_eq!(first.sha256, second.sha256);
    assert!(
        dm.text.starts_with("[file] two.bin (48.8 KiB, sha256 "),
        "{}",
        dm.text
    );
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(blobs, 1, "one content, stored once");
    // The first upload again, under its id: its message is the answer, and nothing more
    // is shared.
    let (url, _) = ask(&mut alice, a, "one.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(upload_all(addr, &url, &data, 1).await.status, 204);
    let again = shared(&mut alice, a).await;
    assert_eq!(file_of(&again), first);
    bob.expect_none(
        QUIET,
        "the message again",
        |m| matches!(m, ServerMsg::Message(m) if m.id == a),
    )
    .await;
    let records = std::fs::read_dir(dir.path().join("shares"))
        .unwrap()
        .count();
    assert_eq!(records, 2, "one record per share");
    for file in [&first, &second] {
        let got = http(addr, "GET", path_of(&file.url), &[], b"").await;
        assert_eq!(got.body, data);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn expired_slots_are_gone() {
    let (dir, server, mut alice) =
        start(|c| sharing(c).upload_expiry = Duration::from_millis(300)).await;
    let addr = server.addr;
    let data = content(1000);
    let (url, _) = ask(&mut alice, Uuid::new_v4(), "x", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(patch(addr, &url, 0, &data[..10], false).await.status, 204);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(patch(addr, &url, 10, &data[10..], false).await.status, 404);
    assert_eq!(
        std::fs::read_dir(dir.path().join("partial"))
            .unwrap()
            .count(),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shared_files_survive_a_restart_with_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (_db_dir, db) = common::temp_db();
    let config = || Config {
        storage: Storage::Sqlite(db.clone()),
        ..files_cfg(dir.path())
    };
    let server = spawn_server(config()).await;
    let mut alice = Client::login(server.addr, "alice").await;
    let data = content(70_000);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "keep.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(upload_all(server.addr, &url, &data, 2).await.status, 204);
    let file = file_of(&shared(&mut alice, id).await);
    drop(alice);
    server.shutdown().await;

    let server = spawn_server(config()).await;
    let mut bob = Client::login(server.addr, "bob").await;
    let (history, _) = bob.history("lobby", None, Some(10)).await;
    let kept = history.iter().find(|m| m.id == id).expect("in history");
    let kept = kept.file.as_deref().expect("with its file");
    assert_eq!(kept.id, file.id);
    // The link names the old port; the path is what counts.
    let got = http(server.addr, "GET", path_of(&file.url), &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data);
    server.shutdown().await;
}

#[tokio::test]
async fn downloads_can_require_a_session() {
    let (_dir, server, mut alice) = start(|c| sharing(c).require_auth = true).await;
    let addr = server.addr;
    let mut other = Client::connect(addr).await;
    let ServerMsg::Welcome { session, .. } = other.hello("dave").await else {
        panic!("no welcome");
    };
    let data = content(100);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "x", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(upload_all(addr, &url, &data, 1).await.status, 204);
    let file = file_of(&shared(&mut alice, id).await);
    let path = path_of(&file.url);
    assert_eq!(http(addr, "GET", path, &[], b"").await.status, 401);
    let wrong = format!("Bearer {}", Uuid::new_v4());
    assert_eq!(
        http(addr, "GET", path, &[("Authorization", &wrong)], b"")
            .await
            .status,
        401
    );
    let right = format!("Bearer {session}");
    let got = http(addr, "GET", path, &[("Authorization", &right)], b"").await;
    assert_eq!((got.status, got.body), (200, data));
    server.shutdown().await;
}

/// curl, a real HTTP client: the upload command line mode suggests, and `curl -C -`
/// resuming a download.
#[tokio::test]
async fn curl_uploads_as_line_mode_says_and_resumes_a_download() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is not installed (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_server(files_cfg(dir.path())).await;
    let addr = server.addr;
    let mut bob = Client::login(addr, "bob").await;
    bob.roundtrip().await;
    let mut carol = common::Line::login(addr, "carol").await;
    let data = content(1_500_000);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("upload me.bin");
    std::fs::write(&source, &data).unwrap();
    carol
        .send_line(&format!(
            "/upload {} {} 上传.bin",
            data.len(),
            sha256_hex(&data)
        ))
        .await;
    let hint = carol
        .read_until("the upload hint", |l| l.contains("upload with: curl"))
        .await;
    let command = hint
        .split_once("upload with: ")
        .unwrap()
        .1
        .split(" (the link works")
        .next()
        .unwrap()
        .replace(
            "@FILE",
            &format!("@{}", source.display()).replace(' ', "\\ "),
        );
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} --fail --silent --show-error"))
        .status()
        .await
        .unwrap();
    assert!(status.success(), "curl upload: {command}");
    let message = bob
        .recv_until("carol's file", |m| match m {
            ServerMsg::Message(m) if m.from == "carol" && m.file.is_some() => Some(m.clone()),
            _ => None,
        })
        .await;
    let file = file_of(&message);
    assert_eq!(file.name, "上传.bin");

    // A download cut short, then `curl -C -` finishes it.
    let target = work.path().join("down.bin");
    std::fs::write(&target, &data[..600_000]).unwrap();
    let status = tokio::process::Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "-C", "-", "-o"])
        .arg(&target)
        .arg(&file.url)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(sha256_hex(&std::fs::read(&target).unwrap()), file.sha256);
    server.shutdown().await;
}

/// Over TLS (with `--require-tls`): links are `https://`, and the upload and the download
/// go through the same TLS port.
#[tokio::test]
async fn uploads_and_downloads_work_over_tls() {
    use std::sync::Arc;
    let cert = common::make_cert();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        tls: Some(chat_server::TlsSource::Files {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }),
        require_tls: true,
        ..files_cfg(dir.path())
    };
    let server = spawn_server(config).await;
    let addr = server.addr;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.expect("TLS handshake")
    };
    let mut alice = Client::from_io(connect().await);
    alice.hello("alice").await;
    let data = content(200_000);
    let id = Uuid::new_v4();
    let upload = ClientMsg::Upload {
        name: "secret.txt".into(),
        size: data.len() as u64,
        sha256: sha256_hex(&data),
        room: Some("lobby".into()),
        to: None,
    };
    alice.send_req(Request::with_id(id, upload)).await;
    let url = alice
        .recv_until("upload_slot", |m| match m {
            ServerMsg::UploadSlot { url, .. } => Some(url.clone()),
            _ => None,
        })
        .await;
    assert!(url.starts_with("https://"), "{url}");
    let offset = "0";
    let sum = checksum(&data);
    let headers = [
        TUS,
        OCTETS,
        ("Upload-Offset", offset),
        ("Upload-Checksum", &sum),
    ];
    let done = http_on(connect().await, "PATCH", path_of(&url), &headers, &data).await;
    assert_eq!(done.status, 204);
    let file = alice
        .recv_until("the file", |m| match m {
            ServerMsg::Message(m) if m.id == id => m.file.clone(),
            _ => None,
        })
        .await;
    assert!(file.url.starts_with("https://"));
    let got = http_on(connect().await, "GET", path_of(&file.url), &[], b"").await;
    assert_eq!((got.status, got.body), (200, data));
    // Plain HTTP is refused like any plain connection.
    let plain = TcpStream::connect(addr).await.unwrap();
    let mut plain = BufReader::new(plain);
    plain
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut said = String::new();
    let _ = timeout(WAIT, plain.read_to_string(&mut said)).await;
    assert!(said.contains("only TLS"), "{said:?}");
    server.shutdown().await;
}

/// A body that stops coming (the client neither sends nor closes) is taken as cut off after
/// `--write-timeout`: what arrived counts, and the upload can go on.
#[tokio::test]
async fn a_stalled_upload_body_is_cut_off_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        write_timeout: Duration::from_millis(500),
        ..files_cfg(dir.path())
    };
    let server = spawn_server(config).await;
    let addr = server.addr;
    let mut alice = Client::login(addr, "alice").await;
    let data = content(100_000);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "slow.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = patch_head(&url, data.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..30_000]).await.unwrap();
    // Held open, silent.
    let response = timeout(WAIT, read_response(&mut stream, false)).await;
    assert!(response.is_ok(), "the stalled request was answered");
    assert_eq!(head_offset(addr, &url).await, Some(30_000));
    let rest = patch(addr, &url, 30_000, &data[30_000..], true).await;
    assert_eq!(rest.status, 204);
    assert_eq!(
        file_of(&shared(&mut alice, id).await).sha256,
        sha256_hex(&data)
    );
    server.shutdown().await;
}

/// The last byte arrives while the uploader's chat connection is down: the upload is
/// complete (204) and kept, and shared as soon as the uploader is back and asks for its
/// slot again; nothing is uploaded twice.
#[tokio::test]
async fn an_upload_finished_while_its_uploader_is_away_is_shared_when_it_is_back() {
    let (_dir, server, mut alice) = start(|_| {}).await;
    let addr = server.addr;
    let mut bob = Client::login(addr, "bob").await;
    bob.roundtrip().await;
    let data = content(120_000);
    let id = Uuid::new_v4();
    let (url, _) = ask(&mut alice, id, "away.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!(
        patch(addr, &url, 0, &data[..60_000], true).await.status,
        204
    );
    alice.quit().await;
    let done = patch(addr, &url, 60_000, &data[60_000..], true).await;
    assert_eq!(done.status, 204, "{}", String::from_utf8_lossy(&done.body));
    bob.expect_none(
        QUIET,
        "a share before its uploader is back",
        |m| matches!(m, ServerMsg::Message(m) if m.id == id),
    )
    .await;
    assert_eq!(head_offset(addr, &url).await, Some(120_000));

    let mut alice = Client::login(addr, "alice").await;
    let (again, offset) = ask(&mut alice, id, "away.bin", &data, Some("lobby"), None)
        .await
        .unwrap();
    assert_eq!((again.as_str(), offset), (url.as_str(), 120_000));
    let file = file_of(&shared(&mut alice, id).await);
    assert_eq!(file_of(&shared(&mut bob, id).await), file);
    assert_eq!(
        http(addr, "GET", path_of(&file.url), &[], b"").await.body,
        data
    );
    assert_eq!(head_offset(addr, &url).await, None, "the slot is done");
    server.shutdown().await;
}

/// Upload requests writing at once are bounded server-wide: one more waits, then is told to
/// come back (503 with Retry-After), and its upload is untouched.
#[tokio::test]
async fn writing_uploads_are_bounded_server_wide() {
    let (_dir, server, mut alice) = start(|c| {
        c.write_timeout = Duration::from_millis(800);
        sharing(c).max_writing = 1;
    })
    .await;
    let addr = server.addr;
    let data = content(50_000);
    let (first, _) = ask(
        &mut alice,
        Uuid::new_v4(),
        "one",
        &data,
        Some("lobby"),
        None,
    )
    .await
    .unwrap();
    let (second, _) = ask(
        &mut alice,
        Uuid::new_v4(),
        "two",
        &data,
        Some("lobby"),
        None,
    )
    .await
    .unwrap();
    // The first keeps its request open, sending a little now and then.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let head = patch_head(&first, data.len());
    slow.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..15 {
            slow.write_all(&[i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = patch(addr, &second, 0, &data, true).await;
    assert_eq!(busy.status, 503, "{}", String::from_utf8_lossy(&busy.body));
    assert_eq!(busy.header("Retry-After"), Some("5"));
    assert_eq!(head_offset(addr, &second).await, Some(0));
    drop(trickle.await.unwrap());
    // Once the first request is over, the second goes through.
    let mut done = None;
    for _ in 0..20 {
        let r = patch(addr, &second, 0, &data, true).await;
        if r.status != 503 {
            done = Some(r.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done, Some(204));
    server.shutdown().await;
}
