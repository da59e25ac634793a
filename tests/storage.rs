//! Issue 6, durable history: rooms and DMs kept in SQLite survive a restart of the server
//! (in process, on the same database file); `seq` goes on, history and `join` + `since` reach
//! back past the in-memory cache, resent ids stay unique, and retention prunes.
//!
//! Every test uses its own temporary directory, removed when the test ends.

use std::path::Path;
use std::time::Duration;

use chat_server::{Config, Storage};
use chat_shared::{ChatMessage, ClientMsg, Request, ServerMsg};
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{Client, Next, QUIET, WAIT, cfg, say_req, spawn_server, temp_db};

/// Frames big enough for a full page of 500 messages.
const BIG_FRAME: usize = 1024 * 1024;

/// How long retention may take to show in `history`.
const PRUNE_WAIT: Duration = Duration::from_secs(10);

/// SQLite at `db`, no rate limit (these tests need volume).
fn sqlite(db: &Path) -> Config {
    Config {
        storage: Storage::Sqlite(db.to_path_buf()),
        rate: 1e9,
        burst: u32::MAX,
        max_clients_per_ip: 10_000,
        ..cfg()
    }
}

fn seqs(msgs: &[ChatMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq).collect()
}

/// Asserts `got == want`, naming the first difference instead of printing thousands.
fn assert_same(got: &[ChatMessage], want: &[ChatMessage], what: &str) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: first difference at index {i}:\n  got  {:?}\n  want {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} messages instead of {} (seqs {:?} .. {:?})",
        got.len(),
        want.len(),
        got.first().map(|m| m.seq),
        got.last().map(|m| m.seq)
    );
}

/// Posts `n` messages `"<prefix> <i>"` to `room` from `c`, pipelined (at most 64 waiting for
/// their acknowledgement), and returns the acknowledgements in order. Every acknowledgement
/// must come, in the order sent; an `error` fails the test.
async fn post_many(c: &mut Client, room: &str, prefix: &str, n: usize) -> Vec<ChatMessage> {
    const WINDOW: usize = 64;
    let mut ids = Vec::with_capacity(n);
    let mut acks: Vec<ChatMessage> = Vec::with_capacity(n);
    while acks.len() < n {
        while ids.len() < n && ids.len() - acks.len() < WINDOW {
            let id = Uuid::new_v4();
            let text = format!("{prefix} {}", ids.len());
            ids.push(id);
            c.send_req(say_req(id, room, &text)).await;
        }
        match c.next(WAIT).await {
            Next::Item(ServerMsg::Message(m)) if m.from == c.nick && m.room == room => {
                let want = ids[acks.len()];
                assert_eq!(
                    m.id,
                    want,
                    "[{}] acknowledgement {} is for another message",
                    c.nick,
                    acks.len()
                );
                if let Some(prev) = acks.last() {
                    assert_eq!(m.seq, prev.seq + 1, "one sender's seqs are consecutive");
                }
                acks.push(m);
            }
            Next::Item(m @ ServerMsg::Error { .. }) => {
                panic!("[{}] after {} acks: {m:?}", c.nick, acks.len())
            }
            Next::Item(_) => {}
            other => panic!(
                "[{}] waiting for acknowledgement {} of {n}: {other:?}",
                c.nick,
                acks.len()
            ),
        }
    }
    acks
}

/// Pages back through `room` with `history{before, limit}` until an empty page; returns
/// everything oldest first. Checks on the way: pages are oldest first, do not overlap, reach
/// strictly further back each time, hold at most `limit`, and `truncated` is set on every
/// page but the oldest.
async fn page_all(c: &mut Client, room: &str, limit: u32, max_pages: usize) -> Vec<ChatMessage> {
    let mut pages: Vec<(Vec<ChatMessage>, bool)> = Vec::new();
    let mut before = None;
    loop {
        let (page, truncated) = c.history(room, before, Some(limit)).await;
        if page.is_empty() {
            assert!(!truncated, "an empty page says nothing older exists");
            break;
        }
        assert!(
            page.len() <= limit as usize,
            "page of {} over limit {limit}",
            page.len()
        );
        let s = seqs(&page);
        assert!(
            s.windows(2).all(|w| w[0] < w[1]),
            "a page is oldest first: {s:?}"
        );
        if let Some((newer, _)) = pages.last() {
            assert!(
                page.last().expect("non-empty").seq < newer[0].seq,
                "page before seq {} reaches {}: overlap",
                newer[0].seq,
                page.last().expect("non-empty").seq
            );
        }
        before = Some(page[0].id);
        pages.push((page, truncated));
        assert!(
            pages.len() <= max_pages,
            "paging {room} did not end after {max_pages} pages"
        );
    }
    if let Some(((_, oldest_truncated), newer)) = pages.split_last() {
        assert!(
            !oldest_truncated,
            "the oldest page says truncated although nothing older came"
        );
        for (page, truncated) in newer {
            assert!(
                truncated,
                "a page starting at seq {} says truncated: false, yet older messages exist",
                page[0].seq
            );
        }
    }
    pages.into_iter().rev().flat_map(|(page, _)| page).collect()
}

/// Logs in with frames big enough for 500-message pages.
async fn login_big(addr: std::net::SocketAddr, nick: &str) -> Client {
    Client::connect_with_max_frame(addr, BIG_FRAME)
        .await
        .register(nick)
        .await
}

#[tokio::test]
async fn issue_6_restart_keeps_history_ids_seqs_and_order_and_seq_goes_on() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(sqlite(&db)).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.join("second", None).await;
    let mut lobby = Vec::new();
    let mut second = Vec::new();
    for i in 0..30 {
        lobby.push(alice.say("lobby", &format!("lobby {i}")).await);
        if i % 3 != 0 {
            second.push(alice.say("second", &format!("second {i}")).await);
        }
    }
    assert_eq!(seqs(&lobby), (1..=30).collect::<Vec<_>>());
    assert_eq!(seqs(&second), (1..=20).collect::<Vec<_>>());
    srv.shutdown().await;
    drop(alice);

    let srv = spawn_server(sqlite(&db)).await;
    let mut bob = Client::login(srv.addr, "bob").await;
    // Joining lobby again repeats the join sequence, with its history.
    let (hist, truncated, _) = bob.join("lobby", None).await;
    assert_eq!(hist, lobby, "lobby history on join after a restart");
    assert!(!truncated, "everything fits in the 50 sent on join");
    let (hist, truncated, _) = bob.join("second", None).await;
    assert_eq!(
        hist, second,
        "second room's history on join after a restart"
    );
    assert!(!truncated);
    let (page, truncated) = bob.history("lobby", None, Some(500)).await;
    assert_eq!(page, lobby, "history request after a restart");
    assert!(!truncated);
    let (page, _) = bob.history("second", Some(second[10].id), Some(5)).await;
    assert_eq!(page, second[5..10], "paging back by id after a restart");
    let (since, truncated, _) = bob.join("lobby", Some(25)).await;
    assert_eq!(since, lobby[25..], "join with since after a restart");
    assert!(!truncated);

    assert_eq!(
        bob.say("lobby", "after restart").await.seq,
        31,
        "lobby seq goes on from the stored last seq"
    );
    assert_eq!(
        bob.say("second", "after restart").await.seq,
        21,
        "second's seq goes on from the stored last seq"
    );
    bob.join("fresh", None).await;
    assert_eq!(
        bob.say("fresh", "new room").await.seq,
        1,
        "a room never used starts at 1"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn issue_6_resent_say_and_dm_ids_after_restart_are_not_duplicated_and_get_the_original() {
    let (_dir, db) = temp_db();
    // A small cache, so the oldest message is only on disk after the restart.
    let config = Config {
        history: 5,
        ..sqlite(&db)
    };
    let srv = spawn_server(config.clone()).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;
    let mut originals = Vec::new();
    for i in 0..12 {
        originals.push(alice.say("lobby", &format!("original {i}")).await);
    }
    let dm_id = Uuid::new_v4();
    let dm = |text: &str| {
        Request::with_id(
            dm_id,
            ClientMsg::Dm {
                to: "bob".into(),
                text: text.into(),
            },
        )
    };
    alice.send_req(dm("private, once")).await;
    let dm_original = alice.recv_dm().await;
    assert_eq!(dm_original.id, dm_id);
    assert_eq!(bob.recv_dm().await, dm_original);
    srv.shutdown().await;
    drop((alice, bob));

    let srv = spawn_server(config).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let mut bob = Client::login(srv.addr, "bob").await;
    alice.recv_joined("lobby", "bob").await;

    // The oldest (only on disk), then the newest (in the cache too), with other text.
    for original in [&originals[0], &originals[11]] {
        alice
            .send_req(say_req(original.id, "lobby", "changed text"))
            .await;
        assert_eq!(
            &alice.await_ack(original.id).await,
            original,
            "a resent id after a restart is answered with the stored original (seq, ts, text)"
        );
    }
    alice.send_req(dm("changed dm text")).await;
    assert_eq!(
        alice.recv_dm().await,
        dm_original,
        "a resent DM id after a restart is answered with the stored original"
    );

    // Nothing was delivered again: bob's first message or DM is the next new one.
    let after = alice.say("lobby", "after the resends").await;
    assert!(
        after.seq > originals[11].seq,
        "seq goes on: {} after {}",
        after.seq,
        originals[11].seq
    );
    let seen = bob
        .recv_until_all(
            "the message after the resends",
            |m| matches!(m, ServerMsg::Message(cm) if cm.id == after.id),
        )
        .await;
    for m in &seen {
        assert!(
            !matches!(m, ServerMsg::Message(cm) if cm.id != after.id)
                && !matches!(m, ServerMsg::Dm(_)),
            "bob got a resent copy: {m:?}"
        );
    }
    alice
        .expect_none(QUIET, "a second copy of a resend", |m| {
            matches!(m, ServerMsg::Message(_) | ServerMsg::Dm(_))
        })
        .await;

    // Stored once each.
    let mut want = originals.clone();
    want.push(after);
    assert_eq!(
        page_all(&mut bob, "lobby", 500, 5).await,
        want,
        "history holds each message once"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn issue_6_history_pages_back_through_3000_stored_messages_after_restart() {
    const N: usize = 3000;
    let (_dir, db) = temp_db();
    let config = Config {
        max_frame: BIG_FRAME,
        ..sqlite(&db)
    };
    let srv = spawn_server(config.clone()).await;
    let mut alice = login_big(srv.addr, "alice").await;
    alice.join("deep", None).await;
    let all = post_many(&mut alice, "deep", "deep", N).await;
    assert_eq!(seqs(&all), (1..=N as u64).collect::<Vec<_>>());
    srv.shutdown().await;
    drop(alice);

    let srv = spawn_server(config).await;
    let mut bob = login_big(srv.addr, "bob").await;
    let got = page_all(&mut bob, "deep", 500, 20).await;
    assert_same(&got, &all, "3000 messages paged back after a restart");

    // Pages are full: 500 each while older messages exist.
    let mut before = None;
    let mut pages = 0;
    loop {
        let (page, truncated) = bob.history("deep", before, Some(500)).await;
        if page.is_empty() {
            break;
        }
        pages += 1;
        if truncated {
            assert_eq!(page.len(), 500, "page {pages} is not full");
        }
        before = Some(page[0].id);
        assert!(pages <= 6);
    }
    assert_eq!(pages, 6, "3000 messages in pages of 500");
    srv.shutdown().await;
}

#[tokio::test]
async fn issue_6_join_since_older_than_the_cache_returns_every_later_message() {
    const N: usize = 300;
    let (_dir, db) = temp_db();
    let config = Config {
        history: 20,
        ..sqlite(&db)
    };
    let srv = spawn_server(config.clone()).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.join("since", None).await;
    let all = post_many(&mut alice, "since", "since", N).await;

    let mut bob = Client::login(srv.addr, "bob").await;
    let got = join_since_all(&mut bob, "since", 10).await;
    assert_same(&got, &all[10..], "join since 10 with a cache of 20");
    srv.shutdown().await;
    drop((alice, bob));

    // After a restart the cache is empty or holds the tail: the same, and more.
    let srv = spawn_server(config).await;
    let mut carol = Client::login(srv.addr, "carol").await;
    let got = join_since_all(&mut carol, "since", 250).await;
    assert_same(&got, &all[250..], "join since 250 after a restart");
    let got = join_since_all(&mut carol, "since", 0).await;
    assert_same(
        &got,
        &all,
        "join since 0 after a restart: everything stored",
    );
    srv.shutdown().await;
}

/// `join{room, since}`; when the answer was cut to fit a frame, checks that it kept the
/// newest and pages back the rest with `history`. Returns every message after `since`.
async fn join_since_all(c: &mut Client, room: &str, since: u64) -> Vec<ChatMessage> {
    let (mut got, truncated, _) = c.join(room, Some(since)).await;
    let s = seqs(&got);
    assert!(
        s.windows(2).all(|w| w[1] == w[0] + 1),
        "join since {since}: consecutive, oldest first: {s:?}"
    );
    if !truncated {
        return got;
    }
    assert!(!got.is_empty(), "join since {since}: truncated but empty");
    // Cut to fit: the newest were kept. Page back to `since`.
    let mut pages = 0;
    while got[0].seq > since + 1 {
        let (page, _) = c.history(room, Some(got[0].id), Some(500)).await;
        assert!(
            !page.is_empty(),
            "history before seq {} is empty, yet join since {since} was truncated",
            got[0].seq
        );
        let mut page: Vec<ChatMessage> = page.into_iter().filter(|m| m.seq > since).collect();
        page.append(&mut got);
        got = page;
        pages += 1;
        assert!(pages <= 10, "paging back to {since} does not end");
    }
    got
}

#[tokio::test]
async fn issue_6_retain_per_room_prunes_older_messages_from_history() {
    let (_dir, db) = temp_db();
    let config = Config {
        retain_per_room: Some(10),
        prune_interval: Duration::from_millis(100),
        ..sqlite(&db)
    };
    let srv = spawn_server(config.clone()).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    alice.join("big", None).await;
    alice.join("small", None).await;
    let big = post_many(&mut alice, "big", "big", 50).await;
    let small = post_many(&mut alice, "small", "small", 5).await;

    let kept = wait_for_history(&mut alice, "big", &big[40..]).await;
    assert_eq!(kept, big[40..], "the newest 10 of big are kept");
    let (page, truncated) = alice.history("small", None, Some(500)).await;
    assert_eq!(page, small, "a room under the limit keeps everything");
    assert!(!truncated);
    let (page, truncated) = alice.history("big", Some(big[40].id), Some(500)).await;
    assert!(
        page.is_empty() && !truncated,
        "nothing older than the newest 10: {:?}",
        seqs(&page)
    );
    let mut bob = Client::login(srv.addr, "bob").await;
    let (hist, truncated, _) = bob.join("big", Some(5)).await;
    assert_eq!(hist, big[40..], "join since 5 gets what is left");
    assert!(truncated, "join since 5: messages after 5 were pruned");
    assert_eq!(
        alice.say("big", "after pruning").await.seq,
        51,
        "pruning never makes a seq reusable"
    );
    srv.shutdown().await;
    drop((alice, bob));

    // Pruned for good: after a restart too.
    let srv = spawn_server(config).await;
    let mut carol = Client::login(srv.addr, "carol").await;
    let got = wait_for_history(&mut carol, "big", &[]).await;
    assert_eq!(seqs(&got), (42..=51).collect::<Vec<_>>(), "after a restart");
    srv.shutdown().await;
}

/// Polls `history{room, limit: 500}` until it equals `want` (or, with `want` empty, until it
/// holds at most 10 messages), for up to [`PRUNE_WAIT`]; returns the last page.
async fn wait_for_history(c: &mut Client, room: &str, want: &[ChatMessage]) -> Vec<ChatMessage> {
    let deadline = Instant::now() + PRUNE_WAIT;
    loop {
        let (page, _) = c.history(room, None, Some(500)).await;
        let done = if want.is_empty() {
            page.len() <= 10
        } else {
            page == want
        };
        if done {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{room} not pruned within {PRUNE_WAIT:?}: seqs {:?}",
            seqs(&page)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn issue_6_sqlite_in_memory_keeps_history_within_one_run() {
    let config = Config {
        history: 20,
        ..sqlite(Path::new(":memory:"))
    };
    let srv = spawn_server(config).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let all = post_many(&mut alice, "lobby", "mem", 60).await;
    assert_eq!(seqs(&all), (1..=60).collect::<Vec<_>>());
    let mut bob = Client::login(srv.addr, "bob").await;
    let (page, truncated) = bob.history("lobby", None, Some(500)).await;
    assert_same(
        &page,
        &all,
        "history beyond the cache of 20 comes from :memory:",
    );
    assert!(!truncated);
    let got = join_since_all(&mut bob, "lobby", 5).await;
    assert_same(&got, &all[5..], "join since 5 with a cache of 20");
    let (page, _) = bob.history("lobby", Some(all[10].id), Some(5)).await;
    assert_eq!(page, all[5..10]);
    // A resent id is still recognised.
    alice.send_req(say_req(all[0].id, "lobby", "again")).await;
    assert_eq!(alice.await_ack(all[0].id).await, all[0]);
    // (A resend older than the cache may cost a seq: only "after" is promised.)
    let next = alice.say("lobby", "next").await;
    assert!(next.seq > 60, "seq goes on: {}", next.seq);
    let (page, _) = bob.history("lobby", None, Some(500)).await;
    let mut want = all.clone();
    want.push(next);
    assert_same(&page, &want, "history after a resend and one more message");
    srv.shutdown().await;
}

#[tokio::test]
async fn issue_6_retain_days_zero_prunes_by_age_and_seq_is_never_reused() {
    let (_dir, db) = temp_db();
    // 0 days: everything older than the current millisecond goes at the next round.
    let config = Config {
        retain_days: Some(0),
        prune_interval: Duration::from_millis(100),
        ..sqlite(&db)
    };
    let srv = spawn_server(config.clone()).await;
    let mut alice = Client::login(srv.addr, "alice").await;
    let all = post_many(&mut alice, "lobby", "old", 5).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    let deadline = Instant::now() + PRUNE_WAIT;
    loop {
        let (page, _) = alice.history("lobby", None, Some(500)).await;
        if page.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages older than 0 days still in history after {PRUNE_WAIT:?}: {:?}",
            seqs(&page)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut bob = Client::login(srv.addr, "bob").await;
    let (hist, truncated, _) = bob.join("lobby", Some(2)).await;
    assert!(
        hist.is_empty(),
        "join since 2 after pruning: {:?}",
        seqs(&hist)
    );
    assert!(truncated, "join since 2: the messages after 2 were pruned");
    assert_eq!(
        alice.say("lobby", "after pruning").await.seq,
        6,
        "pruning everything never makes a seq reusable"
    );
    srv.shutdown().await;
    drop((alice, bob));

    // Even with every message of the room gone, a restart goes on from the last seq.
    let srv = spawn_server(Config {
        retain_days: None,
        ..config
    })
    .await;
    let mut carol = Client::login(srv.addr, "carol").await;
    assert_eq!(
        carol.say("lobby", "after restart").await.seq,
        7,
        "seq after a restart with the room's messages all pruned"
    );
    srv.shutdown().await;
}
