//! Graceful shutdown through the `stop` future given to `run`.

use chat_shared::{ByeReason, ServerMsg};

use crate::common::{Client, Line, Next, QUIET, WAIT, server};

#[tokio::test]
async fn stop_sends_bye_shutdown_to_framed_clients_a_last_line_to_line_clients_then_eof() {
    let srv = server().await;
    let addr = srv.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut carol = Line::login_seen_by(addr, "carol", &mut alice).await;
    bob.recv_joined("lobby", "carol").await;
    carol.drain(QUIET).await;

    let stopping = tokio::spawn(srv.shutdown());
    for c in [&mut alice, &mut bob] {
        c.expect_bye_then_eof(ByeReason::Shutdown).await;
    }
    let last = carol.expect_eof().await;
    assert!(
        last.iter().any(|l| !l.trim().is_empty()),
        "a line client gets a last line before the close"
    );
    stopping.await.expect("run returned Ok within 5 s");
}

#[tokio::test]
async fn stop_with_no_clients_returns_ok() {
    let srv = server().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn stop_closes_connections_that_have_not_registered() {
    let srv = server().await;
    let addr = srv.addr;
    let mut framed = Client::connect(addr).await; // no hello yet
    framed.send_bytes(&[0, 0]).await; // half a length prefix: framed mode, nothing complete
    let mut prompt = Line::connect(addr).await;
    prompt.read_text(WAIT).await; // greeted, never answers
    let mut typing = Line::connect(addr).await;
    typing.send_bytes(b"half a ni").await; // line mode, nick not finished

    let stopping = tokio::spawn(srv.shutdown());
    loop {
        match framed.next(WAIT).await {
            Next::Eof => break,
            Next::Item(ServerMsg::Bye { reason, .. }) => {
                assert_eq!(reason, ByeReason::Shutdown);
            }
            Next::Item(other) => panic!("unexpected {other:?}"),
            Next::Timeout => panic!("an unregistered framed client was not closed"),
        }
    }
    prompt.expect_eof().await;
    typing.expect_eof().await;
    stopping.await.expect("run returned Ok within 5 s");
}
