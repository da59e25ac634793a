//! The view: draws an [`App`] into a ratatui [`Frame`]. Read-only.
//!
//! The scrollback is wrapped from the bottom up and stops as soon as the viewport is full,
//! so drawing costs the same for 50 lines of history as for 10,000. Every string that came
//! from the network passes [`sanitize`] on its way to the screen.
//!
//! Layout:
//! - [`view`]: the whole screen: tab bar, a room's topic, scrollback (+ member list), status
//!   bar, input.
//! - [`areas`]: where each part goes; `update` uses it too, to scroll by the right amount.
//! - [`entry_rows`] and [`visible_rows`]: one scrollback entry as wrapped rows, and the rows
//!   of the viewport.

use std::borrow::Cow;
use std::collections::HashMap;

use chat_shared::Role;
use chat_shared::message::FileInfo;
use chat_shared::validate::nick_key;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::app::{App, ConnState, Entry, EntryKind, MsgState, Tab, TabKind};
use crate::text::{format_time, mentions, nick_color, one_line, sanitize, truncate, width, wrap};
use crate::transfer::{Transfer, TransferState, format_eta, human_size, progress_bar, short_hash};

/// Columns of a continuation row's indent: the width of `HH:MM `.
const INDENT: usize = 6;

/// Narrower terminals hide the member list, whatever F2 says: the messages need the room.
const MIN_WIDTH_FOR_MEMBERS: u16 = 50;

/// Prompt before the input line.
const PROMPT: &str = "> ";

/// The screen's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Tab bar (top row).
    pub tabs: Rect,
    /// The room's topic, under the tabs, when the current tab is a room that has one.
    pub topic: Option<Rect>,
    /// Scrollback.
    pub body: Rect,
    /// Member list, when shown.
    pub members: Option<Rect>,
    /// Status bar.
    pub status: Rect,
    /// Input line.
    pub input: Rect,
}

/// Splits `area` into the screen's parts for the current tab.
pub fn areas(app: &App, area: Rect) -> Areas {
    let tab = app.current_tab();
    let has_topic = tab.kind == TabKind::Room && !one_line(&tab.topic, 1).trim().is_empty();
    let [tabs, topic, middle, status, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(has_topic)),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let topic = has_topic.then_some(topic);
    let show = app.show_members
        && tab.kind == TabKind::Room
        && area.width >= MIN_WIDTH_FOR_MEMBERS
        && !tab.members.is_empty();
    if !show {
        return Areas {
            tabs,
            topic,
            body: middle,
            members: None,
            status,
            input,
        };
    }
    let widest = tab
        .members
        .iter()
        .map(|m| width(&sanitize(m)))
        .max()
        .unwrap_or(0);
    let mark = usize::from(!tab.roles.is_empty());
    let members_width = (widest + mark + 3).clamp(12, 22) as u16;
    let [body, members] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(members_width)]).areas(middle);
    Areas {
        tabs,
        topic,
        body,
        members: Some(members),
        status,
        input,
    }
}

/// What rows depend on besides the entry: whose mentions to highlight, which time zone,
/// and the room's roles, whose marks go beside nicks.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    /// Our nick.
    pub me: &'a str,
    /// Local time zone offset.
    pub utc_offset_secs: i32,
    /// The tab's roles by nick identity: a nick is marked with its role now, as in the
    /// member list, so the two never disagree.
    pub roles: Option<&'a HashMap<String, Role>>,
    /// Shared files' `/download` numbers by file id.
    pub files: Option<&'a HashMap<String, usize>>,
}

impl<'a> RowContext<'a> {
    /// The context of `app`'s visible tab.
    pub fn of(app: &'a App) -> Self {
        Self::for_tab(app, app.current)
    }

    /// The context of tab `index`.
    pub fn for_tab(app: &'a App, index: usize) -> Self {
        Self {
            me: &app.nick,
            utc_offset_secs: app.utc_offset_secs,
            roles: app.tabs.get(index).map(|t| &t.roles),
            files: Some(&app.file_numbers),
        }
    }

    fn mark(&self, nick: &str) -> &'static str {
        self.roles
            .and_then(|r| r.get(&nick_key(nick)))
            .map_or("", |r| r.mark())
    }
}

/// Message text for drawing: each line sanitised, line structure kept.
fn clean_multiline(text: &str) -> String {
    text.split('\n')
        .map(|l| sanitize(l.trim_end_matches('\r')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One entry as wrapped rows of at most `width` cells.
pub fn entry_rows(entry: &Entry, ctx: RowContext<'_>, width: usize) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let time = format_time(entry.ts, ctx.utc_offset_secs);
    let mut pieces: Vec<(Cow<'_, str>, Style)> = Vec::with_capacity(6);
    match &entry.kind {
        EntryKind::Message {
            from,
            text,
            action,
            state,
            file,
            ..
        } => {
            let from = sanitize(from).into_owned();
            let mine = nick_key(&from) == nick_key(ctx.me);
            let mention = !mine && mentions(text, ctx.me);
            let nick_style = if mine {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(nick_color(&from))
            };
            let mut text_style = if mention {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            let (time_sep, time_style) = match state {
                MsgState::Missed => ("»", Style::new().fg(Color::Yellow)),
                _ => (" ", dim),
            };
            pieces.push((format!("{time}{time_sep}").into(), time_style));
            if *action {
                pieces.push(("* ".into(), nick_style));
                pieces.push((format!("{from} ").into(), nick_style));
            } else {
                let mark = ctx.mark(&from);
                pieces.push(("<".into(), dim));
                if !mark.is_empty() {
                    pieces.push((mark.into(), Style::new().fg(Color::Yellow)));
                }
                pieces.push((from.into(), nick_style));
                pieces.push(("> ".into(), dim));
            }
            if *state == MsgState::Failed {
                text_style = text_style.add_modifier(Modifier::CROSSED_OUT);
            }
            match file {
                Some(file) => file_pieces(file, ctx, &mut pieces),
                None => pieces.push((clean_multiline(text).into(), text_style)),
            }
            if *state == MsgState::Failed {
                pieces.push((" (not sent)".into(), Style::new().fg(Color::Red)));
            }
            if *state == MsgState::Pending {
                for (_, style) in &mut pieces {
                    *style = style.add_modifier(Modifier::DIM).fg(Color::DarkGray);
                }
            }
        }
        EntryKind::Notice(text) => {
            let style = dim.add_modifier(Modifier::DIM);
            pieces.push((format!("{time} -- ").into(), style));
            pieces.push((clean_multiline(text).into(), style));
        }
        EntryKind::Event { text, .. } => {
            let style = Style::new().fg(Color::Magenta);
            pieces.push((format!("{time} ").into(), dim));
            pieces.push(("-- ".into(), style));
            pieces.push((clean_multiline(text).into(), style));
        }
        EntryKind::Info(text) => {
            pieces.push((format!("{time} ").into(), dim));
            pieces.push(("-- ".into(), Style::new().fg(Color::Cyan)));
            pieces.push((clean_multiline(text).into(), Style::new()));
        }
        EntryKind::Error(text) => {
            let style = Style::new().fg(Color::Red);
            pieces.push((format!("{time} ").into(), dim));
            pieces.push(("! ".into(), style.add_modifier(Modifier::BOLD)));
            pieces.push((clean_multiline(text).into(), style));
        }
    }
    wrap(&pieces, width, INDENT)
}

/// A shared file as the scrollback shows it: `[file 3] 报告.pdf 1.2 MiB 3a7b…e1`, the number
/// being what `/download` takes.
fn file_pieces(file: &FileInfo, ctx: RowContext<'_>, pieces: &mut Vec<(Cow<'_, str>, Style)>) {
    let number = ctx.files.and_then(|f| f.get(&file.id));
    let label = match number {
        Some(n) => format!("[file {n}] "),
        None => "[file] ".to_owned(),
    };
    let dim = Style::new().fg(Color::DarkGray);
    pieces.push((
        label.into(),
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    pieces.push((
        sanitize(&file.name).into_owned().into(),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    pieces.push((
        format!(
            " {} {}",
            human_size(file.size),
            short_hash(&sanitize(&file.sha256))
        )
        .into(),
        dim,
    ));
}

/// The rows of the scrollback viewport, top to bottom, and how many entries were wrapped to
/// produce them (the cost, which tests check stays bounded by the viewport).
///
/// Walks the entries from the newest back, skipping `tab.scroll` rows, until `height` rows
/// are collected; nothing above the viewport is wrapped.
pub fn visible_rows(
    tab: &Tab,
    ctx: RowContext<'_>,
    width: usize,
    height: usize,
) -> (Vec<Line<'static>>, usize) {
    let needed = tab.scroll + height;
    let mut rows: Vec<Line<'static>> = Vec::with_capacity(needed.min(4 * height));
    let mut skip = tab.scroll;
    let mut visited = 0;
    for entry in tab.entries.iter().rev() {
        if rows.len() >= height {
            break;
        }
        visited += 1;
        let entry_rows = entry_rows(entry, ctx, width);
        for row in entry_rows.into_iter().rev() {
            if skip > 0 {
                skip -= 1;
            } else if rows.len() < height {
                rows.push(row);
            }
        }
    }
    rows.reverse();
    (rows, visited)
}

/// Draws the whole screen.
pub fn view(app: &App, frame: &mut Frame<'_>) {
    let parts = areas(app, frame.area());
    draw_tabs(app, frame, parts.tabs);
    if let Some(area) = parts.topic {
        draw_topic(app.current_tab(), frame, area);
    }
    draw_scrollback(app, frame, parts.body);
    if let Some(area) = parts.members {
        draw_members(app.current_tab(), frame, area);
    }
    draw_status(app, frame, parts.status);
    draw_input(app, frame, parts.input);
}

fn tab_label(index: usize, tab: &Tab) -> String {
    let name = sanitize(&tab.name);
    let name = match tab.kind {
        TabKind::Status => Cow::Borrowed("status"),
        TabKind::Room => name,
        TabKind::Dm => Cow::Owned(format!("@{name}")),
    };
    match tab.unread {
        0 => format!(" {}:{name} ", index + 1),
        n => format!(" {}:{name} ({n}) ", index + 1),
    }
}

fn draw_tabs(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let labels: Vec<String> = app
        .tabs
        .iter()
        .enumerate()
        .map(|(i, t)| tab_label(i, t))
        .collect();
    // Drop tabs from the left until the current one fits.
    let mut first = 0;
    let fits = |first: usize| {
        labels[first..=app.current]
            .iter()
            .map(|l| width(l))
            .sum::<usize>()
            <= usize::from(area.width)
    };
    while first < app.current && !fits(first) {
        first += 1;
    }
    let mut spans = Vec::new();
    if first > 0 {
        spans.push(Span::styled("«", Style::new().fg(Color::DarkGray)));
    }
    for (i, label) in labels.iter().enumerate().skip(first) {
        let tab = &app.tabs[i];
        let style = if i == app.current {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else if tab.mentioned {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else if tab.unread > 0 {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        spans.push(Span::styled(label.clone(), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_topic(tab: &Tab, frame: &mut Frame<'_>, area: Rect) {
    let style = Style::new().fg(Color::White).bg(Color::DarkGray);
    let cols = usize::from(area.width).saturating_sub(1);
    let line = Line::styled(format!(" {}", one_line(&tab.topic, cols)), style);
    frame.render_widget(Paragraph::new(line).style(style), area);
}

fn draw_scrollback(app: &App, frame: &mut Frame<'_>, area: Rect) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let tab = app.current_tab();
    let height = usize::from(area.height);
    let (rows, _) = visible_rows(tab, RowContext::of(app), usize::from(area.width), height);
    // Chat grows from the bottom: a short scrollback sits just above the status bar.
    let top = area.y + area.height - rows.len() as u16;
    let rows_area = Rect::new(area.x, top, area.width, rows.len() as u16);
    frame.render_widget(Paragraph::new(rows), rows_area);

    if tab.loading_older {
        let note = Line::styled(
            truncate(" loading older messages… ", usize::from(area.width)).to_owned(),
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::REVERSED),
        );
        frame.render_widget(
            Paragraph::new(note),
            Rect::new(area.x, area.y, area.width, 1),
        );
    }
    if tab.scroll > 0 {
        let text = match tab.new_below {
            0 => " scrolled up · End: back to live ".to_owned(),
            1 => " ↓ 1 new message below · End ".to_owned(),
            n => format!(" ↓ {n} new messages below · End "),
        };
        let marker = Line::styled(
            truncate(&text, usize::from(area.width)).to_owned(),
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        );
        let row = Rect::new(area.x, area.y + area.height - 1, area.width, 1);
        frame.render_widget(Clear, row);
        frame.render_widget(
            Paragraph::new(marker).style(Style::new().bg(Color::Yellow)),
            row,
        );
    }
}

fn draw_members(tab: &Tab, frame: &mut Frame<'_>, area: Rect) {
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(Style::new().fg(Color::DarkGray))
        .title(Line::styled(
            format!(" {} members ", tab.members.len()),
            Style::new().fg(Color::DarkGray),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let cols = usize::from(inner.width);
    // As IRC clients list them: ops (the owner first), then voiced members, then everyone
    // else; a column for the marks only when someone has one.
    let marks = !tab.roles.is_empty();
    let mut ordered: Vec<(Role, &String)> = tab.members.iter().map(|m| (tab.role(m), m)).collect();
    ordered.sort_by_key(|(role, _)| *role);
    let lines: Vec<Line<'_>> = ordered
        .into_iter()
        .take(usize::from(inner.height))
        .map(|(role, m)| {
            let nick = sanitize(m);
            let nick_style = Style::new().fg(nick_color(&nick));
            if !marks {
                return Line::styled(truncate(&format!(" {nick}"), cols).to_owned(), nick_style);
            }
            let mark = match role.mark() {
                "" => " ",
                mark => mark,
            };
            let nick_cols = cols.saturating_sub(1 + width(mark));
            Line::from(vec![
                Span::styled(
                    truncate(&format!(" {mark}"), cols).to_owned(),
                    Style::new().fg(Color::Yellow),
                ),
                Span::styled(truncate(&nick, nick_cols).to_owned(), nick_style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_status(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    let sep = Span::styled(" │ ", bar.fg(Color::Gray));
    let (state, state_style) = match &app.conn {
        ConnState::Online => ("online".to_owned(), bar.fg(Color::LightGreen)),
        ConnState::Registering => ("signing in".to_owned(), bar.fg(Color::LightYellow)),
        ConnState::Connecting { attempt: 0 } => {
            ("connecting".to_owned(), bar.fg(Color::LightYellow))
        }
        ConnState::Connecting { attempt } => (
            format!("reconnecting (try {})", attempt + 1),
            bar.fg(Color::LightYellow),
        ),
        ConnState::Stopped { reason } => (
            format!("not connected: {} · /reconnect", sanitize(reason)),
            bar.fg(Color::LightRed).add_modifier(Modifier::BOLD),
        ),
        ConnState::Offline { reason, retry_in } => (
            format!(
                "disconnected: {} · retry in {:.1}s",
                sanitize(reason),
                retry_in.as_secs_f32()
            ),
            bar.fg(Color::LightRed).add_modifier(Modifier::BOLD),
        ),
    };
    let tab = app.current_tab();
    let place = match tab.kind {
        TabKind::Status => "status".to_owned(),
        TabKind::Room => {
            let mut place = format!("#{}", sanitize(&tab.name));
            let flags = tab.modes.flags();
            if !flags.is_empty() {
                place.push(' ');
                place.push_str(&flags);
            }
            if !tab.joined {
                place.push_str(" (not joined)");
            }
            place
        }
        TabKind::Dm => format!("@{}", sanitize(&tab.name)),
    };
    let rtt = match app.rtt {
        Some(d) if d.as_millis() < 10 => format!("rtt {:.1} ms", d.as_secs_f64() * 1000.0),
        Some(d) => format!("rtt {} ms", d.as_millis()),
        None => "rtt –".to_owned(),
    };
    let nick = sanitize(&app.nick).into_owned();
    let mut spans = vec![
        Span::styled(" ", bar),
        Span::styled(state, state_style),
        sep.clone(),
        Span::styled(nick, bar.add_modifier(Modifier::BOLD)),
        sep.clone(),
        Span::styled(place, bar),
    ];
    let server = sanitize(&app.server).into_owned();
    let used = spans.iter().map(|s| width(&s.content)).sum::<usize>();
    let tail = width(&rtt) + width(&server) + 2 * width(&sep.content);
    let active: Vec<&Transfer> = app.transfers.iter().filter(|t| t.is_active()).collect();
    if let Some(first) = active.first() {
        // The transfer comes before the rtt and server: they stay only if it fits whole.
        let room = usize::from(area.width).saturating_sub(used + width(&sep.content));
        let whole = transfer_status(first, active.len() - 1, usize::MAX);
        let keep_tail = room >= tail + width(&whole);
        let text = if room >= width(&whole) {
            whole
        } else {
            transfer_status(first, active.len() - 1, room)
        };
        spans.push(sep.clone());
        spans.push(Span::styled(text, bar.fg(Color::LightCyan)));
        if keep_tail {
            spans.extend([
                sep.clone(),
                Span::styled(rtt, bar),
                sep,
                Span::styled(server, bar),
            ]);
        }
    } else {
        spans.extend([
            sep.clone(),
            Span::styled(rtt, bar),
            sep,
            Span::styled(server, bar),
        ]);
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

/// Cells of the status bar's progress bar.
const BAR_CELLS: usize = 10;

/// The fewest cells the status bar's transfer name is cut to before other parts go.
const MIN_NAME_COLS: usize = 6;

/// The status bar's transfer: `↑ 报告.pdf ████▍     42% 1.2 MiB/s ETA 0:07 (+1)` in at most
/// `cols` cells; the name is cut (by display width) before anything else.
pub fn transfer_status(t: &Transfer, others: usize, cols: usize) -> String {
    let more = if others > 0 {
        format!(" (+{others})")
    } else {
        String::new()
    };
    let parts: Vec<String> = match &t.state {
        TransferState::Running => {
            let mut parts = vec![format!(" {:>3}%", t.percent())];
            if let Some(rate) = t.rate() {
                parts.push(format!(" {}/s", human_size(rate as u64)));
            }
            if let Some(eta) = t.eta_secs() {
                parts.push(format!(" ETA {}", format_eta(eta)));
            }
            parts
        }
        TransferState::Hashing => vec![" hashing…".to_owned()],
        TransferState::WaitingSlot => vec![" waiting for a slot".to_owned()],
        TransferState::Sharing => vec![" verifying…".to_owned()],
        TransferState::Retrying { .. } | TransferState::Stalled { .. } => {
            vec![format!(" {:>3}%", t.percent()), " reconnecting".to_owned()]
        }
        TransferState::Done { .. } | TransferState::Failed { .. } => Vec::new(),
    };
    // Short of room, the ETA goes, then the rate, before the name shrinks below a few cells.
    let mut keep = parts.len();
    let fixed = |keep: usize| width(t.arrow()) + 1 + width(&parts[..keep].concat()) + width(&more);
    while keep > 1 && fixed(keep) + MIN_NAME_COLS > cols {
        keep -= 1;
    }
    let numbers = parts[..keep].concat();
    let fixed = fixed(keep);
    let bar = format!(" {}", progress_bar(t.percent(), BAR_CELLS));
    let name = sanitize(&t.name);
    // The bar goes first when space is short, then the name is cut.
    let with_bar = cols >= fixed + width(&bar) + MIN_NAME_COLS;
    let bar = if with_bar { bar.as_str() } else { "" };
    let name_cols = cols.saturating_sub(fixed + width(bar));
    let shown = if width(&name) <= name_cols {
        name.into_owned()
    } else {
        format!("{}…", truncate(&name, name_cols.saturating_sub(1)))
    };
    let text = format!("{} {shown}{bar}{numbers}{more}", t.arrow());
    truncate(&text, cols).to_owned()
}

/// Columns available for the input text after the prompt.
pub fn input_columns(area_width: u16) -> usize {
    usize::from(area_width).saturating_sub(width(PROMPT)).max(1)
}

fn draw_input(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let cols = input_columns(area.width);
    let shown = app.input.view(cols);
    let line = Line::from(vec![
        Span::styled(PROMPT, Style::new().fg(Color::Cyan)),
        Span::raw(shown.text),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    if area.width == 0 {
        return;
    }
    let x = area.x + (width(PROMPT) + shown.cursor_x).min(usize::from(area.width) - 1) as u16;
    frame.set_cursor_position(Position::new(x, area.y));
}

#[cfg(test)]
mod tests;
