//! Reading a connection through a decoder without keeping a read buffer while it is idle.
//!
//! tokio-util's `FramedRead` owns a buffer for the life of the connection, and one emptied
//! to save memory is refilled eight bytes at a time. Most connections are idle most of the
//! time, so this reader polls into a scratch buffer on the stack and copies what arrived to
//! the heap; once the decoder has consumed everything, the heap buffer is freed. Only a
//! connection in the middle of a frame or a line holds memory for it.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

/// Bytes read per syscall at most.
const SCRATCH: usize = 4096;

pub(crate) struct Reader<R, D> {
    io: R,
    codec: D,
    buf: BytesMut,
    eof: bool,
    /// Bytes read since the last [`Reader::take_read`]: 32 bits, which sit in the padding
    /// beside `eof` (every connection's task holds a reader), and the session takes them
    /// at every flush, long before 4 GiB can arrive.
    read: u32,
}

impl<R, D> Reader<R, D> {
    pub(crate) fn codec(&self) -> &D {
        &self.codec
    }

    /// The bytes read from the client since the last call.
    pub(crate) fn take_read(&mut self) -> u64 {
        u64::from(std::mem::take(&mut self.read))
    }
}

impl<R: AsyncRead + Unpin, D: Decoder> Reader<R, D>
where
    D::Error: From<std::io::Error>,
{
    pub(crate) fn new(io: R, codec: D) -> Self {
        Self {
            io,
            codec,
            buf: BytesMut::new(),
            eof: false,
            read: 0,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The next decoded item; `None` at the end of the stream. Cancel-safe: bytes read are
    /// in `self` before the future can complete.
    pub(crate) async fn next(&mut self) -> Option<Result<D::Item, D::Error>> {
        loop {
            if self.eof {
                return self.codec.decode_eof(&mut self.buf).transpose();
            }
            if !self.buf.is_empty() {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(item)) => {
                        if self.buf.is_empty() {
                            self.buf = BytesMut::new();
                        }
                        return Some(Ok(item));
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.fill().await {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// Reads once into the stack scratch buffer and appends what came to `self.buf`.
    ///
    /// The scratch is left uninitialised: zeroing 4 KiB on every poll (`[0u8; SCRATCH]`),
    /// pending ones included, was a twentieth of the server's own instructions under a
    /// busy room (callgrind, W1 line), and `ReadBuf` tracks what was really written.
    async fn fill(&mut self) -> std::io::Result<usize> {
        poll_fn(|cx| {
            let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
            let mut read = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            self.buf.extend_from_slice(read.filled());
            // At most SCRATCH per read.
            self.read = self.read.saturating_add(n as u32);
            Poll::Ready(Ok(n))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::line_codec::{LineCodec, LineItem};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn decodes_across_reads_and_frees_the_buffer_between_items() {
        let (client, server) = tokio::io::duplex(64);
        let mut reader = Reader::new(server, LineCodec::new(100));
        let mut client = client;
        client.write_all(b"hel").await.unwrap();
        let pending = tokio::spawn(async move {
            let item = reader.next().await;
            (reader, item)
        });
        client.write_all(b"lo\nworld").await.unwrap();
        let (mut reader, item) = pending.await.unwrap();
        assert_eq!(item.unwrap().unwrap(), LineItem::Line("hello".into()));
        assert!(reader.buf.capacity() > 0, "half a line is still held");
        client.write_all(b"\n").await.unwrap();
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            LineItem::Line("world".into())
        );
        assert_eq!(reader.buf.capacity(), 0, "an idle reader holds no buffer");
        client.write_all(b"last").await.unwrap();
        drop(client);
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            LineItem::Line("last".into())
        );
        assert!(reader.next().await.is_none());
    }
}
