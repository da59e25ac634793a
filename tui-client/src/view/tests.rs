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
    tab.insert_dm(Uuid::from_u128(7), "小明", "私聊：你在吗？", T0);
    tab.insert_dm(Uuid::from_u128(8), "alice", "在的 👍", T0 + 60_000);
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
