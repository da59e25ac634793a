//! Operability: the admin listener (`--admin-listen`) of a real server on `127.0.0.1:0`,
//! scraped over real HTTP while real framed and line clients chat.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{AdminListener, Config};
use common::{Client, Line, TestServer, WAIT, cfg, small_window_stream, spawn_server};

/// A server with an admin listener on a port of its own; returns the admin address.
async fn server_with_admin(config: Config) -> (TestServer, SocketAddr) {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind admin");
    let addr = admin.local_addr().expect("admin addr");
    let srv = spawn_server(Config {
        admin_listener: Some(AdminListener::new(admin)),
        ..config
    })
    .await;
    (srv, addr)
}

/// `GET path` over a fresh connection: the status and the body.
async fn get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    common::admin_get::get(admin, path, WAIT).await
}

/// `/metrics`, parsed by a Prometheus text parser: each sample by name and sorted labels.
async fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(admin, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(
        body.trim_end().ends_with("# EOF"),
        "not OpenMetrics: {body}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    let mut samples = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => {
                continue;
            }
        };
        samples.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    samples
}

/// The first entry of `/clients` whose `key` is `value`, and the whole answer.
async fn client_where(admin: SocketAddr, key: &str, value: &str) -> (serde_json::Value, String) {
    let (status, body) = get(admin, "/clients").await.expect("GET /clients");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let found = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c[key] == value)
        .cloned()
        .unwrap_or_else(|| panic!("no client with {key} {value}: {body}"));
    (found, body)
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing: {:?}", samples.keys().collect::<Vec<_>>()))
}

#[tokio::test]
async fn metrics_move_exactly_as_the_clients_saw_during_a_scripted_chat() {
    const N: usize = 7;
    let (srv, admin) = server_with_admin(cfg()).await;
    let before = scrape(admin).await;
    assert_eq!(value(&before, "chat_deliveries_total{}"), 0.0);
    assert_eq!(value(&before, "chat_connections{mode=irc}"), 0.0);
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    let mut carol = Line::login_seen_by(srv.addr, "carol", &mut alice).await;
    bob.recv_joined("lobby", "carol").await;
    let mid = scrape(admin).await;
    assert_eq!(value(&mid, "chat_connections{mode=framed}"), 2.0);
    assert_eq!(value(&mid, "chat_connections{mode=line}"), 1.0);
    assert_eq!(value(&mid, "chat_connections_total{mode=framed}"), 2.0);
    assert_eq!(value(&mid, "chat_sessions{}"), 3.0);
    assert_eq!(value(&mid, "chat_rooms{}"), 1.0);
    let deliveries = value(&mid, "chat_deliveries_total{}");
    for i in 0..N {
        let text = format!("hello {i}");
        alice.say("lobby", &text).await;
        bob.recv_message("lobby", &text).await;
        carol.read_until(&text, |l| l.contains(text.as_str())).await;
    }
    // One DM, seen by bob.
    alice
        .send(chat_shared::ClientMsg::Dm {
            to: "bob".into(),
            text: "psst".into(),
        })
        .await;
    bob.recv_dm().await;
    let after = scrape(admin).await;
    // Three members each got every message (alice's own copy is her acknowledgement).
    assert_eq!(
        value(&after, "chat_deliveries_total{}") - deliveries,
        (N * 3) as f64
    );
    assert_eq!(value(&after, "chat_messages_total{kind=room}"), N as f64);
    assert_eq!(value(&after, "chat_messages_total{kind=dm}"), 1.0);
    assert_eq!(value(&after, "chat_lagged_total{}"), 0.0);
    assert_eq!(value(&after, "chat_delivery_seconds_count{}"), N as f64);
    bob.quit().await;
    drop(carol);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape(admin).await;
        if value(&m, "chat_connections{mode=line}") == 0.0
            && value(&m, "chat_connections{mode=framed}") == 1.0
        {
            assert_eq!(value(&m, "chat_disconnects_total{reason=closed}"), 2.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "disconnects not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_server_from_start_to_shutdown() {
    let (srv, admin) = server_with_admin(cfg()).await;
    // The listener is bound before `run` starts; wait until it serves.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match get(admin, "/readyz").await {
            Ok((200, body)) => {
                assert_eq!(body, "ready\n");
                break;
            }
            Ok((503, _)) | Err(_) => {}
            Ok(other) => panic!("unexpected {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(admin, "/healthz").await.unwrap(), (200, "ok\n".into()));
    srv.shutdown().await;
    assert!(
        get(admin, "/healthz").await.is_err(),
        "the admin listener outlived the server"
    );
}

#[tokio::test]
async fn readyz_is_ready_with_a_working_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = server_with_admin(Config {
        storage: chat_server::Storage::Sqlite(dir.path().join("chat.db")),
        ..cfg()
    })
    .await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.say("lobby", "stored").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok((200, _)) = get(admin, "/readyz").await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = scrape(admin).await;
    assert!(value(&m, "chat_store_commit_seconds_count{}") >= 1.0);
    assert_eq!(value(&m, "chat_store_unsaved{}"), 0.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn clients_lists_a_client_that_stopped_reading_first_by_send_queue() {
    let (srv, admin) = server_with_admin(Config {
        rate: 1e9,
        burst: u32::MAX,
        ..cfg()
    })
    .await;
    let slow = Client::from_stream(small_window_stream(srv.addr))
        .register("slow")
        .await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let text = "x".repeat(4000);
    // Enough to fill the kernel's buffers to `slow`, so its send queue grows.
    for _ in 0..800 {
        alice.say("lobby", &text).await;
    }
    let (status, body) = get(admin, "/clients?sort=sendq&limit=2").await.unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["nick"], "slow", "{body}");
    // Most of what `slow` has not been sent waits in the room's feed, not in its sink: a
    // send queue of one write batch (64 KiB) would hide a client a megabyte behind.
    let sendq = list[0]["sendq_bytes"].as_u64().unwrap();
    assert!(sendq > 256 * 1024, "sendq {sendq}: {body}");
    assert_eq!(list[0]["mode"], "framed");
    assert_eq!(list[0]["rooms"], serde_json::json!(["lobby"]));
    assert!(!body.contains("xxxx"), "message text leaked: {body}");
    let (_, rooms) = get(admin, "/rooms").await.unwrap();
    let rooms: serde_json::Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms[0]["name"], "lobby");
    assert_eq!(rooms[0]["members"], 2);
    drop(slow);
    srv.shutdown().await;
}

#[tokio::test]
async fn clients_counts_the_bytes_a_client_sent_and_was_sent() {
    let (srv, admin) = server_with_admin(cfg()).await;
    // The nick line, one message and `/rooms`: exactly the bytes the server reads.
    let mut lina = Line::login(srv.addr, "lina").await;
    let text = "seventeen bytes!!";
    lina.send_line(text).await;
    lina.send_line("/rooms").await;
    lina.read_until("the room list", |l| l.starts_with("-- rooms:"))
        .await;
    let sent = "lina\n".len() + text.len() + 1 + "/rooms\n".len();
    // Counted at the flush that wrote the room list, so before lina read it.
    let (me, body) = client_where(admin, "nick", "lina").await;
    assert_eq!(me["bytes_in"], sent as u64, "{body}");
    let received = lina.raw_log.len() as u64;
    let out = me["bytes_out"].as_u64().unwrap();
    // Counted as handed to the socket: at least what lina has read, at most what a few
    // more notices could add.
    assert!(out >= received, "bytes_out {out} < {received} read: {body}");
    assert!(!body.contains(text), "message text leaked: {body}");
    srv.shutdown().await;
}

/// `contrib/grafana-dashboard.json` graphs only series a real server exports: every
/// `chat_…` name in its queries is a sample name of a scrape (histograms by their
/// `_bucket` series).
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_the_server_exports() {
    let (srv, admin) = server_with_admin(cfg()).await;
    let (status, body) = get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let exported: std::collections::HashSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 7, "{} panels", panels.len());
    let mut queried = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("chat_"));
            for name in names {
                assert!(
                    exported.contains(name),
                    "{:?} queries {name}, which /metrics lacks",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 7, "{queried} metric names queried");
    srv.shutdown().await;
}

/// IRC connections are counted, listed and closed like the other modes.
#[tokio::test]
async fn an_irc_client_is_counted_listed_and_closed_like_the_others() {
    let (srv, admin) = server_with_admin(cfg()).await;
    let mut ivy = Line::connect(srv.addr).await;
    let register = "NICK ivy\r\nUSER ivy 0 * :Ivy\r\n";
    ivy.send_bytes(register.as_bytes()).await;
    ivy.read_until("the welcome (001)", |l| l.contains(" 001 ivy "))
        .await;
    let m = scrape(admin).await;
    assert_eq!(value(&m, "chat_connections{mode=irc}"), 1.0);
    assert_eq!(value(&m, "chat_connections_total{mode=irc}"), 1.0);
    let (me, body) = client_where(admin, "mode", "irc").await;
    assert_eq!(me["nick"], "ivy", "{body}");
    assert_eq!(me["bytes_in"], register.len() as u64, "{body}");
    drop(ivy);
    let deadline = tokio::time::Instant::now() + WAIT;
    while value(&scrape(admin).await, "chat_connections{mode=irc}") != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the close not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown().await;
}
