//! Retention: deleting what is older than `--retain-days` or beyond `--retain-per-room`.
//! It runs on the writer's thread between transactions, so it never races a write.

use std::time::Duration;

use rusqlite::Connection;
use tracing::{info, warn};

/// What retention keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub(crate) days: Option<u32>,
    pub(crate) per_room: Option<u64>,
    pub(crate) interval: Duration,
}

/// Deletes what retention no longer keeps. Errors are logged: retention is retried on the
/// next round and never stands in the way of writes.
pub(super) fn prune(conn: &Connection, retention: Retention) {
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
