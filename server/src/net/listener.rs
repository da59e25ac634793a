//! The accept loop. Accept errors (out of file descriptors, say) are retried with a growing
//! pause instead of ending the server; every connection, admitted or refused, is handed to
//! the caller's handler, which runs it in a task of its own.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::sleep;
use tracing::warn;

use crate::limits::{Admission, ConnLimits, Refusal};

/// Accepts until the future is dropped.
pub(crate) async fn accept_loop(
    listener: &TcpListener,
    limits: &ConnLimits,
    mut handle: impl FnMut(TcpStream, SocketAddr, Result<Admission, Refusal>),
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                handle(stream, peer, limits.admit(peer.ip()));
            }
            Err(e) => {
                warn!(error = %e, "accept failed; retrying in {backoff:?}");
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
