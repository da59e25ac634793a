//! The input line editor: text, cursor, history, horizontal scrolling, Tab completion.
//!
//! The cursor is a byte index that always sits on a grapheme-cluster boundary, so no edit can
//! land inside a multi-byte character, a wide CJK character or an emoji sequence. Everything
//! on screen is measured in cells (see [`crate::text::width`]).
//!
//! Layout:
//! - [`InputLine`]: the editor itself; pure data, driven by `update`.
//! - [`InputView`]: what the view needs to draw it: the visible slice and the cursor column.

use unicode_segmentation::UnicodeSegmentation;

use crate::text::{sanitize, width};

/// How many submitted lines Up/Down can recall.
const HISTORY_LEN: usize = 100;

/// Shown in place of a newline inside the input line (a pasted multi-line message).
pub const NEWLINE_SYMBOL: &str = "⏎";

/// The line being typed.
#[derive(Debug, Default, Clone)]
pub struct InputLine {
    text: String,
    /// Byte index into `text`, always on a grapheme boundary.
    cursor: usize,
    /// First visible column (in cells); kept across edits so the line does not jump around
    /// when the cursor moves inside a long input.
    scroll: usize,
    /// Previously submitted lines, oldest first.
    history: Vec<String>,
    /// Position while browsing history with Up/Down; `None` when editing a fresh line.
    history_pos: Option<usize>,
    /// The unsent line, kept while browsing history so Down can bring it back.
    draft: String,
    /// The Tab-completion cycle in progress, reset by any other edit.
    completion: Option<Completion>,
}

#[derive(Debug, Clone)]
struct Completion {
    /// Byte index where the completed word starts.
    start: usize,
    candidates: Vec<String>,
    next: usize,
}

/// The visible part of the input line for a given width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputView {
    /// The visible text, newlines shown as [`NEWLINE_SYMBOL`].
    pub text: String,
    /// Cursor column relative to the start of the visible text, in cells.
    pub cursor_x: usize,
}

impl InputLine {
    /// The full text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor position as a byte index.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing has been typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Inserts typed or pasted text at the cursor. Control characters are dropped (a paste
    /// may carry escapes), `\r\n` and `\r` become `\n`, tabs become spaces.
    pub fn insert_str(&mut self, s: &str) {
        let normalized = s.replace("\r\n", "\n").replace('\r', "\n");
        let clean: String = normalized
            .split('\n')
            .map(|line| sanitize(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
        self.edited();
    }

    /// Inserts one typed character.
    pub fn insert_char(&mut self, c: char) {
        let mut buf = [0; 4];
        self.insert_str(c.encode_utf8(&mut buf));
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    /// Moves one grapheme left.
    pub fn left(&mut self) {
        self.cursor = self.prev_boundary();
        self.completion = None;
    }

    /// Moves one grapheme right.
    pub fn right(&mut self) {
        self.cursor = self.next_boundary();
        self.completion = None;
    }

    /// Moves to the start (Home, Ctrl-A).
    pub fn home(&mut self) {
        self.cursor = 0;
        self.completion = None;
    }

    /// Moves to the end (End, Ctrl-E).
    pub fn end(&mut self) {
        self.cursor = self.text.len();
        self.completion = None;
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) {
        let start = self.prev_boundary();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        self.edited();
    }

    /// Deletes the grapheme under the cursor.
    pub fn delete(&mut self) {
        let end = self.next_boundary();
        self.text.replace_range(self.cursor..end, "");
        self.edited();
    }

    /// Deletes the word before the cursor and the whitespace after it (Ctrl-W).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed
            .char_indices()
            .rev()
            .find(|&(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        self.edited();
    }

    /// Deletes everything before the cursor (Ctrl-U).
    pub fn delete_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
        self.edited();
    }

    /// Takes the line for sending, clears the editor and remembers the line for Up.
    pub fn submit(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.scroll = 0;
        self.history_pos = None;
        self.draft.clear();
        self.completion = None;
        // A line with a password is sent, never remembered.
        if !line.trim().is_empty()
            && self.history.last() != Some(&line)
            && !crate::command::has_password(&line)
        {
            if self.history.len() == HISTORY_LEN {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Recalls the previous history entry (Up).
    pub fn history_prev(&mut self) {
        let pos = match self.history_pos {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(p) => p - 1,
        };
        self.history_pos = Some(pos);
        self.replace(self.history[pos].clone());
    }

    /// Goes forward in history, back to the unsent draft at the end (Down).
    pub fn history_next(&mut self) {
        let Some(pos) = self.history_pos else { return };
        if pos + 1 < self.history.len() {
            self.history_pos = Some(pos + 1);
            self.replace(self.history[pos + 1].clone());
        } else {
            self.history_pos = None;
            let draft = std::mem::take(&mut self.draft);
            self.replace(draft);
        }
    }

    fn replace(&mut self, text: String) {
        self.text = text;
        self.cursor = self.text.len();
        self.completion = None;
    }

    fn edited(&mut self) {
        self.completion = None;
        self.history_pos = None;
    }

    /// Completes the word before the cursor from `candidates` (Tab); repeated Tabs cycle.
    ///
    /// Commands are completed when the word is the first one and starts with `/`; otherwise
    /// nicks, with `": "` appended at the start of the line (IRC convention) and `" "`
    /// elsewhere. Returns whether anything changed.
    pub fn complete(&mut self, commands: &[&str], nicks: &[String]) -> bool {
        if let Some(c) = self.completion.as_mut() {
            if c.candidates.len() < 2 {
                return false;
            }
            c.next = (c.next + 1) % c.candidates.len();
            let (start, word) = (c.start, c.candidates[c.next].clone());
            self.text.replace_range(start..self.cursor, &word);
            self.cursor = start + word.len();
            return true;
        }
        let before = &self.text[..self.cursor];
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        if word.is_empty() {
            return false;
        }
        let word_key = chat_shared::validate::nick_key(word);
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            commands
                .iter()
                .filter(|c| c.starts_with(&word_key))
                .map(|c| format!("{c} "))
                .collect()
        } else {
            let suffix = if start == 0 { ": " } else { " " };
            let mut found: Vec<String> = nicks
                .iter()
                .filter(|n| chat_shared::validate::nick_key(n).starts_with(&word_key))
                .map(|n| format!("{}{suffix}", sanitize(n)))
                .collect();
            found.sort_by_key(|n| chat_shared::validate::nick_key(n));
            found
        };
        let Some(first) = candidates.first().cloned() else {
            return false;
        };
        self.text.replace_range(start..self.cursor, &first);
        self.cursor = start + first.len();
        self.completion = Some(Completion {
            start,
            candidates,
            next: 0,
        });
        true
    }

    /// Adjusts the horizontal scroll so the cursor is visible in `cols` cells, keeping the
    /// previous scroll when it already is. Call after every edit and resize.
    pub fn scroll_to_cursor(&mut self, cols: usize) {
        let cols = cols.max(2);
        let cursor_col = display_width(&self.text[..self.cursor]);
        if cursor_col < self.scroll {
            // Show a little context to the left when scrolling back.
            self.scroll = cursor_col.saturating_sub(cols / 4);
        } else if cursor_col >= self.scroll + cols {
            self.scroll = cursor_col + 1 - cols;
        }
        let total = display_width(&self.text);
        // Never leave blank space on the right while text is hidden on the left.
        if total < cols {
            self.scroll = 0;
        } else if self.scroll > total + 1 - cols {
            self.scroll = total + 1 - cols;
        }
    }

    /// The visible part of the line in `cols` cells. A wide character cut by the left edge
    /// is replaced by spaces, so columns stay aligned with the cursor.
    pub fn view(&self, cols: usize) -> InputView {
        let mut text = String::new();
        let mut col: usize = 0;
        let mut cursor_x = None;
        let mut pos = 0;
        for g in self.text.graphemes(true) {
            if pos == self.cursor {
                cursor_x = Some(col.saturating_sub(self.scroll));
            }
            pos += g.len();
            let shown = if g == "\n" { NEWLINE_SYMBOL } else { g };
            let w = width(shown);
            let (start, end) = (col, col + w);
            col = end;
            if end <= self.scroll {
                continue;
            }
            if start < self.scroll {
                text.push_str(&" ".repeat(end - self.scroll));
                continue;
            }
            if end > self.scroll + cols {
                break;
            }
            text.push_str(shown);
        }
        let cursor_x = cursor_x.unwrap_or_else(|| col.saturating_sub(self.scroll));
        InputView { text, cursor_x }
    }
}

/// Width of input text as drawn, newlines counted as [`NEWLINE_SYMBOL`].
fn display_width(s: &str) -> usize {
    s.split('\n').map(width).sum::<usize>() + s.matches('\n').count() * width(NEWLINE_SYMBOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> InputLine {
        let mut input = InputLine::default();
        for c in s.chars() {
            input.insert_char(c);
        }
        input
    }

    #[test]
    fn cursor_moves_by_whole_characters_in_cjk_and_emoji() {
        let mut input = typed("a你👋🏽b");
        input.left();
        assert_eq!(&input.text()[input.cursor()..], "b");
        input.left();
        assert_eq!(
            &input.text()[input.cursor()..],
            "👋🏽b",
            "skin tone stays attached"
        );
        input.left();
        assert_eq!(&input.text()[input.cursor()..], "你👋🏽b");
        input.backspace();
        assert_eq!(input.text(), "你👋🏽b");
        input.right();
        input.delete();
        assert_eq!(input.text(), "你b");
        input.insert_str("好");
        assert_eq!(input.text(), "你好b");
        assert_eq!(
            input.view(20).cursor_x,
            4,
            "two wide characters before the cursor"
        );
    }

    #[test]
    fn home_end_and_kill_commands() {
        let mut input = typed("hello wide 世界");
        input.delete_word();
        assert_eq!(input.text(), "hello wide ");
        input.delete_word();
        assert_eq!(input.text(), "hello ");
        input.home();
        input.insert_str(">");
        input.end();
        input.insert_str("x");
        assert_eq!(input.text(), ">hello x");
        input.left();
        input.delete_to_start();
        assert_eq!((input.text(), input.cursor()), ("x", 0));
    }

    #[test]
    fn history_recalls_and_restores_the_draft() {
        let mut input = typed("one");
        input.submit();
        input.insert_str("two");
        input.submit();
        input.insert_str("dra");
        input.history_prev();
        assert_eq!(input.text(), "two");
        input.history_prev();
        input.history_prev();
        assert_eq!(input.text(), "one");
        input.history_next();
        input.history_next();
        assert_eq!(input.text(), "dra");
    }

    #[test]
    fn paste_keeps_newlines_and_drops_escapes() {
        let mut input = InputLine::default();
        input.insert_str("line1\r\nline2\u{1b}[2J\tend");
        assert_eq!(input.text(), "line1\nline2[2J end");
        assert_eq!(input.view(40).text, "line1⏎line2[2J end");
    }

    #[test]
    fn long_input_scrolls_and_cursor_never_splits_a_wide_char() {
        let mut input = typed(&"你好".repeat(10)); // 40 cells
        input.scroll_to_cursor(10);
        let view = input.view(10);
        // Scrolled by 31 cells: the wide char at columns 30-31 is cut by the left edge and
        // shown as a blank, never as half a character.
        assert_eq!(view.text, " 你好你好");
        assert_eq!(view.cursor_x, 9);
        // Jump to the start: the view scrolls back and the cursor is at column 0.
        input.home();
        input.scroll_to_cursor(10);
        let view = input.view(10);
        assert_eq!((view.cursor_x, view.text.as_str()), (0, "你好你好你"));
        input.end();
        input.scroll_to_cursor(9);
        let view = input.view(9);
        assert_eq!((view.cursor_x, view.text.as_str()), (8, "你好你好"));
    }

    #[test]
    fn tab_completes_commands_and_cycles_nicks() {
        let mut input = typed("/jo");
        assert!(input.complete(&["/join", "/quit"], &[]));
        assert_eq!(input.text(), "/join ");
        let nicks = vec!["bob".to_owned(), "Bea".to_owned(), "小明".to_owned()];
        let mut input = typed("b");
        input.complete(&[], &nicks);
        assert_eq!(input.text(), "Bea: ");
        input.complete(&[], &nicks);
        assert_eq!(input.text(), "bob: ");
        let mut input = typed("hi 小");
        input.complete(&[], &nicks);
        assert_eq!(input.text(), "hi 小明 ");
    }
}
