//! The store's outcomes, turned into events of the path.
//!
//! The store reports, in append order, that a message was placed (written, its `seq`
//! reserved) and that it settled (durable, a duplicate, failed). One task receives those
//! reports and applies them: a placed message becomes the room's `Message` event, a settled
//! one its `Settled` event, which releases the sender's acknowledgement. A DM is delivered
//! to both ends once it is durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chat_shared::{ErrorCode, ServerMsg};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;
use uuid::Uuid;

use super::ids::MessageIds;
use super::producer::InFlight;
use super::sink::{Pushed, Sink};
use crate::event::{Event, Settled};
use crate::store::{Outcome, Stored};

/// Applies the store's outcomes until the store is gone (its writer drops the sender).
pub(crate) async fn run(mut rx: UnboundedReceiver<Vec<Outcome<InFlight>>>, ids: Arc<MessageIds>) {
    while let Some(batch) = rx.recv().await {
        for outcome in batch {
            apply(outcome, &ids);
        }
    }
}

fn apply(outcome: Outcome<InFlight>, ids: &MessageIds) {
    match outcome {
        Outcome::Placed(InFlight::Message { room, event, .. }) => room.placed(event),
        // DMs are delivered once durable, never placed.
        Outcome::Placed(InFlight::Dm { .. }) => {}
        Outcome::Settled(
            InFlight::Message {
                room,
                event,
                sender,
            },
            stored,
        ) => room.settle(event, stored, &sender),
        Outcome::Placed(InFlight::Replica { .. }) => {}
        Outcome::Settled(
            InFlight::Replica {
                stream_seq,
                replicated,
                room,
                seq,
            },
            stored,
        ) => {
            room.stored(seq);
            if let Stored::Failed(reason) = &stored {
                warn!(%reason, "a message of the cluster's stream was not kept in this node's store");
            }
            // In append order: everything up to here is stored (or was, before).
            replicated.fetch_max(stream_seq, Ordering::AcqRel);
        }
        Outcome::Placed(InFlight::Backfill { .. }) => {}
        Outcome::Settled(
            InFlight::Backfill {
                stream_seq,
                progress,
            },
            stored,
        ) => {
            let count = match &stored {
                Stored::New { .. } => &progress.kept,
                Stored::Duplicate(_) => &progress.there,
                Stored::Failed(reason) => {
                    warn!(%reason, "an older message of the cluster's stream was not kept in this node's store");
                    &progress.failed
                }
            };
            count.fetch_add(1, Ordering::Relaxed);
            progress.upto.fetch_max(stream_seq, Ordering::AcqRel);
            progress.queued.fetch_sub(1, Ordering::AcqRel);
        }
        Outcome::Settled(
            InFlight::Dm {
                event,
                recipient,
                sender,
            },
            stored,
        ) => settle_dm(ids, &event, stored, recipient.as_deref(), &sender),
    }
}

fn settle_dm(
    ids: &MessageIds,
    event: &Arc<Event>,
    stored: Stored,
    recipient: Option<&Sink>,
    sender: &Sink,
) {
    let id = match &event.msg {
        ServerMsg::Dm(d) => d.id,
        _ => Uuid::nil(),
    };
    match stored {
        Stored::New { .. } => {
            event.settle(Settled::Durable);
            deliver_dm(event, recipient, sender);
        }
        Stored::Duplicate(original) => {
            event.settle(Settled::Failed);
            ids.lock().remove(&id);
            push(sender, &original);
        }
        Stored::Failed(reason) => {
            event.settle(Settled::Failed);
            ids.lock().remove(&id);
            push(sender, &Arc::new(not_stored(&reason, id)));
        }
    }
}

/// Both copies of a DM: the recipient's (unless it is the sender) and the sender's.
pub(crate) fn deliver_dm(event: &Arc<Event>, recipient: Option<&Sink>, sender: &Sink) {
    if let Some(recipient) = recipient {
        push(recipient, event);
    }
    push(sender, event);
}

fn push(sink: &Sink, event: &Arc<Event>) {
    if sink.push(event) == Pushed::Dropped {
        // Expected only for a client far behind: it is told `lagged` for room messages,
        // and a DM it could not take is gone for it (the sender saw it delivered).
        warn!("a slow client's send queue is full: a DM or notice was dropped");
    }
}

/// The error a sender gets for a message the store could not keep.
pub(crate) fn not_stored(reason: &str, id: Uuid) -> Event {
    Event::new(
        ServerMsg::error(
            ErrorCode::Unavailable,
            format!("the message could not be stored and was not delivered: {reason}"),
            Some(id),
        ),
        None,
    )
}
