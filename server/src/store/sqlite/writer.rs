//! The writer thread: group commit, seq reservations, and outcomes in append order.
//!
//! The writer keeps a transaction open for the [`GroupCommit`] interval, or until it holds
//! the group's batch, and commits it (WAL, `synchronous=FULL`: the commit is on disk when
//! it returns); then it reports every job of the transaction as settled, in order. A job
//! that asks to be placed (its room must not show it before its id is checked against
//! everything stored) wakes the writer, which writes it at once and reports it placed if
//! its `seq` is covered by a reservation already on disk; other jobs, already shown, are
//! written at the commit, so the writer sleeps between commits. Under load a commit
//! carries tens to hundreds of messages; idle, a message waits only for its own commit.
//! Retention runs on the same thread between transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use chat_shared::{DirectMessage, ServerMsg};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::{error, warn};
use uuid::Uuid;

use super::retention::{Retention, prune};
use super::{message_from, seq_i64};
use crate::event::Event;
use crate::store::{Job, Outcome, Outcomes, Record, Stored};

/// Jobs written in one transaction at most.
pub(super) const MAX_BATCH: usize = 4096;

/// How the writer groups messages into commits.
///
/// Every commit costs an `fsync` (on a virtual disk, a trip to the host) and two wake-ups
/// of the writer, whatever it carries, and only acknowledgements wait for it: the fan-out
/// does not. So under load a transaction is held open to carry more. At 5 ms, a room of
/// 1,000 members at 1,000 messages/s paid 200 commits a second, and the writer's CPU, its
/// context switches and the virtual disk's interrupts measurably cost the fan-out's p99 on
/// two cores; at 20 ms it pays 50, each acknowledgement waiting at most 20 ms longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupCommit {
    /// A transaction opened within this long of the previous commit stays open until it
    /// has passed, taking what arrives meanwhile. After a quiet moment the first message
    /// is committed at once.
    pub(crate) interval: Duration,
    /// A transaction that holds this many messages commits at once, whatever the
    /// interval: set to a client's `--max-unsettled`, so that a client stopped for having
    /// as many messages waiting for the disk as it may never waits for the interval too.
    /// At most [`MAX_BATCH`].
    pub(crate) batch: usize,
}

/// The shipped values, for the store's own tests; the server takes its from `Config`.
#[cfg(test)]
impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(20),
            batch: 256,
        }
    }
}

impl GroupCommit {
    /// The batch, between 1 and [`MAX_BATCH`].
    pub(crate) fn batch(self) -> usize {
        self.batch.clamp(1, MAX_BATCH)
    }
}

/// How far past a room's newest written message its `seq` is reserved on disk.
///
/// A message is shown before its commit only if its `seq` is below a committed
/// reservation. A crash loses the uncommitted messages, and the room then resumes at the
/// reservation, so a `seq` that a member may have seen is never given to another message.
/// Each commit renews the reservation of the rooms it wrote, and a batch holds at most
/// [`MAX_BATCH`] messages, so under load every message is covered. A clean stop writes back
/// the exact next `seq`: only a crash leaves a gap.
pub(super) const SEQ_RESERVE: u64 = 1 << 16;

pub(super) enum WriterMsg<C> {
    Job(Job<C>),
    Stop,
}

/// How posting threads wake the writer, which otherwise sleeps until its next commit.
///
/// Waking a sleeping thread costs the waker a system call and the machine a context switch;
/// per message, in a busy room, that is real CPU taken from the fan-out. So the writer is
/// woken only when it must act before its commit: when it is idle (the first message after
/// a quiet moment is committed at once), for a job it must place (a client's id, checked
/// against the database before the room may show it), or when the messages not yet durable
/// fill a batch (see [`GroupCommit::batch`]).
#[derive(Debug, Clone)]
pub(super) struct Wake {
    pub(super) thread: std::thread::Thread,
    /// The writer has no transaction open and is going to sleep, or sleeping.
    pub(super) idle: Arc<AtomicBool>,
}

impl Wake {
    pub(super) fn after_send(&self, urgent: bool) {
        // Pairs with the writer's `idle` store before its last look at the queue: either it
        // sees this job, or this sees it idle.
        std::sync::atomic::fence(Ordering::SeqCst);
        if urgent || self.idle.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// A job written in the open transaction.
struct Written<C> {
    job: Job<C>,
    outcome: Stored,
    /// Reported placed already (before the commit).
    placed: bool,
}

/// The writer thread's state: one transaction at a time, filled as jobs arrive.
struct Writer<'a, C> {
    conn: Connection,
    outcomes: &'a Outcomes<C>,
    unsaved: &'a AtomicUsize,
    /// Commit durations, batch sizes and the store's health, for the admin listener.
    ops: &'a crate::ops::StoreOps,
    commit: GroupCommit,
    /// When the open transaction commits; `None` when none is open.
    commit_at: Option<Instant>,
    last_commit: Instant,
    written: Vec<Written<C>>,
    /// Placed since the last report.
    placed: Vec<Outcome<C>>,
    /// Per room, one past the highest `seq` in the open transaction.
    batch_next: HashMap<String, u64>,
    /// Per room, the committed reservation: every `seq` below it may have been seen.
    reserved: HashMap<String, u64>,
    /// Per room, one past the highest `seq` written in this run (written back at a stop).
    run_next: HashMap<String, u64>,
}

impl<'a, C: Clone> Writer<'a, C> {
    fn new(
        conn: Connection,
        outcomes: &'a Outcomes<C>,
        unsaved: &'a AtomicUsize,
        ops: &'a crate::ops::StoreOps,
        commit: GroupCommit,
    ) -> Self {
        Self {
            conn,
            outcomes,
            unsaved,
            ops,
            commit,
            commit_at: None,
            last_commit: Instant::now()
                .checked_sub(commit.interval)
                .unwrap_or_else(Instant::now),
            written: Vec::new(),
            placed: Vec::new(),
            batch_next: HashMap::new(),
            reserved: HashMap::new(),
            run_next: HashMap::new(),
        }
    }

    fn report(&self, batch: Vec<Outcome<C>>) {
        if !batch.is_empty() && self.outcomes.send(batch).is_err() {
            // Nobody listens any more (the server is stopping): nothing left to tell.
            warn!("store outcomes dropped: their receiver is gone");
        }
    }

    /// Writes one job into the open transaction (opening one if needed).
    fn write(&mut self, job: Job<C>) {
        if self.commit_at.is_none() {
            if let Err(e) = self.conn.execute_batch("BEGIN") {
                self.fail_all(vec![job], &e);
                return;
            }
            // Group commit: a transaction opened within the interval of the last commit
            // waits for it to pass, gathering what arrives meanwhile; after a quiet moment
            // the first message is committed at once.
            self.commit_at = Some(self.last_commit + self.commit.interval);
        }
        match self.insert(&job.record) {
            Ok(outcome) => {
                let mut place_now = false;
                if let ServerMsg::Message(m) = &job.record.event().msg {
                    // Even a refused message used its seq: it is never handed out again.
                    let next = self.batch_next.entry(m.room.clone()).or_default();
                    *next = (*next).max(m.seq + 1);
                    // Placed now if its seq is already reserved on disk, else at the commit.
                    place_now = job.place
                        && matches!(outcome, Stored::New { .. })
                        && self.reserved.get(&m.room).is_some_and(|&r| m.seq < r);
                }
                if place_now {
                    self.placed.push(Outcome::Placed(job.ctx.clone()));
                }
                self.written.push(Written {
                    job,
                    outcome,
                    placed: place_now,
                });
            }
            Err(e) => {
                // The transaction may be gone with the error: fail the whole batch.
                self.abort(job, &e);
            }
        }
    }

    fn insert(&self, record: &Record) -> rusqlite::Result<Stored> {
        match (record, &record.event().msg) {
            (Record::Message(ev), ServerMsg::Message(m)) => {
                let n = self
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO messages
                             (room, seq, id, sender, text, ts, action, event, file, account)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        m.room,
                        seq_i64(m.seq),
                        m.id.as_bytes(),
                        m.from,
                        m.text,
                        m.ts,
                        m.action,
                        m.event.as_ref().and_then(|e| serde_json::to_string(e).ok()),
                        m.file.as_ref().and_then(|f| serde_json::to_string(f).ok()),
                        m.account,
                    ])?;
                if n == 1 {
                    // `covered` is filled in at the commit.
                    Ok(Stored::New { covered: 0 })
                } else {
                    original_message(&self.conn, m.id, ev)
                }
            }
            (Record::Dm(ev), ServerMsg::Dm(d)) => {
                let n = self
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO dms (id, sender, recipient, text, ts, file, account)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        d.id.as_bytes(),
                        d.from,
                        d.to,
                        d.text,
                        d.ts,
                        d.file.as_ref().and_then(|f| serde_json::to_string(f).ok()),
                        d.account,
                    ])?;
                if n == 1 {
                    Ok(Stored::New { covered: 0 })
                } else {
                    original_dm(&self.conn, d.id, ev)
                }
            }
            // Records are built from message and DM events only.
            _ => Ok(Stored::Failed("not a message".into())),
        }
    }

    /// Reports what was written and covered since the last call.
    fn report_placed(&mut self) {
        let placed = std::mem::take(&mut self.placed);
        self.report(placed);
    }

    /// Whether the open transaction is due: its interval has passed or it holds a batch.
    fn due(&self) -> bool {
        self.commit_at
            .is_some_and(|at| Instant::now() >= at || self.written.len() >= self.commit.batch())
    }

    /// Renews the reservations of the rooms written, commits, and settles every job.
    fn commit(&mut self) {
        if self.commit_at.take().is_none() {
            return;
        }
        let batch_next = std::mem::take(&mut self.batch_next);
        let started = Instant::now();
        let result = (|| -> rusqlite::Result<()> {
            let mut reserve = self.conn.prepare_cached(
                "INSERT INTO rooms (name, next_seq) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
            )?;
            for (room, next) in &batch_next {
                reserve.execute(params![room, seq_i64(next + SEQ_RESERVE)])?;
            }
            drop(reserve);
            self.conn.execute_batch("COMMIT")
        })();
        self.last_commit = Instant::now();
        let mut written = std::mem::take(&mut self.written);
        let counters = &self.ops.counters;
        counters
            .commit_seconds
            .observe((self.last_commit - started).as_secs_f64());
        counters.batch_messages.observe(written.len() as f64);
        self.ops
            .health
            .failing
            .store(result.is_err(), Ordering::Release);
        match result {
            Ok(()) => {
                for (room, &next) in &batch_next {
                    self.reserved.insert(room.clone(), next + SEQ_RESERVE);
                }
                self.handed_out(batch_next);
                for w in &mut written {
                    if let (Stored::New { covered }, ServerMsg::Message(m)) =
                        (&mut w.outcome, &w.job.record.event().msg)
                    {
                        *covered = self.reserved.get(&m.room).copied().unwrap_or(0);
                    }
                }
                self.settle(written);
            }
            Err(e) => {
                self.rollback();
                self.handed_out(batch_next);
                self.fail_all(written.into_iter().map(|w| w.job).collect(), &e);
            }
        }
    }

    /// Records the seqs a transaction used, committed or not: some may have been shown,
    /// so the exact next seq written back at a stop must be past them.
    fn handed_out(&mut self, batch_next: HashMap<String, u64>) {
        for (room, next) in batch_next {
            let run = self.run_next.entry(room).or_default();
            *run = (*run).max(next);
        }
    }

    /// A write failed: the transaction and everything in it is lost.
    fn abort(&mut self, job: Job<C>, e: &rusqlite::Error) {
        self.rollback();
        self.commit_at = None;
        let batch_next = std::mem::take(&mut self.batch_next);
        self.handed_out(batch_next);
        // Written jobs already placed stay placed: their seq was covered.
        self.report_placed();
        let mut jobs: Vec<Job<C>> = std::mem::take(&mut self.written)
            .into_iter()
            .map(|w| w.job)
            .collect();
        jobs.push(job);
        self.fail_all(jobs, e);
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            error!(error = %e, "could not roll back");
        }
    }

    /// Settles `jobs` as failed; those not placed yet never will be.
    fn fail_all(&mut self, jobs: Vec<Job<C>>, e: &rusqlite::Error) {
        error!(error = %e, messages = jobs.len(), "could not store messages");
        self.ops.health.failing.store(true, Ordering::Release);
        let failed = jobs
            .into_iter()
            .map(|job| Written {
                job,
                outcome: Stored::Failed(e.to_string()),
                // Nothing is placed after a failure.
                placed: true,
            })
            .collect();
        self.settle(failed);
    }

    /// Reports `written` settled, in order. A job that asked to be placed and was not
    /// covered when written is placed now, just before it settles.
    fn settle(&mut self, written: Vec<Written<C>>) {
        if written.is_empty() {
            return;
        }
        self.unsaved.fetch_sub(written.len(), Ordering::Relaxed);
        let mut batch = Vec::with_capacity(written.len());
        for w in written {
            if w.job.place && !w.placed && matches!(w.outcome, Stored::New { .. }) {
                batch.push(Outcome::Placed(w.job.ctx.clone()));
            }
            batch.push(Outcome::Settled(w.job.ctx, w.outcome));
        }
        self.report(batch);
    }

    /// At a clean stop: each room written in this run resumes exactly after its newest
    /// message, not at its reservation.
    fn write_back_seqs(&self) {
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            for (room, next) in &self.run_next {
                tx.execute(
                    "UPDATE rooms SET next_seq = ?2 WHERE name = ?1",
                    params![room, seq_i64(*next)],
                )?;
            }
            tx.commit()
        })();
        if let Err(e) = result {
            // Harmless: the rooms resume at their reservations, skipping some numbers.
            warn!(error = %e, "could not write back the rooms' next seq");
        }
    }
}

/// What the writer thread is given besides its connection and channel.
pub(super) struct WriterSetup<'a, C> {
    pub(super) unsaved: &'a AtomicUsize,
    pub(super) commit: GroupCommit,
    pub(super) retention: Retention,
    pub(super) outcomes: &'a Outcomes<C>,
    pub(super) idle: &'a AtomicBool,
    pub(super) ops: &'a crate::ops::StoreOps,
}

/// The writer thread: writes jobs into an open transaction, reports what is covered as
/// placed, commits in groups and settles; prunes between transactions. It sleeps until its
/// next commit (or prune) unless woken (see [`Wake`]).
pub(super) fn write_loop<C: Clone>(
    conn: Connection,
    rx: &Receiver<WriterMsg<C>>,
    setup: WriterSetup<'_, C>,
) {
    let WriterSetup {
        unsaved,
        commit,
        retention,
        outcomes,
        idle,
        ops,
    } = setup;
    let mut w = Writer::new(conn, outcomes, unsaved, ops, commit);
    let mut next_prune = Instant::now() + retention.interval;
    loop {
        let mut first = take(rx);
        if first.is_none() {
            let recent = w.last_commit + commit.interval;
            match w.commit_at {
                // Just committed: whatever arrives before `recent` would wait for it anyway,
                // so nothing but an urgent job needs to wake the writer until then.
                None if Instant::now() < recent => {
                    std::thread::park_timeout(recent.saturating_duration_since(Instant::now()));
                    first = take(rx);
                }
                None => {
                    idle.store(true, Ordering::SeqCst);
                    std::sync::atomic::fence(Ordering::SeqCst);
                    // The last look before sleeping: a job sent from here on wakes us.
                    first = take(rx);
                    if first.is_none() {
                        std::thread::park_timeout(
                            next_prune.saturating_duration_since(Instant::now()),
                        );
                        first = take(rx);
                    }
                    idle.store(false, Ordering::SeqCst);
                }
                Some(at) => {
                    std::thread::park_timeout(at.saturating_duration_since(Instant::now()));
                    first = take(rx);
                }
            }
        }
        let mut stop = false;
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                WriterMsg::Job(job) => w.write(job),
                WriterMsg::Stop => {
                    stop = true;
                    break;
                }
            }
            if w.written.len() >= commit.batch() {
                break;
            }
            next = take(rx);
        }
        w.report_placed();
        if stop || w.due() {
            w.commit();
        }
        if stop {
            w.write_back_seqs();
            return;
        }
        if w.commit_at.is_none() && Instant::now() >= next_prune {
            prune(&w.conn, retention);
            next_prune = Instant::now() + retention.interval;
        }
    }
}

/// The next message without waiting; a stop once every sender is gone.
fn take<C>(rx: &Receiver<WriterMsg<C>>) -> Option<WriterMsg<C>> {
    match rx.try_recv() {
        Ok(msg) => Some(msg),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(WriterMsg::Stop),
    }
}

fn original_message(tx: &Connection, id: Uuid, resent: &Event) -> rusqlite::Result<Stored> {
    let original = tx
        .query_row(
            "SELECT room, seq, id, sender, text, ts, action, event, file, account FROM messages WHERE id = ?1",
            [id.as_bytes()],
            message_from,
        )
        .optional()?;
    Ok(match original {
        Some(m) => Stored::Duplicate(Arc::new(Event::new(ServerMsg::Message(m), resent.origin))),
        // The insert conflicted on (room, seq), not on the id: a bug, not a resend.
        None => Stored::Failed("sequence number already in use".into()),
    })
}

fn original_dm(tx: &Connection, id: Uuid, resent: &Event) -> rusqlite::Result<Stored> {
    let original = tx
        .query_row(
            "SELECT sender, recipient, text, ts, file, account FROM dms WHERE id = ?1",
            [id.as_bytes()],
            |r| {
                Ok(DirectMessage {
                    id,
                    from: r.get(0)?,
                    to: r.get(1)?,
                    text: r.get(2)?,
                    ts: r.get(3)?,
                    file: r
                        .get::<_, Option<String>>(4)?
                        .and_then(|f| serde_json::from_str(&f).ok()),
                    account: r.get(5)?,
                })
            },
        )
        .optional()?;
    Ok(match original {
        Some(d) => Stored::Duplicate(Arc::new(Event::new(ServerMsg::Dm(d), resent.origin))),
        None => Stored::Failed("DM id conflict".into()),
    })
}
