//! The servers whose self-signed certificate the user has accepted: `HOST:PORT` → SHA-256
//! fingerprint, one per line, as ssh's `known_hosts` remembers host keys.
//!
//! The file is the user's: it is only ever appended to, never rewritten, so a line chat-tui
//! cannot read (edited by hand, or from a later version) is skipped and kept. Its path
//! comes from the command line or the environment only, never from anything a server
//! sends, and it holds nothing secret (a fingerprint is public), but no password either.
//!
//! Format: `HOST:PORT AA:BB:…` (the server's log format); `#` starts a comment line.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the file could not be read or written. Both name the file: that is what the user
/// has to look at.
#[derive(Debug, Error)]
pub enum KnownServersError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file (or its folder) cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The store, as loaded; [`KnownServers::add`] writes through to the file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    entries: Vec<(String, String)>,
    /// The file does not end with a newline (edited by hand): the next line needs one first.
    needs_newline: bool,
}

impl KnownServers {
    /// `$XDG_CONFIG_HOME/chat-tui/known_servers`, else `~/.config/chat-tui/known_servers`;
    /// `None` without either variable.
    pub fn default_path() -> Option<PathBuf> {
        let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
        let config = nonempty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(config.join("chat-tui").join("known_servers"))
    }

    /// Reads the file; a missing file is an empty store.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: &Path) -> Result<Self, KnownServersError> {
        match fs::read(path) {
            Ok(bytes) => Ok(Self::parse(path, &String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::parse(path, "")),
            Err(source) => Err(KnownServersError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The store for `text` (the file's content); lines that are not an entry are skipped.
    pub fn parse(path: &Path, text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (key, fp) = (fields.next()?, fields.next()?);
                let valid = !key.starts_with('#') && fields.next().is_none();
                let fp = normalize(fp).filter(|_| valid)?;
                Some((key.to_owned(), fp))
            })
            .collect();
        Self {
            path: path.to_owned(),
            entries,
            needs_newline: !text.is_empty() && !text.ends_with('\n'),
        }
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint remembered for `addr` (`HOST:PORT`); the first line wins.
    pub fn get(&self, addr: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key == addr)
            .map(|(_, fp)| fp.as_str())
    }

    /// Remembers `fingerprint` for `addr`, appending one line to the file (creating it and
    /// its folder if needed).
    ///
    /// # Errors
    /// The folder or file cannot be created or written. `addr` must be a key
    /// [`crate::endpoint::Endpoint::addr`] made (no whitespace) and `fingerprint` in
    /// `AA:BB:…` form; anything else is refused as `InvalidInput`, so the file never
    /// gets a line it could not read back.
    pub fn add(&mut self, addr: &str, fingerprint: &str) -> Result<(), KnownServersError> {
        let write_err = |source| KnownServersError::Write {
            path: self.path.clone(),
            source,
        };
        let fp = normalize(fingerprint)
            .filter(|_| !addr.is_empty() && !addr.contains(char::is_whitespace))
            .ok_or_else(|| write_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(write_err)?;
        let lead = if self.needs_newline { "\n" } else { "" };
        file.write_all(format!("{lead}{addr} {fp}\n").as_bytes())
            .map_err(write_err)?;
        self.needs_newline = false;
        self.entries.push((addr.to_owned(), fp));
        Ok(())
    }
}

/// A SHA-256 fingerprint in the server's `AA:BB:…` form (32 hex pairs), uppercased; `None`
/// for anything else.
fn normalize(fp: &str) -> Option<String> {
    let pairs: Vec<&str> = fp.split(':').collect();
    let valid = pairs.len() == 32
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then(|| fp.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: &str) -> String {
        vec![byte; 32].join(":")
    }

    #[test]
    fn add_then_match_and_mismatch_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/chat-tui/known_servers");
        let mut store = KnownServers::load(&path).unwrap();
        assert_eq!(store.get("127.0.0.1:7878"), None);
        store.add("127.0.0.1:7878", &fp("ab")).unwrap();
        store.add("[::1]:7878", &fp("01")).unwrap();

        let again = KnownServers::load(&path).unwrap();
        assert_eq!(again.get("127.0.0.1:7878"), Some(fp("AB").as_str()));
        assert_eq!(again.get("[::1]:7878"), Some(fp("01").as_str()));
        assert_ne!(again.get("127.0.0.1:7878"), Some(fp("CD").as_str()));
        assert_eq!(
            again.get("127.0.0.1:7879"),
            None,
            "the port is part of the key"
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("127.0.0.1:7878 {}\n[::1]:7878 {}\n", fp("AB"), fp("01"))
        );
    }

    #[test]
    fn garbage_lines_are_skipped_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let good = fp("0F");
        let garbage = format!(
            "# a comment {good}\n\
             \n\
             only-a-key\n\
             short:1 AA:BB\n\
             long:1 {good}:CC\n\
             extra:1 {good} more\n\
             nothex:1 {}\n\
             #commented:1 {good}\n\
             \u{202e}ünïcödé \u{0}\u{7f}\n\
             ok:1 {good}\n\
             ok:1 {}",
            fp("ZZ"),
            fp("11"),
        );
        fs::write(&path, garbage.as_bytes()).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0xff, 0xfe, b'\n'])
            .unwrap();
        let mut store = KnownServers::load(&path).unwrap();
        assert_eq!(store.entries, vec![("ok:1".to_owned(), good.clone())]);
        assert_eq!(
            store.get("ok:1"),
            Some(good.as_str()),
            "the first line wins"
        );
        assert_eq!(store.get("short:1"), None);
        assert_eq!(store.get("#commented:1"), None);

        store.add("new:2", &fp("22")).unwrap();
        let text = fs::read(&path).unwrap();
        assert!(text.starts_with(garbage.as_bytes()), "nothing is rewritten");
        assert_eq!(
            KnownServers::load(&path).unwrap().get("new:2"),
            Some(fp("22").as_str())
        );
    }

    #[test]
    fn a_line_without_its_newline_is_not_glued_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        fs::write(&path, format!("a:1 {}", fp("AA"))).unwrap();
        let mut store = KnownServers::load(&path).unwrap();
        store.add("b:2", &fp("BB")).unwrap();
        let store = KnownServers::load(&path).unwrap();
        assert_eq!(store.get("a:1"), Some(fp("AA").as_str()));
        assert_eq!(store.get("b:2"), Some(fp("BB").as_str()));
    }

    #[test]
    fn refuses_to_write_what_it_could_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let mut store = KnownServers::load(&path).unwrap();
        assert!(store.add("a b:1", &fp("AA")).is_err());
        assert!(store.add("", &fp("AA")).is_err());
        assert!(store.add("a:1", "AA:BB").is_err());
        assert!(!path.exists());
    }

    #[test]
    fn an_unreadable_store_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: exists, cannot be read as a file.
        let err = KnownServers::load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
