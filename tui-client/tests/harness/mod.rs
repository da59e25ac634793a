//! What the in-process client tests share: the real `chat-server` on a listener of the
//! test's, and the plumbing between `update`'s effects and a real `net` task.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use chat_tui::net::NetCommand;
use chat_tui::{Action, Effect};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Bound on the server's shutdown.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A real chat-server running in this process until [`Server::stop`].
pub(crate) struct Server {
    pub(crate) addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Runs the server with `config` on `listener`.
    pub(crate) fn start(listener: TcpListener, config: chat_server::Config) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Either a stop or a dropped sender ends the server.
            let _ = stopped.await;
        };
        let handle = tokio::spawn(chat_server::run(listener, config, shutdown));
        Self {
            addr,
            stop: Some(stop),
            handle,
        }
    }

    /// Stops it and waits (up to 10 s) for it to end cleanly.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // Ignored: the server may already be gone, which is what we want.
            let _ = stop.send(());
        }
        timeout(STOP_WAIT, &mut self.handle)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Hands the effects meant for the network task to it (requests tagged with `generation`);
/// returns the others, for the caller.
pub(crate) fn to_net(
    effects: Vec<Effect>,
    generation: u64,
    cmd_tx: &mpsc::UnboundedSender<NetCommand>,
) -> Vec<Effect> {
    let mut rest = Vec::new();
    for effect in effects {
        let cmd = match effect {
            Effect::Send(req) => NetCommand::Send { generation, req },
            Effect::StopReconnecting => NetCommand::Hold,
            Effect::Reconnect => NetCommand::Resume,
            other => {
                rest.push(other);
                continue;
            }
        };
        cmd_tx.send(cmd).unwrap();
    }
    rest
}

/// The key presses that type `line` and Enter.
pub(crate) fn typed(line: &str) -> Vec<Action> {
    let key = |code| Action::Key(KeyEvent::new(code, KeyModifiers::NONE));
    line.chars()
        .map(|c| key(KeyCode::Char(c)))
        .chain([key(KeyCode::Enter)])
        .collect()
}
