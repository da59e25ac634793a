//! Limits that protect everyone from one client: its message rate and how many connections
//! it (and everybody together) may hold.
//!
//! Layout:
//! - [`RateLimiter`]: a token bucket per connection, plus a second bucket of "strikes" that
//!   tells a burst (a pasted paragraph, some rejections) from a flood (rejections that keep
//!   coming).
//! - [`ConnLimits`] and [`Admission`]: total and per-IP connection counts; the admission is
//!   an RAII guard, so a slot is freed however its connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// How many rejected messages, relative to the burst, a client may accumulate (refilling at
/// the message rate) before it counts as flooding and is disconnected.
const STRIKES_PER_BURST: f64 = 3.0;

/// What the rate limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Over the rate: drop this message and tell the client.
    Reject,
    /// Rejected messages keep coming: disconnect.
    Flood,
}

/// A token bucket: `rate` messages per second, bursts of up to `burst`. The rate and burst
/// are the server's, passed to each check rather than copied into every connection.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    tokens: f64,
    strikes: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            strikes: burst * STRIKES_PER_BURST,
            last: Instant::now(),
        }
    }

    pub(crate) fn check(&mut self, now: Instant, rate: f64, burst: u32) -> Verdict {
        let burst = f64::from(burst.max(1));
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.last = now;
        self.tokens = (self.tokens + refill).min(burst);
        self.strikes = (self.strikes + refill).min(burst * STRIKES_PER_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        self.strikes -= 1.0;
        if self.strikes < 0.0 {
            Verdict::Flood
        } else {
            Verdict::Reject
        }
    }
}

/// Connection counts, total and per client IP. The limits can change while connections
/// are held (a reload): a lower one refuses new connections until enough have gone, and
/// never closes one.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    counts: Arc<Mutex<Counts>>,
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub(crate) struct Admission {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    TooManyFromIp,
}

impl ConnLimits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            counts: Arc::default(),
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
        }
    }

    /// New limits, for connections admitted from now on.
    pub(crate) fn set(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Admits a connection from `ip` if both limits allow it.
    ///
    /// # Errors
    /// Which limit is reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total.load(Ordering::Relaxed) {
            return Err(Refusal::Full);
        }
        let count = counts.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip.load(Ordering::Relaxed) {
            if *count == 0 {
                counts.per_ip.remove(&ip);
            }
            return Err(Refusal::TooManyFromIp);
        }
        *count += 1;
        counts.total += 1;
        Ok(Admission {
            ip,
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(count) = counts.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // Keep the map as small as the set of connected IPs.
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_pass_then_the_rate_holds() {
        let start = Instant::now();
        let mut rl = RateLimiter::new(10);
        for _ in 0..10 {
            assert_eq!(rl.check(start, 5.0, 10), Verdict::Allow);
        }
        assert_eq!(rl.check(start, 5.0, 10), Verdict::Reject);
        // 5 per second: 200 ms buys one message.
        assert_eq!(
            rl.check(start + Duration::from_millis(200), 5.0, 10),
            Verdict::Allow
        );
        assert_eq!(
            rl.check(start + Duration::from_millis(200), 5.0, 10),
            Verdict::Reject
        );
    }

    #[test]
    fn a_pasted_paragraph_is_not_a_flood_but_a_stream_is() {
        let start = Instant::now();
        let mut rl = RateLimiter::new(10);
        let verdicts: Vec<Verdict> = (0..30).map(|_| rl.check(start, 5.0, 10)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Allow).count(),
            10
        );
        assert!(
            !verdicts.contains(&Verdict::Flood),
            "30 lines at once is a paste"
        );
        let mut t = start;
        let flood = (0..1000).find(|_| {
            t += Duration::from_millis(10); // 100 messages a second
            rl.check(t, 5.0, 10) == Verdict::Flood
        });
        assert!(
            flood.is_some_and(|i| i < 100),
            "a steady flood is caught: {flood:?}"
        );
    }

    #[test]
    fn connection_limits_count_total_and_per_ip_and_free_on_drop() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::TooManyFromIp);
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::Full);
        drop(a1);
        let a3 = limits.admit(a).unwrap();
        assert_eq!(limits.counts.lock().unwrap().per_ip[&a], 2);
        // A lower limit closes nobody and refuses until enough have gone.
        limits.set(2, 1);
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::Full);
        drop(a3);
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::Full);
        limits.set(3, 1);
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::TooManyFromIp);
        limits.set(5, 5);
        let _b2 = limits.admit(b).unwrap();
        let refused: IpAddr = "10.0.0.3".parse().unwrap();
        limits.set(5, 0);
        assert_eq!(limits.admit(refused).unwrap_err(), Refusal::TooManyFromIp);
        assert!(!limits.counts.lock().unwrap().per_ip.contains_key(&refused));
    }
}
