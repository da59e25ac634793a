//! ngIRCd as the reference for IRC mode (issue 13: W1 in IRC mode ≥ 2 × ngIRCd's, and less
//! memory per idle IRC connection than ngIRCd), run by the benchmark itself in the same
//! run as the server.
//!
//! Each workload gets a fresh ngIRCd: a configuration written into a temporary folder
//! (listening on `127.0.0.1` only, on a port that was free a moment before), started as a
//! child process with `--nodaemon` and stopped by its pid, like the server. Its limits are
//! raised so it can take the load, as far as its configuration allows:
//!
//! - `MaxConnections = 0`, `MaxConnectionsIP = 0` (unlimited; the default allows 5 per IP
//!   address), `MaxJoins = 0` (unlimited channels per user), `MaxNickLength = 31`;
//! - `MaxPenaltyTime = 0`: no penalty at all. Otherwise a client that sent more than 3
//!   commands in one read, or more than 256 bytes in one second, is not read for a second;
//! - `PingTimeout` and `PongTimeout` far beyond a workload;
//! - `DNS = no`, `Ident = no`, `PAM = no`: no lookup or subprocess per connection (the
//!   server does none either);
//! - an operator `bench`: the senders of W1–W3 log in as operators and set user mode `+F`,
//!   which lets ngIRCd handle 10 of their commands per read instead of 3 and never
//!   throttles them;
//! - `IncludeDir` an empty folder of its own, so that no configuration of the system's
//!   ngIRCd is read; `MotdPhrase` instead of a file.
//!
//! What its configuration cannot raise: a 2048-byte read buffer per connection (a client
//! that gets further ahead is disconnected, which is why IRC mode's W1 window is
//! [`crate::client::IRC_WINDOW`]), the commands handled per read (3, or 10 with `+F`; the
//! rest wait for the next turn of its loop), and a 32 KiB write buffer per client (a
//! reader further behind is disconnected; counted as a disconnect).
//!
//! Started as root, ngIRCd switches to the user `nobody`, and the kernel then forgets
//! that it is to be killed with this process. `IdleTimeout` covers that: should the
//! benchmark die, its connections close and ngIRCd exits by itself 30 s later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::server_proc::{ChildServer, DbDir, ServerHandle};

/// Logins in flight at once against ngIRCd. It listens with a backlog of 10 and accepts
/// one connection per turn of its loop, so more connections at once overflow the queue,
/// and the kernel drops their SYNs; they are sent again a second later (and 3, 7, 15 s
/// later), which makes logins time out. The figures do not depend on it: logins are not
/// measured, except as W4's logins/s.
pub const LOGIN_CONCURRENCY: usize = 8;

/// Seconds without any connection after which an abandoned ngIRCd exits by itself.
const IDLE_TIMEOUT_S: u32 = 30;

/// `ngircd` at `explicit`, or on `PATH` (or in `/usr/sbin`, where Debian puts it, which a
/// user's `PATH` may lack); `None` when there is none.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("ngircd"))
        .find(|p| p.is_file())
}

/// The configuration of one benchmark ngIRCd on `127.0.0.1:port`; see the module docs.
pub fn config(port: u16, include_dir: &Path) -> String {
    format!(
        "# Written by chat-bench for one workload; removed after it.\n\
         [Global]\n\
         \tName = ngircd.bench\n\
         \tInfo = chat-bench reference server\n\
         \tAdminInfo1 = chat-bench\n\
         \tAdminInfo2 = chat-bench\n\
         \tAdminEMail = chat-bench@localhost\n\
         \tListen = 127.0.0.1\n\
         \tPorts = {port}\n\
         \tMotdPhrase = chat-bench\n\
         [Limits]\n\
         \tMaxConnections = 0\n\
         \tMaxConnectionsIP = 0\n\
         \tMaxJoins = 0\n\
         \tMaxNickLength = 31\n\
         \tMaxPenaltyTime = 0\n\
         \tPingTimeout = 3600\n\
         \tPongTimeout = 3600\n\
         \tIdleTimeout = {IDLE_TIMEOUT_S}\n\
         [Options]\n\
         \tDNS = no\n\
         \tIdent = no\n\
         \tPAM = no\n\
         \tIncludeDir = {}\n\
         [Operator]\n\
         \tName = {oper}\n\
         \tPassword = {oper}\n",
        include_dir.display(),
        oper = crate::client::NGIRCD_OPER,
    )
}

/// A port on `127.0.0.1` that nobody listened on a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(probe.local_addr()?.port())
}

/// Starts `program` with a fresh configuration; the folder holding it and ngIRCd's log
/// must outlive the handle (drop it after stopping the target).
///
/// # Errors
/// If the folder cannot be written, or ngIRCd does not start or accept connections.
pub fn start(program: &Path) -> anyhow::Result<(ServerHandle, DbDir)> {
    let dir = DbDir::new()?;
    let include = dir.join("conf.d");
    std::fs::create_dir_all(&include)?;
    let conf = dir.join("ngircd.conf");
    // A port taken between the probe and ngIRCd's bind fails the start: try another.
    let mut last = None;
    for _ in 0..3 {
        let port = free_port()?;
        std::fs::write(&conf, config(port, &include))?;
        let args = [
            "--nodaemon".to_owned(),
            "--config".to_owned(),
            conf.display().to_string(),
        ];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match ChildServer::spawn_at(program, &args, &dir.join("ngircd.log"), addr) {
            Ok(child) => return Ok((ServerHandle::Process(child), dir)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("ngIRCd did not start")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_listens_on_loopback_and_lifts_the_limits() {
        let conf = config(6697, Path::new("/tmp/x/conf.d"));
        for line in [
            "Listen = 127.0.0.1",
            "Ports = 6697",
            "MaxConnectionsIP = 0",
            "MaxJoins = 0",
            "MaxPenaltyTime = 0",
            "PAM = no",
            "DNS = no",
            "Ident = no",
            "IncludeDir = /tmp/x/conf.d",
        ] {
            assert!(conf.lines().any(|l| l.trim() == line), "{line} in {conf}");
        }
    }

    #[test]
    fn w1s_irc_window_fits_ngircds_read_buffer() {
        let mut line = Vec::new();
        crate::client::encode_say(
            &mut line,
            crate::Mode::Irc,
            chat_shared::DEFAULT_ROOM,
            u64::MAX / 2,
            3,
            99_999,
            64,
        );
        let window = usize::try_from(crate::client::IRC_WINDOW).unwrap();
        assert!(
            window * line.len() < crate::client::NGIRCD_READ_BUFFER,
            "{window} × {} bytes",
            line.len()
        );
    }

    #[test]
    fn an_explicit_path_that_is_not_a_file_is_none() {
        assert_eq!(locate(Some(Path::new("/nonexistent/ngircd"))), None);
    }
}
