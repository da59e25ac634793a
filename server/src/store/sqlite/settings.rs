//! Moderation's documents in SQLite: the `settings` table, on a connection of its own (as
//! accounts have), so their rare writes never wait behind a group commit.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts::retrying;
use crate::store::SettingsStore;

#[derive(Debug)]
pub(crate) struct SqliteSettings {
    conn: Mutex<Connection>,
}

impl SqliteSettings {
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            conn: Mutex::new(conn),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SettingsStore for SqliteSettings {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let conn = self.conn();
        Ok(retrying(|| {
            conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
        })?)
    }

    fn put(&self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let conn = self.conn();
        retrying(|| match value {
            Some(value) => conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            ),
            None => conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_replaced_whole_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = super::super::schema::open_connection(&path, None).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let s = SqliteSettings::new(conn);
        assert_eq!(s.get("room/a").unwrap(), None);
        s.put("room/a", Some("{\"v\":1}")).unwrap();
        s.put("room/a", Some("{\"v\":2}")).unwrap();
        assert_eq!(s.get("room/a").unwrap().as_deref(), Some("{\"v\":2}"));
        s.put("room/a", None).unwrap();
        assert_eq!(s.get("room/a").unwrap(), None);
    }
}
