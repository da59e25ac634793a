//! The framed mode of the contract: registration, request errors, garbage, frame limits,
//! nick and text rules, ping/pong both ways, quitting.

use std::time::Duration;

use chat_shared::{ByeReason, ClientMsg, ErrorCode, Request, ServerMsg};
use serde_json::json;
use uuid::Uuid;

use crate::common::{
    Client, Line, Next, QUIET, RawFramed, SNIFF, WAIT, assert_pair_chats, cfg, say_req, server,
    spawn_server,
};

/// Two registered clients that see each other in `lobby`: the "others keep chatting" pair.
async fn pair(addr: std::net::SocketAddr) -> (Client, Client) {
    let mut a = Client::login(addr, "steady1").await;
    let b = Client::login(addr, "steady2").await;
    a.recv_joined("lobby", "steady2").await;
    (a, b)
}

#[tokio::test]
async fn hello_gets_welcome_then_lobby_joined_modes_history_members() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    c.send(ClientMsg::Hello {
        nick: "alice".into(),
        version: Some(1),
        client: Some("tests".into()),
        password: None,
    })
    .await;
    match c.recv().await {
        ServerMsg::Welcome {
            nick,
            session,
            server,
            ..
        } => {
            assert_eq!(nick, "alice");
            assert!(!session.is_nil());
            assert!(!server.trim().is_empty(), "server names itself");
        }
        other => panic!("expected welcome first, got {other:?}"),
    }
    match c.recv().await {
        ServerMsg::Joined { room, nick, ts, .. } => {
            assert_eq!((room.as_str(), nick.as_str()), ("lobby", "alice"));
            assert!(ts > 1_600_000_000_000, "ts in Unix ms: {ts}");
        }
        other => panic!("expected joined lobby second, got {other:?}"),
    }
    match c.recv().await {
        ServerMsg::Mode {
            room, change, seq, ..
        } => {
            assert_eq!(room, "lobby");
            assert_eq!(seq, None, "the current modes, not a change");
            assert_eq!(
                change.topic_locked,
                Some(true),
                "new rooms are topic-locked"
            );
            assert_eq!(change.key, Some(None));
        }
        other => panic!("expected lobby's modes third, got {other:?}"),
    }
    match c.recv().await {
        ServerMsg::History {
            room,
            messages,
            truncated,
        } => {
            assert_eq!(room, "lobby");
            assert!(messages.is_empty(), "a fresh server has no lobby history");
            assert!(!truncated);
        }
        other => panic!("expected history fourth, got {other:?}"),
    }
    match c.recv().await {
        ServerMsg::Members { room, nicks, .. } => {
            assert_eq!(room, "lobby");
            assert_eq!(nicks, vec!["alice".to_string()]);
        }
        other => panic!("expected members fourth, got {other:?}"),
    }
    c.expect_silence(QUIET).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn hello_without_version_field_is_version_1() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    c.send_payload(br#"{"type":"hello","nick":"plain"}"#).await;
    assert!(
        matches!(c.recv().await, ServerMsg::Welcome { ref nick, .. } if nick == "plain"),
        "hello with only a nick is enough"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn requests_before_hello_get_not_registered_and_hello_still_works() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    let id = Uuid::new_v4();
    c.send_req(say_req(id, "lobby", "too early")).await;
    assert_eq!(c.expect_error(ErrorCode::NotRegistered).await, Some(id));
    for msg in [
        ClientMsg::Join {
            key: None,
            room: "rust".into(),
            since: None,
        },
        ClientMsg::Who {
            room: "lobby".into(),
        },
        ClientMsg::Rooms {},
        ClientMsg::Nick { nick: "x".into() },
        ClientMsg::Dm {
            to: "x".into(),
            text: "y".into(),
        },
    ] {
        let kind = msg.kind();
        c.send(msg).await;
        match c.recv().await {
            ServerMsg::Error {
                code: ErrorCode::NotRegistered,
                ..
            } => {}
            other => panic!("{kind} before hello: expected not_registered, got {other:?}"),
        }
    }
    assert!(matches!(c.hello("late").await, ServerMsg::Welcome { .. }));
    srv.shutdown().await;
}

#[tokio::test]
async fn ping_before_hello_gets_pong_with_the_token_verbatim() {
    let srv = server().await;
    let mut raw = RawFramed::connect(srv.addr).await;
    let token = r#"{"z":1,"a":[1,2.5,"x",null,true],"m":{"ü":"字"}}"#;
    raw.send_payload(format!(r#"{{"type":"ping","token":{token}}}"#).as_bytes())
        .await;
    let text = raw.recv_text().await;
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["type"], "pong", "{text}");
    assert!(
        text.contains(&format!(r#""token":{token}"#)),
        "token not verbatim (key order, numbers, nesting): {text}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn quit_before_hello_gets_bye_quit_and_close() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    c.send(ClientMsg::Quit { reason: None }).await;
    match c.recv().await {
        ServerMsg::Bye {
            reason: ByeReason::Quit,
            ..
        } => {}
        other => panic!("expected bye{{quit}}, got {other:?}"),
    }
    c.expect_eof().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn hello_with_version_2_is_unsupported_version_and_another_hello_may_follow() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    c.send(ClientMsg::Hello {
        nick: "alice".into(),
        version: Some(2),
        client: None,
        password: None,
    })
    .await;
    c.expect_error(ErrorCode::UnsupportedVersion).await;
    assert!(matches!(c.hello("alice").await, ServerMsg::Welcome { .. }));
    srv.shutdown().await;
}

#[tokio::test]
async fn hello_after_welcome_is_bad_request_with_ref() {
    let srv = server().await;
    let mut c = Client::login(srv.addr, "alice").await;
    let id = Uuid::new_v4();
    c.send_req(Request::with_id(
        id,
        ClientMsg::Hello {
            nick: "other".into(),
            version: None,
            client: None,
            password: None,
        },
    ))
    .await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await, Some(id));
    c.roundtrip().await;
    c.say("lobby", "still alice").await;
    assert_eq!(c.nick, "alice");
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_usable() {
    let srv = server().await;
    let (mut a, mut b) = pair(srv.addr).await;
    let mut c = Client::login(srv.addr, "sloppy").await;
    let id = Uuid::new_v4();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"type\":\"say\",".to_vec()),
        ("not JSON at all", b"hello there".to_vec()),
        ("JSON but not an object", b"[1,2,3]".to_vec()),
        ("no type", br#"{"room":"lobby","text":"x"}"#.to_vec()),
        ("unknown type", br#"{"type":"shout","text":"x"}"#.to_vec()),
        (
            "missing field",
            br#"{"type":"say","room":"lobby"}"#.to_vec(),
        ),
        (
            "wrongly typed field",
            br#"{"type":"say","room":5,"text":"x"}"#.to_vec(),
        ),
        (
            "wrongly typed limit",
            br#"{"type":"history","room":"lobby","limit":"ten"}"#.to_vec(),
        ),
        ("pong without token", br#"{"type":"pong"}"#.to_vec()),
        (
            "non-UUID id",
            br#"{"type":"say","room":"lobby","text":"x","id":"not-a-uuid"}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"\xff\xfe\"}".to_vec(),
        ),
        ("empty payload", Vec::new()),
    ];
    for (what, payload) in cases {
        c.send_payload(&payload).await;
        match c.recv().await {
            ServerMsg::Error {
                code: ErrorCode::BadRequest,
                ..
            } => {}
            other => panic!("{what}: expected error{{bad_request}}, got {other:?}"),
        }
        c.roundtrip().await;
    }
    // A valid message after all that is still delivered, and nothing bad leaked to others.
    c.send_req(say_req(id, "lobby", "recovered")).await;
    c.await_ack(id).await;
    let m = a.recv_message("lobby", "recovered").await;
    assert_eq!(m.from, "sloppy");
    assert_pair_chats(&mut a, &mut b).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn error_answering_a_request_with_an_id_carries_ref() {
    let srv = server().await;
    let mut c = Client::login(srv.addr, "alice").await;

    let id = Uuid::new_v4();
    c.send_req(say_req(id, "rust", "not joined")).await;
    assert_eq!(c.expect_error(ErrorCode::NotInRoom).await, Some(id));

    let id = Uuid::new_v4();
    c.send_req(Request::with_id(
        id,
        ClientMsg::Join {
            key: None,
            room: "no spaces".into(),
            since: None,
        },
    ))
    .await;
    assert_eq!(c.expect_error(ErrorCode::RoomInvalid).await, Some(id));

    let id = Uuid::new_v4();
    c.send_req(Request::with_id(id, ClientMsg::Nick { nick: "a b".into() }))
        .await;
    assert_eq!(c.expect_error(ErrorCode::NickInvalid).await, Some(id));

    // Without an id there is no ref.
    c.send(ClientMsg::Join {
        key: None,
        room: "no spaces".into(),
        since: None,
    })
    .await;
    assert_eq!(c.expect_error(ErrorCode::RoomInvalid).await, None);
    srv.shutdown().await;
}

#[tokio::test]
async fn sixteen_bad_frames_in_a_row_get_bye_bad_requests_and_close() {
    let srv = server().await;
    let (mut a, mut b) = pair(srv.addr).await;
    let mut c = Client::login(srv.addr, "garbage").await;

    // 15 in a row are tolerated, and a good request ends the run: twice.
    for round in 0..2 {
        for i in 0..15 {
            c.send_payload(b"{nope").await;
            match c.recv().await {
                ServerMsg::Error {
                    code: ErrorCode::BadRequest,
                    ..
                } => {}
                other => panic!("round {round}, bad frame {i}: got {other:?}"),
            }
        }
        c.roundtrip().await;
    }
    // The 16th in a row ends the connection.
    for _ in 0..16 {
        c.send_payload(b"{nope").await;
    }
    let seen = c
        .recv_until_all("bye{bad_requests}", |m| matches!(m, ServerMsg::Bye { .. }))
        .await;
    let errors = seen
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::BadRequest,
                    ..
                }
            )
        })
        .count();
    assert!(errors >= 15, "each of the first 15 is answered: {seen:?}");
    assert!(
        matches!(
            seen.last(),
            Some(ServerMsg::Bye {
                reason: ByeReason::BadRequests,
                ..
            })
        ),
        "{seen:?}"
    );
    c.expect_eof().await;
    a.recv_parted("lobby", "garbage").await;
    assert_pair_chats(&mut a, &mut b).await;
    srv.shutdown().await;
}

/// Sends `prefix` as a length prefix and checks error, bye and close, while a pair chats on.
async fn oversized_prefix_case(prefix: u32, then: &[u8]) {
    let srv = server().await;
    let (mut a, mut b) = pair(srv.addr).await;
    let mut c = Client::login(srv.addr, "bigmouth").await;
    a.recv_joined("lobby", "bigmouth").await;

    let mut bytes = prefix.to_be_bytes().to_vec();
    bytes.extend_from_slice(then);
    c.send_bytes(&bytes).await;
    c.expect_error(ErrorCode::FrameTooLarge).await;
    match c.recv().await {
        ServerMsg::Bye {
            reason: ByeReason::FrameTooLarge,
            ..
        } => {}
        other => panic!("expected bye{{frame_too_large}}, got {other:?}"),
    }
    c.expect_eof().await;
    a.recv_parted("lobby", "bigmouth").await;
    assert_pair_chats(&mut a, &mut b).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_length_prefix_gets_frame_too_large_and_close() {
    oversized_prefix_case(0xFFFF_FFFF, b"{\"type\":").await;
}

#[tokio::test]
async fn length_prefix_one_over_64_kib_gets_frame_too_large_and_close() {
    oversized_prefix_case(64 * 1024 + 1, b"{\"type\":\"rooms\"}").await;
}

#[tokio::test]
async fn frame_of_exactly_max_frame_bytes_is_accepted() {
    let srv = server().await;
    let mut c = Client::login(srv.addr, "alice").await;
    let mut payload = br#"{"type":"rooms"}"#.to_vec();
    payload.resize(64 * 1024, b' ');
    c.send_payload(&payload).await;
    let got = c
        .recv_until("room_list", |m| match m {
            ServerMsg::RoomList { rooms, .. } => Some(rooms.clone()),
            ServerMsg::Error { .. } | ServerMsg::Bye { .. } => {
                panic!("a 64 KiB frame was refused: {m:?}")
            }
            _ => None,
        })
        .await;
    assert!(got.iter().any(|r| r.name == "lobby"));
    srv.shutdown().await;
}

#[tokio::test]
async fn max_frame_config_is_the_limit() {
    let srv = spawn_server(chat_server::Config {
        max_frame: 1024,
        ..cfg()
    })
    .await;
    let mut c = Client::login(srv.addr, "alice").await;
    let mut payload = br#"{"type":"rooms"}"#.to_vec();
    payload.resize(1025, b' ');
    c.send_payload(&payload).await;
    c.expect_error(ErrorCode::FrameTooLarge).await;
    c.expect_bye_then_eof(ByeReason::FrameTooLarge).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn nick_taken_regardless_of_case_and_another_hello_may_follow() {
    let srv = server().await;
    let _alice = Client::login(srv.addr, "Alice").await;
    let mut c = Client::connect(srv.addr).await;
    for nick in ["Alice", "alice", "ALICE"] {
        match c.hello(nick).await {
            ServerMsg::Error {
                code: ErrorCode::NickTaken,
                ..
            } => {}
            other => panic!("hello {nick:?} while Alice is online: got {other:?}"),
        }
    }
    match c.hello("alice2").await {
        ServerMsg::Welcome { nick, .. } => assert_eq!(nick, "alice2"),
        other => panic!("expected welcome after the refused hellos, got {other:?}"),
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_nicks_get_nick_invalid() {
    let srv = server().await;
    let mut c = Client::connect(srv.addr).await;
    for bad in [
        "",
        "a b",
        "bob!",
        "😀",
        "a\u{1b}b",
        &"a".repeat(33),
        &"字".repeat(33),
    ] {
        match c.hello(bad).await {
            ServerMsg::Error {
                code: ErrorCode::NickInvalid,
                ..
            } => {}
            other => panic!("hello {bad:?}: expected nick_invalid, got {other:?}"),
        }
    }
    // 32 characters (96 bytes) is fine.
    let long_ok = "字".repeat(32);
    assert!(matches!(c.hello(&long_ok).await, ServerMsg::Welcome { .. }));
    srv.shutdown().await;
}

#[tokio::test]
async fn cjk_and_dash_underscore_nicks_are_accepted() {
    let srv = server().await;
    let mut ming = Client::login(srv.addr, "小明").await;
    assert_eq!(ming.nick, "小明");
    let mut x = Client::login(srv.addr, "x-y_2").await;
    ming.recv_joined("lobby", "x-y_2").await;
    x.say("lobby", "你好 👋").await;
    let m = ming.recv_message("lobby", "你好 👋").await;
    assert_eq!(m.from, "x-y_2");
    srv.shutdown().await;
}

#[tokio::test]
async fn rename_with_nick_notifies_self_and_room_mates() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut outsider = Client::login(srv.addr, "outsider").await;
    outsider
        .send(ClientMsg::Part {
            room: "lobby".into(),
            reason: None,
        })
        .await;
    outsider.recv_parted("lobby", "outsider").await;
    alice.recv_parted("lobby", "outsider").await;

    alice
        .send(ClientMsg::Nick {
            nick: "alicia".into(),
        })
        .await;
    for c in [&mut alice, &mut bob] {
        let (old, new) = c
            .recv_until("nick_changed", |m| match m {
                ServerMsg::NickChanged { old, new, .. } => Some((old.clone(), new.clone())),
                _ => None,
            })
            .await;
        assert_eq!((old.as_str(), new.as_str()), ("alice", "alicia"));
    }
    outsider
        .expect_none(QUIET, "nick_changed for someone sharing no room", |m| {
            matches!(m, ServerMsg::NickChanged { .. })
        })
        .await;
    // Messages carry the new nick, and the old one is free again.
    alice.say("lobby", "new name").await;
    assert_eq!(bob.recv_message("lobby", "new name").await.from, "alicia");
    let _again = Client::login(srv.addr, "alice").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn rename_to_a_taken_or_invalid_nick_is_refused() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let _bob = Client::login(srv.addr, "bob").await;
    alice.send(ClientMsg::Nick { nick: "BOB".into() }).await;
    alice.recv_error(ErrorCode::NickTaken).await;
    alice
        .send(ClientMsg::Nick {
            nick: "b o b".into(),
        })
        .await;
    alice.recv_error(ErrorCode::NickInvalid).await;
    alice
        .expect_none(QUIET, "nick_changed", |m| {
            matches!(m, ServerMsg::NickChanged { .. })
        })
        .await;
    assert_eq!(alice.say("lobby", "same").await.from, "alice");
    srv.shutdown().await;
}

#[tokio::test]
async fn empty_or_too_long_text_is_text_invalid_never_truncated() {
    let srv = spawn_server(chat_server::Config {
        max_text: 100,
        ..cfg()
    })
    .await;
    let (mut a, mut b) = pair(srv.addr).await;
    let long_cjk = "字".repeat(34); // 102 bytes
    for bad in ["", "   ", "\u{1b}\u{7}", &"x".repeat(101), &long_cjk] {
        let id = Uuid::new_v4();
        a.send_req(say_req(id, "lobby", bad)).await;
        match a.recv().await {
            ServerMsg::Error {
                code: ErrorCode::TextInvalid,
                ref_id,
                ..
            } => assert_eq!(ref_id, Some(id)),
            other => panic!("say {bad:?}: expected text_invalid, got {other:?}"),
        }
    }
    // DMs follow the same rules (fewer cases: the rate limit may count refused messages).
    for bad in ["", &"x".repeat(101)] {
        a.send(ClientMsg::Dm {
            to: "steady2".into(),
            text: bad.to_string(),
        })
        .await;
        a.expect_error(ErrorCode::TextInvalid).await;
    }
    // Exactly the limit is fine, and the limit counts after stripping.
    let exact = "x".repeat(100);
    a.say("lobby", &exact).await;
    assert_eq!(b.recv_any_message().await.text, exact);
    let with_escapes = format!("\u{1b}\u{1b}{}", "y".repeat(100));
    let m = a.say("lobby", &with_escapes).await;
    assert_eq!(m.text, "y".repeat(100));
    assert_eq!(b.recv_any_message().await.text, "y".repeat(100));
    srv.shutdown().await;
}

#[tokio::test]
async fn control_characters_are_stripped_but_newline_and_tab_kept() {
    let srv = server().await;
    let (mut a, mut b) = pair(srv.addr).await;
    let raw = "red \u{1b}[31mtext\u{7} bell\r\n\tnext\u{7f}\u{9b}31m end";
    let want = "red [31mtext bell\n\tnext31m end";
    let id = Uuid::new_v4();
    a.send_req(say_req(id, "lobby", raw)).await;
    assert_eq!(a.await_ack(id).await.text, want, "the sender's copy");
    assert_eq!(b.recv_any_message().await.text, want, "what others receive");

    a.send(ClientMsg::Dm {
        to: "steady2".into(),
        text: "dm \u{1b}]0;title\u{7}x".into(),
    })
    .await;
    assert_eq!(b.recv_dm().await.text, "dm ]0;titlex");
    srv.shutdown().await;
}

#[tokio::test]
async fn say_to_a_room_not_joined_is_not_in_room() {
    let srv = server().await;
    let mut a = Client::login(srv.addr, "alice").await;
    let mut b = Client::login(srv.addr, "bob").await;
    b.join("rust", None).await;
    a.send_req(say_req(Uuid::new_v4(), "rust", "let me in"))
        .await;
    a.recv_error(ErrorCode::NotInRoom).await;
    a.send_req(say_req(Uuid::new_v4(), "nowhere", "hello?"))
        .await;
    a.recv_error(ErrorCode::NotInRoom).await;
    b.expect_none(QUIET, "a message from a non-member", |m| {
        matches!(m, ServerMsg::Message(_))
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_room_names_get_room_invalid() {
    let srv = server().await;
    let mut a = Client::login(srv.addr, "alice").await;
    for bad in ["", "#", "two words", "a.b", "##x", &"r".repeat(33)] {
        a.send(ClientMsg::Join {
            key: None,
            room: bad.into(),
            since: None,
        })
        .await;
        match a.recv().await {
            ServerMsg::Error {
                code: ErrorCode::RoomInvalid,
                ..
            } => {}
            other => panic!("join {bad:?}: expected room_invalid, got {other:?}"),
        }
    }
    a.send(ClientMsg::Who { room: "a.b".into() }).await;
    a.expect_error(ErrorCode::RoomInvalid).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn ping_after_welcome_gets_pong_with_the_same_token() {
    let srv = server().await;
    let mut c = Client::login(srv.addr, "alice").await;
    for token in [
        json!("abc"),
        json!(42),
        json!(-1.5),
        json!([1, "two", {"three": 3}]),
        json!({"z": 1, "a": {"nested": [true, false]}}),
    ] {
        c.send(ClientMsg::Ping {
            token: Some(token.clone()),
        })
        .await;
        match c.recv().await {
            ServerMsg::Pong { token: Some(got) } => {
                assert_eq!(got, token);
                assert_eq!(got.to_string(), token.to_string(), "key order kept");
            }
            other => panic!("expected pong {token}, got {other:?}"),
        }
    }
    c.send(ClientMsg::Ping { token: None }).await;
    assert!(matches!(c.recv().await, ServerMsg::Pong { token: None }));
    srv.shutdown().await;
}

#[tokio::test]
async fn quit_gets_bye_quit_then_eof_and_room_mates_get_parted_with_the_reason() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    bob.join("rust", None).await;
    alice.join("rust", None).await;

    bob.send(ClientMsg::Quit {
        reason: Some("gotta go".into()),
    })
    .await;
    bob.expect_bye_then_eof(ByeReason::Quit).await;
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let (room, reason) = alice
            .recv_until("parted bob", |m| match m {
                ServerMsg::Parted {
                    room, nick, reason, ..
                } if nick == "bob" => Some((room.clone(), reason.clone())),
                _ => None,
            })
            .await;
        assert_eq!(reason.as_deref(), Some("gotta go"), "in {room}");
        rooms.push(room);
    }
    rooms.sort();
    assert_eq!(rooms, ["lobby", "rust"], "parted in every room bob was in");
    // The nick is free again.
    let _bob2 = Client::login(srv.addr, "bob").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn dropped_socket_makes_room_mates_get_parted_with_reason_quit() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    drop(bob);
    let reason = alice.recv_parted("lobby", "bob").await;
    assert_eq!(reason.as_deref(), Some("quit"));
    srv.shutdown().await;
}

fn ping_cfg() -> chat_server::Config {
    chat_server::Config {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..cfg()
    }
}

#[tokio::test]
async fn idle_framed_client_is_pinged_and_stays_when_it_answers() {
    let srv = spawn_server(ping_cfg()).await;
    let mut alice = Client::login(srv.addr, "alice").await; // auto-pong
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    bob.auto_pong = false;
    // alice keeps reading (and answering pings) while bob does his rounds.
    let alice_task = tokio::spawn(async move {
        alice.recv_message("lobby", "still here").await;
        alice
    });

    let mut tokens = Vec::new();
    for _ in 0..4 {
        let token = bob
            .recv_until("a server ping", |m| match m {
                ServerMsg::Ping { token } => Some(token.clone()),
                _ => None,
            })
            .await;
        bob.send(ClientMsg::Pong {
            token: token.clone(),
        })
        .await;
        tokens.push(token);
    }
    // Four rounds take well over interval + timeout; bob is still there.
    bob.auto_pong = true;
    bob.say("lobby", "still here").await;
    let _alice = alice_task.await.expect("alice saw bob's message");
    srv.shutdown().await;
}

#[tokio::test]
async fn unanswered_ping_closes_the_client_and_room_mates_get_parted_timeout() {
    let srv = spawn_server(ping_cfg()).await;
    let mut alice = Client::login(srv.addr, "alice").await; // auto-pong keeps alice alive
    let mut mute = Client::login(srv.addr, "mute").await;
    alice.recv_joined("lobby", "mute").await;
    mute.auto_pong = false;

    let reason = alice.recv_parted("lobby", "mute").await;
    assert_eq!(reason.as_deref(), Some("timeout"));

    // What mute had been sent: a ping, then bye{timeout}, then the close.
    let mut seen = Vec::new();
    loop {
        match mute.next(WAIT).await {
            Next::Item(m) => seen.push(m),
            Next::Eof => break,
            Next::Timeout => panic!("mute was not closed; got {seen:?}"),
        }
    }
    assert!(
        seen.iter().any(|m| matches!(m, ServerMsg::Ping { .. })),
        "pinged first: {seen:?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(ServerMsg::Bye {
                reason: ByeReason::Timeout,
                ..
            })
        ),
        "bye{{timeout}} last: {seen:?}"
    );
    alice.say("lobby", "alive").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn framed_hello_after_the_line_greeting_still_gets_welcome() {
    let srv = server().await;
    let mut greeted = Line::connect(srv.addr).await;
    let greeting = greeted.read_text(SNIFF + Duration::from_secs(2)).await;
    assert!(!greeting.is_empty(), "a silent client is greeted");
    assert!(!greeting.contains('\0'), "the greeting is text without NUL");
    let stream = greeted.into_stream();
    let mut c = Client::from_stream(stream);
    match c.hello("slowpoke").await {
        ServerMsg::Welcome { nick, .. } => assert_eq!(nick, "slowpoke"),
        other => panic!("expected welcome after the greeting, got {other:?}"),
    }
    c.recv_until("lobby members", |m| {
        matches!(m, ServerMsg::Members { room, .. } if room == "lobby").then_some(())
    })
    .await;
    c.say("lobby", "framed after all").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn framed_client_is_never_greeted_once_its_first_byte_arrived() {
    let srv = server().await;
    let mut raw = RawFramed::connect(srv.addr).await;
    let hello = crate::common::frame(br#"{"type":"hello","nick":"slowtyper"}"#);
    raw.send_bytes(&hello[..1]).await; // 0x00: framed
    tokio::time::sleep(SNIFF * 3).await; // well past the sniff window
    raw.send_bytes(&hello[1..]).await;
    // FrameCodec does not skip text: any greeting would break this first frame.
    let text = raw.recv_text().await;
    assert!(text.contains(r#""type":"welcome""#), "{text}");
    srv.shutdown().await;
}
