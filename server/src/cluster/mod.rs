//! Cluster mode: several nodes share rooms, nicks and presence through NATS JetStream.
//!
//! This is the JetStream producer of the rooms' ordered path (see `path/remote.rs`, the
//! seam). Room events are published to one stream; every node consumes the whole stream in
//! its order and applies each event to its rooms, so members on every node see one order
//! and one `seq` per room. A message's `seq` is given by its publisher with optimistic
//! concurrency: the publish states the stream sequence of the room's last message
//! (`Nats-Expected-Last-Subject-Sequence`), so two nodes can never give one `seq` twice;
//! the loser reads the room's last message and tries again. A message is acknowledged to
//! its sender by the stream delivering it back, after JetStream stored it.
//!
//! Nicks are claimed in a key-value bucket (create if absent); a claim is held by its
//! node's lease, an entry in another bucket that expires unless the node renews it. A node
//! whose lease is gone is dead: its nicks may be claimed again and its members leave every
//! room (`lease.rs`).
//!
//! Layout:
//! - this file: [`Cluster`], setting it up, whether NATS can be reached now;
//! - `names`: the stream, buckets and subjects;
//! - `record`: what a stream message carries;
//! - `publish`: one publisher per room, giving messages their `seq`;
//! - `consume`: reading the stream (a snapshot of presence, then everything new) into the
//!   rooms;
//! - `backfill`: a new node's store filled with the stream's older messages;
//! - `nicks`: claims, releases, taking a nick over for a login, and the mirror of who
//!   holds which nick;
//! - `lease`: this node's lease, and sweeping dead nodes.

mod backfill;
mod consume;
mod lease;
mod names;
mod nicks;
mod publish;
mod record;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tokio::sync::mpsc;
use tracing::{info, warn};
use uuid::Uuid;

use chat_shared::{Nick, ServerMsg};
use futures::future::BoxFuture;

use crate::chat::{Chat, ChatError, Peers};
use crate::config::ClusterConfig;
use crate::event::Event;
use crate::path::producer::{Backfilled, PostError};
use crate::path::sink::Sink;
use crate::path::{Invitation, Presence, Room, RoomProducer};
use names::Names;
pub(crate) use names::{valid_node, valid_prefix};
use publish::Post;
use record::{Body, Record};
pub(crate) use shared::SharedDocs;

/// The handles of a set-up cluster: the stream and the buckets exist.
#[derive(Debug, Clone)]
struct Link {
    js: jetstream::Context,
    stream: stream::Stream,
    nicks: kv::Store,
    nodes: kv::Store,
}

/// This node's membership of the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    cfg: ClusterConfig,
    /// The stream's limits: `--retain-days` and `--retain-per-room`.
    retention: (Option<u32>, Option<u64>),
    /// This node's name, and this run of it: members and nicks name both, so a restarted
    /// node's leftovers are told from its current ones.
    node: Arc<str>,
    boot: Uuid,
    names: Names,
    link: OnceLock<Link>,
    /// The NATS connection is up (its event callback says).
    connected: Arc<AtomicBool>,
    /// Set up and consuming (with `connected`: what `/readyz` reports).
    ready: Arc<AtomicBool>,
    /// Told when the connection comes back: the consumer is recreated then, rather than
    /// when it notices that its consumer is gone (NATS may have lost it).
    reconnected: Arc<tokio::sync::Notify>,
    chat: OnceLock<Weak<Chat>>,
    /// Accounts and settings shared through buckets (see `shared.rs`).
    docs: OnceLock<Arc<SharedDocs>>,
    /// The newest messages record of each room this node has consumed: (its last `seq`,
    /// its stream sequence), by room skeleton. A publisher starts from it when it is newer
    /// than what it knows, so it rarely expects a stale last message (a conflict costs a
    /// read and a second publish).
    heads: Mutex<HashMap<String, (u64, u64)>>,
    /// Told whenever a head moves: a publisher whose message met another node's waits for
    /// that one to reach its head (see `publish::newer_head`).
    heads_moved: tokio::sync::Notify,
    /// One publisher per room with local activity, by room skeleton.
    publishers: Mutex<HashMap<String, mpsc::UnboundedSender<Post>>>,
    /// The rename being told, and who was told of it: a rename comes once per room the
    /// renamed member is in, and the renames of one member come in one run.
    renames: Mutex<((Uuid, i64), std::collections::HashSet<Uuid>)>,
    /// Who holds which nick, cluster-wide (the nick bucket, watched).
    mirror: Mutex<HashMap<String, nicks::Mirrored>>,
    /// The newest stream sequence applied here, and the stream's last one as last seen:
    /// how far behind this node is.
    applied: AtomicU64,
    behind: AtomicU64,
    /// Messages that met another node's message for the same `seq` and were published
    /// again, and the time JetStream took to store messages: the cluster path's cost.
    conflicts: AtomicU64,
    /// The stream sequence up to which this node's store holds the stream's messages (its
    /// replica); saved, so a restart goes on from there.
    replicated: Arc<AtomicU64>,
    /// A new node's backfill of its store: what the store settled of it, and the stream
    /// sequences it has yet to read (0: done, or none to do).
    backfilled: Arc<Backfilled>,
    backfill_left: AtomicU64,
    published: AtomicU64,
    publishes: AtomicU64,
    publish_micros: AtomicU64,
}

/// The settings key of the replica's watermark.
const WATERMARK: &str = "cluster/replicated";

/// How long a starting node waits between attempts to set the cluster up.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// A key-value bucket keeping one value per key (entries older than `max_age` expire;
/// zero: never), created if it does not exist.
///
/// Made as its backing stream, with what `create_key_value` would give it: async-nats
/// 0.51's `create_key_value` first reads the account's info, which it cannot parse from a
/// nats-server 2.9 (Debian's), so it is not used.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    let duplicate_window = if max_age.is_zero() {
        Duration::from_secs(120)
    } else {
        max_age.min(Duration::from_secs(120))
    };
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        duplicate_window,
        ..stream::Config::default()
    })
    .await?;
    Ok(js.get_key_value(name).await?)
}

impl Cluster {
    /// A node of the cluster `cfg` describes; nothing is connected until [`Cluster::start`].
    ///
    /// # Errors
    /// The node's name or the prefix cannot be used in NATS.
    pub(crate) fn new(
        cfg: ClusterConfig,
        retention: (Option<u32>, Option<u64>),
    ) -> anyhow::Result<Self> {
        if !valid_node(&cfg.node) {
            anyhow::bail!(
                "--node {:?}: a node's name is 1 to 64 letters, digits, - or _",
                cfg.node
            );
        }
        if !valid_prefix(&cfg.prefix) {
            anyhow::bail!(
                "--cluster-prefix {:?}: 1 to 32 letters, digits or _",
                cfg.prefix
            );
        }
        Ok(Self {
            retention,
            node: cfg.node.as_str().into(),
            boot: Uuid::new_v4(),
            names: Names::new(&cfg.prefix),
            cfg,
            link: OnceLock::new(),
            connected: Arc::default(),
            ready: Arc::default(),
            reconnected: Arc::default(),
            chat: OnceLock::new(),
            docs: OnceLock::new(),
            publishers: Mutex::default(),
            heads: Mutex::default(),
            heads_moved: tokio::sync::Notify::new(),
            renames: Mutex::default(),
            mirror: Mutex::default(),
            applied: AtomicU64::new(0),
            behind: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            replicated: Arc::default(),
            backfilled: Arc::default(),
            backfill_left: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            publish_micros: AtomicU64::new(0),
        })
    }

    /// Shares this node's accounts and settings through the cluster (before `start`).
    pub(crate) fn share(&self, docs: Arc<SharedDocs>) {
        let _ = self.docs.set(docs);
    }

    /// Whether the cluster can take new events now.
    pub(crate) fn available(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.connected.load(Ordering::Acquire)
    }

    /// How many stream messages this node has yet to apply.
    pub(crate) fn lag(&self) -> u64 {
        self.behind.load(Ordering::Relaxed)
    }

    fn chat(&self) -> Option<Arc<Chat>> {
        self.chat.get().and_then(Weak::upgrade)
    }

    /// Connects (retrying until NATS answers), creates the stream and buckets if they do
    /// not exist, reads the cluster's presence, and consumes the stream until `cancel`.
    /// Runs in the background: the node serves its connections meanwhile, refusing what
    /// needs the cluster with `unavailable`.
    pub(crate) fn start(
        self: &Arc<Self>,
        chat: &Arc<Chat>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let _ = self.chat.set(Arc::downgrade(chat));
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let link = loop {
                match this.connect().await {
                    Ok(link) => break link,
                    Err(e) => {
                        warn!(error = %e, "cannot set the cluster up yet; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(SETUP_RETRY) => {}
                            () = cancel.cancelled() => return,
                        }
                    }
                }
            };
            let _ = this.link.set(link);
            tokio::spawn(Arc::clone(&this).lease_until(cancel.clone()));
            tokio::spawn(Arc::clone(&this).watch_nicks(cancel.clone()));
            tokio::spawn(Arc::clone(&this).watch_docs(cancel.clone()));
            Arc::clone(&this).consume_until(cancel).await;
        });
    }

    async fn connect(&self) -> anyhow::Result<Link> {
        let connected = Arc::clone(&self.connected);
        let ready = Arc::clone(&self.ready);
        let reconnected = Arc::clone(&self.reconnected);
        let client = async_nats::ConnectOptions::new()
            .name(format!("chat-server {}", self.node))
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let (connected, ready) = (Arc::clone(&connected), Arc::clone(&ready));
                let reconnected = Arc::clone(&reconnected);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("connected to NATS");
                            connected.store(true, Ordering::Release);
                            reconnected.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            warn!("lost NATS: new messages are refused until it is back");
                            connected.store(false, Ordering::Release);
                        }
                        async_nats::Event::Closed => {
                            connected.store(false, Ordering::Release);
                            ready.store(false, Ordering::Release);
                        }
                        other => info!(event = %other, "NATS"),
                    }
                }
            })
            .connect(self.cfg.urls.clone())
            .await?;
        self.connected.store(true, Ordering::Release);
        let mut js = jetstream::new(client);
        js.set_timeout(self.cfg.publish_timeout);
        let replicas = self.cfg.replicas;
        let wanted = stream::Config {
            name: self.names.stream.clone(),
            subjects: vec![self.names.all()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            // Resends within this window are dropped by JetStream itself.
            duplicate_window: Duration::from_secs(120),
            // Retention as on one node: --retain-days and --retain-per-room (none: keep).
            max_age: self.retention.0.map_or(Duration::ZERO, |d| {
                Duration::from_secs(u64::from(d) * 86_400)
            }),
            max_messages_per_subject: self
                .retention
                .1
                .and_then(|n| i64::try_from(n).ok())
                .unwrap_or(-1),
            allow_direct: true,
            ..stream::Config::default()
        };
        let mut stream = js.get_or_create_stream(wanted.clone()).await?;
        let have = &stream.info().await?.config;
        if have.max_age != wanted.max_age
            || have.max_messages_per_subject != wanted.max_messages_per_subject
        {
            info!("the stream's retention changed with the flags: updating it");
            js.update_stream(&wanted).await?;
            stream = js.get_stream(&self.names.stream).await?;
        }
        let nicks = bucket(&js, &self.names.nicks, Duration::ZERO, replicas).await?;
        let nodes = bucket(&js, &self.names.nodes, self.cfg.lease, replicas).await?;
        if let Some(docs) = self.docs.get() {
            docs.connect(shared::Buckets {
                settings: bucket(&js, &self.names.settings, Duration::ZERO, replicas).await?,
                accounts: bucket(&js, &self.names.accounts, Duration::ZERO, replicas).await?,
            });
        }
        info!(
            node = %self.node,
            stream = %self.names.stream,
            "cluster set up"
        );
        Ok(Link {
            js,
            stream,
            nicks,
            nodes,
        })
    }

    /// Publishes a record that needs no place among a room's messages (a DM, a node
    /// notice), waiting for JetStream to store it.
    async fn publish(&self, subject: String, body: Body, id: Option<String>) -> anyhow::Result<()> {
        let link = self
            .link
            .get()
            .ok_or_else(|| anyhow::anyhow!("not set up"))?;
        let record = Record {
            node: self.node.to_string(),
            boot: self.boot,
            body,
        };
        let mut publish = jetstream::message::PublishMessage::build().payload(record.encode());
        if let Some(id) = id {
            publish = publish.message_id(id);
        }
        let ack = link.js.send_publish(subject, publish).await?;
        tokio::time::timeout(self.cfg.publish_timeout, ack).await??;
        Ok(())
    }

    /// The newest consumed messages record of the room with this skeleton.
    fn head(&self, skeleton: &str) -> Option<(u64, u64)> {
        self.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(skeleton)
            .copied()
    }

    fn set_head(&self, skeleton: String, seq: u64, stream_seq: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        let head = heads.entry(skeleton).or_insert((seq, stream_seq));
        if seq >= head.0 {
            *head = (seq, stream_seq);
        }
        drop(heads);
        self.heads_moved.notify_waiters();
    }

    /// The publisher of `room`, started the first time.
    fn publisher(self: &Arc<Self>, room: &Arc<Room>) -> mpsc::UnboundedSender<Post> {
        let key = room.name().skeleton();
        let mut publishers = self.publishers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = publishers.get(&key).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish::run(Arc::clone(self), Arc::clone(room), rx));
        publishers.insert(key, tx.clone());
        tx
    }

    /// Where the replica ended when it was last saved (`None`: no store, or never saved).
    fn saved_watermark(&self) -> Option<u64> {
        self.saved(WATERMARK)?.parse().ok()
    }

    /// Saves where the replica ends.
    fn save_watermark(&self) {
        let at = self.replicated.load(Ordering::Acquire);
        if at != 0 {
            self.save(WATERMARK, at.to_string());
        }
    }

    /// The value this node saved at `key` (`None`: no store, or never saved).
    fn saved(&self, key: &str) -> Option<String> {
        let chat = self.chat()?;
        chat.moderation.store.as_ref()?.get(key).ok()?
    }

    /// Saves `value` at `key`, through the settings' writer (off this task, in order).
    fn save(&self, key: &str, value: String) {
        if let Some(chat) = self.chat()
            && let Some(writer) = &chat.moderation.writer
        {
            writer.put(key.to_owned(), Some(value));
        }
    }

    /// `messages` were stored by JetStream in one publish, which took `took`.
    fn observe_publish(&self, took: Duration, messages: u64) {
        self.published.fetch_add(messages, Ordering::Relaxed);
        self.publishes.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.publish_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// The cluster path's counters, for `/metrics`.
    pub(crate) fn publish_stats(&self) -> crate::chat::ClusterStats {
        crate::chat::ClusterStats {
            behind: self.lag(),
            published: self.published.load(Ordering::Relaxed),
            publishes: self.publishes.load(Ordering::Relaxed),
            publish_micros: self.publish_micros.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            backfill_kept: self.backfilled.kept.load(Ordering::Relaxed),
            backfill_left: self.backfill_left.load(Ordering::Relaxed),
        }
    }

    fn unavailable() -> PostError {
        PostError::Unavailable("NATS cannot be reached".into())
    }
}

impl crate::ops::Reachable for Cluster {
    fn reachable(&self) -> bool {
        self.available()
    }
}

/// The cluster as the chat state and the rooms see it: each room's events go through its
/// publisher, in the order they were posted; nicks and DMs go straight to NATS.
#[derive(Debug, Clone)]
pub(crate) struct Handle(pub(crate) Arc<Cluster>);

impl Peers for Handle {
    fn claim<'a>(&'a self, nick: &'a Nick, session: Uuid) -> BoxFuture<'a, Result<(), ChatError>> {
        Box::pin(self.0.claim(nick, session))
    }

    fn take<'a>(&'a self, nick: &'a Nick, session: Uuid) -> BoxFuture<'a, Result<(), ChatError>> {
        Box::pin(self.0.take(nick, session))
    }

    fn release(&self, nick: &Nick, session: Uuid) {
        self.0.release(nick, session);
    }

    fn holder(&self, skeleton: &str) -> Option<(Nick, Uuid)> {
        let h = self.0.holder(skeleton)?;
        Some((Nick::parse(&h.nick).ok()?, h.session))
    }

    fn dm(&self, event: Arc<Event>, to: Uuid, sender: Arc<Sink>) -> Result<(), ChatError> {
        if !self.0.available() {
            return Err(ChatError::ClusterUnavailable);
        }
        let ServerMsg::Dm(dm) = &event.msg else {
            return Ok(());
        };
        let body = Body::Dm {
            from: event.origin.unwrap_or_default(),
            to,
            dm: dm.clone(),
        };
        let id = dm.id;
        let cluster = Arc::clone(&self.0);
        let event = Arc::clone(&event);
        tokio::spawn(async move {
            let subject = cluster.names.dms();
            if let Err(e) = cluster.publish(subject, body, Some(id.to_string())).await {
                if let Some(chat) = cluster.chat() {
                    chat.ids.lock().remove(&id);
                }
                publish::not_delivered(&event, &sender, &e.to_string());
            }
        });
        Ok(())
    }

    fn invite(&self, invitation: Invitation, sender: Arc<Sink>) -> Result<(), ChatError> {
        if !self.0.available() {
            return Err(ChatError::ClusterUnavailable);
        }
        let subject = self
            .0
            .names
            .invites(&chat_shared::validate::name_skeleton(&invitation.room));
        let cluster = Arc::clone(&self.0);
        tokio::spawn(async move {
            if let Err(e) = cluster
                .publish(subject, Body::Invite(invitation), None)
                .await
            {
                let _ = sender.push(&Arc::new(Event::new(
                    ServerMsg::error(
                        chat_shared::ErrorCode::Unavailable,
                        format!("the invitation was not sent: {e}"),
                        None,
                    ),
                    None,
                )));
            }
        });
        Ok(())
    }

    fn rooms(&self) -> Arc<dyn RoomProducer> {
        Arc::new(self.clone())
    }

    fn stats(&self) -> crate::chat::ClusterStats {
        self.0.publish_stats()
    }
}

impl RoomProducer for Handle {
    fn message(
        &self,
        room: &Arc<Room>,
        event: Arc<Event>,
        sender: Arc<Sink>,
    ) -> Result<(), PostError> {
        if !self.0.available() {
            return Err(Cluster::unavailable());
        }
        self.0
            .publisher(room)
            .send(Post::Message { event, sender })
            .map_err(|_| Cluster::unavailable())
    }

    fn presence(&self, room: &Arc<Room>, change: Presence) -> Result<(), PostError> {
        // A part or a rename waits for NATS in the room's publisher (see `publish.rs`).
        if matches!(change, Presence::Joined { .. }) && !self.0.available() {
            return Err(Cluster::unavailable());
        }
        self.0
            .publisher(room)
            .send(Post::Presence(change))
            .map_err(|_| Cluster::unavailable())
    }
}
