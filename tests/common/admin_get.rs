//! `GET` on an admin listener over a fresh connection: the status and the body. Shared by
//! the workspace tests (`tests/common`) and the server's binary tests (by `#[path]`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::timeout;

/// `GET path` from `admin`, the whole response read within `wait`.
///
/// # Errors
/// The connection's, a response not read within `wait`, or one without a status line.
pub(crate) async fn get(
    admin: impl ToSocketAddrs,
    path: &str,
    wait: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(admin).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    timeout(wait, stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, body.to_owned()))
}
