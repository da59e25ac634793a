//! `register`, `login` and `set_password`: a session's account requests.
//!
//! Both need a password hash, which takes tens of milliseconds on the blocking pool, so the
//! command only records the job; the loop runs it after its turn (like a history page that
//! needs the store) and answers then.

use chat_shared::{Password, ServerMsg};
use tracing::info;
use uuid::Uuid;

use super::errors::Refusal;
use super::{Exit, Session};
use crate::ops::audit::{self, AuthStep};
use crate::wire::Wire;

/// An account request waiting for its hash.
#[derive(Debug)]
pub(super) enum AccountJob {
    Register {
        password: Password,
        ref_id: Option<Uuid>,
    },
    Login {
        nick: String,
        password: Password,
        ref_id: Option<Uuid>,
    },
    SetPassword {
        old: Password,
        new: Password,
        ref_id: Option<Uuid>,
    },
    /// A rename in cluster mode: the new nick is claimed cluster-wide, then taken here.
    Rename { nick: String, ref_id: Option<Uuid> },
}

impl<W: Wire> Session<W> {
    /// Logs in to the account `raw` names and takes its nick: renamed in every room, and
    /// whoever held the nick is replaced (`bye{replaced}`), as by a `hello` with the
    /// password.
    async fn login(&mut self, raw: &str, password: &Password) -> Result<(), Refusal> {
        let new = super::commands::parse_nick(raw)?;
        if let Some(reason) = self.chat.moderation.server_bans.nick_banned(new.as_str()) {
            return Err(Refusal::ServerBanned(reason));
        }
        let login = self.chat.auth.login(self.peer, &new, Some(password)).await;
        if let Err(e) = &login {
            let reason = audit::auth_reason(e);
            audit::auth_failure(self.id, self.peer, new.as_str(), AuthStep::Login, reason);
        }
        if login? != crate::auth::Login::Account {
            return Err(Refusal::Auth(crate::auth::AuthError::Failed));
        }
        let old = self.nick().clone();
        let rooms: Vec<_> = self.rooms.iter().cloned().collect();
        // In cluster mode the account's nick is taken cluster-wide first: a connection
        // holding it on any node is replaced there.
        let peers = self
            .chat
            .peers
            .clone()
            .filter(|_| new.skeleton() != old.skeleton());
        if let Some(peers) = &peers {
            peers.take(&new, self.id).await?;
        }
        let events = match self
            .chat
            .log_in_as(self.id, &old, &new, &rooms, self.logged_in)
        {
            Ok(events) => events,
            Err(e) => {
                if let Some(peers) = &peers {
                    peers.release(&new, self.id);
                }
                return Err(e.into());
            }
        };
        if let Some(peers) = &peers {
            peers.release(&old, self.id);
        }
        info!(session = %self.id, %old, %new, "logged in after connecting");
        self.logged_in = true;
        self.nick = Some(new);
        for event in &events {
            self.wire.push(event);
        }
        Ok(())
    }

    /// Claims `raw` cluster-wide, renames, and gives the old nick up (or the new one back,
    /// if the rename is refused here).
    async fn rename_claimed(&mut self, raw: &str) -> Result<(), Refusal> {
        let new = super::commands::parse_nick(raw)?;
        let old = self.nick().clone();
        let Some(peers) = self.chat.peers.clone() else {
            return self.rename(raw);
        };
        let same = new.skeleton() == old.skeleton();
        if !same {
            peers.claim(&new, self.id).await?;
        }
        match self.rename(raw) {
            Ok(()) => {
                if !same {
                    peers.release(&old, self.id);
                }
                Ok(())
            }
            Err(refusal) => {
                if !same {
                    peers.release(&new, self.id);
                }
                Err(refusal)
            }
        }
    }

    /// Runs an account request and answers it.
    pub(super) async fn account(&mut self, job: AccountJob) -> Result<(), Exit> {
        let nick = self.nick().clone();
        let (done, ref_id) = match job {
            AccountJob::Register { password, ref_id } => {
                let done = self.chat.auth.register(&nick, &password).await;
                if done.is_ok() {
                    self.logged_in = true;
                    info!(session = %self.id, %nick, "account registered");
                    self.reply(ServerMsg::Registered {
                        nick: nick.to_string(),
                    });
                    let rooms: Vec<_> = self.rooms.iter().cloned().collect();
                    let event = self.chat.logged_in(self.id, &nick, &rooms);
                    self.wire.push(&event);
                }
                (done, ref_id)
            }
            AccountJob::Login {
                nick: raw,
                password,
                ref_id,
            } => {
                if let Err(refusal) = self.login(&raw, &password).await {
                    if let Refusal::ServerBanned(reason) = &refusal {
                        return Err(super::register::banned_exit(reason));
                    }
                    self.refuse(&refusal, ref_id)?;
                }
                return self.flush().await;
            }
            AccountJob::Rename { nick: raw, ref_id } => {
                if let Err(refusal) = self.rename_claimed(&raw).await {
                    if let Refusal::ServerBanned(reason) = &refusal {
                        return Err(super::register::banned_exit(reason));
                    }
                    self.refuse(&refusal, ref_id)?;
                }
                return self.flush().await;
            }
            AccountJob::SetPassword { old, new, ref_id } => {
                let done = if self.logged_in {
                    self.chat
                        .auth
                        .change_password(self.peer, &nick, &old, &new)
                        .await
                } else {
                    Err(crate::auth::AuthError::NoAccount(nick.to_string()))
                };
                match &done {
                    Ok(()) => {
                        info!(session = %self.id, %nick, "password changed");
                        self.reply(ServerMsg::PasswordChanged {});
                    }
                    Err(e) => {
                        let step = AuthStep::SetPassword;
                        let reason = audit::auth_reason(e);
                        audit::auth_failure(self.id, self.peer, nick.as_str(), step, reason);
                    }
                }
                (done, ref_id)
            }
        };
        if let Err(e) = done {
            self.refuse(&Refusal::Auth(e), ref_id)?;
        }
        self.flush().await
    }
}
