//! A connection's outgoing bytes, gathered into one buffer and written with one syscall.
//!
//! Events arrive as bytes encoded once and shared by every recipient (see `event.rs`). The
//! outbox copies them into one contiguous buffer rather than queueing the shared handles:
//! copying a hundred bytes is cheaper than a contended reference count per recipient, and
//! one buffer makes one `write` however many messages a batch holds (a vector of handles is
//! capped at `IOV_MAX` per `writev`). The buffer is freed once written, so an idle connection
//! holds no output memory.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: BytesMut,
}

impl Outbox {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Makes room for `bytes` more. A batch grown message by message reallocates (and
    /// copies) its buffer a dozen times on its way to 64 KiB; sized once, never.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// The socket's error; what was not written stays queued (the caller closes anyway).
    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while self.buf.has_remaining() {
            let n = w.write(&self.buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.buf.advance(n);
        }
        self.buf = BytesMut::new();
        w.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn flush_writes_everything_in_order_through_partial_writes_then_frees() {
        // A 7-byte pipe forces partial writes.
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut out = Outbox::default();
        let mut want = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; (i % 5) as usize];
            want.extend_from_slice(&chunk);
            out.push(&chunk);
        }
        assert_eq!(out.len(), want.len());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        out.flush(&mut a).await.unwrap();
        assert_eq!(out.len(), 0);
        assert_eq!(out.buf.capacity(), 0, "an idle outbox holds no buffer");
        drop(a);
        assert_eq!(reader.await.unwrap(), want);
    }
}
