//! Workspace-level integration tests: a real `chat-server` on `127.0.0.1:0`, real sockets,
//! framed and line clients.

mod common;

mod accounts;
mod chat_flow;
mod delivery;
mod error_codes;
mod framed_protocol;
mod hardening;
mod limits;
mod line_mode;
mod names_and_text;
mod rooms_history;
mod shutdown;
mod storage;
mod tls;
