//! One publisher per room: gives each message the room's next `seq` and publishes the
//! room's events in the order they were posted here.
//!
//! The `seq` is safe against other nodes by optimistic concurrency: each message states
//! the stream sequence of the room's last message, and JetStream refuses it if another
//! node's message came in between; the publisher then takes the room's last message from
//! its own consumer (or reads it from the stream, if the consumer is slow) and tries
//! again. One message of a room is in flight per node at a time, which is what makes
//! the next one's expectation known; presence events wait their turn in the same queue, so
//! a join is on the stream before the joiner's first message.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use chat_shared::{ErrorCode, ServerMsg};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use super::record::{Body, Record, Said};
use super::{Cluster, Link};
use crate::event::Event;
use crate::path::sink::Sink;
use crate::path::{Presence, Room, chat};

/// Something a room's publisher publishes.
pub(crate) enum Post {
    Message {
        event: Arc<Event>,
        sender: Arc<Sink>,
    },
    Presence(Presence),
}

/// Conflicts with other nodes' messages one message may meet before it is refused.
const MAX_CONFLICTS: usize = 64;

/// Where the room's messages stand on the stream: its last `seq` and the stream sequence
/// of the message that has it.
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u64,
    stream_seq: u64,
}

pub(crate) async fn run(cluster: Arc<Cluster>, room: Arc<Room>, mut rx: UnboundedReceiver<Post>) {
    let skeleton = room.name().skeleton();
    let subject = cluster.names.messages(&skeleton);
    let mut last: Option<Last> = None;
    // A presence post read while gathering a batch, handled next (order is kept).
    let mut ahead: Option<Post> = None;
    loop {
        let post = match ahead.take() {
            Some(post) => post,
            None => match rx.recv().await {
                Some(post) => post,
                None => break,
            },
        };
        match post {
            Post::Presence(change) => presence(&cluster, &room, &skeleton, change).await,
            Post::Message { event, sender } => {
                let mut batch = vec![(event, sender)];
                ahead = gather(&mut rx, &mut batch);
                let Some(link) = cluster.link.get().filter(|_| cluster.available()) else {
                    for (event, sender) in batch {
                        refuse(Post::Message { event, sender }, "NATS cannot be reached");
                    }
                    continue;
                };
                let outcome =
                    messages(&cluster, link, (&skeleton, &subject), &mut last, &batch).await;
                for (event, sender) in &batch {
                    sender.unsettled_sub();
                    if let Err(reason) = &outcome {
                        room.forget_pending(chat(event).id);
                        not_delivered(event, sender, reason);
                    }
                }
            }
        }
    }
}

/// Most messages one stream message carries, and about how many bytes (NATS's default
/// `max_payload` is 1 MiB).
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Adds the messages queued behind `batch`'s first to it, up to the limits; returns a
/// presence post met on the way (it goes after them).
fn gather(
    rx: &mut UnboundedReceiver<Post>,
    batch: &mut Vec<(Arc<Event>, Arc<Sink>)>,
) -> Option<Post> {
    let mut bytes: usize = batch.iter().map(|(e, _)| e.weight()).sum();
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(Post::Message { event, sender }) => {
                bytes += event.weight();
                batch.push((event, sender));
            }
            Ok(other) => return Some(other),
            Err(_) => return None,
        }
    }
    None
}

/// How long a part or a rename waits for NATS to be back before it is given up (the
/// member's node would then be the only one not to list it any more).
const PRESENCE_PATIENCE: Duration = Duration::from_secs(600);

/// Publishes a membership change. A join is refused before it gets here when NATS is
/// down; a part or a rename must reach the other nodes whenever NATS is back, or they
/// would list a member who left.
async fn presence(cluster: &Cluster, room: &Room, skeleton: &str, change: Presence) {
    let session = match &change {
        Presence::Joined { session, .. }
        | Presence::Parted { session, .. }
        | Presence::Renamed { session, .. } => *session,
    };
    let lasting = !matches!(change, Presence::Joined { .. });
    let subject = cluster.names.presence(skeleton, session);
    let body = Body::Presence {
        room: room.name().to_string(),
        change,
    };
    let started = tokio::time::Instant::now();
    loop {
        if cluster.available() {
            match cluster.publish(subject.clone(), body.clone(), None).await {
                Ok(()) => return,
                Err(e) if !lasting || started.elapsed() > PRESENCE_PATIENCE => {
                    warn!(room = %room.name(), error = %e, "a membership change was not published");
                    return;
                }
                Err(_) => {}
            }
        } else if !lasting || started.elapsed() > PRESENCE_PATIENCE {
            warn!(room = %room.name(), "NATS is unreachable: a membership change was not published");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn refuse(post: Post, reason: &str) {
    if let Post::Message { event, sender } = post {
        sender.unsettled_sub();
        not_delivered(&event, &sender, reason);
    }
}

/// Tells the sender of a message (or DM) that it went nowhere, and why.
pub(super) fn not_delivered(event: &Event, sender: &Sink, reason: &str) {
    let id = match &event.msg {
        ServerMsg::Message(m) => m.id,
        ServerMsg::Dm(d) => d.id,
        _ => return,
    };
    let _ = sender.push(&Arc::new(Event::new(
        ServerMsg::error(
            ErrorCode::Unavailable,
            format!("it was not delivered: {reason}"),
            Some(id),
        ),
        None,
    )));
}

/// Publishes queued messages with the room's next `seq`s, in one stream message; the
/// stream delivers them to everyone.
async fn messages(
    cluster: &Cluster,
    link: &Link,
    (skeleton, subject): (&str, &str),
    last: &mut Option<Last>,
    batch: &[(Arc<Event>, Arc<Sink>)],
) -> Result<(), String> {
    let said: Vec<Said> = batch
        .iter()
        .filter_map(|(event, _)| match &event.msg {
            ServerMsg::Message(msg) => Some(Said {
                origin: event.origin.unwrap_or_default(),
                msg: msg.clone(),
            }),
            _ => None,
        })
        .collect();
    let Some(n) = u64::try_from(said.len()).ok().filter(|n| *n > 0) else {
        return Ok(());
    };
    // One message alone is de-duplicated by JetStream too; a batch by the id index only.
    let single = (said.len() == 1).then(|| said[0].msg.id);
    for _ in 0..MAX_CONFLICTS {
        // What this publisher knows, or what the consumer saw since, whichever is newer.
        let head = cluster
            .head(skeleton)
            .map(|(seq, stream_seq)| Last { seq, stream_seq });
        let at = match (*last, head) {
            (Some(mine), Some(seen)) if seen.seq > mine.seq => seen,
            (Some(mine), _) => mine,
            (None, Some(seen)) => seen,
            (None, None) => last_of(link, subject).await?,
        };
        let mut said = said.clone();
        for (said, seq) in said.iter_mut().zip(at.seq + 1..) {
            said.msg.seq = seq;
        }
        let record = Record {
            node: cluster.node.to_string(),
            boot: cluster.boot,
            body: Body::Messages { messages: said },
        };
        let mut publish = PublishMessage::build()
            .payload(record.encode())
            .expected_last_subject_sequence(at.stream_seq);
        if let Some(id) = single {
            publish = publish.message_id(id.to_string());
        }
        let started = std::time::Instant::now();
        let acked = match link.js.send_publish(subject.to_owned(), publish).await {
            Ok(ack) => tokio::time::timeout(cluster.cfg.publish_timeout, ack)
                .await
                .map_err(|_| "JetStream did not answer in time".to_owned())?,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => {
                cluster.observe_publish(started.elapsed(), n);
                if !ack.duplicate {
                    *last = Some(Last {
                        seq: at.seq + n,
                        stream_seq: ack.sequence,
                    });
                }
                // A duplicate: the stream has this id already (a resend); the original is
                // what everyone was, or will be, shown.
                return Ok(());
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                cluster.count_conflict();
                // The message in the way is stored, so it is on its way to this node's
                // consumer too, which usually has it before a read of the stream would
                // answer; a read only when it does not come.
                *last = Some(match newer_head(cluster, skeleton, at.stream_seq).await {
                    Some(seen) => seen,
                    None => last_of(link, subject).await?,
                });
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("too many other messages in this room at once; try again".into())
}

/// How long a publisher whose message met another waits for its consumer to show that
/// one, before it reads the room's last message from the stream instead.
const HEAD_WAIT: Duration = Duration::from_millis(20);

/// The room's head as this node's consumer sees it, once it is past stream sequence
/// `after`; `None` if that takes longer than [`HEAD_WAIT`].
async fn newer_head(cluster: &Cluster, skeleton: &str, after: u64) -> Option<Last> {
    let deadline = tokio::time::Instant::now() + HEAD_WAIT;
    loop {
        let moved = cluster.heads_moved.notified();
        let mut moved = std::pin::pin!(moved);
        // Registered before looking, so a move in between is not missed.
        moved.as_mut().enable();
        if let Some((seq, stream_seq)) = cluster.head(skeleton)
            && stream_seq > after
        {
            return Some(Last { seq, stream_seq });
        }
        tokio::time::timeout_at(deadline, moved).await.ok()?;
    }
}

/// The room's last message on the stream (none yet: seq 0).
async fn last_of(link: &Link, subject: &str) -> Result<Last, String> {
    match link.stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => match Record::decode(&m.payload) {
            Ok(Record {
                body: Body::Messages { messages },
                ..
            }) if !messages.is_empty() => Ok(Last {
                seq: messages.last().map_or(0, |s| s.msg.seq),
                stream_seq: m.sequence,
            }),
            _ => Err("the room's last message on the stream cannot be read".into()),
        },
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Last {
            seq: 0,
            stream_seq: 0,
        }),
        Err(e) => Err(e.to_string()),
    }
}
