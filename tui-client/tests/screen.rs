//! In-process "screen" tests: a real `chat-server` on `127.0.0.1:0`, real `net` tasks, and
//! `App` + `update` + `view` driven by what arrives, rendered on ratatui's `TestBackend`.
//!
//! A small TCP proxy sits between one client and the server so a test can cut that client's
//! connection (and refuse reconnects for a while) without stopping the server: that is how
//! "what was said while it was away appears, in order, once, marked as missed" is checked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_tui::app::{ConnState, EntryKind, MsgState, TabKind};
use chat_tui::net::{self, NetCommand, NetConfig};
use chat_tui::{Action, App, Effect, NetEvent, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

mod harness;

use harness::Server;

/// Bound on every wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

async fn spawn_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(listener, chat_server::Config::default())
}

/// One client: its state, driven by its own network task.
struct Client {
    app: App,
    cmd_tx: mpsc::UnboundedSender<NetCommand>,
    events_rx: mpsc::Receiver<NetEvent>,
    net: JoinHandle<()>,
    quit: bool,
}

impl Client {
    fn start(nick: &str, addr: SocketAddr) -> Self {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (cmd_tx, net) = net::spawn(NetConfig::new(addr.to_string()), events_tx);
        let mut app = App::new(nick, addr.to_string());
        app.now_ms = 1_700_000_000_000;
        Self {
            app,
            cmd_tx,
            events_rx,
            net,
            quit: false,
        }
    }

    fn apply(&mut self, action: Action) {
        let effects = update(&mut self.app, action);
        // The rest are transfers' effects: no test here shares files.
        let rest = harness::to_net(effects, self.app.conn_gen, &self.cmd_tx);
        if rest.contains(&Effect::Quit) {
            self.quit = true;
        }
    }

    fn type_line(&mut self, line: &str) {
        for key in harness::typed(line) {
            self.apply(key);
        }
    }

    /// Feeds network events into the app until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.app) {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events_rx.recv()).await {
                Ok(Some(ev)) => self.apply(Action::Net(ev)),
                Ok(None) => panic!("{}: network task ended", self.app.nick),
                Err(_) => panic!(
                    "{}: timed out waiting for {what}; screen:\n{}",
                    self.app.nick,
                    self.screen(80, 24)
                ),
            }
        }
    }

    fn screen(&self, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal
            .draw(|f| chat_tui::view::view(&self.app, f))
            .unwrap();
        terminal.backend().to_string()
    }

    async fn online_in_lobby(&mut self) {
        self.until("online in the lobby", |app| {
            app.online()
                && app.current_tab().name == "lobby"
                && app.current_tab().members.iter().any(|m| app.is_me(m))
        })
        .await;
    }

    async fn stop(self) {
        // Ignored: the task may already have ended.
        let _ = self.cmd_tx.send(NetCommand::Shutdown);
        timeout(WAIT, self.net).await.unwrap().unwrap();
    }
}

fn lobby_messages(app: &App) -> Vec<(String, String, MsgState)> {
    let i = app.room_index("lobby").expect("lobby tab");
    app.tabs[i]
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message {
                from, text, state, ..
            } => Some((from.clone(), text.clone(), *state)),
            _ => None,
        })
        .collect()
}

fn has_message(app: &App, text: &str, state: MsgState) -> bool {
    app.room_index("lobby").is_some()
        && lobby_messages(app)
            .iter()
            .any(|(_, t, s)| t == text && *s == state)
}

#[tokio::test]
async fn two_clients_chat_in_cjk_and_dm_on_screen() {
    let server = spawn_server().await;
    let mut alice = Client::start("alice", server.addr);
    alice.online_in_lobby().await;
    let mut bob = Client::start("小明", server.addr);
    bob.online_in_lobby().await;
    alice
        .until("bob in the member list", |app| {
            app.current_tab().members.iter().any(|m| m == "小明")
        })
        .await;

    bob.type_line("你好，alice！今天好吗 🌸");
    bob.until("bob's message acknowledged", |app| app.pending.is_empty())
        .await;
    alice
        .until("bob's message", |app| {
            has_message(app, "你好，alice！今天好吗 🌸", MsgState::Normal)
        })
        .await;
    let screen = alice.screen(80, 24);
    assert!(
        screen.contains("<小明> 你好，alice！今天好吗 🌸"),
        "{screen}"
    );
    assert!(screen.contains("│ 小明"), "member list: {screen}");
    assert!(
        screen.contains(" online │ alice │ #lobby +t │ "),
        "{screen}"
    );

    alice.type_line("こんにちは 小明 👋");
    alice
        .until("alice's message acknowledged", |app| app.pending.is_empty())
        .await;
    bob.until("alice's message", |app| {
        has_message(app, "こんにちは 小明 👋", MsgState::Normal)
    })
    .await;

    alice.type_line("/msg 小明 ひみつ");
    bob.until("a DM tab from alice", |app| {
        app.dm_index("alice")
            .is_some_and(|i| app.tabs[i].unread == 1 && app.tabs[i].kind == TabKind::Dm)
    })
    .await;
    let narrow = bob.screen(40, 12);
    assert!(narrow.contains("@alice (1)"), "{narrow}");
    assert!(narrow.contains("<alice> こんにちは 小明 👋"), "{narrow}");

    alice.type_line("/quit");
    assert!(alice.quit);
    alice.stop().await;
    bob.until("alice's departure", |app| {
        !app.current_tab().members.iter().any(|m| m == "alice")
    })
    .await;
    bob.stop().await;
    server.stop().await;
}

/// Forwards connections to `target` until cut; while paused, refuses new ones.
struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    paused: Arc<Mutex<bool>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(Mutex::new(false));
        let (links2, paused2) = (links.clone(), paused.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *paused2.lock().unwrap() {
                    continue; // dropped: the client sees the connection close at once
                }
                let link = tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.unwrap();
                    // Ignored: the link ends when either side (or the test) closes it.
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                links2.lock().unwrap().push(link);
            }
        });
        Self {
            addr,
            links,
            paused,
        }
    }

    /// Cuts every live connection and refuses new ones.
    fn cut(&self) {
        *self.paused.lock().unwrap() = true;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn resume(&self) {
        *self.paused.lock().unwrap() = false;
    }
}

#[tokio::test]
async fn after_a_drop_the_client_catches_up_in_order_once_and_resends_what_was_typed() {
    let server = spawn_server().await;
    let proxy = Proxy::start(server.addr).await;
    let mut alice = Client::start("alice", proxy.addr);
    alice.online_in_lobby().await;
    let mut bob = Client::start("bob", server.addr);
    bob.online_in_lobby().await;
    bob.type_line("before the drop");
    alice
        .until("the first message", |app| {
            has_message(app, "before the drop", MsgState::Normal)
        })
        .await;

    proxy.cut();
    alice
        .until("the drop to show", |app| {
            matches!(app.conn, ConnState::Offline { .. })
        })
        .await;
    let screen = alice.screen(80, 24);
    assert!(screen.contains(" disconnected: "), "{screen}");
    alice.type_line("typed while away 离线");
    assert_eq!(alice.app.pending.len(), 1);

    for text in ["missed one", "missed two 二", "missed three"] {
        bob.type_line(text);
    }
    bob.until("bob's messages acknowledged", |app| app.pending.is_empty())
        .await;

    proxy.resume();
    alice
        .until("catching up and the resend acknowledged", |app| {
            app.online()
                && app.pending.is_empty()
                && has_message(app, "missed three", MsgState::Missed)
                && has_message(app, "typed while away 离线", MsgState::Normal)
        })
        .await;
    let got: Vec<String> = lobby_messages(&alice.app)
        .into_iter()
        .map(|(from, text, _)| format!("{from}: {text}"))
        .collect();
    assert_eq!(
        got,
        [
            "bob: before the drop",
            "bob: missed one",
            "bob: missed two 二",
            "bob: missed three",
            "alice: typed while away 离线",
        ],
        "in order, once"
    );
    bob.until("alice's resent message, once", |app| {
        has_message(app, "typed while away 离线", MsgState::Normal)
    })
    .await;
    let seen = lobby_messages(&bob.app)
        .iter()
        .filter(|(_, t, _)| t == "typed while away 离线")
        .count();
    assert_eq!(seen, 1);
    let screen = alice.screen(80, 24);
    assert!(screen.contains("»<bob> missed two 二"), "{screen}");

    // The client's own RTT measurement and the server's ping answer need no user action;
    // asking for the room list is a plain round trip through the real server.
    alice.apply(Action::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    alice.type_line("/rooms");
    alice
        .until("the room list", |app| {
            app.current_tab().entries.iter().any(
                |e| matches!(&e.kind, EntryKind::Info(t) if t.starts_with("rooms: #lobby (2)")),
            )
        })
        .await;

    alice.stop().await;
    bob.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn rtt_is_measured_against_the_real_server() {
    let server = spawn_server().await;
    let mut alice = Client::start("alice", server.addr);
    alice.online_in_lobby().await;
    alice.until("an RTT", |app| app.rtt.is_some()).await;
    let screen = alice.screen(80, 24);
    assert!(screen.contains(" ms │ "), "{screen}");
    alice.stop().await;
    server.stop().await;
}
