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
