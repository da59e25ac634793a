//! Issue 11, items 4 and 5 over real sockets: names nobody can fake, and text that cannot
//! rearrange a screen.
//!
//! - A look-alike of an online nick (fullwidth, all-Cyrillic, all-Greek) is refused as
//!   `nick_taken`, naming whom it imitates; a name mixing Latin with Cyrillic or Greek is
//!   `nick_invalid` with its reason; Chinese and Japanese nicks (also mixed with Latin) are
//!   accepted. Line mode's nick prompt answers the same way.
//! - A look-alike room name leads to the room it imitates.
//! - Bidi controls and invisible characters are gone from what others receive, in both
//!   modes, while ZWJ emoji survive.

use chat_shared::{ClientMsg, ErrorCode, ServerMsg};

use crate::common::{Client, Line, server};

/// The `hello` answer for `nick` on a fresh connection.
async fn hello(addr: std::net::SocketAddr, nick: &str) -> ServerMsg {
    let mut c = Client::connect(addr).await;
    c.hello(nick).await
}

fn refused(answer: &ServerMsg, code: ErrorCode, what: &str) -> String {
    match answer {
        ServerMsg::Error {
            code: got, message, ..
        } if *got == code => message.clone(),
        other => panic!("{what}: expected error {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn look_alike_nicks_are_taken_mixed_scripts_invalid_and_cjk_welcome() {
    let srv = server().await;
    let _alice = Client::login(srv.addr, "alice").await;
    let _scope = Client::login(srv.addr, "scope").await;
    let _abo = Client::login(srv.addr, "ABO").await;

    // The same nick in other case or width.
    for same in ["ALICE", "ＡＬＩＣＥ", "Ａlice"] {
        let message = refused(&hello(srv.addr, same).await, ErrorCode::NickTaken, same);
        assert!(message.contains("taken"), "{same}: {message}");
    }
    // Other scripts that draw the same letters: taken, and the message says whom it imitates.
    for fake in ["ѕсоре", "ЅСОРЕ"] {
        let message = refused(&hello(srv.addr, fake).await, ErrorCode::NickTaken, fake);
        assert!(message.contains("looks like scope"), "{fake}: {message}");
    }
    let message = refused(&hello(srv.addr, "ΑΒΟ").await, ErrorCode::NickTaken, "Greek");
    assert!(message.contains("looks like ABO"), "{message}");
    // Latin with a Cyrillic а, or a Greek ο: refused whatever is online, with the reason.
    for mixed in ["\u{430}lice", "b\u{3bf}b"] {
        let message = refused(&hello(srv.addr, mixed).await, ErrorCode::NickInvalid, mixed);
        assert!(message.contains("mixes scripts"), "{mixed}: {message}");
    }
    // Chinese, Japanese, Korean, and Latin mixed with them, are fine.
    for ok in [
        "小明",
        "たなか",
        "タナカ",
        "김철수",
        "bob小明",
        "ken_たなか",
    ] {
        let mut c = Client::login(srv.addr, ok).await;
        assert_eq!(c.nick, ok);
        c.roundtrip().await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn renaming_into_a_look_alike_is_refused_and_freed_nicks_are_free() {
    let srv = server().await;
    let alice = Client::login(srv.addr, "scope").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    bob.send(ClientMsg::Nick {
        nick: "ѕсоре".into(),
    })
    .await;
    bob.expect_error(ErrorCode::NickTaken).await;
    alice.quit().await;
    // Gone: the look-alike may be used now (it is a valid single-script nick).
    let mut c = Client::connect(srv.addr).await;
    assert!(matches!(c.hello("ѕсоре").await, ServerMsg::Welcome { .. }));
    srv.shutdown().await;
}

#[tokio::test]
async fn line_mode_nick_prompt_refuses_look_alikes_and_mixed_scripts() {
    let srv = server().await;
    let _alice = Client::login(srv.addr, "alice").await;
    let mut line = Line::connect(srv.addr).await;
    line.send_line("ＡＬＩＣＥ").await;
    line.read_until("taken", |l| l.contains("taken")).await;
    line.send_line("\u{430}lice").await;
    line.read_until("mixes scripts", |l| l.contains("mixes scripts"))
        .await;
    line.send_line("carol").await;
    line.read_until("carol", |l| l.contains("carol")).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_look_alike_room_name_joins_the_room_it_imitates() {
    let srv = server().await;
    let mut a = Client::login(srv.addr, "ann").await;
    let mut b = Client::login(srv.addr, "ben").await;
    a.join("scope", None).await;
    b.send(ClientMsg::Join {
        key: None,
        room: "ѕсоре".into(),
        since: None,
    })
    .await;
    b.recv_joined("scope", "ben").await;
    a.recv_joined("scope", "ben").await;
    // Either spelling names the same room for its members.
    b.send(ClientMsg::Say {
        room: "ѕсоре".into(),
        text: "same room".into(),
        action: false,
    })
    .await;
    a.recv_message("scope", "same room").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn bidi_controls_and_invisible_characters_never_reach_other_clients() {
    let srv = server().await;
    let mut sender = Client::login(srv.addr, "mallory").await;
    let mut framed = Client::login(srv.addr, "victim").await;
    let mut line = Line::login(srv.addr, "reader").await;
    // "Trojan Source": the override would show "pay 01$ to bob" as "pay $10 ot bob"-ish.
    let evil =
        "pay \u{202E}01$\u{202C} to \u{2066}bob\u{2069}\u{200B}\u{FEFF}\u{2060} 👩\u{200D}💻";
    sender.say("lobby", evil).await;
    let got = framed.recv_any_message().await;
    assert_eq!(got.text, "pay 01$ to bob 👩\u{200D}💻");
    let shown = line.read_until("pay 01$", |l| l.contains("pay 01$")).await;
    assert!(
        !shown.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}' | '\u{FEFF}')),
        "line client got an invisible character: {shown:?}"
    );
    assert!(shown.contains("👩\u{200D}💻"), "{shown:?}");
    // Nothing but invisible characters is an empty message.
    sender
        .send(ClientMsg::Say {
            room: "lobby".into(),
            text: "\u{202E}\u{200B}".into(),
            action: false,
        })
        .await;
    sender.expect_error(ErrorCode::TextInvalid).await;
    srv.shutdown().await;
}
