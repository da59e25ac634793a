//! Running the real `chat-server` binary in a test: start it on an ephemeral port, read the
//! address it logs, signal it, wait for it to exit, and kill it if the test fails first.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The bound on every single wait.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Kills the server if the test fails before it exits on its own.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Already exited in a passing test; otherwise end the process this test started.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Sends `sig` (as `kill` spells it, e.g. `-TERM`).
    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} failed: {status:?}");
    }

    /// Waits (up to [`WAIT`]) for the process to end.
    pub(crate) async fn exited(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < WAIT,
                "the server did not exit within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How the binary is started: its flags and its environment.
pub(crate) struct Run<'a> {
    /// Flags after `--listen 127.0.0.1:0 --sniff-ms 100`.
    pub(crate) args: Vec<String>,
    /// Working directory (the fallback database would land here).
    pub(crate) dir: &'a Path,
    pub(crate) env: Vec<(&'static str, PathBuf)>,
    /// Removed from the inherited environment (besides every `CHAT_…` variable).
    pub(crate) unset: Vec<&'static str>,
}

impl Run<'_> {
    /// Starts the binary on an ephemeral port and reads the bound address from its log.
    pub(crate) fn start(&self) -> (Server, String) {
        let (server, addr, _) = self.start_logged();
        (server, addr)
    }

    /// Like [`Run::start`], and every line the server logs (those before the address too)
    /// arrives on the receiver.
    pub(crate) fn start_logged(&self) -> (Server, String, Receiver<String>) {
        self.spawn_logged(Command::new(env!("CARGO_BIN_EXE_chat-server")))
    }

    /// Like [`Run::start_logged`], on a disk that fills up: no file the server writes may
    /// grow past `kib` KiB (`RLIMIT_FSIZE`, through dash's `ulimit -f`, in 512-byte
    /// blocks). `SIGXFSZ` is ignored (the shell's `trap ''`, which `exec` keeps), so a
    /// write past the limit fails with `EFBIG` instead of killing the process. The shell
    /// `exec`s the server, so the process signalled is the server itself.
    pub(crate) fn start_logged_with_file_limit(
        &self,
        kib: u64,
    ) -> (Server, String, Receiver<String>) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {} && exec \"$0\" \"$@\"",
                kib * 2
            ))
            .arg(env!("CARGO_BIN_EXE_chat-server"));
        self.spawn_logged(cmd)
    }

    fn spawn_logged(&self, mut cmd: Command) -> (Server, String, Receiver<String>) {
        cmd.args(["--listen", "127.0.0.1:0", "--sniff-ms", "100"])
            .args(&self.args)
            .current_dir(self.dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        // No flag may come from the environment this test happens to run in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CHAT_") {
                cmd.env_remove(key);
            }
        }
        for var in &self.unset {
            cmd.env_remove(var);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("chat-server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let server = Server(child);
        let (tx, rx) = std::sync::mpsc::channel();
        let (log_tx, log) = std::sync::mpsc::channel();
        // Reads to the end whoever listens, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // `listening on ADDR`, also inside a JSON log line (`…ADDR","target":…`);
                // the admin listener's line is not the chat port's.
                if !line.contains("admin listening on")
                    && let Some(rest) = line.split("listening on ").nth(1)
                {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    let _ = tx.send(addr); // the test may have given up
                }
                let _ = log_tx.send(line);
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("the log names the bound address");
        (server, addr, log)
    }
}

/// The first log line containing `needle` (waiting up to [`WAIT`]).
pub(crate) fn logged(log: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line containing {needle:?} within {WAIT:?}"),
        }
    }
}

/// Logs in over the framed protocol as `nick`; the first answer (the `welcome`, or why
/// not) comes back with the connection.
pub(crate) async fn framed_login(
    addr: &str,
    nick: &str,
) -> (
    tokio_util::codec::Framed<tokio::net::TcpStream, chat_shared::ClientCodec>,
    chat_shared::ServerMsg,
) {
    use futures::{SinkExt, StreamExt};
    let mut framed = tokio_util::codec::Framed::new(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        chat_shared::ClientCodec::default(),
    );
    framed
        .send(chat_shared::ClientMsg::Hello {
            nick: nick.into(),
            version: Some(1),
            client: None,
            password: None,
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, framed.next())
        .await
        .expect("an answer to hello")
        .expect("not closed")
        .expect("a valid frame");
    (framed, first)
}
