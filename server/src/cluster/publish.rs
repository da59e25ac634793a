//! One publisher per room: gives each message the room's next `seq` and publishes the
//! room's events in the order they were posted here.
//!
//! The `seq` is safe against other nodes by optimistic concurrency: each message states
//! the stream sequence of the room's last message, and JetStream refuses it if another
//! node's message came in between; the publisher then reads the room's last message and
//! tries again. One message of a room is in flight per node at a time, which is what makes
//! the next one's expectation known; presence events wait their turn in the same queue, so
//! a join is on the stream before the joiner's first message.

use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use chat_shared::{ErrorCode, ServerMsg};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use super::record::{Body, Record};
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
    while let Some(post) = rx.recv().await {
        let Some(link) = cluster.link.get().filter(|_| cluster.available()) else {
            refuse(post, "NATS cannot be reached");
            continue;
        };
        match post {
            Post::Presence(change) => {
                let session = match &change {
                    Presence::Joined { session, .. }
                    | Presence::Parted { session, .. }
                    | Presence::Renamed { session, .. } => *session,
                };
                let subject = cluster.names.presence(&skeleton, session);
                let body = Body::Presence {
                    room: room.name().to_string(),
                    change,
                };
                if let Err(e) = cluster.publish(subject, body, None).await {
                    warn!(room = %room.name(), error = %e, "a membership change was not published");
                }
            }
            Post::Message { event, sender } => {
                let outcome = message(&cluster, link, &subject, &mut last, &event).await;
                sender.unsettled_sub();
                if let Err(reason) = outcome {
                    let id = chat(&event).id;
                    room.forget_pending(id);
                    let _ = sender.push(&Arc::new(Event::new(
                        ServerMsg::error(
                            ErrorCode::Unavailable,
                            format!("the message was not delivered: {reason}"),
                            Some(id),
                        ),
                        None,
                    )));
                }
            }
        }
    }
}

fn refuse(post: Post, reason: &str) {
    if let Post::Message { event, sender } = post {
        sender.unsettled_sub();
        let id = chat(&event).id;
        let _ = sender.push(&Arc::new(Event::new(
            ServerMsg::error(
                ErrorCode::Unavailable,
                format!("the message was not delivered: {reason}"),
                Some(id),
            ),
            None,
        )));
    }
}

/// Publishes one message with the room's next `seq`; the stream delivers it to everyone.
async fn message(
    cluster: &Cluster,
    link: &Link,
    subject: &str,
    last: &mut Option<Last>,
    event: &Event,
) -> Result<(), String> {
    let ServerMsg::Message(msg) = &event.msg else {
        return Ok(());
    };
    let origin = event.origin.unwrap_or_default();
    for _ in 0..MAX_CONFLICTS {
        let at = match *last {
            Some(at) => at,
            None => last_of(link, subject).await?,
        };
        let mut msg = msg.clone();
        msg.seq = at.seq + 1;
        let id = msg.id;
        let record = Record {
            node: cluster.node.to_string(),
            boot: cluster.boot,
            body: Body::Message { origin, msg },
        };
        let publish = PublishMessage::build()
            .payload(record.encode())
            .message_id(id.to_string())
            .expected_last_subject_sequence(at.stream_seq);
        let started = std::time::Instant::now();
        let acked = match link.js.send_publish(subject.to_owned(), publish).await {
            Ok(ack) => tokio::time::timeout(cluster.cfg.publish_timeout, ack)
                .await
                .map_err(|_| "JetStream did not answer in time".to_owned())?,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => {
                cluster.observe_publish(started.elapsed());
                if !ack.duplicate {
                    *last = Some(Last {
                        seq: at.seq + 1,
                        stream_seq: ack.sequence,
                    });
                }
                // A duplicate: the stream has this id already (a resend); the original is
                // what everyone was, or will be, shown.
                return Ok(());
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                cluster.count_conflict();
                *last = None;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("too many other messages in this room at once; try again".into())
}

/// The room's last message on the stream (none yet: seq 0).
async fn last_of(link: &Link, subject: &str) -> Result<Last, String> {
    match link.stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => match Record::decode(&m.payload) {
            Ok(Record {
                body: Body::Message { msg, .. },
                ..
            }) => Ok(Last {
                seq: msg.seq,
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
