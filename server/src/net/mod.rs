//! Transports: accepting connections and telling, from their first bytes, what they speak.
//!
//! Nothing here knows a wire format or a session: the listener hands each accepted
//! connection to a handler, the sniffer names its protocol, [`tls`] turns a TLS handshake
//! into a decrypted stream (sniffed again the same way), and [`stream`] gives the adapters
//! one reader and one writer type whatever the transport is, plain TCP or TLS.
//!
//! Layout:
//! - [`listener`]: the accept loop, with backoff and the connection limits.
//! - [`sniff`]: reads as many bytes as deciding the protocol needs.
//! - [`tls`]: the TLS acceptor, its certificate (files or self-signed) and its reload.
//! - [`stream`]: the connection's reader (with the sniffed bytes in front) and writer.

pub(crate) mod listener;
pub(crate) mod sniff;
pub(crate) mod stream;
pub(crate) mod tls;
