//! Without a terminal the binary must refuse cleanly: one clear line on stderr, exit code 2,
//! and not a single escape sequence on stdout.

use std::process::{Command, Stdio};

#[test]
fn without_a_terminal_it_exits_2_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-tui"))
        .args(["--nick", "alice", "--server", "127.0.0.1:9"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "chat-tui needs an interactive terminal");
}

#[test]
fn nick_and_server_come_from_the_environment_and_bad_nicks_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-tui"))
        .env("CHAT_NICK", "bad nick!")
        .env("CHAT_SERVER", "127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid nick \"bad nick!\""), "{stderr}");
}

#[test]
fn several_servers_from_the_flag_or_the_environment_are_checked_before_the_terminal() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-tui"));
        cmd.args(["--nick", "alice"])
            .args(args)
            .stdin(Stdio::null());
        match env {
            Some(servers) => cmd.env("CHAT_SERVER", servers),
            None => cmd.env_remove("CHAT_SERVER"),
        };
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    let fine = "chat-tui needs an interactive terminal";
    let repeated = [
        "--server",
        "127.0.0.1:9",
        "--server",
        "127.0.0.1:10,[::1]:11",
    ];
    assert_eq!(run(&repeated, None), fine);
    assert_eq!(run(&[], Some("127.0.0.1:9,127.0.0.1:10")), fine);
    let mixed = run(&[], Some("127.0.0.1:9,tls://127.0.0.1:10"));
    assert!(
        mixed.contains("mixes tls:// and plain addresses"),
        "{mixed}"
    );
    let empty = run(&["--server", "127.0.0.1:9,,127.0.0.1:10"], None);
    assert!(empty.contains("an empty server address"), "{empty}");
    let bad = run(&["--server", "127.0.0.1:9", "--server", "nowhere"], None);
    assert!(bad.contains("\"nowhere\": expected HOST:PORT"), "{bad}");
}
