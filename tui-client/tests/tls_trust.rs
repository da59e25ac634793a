//! Trust on first use against the real server with `TlsSource::SelfSigned` (what
//! `--tls-self-signed` runs), without a terminal: the question and its answer, the
//! fingerprint remembered, no question the second time, a changed certificate refused, and
//! the network task chatting over TLS with the decision pinned.

use std::time::Duration;

use chat_shared::{ClientMsg, Request, ServerMsg};
use chat_tui::NetEvent;
use chat_tui::endpoint::Endpoint;
use chat_tui::known_servers::KnownServers;
use chat_tui::net::{self, NetCommand, NetConfig, ServerAddr};
use chat_tui::tls::{Roots, TlsClient};
use chat_tui::tofu::{TofuError, decide};
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;

use common::tls_server;

const WAIT: Duration = Duration::from_secs(10);

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

async fn ask(
    addr: &str,
    known: &mut KnownServers,
    answer: &str,
) -> (Result<chat_tui::transport::Transport, TofuError>, String) {
    let endpoint = Endpoint::parse(&format!("tls://{addr}"), false).unwrap();
    let mut shown = Vec::new();
    let mut input = answer.as_bytes();
    let decided = decide(
        &endpoint,
        &Roots::System,
        known,
        WAIT,
        &mut input,
        &mut shown,
    );
    let decided = timeout(WAIT, decided).await.expect("decide timed out");
    (decided, String::from_utf8(shown).unwrap())
}

#[tokio::test]
async fn first_use_asks_then_remembers_and_a_changed_certificate_is_refused() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let store = dirs[0].path().join("config/known_servers");
    let (first, addr) = listener().await;
    let first = tls_server(first, dirs[0].path()).await;
    let fp = first.fingerprint.clone();

    // No: nothing is remembered.
    let mut known = KnownServers::load(&store).unwrap();
    let (decided, shown) = ask(&addr, &mut known, "no\n").await;
    assert!(matches!(decided, Err(TofuError::Declined)), "{decided:?}");
    assert!(
        shown.contains(&format!("SHA-256 fingerprint: {fp}\n")),
        "{shown}"
    );
    assert!(!store.exists());

    // Yes: remembered, and the transport works.
    let (decided, _) = ask(&addr, &mut known, "yes\n").await;
    let transport = decided.unwrap();
    assert_eq!(
        KnownServers::load(&store).unwrap().get(&addr),
        Some(fp.as_str())
    );

    // Again (another run): no question.
    let mut known = KnownServers::load(&store).unwrap();
    let (decided, shown) = ask(&addr, &mut known, "").await;
    assert!(decided.is_ok(), "{decided:?}");
    assert_eq!(shown, "", "a known certificate is accepted silently");

    // The network task speaks the framed protocol over TLS.
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let config = NetConfig::servers(vec![ServerAddr {
        transport,
        ..ServerAddr::plain(addr.clone())
    }]);
    let (cmd_tx, handle) = net::spawn(config, events_tx);
    let mut welcomed = false;
    while !welcomed {
        let event = timeout(WAIT, events_rx.recv()).await.unwrap().unwrap();
        match event {
            NetEvent::Connected { generation } => {
                let hello = ClientMsg::Hello {
                    nick: "alice".into(),
                    version: None,
                    client: None,
                    password: None,
                };
                let req = Request::new(hello);
                cmd_tx.send(NetCommand::Send { generation, req }).unwrap();
            }
            NetEvent::Message(ServerMsg::Welcome { .. }) => welcomed = true,
            NetEvent::Disconnected { reason, .. } => panic!("disconnected: {reason}"),
            _ => {}
        }
    }
    cmd_tx.send(NetCommand::Shutdown).unwrap();
    timeout(WAIT, handle).await.unwrap().unwrap();

    // Another certificate where this one was remembered: refused with the warning.
    let (second, other) = listener().await;
    let second = tls_server(second, dirs[1].path()).await;
    let mut known = KnownServers::load(&store).unwrap();
    known.add(&other, &fp).unwrap();
    let (decided, shown) = ask(&other, &mut known, "yes\n").await;
    let Err(TofuError::Changed(warning)) = decided else {
        panic!("expected a refusal, got {decided:?}");
    };
    assert_eq!(shown, "", "no question about a changed certificate");
    assert!(
        warning.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{warning}"
    );
    assert!(warning.contains(&second.fingerprint), "{warning}");
    first.shut_down().await;
    second.shut_down().await;
}

/// The first event after `Connecting` from a network task for `addr` over `transport`.
async fn first_outcome(addr: &str, transport: chat_tui::transport::Transport) -> NetEvent {
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let config = NetConfig::servers(vec![ServerAddr {
        transport,
        ..ServerAddr::plain(addr)
    }]);
    let (cmd_tx, handle) = net::spawn(config, events_tx);
    let outcome = loop {
        match timeout(WAIT, events_rx.recv()).await.unwrap().unwrap() {
            NetEvent::Connecting { .. } => {}
            event => break event,
        }
    };
    cmd_tx.send(NetCommand::Shutdown).unwrap();
    timeout(WAIT, handle).await.unwrap().unwrap();
    outcome
}

#[tokio::test]
async fn a_reconnect_keeps_the_decision_and_tls_ca_trusts_only_its_file() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (listener_a, addr_a) = listener().await;
    let a = tls_server(listener_a, dirs[0].path()).await;
    let (listener_b, addr_b) = listener().await;
    let b = tls_server(listener_b, dirs[1].path()).await;
    let tls = |roots: &Roots, pinned: Option<&str>| {
        let client = TlsClient::new("127.0.0.1", roots, pinned.map(str::to_owned)).unwrap();
        chat_tui::transport::Transport::Tls(client)
    };

    // The network task pinned to A's certificate, meeting B's (as a reconnect would after
    // the certificate changed): refused with the warning, never connected.
    let outcome = first_outcome(&addr_b, tls(&Roots::System, Some(&a.fingerprint))).await;
    let NetEvent::Disconnected { reason, .. } = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert!(
        reason.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{reason}"
    );
    assert!(reason.contains(&b.fingerprint), "{reason}");
    // Unpinned, an unknown certificate is refused too, with what to do about it.
    let outcome = first_outcome(&addr_b, tls(&Roots::System, None)).await;
    assert!(
        matches!(&outcome, NetEvent::Disconnected { reason, .. } if reason.contains("restart chat-tui")),
        "{outcome:?}"
    );

    // --tls-ca with A's certificate: A is trusted, B is refused without any question.
    let ca = Roots::CaFile(dirs[0].path().join("tls-self-signed-cert.pem"));
    let outcome = first_outcome(&addr_a, tls(&ca, None)).await;
    assert!(matches!(outcome, NetEvent::Connected { .. }), "{outcome:?}");
    let outcome = first_outcome(&addr_b, tls(&ca, None)).await;
    let NetEvent::Disconnected { reason, .. } = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert!(
        !reason.contains("restart chat-tui"),
        "no trust on first use: {reason}"
    );
    let endpoint = Endpoint::parse(&addr_b, true).unwrap();
    let mut known = KnownServers::load(&dirs[1].path().join("known_servers")).unwrap();
    let mut shown = Vec::new();
    let decided = decide(
        &endpoint,
        &ca,
        &mut known,
        WAIT,
        &mut &b"yes\n"[..],
        &mut shown,
    )
    .await;
    assert!(
        decided.is_ok(),
        "a CA failure is the network task's to report: {decided:?}"
    );
    assert!(shown.is_empty());

    a.shut_down().await;
    b.shut_down().await;
}
