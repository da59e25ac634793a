//! History in SQLite: one writer thread doing group commit, one connection for reads.
//!
//! The writer takes every job waiting when it wakes, writes them in one transaction and
//! commits (WAL, `synchronous=FULL`: the commit is on disk when it returns), then runs their
//! callbacks in order. Under load a commit carries hundreds of messages; idle, a message
//! waits only for its own commit. Retention runs on the same thread between batches.
//!
//! Schema changes are numbered migrations, applied in order at open; `PRAGMA user_version`
//! records how far a database is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_shared::{ChatMessage, DirectMessage, ServerMsg};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{Busy, Job, Range, Record, RoomLoad, Store, Stored};
use crate::event::Event;

/// Jobs written in one transaction at most.
const MAX_BATCH: usize = 4096;

/// Group commit: a batch that starts within this long of the previous commit waits until
/// it has passed, gathering what arrives meanwhile. Under load a commit then carries many
/// messages, so the commit's own cost per message stays small; after a quiet moment the
/// first message is committed at once. It is also the most a message waits for company.
const COMMIT_EVERY: Duration = Duration::from_millis(1);

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
        let handle = std::thread::Builder::new()
            .name("chat-store-writer".into())
            .spawn(move || write_loop(writer, &rx, &counter, retention, &release))
            .context("cannot start the database writer")?;
        Ok(Arc::new(Self {
            jobs,
            reader: Mutex::new(reader),
            unsaved,
            max_unsaved,
            writer: Mutex::new(Some(handle)),
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
        self.jobs.send(WriterMsg::Job(job)).map_err(|_| {
            // The writer has stopped (shutdown): nothing more can be made durable.
            self.unsaved.fetch_sub(1, Ordering::Relaxed);
            Busy
        })
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
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            error!("the database writer panicked");
        }
    }
}

/// Where committed batches' callbacks run.
///
/// A callback releases its message: into the room's history and its broadcast, which wakes
/// every member's session. Waking tasks from outside the async runtime costs a cross-thread
/// wake-up each; from a task on the runtime it is a push onto a run queue. So the writer
/// hands each committed batch to one release task (one wake-up per batch), which runs the
/// callbacks in commit order. Without a runtime (unit tests), they run on the writer.
enum Release {
    Task(tokio::sync::mpsc::UnboundedSender<Vec<(Job, Stored)>>),
    Inline,
}

impl Release {
    fn start() -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::Inline;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(Job, Stored)>>();
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (job, outcome) in batch {
                    (job.done)(outcome);
                }
            }
        });
        Self::Task(tx)
    }

    fn run(&self, batch: Vec<(Job, Stored)>) {
        let batch = match self {
            Self::Task(tx) => match tx.send(batch) {
                Ok(()) => return,
                // The runtime is gone (shutdown): run them here rather than lose them.
                Err(e) => e.0,
            },
            Self::Inline => batch,
        };
        for (job, outcome) in batch {
            (job.done)(outcome);
        }
    }
}

/// The writer thread: batches, commits, calls back; prunes between batches.
fn write_loop(
    mut conn: Connection,
    rx: &Receiver<WriterMsg>,
    unsaved: &AtomicUsize,
    retention: Retention,
    release: &Release,
) {
    let mut next_prune = Instant::now() + retention.interval;
    let mut last_commit = Instant::now() - COMMIT_EVERY;
    loop {
        let wait = next_prune.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                prune(&conn, retention);
                next_prune = Instant::now() + retention.interval;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let gather_until = last_commit + COMMIT_EVERY;
        let mut batch = Vec::new();
        let mut stop = false;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                WriterMsg::Job(job) => batch.push(job),
                WriterMsg::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(_) => {
                    let left = gather_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        None
                    } else {
                        rx.recv_timeout(left).ok()
                    }
                }
            };
        }
        if !batch.is_empty() {
            let outcomes = match write_batch(&mut conn, &batch) {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    error!(error = %e, messages = batch.len(), "could not store messages");
                    batch
                        .iter()
                        .map(|_| Stored::Failed(e.to_string()))
                        .collect()
                }
            };
            last_commit = Instant::now();
            unsaved.fetch_sub(batch.len(), Ordering::Relaxed);
            release.run(batch.into_iter().zip(outcomes).collect());
        }
        if stop {
            return;
        }
        if Instant::now() >= next_prune {
            prune(&conn, retention);
            next_prune = Instant::now() + retention.interval;
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<Stored>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // Each room's next seq, written once per batch rather than once per message.
    let mut next_seqs: HashMap<&str, u64> = HashMap::new();
    {
        let mut insert_message = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (room, seq, id, sender, text, ts, action)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut insert_dm = tx.prepare_cached(
            "INSERT OR IGNORE INTO dms (id, sender, recipient, text, ts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut advance = tx.prepare_cached(
            "INSERT INTO rooms (name, next_seq) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
        )?;
        for job in batch {
            let outcome = match (&job.record, &job.record.event().msg) {
                (Record::Message(ev), ServerMsg::Message(m)) => {
                    let n = insert_message.execute(params![
                        m.room,
                        seq_i64(m.seq),
                        m.id.as_bytes(),
                        m.from,
                        m.text,
                        m.ts,
                        m.action
                    ])?;
                    // Even a refused message used its seq: it is never handed out again.
                    let next = next_seqs.entry(m.room.as_str()).or_default();
                    *next = (*next).max(m.seq + 1);
                    if n == 1 {
                        Stored::New
                    } else {
                        original_message(&tx, m.id, ev)?
                    }
                }
                (Record::Dm(ev), ServerMsg::Dm(d)) => {
                    let n =
                        insert_dm.execute(params![d.id.as_bytes(), d.from, d.to, d.text, d.ts])?;
                    if n == 1 {
                        Stored::New
                    } else {
                        original_dm(&tx, d.id, ev)?
                    }
                }
                // Records are built from message and DM events only.
                _ => Stored::Failed("not a message".into()),
            };
            outcomes.push(outcome);
        }
        for (room, next) in &next_seqs {
            advance.execute(params![room, seq_i64(*next)])?;
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

impl Record {
    fn event(&self) -> &Arc<Event> {
        match self {
            Self::Message(ev) | Self::Dm(ev) => ev,
        }
    }
}

fn original_message(tx: &Transaction<'_>, id: Uuid, resent: &Event) -> rusqlite::Result<Stored> {
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

fn original_dm(tx: &Transaction<'_>, id: Uuid, resent: &Event) -> rusqlite::Result<Stored> {
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
            done: Box::new(move |outcome| tx.send(outcome).unwrap()),
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn messages_survive_reopening_and_seq_continues() {
        let dir = std::env::temp_dir().join(format!("chat-store-{}", Uuid::new_v4()));
        let path = dir.join("chat.db");
        let id = Uuid::now_v7();
        {
            let s = SqliteStore::open(&path, 100, retention()).unwrap();
            for seq in 1..=3 {
                let id = if seq == 2 { id } else { Uuid::now_v7() };
                assert!(matches!(
                    store(&s, Record::Message(message("r", seq, id, 1))),
                    Stored::New
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
        assert_eq!(
            s.load_room("b", 10).unwrap().next_seq,
            2,
            "seq is not reused"
        );
        s.close();
    }
}
