//! Rooms (join, part, isolation, listing, names) and history (on join, `since`, paging,
//! the retention ring, frame-size cuts).

use chat_shared::{ChatMessage, ClientMsg, ErrorCode, Request, ServerMsg};
use uuid::Uuid;

use crate::common::{Client, QUIET, RawFramed, cfg, fill_room, say_req, server, spawn_server};

fn seqs(msgs: &[ChatMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn join_gets_joined_history_members_and_members_get_joined() {
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let (hist, truncated, members) = bob.join("rust", None).await;
    assert!(hist.is_empty() && !truncated, "a new room has no history");
    assert_eq!(members, vec!["bob".to_string()]);
    let said = bob.say("rust", "first in rust").await;
    assert_eq!(
        (said.room.as_str(), said.seq),
        ("rust", 1),
        "seq starts at 1 per room"
    );

    let mut alice = Client::login(srv.addr, "alice").await;
    let (hist, truncated, members) = alice.join("rust", None).await;
    assert_eq!(hist, vec![said]);
    assert!(!truncated);
    assert_eq!(sorted(members), ["alice", "bob"]);
    bob.recv_joined("rust", "alice").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn joining_a_room_again_is_harmless_and_repeats_the_sequence() {
    let srv = server().await;
    let mut bob = Client::login(srv.addr, "bob").await;
    bob.join("rust", None).await;
    bob.say("rust", "one").await;
    let (hist, _, members) = bob.join("rust", None).await;
    assert_eq!(seqs(&hist), [1]);
    assert_eq!(members, ["bob"], "still one membership");
    let m = bob.say("rust", "two").await;
    assert_eq!(m.seq, 2);
    bob.expect_none(QUIET, "a duplicate delivery", |m| {
        matches!(m, ServerMsg::Message(_))
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn messages_in_one_room_never_reach_clients_outside_it() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Client::login(srv.addr, "carol").await;
    bob.join("rust", None).await;
    carol.join("rust", None).await;
    bob.say("rust", "rust only").await;
    assert_eq!(carol.recv_any_message().await.text, "rust only");
    // A lobby message afterwards: alice must see it and nothing from rust before it.
    carol.say("lobby", "lobby marker").await;
    let all = alice
        .recv_until_all(
            "lobby marker",
            |m| matches!(m, ServerMsg::Message(cm) if cm.text == "lobby marker"),
        )
        .await;
    for m in &all {
        if let ServerMsg::Message(cm) = m {
            assert_eq!(
                cm.room, "lobby",
                "alice got a message from {}: {cm:?}",
                cm.room
            );
        }
        if let ServerMsg::Joined { room, .. } = m {
            assert_eq!(room, "lobby", "alice got a join notice of another room");
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn part_notifies_every_member_including_the_leaver() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.join("rust", None).await;
    bob.join("rust", None).await;
    alice.recv_joined("rust", "bob").await;

    alice
        .send(ClientMsg::Part {
            room: "rust".into(),
            reason: Some("bye rust".into()),
        })
        .await;
    for c in [&mut alice, &mut bob] {
        let reason = c.recv_parted("rust", "alice").await;
        assert_eq!(reason.as_deref(), Some("bye rust"));
    }
    let id = Uuid::new_v4();
    alice.send_req(say_req(id, "rust", "still here?")).await;
    assert_eq!(alice.recv_error(ErrorCode::NotInRoom).await, Some(id));
    bob.say("rust", "alice is gone").await;
    alice
        .expect_none(
            QUIET,
            "a message from a parted room",
            |m| matches!(m, ServerMsg::Message(cm) if cm.room == "rust"),
        )
        .await;

    // Parting lobby is allowed too.
    alice
        .send(ClientMsg::Part {
            room: "lobby".into(),
            reason: None,
        })
        .await;
    alice.recv_parted("lobby", "alice").await;
    bob.recv_parted("lobby", "alice").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn rooms_lists_rooms_with_member_counts() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let _carol = Client::login(srv.addr, "carol").await;
    alice.join("rust", None).await;
    bob.join("rust", None).await;
    bob.join("empty", None).await;
    bob.send(ClientMsg::Part {
        room: "empty".into(),
        reason: None,
    })
    .await;
    bob.recv_parted("empty", "bob").await;

    alice.send(ClientMsg::Rooms {}).await;
    let mut rooms = alice
        .recv_until("room_list", |m| match m {
            ServerMsg::RoomList { rooms, .. } => Some(rooms.clone()),
            _ => None,
        })
        .await;
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, usize)> = rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
    assert_eq!(
        got,
        [("lobby", 3), ("rust", 2)],
        "rooms without members are not listed"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn who_lists_members_without_joining() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    bob.join("rust", None).await;
    alice
        .send(ClientMsg::Who {
            room: "#RUST".into(),
        })
        .await;
    let (room, nicks) = alice
        .recv_until("members of rust", |m| match m {
            ServerMsg::Members { room, nicks, .. } if room != "lobby" => {
                Some((room.clone(), nicks.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(room, "rust");
    assert_eq!(nicks, ["bob"]);
    // Still not a member.
    alice.send_req(say_req(Uuid::new_v4(), "rust", "x")).await;
    alice.recv_error(ErrorCode::NotInRoom).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn room_names_are_case_insensitive_and_hash_is_stripped() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice
        .send(ClientMsg::Join {
            key: None,
            room: "#Rust".into(),
            since: None,
        })
        .await;
    let room = alice
        .recv_until("joined", |m| match m {
            ServerMsg::Joined { room, nick, .. } if nick == "alice" && room != "lobby" => {
                Some(room.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(room, "rust", "reported lowercase without #");
    bob.join("RUST", None).await;
    alice.recv_joined("rust", "bob").await;
    let id = Uuid::new_v4();
    bob.send_req(say_req(id, "#rUsT", "same room")).await;
    let m = bob.await_ack(id).await;
    assert_eq!(m.room, "rust");
    assert_eq!(alice.recv_message("rust", "same room").await.id, id);
    srv.shutdown().await;
}

#[tokio::test]
async fn seq_is_per_room_and_starts_at_1() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.join("a", None).await;
    alice.join("b", None).await;
    assert_eq!(alice.say("a", "a1").await.seq, 1);
    assert_eq!(alice.say("a", "a2").await.seq, 2);
    assert_eq!(alice.say("b", "b1").await.seq, 1);
    assert_eq!(alice.say("a", "a3").await.seq, 3);
    assert_eq!(alice.say("lobby", "l1").await.seq, 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn history_pages_oldest_first_without_overlap_or_gap() {
    let srv = server().await;
    let all = fill_room(srv.addr, "paging", "p", 120).await;
    assert_eq!(seqs(&all), (1..=120).collect::<Vec<_>>());
    let mut alice = Client::login(srv.addr, "alice").await;

    // No `before`: the newest; default limit 50.
    let (page, _) = alice.history("paging", None, None).await;
    assert_eq!(seqs(&page), (71..=120).collect::<Vec<_>>(), "default page");
    assert_eq!(
        page,
        all[70..],
        "history holds the stored messages unchanged"
    );

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let (page, _) = alice.history("paging", before, Some(40)).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 40, "limit respected: {}", page.len());
        let s = seqs(&page);
        assert!(
            s.windows(2).all(|w| w[1] == w[0] + 1),
            "oldest first, consecutive: {s:?}"
        );
        before = Some(page[0].id);
        pages.push(page);
        assert!(pages.len() <= 4, "paging does not end");
    }
    assert_eq!(pages.len(), 3);
    let joined: Vec<ChatMessage> = pages.into_iter().rev().flatten().collect();
    assert_eq!(joined, all, "pages cover everything once, in order");

    // History works without membership, and `limit` larger than what exists is fine.
    let (everything, truncated) = alice.history("paging", None, Some(500)).await;
    assert_eq!(everything, all);
    assert!(!truncated);
    srv.shutdown().await;
}

#[tokio::test]
async fn history_limit_is_capped_at_500() {
    const BIG: usize = 1024 * 1024;
    let srv = spawn_server(chat_server::Config {
        history: 600,
        max_frame: BIG,
        ..cfg()
    })
    .await;
    let all = fill_room(srv.addr, "cap", "c", 520).await;
    let mut alice = Client::connect_with_max_frame(srv.addr, BIG)
        .await
        .register("alice")
        .await;
    let (page, _) = alice.history("cap", None, Some(1000)).await;
    assert_eq!(page.len(), 500, "limit 1000 is capped at 500");
    assert_eq!(page, all[20..], "the newest 500, oldest first");
    srv.shutdown().await;
}

#[tokio::test]
async fn history_with_unknown_before_is_bad_request() {
    let srv = server().await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.say("lobby", "something").await;
    let id = Uuid::new_v4();
    alice
        .send_req(Request::with_id(
            id,
            ClientMsg::History {
                room: "lobby".into(),
                before: Some(Uuid::new_v4()),
                limit: None,
                after: None,
            },
        ))
        .await;
    assert_eq!(alice.recv_error(ErrorCode::BadRequest).await, Some(id));
    alice.roundtrip().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn join_with_since_returns_exactly_the_messages_after_it() {
    let srv = server().await;
    let all = fill_room(srv.addr, "resume", "r", 30).await;
    let mut alice = Client::login(srv.addr, "alice").await;

    let (hist, truncated, _) = alice.join("resume", Some(20)).await;
    assert_eq!(hist, all[20..], "since 20 → 21..=30");
    assert!(!truncated);

    let (hist, truncated, _) = alice.join("resume", Some(0)).await;
    assert_eq!(hist, all, "since 0 → everything retained");
    assert!(!truncated);

    let (hist, _, _) = alice.join("resume", Some(30)).await;
    assert!(
        hist.is_empty(),
        "nothing after the newest: {:?}",
        seqs(&hist)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn join_without_since_sends_the_newest_50_and_says_truncated() {
    let srv = server().await;
    let all = fill_room(srv.addr, "busy", "b", 120).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let (hist, truncated, _) = alice.join("busy", None).await;
    assert_eq!(seqs(&hist), (71..=120).collect::<Vec<_>>());
    assert_eq!(hist, all[70..]);
    assert!(truncated, "older messages exist than were sent");

    let few = fill_room(srv.addr, "quiet", "q", 5).await;
    let (hist, truncated, _) = alice.join("quiet", None).await;
    assert_eq!(hist, few);
    assert!(!truncated);
    srv.shutdown().await;
}

#[tokio::test]
async fn history_on_join_config_sets_the_join_history_size() {
    let srv = spawn_server(chat_server::Config {
        history_on_join: 10,
        ..cfg()
    })
    .await;
    let all = fill_room(srv.addr, "room", "m", 25).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let (hist, truncated, _) = alice.join("room", None).await;
    assert_eq!(hist, all[15..]);
    assert!(truncated);
    srv.shutdown().await;
}

#[tokio::test]
async fn history_ring_is_bounded_by_config_history() {
    let srv = spawn_server(chat_server::Config {
        history: 20,
        ..cfg()
    })
    .await;
    let all = fill_room(srv.addr, "ring", "x", 30).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let (page, _) = alice.history("ring", None, Some(500)).await;
    assert_eq!(page, all[10..], "only the newest 20 are retained");
    let (hist, _, _) = alice.join("ring", Some(0)).await;
    assert_eq!(hist, all[10..], "since 0 = everything retained");
    // An evicted message id is unknown now.
    alice
        .send(ClientMsg::History {
            room: "ring".into(),
            before: Some(all[5].id),
            limit: None,
            after: None,
        })
        .await;
    alice.recv_error(ErrorCode::BadRequest).await;
    // seq goes on from 30.
    assert_eq!(alice.say("ring", "next").await.seq, 31);
    srv.shutdown().await;
}

#[tokio::test]
async fn join_history_that_would_not_fit_a_frame_is_cut_to_the_newest_and_truncated() {
    const MAX: usize = 2048;
    let srv = spawn_server(chat_server::Config {
        max_frame: MAX,
        ..cfg()
    })
    .await;
    let all = fill_room(srv.addr, "cut", "some longer text to fill frames", 40).await;
    let mut raw = RawFramed::connect(srv.addr).await;
    raw.send_payload(br#"{"type":"hello","nick":"alice"}"#)
        .await;
    raw.recv_text_containing(r#""type":"members""#).await;
    raw.send_payload(br#"{"type":"join","room":"cut","since":0}"#)
        .await;
    let text = raw.recv_text_containing(r#""type":"history""#).await;
    assert!(
        text.len() <= MAX,
        "a {} byte frame over max_frame {MAX}",
        text.len()
    );
    let ServerMsg::History {
        messages,
        truncated,
        ..
    } = serde_json::from_str(&text).expect("history JSON")
    else {
        panic!("not a history: {text}");
    };
    assert!(truncated, "cut to fit says truncated");
    assert!(
        !messages.is_empty() && messages.len() < 40,
        "{}",
        messages.len()
    );
    assert_eq!(
        messages,
        all[40 - messages.len()..],
        "the newest ones, oldest first"
    );
    srv.shutdown().await;
}
