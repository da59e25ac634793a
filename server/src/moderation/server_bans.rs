//! Bans from the whole server (IRC's K-lines): an address, a CIDR range or an account,
//! with an optional expiry. Checked when a connection starts (its address) and at `hello`
//! (its nick); persisted as one document (`server_bans`), bounded by `--max-server-bans`.

use std::net::IpAddr;
use std::sync::Mutex;

use chat_shared::validate::name_skeleton;
use chat_shared::{Nick, ServerBanEntry};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ModError;
use crate::now_ms;
use crate::store::settings::SettingsWriter;

/// The settings store's key of the server bans' document.
pub(crate) const KEY: &str = "server_bans";

/// What a ban's mask matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net(IpNet),
    /// An account, by its nick's skeleton.
    Account(String),
}

/// Reads a mask: an address (a host), a range, or a nick. Returns the mask as it is kept
/// and shown (a range with its host bits cleared, so `10.1.2.3/8` and `10.0.0.0/8` are
/// one ban).
fn parse_mask(mask: &str) -> Result<(String, Target), ModError> {
    let mask = mask.trim();
    if let Ok(ip) = mask.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return Ok((ip.to_string(), Target::Net(IpNet::from(ip))));
    }
    if let Ok(net) = mask.parse::<IpNet>() {
        let net = net.trunc();
        return Ok((net.to_string(), Target::Net(net)));
    }
    match Nick::parse(mask) {
        Ok(nick) => Ok((nick.to_string(), Target::Account(nick.skeleton()))),
        Err(_) => Err(ModError::MaskInvalid(mask.to_owned())),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ban {
    mask: String,
    by: String,
    reason: String,
    ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
    #[serde(skip)]
    target: Option<Target>,
}

impl Ban {
    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    fn entry(&self) -> ServerBanEntry {
        ServerBanEntry {
            mask: self.mask.clone(),
            by: self.by.clone(),
            reason: self.reason.clone(),
            ts: self.ts,
            expires: self.expires,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ServerBans {
    bans: Mutex<Vec<Ban>>,
    max: usize,
    writer: Option<SettingsWriter>,
}

/// A ban that matched: why, for the banned client's `bye`.
pub(crate) type Reason = String;

/// The bans of `document` (the stored one, if any); unreadable ones are dropped.
fn parse(document: Option<&str>) -> Vec<Ban> {
    let mut bans: Vec<Ban> = document
        .and_then(|d| match serde_json::from_str(d) {
            Ok(bans) => Some(bans),
            Err(e) => {
                tracing::warn!(error = %e, "the stored server bans cannot be read; none apply");
                None
            }
        })
        .unwrap_or_default();
    bans.retain_mut(|b| match parse_mask(&b.mask) {
        Ok((_, target)) => {
            b.target = Some(target);
            true
        }
        Err(_) => false,
    });
    bans
}

impl ServerBans {
    /// The bans of `document` (the stored one, if any).
    pub(crate) fn new(document: Option<&str>, max: usize, writer: Option<SettingsWriter>) -> Self {
        Self {
            bans: Mutex::new(parse(document)),
            max,
            writer,
        }
    }

    /// The bans as another node wrote them (cluster mode): in force here from now on.
    pub(crate) fn adopt(&self, document: Option<&str>) {
        *self.lock() = parse(document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Ban>> {
        self.bans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, bans: &[Ban]) {
        if let Some(w) = &self.writer {
            w.put(KEY.to_owned(), serde_json::to_string(bans).ok());
        }
    }

    /// Adds (or renews) a ban; returns the list in force.
    ///
    /// # Errors
    /// [`ModError::MaskInvalid`], [`ModError::TooManyServerBans`].
    pub(crate) fn add(
        &self,
        mask: &str,
        duration_s: Option<u64>,
        reason: &str,
        by: &str,
    ) -> Result<Vec<ServerBanEntry>, ModError> {
        let (mask, target) = parse_mask(mask)?;
        let now = now_ms();
        let expires = duration_s
            .map(|s| now.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)));
        let mut bans = self.lock();
        bans.retain(|b| b.live(now) && b.mask != mask);
        if bans.len() >= self.max {
            return Err(ModError::TooManyServerBans(self.max));
        }
        bans.push(Ban {
            mask,
            by: by.to_owned(),
            reason: reason.to_owned(),
            ts: now,
            expires,
            target: Some(target),
        });
        self.persist(&bans);
        Ok(bans.iter().map(Ban::entry).collect())
    }

    /// Lifts the ban of `mask`; returns the list in force.
    ///
    /// # Errors
    /// [`ModError::NotServerBanned`].
    pub(crate) fn remove(&self, mask: &str) -> Result<Vec<ServerBanEntry>, ModError> {
        let canonical = parse_mask(mask).map_or_else(|_| mask.trim().to_owned(), |(m, _)| m);
        let now = now_ms();
        let mut bans = self.lock();
        let before = bans.len();
        bans.retain(|b| b.mask != canonical);
        let found = bans.len() != before;
        bans.retain(|b| b.live(now));
        if !found {
            return Err(ModError::NotServerBanned(canonical));
        }
        self.persist(&bans);
        Ok(bans.iter().map(Ban::entry).collect())
    }

    /// The bans in force.
    pub(crate) fn list(&self) -> Vec<ServerBanEntry> {
        let now = now_ms();
        self.lock()
            .iter()
            .filter(|b| b.live(now))
            .map(Ban::entry)
            .collect()
    }

    /// Why `ip` is banned, if it is.
    pub(crate) fn ip_banned(&self, ip: IpAddr) -> Option<Reason> {
        let ip = ip.to_canonical();
        self.find(|t| matches!(t, Target::Net(net) if net.contains(&ip)))
    }

    /// Why the account `nick` is banned, if it is.
    pub(crate) fn nick_banned(&self, nick: &str) -> Option<Reason> {
        let skeleton = name_skeleton(nick);
        self.find(|t| matches!(t, Target::Account(s) if *s == skeleton))
    }

    fn find(&self, hit: impl Fn(&Target) -> bool) -> Option<Reason> {
        let now = now_ms();
        self.lock()
            .iter()
            .find(|b| b.live(now) && b.target.as_ref().is_some_and(&hit))
            .map(|b| b.reason.clone())
    }

    /// Whether a client at `ip` holding `nick` is banned now (a ban just added).
    pub(crate) fn matches(&self, ip: IpAddr, nick: &str) -> Option<Reason> {
        self.ip_banned(ip).or_else(|| self.nick_banned(nick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_ranges_and_accounts_are_banned_until_lifted_or_expired() {
        let bans = ServerBans::new(None, 10, None);
        bans.add("10.1.2.3/8", None, "spam", "root").unwrap();
        bans.add("2001:db8::1", None, "spam", "root").unwrap();
        bans.add("Mallory", None, "troll", "root").unwrap();
        assert_eq!(bans.list()[0].mask, "10.0.0.0/8");
        assert!(bans.ip_banned("10.200.0.1".parse().unwrap()).is_some());
        assert!(bans.ip_banned("::ffff:10.0.0.9".parse().unwrap()).is_some());
        assert!(bans.ip_banned("11.0.0.1".parse().unwrap()).is_none());
        assert!(bans.ip_banned("2001:db8::1".parse().unwrap()).is_some());
        assert_eq!(bans.nick_banned("MALLORY").as_deref(), Some("troll"));
        bans.remove("10.0.0.0/8").unwrap();
        assert!(bans.ip_banned("10.200.0.1".parse().unwrap()).is_none());
        assert!(matches!(
            bans.remove("10.0.0.0/8"),
            Err(ModError::NotServerBanned(_))
        ));
        assert!(matches!(
            bans.add("#?!", None, "", "root"),
            Err(ModError::MaskInvalid(_))
        ));
        bans.add("192.0.2.0/24", Some(0), "brief", "root").unwrap();
        assert!(
            bans.ip_banned("192.0.2.7".parse().unwrap()).is_none(),
            "expired"
        );
    }

    #[test]
    fn the_document_round_trips_and_the_limit_holds() {
        let bans = ServerBans::new(None, 2, None);
        bans.add("192.0.2.1", Some(3600), "x", "root").unwrap();
        bans.add("eve", None, "y", "root").unwrap();
        assert!(matches!(
            bans.add("carol", None, "z", "root"),
            Err(ModError::TooManyServerBans(2))
        ));
        let doc = serde_json::to_string(&*bans.lock()).unwrap();
        let again = ServerBans::new(Some(&doc), 2, None);
        assert_eq!(again.list(), bans.list());
        assert!(again.nick_banned("eve").is_some());
    }
}
