//! The configuration as an operator writes it: a TOML file under flags and `CHAT_*`
//! variables, `--print-config`, errors that name the key and its line, and SIGHUP
//! applying a changed file to a running server.

use std::path::Path;
use std::process::{Command, Output};

use chat_shared::{ClientCodec, ClientMsg, ErrorCode, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

mod common;

use common::{Run, WAIT, framed_login, logged};

/// Runs the binary to completion with `args` and exactly the `CHAT_*` variables `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CHAT_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("chat-server runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

/// The printed value of `key` (`key = value` line).
fn printed<'a>(config: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    config
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in\n{config}"))
}

#[test]
fn flags_win_over_variables_which_win_over_the_file_which_wins_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat-server.toml");
    std::fs::write(
        &file,
        "rate = 1.5\nmax-text = 100\nburst = 3\nadmins = [\"ann\", \"bo\"]\nrequire-tls = false\n",
    )
    .unwrap();
    let out = run(
        &[
            "--config",
            file.to_str().unwrap(),
            "--burst",
            "5",
            "--print-config",
        ],
        &[("CHAT_MAX_TEXT", "200"), ("CHAT_BURST", "4")],
    );
    let config = stdout(&out);
    assert_eq!(printed(&config, "rate"), "1.5", "the file over the default");
    assert_eq!(
        printed(&config, "max-text"),
        "200",
        "the variable over the file"
    );
    assert_eq!(printed(&config, "burst"), "5", "the flag over both");
    assert_eq!(printed(&config, "admins"), r#"["ann", "bo"]"#);
    assert_eq!(printed(&config, "max-sendq"), "1048576", "a default");
    assert_eq!(printed(&config, "listen"), "\"127.0.0.1:7878\"");
    assert!(
        config.contains("\n# retain-days =\n"),
        "unset, commented out"
    );
}

#[test]
fn the_printed_configuration_reads_back_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "--print-config",
            "--rate",
            "2.25",
            "--motd",
            "héllo \"quoted\" = 你好",
            "--admins",
            "ann,bo",
            "--log-format",
            "json",
            "--db",
            "none",
            "--admin-listen",
            "127.0.0.1:9187",
        ],
        &[],
    );
    let first = stdout(&out);
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &first).unwrap();
    let again = stdout(&run(
        &["--config", file.to_str().unwrap(), "--print-config"],
        &[],
    ));
    assert_eq!(first, again);
    assert_eq!(printed(&again, "motd"), r#"'héllo "quoted" = 你好'"#);
    assert_eq!(printed(&again, "log-format"), "\"json\"");
}

#[test]
fn a_bad_key_or_value_is_an_error_naming_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let cases = [
        (
            "rate = 5\n\nmax-sendqq = 10\n",
            "bad.toml:3: unknown key `max-sendqq`",
        ),
        (
            "# limits\nmax-sendq = \"a lot\"\n",
            "bad.toml:2: bad value for `max-sendq`",
        ),
        ("burst = 2.5\n", "bad.toml:1: bad value for `burst`"),
        ("rate = \n", "not a valid TOML file"),
    ];
    for (text, wanted) in cases {
        std::fs::write(&file, text).unwrap();
        let out = run(&["--config", file.to_str().unwrap(), "--print-config"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(wanted), "{text:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing printed for {text:?}");
    }
    let out = run(&["--config", "/nonexistent/chat.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn the_packaged_config_is_valid() {
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/chat-server.toml");
    let config = stdout(&run(
        &["--config", packaged.to_str().unwrap(), "--print-config"],
        &[],
    ));
    assert_eq!(printed(&config, "admin-listen"), "\"127.0.0.1:9187\"");
}

/// The container image's configuration: the packaged file under the `CHAT_*` variables its
/// Containerfile sets (read from the file, so the two cannot drift apart). The image itself
/// is not built here: no container runtime or registry is reachable from CI.
#[test]
fn the_container_runs_the_packaged_config_under_its_variables() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    let containerfile = std::fs::read_to_string(contrib.join("Containerfile")).unwrap();
    let vars: Vec<(String, String)> = containerfile
        .split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            key.starts_with("CHAT_")
                .then(|| (key.to_owned(), value.to_owned()))
        })
        .collect();
    assert!(vars.len() >= 3, "the image's variables: {vars:?}");
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let packaged = contrib.join("chat-server.toml");
    let config = stdout(&run(
        &["--config", packaged.to_str().unwrap(), "--print-config"],
        &env,
    ));
    assert_eq!(printed(&config, "listen"), "\"0.0.0.0:7878\"");
    assert_eq!(printed(&config, "admin-listen"), "\"0.0.0.0:9187\"");
    assert_eq!(printed(&config, "log-format"), "\"json\"");
    assert_eq!(printed(&config, "db"), "\"/var/lib/chat-server/chat.db\"");
}

/// Says `n` things in the lobby at once and counts how many were accepted (their copy
/// came back) and how many refused as over the rate.
async fn say_many(framed: &mut Framed<TcpStream, ClientCodec>, n: usize) -> (usize, usize) {
    for i in 0..n {
        framed
            .send(ClientMsg::Say {
                room: "lobby".into(),
                text: format!("number {i}"),
                action: false,
            })
            .await
            .unwrap();
    }
    let (mut accepted, mut limited) = (0, 0);
    while accepted + limited < n {
        match timeout(WAIT, framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            ServerMsg::Message(m) if m.text.starts_with("number ") => accepted += 1,
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            ServerMsg::Bye { reason, .. } => panic!("bye {reason:?}"),
            _ => {}
        }
    }
    (accepted, limited)
}

#[tokio::test]
async fn sighup_applies_a_new_rate_and_motd_live_and_names_what_waits_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat-server.toml");
    std::fs::write(&file, "rate = 1000\nburst = 1000\nmotd = \"first\"\n").unwrap();
    let (mut server, addr, log) = Run {
        args: vec![
            "--db".into(),
            "none".into(),
            "--config".into(),
            file.to_str().unwrap().into(),
        ],
        dir: dir.path(),
        env: Vec::new(),
        unset: Vec::new(),
    }
    .start_logged();
    let (mut alice, welcome) = framed_login(&addr, "alice").await;
    assert!(
        matches!(&welcome, ServerMsg::Welcome { motd: Some(m), .. } if m == "first"),
        "{welcome:?}"
    );
    assert_eq!(
        say_many(&mut alice, 20).await,
        (20, 0),
        "1000/s lets 20 through"
    );

    std::fs::write(
        &file,
        "rate = 0.1\nburst = 2\nmotd = \"second\"\nhistory = 300\n",
    )
    .unwrap();
    server.signal("-HUP");
    // The binary names what waits for a restart, then the server applies the rest.
    logged(&log, "`history` changed, which takes effect at a restart");
    logged(&log, "configuration reloaded: rate: 1000 -> 0.1");

    // The same connection, now at the new rate: its burst of 2, and the rest refused.
    assert_eq!(say_many(&mut alice, 6).await, (2, 4));
    let (_bob, welcome) = framed_login(&addr, "bob").await;
    assert!(
        matches!(&welcome, ServerMsg::Welcome { motd: Some(m), .. } if m == "second"),
        "{welcome:?}"
    );

    // A file that no longer reads leaves the running configuration as it was.
    std::fs::write(&file, "rate = \"fast\"\n").unwrap();
    server.signal("-HUP");
    let line = logged(&log, "configuration not reloaded");
    assert!(line.contains("chat-server.toml:1"), "{line}");
    let (_carol, welcome) = framed_login(&addr, "carol").await;
    assert!(
        matches!(&welcome, ServerMsg::Welcome { motd: Some(m), .. } if m == "second"),
        "{welcome:?}"
    );

    // What waits for a restart is measured against what runs, the start's value, however
    // many reloads have read the new one since.
    std::fs::write(
        &file,
        "rate = 0.1\nburst = 2\nmotd = \"third\"\nhistory = 300\n",
    )
    .unwrap();
    server.signal("-HUP");
    logged(&log, "`history` changed, which takes effect at a restart");
    logged(&log, "configuration reloaded: motd: changed");
    server.signal("-TERM");
    assert!(server.exited().await.success());
}
