//! Chat between framed and line clients: room messages, order, acknowledgements, DMs,
//! actions and idempotent resends.

use std::collections::HashSet;

use chat_shared::{ChatMessage, ClientMsg, ErrorCode, Request, ServerMsg};
use uuid::Uuid;

use crate::common::{Client, Line, QUIET, say_req, server};

#[tokio::test]
async fn framed_and_line_clients_in_lobby_see_each_others_messages() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;
    bob.recv_joined("lobby", "carol").await;

    // Framed → everyone; the sender's own copy is its acknowledgement.
    let sent = alice.say("lobby", "hello from alice").await;
    assert_eq!(sent.from, "alice");
    assert_eq!(sent.room, "lobby");
    let at_bob = bob.recv_message("lobby", "hello from alice").await;
    assert_eq!(at_bob, sent, "bob gets the same message alice got as ack");
    carol.expect_line("<alice> hello from alice").await;

    // Line → framed clients.
    carol.send_line("hello from carol").await;
    for c in [&mut alice, &mut bob] {
        let m = c.recv_message("lobby", "hello from carol").await;
        assert_eq!(m.from, "carol");
        assert!(!m.action);
        assert_eq!(m.seq, sent.seq + 1, "next seq in lobby");
    }

    // Framed → line, the other way round.
    bob.say("lobby", "bob answers").await;
    carol.expect_line("<bob> bob answers").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn line_client_does_not_see_its_own_lines_echoed() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;

    carol.send_line("my own words").await;
    alice.recv_message("lobby", "my own words").await;
    // Then a marker from someone else: everything for carol before it has arrived by then.
    alice.say("lobby", "marker").await;
    let lines = carol
        .read_until_all("alice's marker", |l| l == "<alice> marker")
        .await;
    assert!(
        !lines.iter().any(|l| l.contains("my own words")),
        "a line client's own message was echoed back to it: {lines:?}"
    );
    srv.shutdown().await;
}

/// Collects `n` lobby messages whose text starts with `prefix`.
async fn collect(c: &mut Client, prefix: &str, n: usize) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = c
            .recv_until(&format!("message {} of {n}", out.len() + 1), |m| match m {
                ServerMsg::Message(cm) if cm.text.starts_with(prefix) => Some(cm.clone()),
                _ => None,
            })
            .await;
        out.push(m);
    }
    out
}

#[tokio::test]
async fn room_messages_reach_every_member_in_the_same_seq_order() {
    const EACH: usize = 10; // the contract's burst: all sent at once, none rate limited
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Client::login(srv.addr, "carol").await;
    alice.recv_joined("lobby", "carol").await;
    let mut dave = Line::login_seen_by(srv.addr, "dave", &mut alice).await;
    bob.recv_joined("lobby", "dave").await;
    carol.recv_joined("lobby", "dave").await;

    let sender = |mut c: Client, tag: &'static str| {
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let id = Uuid::new_v4();
                ids.push(id);
                c.send_req(say_req(id, "lobby", &format!("ord {tag}{i}")))
                    .await;
            }
            let got = collect(&mut c, "ord ", 2 * EACH).await;
            (c, ids, got)
        })
    };
    let ta = sender(alice, "a");
    let tb = sender(bob, "b");
    let at_carol = collect(&mut carol, "ord ", 2 * EACH).await;
    let (_alice, a_ids, at_alice) = ta.await.expect("alice task");
    let (_bob, b_ids, at_bob) = tb.await.expect("bob task");

    // seq strictly increasing by one.
    let first = at_carol[0].seq;
    let seqs: Vec<u64> = at_carol.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (first..first + 2 * EACH as u64).collect();
    assert_eq!(seqs, want, "carol: seq must increase by exactly 1");
    // Every member sees the same order.
    let key = |v: &[ChatMessage]| v.iter().map(|m| (m.seq, m.id)).collect::<Vec<_>>();
    assert_eq!(key(&at_alice), key(&at_carol), "alice vs carol order");
    assert_eq!(key(&at_bob), key(&at_carol), "bob vs carol order");
    // Each sender's messages keep their send order and come back with their ids (the ack).
    for (ids, tag) in [(&a_ids, "a"), (&b_ids, "b")] {
        let echoed: Vec<Uuid> = at_carol
            .iter()
            .filter(|m| m.text.starts_with(&format!("ord {tag}")))
            .map(|m| m.id)
            .collect();
        assert_eq!(&echoed, ids, "sender {tag}: ids in send order");
    }
    // The line client sees the same order.
    let mut texts = Vec::new();
    while texts.len() < 2 * EACH {
        let l = dave
            .read_until("an `ord` line", |l| l.contains("> ord "))
            .await;
        texts.push(l);
    }
    let want_lines: Vec<String> = at_carol
        .iter()
        .map(|m| format!("<{}> {}", m.from, m.text))
        .collect();
    assert_eq!(texts, want_lines, "the line client's order");
    srv.shutdown().await;
}

#[tokio::test]
async fn say_with_client_id_is_acknowledged_by_the_echo_with_that_id() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;

    let id = Uuid::new_v4();
    alice.send_req(say_req(id, "lobby", "with id")).await;
    let ack = alice.recv_any_message().await;
    assert_eq!(ack.id, id, "the echo carries the client's id");
    assert_eq!(ack.text, "with id");
    assert_eq!(ack.from, "alice");
    assert!(ack.seq >= 1);
    assert!(
        ack.ts > 1_600_000_000_000,
        "ts is Unix milliseconds: {}",
        ack.ts
    );
    assert_eq!(bob.recv_any_message().await, ack);

    // Without an id, the server makes one (a UUIDv7).
    alice
        .send(ClientMsg::Say {
            room: "lobby".into(),
            text: "no id".into(),
            action: false,
        })
        .await;
    let ack2 = alice.recv_message("lobby", "no id").await;
    assert_ne!(ack2.id, id);
    assert_eq!(ack2.id.get_version_num(), 7, "server-made ids are UUIDv7");
    assert_eq!(ack2.seq, ack.seq + 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn resent_message_id_is_not_delivered_again_and_sender_gets_the_original() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;
    bob.recv_joined("lobby", "carol").await;

    let id = Uuid::new_v4();
    alice.send_req(say_req(id, "lobby", "only once")).await;
    let original = alice.await_ack(id).await;
    assert_eq!(bob.recv_any_message().await, original);
    carol.expect_line("<alice> only once").await;

    // A retry of the same request, then one with the same id and other text.
    alice.send_req(say_req(id, "lobby", "only once")).await;
    let again = alice.await_ack(id).await;
    assert_eq!(
        again, original,
        "the resend is answered with the stored original"
    );
    alice.send_req(say_req(id, "lobby", "changed text")).await;
    let again = alice.await_ack(id).await;
    assert_eq!(
        again, original,
        "same id, other text: still the stored original"
    );

    // Nothing new was stored or delivered: the next message takes the next seq, and it is
    // the first thing bob and carol see.
    let next = alice.say("lobby", "after").await;
    assert_eq!(
        next.seq,
        original.seq + 1,
        "the resends must not consume a seq"
    );
    let at_bob = bob.recv_any_message().await;
    assert_eq!(at_bob.text, "after", "bob got a resent copy: {at_bob:?}");
    let lines = carol
        .read_until_all("<alice> after", |l| l == "<alice> after")
        .await;
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("only once") || l.contains("changed")),
        "carol got a resent copy: {lines:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dm_between_framed_clients_reaches_recipient_and_sender_once() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut eve = Client::login(srv.addr, "eve").await;
    alice.recv_joined("lobby", "eve").await;
    bob.recv_joined("lobby", "eve").await;

    let id = Uuid::new_v4();
    alice
        .send_req(Request::with_id(
            id,
            ClientMsg::Dm {
                to: "bob".into(),
                text: "psst".into(),
            },
        ))
        .await;
    let mine = alice.recv_dm().await;
    let theirs = bob.recv_dm().await;
    for dm in [&mine, &theirs] {
        assert_eq!(
            (dm.id, dm.from.as_str(), dm.to.as_str(), dm.text.as_str()),
            (id, "alice", "bob", "psst")
        );
    }
    assert_eq!(mine.ts, theirs.ts);
    // Once each, and never to a third party.
    let is_dm = |m: &ServerMsg| matches!(m, ServerMsg::Dm(_));
    alice.expect_none(QUIET, "second dm", is_dm).await;
    bob.expect_none(QUIET, "second dm", is_dm).await;
    eve.expect_none(QUIET, "dm meant for bob", is_dm).await;

    // And back.
    bob.send(ClientMsg::Dm {
        to: "alice".into(),
        text: "hi!".into(),
    })
    .await;
    let got = alice.recv_dm().await;
    assert_eq!((got.from.as_str(), got.text.as_str()), ("bob", "hi!"));
    srv.shutdown().await;
}

#[tokio::test]
async fn dm_between_framed_and_line_clients_uses_star_nick_formats() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;

    // Line → framed: the line client gets `-> *nick* text` as confirmation.
    carol.send_line("/msg alice hey there").await;
    let dm = alice.recv_dm().await;
    assert_eq!(
        (dm.from.as_str(), dm.to.as_str(), dm.text.as_str()),
        ("carol", "alice", "hey there")
    );
    carol.expect_line("-> *alice* hey there").await;

    // Framed → line: `*nick* text`.
    alice
        .send(ClientMsg::Dm {
            to: "carol".into(),
            text: "yo carol".into(),
        })
        .await;
    carol.expect_line("*alice* yo carol").await;
    let confirm = alice.recv_dm().await;
    assert_eq!(
        (confirm.from.as_str(), confirm.to.as_str()),
        ("alice", "carol")
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dm_to_unknown_nick_is_no_such_nick_in_both_modes() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;

    let id = Uuid::new_v4();
    alice
        .send_req(Request::with_id(
            id,
            ClientMsg::Dm {
                to: "nobody".into(),
                text: "hello?".into(),
            },
        ))
        .await;
    assert_eq!(alice.recv_error(ErrorCode::NoSuchNick).await, Some(id));

    carol.send_line("/msg nobody hello?").await;
    carol.expect_error_line().await;
    // Both still work.
    carol.send_line("still fine").await;
    alice.recv_message("lobby", "still fine").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn me_action_is_a_message_with_action_and_a_star_line() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;
    bob.recv_joined("lobby", "carol").await;

    alice
        .send(ClientMsg::Say {
            room: "lobby".into(),
            text: "waves".into(),
            action: true,
        })
        .await;
    let m = bob.recv_message("lobby", "waves").await;
    assert!(m.action, "action flag relayed: {m:?}");
    carol.expect_line("* alice waves").await;

    carol.send_line("/me dances").await;
    for c in [&mut alice, &mut bob] {
        let m = c.recv_message("lobby", "dances").await;
        assert!(m.action, "/me from a line client is an action: {m:?}");
        assert_eq!(m.from, "carol");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn many_clients_get_distinct_sessions() {
    let srv = server().await;
    let mut sessions = HashSet::new();
    for i in 0..5 {
        let mut c = Client::connect(srv.addr).await;
        match c.hello(&format!("user{i}")).await {
            ServerMsg::Welcome {
                nick,
                session,
                server,
                ..
            } => {
                assert_eq!(nick, format!("user{i}"));
                assert!(!server.is_empty(), "server names itself");
                assert!(sessions.insert(session), "session ids are unique");
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn resent_dm_id_is_not_delivered_again_and_sender_gets_the_original() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let dm = |id| {
        Request::with_id(
            id,
            ClientMsg::Dm {
                to: "bob".into(),
                text: "just once".into(),
            },
        )
    };
    let id = Uuid::new_v4();
    alice.send_req(dm(id)).await;
    let original = alice.recv_dm().await;
    assert_eq!(bob.recv_dm().await, original);

    alice.send_req(dm(id)).await;
    assert_eq!(
        alice.recv_dm().await,
        original,
        "the resend gets the stored original"
    );
    bob.expect_none(QUIET, "a resent dm", |m| matches!(m, ServerMsg::Dm(_)))
        .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn dm_to_oneself_is_allowed() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice
        .send(ClientMsg::Dm {
            to: "alice".into(),
            text: "note to self".into(),
        })
        .await;
    let dm = alice
        .recv_until("the dm to self", |m| match m {
            ServerMsg::Dm(dm) => Some(dm.clone()),
            ServerMsg::Error { .. } => panic!("dm to oneself refused: {m:?}"),
            _ => None,
        })
        .await;
    assert_eq!(
        (dm.from.as_str(), dm.to.as_str(), dm.text.as_str()),
        ("alice", "alice", "note to self")
    );
    srv.shutdown().await;
}
