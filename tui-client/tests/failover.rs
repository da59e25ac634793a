//! Several servers: real `chat-server`s in this process on `127.0.0.1:0`, a client given
//! all of their addresses (its real `net` task, `App` + `update` driven by what arrives),
//! and its server stopped under it. It must end up on the next one and keep working; when
//! that one serves the same history (the same database, as nodes of a cluster serve the
//! same stream), it must backfill with `since`: nothing missing, nothing twice.

use std::time::Duration;

use chat_shared::ClientMsg;
use chat_tui::app::{ConnState, EntryKind, MsgState};
use chat_tui::net::{self, NetCommand, NetConfig, ServerAddr};
use chat_tui::{Action, App, Effect, NetEvent, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

mod harness;

use harness::Server;

/// Bound on every wait for something that should happen.
const WAIT: Duration = Duration::from_secs(15);

/// A listener on a free loopback port, and its address.
async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// A quick server: sessions are not waited for long when it stops.
fn config(storage: chat_server::Storage) -> chat_server::Config {
    chat_server::Config {
        storage,
        shutdown_grace: Duration::from_millis(300),
        ..chat_server::Config::default()
    }
}

/// One client: its state, driven by its own network task over `servers`.
struct Client {
    app: App,
    cmd_tx: mpsc::UnboundedSender<NetCommand>,
    events_rx: mpsc::Receiver<NetEvent>,
    net: JoinHandle<()>,
    /// Every request sent, in order.
    sent: Vec<ClientMsg>,
}

impl Client {
    fn start(nick: &str, servers: &[&str]) -> Self {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let servers = servers.iter().map(|a| ServerAddr::plain(*a)).collect();
        let (cmd_tx, net) = net::spawn(NetConfig::servers(servers), events_tx);
        let mut app = App::new(nick, "not yet");
        app.now_ms = 1_700_000_000_000;
        Self {
            app,
            cmd_tx,
            events_rx,
            net,
            sent: Vec::new(),
        }
    }

    fn apply(&mut self, action: Action) {
        let effects = update(&mut self.app, action);
        for effect in &effects {
            if let Effect::Send(req) = effect {
                self.sent.push(req.msg.clone());
            }
        }
        let rest = harness::to_net(effects, self.app.conn_gen, &self.cmd_tx);
        assert!(rest.is_empty(), "no transfers here: {rest:?}");
    }

    fn say(&mut self, line: &str) {
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
                    self.screen()
                ),
            }
        }
    }

    async fn online_in_lobby_on(&mut self, server: &str) {
        let what = format!("online in the lobby on {server}");
        self.until(&what, |app| {
            let Some(i) = app.room_index("lobby") else {
                return false;
            };
            app.online()
                && app.server == server
                && app.joins_in_flight.is_empty()
                && app.tabs[i].joined
                && app.tabs[i].members.iter().any(|m| app.is_me(m))
        })
        .await;
    }

    async fn sees(&mut self, text: &str) {
        let what = format!("{text:?} in the lobby");
        self.until(&what, |app| {
            lobby_messages(app)
                .iter()
                .any(|(t, s)| t == text && *s != MsgState::Pending)
        })
        .await;
    }

    fn screen(&self) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
        terminal
            .draw(|f| chat_tui::view::view(&self.app, f))
            .unwrap();
        terminal.backend().to_string()
    }

    async fn stop(self) {
        // Ignored: the task may already have ended.
        let _ = self.cmd_tx.send(NetCommand::Shutdown);
        timeout(WAIT, self.net).await.unwrap().unwrap();
    }
}

/// The lobby's messages: text and state.
fn lobby_messages(app: &App) -> Vec<(String, MsgState)> {
    let Some(i) = app.room_index("lobby") else {
        return Vec::new();
    };
    app.tabs[i]
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { text, state, .. } => Some((text.clone(), *state)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn when_its_server_stops_the_client_moves_to_the_next_and_keeps_chatting() {
    let (listener_a, a) = listener().await;
    let (listener_b, b) = listener().await;
    let node_a = Server::start(listener_a, config(chat_server::Storage::Memory));
    let node_b = Server::start(listener_b, config(chat_server::Storage::Memory));
    let mut alice = Client::start("alice", &[&a, &b]);
    alice.online_in_lobby_on(&a).await;
    let mut bob = Client::start("bob", &[&b]);
    bob.online_in_lobby_on(&b).await;
    alice.say("on the first node");
    alice.sees("on the first node").await;

    node_a.stop().await;
    alice.online_in_lobby_on(&b).await;
    assert!(
        alice.screen().contains(" online │ alice │ #lobby │ rtt"),
        "{}",
        alice.screen()
    );
    assert!(alice.screen().contains(&b), "{}", alice.screen());
    alice.say("now on the second");
    bob.sees("now on the second").await;
    bob.say("welcome over, alice");
    alice.sees("welcome over, alice").await;
    alice.sees("now on the second").await;
    assert!(alice.app.pending.is_empty());
    let texts: Vec<String> = lobby_messages(&alice.app)
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        texts,
        [
            "on the first node",
            "now on the second",
            "welcome over, alice"
        ]
    );

    alice.stop().await;
    bob.stop().await;
    node_b.stop().await;
}

#[tokio::test]
async fn on_a_node_with_the_same_history_it_backfills_with_since_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = || chat_server::Storage::Sqlite(dir.path().join("chat.db"));
    let (listener_a, a) = listener().await;
    // B's port is taken now (so the client knows it), and served only once A is gone: the
    // two never number the same room at once.
    let (listener_b, b) = listener().await;
    let node_a = Server::start(listener_a, config(db()));
    let mut alice = Client::start("alice", &[&a, &b]);
    alice.online_in_lobby_on(&a).await;
    let mut bob = Client::start("bob", &[&a, &b]);
    bob.online_in_lobby_on(&a).await;
    for text in ["before 1", "before 2"] {
        bob.say(text);
        alice.sees(text).await;
    }
    let i = alice.app.room_index("lobby").unwrap();
    let seen = alice.app.tabs[i].last_seq;
    assert!(seen > 0);

    node_a.stop().await;
    let node_b = Server::start(listener_b, config(db()));
    // bob is back first and says something alice is not there to see live.
    bob.online_in_lobby_on(&b).await;
    for text in ["while away 1", "while away 2"] {
        bob.say(text);
        bob.sees(text).await;
    }
    assert!(bob.app.pending.is_empty());

    let before = alice.sent.len();
    alice.online_in_lobby_on(&b).await;
    let rejoins: Vec<&ClientMsg> = alice.sent[before..]
        .iter()
        .filter(|m| matches!(m, ClientMsg::Join { .. }))
        .collect();
    assert_eq!(
        rejoins,
        [&ClientMsg::Join {
            room: "lobby".into(),
            since: Some(seen),
            key: None
        }],
        "rejoined with since = the last seq seen on A"
    );
    alice.sees("while away 2").await;
    alice.say("back");
    bob.sees("back").await;
    alice.sees("back").await;

    let got = lobby_messages(&alice.app);
    let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before 1",
            "before 2",
            "while away 1",
            "while away 2",
            "back"
        ],
        "in order, once each"
    );
    assert_eq!(got[0].1, MsgState::Normal);
    assert_eq!(got[2].1, MsgState::Missed, "fetched with since, marked");
    assert_eq!(got[3].1, MsgState::Missed);
    let i = alice.app.room_index("lobby").unwrap();
    let tab = &alice.app.tabs[i];
    assert!(
        !tab.entries
            .iter()
            .any(|e| matches!(&e.kind, EntryKind::Notice(t) if t.contains("numbering"))),
        "the same stream: no renumbering"
    );
    assert_eq!(alice.app.conn, ConnState::Online);

    alice.stop().await;
    bob.stop().await;
    node_b.stop().await;
}
