//! The contract's limits: handshake timeout, message rate, connections per IP.

use std::time::Duration;

use chat_shared::{ByeReason, ClientMsg, ErrorCode, ServerMsg};
use uuid::Uuid;

use crate::common::{Client, Line, Next, WAIT, cfg, say_req, server, spawn_server};

fn short_handshake() -> chat_server::Config {
    chat_server::Config {
        handshake_timeout: Duration::from_millis(400),
        ..cfg()
    }
}

#[tokio::test]
async fn framed_client_without_hello_gets_bye_handshake_timeout_and_close() {
    let srv = spawn_server(short_handshake()).await;
    let mut c = Client::connect(srv.addr).await;
    c.roundtrip().await; // ping is allowed before hello, but does not complete it
    c.expect_bye_then_eof(ByeReason::HandshakeTimeout).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn line_client_without_a_nick_gets_an_error_line_and_close() {
    let srv = spawn_server(short_handshake()).await;
    let mut silent = Line::connect(srv.addr).await;
    let mut wrong = Line::connect(srv.addr).await;
    wrong.send_line("not a nick!").await;
    wrong.expect_error_line().await;
    for l in [&mut silent, &mut wrong] {
        let lines = l.expect_eof().await;
        assert!(
            lines.iter().any(|l| l.starts_with("! ")),
            "a `! ` line before the close: {lines:?}"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn handshake_timeout_does_not_apply_after_registration() {
    let srv = spawn_server(short_handshake()).await;
    let mut a = Client::login(srv.addr, "alice").await;
    let mut b = Line::login(srv.addr, "bob").await;
    tokio::time::sleep(Duration::from_millis(700)).await; // past the handshake deadline
    b.send_line("still here").await;
    a.recv_message("lobby", "still here").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn messages_over_the_burst_get_rate_limited_and_are_dropped() {
    const SENT: usize = 14; // burst 10 at 5/s: some of the last 4 must be refused
    let srv = server().await;
    let mut a = Client::login(srv.addr, "flooder").await;
    let mut b = Client::login(srv.addr, "reader").await;
    a.recv_joined("lobby", "reader").await;
    let ids: Vec<Uuid> = (0..SENT).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        a.send_req(say_req(*id, "lobby", &format!("flood {i}")))
            .await;
    }
    let mut acked = Vec::new();
    let mut limited = Vec::new();
    while acked.len() + limited.len() < SENT {
        match a.recv().await {
            ServerMsg::Message(m) if ids.contains(&m.id) => acked.push(m.id),
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ref_id: Some(r),
                ..
            } if ids.contains(&r) => limited.push(r),
            ServerMsg::Bye { reason, .. } => {
                panic!("bye{{{}}} after {SENT} messages", reason.as_str())
            }
            _ => {}
        }
    }
    assert!(
        acked.len() >= 10,
        "the burst of 10 passes: {} acked",
        acked.len()
    );
    assert!(
        !limited.is_empty(),
        "{SENT} messages at once must exceed the 5/s, burst 10 limit"
    );
    // Others get exactly the accepted ones.
    let mut got = Vec::new();
    while got.len() < acked.len() {
        got.push(b.recv_any_message().await.id);
    }
    assert_eq!(got, acked);
    b.expect_none(Duration::from_millis(300), "a rate-limited message", |m| {
        matches!(m, ServerMsg::Message(_))
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn connection_over_the_per_ip_limit_gets_server_full_in_its_mode() {
    const PER_IP: usize = 32;
    let srv = server().await;
    let mut held = Vec::new();
    for i in 0..PER_IP {
        held.push(Client::login(srv.addr, &format!("held{i}")).await);
    }
    // A framed client: an error it can parse, then the close; never a welcome.
    let mut extra = Client::connect(srv.addr).await;
    extra
        .send(ClientMsg::Hello {
            nick: "extra".into(),
            version: None,
            client: None,
            password: None,
        })
        .await;
    let mut seen = Vec::new();
    loop {
        match extra.next(WAIT).await {
            Next::Item(m) => seen.push(m),
            Next::Eof => break,
            Next::Timeout => panic!("connection {} stayed open: {seen:?}", PER_IP + 1),
        }
    }
    assert!(
        seen.iter().any(|m| matches!(
            m,
            ServerMsg::Error {
                code: ErrorCode::ServerFull,
                ..
            } | ServerMsg::Bye {
                reason: ByeReason::ServerFull,
                ..
            }
        )),
        "server_full before the close: {seen:?}"
    );
    assert!(
        !seen.iter().any(|m| matches!(m, ServerMsg::Welcome { .. })),
        "{seen:?}"
    );
    // A line client: a `! ` line, then the close.
    let mut line = Line::connect(srv.addr).await;
    line.send_line("extraline").await;
    let lines = line.expect_eof().await;
    assert!(lines.iter().any(|l| l.starts_with("! ")), "{lines:?}");

    // A freed slot is usable again.
    held.pop().expect("held").quit().await;
    // The slot is released when the server has finished with the old session, which may be
    // a moment after the close: retry, bounded.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::connect(srv.addr).await;
        if let ServerMsg::Welcome { .. } = c.hello("later").await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed slot was not usable within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.shutdown().await;
}
