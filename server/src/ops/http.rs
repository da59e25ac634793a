//! The admin listener: a small axum app on its own port (`--admin-listen`), in its own
//! task, stopped after the chat server has drained. Nothing here is reachable from the
//! chat port, and nothing here shows a message's text or a password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Phase;
use crate::chat::Chat;
use crate::path::Room;

/// How often every connection's send queue is sampled into `chat_sendq_bytes`, and the
/// rooms' message rates are taken.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
struct App {
    ops: Arc<super::Ops>,
    /// Set once the server has built its chat state (the listener is up before).
    chat: Arc<OnceLock<Arc<Chat>>>,
    /// Per room: its message count at the last sample, and the rate since the one before.
    rates: Arc<Mutex<Rates>>,
}

#[derive(Default)]
struct Rates {
    at: Option<Instant>,
    counts: HashMap<String, u64>,
    per_second: HashMap<String, f64>,
}

/// Serves the admin endpoints on `listener` until `stop`, sampling meanwhile.
pub(crate) async fn serve(
    listener: TcpListener,
    ops: Arc<super::Ops>,
    chat: Arc<OnceLock<Arc<Chat>>>,
    stop: CancellationToken,
) {
    let app = App {
        ops,
        chat,
        rates: Arc::default(),
    };
    let sampler = tokio::spawn(sample(app.clone(), stop.clone()));
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/clients", get(clients))
        .route("/rooms", get(rooms))
        .with_state(app);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the admin listener failed");
    }
    sampler.abort();
}

/// Samples every connection's send queue and the rooms' message counts.
async fn sample(app: App, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ops = &app.ops;
        let chat = app.chat.get();
        let unread = chat.map(|chat| unread(chat)).unwrap_or_default();
        for conn in ops.connections() {
            let sendq = conn.sendq() + unread.get(&conn.id).copied().unwrap_or(0);
            ops.metrics.sendq_bytes.observe(sendq as f64);
        }
        let Some(chat) = chat else {
            continue;
        };
        let now = Instant::now();
        let counts: HashMap<String, u64> = chat
            .all_rooms()
            .iter()
            .map(|r| (r.name().to_string(), r.message_count()))
            .collect();
        let mut rates = app.rates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = rates.at {
            let secs = (now - at).as_secs_f64().max(1e-3);
            let per_second = counts
                .iter()
                .map(|(room, &n)| {
                    let before = rates.counts.get(room).copied().unwrap_or(0);
                    (room.clone(), n.saturating_sub(before) as f64 / secs)
                })
                .collect();
            rates.per_second = per_second;
        }
        rates.at = Some(now);
        rates.counts = counts;
    }
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let ops = &app.ops;
    let m = &ops.metrics;
    if let Some(chat) = app.chat.get() {
        m.sessions.set(gauge(chat.session_count()));
        m.rooms.set(gauge(chat.room_count()));
        if let Some(peers) = &chat.peers {
            let stats = peers.stats();
            let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            m.cluster_behind.set(g(stats.behind));
            m.cluster_published.set(g(stats.published));
            m.cluster_publishes.set(g(stats.publishes));
            m.cluster_publish_micros.set(g(stats.publish_micros));
            m.cluster_conflicts.set(g(stats.conflicts));
            m.cluster_backfill_kept.set(g(stats.backfill_kept));
            m.cluster_backfill_left.set(g(stats.backfill_left));
        }
    }
    m.store_unsaved.set(gauge(ops.unsaved()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// 200 while the server accepts connections.
async fn healthz(State(app): State<App>) -> (StatusCode, &'static str) {
    match app.ops.phase() {
        Phase::Serving => (StatusCode::OK, "ok\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

/// 200 when the store is usable too; 503 with the reason otherwise.
async fn readyz(State(app): State<App>) -> (StatusCode, String) {
    match app.ops.not_ready() {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Every local member of every room, with what it has not read yet of the room's feed
/// (with its sink's queue, its send queue).
fn each_member(chat: &Chat, mut f: impl FnMut(&Room, Uuid, usize)) {
    for room in chat.all_rooms() {
        for (id, behind) in room.member_backlogs() {
            f(&room, id, behind);
        }
    }
}

/// What each session has not read yet of its rooms' feeds.
fn unread(chat: &Chat) -> HashMap<Uuid, usize> {
    let mut unread: HashMap<Uuid, usize> = HashMap::new();
    each_member(chat, |_, id, behind| {
        *unread.entry(id).or_default() += behind
    });
    unread
}

#[derive(Debug, Deserialize)]
struct ClientsQuery {
    /// `sendq`: the largest send queue first. Otherwise the oldest connection first.
    sort: Option<String>,
    limit: Option<usize>,
}

/// One connection as `/clients` lists it.
#[derive(Debug, Serialize)]
struct Client {
    id: Uuid,
    nick: Option<String>,
    peer: String,
    mode: &'static str,
    tls: bool,
    rooms: Vec<String>,
    /// Unix ms.
    connected_since: i64,
    bytes_in: u64,
    bytes_out: u64,
    sendq_bytes: usize,
    lagged: u64,
}

async fn clients(State(app): State<App>, Query(q): Query<ClientsQuery>) -> Json<Vec<Client>> {
    let Some(chat) = app.chat.get() else {
        return Json(Vec::new());
    };
    let nicks: HashMap<Uuid, String> = chat
        .sessions()
        .into_iter()
        .map(|(id, nick)| (id, nick.to_string()))
        .collect();
    let mut rooms: HashMap<Uuid, Vec<String>> = HashMap::new();
    let mut unread: HashMap<Uuid, usize> = HashMap::new();
    each_member(chat, |room, id, behind| {
        rooms.entry(id).or_default().push(room.name().to_string());
        *unread.entry(id).or_default() += behind;
    });
    let mut list: Vec<Client> = app
        .ops
        .connections()
        .iter()
        .map(|c| {
            let mut in_rooms = rooms.remove(&c.id).unwrap_or_default();
            in_rooms.sort();
            Client {
                id: c.id,
                nick: nicks.get(&c.id).cloned(),
                peer: c.peer.to_string(),
                mode: c.mode.as_str(),
                tls: c.tls,
                rooms: in_rooms,
                connected_since: c.since_ms,
                bytes_in: c.bytes_in(),
                bytes_out: c.bytes_out(),
                sendq_bytes: c.sendq() + unread.get(&c.id).copied().unwrap_or(0),
                lagged: c.lagged_count(),
            }
        })
        .collect();
    if q.sort.as_deref() == Some("sendq") {
        list.sort_by_key(|c| std::cmp::Reverse(c.sendq_bytes));
    } else {
        list.sort_by_key(|c| (c.connected_since, c.id));
    }
    if let Some(limit) = q.limit {
        list.truncate(limit);
    }
    Json(list)
}

/// One room as `/rooms` lists it.
#[derive(Debug, Serialize)]
struct RoomRow {
    name: String,
    members: usize,
    /// Messages shown since the room was loaded.
    messages: u64,
    /// Over the last sampling interval (0 until two samples were taken).
    messages_per_second: f64,
}

async fn rooms(State(app): State<App>) -> Json<Vec<RoomRow>> {
    let Some(chat) = app.chat.get() else {
        return Json(Vec::new());
    };
    let per_second = app
        .rates
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .per_second
        .clone();
    let mut list: Vec<RoomRow> = chat
        .all_rooms()
        .iter()
        .map(|r| {
            let name = r.name().to_string();
            RoomRow {
                members: r.member_count(),
                messages: r.message_count(),
                messages_per_second: per_second.get(&name).copied().unwrap_or(0.0),
                name,
            }
        })
        .collect();
    list.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
    Json(list)
}
