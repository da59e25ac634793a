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
fn start(extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        // These tests are about signals and clients; history storage has its own tests.
        .args([
            "--listen",
            "127.0.0.1:0",
            "--sniff-ms",
            "100",
            "--db",
            "none",
        ])
        .args(extra)
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
    let (mut server, addr) = start(&[]);

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

    sigterm(&server);

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

    assert_exits_zero_within(&mut server, WAIT).await;
}

fn sigterm(server: &Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn assert_exits_zero_within(server: &mut Server, limit: Duration) {
    let started = Instant::now();
    let code = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "the server did not exit within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "exit status {code:?}");
}

/// Issue 5: SIGTERM while 200 clients (half framed, half line) chat; each gets its goodbye
/// and the process exits 0 within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_says_bye_to_hundreds_and_exits_zero_within_5_s() {
    let (mut server, addr) = start(&["--max-clients-per-ip", "1000", "--rate", "1000"]);
    let mut clients = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(200);
    for i in 0..100 {
        let (to, ready) = (addr.clone(), ready_tx.clone());
        clients.spawn(async move {
            let stream = TcpStream::connect(&to).await.unwrap();
            let mut framed = Framed::new(stream, ClientCodec::default());
            let hello = ClientMsg::Hello {
                nick: format!("f{i}"),
                version: None,
                client: None,
            };
            framed.send(hello).await.unwrap();
            let mut ready = Some(ready);
            let mut said = 0;
            loop {
                let next = timeout(WAIT * 2, framed.next()).await.expect("bye in time");
                match next {
                    Some(Ok(ServerMsg::Members { .. })) if ready.is_some() => {
                        // Registered and in lobby: report, then chat.
                        let _ = ready.take().unwrap().send(()).await;
                    }
                    Some(Ok(ServerMsg::Bye { reason, .. })) => {
                        assert_eq!(reason, ByeReason::Shutdown);
                        return;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("f{i}: no bye before the end: {other:?}"),
                }
                if ready.is_none() && said < 20 {
                    said += 1;
                    let say = ClientMsg::Say {
                        room: "lobby".into(),
                        text: format!("chatter {said} from f{i}"),
                        action: false,
                    };
                    // The server may be closing already; the bye is what is checked.
                    let _ = framed.send(say).await;
                }
            }
        });
        let (to, ready) = (addr.clone(), ready_tx.clone());
        clients.spawn(async move {
            let (read, mut write) = TcpStream::connect(&to).await.unwrap().into_split();
            write.write_all(format!("l{i}\n").as_bytes()).await.unwrap();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut last = String::new();
            let mut ready = Some(ready);
            let mut said = 0;
            while let Some(line) = timeout(WAIT * 2, lines.next_line())
                .await
                .expect("a last line in time")
                .unwrap_or(None)
            {
                if line.starts_with("-- members of #lobby")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(()).await; // the test may have failed already
                }
                if ready.is_none() && said < 20 {
                    said += 1;
                    let _ = write
                        .write_all(format!("chatter {said}\n").as_bytes())
                        .await;
                }
                last = line;
            }
            assert!(last.contains("shutting down"), "l{i}'s last line: {last}");
        });
    }
    drop(ready_tx);
    for _ in 0..200 {
        timeout(WAIT * 2, ready_rx.recv())
            .await
            .expect("every client logs in")
            .expect("a client task failed before logging in");
    }
    sigterm(&server);
    assert_exits_zero_within(&mut server, WAIT).await;
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
}
