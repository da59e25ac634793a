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

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::tls_server;

/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(20);

/// A tmux server on its own socket, killed on drop (also when the test fails).
struct Tmux {
    socket: String,
    /// The socket file, removed on drop: tmux leaves it behind when its server exits.
    socket_path: Option<String>,
}

impl Tmux {
    /// A tmux server on socket `chat-tui-NAME-PID` running `command` in a `width`×30 pane.
    fn start(name: &str, width: u16, command: &str) -> Self {
        let mut tmux = Self {
            socket: format!("chat-tui-{name}-{}", std::process::id()),
            socket_path: None,
        };
        let width = width.to_string();
        let started = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &width,
            "-y",
            "30",
            command,
        ]);
        assert!(
            started.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let path = tmux.pane_format("#{socket_path}");
        tmux.socket_path = Some(path).filter(|p| !p.is_empty());
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-u", "-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("running tmux")
    }

    fn capture(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pane_format(&self, format: &str) -> String {
        let out = self.cmd(&["display-message", "-p", "-t", "e2e", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn send_text(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "e2e", "-l", text])
                .status
                .success()
        );
    }

    fn send_key(&self, key: &str) {
        assert!(self.cmd(&["send-keys", "-t", "e2e", key]).status.success());
    }

    /// Polls the screen until `needle` appears.
    fn wait_for_screen(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                return screen;
            }
            if Instant::now() >= deadline {
                let state = self.pane_format(
                    "dead=#{pane_dead} status=#{pane_dead_status} signal=#{pane_dead_signal} \
                     pid=#{pane_pid}",
                );
                let ps = Command::new("ps").arg("-ef").output().unwrap();
                panic!(
                    "timed out waiting for {needle:?} on screen:\n{screen}\npane: {state}\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ignored: the server may already be gone.
        let _ = self.cmd(&["kill-server"]);
        if let Some(path) = self.socket_path.take() {
            // Ignored: tmux may have removed its socket itself.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether to skip `test`: tmux is missing and `CI` is not set (with `CI`, it panics).
fn skip_without_tmux(test: &str) -> bool {
    let available = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if available {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux is required for {test} in CI (CI is set) but was not found"
    );
    eprintln!("skipping {test}: tmux is not installed (set CI to make this fail)");
    true
}

/// A line-mode client (as `nc` would be) whose received lines are collected in the
/// background.
struct LineClient {
    stream: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LineClient {
    fn connect(addr: SocketAddr, nick: &str) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        writeln!(stream, "{nick}").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = BufReader::new(stream.try_clone().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { stream, lines }
    }

    fn say(&mut self, text: &str) {
        writeln!(self.stream, "{text}").unwrap();
    }

    fn wait_for_line(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
        {
            assert!(
                Instant::now() < deadline,
                "line client never got {needle:?}; it got: {:#?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The runtime the in-process server runs on (its own threads), and a listener on
/// `127.0.0.1:0` for it.
fn server_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (runtime, listener, addr)
}

#[test]
fn chat_tui_in_tmux_talks_to_a_line_client_and_restores_the_terminal() {
    if skip_without_tmux("chat_tui_in_tmux…") {
        return;
    }

    let (runtime, listener, addr) = server_runtime();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(chat_server::run(
        listener,
        chat_server::Config::default(),
        async move {
            // Either a stop or a dropped sender ends the server.
            let _ = stopped.await;
        },
    ));

    let bin = env!("CARGO_BIN_EXE_chat-tui");
    // The shell prints the exit status on the (restored) normal screen, then waits for a
    // line, so the pty stays open until the test has read everything (Linux may drop
    // output still buffered when the last writer of a pty exits).
    let command = format!(
        "sh -c '\"$0\" --nick alice --server \"$1\"; echo \"chat-tui exited with $?\"; read _' \
         '{bin}' {addr}"
    );
    let tmux = Tmux::start("e2e", 100, &command);

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
    let got = bob.lines.lock().unwrap().clone();
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

    // Ignored: if the server already stopped, the receiver is gone.
    let _ = stop.send(());
    runtime.block_on(async {
        tokio::time::timeout(WAIT, server)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    });
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
    let tmux = Tmux::start("e2e-tls-1", WIDE, &tls_command(addr, &known));
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
    let tmux = Tmux::start("e2e-tls-2", WIDE, &tls_command(addr, &known));
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
    let tmux = Tmux::start("e2e-tls-3", WIDE, &tls_command(addr, &known));
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
