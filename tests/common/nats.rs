//! A real `nats-server` with JetStream for the cluster tests: on a free loopback port, with
//! its store in a temporary directory, stopped and started again on the same port and
//! store, and killed by its PID when dropped.
//!
//! Shared by `tests/cluster.rs` and `server/tests/cluster_binary.rs` (which includes this
//! file with `#[path]`), so it uses only std, tokio and tempfile, which both packages have.
//!
//! The binary: `$NATS_SERVER`, else `nats-server` on `PATH`, else Debian's
//! `/usr/sbin/nats-server` (not on every user's `PATH`). Without one the tests are skipped,
//! unless `CI` is set (`.ci/run` installs it).

#![allow(dead_code)] // Each test file uses a different subset.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// How long a starting nats-server may take to accept connections.
const START: Duration = Duration::from_secs(10);

/// Where the nats-server binary is, if anywhere.
pub(crate) fn nats_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fixed = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(fixed)
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.is_file())
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0 and released).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// One nats-server process with JetStream (`-js -a 127.0.0.1 -p PORT -sd DIR`).
pub(crate) struct Nats {
    bin: PathBuf,
    child: Option<Child>,
    /// The port it listens on, the same across [`Nats::restart`].
    pub(crate) port: u16,
    /// Its store (`-sd`), the same across [`Nats::restart`]; its log is `nats.log` beside
    /// the `jetstream` directory.
    store: tempfile::TempDir,
}

impl Nats {
    /// Starts one on a free port; `None` (the test is skipped) if nats-server is not
    /// installed and `CI` is not set.
    pub(crate) async fn start() -> Option<Self> {
        let Some(bin) = nats_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is not installed (apt-get install nats-server; .ci/run does)"
            );
            eprintln!("skipped: nats-server is not installed (set NATS_SERVER or install it)");
            return None;
        };
        let store = tempfile::tempdir().expect("a temporary store directory");
        let mut nats = Self {
            bin,
            child: None,
            port: 0,
            store,
        };
        // The port was free when picked; another process may take it before nats-server
        // binds it, so a start that fails is tried again on another port.
        let mut tries = 0;
        loop {
            nats.port = free_port();
            match nats.spawn().await {
                Ok(()) => return Some(nats),
                Err(why) if tries < 4 => {
                    tries += 1;
                    eprintln!("nats-server did not start on {}: {why}", nats.port);
                }
                Err(why) => panic!("nats-server did not start: {why}\n{}", nats.log_tail()),
            }
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory given to `-sd`.
    pub(crate) fn store(&self) -> &Path {
        self.store.path()
    }

    /// The process id of the running nats-server.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats.log")
    }

    /// The last lines nats-server logged (across restarts).
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts the process on `self.port` and waits until it accepts TCP connections.
    async fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "nats-server is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open the log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(&self.bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{} does not run: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                self.child = None;
                return Err(format!("it exited with {status}:\n{}", self.log_tail()));
            }
            let addr = ("127.0.0.1", self.port);
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no connection accepted within {START:?}"));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it (`kill PID`, SIGTERM) and waits until the process has exited (SIGKILL
    /// after 5 s).
    pub(crate) async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again on the same port with the same store, after [`Nats::stop`].
    pub(crate) async fn restart(&mut self) {
        // The port is ours (nothing else picked it in the moment it was closed, we hope):
        // a failure says why.
        if let Err(why) = self.spawn().await {
            panic!(
                "nats-server did not start again on {}: {why}\n{}",
                self.port,
                self.log_tail()
            );
        }
    }

    /// SIGKILL by PID, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- nats-server on {} logged (last lines):\n{}",
                self.port,
                self.log_tail()
            );
        }
    }
}
