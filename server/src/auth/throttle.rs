//! Login throttling: failed logins make the next try wait, per address and per account.
//!
//! Each failure doubles the wait (from `base`), up to a cap: high per address, so a guesser
//! at one address is slowed to a crawl (one guess a minute by default), and low per
//! account, so guessers spread over many addresses are slowed too while the owner, trying
//! from elsewhere, waits a few seconds at most and is never locked out. IPv6 addresses
//! count per /64, the block one subscriber usually holds. A success clears both. The
//! tables are bounded: past `max_entries` the ones whose wait is over are forgotten first,
//! and if none is, a new address is not tracked (the account's wait still applies).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The throttle's settings (flags `--auth-backoff-ms`, `--auth-max-wait-ip`,
/// `--auth-max-wait-account`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThrottleConfig {
    /// The wait after a first failure; it doubles with each further one.
    pub(crate) base: Duration,
    pub(crate) max_per_ip: Duration,
    pub(crate) max_per_account: Duration,
    /// Addresses (and accounts) tracked at most.
    pub(crate) max_entries: usize,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

#[derive(Debug, Default)]
struct Tables {
    by_ip: HashMap<IpAddr, Backoff>,
    by_account: HashMap<String, Backoff>,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
}

/// The address as throttled: IPv6 by its /64.
fn block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One more failure of `key`, whose waits are capped at `cap`. A full table first forgets
/// the entries whose wait and as long again have passed (a guesser back after that starts
/// from the base wait); if it is still full, a new key is not tracked.
fn record<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Backoff>,
    key: K,
    cap: Duration,
    config: &ThrottleConfig,
    now: Instant,
) {
    if table.len() >= config.max_entries && !table.contains_key(&key) {
        table.retain(|_, b| b.until + cap > now);
        if table.len() >= config.max_entries {
            return;
        }
    }
    let b = table.entry(key).or_insert(Backoff {
        failures: 0,
        until: now,
    });
    b.failures = b.failures.saturating_add(1);
    let doubled = config
        .base
        .saturating_mul(1u32 << b.failures.saturating_sub(1).min(20));
    b.until = now + doubled.min(cap);
}

fn remaining(entry: Option<&Backoff>, now: Instant) -> Duration {
    entry.map_or(Duration::ZERO, |b| b.until.saturating_duration_since(now))
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            tables: Mutex::default(),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must still wait before it may try `account` (the account by its
    /// skeleton); `None` when it may try now.
    pub(crate) fn wait(&self, ip: IpAddr, account: &str) -> Option<Duration> {
        let now = Instant::now();
        let t = self.tables();
        let wait =
            remaining(t.by_ip.get(&block(ip)), now).max(remaining(t.by_account.get(account), now));
        (!wait.is_zero()).then_some(wait)
    }

    /// A failed login from `ip` to `account`.
    pub(crate) fn failed(&self, ip: IpAddr, account: &str) {
        let now = Instant::now();
        let config = self.config;
        let mut t = self.tables();
        let Tables { by_ip, by_account } = &mut *t;
        record(by_ip, block(ip), config.max_per_ip, &config, now);
        record(
            by_account,
            account.to_owned(),
            config.max_per_account,
            &config,
            now,
        );
    }

    /// A successful login: both slates are clean.
    pub(crate) fn succeeded(&self, ip: IpAddr, account: &str) {
        let mut t = self.tables();
        t.by_ip.remove(&block(ip));
        t.by_account.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig {
            base: Duration::from_millis(100),
            max_per_ip: Duration::from_secs(60),
            max_per_account: Duration::from_secs(2),
            max_entries: 3,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn waits_double_per_failure_up_to_each_cap_and_success_clears() {
        let t = throttle();
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        let owner: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(t.wait(guesser, "alice"), None);
        for _ in 0..10 {
            t.failed(guesser, "alice");
        }
        // 100 ms × 2^9 = 51.2 s for the address; the account is capped at 2 s.
        assert_eq!(
            t.wait(guesser, "alice"),
            Some(Duration::from_millis(51_200))
        );
        assert_eq!(t.wait(owner, "alice"), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        // The owner, elsewhere, may try again; the guesser still waits.
        assert_eq!(t.wait(owner, "alice"), None);
        assert!(t.wait(guesser, "alice").is_some());
        assert!(
            t.wait(guesser, "bob").is_some(),
            "per address, whatever the account"
        );
        t.succeeded(owner, "alice");
        assert_eq!(t.wait(owner, "alice"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_counts_per_64_and_the_tables_stay_bounded() {
        let t = throttle();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        t.failed(a, "x");
        assert!(t.wait(b, "y").is_some(), "same /64");
        for i in 0..10u8 {
            t.failed(IpAddr::from([10, 0, 0, i]), "x");
        }
        let tables = t.tables();
        assert!(tables.by_ip.len() <= 3 && tables.by_account.len() <= 3);
    }
}
