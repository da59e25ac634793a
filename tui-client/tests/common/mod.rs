//! A real chat-server with TLS for the tests: `TlsSource::SelfSigned` is what
//! `chat-server --tls-self-signed --data-dir DIR` runs.

use std::path::Path;
use std::time::{Duration, Instant};

use chat_tui::tls::fingerprint;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; it stops when `stop` is sent or dropped.
pub(crate) struct TlsServer {
    /// The SHA-256 fingerprint of its certificate, as the server logs it.
    pub(crate) fingerprint: String,
    /// Sending (or dropping) it stops the server.
    pub(crate) stop: oneshot::Sender<()>,
    /// The server task.
    pub(crate) handle: JoinHandle<anyhow::Result<()>>,
}

/// Starts a server on `listener` with a self-signed certificate kept in `dir`, and waits
/// (at most 10 s) until the certificate is written.
pub(crate) async fn tls_server(listener: TcpListener, dir: &Path) -> TlsServer {
    let config = chat_server::Config {
        tls: Some(chat_server::TlsSource::SelfSigned {
            dir: dir.to_owned(),
        }),
        ..chat_server::Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(chat_server::run(listener, config, async move {
        // Either a stop or a dropped sender ends the server.
        let _ = stopped.await;
    }));
    // The certificate file is written last, so once it parses the server is serving it.
    let cert = dir.join("tls-self-signed-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    let fingerprint = loop {
        if let Ok(der) = CertificateDer::from_pem_file(&cert) {
            break fingerprint(&der);
        }
        assert!(
            Instant::now() < deadline,
            "no certificate in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    TlsServer {
        fingerprint,
        stop,
        handle,
    }
}

impl TlsServer {
    /// Stops the server and waits (at most 10 s) for it to finish cleanly.
    pub(crate) async fn shut_down(self) {
        // Ignored: a server that already stopped has dropped its receiver.
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the server did not stop")
            .expect("the server task panicked")
            .expect("the server failed");
    }
}
