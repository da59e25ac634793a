//! View tests: the state rendered on ratatui's `TestBackend` at fixed sizes, compared with
//! insta snapshots (`src/view/snapshots`). Times are pinned to UTC through the model.

use std::time::{Duration, Instant};

use chat_shared::ChatMessage;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use uuid::Uuid;

use super::*;
use crate::app::{App, ConnState, EntryKind, MsgState, TabKind};

/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000;

fn msg(room: &str, seq: u64, from: &str, text: &str) -> ChatMessage {
    ChatMessage {
        event: None,
        id: Uuid::from_u128(u128::from(seq) + 1000),
        room: room.into(),
        seq,
        from: from.into(),
        text: text.into(),
        ts: T0 + seq as i64 * 60_000,
        action: false,
        file: None,
        account: false,
    }
}

/// alice in a busy lobby with CJK, emoji, an action, a mention, notices, a pending and a
/// missed message; more tabs with unread counts.
fn busy_app() -> App {
    let mut app = App::new("alice", "127.0.0.1:7878");
    app.conn = ConnState::Online;
    app.rtt = Some(Duration::from_millis(12));
    app.now_ms = T0;
    let lobby = app.room_tab("lobby");
    app.select(lobby);
    let tab = &mut app.tabs[lobby];
    tab.joined = true;
    tab.set_members(vec![
        "alice".into(),
        "bob".into(),
        "小明".into(),
        "たなか".into(),
    ]);
    tab.push(T0, EntryKind::Notice("you joined #lobby".into()));
    tab.insert_message(&msg("lobby", 1, "bob", "hello everyone"), MsgState::Normal);
    tab.insert_message(
        &msg("lobby", 2, "小明", "你好！今天天气很好。"),
        MsgState::Normal,
    );
    tab.insert_message(
        &msg("lobby", 3, "たなか", "こんにちは 🌸 よろしくお願いします"),
        MsgState::Normal,
    );
    let mut action = msg("lobby", 4, "bob", "waves 👋🏽");
    action.action = true;
    tab.insert_message(&action, MsgState::Normal);
    tab.insert_message(
        &msg(
            "lobby",
            5,
            "bob",
            "alice: this is a long message that has to wrap onto the next row because it \
             does not fit",
        ),
        MsgState::Normal,
    );
    tab.insert_message(
        &msg("lobby", 6, "小明", "我不在的时候说的话"),
        MsgState::Missed,
    );
    tab.push(
        T0 + 400_000,
        EntryKind::Notice("carol joined #lobby".into()),
    );
    tab.push_pending(
        Uuid::from_u128(1),
        "alice",
        "on its way… 🚀",
        false,
        T0 + 420_000,
    );
    let rust = app.room_tab("rust");
    app.tabs[rust].unread = 3;
    let dm = app.dm_tab("小明");
    app.tabs[dm].unread = 1;
    app.tabs[dm].mentioned = true;
    app.input.insert_str("typing 中文 and emoji 😀");
    app
}

#[track_caller]
fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| view(app, f)).unwrap();
    terminal
}

#[test]
fn lobby_80x24_with_cjk_emoji_members_and_tabs() {
    let app = busy_app();
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn narrow_40x12_hides_members_and_wraps_by_width() {
    let mut app = busy_app();
    // Longer than the 38 input columns: the line scrolls horizontally to the cursor.
    app.input.insert_str(" and more 日本語もある");
    app.input.scroll_to_cursor(input_columns(40));
    insta::assert_snapshot!(render(&app, 40, 12).backend());
}

#[test]
fn scrolled_up_shows_the_new_messages_marker() {
    let mut app = busy_app();
    app.current_tab_mut().scroll = 4;
    app.current_tab_mut().new_below = 2;
    insta::assert_snapshot!(render(&app, 60, 12).backend());
}

#[test]
fn offline_status_and_dm_tab() {
    let mut app = busy_app();
    app.conn = ConnState::Offline {
        reason: "connection refused".into(),
        retry_in: Duration::from_millis(2000),
    };
    app.rtt = None;
    let dm = app.dm_index("小明").unwrap();
    app.select(dm);
    let tab = app.current_tab_mut();
    assert_eq!(tab.kind, TabKind::Dm);
    tab.insert_dm(Uuid::from_u128(7), "小明", "私聊：你在吗？", T0, None);
    tab.insert_dm(Uuid::from_u128(8), "alice", "在的 👍", T0 + 60_000, None);
    insta::assert_snapshot!(render(&app, 80, 10).backend());
}

#[test]
fn cursor_sits_after_wide_characters() {
    let mut app = App::new("alice", "x");
    app.input.insert_str("你好");
    let mut terminal = render(&app, 40, 6);
    // Prompt "> " (2) + two wide characters (4).
    terminal.backend_mut().assert_cursor_position((6, 5));
    app.input.left();
    let mut terminal = render(&app, 40, 6);
    terminal.backend_mut().assert_cursor_position((4, 5));
}

#[test]
fn nothing_drawn_contains_a_control_character() {
    let mut app = busy_app();
    let tab = app.current_tab_mut();
    tab.insert_message(
        &msg(
            "lobby",
            7,
            "evil\u{1b}[2J",
            "\u{1b}]0;pwned\u{7}red \u{1b}[31mtext\u{9b}1m\r\nnext",
        ),
        MsgState::Normal,
    );
    tab.add_member("mal\u{7}lory");
    app.input.insert_str("\u{1b}[A");
    let terminal = render(&app, 80, 24);
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert!(
            !cell.symbol().chars().any(char::is_control),
            "control character drawn: {:?}",
            cell.symbol()
        );
    }
    let screen = terminal.backend().to_string();
    assert!(
        screen.contains("<evil[2J> ]0;pwnedred [31mtext1m"),
        "{screen}"
    );
}

/// A room with 10,000 lines: drawing wraps only the visible entries, live or scrolled.
#[test]
fn a_10000_line_room_renders_only_what_is_visible() {
    let mut app = App::new("alice", "x");
    let lobby = app.room_tab("lobby");
    app.select(lobby);
    for seq in 1..=10_000 {
        let text = format!("line {seq} with some text 中文 to wrap on narrow screens");
        app.tabs[lobby].insert_message(&msg("lobby", seq, "bob", &text), MsgState::Normal);
    }
    let tab = app.current_tab();
    let (rows, visited) = visible_rows(tab, RowContext::of(&app), 80, 22);
    assert_eq!(rows.len(), 22);
    assert!(visited <= 22, "wrapped {visited} entries for 22 rows");
    assert!(rows[21].to_string().contains("line 10000 "));

    app.current_tab_mut().scroll = 5_000;
    let (rows, visited) = visible_rows(app.current_tab(), RowContext::of(&app), 80, 22);
    assert!(
        visited <= 5_022,
        "walks only down to the viewport: {visited}"
    );
    assert!(rows[21].to_string().contains("line 5000 "), "{}", rows[21]);

    app.current_tab_mut().scroll = 0;
    let start = Instant::now();
    for _ in 0..100 {
        render(&app, 80, 24);
    }
    // Generous bound (debug build, shared CI machine); a full re-wrap of 10,000 entries
    // per frame would take far longer than this for 100 frames.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// The busy lobby with a topic, roles and modes: bob is an op, 小明 has voice, たなか is
/// the owner.
fn moderated_app() -> App {
    let mut app = busy_app();
    let tab = app.current_tab_mut();
    tab.set_topic(
        "Welcome 👋 ようこそ！今日は Rust 2024 について話しましょう、よろしく",
        "bob",
        T0,
        None,
    );
    tab.set_role("bob", chat_shared::Role::Op);
    tab.set_role("小明", chat_shared::Role::Voice);
    tab.set_role("たなか", chat_shared::Role::Owner);
    tab.set_modes(
        &chat_shared::ModeChange {
            moderated: Some(true),
            topic_locked: Some(true),
            key: Some(Some("hunter2".into())),
            ..chat_shared::ModeChange::default()
        },
        None,
    );
    app
}

#[test]
fn a_rooms_topic_sits_under_the_tabs_cut_by_display_width() {
    let app = moderated_app();
    let terminal = render(&app, 61, 12);
    let buf = terminal.backend().buffer();
    // 60 cells for the topic after the leading blank, 59 before the ellipsis: "う" ends
    // at 58, and "、" (59-60) would be cut in half, so it is left out whole and the
    // ellipsis follows "う", one cell short of the edge.
    let ellipsis = (0..61).find(|&x| buf[(x, 1)].symbol() == "…");
    assert_eq!(ellipsis, Some(59));
    assert_eq!(buf[(57, 1)].symbol(), "う");
    assert_eq!(buf[(60, 1)].symbol(), " ");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn ops_and_voiced_members_are_marked_and_listed_first_and_beside_their_lines() {
    let app = moderated_app();
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn the_status_bar_shows_the_modes_without_the_key() {
    let app = moderated_app();
    let screen = render(&app, 80, 24).backend().to_string();
    assert!(screen.contains("│ #lobby +kmt │"), "{screen}");
    assert!(!screen.contains("hunter2"), "{screen}");
}

#[test]
fn moderation_events_are_drawn_as_notices_and_a_kicked_tab_says_not_joined() {
    let mut app = App::new("alice", "127.0.0.1:7878");
    app.conn = ConnState::Online;
    let lobby = app.room_tab("lobby");
    app.select(lobby);
    let tab = &mut app.tabs[lobby];
    tab.joined = true;
    tab.insert_message(&msg("lobby", 1, "bob", "hi"), MsgState::Normal);
    let kicked = chat_shared::RoomNotice::Kicked {
        nick: "alice".into(),
        reason: "刷屏 spam".into(),
    };
    tab.insert_event(Uuid::from_u128(2), 2, T0 + 120_000, kicked.describe("bob"));
    tab.push(
        T0 + 120_000,
        EntryKind::Error("you were kicked from #lobby by bob (刷屏 spam)".into()),
    );
    tab.leave();
    insta::assert_snapshot!(render(&app, 60, 6).backend());
}

#[test]
fn a_topic_from_the_server_cannot_draw_control_characters_or_reorder_the_row() {
    let mut app = moderated_app();
    app.current_tab_mut().set_topic(
        "evil\u{1b}[2J\u{202E}txet\nnext\u{7}",
        "mallory\u{1b}]0;x\u{7}",
        T0,
        Some(9),
    );
    let terminal = render(&app, 80, 24);
    for cell in terminal.backend().buffer().content() {
        let s = cell.symbol();
        assert!(
            !s.chars().any(|c| c.is_control() || c == '\u{202E}'),
            "drawn: {s:?}"
        );
    }
    assert!(
        terminal
            .backend()
            .to_string()
            .contains(" evil[2Jtxet next "),
        "{}",
        terminal.backend()
    );
}

#[test]
fn stopped_reconnecting_shows_why_and_how_to_go_on() {
    let mut app = busy_app();
    app.conn = ConnState::Stopped {
        reason: "killed".into(),
    };
    app.rtt = None;
    let screen = render(&app, 80, 24).backend().to_string();
    assert!(
        screen.contains(" not connected: killed · /reconnect │ alice"),
        "{screen}"
    );
}

#[test]
fn the_status_bar_names_the_server_being_tried() {
    let mut app = busy_app();
    app.conn = ConnState::Connecting { attempt: 2 };
    app.server = "tls://node-b.example:7879".into();
    app.rtt = None;
    let screen = render(&app, 100, 24).backend().to_string();
    assert!(screen.contains(" reconnecting (try 3) │ alice"), "{screen}");
    assert!(screen.contains("│ tls://node-b.example:7879"), "{screen}");
}

#[test]
fn no_topic_row_for_a_room_without_one_or_for_other_tabs() {
    let mut app = moderated_app();
    let with = areas(&app, Rect::new(0, 0, 80, 24));
    assert!(with.topic.is_some());
    assert_eq!(with.body.height, 20);
    app.current_tab_mut().set_topic("", "bob", T0, Some(10));
    let without = areas(&app, Rect::new(0, 0, 80, 24));
    assert_eq!((without.topic, without.body.height), (None, 21));
    app.current_tab_mut().set_topic("x", "bob", T0, Some(11));
    app.select(0);
    assert_eq!(areas(&app, Rect::new(0, 0, 80, 24)).topic, None);
}

// File sharing (issue 15)

fn shared(seq: u64, from: &str, n: u128, name: &str, size: u64) -> ChatMessage {
    let mut m = msg("lobby", seq, from, &format!("[file] {name}"));
    m.file = Some(Box::new(chat_shared::message::FileInfo {
        id: format!("{n:032x}"),
        name: name.into(),
        size,
        sha256: format!("3a7b{}e1", "0".repeat(58)),
        url: "http://127.0.0.1:7878/files/x/y".into(),
    }));
    m
}

/// The screen's rows as text, trailing blanks trimmed (wide characters take two cells,
/// the second one empty).
fn rows(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    let w = buffer.area.width as usize;
    buffer
        .content()
        .chunks(w)
        .map(|row| {
            let mut text = String::new();
            let mut skip = 0;
            for cell in row {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                text.push_str(cell.symbol());
                skip = crate::text::width(cell.symbol()).saturating_sub(1);
            }
            text.trim_end().to_owned()
        })
        .collect()
}

fn uploading(app: &mut App, name: &str, done: u64, size: u64) -> uuid::Uuid {
    use crate::transfer::{Target, Transfer, TransferState};
    let id = Uuid::from_u128(0xf11e + app.transfers.len() as u128);
    let mut t = Transfer::upload(id, name.into(), name.into(), Target::Room("lobby".into()));
    t.size = size;
    t.state = TransferState::Running;
    t.progress(0, 0);
    t.progress(2_000, done);
    app.transfers.push(t);
    id
}

#[test]
fn shared_files_show_their_number_name_size_and_short_hash_in_the_scrollback() {
    let mut app = busy_app();
    let lobby = app.current;
    for (seq, from, n, name, size) in [
        (7, "bob", 1, "notes.txt", 900),
        (8, "小明", 2, "年度报告_最终版.pdf", 1_258_291),
    ] {
        let m = shared(seq, from, n, name, size);
        app.file_number(m.file.as_deref().unwrap());
        app.tabs[lobby].insert_message(&m, MsgState::Normal);
    }
    let terminal = render(&app, 100, 12);
    let screen = rows(&terminal);
    assert!(
        screen
            .iter()
            .any(|r| r.contains("<bob> [file 1] notes.txt 900 B 3a7b…e1")),
        "{screen:#?}"
    );
    assert!(
        screen
            .iter()
            .any(|r| r.contains("<小明> [file 2] 年度报告_最终版.pdf 1.2 MiB 3a7b…e1")),
        "{screen:#?}"
    );
}

#[test]
fn the_status_bar_shows_an_uploads_progress_rate_and_eta_with_a_cjk_name() {
    let mut app = busy_app();
    uploading(&mut app, "年度报告.pdf", 4 << 20, 10 << 20);
    let terminal = render(&app, 120, 12);
    let status = &rows(&terminal)[10];
    assert_eq!(
        status,
        " online │ alice │ #lobby │ ↑ 年度报告.pdf ████        40% 2.0 MiB/s ETA 0:03 │ rtt 12 ms │ 127.0.0.1:7878"
    );
    // Narrower: the rtt and server go first, then the bar, then the name is cut by width.
    let terminal = render(&app, 80, 12);
    assert_eq!(
        rows(&terminal)[10],
        " online │ alice │ #lobby │ ↑ 年度报告.pdf ████        40% 2.0 MiB/s ETA 0:03"
    );
    let terminal = render(&app, 60, 12);
    assert_eq!(
        rows(&terminal)[10],
        " online │ alice │ #lobby │ ↑ 年度报…  40% 2.0 MiB/s ETA 0:03"
    );
    // Narrower still: the ETA goes before the name would shrink below a few cells.
    let terminal = render(&app, 50, 12);
    let status = &rows(&terminal)[10];
    assert_eq!(status, " online │ alice │ #lobby │ ↑ 年度…  40% 2.0 MiB/s");
    assert!(crate::text::width(status) <= 50);
    for w in 20..50 {
        let terminal = render(&app, w, 12);
        assert!(crate::text::width(&rows(&terminal)[10]) <= usize::from(w));
    }
}

#[test]
fn several_transfers_show_the_first_and_how_many_more() {
    let mut app = busy_app();
    uploading(&mut app, "a.bin", 1 << 20, 4 << 20);
    uploading(&mut app, "b.bin", 0, 4 << 20);
    let terminal = render(&app, 100, 12);
    let status = &rows(&terminal)[10];
    assert!(status.contains("↑ a.bin ██▌ "), "{status}");
    assert!(
        status.contains(" 25% 512.0 KiB/s ETA 0:06 (+1)"),
        "{status}"
    );
    assert!(status.contains("(+1)"), "{status}");
}
