//! Nicks, cluster-wide: a claim is a key-value create-if-absent under the nick's skeleton
//! (so look-alikes collide on every node as they do on one), holding the claimant's node,
//! run and session. A claim lasts as long as its node's lease: an entry whose node is dead
//! may be taken over, with the entry's revision, so two nodes racing for it cannot both win.
//!
//! Every node watches the bucket into a mirror, which is where DMs, `whois` and the like
//! find who holds a nick on another node without a round trip.
//!
//! A login takes its account's nick from whoever holds it (`take`): the holder's node ends
//! that connection, whose leaving releases the claim, and the login claims it then.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation};
use chat_shared::Nick;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::Cluster;
use super::names::token;
use super::record::{Body, Holder};
use crate::chat::ChatError;

/// How long a login waits for the connection holding its account's nick to end, wherever
/// it is: its node reads the request from the stream, and the connection leaves (freeing
/// the nick) after at most a second of last words.
const REPLACE_WAIT: Duration = Duration::from_secs(5);
/// How often the mirror is looked at meanwhile.
const REPLACE_POLL: Duration = Duration::from_millis(20);

/// A nick's entry as mirrored: who holds it, and the entry's revision.
#[derive(Debug, Clone)]
pub(crate) struct Mirrored {
    pub(crate) holder: Holder,
    pub(crate) revision: u64,
}

impl Cluster {
    /// Claims `nick` for `session` of this node.
    ///
    /// # Errors
    /// [`ChatError::NickTaken`] when a live node's session holds it;
    /// [`ChatError::ClusterUnavailable`] when NATS cannot be reached.
    pub(crate) async fn claim(&self, nick: &Nick, session: Uuid) -> Result<(), ChatError> {
        let link = self
            .link
            .get()
            .filter(|_| self.available())
            .ok_or(ChatError::ClusterUnavailable)?;
        let key = token(&nick.skeleton());
        let mine = Holder {
            nick: nick.to_string(),
            node: self.node.to_string(),
            boot: self.boot,
            session,
        };
        let value: bytes::Bytes = serde_json::to_vec(&mine)
            .expect("plain data serialises")
            .into();
        match link.nicks.create(&key, value.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => {
                warn!(error = %e, "cannot claim a nick");
                return Err(ChatError::ClusterUnavailable);
            }
        }
        let entry = link
            .nicks
            .entry(&key)
            .await
            .map_err(|_| ChatError::ClusterUnavailable)?;
        let Some(entry) = entry else {
            // Released meanwhile: try once more from scratch.
            return match link.nicks.create(&key, value).await {
                Ok(_) => Ok(()),
                Err(_) => Err(ChatError::NickTaken(nick.clone())),
            };
        };
        let holder: Option<Holder> = serde_json::from_slice(&entry.value).ok();
        let taken = || match holder.as_ref().map(|h| Nick::parse(&h.nick)) {
            Some(Ok(online)) if online.key() != nick.key() => ChatError::NickLooksLike {
                nick: nick.clone(),
                online,
            },
            _ => ChatError::NickTaken(nick.clone()),
        };
        if let Some(h) = &holder
            && self.alive(&h.node, h.boot).await?
            && !self.ghost(h)
        {
            return Err(taken());
        }
        // Its node is dead (or the entry unreadable): take it over, if nobody did first.
        link.nicks
            .update(&key, value, entry.revision)
            .await
            .map(|_| ())
            .map_err(|_| taken())
    }

    /// Claims `nick` for `session`, which logged in to its account: the connection holding
    /// it, on any node (this one too), is asked through the stream to end as a login there
    /// would end it (`bye{replaced}`); once its release shows in the mirror, the nick is
    /// claimed. A holder on a dead node is taken over by the claim itself.
    ///
    /// # Errors
    /// [`ChatError::NotReplaced`] when a holder is still there after [`REPLACE_WAIT`];
    /// [`ChatError::ClusterUnavailable`] when NATS cannot be reached.
    pub(crate) async fn take(&self, nick: &Nick, session: Uuid) -> Result<(), ChatError> {
        let deadline = tokio::time::Instant::now() + REPLACE_WAIT;
        let skeleton = nick.skeleton();
        let mut asked = None;
        loop {
            match self.claim(nick, session).await {
                Err(ChatError::NickTaken(_) | ChatError::NickLooksLike { .. }) => {}
                done => return done,
            }
            if let Some(h) = self.holder(&skeleton).filter(|h| asked != Some(h.session)) {
                let body = Body::Replace {
                    nick: h.nick,
                    session: h.session,
                };
                self.publish(self.names.replaces(), body, None)
                    .await
                    .map_err(|_| ChatError::ClusterUnavailable)?;
                asked = Some(h.session);
            }
            // Until the holder asked is gone from the mirror (or, when the mirror has not
            // seen the claim that refused this one yet, a moment).
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ChatError::NotReplaced(nick.clone()));
                }
                tokio::time::sleep(REPLACE_POLL).await;
                if self
                    .holder(&skeleton)
                    .is_none_or(|h| Some(h.session) != asked)
                {
                    break;
                }
            }
        }
    }

    /// Whether `h` is a claim of this very run for a connection that is gone (its release
    /// failed: NATS was unreachable then).
    fn ghost(&self, h: &Holder) -> bool {
        h.node == *self.node
            && h.boot == self.boot
            && self.chat().is_some_and(|chat| !chat.ops.is_open(h.session))
    }

    /// Deletes this run's claims whose connections are gone (see `ghost`).
    pub(super) async fn drop_ghosts(&self) {
        let Some(link) = self.link.get() else {
            return;
        };
        let ghosts: Vec<(String, u64)> = self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, m)| self.ghost(&m.holder))
            .map(|(k, m)| (k.clone(), m.revision))
            .collect();
        for (key, revision) in ghosts {
            // Fails harmlessly if it was claimed again meanwhile.
            let _ = link
                .nicks
                .delete_expect_revision(&key, Some(revision))
                .await;
        }
    }

    /// Whether `node`'s run `boot` holds its lease.
    pub(super) async fn alive(&self, node: &str, boot: Uuid) -> Result<bool, ChatError> {
        if node == &*self.node {
            return Ok(boot == self.boot);
        }
        let link = self.link.get().ok_or(ChatError::ClusterUnavailable)?;
        let lease = link
            .nodes
            .get(node)
            .await
            .map_err(|_| ChatError::ClusterUnavailable)?;
        Ok(lease.is_some_and(|v| v.as_ref() == boot.as_bytes()))
    }

    /// Gives up `nick` if `session` holds it (in the background; a release that fails is
    /// made good by the lease: the entry outlives nothing but this node).
    pub(crate) fn release(self: &Arc<Self>, nick: &Nick, session: Uuid) {
        let key = token(&nick.skeleton());
        let revision = self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|m| m.holder.session == session)
            .map(|m| m.revision);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let Some(link) = this.link.get() else {
                return;
            };
            // The mirror may not have seen the claim yet: read the entry itself then.
            let revision = match revision {
                Some(r) => Some(r),
                None => match link.nicks.entry(&key).await {
                    Ok(Some(e)) => serde_json::from_slice::<Holder>(&e.value)
                        .ok()
                        .filter(|h| h.session == session)
                        .map(|_| e.revision),
                    _ => None,
                },
            };
            if let Some(revision) = revision
                && let Err(e) = link
                    .nicks
                    .delete_expect_revision(&key, Some(revision))
                    .await
            {
                warn!(error = %e, "a nick was not released; its holder's lease will");
            }
        });
    }

    /// Who holds `nick` (its skeleton) anywhere in the cluster, as the mirror says.
    pub(crate) fn holder(&self, skeleton: &str) -> Option<Holder> {
        self.mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token(skeleton))
            .map(|m| m.holder.clone())
    }

    /// Keeps the mirror of the nick bucket until `cancel`.
    pub(super) async fn watch_nicks(self: Arc<Self>, cancel: CancellationToken) {
        let Some(link) = self.link.get().cloned() else {
            return;
        };
        loop {
            let watched = async {
                let mut watch = link.nicks.watch_all_from_revision(1).await?;
                while let Some(entry) = watch.next().await {
                    let entry = entry?;
                    let mut mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
                    match entry.operation {
                        Operation::Put => {
                            if let Ok(holder) = serde_json::from_slice(&entry.value) {
                                let revision = entry.revision;
                                mirror.insert(entry.key, Mirrored { holder, revision });
                            }
                        }
                        Operation::Delete | Operation::Purge => {
                            mirror.remove(&entry.key);
                        }
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                r = watched => if let Err(e) = r {
                    warn!(error = %e, "watching the cluster's nicks; again");
                },
                () = cancel.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(super::SETUP_RETRY) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Drops a dead node's nicks (all but those of its run `keep`) from the bucket.
    pub(super) fn forget_node(&self, node: &str, keep: Option<Uuid>) {
        let stale: Vec<(String, u64)> = self
            .mirror
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, m)| m.holder.node == node && Some(m.holder.boot) != keep)
            .map(|(k, m)| (k.clone(), m.revision))
            .collect();
        if stale.is_empty() {
            return;
        }
        let Some(link) = self.link.get().cloned() else {
            return;
        };
        tokio::spawn(async move {
            for (key, revision) in stale {
                // Fails harmlessly if someone claimed it meanwhile.
                let _ = link
                    .nicks
                    .delete_expect_revision(&key, Some(revision))
                    .await;
            }
        });
    }
}
