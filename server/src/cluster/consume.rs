//! Reading the stream into this node's rooms: the consumer end of the cluster's path.
//!
//! A starting node first reads the newest presence record of every member of every room
//! (one per subject: JetStream's "last per subject"), which is the cluster's membership,
//! then consumes everything from a little before the stream's end (`warm`, to fill the
//! rooms' caches and the index of message ids) onwards, in the stream's order. Presence is
//! idempotent (a join of a member already listed changes nothing, a part of one not
//! listed tells nobody), so reading some of it twice is harmless. It is not a full
//! replay: a restart reads the snapshot and the warm tail, nothing older.
//!
//! The consumer is an ordered consumer: no acknowledgements, and async-nats recreates it
//! from the last sequence seen when it misses one or the connection comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chat_shared::{RoomName, ServerMsg};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::backfill::Span;
use super::record::{Body, Record};
use super::{Cluster, Link};
use crate::event::Event;
use crate::path::producer::InFlight;
use crate::path::sink::Sink;
use crate::path::{Origin, Presence};

/// How long the presence snapshot may take before the node goes on without the rest.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Reads the snapshot, then consumes the stream until `cancel`; recreates its consumer
    /// if it ends (the ordered consumer gives up only after repeated failures).
    pub(super) async fn consume_until(self: Arc<Self>, cancel: CancellationToken) {
        let Some(link) = self.link.get().cloned() else {
            return;
        };
        let (mut start, backfill) = loop {
            match self.bootstrap(&link).await {
                Ok(start) => break start,
                Err(e) => {
                    warn!(error = %e, "cannot read the cluster's state yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(super::SETUP_RETRY) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
        };
        if let Some(span) = backfill {
            tokio::spawn(Arc::clone(&self).backfill_until(span, cancel.clone()));
        }
        loop {
            let consumed = tokio::select! {
                r = self.consume(&link, start) => r,
                () = cancel.cancelled() => break,
            };
            start = self.applied.load(Ordering::Acquire).max(start - 1) + 1;
            if let Err(e) = consumed {
                warn!(error = %e, "the stream's consumer stopped; recreating it");
                self.ready.store(false, Ordering::Release);
                tokio::select! {
                    () = tokio::time::sleep(super::SETUP_RETRY) => {}
                    () = cancel.cancelled() => break,
                }
            }
        }
        self.ready.store(false, Ordering::Release);
    }

    /// The membership snapshot, this run's notice that its earlier runs are over, where
    /// the consumer starts, and what is to be backfilled behind it.
    async fn bootstrap(&self, link: &Link) -> anyhow::Result<(u64, Option<Span>)> {
        let mut stream = link.stream.clone();
        let last = stream.info().await?.state.last_sequence;
        let snapshot = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.names.all_presence(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..pull::OrderedConfig::default()
            })
            .await?;
        let mut pending = snapshot.cached_info().num_pending;
        let mut members = 0_u64;
        if pending > 0 {
            let mut messages = snapshot.messages().await?;
            let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
            while pending > 0 {
                let Ok(Some(next)) = tokio::time::timeout_at(deadline, messages.next()).await
                else {
                    warn!("the presence snapshot is incomplete: going on without the rest");
                    break;
                };
                let message = next?;
                pending = message.info().map_or(0, |i| i.pending);
                if let Ok(record) = Record::decode(&message.payload) {
                    members += 1;
                    self.apply(record, 0);
                }
            }
        }
        // Whatever this node's earlier runs left in rooms goes now.
        let gone = Body::Gone {
            gone: self.node.to_string(),
            keep: Some(self.boot),
        };
        self.publish(self.names.nodes_subject(), gone, None).await?;
        let first = stream.cached_info().state.first_sequence;
        let kept = self.saved_watermark();
        let start = match kept {
            // A restart with its replica: on from where the replica ends, if the stream
            // still has that (no full replay, and no gap in the replica).
            Some(kept) if kept + 1 >= first && kept <= last => kept + 1,
            _ => last.saturating_sub(self.cfg.warm).max(1),
        };
        let backfill = self.backfill_span(kept, start, (first, last));
        info!(
            presence = members,
            from = start,
            to = last,
            backfill = ?backfill,
            "read the cluster's state"
        );
        Ok((start, backfill))
    }

    /// Consumes from stream sequence `start` on, until the consumer ends.
    async fn consume(&self, link: &Link, start: u64) -> anyhow::Result<()> {
        let stream = link.stream.clone();
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.names.all(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..pull::OrderedConfig::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        self.ready.store(true, Ordering::Release);
        info!(from = start, "consuming the cluster's stream");
        // A permit left by the first connection is not a reconnection.
        let _ = tokio::time::timeout(Duration::ZERO, self.reconnected.notified()).await;
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                // NATS may have lost the consumer (a restart): make a new one now.
                () = self.reconnected.notified() => return Ok(()),
            };
            let Some(next) = next else { break };
            let message = next?;
            self.ready.store(true, Ordering::Release);
            let mut stream_seq = 0;
            if let Ok(info) = message.info() {
                stream_seq = info.stream_sequence;
                self.applied.store(stream_seq, Ordering::Release);
                self.behind.store(info.pending, Ordering::Relaxed);
            }
            match Record::decode(&message.payload) {
                Ok(record) => self.apply(record, stream_seq),
                Err(e) => warn!(subject = %message.subject, error = %e, "not a record"),
            }
        }
        anyhow::bail!("the consumer ended")
    }

    /// Tells `mates` that `session` was renamed (`old` → `new` at `ts`), each once
    /// however many rooms it shares with it: the rename comes once per room.
    fn tell_rename(
        &self,
        session: Uuid,
        (old, new, ts): (String, String, i64),
        mates: Vec<(Uuid, Arc<Sink>)>,
    ) {
        let mut told = self.renames.lock().unwrap_or_else(|p| p.into_inner());
        if told.0 != (session, ts) {
            *told = ((session, ts), HashSet::new());
        }
        let event = Arc::new(Event::new(
            ServerMsg::NickChanged { old, new, ts },
            Some(session),
        ));
        for (id, sink) in mates {
            if told.1.insert(id) {
                let _ = sink.push(&event); // dropped only over budget: it hears `lagged`
            }
        }
    }

    /// Applies one record (stream sequence `stream_seq`) to this node's rooms and sessions.
    fn apply(&self, record: Record, stream_seq: u64) {
        let Some(chat) = self.chat() else {
            return;
        };
        let local = *record.node == *self.node && record.boot == self.boot;
        match record.body {
            Body::Messages { messages } => {
                let Some(first) = messages.first() else {
                    return;
                };
                let Ok(name) = RoomName::parse(&first.msg.room) else {
                    return;
                };
                let room = match chat.room(&name) {
                    Ok(room) => room,
                    Err(e) => {
                        warn!(room = %name, error = %e, "a room of the cluster is not kept here");
                        return;
                    }
                };
                if let Some(newest) = messages.last() {
                    self.set_head(name.skeleton(), newest.msg.seq, stream_seq);
                }
                for said in messages {
                    let replica = InFlight::Replica {
                        stream_seq,
                        replicated: Arc::clone(&self.replicated),
                        room: Arc::clone(&room),
                        seq: said.msg.seq,
                    };
                    room.stream_message(said.msg, Some(said.origin), Some(replica));
                }
            }
            Body::Presence { room, change } => {
                let Ok(name) = RoomName::parse(&room) else {
                    return;
                };
                let from = Origin {
                    node: if local {
                        Arc::clone(&self.node)
                    } else {
                        record.node.as_str().into()
                    },
                    boot: record.boot,
                    local,
                };
                let rename = match &change {
                    Presence::Renamed {
                        session,
                        old,
                        nick,
                        ts,
                        ..
                    } if old != nick => Some((*session, (old.clone(), nick.clone(), *ts))),
                    _ => None,
                };
                match chat.room(&name) {
                    Ok(room) => {
                        let mates = room.stream_presence(change, &from);
                        if let Some((session, what)) = rename {
                            self.tell_rename(session, what, mates);
                        }
                    }
                    Err(e) => {
                        warn!(room = %name, error = %e, "a room of the cluster is not kept here");
                    }
                }
            }
            Body::Dm { from, to, dm } => {
                if chat
                    .ids
                    .lock()
                    .get(&dm.id)
                    .is_some_and(|e| e.settled() == crate::event::Settled::Durable)
                {
                    // Read again (a recreated consumer): delivered already.
                    return;
                }
                let event = Arc::new(Event::new(ServerMsg::Dm(dm.clone()), Some(from)));
                chat.deliver_stream_dm(&event, (&dm.from, from), (&dm.to, to));
            }
            Body::Invite(invitation) => chat.deliver_stream_invite(&invitation),
            Body::Replace { nick, session } => chat.end_replaced(&nick, session),
            Body::Gone { gone, keep } => {
                let mut left = 0;
                for room in chat.all_rooms() {
                    left += usize::from(room.node_gone(&gone, keep));
                }
                if left > 0 {
                    info!(node = %gone, rooms = left, "a node's members left");
                }
                self.forget_node(&gone, keep);
            }
        }
    }
}
