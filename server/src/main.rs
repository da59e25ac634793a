//! `chat-server` binary: command line, logging, signals; the server itself is the library.

use anyhow::Context;
use chat_server::cli::{self, CliError, Loaded, LogFormat};
use chat_server::{Config, run_with_reload};
use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

/// The allocator. Every delivery allocates on one worker thread and frees on another (an
/// event's encoding, a write batch); glibc's malloc took an arena lock for those frees,
/// which under a busy room showed up as futex calls and a tenth of the server's CPU.
/// jemalloc frees across threads without that, and it also holds an idle connection in
/// less memory (W4: 2.1 KiB instead of 2.4–2.5; mimalloc, tried too, took 2.7).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A stream of reloaded configurations, one per SIGHUP, when there is something to reload
/// (a config file or a TLS certificate): without either the signal keeps its usual
/// meaning (the end of the process). Installed before the server listens, as the stop
/// signals are.
///
/// A file that no longer reads is logged and the running configuration stays; so are the
/// changed settings that wait for a restart.
///
/// # Errors
/// The handler cannot be installed.
fn reload_signal(loaded: Loaded) -> std::io::Result<futures::stream::BoxStream<'static, Config>> {
    use futures::StreamExt;
    #[cfg(unix)]
    if loaded.has_file() || loaded.config.tls.is_some() {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup())?;
        return Ok(futures::stream::unfold(
            (hangup, loaded),
            // `started` stays the configuration read at start: what runs of every setting
            // that only a restart changes, so each reload is compared with it.
            |(mut hangup, mut started)| async move {
                loop {
                    hangup.recv().await?;
                    info!("SIGHUP received: reading the configuration again");
                    // Off the async workers: it reads a file.
                    let (again, next) = tokio::task::spawn_blocking(move || {
                        let next = started.reload();
                        (started, next)
                    })
                    .await
                    .ok()?;
                    started = again;
                    match next {
                        Ok(next) => {
                            for key in started.waiting_for_restart(&next) {
                                warn!("configuration reloaded: `{key}` changed, which takes effect at a restart; the running value stays");
                            }
                            return Some((next.config, (hangup, started)));
                        }
                        Err(e) => warn!("configuration not reloaded, the running one stays: {e}"),
                    }
                }
            },
        )
        .boxed());
    }
    let _ = loaded;
    Ok(futures::stream::pending().boxed())
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled: a signal that arrives as soon as
/// the server has said where it listens must stop it gracefully, not kill it.
///
/// # Errors
/// A handler cannot be installed.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // Ctrl-C is the only stop signal here; an error means no handler, so never stop.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loaded = match cli::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        // --help, --version, or a bad flag: clap's own message and exit code.
        Err(CliError::Args(e)) => e.exit(),
        Err(CliError::File(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if loaded.args.print_config {
        print!("{}", loaded.to_toml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match loaded.args.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level, beside `timestamp`, `level`, `message` and `target`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    if let Some(file) = &loaded.args.config {
        info!("configuration file {}", file.display());
    }
    // Each client is a file descriptor; the usual soft limit (1024) is far below
    // --max-clients, while the hard limit rarely is.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!("file descriptor limit {n}"),
        Err(e) => warn!(error = %e, "could not raise the file descriptor limit"),
    }
    // Before the address is known to anyone: see `stop_signal`.
    let stop = stop_signal().context("cannot install the signal handlers")?;
    let config = loaded.config.clone();
    let (listen, backlog) = (loaded.args.listen.clone(), loaded.args.backlog);
    let reload = reload_signal(loaded).context("cannot install the SIGHUP handler")?;
    let listener = bind(&listen, backlog)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    run_with_reload(listener, config, stop, reload).await
}

/// Binds `addr` (the first address it resolves to) with a listen backlog of `backlog`.
/// (`TcpListener::bind` takes no backlog, and its own is too short for a reconnect storm.)
async fn bind(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted server can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
