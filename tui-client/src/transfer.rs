//! File transfers as the app knows them: plain data and arithmetic, no IO, like
//! [`crate::app`]. The tasks that move the bytes ([`crate::tus`], [`crate::download`]) report
//! [`TransferEvent`]s; `update` folds them into [`Transfer`]s, and the view draws those.
//!
//! Layout:
//! - [`Transfer`], [`Direction`], [`Target`] and [`TransferState`]: one upload or download.
//! - [`TransferEvent`]: what a transfer task reports.
//! - [`UploadJob`] and [`DownloadJob`]: what `update` asks the runtime to start.
//! - [`human_size`], [`short_hash`], [`format_eta`] and [`progress_bar`]: how they are
//!   spelled on screen.

use std::collections::VecDeque;
use std::path::PathBuf;

use chat_shared::message::FileInfo;
use uuid::Uuid;

/// How far back the transfer rate is measured: long enough to smooth one slow chunk, short
/// enough to follow a change of speed.
const RATE_WINDOW_MS: i64 = 5_000;

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `/upload`: from a local file to the server.
    Up,
    /// `/download`: from the server to a local file.
    Down,
}

/// Where an upload is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A joined room (lowercase).
    Room(String),
    /// A nick, as a DM.
    Nick(String),
}

impl Target {
    /// `#room` or `@nick`.
    pub fn label(&self) -> String {
        match self {
            Self::Room(room) => format!("#{room}"),
            Self::Nick(nick) => format!("@{nick}"),
        }
    }
}

/// Where a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Up: reading the file for its size and SHA-256.
    Hashing,
    /// Up: `upload` sent (or to be sent once online), waiting for its `upload_slot`.
    WaitingSlot,
    /// Bytes are moving.
    Running,
    /// The HTTP connection failed; the task is trying again by itself.
    Retrying {
        /// Why, for `/transfers`.
        reason: String,
    },
    /// Up: the task gave up for now; a new slot is asked for at `retry_at` (Unix ms), or at
    /// the next `welcome`.
    Stalled {
        /// Why.
        reason: String,
        /// When to ask again.
        retry_at: i64,
    },
    /// Up: every byte is on the server, which verifies the file and shares it; its
    /// `message` (or `dm`) with the upload's id is the acknowledgement.
    Sharing,
    /// Finished: shared (up) or saved and verified (down).
    Done {
        /// What became of it: the room, or the path it was saved to.
        detail: String,
    },
    /// Ended with an error; nothing is resumed.
    Failed {
        /// Why.
        error: String,
    },
}

/// One upload or download.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Up: the `upload` request's id, which becomes the sharing message's id. Down: a
    /// local id.
    pub id: Uuid,
    /// Up or down.
    pub direction: Direction,
    /// The file's name: the local file's (up) or the server's (down, before cleaning).
    pub name: String,
    /// Up: the local file. Down: the directory it goes to, then the file it was saved as.
    pub path: PathBuf,
    /// Up: where it is shared.
    pub target: Option<Target>,
    /// Length in bytes (up: 0 until hashed).
    pub size: u64,
    /// SHA-256, 64 hex digits (up: empty until hashed).
    pub sha256: String,
    /// Up: the tus upload, once the server gave the slot. Down: the file's link.
    pub url: Option<String>,
    /// Bytes the other side has (up) or that are on disk (down).
    pub done: u64,
    /// Where it is.
    pub state: TransferState,
    /// Up: how many times in a row the slot's link answered "gone" (404/410) without the
    /// upload moving in between.
    pub slots_lost: u32,
    /// Recent `(Unix ms, done)` samples, oldest first, for the rate.
    samples: VecDeque<(i64, u64)>,
}

impl Transfer {
    /// A new upload of `path` (named `name`) to `target`, about to be hashed.
    pub fn upload(id: Uuid, path: PathBuf, name: String, target: Target) -> Self {
        let mut t = Self::new(id, Direction::Up, name, path, TransferState::Hashing);
        t.target = Some(target);
        t
    }

    /// A new download of `file` into `dir`.
    pub fn download(id: Uuid, file: &FileInfo, dir: PathBuf) -> Self {
        let mut t = Self::new(
            id,
            Direction::Down,
            file.name.clone(),
            dir,
            TransferState::Running,
        );
        t.size = file.size;
        t.sha256.clone_from(&file.sha256);
        t.url = Some(file.url.clone());
        t
    }

    fn new(
        id: Uuid,
        direction: Direction,
        name: String,
        path: PathBuf,
        state: TransferState,
    ) -> Self {
        Self {
            id,
            direction,
            name,
            path,
            target: None,
            size: 0,
            sha256: String::new(),
            url: None,
            done: 0,
            state,
            slots_lost: 0,
            samples: VecDeque::new(),
        }
    }

    /// Whether it is still going (or will resume by itself).
    pub fn is_active(&self) -> bool {
        !matches!(
            self.state,
            TransferState::Done { .. } | TransferState::Failed { .. }
        )
    }

    /// Takes in that `done` bytes are through at `at_ms`.
    pub fn progress(&mut self, at_ms: i64, done: u64) {
        if done < self.done {
            // A resume from an earlier offset (the server kept less): the rate starts over.
            self.samples.clear();
        }
        self.done = done;
        self.samples.push_back((at_ms, done));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| at_ms - t > RATE_WINDOW_MS)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Goes on from `done` (a new slot's offset): the rate is measured anew.
    pub fn restart_at(&mut self, done: u64) {
        self.samples.clear();
        self.done = done;
    }

    /// Bytes per second over the last few seconds; `None` until two samples are apart.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.samples.front()?, self.samples.back()?);
        if t1 <= t0 || d1 < d0 {
            return None;
        }
        Some((d1 - d0) as f64 * 1000.0 / (t1 - t0) as f64)
    }

    /// Seconds left at the current rate.
    pub fn eta_secs(&self) -> Option<u64> {
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some((self.size.saturating_sub(self.done) as f64 / rate).ceil() as u64)
    }

    /// 0–100.
    pub fn percent(&self) -> u64 {
        match self.size {
            0 => 0,
            size => (self.done.min(size) as u128 * 100 / size as u128) as u64,
        }
    }

    /// `↑` or `↓`.
    pub fn arrow(&self) -> &'static str {
        match self.direction {
            Direction::Up => "↑",
            Direction::Down => "↓",
        }
    }

    /// The state in words, for `/transfers`.
    pub fn describe_state(&self) -> String {
        let moving = |verb: &str| {
            let mut s = format!(
                "{verb} {}% ({} of {})",
                self.percent(),
                human_size(self.done),
                human_size(self.size)
            );
            if let Some(rate) = self.rate() {
                s.push_str(&format!(", {}/s", human_size(rate as u64)));
            }
            if let Some(eta) = self.eta_secs() {
                s.push_str(&format!(", ETA {}", format_eta(eta)));
            }
            s
        };
        match &self.state {
            TransferState::Hashing => "computing its SHA-256".to_owned(),
            TransferState::WaitingSlot => "waiting for the server's upload slot".to_owned(),
            TransferState::Running => match self.direction {
                Direction::Up => moving("uploading"),
                Direction::Down => moving("downloading"),
            },
            TransferState::Retrying { reason } => {
                format!("{}; retrying: {reason}", moving("interrupted at"))
            }
            TransferState::Stalled { reason, .. } => {
                format!("{}; resuming soon: {reason}", moving("stalled at"))
            }
            TransferState::Sharing => "uploaded; the server is verifying it".to_owned(),
            TransferState::Done { detail } => match self.direction {
                Direction::Up => format!("shared in {detail}"),
                Direction::Down => format!("saved as {detail}"),
            },
            TransferState::Failed { error } => format!("failed: {error}"),
        }
    }
}

/// What a transfer task reports (and, for hashing, the runtime).
#[derive(Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// Up: the file is read: its length and SHA-256.
    Hashed {
        /// The transfer.
        id: Uuid,
        /// Length in bytes.
        size: u64,
        /// SHA-256, 64 lowercase hex digits.
        sha256: String,
    },
    /// `done` bytes are through at `at_ms` (Unix ms, the task's clock).
    Progress {
        /// The transfer.
        id: Uuid,
        /// Bytes the other side has (up) or that are on disk (down).
        done: u64,
        /// When.
        at_ms: i64,
    },
    /// The HTTP connection failed; the task tries again by itself.
    Retrying {
        /// The transfer.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// Up: the task gave up for now (the server is away); a new slot will resume it.
    Stalled {
        /// The transfer.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// Up: the slot is gone (404/410: expired, used, abandoned): ask for it again.
    SlotGone {
        /// The transfer.
        id: Uuid,
    },
    /// Up: every byte is on the server; its `message` will follow.
    Uploaded {
        /// The transfer.
        id: Uuid,
    },
    /// Down: verified and saved as `path`.
    Saved {
        /// The transfer.
        id: Uuid,
        /// Where.
        path: PathBuf,
    },
    /// It ended with an error.
    Failed {
        /// The transfer.
        id: Uuid,
        /// Why, for people.
        error: String,
    },
}

impl TransferEvent {
    /// The transfer it is about.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Hashed { id, .. }
            | Self::Progress { id, .. }
            | Self::Retrying { id, .. }
            | Self::Stalled { id, .. }
            | Self::SlotGone { id }
            | Self::Uploaded { id }
            | Self::Saved { id, .. }
            | Self::Failed { id, .. } => *id,
        }
    }
}

/// An upload for the runtime to carry out: `path`'s bytes from `offset` to the tus `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadJob {
    /// The transfer.
    pub id: Uuid,
    /// The local file.
    pub path: PathBuf,
    /// The tus upload.
    pub url: String,
    /// Bytes the server already has.
    pub offset: u64,
    /// The file's length.
    pub size: u64,
}

/// A download for the runtime to carry out: `file` into `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    /// The transfer.
    pub id: Uuid,
    /// What to fetch, with its name, length and SHA-256.
    pub file: FileInfo,
    /// Where to put it.
    pub dir: PathBuf,
}

/// `512 B`, `1.2 KiB`, `3.4 MiB`, `1.0 GiB`: binary units, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB"; one unit up reads better.
    if value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first four and last two hex digits, as line clients show them: `3a7b…e1`.
pub fn short_hash(sha256: &str) -> String {
    let chars: Vec<char> = sha256.chars().collect();
    if chars.len() <= 6 {
        return sha256.to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail}")
}

/// `0:07`, `12:34`, `1:02:03`.
pub fn format_eta(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A bar `cells` wide filled to `percent`, in eighths of a cell.
pub fn progress_bar(percent: u64, cells: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (percent.min(100) as usize * cells * 8) / 100;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut bar = "█".repeat(full);
    if full < cells {
        bar.push(PARTS[part]);
        bar.push_str(&" ".repeat(cells - full - 1));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }

    #[test]
    fn hashes_are_shortened_as_line_clients_show_them() {
        let sha = format!("3a7b{}e1", "0".repeat(58));
        assert_eq!(short_hash(&sha), "3a7b…e1");
        assert_eq!(short_hash("abc"), "abc");
    }

    #[test]
    fn eta_and_bar_are_spelled_compactly() {
        assert_eq!(format_eta(7), "0:07");
        assert_eq!(format_eta(754), "12:34");
        assert_eq!(format_eta(3723), "1:02:03");
        assert_eq!(progress_bar(0, 4), "    ");
        assert_eq!(progress_bar(50, 4), "██  ");
        assert_eq!(progress_bar(42, 10), "████▏     ");
        assert_eq!(progress_bar(100, 4), "████");
    }

    #[test]
    fn rate_and_eta_follow_the_last_seconds() {
        let id = Uuid::nil();
        let mut t = Transfer::upload(id, "f".into(), "f".into(), Target::Room("lobby".into()));
        t.size = 10_000_000;
        assert_eq!(t.rate(), None);
        t.progress(0, 0);
        t.progress(1000, 1_000_000);
        assert_eq!(t.rate(), Some(1_000_000.0));
        assert_eq!(t.eta_secs(), Some(9));
        assert_eq!(t.percent(), 10);
        // Old samples fall out of the window: the rate is the recent one.
        t.progress(10_000, 2_000_000);
        t.progress(11_000, 4_000_000);
        assert_eq!(t.rate(), Some(2_000_000.0));
        // A resume from less than we thought starts the rate over.
        t.progress(12_000, 3_000_000);
        assert_eq!(t.rate(), None);
    }
}
