//! The database's schema: numbered migrations applied in order at open, and how a
//! connection is opened. `PRAGMA user_version` records how far a database is.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tracing::info;

/// Schema migrations; entry `i` takes a database from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: registered nicks, keyed by their confusable skeleton (so a registered nick also
    // holds every look-alike of it), with the nick as registered and its Argon2id hash (a
    // PHC string: algorithm, parameters, salt and hash; never the password).
    "CREATE TABLE accounts (
         skeleton TEXT PRIMARY KEY,
         nick TEXT NOT NULL,
         hash TEXT NOT NULL,
         created INTEGER NOT NULL,
         changed INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 3: moderation. A room's moderation events (topic, kick, role, mode) are messages of
    // its stream with `event` set (the notice as JSON); everything else a room or the
    // server keeps of moderation (owner, roles, topic, modes, bans; server bans) is one
    // JSON document per key, written whole: rare writes, and the same shape a cluster's
    // key-value store takes.
    "ALTER TABLE messages ADD COLUMN event TEXT;
     CREATE TABLE settings (
         key TEXT PRIMARY KEY,
         value TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 4: a message or DM that shares a file keeps its `file` object (JSON); the file
    // itself, and its record, live in the files directory.
    "ALTER TABLE messages ADD COLUMN file TEXT;
     ALTER TABLE dms ADD COLUMN file TEXT;",
    // 5: whether the sender of a message or DM was logged in to its nick's account (IRC's
    // `account-tag`). A constant default costs SQLite no rewrite of the table; rows from
    // before read as a guest's.
    "ALTER TABLE messages ADD COLUMN account INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE dms ADD COLUMN account INTEGER NOT NULL DEFAULT 0;",
];

pub(super) fn open_connection(
    path: &Path,
    memory_uri: Option<&str>,
) -> rusqlite::Result<Connection> {
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

pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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
