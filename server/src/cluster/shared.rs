//! Accounts and moderation settings, cluster-wide: each is a key-value bucket, with this
//! node's store as its cache.
//!
//! [`SharedDocs`] stands where the node's own store stood for accounts and settings, so
//! `auth/` and `moderation/` do not know they are shared. Its writes block (they run on the
//! blocking pool or the settings writer's thread, never on the async workers) until NATS
//! has them: a registration is a create-if-absent in the accounts bucket, so two nodes
//! cannot register one nick twice. Its reads come from a mirror of the buckets, kept by a
//! watch (`Cluster::watch_docs`), which also tells this node's memory (`Auth`, the rooms
//! loaded here) what other nodes changed. Keys under `cluster/` (the replica's watermark)
//! are this node's own and stay in its store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_nats::jetstream::kv::{self, CreateErrorKind};

use super::names::token;
use crate::store::{AccountStore, SettingsStore, StoredAccount};

/// The two buckets, once the cluster is set up.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    pub(crate) settings: kv::Store,
    pub(crate) accounts: kv::Store,
}

/// A settings document as its bucket keeps it (the bucket's key is the hex of `key`).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SharedDoc {
    pub(crate) key: String,
    pub(crate) doc: String,
}

/// An account as its bucket keeps it (the hash is a PHC string; it never reaches a log).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SharedAccount {
    pub(crate) skeleton: String,
    pub(crate) nick: String,
    pub(crate) hash: String,
}

#[derive(Debug)]
pub(crate) struct SharedDocs {
    local_settings: Option<Arc<dyn SettingsStore>>,
    local_accounts: Option<Arc<dyn AccountStore>>,
    buckets: OnceLock<Buckets>,
    runtime: tokio::runtime::Handle,
    /// The settings bucket, mirrored: key → document.
    pub(crate) docs: Mutex<HashMap<String, String>>,
}

impl SharedDocs {
    pub(crate) fn new(
        local_settings: Option<Arc<dyn SettingsStore>>,
        local_accounts: Option<Arc<dyn AccountStore>>,
    ) -> Self {
        Self {
            local_settings,
            local_accounts,
            buckets: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            docs: Mutex::default(),
        }
    }

    pub(crate) fn connect(&self, buckets: Buckets) {
        let _ = self.buckets.set(buckets);
    }

    fn buckets(&self) -> anyhow::Result<&Buckets> {
        self.buckets
            .get()
            .ok_or_else(|| anyhow::anyhow!("the cluster is not set up yet"))
    }

    fn node_local(key: &str) -> bool {
        key.starts_with("cluster/")
    }
}

impl SettingsStore for SharedDocs {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        if !Self::node_local(key)
            && let Some(doc) = self.docs.lock().unwrap_or_else(|p| p.into_inner()).get(key)
        {
            return Ok(Some(doc.clone()));
        }
        match &self.local_settings {
            Some(local) => local.get(key),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        if let Some(local) = &self.local_settings {
            local.put(key, value)?;
        }
        if Self::node_local(key) {
            return Ok(());
        }
        let bucket = self.buckets()?.settings.clone();
        let k = token(key);
        let value = value.map(|doc| {
            let shared = SharedDoc {
                key: key.to_owned(),
                doc: doc.to_owned(),
            };
            bytes::Bytes::from(serde_json::to_vec(&shared).expect("plain data serialises"))
        });
        self.runtime.block_on(async move {
            match value {
                Some(v) => bucket
                    .put(&k, v)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from),
                None => bucket.delete(&k).await.map_err(anyhow::Error::from),
            }
        })
    }
}

impl AccountStore for SharedDocs {
    fn load_all(&self) -> anyhow::Result<Vec<StoredAccount>> {
        // The bucket's accounts arrive through the watch; this node's cache is a start.
        match &self.local_accounts {
            Some(local) => local.load_all(),
            None => Ok(Vec::new()),
        }
    }

    fn create(&self, account: &StoredAccount) -> anyhow::Result<bool> {
        let bucket = self.buckets()?.accounts.clone();
        let value = shared_bytes(account);
        let k = token(&account.skeleton);
        let created = self.runtime.block_on(async move {
            match bucket.create(&k, value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        })?;
        if created && let Some(local) = &self.local_accounts {
            local.create(account)?;
        }
        Ok(created)
    }

    fn set_hash(&self, skeleton: &str, hash: &str) -> anyhow::Result<()> {
        let bucket = self.buckets()?.accounts.clone();
        let k = token(skeleton);
        let current = self.runtime.block_on(bucket.entry(&k))?;
        let Some(entry) = current else {
            anyhow::bail!("no such account in the cluster");
        };
        let mut account: SharedAccount = serde_json::from_slice(&entry.value)?;
        account.hash = hash.to_owned();
        let value: bytes::Bytes = serde_json::to_vec(&account)?.into();
        self.runtime
            .block_on(bucket.update(&k, value, entry.revision))?;
        if let Some(local) = &self.local_accounts {
            local.set_hash(skeleton, hash)?;
        }
        Ok(())
    }
}

fn shared_bytes(a: &StoredAccount) -> bytes::Bytes {
    let shared = SharedAccount {
        skeleton: a.skeleton.clone(),
        nick: a.nick.clone(),
        hash: a.hash.clone(),
    };
    serde_json::to_vec(&shared)
        .expect("plain data serialises")
        .into()
}

impl super::Cluster {
    /// Mirrors the settings and accounts buckets until `cancel`, and hands what other
    /// nodes change to this node's memory: accounts to `Auth`, settings to rooms loaded
    /// here.
    pub(super) async fn watch_docs(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        use futures::StreamExt;
        let (Some(docs), Some(buckets)) = (
            self.docs.get().cloned(),
            self.docs.get().and_then(|d| d.buckets.get().cloned()),
        ) else {
            return;
        };
        loop {
            let watched = async {
                let mut settings = buckets.settings.watch_all_from_revision(1).await?;
                let mut accounts = buckets.accounts.watch_all_from_revision(1).await?;
                loop {
                    tokio::select! {
                        entry = settings.next() => {
                            let Some(entry) = entry else { break };
                            self.adopt_doc(&docs, entry?);
                        }
                        entry = accounts.next() => {
                            let Some(entry) = entry else { break };
                            self.adopt_account(entry?);
                        }
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                r = watched => if let Err(e) = r {
                    tracing::warn!(error = %e, "watching the cluster's accounts and settings; again");
                },
                () = cancel.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(super::SETUP_RETRY) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    fn adopt_doc(&self, docs: &SharedDocs, entry: kv::Entry) {
        let Some(key) = super::names::untoken(&entry.key) else {
            return;
        };
        let doc = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<SharedDoc>(&entry.value) {
                Ok(shared) => Some(shared.doc),
                Err(_) => return,
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        {
            let mut mirror = docs.docs.lock().unwrap_or_else(|p| p.into_inner());
            match &doc {
                Some(d) => mirror.insert(key.clone(), d.clone()),
                None => mirror.remove(&key),
            };
        }
        // A room loaded here takes the new settings (its own writes come back too, and
        // change nothing); so do the server bans, which end whom they catch here.
        let Some(chat) = self.chat() else { return };
        if key == crate::moderation::server_bans::KEY {
            chat.moderation.server_bans.adopt(doc.as_deref());
            chat.end_server_banned(None);
            return;
        }
        if let Some(skeleton) = key.strip_prefix("room/")
            && let Some(room) = chat
                .all_rooms()
                .into_iter()
                .find(|r| r.name().skeleton() == skeleton)
        {
            let settings = doc
                .as_deref()
                .and_then(|d| crate::moderation::room::Settings::parse(d).ok())
                .unwrap_or_default();
            room.adopt_settings(settings);
        }
    }

    fn adopt_account(&self, entry: kv::Entry) {
        let Some(chat) = self.chat() else { return };
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(a) = serde_json::from_slice::<SharedAccount>(&entry.value) {
                    chat.auth.adopt(a.skeleton, a.nick, a.hash);
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                if let Some(skeleton) = super::names::untoken(&entry.key) {
                    chat.auth.forget(&skeleton);
                }
            }
        }
    }
}
