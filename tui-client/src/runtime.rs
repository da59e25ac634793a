//! The only loop that does IO: terminal events, network events, a slow tick and signals go
//! in as [`Action`]s; `update` decides; the [`Effect`]s are carried out; the screen is
//! redrawn only when something changed.
//!
//! Idle cost is near zero: the loop sleeps in `select!` until one of its sources has
//! something, and the tick is once a second.
//!
//! Transfers run as tasks of their own (hashing on the blocking pool), so a 1 GiB upload
//! never delays a keystroke; they report through a channel of their own.
//!
//! Layout:
//! - [`Options`] and [`run`]: what the binary passes in, and the loop.
//! - [`Transfers`]: the running transfer tasks, started and stopped by effects.
//! - `Signals`: SIGTERM and SIGHUP as a future (Unix), turned into a clean quit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, timeout};
use uuid::Uuid;

use crate::app::App;
use crate::http::Http;
use crate::net::{self, NetCommand, NetConfig, ServerAddr};
use crate::transfer::TransferEvent;
use crate::update::{Action, Effect, update};
use crate::view::view;

/// Network events queued between two draws are handled in one batch, up to this many, so a
/// burst (a page of history) costs one redraw instead of hundreds.
const BATCH: usize = 512;

/// What the binary passes in.
#[derive(Debug, Clone)]
pub struct Options {
    /// The nick to ask for.
    pub nick: String,
    /// The servers (`--server`), tried in turn: each with its address, its transport
    /// (plain or TLS, with the trust decision already made) and its status-bar label.
    pub servers: Vec<ServerAddr>,
    /// Local time zone offset for timestamps.
    pub utc_offset_secs: i32,
    /// The nick's password, if it is registered (kept in memory only).
    pub password: Option<chat_shared::Password>,
    /// Where `/download` puts files without a DIR.
    pub download_dir: PathBuf,
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the client on an already initialised terminal until the user quits.
///
/// # Errors
/// When the terminal fails (reading events or drawing) or the network task dies.
pub async fn run(terminal: &mut DefaultTerminal, options: Options) -> anyhow::Result<()> {
    let (events_tx, mut net_rx) = mpsc::channel(1024);
    let (xfer_tx, mut xfer_rx) = mpsc::channel(256);
    let Some(first) = options.servers.first() else {
        bail!("no server to connect to");
    };
    let mut app = App::new(options.nick, first.label.clone());
    let chat = options.servers.iter();
    let chat = chat
        .map(|s| (s.addr.clone(), s.transport.clone()))
        .collect();
    let mut transfers = Transfers::new(Http::servers(chat), xfer_tx);
    let (cmd_tx, mut net_task) = net::spawn(NetConfig::servers(options.servers), events_tx);
    app.utc_offset_secs = options.utc_offset_secs;
    app.password = options.password;
    app.download_dir = options.download_dir;
    app.now_ms = now_ms();
    let size = terminal.size().context("reading the terminal size")?;
    app.size = (size.width, size.height);

    let mut term_events = EventStream::new();
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut signals = Signals::new()?;

    loop {
        if app.needs_redraw {
            terminal.draw(|frame| view(&app, frame))?;
            app.needs_redraw = false;
        }
        let action = tokio::select! {
            ev = term_events.next() => match ev {
                Some(Ok(ev)) => match terminal_action(ev) {
                    Some(action) => action,
                    None => continue,
                },
                Some(Err(e)) => return Err(e).context("reading terminal events"),
                // Expected when the terminal goes away: leave like /quit.
                None => Action::Terminate,
            },
            ev = net_rx.recv() => match ev {
                Some(ev) => Action::Net(ev),
                None => bail!("the network task stopped"),
            },
            // Never closed: `transfers` holds a sender.
            Some(ev) = xfer_rx.recv() => Action::Transfer(ev),
            _ = tick.tick() => Action::Tick { now_ms: now_ms() },
            () = signals.recv() => Action::Terminate,
            res = &mut net_task => bail!("the network task ended: {res:?}"),
        };
        let mut quit = perform(&mut app, action, &cmd_tx, &mut transfers);
        for _ in 0..BATCH {
            if quit {
                break;
            }
            match net_rx.try_recv() {
                Ok(ev) => quit = perform(&mut app, Action::Net(ev), &cmd_tx, &mut transfers),
                Err(_) => break,
            }
        }
        if quit {
            transfers.stop_all();
            // Ignored: if the task is already gone there is nothing left to close.
            let _ = cmd_tx.send(NetCommand::Shutdown);
            // Ignored: a task that does not finish in time is dropped with the runtime.
            let _ = timeout(Duration::from_secs(1), net_task).await;
            return Ok(());
        }
    }
}

/// Feeds one action to `update` and carries out its effects; returns whether to quit.
fn perform(
    app: &mut App,
    action: Action,
    cmd_tx: &mpsc::UnboundedSender<NetCommand>,
    transfers: &mut Transfers,
) -> bool {
    let mut quit = false;
    for effect in update(app, action) {
        match effect {
            Effect::Send(req) => {
                let cmd = NetCommand::Send {
                    generation: app.conn_gen,
                    req,
                };
                // Ignored: a dead network task is noticed by the select loop.
                let _ = cmd_tx.send(cmd);
            }
            Effect::Quit => quit = true,
            // Ignored as for sends: a dead network task is noticed by the select loop.
            Effect::StopReconnecting => {
                let _ = cmd_tx.send(NetCommand::Hold);
            }
            Effect::Reconnect => {
                let _ = cmd_tx.send(NetCommand::Resume);
            }
            effect => transfers.perform(effect),
        }
    }
    quit
}

/// The running transfer tasks, by transfer id; what they report goes to `events`.
#[derive(Debug)]
pub struct Transfers {
    http: Http,
    events: mpsc::Sender<TransferEvent>,
    tasks: HashMap<Uuid, JoinHandle<()>>,
    /// Bytes per upload `PATCH`.
    pub chunk: usize,
}

impl Transfers {
    /// No tasks yet; links are reached with `http`.
    pub fn new(http: Http, events: mpsc::Sender<TransferEvent>) -> Self {
        Self {
            http,
            events,
            tasks: HashMap::new(),
            chunk: crate::tus::CHUNK,
        }
    }

    /// Carries out a transfer effect ([`Effect::Hash`], `Upload`, `Download`, `Cancel`);
    /// others are ignored.
    pub fn perform(&mut self, effect: Effect) {
        self.tasks.retain(|_, task| !task.is_finished());
        match effect {
            Effect::Hash { id, path } => {
                let events = self.events.clone();
                let path = expand_home(&path);
                let task = tokio::spawn(async move {
                    let hashed =
                        tokio::task::spawn_blocking(move || crate::tus::hash_file(&path)).await;
                    let ev = match hashed {
                        Ok(Ok((size, sha256))) => TransferEvent::Hashed { id, size, sha256 },
                        Ok(Err(e)) => TransferEvent::Failed {
                            id,
                            error: format!("cannot read it: {e}"),
                        },
                        Err(e) => TransferEvent::Failed {
                            id,
                            error: format!("cannot read it: {e}"),
                        },
                    };
                    // Ignored: an app that is gone needs no report.
                    let _ = events.send(ev).await;
                });
                self.replace(id, task);
            }
            Effect::Upload(mut job) => {
                job.path = expand_home(&job.path);
                let id = job.id;
                let fut =
                    crate::tus::upload(self.http.clone(), job, self.chunk, self.events.clone());
                self.replace(id, tokio::spawn(fut));
            }
            Effect::Download(mut job) => {
                job.dir = expand_home(&job.dir);
                let id = job.id;
                let fut = crate::download::download(self.http.clone(), job, self.events.clone());
                self.replace(id, tokio::spawn(fut));
            }
            Effect::Cancel(id) => {
                if let Some(task) = self.tasks.remove(&id) {
                    task.abort();
                }
            }
            // Not a transfer's: carried out by the caller.
            Effect::Send(_) | Effect::Quit | Effect::StopReconnecting | Effect::Reconnect => {}
        }
    }

    fn replace(&mut self, id: Uuid, task: JoinHandle<()>) {
        if let Some(old) = self.tasks.insert(id, task) {
            old.abort();
        }
    }

    /// Stops every task (leaving: a partial download stays as its `.part`, an upload's
    /// slot keeps what the server has).
    pub fn stop_all(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }

    /// How many tasks are still running.
    pub fn running(&self) -> usize {
        self.tasks.values().filter(|t| !t.is_finished()).count()
    }
}

/// `~/x` as `$HOME/x`, the way a shell would have it; anything else as it is.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

fn terminal_action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(key) => Some(Action::Key(key)),
        Event::Paste(text) => Some(Action::Paste(text)),
        Event::Mouse(m) => Some(Action::Mouse(m)),
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        // Expected: focus reporting is not enabled, and would change nothing.
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// SIGTERM and SIGHUP (terminal closed). Ctrl-C needs no handler: in raw mode it arrives
/// as a key.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hangup.recv() => {}
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}
