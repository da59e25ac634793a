//! A room's feed: its events written once, in order, and read by each local member at its
//! own position.
//!
//! Local delivery used to push each event into every member's sink: a lock, a queue slot
//! and a reference count per member, on cache lines the members' sessions on the other core
//! had just touched. `perf` put that push at a fifth of the server's time in W1, the
//! session's release of its reference at another tenth, and it all ran under the room's
//! lock. Here the producer appends the event once; a member's sink hears of the room only
//! when it has nothing of it queued (a marker, [`Sub`], see `open`), and its session then
//! reads as many events as have come, by reference, without a count per event.
//!
//! Entries live in chunks of [`CHUNK`], each filled once and read without the feed's lock
//! (a reader holds its chunk for as long as it reads it). Chunks go once every member has
//! read past them, or once they are more than the budget (`--max-sendq`) behind the newest
//! entry: a member that far behind is a client that does not read, and it gets `lagged`
//! with the number of messages it missed when it comes back. Memory follows what is really
//! unread: an idle room holds at most the chunk it was writing, a room nobody spoke in holds
//! none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chat_shared::ServerMsg;

use crate::event::Event;

/// Entries per chunk; also how often the producer looks at its readers' positions.
pub(crate) const CHUNK: u64 = 64;

/// One event in the feed, with what came before it (for a reader's backlog and gaps).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) event: Arc<Event>,
    /// The feed's weight before this entry.
    bytes_before: u64,
    /// Messages in the feed before this entry (a gap is reported in messages).
    msgs_before: u64,
}

impl Entry {
    fn msgs_after(&self) -> u64 {
        self.msgs_before + u64::from(matches!(self.event.msg, ServerMsg::Message(_)))
    }

    fn bytes_after(&self) -> u64 {
        self.bytes_before + self.event.weight() as u64
    }
}

/// [`CHUNK`] entries from `base`, each set once.
#[derive(Debug)]
pub(crate) struct Chunk {
    base: u64,
    slots: Box<[OnceLock<Entry>]>,
}

impl Chunk {
    fn new(base: u64) -> Self {
        Self {
            base,
            slots: (0..CHUNK).map(|_| OnceLock::new()).collect(),
        }
    }

    fn end(&self) -> u64 {
        self.base + CHUNK
    }

    /// The entry at `index`, if this chunk holds it and it is written.
    fn get(&self, index: u64) -> Option<&Entry> {
        let i = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.slots.get(i)?.get()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The chunks still held, oldest first; the last one is being written.
    chunks: VecDeque<Arc<Chunk>>,
    /// The index the next entry gets.
    tail: u64,
    /// The feed's weight and message count through its last entry.
    bytes: u64,
    msgs: u64,
}

/// A room's feed (see the module's doc).
#[derive(Debug)]
pub(crate) struct Feed {
    room: String,
    /// How far behind the newest entry a chunk may be before it goes, read or not.
    budget: u64,
    inner: Mutex<Inner>,
    /// The readers still to catch up with the newest entry: the tail they must reach in
    /// the high bits, how many in the low [`COUNT_BITS`]. The last to catch up lets every
    /// chunk go at once, so a room that goes quiet holds nothing, without waiting for its
    /// next chunk to start (see [`Feed::caught_up`]).
    behind: AtomicU64,
}

/// Bits of `Feed::behind` that count readers (a million per room, more than a server holds).
const COUNT_BITS: u32 = 20;

/// Where a reader stands (see [`Feed::at`]).
pub(crate) enum At {
    /// Its next entry is in this chunk; entries before `tail` are written.
    Chunk { chunk: Arc<Chunk>, tail: u64 },
    /// It has read everything.
    Caught,
    /// What it had not read is gone: it resumes at `to`, having missed `missed` messages.
    Gap { to: Position, missed: u64 },
}

impl Feed {
    pub(crate) fn new(room: String, budget: usize) -> Self {
        Self {
            room,
            budget: budget as u64,
            inner: Mutex::default(),
            behind: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a few infallible steps: a poisoned lock still holds sound data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn room(&self) -> &str {
        &self.room
    }

    /// Appends `event` for `readers` readers; true when a chunk was started, the moment
    /// to [`trim`](Self::trim).
    pub(crate) fn append(&self, event: &Arc<Event>, readers: usize) -> bool {
        let mut inner = self.lock();
        let index = inner.tail;
        let fresh = inner.chunks.back().is_none_or(|c| c.end() <= index);
        if fresh {
            inner.chunks.push_back(Arc::new(Chunk::new(index)));
        }
        let entry = Entry {
            event: Arc::clone(event),
            bytes_before: inner.bytes,
            msgs_before: inner.msgs,
        };
        inner.bytes = entry.bytes_after();
        inner.msgs = entry.msgs_after();
        if let Some(chunk) = inner.chunks.back() {
            let _ = chunk.slots[usize::try_from(index - chunk.base).unwrap_or(0)].set(entry);
        }
        inner.tail = index + 1;
        // Under the lock: a reader that sees this tail sees whom it waits for too.
        let readers = (readers as u64).min((1 << COUNT_BITS) - 1);
        self.behind
            .store((inner.tail << COUNT_BITS) | readers, Ordering::Release);
        fresh
    }

    /// `sub` has read everything up to `tail`. The last of the readers the newest entry was
    /// appended for lets all chunks go: nobody needs any of them now.
    fn caught_up(&self, sub: &Sub, tail: u64) {
        if sub.caught.swap(tail, Ordering::AcqRel) == tail {
            return; // counted already
        }
        let mut seen = self.behind.load(Ordering::Acquire);
        loop {
            let count = seen & ((1 << COUNT_BITS) - 1);
            if seen >> COUNT_BITS != tail || count == 0 {
                return; // more came since, or not counted
            }
            match self.behind.compare_exchange_weak(
                seen,
                seen - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if count == 1 => break,
                Ok(_) => return,
                Err(now) => seen = now,
            }
        }
        let mut inner = self.lock();
        if inner.tail == tail {
            inner.chunks.clear();
        }
    }

    /// The index the next entry gets, without the lock: every entry before it is written.
    /// A reader that has read up to here is caught up; it need not take the lock the
    /// producer and every other member's session take (a busy room's members each came
    /// here two or three times a turn, and the lock's line went back and forth between the
    /// cores every time).
    fn tail(&self) -> u64 {
        self.behind.load(Ordering::Acquire) >> COUNT_BITS
    }

    /// The producer is about to look at its readers' `open` flags after appending: the
    /// other half of [`Sub::close`]'s fence, so that of an append and a close at the same
    /// time, at least one sees the other (the reader the new tail, or the producer the
    /// cleared flag).
    pub(crate) fn appended() {
        fence(Ordering::SeqCst);
    }

    /// The feed's weight through its newest entry.
    pub(crate) fn weight(&self) -> u64 {
        self.lock().bytes
    }

    /// A new reader's position: after everything appended so far.
    pub(crate) fn end(&self) -> Position {
        let inner = self.lock();
        Position {
            index: inner.tail,
            msgs: inner.msgs,
            bytes: inner.bytes,
        }
    }

    /// Lets go of the chunks every reader is past (`slowest` is the slowest reader's next
    /// index, `None` when nobody reads) and of those more than the budget behind the newest
    /// entry.
    pub(crate) fn trim(&self, slowest: Option<u64>) {
        let mut inner = self.lock();
        let slowest = slowest.unwrap_or(inner.tail);
        let bytes = inner.bytes;
        let budget = self.budget;
        let tail = inner.tail;
        while let Some(first) = inner.chunks.front() {
            let full = first.end() <= tail;
            let read = first.end() <= slowest || slowest >= tail;
            let too_old = full
                && first
                    .get(first.end() - 1)
                    .is_some_and(|last| last.bytes_after() + budget <= bytes);
            if !(read || too_old) {
                break;
            }
            inner.chunks.pop_front();
        }
    }

    /// What a reader whose next index is `at` (having seen `msgs` messages before it) reads
    /// next.
    pub(crate) fn at(&self, at: u64, msgs: u64) -> At {
        if at >= self.tail() {
            // Maybe a step behind the newest: a reader that stops here closes, which looks
            // again (see `Sub::close`).
            return At::Caught;
        }
        let inner = self.lock();
        if at >= inner.tail {
            return At::Caught;
        }
        let head = match inner.chunks.front() {
            Some(first) => first.base,
            None => inner.tail,
        };
        if at < head {
            let to = inner.chunks.front().and_then(|c| c.get(head)).map_or(
                Position {
                    index: inner.tail,
                    msgs: inner.msgs,
                    bytes: inner.bytes,
                },
                |e| Position {
                    index: head,
                    msgs: e.msgs_before,
                    bytes: e.bytes_before,
                },
            );
            return At::Gap {
                missed: to.msgs.saturating_sub(msgs),
                to,
            };
        }
        let chunk = inner
            .chunks
            .iter()
            .find(|c| c.base <= at && at < c.end())
            .map(Arc::clone);
        match chunk {
            Some(chunk) => At::Chunk {
                chunk,
                tail: inner.tail,
            },
            // Chunks run without holes from the head to the tail: never seen. Were it so,
            // the reader would skip to the tail rather than look for ever.
            None => At::Gap {
                to: Position {
                    index: inner.tail,
                    msgs: inner.msgs,
                    bytes: inner.bytes,
                },
                missed: inner.msgs.saturating_sub(msgs),
            },
        }
    }

    /// How many entries the feed holds (for tests and `/rooms`-style views).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.lock()
            .chunks
            .iter()
            .map(|c| c.slots.iter().filter(|s| s.get().is_some()).count())
            .sum()
    }
}

/// A position in a feed: the next index, and the messages and weight before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) index: u64,
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
}

/// One member's reading of a room's feed, shared by the room (which needs its position to
/// trim, and tells its sink when something comes) and the member's session (which reads).
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) feed: Arc<Feed>,
    /// The next index to read; written by the session only.
    index: AtomicU64,
    /// Messages before `index`, for the count of a gap.
    msgs: AtomicU64,
    /// Weight before `index`: the reader's backlog is the feed's weight less this.
    bytes: AtomicU64,
    /// A marker is in the member's sink or its session is reading: the producer need not
    /// queue another. Set by the producer, cleared by the session when it has read all.
    open: AtomicBool,
    /// The member left: it reads up to here (its `parted`, its `kicked`), no further.
    end: AtomicU64,
    /// The tail it last caught up with, counted in `Feed::behind` once.
    caught: AtomicU64,
}

impl Sub {
    /// A reader starting at `from`.
    pub(crate) fn new(feed: &Arc<Feed>, from: Position) -> Self {
        Self {
            feed: Arc::clone(feed),
            index: AtomicU64::new(from.index),
            msgs: AtomicU64::new(from.msgs),
            bytes: AtomicU64::new(from.bytes),
            open: AtomicBool::new(false),
            end: AtomicU64::new(u64::MAX),
            caught: AtomicU64::new(from.index),
        }
    }

    /// The producer appended: true when the member's sink must be told (nothing of this
    /// feed is queued there, nor being read).
    pub(crate) fn wants_marker(&self) -> bool {
        // A plain load first: nearly always the marker is there already.
        !self.open.load(Ordering::Relaxed) && !self.open.swap(true, Ordering::AcqRel)
    }

    /// The session read everything: the next append queues a marker again. Returns whether
    /// it is still caught up after that (an append between its last look and this found
    /// `open` still set: then it reads on).
    pub(crate) fn close(&self) -> bool {
        self.open.store(false, Ordering::Relaxed);
        // Against the producer's `Feed::appended`: either this sees its entry, or it sees
        // the flag cleared and queues a marker.
        fence(Ordering::SeqCst);
        let tail = self.feed.tail();
        let caught = tail <= self.index();
        if caught {
            self.feed.caught_up(self, tail);
        }
        caught
    }

    pub(crate) fn position(&self) -> Position {
        Position {
            index: self.index.load(Ordering::Acquire),
            msgs: self.msgs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// What the member has not read yet of a feed whose weight is `feed_weight` (taken
    /// before this is called: a reader may be a step ahead of it, never behind).
    pub(crate) fn behind(&self, feed_weight: u64) -> usize {
        let read = self.bytes.load(Ordering::Relaxed);
        usize::try_from(feed_weight.saturating_sub(read)).unwrap_or(usize::MAX)
    }

    /// The next index to read.
    pub(crate) fn index(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }

    /// Moves the reader to `to`.
    pub(crate) fn advance(&self, to: Position) {
        self.msgs.store(to.msgs, Ordering::Relaxed);
        self.bytes.store(to.bytes, Ordering::Relaxed);
        self.index.store(to.index, Ordering::Release);
    }

    /// The member left: it reads no further than what the feed holds now.
    pub(crate) fn finish(&self, at: u64) {
        self.end.store(at, Ordering::Release);
    }

    /// Where the member's reading ends (`u64::MAX` while it is a member).
    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Whether the member left and has read up to where it left.
    pub(crate) fn done(&self) -> bool {
        self.index() >= self.end()
    }
}

/// What a reader reads next from `chunk`, up to `upto`: entries and the position after each.
pub(crate) fn entries(
    chunk: &Chunk,
    from: u64,
    upto: u64,
) -> impl Iterator<Item = (&Entry, Position)> {
    (from..upto.min(chunk.end())).map_while(move |i| {
        let entry = chunk.get(i)?;
        Some((
            entry,
            Position {
                index: i + 1,
                msgs: entry.msgs_after(),
                bytes: entry.bytes_after(),
            },
        ))
    })
}

/// The weight a reader at `from` has to read in `chunk` up to `upto`: what it sizes its
/// write buffer by, from entries it reads next anyway (a count of the feed's own would be
/// one more line written by the producer on every append).
pub(crate) fn weight_to_read(chunk: &Chunk, from: Position, upto: u64) -> usize {
    let end = upto.min(chunk.end());
    if end <= from.index {
        return 0;
    }
    chunk.get(end - 1).map_or(0, |e| {
        usize::try_from(e.bytes_after().saturating_sub(from.bytes)).unwrap_or(usize::MAX)
    })
}

/// Everything `sub` may read now, read as a session would (a gap as its `lagged`), for
/// tests that look at what members were handed.
#[cfg(test)]
pub(crate) fn drain(sub: &Sub) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    loop {
        let pos = sub.position();
        let upto = sub.end();
        if pos.index >= upto {
            break;
        }
        match sub.feed.at(pos.index, pos.msgs) {
            At::Caught => {
                if sub.close() {
                    break;
                }
            }
            At::Gap { to, missed } => {
                let room = sub.feed.room().to_owned();
                out.push(Arc::new(Event::new(
                    ServerMsg::Lagged { room, missed },
                    None,
                )));
                sub.advance(to);
            }
            At::Chunk { chunk, tail } => {
                let mut last = pos;
                for (entry, after) in entries(&chunk, pos.index, tail.min(upto)) {
                    out.push(Arc::clone(&entry.event));
                    last = after;
                }
                sub.advance(last);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> Arc<Event> {
        super::super::sink::tests::message("r", seq)
    }

    /// What `sub` reads now: the messages' seqs and the gap's count, if any.
    fn read(sub: &Sub) -> (Vec<u64>, Option<u64>) {
        let mut seqs = Vec::new();
        let mut gap = None;
        for event in drain(sub) {
            match &event.msg {
                ServerMsg::Message(m) => seqs.push(m.seq),
                ServerMsg::Lagged { missed, .. } => gap = Some(*missed),
                _ => {}
            }
        }
        (seqs, gap)
    }

    #[test]
    fn readers_read_every_entry_once_in_order_and_only_what_came_after_they_started() {
        let feed = Arc::new(Feed::new("r".into(), 1 << 20));
        feed.append(&message(1), 0);
        let a = Sub::new(&feed, feed.end());
        for seq in 2..=200 {
            feed.append(&message(seq), 1);
        }
        let b = Sub::new(&feed, feed.end());
        assert_eq!(read(&a), ((2..=200).collect(), None));
        assert_eq!(read(&a), (vec![], None), "nothing twice");
        for seq in 201..=210 {
            feed.append(&message(seq), 2);
        }
        assert_eq!(read(&b).0, (201..=210).collect::<Vec<_>>());
        assert_eq!(read(&a).0, (201..=210).collect::<Vec<_>>());
    }

    #[test]
    fn chunks_go_once_read_and_a_reader_past_the_budget_gets_a_gap_with_its_count() {
        let weight = message(0).weight() as u64;
        // A budget of 100 entries' weight.
        let feed = Arc::new(Feed::new(
            "r".into(),
            usize::try_from(weight * 100).unwrap(),
        ));
        let fast = Sub::new(&feed, feed.end());
        let slow = Sub::new(&feed, feed.end());
        for seq in 1..=CHUNK * 4 {
            if feed.append(&message(seq), 2) {
                read(&fast);
                feed.trim(Some(fast.index().min(slow.index())));
            }
        }
        // The slow reader pins what is within the budget of the newest, not more.
        assert!(feed.held() as u64 <= 100 + 2 * CHUNK, "{}", feed.held());
        let (seqs, gap) = read(&slow);
        let missed = gap.expect("the slow reader was told of its gap");
        assert_eq!(
            missed + seqs.len() as u64,
            CHUNK * 4,
            "missed and read add up"
        );
        assert_eq!(seqs.last(), Some(&(CHUNK * 4)));
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "no hole after the gap"
        );

        // Everyone caught up: the next trim lets everything go.
        read(&fast);
        feed.trim(Some(fast.index().min(slow.index())));
        assert_eq!(feed.held(), 0, "an idle room holds nothing");
    }

    #[test]
    fn the_last_reader_to_catch_up_lets_everything_go() {
        let feed = Arc::new(Feed::new("r".into(), 1 << 20));
        let a = Sub::new(&feed, feed.end());
        let b = Sub::new(&feed, feed.end());
        for seq in 1..=10 {
            feed.append(&message(seq), 2);
        }
        assert_eq!(read(&a).0.len(), 10);
        assert!(a.close());
        assert!(a.close(), "counted once however often it looks");
        assert_eq!(feed.held(), 10, "b has not read yet");
        assert_eq!(read(&b).0.len(), 10);
        assert_eq!(feed.held(), 0, "a quiet room holds nothing");
        feed.append(&message(11), 2);
        assert_eq!(read(&a).0, vec![11], "it goes on after the clear");
        assert_eq!(read(&b).0, vec![11]);
    }

    #[test]
    fn a_finished_reader_stops_where_it_left_and_markers_are_asked_for_once() {
        let feed = Arc::new(Feed::new("r".into(), 1 << 20));
        let sub = Sub::new(&feed, feed.end());
        feed.append(&message(1), 1);
        assert!(sub.wants_marker());
        feed.append(&message(2), 1);
        assert!(!sub.wants_marker(), "one marker until the session has read");
        sub.finish(feed.end().index);
        feed.append(&message(3), 0);
        assert_eq!(read(&sub).0, vec![1, 2], "nothing after it left");
        assert!(sub.done());
        assert!(!sub.close(), "it is not caught up: it left before the last");
        assert!(sub.wants_marker(), "closed: the next append asks again");
    }

    #[test]
    fn a_reader_closing_while_the_producer_appends_is_never_left_without_its_entries() {
        // The producer queues a marker only for a closed reader, and a reader that closes
        // looks at the tail once more: of an append and a close at the same moment, one
        // must see the other, or the reader waits for a marker that never comes.
        const N: u64 = 20_000;
        let feed = Arc::new(Feed::new("r".into(), 1 << 30));
        let sub = Arc::new(Sub::new(&feed, feed.end()));
        let (markers, marked) = std::sync::mpsc::channel::<()>();
        let reader = {
            let sub = Arc::clone(&sub);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                while (seqs.len() as u64) < N {
                    if marked
                        .recv_timeout(std::time::Duration::from_secs(5))
                        .is_err()
                    {
                        break; // stranded: no marker for what is still unread
                    }
                    seqs.extend(read(&sub).0);
                }
                seqs
            })
        };
        for seq in 1..=N {
            if feed.append(&message(seq), 1) {
                feed.trim(Some(sub.index()));
            }
            Feed::appended();
            if sub.wants_marker() {
                markers.send(()).unwrap();
            }
        }
        let seqs = reader.join().unwrap();
        assert_eq!(seqs.len() as u64, N, "the reader was stranded");
        assert!(
            seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "in order, once each"
        );
    }

    #[test]
    fn a_readers_weight_is_what_it_has_left_in_its_chunk() {
        let feed = Arc::new(Feed::new("r".into(), 1 << 20));
        let sub = Sub::new(&feed, feed.end());
        for seq in 1..=3 {
            feed.append(&message(seq), 1);
        }
        let one = message(1).weight();
        let pos = sub.position();
        let At::Chunk { chunk, tail } = feed.at(pos.index, pos.msgs) else {
            panic!("three entries to read");
        };
        assert_eq!(weight_to_read(&chunk, pos, tail), 3 * one);
        assert_eq!(
            weight_to_read(&chunk, pos, 2),
            2 * one,
            "up to where it may read"
        );
        let (_, after) = entries(&chunk, pos.index, tail).next().unwrap();
        assert_eq!(weight_to_read(&chunk, after, tail), 2 * one);
        assert_eq!(weight_to_read(&chunk, pos, pos.index), 0, "nothing to read");
    }
}
