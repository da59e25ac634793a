//! TLS on the plain port: framed and line clients over TLS (a rustls client, and the real
//! `openssl s_client`) in the same rooms as plain ones, `--require-tls` in both modes,
//! broken and unfinished handshakes, and the handshake timeout. The binary's own TLS
//! behaviour (the self-signed certificate, SIGHUP) is in `server/tests/tls.rs`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chat_server::{Config, TlsSource};
use chat_shared::{ByeReason, ErrorCode, ServerMsg};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::{Cert, Client, Line, WAIT, assert_pair_chats, cfg, make_cert, spawn_server};

fn tls_cfg(cert: &Cert, require_tls: bool) -> Config {
    Config {
        tls: Some(TlsSource::Files {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }),
        require_tls,
        ..cfg()
    }
}

/// A rustls client that trusts `cert` alone, speaking the given TLS versions.
fn connector(cert: &Cert, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("a valid root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect_with(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

async fn tls_connect(addr: SocketAddr, cert: &Cert) -> TlsStream<TcpStream> {
    tls_connect_with(addr, &connector(cert, rustls::DEFAULT_VERSIONS)).await
}

type TlsLine = Line<ReadHalf<TlsStream<TcpStream>>, WriteHalf<TlsStream<TcpStream>>>;

async fn tls_line(addr: SocketAddr, cert: &Cert) -> TlsLine {
    let (r, w) = tokio::io::split(tls_connect(addr, cert).await);
    Line::from_halves(r, w)
}

/// The bytes of a real ClientHello, as a rustls client would send them first.
fn client_hello(cert: &Cert) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("hello");
    assert_eq!(out[0], 0x16, "a handshake record");
    out
}

/// Reads and discards until the server closes; fails if it stays open for `within`.
async fn expect_closed(stream: &mut TcpStream, within: Duration, what: &str) {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: the connection stayed open for {within:?}"),
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn framed_and_line_over_tls_chat_with_plain_clients_on_one_port() {
    let cert = make_cert();
    let server = spawn_server(tls_cfg(&cert, false)).await;
    let addr = server.addr;
    let mut alice = Client::login(addr, "alice").await;

    let stream = tls_connect(addr, &cert).await;
    let (_, conn) = stream.get_ref();
    assert_eq!(
        conn.peer_certificates().map(|c| c[0].clone()),
        Some(cert.der.clone()),
        "the configured certificate"
    );
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut bob = Client::from_io(stream).register("bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut carol = tls_line(addr, &cert).await.named("carol").await;
    alice.recv_joined("lobby", "carol").await;
    let mut dave = Line::login_seen_by(addr, "dave", &mut alice).await;
    bob.recv_joined("lobby", "dave").await;

    bob.say("lobby", "framed over TLS").await;
    alice.recv_message("lobby", "framed over TLS").await;
    carol.expect_line("<bob> framed over TLS").await;
    dave.expect_line("<bob> framed over TLS").await;

    carol.send_line("line over TLS, 你好").await;
    alice.recv_message("lobby", "line over TLS, 你好").await;
    let got = bob.recv_message("lobby", "line over TLS, 你好").await;
    assert_eq!(got.from, "carol");
    dave.expect_line("<carol> line over TLS, 你好").await;

    alice.say("lobby", "plain framed").await;
    bob.recv_message("lobby", "plain framed").await;
    carol.expect_line("<alice> plain framed").await;
    dave.send_line("plain line").await;
    carol.expect_line("<dave> plain line").await;
    bob.recv_message("lobby", "plain line").await;

    // TLS 1.2 is served too.
    let old = connector(&cert, &[&rustls::version::TLS12]);
    let stream = tls_connect_with(addr, &old).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut erin = Client::from_io(stream).register("erin").await;
    erin.say("lobby", "over TLS 1.2").await;
    alice.recv_message("lobby", "over TLS 1.2").await;

    bob.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn openssl_s_client_quiet_chats_in_line_mode() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is missing (.ci/run installs it)"
        );
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let cert = make_cert();
    let server = spawn_server(tls_cfg(&cert, false)).await;
    let mut alice = Client::login(server.addr, "alice").await;

    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl starts");
    let pid = child.id().expect("a running child");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut read_until = async |want: &str| {
        loop {
            let line = timeout(WAIT, stdout.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {want:?} from openssl within {WAIT:?}; saw {seen:?}")
                })
                .expect("openssl's output")
                .unwrap_or_else(|| panic!("openssl's output ended before {want:?}; saw {seen:?}"));
            let line = line.trim_end_matches('\r').to_owned();
            if line.contains(want) {
                return line;
            }
            seen.push(line);
        }
    };

    stdin.write_all(b"oscar\n").await.expect("nick line");
    read_until("welcome, oscar").await;
    alice.recv_joined("lobby", "oscar").await;
    alice.say("lobby", "hello oscar").await;
    assert_eq!(read_until("hello oscar").await, "<alice> hello oscar");
    stdin
        .write_all(b"hi alice, over TLS\n")
        .await
        .expect("a line");
    let got = alice.recv_message("lobby", "hi alice, over TLS").await;
    assert_eq!(got.from, "oscar");

    // Ended by the PID this test started, whatever happened above.
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = timeout(WAIT, child.wait()).await;
    alice.recv_parted("lobby", "oscar").await;
    server.shutdown().await;
}

#[tokio::test]
async fn require_tls_refuses_plain_clients_in_their_mode_and_serves_tls() {
    let cert = make_cert();
    let server = spawn_server(tls_cfg(&cert, true)).await;
    let addr = server.addr;

    let mut framed = Client::connect(addr).await;
    let answer = framed.hello("mallory").await;
    assert!(
        matches!(
            answer,
            ServerMsg::Error {
                code: ErrorCode::TlsRequired,
                ..
            }
        ),
        "{answer:?}"
    );
    framed.expect_bye_then_eof(ByeReason::TlsRequired).await;

    let mut line = Line::connect(addr).await;
    line.send_line("mallory").await;
    let lines = line.expect_eof().await;
    assert_eq!(lines.len(), 1, "one clear line: {lines:?}");
    assert!(
        lines[0].starts_with("! ") && lines[0].contains("only TLS"),
        "{lines:?}"
    );

    // A silent plain client is refused at the end of the sniff window, not greeted.
    let mut silent = Line::connect(addr).await;
    let lines = silent.expect_eof().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("only TLS"), "{lines:?}");

    let mut bob = Client::from_io(tls_connect(addr, &cert).await)
        .register("bob")
        .await;
    let mut carol = tls_line(addr, &cert).await.named("carol").await;
    bob.recv_joined("lobby", "carol").await;
    carol.send_line("secure only").await;
    bob.recv_message("lobby", "secure only").await;
    bob.say("lobby", "indeed").await;
    carol.expect_line("<bob> indeed").await;
    server.shutdown().await;
}

#[tokio::test]
async fn broken_client_hellos_close_only_their_connection() {
    let cert = make_cert();
    let server = spawn_server(tls_cfg(&cert, false)).await;
    let addr = server.addr;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::from_io(tls_connect(addr, &cert).await)
        .register("bob")
        .await;

    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x00\x10this is no ClientHello at all")
        .await
        .unwrap();
    let mut wrong_version = TcpStream::connect(addr).await.unwrap();
    wrong_version.write_all(b"\x16garbage\r\n").await.unwrap();

    // Half a real ClientHello, then the client closes its side.
    let hello = client_hello(&cert);
    let mut truncated = TcpStream::connect(addr).await.unwrap();
    truncated
        .write_all(&hello[..hello.len() / 2])
        .await
        .unwrap();
    truncated.shutdown().await.unwrap();

    expect_closed(&mut garbage, WAIT, "garbage after 0x16").await;
    expect_closed(&mut wrong_version, WAIT, "0x16 then text").await;
    expect_closed(&mut truncated, WAIT, "a truncated ClientHello").await;

    assert_pair_chats(&mut alice, &mut bob).await;
    let mut carol = tls_line(addr, &cert).await.named("carol").await;
    alice.recv_joined("lobby", "carol").await;
    carol.send_line("still serving TLS").await;
    alice.recv_message("lobby", "still serving TLS").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_handshake_timeout_covers_the_tls_handshake() {
    const LIMIT: Duration = Duration::from_secs(1);
    let cert = make_cert();
    let server = spawn_server(Config {
        handshake_timeout: LIMIT,
        ..tls_cfg(&cert, false)
    })
    .await;
    let addr = server.addr;
    let mut alice = Client::login(addr, "alice").await;

    // 0x16, then nothing: closed at the timeout, not before.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"\x16").await.unwrap();
    // Half a ClientHello, left open.
    let hello = client_hello(&cert);
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&hello[..hello.len() / 2]).await.unwrap();
    expect_closed(&mut stalled, LIMIT * 3, "0x16 then silence").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= LIMIT - Duration::from_millis(100),
        "closed after {elapsed:?}, before the {LIMIT:?} timeout"
    );
    expect_closed(&mut half, LIMIT * 3, "half a ClientHello").await;

    // A finished handshake and then silence: greeted inside TLS, then closed by the same
    // deadline.
    let started = Instant::now();
    let mut quiet = tls_line(addr, &cert).await;
    let lines = quiet.expect_eof().await;
    let elapsed = started.elapsed();
    assert!(
        lines.iter().any(|l| l.contains("What is your nick?"))
            && lines
                .last()
                .is_some_and(|l| l.contains("no nick given in time")),
        "{lines:?}"
    );
    assert!(elapsed < LIMIT * 3, "closed after {elapsed:?}");

    alice.roundtrip().await;
    server.shutdown().await;
}
