//! Where to connect: `--server HOST:PORT` or `tls://HOST:PORT`, and `--tls`; several
//! servers (nodes of one cluster) as a repeated flag or a comma-separated list.
//!
//! Parsed once at start, so a typo is one clear line instead of a reconnect loop. The
//! host is kept as typed (lowercased), because it is both what TLS checks the certificate
//! against and the key under which a trusted fingerprint is remembered.

use thiserror::Error;

/// The scheme that asks for TLS, as in `tls://chat.example.org:7878`.
const TLS_SCHEME: &str = "tls://";

/// Why `--server` was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Only `tls://` (or no scheme at all) is understood.
    #[error("{0:?}: unknown scheme (use HOST:PORT or tls://HOST:PORT)")]
    UnknownScheme(String),
    /// `HOST` alone: the port is never guessed.
    #[error("{0:?}: expected HOST:PORT")]
    MissingPort(String),
    /// Not a number from 1 to 65535.
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    BadPort(String),
    /// Empty, or an IPv6 address without its brackets (`[::1]:7878`).
    #[error("{0:?}: bad host (an IPv6 address goes in brackets: [::1]:7878)")]
    BadHost(String),
    /// An empty entry in a list (`a:1,,b:2`), or no server at all.
    #[error("{0:?}: an empty server address")]
    Empty(String),
    /// Some servers with `tls://` and others without (and no `--tls`): every server is
    /// reached the same way, so losing a TLS node never falls back to clear text.
    #[error("{0:?}: mixes tls:// and plain addresses (use tls:// for all of them, or --tls)")]
    MixedTls(String),
}

/// A server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address, lowercase, without IPv6 brackets (what TLS verifies).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

impl Endpoint {
    /// Parses `--server`; `tls` is the `--tls` flag (`tls://` turns it on as well).
    ///
    /// # Errors
    /// An unknown scheme, a missing or bad port, or a bad host.
    pub fn parse(server: &str, tls: bool) -> Result<Self, EndpointError> {
        let (rest, tls) = match server.strip_prefix(TLS_SCHEME) {
            Some(rest) => (rest, true),
            None if server.contains("://") => {
                return Err(EndpointError::UnknownScheme(server.to_owned()));
            }
            None => (server, tls),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| EndpointError::MissingPort(server.to_owned()))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| EndpointError::BadPort(server.to_owned()))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.contains(':') => v6,
            Some(_) => return Err(EndpointError::BadHost(server.to_owned())),
            None if host.is_empty() || host.contains(['[', ']', ':', '/']) => {
                return Err(EndpointError::BadHost(server.to_owned()));
            }
            None => host,
        };
        Ok(Self {
            host: host.to_lowercase(),
            port,
            tls,
        })
    }

    /// Parses every `--server` given (each may be a comma-separated list), in order, the
    /// same address given twice kept once; `tls` is the `--tls` flag.
    ///
    /// # Errors
    /// What [`Endpoint::parse`] refuses, an empty entry, or `tls://` on some servers only.
    pub fn parse_list<S: AsRef<str>>(servers: &[S], tls: bool) -> Result<Vec<Self>, EndpointError> {
        let joined = || {
            let all: Vec<&str> = servers.iter().map(AsRef::as_ref).collect();
            all.join(",")
        };
        let mut endpoints: Vec<Self> = Vec::new();
        for entry in servers.iter().flat_map(|s| s.as_ref().split(',')) {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(EndpointError::Empty(joined()));
            }
            let endpoint = Self::parse(entry, tls)?;
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        }
        match endpoints.first() {
            None => Err(EndpointError::Empty(joined())),
            Some(first) if endpoints.iter().any(|e| e.tls != first.tls) => {
                Err(EndpointError::MixedTls(joined()))
            }
            Some(_) => Ok(endpoints),
        }
    }

    /// `HOST:PORT` for connecting, IPv6 in brackets; also the known-servers key.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What the status bar shows: the address, with `tls://` when encrypted.
    pub fn display(&self) -> String {
        if self.tls {
            format!("{TLS_SCHEME}{}", self.addr())
        } else {
            self.addr()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(server: &str, tls: bool) -> (String, u16, bool) {
        let e = Endpoint::parse(server, tls).unwrap();
        (e.host, e.port, e.tls)
    }

    #[test]
    fn plain_and_tls_forms_mean_the_same_server() {
        assert_eq!(
            ok("127.0.0.1:7878", false),
            ("127.0.0.1".into(), 7878, false)
        );
        assert_eq!(ok("127.0.0.1:7878", true), ("127.0.0.1".into(), 7878, true));
        assert_eq!(
            ok("tls://127.0.0.1:7878", false),
            ("127.0.0.1".into(), 7878, true)
        );
        assert_eq!(
            ok("tls://Chat.Example.ORG:1", false),
            ("chat.example.org".into(), 1, true)
        );
        assert_eq!(ok("[::1]:7878", false), ("::1".into(), 7878, false));
    }

    #[test]
    fn addr_and_display_round_trip() {
        let e = Endpoint::parse("tls://[::1]:7878", false).unwrap();
        assert_eq!(e.addr(), "[::1]:7878");
        assert_eq!(e.display(), "tls://[::1]:7878");
        let e = Endpoint::parse("localhost:9", false).unwrap();
        assert_eq!(e.display(), "localhost:9");
        assert_eq!(Endpoint::parse(&e.display(), false).unwrap(), e);
    }

    #[test]
    fn refuses_what_it_cannot_connect_to() {
        use EndpointError::*;
        let err = |s: &str| Endpoint::parse(s, false).unwrap_err();
        assert_eq!(err("https://x:1"), UnknownScheme("https://x:1".into()));
        assert_eq!(err("localhost"), MissingPort("localhost".into()));
        assert_eq!(
            err("tls://localhost"),
            MissingPort("tls://localhost".into())
        );
        assert_eq!(err("localhost:0"), BadPort("localhost:0".into()));
        assert_eq!(err("localhost:65536"), BadPort("localhost:65536".into()));
        assert_eq!(err("localhost:port"), BadPort("localhost:port".into()));
        assert_eq!(err(":7878"), BadHost(":7878".into()));
        assert_eq!(err("::1:7878"), BadHost("::1:7878".into()));
        assert_eq!(err("[host]:7878"), BadHost("[host]:7878".into()));
        assert_eq!(err("a/b:7878"), BadHost("a/b:7878".into()));
    }

    #[test]
    fn several_servers_repeated_or_comma_separated_keep_their_order() {
        let addrs = |list: &[&str], tls: bool| -> Vec<String> {
            let endpoints = Endpoint::parse_list(list, tls).unwrap();
            endpoints.iter().map(Endpoint::display).collect()
        };
        assert_eq!(addrs(&["127.0.0.1:7878"], false), ["127.0.0.1:7878"]);
        assert_eq!(
            addrs(&["a:1", "b:2"], false),
            addrs(&["a:1,b:2"], false),
            "repeated and comma-separated are the same"
        );
        assert_eq!(
            addrs(&["a:1, [::1]:2", "c:3"], false),
            ["a:1", "[::1]:2", "c:3"]
        );
        assert_eq!(addrs(&["a:1,b:2,a:1"], false), ["a:1", "b:2"]);
        // --tls applies to every server; tls:// on all of them is the same.
        assert_eq!(addrs(&["a:1,b:2"], true), ["tls://a:1", "tls://b:2"]);
        assert_eq!(
            addrs(&["tls://a:1", "tls://b:2"], false),
            ["tls://a:1", "tls://b:2"]
        );
        assert_eq!(addrs(&["tls://a:1,b:2"], true), ["tls://a:1", "tls://b:2"]);
    }

    #[test]
    fn a_list_refuses_empty_entries_mixed_tls_and_any_bad_address() {
        use EndpointError::*;
        let err = |list: &[&str]| Endpoint::parse_list(list, false).unwrap_err();
        assert_eq!(err(&["a:1,,b:2"]), Empty("a:1,,b:2".into()));
        assert_eq!(err(&["a:1", ""]), Empty("a:1,".into()));
        assert_eq!(err(&[]), Empty(String::new()));
        assert_eq!(err(&["tls://a:1", "b:2"]), MixedTls("tls://a:1,b:2".into()));
        assert_eq!(err(&["a:1,b"]), MissingPort("b".into()));
    }
}
