use std::collections::VecDeque;

use chat_shared::ServerMsg;
use uuid::Uuid;

use super::*;

const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
use crate::path::producer::Said;
use crate::path::sink::{Item, Sink};

fn chat(config: Config) -> Chat {
    Chat::new(Arc::new(config), None)
}

fn nick(s: &str) -> Nick {
    Nick::parse(s).unwrap()
}

fn sink() -> Arc<Sink> {
    Arc::new(Sink::new(1 << 20, 64))
}

fn notices(sink: &Sink) -> Vec<ServerMsg> {
    let mut items = VecDeque::new();
    sink.take_all(&mut items);
    items
        .into_iter()
        .flat_map(|i| match i {
            Item::Event(e) => vec![e.msg.clone()],
            Item::Feed(sub) => crate::path::feed::drain(&sub)
                .iter()
                .map(|e| e.msg.clone())
                .collect(),
            Item::Join(_) => Vec::new(),
        })
        .collect()
}

#[test]
fn nicks_are_unique_without_regard_to_case() {
    let chat = chat(Config::default());
    chat.register(Uuid::new_v4(), &nick("Alice"), &sink(), LOCAL)
        .unwrap();
    assert_eq!(
        chat.register(Uuid::new_v4(), &nick("aLICE"), &sink(), LOCAL),
        Err(ChatError::NickTaken(nick("aLICE")))
    );
}

#[test]
fn look_alikes_of_an_online_nick_are_refused_and_say_whom_they_imitate() {
    let chat = chat(Config::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    chat.register(a, &nick("scope"), &sink(), LOCAL).unwrap();
    // Fullwidth normalises to the same nick; all-Cyrillic is another nick that looks alike.
    assert_eq!(
        chat.register(b, &nick("ＳＣＯＰＥ"), &sink(), LOCAL),
        Err(ChatError::NickTaken(nick("SCOPE")))
    );
    assert_eq!(
        chat.register(b, &nick("ѕсоре"), &sink(), LOCAL),
        Err(ChatError::NickLooksLike {
            nick: nick("ѕсоре"),
            online: nick("scope"),
        })
    );
    // Nor can another session rename into it; the holder may change its own spelling.
    chat.register(b, &nick("bob"), &sink(), LOCAL).unwrap();
    assert!(
        chat.rename(b, &nick("bob"), &nick("ѕсоре"), &[], (false, false))
            .is_err()
    );
    chat.rename(a, &nick("scope"), &nick("ѕсоре"), &[], (false, false))
        .unwrap();
    // Once released, the look-alike is free.
    chat.unregister(a, &nick("ѕсоре"));
    chat.register(b, &nick("scope"), &sink(), LOCAL).unwrap();
}

#[test]
fn a_look_alike_room_name_leads_to_the_room_it_imitates() {
    let chat = chat(Config::default());
    let room = chat.room(&RoomName::parse("scope").unwrap()).unwrap();
    let same = chat.room(&RoomName::parse("ѕсоре").unwrap()).unwrap();
    assert!(Arc::ptr_eq(&room, &same));
    assert_eq!(same.name().as_str(), "scope");
}

#[test]
fn rename_notifies_each_room_mate_once() {
    let chat = chat(Config::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (a_sink, b_sink) = (sink(), sink());
    chat.register(a, &nick("a"), &a_sink, LOCAL).unwrap();
    chat.register(b, &nick("b"), &b_sink, LOCAL).unwrap();
    let r1 = chat.room(&RoomName::parse("one").unwrap()).unwrap();
    let r2 = chat.room(&RoomName::parse("two").unwrap()).unwrap();
    for r in [&r1, &r2] {
        r.join_as(a, &nick("a"), &a_sink, None, 0);
        r.join_as(b, &nick("b"), &b_sink, None, 0);
    }
    notices(&b_sink);
    let both = [r1.clone(), r2.clone()];
    chat.rename(a, &nick("a"), &nick("A2"), &both, (false, false))
        .unwrap();
    let seen = notices(&b_sink);
    assert!(
        matches!(seen[..], [ServerMsg::NickChanged { .. }]),
        "{seen:?}"
    );
    // Leaving an account by a rename is told once more, once, and so is a login.
    let own = chat
        .rename(a, &nick("A2"), &nick("a3"), &both, (true, false))
        .unwrap();
    assert_eq!(own.len(), 2);
    chat.logged_in(a, &nick("a3"), &both);
    let seen = notices(&b_sink);
    assert!(
        matches!(
            &seen[..],
            [
                ServerMsg::NickChanged { .. },
                ServerMsg::AccountChanged { account: false, .. },
                ServerMsg::AccountChanged { account: true, nick },
            ] if nick == "a3"
        ),
        "{seen:?}"
    );
    assert_eq!(r1.member_nicks(), ["a3", "b"]);
    assert!(
        chat.register(Uuid::new_v4(), &nick("a"), &sink(), LOCAL)
            .is_ok(),
        "the old nick is free"
    );
}

#[test]
fn room_limit_forgets_the_idlest_empty_room() {
    let chat = chat(Config {
        max_rooms: 2,
        ..Config::default()
    });
    let (s, s_sink) = (Uuid::new_v4(), sink());
    let busy = chat.room(&RoomName::parse("busy").unwrap()).unwrap();
    busy.join_as(s, &nick("a"), &s_sink, None, 0);
    let empty = chat.room(&RoomName::parse("empty").unwrap()).unwrap();
    empty.join_as(s, &nick("a"), &s_sink, None, 0);
    for text in ["x", "y"] {
        empty
            .post(s, &s_sink, Said::text(text.into(), None))
            .unwrap();
    }
    empty.part(s, None).unwrap();
    assert_eq!(chat.ids.lock().len(), 2);
    chat.room(&RoomName::parse("third").unwrap()).unwrap();
    assert_eq!(
        chat.ids.lock().len(),
        0,
        "a forgotten room's ids are forgotten too"
    );
    assert!(
        chat.existing_room(&RoomName::parse("empty").unwrap())
            .is_none()
    );
    let third = chat
        .existing_room(&RoomName::parse("third").unwrap())
        .unwrap();
    third.join_as(s, &nick("a"), &s_sink, None, 0);
    assert_eq!(
        chat.room(&RoomName::parse("fourth").unwrap()).unwrap_err(),
        ChatError::ServerRoomsFull(2)
    );
}

#[test]
fn dms_reach_both_ends_and_an_unknown_nick_is_named() {
    let chat = chat(Config::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (a_sink, b_sink) = (sink(), sink());
    chat.register(a, &nick("a"), &a_sink, LOCAL).unwrap();
    chat.register(b, &nick("B"), &b_sink, LOCAL).unwrap();
    chat.dm(
        a,
        (&nick("a"), false),
        &a_sink,
        "b",
        Said::text("hi".into(), None),
    )
    .unwrap();
    assert!(matches!(&notices(&b_sink)[..], [ServerMsg::Dm(d)] if d.to == "B"));
    assert!(matches!(&notices(&a_sink)[..], [ServerMsg::Dm(_)]));
    assert_eq!(
        chat.dm(
            a,
            (&nick("a"), false),
            &a_sink,
            "zed",
            Said::text("hi".into(), None)
        ),
        Err(ChatError::NoSuchNick("zed".into()))
    );
}
