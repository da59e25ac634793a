//! A connection's two halves as the wire adapters see them, whatever the transport.
//!
//! The reader gives back first the bytes the sniffer read, then the socket's; the memory
//! for them is freed once they are consumed. Plain TCP is the one transport today: each
//! half is an enum so TLS (reserved, see `sniff::Proto::Tls`) becomes one more variant and
//! no adapter changes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Splits `stream` into the adapters' halves, with `sniffed` in front of the input.
pub(crate) fn split(stream: TcpStream, sniffed: Bytes) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    let prefix = (!sniffed.is_empty()).then(|| Box::new(sniffed));
    (
        Reader {
            prefix,
            inner: ReadStream::Tcp(r),
        },
        Writer(WriteStream::Tcp(w)),
    )
}

#[derive(Debug)]
enum ReadStream {
    Tcp(OwnedReadHalf),
}

#[derive(Debug)]
enum WriteStream {
    Tcp(OwnedWriteHalf),
}

/// A connection's input.
#[derive(Debug)]
pub(crate) struct Reader {
    /// What sniffing read, not yet handed on. Boxed: it is gone after the first read, and
    /// the reader lives as long as the connection.
    prefix: Option<Box<Bytes>>,
    inner: ReadStream,
}

/// A connection's output.
#[derive(Debug)]
pub(crate) struct Writer(WriteStream);

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(prefix) = &mut self.prefix {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if prefix.is_empty() {
                self.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut self.inner {
            ReadStream::Tcp(r) => Pin::new(r).poll_read(cx, buf),
        }
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
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            WriteStream::Tcp(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            WriteStream::Tcp(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
