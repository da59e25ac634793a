//! The metric families of `/metrics`, each registered once per server with its handles
//! resolved up front: the hot path holds a cloned handle (an `Arc` of an atomic) and pays
//! one atomic add per count, never a registry lookup or a label hash.
//!
//! Every family and every label value the server can produce exists from the start, at
//! zero, as Prometheus advises (a series that appears only once something happens makes
//! `rate()` and alerts on absence lie). Values that are cheaper to read than to track
//! (sessions, rooms, the store's backlog) are gauges set at scrape time.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use chat_shared::ByeReason;

use super::Mode;

/// Why a connection ended, as `chat_disconnects_total{reason}` names it: the `bye` reasons,
/// and `closed` for a client that left (quit, or its socket closed) without one.
pub(crate) const DISCONNECT_REASONS: &[&str] = &[
    "closed",
    "shutdown",
    "flood",
    "too_slow",
    "timeout",
    "handshake_timeout",
    "frame_too_large",
    "bad_requests",
    "replaced",
    "killed",
    "banned",
];

/// The label `reason` for a `bye` reason.
pub(crate) fn disconnect_reason(reason: Option<ByeReason>) -> &'static str {
    match reason {
        None | Some(ByeReason::Quit | ByeReason::Other) => "closed",
        Some(r) => DISCONNECT_REASONS
            .iter()
            .copied()
            .find(|&known| known == r.as_str())
            .unwrap_or("closed"),
    }
}

/// Handles the room path counts with (cloned into every room; cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct PathCounters {
    /// `chat_messages_total{kind="room"}`.
    pub(crate) room_messages: Counter,
    /// `chat_deliveries_total`.
    pub(crate) deliveries: Counter,
    /// `chat_delivery_seconds`.
    pub(crate) delivery_seconds: DeliveryHistogram,
    /// `chat_lagged_total`.
    pub(crate) lagged: Counter,
}

/// A histogram with the delivery buckets (a newtype so `PathCounters` can be `Default`:
/// rooms built without a server, in unit tests, count into a detached one).
#[derive(Debug, Clone)]
pub(crate) struct DeliveryHistogram(pub(crate) Histogram);

impl Default for DeliveryHistogram {
    fn default() -> Self {
        // 10 µs .. ~0.33 s: local fan-out is microseconds; the tail is a placed message
        // waiting for its commit.
        Self(Histogram::new(exponential_buckets(1e-5, 2.0, 16)))
    }
}

/// Why an upload ended without a share, as `chat_file_uploads_failed_total{reason}` names it.
pub(crate) const UPLOAD_FAILURES: &[&str] = &["checksum", "disk", "not_shared"];

/// What file sharing counts (see `crate::files`).
#[derive(Debug, Clone, Default)]
pub(crate) struct FileCounters {
    /// `chat_file_upload_bytes_total`: bytes of uploads written to disk.
    pub(crate) upload_bytes: Counter,
    /// `chat_files_shared_total`.
    pub(crate) shared: Counter,
    /// `chat_file_uploads_failed_total{reason}`, in the order of [`UPLOAD_FAILURES`].
    pub(crate) failed: Vec<Counter>,
    /// `chat_file_downloads_total`: downloads answered with the file (or a range of it).
    pub(crate) downloads: Counter,
}

impl FileCounters {
    /// Counts an upload that ended without a share.
    pub(crate) fn failed(&self, reason: &str) {
        if let Some(i) = UPLOAD_FAILURES.iter().position(|&r| r == reason) {
            self.failed[i].inc();
        }
    }
}

/// What the store's writer thread reports.
#[derive(Debug, Clone)]
pub(crate) struct StoreCounters {
    /// `chat_store_commit_seconds`.
    pub(crate) commit_seconds: Histogram,
    /// `chat_store_batch_messages`.
    pub(crate) batch_messages: Histogram,
}

impl Default for StoreCounters {
    fn default() -> Self {
        Self {
            // 100 µs .. ~3 s: an fsync on a fast disk, up to a stalled one.
            commit_seconds: Histogram::new(exponential_buckets(1e-4, 2.0, 16)),
            // 1 .. 4096 messages per commit.
            batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// Every family, by handle.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `chat_connections{mode}`, indexed by [`Mode`].
    pub(crate) connections: [Gauge; 3],
    /// `chat_connections_total{mode}`.
    pub(crate) connections_total: [Counter; 3],
    /// `chat_disconnects_total{reason}`, in the order of [`DISCONNECT_REASONS`].
    pub(crate) disconnects: Vec<Counter>,
    pub(crate) sessions: Gauge,
    pub(crate) rooms: Gauge,
    pub(crate) dm_messages: Counter,
    pub(crate) path: PathCounters,
    pub(crate) rate_limited: Counter,
    pub(crate) auth_failures: Counter,
    pub(crate) store: StoreCounters,
    pub(crate) store_unsaved: Gauge,
    /// Cluster mode: stream messages not yet applied here, messages published, their
    /// total time to be stored by JetStream, and `seq` conflicts with other nodes.
    pub(crate) cluster_behind: Gauge,
    pub(crate) cluster_published: Gauge,
    pub(crate) cluster_publishes: Gauge,
    pub(crate) cluster_publish_micros: Gauge,
    pub(crate) cluster_conflicts: Gauge,
    /// Cluster mode: a new node's backfill of its store (older messages kept, stream
    /// sequences left to read).
    pub(crate) cluster_backfill_kept: Gauge,
    pub(crate) cluster_backfill_left: Gauge,
    /// `chat_sendq_bytes`: every connection's send queue, sampled periodically.
    pub(crate) sendq_bytes: Histogram,
    pub(crate) files: FileCounters,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        use prometheus_client::metrics::family::Family;
        let mut registry = Registry::default();
        let path = PathCounters::default();
        let store = StoreCounters::default();

        let connections = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        let connections_total = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let mode = |m: Mode| [("mode", m.as_str())];
        let by_mode = Mode::ALL.map(|m| connections.get_or_create_owned(&mode(m)));
        let total_by_mode = Mode::ALL.map(|m| connections_total.get_or_create_owned(&mode(m)));
        registry.register(
            "chat_connections",
            "Open client connections by wire mode",
            connections,
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "chat_connections",
            "Client connections accepted by wire mode (counted once the mode is known)",
            connections_total,
        );
        let disconnects_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let disconnects = DISCONNECT_REASONS
            .iter()
            .map(|&r| disconnects_family.get_or_create_owned(&[("reason", r)]))
            .collect();
        registry.register(
            "chat_disconnects",
            "Connections ended, by the bye reason the client was given (closed: none)",
            disconnects_family,
        );
        let sessions = Gauge::default();
        registry.register(
            "chat_sessions",
            "Registered sessions (clients holding a nick)",
            sessions.clone(),
        );
        let rooms = Gauge::default();
        registry.register("chat_rooms", "Rooms kept in memory", rooms.clone());
        let messages = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let _ = messages.get_or_create_owned(&[("kind", "room")]);
        let dm_messages = messages.get_or_create_owned(&[("kind", "dm")]);
        // The rooms count into the family's own `room` series.
        let room_messages = messages.get_or_create_owned(&[("kind", "room")]);
        registry.register(
            "chat_messages",
            "Messages accepted, by kind (room, dm)",
            messages,
        );
        let path = PathCounters {
            room_messages,
            ..path
        };
        registry.register(
            "chat_deliveries",
            "Room messages queued for a local recipient (the sender's own copy included)",
            path.deliveries.clone(),
        );
        registry.register(
            "chat_lagged",
            "Lagged notices sent: gaps of missed room messages, one per room per gap",
            path.lagged.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "chat_rate_limited",
            "Messages refused with rate_limited (per-connection rate or a store backlog)",
            rate_limited.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "chat_auth_failures",
            "Failed logins (wrong password)",
            auth_failures.clone(),
        );
        registry.register_with_unit(
            "chat_delivery",
            "From accepting a room message until it is queued for its last local recipient",
            Unit::Seconds,
            path.delivery_seconds.0.clone(),
        );
        registry.register_with_unit(
            "chat_store_commit",
            "Duration of one group commit of the store",
            Unit::Seconds,
            store.commit_seconds.clone(),
        );
        registry.register(
            "chat_store_batch_messages",
            "Messages written by one group commit",
            store.batch_messages.clone(),
        );
        let store_unsaved = Gauge::default();
        registry.register(
            "chat_store_unsaved",
            "Messages accepted and not yet durable",
            store_unsaved.clone(),
        );
        let cluster_behind = Gauge::default();
        registry.register(
            "chat_cluster_behind_messages",
            "Cluster mode: stream messages this node has not applied yet",
            cluster_behind.clone(),
        );
        let cluster_published = Gauge::default();
        registry.register(
            "chat_cluster_published_messages",
            "Cluster mode: room messages this node published to JetStream",
            cluster_published.clone(),
        );
        let cluster_publishes = Gauge::default();
        registry.register(
            "chat_cluster_publishes",
            "Cluster mode: stream messages those went out in (queued messages go as one)",
            cluster_publishes.clone(),
        );
        let cluster_publish_micros = Gauge::default();
        registry.register(
            "chat_cluster_publish_microseconds",
            "Cluster mode: total time JetStream took to store those stream messages",
            cluster_publish_micros.clone(),
        );
        let cluster_conflicts = Gauge::default();
        registry.register(
            "chat_cluster_seq_conflicts",
            "Cluster mode: messages published again because another node took their seq",
            cluster_conflicts.clone(),
        );
        let cluster_backfill_kept = Gauge::default();
        registry.register(
            "chat_cluster_backfill_kept_messages",
            "Cluster mode: older room messages a new node's backfill wrote into its store",
            cluster_backfill_kept.clone(),
        );
        let cluster_backfill_left = Gauge::default();
        registry.register(
            "chat_cluster_backfill_left_sequences",
            "Cluster mode: stream sequences a new node's backfill has yet to read (0: done, \
             or nothing to backfill)",
            cluster_backfill_left.clone(),
        );
        // 256 B .. 16 MiB: an idle connection's queue is empty (the zero bucket is 256).
        let sendq_bytes = Histogram::new(exponential_buckets(256.0, 4.0, 9));
        registry.register_with_unit(
            "chat_sendq",
            "Bytes queued for each connection and not yet written, sampled periodically",
            Unit::Bytes,
            sendq_bytes.clone(),
        );
        let files = FileCounters::default();
        registry.register(
            "chat_file_upload_bytes",
            "Bytes of file uploads written to disk",
            files.upload_bytes.clone(),
        );
        registry.register(
            "chat_files_shared",
            "Uploads verified and shared in a room or DM",
            files.shared.clone(),
        );
        let failed_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let files = FileCounters {
            failed: UPLOAD_FAILURES
                .iter()
                .map(|&r| failed_family.get_or_create_owned(&[("reason", r)]))
                .collect(),
            ..files
        };
        registry.register(
            "chat_file_uploads_failed",
            "Finished or written uploads that were not shared, by reason (checksum: the \
             whole file's SHA-256 was not the one announced; disk: it could not be written or \
             kept; not_shared: its uploader or target was gone)",
            failed_family,
        );
        registry.register(
            "chat_file_downloads",
            "Downloads answered with the file or a range of it",
            files.downloads.clone(),
        );
        Self {
            registry,
            connections: by_mode,
            connections_total: total_by_mode,
            disconnects,
            sessions,
            rooms,
            dm_messages,
            path,
            rate_limited,
            auth_failures,
            store,
            store_unsaved,
            cluster_behind,
            cluster_published,
            cluster_publishes,
            cluster_publish_micros,
            cluster_conflicts,
            cluster_backfill_kept,
            cluster_backfill_left,
            sendq_bytes,
            files,
        }
    }

    /// Counts a disconnect by its label.
    pub(crate) fn disconnected(&self, reason: &str) {
        if let Some(i) = DISCONNECT_REASONS.iter().position(|&r| r == reason) {
            self.disconnects[i].inc();
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus scrapes natively).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_there_at_zero_from_the_start() {
        let text = Metrics::new().encode();
        for name in [
            "chat_connections{mode=\"framed\"} 0",
            "chat_connections{mode=\"irc\"} 0",
            "chat_connections_total{mode=\"line\"} 0",
            "chat_disconnects_total{reason=\"closed\"} 0",
            "chat_disconnects_total{reason=\"too_slow\"} 0",
            "chat_sessions 0",
            "chat_rooms 0",
            "chat_messages_total{kind=\"room\"} 0",
            "chat_messages_total{kind=\"dm\"} 0",
            "chat_deliveries_total 0",
            "chat_lagged_total 0",
            "chat_rate_limited_total 0",
            "chat_auth_failures_total 0",
            "chat_delivery_seconds_count 0",
            "chat_store_commit_seconds_count 0",
            "chat_store_batch_messages_count 0",
            "chat_store_unsaved 0",
            "chat_sendq_bytes_count 0",
            "chat_file_upload_bytes_total 0",
            "chat_files_shared_total 0",
            "chat_file_uploads_failed_total{reason=\"checksum\"} 0",
            "chat_file_downloads_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn a_bye_reason_maps_to_its_label() {
        assert_eq!(disconnect_reason(None), "closed");
        assert_eq!(disconnect_reason(Some(ByeReason::Quit)), "closed");
        assert_eq!(disconnect_reason(Some(ByeReason::TooSlow)), "too_slow");
        for r in DISCONNECT_REASONS {
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
