//! Deciding what a connection speaks from its first bytes, reading no more than that takes.
//!
//! | first bytes | protocol |
//! |---|---|
//! | `0x00` | framed (the top byte of a length under 16 MiB; typed text never is) |
//! | `0x16` | TLS handshake (line mode when the server has no certificate) |
//! | `CAP `, `NICK `, `USER `, `PASS ` | IRC (reserved, likewise) |
//! | `GET `, `HEAD `, `POST `, `PUT `, `PATCH `, `OPTIONS `, `DELETE ` | HTTP (file sharing) |
//! | anything else | line |
//!
//! A connection whose bytes so far could still begin one of the words is read further,
//! until the word is complete or cannot be, or the window ends. The bytes read are handed
//! on to the adapter (or the TLS handshake) in front of the rest (see `stream`). Inside TLS
//! the decrypted stream is sniffed again, the same way: the sniffer reads any stream.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout_at};

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Framed,
    Tls,
    Irc,
    Http,
    Line,
}

const IRC: [&[u8]; 4] = [b"CAP ", b"NICK ", b"USER ", b"PASS "];
const HTTP: [&[u8]; 7] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"PATCH ",
    b"OPTIONS ",
    b"DELETE ",
];

/// Longest prefix a decision needs (`OPTIONS `).
const DECISIVE: usize = 8;

/// The protocol `prefix` shows, or `None` while more bytes could still change it.
pub(crate) fn classify(prefix: &[u8]) -> Option<Proto> {
    match prefix.first()? {
        0x00 => return Some(Proto::Framed),
        0x16 => return Some(Proto::Tls),
        _ => {}
    }
    let mut undecided = false;
    for (words, proto) in [(&IRC[..], Proto::Irc), (&HTTP[..], Proto::Http)] {
        for word in words {
            if prefix.starts_with(word) {
                return Some(proto);
            }
            undecided |= word.starts_with(prefix);
        }
    }
    (!undecided).then_some(Proto::Line)
}

/// What sniffing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    Proto(Proto),
    /// Nothing arrived before the window ended.
    Silent,
    /// The client closed (or the socket failed) before a byte arrived.
    Closed,
}

/// Reads into `buf` until the protocol is known or `until`. A partial word at `until`, or
/// at the end of the stream, is line mode's.
///
/// # Errors
/// The socket's error.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    until: Instant,
) -> std::io::Result<Sniffed> {
    loop {
        if let Some(proto) = classify(buf) {
            return Ok(Sniffed::Proto(proto));
        }
        match timeout_at(until, read_some(&mut *stream, buf)).await {
            Ok(Ok(0)) | Err(_) if !buf.is_empty() => return Ok(Sniffed::Proto(Proto::Line)),
            Ok(Ok(0)) => return Ok(Sniffed::Closed),
            Err(_) => return Ok(Sniffed::Silent),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// One read of what is available, up to what a decision needs. Cancel-safe: a read that
/// has not completed has taken nothing.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let mut scratch = [0u8; DECISIVE];
    let want = DECISIVE.saturating_sub(buf.len()).max(1);
    let n = stream.read(&mut scratch[..want]).await?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_from_as_few_bytes_as_it_can() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"\0"), Some(Proto::Framed));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Proto::Tls));
        assert_eq!(classify(b"alice\r\n"), Some(Proto::Line));
        assert_eq!(classify(b"x"), Some(Proto::Line), "no word starts with x");
        assert_eq!(classify(b"N"), None, "could be NICK");
        assert_eq!(classify(b"NICK"), None);
        assert_eq!(classify(b"NICK alice"), Some(Proto::Irc));
        assert_eq!(classify(b"NICKY\n"), Some(Proto::Line));
        assert_eq!(classify(b"CAP LS 302"), Some(Proto::Irc));
        assert_eq!(classify(b"P"), None, "PASS, POST, PUT or PATCH");
        assert_eq!(classify(b"PATCH /x"), Some(Proto::Http));
        assert_eq!(classify(b"OPTIONS "), Some(Proto::Http));
        assert_eq!(classify(b"GET\n"), Some(Proto::Line));
        assert_eq!(
            classify(b"get / HTTP/1.1"),
            Some(Proto::Line),
            "case matters"
        );
    }

    #[tokio::test]
    async fn waits_for_a_word_to_complete_and_keeps_what_it_read() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let until = Instant::now() + std::time::Duration::from_secs(5);
        client.write_all(b"NI").await.unwrap();
        let sniffing = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let found = sniff(&mut server, &mut buf, until).await.unwrap();
            (found, buf)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        client.write_all(b"CK bob\r\n").await.unwrap();
        let (found, buf) = sniffing.await.unwrap();
        assert_eq!(found, Sniffed::Proto(Proto::Irc));
        assert!(b"NICK bob\r\n".starts_with(&buf), "read {buf:?}");
        assert!(buf.len() >= 5 && buf.len() <= DECISIVE);
    }
}
