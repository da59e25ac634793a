//! Accounts: registered nicks, their passwords, and logging in to them.
//!
//! A registered nick is held by its account: nobody can use it, or a look-alike of it
//! (same skeleton), without its password. The account is the nick. Passwords are hashed
//! with Argon2id (`password`) and never kept, logged or sent back; failed logins are
//! throttled per address and per account (`throttle`).
//!
//! Every account is loaded into memory at start (a few hundred bytes each), so a `hello`
//! for a nick nobody registered costs no database read and no hash; the database (through
//! [`AccountStore`]) is written on registration and password changes. Hashing runs on the
//! blocking pool, at most `--max-hashing` at once: each takes 19 MiB and tens of
//! milliseconds of a core, and a flood of logins must not take the chat's CPU or memory.
//!
//! Layout:
//! - [`Auth`], [`Login`], [`AuthError`]: the service the session calls.
//! - `password`: Argon2id hashes as PHC strings.
//! - `throttle`: waits that grow with each failure, per address and per account.

pub(crate) mod password;
pub(crate) mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_shared::validate::nick_key;
use chat_shared::{Nick, Password};
use tokio::sync::Semaphore;

use crate::store::{AccountStore, StoredAccount};
use throttle::{Throttle, ThrottleConfig};

/// The settings of accounts (flags in `main.rs`, defaults in `Config`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthConfig {
    pub(crate) min_password_len: usize,
    pub(crate) max_hashing: usize,
    pub(crate) throttle: ThrottleConfig,
}

/// Why an account request was refused. Mapped to protocol codes in `session/errors.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("accounts need the server's database, and this server runs without one")]
    Unavailable,
    #[error("nick {0} is registered: log in with its password")]
    NickRegistered(String),
    #[error("nick {nick} looks like the registered nick {registered}: choose another")]
    LooksLikeRegistered { nick: String, registered: String },
    #[error("wrong password")]
    Failed,
    #[error("too many failed logins: try again in {:.1} s", .0.as_secs_f64())]
    Throttled(Duration),
    #[error("a password needs at least {0} characters")]
    TooShort(usize),
    #[error("nick {0} is registered already")]
    AlreadyRegistered(String),
    #[error("nick {0} has no account: register it first")]
    NoAccount(String),
    #[error(
        "nick {0} is not registered, so there is no password to log in with (a nick is one \
         word; in line mode a second word is taken as its password)"
    )]
    NotRegistered(String),
    #[error("the account could not be saved; try again later")]
    Store,
}

/// What a `hello` logged in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    /// The nick is not registered (and no password was given).
    Guest,
    /// The nick's account, with its password.
    Account,
}

#[derive(Clone)]
struct Account {
    nick: String,
    hash: String,
}

pub(crate) struct Auth {
    store: Option<Arc<dyn AccountStore>>,
    /// Every account by skeleton.
    accounts: Mutex<HashMap<String, Account>>,
    throttle: Throttle,
    hashing: Semaphore,
    min_password_len: usize,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("accounts", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Accounts kept in `store` (none without a database: `register` is `unavailable`).
    ///
    /// # Errors
    /// The accounts cannot be read.
    pub(crate) fn open(
        store: Option<Arc<dyn AccountStore>>,
        config: AuthConfig,
    ) -> anyhow::Result<Self> {
        let accounts = match &store {
            Some(store) => store
                .load_all()?
                .into_iter()
                .map(|a| {
                    let StoredAccount {
                        skeleton,
                        nick,
                        hash,
                    } = a;
                    (skeleton, Account { nick, hash })
                })
                .collect(),
            None => HashMap::new(),
        };
        Ok(Self {
            store,
            accounts: Mutex::new(accounts),
            throttle: Throttle::new(config.throttle),
            hashing: Semaphore::new(config.max_hashing.max(1)),
            min_password_len: config.min_password_len,
        })
    }

    /// An account another node registered or changed (cluster mode): known here from now.
    pub(crate) fn adopt(&self, skeleton: String, nick: String, hash: String) {
        self.lock().insert(skeleton, Account { nick, hash });
    }

    /// An account no longer in the cluster's bucket.
    pub(crate) fn forget(&self, skeleton: &str) {
        self.lock().remove(skeleton);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account `nick` belongs to or imitates, if any.
    fn account_of(&self, nick: &Nick) -> Option<(String, Account)> {
        let key = nick.skeleton();
        let account = self.lock().get(&key).cloned()?;
        Some((key, account))
    }

    /// Whether `nick` is a registered account's (or looks like one).
    pub(crate) fn is_registered(&self, nick: &Nick) -> bool {
        self.account_of(nick).is_some()
    }

    /// Whether `nick` may be taken without a password: `Err` when it is registered (or
    /// looks like a registered nick). Renames use this.
    ///
    /// # Errors
    /// [`AuthError::NickRegistered`], [`AuthError::LooksLikeRegistered`].
    pub(crate) fn free(&self, nick: &Nick) -> Result<(), AuthError> {
        match self.account_of(nick) {
            None => Ok(()),
            Some((_, account)) => Err(registered(nick, &account)),
        }
    }

    /// Checks a `hello`: a nick nobody registered is a guest's (given without a password);
    /// a registered one needs its password, and tries from `ip` are throttled.
    ///
    /// # Errors
    /// See [`AuthError`]: registered without a password, a look-alike of a registered
    /// nick, throttled, or the wrong password.
    pub(crate) async fn login(
        &self,
        ip: IpAddr,
        nick: &Nick,
        password: Option<&Password>,
    ) -> Result<Login, AuthError> {
        let Some((key, account)) = self.account_of(nick) else {
            // A password for a nick nobody registered is a mistake worth saying: the user
            // believes the nick is protected, or meant "bad nick" as one nick.
            return match password {
                None => Ok(Login::Guest),
                Some(_) => Err(AuthError::NotRegistered(nick.to_string())),
            };
        };
        let Some(password) = password.filter(|_| same_nick(nick, &account)) else {
            return Err(registered(nick, &account));
        };
        self.check(ip, &key, password, account.hash).await?;
        Ok(Login::Account)
    }

    /// A throttled password check against `hash`.
    async fn check(
        &self,
        ip: IpAddr,
        key: &str,
        password: &Password,
        hash: String,
    ) -> Result<(), AuthError> {
        if let Some(wait) = self.throttle.wait(ip, key) {
            return Err(AuthError::Throttled(wait));
        }
        let password = password.clone();
        let ok = self
            .hashing(move || password::verify(password.expose(), &hash))
            .await?;
        if ok {
            self.throttle.succeeded(ip, key);
            Ok(())
        } else {
            self.throttle.failed(ip, key);
            Err(AuthError::Failed)
        }
    }

    /// Registers `nick` with `password`.
    ///
    /// # Errors
    /// No database, a short password, a nick (or look-alike) registered already, or the
    /// database refused it.
    pub(crate) async fn register(&self, nick: &Nick, password: &Password) -> Result<(), AuthError> {
        let Some(store) = self.store.clone() else {
            return Err(AuthError::Unavailable);
        };
        self.long_enough(password)?;
        if let Some((_, account)) = self.account_of(nick) {
            return Err(if same_nick(nick, &account) {
                AuthError::AlreadyRegistered(account.nick)
            } else {
                registered(nick, &account)
            });
        }
        let hash = self.new_hash(password).await?;
        let stored = StoredAccount {
            skeleton: nick.skeleton(),
            nick: nick.to_string(),
            hash,
        };
        let account = Account {
            nick: stored.nick.clone(),
            hash: stored.hash.clone(),
        };
        let key = stored.skeleton.clone();
        let created = blocking_store("an account", move || store.create(&stored)).await?;
        if !created {
            return Err(AuthError::AlreadyRegistered(nick.to_string()));
        }
        self.lock().insert(key, account);
        Ok(())
    }

    /// Changes the password of `nick`'s account, given the current one.
    ///
    /// # Errors
    /// No account, a short new password, throttled, the wrong current password, or the
    /// database refused it.
    pub(crate) async fn change_password(
        &self,
        ip: IpAddr,
        nick: &Nick,
        old: &Password,
        new: &Password,
    ) -> Result<(), AuthError> {
        let Some(store) = self.store.clone() else {
            return Err(AuthError::Unavailable);
        };
        let Some((key, account)) = self.account_of(nick).filter(|(_, a)| same_nick(nick, a)) else {
            return Err(AuthError::NoAccount(nick.to_string()));
        };
        self.long_enough(new)?;
        self.check(ip, &key, old, account.hash).await?;
        let hash = self.new_hash(new).await?;
        let (k, h) = (key.clone(), hash.clone());
        blocking_store("a password change", move || store.set_hash(&k, &h)).await?;
        if let Some(account) = self.lock().get_mut(&key) {
            account.hash = hash;
        }
        Ok(())
    }

    /// A fresh hash of `password`.
    async fn new_hash(&self, password: &Password) -> Result<String, AuthError> {
        let plain = password.clone();
        self.hashing(move || password::hash(plain.expose()))
            .await?
            .map_err(|_| AuthError::Store)
    }

    fn long_enough(&self, password: &Password) -> Result<(), AuthError> {
        if password.expose().chars().count() < self.min_password_len {
            return Err(AuthError::TooShort(self.min_password_len));
        }
        Ok(())
    }

    /// Runs a hash on the blocking pool, at most `--max-hashing` at once.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self.hashing.acquire().await.map_err(|_| AuthError::Store)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| AuthError::Store)
    }
}

/// Runs a write of the account store on the blocking pool; a failure is logged (what,
/// never a password) and reported as [`AuthError::Store`].
async fn blocking_store<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AuthError::Store)?
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot store {what}");
            AuthError::Store
        })
}

/// Whether `nick` is the account's own nick (in any case or width), not a look-alike.
fn same_nick(nick: &Nick, account: &Account) -> bool {
    nick.key() == nick_key(&account.nick)
}

fn registered(nick: &Nick, account: &Account) -> AuthError {
    if same_nick(nick, account) {
        AuthError::NickRegistered(account.nick.clone())
    } else {
        AuthError::LooksLikeRegistered {
            nick: nick.to_string(),
            registered: account.nick.clone(),
        }
    }
}
