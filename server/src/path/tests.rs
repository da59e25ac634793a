//! The ordered path in one process: seq, history, joins and the store's placement rules,
//! observed through members' sinks.

use std::collections::VecDeque;
use std::sync::Mutex;

use chat_shared::{ChatMessage, ServerMsg};

use super::producer::{InFlight, Posted, Said};
use super::sink::Item;
use super::*;
use crate::Config;
use crate::store::{Busy, Job, Outcome, Range, Stored};

fn nick(s: &str) -> Nick {
    Nick::parse(s).unwrap()
}

fn sink() -> Arc<Sink> {
    Arc::new(Sink::new(1 << 20, 64))
}

fn room_with(history: usize, store: Option<PathStore>) -> Arc<Room> {
    let config = Config {
        history,
        ..Config::default()
    };
    Arc::new(Room::new(
        RoomName::parse("r").unwrap(),
        &config,
        store,
        RoomLoad::default(),
        Arc::default(),
        Default::default(),
    ))
}

fn room(history: usize) -> Arc<Room> {
    room_with(history, None)
}

/// What a sink holds, taken: message seqs, join sequences as `J[seqs]`, other events by
/// type.
fn taken(sink: &Sink) -> Vec<String> {
    let mut items = VecDeque::new();
    sink.take_all(&mut items);
    items
        .into_iter()
        .flat_map(|item| match item {
            Item::Feed(sub) => super::feed::drain(&sub)
                .into_iter()
                .map(Item::Event)
                .collect(),
            other => vec![other],
        })
        .map(|item| match item {
            Item::Event(e) => match &e.msg {
                ServerMsg::Message(m) => m.seq.to_string(),
                ServerMsg::Joined { nick, .. } => format!("joined {nick}"),
                ServerMsg::Parted { nick, .. } => format!("parted {nick}"),
                other => format!("{other:?}"),
            },
            Item::Feed(_) => unreachable!("drained"),
            Item::Join(j) => {
                let seqs: Vec<String> = j.plan.held().iter().map(|m| m.seq.to_string()).collect();
                let older = match j.plan {
                    Plan::Done { older: true, .. } => "+older",
                    _ => "",
                };
                format!("J[{}]{older}", seqs.join(","))
            }
        })
        .collect()
}

fn post(room: &Arc<Room>, who: Uuid, sender: &Arc<Sink>, text: &str) {
    assert!(matches!(
        room.post(who, sender, Said::text(text.into(), None)),
        Ok(Posted::New)
    ));
}

#[test]
fn seq_increases_and_history_is_bounded() {
    let room = room(3);
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    for i in 0..5 {
        post(&room, a, &a_sink, &format!("m{i}"));
    }
    assert_eq!(taken(&a_sink), ["J[]", "1", "2", "3", "4", "5"]);
    let Plan::Done { messages, older } = room.history(None, 50).unwrap() else {
        panic!("not served from memory");
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(!older);
    assert_eq!(room.ids.lock().len(), 3, "evicted ids are forgotten");
}

#[test]
fn history_after_pages_forwards_and_between_two_ids_counts_from_the_first() {
    let room = room(10);
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    for i in 0..6 {
        post(&room, a, &a_sink, &format!("m{i}"));
    }
    let Plan::Done { messages: all, .. } = room.history(None, 50).unwrap() else {
        panic!("not served from memory");
    };
    let page = |after: usize, before: Option<usize>, limit| {
        let plan = room.history_after(all[after].id, before.map(|b| all[b].id), limit);
        let Ok(Plan::Done { messages, older }) = plan else {
            panic!("not served from memory: {plan:?}");
        };
        (messages.iter().map(|m| m.seq).collect::<Vec<_>>(), older)
    };
    assert_eq!(page(1, None, 2), (vec![3, 4], true));
    assert_eq!(page(3, None, 9), (vec![5, 6], false));
    assert_eq!(page(5, None, 9), (vec![], false));
    assert_eq!(page(0, Some(4), 9), (vec![2, 3, 4], false));
    assert_eq!(page(0, Some(4), 2), (vec![2, 3], true));
    // Backwards: the ones nearest the first reference.
    assert_eq!(page(5, Some(0), 2), (vec![4, 5], true));
    assert_eq!(page(2, Some(2), 9), (vec![], false));
    let unknown = Uuid::new_v4();
    assert_eq!(
        room.history_after(unknown, None, 5).unwrap_err(),
        UnknownBefore(unknown)
    );
}

#[test]
fn a_joiner_gets_its_sequence_then_everything_after_and_others_hear_of_it_once() {
    let room = room(10);
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    for i in 0..6 {
        post(&room, a, &a_sink, &format!("m{i}"));
    }
    let (b, b_sink) = (Uuid::new_v4(), sink());
    room.join_as(b, &nick("b"), &b_sink, Some(4), 50);
    post(&room, a, &a_sink, "after");
    assert_eq!(taken(&b_sink), ["J[5,6]", "7"]);
    // Joining again repeats the sequence, and others hear of the join only once.
    room.join_as(b, &nick("b"), &b_sink, None, 2);
    assert_eq!(taken(&b_sink), ["J[6,7]+older"]);
    let a_saw = taken(&a_sink);
    assert_eq!(a_saw.iter().filter(|s| *s == "joined b").count(), 1);
    assert_eq!(room.member_nicks(), ["a", "b"]);
    room.part(b, None).unwrap();
    assert_eq!(taken(&b_sink), ["parted b"], "the leaver hears of it too");
    assert_eq!(room.part(b, None), Err(NotMember));
}

#[test]
fn join_since_older_than_retained_says_truncated() {
    let room = room(2);
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    for i in 0..5 {
        post(&room, a, &a_sink, &format!("m{i}"));
    }
    let b_sink = sink();
    room.join_as(Uuid::new_v4(), &nick("b"), &b_sink, Some(1), 50);
    assert_eq!(taken(&b_sink), ["J[4,5]+older"], "seq 2 and 3 are gone");
}

#[test]
fn duplicate_ids_return_the_original() {
    let room = room(10);
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    let id = Uuid::now_v7();
    assert!(matches!(
        room.post(a, &a_sink, Said::text("x".into(), Some(id))),
        Ok(Posted::New)
    ));
    let Ok(Posted::Duplicate(orig)) = room.post(a, &a_sink, Said::text("y".into(), Some(id)))
    else {
        panic!("second post with the same id was not a duplicate");
    };
    assert_eq!(chat(&orig).text, "x");
    assert_eq!(
        taken(&a_sink),
        ["J[]", "1"],
        "the duplicate was not delivered"
    );
}

#[test]
fn non_members_cannot_post_and_history_before_must_exist() {
    let room = room(10);
    assert!(matches!(
        room.post(Uuid::new_v4(), &sink(), Said::text("x".into(), None)),
        Err(producer::PostError::NotMember)
    ));
    let unknown = Uuid::new_v4();
    assert_eq!(
        room.history(Some(unknown), 10).unwrap_err(),
        UnknownBefore(unknown)
    );
}

/// A store that keeps its jobs for the test to settle by hand, as the writer would report;
/// it "may have" exactly the ids in `known`.
#[derive(Debug, Default)]
struct HeldStore {
    jobs: Mutex<Vec<Job<InFlight>>>,
    known: Mutex<Vec<Uuid>>,
}

impl Store<InFlight> for HeldStore {
    fn append(&self, job: Job<InFlight>) -> Result<(), Busy> {
        self.jobs.lock().unwrap().push(job);
        Ok(())
    }
    fn load_room(&self, _: &str, _: usize) -> anyhow::Result<RoomLoad> {
        Ok(RoomLoad::default())
    }
    fn read(&self, _: &str, _: Range) -> anyhow::Result<Vec<ChatMessage>> {
        Ok(Vec::new())
    }
    fn may_have(&self, id: &Uuid) -> bool {
        self.known.lock().unwrap().contains(id)
    }
    fn seq_of(&self, _: &str, _: Uuid) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }
    fn close(&self) {}
}

/// What the writer would report for `store`'s first `n` jobs, each covered up to
/// `covered`, applied as the server applies it.
fn settle_held(store: &HeldStore, n: usize, covered: u64) {
    let ids = Arc::new(ids::MessageIds::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let jobs: Vec<Job<InFlight>> = store.jobs.lock().unwrap().drain(..n).collect();
    let mut batch = Vec::new();
    for job in jobs {
        if job.place {
            batch.push(Outcome::Placed(job.ctx.clone()));
        }
        batch.push(Outcome::Settled(job.ctx, Stored::New { covered }));
    }
    tx.send(batch).unwrap();
    drop(tx);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(durability::run(rx, ids));
}

/// The history cache never lets a message go before the store has settled it: a page
/// asked for meanwhile would otherwise skip it (newer than the store's part, older than
/// the cache's). Once they are settled, the cache is back to its capacity.
#[test]
fn the_cache_keeps_what_the_store_has_not_settled() {
    let store = Arc::new(HeldStore::default());
    let dyn_store: PathStore = store.clone();
    let room = room_with(3, Some(dyn_store));
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    post(&room, a, &a_sink, "m1");
    // Reserved far ahead: later messages are shown before they are durable.
    settle_held(&store, 1, 1000);
    for i in 2..=8 {
        post(&room, a, &a_sink, &format!("m{i}"));
    }
    let cached = |room: &Room| -> Vec<u64> {
        room.history(None, 50)
            .unwrap()
            .held()
            .iter()
            .map(|m| m.seq)
            .collect()
    };
    assert_eq!(
        cached(&room),
        [2, 3, 4, 5, 6, 7, 8],
        "none of 2-8 is stored yet"
    );
    settle_held(&store, 7, 1000);
    assert_eq!(
        cached(&room),
        [6, 7, 8],
        "stored: back to its capacity at once, with no message after"
    );
    post(&room, a, &a_sink, "m9");
    assert_eq!(cached(&room), [7, 8, 9], "and so it stays");
    assert_eq!(
        room.ids.lock().len(),
        3,
        "the ids of what it let go are forgotten"
    );
}

/// With a store: a message with an id the server made up is shown at once once its seq is
/// reserved, and so is one with a client's id that the store certainly lacks; one with an
/// id the store may have only when the store places it; never out of seq order; and a
/// session waiting on a message is poked when it settles.
#[test]
fn with_a_store_messages_are_shown_before_durable_in_seq_order() {
    let store = Arc::new(HeldStore::default());
    let dyn_store: PathStore = store.clone();
    let room = room_with(200, Some(dyn_store));
    let (a, a_sink) = (Uuid::new_v4(), sink());
    room.join_as(a, &nick("a"), &a_sink, None, 50);
    taken(&a_sink);
    let say = |id: Option<Uuid>| {
        assert!(matches!(
            room.post(a, &a_sink, Said::text("x".into(), id)),
            Ok(Posted::New)
        ));
    };
    let settle = |n: usize, covered: u64| settle_held(&store, n, covered);

    // Nothing is reserved yet: seq 1 waits for the store.
    say(None);
    assert!(taken(&a_sink).is_empty());
    assert_eq!(a_sink.unsettled(), 1);
    settle(1, 6);
    assert_eq!(taken(&a_sink), ["1"]);
    assert_eq!(a_sink.unsettled(), 0);

    // Reserved now: seq 2 goes out at once, still pending; a session waiting on it is
    // poked when it settles.
    say(None);
    let mut items = VecDeque::new();
    a_sink.take_all(&mut items);
    let Some(two) = items.pop_front().and_then(|i| match i {
        Item::Feed(sub) => super::feed::drain(&sub).first().cloned(),
        other => other.event().cloned(),
    }) else {
        panic!("seq 2 not shown at once");
    };
    assert_eq!((chat(&two).seq, two.settled()), (2, Settled::Pending));
    assert!(room.wait_durable(&two, &a_sink));
    // A client id the store may have (seq 3) waits for it; seq 4 must not overtake it.
    let maybe_stored = Uuid::now_v7();
    store.known.lock().unwrap().push(maybe_stored);
    say(Some(maybe_stored));
    say(None);
    assert!(taken(&a_sink).is_empty());
    settle(3, 6);
    assert_eq!(taken(&a_sink), ["3", "4"]);
    assert_eq!(two.settled(), Settled::Durable);
    assert!(a_sink.take_poke(), "the waiting session was poked");
    assert!(
        !room.wait_durable(&two, &a_sink),
        "settled: nothing to wait for"
    );
    // Everything placed: fast again, for a client id the store cannot have too.
    say(Some(Uuid::now_v7()));
    assert_eq!(taken(&a_sink), ["5"]);
    // Past the reservation (6): waits for the store again.
    say(None);
    assert!(taken(&a_sink).is_empty());
    settle(2, 200);
    assert_eq!(taken(&a_sink), ["6"]);
}
