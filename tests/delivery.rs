//! Delivery as issue 10 redesigned it: a client falls behind only when its own send queue
//! exceeds `--max-sendq`, never because a room is busy. Bursts, join storms and join
//! history reach every reader that keeps up; a reader over its own budget is told exactly
//! what it missed. Also: the sniffer's reserved first bytes are served as line mode.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{Config, Storage};
use chat_shared::{ClientMsg, ServerMsg};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

use crate::common::{Client, Line, Next, WAIT, cfg, say_req, small_window_stream, spawn_server};

/// No rate limit and room for hundreds of connections from 127.0.0.1; everything else is
/// the default (`max_sendq` 1 MiB, `history_on_join` 50).
fn unlimited() -> Config {
    Config {
        rate: 1e9,
        burst: u32::MAX,
        max_clients: 100_000,
        max_clients_per_ip: 10_000,
        ..cfg()
    }
}

/// [`unlimited`] with history in SQLite (in memory), as the server ships.
fn unlimited_sqlite() -> Config {
    Config {
        storage: Storage::Sqlite(":memory:".into()),
        ..unlimited()
    }
}

/// A bounded description of a read, for failure messages (some messages here are 3 KB).
fn short<T: std::fmt::Debug>(x: &T) -> String {
    let s = format!("{x:?}");
    s.chars().take(200).collect()
}

/// The time left until `deadline`, at most [`WAIT`] (the bound on any single read).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).min(WAIT)
}

/// Parses a text `"<tag> <sender> <i>…"` into (sender, i).
fn marker(text: &str, tag: &str) -> Option<(usize, usize)> {
    let mut words = text.split(' ');
    if words.next()? != tag {
        return None;
    }
    let sender = words.next()?.parse().ok()?;
    let i = words.next()?.parse().ok()?;
    Some((sender, i))
}

/// What one reader saw of the marked messages (and of the notices it was told to watch).
#[derive(Debug, Default)]
struct Tally {
    nick: String,
    /// Distinct marked messages received.
    got: usize,
    /// Marked messages received more than once.
    dups: usize,
    /// Room messages whose `seq` was not above the previous one's.
    out_of_order: usize,
    /// Every `lagged` seen, as (room, missed).
    lagged: Vec<(String, u64)>,
    /// Distinct `joined` notices in lobby for nicks starting with the watched prefix.
    joins: usize,
    /// Why reading stopped early, if it did.
    end: Option<String>,
}

impl Tally {
    fn clean(&self, messages: usize, joins: usize) -> bool {
        self.got == messages
            && self.joins == joins
            && self.dups == 0
            && self.out_of_order == 0
            && self.lagged.is_empty()
            && self.end.is_none()
    }
}

/// Fails with a summary of every reader whose tally is not clean.
fn assert_all_clean(what: &str, tallies: &[Tally], messages: usize, joins: usize) {
    let bad: Vec<&Tally> = tallies
        .iter()
        .filter(|t| !t.clean(messages, joins))
        .collect();
    let lagged: u64 = tallies.iter().flat_map(|t| &t.lagged).map(|(_, n)| n).sum();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} readers did not get exactly {messages} messages and {joins} joins \
         in order without lagged ({lagged} missed in all): {:?}; first ones: {:#?}",
        bad.len(),
        tallies.len(),
        bad.iter().map(|t| t.nick.as_str()).collect::<Vec<_>>(),
        &bad[..bad.len().min(5)]
    );
}

/// Reads `client` in its own task until it has `messages` distinct messages tagged `tag`
/// (received or reported missed) and `joins` `joined` notices for nicks starting with
/// `join_prefix`, or until `deadline`; publishes on `progress` how many tagged messages are
/// accounted for. Never panics: everything it saw is in the [`Tally`].
fn read_all(
    mut client: Client,
    tag: &'static str,
    messages: usize,
    join_prefix: &'static str,
    joins: usize,
    deadline: Instant,
    progress: Option<watch::Sender<usize>>,
) -> tokio::task::JoinHandle<(Client, Tally)> {
    tokio::spawn(async move {
        let mut tally = Tally {
            nick: client.nick.clone(),
            ..Tally::default()
        };
        let mut seen = HashSet::new();
        let mut joined = HashSet::new();
        let mut last_seq = 0;
        let mut missed = 0;
        while tally.got + missed < messages || tally.joins < joins {
            if let Some(p) = &progress {
                p.send_replace(tally.got + missed);
            }
            match client.next(left(deadline)).await {
                Next::Item(ServerMsg::Message(m)) if m.room == "lobby" => {
                    if m.seq <= last_seq {
                        tally.out_of_order += 1;
                    }
                    last_seq = m.seq;
                    if let Some(key) = marker(&m.text, tag) {
                        if seen.insert(key) {
                            tally.got += 1;
                        } else {
                            tally.dups += 1;
                        }
                    }
                }
                Next::Item(ServerMsg::Joined { room, nick, .. })
                    if room == "lobby" && nick.starts_with(join_prefix) && joins > 0 =>
                {
                    if joined.insert(nick) {
                        tally.joins += 1;
                    }
                }
                Next::Item(ServerMsg::Lagged { room, missed: n }) => {
                    missed += usize::try_from(n).unwrap_or(usize::MAX);
                    tally.lagged.push((room, n));
                }
                Next::Item(_) => {}
                other => {
                    tally.end = Some(short(&other));
                    break;
                }
            }
        }
        if let Some(p) = &progress {
            p.send_replace(tally.got + missed);
        }
        (client, tally)
    })
}

/// Reads until every id in `pending` came back as this client's `message`; a refusal of
/// one of them, a `lagged`, end of file or the deadline fails the test.
async fn await_acks(client: &mut Client, mut pending: HashSet<Uuid>, deadline: Instant) {
    let total = pending.len();
    while !pending.is_empty() {
        match client.next(left(deadline)).await {
            Next::Item(ServerMsg::Message(m)) if m.from == client.nick => {
                pending.remove(&m.id);
            }
            Next::Item(m @ ServerMsg::Error { .. }) => {
                panic!("[{}] error while sending: {}", client.nick, short(&m))
            }
            Next::Item(m @ ServerMsg::Lagged { .. }) => {
                panic!("[{}] a sender reading its acks lagged: {m:?}", client.nick)
            }
            Next::Item(_) => {}
            other => panic!(
                "[{}] with {} of {total} acks still missing: {}",
                client.nick,
                pending.len(),
                short(&other)
            ),
        }
    }
}

/// Fires one `say` per text (each with an id), `pace` apart, without waiting for any
/// acknowledgement; then reads until every one is acknowledged.
async fn say_all(
    mut client: Client,
    texts: Vec<String>,
    pace: Duration,
    deadline: Instant,
) -> Client {
    let mut pending = HashSet::new();
    for text in &texts {
        let id = Uuid::now_v7();
        pending.insert(id);
        client.send_req(say_req(id, "lobby", text)).await;
        if !pace.is_zero() {
            sleep(pace).await;
        }
    }
    await_acks(&mut client, pending, deadline).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_four_senders_reaches_every_reader_that_keeps_up_with_no_lagged_issue_10() {
    const READERS: usize = 100;
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 256;
    const ALL: usize = SENDERS * PER_SENDER;
    let srv = spawn_server(unlimited_sqlite()).await;
    let addr = srv.addr;
    let deadline = Instant::now() + Duration::from_secs(30);

    // Each reader logs in and reads from then on in a task of its own.
    let (ready_tx, mut ready) = mpsc::channel::<()>(READERS);
    let mut readers = Vec::new();
    for i in 0..READERS {
        let ready_tx = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let client = Client::login(addr, &format!("reader{i}")).await;
            ready_tx.send(()).await.unwrap();
            read_all(client, "burst", ALL, "", 0, deadline, None)
                .await
                .unwrap()
        }));
    }
    for n in 0..READERS {
        timeout(left(deadline), ready.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} of {READERS} readers logged in"));
    }

    let mut senders = Vec::new();
    for s in 0..SENDERS {
        senders.push(Client::login(addr, &format!("sender{s}")).await);
    }
    let started = Instant::now();
    let senders: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, client)| {
            let texts = (0..PER_SENDER).map(|i| format!("burst {s} {i}")).collect();
            tokio::spawn(say_all(client, texts, Duration::ZERO, deadline))
        })
        .collect();
    let mut keep = Vec::new();
    for sender in senders {
        keep.push(sender.await.expect("a sender failed"));
    }
    let acked = started.elapsed();
    let mut tallies = Vec::new();
    for reader in readers {
        let (client, tally) = reader.await.expect("a reader failed to log in");
        keep.push(client);
        tallies.push(tally);
    }
    eprintln!(
        "burst: {ALL} messages acknowledged after {acked:?}, all {READERS} readers done after {:?}",
        started.elapsed()
    );
    assert_all_clean("after the burst", &tallies, ALL, 0);
    drop(keep);
    srv.shutdown().await;
}

/// What one joiner of the storm saw.
struct Joiner {
    nick: String,
    client: Option<Client>,
    /// Every `lagged` seen from `hello` until the end of its drain.
    lagged: Vec<ServerMsg>,
    /// Why it did not get through, if it did not.
    end: Option<String>,
}

/// Connects, says `hello`, reads to its `members` of lobby, then drains for `drain`;
/// records any `lagged` on the way.
async fn join_and_watch(
    addr: SocketAddr,
    nick: String,
    drain: Duration,
    deadline: Instant,
) -> Joiner {
    let mut j = Joiner {
        nick: nick.clone(),
        client: None,
        lagged: Vec::new(),
        end: None,
    };
    let mut client = match timeout(left(deadline), TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Client::from_stream(stream),
        other => {
            j.end = Some(format!("connect: {other:?}"));
            return j;
        }
    };
    client
        .send(ClientMsg::Hello {
            nick: nick.clone(),
            version: Some(1),
            client: Some("chat-tests".into()),
            password: None,
        })
        .await;
    let mut welcomed = false;
    loop {
        // The whole storm's deadline, not one read's: in a storm every `hello` waits behind
        // up to a thousand joins, each announced to everyone (in a debug build on two
        // cores that took over 5 s for the last joiners). What is checked is that nobody
        // is lagged or refused, not how fast the server is (chat-bench's W7 measures it).
        match client
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Next::Item(ServerMsg::Welcome { nick, .. }) => {
                client.nick = nick;
                welcomed = true;
            }
            Next::Item(ServerMsg::Members { room, .. }) if room == "lobby" && welcomed => break,
            Next::Item(m @ ServerMsg::Lagged { .. }) => j.lagged.push(m),
            Next::Item(m @ ServerMsg::Error { .. }) if !welcomed => {
                j.end = Some(format!("hello refused: {}", short(&m)));
                return j;
            }
            Next::Item(_) => {}
            other => {
                j.end = Some(format!(
                    "before its lobby members (welcomed: {welcomed}): {}",
                    short(&other)
                ));
                return j;
            }
        }
    }
    let until = Instant::now() + drain;
    loop {
        match client
            .next(until.saturating_duration_since(Instant::now()))
            .await
        {
            Next::Item(m @ ServerMsg::Lagged { .. }) => j.lagged.push(m),
            Next::Item(_) => {}
            Next::Timeout => break,
            Next::Eof => {
                j.end = Some("end of file while draining".into());
                return j;
            }
        }
    }
    j.client = Some(client);
    j
}

/// Clients in the join storm: issue 10's 1,000 where the process may hold both ends of
/// them, else 300. At 300 the server from before issue 10 (a 256-slot ring per room) still
/// passed this test; at 500 and more it lagged the talkers, at 600 joiners too.
fn storm_size() -> usize {
    let open_files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    if open_files >= 4096 { 1000 } else { 300 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_lags_nobody_and_early_members_see_every_message_issue_10() {
    const EARLY: usize = 10;
    let size = storm_size();
    const TALKERS: usize = 2;
    const PER_TALKER: usize = 20;
    const ALL: usize = TALKERS * PER_TALKER;
    let srv = spawn_server(unlimited()).await;
    let addr = srv.addr;
    let deadline = Instant::now() + Duration::from_secs(30);

    // Early members read everything: every talker's message and every joiner's `joined`.
    let mut early = Vec::new();
    for i in 0..EARLY {
        let client = Client::login(addr, &format!("early{i}")).await;
        early.push(read_all(
            client, "talk", ALL, "joiner", size, deadline, None,
        ));
    }
    let mut talkers = Vec::new();
    for t in 0..TALKERS {
        talkers.push(Client::login(addr, &format!("talker{t}")).await);
    }

    // The storm: every login at once; the talk starts with it.
    let started = Instant::now();
    let mut storm = JoinSet::new();
    for i in 0..size {
        storm.spawn(join_and_watch(
            addr,
            format!("joiner{i}"),
            Duration::from_millis(300),
            deadline,
        ));
    }
    let talkers: Vec<_> = talkers
        .into_iter()
        .enumerate()
        .map(|(t, client)| {
            let texts = (0..PER_TALKER).map(|i| format!("talk {t} {i}")).collect();
            tokio::spawn(say_all(client, texts, Duration::from_millis(10), deadline))
        })
        .collect();
    let mut keep = Vec::new();
    for talker in talkers {
        keep.push(talker.await.expect("a talker failed"));
    }
    let talk_done = started.elapsed();
    let mut joiners = Vec::new();
    while let Some(j) = storm.join_next().await {
        joiners.push(j.expect("a joiner task panicked"));
    }
    let storm_done = started.elapsed();
    let mut tallies = Vec::new();
    for e in early {
        let (client, tally) = e.await.unwrap();
        keep.push(client);
        tallies.push(tally);
    }
    eprintln!(
        "join storm: talk acknowledged after {talk_done:?}, {size} joiners through (with \
         their 300 ms drain) after {storm_done:?}, early members done after {:?}",
        started.elapsed()
    );

    let failed: Vec<String> = joiners
        .iter()
        .filter(|j| j.end.is_some() || !j.lagged.is_empty())
        .map(|j| format!("{}: end {:?}, lagged {:?}", j.nick, j.end, j.lagged))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {size} joiners failed or lagged; first ones: {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_all_clean("early members through the storm", &tallies, ALL, size);
    keep.extend(joiners.into_iter().filter_map(|j| j.client));
    drop(keep);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_history_does_not_lag_the_joiner_issue_10() {
    const FILLERS: usize = 4;
    const PER_FILLER: usize = 50;
    const FILLED: usize = FILLERS * PER_FILLER;
    const LIVE_SENDERS: usize = 2;
    const PER_LIVE: usize = 25;
    const LIVE: usize = LIVE_SENDERS * PER_LIVE;
    let srv = spawn_server(unlimited_sqlite()).await;
    let addr = srv.addr;
    let deadline = Instant::now() + Duration::from_secs(30);

    // 200 messages of about 3 KB, from 4 senders at once (each waits for its own acks).
    let pad = "h".repeat(3000);
    let mut fillers = JoinSet::new();
    for f in 0..FILLERS {
        let pad = pad.clone();
        fillers.spawn(async move {
            let mut c = Client::login(addr, &format!("filler{f}")).await;
            for i in 0..PER_FILLER {
                c.say("lobby", &format!("fill {f} {i} {pad}")).await;
            }
            c
        });
    }
    let mut keep = Vec::new();
    while let Some(c) = fillers.join_next().await {
        keep.push(c.expect("a filler failed"));
    }
    // The newcomer (login joins lobby with the default 50) leaves, then joins from 0.
    let mut newcomer = Client::login(addr, "newcomer").await;
    newcomer
        .send(ClientMsg::Part {
            room: "lobby".into(),
            reason: None,
        })
        .await;
    newcomer.recv_parted("lobby", "newcomer").await;
    let (history, truncated, members) = newcomer.join("lobby", Some(0)).await;
    assert!(truncated, "200 × 3 KB do not fit a frame: truncated");
    assert!(
        !history.is_empty() && history.len() < FILLED,
        "history of {} messages",
        history.len()
    );
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    let first = (FILLED - history.len() + 1) as u64;
    assert_eq!(
        seqs,
        (first..=FILLED as u64).collect::<Vec<_>>(),
        "the newest messages, oldest first"
    );
    assert!(
        history.iter().all(|m| marker(&m.text, "fill").is_some()),
        "only filled messages in the history"
    );
    assert!(
        members.iter().any(|n| n == "newcomer"),
        "members: {members:?}"
    );
    eprintln!("join history: {} messages, truncated", history.len());

    let reader = read_all(newcomer, "live", LIVE, "", 0, deadline, None);
    let mut senders = Vec::new();
    for s in 0..LIVE_SENDERS {
        let client = Client::login(addr, &format!("live{s}")).await;
        let texts = (0..PER_LIVE)
            .map(|i| format!("live {s} {i} {pad}"))
            .collect();
        senders.push(tokio::spawn(say_all(
            client,
            texts,
            Duration::ZERO,
            deadline,
        )));
    }
    for s in senders {
        keep.push(s.await.expect("a live sender failed"));
    }
    let (newcomer, tally) = reader.await.unwrap();
    assert_all_clean("the newcomer after its join history", &[tally], LIVE, 0);
    keep.push(newcomer);
    drop(keep);
    srv.shutdown().await;
}

/// One thing the slow reader saw, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Message(u64),
    Lagged(u64),
}

/// How far (in 2 KB messages) the flooder may run ahead of the reader that keeps up. A
/// session gives a batch's weight back to its budget only once the whole batch is flushed,
/// so a reader's queue can weigh up to about twice what it has not read yet: 16 ahead
/// (2 × 34 KB) lagged a reader under a 64 KiB budget by a message or two in every run,
/// 15 in none; 8 leaves room.
const WINDOW: usize = 8;

/// Floods lobby from `flooder` with the messages `"flood 0 <i> <pad>"` for i in `range`,
/// keeping at most [`WINDOW`] of them unacknowledged and at most [`WINDOW`] ahead of what
/// the reader that keeps up has accounted for, so "keeps up" holds by construction
/// whatever the scheduler does. `None` when done; otherwise what it was stuck on.
async fn flood_paced(
    flooder: &mut Client,
    range: std::ops::Range<usize>,
    pad: &str,
    reader: &mut watch::Receiver<usize>,
    deadline: Instant,
) -> Option<String> {
    let mut sent = range.start;
    let mut pending = HashSet::new();
    while sent < range.end || !pending.is_empty() {
        while sent < range.end && pending.len() < WINDOW && sent < *reader.borrow() + WINDOW {
            let id = Uuid::now_v7();
            pending.insert(id);
            flooder
                .send_req(say_req(id, "lobby", &format!("flood 0 {sent} {pad}")))
                .await;
            sent += 1;
        }
        tokio::select! {
            got = flooder.next(left(deadline)) => match got {
                Next::Item(ServerMsg::Message(m)) if m.from == "flooder" => {
                    pending.remove(&m.id);
                }
                Next::Item(m @ (ServerMsg::Lagged { .. } | ServerMsg::Error { .. })) => {
                    return Some(format!("flooder after {sent} sent: {}", short(&m)));
                }
                Next::Item(_) => {}
                other => {
                    return Some(format!(
                        "flooder after {sent} sent, {} unacknowledged, the reader at {}: {}",
                        pending.len(),
                        *reader.borrow(),
                        short(&other)
                    ));
                }
            },
            changed = reader.changed() => {
                if changed.is_err() && sent < range.end {
                    return Some(format!("the reader stopped at {} of {sent}", *reader.borrow()));
                }
            }
        }
    }
    None
}

/// Reads `slow` until `want` flooder messages are accounted for (received or reported
/// missed), recording what came in order.
async fn read_slow(slow: &mut Client, want: u64, events: &mut Vec<Got>, deadline: Instant) {
    let accounted = |events: &[Got]| -> u64 {
        events
            .iter()
            .map(|e| match e {
                Got::Message(_) => 1,
                Got::Lagged(n) => *n,
            })
            .sum()
    };
    while accounted(events) < want {
        match slow.next(left(deadline)).await {
            Next::Item(ServerMsg::Message(m)) if m.from == "flooder" => {
                events.push(Got::Message(m.seq));
            }
            Next::Item(ServerMsg::Lagged { room, missed }) => {
                assert_eq!(room, "lobby", "lagged names the room");
                events.push(Got::Lagged(missed));
            }
            Next::Item(_) => {}
            other => panic!(
                "slow with {} of {want} accounted for: {}; events: {:?}",
                accounted(events),
                short(&other),
                summary(events)
            ),
        }
    }
}

/// The most a socket's send buffer autotunes to (`tcp_wmem`'s maximum); 4 MiB if unknown.
fn send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_over_its_own_budget_lags_and_is_told_exactly_what_it_missed() {
    // The flood must be well past what the kernel buffers for `slow`: `max_sendq` counts
    // only what the server could not yet write to the socket, and the server's send buffer
    // autotunes up to `tcp_wmem`'s maximum (4 MiB by default) however small the peer's
    // window. 500 × 2 KB, for one, all fits in there. Then 100 more once it has been told.
    const SIZE: usize = 2000;
    const MORE: usize = 100;
    let n: usize = (send_buffer_max() * 3 / 2 / SIZE).max(3000);
    let srv = spawn_server(Config {
        max_sendq: 64 * 1024,
        ..unlimited()
    })
    .await;
    let addr = srv.addr;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut slow = Client::from_stream(small_window_stream(addr))
        .register("slow")
        .await;
    let (progress, mut reader_at) = watch::channel(0);
    let reader = Client::login(addr, "reader").await;
    let reader = read_all(reader, "flood", n + MORE, "", 0, deadline, Some(progress));
    let mut flooder = Client::login(addr, "flooder").await;
    let pad = "f".repeat(SIZE);

    let stuck = flood_paced(&mut flooder, 0..n, &pad, &mut reader_at, deadline).await;
    assert_eq!(stuck, None, "the flood did not get through");

    // `slow` reads now: messages, then `lagged` for its gap.
    let mut events = Vec::new();
    read_slow(&mut slow, n as u64, &mut events, deadline).await;
    let before = summary(&events);
    assert!(
        events.iter().any(|e| matches!(e, Got::Lagged(_))),
        "slow never lagged: {before:?}"
    );
    // It reads on while the flooder sends the rest: all of that arrives.
    let reading = tokio::spawn(async move {
        read_slow(&mut slow, (n + MORE) as u64, &mut events, deadline).await;
        (slow, events)
    });
    let stuck = flood_paced(&mut flooder, n..n + MORE, &pad, &mut reader_at, deadline).await;
    let (reader, tally) = reader.await.unwrap();
    assert_all_clean("the reader that keeps up", &[tally], n + MORE, 0);
    assert_eq!(stuck, None, "the rest of the flood did not get through");
    let (mut slow, events) = reading.await.expect("slow stopped reading");

    let summary = summary(&events);
    eprintln!("slow reader: {summary:?}");
    let received = events
        .iter()
        .filter(|e| matches!(e, Got::Message(_)))
        .count() as u64;
    let missed: u64 = events
        .iter()
        .map(|e| match e {
            Got::Lagged(gap) => *gap,
            Got::Message(_) => 0,
        })
        .sum();
    assert!(missed > 0, "slow never lagged: {summary:?}");
    assert_eq!(received + missed, (n + MORE) as u64, "{summary:?}");
    assert!(
        matches!(events.first(), Some(Got::Message(1))),
        "slow got the first messages before its gap: {summary:?}"
    );
    // Exactly: each `lagged` counts the seqs skipped right before the message after it,
    // and the messages sent after it was told all arrive.
    let mut expect_seq = 1;
    for e in &events {
        match *e {
            Got::Message(seq) => {
                assert_eq!(seq, expect_seq, "a gap no lagged accounts for: {summary:?}");
                expect_seq += 1;
            }
            Got::Lagged(gap) => expect_seq += gap,
        }
    }
    assert_eq!(expect_seq, (n + MORE) as u64 + 1, "{summary:?}");
    assert!(
        matches!(events.last(), Some(Got::Message(_))),
        "messages after the gap: {summary:?}"
    );
    slow.expect_none(Duration::from_millis(200), "more lagged", |m| {
        matches!(m, ServerMsg::Lagged { .. })
    })
    .await;
    drop((reader, flooder, slow));
    srv.shutdown().await;
}

/// Runs of consecutive seqs and the lagged between them, e.g. `["1..=37", "lagged 400",
/// "438..=500"]`.
fn summary(events: &[Got]) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    let flush = |run: &mut Option<(u64, u64)>, out: &mut Vec<String>| {
        if let Some((a, b)) = run.take() {
            out.push(format!("{a}..={b}"));
        }
    };
    for e in events {
        match *e {
            Got::Message(s) => match run {
                Some((a, b)) if s == b + 1 => run = Some((a, s)),
                _ => {
                    flush(&mut run, &mut out);
                    run = Some((s, s));
                }
            },
            Got::Lagged(n) => {
                flush(&mut run, &mut out);
                out.push(format!("lagged {n}"));
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Sends `first` as a connection's first bytes and returns the first line the server
/// answers with; then registers `nick` on it and checks the welcome line and the join.
async fn first_line_then_nick(
    addr: SocketAddr,
    first: &[u8],
    nick: &str,
    observer: &mut Client,
) -> String {
    let mut l = Line::connect(addr).await;
    l.send_bytes(first).await;
    let answer = l.read_line().await;
    l.send_line(nick).await;
    let welcome = l.read_line().await;
    assert!(
        welcome.starts_with(&format!("-- welcome, {nick}!")),
        "after \"{}\" was answered with {answer:?}, the nick {nick:?} got {welcome:?}",
        first.escape_ascii()
    );
    observer.recv_joined("lobby", nick).await;
    answer
}

#[tokio::test]
async fn reserved_protocol_prefixes_are_served_as_line_mode_until_their_adapters_land() {
    let srv = spawn_server(cfg()).await;
    let addr = srv.addr;
    let mut observer = Client::login(addr, "observer").await;
    // IRC's prefixes (`NICK `, `CAP `, …) have their adapter now (issue 13; tests/irc*.rs).
    for (first, nick) in [(&b"GET / HTTP/1.1\r\n"[..], "web"), (b"\x16x\r\n", "tls")] {
        let shown = first.escape_ascii().to_string();
        let reserved = first_line_then_nick(addr, first, nick, &mut observer).await;
        eprintln!("\"{shown}\" as a first line: {reserved:?}");
        // Line mode's nick rules: a control character makes no nick (control characters
        // are stripped from free text, not from nicks), and `GET /` is the nick `GET` with
        // a password, which no account has.
        assert!(
            reserved.starts_with("! ")
                && (reserved.contains("not valid") || reserved.contains("not registered")),
            "\"{shown}\" as a first line is a nick line, and not a valid nick: {reserved:?}"
        );
        // Exactly as the same line after a first line that is nobody's reserved prefix.
        let mut plain = Line::connect(addr).await;
        plain.send_line("not reserved").await;
        let refused = plain.read_line().await;
        assert!(refused.starts_with("! "), "{refused:?}");
        plain.send_bytes(first).await;
        let same = plain.read_line().await;
        assert_eq!(
            reserved, same,
            "\"{shown}\" first (reserved) and second (plain line mode) get different answers"
        );
    }
    srv.shutdown().await;
}
