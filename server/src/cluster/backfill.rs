//! Backfill: a new node's replica of the stream's older messages.
//!
//! A node with no replica yet (no watermark) consumes live from a little before the
//! stream's end (`warm`), so its store would hold only that tail, and `history` and `join`
//! with an old `since` would answer less there than on the other nodes. So once the live
//! consumer runs, this reads the stream's room messages from its first retained one up to
//! where the live consumer started, and writes each into the store as the replica would
//! have: nothing is shown to anyone, and rooms' `seq`s and caches stay the live
//! consumer's. A room's cache holds its newest messages, so what this writes is always older
//! than the cache of a room loaded before it; one loaded meanwhile starts its cache afresh
//! at the next live message (`RoomStream::skip_to`).
//!
//! The store is keyed by (room, `seq`) and by id, and takes rows older than those it has
//! (an insert, not an append); a message it has already (a resumed backfill reading some
//! twice) is found there and left alone. How far the store has settled the backfill is
//! saved under [`BACKFILL`], so a node restarted before the end goes on from there (its
//! watermark alone would make it skip the rest), and a recreated consumer (NATS restarted,
//! the connection lost) goes on from the last message read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chat_shared::{ChatMessage, ServerMsg};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::record::{Body, Record};
use super::{Cluster, Link};
use crate::event::Event;
use crate::path::PathStore;
use crate::path::producer::InFlight;
use crate::store::Job;

/// The settings key of an unfinished backfill: the stream sequences still to keep.
pub(super) const BACKFILL: &str = "cluster/backfill";

/// Most backfilled messages waiting for the store at once: a small share of its queue
/// (`--max-unsaved`), so the live replica's messages, which are dropped when the store is
/// busy, always find room, and a commit carries at most this many older rows.
const QUEUED_MAX: u64 = 1024;

/// How long the backfill waits for the store to take more.
const QUEUE_WAIT: Duration = Duration::from_millis(20);

/// How often progress is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Stream sequences `from..to` whose room messages this node's store is to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) from: u64,
    pub(super) to: u64,
}

impl Span {
    fn is_empty(self) -> bool {
        self.from >= self.to
    }

    fn encode(self) -> String {
        format!("{} {}", self.from, self.to)
    }

    fn parse(saved: &str) -> Option<Self> {
        let (from, to) = saved.split_once(' ')?;
        Some(Self {
            from: from.parse().ok()?,
            to: to.parse().ok()?,
        })
    }
}

impl Cluster {
    /// What is to be backfilled, at a start whose live consumer begins at `start`:
    /// `kept` is the saved watermark, `first..=last` what the stream holds. Saved at once
    /// (before any watermark of this run can be), so a crash cannot leave a watermark
    /// without its unfinished backfill.
    pub(super) fn backfill_span(
        &self,
        kept: Option<u64>,
        start: u64,
        (first, last): (u64, u64),
    ) -> Option<Span> {
        self.chat()?.store.as_ref()?;
        let span = match kept {
            // A restart with its replica: an unfinished backfill goes on, if any.
            Some(kept) if kept + 1 == start => self
                .saved(BACKFILL)
                .as_deref()
                .and_then(Span::parse)
                .filter(|s| !s.is_empty())?,
            // A new node, or a replica the stream has moved past: all before the start.
            _ => {
                let from = kept.filter(|&k| k <= last).map_or(first, |k| k + 1);
                let span = Span {
                    from: from.max(first).max(1),
                    to: start,
                };
                self.save(BACKFILL, span.encode());
                span
            }
        };
        self.backfill_left
            .store(span.to.saturating_sub(span.from), Ordering::Relaxed);
        (!span.is_empty()).then_some(span)
    }

    /// Backfills `span` once the live consumer runs, until done or `cancel`.
    pub(super) async fn backfill_until(self: Arc<Self>, span: Span, cancel: CancellationToken) {
        let Some(link) = self.link.get().cloned() else {
            return;
        };
        let Some(store) = self.chat().and_then(|c| c.store.clone()) else {
            return;
        };
        while !self.ready.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep(QUEUE_WAIT) => {}
                () = cancel.cancelled() => return,
            }
        }
        let started = Instant::now();
        info!(
            from = span.from,
            to = span.to,
            "backfilling this node's store with the stream's older messages"
        );
        let mut next = span.from;
        loop {
            let read = tokio::select! {
                r = self.backfill(&link, &store, &mut next, span) => r,
                () = cancel.cancelled() => {
                    self.save_backfill(span);
                    return;
                }
            };
            let Err(e) = read else { break };
            warn!(error = %e, at = next, "the backfill's consumer stopped; recreating it");
            tokio::select! {
                () = tokio::time::sleep(super::SETUP_RETRY) => {}
                () = cancel.cancelled() => {
                    self.save_backfill(span);
                    return;
                }
            }
        }
        // Done reading: done once the store has settled all of it.
        while self.backfilled.queued.load(Ordering::Acquire) > 0 {
            tokio::select! {
                () = tokio::time::sleep(QUEUE_WAIT) => {}
                () = cancel.cancelled() => {
                    self.save_backfill(span);
                    return;
                }
            }
        }
        self.save(
            BACKFILL,
            Span {
                from: span.to,
                to: span.to,
            }
            .encode(),
        );
        self.backfill_left.store(0, Ordering::Relaxed);
        let b = &self.backfilled;
        info!(
            kept = b.kept.load(Ordering::Relaxed),
            already = b.there.load(Ordering::Relaxed),
            failed = b.failed.load(Ordering::Relaxed),
            seconds = started.elapsed().as_secs_f64(),
            "backfilled this node's store: it holds the stream's room messages"
        );
    }

    /// Reads room messages from `*next` until the end of `span` (`*next` follows what was
    /// read), keeping each; returns when the consumer ends.
    async fn backfill(
        &self,
        link: &Link,
        store: &PathStore,
        next: &mut u64,
        span: Span,
    ) -> anyhow::Result<()> {
        let mut stream = link.stream.clone();
        // Retention may have taken the oldest meanwhile.
        *next = (*next).max(stream.info().await?.state.first_sequence);
        if *next >= span.to {
            return Ok(());
        }
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.names.all_messages(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: *next,
                },
                ..pull::OrderedConfig::default()
            })
            .await?;
        if consumer.cached_info().num_pending == 0 {
            *next = span.to;
            return Ok(());
        }
        let mut messages = consumer.messages().await?;
        let mut saved = Instant::now();
        while let Some(message) = messages.next().await {
            let message = message?;
            let (at, pending) = message
                .info()
                .map(|i| (i.stream_sequence, i.pending))
                .map_err(|e| anyhow::anyhow!("a stream message without its info: {e}"))?;
            if at >= span.to {
                *next = span.to;
                return Ok(());
            }
            match Record::decode(&message.payload) {
                Ok(Record {
                    body: Body::Messages { messages },
                    ..
                }) => {
                    for said in messages {
                        self.keep(store, said.msg, at).await;
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(subject = %message.subject, error = %e, "not a record"),
            }
            *next = at + 1;
            self.backfill_left
                .store(span.to.saturating_sub(*next), Ordering::Relaxed);
            if pending == 0 {
                // The last room message the stream has: nothing more before the end.
                *next = span.to;
                return Ok(());
            }
            if saved.elapsed() >= SAVE_EVERY {
                self.save_backfill(span);
                saved = Instant::now();
            }
        }
        anyhow::bail!("the consumer ended")
    }

    /// Hands `msg` (in stream message `stream_seq`) to the store, waiting while the
    /// backfill's share of its queue is full or the store is busy: a message is never
    /// dropped.
    async fn keep(&self, store: &PathStore, msg: ChatMessage, stream_seq: u64) {
        let event = Arc::new(Event::new(ServerMsg::Message(msg), None));
        let queued = &self.backfilled.queued;
        loop {
            if queued.load(Ordering::Acquire) < QUEUED_MAX {
                queued.fetch_add(1, Ordering::AcqRel);
                let job = Job {
                    record: crate::store::Record::Message(Arc::clone(&event)),
                    place: false,
                    ctx: InFlight::Backfill {
                        stream_seq,
                        progress: Arc::clone(&self.backfilled),
                    },
                };
                if store.append(job).is_ok() {
                    return;
                }
                queued.fetch_sub(1, Ordering::AcqRel);
            }
            tokio::time::sleep(QUEUE_WAIT).await;
        }
    }

    /// Saves where an unfinished backfill of `span` goes on: after what the store settled.
    fn save_backfill(&self, span: Span) {
        let upto = self.backfilled.upto.load(Ordering::Acquire);
        let from = span.from.max(upto + 1);
        self.save(BACKFILL, Span { from, to: span.to }.encode());
    }
}

#[cfg(test)]
mod tests {
    use super::Span;

    #[test]
    fn a_saved_span_reads_back_and_garbage_does_not() {
        let span = Span { from: 3, to: 40 };
        assert_eq!(Span::parse(&span.encode()), Some(span));
        assert_eq!(Span::parse("3"), None);
        assert_eq!(Span::parse("x 4"), None);
        assert!(Span { from: 40, to: 40 }.is_empty());
    }
}
