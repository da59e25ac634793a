//! Issue 6 with the real binary: every acknowledged message survives `kill -9`, and the
//! default database lives under `$XDG_DATA_HOME` (or `$HOME/.local/share`).
//!
//! Each test runs the binary in its own temporary directory (also its working directory and
//! `HOME`), removed at the end; a guard kills the process if the test fails first.

use std::collections::{HashMap, HashSet};

use chat_shared::{ChatMessage, ClientCodec, ClientMsg, Request, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;
use uuid::Uuid;

mod common;

use common::{Run, WAIT};

/// Frames big enough for a full page of 500 messages, on both sides.
const BIG_FRAME: usize = 1024 * 1024;

type Conn = Framed<TcpStream, ClientCodec>;

/// The next frame; a timeout, end of file or decoding error fails the test.
async fn recv(conn: &mut Conn, what: &str) -> ServerMsg {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(msg))) => msg,
        Ok(Some(Err(e))) => panic!("waiting for {what}: {e}"),
        Ok(None) => panic!("connection closed while waiting for {what}"),
        Err(_) => panic!("nothing within {WAIT:?} while waiting for {what}"),
    }
}

/// Connects, says `hello`, and returns the connection and the lobby history sent on join.
async fn login(addr: &str, nick: &str) -> (Conn, Vec<ChatMessage>) {
    let stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = Framed::new(stream, ClientCodec::new(BIG_FRAME));
    conn.send(ClientMsg::Hello {
        nick: nick.into(),
        version: Some(1),
        client: Some("durability-test".into()),
        password: None,
    })
    .await
    .expect("send hello");
    let mut history = None;
    loop {
        match recv(&mut conn, "the lobby join sequence").await {
            ServerMsg::History { room, messages, .. } if room == "lobby" => {
                history = Some(messages);
            }
            ServerMsg::Members { room, .. } if room == "lobby" => break,
            ServerMsg::Error { .. } | ServerMsg::Bye { .. } => panic!("login as {nick} refused"),
            _ => {}
        }
    }
    (conn, history.expect("history came before members"))
}

/// Says `text` in lobby with a fresh id and waits for the acknowledgement.
async fn say(conn: &mut Conn, text: &str) -> ChatMessage {
    let id = Uuid::new_v4();
    conn.send(Request::with_id(
        id,
        ClientMsg::Say {
            room: "lobby".into(),
            text: text.into(),
            action: false,
        },
    ))
    .await
    .expect("send say");
    loop {
        match recv(conn, "the acknowledgement").await {
            ServerMsg::Message(m) if m.id == id => return m,
            m @ ServerMsg::Error { .. } => panic!("say {text:?} refused: {m:?}"),
            _ => {}
        }
    }
}

/// Pages back through `room` with `history{before, limit: 500}` until an empty page;
/// returns everything oldest first.
async fn page_all(conn: &mut Conn, room: &str) -> Vec<ChatMessage> {
    let mut pages: Vec<Vec<ChatMessage>> = Vec::new();
    let mut before = None;
    loop {
        conn.send(ClientMsg::History {
            room: room.into(),
            before,
            limit: Some(500),
            after: None,
        })
        .await
        .expect("send history");
        let page = loop {
            match recv(conn, "a history page").await {
                ServerMsg::History {
                    room: r, messages, ..
                } if r == room => break messages,
                m @ ServerMsg::Error { .. } => panic!("history before {before:?}: {m:?}"),
                _ => {}
            }
        };
        let Some(first) = page.first() else {
            break;
        };
        before = Some(first.id);
        pages.push(page);
        assert!(pages.len() <= 40, "paging {room} does not end");
    }
    pages.into_iter().rev().flatten().collect()
}

/// The binary with its database in `dir` (also its home), rate limits off, and `extra`.
fn unlimited<'a>(dir: &'a std::path::Path, extra: &[&str]) -> Run<'a> {
    let db = dir.join("chat.db");
    let mut args: Vec<String> = ["--rate", "1000000", "--burst", "1000000", "--db"]
        .map(String::from)
        .to_vec();
    args.push(db.to_str().expect("UTF-8 path").to_owned());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Run {
        args,
        dir,
        env: vec![("HOME", dir.to_path_buf())],
        unset: vec!["XDG_DATA_HOME"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_kill_9_mid_stream_loses_no_acknowledged_message_and_stores_none_twice() {
    const N: usize = 5000;
    const KILL_AFTER: usize = 1000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = unlimited(dir.path(), &["--max-frame", "1048576"]);
    let (mut server, addr) = run.start();
    // A member that only watches: it sees messages as soon as the server has taken them,
    // before they are durable, so it may see some that the crash then loses.
    let (mut watcher, _) = login(&addr, "watcher").await;
    let watched = tokio::spawn(async move {
        let mut seen: Vec<(Uuid, u64)> = Vec::new();
        while let Ok(Some(Ok(msg))) = timeout(WAIT, watcher.next()).await {
            if let ServerMsg::Message(m) = msg {
                seen.push((m.id, m.seq));
            }
        }
        seen
    });
    let (conn, _) = login(&addr, "writer").await;
    let (mut sink, mut stream) = conn.split();

    // The writer sends everything at once, never waiting for an acknowledgement.
    let ids: Vec<Uuid> = (0..N).map(|_| Uuid::new_v4()).collect();
    let sent_ids = ids.clone();
    let writer = tokio::spawn(async move {
        for (i, id) in sent_ids.into_iter().enumerate() {
            let say = Request::with_id(
                id,
                ClientMsg::Say {
                    room: "lobby".into(),
                    text: format!("stream {i}"),
                    action: false,
                },
            );
            if sink.send(say).await.is_err() {
                return i; // the server is gone
            }
        }
        N
    });

    // Every acknowledgement, in the order received; SIGKILL after KILL_AFTER of them.
    let mut acked: Vec<(Uuid, u64)> = Vec::new();
    let mut refused = 0;
    let mut killed = false;
    loop {
        let next = timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("nothing for {WAIT:?} after {} acks", acked.len()));
        match next {
            Some(Ok(ServerMsg::Message(m))) if m.from == "writer" => {
                acked.push((m.id, m.seq));
                if acked.len() == KILL_AFTER {
                    server.signal("-KILL");
                    killed = true;
                }
            }
            Some(Ok(ServerMsg::Error { .. })) => refused += 1,
            Some(Ok(_)) => {}
            // End of file or a reset: the process is gone.
            Some(Err(_)) | None => break,
        }
        assert!(
            killed || acked.len() < N,
            "all {N} acknowledged before the kill"
        );
    }
    assert!(
        killed,
        "the connection ended after only {} acks",
        acked.len()
    );
    let status = server.exited().await;
    assert!(!status.success(), "killed, yet exit status {status:?}");
    let sent = timeout(WAIT, writer)
        .await
        .expect("the writer stops")
        .expect("the writer task");
    eprintln!(
        "sent {sent} of {N}, {} acknowledged, {refused} refused, before the kill",
        acked.len()
    );
    drop(server);

    let (server, addr) = run.start();
    let (mut reader, _) = login(&addr, "reader").await;
    let stored = page_all(&mut reader, "lobby").await;

    let stored_seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    if let Some(w) = stored_seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!(
            "stored seqs not strictly increasing in page order: {} then {}",
            w[0], w[1]
        );
    }
    let mine: HashSet<Uuid> = ids.iter().copied().collect();
    let mut by_id: HashMap<Uuid, u64> = HashMap::new();
    for m in &stored {
        assert!(mine.contains(&m.id), "a message nobody sent: {m:?}");
        assert!(
            by_id.insert(m.id, m.seq).is_none(),
            "stored twice: {} (seq {})",
            m.id,
            m.seq
        );
    }
    let lost: Vec<&(Uuid, u64)> = acked
        .iter()
        .filter(|(id, seq)| by_id.get(id) != Some(seq))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are missing or have another seq after kill -9 \
         (stored {}, seqs {:?}..{:?}); first: {:?} stored as {:?}",
        lost.len(),
        acked.len(),
        stored.len(),
        stored_seqs.first(),
        stored_seqs.last(),
        lost[0],
        by_id.get(&lost[0].0)
    );
    assert!(stored.len() >= acked.len());

    // The sender's own view is in seq order: its acknowledgements came in seq order.
    if let Some(w) = acked.windows(2).find(|w| w[0].1 >= w[1].1) {
        panic!("acknowledged out of seq order: {w:?}");
    }
    // What the watcher saw: in seq order; whatever of it was stored kept its seq; and no seq
    // it saw, stored or lost in the crash, is ever given to another message.
    let seen = timeout(WAIT, watched)
        .await
        .expect("the watcher stops")
        .expect("the watcher task");
    if let Some(w) = seen.windows(2).find(|w| w[0].1 >= w[1].1) {
        panic!("the watcher saw messages out of seq order: {w:?}");
    }
    let seen_seqs: HashMap<u64, Uuid> = seen.iter().map(|&(id, seq)| (seq, id)).collect();
    for m in &stored {
        if let Some(id) = seen_seqs.get(&m.seq) {
            assert_eq!(*id, m.id, "seq {} was reused for another message", m.seq);
        }
    }
    let unstored = seen
        .iter()
        .filter(|(id, _)| !by_id.contains_key(id))
        .count();
    eprintln!(
        "the watcher saw {} messages, {unstored} of them lost with the crash (never acknowledged)",
        seen.len()
    );
    let last_seen = seen.iter().map(|&(_, seq)| seq).max().unwrap_or(0);
    let last = stored_seqs.last().copied().unwrap_or(0);
    let next = say(&mut reader, "after the crash").await;
    assert!(
        next.seq > last.max(last_seen),
        "seq after a restart: {} (last stored {last}, last seen {last_seen})",
        next.seq
    );
    drop(server);
}

/// A client sending far faster than the disk commits (rate limits off) is slowed down by
/// the server rather than lagging behind its own messages: it gets every acknowledgement,
/// in seq order, and no `lagged`; another member gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_6_a_flooding_sender_gets_every_ack_in_order_and_never_lags() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = unlimited(dir.path(), &[]);
    let (server, addr) = run.start();
    let (mut watcher, _) = login(&addr, "watcher").await;
    let (conn, _) = login(&addr, "flood").await;
    let (mut sink, mut stream) = conn.split();
    let ids: Vec<Uuid> = (0..N).map(|_| Uuid::new_v4()).collect();
    let sent = ids.clone();
    let writer = tokio::spawn(async move {
        for id in sent {
            let say = Request::with_id(
                id,
                ClientMsg::Say {
                    room: "lobby".into(),
                    text: "flood".into(),
                    action: false,
                },
            );
            sink.send(say).await.expect("send say");
        }
        sink
    });
    let mut acked = Vec::with_capacity(N);
    while acked.len() < N {
        let next = timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stuck after {} acknowledgements", acked.len()));
        match next {
            Some(Ok(ServerMsg::Message(m))) if m.from == "flood" => acked.push((m.id, m.seq)),
            Some(Ok(m @ (ServerMsg::Lagged { .. } | ServerMsg::Error { .. }))) => {
                panic!("after {} acknowledgements: {m:?}", acked.len())
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    let acked_ids: Vec<Uuid> = acked.iter().map(|&(id, _)| id).collect();
    assert_eq!(acked_ids, ids, "acknowledged in the order sent");
    assert!(acked.windows(2).all(|w| w[0].1 < w[1].1), "in seq order");
    let mut seen = 0;
    while seen < N {
        match recv(&mut watcher, "the flood").await {
            ServerMsg::Message(m) if m.from == "flood" => seen += 1,
            m @ ServerMsg::Lagged { .. } => panic!("the watcher lagged: {m:?}"),
            _ => {}
        }
    }
    drop(writer.await.expect("the writer task"));
    drop(server);
}

/// Posts one message, stops the server with SIGTERM (exit 0), starts it again the same way
/// and returns (the message, the lobby history a new client gets).
async fn restart_cycle(run: &Run<'_>) -> (ChatMessage, Vec<ChatMessage>) {
    let (mut server, addr) = run.start();
    let (mut poster, _) = login(&addr, "poster").await;
    let said = say(&mut poster, "kept across restarts").await;
    server.signal("-TERM");
    let status = server.exited().await;
    assert!(status.success(), "SIGTERM: exit status {status:?}");
    drop((poster, server));

    let (_server, addr) = run.start();
    let (_reader, history) = login(&addr, "reader").await;
    (said, history)
}

#[tokio::test]
async fn issue_6_without_db_flag_history_is_kept_in_xdg_data_home_across_restarts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir(&home).expect("mkdir home");
    let run = Run {
        args: Vec::new(),
        dir: dir.path(),
        env: vec![("HOME", home.clone()), ("XDG_DATA_HOME", xdg.clone())],
        unset: Vec::new(),
    };
    let (said, history) = restart_cycle(&run).await;
    assert_eq!(history, vec![said], "lobby history after a restart");
    let db = xdg.join("chat-server").join("chat.db");
    assert!(db.is_file(), "no database at {}", db.display());
    assert!(
        !home.join(".local/share/chat-server").exists(),
        "XDG_DATA_HOME is set: nothing under $HOME/.local/share"
    );
}

#[tokio::test]
async fn issue_6_without_db_flag_or_xdg_data_home_history_is_kept_in_home_local_share() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let run = Run {
        args: Vec::new(),
        dir: dir.path(),
        env: vec![("HOME", home.clone())],
        unset: vec!["XDG_DATA_HOME"],
    };
    let (said, history) = restart_cycle(&run).await;
    assert_eq!(history, vec![said], "lobby history after a restart");
    let db = home.join(".local/share/chat-server/chat.db");
    assert!(db.is_file(), "no database at {}", db.display());
}

#[tokio::test]
async fn issue_6_db_none_keeps_history_in_memory_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir(&home).expect("mkdir home");
    let run = Run {
        args: vec!["--db".into(), "none".into()],
        dir: dir.path(),
        env: vec![("HOME", home.clone()), ("XDG_DATA_HOME", xdg.clone())],
        unset: Vec::new(),
    };
    let (_, history) = restart_cycle(&run).await;
    assert!(
        history.is_empty(),
        "--db none: history is gone with the process: {history:?}"
    );
    assert!(
        !xdg.join("chat-server").exists() && !home.join(".local").exists(),
        "--db none wrote a database"
    );
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["home"],
        "--db none created files in its working directory"
    );
}
