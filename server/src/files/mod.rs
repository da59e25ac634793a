//! File sharing: upload slots, resumable tus uploads, content-addressed storage and
//! downloads, all over HTTP on the chat port; chat carries only a file's metadata.
//!
//! A framed client asks for a slot (`upload`, checked here against the limits and the
//! uploader's quota); it uploads to the slot's URL with tus (`http`, `upload`); after the
//! last byte and a matching SHA-256 the file is kept under its hash (`disk`) and shared in
//! chat as its uploader (`share`), on the same path as anything said. Downloads are links
//! with 128 random bits in them.
//!
//! Layout:
//! - this file: [`Files`], the registry of slots, shares and quotas;
//! - `upload`: one upload in progress and the writing of a request's body;
//! - `disk`: the directory and its records;
//! - `names`: names for people, links and `Content-Disposition`;
//! - `http`: the HTTP side (tus and downloads) of a connection the sniffer gave it;
//! - `share`: a finished upload, posted into its room or DM.

pub(crate) mod bulk;
mod disk;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod names;
pub(crate) mod share;
pub(crate) mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chat_shared::{FileInfo, Nick};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};
use uuid::Uuid;

use disk::{Disk, ShareRecord};
pub(crate) use error::FileError;
pub(crate) use upload::{Owner, Target, Upload};

use crate::config::FilesConfig;
use crate::now_ms;

/// How often expired slots and shares are swept away.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What a client asks to upload.
#[derive(Debug)]
pub(crate) struct Offer {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) target: Target,
    pub(crate) owner: Owner,
    pub(crate) nick: Nick,
    pub(crate) session: Uuid,
}

/// Where to upload: the answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) id: Uuid,
    pub(crate) url: String,
    pub(crate) expires: i64,
    pub(crate) offset: u64,
}

/// The file service.
#[derive(Debug)]
pub(crate) struct Files {
    config: FilesConfig,
    /// The base of links, known once the server listens.
    base: OnceLock<String>,
    disk: Disk,
    state: Mutex<State>,
    rng: SystemRandom,
    /// Upload requests that may write at once (see `FilesConfig::max_writing`).
    pub(crate) writing: Arc<tokio::sync::Semaphore>,
    /// The temporary directory of a `temporary` configuration, deleted with this.
    _temporary: Option<tempfile::TempDir>,
}

/// A share taken back, and whether its blob was the last share of it.
type Unshared = (ShareRecord, bool);

#[derive(Debug, Default)]
struct State {
    /// By token.
    uploads: HashMap<String, Arc<Upload>>,
    /// Upload id to token.
    ids: HashMap<Uuid, String>,
    /// By download id.
    shares: HashMap<String, ShareRecord>,
    /// Shares per blob.
    blobs: HashMap<String, usize>,
    /// What each owner has shared and is uploading.
    used: HashMap<Owner, u64>,
}

impl State {
    fn charge(&mut self, owner: &Owner, size: u64) {
        *self.used.entry(owner.clone()).or_default() += size;
    }

    fn refund(&mut self, owner: &Owner, size: u64) {
        if let Some(used) = self.used.get_mut(owner) {
            *used = used.saturating_sub(size);
            if *used == 0 {
                self.used.remove(owner);
            }
        }
    }

    /// Drops a slot; returns it if it was there, with the share of a kept one (which
    /// is dropped too: nobody was shown it), whose blob the caller deletes if it was the
    /// last.
    fn forget(&mut self, token: &str) -> Option<(Arc<Upload>, Option<Unshared>)> {
        let upload = self.uploads.remove(token)?;
        self.ids.remove(&upload.id);
        let share = match upload.kept() {
            // The share holds the charge now, and gives it back.
            Some(file) => self.unshare(&file.id),
            None => {
                self.refund(&upload.owner, upload.size);
                None
            }
        };
        Some((upload, share))
    }

    /// Drops a share; returns whether its blob is no longer shared.
    fn unshare(&mut self, id: &str) -> Option<Unshared> {
        let record = self.shares.remove(id)?;
        if let Some(owner) = Owner::from_key(&record.owner) {
            self.refund(&owner, record.size);
        }
        let last = self.release_blob(&record.sha256);
        Some((record, last))
    }

    /// One share fewer of a blob; whether it was the last.
    fn release_blob(&mut self, sha256: &str) -> bool {
        let count = self.blobs.entry(sha256.to_owned()).or_default();
        *count = count.saturating_sub(1);
        let last = *count == 0;
        if last {
            self.blobs.remove(sha256);
        }
        last
    }
}

impl Files {
    /// Opens the file store in `config.dir`: earlier shares are loaded (and count against
    /// their owners' quotas again), earlier unfinished uploads deleted.
    ///
    /// # Errors
    /// The directory cannot be created or read.
    pub(crate) fn open(mut config: FilesConfig) -> std::io::Result<Self> {
        let temporary = if config.temporary {
            let dir = tempfile::Builder::new()
                .prefix("chat-server-files-")
                .tempdir_in(&config.dir)?;
            config.dir = dir.path().to_owned();
            Some(dir)
        } else {
            None
        };
        let disk = Disk::open(&config.dir)?;
        let mut state = State::default();
        for record in disk.load()? {
            if let Some(owner) = Owner::from_key(&record.owner) {
                state.charge(&owner, record.size);
            }
            *state.blobs.entry(record.sha256.clone()).or_default() += 1;
            state.shares.insert(record.id.clone(), record);
        }
        info!(
            dir = %config.dir.display(),
            shares = state.shares.len(),
            "file sharing on"
        );
        let writers = config.max_writing.max(1);
        Ok(Self {
            config,
            base: OnceLock::new(),
            disk,
            state: Mutex::new(state),
            rng: SystemRandom::new(),
            writing: Arc::new(tokio::sync::Semaphore::new(writers)),
            _temporary: temporary,
        })
    }

    /// Sets the base of links to `--public-url`, or else to `fallback` (the listening
    /// address as a URL).
    pub(crate) fn set_base(&self, fallback: String) {
        let base = self.config.public_url.clone().unwrap_or(fallback);
        let _ = self.base.set(base);
    }

    fn base(&self) -> &str {
        self.base.get().map_or("", String::as_str)
    }

    pub(crate) fn config(&self) -> &FilesConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// 128 bits from the system's generator, as hex; `None` if it fails (a capability
    /// made of anything less is not one).
    fn random_hex(&self) -> Option<String> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).ok()?;
        Some(disk::hex(&bytes))
    }

    /// Checks an offer and gives it a slot, or the slot it already has: an offer resent
    /// with the same id by the same owner (after a reconnect: the same account, or a guest
    /// with the same nick) gets its slot back, moved to the new connection, with how far
    /// the upload has come.
    ///
    /// # Errors
    /// [`FileError`] says which rule the offer breaks.
    pub(crate) fn offer(&self, offer: Offer) -> Result<Slot, FileError> {
        if offer.size == 0 {
            return Err(FileError::Bad("an empty file has nothing to share"));
        }
        if offer.size > self.config.max_file_size {
            return Err(FileError::TooLarge {
                size: offer.size,
                max: self.config.max_file_size,
            });
        }
        let sha256 =
            parse_sha256(&offer.sha256).ok_or(FileError::Bad("sha256 must be 64 hex digits"))?;
        let name = names::clean_name(&offer.name)?;
        let quota = match offer.owner {
            Owner::Account(_) => self.config.quota_per_user,
            Owner::Guest(_) => self.config.guest_quota,
        };
        let mut st = self.lock();
        if let Some(token) = st.ids.get(&offer.id) {
            let upload = &st.uploads[token];
            // A guest that reconnects is a new connection under the same nick; the id,
            // random and known only to the uploader, is what says it is the same one.
            let owner = match (&upload.owner, &offer.owner) {
                (Owner::Guest(_), Owner::Guest(_)) => true,
                (was, is) => was == is,
            };
            let same = owner
                && upload.nick.skeleton() == offer.nick.skeleton()
                && upload.name == name
                && upload.size == offer.size
                && upload.sha256 == sha256
                && upload.target == offer.target;
            if !same {
                return Err(FileError::IdInUse);
            }
            upload.move_to(offer.session);
            return Ok(self.slot(upload));
        }
        let used = st.used.get(&offer.owner).copied().unwrap_or(0);
        if used.saturating_add(offer.size) > quota {
            return Err(FileError::QuotaExceeded {
                size: offer.size,
                used,
                quota,
            });
        }
        let open = st
            .uploads
            .values()
            .filter(|u| u.owner == offer.owner)
            .count();
        if open >= self.config.max_uploads {
            return Err(FileError::TooManyUploads(self.config.max_uploads));
        }
        let token = self
            .random_hex()
            .filter(|t| !st.uploads.contains_key(t))
            .ok_or(FileError::Bad("no slot could be made; try again"))?;
        let expiry = i64::try_from(self.config.upload_expiry.as_millis()).unwrap_or(i64::MAX);
        let upload = Arc::new(Upload::new(
            token.clone(),
            offer.id,
            offer.owner.clone(),
            offer.nick,
            name,
            offer.size,
            sha256,
            offer.target,
            now_ms().saturating_add(expiry),
            self.disk.partial(&token),
            offer.session,
        ));
        st.charge(&offer.owner, offer.size);
        st.ids.insert(offer.id, token.clone());
        let slot = self.slot(&upload);
        st.uploads.insert(token, upload);
        Ok(slot)
    }

    fn slot(&self, upload: &Upload) -> Slot {
        Slot {
            id: upload.id,
            url: format!("{}/uploads/{}", self.base(), upload.token),
            expires: upload.expires,
            offset: upload.offset(),
        }
    }

    /// The live upload behind `token`; an expired one is deleted on the way.
    pub(crate) fn upload(&self, token: &str) -> Option<Arc<Upload>> {
        if !disk::is_hex(token, 32) {
            return None;
        }
        let mut st = self.lock();
        let upload = st.uploads.get(token)?;
        if upload.expires > now_ms() {
            return Some(Arc::clone(upload));
        }
        self.forget_locked(&mut st, token);
        None
    }

    /// Abandons an upload (tus termination, or a finished one whose hash is wrong, or
    /// one kept whose uploader never came back for it).
    pub(crate) fn abandon(&self, upload: &Upload) {
        let mut st = self.lock();
        self.forget_locked(&mut st, &upload.token);
    }

    /// Forgets a slot and deletes what it left: its partial file, or the share it was
    /// kept as (blobs only under the lock: see `keep`).
    fn forget_locked(&self, st: &mut State, token: &str) {
        match st.forget(token) {
            Some((_, Some((record, last)))) => self.disk.remove(&record, last),
            Some((_, None)) => self.disk.discard(token),
            None => {}
        }
    }

    /// A kept upload has been shared (or was already): its slot is done.
    pub(crate) fn done(&self, upload: &Upload) {
        let mut st = self.lock();
        if st.uploads.remove(&upload.token).is_some() {
            st.ids.remove(&upload.id);
        }
    }

    /// The kept upload waiting for its uploader under the upload id `id`, if any.
    pub(crate) fn waiting(&self, id: Uuid) -> Option<Arc<Upload>> {
        let st = self.lock();
        let upload = st.uploads.get(st.ids.get(&id)?)?;
        upload.kept().is_some().then(|| Arc::clone(upload))
    }

    /// Keeps a finished, verified upload: its content under its hash, and a new share of
    /// it, whose `file` object is returned. The slot stays, holding that share, until it
    /// is posted ([`Files::done`]); an uploader away when its last byte arrived gets it
    /// posted when it comes back for its slot (or it expires with the slot).
    ///
    /// # Errors
    /// The disk's; the upload is then abandoned.
    pub(crate) fn keep(&self, upload: &Upload) -> std::io::Result<FileInfo> {
        let sha256 = disk::hex(&upload.sha256);
        let Some(id) = self.random_hex() else {
            self.abandon(upload);
            return Err(std::io::Error::other(
                "the system's random generator failed",
            ));
        };
        let record = ShareRecord {
            id,
            sha256,
            name: upload.name.clone(),
            size: upload.size,
            owner: upload.owner.key(),
            nick: upload.nick.to_string(),
            message: upload.id,
            created: now_ms(),
        };
        // Counted before the disk is touched: a share of the same content ending meanwhile
        // then leaves the blob alone (blobs are deleted only under the lock, at a count of
        // zero), and if it was deleted just before, the commit puts this upload in its place.
        *self.lock().blobs.entry(record.sha256.clone()).or_default() += 1;
        if let Err(e) = self.disk.commit(&upload.token, &record) {
            let mut st = self.lock();
            st.release_blob(&record.sha256);
            drop(st);
            self.abandon(upload);
            return Err(e);
        }
        let mut st = self.lock();
        // The slot's charge becomes the share's.
        let info = self.info(&record);
        st.shares.insert(record.id.clone(), record);
        upload.keep_as(info.clone());
        Ok(info)
    }

    /// Takes back a share that could not be posted.
    pub(crate) fn unshare(&self, id: &str) {
        let mut st = self.lock();
        if let Some((record, last)) = st.unshare(id) {
            // Under the lock: see `keep`.
            self.disk.remove(&record, last);
        }
    }

    fn info(&self, record: &ShareRecord) -> FileInfo {
        FileInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            size: record.size,
            sha256: record.sha256.clone(),
            url: format!(
                "{}/files/{}/{}",
                self.base(),
                record.id,
                names::url_segment(&record.name)
            ),
        }
    }

    /// The shared file behind a download id: its blob's path, and its record.
    pub(crate) fn download(&self, id: &str) -> Option<(std::path::PathBuf, FileInfo)> {
        if !disk::is_hex(id, 32) {
            return None;
        }
        let st = self.lock();
        let record = st.shares.get(id)?;
        Some((self.disk.blob(&record.sha256), self.info(record)))
    }

    /// Deletes expired slots and, past `--retain-files-days`, old shares.
    pub(crate) fn sweep(&self) {
        let now = now_ms();
        let mut st = self.lock();
        let expired: Vec<String> = st
            .uploads
            .values()
            .filter(|u| u.expires <= now)
            .map(|u| u.token.clone())
            .collect();
        for token in &expired {
            self.forget_locked(&mut st, token);
        }
        let mut old = Vec::new();
        if self.config.retain_days > 0 {
            let keep = i64::from(self.config.retain_days) * 86_400_000;
            let ids: Vec<String> = st
                .shares
                .values()
                .filter(|r| r.created.saturating_add(keep) <= now)
                .map(|r| r.id.clone())
                .collect();
            old.extend(ids.iter().filter_map(|id| st.unshare(id)));
        }
        // Blobs under the lock (see `keep`); this runs off the async workers, and rarely.
        for (record, last) in &old {
            self.disk.remove(record, *last);
        }
        drop(st);
        if !expired.is_empty() || !old.is_empty() {
            info!(
                uploads = expired.len(),
                shares = old.len(),
                "expired files deleted"
            );
        }
    }

    /// Sweeps every minute until `stop`.
    pub(crate) async fn sweep_until(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let files = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || files.sweep())
                .await
                .is_err()
            {
                warn!("the file sweep failed");
            }
        }
    }
}

/// 64 hex digits, either case.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
