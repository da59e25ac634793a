//! Issue 11, item 3: accounts over real sockets, with the real SQLite store.
//!
//! Register, log in, a wrong or missing password, a look-alike of a registered nick, the
//! takeover of a nick held by a half-dead connection, throttling (with a short setting),
//! password changes, accounts surviving a restart, no password readable in the database,
//! `unavailable` without a database, and line mode's `NICK PASSWORD`, its password prompt
//! (with telnet's echo turned off) and `/register` and `/password`.

use std::path::Path;
use std::time::Duration;

use chat_server::{Config, Storage};
use chat_shared::{ByeReason, ClientMsg, ErrorCode, Password, ServerMsg};

use crate::common::{Client, Line, TestServer, cfg, spawn_server, temp_db};

const SECRET: &str = "correct horse battery staple";

fn stored(db: &Path) -> Config {
    Config {
        storage: Storage::Sqlite(db.to_path_buf()),
        ..cfg()
    }
}

async fn hello(
    addr: std::net::SocketAddr,
    nick: &str,
    password: Option<&str>,
) -> (Client, ServerMsg) {
    let mut c = Client::connect(addr).await;
    c.send(ClientMsg::Hello {
        nick: nick.into(),
        version: Some(1),
        client: Some("chat-tests".into()),
        password: password.map(Password::new),
    })
    .await;
    let answer = c.recv().await;
    (c, answer)
}

fn code_of(answer: &ServerMsg) -> Option<ErrorCode> {
    match answer {
        ServerMsg::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn is_account_welcome(answer: &ServerMsg) -> bool {
    matches!(answer, ServerMsg::Welcome { account: true, .. })
}

/// Registers `nick` with [`SECRET`] on a fresh connection, which it returns.
async fn registered(srv: &TestServer, nick: &str) -> Client {
    let mut c = Client::login(srv.addr, nick).await;
    c.send(ClientMsg::Register {
        password: Password::new(SECRET),
    })
    .await;
    let nick_back = c
        .recv_until("registered", |m| match m {
            ServerMsg::Registered { nick } => Some(nick.clone()),
            _ => None,
        })
        .await;
    assert_eq!(nick_back, nick);
    c
}

#[tokio::test]
async fn register_then_the_nick_needs_its_password_and_look_alikes_are_refused() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(stored(&db)).await;
    let alice = registered(&srv, "alice").await;
    alice.quit().await;

    // Without a password, with a wrong one, or as a look-alike: refused.
    let (_c, answer) = hello(srv.addr, "alice", None).await;
    assert_eq!(
        code_of(&answer),
        Some(ErrorCode::NickRegistered),
        "{answer:?}"
    );
    let (_c, answer) = hello(srv.addr, "ＡＬＩＣＥ", None).await;
    assert_eq!(
        code_of(&answer),
        Some(ErrorCode::NickRegistered),
        "{answer:?}"
    );
    let (_c, answer) = hello(srv.addr, "alice", Some("wrong password")).await;
    assert_eq!(code_of(&answer), Some(ErrorCode::AuthFailed), "{answer:?}");
    // Another hello may follow on the same connection, as after nick_taken.
    let (mut c, answer) = hello(srv.addr, "alice", None).await;
    assert_eq!(code_of(&answer), Some(ErrorCode::NickRegistered));
    assert!(matches!(
        c.hello("bob").await,
        ServerMsg::Welcome { account: false, .. }
    ));
    // A rename into it is refused too.
    c.send(ClientMsg::Nick {
        nick: "Alice".into(),
    })
    .await;
    c.recv_error(ErrorCode::NickRegistered).await;

    // A password for a nick nobody registered is refused, not silently dropped.
    let (_c, answer) = hello(srv.addr, "nobody", Some(SECRET)).await;
    match &answer {
        ServerMsg::Error {
            code: ErrorCode::AuthFailed,
            message,
            ..
        } => assert!(message.contains("not registered"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A look-alike in another script of a registered nick, even offline, is refused.
    registered(&srv, "scope").await.quit().await;
    let (_c, answer) = hello(srv.addr, "ѕсоре", Some(SECRET)).await;
    match &answer {
        ServerMsg::Error {
            code: ErrorCode::NickRegistered,
            message,
            ..
        } => assert!(
            message.contains("looks like the registered nick scope"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }

    // The right password logs in, in any case (once the wrong guess's wait is over).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_alice, answer) = hello(srv.addr, "ALICE", Some(SECRET)).await;
    assert!(is_account_welcome(&answer), "{answer:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_login_takes_the_nick_over_from_a_half_dead_connection() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(stored(&db)).await;
    let mut old = registered(&srv, "carol").await;
    let (mut new, answer) = hello(srv.addr, "carol", Some(SECRET)).await;
    assert!(is_account_welcome(&answer), "{answer:?}");
    old.expect_bye_then_eof(ByeReason::Replaced).await;
    // The new connection holds the nick: it chats, and nobody else can have it.
    new.roundtrip().await;
    let (_c, answer) = hello(srv.addr, "carol", None).await;
    assert_eq!(code_of(&answer), Some(ErrorCode::NickRegistered));
    srv.shutdown().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_with_retry_after() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(Config {
        auth_backoff: Duration::from_millis(200),
        auth_max_wait_ip: Duration::from_secs(10),
        auth_max_wait_account: Duration::from_millis(400),
        ..stored(&db)
    })
    .await;
    registered(&srv, "dave").await.quit().await;
    let (mut c, answer) = hello(srv.addr, "dave", Some("guess 1")).await;
    assert_eq!(code_of(&answer), Some(ErrorCode::AuthFailed));
    // Straight away: throttled, with how long to wait; even the right password is refused.
    for password in ["guess 2", SECRET] {
        c.send(ClientMsg::Hello {
            nick: "dave".into(),
            version: Some(1),
            client: None,
            password: Some(Password::new(password)),
        })
        .await;
        match c.recv().await {
            ServerMsg::Error {
                code: ErrorCode::AuthThrottled,
                retry_after_ms: Some(ms),
                message,
                ..
            } => {
                assert!(ms > 0 && ms <= 200, "{ms}");
                assert!(message.contains("try again"), "{message}");
            }
            other => panic!("expected auth_throttled with retry_after_ms, got {other:?}"),
        }
    }
    // After the wait the owner gets in.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (_dave, answer) = hello(srv.addr, "dave", Some(SECRET)).await;
    assert!(is_account_welcome(&answer), "{answer:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn password_change_and_accounts_survive_a_restart_with_no_password_on_disk() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(stored(&db)).await;
    let mut erin = registered(&srv, "erin").await;
    // Too short, then a wrong old password, then right.
    erin.send(ClientMsg::SetPassword {
        old: Password::new(SECRET),
        new: Password::new("short"),
    })
    .await;
    erin.recv_error(ErrorCode::BadRequest).await;
    erin.send(ClientMsg::SetPassword {
        old: Password::new("not it at all"),
        new: Password::new("a brand new secret"),
    })
    .await;
    erin.recv_error(ErrorCode::AuthFailed).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // the throttle's first wait
    erin.send(ClientMsg::SetPassword {
        old: Password::new(SECRET),
        new: Password::new("a brand new secret"),
    })
    .await;
    erin.recv_until("password_changed", |m| {
        matches!(m, ServerMsg::PasswordChanged {}).then_some(())
    })
    .await;
    erin.quit().await;
    srv.shutdown().await;

    let srv = spawn_server(stored(&db)).await;
    let (_c, answer) = hello(srv.addr, "erin", Some(SECRET)).await;
    assert_eq!(
        code_of(&answer),
        Some(ErrorCode::AuthFailed),
        "the old password is gone"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_erin, answer) = hello(srv.addr, "erin", Some("a brand new secret")).await;
    assert!(is_account_welcome(&answer), "{answer:?}");
    srv.shutdown().await;

    // Neither password is anywhere in the database files; an Argon2id hash is.
    let mut all = Vec::new();
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        // SQLite may remove its -wal and -shm files as its last connection closes.
        match std::fs::read(entry.unwrap().path()) {
            Ok(bytes) => all.extend(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot read a database file: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains(SECRET) && !text.contains("a brand new secret"));
    assert!(text.contains("$argon2id$"));
}

#[tokio::test]
async fn without_a_database_register_is_unavailable() {
    let srv = spawn_server(cfg()).await;
    let mut c = Client::login(srv.addr, "frank").await;
    c.send(ClientMsg::Register {
        password: Password::new(SECRET),
    })
    .await;
    c.recv_error(ErrorCode::Unavailable).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn line_mode_registers_logs_in_with_nick_and_password_and_prompts_with_echo_off() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(stored(&db)).await;
    let mut gina = Line::login(srv.addr, "gina").await;
    gina.send_line(&format!("/register {SECRET}")).await;
    gina.read_until("registered", |l| l.contains("is registered to you"))
        .await;
    gina.send_line("/password wrong-old brand-new-secret").await;
    gina.read_until("refused", |l| l.contains("wrong password"))
        .await;
    gina.send_line("/quit").await;

    // NICK PASSWORD on the nick line.
    let mut line = Line::connect(srv.addr).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // past the throttle's first wait
    line.send_line(&format!("gina {SECRET}")).await;
    line.read_until("logged in", |l| {
        l.contains("logged in to your account gina")
    })
    .await;
    line.send_line("/quit").await;

    // A telnet client (it negotiates) gives the nick alone: asked for the password with
    // echo off, then echo back on.
    let mut telnet = Line::connect(srv.addr).await;
    telnet.send_bytes(&[255, 253, 3]).await; // IAC DO SUPPRESS-GO-AHEAD
    telnet.send_line("gina").await;
    telnet
        .read_until("prompt", |l| l.contains("password for gina"))
        .await;
    telnet.send_line(SECRET).await;
    telnet
        .read_until("logged in", |l| {
            l.contains("logged in to your account gina")
        })
        .await;
    let raw = &telnet.raw_log;
    let will = raw.windows(3).position(|w| w == [255, 251, 1]);
    let wont = raw.windows(3).position(|w| w == [255, 252, 1]);
    assert!(
        matches!((will, wont), (Some(a), Some(b)) if a < b),
        "IAC WILL ECHO then IAC WONT ECHO expected: {will:?} {wont:?}"
    );
    assert!(
        !String::from_utf8_lossy(raw).contains(SECRET),
        "the password came back"
    );
    srv.shutdown().await;
}

/// `login` after connecting: a guest becomes its account's nick, with the password; the
/// room sees the rename and the login; a wrong password changes nothing; the connection
/// that held the nick is replaced. Line mode's `/login` does the same.
#[tokio::test]
async fn login_after_connecting_takes_the_accounts_nick() {
    let (_dir, db) = temp_db();
    let srv = spawn_server(stored(&db)).await;
    let mut holder = registered(&srv, "kay").await;
    let mut guest = Client::login(srv.addr, "visitor").await;
    let mut mate = Client::login(srv.addr, "mate").await;
    mate.roundtrip().await;
    guest
        .send(ClientMsg::Login {
            nick: "kay".into(),
            password: Password::new("not the password"),
        })
        .await;
    guest.recv_error(ErrorCode::AuthFailed).await;
    // A failed login is throttled like any (250 ms here, by default).
    tokio::time::sleep(Duration::from_millis(300)).await;
    guest
        .send(ClientMsg::Login {
            nick: "kay".into(),
            password: Password::new(SECRET),
        })
        .await;
    let renamed = |who: &str| {
        let who = who.to_owned();
        move |m: &ServerMsg| match m {
            ServerMsg::NickChanged { old, new, .. } if *old == who => Some(new.clone()),
            _ => None,
        }
    };
    assert_eq!(
        guest.recv_until("own rename", renamed("visitor")).await,
        "kay"
    );
    guest
        .recv_until("own login", |m| match m {
            ServerMsg::AccountChanged {
                nick,
                account: true,
            } if nick == "kay" => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(
        mate.recv_until("the rename", renamed("visitor")).await,
        "kay"
    );
    holder.expect_bye_then_eof(ByeReason::Replaced).await;
    let said = guest.say("lobby", "logged in").await;
    assert!(said.account && said.from == "kay", "{said:?}");

    let mut line = Line::login(srv.addr, "walker").await;
    line.send_line("/login kay wrong").await;
    line.expect_error_line().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    line.send_line(&format!("/login kay {SECRET}")).await;
    guest.expect_bye_then_eof(ByeReason::Replaced).await;
    assert_eq!(
        mate.recv_until("the line rename", renamed("walker")).await,
        "kay"
    );
}
