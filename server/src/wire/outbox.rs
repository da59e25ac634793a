//! A connection's queue of outgoing bytes, written with as few syscalls as possible.
//!
//! Events arrive as shared [`Bytes`] (see `event.rs`); copying them into a per-connection
//! buffer would undo that sharing, so the outbox keeps the chunks themselves and writes them
//! with vectored writes: one `writev` for everything pending. The queue is empty between
//! flushes, so an idle connection holds no output memory.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most chunks handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Outbox {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// The socket's error; what was not written stays queued (the caller closes anyway).
    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while !self.chunks.is_empty() {
            let written = {
                let slices: Vec<IoSlice<'_>> = self
                    .chunks
                    .iter()
                    .take(MAX_IOV)
                    .map(|c| IoSlice::new(c))
                    .collect();
                w.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        if self.chunks.capacity() > MAX_IOV {
            // A burst grew the queue; give the memory back now that it is empty.
            self.chunks.shrink_to(MAX_IOV);
        }
        w.flush().await
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn flush_writes_all_chunks_in_order_through_partial_writes() {
        // A 7-byte pipe forces partial writes across chunk boundaries.
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut out = Outbox::default();
        let mut want = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; (i % 5) as usize];
            want.extend_from_slice(&chunk);
            out.push(Bytes::from(chunk));
        }
        assert_eq!(out.len(), want.len());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        out.flush(&mut a).await.unwrap();
        assert_eq!(out.len(), 0);
        drop(a);
        assert_eq!(reader.await.unwrap(), want);
    }
}
