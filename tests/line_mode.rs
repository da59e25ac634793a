//! Line mode: greeting, nick prompt, commands, output formats, and the byte-level rules
//! (CRLF, telnet negotiation, invalid UTF-8, over-long lines, control characters).

use std::time::Duration;

use chat_shared::{ClientMsg, ServerMsg};
use tokio::time::{Instant, timeout};

use crate::common::{Client, Line, QUIET, SNIFF, cfg, server, spawn_server};

/// A framed `bob` in `lobby` and a line `carol` that bob has seen join.
async fn bob_and_carol(addr: std::net::SocketAddr) -> (Client, Line) {
    let mut bob = Client::login(addr, "bob").await;
    let carol = Line::login_seen_by(addr, "carol", &mut bob).await;
    (bob, carol)
}

#[tokio::test]
async fn silent_client_is_greeted_with_a_nick_prompt_after_the_sniff_window() {
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let start = Instant::now();
    let mut nc = Line::connect(srv.addr).await;
    let greeting = nc.read_text(SNIFF + Duration::from_secs(1)).await;
    let elapsed = start.elapsed();
    assert!(
        !greeting.trim().is_empty(),
        "no greeting within the sniff window + 1 s"
    );
    assert!(
        greeting.to_lowercase().contains("nick"),
        "the greeting asks for a nick: {greeting:?}"
    );
    assert!(
        elapsed >= SNIFF - Duration::from_millis(10),
        "greeted after {elapsed:?}, before the sniff window of {SNIFF:?} passed"
    );
    nc.send_line("carol").await;
    bob.recv_joined("lobby", "carol").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn default_sniff_window_is_300_ms() {
    let srv = spawn_server(chat_server::Config::default()).await;
    let start = Instant::now();
    let mut nc = Line::connect(srv.addr).await;
    let greeting = nc.read_text(Duration::from_secs(2)).await;
    let elapsed = start.elapsed();
    assert!(!greeting.trim().is_empty(), "no greeting within 2 s");
    assert!(
        elapsed >= Duration::from_millis(280),
        "greeted after {elapsed:?}: before the default 300 ms window"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn client_typing_its_nick_at_once_is_registered_before_the_window_ends() {
    // A long window: registration must not wait for it once a byte has arrived.
    let srv = spawn_server(chat_server::Config {
        sniff: Duration::from_secs(3),
        ..cfg()
    })
    .await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Line::connect(srv.addr).await;
    carol.send_line("carol").await;
    timeout(Duration::from_secs(1), bob.recv_joined("lobby", "carol"))
        .await
        .expect("a line client that types at once waited for the sniff window");
    carol.send_line("quick").await;
    bob.recv_message("lobby", "quick").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_nick_gets_an_error_line_and_the_server_asks_again() {
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Line::connect(srv.addr).await;
    for bad in ["bad nick", "no!", &"x".repeat(33)] {
        carol.send_line(bad).await;
        carol.expect_error_line().await;
    }
    carol.send_line("  carol  ").await; // surrounding whitespace is trimmed
    bob.recv_joined("lobby", "carol").await;
    carol.send_line("chatting now").await;
    assert_eq!(
        bob.recv_message("lobby", "chatting now").await.from,
        "carol"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn taken_nick_regardless_of_case_gets_an_error_line_and_the_server_asks_again() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "Alice").await;
    let mut l = Line::connect(srv.addr).await;
    for taken in ["alice", "ALICE", "Alice"] {
        l.send_line(taken).await;
        let err = l.expect_error_line().await;
        assert!(err.len() > 2, "the error line says why: {err:?}");
    }
    l.send_line("alice2").await;
    alice.recv_joined("lobby", "alice2").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn join_makes_the_room_current_and_part_returns_to_the_previous_one() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("rust", None).await;

    carol.send_line("/join rust").await;
    bob.recv_joined("rust", "carol").await;
    carol.send_line("in rust now").await;
    assert_eq!(bob.recv_any_message().await.room, "rust");

    carol.send_line("/part").await;
    bob.recv_parted("rust", "carol").await;
    carol.send_line("back in lobby").await;
    let m = bob.recv_any_message().await;
    assert_eq!(
        (m.room.as_str(), m.text.as_str()),
        ("lobby", "back in lobby")
    );

    // `/part ROOM` names the room; with no room left, a message asks to /join.
    carol.send_line("/part lobby").await;
    bob.recv_parted("lobby", "carol").await;
    carol.send_line("anyone?").await;
    let err = carol.expect_error_line().await;
    assert!(err.contains("join"), "the error asks to /join: {err:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn join_accepts_hash_and_any_case_and_uses_the_lowercase_room() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("rust", None).await;
    carol.send_line("/join #RuSt").await;
    bob.recv_joined("rust", "carol").await;
    carol.send_line("hi rust").await;
    assert_eq!(bob.recv_message("rust", "hi rust").await.from, "carol");
    srv.shutdown().await;
}

#[tokio::test]
async fn messages_in_a_joined_room_that_is_not_current_are_prefixed_with_the_room() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("rust", None).await;
    carol.send_line("/join rust").await;
    bob.recv_joined("rust", "carol").await;

    bob.say("lobby", "over in lobby").await;
    carol.expect_line("[lobby] <bob> over in lobby").await;
    bob.say("rust", "right here").await;
    carol.expect_line("<bob> right here").await;
    bob.send(ClientMsg::Say {
        room: "lobby".into(),
        text: "waves".into(),
        action: true,
    })
    .await;
    carol.expect_line("[lobby] * bob waves").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn history_on_join_uses_the_live_line_formats() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("rust", None).await;
    bob.say("rust", "said before carol came").await;
    carol.send_line("/join rust").await;
    carol.expect_line("<bob> said before carol came").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn who_and_rooms_answer_with_notice_lines() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("zed", None).await;
    carol.drain(QUIET).await;

    carol.send_line("/who zed").await;
    let line = carol
        .read_until("a notice listing bob", |l| l.contains("bob"))
        .await;
    assert!(line.starts_with("-- "), "members are a notice: {line:?}");

    carol.send_line("/rooms").await;
    let line = carol
        .read_until("a notice listing room zed", |l| l.contains("zed"))
        .await;
    assert!(
        line.starts_with("-- "),
        "the room list is a notice: {line:?}"
    );

    carol.send_line("/who").await; // the current room
    let line = carol
        .read_until("a notice listing carol and bob", |l| {
            l.contains("carol") && l.contains("bob")
        })
        .await;
    assert!(line.starts_with("-- "), "{line:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn nick_command_renames_and_refuses_a_taken_nick() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.send_line("/nick carla").await;
    let (old, new) = bob
        .recv_until("nick_changed", |m| match m {
            ServerMsg::NickChanged { old, new, .. } => Some((old.clone(), new.clone())),
            _ => None,
        })
        .await;
    assert_eq!((old.as_str(), new.as_str()), ("carol", "carla"));
    carol.send_line("as carla").await;
    assert_eq!(bob.recv_message("lobby", "as carla").await.from, "carla");

    carol.send_line("/nick BOB").await;
    carol.expect_error_line().await;
    carol.send_line("/nick bad!").await;
    carol.expect_error_line().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn help_answers_with_notice_lines_naming_the_commands() {
    let srv = server().await;
    let (_bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.drain(QUIET).await;
    carol.send_line("/help").await;
    let mut lines = carol.drain(QUIET).await;
    if lines.is_empty() {
        lines.push(carol.read_line().await);
        lines.extend(carol.drain(QUIET).await);
    }
    let all = lines.join("\n");
    for cmd in [
        "/join", "/part", "/msg", "/me", "/who", "/rooms", "/nick", "/quit",
    ] {
        assert!(all.contains(cmd), "/help does not mention {cmd}: {all}");
    }
    assert!(
        lines.iter().all(|l| l.starts_with("-- ")),
        "help is notices: {lines:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn quit_command_closes_the_connection_and_others_see_parted() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.send_line("/quit see you").await;
    let reason = bob.recv_parted("lobby", "carol").await;
    assert_eq!(reason.as_deref(), Some("see you"));
    carol.expect_eof().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_command_gets_an_error_line_and_the_connection_stays() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.send_line("/frobnicate now").await;
    carol.expect_error_line().await;
    carol.send_line("after the typo").await;
    bob.recv_message("lobby", "after the typo").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn double_slash_sends_the_text_with_one_slash_literally() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    let mut dave = Line::login_seen_by(srv.addr, "dave", &mut bob).await;
    carol.send_line("//shrug").await;
    assert_eq!(bob.recv_any_message().await.text, "/shrug");
    dave.expect_line("<carol> /shrug").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn crlf_line_endings_work_for_nick_commands_and_text() {
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    bob.join("rust", None).await;
    let mut carol = Line::connect(srv.addr).await;
    carol.send_bytes(b"carol\r\n").await;
    bob.recv_joined("lobby", "carol").await;
    carol.send_bytes(b"hi with crlf\r\n").await;
    assert_eq!(bob.recv_any_message().await.text, "hi with crlf");
    carol.send_bytes(b"/join rust\r\nin rust\r\n").await;
    bob.recv_joined("rust", "carol").await;
    let m = bob.recv_any_message().await;
    assert_eq!((m.room.as_str(), m.text.as_str()), ("rust", "in rust"));
    srv.shutdown().await;
}

#[tokio::test]
async fn telnet_negotiation_is_removed_and_never_answered() {
    const IAC: u8 = 255;
    const WILL: u8 = 251;
    const WONT: u8 = 252;
    const DO: u8 = 253;
    const DONT: u8 = 254;
    const SB: u8 = 250;
    const SE: u8 = 240;
    const NOP: u8 = 241;
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Line::connect(srv.addr).await;

    // What a telnet client sends first, glued to the nick.
    let mut nick = vec![IAC, WILL, 1, IAC, DO, 3, IAC, WONT, 34, IAC, DONT, 31];
    nick.extend_from_slice(b"carol\r\n");
    carol.send_bytes(&nick).await;
    bob.recv_joined("lobby", "carol").await;

    let mut line = b"he".to_vec();
    line.extend_from_slice(&[IAC, SB, 24, 0, b'V', b'T', IAC, SE]);
    line.extend_from_slice(b"ll");
    line.extend_from_slice(&[IAC, NOP]);
    line.extend_from_slice(b"o");
    line.extend_from_slice(&[IAC, WILL, 1]);
    line.extend_from_slice(b" world\r\n");
    carol.send_bytes(&line).await;
    assert_eq!(bob.recv_any_message().await.text, "hello world");

    // IAC IAC is one literal 0xFF byte, which is not UTF-8.
    carol.send_bytes(&[b'x', IAC, IAC, b'y', b'\n']).await;
    assert_eq!(bob.recv_any_message().await.text, "x\u{FFFD}y");

    bob.say("lobby", "sync").await;
    carol.expect_line("<bob> sync").await;
    carol.drain(QUIET).await;
    assert!(
        !carol.raw_log.contains(&IAC),
        "the server answered telnet negotiation: {:?}",
        String::from_utf8_lossy(&carol.raw_log)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_becomes_replacement_characters_and_the_connection_stays() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.send_bytes(b"caf\xc3( ok \x80end\n").await;
    let text = bob.recv_any_message().await.text;
    assert!(text.contains('\u{FFFD}'), "{text:?}");
    assert_eq!(text.replace('\u{FFFD}', ""), "caf( ok end", "{text:?}");
    carol.send_line("valid again").await;
    bob.recv_message("lobby", "valid again").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn line_over_max_line_gets_an_error_line_and_the_next_line_is_delivered() {
    let srv = server().await; // max_line = 4 KiB
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    let exact = "a".repeat(4096);
    carol.send_line(&exact).await;
    assert_eq!(bob.recv_any_message().await.text, exact, "4096 bytes fit");

    carol.send_line(&"b".repeat(4097)).await;
    carol.expect_error_line().await;
    carol.send_line(&"c".repeat(20_000)).await;
    carol.expect_error_line().await;
    carol.send_line("short one").await;
    let m = bob.recv_any_message().await;
    assert_eq!(
        m.text, "short one",
        "over-long lines must be discarded whole"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn max_line_config_is_the_limit() {
    let srv = spawn_server(chat_server::Config {
        max_line: 64,
        ..cfg()
    })
    .await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.send_line(&"z".repeat(65)).await;
    carol.expect_error_line().await;
    carol.send_line(&"y".repeat(64)).await;
    assert_eq!(bob.recv_any_message().await.text, "y".repeat(64));
    srv.shutdown().await;
}

#[tokio::test]
async fn multi_line_text_repeats_the_prefix_on_every_line() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("rust", None).await;
    carol.send_line("/join rust").await;
    bob.recv_joined("rust", "carol").await;
    carol.drain(QUIET).await;

    bob.say("rust", "one\ntwo\nthree").await;
    for want in ["<bob> one", "<bob> two", "<bob> three"] {
        assert_eq!(carol.read_line().await, want);
    }
    bob.say("lobby", "first\nsecond").await;
    for want in ["[lobby] <bob> first", "[lobby] <bob> second"] {
        assert_eq!(carol.read_line().await, want);
    }
    bob.send(ClientMsg::Dm {
        to: "carol".into(),
        text: "dm a\ndm b".into(),
    })
    .await;
    for want in ["*bob* dm a", "*bob* dm b"] {
        assert_eq!(carol.read_line().await, want);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn control_characters_from_a_line_client_are_stripped_before_others_see_them() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol
        .send_bytes("a\u{1b}[31mred\u{7} \tx\u{7f}y\u{9b}z\n".as_bytes())
        .await;
    assert_eq!(bob.recv_any_message().await.text, "a[31mred \txyz");
    srv.shutdown().await;
}

#[tokio::test]
async fn line_client_output_never_carries_control_characters_from_others() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.say("lobby", "x\u{1b}[2Jy\u{7}").await;
    carol.expect_line("<bob> x[2Jy").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn after_parting_the_current_room_the_most_recently_joined_one_left_is_current() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    bob.join("first", None).await;
    bob.join("second", None).await;
    carol.send_line("/join first").await;
    bob.recv_joined("first", "carol").await;
    carol.send_line("/join second").await;
    bob.recv_joined("second", "carol").await;
    carol.send_line("/part").await;
    bob.recv_parted("second", "carol").await;
    carol.send_line("where am i").await;
    let m = bob.recv_message_anywhere("where am i").await;
    assert_eq!(
        m.room, "first",
        "current room after /part: most recently joined of those left"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn joins_parts_and_renames_of_others_are_notice_lines() {
    let srv = server().await;
    let (mut bob, mut carol) = bob_and_carol(srv.addr).await;
    carol.drain(QUIET).await;
    let mut dave = Client::login(srv.addr, "dave").await;
    let line = carol
        .read_until("a line about dave joining", |l| l.contains("dave"))
        .await;
    assert!(line.starts_with("-- "), "a join is a notice: {line:?}");
    dave.send(ClientMsg::Nick {
        nick: "david".into(),
    })
    .await;
    let line = carol
        .read_until("a line about the rename", |l| l.contains("david"))
        .await;
    assert!(line.starts_with("-- ") && line.contains("dave"), "{line:?}");
    dave.send(ClientMsg::Part {
        room: "lobby".into(),
        reason: Some("lunch".into()),
    })
    .await;
    let line = carol
        .read_until("a line about david leaving", |l| l.contains("david"))
        .await;
    assert!(
        line.starts_with("-- ") && line.contains("lunch"),
        "{line:?}"
    );
    bob.recv_parted("lobby", "david").await;
    srv.shutdown().await;
}
