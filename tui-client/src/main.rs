//! `chat-tui --nick NAME [--server HOST:PORT] [--password-file FILE | --ask-password]`:
//! the terminal chat client.
//!
//! Thin on purpose: arguments, the terminal check, terminal setup and the runtime; the
//! client itself is the `chat_tui` library.

use std::io::{IsTerminal, stdin, stdout};
use std::process::ExitCode;

use chat_shared::validate::Nick;
use clap::Parser;

/// Terminal client for chat-server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Your nick: letters, digits, '-' and '_', at most 32 characters.
    #[arg(long, env = "CHAT_NICK")]
    nick: String,
    /// Server address.
    #[arg(long, env = "CHAT_SERVER", default_value = chat_shared::DEFAULT_ADDR)]
    server: String,
    /// A file whose first line is your registered nick's password.
    #[arg(long, conflicts_with = "ask_password")]
    password_file: Option<std::path::PathBuf>,
    /// Ask for your registered nick's password (hidden) before the screen starts. The
    /// environment variable CHAT_PASSWORD gives it too.
    #[arg(long)]
    ask_password: bool,
}

/// The password from `--password-file`, `CHAT_PASSWORD` or the hidden prompt, in that
/// order; none if none is asked for. It stays in memory: never written anywhere.
fn password(cli: &Cli) -> Result<Option<chat_shared::Password>, String> {
    let first_line = |s: &str| s.lines().next().unwrap_or("").to_owned();
    let password = if let Some(path) = &cli.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        Some(first_line(&text))
    } else if let Some(env) = std::env::var_os("CHAT_PASSWORD").filter(|_| !cli.ask_password) {
        Some(env.to_string_lossy().into_owned())
    } else if cli.ask_password {
        let prompt = format!("password for {}: ", cli.nick);
        Some(
            rpassword::prompt_password(prompt)
                .map_err(|e| format!("cannot read the password: {e}"))?,
        )
    } else {
        None
    };
    match password {
        Some(p) if p.is_empty() => Err("the password is empty".into()),
        other => Ok(other.map(chat_shared::Password::new)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nick = match Nick::parse(&cli.nick) {
        Ok(nick) => nick,
        Err(e) => {
            eprintln!("chat-tui: invalid nick {:?}: {e}", cli.nick);
            return ExitCode::from(2);
        }
    };
    // Checked before touching terminal modes, so a pipe or a cron job gets one clear line
    // instead of escape sequences.
    if !stdout().is_terminal() || !stdin().is_terminal() {
        eprintln!("chat-tui needs an interactive terminal");
        return ExitCode::from(2);
    }
    // Before the screen starts: the prompt needs the plain terminal.
    let password = match password(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chat-tui: {e}");
            return ExitCode::from(2);
        }
    };
    // Read once, before any thread exists; a DST change during a session is not followed.
    let utc_offset_secs = chrono::Local::now().offset().local_minus_utc();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-tui: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut terminal, guard) = match chat_tui::tui::init() {
        Ok(t) => t,
        Err(e) => {
            chat_tui::tui::restore();
            eprintln!("chat-tui: cannot set up the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = chat_tui::Options {
        nick: nick.to_string(),
        server: cli.server,
        utc_offset_secs,
        password,
    };
    let result = runtime.block_on(chat_tui::run(&mut terminal, options));
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-tui: {e:#}");
            ExitCode::FAILURE
        }
    }
}
