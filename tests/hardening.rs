//! Hostile or unlucky clients cannot hurt anyone else: slow readers, flooders, a full server,
//! half-open connections, garbage in both modes, and shutdown while many clients chat.
//!
//! Each test keeps a well-behaved pair chatting through the trouble and checks that every one
//! of its messages arrives.

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::Config;
use chat_shared::{ByeReason, ClientMsg, ErrorCode, Request, ServerMsg};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{
    Client, Line, Next, QUIET, WAIT, assert_pair_chats, cfg, frame, say_req, small_window_stream,
    spawn_server,
};

/// No rate limit, for tests that need volume.
fn unlimited() -> Config {
    Config {
        rate: 1e9,
        burst: u32::MAX,
        max_clients_per_ip: 10_000,
        ..cfg()
    }
}

/// Posts `n` messages of `size` bytes to lobby as fast as the server takes them (at most 16
/// unacknowledged, well under the room buffer), reading its own acknowledgements so the
/// flooder itself never becomes a slow reader.
async fn flood(addr: SocketAddr, nick: &str, n: usize, size: usize) {
    let mut client = Client::login(addr, nick).await;
    let text = "x".repeat(size);
    let (mut sent, mut acked) = (0, 0);
    while acked < n {
        while sent < n && sent - acked < 16 {
            client
                .send_req(say_req(Uuid::now_v7(), "lobby", &text))
                .await;
            sent += 1;
        }
        match client.next(WAIT).await {
            Next::Item(ServerMsg::Message(m)) if m.from == nick => acked += 1,
            Next::Item(_) => {}
            other => panic!("flooder after {acked} acks: {}", short(&other)),
        }
    }
}

/// A bounded description of a read, for failure messages (messages here are 4 KB each).
fn short<T: std::fmt::Debug>(x: &T) -> String {
    let s = format!("{x:?}");
    s.chars().take(160).collect()
}

/// What a reader saw of the flood.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    got: u64,
    /// Room messages from anyone else.
    others: u64,
    missed: u64,
    /// The `parted` reason of the watched nick, once seen.
    parted: Option<String>,
}

/// Reads `client` in its own task (so it never falls behind while the test waits on
/// something else) until `n` messages from `from` are accounted for (received or reported
/// missed by `lagged`) and, if `watch` is given, that nick has left lobby.
fn read_flood(
    mut client: Client,
    from: &'static str,
    n: u64,
    watch: Option<&'static str>,
) -> tokio::task::JoinHandle<(Client, Seen)> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while seen.got + seen.others + seen.missed < n || (watch.is_some() && seen.parted.is_none())
        {
            match client.next(WAIT).await {
                Next::Item(ServerMsg::Message(m)) if m.from == from => seen.got += 1,
                Next::Item(ServerMsg::Message(m)) if m.room == "lobby" => seen.others += 1,
                Next::Item(ServerMsg::Lagged { room, missed }) if room == "lobby" => {
                    seen.missed += missed;
                }
                Next::Item(ServerMsg::Parted { nick, reason, .. })
                    if Some(nick.as_str()) == watch =>
                {
                    seen.parted = reason.or(Some(String::new()));
                }
                Next::Item(_) => {}
                other => panic!("[{}] with {seen:?}: {}", client.nick, short(&other)),
            }
        }
        (client, seen)
    })
}

#[tokio::test]
async fn a_client_that_stops_reading_lags_without_slowing_anyone_else() {
    const N: u64 = 2000;
    let srv = spawn_server(unlimited()).await;
    let addr = srv.addr;
    let slow = Client::from_stream(small_window_stream(addr))
        .register("slow")
        .await;
    let alice = read_flood(Client::login(addr, "alice").await, "flooder", N, None);
    let bob = read_flood(Client::login(addr, "bob").await, "flooder", N, None);
    // 2000 × 4 KB is far more than the room buffer plus the socket buffers to `slow`.
    flood(addr, "flooder", N as usize, 4000).await;
    let (mut alice, seen) = alice.await.unwrap();
    assert_eq!((seen.got, seen.missed), (N, 0), "alice lost messages");
    let (mut bob, seen) = bob.await.unwrap();
    assert_eq!((seen.got, seen.missed), (N, 0), "bob lost messages");
    assert_pair_chats(&mut alice, &mut bob).await;

    // Now `slow` reads: some messages, a `lagged` for its gap, then the rest; nothing is
    // silently lost. Its gap lasts until it has read half its send queue's budget, so the
    // pair's two messages just after the flood may be in it too: every lobby message is
    // either received or counted as missed.
    let (_, seen) = read_flood(slow, "flooder", N + 2, None).await.unwrap();
    assert!(seen.missed > 0, "slow never lagged: {seen:?}");
    assert_eq!(seen.got + seen.others + seen.missed, N + 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_whose_writes_make_no_progress_is_dropped_after_write_timeout() {
    const N: u64 = 2000;
    let srv = spawn_server(Config {
        write_timeout: Duration::from_millis(500),
        ..unlimited()
    })
    .await;
    let addr = srv.addr;
    let stuck = Client::from_stream(small_window_stream(addr))
        .register("stuck")
        .await;
    let alice = read_flood(
        Client::login(addr, "alice").await,
        "flooder",
        N,
        Some("stuck"),
    );
    let bob = read_flood(
        Client::login(addr, "bob").await,
        "flooder",
        N,
        Some("stuck"),
    );
    flood(addr, "flooder", N as usize, 4000).await;
    let (mut alice, seen) = alice.await.unwrap();
    assert_eq!(seen.parted.as_deref(), Some("quit"), "alice saw {seen:?}");
    assert_eq!((seen.got, seen.missed), (N, 0), "alice lost messages");
    let (mut bob, seen) = bob.await.unwrap();
    assert_eq!((seen.got, seen.missed), (N, 0), "bob lost messages");
    assert_pair_chats(&mut alice, &mut bob).await;
    drop(stuck);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_framed_flooder_is_rate_limited_then_disconnected_and_others_see_only_its_burst() {
    let srv = spawn_server(cfg()).await; // contract defaults: 5/s, bursts of 10
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    let mut flooder = Client::login(addr, "flooder").await;
    let mut limited = 0;
    // All 200 in one write: the server disconnects the flooder long before it has read them.
    let mut spam = Vec::new();
    for i in 0..200 {
        let req = say_req(Uuid::now_v7(), "lobby", &format!("spam {i}"));
        spam.extend(frame(&serde_json::to_vec(&req).unwrap()));
    }
    flooder.send_bytes(&spam).await;
    let bye = loop {
        match flooder.next(WAIT).await {
            Next::Item(ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ref_id,
                ..
            }) => {
                assert!(ref_id.is_some(), "rate_limited carries ref");
                limited += 1;
            }
            Next::Item(ServerMsg::Bye { reason, .. }) => break reason,
            Next::Item(_) => {}
            other => panic!("flooder after {limited} rate_limited: {other:?}"),
        }
    };
    assert_eq!(bye, ByeReason::Flood);
    assert!(
        limited >= 10,
        "only {limited} rate_limited errors before the bye"
    );
    assert!(matches!(flooder.next(WAIT).await, Next::Eof));

    let spam = alice.drain(QUIET * 2).await;
    let delivered = spam
        .iter()
        .filter(|m| matches!(m, ServerMsg::Message(m) if m.from == "flooder"))
        .count();
    assert_eq!(delivered, 10, "only the burst reached the room");
    assert_pair_chats(&mut alice, &mut bob).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_line_flooder_gets_error_lines_then_a_last_line_and_close() {
    let srv = spawn_server(cfg()).await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    let mut flooder = Line::login_seen_by(addr, "lflood", &mut alice).await;
    let mut burst = String::new();
    for i in 0..200 {
        burst.push_str(&format!("spam {i}\n"));
    }
    flooder.send_bytes(burst.as_bytes()).await;
    let lines = flooder.expect_eof().await;
    assert!(
        lines.iter().any(|l| l.starts_with("! slow down")),
        "no rate-limit line in {lines:?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("! ") && l.contains("flood")),
        "last line: {:?}",
        lines.last()
    );
    assert_pair_chats(&mut alice, &mut bob).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_full_server_refuses_in_the_clients_mode_and_keeps_the_others() {
    let srv = spawn_server(Config {
        max_clients: 3,
        ..cfg()
    })
    .await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    let carol = Client::login(addr, "carol").await;

    let mut framed = Client::connect(addr).await;
    framed
        .send(ClientMsg::Hello {
            nick: "dave".into(),
            version: None,
            client: None,
            password: None,
        })
        .await;
    framed.expect_error(ErrorCode::ServerFull).await;
    framed.expect_bye_then_eof(ByeReason::ServerFull).await;

    let mut line = Line::connect(addr).await;
    line.send_line("erin").await;
    let lines = line.expect_eof().await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("! ") && l.contains("full")),
        "{lines:?}"
    );

    assert_pair_chats(&mut alice, &mut bob).await;
    // A freed slot is usable again.
    carol.quit().await;
    let mut dave = Client::connect(addr).await;
    let mut welcomed = false;
    for _ in 0..50 {
        if matches!(dave.hello("dave").await, ServerMsg::Welcome { .. }) {
            welcomed = true;
            break;
        }
        // Carol's slot is freed when her session task ends, just after her EOF.
        tokio::time::sleep(Duration::from_millis(20)).await;
        dave = Client::connect(addr).await;
    }
    assert!(welcomed, "the slot carol freed was never reused");
    srv.shutdown().await;
}

#[tokio::test]
async fn room_limits_per_client_and_per_server_answer_too_many_rooms() {
    let srv = spawn_server(Config {
        max_rooms_per_client: 2,
        max_rooms: 3,
        ..cfg()
    })
    .await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await; // lobby
    alice.join("one", None).await;
    let id = Uuid::now_v7();
    alice
        .send_req(Request::with_id(
            id,
            ClientMsg::Join {
                key: None,
                room: "two".into(),
                since: None,
            },
        ))
        .await;
    assert_eq!(alice.expect_error(ErrorCode::TooManyRooms).await, Some(id));
    // Joining a room again is not a new room.
    alice.join("one", None).await;

    let mut bob = Client::login(addr, "bob").await;
    bob.join("two", None).await; // lobby, one, two: the server's 3 rooms, all in use
    let mut carol = Client::login(addr, "carol").await;
    carol
        .send(ClientMsg::Join {
            key: None,
            room: "three".into(),
            since: None,
        })
        .await;
    carol.expect_error(ErrorCode::TooManyRooms).await;
    // Once a room is empty it makes way for a new one.
    bob.send(ClientMsg::Part {
        room: "two".into(),
        reason: None,
    })
    .await;
    bob.recv_parted("two", "bob").await;
    carol.join("three", None).await;
    assert_pair_chats(&mut alice, &mut bob).await;
    srv.shutdown().await;
}

/// xorshift64: deterministic garbage without a dependency.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn thirty_garbage_senders_in_both_modes_do_not_disturb_a_chatting_pair() {
    let srv = spawn_server(Config {
        max_clients_per_ip: 1000,
        ..cfg()
    })
    .await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Line::login_seen_by(addr, "bob", &mut alice).await;

    let mut senders = JoinSet::new();
    for i in 0..30u64 {
        senders.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut bytes = garbage(i + 1, 64 * 1024);
            // Half framed (first byte 0x00, then random prefixes up to 4 GiB), half line.
            bytes[0] = if i % 2 == 0 { 0 } else { bytes[0].max(1) };
            for chunk in bytes.chunks(4096) {
                // The server may close on us (frame_too_large, bad_requests): expected.
                if stream.write_all(chunk).await.is_err() {
                    break;
                }
            }
        });
    }
    for i in 0..20 {
        let text = format!("through the noise {i}");
        alice.say("lobby", &text).await;
        bob.read_until("alice's message", |l| l == format!("<alice> {text}"))
            .await;
        bob.send_line(&format!("and back {i}")).await;
        alice.recv_message("lobby", &format!("and back {i}")).await;
        // Stay under the rate limit's burst.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    // Still serving newcomers.
    let mut carol = Client::login(addr, "carol").await;
    carol.say("lobby", "hello after the storm").await;
    alice.recv_message("lobby", "hello after the storm").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn deep_or_huge_json_truncated_frames_and_nul_bytes_get_their_documented_answers() {
    let srv = spawn_server(cfg()).await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;

    // 30,000 levels of nesting in a frame under the limit: bad_request, not a stack overflow.
    let mut deep = Client::login(addr, "deep").await;
    deep.send_payload("[".repeat(30_000).as_bytes()).await;
    deep.expect_error(ErrorCode::BadRequest).await;
    let nested = format!(
        r#"{{"type":"say","room":"lobby","text":{}1{}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    deep.send_payload(nested.as_bytes()).await;
    deep.expect_error(ErrorCode::BadRequest).await;
    // A huge but valid frame: text over the limit is text_invalid.
    let huge = format!(
        r#"{{"type":"say","room":"lobby","text":"{}"}}"#,
        "y".repeat(60_000)
    );
    deep.send_payload(huge.as_bytes()).await;
    deep.expect_error(ErrorCode::TextInvalid).await;
    deep.roundtrip().await;

    // A frame cut short by a vanishing client costs nothing.
    let mut cut = TcpStream::connect(addr).await.unwrap();
    let mut half = frame(br#"{"type":"hello","nick":"cut"}"#);
    half.truncate(12);
    cut.write_all(&half).await.unwrap();
    drop(cut);

    // NUL bytes in line mode are stripped like any control character.
    let mut nul = Line::login_seen_by(addr, "nul", &mut alice).await;
    nul.send_bytes(b"a\0b\0c\n").await;
    alice.recv_message("lobby", "abc").await;

    assert_pair_chats(&mut alice, &mut bob).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn half_open_connections_are_closed_at_the_handshake_timeout() {
    let srv = spawn_server(Config {
        handshake_timeout: Duration::from_millis(800),
        max_clients_per_ip: 1000,
        ..cfg()
    })
    .await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    let mut stalled = Vec::new();
    for i in 0..150 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            0 => s
                .write_all(&frame(b"{\"type\":\"hello\"")[..10])
                .await
                .unwrap(), // half a frame
            1 => s.write_all(b"half a ni").await.unwrap(), // half a nick line
            _ => {}                                        // nothing at all
        }
        stalled.push(s);
    }
    assert_pair_chats(&mut alice, &mut bob).await;
    let deadline = Instant::now() + WAIT;
    for mut s in stalled {
        let mut buf = [0u8; 4096];
        loop {
            use tokio::io::AsyncReadExt;
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("a half-open connection outlived the handshake timeout")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
        }
    }
    assert_pair_chats(&mut alice, &mut bob).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_while_two_hundred_clients_chat_says_goodbye_to_each() {
    let srv = spawn_server(Config {
        max_clients_per_ip: 1000,
        ..cfg()
    })
    .await;
    let addr = srv.addr;
    // Everyone logs in first; then all chat at once and the server stops under that load.
    let mut framed = Vec::new();
    let mut lines = Vec::new();
    for i in 0..100 {
        framed.push(Client::login(addr, &format!("f{i}")).await);
        lines.push(Line::login(addr, &format!("l{i}")).await);
    }
    let mut chatters = JoinSet::new();
    for (i, mut c) in framed.into_iter().enumerate() {
        chatters.spawn(async move {
            for _ in 0..5 {
                c.send_req(say_req(Uuid::now_v7(), "lobby", &format!("hi from f{i}")))
                    .await;
            }
            loop {
                match c.next(WAIT).await {
                    Next::Item(ServerMsg::Bye { reason, .. }) => {
                        assert_eq!(reason, ByeReason::Shutdown);
                        assert!(matches!(c.next(WAIT).await, Next::Eof));
                        return;
                    }
                    Next::Item(_) => {}
                    other => panic!("f{i} before bye: {other:?}"),
                }
            }
        });
    }
    for (i, mut l) in lines.into_iter().enumerate() {
        chatters.spawn(async move {
            for _ in 0..5 {
                l.send_line(&format!("hello from l{i}")).await;
            }
            let lines = l.expect_eof().await;
            assert!(
                lines.last().is_some_and(|l| l.contains("shutting down")),
                "l{i}'s last lines: {:?}",
                &lines[lines.len().saturating_sub(3)..]
            );
        });
    }
    // Let the chatter get going, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    srv.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    while let Some(done) = chatters.join_next().await {
        done.unwrap();
    }
}
