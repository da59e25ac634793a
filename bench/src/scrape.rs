//! An operator's scraper, for what exposing metrics costs: `/metrics` and
//! `/clients?sort=sendq&limit=10` fetched from the admin listener every second, as
//! Prometheus and a dashboard would, for as long as the scraper lives.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often each endpoint is fetched.
const INTERVAL: Duration = Duration::from_secs(1);

/// What is fetched each time.
const PATHS: [&str; 2] = ["/metrics", "/clients?sort=sendq&limit=10"];

/// Scrapes until dropped.
#[derive(Debug)]
pub struct Scraper(tokio::task::JoinHandle<()>);

impl Scraper {
    /// Starts scraping the admin listener at `addr`.
    pub fn start(addr: SocketAddr) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            let mut complained = false;
            loop {
                tick.tick().await;
                for path in PATHS {
                    if let Err(e) = get(addr, path).await
                        && !complained
                    {
                        // Once: the run goes on, and its figures say what it measured.
                        eprintln!("chat-bench: scraping {path} from {addr} failed: {e}");
                        complained = true;
                    }
                }
            }
        }))
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `GET` over a fresh connection, read to its end; an answer other than 200 is an
/// error.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<usize> {
    fetch(addr, path).await.map(|body| body.len())
}

/// One `GET` over a fresh connection, read to its end (within a second): the body of a
/// 200, or an error saying what came instead.
///
/// # Errors
/// The connection's, no answer within a second, or a status other than 200.
pub async fn fetch(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(INTERVAL, stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 1 s"))??;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if !answer.starts_with("HTTP/1.1 200") {
        let shown: String = answer.chars().take(160).collect();
        return Err(std::io::Error::other(format!("answered {shown:?}")));
    }
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok(body)
}

/// The value of the sample `name` (no labels) in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_sample_by_its_exact_name() {
        let text = "# HELP chat_x_total X\nchat_x_total 12\nchat_x 3.5\nchat_y{a=\"b\"} 1\n";
        assert_eq!(metric(text, "chat_x"), Some(3.5));
        assert_eq!(metric(text, "chat_x_total"), Some(12.0));
        assert_eq!(metric(text, "chat_y"), None, "labelled");
        assert_eq!(metric(text, "chat_z"), None);
    }

    #[tokio::test]
    async fn gets_what_the_admin_listener_serves_and_fails_on_anything_else() {
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = admin.local_addr().unwrap();
        let server = crate::server_proc::ServerHandle::in_process_server(
            crate::server_proc::Storage::Scraped,
            Some(admin),
        )
        .await
        .unwrap();
        let metrics = get(addr, "/metrics").await.unwrap();
        assert!(metrics > 1000, "the metric families: {metrics} bytes");
        let text = fetch(addr, "/metrics").await.unwrap();
        assert!(metric(&text, "chat_sessions").is_some(), "{text}");
        get(addr, PATHS[1]).await.unwrap();
        let missing = get(addr, "/nothing-here").await.unwrap_err();
        assert!(missing.to_string().contains("404"), "{missing}");
        server.stop().await;
    }
}
