//! This node's lease, and sweeping the nodes whose lease is gone.
//!
//! The lease is an entry of the nodes bucket, whose entries expire after `--cluster-lease`;
//! the node renews it every third of that. Every node sweeps as often: any node its rooms
//! or the nick mirror name whose lease is gone (or held by a newer run) is dead, and a
//! `gone` notice on the stream makes its members leave every room, on every node, at one
//! place in the stream's order; its nicks are deleted. A node killed with `kill -9` is
//! therefore gone from `members` and frees its nicks within one lease and one sweep.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::Cluster;
use super::record::Body;

impl Cluster {
    /// Renews the lease and sweeps until `cancel`, then gives the lease up.
    pub(super) async fn lease_until(self: Arc<Self>, cancel: CancellationToken) {
        let Some(link) = self.link.get().cloned() else {
            return;
        };
        let every = self.cfg.lease / 3;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => break,
            }
            let boot = bytes::Bytes::copy_from_slice(self.boot.as_bytes());
            if let Err(e) = link.nodes.put(&*self.node, boot).await {
                warn!(error = %e, "cannot renew this node's lease");
                continue;
            }
            self.sweep().await;
            self.save_watermark();
        }
        self.save_watermark();
        // A clean stop: the others need not wait for the lease to run out.
        let _ = link.nodes.delete(&*self.node).await;
        let gone = Body::Gone {
            gone: self.node.to_string(),
            keep: None,
        };
        let _ = self.publish(self.names.nodes_subject(), gone, None).await;
    }

    /// Announces every dead node the rooms or the nick mirror still name.
    async fn sweep(&self) {
        let Some(chat) = self.chat() else {
            return;
        };
        let mut named: BTreeSet<(Arc<str>, Uuid)> = BTreeSet::new();
        for room in chat.all_rooms() {
            named.extend(room.remote_nodes());
        }
        {
            let mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
            named.extend(
                mirror
                    .values()
                    .map(|m| (Arc::<str>::from(m.holder.node.as_str()), m.holder.boot)),
            );
        }
        for (node, boot) in named {
            match self.alive(&node, boot).await {
                Ok(true) => {}
                Ok(false) => {
                    let keep = self.current_run(&node).await;
                    let gone = Body::Gone {
                        gone: node.to_string(),
                        keep,
                    };
                    if let Err(e) = self.publish(self.names.nodes_subject(), gone, None).await {
                        warn!(error = %e, "cannot announce a dead node");
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// The run of `node` holding its lease now, if any.
    async fn current_run(&self, node: &str) -> Option<Uuid> {
        if node == &*self.node {
            return Some(self.boot);
        }
        let link = self.link.get()?;
        let value = link.nodes.get(node).await.ok()??;
        Uuid::from_slice(&value).ok()
    }
}
