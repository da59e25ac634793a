//! A connection's two halves as the wire adapters see them, whatever the transport.
//!
//! The reader gives back first the bytes the sniffer read, then the transport's; the memory
//! for them is freed once they are consumed. Each half is an enum over the transports, plain
//! TCP and TLS, so no adapter or session knows which one it runs on. Plain TCP keeps the
//! socket's own owned halves: no lock and no allocation on its path. A TLS stream is one
//! state machine for both directions, so its halves share it through `tokio::io::split`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A TLS connection, over the socket with the bytes the outer sniffer read in front.
pub(crate) type TlsConn = tokio_rustls::server::TlsStream<Rewind<TcpStream>>;

/// Splits `stream` into the adapters' halves, with `sniffed` in front of the input.
pub(crate) fn split(stream: TcpStream, sniffed: Bytes) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    (
        Reader(ReadStream::Tcp(Rewind::new(r, sniffed))),
        Writer(WriteStream::Tcp(w)),
    )
}

/// Splits an established TLS connection, with `sniffed` (what the sniffer read of the
/// decrypted stream) in front of the input.
pub(crate) fn split_tls(stream: TlsConn, sniffed: Bytes) -> (Reader, Writer) {
    let (r, w) = tokio::io::split(stream);
    (
        Reader(ReadStream::Tls(Box::new(Rewind::new(r, sniffed)))),
        Writer(WriteStream::Tls(Box::new(w))),
    )
}

/// A stream with bytes already read from it put back in front: the sniffed bytes before
/// an adapter's input, or the first bytes of a ClientHello before the TLS handshake.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    /// Not yet handed on. Boxed: it is gone after the first read, and its holder lives as
    /// long as the connection.
    prefix: Option<Box<Bytes>>,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(inner: S, prefix: Bytes) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then(|| Box::new(prefix)),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(prefix) = &mut this.prefix else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let n = prefix.len().min(buf.remaining());
        buf.put_slice(&prefix[..n]);
        prefix.advance(n);
        if prefix.is_empty() {
            this.prefix = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The TLS halves are boxed so that the enums stay the size of the TCP halves alone (the
/// TCP variant's pointer leaves room for the tag): every session task holds both for its
/// whole life, and plain connections must not pay for TLS (see `server.rs`'s size test).
#[derive(Debug)]
enum ReadStream {
    Tcp(Rewind<OwnedReadHalf>),
    Tls(Box<Rewind<ReadHalf<TlsConn>>>),
}

#[derive(Debug)]
enum WriteStream {
    Tcp(OwnedWriteHalf),
    Tls(Box<WriteHalf<TlsConn>>),
}

/// A connection's input, what sniffing read in front.
#[derive(Debug)]
pub(crate) struct Reader(ReadStream);

/// A connection's output.
#[derive(Debug)]
pub(crate) struct Writer(WriteStream);

impl AsyncRead for ReadStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Self::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0 {
            WriteStream::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteStream::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            WriteStream::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteStream::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            WriteStream::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteStream::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
