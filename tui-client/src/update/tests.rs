//! Unit tests of `update`: actions in, state and effects checked. No terminal, no network.

use super::*;
use chat_shared::{DirectMessage, Password, RoomInfo};
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
            Effect::Quit => None,
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
            limit: Some(3)
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
            ClientMsg::History { room, before: None, limit: Some(_) },
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
            Effect::Quit => panic!("no quit expected"),
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
            limit: Some(100)
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
