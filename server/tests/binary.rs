//! The real `chat-server` binary as a user runs it: port 0, the `listening on` log line,
//! SIGTERM saying goodbye to every client before exiting 0, its JSON log lines, and its
//! admin listener's health and readiness while its disk fills up.

use std::path::Path;
use std::time::Duration;

use chat_shared::{ByeReason, ClientCodec, ClientMsg, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

mod common;

use common::{Run, Server};

/// The bound on each wait in these tests (the contract's 5 s for a shutdown).
const WAIT: Duration = Duration::from_secs(5);
/// The bound on a step that waits for a password hash: Argon2id (19 MiB, two passes) is
/// unoptimised in a test build and takes seconds on a loaded machine.
const HASHING: Duration = Duration::from_secs(30);

/// Starts the binary with `extra` flags, its history in memory only (these tests are about
/// signals and clients; storage has its own).
fn start(extra: &[&str]) -> (Server, String) {
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    args.extend(["--db".to_owned(), "none".to_owned()]);
    Run {
        args,
        dir: Path::new("."),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start()
}

#[tokio::test]
async fn sigterm_says_bye_to_every_client_and_exits_zero() {
    let (mut server, addr) = start(&[]);

    let (mut framed, welcome) = common::framed_login(&addr, "frank").await;
    assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");

    let line = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = line.into_split();
    write.write_all(b"lina\n").await.unwrap();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let first = timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("welcome, lina"), "{first}");

    sigterm(&server);

    let bye = timeout(WAIT, async {
        loop {
            match framed.next().await {
                Some(Ok(ServerMsg::Bye { reason, .. })) => return reason,
                Some(Ok(_)) => continue,
                other => panic!("no bye before the end: {other:?}"),
            }
        }
    })
    .await
    .expect("bye arrives");
    assert_eq!(bye, ByeReason::Shutdown);
    assert!(
        timeout(WAIT, framed.next()).await.unwrap().is_none(),
        "EOF after bye"
    );

    let mut last = None;
    while let Some(line) = timeout(WAIT, lines.next_line()).await.unwrap().unwrap() {
        last = Some(line);
    }
    let last = last.expect("line clients get a last line");
    assert!(last.contains("shutting down"), "{last}");

    assert_exits_zero_within(&mut server, WAIT).await;
}

fn sigterm(server: &Server) {
    server.signal("-TERM");
}

async fn assert_exits_zero_within(server: &mut Server, limit: Duration) {
    let status = timeout(limit, server.exited())
        .await
        .unwrap_or_else(|_| panic!("the server did not exit within {limit:?}"));
    assert!(status.success(), "exit status {status:?}");
}

/// Issue 5: SIGTERM while 200 clients (half framed, half line) chat; each gets its goodbye
/// and the process exits 0 within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_says_bye_to_hundreds_and_exits_zero_within_5_s() {
    let (mut server, addr) = start(&["--max-clients-per-ip", "1000", "--rate", "1000"]);
    let mut clients = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(200);
    for i in 0..100 {
        let (to, ready) = (addr.clone(), ready_tx.clone());
        clients.spawn(async move {
            let stream = TcpStream::connect(&to).await.unwrap();
            let mut framed = Framed::new(stream, ClientCodec::default());
            let hello = ClientMsg::Hello {
                nick: format!("f{i}"),
                version: None,
                client: None,
                password: None,
            };
            framed.send(hello).await.unwrap();
            let mut ready = Some(ready);
            let mut said = 0;
            loop {
                let next = timeout(WAIT * 2, framed.next()).await.expect("bye in time");
                match next {
                    Some(Ok(ServerMsg::Members { .. })) if ready.is_some() => {
                        // Registered and in lobby: report, then chat.
                        let _ = ready.take().unwrap().send(()).await;
                    }
                    Some(Ok(ServerMsg::Bye { reason, .. })) => {
                        assert_eq!(reason, ByeReason::Shutdown);
                        return;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("f{i}: no bye before the end: {other:?}"),
                }
                if ready.is_none() && said < 20 {
                    said += 1;
                    let say = ClientMsg::Say {
                        room: "lobby".into(),
                        text: format!("chatter {said} from f{i}"),
                        action: false,
                    };
                    // The server may be closing already; the bye is what is checked.
                    let _ = framed.send(say).await;
                }
            }
        });
        let (to, ready) = (addr.clone(), ready_tx.clone());
        clients.spawn(async move {
            let (read, mut write) = TcpStream::connect(&to).await.unwrap().into_split();
            write.write_all(format!("l{i}\n").as_bytes()).await.unwrap();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut last = String::new();
            let mut ready = Some(ready);
            let mut said = 0;
            while let Some(line) = timeout(WAIT * 2, lines.next_line())
                .await
                .expect("a last line in time")
                .unwrap_or(None)
            {
                if line.starts_with("-- members of #lobby")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(()).await; // the test may have failed already
                }
                if ready.is_none() && said < 20 {
                    said += 1;
                    let _ = write
                        .write_all(format!("chatter {said}\n").as_bytes())
                        .await;
                }
                last = line;
            }
            assert!(last.contains("shutting down"), "l{i}'s last line: {last}");
        });
    }
    drop(ready_tx);
    for _ in 0..200 {
        timeout(WAIT * 2, ready_rx.recv())
            .await
            .expect("every client logs in")
            .expect("a client task failed before logging in");
    }
    sigterm(&server);
    assert_exits_zero_within(&mut server, WAIT).await;
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
}

/// `--log-format json`: every line the server logs is one JSON object, connections are
/// logged as they open and close, and what clients say never is.
#[tokio::test]
async fn json_logs_are_one_object_per_line_and_never_hold_a_message() {
    let (mut server, addr, log) = Run {
        args: ["--log-format", "json", "--db", "none"]
            .map(str::to_owned)
            .to_vec(),
        dir: Path::new("."),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged();
    let line = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = line.into_split();
    write
        .write_all(b"lina\nthe secret words 42\n/quit\n")
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(read).lines();
    // Read to the end: the quit was handled, so its log line was written.
    while timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .is_some()
    {}
    sigterm(&server);
    assert_exits_zero_within(&mut server, WAIT).await;
    // Until the server's stderr closes: every line it wrote.
    let mut logged = Vec::new();
    while let Ok(line) = log.recv_timeout(WAIT) {
        logged.push(line);
    }
    assert!(logged.len() >= 3, "{logged:#?}");
    let mut messages = Vec::new();
    for line in &logged {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        messages.push(v.to_string());
        assert!(
            !line.contains("secret words"),
            "a message was logged: {line}"
        );
    }
    for wanted in ["connection opened", "connection closed"] {
        assert!(
            messages.iter().any(|m| m.contains(wanted)),
            "no {wanted:?} line in {logged:#?}"
        );
    }
}

/// A framed client of the binary, reading until what it waits for.
struct Framer(Framed<TcpStream, ClientCodec>);

impl Framer {
    async fn hello(addr: &str, nick: &str, password: Option<&str>) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(stream, ClientCodec::default());
        framed
            .send(ClientMsg::Hello {
                nick: nick.into(),
                version: Some(1),
                client: None,
                password: password.map(chat_shared::Password::new),
            })
            .await
            .unwrap();
        Self(framed)
    }

    async fn send(&mut self, msg: ClientMsg) {
        self.0.send(msg).await.unwrap();
    }

    /// Reads until `want` matches, within [`HASHING`] (some steps wait for a hash).
    async fn until(&mut self, what: &str, want: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
        timeout(HASHING, async {
            loop {
                match self.0.next().await {
                    Some(Ok(msg)) if want(&msg) => return msg,
                    Some(Ok(_)) => {}
                    other => panic!("no {what} before the end: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {HASHING:?}"))
    }

    async fn join(&mut self, room: &str) {
        self.send(ClientMsg::Join {
            room: room.into(),
            since: None,
            key: None,
        })
        .await;
        self.until("members", |m| matches!(m, ServerMsg::Members { .. }))
            .await;
    }
}

/// Issue 14, item 6: a kick and a failed login each log one `info` line, as JSON objects
/// with the fields an operator needs, and neither the kick's reason nor the password. A
/// failed SASL login logs the same line as a framed one: one place logs every wire mode.
#[tokio::test]
async fn json_logs_name_a_kick_and_a_failed_login_without_text_or_password() {
    const PASSWORD: &str = "correct horse battery";
    const WRONG: &str = "wrong-password-xyzzy";
    const REASON: &str = "the secret reason 42";
    // SASL PLAIN's base64 of "\0alice\0wrong-irc-password-7".
    const SASL_WRONG: &str = "AGFsaWNlAHdyb25nLWlyYy1wYXNzd29yZC03";
    const SERVER_PASSWORD: &str = "the-irc-server-password";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let (mut server, addr, log) = Run {
        args: vec![
            "--log-format".into(),
            "json".into(),
            "--db".into(),
            db.to_str().unwrap().into(),
            // Failed logins' waits of 1 and 2 ms: the second try is checked, not throttled.
            "--auth-backoff-ms".into(),
            "1".into(),
            "--irc-password".into(),
            SERVER_PASSWORD.into(),
        ],
        dir: dir.path(),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged();

    let mut alice = Framer::hello(&addr, "alice", None).await;
    alice
        .until("welcome", |m| matches!(m, ServerMsg::Welcome { .. }))
        .await;
    alice
        .send(ClientMsg::Register {
            password: chat_shared::Password::new(PASSWORD),
        })
        .await;
    alice
        .until("registered", |m| matches!(m, ServerMsg::Registered { .. }))
        .await;

    // Someone else tries alice's account with the wrong password.
    let mut mallory = Framer::hello(&addr, "alice", Some(WRONG)).await;
    let refused = mallory
        .until("an error", |m| matches!(m, ServerMsg::Error { .. }))
        .await;
    assert!(
        matches!(&refused, ServerMsg::Error { code, .. } if *code == chat_shared::ErrorCode::AuthFailed),
        "{refused:?}"
    );
    drop(mallory);
    // And over IRC, with SASL (after the server password, which this server asks for).
    let mut mal = IrcLines::connect(&addr).await;
    let hello = format!(
        "PASS {SERVER_PASSWORD}\r\nCAP LS 302\r\nNICK mal\r\nUSER mal 0 * :mal\r\n\
         CAP REQ :sasl\r\n"
    );
    mal.send(&hello).await;
    mal.until("ACK").await;
    mal.send("AUTHENTICATE PLAIN\r\n").await;
    mal.until("AUTHENTICATE +").await;
    mal.send(&format!("AUTHENTICATE {SASL_WRONG}\r\n")).await;
    mal.until(" 904 ").await;
    drop(mal);
    // And an IRC client with the wrong server password.
    let mut eve = IrcLines::connect(&addr).await;
    eve.send("PASS not-the-server-password\r\nNICK eve\r\nUSER eve 0 * :eve\r\n")
        .await;
    eve.until(" 464 ").await;
    drop(eve);

    // alice creates #den (so owns it) and kicks bob from it.
    alice.join("den").await;
    let mut bob = Framer::hello(&addr, "bob", None).await;
    bob.join("den").await;
    alice
        .until(
            "bob's join",
            |m| matches!(m, ServerMsg::Joined { room, nick, .. } if room == "den" && nick == "bob"),
        )
        .await;
    alice
        .send(ClientMsg::Kick {
            room: "den".into(),
            nick: "bob".into(),
            reason: Some(REASON.into()),
        })
        .await;
    bob.until("kicked", |m| matches!(m, ServerMsg::Kicked { .. }))
        .await;
    // Gone before the shutdown, which would otherwise linger for clients not reading.
    drop((alice, bob));

    sigterm(&server);
    assert_exits_zero_within(&mut server, WAIT).await;
    let mut logged = Vec::new();
    while let Ok(line) = log.recv_timeout(WAIT) {
        logged.push(line);
    }
    let mut objects = Vec::new();
    for line in &logged {
        let secrets = [PASSWORD, WRONG, REASON, SASL_WRONG, "wrong-irc-password"];
        for secret in secrets
            .into_iter()
            .chain([SERVER_PASSWORD, "not-the-server"])
        {
            assert!(!line.contains(secret), "{secret:?} was logged: {line}");
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        objects.push(v);
    }
    let with_message = |message: &str| -> Vec<&serde_json::Value> {
        objects
            .iter()
            .filter(|v| v["fields"]["message"] == message || v["message"] == message)
            .collect()
    };
    // The fields, wherever the JSON layer puts them (flattened or under `fields`).
    let field = |v: &serde_json::Value, key: &str| -> serde_json::Value {
        v.get(key)
            .or_else(|| v["fields"].get(key))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };

    let moderation = with_message("moderation");
    assert_eq!(moderation.len(), 1, "one kick, one line: {logged:#?}");
    let kick = moderation[0];
    assert_eq!(kick["level"], "INFO", "{kick}");
    assert_eq!(field(kick, "action"), "kick", "{kick}");
    assert_eq!(field(kick, "actor"), "alice", "{kick}");
    assert_eq!(field(kick, "subject"), "bob", "{kick}");
    assert_eq!(field(kick, "room"), "den", "{kick}");
    assert!(field(kick, "session").is_string(), "{kick}");

    let failures = with_message("auth failure");
    let mut seen = Vec::new();
    for failure in failures {
        assert_eq!(failure["level"], "INFO", "{failure}");
        assert_eq!(field(failure, "peer"), "127.0.0.1", "{failure}");
        // The wire mode, from the same session's open line.
        let session = field(failure, "session");
        let opened = with_message("connection opened")
            .into_iter()
            .find(|v| field(v, "session") == session)
            .unwrap_or_else(|| panic!("no open line for {session}: {logged:#?}"));
        let text = |key| field(failure, key).as_str().unwrap_or("?").to_owned();
        let mode = field(opened, "mode").as_str().unwrap_or("?").to_owned();
        seen.push([mode, text("nick"), text("step"), text("reason")]);
    }
    assert_eq!(
        seen,
        [
            ["framed", "alice", "login", "wrong_password"],
            ["irc", "alice", "login", "wrong_password"],
            ["irc", "eve", "server_password", "wrong_server_password"],
        ]
        .map(|row| row.map(str::to_owned)),
        "{logged:#?}"
    );
}

/// A raw IRC connection, read line by line.
struct IrcLines {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl IrcLines {
    async fn connect(addr: &str) -> Self {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let lines = tokio::io::BufReader::new(read).lines();
        Self { lines, write }
    }

    async fn send(&mut self, text: &str) {
        self.write.write_all(text.as_bytes()).await.unwrap();
    }

    /// Reads until a line contains `what`, within [`HASHING`].
    async fn until(&mut self, what: &str) {
        loop {
            let line = timeout(HASHING, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {HASHING:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("no {what} before the end"));
            if line.contains(what) {
                return;
            }
        }
    }
}

/// `GET path` on the admin listener: the status and the body, or `None` if nothing
/// answers there (any wait bounded by [`WAIT`]).
fn admin_get(admin: &str, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    exchange(admin, request.as_bytes()).map(|(status, _, body)| (status, body))
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) and returns the
/// response's status, head and body.
fn exchange(addr: &str, request: &[u8]) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream.write_all(request).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// A full disk (here: a file-size limit of 1 MiB) refuses an upload's request with 507 and
/// keeps nothing of it, and the chat goes on.
#[tokio::test]
async fn a_full_disk_refuses_an_upload_cleanly_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let args = ["--db", "none", "--files-dir", files.to_str().unwrap()];
    let (_server, addr, _log) = Run {
        args: args.map(str::to_owned).to_vec(),
        dir: dir.path(),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged_with_file_limit(1024);
    let mut alice = Framer::hello(&addr, "alice", None).await;
    let data = vec![7u8; 3 << 20];
    let sha256: String = ring::digest::digest(&ring::digest::SHA256, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    alice
        .send(ClientMsg::Upload {
            name: "big.bin".into(),
            size: data.len() as u64,
            sha256,
            room: Some("lobby".into()),
            to: None,
        })
        .await;
    let ServerMsg::UploadSlot { url, .. } = alice
        .until("upload_slot", |m| matches!(m, ServerMsg::UploadSlot { .. }))
        .await
    else {
        unreachable!()
    };
    let path = url[url.find("/uploads/").expect("an upload path")..].to_owned();
    let target = addr_of(&url);
    let mut request = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    request.extend_from_slice(&data);
    let (status, _, body) = tokio::task::spawn_blocking(move || exchange(&target, &request))
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("the disk"), "{body}");
    let head = format!(
        "HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\n\r\n"
    );
    let (status, head, _) = exchange(&addr, head.as_bytes()).expect("HEAD");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("upload-offset: 0"),
        "{head}"
    );
    let partial = std::fs::read_dir(files.join("partial"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        partial.metadata().unwrap().len(),
        0,
        "nothing of the request is kept"
    );
    // The chat still works.
    alice
        .send(ClientMsg::Say {
            room: "lobby".into(),
            text: "still here".into(),
            action: false,
        })
        .await;
    alice
        .until(
            "the message's echo",
            |m| matches!(m, ServerMsg::Message(m) if m.text == "still here"),
        )
        .await;
}

/// `HOST:PORT` of a URL.
fn addr_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Polls `path` until `done` holds for its answer, within twice [`WAIT`]; every answer
/// before must satisfy `meanwhile`. Returns the answer that ended it.
async fn admin_until(
    admin: &str,
    path: &str,
    done: impl Fn(&Option<(u16, String)>) -> bool,
    meanwhile: impl Fn(&Option<(u16, String)>) -> bool,
) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let got = admin_get(admin, path);
        if done(&got) {
            return got;
        }
        assert!(meanwhile(&got), "{path} answered {got:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {got:?} after {:?}",
            WAIT * 2
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Issue 14, item 8: `/healthz` and `/readyz` of the real binary from its start, through
/// a store that fails (its disk "fills up": no file may grow past 512 KiB, so SQLite's
/// writes fail with `EFBIG`), to its shutdown.
#[tokio::test]
async fn healthz_and_readyz_across_start_a_failing_store_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let args = [
        "--db",
        db.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
        "--rate",
        "100000",
        "--burst",
        "100000",
    ];
    let (mut server, addr, log) = Run {
        args: args.map(str::to_owned).to_vec(),
        dir: dir.path(),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged_with_file_limit(512);
    let admin = loop {
        let line = log
            .recv_timeout(WAIT)
            .expect("the admin listener's log line");
        if let Some(rest) = line.split("admin listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };

    // Start: 503 "starting" (if it is seen at all), then ready.
    let ok =
        |want: &'static str| move |got: &Option<(u16, String)>| *got == Some((200, want.into()));
    admin_until(&admin, "/readyz", ok("ready\n"), |got| {
        got.is_none() || *got == Some((503, "starting\n".into()))
    })
    .await;
    assert_eq!(admin_get(&admin, "/healthz"), Some((200, "ok\n".into())));

    // The store fails: a client's messages outgrow the file size limit.
    let filler = Framer::hello(&addr, "filler", None).await;
    let (mut to_server, mut from_server) = filler.0.split();
    // Whatever the server answers (acknowledgements, errors for failed messages) is read
    // and dropped, so the client never counts as too slow.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = from_server.next().await {} });
    let text = "x".repeat(4000);
    let failing = "the store is failing to write\n";
    let mut said = 0;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        for _ in 0..20 {
            let say = ClientMsg::Say {
                room: "lobby".into(),
                text: text.clone(),
                action: false,
            };
            to_server.send(say).await.unwrap();
            said += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        match admin_get(&admin, "/readyz") {
            Some((503, body)) if body == failing => break,
            Some((200, _)) => {}
            other => panic!("/readyz answered {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store still writes after {said} messages of 4000 bytes"
        );
    }
    // Not ready, but alive: it still accepts connections.
    assert_eq!(admin_get(&admin, "/healthz"), Some((200, "ok\n".into())));
    drain.abort();

    // Shutdown: a client that never closes its socket keeps the drain going (its lingering
    // close waits for it), and meanwhile both endpoints say so.
    let mut lina = TcpStream::connect(&addr).await.unwrap();
    lina.write_all(b"lina\n").await.unwrap();
    let mut greeting = [0u8; 64];
    let _ = timeout(
        WAIT,
        tokio::io::AsyncReadExt::read(&mut lina, &mut greeting),
    )
    .await
    .expect("lina is greeted");
    sigterm(&server);
    let shutting_down = |got: &Option<(u16, String)>| *got == Some((503, "shutting down\n".into()));
    admin_until(
        &admin,
        "/readyz",
        shutting_down,
        // The store may recover before the signal: a smaller transaction (the filler's
        // last messages) can fit in the pages the file already has, and a commit that
        // succeeds clears the failure.
        |got| {
            matches!(got, Some((503, body)) if body == failing)
                || *got == Some((200, "ready\n".into()))
        },
    )
    .await;
    assert_eq!(
        admin_get(&admin, "/healthz"),
        Some((503, "shutting down\n".into()))
    );
    drop(lina);
    // It exits (its status may say the store failed), and the admin listener with it.
    let _ = timeout(WAIT, server.exited())
        .await
        .expect("the server exits");
    assert_eq!(
        admin_get(&admin, "/healthz"),
        None,
        "the admin listener outlived the server"
    );
    // What failed was SQLite's write (it says "disk I/O error").
    let logged: Vec<String> = log.try_iter().collect();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("could not store messages")),
        "no store failure logged after {said} messages: {logged:#?}"
    );
}
