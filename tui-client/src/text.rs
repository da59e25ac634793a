//! Text helpers shared by the view and the update: sanitising, display-width wrapping, nick
//! colours and timestamps.
//!
//! Everything here measures in terminal cells (unicode-width over grapheme clusters), never in
//! bytes or chars, so CJK and emoji line up with what the terminal actually draws.
//!
//! Layout:
//! - [`sanitize`]: the single gate every server-supplied string passes before it is drawn.
//! - [`width`] and [`wrap`]: cell widths and word wrapping of styled pieces into rows.
//! - [`nick_color`], [`format_time`] and [`mentions`]: the small presentation rules.

use std::borrow::Cow;

use chat_shared::validate::{is_invisible, nick_key};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Removes every control character and every invisible character that can hide or reorder
/// text (bidi overrides and the like, the server's list), and turns tabs into a space, so
/// nothing the server (or a paste) sends can move the cursor, change terminal modes or
/// rearrange a line. Newlines are removed too: callers that keep line structure split on
/// `\n` first.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    let dropped = |c: char| c.is_control() || is_invisible(c);
    if s.chars().any(dropped) {
        Cow::Owned(
            s.chars()
                .filter_map(|c| match c {
                    '\t' => Some(' '),
                    c if dropped(c) => None,
                    c => Some(c),
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Display width in terminal cells.
pub fn width(s: &str) -> usize {
    s.graphemes(true).map(UnicodeWidthStr::width).sum()
}

/// Cuts `s` to at most `max` cells, never splitting a grapheme.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, g) in s.grapheme_indices(true) {
        let w = g.width();
        if used + w > max {
            return &s[..i];
        }
        used += w;
    }
    s
}

/// One grapheme cluster with its width and the index of the style it is drawn with.
struct Cell<'a> {
    text: &'a str,
    width: usize,
    style: usize,
}

/// Wraps styled `pieces` into rows of at most `max_width` cells.
///
/// Breaks after the last space of a row when there is one, else between graphemes (CJK has
/// no spaces), and never inside a wide character. Continuation rows start with `indent`
/// blanks so they line up under the text rather than under the timestamp. A `\n` in a piece
/// starts a new row. Pieces must already be sanitised apart from `\n`.
pub fn wrap(
    pieces: &[(Cow<'_, str>, Style)],
    max_width: usize,
    indent: usize,
) -> Vec<Line<'static>> {
    let max_width = max_width.max(1);
    let indent = if indent * 2 > max_width { 0 } else { indent };
    let mut rows: Vec<Vec<Cell<'_>>> = vec![Vec::new()];
    let mut used = 0;
    for (style, (text, _)) in pieces.iter().enumerate() {
        for g in text.graphemes(true) {
            if g == "\n" || g == "\r\n" {
                rows.push(Vec::new());
                used = indent;
                continue;
            }
            let w = g.width();
            if used + w > max_width && used > indent {
                let row = rows.last_mut().expect("rows is never empty");
                let carry = split_at_space(row, indent);
                used = indent + carry.iter().map(|c| c.width).sum::<usize>();
                rows.push(carry);
            }
            rows.last_mut().expect("rows is never empty").push(Cell {
                text: g,
                width: w,
                style,
            });
            used += w;
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, cells)| to_line(&cells, pieces, if i == 0 { 0 } else { indent }))
        .collect()
}

/// Splits a full row after its last space (past the indent), returning the cells that move
/// to the next row; empty when the row has no usable space.
fn split_at_space<'a>(row: &mut Vec<Cell<'a>>, indent: usize) -> Vec<Cell<'a>> {
    match row.iter().rposition(|c| c.text == " ") {
        Some(i) if i >= indent.max(1) => row.split_off(i + 1),
        _ => Vec::new(),
    }
}

fn to_line(cells: &[Cell<'_>], pieces: &[(Cow<'_, str>, Style)], indent: usize) -> Line<'static> {
    let mut spans = Vec::new();
    if indent > 0 {
        spans.push(Span::raw(" ".repeat(indent)));
    }
    let mut cur = String::new();
    let mut cur_style = None;
    for cell in cells {
        if cur_style != Some(cell.style) {
            if let Some(s) = cur_style {
                spans.push(Span::styled(std::mem::take(&mut cur), pieces[s].1));
            }
            cur_style = Some(cell.style);
        }
        cur.push_str(cell.text);
    }
    if let Some(s) = cur_style {
        spans.push(Span::styled(cur, pieces[s].1));
    }
    Line::from(spans)
}

/// Colours a nick may get: readable on dark and light backgrounds, excluding the greys used
/// for notices.
const NICK_COLORS: [Color; 12] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Blue,
    Color::Red,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightMagenta,
    Color::LightBlue,
    Color::LightRed,
];

/// A colour that depends only on the nick's case-insensitive identity, so it is the same in
/// every room and every session (FNV-1a; `DefaultHasher` is not stable across releases).
pub fn nick_color(nick: &str) -> Color {
    let mut hash: u32 = 0x811c_9dc5;
    for b in nick_key(nick).bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NICK_COLORS[hash as usize % NICK_COLORS.len()]
}

/// `HH:MM` of a Unix-milliseconds timestamp, shifted by `utc_offset_secs`.
pub fn format_time(ts_ms: i64, utc_offset_secs: i32) -> String {
    let secs = ts_ms.div_euclid(1000) + i64::from(utc_offset_secs);
    let day_secs = secs.rem_euclid(86_400);
    format!("{:02}:{:02}", day_secs / 3600, day_secs % 3600 / 60)
}

/// `YYYY-MM-DD HH:MM` of a Unix-milliseconds timestamp, shifted by `utc_offset_secs`: for
/// what may be days away (when a ban was set, when it ends), where `HH:MM` is not enough.
pub fn format_date(ts_ms: i64, utc_offset_secs: i32) -> String {
    let shifted = ts_ms.saturating_add(i64::from(utc_offset_secs) * 1000);
    match chrono::DateTime::from_timestamp_millis(shifted) {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => format_time(ts_ms, utc_offset_secs),
    }
}

/// `s` on one line, cut to `max` cells with `…` when it is longer: a topic in its row.
/// Newlines become spaces, so words on two lines do not run together.
pub fn one_line(s: &str, max: usize) -> String {
    let flat = sanitize(&s.replace(['\n', '\r'], " ")).into_owned();
    if width(&flat) <= max {
        return flat;
    }
    let ellipsis = "…";
    let cut = truncate(&flat, max.saturating_sub(width(ellipsis)));
    if max == 0 {
        String::new()
    } else {
        format!("{cut}{ellipsis}")
    }
}

/// Whether `text` mentions `nick` as a word (case-insensitive; letters, digits, `-` and `_`
/// around it mean it is part of another word).
pub fn mentions(text: &str, nick: &str) -> bool {
    let key = nick_key(nick);
    if key.is_empty() {
        return false;
    }
    let hay = nick_key(text);
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    hay.match_indices(&key).any(|(i, m)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + m.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(rows: &[Line<'_>]) -> Vec<String> {
        rows.iter()
            .map(|l| l.to_string().trim_end().to_owned())
            .collect()
    }

    fn piece(s: &str) -> (Cow<'_, str>, Style) {
        (Cow::Borrowed(s), Style::default())
    }

    #[test]
    fn sanitize_removes_escapes_and_controls() {
        assert_eq!(sanitize("a\u{1b}[31mb\u{7}\tc\u{9b}d"), "a[31mb cd");
        assert!(matches!(sanitize("你好 👋"), Cow::Borrowed(_)));
        // A bidi override would reverse the rest of the line on screen.
        assert_eq!(sanitize("pay \u{202E}01$ now\u{2069}"), "pay 01$ now");
        assert_eq!(sanitize("👩\u{200D}💻"), "👩\u{200D}💻");
    }

    #[test]
    fn width_counts_cells_of_cjk_and_emoji() {
        assert_eq!(width("ab"), 2);
        assert_eq!(width("你好"), 4);
        assert_eq!(width("👋🏽"), 2);
        assert_eq!(truncate("你好吗", 5), "你好");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_indents_continuations() {
        let rows = wrap(&[piece("12:00 "), piece("hello brave new world")], 16, 6);
        assert_eq!(
            plain(&rows),
            ["12:00 hello", "      brave new", "      world"]
        );
    }

    #[test]
    fn wrap_never_splits_a_wide_character() {
        // 9 columns: "ab" + 3 CJK = 8, the 4th CJK (2 cells) does not fit in the 1 left.
        let rows = wrap(&[piece("ab你好吗呢")], 9, 0);
        assert_eq!(plain(&rows), ["ab你好吗", "呢"]);
        assert!(rows.iter().all(|r| r.width() <= 9));
    }

    #[test]
    fn wrap_keeps_newlines_as_rows() {
        let rows = wrap(&[piece("x "), piece("one\ntwo")], 20, 2);
        assert_eq!(plain(&rows), ["x one", "  two"]);
    }

    #[test]
    fn nick_colors_are_stable_and_case_insensitive() {
        assert_eq!(nick_color("Alice"), nick_color("alice"));
        assert_eq!(nick_color("小明"), nick_color("小明"));
    }

    #[test]
    fn times_use_the_given_offset() {
        assert_eq!(format_time(0, 0), "00:00");
        assert_eq!(format_time(3_600_000 + 61_000, 0), "01:01");
        assert_eq!(format_time(0, -3600), "23:00");
        assert_eq!(format_time(0, 9 * 3600), "09:00");
    }

    #[test]
    fn dates_show_the_day_and_the_local_time() {
        assert_eq!(format_date(1_700_000_000_000, 0), "2023-11-14 22:13");
        assert_eq!(format_date(1_700_000_000_000, 3600), "2023-11-14 23:13");
        assert_eq!(format_date(1_700_000_000_000, 2 * 3600), "2023-11-15 00:13");
    }

    #[test]
    fn one_line_cuts_by_cells_with_an_ellipsis_and_never_halves_a_wide_char() {
        assert_eq!(one_line("short", 10), "short");
        assert_eq!(one_line("two\nlines", 20), "two lines");
        // 5 cells: two wide characters (4) and the ellipsis; a third would not fit.
        assert_eq!(one_line("你好吗朋友", 5), "你好…");
        assert_eq!(one_line("你好吗朋友", 6), "你好…");
        assert_eq!(width(&one_line("ab你好吗朋友 🌸🌸", 7)), 7);
        assert_eq!(one_line("\u{1b}[2Jevil\u{202E}", 20), "[2Jevil");
        assert_eq!(one_line("abc", 0), "");
    }

    #[test]
    fn mentions_match_whole_words_only() {
        assert!(mentions("hi Alice!", "alice"));
        assert!(mentions("小明: 你好", "小明"));
        assert!(!mentions("malice", "alice"));
        assert!(!mentions("alice_2 here", "alice"));
        assert!(mentions("alice", "ALICE"));
    }
}
