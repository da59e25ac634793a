//! History in SQLite: one writer thread doing group commit, one connection for reads.
//!
//! Layout:
//! - [`SqliteStore`]: opening the database, reads, and handing jobs to the writer.
//! - `schema`: migrations and connection setup.
//! - `writer`: the writer thread (group commit, seq reservations, outcomes).
//! - `retention`: pruning by age and per room.

mod accounts;
mod retention;
mod schema;
pub(crate) mod settings;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::Context;
use chat_shared::{ChatMessage, ServerMsg};
use fastbloom::AtomicBloomFilter;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tracing::{error, info, warn};
use uuid::Uuid;

pub(crate) use accounts::SqliteAccounts;
pub(crate) use retention::Retention;
pub(crate) use writer::GroupCommit;
use writer::{Wake, WriterMsg, WriterSetup, write_loop};

use super::{Busy, Job, Outcomes, Range, RoomLoad, Store};

/// The filter of stored ids is sized for twice the ids stored at start, and at least this
/// many (1.2 MB at [`KNOWN_FALSE_POS`]). Past its size it answers "maybe" more often: only
/// slower (those messages wait for the writer's check), never wrong.
const MIN_KNOWN_IDS: usize = 1 << 20;

/// How often the filter of stored ids says "maybe" for an id it never saw.
const KNOWN_FALSE_POS: f64 = 0.01;

pub(crate) struct SqliteStore<C> {
    jobs: Sender<WriterMsg<C>>,
    /// Every id stored or on its way, as a filter that can say "certainly not" (see
    /// [`Store::may_have`]): without it, every message with a client's id would wait for
    /// the writer to look it up before its room may see it.
    known: AtomicBloomFilter,
    reader: Mutex<Connection>,
    /// Appended and not yet durable.
    unsaved: Arc<AtomicUsize>,
    max_unsaved: usize,
    /// Unsaved messages that wake the writer to commit before its interval.
    commit_batch: usize,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the writer (see [`Wake`]).
    wake: Wake,
    /// Where the database is, for the accounts' own connection.
    path: std::path::PathBuf,
    memory_uri: Option<String>,
}

impl<C> std::fmt::Debug for SqliteStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("unsaved", &self.unsaved)
            .finish_non_exhaustive()
    }
}

impl<C: Clone + Send + 'static> SqliteStore<C> {
    /// Opens (creating if needed, with its folder) the database at `path`, or an SQLite
    /// database in memory for `:memory:`, and starts the writer, which reports to
    /// `outcomes`.
    ///
    /// # Errors
    /// The folder cannot be created, the database cannot be opened or migrated.
    #[cfg(test)]
    pub(crate) fn open(
        path: &Path,
        max_unsaved: usize,
        retention: Retention,
        outcomes: Outcomes<C>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::open_with_ops(
            path,
            max_unsaved,
            GroupCommit::default(),
            retention,
            outcomes,
            crate::ops::StoreOps::default(),
        )
    }

    /// [`SqliteStore::open`], reporting commits and health to `ops`.
    ///
    /// # Errors
    /// As for [`SqliteStore::open`].
    pub(crate) fn open_with_ops(
        path: &Path,
        max_unsaved: usize,
        commit: GroupCommit,
        retention: Retention,
        outcomes: Outcomes<C>,
        ops: crate::ops::StoreOps,
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
        let mut writer = schema::open_connection(path, memory_uri.as_deref())
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        if memory_uri.is_none() {
            let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                warn!(%mode, "the database refused WAL mode");
            }
        }
        // A commit returns once it is on disk: the durability promise rests on this.
        writer.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut writer)?;
        let known = known_ids(&writer).context("cannot read the stored ids")?;
        let reader = schema::open_connection(path, memory_uri.as_deref())?;
        let unsaved = Arc::new(AtomicUsize::new(0));
        let _ = ops.health.unsaved.set(Arc::clone(&unsaved));
        let (jobs, rx) = channel();
        let counter = Arc::clone(&unsaved);
        let idle = Arc::new(AtomicBool::new(false));
        let writer_idle = Arc::clone(&idle);
        let handle = std::thread::Builder::new()
            .name("chat-store-writer".into())
            .spawn(move || {
                // Marks the writer gone however it ends, a panic included.
                struct Gone(Arc<crate::ops::StoreHealth>);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        self.0.writer_gone.store(true, Ordering::Release);
                    }
                }
                let _gone = Gone(Arc::clone(&ops.health));
                write_loop(
                    writer,
                    &rx,
                    WriterSetup {
                        unsaved: &counter,
                        commit,
                        retention,
                        outcomes: &outcomes,
                        idle: &writer_idle,
                        ops: &ops,
                    },
                );
            })
            .context("cannot start the database writer")?;
        let wake = Wake {
            thread: handle.thread().clone(),
            idle,
        };
        info!(path = %path.display(), "history stored in SQLite");
        Ok(Arc::new(Self {
            jobs,
            known,
            reader: Mutex::new(reader),
            unsaved,
            max_unsaved,
            commit_batch: commit.batch(),
            writer: Mutex::new(Some(handle)),
            wake,
            path: path.to_path_buf(),
            memory_uri,
        }))
    }
}

impl<C> SqliteStore<C> {
    /// The registered accounts, on a connection of their own to the same database.
    ///
    /// # Errors
    /// The database cannot be opened again.
    pub(crate) fn accounts(&self) -> anyhow::Result<SqliteAccounts> {
        let conn = schema::open_connection(&self.path, self.memory_uri.as_deref())
            .context("cannot open the database for accounts")?;
        Ok(SqliteAccounts::new(conn))
    }

    /// Moderation's documents, on a connection of their own to the same database.
    ///
    /// # Errors
    /// The database cannot be opened again.
    pub(crate) fn settings(&self) -> anyhow::Result<settings::SqliteSettings> {
        let conn = schema::open_connection(&self.path, self.memory_uri.as_deref())
            .context("cannot open the database for settings")?;
        Ok(settings::SqliteSettings::new(conn))
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every stored id, in a filter sized for twice as many (see [`MIN_KNOWN_IDS`]). One scan
/// of the ids at start (0.6 s for 2 million messages, measured).
fn known_ids(conn: &Connection) -> rusqlite::Result<AtomicBloomFilter> {
    let stored: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM dms)",
        [],
        |r| r.get(0),
    )?;
    let expected = usize::try_from(stored)
        .unwrap_or(usize::MAX)
        .saturating_mul(2)
        .max(MIN_KNOWN_IDS);
    let known = AtomicBloomFilter::with_false_pos(KNOWN_FALSE_POS).expected_items(expected);
    let mut ids = conn.prepare("SELECT id FROM messages UNION ALL SELECT id FROM dms")?;
    let mut rows = ids.query([])?;
    while let Some(row) = rows.next()? {
        if let Ok(id) = Uuid::from_slice(row.get_ref(0)?.as_blob()?) {
            known.insert(&id);
        }
    }
    Ok(known)
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
        account: row.get(9)?,
        // Written by this server from a `RoomNotice`; one it cannot read (a newer server's)
        // still shows as its text.
        event: row
            .get::<_, Option<String>>(7)?
            .and_then(|e| serde_json::from_str(&e).ok()),
        file: row
            .get::<_, Option<String>>(8)?
            .and_then(|f| serde_json::from_str(&f).ok()),
    })
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl<C: Send + 'static> Store<C> for SqliteStore<C> {
    fn append(&self, job: Job<C>) -> Result<(), Busy> {
        let before = self.unsaved.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_unsaved {
            self.unsaved.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy);
        }
        // Once the writer's open transaction and its queue hold a batch (`unsaved` counts
        // both, and the batch being committed: then the wake only makes the writer look
        // once more when its commit returns), it commits without waiting for the interval.
        let urgent = job.place || before + 1 >= self.commit_batch;
        match &job.record.event().msg {
            ServerMsg::Message(m) => self.known.insert(&m.id),
            ServerMsg::Dm(d) => self.known.insert(&d.id),
            _ => false,
        };
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
            "SELECT room, seq, id, sender, text, ts, action, event, file, account FROM messages
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

    fn may_have(&self, id: &Uuid) -> bool {
        self.known.contains(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::{Outcome, Record, Stored};
    use chat_shared::ServerMsg;
    use std::time::Duration;
    use writer::SEQ_RESERVE;

    fn message(room: &str, seq: u64, id: Uuid, ts: i64) -> Arc<Event> {
        Arc::new(Event::new(
            ServerMsg::Message(ChatMessage {
                event: None,
                id,
                room: room.into(),
                seq,
                from: "a".into(),
                text: format!("m{seq}"),
                ts,
                action: false,
                file: None,
                account: false,
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

    type Rx = tokio::sync::mpsc::UnboundedReceiver<Vec<Outcome<u64>>>;

    fn open(path: &Path) -> (Arc<SqliteStore<u64>>, Rx) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (SqliteStore::open(path, 100, retention(), tx).unwrap(), rx)
    }

    /// Appends and waits for the outcome.
    fn store(s: &SqliteStore<u64>, rx: &mut Rx, record: Record) -> Stored {
        s.append(Job {
            record,
            place: false,
            ctx: 0,
        })
        .unwrap();
        match rx.blocking_recv().unwrap().pop() {
            Some(Outcome::Settled(_, stored)) => stored,
            other => panic!("not settled: {other:?}"),
        }
    }

    fn temp_db() -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("chat-store-{}", Uuid::new_v4()));
        let path = dir.join("chat.db");
        (dir, path)
    }

    /// The first message of a room in a run is placed at its commit; later ones, covered by
    /// the reservation that commit wrote, before theirs (reported in a batch of their own).
    /// Either way `Placed` comes before `Settled`.
    #[test]
    fn placement_comes_before_the_commit_once_a_reservation_covers_the_seq() {
        let (dir, path) = temp_db();
        let (s, mut rx) = open(&path);
        for seq in 1..=3u64 {
            s.append(Job {
                record: Record::Message(message("r", seq, Uuid::now_v7(), 1)),
                place: true,
                ctx: seq,
            })
            .unwrap();
            // One at a time, so each is its own transaction.
            let mut batches = Vec::new();
            while !batches
                .iter()
                .flatten()
                .any(|o: &String| o.starts_with("settled"))
            {
                let batch: Vec<String> = rx
                    .blocking_recv()
                    .unwrap()
                    .into_iter()
                    .map(|o| match o {
                        Outcome::Placed(n) => format!("placed {n}"),
                        Outcome::Settled(n, Stored::New { covered }) => {
                            assert_eq!(covered, seq + 1 + SEQ_RESERVE);
                            format!("settled {n}")
                        }
                        Outcome::Settled(n, other) => panic!("{n}: {other:?}"),
                    })
                    .collect();
                batches.push(batch);
            }
            let want: Vec<Vec<String>> = if seq == 1 {
                vec![vec!["placed 1".into(), "settled 1".into()]]
            } else {
                vec![
                    vec![format!("placed {seq}")],
                    vec![format!("settled {seq}")],
                ]
            };
            assert_eq!(batches, want, "message {seq}");
        }

        // While it runs, the room's seq is reserved well ahead: a crash now could not make
        // it hand out a seq someone may have seen.
        let (other, _other_rx) = open(&path);
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
            let (s, mut rx) = open(&path);
            for seq in 1..=3 {
                let id = if seq == 2 { id } else { Uuid::now_v7() };
                assert!(matches!(
                    store(&s, &mut rx, Record::Message(message("r", seq, id, 1))),
                    Stored::New { .. }
                ));
            }
            assert!(s.may_have(&id), "an appended id is known at once");
            s.close();
        }
        let (s, mut rx) = open(&path);
        // The filter of stored ids knows every one from before the restart, so a resend
        // waits for the writer's check; an id never stored is certainly new.
        assert!(s.may_have(&id), "a stored id is known after reopening");
        let fresh = Uuid::now_v7();
        assert!(!s.may_have(&fresh));
        let load = s.load_room("r", 2).unwrap();
        assert_eq!(load.next_seq, 4);
        assert_eq!(load.tail.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s.seq_of("r", id).unwrap(), Some(2));
        // A resend of a stored id gets the original back, under a new seq that is skipped.
        let Stored::Duplicate(original) =
            store(&s, &mut rx, Record::Message(message("r", 4, id, 9)))
        else {
            panic!("a stored id was stored again");
        };
        assert!(matches!(&original.msg, ServerMsg::Message(m) if m.seq == 2 && m.ts == 1));
        s.close();
        let (s, _rx) = open(&path);
        assert_eq!(s.load_room("r", 10).unwrap().next_seq, 5);
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn read_returns_the_newest_of_a_range_oldest_first_and_retention_prunes() {
        let (s, mut rx) = open(Path::new(":memory:"));
        for seq in 1..=10 {
            store(
                &s,
                &mut rx,
                Record::Message(message("r", seq, Uuid::now_v7(), 1)),
            );
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
        retention::prune(
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
        let (s, mut rx) = open(Path::new(":memory:"));
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
                &mut rx,
                Record::Message(message(room, seq, Uuid::now_v7(), now - age_days * day)),
            );
        }
        retention::prune(
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

    /// Settled messages waiting in `rx`, looking until `deadline` for `want` of them.
    fn settled_by(rx: &mut Rx, want: usize, deadline: std::time::Instant) -> usize {
        let mut settled = 0;
        while settled < want && std::time::Instant::now() < deadline {
            match rx.try_recv() {
                Ok(batch) => {
                    settled += batch
                        .iter()
                        .filter(|o| matches!(o, Outcome::Settled(..)))
                        .count();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        settled
    }

    /// Under load a transaction waits for the interval, unless it holds a batch: then it
    /// commits at once, so a client stopped at `--max-unsettled` never waits the interval.
    #[test]
    fn a_transaction_commits_at_its_interval_or_as_soon_as_it_holds_a_batch() {
        let (dir, path) = temp_db();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let commit = GroupCommit {
            interval: Duration::from_secs(30),
            batch: 4,
        };
        let s = SqliteStore::open_with_ops(
            &path,
            100,
            commit,
            retention(),
            tx,
            crate::ops::StoreOps::default(),
        )
        .unwrap();
        let append = |seq: u64| {
            s.append(Job {
                record: Record::Message(message("r", seq, Uuid::now_v7(), 1)),
                place: false,
                ctx: seq,
            })
            .unwrap();
        };
        let soon = || std::time::Instant::now() + Duration::from_secs(10);
        // After a quiet moment the first message is committed at once.
        append(1);
        assert_eq!(settled_by(&mut rx, 1, soon()), 1, "the first message");
        // The next ones, within the interval of that commit, wait for it...
        for seq in 2..=4 {
            append(seq);
        }
        let a_while = std::time::Instant::now() + Duration::from_millis(300);
        assert_eq!(
            settled_by(&mut rx, 3, a_while),
            0,
            "committed before the interval"
        );
        // ...until the transaction holds a batch.
        append(5);
        assert_eq!(settled_by(&mut rx, 4, soon()), 4, "a full batch waited");
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }
}
