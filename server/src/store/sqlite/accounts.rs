//! Registered accounts in SQLite: one connection of their own, beside the message writer.
//!
//! Account writes are rare and must not wait behind a group commit's batching, nor hold
//! it up: they go through this connection in their own short transactions (SQLite's
//! `busy_timeout` covers the few milliseconds the writer may hold the database on disk; an
//! in-memory database's shared cache answers "locked" at once instead, so writes retry).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use crate::now_ms;
use crate::store::{AccountStore, StoredAccount};

#[derive(Debug)]
pub(crate) struct SqliteAccounts {
    conn: Mutex<Connection>,
}

impl SqliteAccounts {
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            conn: Mutex::new(conn),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a write retries while the database is locked by the message writer.
const LOCKED_RETRY: Duration = Duration::from_secs(2);

/// Runs `f`, again while SQLite says the database is locked or busy, for [`LOCKED_RETRY`].
pub(super) fn retrying<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + LOCKED_RETRY;
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::DatabaseBusy
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

impl AccountStore for SqliteAccounts {
    fn load_all(&self) -> anyhow::Result<Vec<StoredAccount>> {
        let conn = self.conn();
        let mut stmt = retrying(|| conn.prepare("SELECT skeleton, nick, hash FROM accounts"))?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredAccount {
                skeleton: r.get(0)?,
                nick: r.get(1)?,
                hash: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn create(&self, account: &StoredAccount) -> anyhow::Result<bool> {
        let now = now_ms();
        let conn = self.conn();
        let n = retrying(|| {
            conn.execute(
                "INSERT OR IGNORE INTO accounts (skeleton, nick, hash, created, changed)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![account.skeleton, account.nick, account.hash, now],
            )
        })?;
        Ok(n == 1)
    }

    fn set_hash(&self, skeleton: &str, hash: &str) -> anyhow::Result<()> {
        let conn = self.conn();
        let n = retrying(|| {
            conn.execute(
                "UPDATE accounts SET hash = ?2, changed = ?3 WHERE skeleton = ?1",
                params![skeleton, hash, now_ms()],
            )
        })?;
        anyhow::ensure!(n == 1, "no account to change");
        Ok(())
    }
}
