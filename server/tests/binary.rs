//! The real `chat-server` binary as a user runs it: port 0, the `listening on` log line,
//! and SIGTERM saying goodbye to every client before exiting 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_shared::{ByeReason, ClientCodec, ClientMsg, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(5);

/// Kills the server if the test fails before it exits on its own.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Already exited in a passing test; otherwise end the process this test started.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on an ephemeral port and reads the bound address from its log.
fn start() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", "127.0.0.1:0", "--sniff-ms", "100"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("chat-server starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned()); // the test may have given up
            }
        }
    });
    let addr = rx
        .recv_timeout(WAIT)
        .expect("the log names the bound address");
    assert!(
        !addr.ends_with(":0"),
        "the real port is logged, not 0: {addr}"
    );
    (server, addr)
}

#[tokio::test]
async fn sigterm_says_bye_to_every_client_and_exits_zero() {
    let (mut server, addr) = start();

    let mut framed = Framed::new(
        TcpStream::connect(&addr).await.unwrap(),
        ClientCodec::default(),
    );
    framed
        .send(ClientMsg::Hello {
            nick: "frank".into(),
            version: Some(1),
            client: None,
        })
        .await
        .unwrap();
    let welcome = timeout(WAIT, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");

    let line = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = line.into_split();
    write.write_all(b"lina\n").await.unwrap();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let first = timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("welcome, lina"), "{first}");

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let bye = timeout(WAIT, async {
        loop {
            match framed.next().await {
                Some(Ok(ServerMsg::Bye { reason, .. })) => return reason,
                Some(Ok(_)) => continue,
                other => panic!("no bye before the end: {other:?}"),
            }
        }
    })
    .await
    .expect("bye arrives");
    assert_eq!(bye, ByeReason::Shutdown);
    assert!(
        timeout(WAIT, framed.next()).await.unwrap().is_none(),
        "EOF after bye"
    );

    let mut last = None;
    while let Some(line) = timeout(WAIT, lines.next_line()).await.unwrap().unwrap() {
        last = Some(line);
    }
    let last = last.expect("line clients get a last line");
    assert!(last.contains("shutting down"), "{last}");

    let started = Instant::now();
    let code = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < WAIT, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "exit status {code:?}");
}
