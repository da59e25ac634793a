//! The HTTP/1.1 client of file transfers: hyper's connection API over the stream
//! [`crate::transport`] opens, so an `https` link is verified exactly as the chat connection
//! is (the same rustls config: system roots or `--tls-ca`, and the fingerprint accepted on
//! first use).
//!
//! One connection per transfer attempt, kept alive across its requests (a tus upload is a
//! `HEAD` and a run of `PATCH`es); no pool, no redirects, no proxies: the server's links
//! point at itself.
//!
//! Layout:
//! - [`Url`]: an `http`/`https` link taken apart.
//! - [`Http`]: which transport a link gets, and [`Http::connect`].
//! - [`Conn`]: one connection; [`Conn::send`] with a time limit on the answer's head.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::tls::{Roots, TlsClient};
use crate::transport::{self, Transport};

/// Why an HTTP exchange failed.
#[derive(Debug, Error)]
pub enum HttpError {
    /// Not an `http://` or `https://` link with a host.
    #[error("not a usable link: {0}")]
    BadUrl(String),
    /// Connecting (TCP, TLS) failed.
    #[error("cannot connect: {0}")]
    Connect(#[from] transport::ConnectError),
    /// TLS could not be set up for the link's host.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// hyper: the connection broke, or the answer was not HTTP.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built (a header value the link produced).
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No answer in time.
    #[error("the server did not answer in time")]
    Timeout,
}

/// An `http`/`https` link taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub https: bool,
    /// Host, without IPv6 brackets.
    pub host: String,
    /// Port (80/443 when the link names none).
    pub port: u16,
    /// `HOST[:PORT]` as the link has it, for the `Host` header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses a link.
    ///
    /// # Errors
    /// [`HttpError::BadUrl`] for anything but an absolute `http`/`https` link with a host.
    pub fn parse(link: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(link.to_owned());
        let uri: Uri = link.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// `HOST:PORT` to connect to (IPv6 in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How links are reached: with the chat servers' addresses and transports in mind.
#[derive(Debug, Clone)]
pub struct Http {
    /// The chat servers, `HOST:PORT`, each with its transport (its TLS trust); the first
    /// one's trust checks links to other hosts.
    chat: Vec<(String, Transport)>,
    /// Longest wait for a connection, and for an answer's head.
    pub timeout: Duration,
}

impl Http {
    /// Links reached like the chat server at `chat_addr` over `chat`.
    pub fn new(chat_addr: impl Into<String>, chat: Transport) -> Self {
        Self::servers(vec![(chat_addr.into(), chat)])
    }

    /// Links reached like the chat servers (`HOST:PORT` and transport), the first one's
    /// trust for links to other hosts.
    pub fn servers(chat: Vec<(String, Transport)>) -> Self {
        Self {
            chat,
            timeout: Duration::from_secs(30),
        }
    }

    /// The transport for `url`.
    ///
    /// - `https`: TLS with the chat connection's trust (its verifier, checking the link's
    ///   host): that of the chat server the link points at, else the first one's; with a
    ///   plain chat connection, the system's roots.
    /// - `http` to a chat server itself while the chat is TLS: TLS all the same (the
    ///   server speaks HTTP inside TLS on its port), so a file never travels in clear
    ///   where the chat does not.
    /// - other `http`: plain.
    ///
    /// # Errors
    /// A host TLS cannot check, or (system roots) a TLS setup failure.
    pub fn transport_for(&self, url: &Url) -> Result<Transport, HttpError> {
        let addr = url.addr();
        let same_server = self
            .chat
            .iter()
            .find(|(chat_addr, _)| chat_addr.eq_ignore_ascii_case(&addr));
        let chat = same_server
            .or(self.chat.first())
            .map_or(&Transport::Plain, |(_, transport)| transport);
        match (chat, url.https) {
            (Transport::Tls(chat), true) => Ok(Transport::Tls(chat.for_host(&url.host)?)),
            (Transport::Tls(chat), false) if same_server.is_some() => {
                Ok(Transport::Tls(chat.for_host(&url.host)?))
            }
            (Transport::Plain, true) => Ok(Transport::Tls(TlsClient::new(
                &url.host,
                &Roots::System,
                None,
            )?)),
            (_, false) => Ok(Transport::Plain),
        }
    }

    /// Opens a connection to `url`'s server.
    ///
    /// # Errors
    /// See [`HttpError`].
    pub async fn connect(&self, url: &Url) -> Result<Conn, HttpError> {
        let transport = self.transport_for(url)?;
        let stream = transport::connect(&url.addr(), &transport, self.timeout).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection's own errors show up as the failure of the request in flight.
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            task,
            authority: url.authority.clone(),
            timeout: self.timeout,
        })
    }
}

/// One HTTP/1.1 connection; closed when dropped.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    authority: String,
    timeout: Duration,
}

impl Conn {
    /// A request for `url` on this connection, with `Host` set.
    pub fn request(&self, method: Method, url: &Url) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(url.path.as_str())
            .header(HOST, self.authority.as_str())
    }

    /// Sends `req` and waits (within the time limit) for the answer's head; the body is
    /// read by the caller.
    ///
    /// # Errors
    /// A broken connection, or no answer in time.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, HttpError> {
        let exchange = async {
            self.sender.ready().await?;
            self.sender.send_request(req).await
        };
        match timeout(self.timeout, exchange).await {
            Ok(res) => Ok(res?),
            Err(_) => Err(HttpError::Timeout),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_taken_apart_with_default_ports() {
        let u = Url::parse("http://127.0.0.1:7878/tus/abc?x=1").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 7878, "/tus/abc?x=1")
        );
        assert_eq!(u.addr(), "127.0.0.1:7878");
        let u = Url::parse("https://[::1]/files/%E6%8A%A5.pdf").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port), (true, "::1", 443));
        assert_eq!(u.addr(), "[::1]:443");
        assert_eq!(u.authority, "[::1]");
        for bad in ["ftp://host/x", "/relative", "http://", "not a url"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_chat_keeps_plain_http_and_tls_chat_never_downgrades_its_own_server() {
        let plain = Http::new("127.0.0.1:7878", Transport::Plain);
        let url = Url::parse("http://127.0.0.1:7878/tus/a").unwrap();
        assert!(matches!(plain.transport_for(&url), Ok(Transport::Plain)));

        let tls = TlsClient::new("127.0.0.1", &Roots::System, None).unwrap();
        let secure = Http::new("127.0.0.1:7878", Transport::Tls(tls));
        assert!(matches!(secure.transport_for(&url), Ok(Transport::Tls(_))));
        let https = Url::parse("https://localhost:7878/tus/a").unwrap();
        assert!(matches!(
            secure.transport_for(&https),
            Ok(Transport::Tls(_))
        ));
        let elsewhere = Url::parse("http://files.example:80/x").unwrap();
        assert!(matches!(
            secure.transport_for(&elsewhere),
            Ok(Transport::Plain)
        ));
    }

    #[test]
    fn a_plain_link_to_any_of_the_tls_chat_servers_stays_tls() {
        let tls = |host| Transport::Tls(TlsClient::new(host, &Roots::System, None).unwrap());
        let nodes = Http::servers(vec![
            ("127.0.0.1:7878".into(), tls("127.0.0.1")),
            ("127.0.0.1:7879".into(), tls("127.0.0.1")),
        ]);
        for link in ["http://127.0.0.1:7878/x", "http://127.0.0.1:7879/x"] {
            let url = Url::parse(link).unwrap();
            assert!(
                matches!(nodes.transport_for(&url), Ok(Transport::Tls(_))),
                "{link}"
            );
        }
        let elsewhere = Url::parse("http://127.0.0.1:80/x").unwrap();
        assert!(matches!(
            nodes.transport_for(&elsewhere),
            Ok(Transport::Plain)
        ));
    }
}
