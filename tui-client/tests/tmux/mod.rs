//! What the tmux end-to-end tests share: a tmux server running chat-tui in a pane, read
//! with `capture-pane`, and a line-mode client (as `nc` would be) to talk to it.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on every wait.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A tmux server on its own socket, killed on drop (also when the test fails).
pub(crate) struct Tmux {
    socket: String,
    /// The socket file, removed on drop: tmux leaves it behind when its server exits.
    socket_path: Option<String>,
}

impl Tmux {
    /// A tmux server on socket `chat-tui-NAME-PID` running `command` in a
    /// `width`×`height` pane.
    pub(crate) fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let mut tmux = Self {
            socket: format!("chat-tui-{name}-{}", std::process::id()),
            socket_path: None,
        };
        let (width, height) = (width.to_string(), height.to_string());
        let started = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &width,
            "-y",
            &height,
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

    pub(crate) fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-u", "-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("running tmux")
    }

    pub(crate) fn capture(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn pane_format(&self, format: &str) -> String {
        let out = self.cmd(&["display-message", "-p", "-t", "e2e", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Types `text` (literally: no key names).
    pub(crate) fn send_text(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "e2e", "-l", text])
                .status
                .success()
        );
    }

    /// Presses `key` (a tmux key name: `Enter`, `C-j`, …).
    pub(crate) fn send_key(&self, key: &str) {
        assert!(self.cmd(&["send-keys", "-t", "e2e", key]).status.success());
    }

    /// Types `text`, then Enter.
    pub(crate) fn type_line(&self, text: &str) {
        self.send_text(text);
        self.send_key("Enter");
    }

    /// Polls the screen until `ready` holds for it, and returns it; past [`WAIT`], fails
    /// with the screen, the pane's state and the processes running.
    pub(crate) fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                let state = self.pane_format(
                    "dead=#{pane_dead} status=#{pane_dead_status} signal=#{pane_dead_signal} \
                     pid=#{pane_pid}",
                );
                let ps = Command::new("ps").arg("-ef").output().unwrap();
                panic!(
                    "timed out waiting for {what} on screen:\n{screen}\npane: {state}\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the screen until `needle` appears.
    pub(crate) fn wait_for_screen(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |s| s.contains(needle))
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
pub(crate) fn skip_without_tmux(test: &str) -> bool {
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
pub(crate) struct LineClient {
    stream: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LineClient {
    pub(crate) fn connect(addr: SocketAddr, nick: &str) -> Self {
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

    pub(crate) fn say(&mut self, text: &str) {
        writeln!(self.stream, "{text}").unwrap();
    }

    /// The lines received so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the lines received so far.
    pub(crate) fn wait_until(&self, what: &str, ready: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if ready(&lines) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "line client never got {what}; it got: {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a received line contains `needle`.
    pub(crate) fn wait_for_line(&self, needle: &str) {
        self.wait_until(&format!("{needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        });
    }

    /// Waits until a received line is exactly `line`.
    pub(crate) fn wait_for_exact(&self, line: &str) {
        self.wait_until(&format!("{line:?}"), |lines| {
            lines.iter().any(|l| l == line)
        });
    }
}

/// The runtime the in-process server runs on (its own threads), and a listener on
/// `127.0.0.1:0` for it.
pub(crate) fn server_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr) {
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

/// A chat-server (the default configuration, or one of the test's), in process on its own
/// runtime.
pub(crate) struct InProcess {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub(crate) fn start() -> Self {
        Self::start_with(chat_server::Config::default())
    }

    /// With `config` (its files, say).
    pub(crate) fn start_with(config: chat_server::Config) -> Self {
        let (runtime, listener, addr) = server_runtime();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(chat_server::run(listener, config, async move {
            // Either a stop or a dropped sender ends the server.
            let _ = stopped.await;
        }));
        Self {
            runtime,
            addr,
            stop,
            server,
        }
    }

    /// Stops the server and waits (up to [`WAIT`]) for it to end cleanly.
    pub(crate) fn stop(self) {
        // Ignored: if the server already stopped, the receiver is gone.
        let _ = self.stop.send(());
        self.runtime.block_on(async {
            tokio::time::timeout(WAIT, self.server)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        });
    }
}
