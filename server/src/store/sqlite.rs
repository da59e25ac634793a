//! History in SQLite: one writer thread doing group commit, one connection for reads.
//!
//! The writer keeps a transaction open for `COMMIT_EVERY` and commits it (WAL,
//! `synchronous=FULL`: the commit is on disk when it returns); then it runs the jobs' `done`
//! callbacks in order, which acknowledge them. A job the room must not broadcast before its
//! id is checked against everything stored wakes the writer, which writes it at once and
//! places it (the room broadcasts it) if its `seq` is covered by a reservation already on
//! disk; other jobs, already broadcast, are written at the commit, so the writer sleeps
//! between commits. Under load a commit carries hundreds of messages; idle, a message waits
//! only for its own commit. Retention runs on the same thread between transactions.
//!
//! Schema changes are numbered migrations, applied in order at open; `PRAGMA user_version`
//! records how far a database is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_shared::{ChatMessage, DirectMessage, ServerMsg};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{Busy, Job, Range, Record, RoomLoad, Store, Stored};
use crate::event::Event;

/// Jobs written in one transaction at most.
const MAX_BATCH: usize = 4096;

/// Group commit: a transaction opened within this long of the previous commit stays open
/// until it has passed, taking what arrives meanwhile. Under load a commit then carries many
/// messages, so the commit's cost (an `fsync`, mostly kernel time) per message stays small:
/// at 2 ms, a room of 1,000 members at 1,000 messages/s measurably lost latency to it on
/// two cores. After a quiet moment the first message is committed at once. Only
/// acknowledgements wait for it: the fan-out does not.
const COMMIT_EVERY: Duration = Duration::from_millis(5);

/// Schema migrations; entry `i` takes a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: rooms with their next seq (so seq is never reused, even after retention), room
    // messages keyed by (room, seq) with unique ids, DMs keyed by id. Messages have no index
    // on `ts`: it would cost every insert, and retention by age walks each room from its
    // oldest message instead (`ts` follows `seq` within a room).
    "CREATE TABLE rooms (
         name TEXT PRIMARY KEY,
         next_seq INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE messages (
         room TEXT NOT NULL,
         seq INTEGER NOT NULL,
         id BLOB NOT NULL UNIQUE,
         sender TEXT NOT NULL,
         text TEXT NOT NULL,
         ts INTEGER NOT NULL,
         action INTEGER NOT NULL,
         PRIMARY KEY (room, seq)
     ) WITHOUT ROWID;
     CREATE TABLE dms (
         id BLOB PRIMARY KEY,
         sender TEXT NOT NULL,
         recipient TEXT NOT NULL,
         text TEXT NOT NULL,
         ts INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX dms_ts ON dms (ts);",
];

/// What retention keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub(crate) days: Option<u32>,
    pub(crate) per_room: Option<u64>,
    pub(crate) interval: Duration,
}

enum WriterMsg {
    Job(Job),
    Stop,
}

#[derive(Debug)]
pub(crate) struct SqliteStore {
    jobs: Sender<WriterMsg>,
    reader: Mutex<Connection>,
    /// Appended and not yet durable.
    unsaved: Arc<AtomicUsize>,
    max_unsaved: usize,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the writer (see [`Wake`]).
    wake: Wake,
}

/// How posting threads wake the writer, which otherwise sleeps until its next commit.
///
/// Waking a sleeping thread costs the waker a system call and the machine a context switch;
/// per message, in a busy room, that is real CPU taken from the fan-out. So the writer is
/// woken only when it must act before its commit: when it is idle (the first message after
/// a quiet moment is committed at once), or for a job it must place (a client's id, checked
/// against the database before the room may see it).
#[derive(Debug, Clone)]
struct Wake {
    thread: std::thread::Thread,
    /// The writer has no transaction open and is going to sleep, or sleeping.
    idle: Arc<AtomicBool>,
}

impl Wake {
    fn after_send(&self, urgent: bool) {
        // Pairs with the writer's `idle` store before its last look at the queue: either it
        // sees this job, or this sees it idle.
        std::sync::atomic::fence(Ordering::SeqCst);
        if urgent || self.idle.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

impl std::fmt::Debug for WriterMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Job(_) => "Job",
            Self::Stop => "Stop",
        })
    }
}

fn open_connection(path: &Path, memory_uri: Option<&str>) -> rusqlite::Result<Connection> {
    let conn = match memory_uri {
        Some(uri) => Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI,
        )?,
        None => Connection::open(path)?,
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    loop {
        // IMMEDIATE takes the write lock before the version is read, so two servers opening
        // one new database cannot both decide to run the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "the database is at schema version {version}, newer than this server ({})",
                MIGRATIONS.len()
            );
        }
        let Some(sql) = MIGRATIONS.get(version) else {
            return Ok(());
        };
        tx.execute_batch(sql)
            .with_context(|| format!("migration to schema version {}", version + 1))?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(version + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
        info!(version = version + 1, "database schema migrated");
    }
}

impl SqliteStore {
    /// Opens (creating if needed, with its folder) the database at `path`, or an SQLite
    /// database in memory for `:memory:`, and starts the writer.
    ///
    /// # Errors
    /// The folder cannot be created, the database cannot be opened or migrated.
    pub(crate) fn open(
        path: &Path,
        max_unsaved: usize,
        retention: Retention,
    ) -> anyhow::Result<Arc<Self>> {
        // Both connections must see the same in-memory database: a shared-cache URI.
        let memory_uri = (path.as_os_str() == ":memory:")
            .then(|| format!("file:chat-{}?mode=memory&cache=shared", Uuid::new_v4()));
        if memory_uri.is_none()
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut writer = open_connection(path, memory_uri.as_deref())
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        if memory_uri.is_none() {
            let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                warn!(%mode, "the database refused WAL mode");
            }
        }
        // A commit returns once it is on disk: the durability promise rests on this.
        writer.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut writer)?;
        let reader = open_connection(path, memory_uri.as_deref())?;
        let unsaved = Arc::new(AtomicUsize::new(0));
        let (jobs, rx) = channel();
        let counter = Arc::clone(&unsaved);
        let release = Release::start();
        let idle = Arc::new(AtomicBool::new(false));
        let writer_idle = Arc::clone(&idle);
        let handle = std::thread::Builder::new()
            .name("chat-store-writer".into())
            .spawn(move || write_loop(writer, &rx, &counter, retention, &release, &writer_idle))
            .context("cannot start the database writer")?;
        let wake = Wake {
            thread: handle.thread().clone(),
            idle,
        };
        Ok(Arc::new(Self {
            jobs,
            reader: Mutex::new(reader),
            unsaved,
            max_unsaved,
            writer: Mutex::new(Some(handle)),
            wake,
        }))
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn message_from(row: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    let id: Vec<u8> = row.get(2)?;
    Ok(ChatMessage {
        room: row.get(0)?,
        seq: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
        id: Uuid::from_slice(&id).unwrap_or_default(),
        from: row.get(3)?,
        text: row.get(4)?,
        ts: row.get(5)?,
        action: row.get(6)?,
    })
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl Store for SqliteStore {
    fn append(&self, job: Job) -> Result<(), Busy> {
        if self.unsaved.fetch_add(1, Ordering::Relaxed) >= self.max_unsaved {
            self.unsaved.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy);
        }
        let urgent = job.placed.is_some();
        self.jobs.send(WriterMsg::Job(job)).map_err(|_| {
            // The writer has stopped (shutdown): nothing more can be made durable.
            self.unsaved.fetch_sub(1, Ordering::Relaxed);
            Busy
        })?;
        self.wake.after_send(urgent);
        Ok(())
    }

    fn load_room(&self, room: &str, limit: usize) -> anyhow::Result<RoomLoad> {
        let next_seq: Option<i64> = self
            .reader()
            .query_row("SELECT next_seq FROM rooms WHERE name = ?1", [room], |r| {
                r.get(0)
            })
            .optional()?;
        let tail = self.read(
            room,
            Range {
                after: 0,
                before: u64::MAX,
                limit,
            },
        )?;
        let next_seq = next_seq
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(1)
            .max(tail.last().map_or(1, |m| m.seq + 1));
        Ok(RoomLoad { next_seq, tail })
    }

    fn read(&self, room: &str, range: Range) -> anyhow::Result<Vec<ChatMessage>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT room, seq, id, sender, text, ts, action FROM messages
             WHERE room = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
        )?;
        let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
        let mut rows: Vec<ChatMessage> = stmt
            .query_map(
                params![room, seq_i64(range.after), seq_i64(range.before), limit],
                message_from,
            )?
            .collect::<rusqlite::Result<_>>()?;
        rows.reverse();
        Ok(rows)
    }

    fn seq_of(&self, room: &str, id: Uuid) -> anyhow::Result<Option<u64>> {
        let seq: Option<i64> = self
            .reader()
            .query_row(
                "SELECT seq FROM messages WHERE room = ?1 AND id = ?2",
                params![room, id.as_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()))
    }

    fn close(&self) {
        // Err: the writer is already gone.
        let _ = self.jobs.send(WriterMsg::Stop);
        self.wake.after_send(true);
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            error!("the database writer panicked");
        }
    }
}

/// What the writer hands back to the async side, in the order it happened.
enum Released {
    /// Written as new, their `seq` covered: broadcast them.
    Placed(Vec<Box<dyn FnOnce() + Send>>),
    /// Committed (or failed): acknowledge them. A job still holding its `placed` was not
    /// covered by a reservation when written; it is placed now, just before its `done`.
    Settled(Vec<(Job, Stored)>),
}

impl Released {
    fn run(self) {
        match self {
            Self::Placed(placed) => placed.into_iter().for_each(|placed| placed()),
            Self::Settled(jobs) => {
                for (mut job, outcome) in jobs {
                    if let (Some(placed), Stored::New { .. }) = (job.placed.take(), &outcome) {
                        placed();
                    }
                    (job.done)(outcome);
                }
            }
        }
    }
}

/// Where the writer's callbacks run.
///
/// A callback broadcasts a message or wakes its sender. Waking tasks from outside the async
/// runtime costs a cross-thread wake-up each; from a task on the runtime it is a push onto a
/// run queue. So the writer hands each group of callbacks to one release task (one wake-up
/// per group), which runs them in order. Without a runtime (unit tests), they run on the
/// writer.
enum Release {
    Task(tokio::sync::mpsc::UnboundedSender<Released>),
    Inline,
}

impl Release {
    fn start() -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::Inline;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Released>();
        runtime.spawn(async move {
            while let Some(released) = rx.recv().await {
                released.run();
            }
        });
        Self::Task(tx)
    }

    fn run(&self, released: Released) {
        let released = match self {
            Self::Task(tx) => match tx.send(released) {
                Ok(()) => return,
                // The runtime is gone (shutdown): run them here rather than lose them.
                Err(e) => e.0,
            },
            Self::Inline => released,
        };
        released.run();
    }
}

/// How far past a room's newest written message its `seq` is reserved on disk.
///
/// A message is broadcast before its commit only if its `seq` is below a committed
/// reservation. A crash loses the uncommitted messages, and the room then resumes at the
/// reservation, so a `seq` that a member may have seen is never given to another message.
/// Each commit renews the reservation of the rooms it wrote, and a batch holds at most
/// [`MAX_BATCH`] messages, so under load every message is covered. A clean stop writes back
/// the exact next `seq`: only a crash leaves a gap.
const SEQ_RESERVE: u64 = 1 << 16;

/// The writer thread's state: one transaction at a time, filled as jobs arrive.
struct Writer<'a> {
    conn: Connection,
    release: &'a Release,
    unsaved: &'a AtomicUsize,
    /// When the open transaction commits; `None` when none is open.
    commit_at: Option<Instant>,
    last_commit: Instant,
    /// Written in the open transaction, with what became of each.
    written: Vec<(Job, Stored)>,
    /// Written and covered, to be broadcast now.
    placed: Vec<Box<dyn FnOnce() + Send>>,
    /// Per room, one past the highest `seq` in the open transaction.
    batch_next: HashMap<String, u64>,
    /// Per room, the committed reservation: every `seq` below it may have been seen.
    reserved: HashMap<String, u64>,
    /// Per room, one past the highest `seq` written in this run (written back at a stop).
    run_next: HashMap<String, u64>,
}

impl<'a> Writer<'a> {
    fn new(conn: Connection, release: &'a Release, unsaved: &'a AtomicUsize) -> Self {
        Self {
            conn,
            release,
            unsaved,
            commit_at: None,
            last_commit: Instant::now() - COMMIT_EVERY,
            written: Vec::new(),
            placed: Vec::new(),
            batch_next: HashMap::new(),
            reserved: HashMap::new(),
            run_next: HashMap::new(),
        }
    }

    /// Writes one job into the open transaction (opening one if needed).
    fn write(&mut self, mut job: Job) {
        if self.commit_at.is_none() {
            if let Err(e) = self.conn.execute_batch("BEGIN") {
                self.fail_all(vec![job], &e);
                return;
            }
            // Group commit: a transaction opened within COMMIT_EVERY of the last commit waits
            // for it to pass, gathering what arrives meanwhile; after a quiet moment the
            // first message is committed at once.
            self.commit_at = Some(self.last_commit + COMMIT_EVERY);
        }
        match self.insert(&job) {
            Ok(outcome) => {
                let mut place_now = false;
                if let ServerMsg::Message(m) = &job.record.event().msg {
                    // Even a refused message used its seq: it is never handed out again.
                    let next = self.batch_next.entry(m.room.clone()).or_default();
                    *next = (*next).max(m.seq + 1);
                    // Placed now if its seq is already reserved on disk, else at the commit.
                    place_now = matches!(outcome, Stored::New { .. })
                        && self.reserved.get(&m.room).is_some_and(|&r| m.seq < r);
                }
                if place_now && let Some(placed) = job.placed.take() {
                    self.placed.push(placed);
                }
                self.written.push((job, outcome));
            }
            Err(e) => {
                // The transaction may be gone with the error: fail the whole batch.
                self.abort(job, &e);
            }
        }
    }

    fn insert(&self, job: &Job) -> rusqlite::Result<Stored> {
        match (&job.record, &job.record.event().msg) {
            (Record::Message(ev), ServerMsg::Message(m)) => {
                let n = self
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO messages (room, seq, id, sender, text, ts, action)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        m.room,
                        seq_i64(m.seq),
                        m.id.as_bytes(),
                        m.from,
                        m.text,
                        m.ts,
                        m.action
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
                        "INSERT OR IGNORE INTO dms (id, sender, recipient, text, ts)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![d.id.as_bytes(), d.from, d.to, d.text, d.ts])?;
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

    /// Broadcasts what was written and covered since the last call.
    fn release_placed(&mut self) {
        if !self.placed.is_empty() {
            self.release
                .run(Released::Placed(std::mem::take(&mut self.placed)));
        }
    }

    /// Whether the open transaction is due.
    fn due(&self) -> bool {
        self.commit_at
            .is_some_and(|at| Instant::now() >= at || self.written.len() >= MAX_BATCH)
    }

    /// Renews the reservations of the rooms written, commits, and settles every job.
    fn commit(&mut self) {
        if self.commit_at.take().is_none() {
            return;
        }
        let batch_next = std::mem::take(&mut self.batch_next);
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
        match result {
            Ok(()) => {
                for (room, &next) in &batch_next {
                    self.reserved.insert(room.clone(), next + SEQ_RESERVE);
                }
                self.handed_out(batch_next);
                for (job, outcome) in &mut written {
                    if let (Stored::New { covered }, ServerMsg::Message(m)) =
                        (outcome, &job.record.event().msg)
                    {
                        *covered = self.reserved.get(&m.room).copied().unwrap_or(0);
                    }
                }
                self.settle(written);
            }
            Err(e) => {
                self.rollback();
                self.handed_out(batch_next);
                self.fail_all(written.into_iter().map(|(job, _)| job).collect(), &e);
            }
        }
    }

    /// Records the seqs a transaction used, committed or not: some may have been broadcast,
    /// so the exact next seq written back at a stop must be past them.
    fn handed_out(&mut self, batch_next: HashMap<String, u64>) {
        for (room, next) in batch_next {
            let run = self.run_next.entry(room).or_default();
            *run = (*run).max(next);
        }
    }

    /// A write failed: the transaction and everything in it is lost.
    fn abort(&mut self, job: Job, e: &rusqlite::Error) {
        self.rollback();
        self.commit_at = None;
        let batch_next = std::mem::take(&mut self.batch_next);
        self.handed_out(batch_next);
        // Written jobs already placed stay placed: their seq was covered.
        self.release_placed();
        let mut jobs: Vec<Job> = std::mem::take(&mut self.written)
            .into_iter()
            .map(|(job, _)| job)
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

    /// Settles `jobs` as failed; those not placed yet never will be (see `Released::run`).
    fn fail_all(&mut self, jobs: Vec<Job>, e: &rusqlite::Error) {
        error!(error = %e, messages = jobs.len(), "could not store messages");
        let failed = jobs
            .into_iter()
            .map(|job| (job, Stored::Failed(e.to_string())))
            .collect();
        self.settle(failed);
    }

    fn settle(&mut self, jobs: Vec<(Job, Stored)>) {
        if jobs.is_empty() {
            return;
        }
        self.unsaved.fetch_sub(jobs.len(), Ordering::Relaxed);
        self.release.run(Released::Settled(jobs));
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

/// The writer thread: writes jobs into an open transaction, places what is covered, commits
/// in groups and settles; prunes between transactions. It sleeps until its next commit (or
/// prune) unless woken (see [`Wake`]).
fn write_loop(
    conn: Connection,
    rx: &Receiver<WriterMsg>,
    unsaved: &AtomicUsize,
    retention: Retention,
    release: &Release,
    idle: &AtomicBool,
) {
    let mut w = Writer::new(conn, release, unsaved);
    let mut next_prune = Instant::now() + retention.interval;
    loop {
        let mut first = take(rx);
        if first.is_none() {
            let recent = w.last_commit + COMMIT_EVERY;
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
            if w.written.len() >= MAX_BATCH {
                break;
            }
            next = take(rx);
        }
        w.release_placed();
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
fn take(rx: &Receiver<WriterMsg>) -> Option<WriterMsg> {
    match rx.try_recv() {
        Ok(msg) => Some(msg),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(WriterMsg::Stop),
    }
}

impl Record {
    fn event(&self) -> &Arc<Event> {
        match self {
            Self::Message(ev) | Self::Dm(ev) => ev,
        }
    }
}

fn original_message(tx: &Connection, id: Uuid, resent: &Event) -> rusqlite::Result<Stored> {
    let original = tx
        .query_row(
            "SELECT room, seq, id, sender, text, ts, action FROM messages WHERE id = ?1",
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
            "SELECT sender, recipient, text, ts FROM dms WHERE id = ?1",
            [id.as_bytes()],
            |r| {
                Ok(DirectMessage {
                    id,
                    from: r.get(0)?,
                    to: r.get(1)?,
                    text: r.get(2)?,
                    ts: r.get(3)?,
                })
            },
        )
        .optional()?;
    Ok(match original {
        Some(d) => Stored::Duplicate(Arc::new(Event::new(ServerMsg::Dm(d), resent.origin))),
        None => Stored::Failed("DM id conflict".into()),
    })
}

/// Deletes what retention no longer keeps. Errors are logged: retention is retried on the
/// next round and never stands in the way of writes.
fn prune(conn: &Connection, retention: Retention) {
    let result = (|| -> rusqlite::Result<usize> {
        let mut deleted = 0;
        if let Some(days) = retention.days {
            let cutoff = crate::now_ms() - i64::from(days) * 86_400_000;
            // Per room, everything before its first message young enough to keep: found by
            // walking from the oldest, so the cost follows what is deleted.
            deleted += conn.execute(
                "DELETE FROM messages WHERE seq < coalesce((
                     SELECT m2.seq FROM messages m2
                     WHERE m2.room = messages.room AND m2.ts >= ?1
                     ORDER BY m2.seq LIMIT 1), 9223372036854775807)",
                [cutoff],
            )?;
            deleted += conn.execute("DELETE FROM dms WHERE ts < ?1", [cutoff])?;
        }
        if let Some(keep) = retention.per_room {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            deleted += conn.execute(
                "DELETE FROM messages WHERE seq <= (
                     SELECT m2.seq FROM messages m2 WHERE m2.room = messages.room
                     ORDER BY m2.seq DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )?;
        }
        Ok(deleted)
    })();
    match result {
        Ok(0) => {}
        Ok(n) => info!(deleted = n, "retention pruned messages"),
        Err(e) => warn!(error = %e, "retention failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn message(room: &str, seq: u64, id: Uuid, ts: i64) -> Arc<Event> {
        Arc::new(Event::new(
            ServerMsg::Message(ChatMessage {
                id,
                room: room.into(),
                seq,
                from: "a".into(),
                text: format!("m{seq}"),
                ts,
                action: false,
            }),
            None,
        ))
    }

    fn retention() -> Retention {
        Retention {
            days: None,
            per_room: None,
            interval: Duration::from_secs(3600),
        }
    }

    /// Appends and waits for the outcome.
    fn store(s: &SqliteStore, record: Record) -> Stored {
        let (tx, rx) = mpsc::channel();
        s.append(Job {
            record,
            placed: None,
            done: Box::new(move |outcome| tx.send(outcome).unwrap()),
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn temp_db() -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("chat-store-{}", Uuid::new_v4()));
        let path = dir.join("chat.db");
        (dir, path)
    }

    /// The first message of a room in a run is placed at its commit; later ones, covered by
    /// the reservation that commit wrote, before theirs. Either way `placed` runs before
    /// `done`, and a reader that can see the message sees it only after `placed`.
    #[test]
    fn placement_comes_before_the_commit_once_a_reservation_covers_the_seq() {
        let (dir, path) = temp_db();
        let s = SqliteStore::open(&path, 100, retention()).unwrap();
        let (tx, rx) = mpsc::channel();
        for seq in 1..=3u64 {
            let id = Uuid::now_v7();
            let (placed_tx, done_tx) = (tx.clone(), tx.clone());
            let (placed_store, done_store) = (Arc::clone(&s), Arc::clone(&s));
            s.append(Job {
                record: Record::Message(message("r", seq, id, 1)),
                placed: Some(Box::new(move || {
                    let visible = placed_store.seq_of("r", id).unwrap().is_some();
                    placed_tx.send(("placed", seq, visible)).unwrap();
                })),
                done: Box::new(move |outcome| {
                    assert!(
                        matches!(outcome, Stored::New { covered } if covered == seq + 1 + SEQ_RESERVE)
                    );
                    let visible = done_store.seq_of("r", id).unwrap().is_some();
                    done_tx.send(("done", seq, visible)).unwrap();
                }),
            })
            .unwrap();
            // One at a time, so each is its own transaction.
            let events: Vec<_> = (0..2)
                .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
                .collect();
            let placed_before_commit = seq > 1;
            assert_eq!(
                events,
                [("placed", seq, !placed_before_commit), ("done", seq, true)],
                "message {seq}"
            );
        }

        // While it runs, the room's seq is reserved well ahead: a crash now could not make
        // it hand out a seq someone may have seen.
        let other = SqliteStore::open(&path, 100, retention()).unwrap();
        assert_eq!(other.load_room("r", 10).unwrap().next_seq, 4 + SEQ_RESERVE);
        // A clean stop writes back the exact next seq.
        s.close();
        assert_eq!(other.load_room("r", 10).unwrap().next_seq, 4);
        other.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn messages_survive_reopening_and_seq_continues() {
        let (dir, path) = temp_db();
        let id = Uuid::now_v7();
        {
            let s = SqliteStore::open(&path, 100, retention()).unwrap();
            for seq in 1..=3 {
                let id = if seq == 2 { id } else { Uuid::now_v7() };
                assert!(matches!(
                    store(&s, Record::Message(message("r", seq, id, 1))),
                    Stored::New { .. }
                ));
            }
            s.close();
        }
        let s = SqliteStore::open(&path, 100, retention()).unwrap();
        let load = s.load_room("r", 2).unwrap();
        assert_eq!(load.next_seq, 4);
        assert_eq!(load.tail.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s.seq_of("r", id).unwrap(), Some(2));
        // A resend of a stored id gets the original back, under a new seq that is skipped.
        let Stored::Duplicate(original) = store(&s, Record::Message(message("r", 4, id, 9))) else {
            panic!("a stored id was stored again");
        };
        assert!(matches!(&original.msg, ServerMsg::Message(m) if m.seq == 2 && m.ts == 1));
        s.close();
        let s = SqliteStore::open(&path, 100, retention()).unwrap();
        assert_eq!(s.load_room("r", 10).unwrap().next_seq, 5);
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn read_returns_the_newest_of_a_range_oldest_first_and_retention_prunes() {
        let s = SqliteStore::open(Path::new(":memory:"), 100, retention()).unwrap();
        for seq in 1..=10 {
            store(&s, Record::Message(message("r", seq, Uuid::now_v7(), 1)));
        }
        let page = s
            .read(
                "r",
                Range {
                    after: 2,
                    before: 9,
                    limit: 4,
                },
            )
            .unwrap();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6, 7, 8]);
        // Retention runs on the writer's thread; any connection to the database will do here.
        prune(
            &s.reader(),
            Retention {
                per_room: Some(3),
                ..retention()
            },
        );
        let all = s
            .read(
                "r",
                Range {
                    after: 0,
                    before: u64::MAX,
                    limit: 100,
                },
            )
            .unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [8, 9, 10]);
        s.close();
    }

    #[test]
    fn retention_by_age_keeps_each_rooms_young_messages() {
        let s = SqliteStore::open(Path::new(":memory:"), 100, retention()).unwrap();
        let now = crate::now_ms();
        let day = 86_400_000;
        for (room, seq, age_days) in [
            ("a", 1, 9),
            ("a", 2, 8),
            ("a", 3, 1),
            ("b", 1, 9),
            ("c", 1, 0),
        ] {
            store(
                &s,
                Record::Message(message(room, seq, Uuid::now_v7(), now - age_days * day)),
            );
        }
        prune(
            &s.reader(),
            Retention {
                days: Some(7),
                ..retention()
            },
        );
        let left = |room| {
            s.read(
                room,
                Range {
                    after: 0,
                    before: u64::MAX,
                    limit: 10,
                },
            )
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>()
        };
        assert_eq!(
            (left("a"), left("b"), left("c")),
            (vec![3], vec![], vec![1])
        );
        assert!(
            s.load_room("b", 10).unwrap().next_seq > 1,
            "seq is not reused"
        );
        s.close();
    }
}
