//! TLS as the real binary does it: the self-signed certificate made once in the data
//! directory and its fingerprint logged, and a renewed certificate picked up on SIGHUP
//! while connections already open keep chatting. TLS in both modes, `--require-tls` and
//! broken handshakes are in the workspace tests (`tests/tls.rs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod common;

use common::{Run, Server, WAIT, logged};

fn start(dir: &Path, flags: &[&str]) -> (Server, String, Receiver<String>) {
    let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
    args.extend(["--db".to_owned(), "none".to_owned()]);
    Run {
        args,
        dir,
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged()
}

/// The fingerprint a log line announces.
fn fingerprint_in(line: &str) -> String {
    let fp = line
        .split("SHA-256 fingerprint ")
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {line:?}"))
        .trim()
        .to_owned();
    let pairs: Vec<&str> = fp.split(':').collect();
    assert_eq!(pairs.len(), 32, "{fp}");
    assert!(
        pairs.iter().all(|p| p.len() == 2
            && p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())),
        "openssl's format: {fp}"
    );
    fp
}

/// SHA-256 of `der`, as `openssl x509 -fingerprint -sha256` prints it.
fn sha256_colons(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn cert_in(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("a PEM certificate")
}

/// A client that trusts every certificate in `roots` and nothing else.
fn connector(roots: &[CertificateDer<'static>]) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a valid root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls(addr: &str, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}

/// A line-mode client over any stream.
struct Line<S> {
    lines: Lines<BufReader<tokio::io::ReadHalf<S>>>,
    write: tokio::io::WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Line<S> {
    async fn login(stream: S, nick: &str) -> Self {
        let (read, write) = tokio::io::split(stream);
        let mut line = Self {
            lines: BufReader::new(read).lines(),
            write,
        };
        line.send(nick).await;
        line.expect(&format!("welcome, {nick}")).await;
        line
    }

    async fn send(&mut self, text: &str) {
        let bytes = format!("{text}\n");
        self.write.write_all(bytes.as_bytes()).await.expect("write");
        self.write.flush().await.expect("flush");
    }

    /// Skips to the line containing `want`.
    async fn expect(&mut self, want: &str) {
        let found = timeout(WAIT, async {
            while let Some(line) = self.lines.next_line().await.expect("read") {
                if line.contains(want) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "no line containing {want:?}");
    }
}

#[tokio::test]
async fn self_signed_certificate_is_made_once_and_its_fingerprint_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_flag = data.to_str().unwrap();
    let flags = ["--tls-self-signed", "--data-dir", data_flag];

    let (mut server, addr, log) = start(dir.path(), &flags);
    logged(&log, "generated a self-signed TLS certificate");
    let first = fingerprint_in(&logged(&log, "SHA-256 fingerprint"));
    let cert_file = data.join("tls-self-signed-cert.pem");
    let pem = std::fs::read(&cert_file).expect("the certificate is in the data directory");
    let cert = cert_in(&cert_file);
    assert_eq!(
        first,
        sha256_colons(&cert),
        "the logged fingerprint is the file's"
    );
    let stream = tls(&addr, &connector(std::slice::from_ref(&cert))).await;
    assert_eq!(served(&stream), cert);
    let mut alice = Line::login(stream, "alice").await;
    let mut bob = Line::login(TcpStream::connect(&addr).await.unwrap(), "bob").await;
    alice.send("hello over a self-signed certificate").await;
    bob.expect("<alice> hello over a self-signed certificate")
        .await;
    server.signal("-TERM");
    assert!(server.exited().await.success());

    let (mut server, addr, log) = start(dir.path(), &flags);
    let line = logged(&log, "SHA-256 fingerprint");
    assert_eq!(
        fingerprint_in(&line),
        first,
        "the same certificate after a restart"
    );
    assert_eq!(
        std::fs::read(&cert_file).unwrap(),
        pem,
        "not generated again"
    );
    let stream = tls(&addr, &connector(std::slice::from_ref(&cert))).await;
    assert_eq!(served(&stream), cert);
    server.signal("-TERM");
    assert!(server.exited().await.success());
}

#[tokio::test]
async fn sighup_serves_a_renewed_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_pair = |made: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        // Written beside, then renamed into place, as a renewal tool does.
        let (cert_new, key_new) = (dir.path().join("cert.new"), dir.path().join("key.new"));
        std::fs::write(&cert_new, made.cert.pem()).unwrap();
        std::fs::write(&key_new, made.signing_key.serialize_pem()).unwrap();
        std::fs::rename(&key_new, &key_file).unwrap();
        std::fs::rename(&cert_new, &cert_file).unwrap();
    };
    let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (der_a, der_b) = (a.cert.der().clone(), b.cert.der().clone());
    // A fresh client per connection: one that resumed its earlier session would be shown
    // no certificate at all, only the one it remembers.
    let both = || connector(&[der_a.clone(), der_b.clone()]);
    write_pair(&a);
    let flags = [
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ];
    let (mut server, addr, log) = start(dir.path(), &flags);
    assert_eq!(
        fingerprint_in(&logged(&log, "SHA-256 fingerprint")),
        sha256_colons(&der_a)
    );

    let stream = tls(&addr, &both()).await;
    assert_eq!(served(&stream), der_a);
    let mut alice = Line::login(stream, "alice").await;
    let mut bob = Line::login(TcpStream::connect(&addr).await.unwrap(), "bob").await;

    write_pair(&b);
    server.signal("-HUP");
    let line = logged(&log, "TLS certificate reloaded");
    assert_eq!(fingerprint_in(&line), sha256_colons(&der_b));
    let stream = tls(&addr, &both()).await;
    assert_eq!(
        served(&stream),
        der_b,
        "a new connection gets the renewed certificate"
    );
    let mut carol = Line::login(stream, "carol").await;

    // The connection made with the old certificate still chats, both ways.
    alice.send("still here after the reload").await;
    bob.expect("<alice> still here after the reload").await;
    carol.expect("<alice> still here after the reload").await;
    bob.send("welcome back").await;
    alice.expect("<bob> welcome back").await;

    // A renewal gone wrong keeps the certificate in use, and says why.
    std::fs::write(&key_file, "not a key").unwrap();
    server.signal("-HUP");
    let line = logged(&log, "not reloaded");
    assert!(line.contains("key.pem"), "names the file: {line}");
    let stream = tls(&addr, &both()).await;
    assert_eq!(served(&stream), der_b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    alice.send("and still").await;
    bob.expect("<alice> and still").await;

    server.signal("-TERM");
    assert!(server.exited().await.success());
}

#[test]
fn a_bad_certificate_stops_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--db", "none", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHAT_") {
            cmd.env_remove(name);
        }
    }
    let child = cmd.spawn().expect("chat-server starts");
    let mut server = Server(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < WAIT,
            "still running with no certificate"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("missing-cert.pem") && stderr.contains("cannot read"),
        "{stderr}"
    );
}
