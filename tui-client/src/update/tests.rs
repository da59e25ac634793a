//! Unit tests of `update`: actions in, state and effects checked. No terminal, no network.

use super::*;
use chat_shared::message::FileInfo;
use chat_shared::{DirectMessage, Password, RoomInfo};

use crate::transfer::{Target, TransferState};
use ratatui::crossterm::event::{KeyEventState, MouseButton};

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn alt(c: char) -> Action {
    Action::Key(KeyEvent {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::ALT,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    })
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert!(update(app, key(KeyCode::Char(c))).is_empty());
    }
}

/// Types `line` and presses Enter; returns the effects of Enter.
fn submit_line(app: &mut App, line: &str) -> Vec<Effect> {
    type_text(app, line);
    update(app, key(KeyCode::Enter))
}

fn server(app: &mut App, msg: ServerMsg) -> Vec<Effect> {
    update(app, Action::Net(NetEvent::Message(msg)))
}

/// The requests among `fx`, without their envelope.
fn sent(fx: &[Effect]) -> Vec<ClientMsg> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(r.msg.clone()),
            _ => None,
        })
        .collect()
}

fn chat(room: &str, seq: u64, from: &str, text: &str) -> ChatMessage {
    ChatMessage {
        event: None,
        id: Uuid::now_v7(),
        room: room.into(),
        seq,
        from: from.into(),
        text: text.into(),
        ts: 1_700_000_000_000 + seq as i64 * 1000,
        action: false,
        file: None,
        account: false,
    }
}

fn welcome(nick: &str) -> ServerMsg {
    ServerMsg::Welcome {
        nick: nick.into(),
        session: Uuid::nil(),
        server: "chat-server test".into(),
        motd: None,
        account: false,
    }
}

fn joined(room: &str, nick: &str) -> ServerMsg {
    ServerMsg::Joined {
        role: None,
        room: room.into(),
        nick: nick.into(),
        ts: 1_700_000_000_000,
        account: false,
    }
}

fn history(room: &str, messages: Vec<ChatMessage>, truncated: bool) -> ServerMsg {
    ServerMsg::History {
        room: room.into(),
        messages,
        truncated,
    }
}

/// alice, connected and in the lobby with bob; lobby shows `lobby_seqs` from bob.
fn online_in_lobby(lobby_seqs: std::ops::RangeInclusive<u64>) -> App {
    let mut app = App::new("alice", "127.0.0.1:7878");
    let fx = update(&mut app, Action::Net(NetEvent::Connected { generation: 1 }));
    assert!(matches!(sent(&fx)[..], [ClientMsg::Hello { ref nick, .. }] if nick == "alice"));
    assert!(server(&mut app, welcome("alice")).is_empty());
    server(&mut app, joined("lobby", "alice"));
    let msgs = lobby_seqs
        .map(|s| chat("lobby", s, "bob", &format!("m{s}")))
        .collect();
    server(&mut app, history("lobby", msgs, false));
    server(
        &mut app,
        ServerMsg::Members {
            ops: Vec::new(),
            owner: None,
            voiced: Vec::new(),
            room: "lobby".into(),
            nicks: vec!["bob".into(), "alice".into()],
            truncated: false,
        },
    );
    app
}

fn lobby(app: &App) -> &crate::app::Tab {
    &app.tabs[app.room_index("lobby").expect("lobby tab")]
}

/// Texts of the lobby's messages with their states.
fn lobby_messages(app: &App) -> Vec<(String, MsgState)> {
    lobby(app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { text, state, .. } => Some((text.clone(), *state)),
            _ => None,
        })
        .collect()
}

fn lobby_ids(app: &App) -> Vec<Uuid> {
    lobby(app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn texts(app: &App) -> Vec<String> {
    lobby_messages(app).into_iter().map(|(t, _)| t).collect()
}

#[test]
fn connecting_sends_hello_and_the_lobby_join_opens_and_focuses_its_tab() {
    let app = online_in_lobby(1..=2);
    assert_eq!(app.conn, ConnState::Online);
    assert_eq!(app.current_tab().name, "lobby");
    assert_eq!(lobby(&app).members, ["alice", "bob"]);
    assert_eq!(texts(&app), ["m1", "m2"]);
    assert!(
        lobby(&app).history_complete,
        "seq 1 is the start of the room"
    );
}

#[test]
fn a_message_is_pending_with_a_v7_id_until_the_server_echoes_it() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "你好 👋");
    let [Effect::Send(req)] = &fx[..] else {
        panic!("expected one send, got {fx:?}");
    };
    let id = req.id.expect("say carries an id");
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(
        req.msg,
        ClientMsg::Say {
            room: "lobby".into(),
            text: "你好 👋".into(),
            action: false
        }
    );
    assert_eq!(
        lobby_messages(&app)[1],
        ("你好 👋".into(), MsgState::Pending)
    );
    assert_eq!(app.pending.len(), 1);

    let mut echo = chat("lobby", 2, "alice", "你好 👋");
    echo.id = id;
    server(&mut app, ServerMsg::Message(echo.clone()));
    assert!(app.pending.is_empty());
    assert_eq!(
        lobby_messages(&app)[1],
        ("你好 👋".into(), MsgState::Normal)
    );
    // The same echo again (a resend's acknowledgement) changes nothing.
    server(&mut app, ServerMsg::Message(echo));
    assert_eq!(texts(&app), ["m1", "你好 👋"]);
}

#[test]
fn a_multi_line_paste_becomes_one_message() {
    let mut app = online_in_lobby(1..=1);
    update(
        &mut app,
        Action::Paste("line one\r\nline two\nline three\n".into()),
    );
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        sent(&fx),
        [ClientMsg::Say {
            room: "lobby".into(),
            text: "line one\nline two\nline three".into(),
            action: false
        }]
    );
}

#[test]
fn a_message_seen_twice_is_shown_once() {
    let mut app = online_in_lobby(1..=2);
    let m3 = chat("lobby", 3, "bob", "m3");
    server(&mut app, ServerMsg::Message(m3.clone()));
    server(&mut app, ServerMsg::Message(m3.clone()));
    server(&mut app, history("lobby", vec![m3], false));
    assert_eq!(texts(&app), ["m1", "m2", "m3"]);
}

#[test]
fn a_seq_gap_fetches_exactly_the_hole_and_fills_it_in_order() {
    let mut app = online_in_lobby(1..=3);
    let m7 = chat("lobby", 7, "bob", "m7");
    let fx = server(&mut app, ServerMsg::Message(m7.clone()));
    assert_eq!(
        sent(&fx),
        [ClientMsg::History {
            room: "lobby".into(),
            before: Some(m7.id),
            limit: Some(3),
            after: None,
        }]
    );
    let hole = (4..=6)
        .map(|s| chat("lobby", s, "bob", &format!("m{s}")))
        .collect();
    assert!(server(&mut app, history("lobby", hole, false)).is_empty());
    let got = lobby_messages(&app);
    assert_eq!(texts(&app), ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(got[4].1, MsgState::Missed);
    assert_eq!(
        got[6].1,
        MsgState::Normal,
        "the live message is not 'missed'"
    );
}

#[test]
fn lagged_fetches_history_and_marks_what_was_skipped() {
    let mut app = online_in_lobby(1..=2);
    let fx = server(
        &mut app,
        ServerMsg::Lagged {
            room: "lobby".into(),
            missed: 2,
        },
    );
    assert!(matches!(
        &sent(&fx)[..],
        [
            ClientMsg::History { room, before: None, limit: Some(_), .. },
            ClientMsg::Who { room: who },
        ] if room == "lobby" && who == "lobby"
    ));
    let mut newest: Vec<ChatMessage> = lobby_ids(&app)
        .into_iter()
        .zip(1..)
        .map(|(id, s)| ChatMessage {
            id,
            ..chat("lobby", s, "bob", &format!("m{s}"))
        })
        .collect();
    newest.extend((3..=4).map(|s| chat("lobby", s, "bob", &format!("m{s}"))));
    server(&mut app, history("lobby", newest, false));
    let got = lobby_messages(&app);
    assert_eq!(texts(&app), ["m1", "m2", "m3", "m4"]);
    assert_eq!((got[1].1, got[2].1), (MsgState::Normal, MsgState::Missed));
}

/// A gap of join and part notices alone (`missed: 0`, issue 10): nothing to fetch, but the
/// member list may be stale.
#[test]
fn lagged_without_missed_messages_refreshes_the_members_only() {
    let mut app = online_in_lobby(1..=2);
    let fx = server(
        &mut app,
        ServerMsg::Lagged {
            room: "lobby".into(),
            missed: 0,
        },
    );
    assert!(matches!(
        &sent(&fx)[..],
        [ClientMsg::Who { room }] if room == "lobby"
    ));
}

#[test]
fn reconnect_rejoins_with_since_and_resends_unacknowledged_messages_with_the_same_id() {
    let mut app = online_in_lobby(1..=5);
    let fx = submit_line(&mut app, "sent before the drop");
    let first_id = match &fx[..] {
        [Effect::Send(r)] => r.id.unwrap(),
        other => panic!("{other:?}"),
    };
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "connection reset".into(),
            retry_in: Duration::from_secs(1),
        }),
    );
    assert!(matches!(app.conn, ConnState::Offline { .. }));
    // Typed while offline: kept, not sent.
    assert!(submit_line(&mut app, "typed while away").is_empty());
    assert_eq!(app.pending.len(), 2);

    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    assert_eq!(app.conn_gen, 2);
    let fx = server(&mut app, welcome("alice"));
    let reqs: Vec<&Request> = fx
        .iter()
        .map(|e| match e {
            Effect::Send(r) => r,
            other => panic!("only sends expected, got {other:?}"),
        })
        .collect();
    assert_eq!(
        reqs[0].msg,
        ClientMsg::Join {
            key: None,
            room: "lobby".into(),
            since: Some(5)
        }
    );
    assert_eq!(reqs.len(), 3, "join, then both pending messages: {reqs:?}");
    assert_eq!(
        reqs[1].id,
        Some(first_id),
        "same id, so the server deduplicates"
    );
    assert!(matches!(&reqs[2].msg, ClientMsg::Say { text, .. } if text == "typed while away"));

    // What was said meanwhile arrives once, in order, marked as missed; our first message
    // (which the server had stored) comes back in that history and is acknowledged.
    let mut ours = chat("lobby", 7, "alice", "sent before the drop");
    ours.id = first_id;
    let meanwhile = vec![
        chat("lobby", 6, "bob", "m6"),
        ours,
        chat("lobby", 8, "bob", "m8"),
    ];
    server(&mut app, joined("lobby", "alice"));
    server(&mut app, history("lobby", meanwhile.clone(), false));
    server(&mut app, history("lobby", meanwhile, false));
    let got = lobby_messages(&app);
    let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "m1",
            "m2",
            "m3",
            "m4",
            "m5",
            "m6",
            "sent before the drop",
            "m8",
            "typed while away"
        ]
    );
    assert_eq!(got[5].1, MsgState::Missed);
    assert_eq!(got[6].1, MsgState::Normal);
    assert_eq!(got[8].1, MsgState::Pending);
    assert_eq!(app.pending.len(), 1);
}

#[test]
fn moving_to_another_server_says_where_rejoins_with_since_and_shows_nothing_twice() {
    let mut app = online_in_lobby(1..=5);
    assert_eq!(app.server, "127.0.0.1:7878");
    let ids = lobby_ids(&app);
    // The node dies; the network task dials the next server at once.
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "connection reset".into(),
            retry_in: Duration::ZERO,
        }),
    );
    let next = NetEvent::Connecting {
        attempt: 1,
        server: "127.0.0.1:7879".into(),
    };
    assert!(update(&mut app, Action::Net(next)).is_empty());
    assert_eq!(app.conn, ConnState::Connecting { attempt: 1 });
    assert_eq!(app.server, "127.0.0.1:7879", "the status bar names it");
    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    let fx = server(&mut app, welcome("alice"));
    assert_eq!(
        sent(&fx),
        [ClientMsg::Join {
            key: None,
            room: "lobby".into(),
            since: Some(5)
        }],
        "the last seq seen on the old node"
    );
    assert!(
        app.tabs[0].entries.iter().any(|e| e.kind
            == EntryKind::Info("connected to chat-server test at 127.0.0.1:7879 as alice".into())),
        "the status tab says where"
    );
    assert!(
        lobby(&app)
            .entries
            .iter()
            .any(|e| e.kind == EntryKind::Info("reconnected to 127.0.0.1:7879".into()))
    );

    // The new node serves the same stream (same ids and seqs); what overlaps what was
    // seen on the old one, or arrives both live and in history, is shown once.
    server(&mut app, joined("lobby", "alice"));
    let mut m5 = chat("lobby", 5, "bob", "m5");
    m5.id = ids[4];
    let m6 = chat("lobby", 6, "bob", "m6");
    let m7 = chat("lobby", 7, "bob", "m7");
    server(&mut app, history("lobby", vec![m5, m6.clone(), m7], false));
    let m8 = chat("lobby", 8, "bob", "m8");
    server(&mut app, ServerMsg::Message(m8.clone()));
    server(&mut app, history("lobby", vec![m6, m8.clone()], false));
    server(&mut app, ServerMsg::Message(m8));
    let got = lobby_messages(&app);
    let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"]);
    assert_eq!(got[4].1, MsgState::Normal);
    assert_eq!((got[5].1, got[6].1), (MsgState::Missed, MsgState::Missed));
    assert_eq!(got[7].1, MsgState::Normal, "m8 came live");
    assert_eq!(lobby(&app).last_seq, 8);
}

#[test]
fn nick_taken_after_a_reconnect_retries_hello_with_backoff() {
    let mut app = online_in_lobby(1..=1);
    app.now_ms = 10_000;
    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    let taken = ServerMsg::error(ErrorCode::NickTaken, "nick taken", None);
    assert!(server(&mut app, taken.clone()).is_empty());
    assert!(update(&mut app, Action::Tick { now_ms: 10_500 }).is_empty());
    let fx = update(&mut app, Action::Tick { now_ms: 11_000 });
    assert!(matches!(&sent(&fx)[..], [ClientMsg::Hello { nick, .. }] if nick == "alice"));
    // Taken again: the next wait is longer.
    server(&mut app, taken);
    assert!(update(&mut app, Action::Tick { now_ms: 12_500 }).is_empty());
    assert_eq!(
        sent(&update(&mut app, Action::Tick { now_ms: 13_000 })).len(),
        1
    );
}

#[test]
fn nick_taken_on_first_connect_asks_for_another_nick() {
    let mut app = App::new("alice", "x");
    update(&mut app, Action::Net(NetEvent::Connected { generation: 1 }));
    server(
        &mut app,
        ServerMsg::error(ErrorCode::NickTaken, "nick alice is taken", None),
    );
    assert!(matches!(
        &app.current_tab().entries.last().unwrap().kind,
        EntryKind::Error(e) if e.contains("/nick")
    ));
    let fx = submit_line(&mut app, "/nick alice2");
    assert!(matches!(&sent(&fx)[..], [ClientMsg::Hello { nick, .. }] if nick == "alice2"));
}

#[test]
fn server_ping_is_answered_with_the_same_token() {
    let mut app = online_in_lobby(1..=1);
    let token = serde_json::json!({"n": 42});
    let fx = server(
        &mut app,
        ServerMsg::Ping {
            token: token.clone(),
        },
    );
    assert_eq!(sent(&fx), [ClientMsg::Pong { token }]);
}

#[test]
fn msg_opens_a_dm_tab_and_incoming_dms_count_as_unread() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/msg 小明 你好");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Dm {
            to: "小明".into(),
            text: "你好".into()
        }]
    );
    assert_eq!(app.current_tab().kind, TabKind::Dm);
    assert_eq!(app.current_tab().name, "小明");
    // Plain text in a DM tab goes to that person.
    let fx = submit_line(&mut app, "still there?");
    assert!(matches!(&sent(&fx)[..], [ClientMsg::Dm { to, .. }] if to == "小明"));

    update(&mut app, alt('2'));
    server(
        &mut app,
        ServerMsg::Dm(DirectMessage {
            id: Uuid::now_v7(),
            from: "carol".into(),
            to: "alice".into(),
            text: "psst".into(),
            ts: 1,
            file: None,
            account: false,
        }),
    );
    let carol = app.dm_index("carol").unwrap();
    assert_eq!(
        (app.tabs[carol].unread, app.tabs[carol].mentioned),
        (1, true)
    );
    update(&mut app, alt(char::from(b'1' + carol as u8)));
    assert_eq!(app.current, carol);
    assert_eq!(app.tabs[carol].unread, 0);
}

#[test]
fn ctrl_n_and_ctrl_p_cycle_tabs_and_unread_counts_clear() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    assert_eq!(
        app.current_tab().name,
        "lobby",
        "a join we did not ask for keeps focus"
    );
    let mut hi = chat("rust", 1, "bob", "hi alice");
    server(&mut app, ServerMsg::Message(hi.clone()));
    let rust = app.room_index("rust").unwrap();
    assert_eq!((app.tabs[rust].unread, app.tabs[rust].mentioned), (1, true));
    update(&mut app, ctrl('n'));
    assert_eq!(app.current, rust);
    assert_eq!(app.tabs[rust].unread, 0);
    update(&mut app, ctrl('n'));
    assert_eq!(app.current, 0, "wraps around to the status tab");
    update(&mut app, ctrl('p'));
    assert_eq!(app.current, rust);
    hi.seq = 2;
    hi.id = Uuid::now_v7();
    server(&mut app, ServerMsg::Message(hi));
    assert_eq!(app.tabs[rust].unread, 0, "the visible tab has no unread");
}

#[test]
fn join_switches_to_the_room_and_part_closes_it() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/join #Rust");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Join {
            key: None,
            room: "rust".into(),
            since: None
        }]
    );
    server(&mut app, joined("rust", "alice"));
    assert_eq!(app.current_tab().name, "rust");
    let fx = submit_line(&mut app, "/part bye all");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Part {
            room: "rust".into(),
            reason: Some("bye all".into())
        }]
    );
    server(
        &mut app,
        ServerMsg::Parted {
            room: "rust".into(),
            nick: "alice".into(),
            ts: 2,
            reason: Some("bye all".into()),
            quit: false,
        },
    );
    assert!(app.room_index("rust").is_none());
    assert_eq!(app.current_tab().name, "lobby");
}

#[test]
fn joins_parts_and_renames_update_members_with_dimmed_notices() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("lobby", "carol"));
    server(
        &mut app,
        ServerMsg::NickChanged {
            old: "bob".into(),
            new: "robert".into(),
            ts: 3,
        },
    );
    server(
        &mut app,
        ServerMsg::Parted {
            room: "lobby".into(),
            nick: "carol".into(),
            ts: 4,
            reason: Some("quit".into()),
            quit: false,
        },
    );
    assert_eq!(lobby(&app).members, ["alice", "robert"]);
    let notices: Vec<&str> = lobby(&app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Notice(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        [
            "you joined #lobby",
            "carol joined #lobby",
            "bob is now robert",
            "carol left #lobby (quit)"
        ]
    );
}

#[test]
fn our_own_rename_changes_our_nick() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/nick Alicia");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Nick {
            nick: "Alicia".into()
        }]
    );
    server(
        &mut app,
        ServerMsg::NickChanged {
            old: "alice".into(),
            new: "Alicia".into(),
            ts: 1,
        },
    );
    assert_eq!(app.nick, "Alicia");
    assert_eq!(lobby(&app).members, ["Alicia", "bob"]);
}

#[test]
fn scrolling_past_the_top_loads_older_history_once() {
    let mut app = online_in_lobby(51..=80);
    assert!(!lobby(&app).history_complete);
    let oldest = lobby(&app).oldest_message().unwrap().0;
    let mut requests = Vec::new();
    for _ in 0..5 {
        requests.extend(sent(&update(&mut app, key(KeyCode::PageUp))));
    }
    assert_eq!(
        requests,
        [ClientMsg::History {
            room: "lobby".into(),
            before: Some(oldest),
            limit: Some(100),
            after: None,
        }],
        "asked exactly once while the page is loading"
    );
    assert!(lobby(&app).loading_older);
    let at_top = lobby(&app).scroll;
    let older = (1..=50)
        .map(|s| chat("lobby", s, "bob", &format!("m{s}")))
        .collect();
    server(&mut app, history("lobby", older, false));
    assert!(!lobby(&app).loading_older);
    assert!(lobby(&app).history_complete);
    assert_eq!(lobby(&app).scroll, at_top, "the view stays where it was");
    let all = texts(&app);
    assert_eq!(
        (all.len(), all[0].as_str(), all[79].as_str()),
        (80, "m1", "m80")
    );
}

#[test]
fn new_messages_while_scrolled_up_keep_the_view_and_end_returns_to_live() {
    let mut app = online_in_lobby(1..=60);
    update(&mut app, key(KeyCode::PageUp));
    let scrolled = lobby(&app).scroll;
    assert!(scrolled > 0);
    server(
        &mut app,
        ServerMsg::Message(chat("lobby", 61, "bob", "new")),
    );
    assert_eq!(lobby(&app).scroll, scrolled + 1);
    assert_eq!(lobby(&app).new_below, 1);
    update(&mut app, key(KeyCode::End));
    assert_eq!((lobby(&app).scroll, lobby(&app).new_below), (0, 0));
    // The mouse wheel scrolls too; typing returns to live.
    let wheel = |kind| {
        Action::Mouse(MouseEvent {
            kind,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        })
    };
    update(&mut app, wheel(MouseEventKind::ScrollUp));
    assert_eq!(lobby(&app).scroll, WHEEL_ROWS);
    type_text(&mut app, "x");
    assert_eq!(lobby(&app).scroll, 0);
    // Mouse motion and clicks change nothing and need no redraw.
    app.needs_redraw = false;
    update(&mut app, wheel(MouseEventKind::Moved));
    update(&mut app, wheel(MouseEventKind::Down(MouseButton::Left)));
    assert!(!app.needs_redraw);
}

#[test]
fn a_refused_message_is_marked_and_never_resent() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "too fast");
    let Effect::Send(req) = &fx[0] else {
        panic!("{fx:?}")
    };
    server(
        &mut app,
        ServerMsg::error(ErrorCode::RateLimited, "slow down", req.id),
    );
    assert!(app.pending.is_empty());
    assert_eq!(lobby_messages(&app)[1].1, MsgState::Failed);
    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    let fx = server(&mut app, welcome("alice"));
    assert!(!sent(&fx).iter().any(|m| matches!(m, ClientMsg::Say { .. })));
}

#[test]
fn ctrl_c_sigterm_and_quit_leave_cleanly() {
    let mut app = online_in_lobby(1..=1);
    let fx = update(&mut app, ctrl('c'));
    assert_eq!(
        fx,
        [
            Effect::Send(Request::new(ClientMsg::Quit { reason: None })),
            Effect::Quit
        ]
    );
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/quit see you");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Quit {
            reason: Some("see you".into())
        }]
    );
    assert_eq!(fx.last(), Some(&Effect::Quit));
    let mut offline = App::new("alice", "x");
    assert_eq!(update(&mut offline, Action::Terminate), [Effect::Quit]);
}

#[test]
fn a_lobby_left_before_a_reconnect_stays_left() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    submit_line(&mut app, "/part lobby");
    server(
        &mut app,
        ServerMsg::Parted {
            room: "lobby".into(),
            nick: "alice".into(),
            ts: 1,
            reason: None,
            quit: false,
        },
    );
    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    let fx = server(&mut app, welcome("alice"));
    assert_eq!(
        sent(&fx),
        [
            ClientMsg::Join {
                key: None,
                room: "rust".into(),
                since: None
            },
            ClientMsg::Part {
                room: "lobby".into(),
                reason: None
            }
        ]
    );
    server(&mut app, joined("lobby", "alice"));
    assert!(
        app.room_index("lobby").is_none(),
        "the automatic join is not shown"
    );
}

#[test]
fn commands_who_rooms_help_and_errors_print_in_the_current_tab() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/who");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Who {
            room: "lobby".into()
        }]
    );
    server(
        &mut app,
        ServerMsg::Members {
            ops: Vec::new(),
            owner: None,
            voiced: Vec::new(),
            room: "lobby".into(),
            nicks: vec!["alice".into(), "bob".into()],
            truncated: false,
        },
    );
    assert_eq!(
        sent(&submit_line(&mut app, "/rooms")),
        [ClientMsg::Rooms {}]
    );
    server(
        &mut app,
        ServerMsg::RoomList {
            rooms: vec![RoomInfo {
                name: "lobby".into(),
                members: 2,
            }],
            truncated: false,
        },
    );
    submit_line(&mut app, "/bogus");
    submit_line(&mut app, "/help");
    let lines: Vec<String> = lobby(&app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Info(t) | EntryKind::Error(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines[0], "#lobby (2): alice bob");
    assert_eq!(lines[1], "rooms: #lobby (2)");
    assert!(lines[2].starts_with("unknown command /bogus"));
    assert_eq!(lines.len(), 3 + HELP.len());
}

#[test]
fn tab_completes_member_nicks_and_commands() {
    let mut app = online_in_lobby(1..=1);
    type_text(&mut app, "b");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bob: ");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/wh");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/who ");
}

#[test]
fn register_and_password_are_sent_never_kept_in_history_and_used_on_reconnect() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/register hunter2-but-longer");
    assert!(
        matches!(&sent(&fx)[..], [ClientMsg::Register { password }] if password.expose() == "hunter2-but-longer")
    );
    // Up recalls nothing: the line with the password was not remembered.
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.input.text(), "");
    assert!(app.password.is_none(), "not yet confirmed");
    server(
        &mut app,
        ServerMsg::Registered {
            nick: "alice".into(),
        },
    );
    assert_eq!(
        app.password.as_ref().map(Password::expose),
        Some("hunter2-but-longer")
    );
    // A password change takes effect once confirmed; a reconnect logs in with it.
    let fx = submit_line(&mut app, "/password hunter2-but-longer n3w-and-long");
    assert!(
        matches!(&sent(&fx)[..], [ClientMsg::SetPassword { new, .. }] if new.expose() == "n3w-and-long")
    );
    server(&mut app, ServerMsg::PasswordChanged {});
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "test".into(),
            retry_in: Duration::from_secs(1),
        }),
    );
    let fx = update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    assert!(
        matches!(&sent(&fx)[..], [ClientMsg::Hello { password: Some(p), .. }] if p.expose() == "n3w-and-long")
    );
    // The Debug of the request shows no password.
    assert!(!format!("{:?}", sent(&fx)).contains("n3w-and-long"));
}

// ---------------------------------------------------------------------------------------
// Moderation (issue 12)

use chat_shared::{BanEntry, ByeReason, ModeChange, Role, RoomNotice, ServerBanEntry};

const TS: i64 = 1_700_000_000_000;

fn topic_event(room: &str, text: &str, by: &str, seq: Option<u64>) -> ServerMsg {
    ServerMsg::Topic {
        room: room.into(),
        text: text.into(),
        by: by.into(),
        ts: TS,
        seq,
        id: seq.map(|_| Uuid::now_v7()),
    }
}

fn role_event(nick: &str, role: Role, by: &str, seq: u64) -> ServerMsg {
    ServerMsg::Role {
        was: None,
        room: "lobby".into(),
        nick: nick.into(),
        role,
        by: by.into(),
        ts: TS,
        seq: Some(seq),
        id: Some(Uuid::now_v7()),
    }
}

fn kicked(nick: &str, by: &str, reason: &str, seq: u64) -> ServerMsg {
    ServerMsg::Kicked {
        room: "lobby".into(),
        nick: nick.into(),
        by: by.into(),
        reason: reason.into(),
        ts: TS,
        seq: Some(seq),
        id: Some(Uuid::now_v7()),
    }
}

fn mode_event(change: ModeChange, by: &str, seq: Option<u64>) -> ServerMsg {
    ServerMsg::Mode {
        room: "lobby".into(),
        by: by.into(),
        ts: TS,
        change,
        seq,
        id: seq.map(|_| Uuid::now_v7()),
    }
}

/// A moderation event as a history page holds it.
fn stored(seq: u64, from: &str, event: RoomNotice) -> ChatMessage {
    ChatMessage {
        text: event.describe(from),
        event: Some(event),
        ..chat("lobby", seq, from, "")
    }
}

fn members(nicks: &[&str], ops: &[&str], voiced: &[&str], owner: Option<&str>) -> ServerMsg {
    let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    ServerMsg::Members {
        room: "lobby".into(),
        nicks: v(nicks),
        truncated: false,
        ops: v(ops),
        voiced: v(voiced),
        owner: owner.map(str::to_owned),
    }
}

/// The lobby's lines that are not messages, as the user reads them.
fn lobby_lines(app: &App) -> Vec<String> {
    lobby(app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Event { text, .. } => Some(format!("event: {text}")),
            EntryKind::Notice(t) => Some(format!("notice: {t}")),
            EntryKind::Info(t) => Some(format!("info: {t}")),
            EntryKind::Error(t) => Some(format!("error: {t}")),
            EntryKind::Message { .. } => None,
        })
        .collect()
}

fn last_line(app: &App) -> String {
    match &app.current_tab().entries.last().expect("a line").kind {
        EntryKind::Info(t) | EntryKind::Error(t) | EntryKind::Notice(t) => t.clone(),
        EntryKind::Event { text, .. } => text.clone(),
        EntryKind::Message { text, .. } => format!("message {text}"),
    }
}

fn last_error(app: &App) -> String {
    match &app.current_tab().entries.last().expect("a line").kind {
        EntryKind::Error(t) => t.clone(),
        other => panic!("expected an error line, got {other:?}"),
    }
}

fn reconnect(app: &mut App, generation: u64) -> Vec<Effect> {
    update(
        app,
        Action::Net(NetEvent::Disconnected {
            reason: "reset".into(),
            retry_in: Duration::from_secs(1),
        }),
    );
    update(app, Action::Net(NetEvent::Connected { generation }));
    server(app, welcome("alice"))
}

#[test]
fn the_topic_sent_after_joined_is_shown_once_and_not_again_on_each_reconnect() {
    let mut app = online_in_lobby(1..=2);
    server(&mut app, topic_event("lobby", "Rust 2024 🦀", "bob", None));
    assert_eq!(lobby(&app).topic, "Rust 2024 🦀");
    assert_eq!(lobby(&app).topic_by, "bob");
    reconnect(&mut app, 2);
    server(&mut app, joined("lobby", "alice"));
    server(&mut app, topic_event("lobby", "Rust 2024 🦀", "bob", None));
    let topics: Vec<String> = lobby_lines(&app)
        .into_iter()
        .filter(|l| l.contains("topic of"))
        .collect();
    assert_eq!(
        topics,
        ["notice: topic of #lobby: Rust 2024 🦀 (set by bob)"]
    );
    assert_eq!(lobby(&app).last_seq, 2, "the current topic has no seq");
}

#[test]
fn a_live_topic_event_sets_the_topic_takes_its_seq_and_an_empty_one_clears_it() {
    let mut app = online_in_lobby(1..=2);
    server(&mut app, topic_event("lobby", "new topic", "bob", Some(3)));
    assert_eq!(lobby(&app).topic, "new topic");
    assert_eq!(lobby(&app).last_seq, 3);
    server(&mut app, topic_event("lobby", "", "bob", Some(4)));
    assert_eq!(lobby(&app).topic, "");
    assert_eq!(
        lobby_lines(&app)[1..],
        [
            "event: bob set the topic: new topic",
            "event: bob cleared the topic"
        ]
    );
    // The next rejoin starts after the events, not after the last message.
    let fx = reconnect(&mut app, 2);
    assert!(matches!(
        &sent(&fx)[..],
        [ClientMsg::Join { since: Some(4), .. }]
    ));
}

#[test]
fn topic_without_text_shows_the_current_topic_and_with_text_sets_it() {
    let mut app = online_in_lobby(1..=1);
    submit_line(&mut app, "/topic");
    assert_eq!(last_line(&app), "#lobby has no topic");
    server(&mut app, topic_event("lobby", "hello 世界", "bob", None));
    submit_line(&mut app, "/topic");
    assert_eq!(
        last_line(&app),
        "topic of #lobby: hello 世界 (set by bob, 2023-11-14 22:13)"
    );
    let fx = submit_line(&mut app, "/topic  a new one ");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Topic {
            room: "lobby".into(),
            text: "a new one".into()
        }]
    );
    let fx = submit_line(&mut app, "/topic -");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Topic {
            room: "lobby".into(),
            text: String::new()
        }]
    );
    let fx = submit_line(&mut app, "/topic #rust for the rust room");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Topic {
            room: "rust".into(),
            text: "for the rust room".into()
        }]
    );
}

#[test]
fn moderation_commands_in_the_status_tab_or_offline_say_why_and_send_nothing() {
    let mut app = online_in_lobby(1..=1);
    update(&mut app, alt('1'));
    assert!(submit_line(&mut app, "/op bob").is_empty());
    assert_eq!(
        last_error(&app),
        "usage: /op [#ROOM] NICK (or use it in a room tab)"
    );
    assert!(submit_line(&mut app, "/topic").is_empty());
    assert!(last_error(&app).starts_with("usage: /topic"));
    update(&mut app, alt('2'));
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "reset".into(),
            retry_in: Duration::from_secs(1),
        }),
    );
    assert!(submit_line(&mut app, "/kick bob").is_empty());
    assert_eq!(last_error(&app), "not connected");
    assert!(submit_line(&mut app, "/klines").is_empty());
    assert_eq!(last_error(&app), "not connected");
    assert!(!app.server_bans_requested);
}

#[test]
fn role_commands_send_their_request_for_the_current_or_the_named_room() {
    let mut app = online_in_lobby(1..=1);
    let cases = [
        (
            "/op bob",
            ClientMsg::Op {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/deop bob",
            ClientMsg::Deop {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/voice 小明",
            ClientMsg::Voice {
                room: "lobby".into(),
                nick: "小明".into(),
            },
        ),
        (
            "/devoice bob",
            ClientMsg::Devoice {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/owner bob",
            ClientMsg::Owner {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/op #Rust bob",
            ClientMsg::Op {
                room: "rust".into(),
                nick: "bob".into(),
            },
        ),
    ];
    for (line, want) in cases {
        assert_eq!(sent(&submit_line(&mut app, line)), [want], "{line}");
    }
    assert!(submit_line(&mut app, "/op").is_empty());
    assert_eq!(last_error(&app), "usage: /op [#ROOM] NICK");
    assert!(submit_line(&mut app, "/voice not!a!nick").is_empty());
    assert!(last_error(&app).starts_with("nick \"not!a!nick\""));
}

#[test]
fn kick_ban_unban_bans_and_invite_send_their_requests() {
    let mut app = online_in_lobby(1..=1);
    let cases = [
        (
            "/kick bob spamming the room",
            ClientMsg::Kick {
                room: "lobby".into(),
                nick: "bob".into(),
                reason: Some("spamming the room".into()),
            },
        ),
        (
            "/kick bob",
            ClientMsg::Kick {
                room: "lobby".into(),
                nick: "bob".into(),
                reason: None,
            },
        ),
        (
            "/ban bob",
            ClientMsg::Ban {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/unban bob",
            ClientMsg::Unban {
                room: "lobby".into(),
                nick: "bob".into(),
            },
        ),
        (
            "/bans",
            ClientMsg::Bans {
                room: "lobby".into(),
            },
        ),
        (
            "/bans #rust",
            ClientMsg::Bans {
                room: "rust".into(),
            },
        ),
        (
            "/invite carol",
            ClientMsg::Invite {
                room: "lobby".into(),
                nick: "carol".into(),
            },
        ),
        (
            "/invite carol #rust",
            ClientMsg::Invite {
                room: "rust".into(),
                nick: "carol".into(),
            },
        ),
        (
            "/invite carol rust",
            ClientMsg::Invite {
                room: "rust".into(),
                nick: "carol".into(),
            },
        ),
    ];
    for (line, want) in cases {
        assert_eq!(sent(&submit_line(&mut app, line)), [want], "{line}");
    }
    assert_eq!(app.bans_requested, ["lobby", "rust"]);
}

#[test]
fn join_with_a_key_sends_it_and_the_key_is_given_again_on_rejoin() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/join #secret s3cret");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Join {
            room: "secret".into(),
            since: None,
            key: Some("s3cret".into())
        }]
    );
    server(&mut app, joined("secret", "alice"));
    let mut all = ModeChange {
        invite_only: Some(false),
        key: Some(Some("s3cret".into())),
        moderated: Some(false),
        topic_locked: Some(true),
        secret: Some(false),
    };
    let snapshot = |change: &ModeChange| ServerMsg::Mode {
        room: "secret".into(),
        by: "bob".into(),
        ts: TS,
        change: change.clone(),
        seq: None,
        id: None,
    };
    server(&mut app, snapshot(&all));
    let i = app.room_index("secret").unwrap();
    assert_eq!(app.tabs[i].modes.key.as_deref(), Some("s3cret"));
    assert!(
        app.tabs[i]
            .entries
            .iter()
            .all(|e| !matches!(e.kind, EntryKind::Event { .. })),
        "the modes after joined are state, not an event"
    );
    let fx = reconnect(&mut app, 2);
    assert!(sent(&fx).contains(&ClientMsg::Join {
        room: "secret".into(),
        since: None,
        key: Some("s3cret".into())
    }));
    // A room without a key is rejoined without one.
    server(&mut app, joined("secret", "alice"));
    all.key = Some(None);
    server(&mut app, snapshot(&all));
    let fx = reconnect(&mut app, 3);
    assert!(sent(&fx).contains(&ClientMsg::Join {
        room: "secret".into(),
        since: None,
        key: None
    }));
}

#[test]
fn mode_changes_parse_into_one_request_and_without_changes_show_the_modes() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/mode +mk hunter2 -t");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Mode {
            room: "lobby".into(),
            change: ModeChange {
                moderated: Some(true),
                key: Some(Some("hunter2".into())),
                topic_locked: Some(false),
                ..ModeChange::default()
            }
        }]
    );
    let fx = submit_line(&mut app, "/mode rust -k +is");
    assert_eq!(
        sent(&fx),
        [ClientMsg::Mode {
            room: "rust".into(),
            change: ModeChange {
                key: Some(None),
                invite_only: Some(true),
                secret: Some(true),
                ..ModeChange::default()
            }
        }]
    );
    submit_line(&mut app, "/mode");
    assert_eq!(last_line(&app), "#lobby has no modes set");
    server(
        &mut app,
        mode_event(
            ModeChange {
                topic_locked: Some(true),
                key: Some(Some("k3y".into())),
                ..ModeChange::default()
            },
            "",
            None,
        ),
    );
    assert!(submit_line(&mut app, "/mode").is_empty());
    assert_eq!(last_line(&app), "#lobby modes: +tk k3y");
    assert!(submit_line(&mut app, "/mode +k").is_empty());
    assert_eq!(last_error(&app), "usage: +k needs the key: /mode +k KEY");
    assert!(submit_line(&mut app, "/mode +o bob").is_empty());
    assert!(last_error(&app).contains("/op NICK"));
}

#[test]
fn a_live_mode_event_changes_only_what_it_names_and_is_a_line() {
    let mut app = online_in_lobby(1..=1);
    let all_off = ModeChange {
        invite_only: Some(false),
        key: Some(None),
        moderated: Some(false),
        topic_locked: Some(true),
        secret: Some(false),
    };
    server(&mut app, mode_event(all_off, "", None));
    server(
        &mut app,
        mode_event(
            ModeChange {
                moderated: Some(true),
                ..ModeChange::default()
            },
            "bob",
            Some(2),
        ),
    );
    let modes = &lobby(&app).modes;
    assert!(modes.moderated && modes.topic_locked && !modes.invite_only);
    assert_eq!(modes.flags(), "+mt");
    assert_eq!(lobby(&app).last_seq, 2);
    assert_eq!(lobby_lines(&app).last().unwrap(), "event: bob set mode +m");
}

#[test]
fn members_joined_and_role_events_keep_every_mark_up_to_date() {
    let mut app = online_in_lobby(1..=1);
    server(
        &mut app,
        members(
            &["alice", "bob", "carol"],
            &["alice", "bob"],
            &["carol"],
            Some("bob"),
        ),
    );
    let tab = lobby(&app);
    assert_eq!(
        (tab.role("alice"), tab.role("BOB"), tab.role("carol")),
        (Role::Op, Role::Owner, Role::Voice)
    );
    server(
        &mut app,
        ServerMsg::Joined {
            room: "lobby".into(),
            nick: "dave".into(),
            ts: TS,
            role: Some(Role::Op),
            account: false,
        },
    );
    assert_eq!(lobby(&app).role("dave"), Role::Op, "a returning op");
    server(&mut app, role_event("carol", Role::Member, "bob", 2));
    server(&mut app, role_event("dave", Role::Voice, "bob", 3));
    assert_eq!(lobby(&app).role("carol"), Role::Member);
    assert_eq!(lobby(&app).role("dave"), Role::Voice);
    // A rename keeps the role; leaving ends it.
    server(
        &mut app,
        ServerMsg::NickChanged {
            old: "dave".into(),
            new: "david".into(),
            ts: TS,
        },
    );
    assert_eq!(lobby(&app).role("david"), Role::Voice);
    assert_eq!(lobby(&app).role("dave"), Role::Member);
    server(
        &mut app,
        ServerMsg::Parted {
            room: "lobby".into(),
            nick: "david".into(),
            ts: TS,
            reason: None,
            quit: false,
        },
    );
    assert!(!lobby(&app).roles.contains_key("david"));
    // Handing the room over: two role events.
    server(&mut app, role_event("alice", Role::Owner, "bob", 4));
    server(&mut app, role_event("bob", Role::Op, "bob", 5));
    assert_eq!(
        (lobby(&app).role("alice"), lobby(&app).role("bob")),
        (Role::Owner, Role::Op)
    );
    let events: Vec<String> = lobby_lines(&app)
        .into_iter()
        .filter(|l| l.starts_with("event: "))
        .collect();
    assert_eq!(
        events,
        [
            "event: bob made carol a member",
            "event: bob gave dave voice",
            "event: bob made alice the owner",
            "event: bob made bob an op",
        ]
    );
    assert_eq!(lobby(&app).last_seq, 5);
}

#[test]
fn joining_as_an_op_says_so_and_who_lists_marks() {
    let mut app = online_in_lobby(1..=1);
    server(
        &mut app,
        ServerMsg::Joined {
            room: "rust".into(),
            nick: "alice".into(),
            ts: TS,
            role: Some(Role::Owner),
            account: false,
        },
    );
    let rust = app.room_index("rust").unwrap();
    assert_eq!(app.tabs[rust].role("alice"), Role::Owner);
    assert!(matches!(
        &app.tabs[rust].entries[0].kind,
        EntryKind::Notice(t) if t == "you joined #rust as its owner"
    ));
    submit_line(&mut app, "/who");
    server(
        &mut app,
        members(&["alice", "bob"], &["alice"], &["bob"], None),
    );
    assert_eq!(last_line(&app), "#lobby (2): @alice +bob");
}

#[test]
fn someone_kicked_leaves_the_member_list_with_a_line_saying_who_and_why() {
    let mut app = online_in_lobby(1..=1);
    server(
        &mut app,
        members(&["alice", "bob"], &["alice"], &["bob"], None),
    );
    server(&mut app, kicked("bob", "alice", "spam", 2));
    assert_eq!(lobby(&app).members, ["alice"]);
    assert!(!lobby(&app).roles.contains_key("bob"));
    assert_eq!(
        lobby_lines(&app).last().unwrap(),
        "event: bob was kicked by alice (spam)"
    );
    assert!(lobby(&app).joined);
}

#[test]
fn when_we_are_kicked_the_tab_stays_marked_not_joined_and_is_not_rejoined() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    server(&mut app, kicked("alice", "bob", "", 2));
    let tab = lobby(&app);
    assert!(!tab.joined);
    assert!(tab.members.is_empty());
    assert_eq!(
        lobby_lines(&app)[lobby_lines(&app).len() - 2..],
        [
            "event: alice was kicked by bob",
            "error: you were kicked from #lobby by bob: /join lobby to go back in, /part to \
             close the tab"
        ]
    );
    // Typing there says why instead of sending.
    assert!(submit_line(&mut app, "hello?").is_empty());
    assert!(last_error(&app).starts_with("you are not in #lobby"));
    assert!(submit_line(&mut app, "/topic x").is_empty());
    assert!(last_error(&app).starts_with("you are not in #lobby"));
    // A reconnect rejoins the other rooms only (and parts the lobby the server puts us in).
    let fx = reconnect(&mut app, 2);
    let joins: Vec<String> = sent(&fx)
        .into_iter()
        .filter_map(|m| match m {
            ClientMsg::Join { room, .. } => Some(room),
            _ => None,
        })
        .collect();
    assert_eq!(joins, ["rust"]);
    // /join goes back in.
    let fx = submit_line(&mut app, "/join lobby");
    assert!(matches!(&sent(&fx)[..], [ClientMsg::Join { room, .. }] if room == "lobby"));
}

#[test]
fn a_kick_in_a_background_tab_marks_it() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    server(
        &mut app,
        ServerMsg::Kicked {
            room: "rust".into(),
            nick: "alice".into(),
            by: "bob".into(),
            reason: "bye".into(),
            ts: TS,
            seq: Some(1),
            id: Some(Uuid::now_v7()),
        },
    );
    let rust = app.room_index("rust").unwrap();
    assert!(app.tabs[rust].mentioned);
    assert!(!app.tabs[rust].joined);
}

#[test]
fn parting_a_tab_we_were_kicked_from_closes_it_without_asking_the_server() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    update(&mut app, alt('3'));
    server(
        &mut app,
        ServerMsg::Kicked {
            room: "rust".into(),
            nick: "alice".into(),
            by: "bob".into(),
            reason: String::new(),
            ts: TS,
            seq: Some(1),
            id: Some(Uuid::now_v7()),
        },
    );
    assert!(submit_line(&mut app, "/part").is_empty());
    assert!(app.room_index("rust").is_none());
}

#[test]
fn notices_in_a_history_page_are_lines_of_their_own_never_messages_or_duplicates() {
    let mut app = online_in_lobby(1..=2);
    let live_kick = kicked("carol", "bob", "spam", 4);
    let ServerMsg::Kicked {
        id: Some(kick_id), ..
    } = live_kick
    else {
        unreachable!()
    };
    server(&mut app, live_kick);
    // A page that overlaps: the kick came live already, the topic did not.
    let mut kick = stored(
        4,
        "bob",
        RoomNotice::Kicked {
            nick: "carol".into(),
            reason: "spam".into(),
        },
    );
    kick.id = kick_id;
    let topic = stored(3, "bob", RoomNotice::Topic { text: "t1".into() });
    server(
        &mut app,
        history("lobby", vec![topic.clone(), kick.clone()], false),
    );
    server(&mut app, history("lobby", vec![topic, kick], false));
    let entries: Vec<String> = lobby(&app)
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { text, .. } => Some(format!("<> {text}")),
            EntryKind::Event { text, .. } => Some(format!("-- {text}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        entries,
        [
            "<> m1",
            "<> m2",
            "-- bob set the topic: t1",
            "-- carol was kicked by bob (spam)",
        ]
    );
    assert_eq!(lobby(&app).last_seq, 4);
}

#[test]
fn a_live_event_already_shown_from_history_is_not_shown_again() {
    let mut app = online_in_lobby(1..=1);
    let page_role = stored(
        2,
        "alice",
        RoomNotice::Role {
            was: None,
            nick: "bob".into(),
            role: Role::Op,
        },
    );
    server(&mut app, history("lobby", vec![page_role.clone()], false));
    server(
        &mut app,
        ServerMsg::Role {
            was: None,
            room: "lobby".into(),
            nick: "bob".into(),
            role: Role::Op,
            by: "alice".into(),
            ts: page_role.ts,
            seq: Some(2),
            id: Some(page_role.id),
        },
    );
    let events = lobby(&app)
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Event { .. }))
        .count();
    assert_eq!(events, 1);
    assert_eq!(
        lobby(&app).role("bob"),
        Role::Op,
        "the live copy still applies"
    );
}

#[test]
fn the_joins_history_never_replays_an_old_topic_over_the_current_one() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    let room = |m: ChatMessage| ChatMessage {
        room: "rust".into(),
        ..m
    };
    server(&mut app, topic_event("rust", "current", "bob", None));
    let old = room(stored(1, "bob", RoomNotice::Topic { text: "old".into() }));
    let older_mode = room(stored(
        2,
        "bob",
        RoomNotice::Mode(ModeChange {
            moderated: Some(true),
            ..ModeChange::default()
        }),
    ));
    server(&mut app, history("rust", vec![old, older_mode], false));
    let rust = app.room_index("rust").unwrap();
    assert_eq!(app.tabs[rust].topic, "current");
    assert!(!app.tabs[rust].modes.moderated);
    assert_eq!(app.tabs[rust].last_seq, 2);
}

#[test]
fn after_lagged_a_topic_from_the_fetched_page_is_taken_in_but_an_older_page_is_not() {
    let mut app = online_in_lobby(1..=2);
    server(&mut app, topic_event("lobby", "before", "bob", None));
    server(
        &mut app,
        ServerMsg::Lagged {
            room: "lobby".into(),
            missed: 2,
        },
    );
    let gap = vec![
        stored(
            3,
            "bob",
            RoomNotice::Topic {
                text: "during the lag".into(),
            },
        ),
        chat("lobby", 4, "bob", "m4"),
    ];
    server(&mut app, history("lobby", gap, false));
    assert_eq!(lobby(&app).topic, "during the lag");
    // A page of older history (scrolling up) holds older topics: they are lines only.
    lobby_tab_mut(&mut app).loading_older = true;
    let older = vec![stored(
        0,
        "bob",
        RoomNotice::Topic {
            text: "ancient".into(),
        },
    )];
    server(&mut app, history("lobby", older, false));
    assert_eq!(lobby(&app).topic, "during the lag");
    assert!(lobby_lines(&app).contains(&"event: bob set the topic: ancient".to_owned()));
}

fn lobby_tab_mut(app: &mut App) -> &mut crate::app::Tab {
    let i = app.room_index("lobby").unwrap();
    &mut app.tabs[i]
}

#[test]
fn a_live_event_past_a_hole_fetches_the_hole_before_it() {
    let mut app = online_in_lobby(1..=3);
    let ev = role_event("bob", Role::Voice, "alice", 6);
    let ServerMsg::Role { id: Some(id), .. } = ev else {
        unreachable!()
    };
    let fx = server(&mut app, ev);
    assert_eq!(
        sent(&fx),
        [ClientMsg::History {
            room: "lobby".into(),
            before: Some(id),
            limit: Some(2),
            after: None,
        }]
    );
}

#[test]
fn scrolling_up_pages_from_the_oldest_event_when_the_page_begins_with_one() {
    let mut app = online_in_lobby(51..=60);
    let first = stored(50, "bob", RoomNotice::Topic { text: "t".into() });
    server(&mut app, history("lobby", vec![first.clone()], false));
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.extend(sent(&update(&mut app, key(KeyCode::PageUp))));
    }
    assert_eq!(
        requests,
        [ClientMsg::History {
            room: "lobby".into(),
            before: Some(first.id),
            limit: Some(100),
            after: None,
        }]
    );
}

#[test]
fn an_invitation_is_a_line_and_ctrl_j_joins_that_room_once() {
    let mut app = online_in_lobby(1..=1);
    assert!(
        update(&mut app, ctrl('j')).is_empty(),
        "nothing to accept yet"
    );
    server(
        &mut app,
        ServerMsg::Invited {
            room: "secret".into(),
            by: "bob".into(),
        },
    );
    assert_eq!(
        last_line(&app),
        "bob invites you to #secret: press Ctrl-J to join (or /join secret)"
    );
    let fx = update(&mut app, ctrl('j'));
    assert!(matches!(
        &sent(&fx)[..],
        [ClientMsg::Join { room, key: None, .. }] if room == "secret"
    ));
    server(&mut app, joined("secret", "alice"));
    assert_eq!(app.current_tab().name, "secret");
    assert!(update(&mut app, ctrl('j')).is_empty(), "used up");
}

#[test]
fn bans_lists_every_ban_but_the_answer_to_ban_is_only_counted() {
    let mut app = online_in_lobby(1..=1);
    let list = |nicks: &[&str]| ServerMsg::BanList {
        room: "lobby".into(),
        bans: nicks
            .iter()
            .map(|n| BanEntry {
                nick: (*n).into(),
                by: "alice".into(),
                ts: TS,
            })
            .collect(),
    };
    submit_line(&mut app, "/ban bob");
    server(&mut app, list(&["bob"]));
    assert_eq!(last_line(&app), "1 ban in #lobby now (/bans lists them)");
    submit_line(&mut app, "/bans");
    server(&mut app, list(&["bob", "小明"]));
    let lines = lobby_lines(&app);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "info: 2 bans in #lobby",
            "info:   bob (by alice, 2023-11-14 22:13)",
            "info:   小明 (by alice, 2023-11-14 22:13)",
        ]
    );
    assert!(app.bans_requested.is_empty());
    // The banned nicks complete /unban.
    type_text(&mut app, "/unban 小");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/unban 小明 ");
}

#[test]
fn klines_lists_server_bans_and_kline_takes_a_duration_in_seconds() {
    let mut app = online_in_lobby(1..=1);
    let fx = submit_line(&mut app, "/kline 203.0.113.0/24 2h flooding the lobby");
    assert_eq!(
        sent(&fx),
        [ClientMsg::ServerBan {
            mask: "203.0.113.0/24".into(),
            duration_s: Some(7200),
            reason: Some("flooding the lobby".into())
        }]
    );
    let fx = submit_line(&mut app, "/kline mallory spam");
    assert_eq!(
        sent(&fx),
        [ClientMsg::ServerBan {
            mask: "mallory".into(),
            duration_s: None,
            reason: Some("spam".into())
        }]
    );
    assert_eq!(
        sent(&submit_line(&mut app, "/unkline mallory")),
        [ClientMsg::ServerUnban {
            mask: "mallory".into()
        }]
    );
    let ban = ServerBanEntry {
        mask: "203.0.113.0/24".into(),
        by: "alice".into(),
        reason: "flooding".into(),
        ts: TS,
        expires: Some(TS + 7_200_000),
    };
    let answer = |bans: Vec<ServerBanEntry>| ServerMsg::ServerBanList { bans };
    server(&mut app, answer(vec![ban.clone()]));
    assert_eq!(
        last_line(&app),
        "1 server ban in force (/klines lists them)"
    );
    assert_eq!(
        sent(&submit_line(&mut app, "/klines")),
        [ClientMsg::ServerBans {}]
    );
    let permanent = ServerBanEntry {
        mask: "mallory".into(),
        expires: None,
        ..ban.clone()
    };
    server(&mut app, answer(vec![ban, permanent]));
    let lines = lobby_lines(&app);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "info: 2 server bans",
            "info:   203.0.113.0/24: flooding (by alice, 2023-11-14 22:13; until 2023-11-15 00:13)",
            "info:   mallory: flooding (by alice, 2023-11-14 22:13; permanent)",
        ]
    );
    assert!(submit_line(&mut app, "/kline 1.2.3.4 2h").is_empty());
    assert!(last_error(&app).starts_with("usage: /kline MASK [DURATION] REASON"));
}

#[test]
fn kill_sends_its_request_and_the_servers_notice_is_a_line() {
    let mut app = online_in_lobby(1..=1);
    assert_eq!(
        sent(&submit_line(&mut app, "/kill mallory go away")),
        [ClientMsg::Kill {
            nick: "mallory".into(),
            reason: Some("go away".into())
        }]
    );
    server(
        &mut app,
        ServerMsg::Notice {
            text: "mallory was disconnected".into(),
        },
    );
    assert_eq!(last_line(&app), "mallory was disconnected");
    assert!(submit_line(&mut app, "/kill").is_empty());
    assert_eq!(last_error(&app), "usage: /kill NICK [REASON]");
}

#[test]
fn a_join_refused_for_a_ban_a_key_or_an_invitation_says_why_in_plain_words() {
    let mut app = online_in_lobby(1..=1);
    let refuse = |app: &mut App, fx: &[Effect], code, message: &str| {
        let [Effect::Send(req)] = fx else {
            panic!("{fx:?}")
        };
        server(app, ServerMsg::error(code, message, req.id));
    };
    let fx = submit_line(&mut app, "/join rust");
    refuse(&mut app, &fx, ErrorCode::Banned, "you are banned from rust");
    assert_eq!(
        last_error(&app),
        "you are banned from #rust: you are banned from rust"
    );
    let fx = submit_line(&mut app, "/join vip");
    refuse(&mut app, &fx, ErrorCode::InviteOnly, "vip is invite-only");
    assert_eq!(
        last_error(&app),
        "#vip is invite-only: vip is invite-only (an op can /invite you)"
    );
    let fx = submit_line(&mut app, "/join locked wrong");
    refuse(&mut app, &fx, ErrorCode::BadKey, "wrong key");
    assert_eq!(
        last_error(&app),
        "#locked needs its key: wrong key (/join locked KEY)"
    );
    assert!(app.joins_in_flight.is_empty());
    assert!(app.focus_on_join.is_none());
}

#[test]
fn a_rejoin_refused_after_a_reconnect_leaves_the_tab_not_joined() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    let fx = reconnect(&mut app, 2);
    let id = fx
        .iter()
        .find_map(|e| match e {
            Effect::Send(Request {
                id,
                msg: ClientMsg::Join { room, .. },
            }) if room == "rust" => *id,
            _ => None,
        })
        .expect("the rust rejoin carries an id");
    server(
        &mut app,
        ServerMsg::error(ErrorCode::Banned, "banned from rust", Some(id)),
    );
    let rust = app.room_index("rust").unwrap();
    assert!(!app.tabs[rust].joined);
    assert!(matches!(
        &app.tabs[rust].entries.last().unwrap().kind,
        EntryKind::Error(t) if t == "you are banned from #rust: banned from rust"
    ));
    let fx = reconnect(&mut app, 3);
    assert!(
        !sent(&fx)
            .iter()
            .any(|m| matches!(m, ClientMsg::Join { room, .. } if room == "rust")),
        "not tried again on every reconnect"
    );
}

#[test]
fn killed_banned_or_replaced_by_the_server_stops_reconnecting_until_reconnect() {
    for (reason, said) in [
        (ByeReason::Killed, "a server admin disconnected you: spam"),
        (ByeReason::Banned, "you are banned from this server: spam"),
        (
            ByeReason::Replaced,
            "your account logged in from another connection: spam",
        ),
    ] {
        let mut app = online_in_lobby(1..=1);
        server(&mut app, joined("rust", "alice"));
        let fx = server(
            &mut app,
            ServerMsg::Bye {
                reason,
                message: Some("spam".into()),
            },
        );
        assert_eq!(fx, [Effect::StopReconnecting]);
        let want = format!("{said}. Not reconnecting: /reconnect to try again");
        assert!(
            lobby_lines(&app).contains(&format!("error: {want}")),
            "{:?}",
            lobby_lines(&app)
        );
        assert!(matches!(
            &app.tabs[0].entries.last().unwrap().kind,
            EntryKind::Error(t) if *t == want
        ));
        update(
            &mut app,
            Action::Net(NetEvent::Disconnected {
                reason: "closed after the server's bye".into(),
                retry_in: Duration::ZERO,
            }),
        );
        assert!(matches!(app.conn, ConnState::Stopped { .. }));
        // Said once where it was said; the other rooms are told they are cut off.
        let lines = lobby_lines(&app);
        assert_eq!(lines.iter().filter(|l| l.contains("econnect")).count(), 1);
        let rust = app.room_index("rust").unwrap();
        let why = reason.as_str();
        assert!(matches!(
            &app.tabs[rust].entries.last().unwrap().kind,
            EntryKind::Error(t)
                if *t == format!("disconnected ({why}); not reconnecting: /reconnect to try again")
        ));
        // A connection begun before the hold took effect is not greeted.
        let fx = update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
        assert!(fx.is_empty());
        assert!(matches!(app.conn, ConnState::Stopped { .. }));
        let fx = submit_line(&mut app, "/reconnect");
        assert_eq!(fx, [Effect::Reconnect]);
        assert_eq!(app.conn, ConnState::Connecting { attempt: 0 });
        let fx = update(&mut app, Action::Net(NetEvent::Connected { generation: 3 }));
        assert!(matches!(&sent(&fx)[..], [ClientMsg::Hello { .. }]));
    }
}

#[test]
fn reconnect_during_a_backoff_cuts_it_short_and_while_connecting_does_nothing() {
    let mut app = online_in_lobby(1..=1);
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "reset".into(),
            retry_in: Duration::from_secs(8),
        }),
    );
    assert_eq!(submit_line(&mut app, "/reconnect"), [Effect::Reconnect]);
    assert!(submit_line(&mut app, "/reconnect").is_empty());
    assert_eq!(last_line(&app), "already connecting");
}

#[test]
fn bans_asked_for_another_room_are_listed_where_they_were_asked() {
    let mut app = online_in_lobby(1..=1);
    server(&mut app, joined("rust", "alice"));
    submit_line(&mut app, "/bans #rust");
    server(
        &mut app,
        ServerMsg::BanList {
            room: "rust".into(),
            bans: Vec::new(),
        },
    );
    assert_eq!(app.current_tab().name, "lobby");
    assert_eq!(last_line(&app), "no bans in #rust");
}

#[test]
fn other_byes_still_reconnect_as_before() {
    let mut app = online_in_lobby(1..=1);
    let fx = server(
        &mut app,
        ServerMsg::Bye {
            reason: ByeReason::Shutdown,
            message: None,
        },
    );
    assert!(fx.is_empty());
    assert!(app.hold.is_none());
    assert_eq!(last_error(&app), "server closed the connection (shutdown)");
    assert!(submit_line(&mut app, "/reconnect").is_empty());
    assert_eq!(last_line(&app), "already connected");
}

#[test]
fn tab_completes_the_moderation_commands_and_nicks_from_other_rooms_for_invite() {
    let mut app = online_in_lobby(1..=1);
    type_text(&mut app, "/kl");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/kline ");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/klines ");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/dev");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/devoice ");
    type_text(&mut app, "b");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/devoice bob ");
    // carol is in #rust only: /invite offers her in the lobby, /op does not.
    server(&mut app, joined("rust", "alice"));
    server(
        &mut app,
        ServerMsg::Members {
            room: "rust".into(),
            nicks: vec!["alice".into(), "carol".into()],
            truncated: false,
            ops: Vec::new(),
            voiced: Vec::new(),
            owner: None,
        },
    );
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/invite ca");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/invite carol ");
    update(&mut app, ctrl('u'));
    type_text(&mut app, "/op ca");
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/op ca", "carol is not in the lobby");
}

#[test]
fn help_lists_every_moderation_command_and_the_invite_key() {
    let help = HELP.join("\n");
    for command in [
        "/topic",
        "/op",
        "/deop",
        "/voice",
        "/devoice",
        "/owner",
        "/kick",
        "/ban",
        "/unban",
        "/bans",
        "/invite",
        "/join ROOM [KEY]",
        "/mode",
        "/kill",
        "/kline",
        "/unkline",
        "/klines",
        "/reconnect",
        "Ctrl-J",
    ] {
        assert!(help.contains(command), "{command} missing from /help");
    }
    for command in COMMANDS {
        assert!(help.contains(command), "{command} missing from /help");
    }
}

// ---------------------------------------------------------------------------------------
// File sharing (issue 15)

const SHA: &str = "3a7b000000000000000000000000000000000000000000000000000000000ae1";

fn file_info(n: u128, name: &str, size: u64) -> FileInfo {
    FileInfo {
        id: format!("{n:032x}"),
        name: name.into(),
        size,
        sha256: SHA.into(),
        url: format!("http://127.0.0.1:7878/files/{n:032x}/{name}"),
    }
}

fn shared_file(room: &str, seq: u64, from: &str, id: Uuid, file: FileInfo) -> ChatMessage {
    let mut m = chat(room, seq, from, &format!("[file] {}", file.name));
    m.id = id;
    m.file = Some(Box::new(file));
    m
}

fn transfer_event(app: &mut App, ev: TransferEvent) -> Vec<Effect> {
    update(app, Action::Transfer(ev))
}

/// `/upload` in the lobby up to its slot: the transfer's id and the effects of the slot.
fn upload_to_slot(app: &mut App, offset: u64) -> (Uuid, Vec<Effect>) {
    let fx = submit_line(app, "/upload ~/docs/报告.pdf");
    let id = match &fx[..] {
        [Effect::Hash { id, path }] => {
            assert_eq!(path, &std::path::PathBuf::from("~/docs/报告.pdf"));
            *id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(app.transfers[0].state, TransferState::Hashing);
    let fx = transfer_event(
        app,
        TransferEvent::Hashed {
            id,
            size: 10 << 20,
            sha256: SHA.into(),
        },
    );
    match &fx[..] {
        [Effect::Send(r)] => {
            assert_eq!(r.id, Some(id), "the request id is the upload's");
            assert_eq!(
                r.msg,
                ClientMsg::Upload {
                    name: "报告.pdf".into(),
                    size: 10 << 20,
                    sha256: SHA.into(),
                    room: Some("lobby".into()),
                    to: None,
                }
            );
        }
        other => panic!("{other:?}"),
    }
    let fx = server(app, slot(id, offset));
    (id, fx)
}

/// The server's slot for upload `id`, at `offset`.
fn slot(id: Uuid, offset: u64) -> ServerMsg {
    ServerMsg::UploadSlot {
        ref_id: id,
        url: "http://127.0.0.1:7878/tus/abc".into(),
        expires: 0,
        offset,
    }
}

#[test]
fn upload_hashes_asks_for_a_slot_uploads_from_its_offset_and_ends_with_the_message() {
    let mut app = online_in_lobby(1..=2);
    let (id, fx) = upload_to_slot(&mut app, 4096);
    assert_eq!(
        fx,
        [Effect::Upload(UploadJob {
            id,
            path: "~/docs/报告.pdf".into(),
            url: "http://127.0.0.1:7878/tus/abc".into(),
            offset: 4096,
            size: 10 << 20,
        })]
    );
    transfer_event(
        &mut app,
        TransferEvent::Progress {
            id,
            done: 4 << 20,
            at_ms: 1_000,
        },
    );
    assert_eq!(app.transfers[0].percent(), 40);
    transfer_event(&mut app, TransferEvent::Uploaded { id });
    assert_eq!(app.transfers[0].state, TransferState::Sharing);
    // The server's message with the upload's id is the acknowledgement.
    let file = file_info(1, "报告.pdf", 10 << 20);
    server(
        &mut app,
        ServerMsg::Message(shared_file("lobby", 3, "alice", id, file)),
    );
    assert_eq!(
        app.transfers[0].state,
        TransferState::Done {
            detail: "#lobby".into()
        }
    );
    assert_eq!(app.files.len(), 1);
    assert_eq!(app.file_numbers["00000000000000000000000000000001"], 1);
}

#[test]
fn after_a_reconnect_the_upload_asks_for_its_slot_again_with_the_same_id() {
    let mut app = online_in_lobby(1..=2);
    let (id, _) = upload_to_slot(&mut app, 0);
    transfer_event(
        &mut app,
        TransferEvent::Stalled {
            id,
            reason: "connection refused".into(),
        },
    );
    update(
        &mut app,
        Action::Net(NetEvent::Disconnected {
            reason: "reset".into(),
            retry_in: Duration::from_secs(1),
        }),
    );
    update(&mut app, Action::Net(NetEvent::Connected { generation: 2 }));
    let fx = server(&mut app, welcome("alice"));
    let again: Vec<&Request> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Send(r) if matches!(r.msg, ClientMsg::Upload { .. }) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, Some(id));
    assert_eq!(app.transfers[0].state, TransferState::WaitingSlot);
    // The same slot, with what the server has: the upload goes on from there.
    let fx = server(&mut app, slot(id, 4 << 20));
    assert!(matches!(&fx[..], [Effect::Upload(job)] if job.offset == 4 << 20 && job.id == id));
    assert_eq!(app.transfers[0].done, 4 << 20);
    // While the task runs, the slot a later reconnect gets changes nothing.
    let fx = server(&mut app, slot(id, 5 << 20));
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn a_stalled_upload_asks_again_after_a_while_and_a_gone_slot_at_once() {
    let mut app = online_in_lobby(1..=2);
    app.now_ms = 1_000_000;
    let (id, _) = upload_to_slot(&mut app, 0);
    transfer_event(
        &mut app,
        TransferEvent::Stalled {
            id,
            reason: "no route".into(),
        },
    );
    let uploads = |fx: &[Effect]| {
        sent(fx)
            .into_iter()
            .filter(|m| matches!(m, ClientMsg::Upload { .. }))
            .count()
    };
    let fx = update(&mut app, Action::Tick { now_ms: 1_005_000 });
    assert_eq!(uploads(&fx), 0, "not yet");
    let fx = update(&mut app, Action::Tick { now_ms: 1_010_000 });
    assert_eq!(uploads(&fx), 1);
    let fx = transfer_event(&mut app, TransferEvent::SlotGone { id });
    assert_eq!(uploads(&fx), 1);
}

#[test]
fn a_slot_gone_again_without_progress_ends_the_upload_instead_of_asking_for_ever() {
    let mut app = online_in_lobby(1..=2);
    let (id, _) = upload_to_slot(&mut app, 0);
    let uploads = |fx: &[Effect]| {
        sent(fx)
            .into_iter()
            .filter(|m| matches!(m, ClientMsg::Upload { .. }))
            .count()
    };
    // Lost once (expired, a server restart): asked for again, and it moves on.
    let fx = transfer_event(&mut app, TransferEvent::SlotGone { id });
    assert_eq!(uploads(&fx), 1);
    server(&mut app, slot(id, 0));
    let progress = |done| TransferEvent::Progress { id, done, at_ms: 1 };
    transfer_event(&mut app, progress(1 << 20));
    let fx = transfer_event(&mut app, TransferEvent::SlotGone { id });
    assert_eq!(uploads(&fx), 1, "it had moved since the last loss");
    server(&mut app, slot(id, 1 << 20));
    // The new slot's link is gone at once too: the link does not work, so it ends.
    let fx = transfer_event(&mut app, TransferEvent::SlotGone { id });
    assert_eq!(fx, [Effect::Cancel(id)]);
    assert!(matches!(
        &app.transfers[0].state,
        TransferState::Failed { error } if error.contains("--public-url")
    ));
}

#[test]
fn an_error_about_the_upload_ends_it_with_the_reason_and_stops_its_task() {
    let mut app = online_in_lobby(1..=2);
    let (id, _) = upload_to_slot(&mut app, 0);
    let fx = server(
        &mut app,
        ServerMsg::Error {
            code: ErrorCode::ChecksumMismatch,
            message: "the file does not match its sha256".into(),
            ref_id: Some(id),
            retry_after_ms: None,
        },
    );
    assert_eq!(fx, [Effect::Cancel(id)]);
    assert!(matches!(
        &app.transfers[0].state,
        TransferState::Failed { error } if error.contains("SHA-256 did not match")
    ));
    assert!(last_line(&app).starts_with("upload of 报告.pdf failed"));
    // Its task's last words change nothing any more.
    assert!(transfer_event(&mut app, TransferEvent::Uploaded { id }).is_empty());
}

#[test]
fn upload_targets_the_current_tab_or_the_named_room_or_nick() {
    let mut app = online_in_lobby(1..=1);
    let target = |app: &App| app.transfers.last().unwrap().target.clone();
    submit_line(&mut app, "/upload a.txt");
    assert_eq!(target(&app), Some(Target::Room("lobby".into())));
    submit_line(&mut app, "/upload my notes.txt #Rust");
    assert_eq!(target(&app), Some(Target::Room("rust".into())));
    assert_eq!(app.transfers.last().unwrap().name, "my notes.txt");
    submit_line(&mut app, "/upload a.txt @小明");
    assert_eq!(target(&app), Some(Target::Nick("小明".into())));
    app.select(0);
    assert!(submit_line(&mut app, "/upload a.txt").is_empty());
    assert_eq!(
        app.transfers.len(),
        3,
        "nothing to share with in the status tab"
    );
}

#[test]
fn files_are_numbered_as_they_appear_and_download_takes_the_number_or_the_id() {
    let mut app = online_in_lobby(1..=1);
    app.download_dir = "/tmp/dl".into();
    let a = file_info(0xa1, "报告.pdf", 1_258_291);
    let b = file_info(0xb2, "photo.jpg", 2048);
    let page = history(
        "lobby",
        vec![shared_file("lobby", 2, "bob", Uuid::now_v7(), a.clone())],
        false,
    );
    server(&mut app, page.clone());
    server(
        &mut app,
        ServerMsg::Message(shared_file("lobby", 3, "bob", Uuid::now_v7(), b.clone())),
    );
    // Seen again (a history page overlapping): keeps its number.
    server(&mut app, page);
    assert_eq!(app.files, [a.clone(), b.clone()]);

    let fx = submit_line(&mut app, "/download 2");
    match &fx[..] {
        [Effect::Download(job)] => {
            assert_eq!(job.file, b);
            assert_eq!(job.dir, std::path::PathBuf::from("/tmp/dl"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        submit_line(&mut app, "/download 2").is_empty(),
        "already downloading"
    );
    let fx = submit_line(&mut app, &format!("/download {} ~/in here", a.id));
    assert!(
        matches!(&fx[..], [Effect::Download(job)] if job.file == a && job.dir == std::path::Path::new("~/in here"))
    );
    assert!(submit_line(&mut app, "/download 3").is_empty());
    assert!(
        last_line(&app).contains("files 1 to 2"),
        "{}",
        last_line(&app)
    );

    // Saved: /transfers tells where.
    let id = app.transfers[0].id;
    transfer_event(
        &mut app,
        TransferEvent::Saved {
            id,
            path: "/tmp/dl/photo (1).jpg".into(),
        },
    );
    submit_line(&mut app, "/transfers");
    let lines = lobby_lines(&app);
    let lines: Vec<&str> = lines.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(
        lines,
        [
            "info: 2 ↓ 报告.pdf: downloading 0% (0 B of 1.2 MiB)",
            "info: 1 ↓ photo.jpg: saved as /tmp/dl/photo (1).jpg",
            "info: transfers (1 active):",
        ]
    );
}

#[test]
fn a_shared_dm_file_is_numbered_and_acknowledges_our_upload_to_a_nick() {
    let mut app = online_in_lobby(1..=1);
    submit_line(&mut app, "/upload a.bin @bob");
    let id = app.transfers[0].id;
    let file = file_info(7, "a.bin", 10);
    server(
        &mut app,
        ServerMsg::Dm(DirectMessage {
            id,
            from: "alice".into(),
            to: "bob".into(),
            text: "[file] a.bin".into(),
            ts: 1_700_000_000_000,
            file: Some(Box::new(file.clone())),
            account: false,
        }),
    );
    assert_eq!(app.files, [file]);
    assert_eq!(
        app.transfers[0].state,
        TransferState::Done {
            detail: "@bob".into()
        }
    );
}
