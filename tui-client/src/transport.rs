//! Opening the byte stream to the server: TCP, and TLS over it when asked for.
//!
//! Everything above this module (the framed codec, the network task) sees one [`Stream`]
//! type and cannot tell whether it is encrypted.

use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::tls::{TlsClient, TrustError, trust_error};

/// A connection's bytes, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The stream the rest of the client reads and writes.
pub type Stream = Box<dyn Io>;

/// How to talk to the server.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Clear TCP.
    #[default]
    Plain,
    /// TLS over TCP.
    Tls(TlsClient),
}

/// Why a connection could not be opened.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// TCP connect, or a TLS handshake that failed for another reason than trust.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Connect and handshake took longer than allowed.
    #[error("connect timed out")]
    Timeout,
    /// The certificate was refused by trust on first use.
    #[error("{0}")]
    Trust(TrustError),
}

/// Connects to `addr` (`HOST:PORT`) and, for TLS, completes the handshake, all within
/// `limit`.
///
/// # Errors
/// See [`ConnectError`].
pub async fn connect(
    addr: &str,
    transport: &Transport,
    limit: Duration,
) -> Result<Stream, ConnectError> {
    let open = async {
        let tcp = TcpStream::connect(addr).await?;
        // Best effort: small frames should leave at once; failure only adds latency.
        let _ = tcp.set_nodelay(true);
        match transport {
            Transport::Plain => Ok(Box::new(tcp) as Stream),
            Transport::Tls(tls) => match tls.connector.connect(tls.name.clone(), tcp).await {
                Ok(stream) => Ok(Box::new(stream) as Stream),
                Err(e) => Err(match trust_error(&e) {
                    Some(refusal) => ConnectError::Trust(refusal.clone()),
                    None => ConnectError::Io(e),
                }),
            },
        }
    };
    timeout(limit, open)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}
