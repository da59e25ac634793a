//! Terminal setup and restore: raw mode, alternate screen, bracketed paste, mouse capture.
//!
//! The terminal must come back in every way the program can end: normal exit, error,
//! panic (a hook), and signals (the runtime turns SIGTERM/SIGHUP into a quit, so they take
//! the normal path). [`TerminalGuard`] restores on drop, which covers early returns.
//!
//! Layout:
//! - [`init`]: enters the TUI modes and installs the panic hook; returns the guard.
//! - [`restore`]: leaves them; idempotent and safe to call from the panic hook.

use std::io::{self, stdout};
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use ratatui::crossterm::execute;

/// Whether our modes are on, so restoring twice (guard + panic hook) does nothing twice.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct TerminalGuard(());

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Enters raw mode and the alternate screen (via `ratatui::try_init`, which also installs a
/// panic hook that restores them), then enables bracketed paste and mouse capture, and
/// chains a hook that turns those off before ratatui's runs.
///
/// # Errors
/// When the terminal refuses a mode; whatever was already enabled is restored first.
pub fn init() -> io::Result<(DefaultTerminal, TerminalGuard)> {
    let terminal = ratatui::try_init()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let guard = TerminalGuard(());
    execute!(stdout(), EnableBracketedPaste, EnableMouseCapture)?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    Ok((terminal, guard))
}

/// Leaves every mode [`init`] entered. Does nothing when they are already off.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Ignored: restoring is best effort, and the next step must run regardless.
    let _ = execute!(stdout(), DisableMouseCapture, DisableBracketedPaste);
    ratatui::restore();
}
