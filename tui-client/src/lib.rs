//! `chat-tui`: the terminal client of `chat-server`, on ratatui + crossterm.
//!
//! It follows the Elm architecture so that everything but the IO is testable without a
//! terminal or a network: state ([`app`]), a pure [`update`] that turns actions into state
//! changes and effects, a [`view`] that draws the state, and the IO at the edges ([`net`],
//! [`runtime`], [`tui`]).
//!
//! Layout:
//! - [`app`]: the state: tabs, scrollback, members, connection, pending messages.
//! - [`input`]: the input line editor (cursor, history, completion, horizontal scroll).
//! - [`command`]: parsing `/commands`.
//! - [`update`]: `Action` → state change + `Effect`s; the client's protocol behaviour.
//! - [`view`]: drawing the state into a ratatui `Frame`.
//! - [`text`]: sanitising, display-width wrapping, nick colours, timestamps.
//! - [`net`]: the network task: framed connection, reconnect (over several servers in turn)
//!   with backoff, ping/RTT.
//! - [`endpoint`]: `--server HOST:PORT` / `tls://HOST:PORT`, one or several, parsed.
//! - [`transport`]: opening the stream, plain TCP or TLS, as one type.
//! - [`tls`]: the TLS client: roots, `--tls-ca`, the verifier with trust on first use.
//! - [`known_servers`]: the accepted fingerprints of self-signed servers, on disk.
//! - [`tofu`]: the question asked before the screen starts for an unknown certificate.
//! - [`transfer`]: uploads and downloads as the state knows them (progress, rate, ETA).
//! - [`http`]: the HTTP/1.1 client of transfers, over [`transport`]'s streams (same trust).
//! - [`tus`]: the resumable upload (tus 1.0 with per-chunk SHA-256) and file hashing.
//! - [`download`]: ranged, resumed, verified downloads and safe local names.
//! - [`runtime`]: the event loop that ties terminal, network, transfers and clock to
//!   `update`.
//! - [`tui`]: terminal modes on and off, including on panic.

pub mod app;
pub mod command;
pub mod download;
pub mod endpoint;
pub mod http;
pub mod input;
pub mod known_servers;
pub mod net;
pub mod runtime;
pub mod text;
pub mod tls;
pub mod tofu;
pub mod transfer;
pub mod transport;
pub mod tui;
pub mod tus;
pub mod update;
pub mod view;

pub use app::App;
pub use runtime::{Options, run};
pub use update::{Action, Effect, NetEvent, update};
