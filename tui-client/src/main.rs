//! `chat-tui --nick NAME [--server [tls://]HOST:PORT[,…]]… [--tls] [--tls-ca FILE]
//! [--password-file FILE | --ask-password] [--download-dir DIR]`: the terminal chat client.
//!
//! Thin on purpose: arguments, the terminal check, the TLS trust decision (asked before
//! the screen starts), terminal setup and the runtime; the client itself is the `chat_tui`
//! library.

use std::io::{IsTerminal, stderr, stdin, stdout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chat_shared::validate::Nick;
use chat_tui::endpoint::Endpoint;
use chat_tui::known_servers::KnownServers;
use chat_tui::net::ServerAddr;
use chat_tui::tls::{Roots, TlsClient};
use chat_tui::tofu::{self, TofuError};
use chat_tui::transport::Transport;
use clap::Parser;

/// How long the trial TLS connection before the screen may take.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Terminal client for chat-server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Your nick: letters, digits, '-' and '_', at most 32 characters.
    #[arg(long, env = "CHAT_NICK")]
    nick: String,
    /// Server address: HOST:PORT, or tls://HOST:PORT (the same as --tls). Several (nodes
    /// of one cluster): repeat the flag or separate them with commas; they are tried in
    /// turn, at start and whenever the connection is lost.
    #[arg(
        long,
        env = "CHAT_SERVER",
        value_name = "ADDR",
        value_delimiter = ',',
        default_value = chat_shared::DEFAULT_ADDR
    )]
    server: Vec<String>,
    /// Connect over TLS, verifying the server against the system's root certificates; a
    /// certificate they do not vouch for (self-signed) is shown and asked about once.
    #[arg(long, env = "CHAT_TLS")]
    tls: bool,
    /// Trust only the CA certificates in this PEM file (implies --tls; no question asked).
    #[arg(long, env = "CHAT_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Where accepted self-signed certificates are remembered. Default:
    /// $XDG_CONFIG_HOME/chat-tui/known_servers (or ~/.config/chat-tui/known_servers).
    #[arg(long, env = "CHAT_KNOWN_SERVERS", value_name = "FILE")]
    known_servers: Option<PathBuf>,
    /// A file whose first line is your registered nick's password.
    #[arg(long, conflicts_with = "ask_password")]
    password_file: Option<PathBuf>,
    /// Ask for your registered nick's password (hidden) before the screen starts. The
    /// environment variable CHAT_PASSWORD gives it too.
    #[arg(long)]
    ask_password: bool,
    /// Where /download saves files when it is given no directory.
    #[arg(
        long,
        env = "CHAT_DOWNLOAD_DIR",
        value_name = "DIR",
        default_value = "."
    )]
    download_dir: PathBuf,
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
    let endpoints = match Endpoint::parse_list(&cli.server, cli.tls || cli.tls_ca.is_some()) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            eprintln!("chat-tui: --server {e}");
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
    let transports = match runtime.block_on(transports(&endpoints, &cli)) {
        Ok(transports) => transports,
        Err(TofuError::Changed(warning)) => {
            eprintln!("{warning}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("chat-tui: {e}");
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
    let servers = endpoints.iter().zip(transports);
    let servers = servers.map(|(endpoint, transport)| ServerAddr {
        addr: endpoint.addr(),
        transport,
        label: endpoint.display(),
    });
    let options = chat_tui::Options {
        nick: nick.to_string(),
        servers: servers.collect(),
        utc_offset_secs,
        password,
        download_dir: cli.download_dir.clone(),
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

/// For each server, in order: plain TCP, or TLS with its trust decided by `--tls-ca`, or by
/// the system's roots and, for a certificate they do not vouch for, the known-servers file
/// and the user (asked once per server whose certificate is unknown).
async fn transports(endpoints: &[Endpoint], cli: &Cli) -> Result<Vec<Transport>, TofuError> {
    if endpoints.iter().all(|e| !e.tls) {
        return Ok(vec![Transport::Plain; endpoints.len()]);
    }
    if let Some(ca) = &cli.tls_ca {
        let roots = Roots::CaFile(ca.clone());
        let tls = |e: &Endpoint| -> Result<Transport, TofuError> {
            Ok(Transport::Tls(TlsClient::new(&e.host, &roots, None)?))
        };
        return endpoints.iter().map(tls).collect();
    }
    let path = cli
        .known_servers
        .clone()
        .or_else(KnownServers::default_path)
        .unwrap_or_else(|| PathBuf::from("chat-tui-known_servers"));
    let mut known = KnownServers::load(&path)?;
    let mut transports = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        // The question goes to stderr like ssh's, and the answer is a line of normal input:
        // the screen has not started yet.
        let transport = tofu::decide(
            endpoint,
            &Roots::System,
            &mut known,
            TRIAL_TIMEOUT,
            &mut stdin().lock(),
            &mut stderr(),
        )
        .await?;
        transports.push(transport);
    }
    Ok(transports)
}
