//! History pages and the rest of join sequences, completed from the store when the
//! room's cache does not hold them; and lists cut to fit one frame.
//!
//! A page that holds the client's own message before it is durable would acknowledge it
//! early, so it waits for that message first: the room pokes the session when it settles.

use std::sync::Arc;

use chat_shared::{ChatMessage, RoomName, ServerMsg};
use uuid::Uuid;

use super::Session;
use super::errors::Refusal;
use crate::event::{Event, Settled};
use crate::path::delivery::MemberList;
use crate::path::stream::Plan;
use crate::path::{JoinSeq, PathStore, chat};
use crate::store::Range;
use crate::wire::Wire;

/// History still owed to the client.
pub(super) struct Deferred {
    pub(super) room: RoomName,
    pub(super) plan: Plan,
    /// For a join: the members, sent after the history.
    pub(super) members: Option<MemberList>,
    pub(super) ref_id: Option<Uuid>,
    /// The history waits for this message to settle (see `RoomStream::unsettled_by`).
    pub(super) unsettled: Option<Arc<Event>>,
}

/// Why a plan could not be completed.
enum Unresolved {
    UnknownBefore,
    Store,
}

impl<W: Wire> Session<W> {
    /// The rest of a join sequence, after its `joined`: history, then members. What needs
    /// the store (or waits for this client's own message to be durable) is returned, to be
    /// completed before anything behind it is handled.
    pub(super) fn join_sequence(&mut self, join: JoinSeq) -> Option<Deferred> {
        self.wire.push(&join.joined);
        if let Some(topic) = join.topic {
            self.reply(topic);
        }
        self.reply(join.modes);
        let unsettled = join.unsettled.filter(|_| self.caps.echoes_own);
        match (join.plan, unsettled) {
            (Plan::Done { messages, older }, None) => {
                self.push_history(&join.room, messages, older);
                self.push_members(&join.room, &join.members);
                None
            }
            (plan, unsettled) => Some(Deferred {
                room: join.room,
                plan,
                members: Some(join.members),
                ref_id: None,
                unsettled,
            }),
        }
    }

    /// Completes a join's or a `history` request's history from the store (and, for a join,
    /// sends the members after it, as the join sequence requires).
    pub(super) async fn complete(&mut self, deferred: Deferred) {
        let Deferred {
            room,
            plan,
            members,
            ref_id,
            unsettled,
        } = deferred;
        if let Some(event) = &unsettled {
            // Settles with its commit, a few milliseconds at most unless the disk stalls.
            while self.wait_durable(event) {
                tokio::select! {
                    () = self.sink.wait_poke() => {}
                    () = self.cancel.cancelled() => break,
                }
            }
        }
        let before = match &plan {
            Plan::Find { before, .. } | Plan::After { after: before, .. } => *before,
            _ => Uuid::nil(),
        };
        let result = match (plan, self.chat.store.clone()) {
            (Plan::Done { messages, older }, _) => Ok((messages, older)),
            (plan, Some(store)) => resolve(store, room.to_string(), plan).await,
            (_, None) => Err(Unresolved::Store),
        };
        match result {
            Ok((mut messages, older)) => {
                if let Some(failed) = unsettled.filter(|e| e.settled() == Settled::Failed) {
                    let id = chat(&failed).id;
                    messages.retain(|m| m.id != id);
                }
                self.push_history(&room, messages, older);
            }
            Err(Unresolved::UnknownBefore) => {
                // Only a `history` request looks for a `before`; a bad one ends no connection
                // here (the streak is counted, and checked at the next request).
                let _ = self.refuse(&Refusal::UnknownBefore(before, room.clone()), ref_id);
            }
            Err(Unresolved::Store) => {
                let _ = self.refuse(&Refusal::HistoryUnavailable(room.clone()), ref_id);
                if members.is_some() {
                    // The join sequence still needs its history: what memory had.
                    self.push_history(&room, Vec::new(), true);
                }
            }
        }
        if let Some(members) = members {
            self.push_members(&room, &members);
        }
    }

    /// Sends a `history`, cut (oldest first) to fit the frame limit.
    pub(super) fn push_history(
        &mut self,
        room: &RoomName,
        messages: Vec<ChatMessage>,
        truncated: bool,
    ) {
        let event = self.fit(&messages, truncated, Cut::Front, |messages, truncated| {
            ServerMsg::History {
                room: room.to_string(),
                messages,
                truncated,
            }
        });
        self.wire.push(&event);
    }

    /// Sends a `members`, its nicks cut (at the end) to fit the frame limit; the role
    /// lists keep only the nicks that are left.
    pub(super) fn push_members(&mut self, room: &RoomName, list: &MemberList) {
        let event = self.fit(&list.nicks, false, Cut::Back, |nicks, truncated| {
            let kept = |role: &[String]| -> Vec<String> {
                if truncated {
                    role.iter().filter(|n| nicks.contains(n)).cloned().collect()
                } else {
                    role.to_vec()
                }
            };
            ServerMsg::Members {
                room: room.to_string(),
                ops: kept(&list.ops),
                voiced: kept(&list.voiced),
                owner: list
                    .owner
                    .clone()
                    .filter(|o| !truncated || nicks.contains(o)),
                nicks,
                truncated,
            }
        });
        self.wire.push(&event);
    }

    /// A list event that fits one frame (see [`fit`]), measured by this client's adapter.
    pub(super) fn fit<T: Clone>(
        &self,
        items: &[T],
        truncated: bool,
        cut: Cut,
        make: impl Fn(Vec<T>, bool) -> ServerMsg,
    ) -> Event {
        fit(items, truncated, cut, make, self.config.max_frame, |e| {
            self.wire.size_of(e)
        })
    }
}

/// Builds a list event from as many of `items` as fit in one frame of `max` bytes, setting
/// its `truncated` flag when some were cut. The contract promises the server never sends a
/// frame over the limit. `size_of` is the adapter's, which keeps the encoding it measured,
/// so pushing the event after does not encode it again.
pub(super) fn fit<T: Clone>(
    items: &[T],
    truncated: bool,
    cut: Cut,
    make: impl Fn(Vec<T>, bool) -> ServerMsg,
    max: usize,
    size_of: impl Fn(&Event) -> usize,
) -> Event {
    let mut range = 0..items.len();
    let mut truncated = truncated;
    loop {
        let event = Event::new(make(items[range.clone()].to_vec(), truncated), None);
        let size = size_of(&event);
        if size <= max || range.is_empty() {
            return event;
        }
        // Scale down by the overshoot, aiming 10% low so one more round is rarely needed,
        // and always drop at least one item.
        let keep = (range.len() * max / size * 9 / 10).min(range.len() - 1);
        match cut {
            Cut::Front => range.start = range.end - keep,
            Cut::Back => range.end = range.start + keep,
        }
        truncated = true;
    }
}

/// Which end of a list to drop from when it does not fit in a frame.
#[derive(Clone, Copy)]
pub(super) enum Cut {
    /// Drop the oldest (history keeps the newest).
    Front,
    /// Drop the tail.
    Back,
}

/// Completes a history plan from the store, on a blocking thread (SQLite reads block).
async fn resolve(
    store: PathStore,
    room: String,
    plan: Plan,
) -> Result<(Vec<ChatMessage>, bool), Unresolved> {
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (messages, range, since) = match plan {
            Plan::Done { messages, older } => return Ok(Some((messages, older))),
            Plan::Read {
                messages,
                range,
                since,
            } => (messages, range, since),
            Plan::After {
                after,
                before,
                limit,
            } => return forwards(&store, &room, after, before, limit),
            Plan::Find { before, limit } => match store.seq_of(&room, before)? {
                Some(seq) => (
                    Vec::new(),
                    Range {
                        after: 0,
                        before: seq,
                        limit: limit + 1,
                    },
                    false,
                ),
                None => return Ok(None),
            },
        };
        let mut older = store.read(&room, range)?;
        // One more than wanted was asked for: getting it means older ones exist.
        let mut truncated = older.len() >= range.limit;
        if truncated {
            older.remove(0);
        }
        // After `since`, a missing first message means it is no longer kept.
        let first = older.first().map_or(range.before, |m| m.seq);
        truncated |= since && first > range.after.saturating_add(1);
        older.extend(messages);
        Ok(Some((older, truncated)))
    });
    match read.await {
        Ok(Ok(Some(page))) => Ok(page),
        Ok(Ok(None)) => Err(Unresolved::UnknownBefore),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "history read failed");
            Err(Unresolved::Store)
        }
        Err(e) => {
            tracing::warn!(error = %e, "history read task failed");
            Err(Unresolved::Store)
        }
    }
}

/// A forward page from the store (see `RoomStream::forward_plan`). Seqs are given one
/// apart, so the `limit` messages after `after` lie within `limit` seqs of it: a range the
/// store reads by seq. `None`: an id is not in the room.
fn forwards(
    store: &PathStore,
    room: &str,
    after: Uuid,
    before: Option<Uuid>,
    limit: usize,
) -> anyhow::Result<Option<(Vec<ChatMessage>, bool)>> {
    let Some(from) = store.seq_of(room, after)? else {
        return Ok(None);
    };
    let to = match before {
        None => u64::MAX,
        Some(id) => match store.seq_of(room, id)? {
            Some(seq) => seq,
            None => return Ok(None),
        },
    };
    let wanted = u64::try_from(limit).unwrap_or(u64::MAX);
    // One more than wanted, to tell whether more lie between.
    let backwards = from > to;
    let (after, before) = if backwards {
        (to, from)
    } else {
        (from, to.min(from.saturating_add(wanted).saturating_add(2)))
    };
    let range = Range {
        after,
        before,
        limit: limit + 1,
    };
    let mut page = store.read(room, range)?;
    let more = page.len() > limit;
    if more && backwards {
        page.remove(0);
    } else {
        page.truncate(limit);
    }
    Ok(Some((page, more)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::framed::payload_len;

    #[test]
    fn fit_cuts_lists_to_the_frame_limit() {
        let nicks: Vec<String> = (0..5000).map(|i| format!("nick{i:05}")).collect();
        let make = |nicks, truncated| ServerMsg::Members {
            ops: Vec::new(),
            owner: None,
            voiced: Vec::new(),
            room: "r".into(),
            nicks,
            truncated,
        };
        let event = fit(&nicks, false, Cut::Back, make, 4096, payload_len);
        assert!(payload_len(&event) <= 4096);
        let ServerMsg::Members {
            nicks: kept,
            truncated,
            ..
        } = &event.msg
        else {
            panic!("not members");
        };
        assert!(*truncated && kept.len() > 100 && kept[0] == "nick00000");

        let event = fit(&nicks, false, Cut::Front, make, 4096, payload_len);
        let ServerMsg::Members { nicks: kept, .. } = &event.msg else {
            panic!("not members");
        };
        assert_eq!(
            kept.last().unwrap(),
            "nick04999",
            "the front cut keeps the newest"
        );

        let event = fit(&nicks[..3], false, Cut::Back, make, 4096, payload_len);
        assert!(matches!(
            event.msg,
            ServerMsg::Members {
                truncated: false,
                ..
            }
        ));
    }
}
