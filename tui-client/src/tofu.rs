//! Trust on first use, before the screen starts: one trial handshake, and when the server's
//! certificate is unknown, the fingerprint shown and one yes/no question, as ssh asks.
//!
//! Done here rather than in the UI because it is a one-off decision with the terminal
//! still in normal mode (plain lines, the user's own line editing), and because the
//! network task then needs no "paused, waiting for the user" state: it gets a verifier
//! with the decision pinned, and every reconnect reuses it. A certificate that changes
//! during the session is refused by that verifier, and the status bar says so.
//!
//! A server that cannot be reached now is no reason to stop: the UI starts and retries as
//! usual (an unknown certificate met later is shown there, with a hint to restart).

use std::io::{self, BufRead, Write};
use std::time::Duration;

use thiserror::Error;

use crate::endpoint::Endpoint;
use crate::known_servers::{KnownServers, KnownServersError};
use crate::tls::{Roots, TlsClient, TlsError, TrustError};
use crate::transport::{self, ConnectError, Transport};

/// Why chat-tui does not start.
#[derive(Debug, Error)]
pub enum TofuError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The known-servers file could not be read or written.
    #[error(transparent)]
    Store(#[from] KnownServersError),
    /// The user did not accept the certificate.
    #[error("the server's certificate was not accepted; not connecting")]
    Declined,
    /// The certificate is not the one remembered.
    #[error("{0}")]
    Changed(String),
    /// The question could not be asked or answered.
    #[error("cannot ask about the server's certificate: {0}")]
    Prompt(#[from] io::Error),
}

/// The transport for `endpoint` with the trust decision made: asks on `input`/`output`
/// when the certificate is unknown, and remembers a yes in `known`.
///
/// # Errors
/// See [`TofuError`]; [`TofuError::Changed`] carries the full warning to print.
pub async fn decide(
    endpoint: &Endpoint,
    roots: &Roots,
    known: &mut KnownServers,
    limit: Duration,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> Result<Transport, TofuError> {
    let addr = endpoint.addr();
    let pinned = known.get(&addr).map(str::to_owned);
    let client = TlsClient::new(&endpoint.host, roots, pinned.clone())?;
    let trial = transport::connect(&addr, &Transport::Tls(client.clone()), limit).await;
    match trial {
        // Expected: trusted (a root or the pin), or unreachable for now: the UI retries.
        Ok(_) | Err(ConnectError::Io(_) | ConnectError::Timeout) => Ok(Transport::Tls(client)),
        Err(ConnectError::Trust(TrustError::Unknown { fingerprint })) => {
            if !ask(&addr, &fingerprint, known, input, output)? {
                return Err(TofuError::Declined);
            }
            known.add(&addr, &fingerprint)?;
            Ok(Transport::Tls(TlsClient::new(
                &endpoint.host,
                roots,
                Some(fingerprint),
            )?))
        }
        Err(ConnectError::Trust(TrustError::Changed {
            expected,
            presented,
        })) => Err(TofuError::Changed(changed_warning(
            &addr, &expected, &presented, known,
        ))),
    }
}

/// Shows the fingerprint and asks until the answer is yes or no (end of input is no).
fn ask(
    addr: &str,
    fingerprint: &str,
    known: &KnownServers,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<bool> {
    write!(
        output,
        "The authenticity of server '{addr}' can't be established.\n\
         Its certificate is not signed by an authority this computer trusts (it may be \
         self-signed).\n\
         SHA-256 fingerprint: {fingerprint}\n\
         Compare it with the one the server logged at start.\n\
         Trust this server and remember it in {}? (yes/no) ",
        known.path().display()
    )?;
    loop {
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            return Ok(false);
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" => return Ok(true),
            "no" | "n" => return Ok(false),
            _ => write!(output, "Please type 'yes' or 'no': ")?,
        }
    }
}

fn changed_warning(addr: &str, expected: &str, presented: &str, known: &KnownServers) -> String {
    let bar = "@".repeat(59);
    format!(
        "{bar}\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         {bar}\n\
         The certificate of server '{addr}' is not the one you accepted before.\n\
         Someone could be intercepting the connection, or the server's certificate was\n\
         replaced.\n\
         Remembered SHA-256 fingerprint: {expected}\n\
         Presented SHA-256 fingerprint:  {presented}\n\
         If the change is expected, remove the line for '{addr}' from {}.\n\
         chat-tui did not connect.",
        known.path().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn answer(input: &str) -> (bool, String) {
        let known = KnownServers::parse(Path::new("/tmp/known_servers"), "");
        let mut out = Vec::new();
        let yes = ask("h:1", "AA:BB", &known, &mut input.as_bytes(), &mut out).unwrap();
        (yes, String::from_utf8(out).unwrap())
    }

    #[test]
    fn asks_once_with_the_fingerprint_and_the_file() {
        let (yes, shown) = answer("yes\n");
        assert!(yes);
        assert!(shown.contains("server 'h:1'"), "{shown}");
        assert!(shown.contains("SHA-256 fingerprint: AA:BB\n"), "{shown}");
        assert!(shown.contains("/tmp/known_servers? (yes/no)"), "{shown}");
        assert!(!shown.contains("Please type"), "{shown}");
        assert!(answer("Y\n").0);
    }

    #[test]
    fn anything_but_yes_is_no_and_garbage_is_asked_again() {
        assert!(!answer("no\n").0);
        assert!(!answer("").0, "end of input");
        let (yes, shown) = answer("sure\nyes\n");
        assert!(yes);
        assert!(shown.contains("Please type 'yes' or 'no'"), "{shown}");
        assert!(!answer("maybe\n").0);
    }

    #[test]
    fn the_warning_names_both_fingerprints_and_the_file() {
        let known = KnownServers::parse(Path::new("/k/known_servers"), "");
        let text = changed_warning("h:1", "AA", "BB", &known);
        assert!(text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"));
        assert!(text.contains("Remembered SHA-256 fingerprint: AA"));
        assert!(text.contains("Presented SHA-256 fingerprint:  BB"));
        assert!(text.contains("'h:1' from /k/known_servers"));
        assert!(text.contains("did not connect"));
    }
}
