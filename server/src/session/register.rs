//! Registration: reading until a `hello` succeeds, answering what is allowed before it.

use chat_shared::{ByeReason, ClientMsg, PROTOCOL_VERSION, Password, RoomName, ServerMsg};
use tokio::time::{Instant, sleep_until};
use tracing::info;
use uuid::Uuid;

use super::errors::Refusal;
use super::{Exit, Session, shutdown_exit};
use crate::auth::Login;
use crate::ops::audit::{self, AuthStep};
use crate::wire::{Inbound, Wire};

impl<W: Wire> Session<W> {
    /// Reads until a `hello` succeeds, within `deadline`.
    pub(super) async fn register(&mut self, deadline: Instant) -> Result<(), Exit> {
        if let Some(reason) = self.chat.moderation.server_bans.ip_banned(self.peer) {
            info!(session = %self.id, peer = %self.peer, "refused: banned from the server");
            return Err(banned_exit(&reason));
        }
        loop {
            let inbound = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(shutdown_exit()),
                () = sleep_until(deadline) => return Err(Exit::Bye(
                    ByeReason::HandshakeTimeout,
                    "no nick given in time".into(),
                )),
                inbound = self.wire.recv() => inbound,
            };
            let req = match inbound {
                Ok(Some(Inbound::Request(req))) => req,
                Ok(Some(other)) => {
                    self.unreadable(other)?;
                    self.flush().await?;
                    continue;
                }
                Ok(None) | Err(_) => return Err(Exit::Quit(None)),
            };
            self.bad_in_a_row = 0;
            let ref_id = req.id;
            let refused = match req.msg {
                ClientMsg::Hello {
                    nick,
                    version,
                    client,
                    password,
                } => match version {
                    Some(v) if v != PROTOCOL_VERSION => {
                        Err(Refusal::UnsupportedVersion(PROTOCOL_VERSION))
                    }
                    _ => match self
                        .hello(&nick, client.as_deref(), password.as_ref())
                        .await
                    {
                        Ok(()) => {
                            self.deliver().await?;
                            return Ok(());
                        }
                        Err(refusal) => Err(refusal),
                    },
                },
                ClientMsg::Ping { token } => {
                    self.reply(ServerMsg::Pong { token });
                    Ok(())
                }
                ClientMsg::Quit { .. } => {
                    return Err(Exit::Bye(ByeReason::Quit, "bye".into()));
                }
                other => Err(Refusal::NotRegistered(other.kind())),
            };
            if let Err(refusal) = refused {
                if let Refusal::ServerBanned(reason) = &refusal {
                    return Err(banned_exit(reason));
                }
                self.refuse(&refusal, ref_id)?;
            }
            self.flush().await?;
        }
    }

    /// Registers `raw` (logging in to its account if it has one), sends `welcome` and
    /// joins the default room. A login takes the nick over from whoever holds it.
    async fn hello(
        &mut self,
        raw: &str,
        client: Option<&str>,
        password: Option<&Password>,
    ) -> Result<(), Refusal> {
        let nick = super::commands::parse_nick(raw)?;
        if let Some(reason) = self.chat.moderation.server_bans.nick_banned(nick.as_str()) {
            return Err(Refusal::ServerBanned(reason));
        }
        let login = self.chat.auth.login(self.peer, &nick, password).await;
        if let Err(e) = &login {
            // The password never reaches a log line; the failure does, with its address.
            let reason = audit::auth_reason(e);
            audit::auth_failure(self.id, self.peer, nick.as_str(), AuthStep::Login, reason);
        }
        let login = login?;
        if let Some(peers) = &self.chat.peers {
            // Cluster-wide first: the local directory then only ever sees claimed nicks. A
            // login takes the nick from whoever holds it, on any node.
            match login {
                Login::Guest => peers.claim(&nick, self.id).await?,
                Login::Account => peers.take(&nick, self.id).await?,
            }
        }
        match login {
            Login::Guest => {
                if let Err(e) = self.chat.register(self.id, &nick, &self.sink, self.peer) {
                    if let Some(peers) = &self.chat.peers {
                        peers.release(&nick, self.id);
                    }
                    return Err(e.into());
                }
            }
            Login::Account => {
                self.chat.take_over(self.id, &nick, &self.sink, self.peer);
                self.logged_in = true;
            }
        }
        info!(
            session = %self.id,
            %nick,
            account = self.logged_in,
            client = client.unwrap_or("-"),
            "registered"
        );
        self.reply(ServerMsg::Welcome {
            nick: nick.to_string(),
            session: self.id,
            server: concat!("chat-server ", env!("CARGO_PKG_VERSION")).into(),
            motd: self.config.live().motd.clone(),
            account: self.logged_in,
        });
        self.nick = Some(nick);
        let lobby = RoomName::parse(chat_shared::DEFAULT_ROOM).expect("the default room is valid");
        if let Err(refusal) = self.join(lobby, None, None) {
            // Registered all the same: the client can join another room.
            let _ = self.refuse(&refusal, None::<Uuid>); // not a bad request: never an exit
        }
        Ok(())
    }
}

/// The end of a session a server ban catches.
pub(super) fn banned_exit(reason: &str) -> Exit {
    let message = if reason.is_empty() {
        "you are banned from this server".to_owned()
    } else {
        format!("you are banned from this server: {reason}")
    };
    Exit::Bye(ByeReason::Banned, message)
}
