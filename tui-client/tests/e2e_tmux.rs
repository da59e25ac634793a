//! End-to-end: the real `chat-tui` binary in a real terminal (tmux) against a real
//! `chat-server`, with a plain line-mode client on the other side.
//!
//! Only a real terminal shows raw-mode, paste and restore bugs, so this test types with
//! `send-keys`, reads the screen with `capture-pane`, and after `/quit` checks the exit
//! status and that the terminal modes (alternate screen, mouse) were switched off again.
//!
//! The TLS test runs it against a server with a self-signed certificate (what
//! `--tls-self-signed` runs, in a temporary data directory): the fingerprint question
//! answered yes, a chat, no question on the next start, and the refusal when the same
//! `HOST:PORT` later presents another certificate.
//!
//! Skipped with a message when tmux is missing, unless `CI` is set: then it fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;
mod tmux;

use common::tls_server;
use tmux::{InProcess, LineClient, Tmux, WAIT, server_runtime, skip_without_tmux};

#[test]
fn chat_tui_in_tmux_talks_to_a_line_client_and_restores_the_terminal() {
    if skip_without_tmux("chat_tui_in_tmux…") {
        return;
    }

    let server = InProcess::start();
    let addr = server.addr;

    let tmux = Tmux::start("e2e", 100, 30, &plain_command("alice", addr));

    tmux.wait_for_screen(" online │ alice │ #lobby");
    let mut bob = LineClient::connect(addr, "bob");
    tmux.wait_for_screen("bob joined #lobby");
    bob.say("你好 alice，这是中文 🌸");
    tmux.wait_for_screen("<bob> 你好 alice，这是中文 🌸");

    tmux.send_text("hello 世界 from alice");
    tmux.send_key("Enter");
    bob.wait_for_line("<alice> hello 世界 from alice");
    tmux.wait_for_screen("<alice> hello 世界 from alice");

    // Bracketed paste: a two-line paste lands in the input line as one message…
    assert!(
        tmux.cmd(&["set-buffer", "pasted 一\npasted 二"])
            .status
            .success()
    );
    assert!(
        tmux.cmd(&["paste-buffer", "-p", "-t", "e2e"])
            .status
            .success()
    );
    tmux.wait_for_screen("> pasted 一⏎pasted 二");
    // …sent once, on Enter; the line client shows a multi-line message line by line.
    tmux.send_key("Enter");
    bob.wait_for_line("<alice> pasted 二");
    let got = bob.lines();
    let first = got.iter().position(|l| l == "<alice> pasted 一");
    let second = got.iter().position(|l| l == "<alice> pasted 二");
    assert!(
        matches!((first, second), (Some(a), Some(b)) if b == a + 1),
        "{got:#?}"
    );

    tmux.send_text("/quit");
    tmux.send_key("Enter");
    tmux.wait_for_screen("chat-tui exited with 0");
    assert_eq!(
        tmux.pane_format("#{alternate_on} #{mouse_any_flag} #{mouse_sgr_flag}"),
        "0 0 0",
        "alternate screen and mouse reporting must be off after exit"
    );
    bob.wait_for_line("alice left");

    // Let the shell finish: the pane (the session's only one) must disappear.
    tmux.send_key("Enter");
    let deadline = Instant::now() + WAIT;
    loop {
        let panes = tmux.cmd(&["list-panes", "-a"]);
        if !panes.status.success() || panes.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the pane is still there");
        std::thread::sleep(Duration::from_millis(100));
    }

    server.stop();
}

/// The shell line that runs chat-tui as `nick` against `addr`. The shell prints the exit
/// status on the (restored) normal screen, then waits for a line, so the pty stays open
/// until the test has read everything (Linux may drop output still buffered when the last
/// writer of a pty exits).
fn plain_command(nick: &str, addr: SocketAddr) -> String {
    let bin = env!("CARGO_BIN_EXE_chat-tui");
    format!(
        "sh -c '\"$0\" --nick {nick} --server \"$1\"; echo \"chat-tui exited with $?\"; read _' \
         '{bin}' {addr}"
    )
}

#[test]
fn chat_tui_uploads_a_file_another_chat_tui_downloads_it_byte_for_byte() {
    if skip_without_tmux("chat_tui_uploads_a_file…") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let config = chat_server::Config {
        files: Some(chat_server::FilesConfig::in_dir(temp.path().join("files"))),
        ..chat_server::Config::default()
    };
    let server = InProcess::start_with(config);
    let addr = server.addr;
    // 8 MiB, not all alike, with CJK and a space in its name.
    let src = temp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let name = "季度 报告.bin";
    let data: Vec<u8> = (0..8u64 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = src.join(name);
    std::fs::write(&path, &data).unwrap();
    let (_, sha) = chat_tui::tus::hash_file(&path).unwrap();
    let short = chat_tui::transfer::short_hash(&sha);
    let into = temp.path().join("bob");
    std::fs::create_dir(&into).unwrap();

    let alice = Tmux::start("e2e-files-a", WIDE, 30, &plain_command("alice", addr));
    alice.wait_for_screen(" online │ alice │ #lobby");
    let bob = Tmux::start("e2e-files-b", WIDE, 30, &plain_command("bob", addr));
    bob.wait_for_screen(" online │ bob │ #lobby");
    alice.wait_for_screen("bob joined #lobby");

    alice.type_line(&format!("/upload {}", path.display()));
    alice.wait_for_screen(&format!("sharing {name} in #lobby"));
    // Both see it as a file of the scrollback, numbered for /download.
    let listed = format!("<alice> [file 1] {name} 8.0 MiB {short}");
    alice.wait_for_screen(&listed);
    bob.wait_for_screen(&listed);
    alice.type_line("/transfers");
    alice.wait_for_screen(&format!("1 ↑ {name} → #lobby: shared in #lobby"));

    bob.type_line(&format!("/download 1 {}", into.display()));
    let saved = into.join(name);
    bob.wait_for_screen(&format!(
        "downloaded {name}: SHA-256 verified, saved as {}",
        saved.display()
    ));
    assert!(std::fs::read(&saved).unwrap() == data, "the same bytes");
    assert!(!into.join(format!("{name}.part")).exists());
    bob.type_line("/transfers");
    bob.wait_for_screen(&format!("1 ↓ {name}: saved as {}", saved.display()));

    for tmux in [&alice, &bob] {
        tmux.type_line("/quit");
        tmux.wait_for_screen("chat-tui exited with 0");
    }
    drop((alice, bob));
    server.stop();
}

/// The shell line that runs chat-tui over TLS with its own known-servers file, then prints
/// its exit status and waits for a line (see the plain test).
/// Wide enough for the fingerprint's line (95 characters after its label) not to wrap.
const WIDE: u16 = 140;

fn tls_command(addr: SocketAddr, known: &std::path::Path) -> String {
    let bin = env!("CARGO_BIN_EXE_chat-tui");
    format!(
        "sh -c '\"$0\" --nick alice --server \"tls://$1\" --known-servers \"$2\"; \
         echo \"chat-tui exited with $?\"; read _' '{bin}' {addr} '{}'",
        known.display()
    )
}

#[test]
fn chat_tui_over_tls_trusts_on_first_use_then_refuses_a_changed_certificate() {
    if skip_without_tmux("chat_tui_over_tls…") {
        return;
    }
    let (runtime, listener, addr) = server_runtime();
    let temp = tempfile::tempdir().unwrap();
    let known = temp.path().join("config/known_servers");
    let first = runtime.block_on(tls_server(listener, &temp.path().join("data-1")));
    let first_fp = first.fingerprint.clone();

    // First use: the fingerprint is shown and asked about; yes connects and remembers it.
    let tmux = Tmux::start("e2e-tls-1", WIDE, 30, &tls_command(addr, &known));
    let screen = tmux.wait_for_screen("(yes/no)");
    assert!(
        screen.contains(&format!("SHA-256 fingerprint: {}", first.fingerprint)),
        "{screen}"
    );
    assert!(!known.exists(), "nothing is remembered before the answer");
    tmux.send_text("yes");
    tmux.send_key("Enter");
    tmux.wait_for_screen(" online │ alice │ #lobby +t │");
    tmux.wait_for_screen(&format!("tls://{addr}"));
    let mut bob = LineClient::connect(addr, "bob");
    tmux.wait_for_screen("bob joined #lobby");
    bob.say("over TLS? 🔒");
    tmux.wait_for_screen("<bob> over TLS? 🔒");
    tmux.send_text("yes, encrypted 加密");
    tmux.send_key("Enter");
    bob.wait_for_line("<alice> yes, encrypted 加密");
    tmux.send_text("/quit");
    tmux.send_key("Enter");
    tmux.wait_for_screen("chat-tui exited with 0");
    bob.wait_for_line("alice left");
    let remembered = std::fs::read_to_string(&known).unwrap();
    assert_eq!(remembered, format!("{addr} {}\n", first.fingerprint));
    drop(tmux);

    // Next start: accepted silently. A question would wait for an answer and never get
    // online.
    let tmux = Tmux::start("e2e-tls-2", WIDE, 30, &tls_command(addr, &known));
    tmux.wait_for_screen(" online │ alice │ #lobby +t │");
    bob.wait_for_line("alice joined");
    tmux.send_text("/quit");
    tmux.send_key("Enter");
    tmux.wait_for_screen("chat-tui exited with 0");
    drop(tmux);
    drop(bob);
    runtime.block_on(first.shut_down());

    // The same HOST:PORT with another certificate: the warning, exit 1, no connection.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .expect("binding the first server's address again");
    let second = runtime.block_on(tls_server(listener, &temp.path().join("data-2")));
    assert_ne!(second.fingerprint, first_fp);
    let tmux = Tmux::start("e2e-tls-3", WIDE, 30, &tls_command(addr, &known));
    let screen = tmux.wait_for_screen("chat-tui exited with 1");
    for needle in [
        "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!",
        &format!("Remembered SHA-256 fingerprint: {}", first_fp),
        &format!("Presented SHA-256 fingerprint:  {}", second.fingerprint),
        "chat-tui did not connect.",
    ] {
        assert!(
            screen.contains(needle),
            "{needle:?} not on screen:\n{screen}"
        );
    }
    assert!(
        !screen.contains("(yes/no)"),
        "no question about a changed certificate"
    );
    let mut carol = LineClient::connect(addr, "carol");
    carol.say("/who");
    carol.wait_for_line("members of #lobby (1): carol");
    assert_eq!(std::fs::read_to_string(&known).unwrap(), remembered);
    drop(tmux);
    drop(carol);
    runtime.block_on(second.shut_down());
}
