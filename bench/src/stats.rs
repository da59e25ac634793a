//! What a run counts: deliveries, loss, latency, and the CPU time of the load generator.
//!
//! Receivers record from many tasks at once, millions of times a second. Each read batch
//! takes one uncontended lock on one of a few histogram shards and one atomic add, so the
//! counting never becomes the bottleneck it is meant to measure.
//!
//! Layout:
//! - [`Tally`]: the shared counters and sharded latency histogram of one run.
//! - [`Latency`]: a histogram's summary (p50, p90, p99, max); [`merged_latency`] of several
//!   tallies.
//! - [`Span`]: a span of send times (W7's join storm), open until it is closed.
//! - [`Snapshot`]: a tally at one instant, so that a later phase's latency can be told apart (F1).
//! - [`loadgen_cpu`]: this process's CPU time (`getrusage`), to show whether the load
//!   generator was the limit.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Shards of the latency histogram; two worker threads rarely meet on one of eight locks.
const SHARDS: usize = 8;

/// Highest latency recorded, in nanoseconds; anything slower is clamped to it (and is a
/// failure by any target anyway).
const MAX_NS: u64 = 60_000_000_000;

fn new_histogram() -> Histogram<u64> {
    // Three significant digits: p99 of 12.3 ms is exact to 10 µs. Bounds are constants
    // that hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Counters shared by every connection of one run.
#[derive(Debug)]
pub struct Tally {
    delivered: AtomicU64,
    lagged: AtomicU64,
    disconnects: AtomicU64,
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }
}

impl Tally {
    /// Adds one read batch: `count` deliveries whose latencies (ns) are `latencies`.
    /// `shard` is any number stable per connection (its index), spreading the locks.
    pub fn record(&self, shard: usize, latencies: &[u64]) {
        if latencies.is_empty() {
            return;
        }
        self.delivered
            .fetch_add(latencies.len() as u64, Ordering::Relaxed);
        let mut hist = self.shards[shard % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &ns in latencies {
            hist.saturating_record(ns.clamp(1, MAX_NS));
        }
    }

    /// A `lagged` event (the server skipped messages for a slow client).
    pub fn lagged(&self) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection the server closed (or that failed) while it was being measured.
    pub fn disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections lost so far.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Deliveries so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// `lagged` events so far.
    pub fn lag_events(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// All shards merged.
    pub fn latency(&self) -> Latency {
        merged_latency(&[self])
    }

    /// Everything recorded so far, to tell a later phase's samples apart from it
    /// ([`Snapshot::since`]; F1's chat before, during the upload, during the download).
    pub fn snapshot(&self) -> Snapshot {
        let mut all = new_histogram();
        self.add_to(&mut all);
        Snapshot(all)
    }

    fn add_to(&self, all: &mut Histogram<u64>) {
        for shard in &self.shards {
            let hist = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*hist);
        }
    }
}

/// The latency of every sample of every tally in `tallies`.
pub fn merged_latency(tallies: &[&Tally]) -> Latency {
    let mut all = new_histogram();
    for t in tallies {
        t.add_to(&mut all);
    }
    Latency::of(&all)
}

/// A tally's histogram at one instant ([`Tally::snapshot`]).
#[derive(Debug, Clone)]
pub struct Snapshot(Histogram<u64>);

impl Snapshot {
    /// The latency of what was recorded between `earlier` and this one (of the same
    /// tally).
    pub fn since(&self, earlier: &Snapshot) -> Latency {
        let mut h = self.0.clone();
        // Samples are only ever added, so every count of `earlier` is in `self`.
        if h.subtract(&earlier.0).is_err() {
            return Latency::default();
        }
        Latency::of(&h)
    }
}

/// A span of times in nanoseconds (the clock of `client::ns_at`): empty until it is
/// opened, then open-ended until it is closed.
#[derive(Debug)]
pub struct Span {
    start: AtomicU64,
    end: AtomicU64,
}

impl Default for Span {
    fn default() -> Self {
        Self {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        }
    }
}

impl Span {
    /// From `ns` on.
    pub fn open(&self, ns: u64) {
        self.start.store(ns, Ordering::Relaxed);
    }

    /// Up to `ns`.
    pub fn close(&self, ns: u64) {
        self.end.store(ns, Ordering::Relaxed);
    }

    /// Whether `ns` is in it.
    pub fn contains(&self, ns: u64) -> bool {
        self.start.load(Ordering::Relaxed) <= ns && ns <= self.end.load(Ordering::Relaxed)
    }
}

/// Latency percentiles, in microseconds (what a reader compares; nanoseconds are noise on
/// loopback).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
        }
    }
}

/// A latency histogram for one task's own samples (churn cycles), merged by the caller.
#[derive(Debug)]
pub struct LocalHist(Histogram<u64>);

impl Default for LocalHist {
    fn default() -> Self {
        Self(new_histogram())
    }
}

impl LocalHist {
    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(MAX_NS);
        self.0.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds another task's samples.
    pub fn merge(&mut self, other: &LocalHist) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The summary.
    pub fn latency(&self) -> Latency {
        Latency::of(&self.0)
    }
}

/// CPU time (user + system) this process has used so far, every thread included.
pub fn loadgen_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer it is given, and the
    // pointer is valid for that write; RUSAGE_SELF is always a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: the call succeeded, so the struct is initialised (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_and_summarises() {
        let t = Tally::default();
        t.record(0, &[1_000, 2_000, 3_000]);
        t.record(5, &[100_000]);
        assert_eq!(t.delivered(), 4);
        let l = t.latency();
        assert_eq!(l.count, 4);
        assert!((l.max_us - 100.0).abs() < 0.2, "{l:?}");
        assert!(l.p50_us >= 1.9 && l.p50_us <= 2.1, "{l:?}");
    }

    #[test]
    fn spans_and_merged_tallies() {
        let span = Span::default();
        assert!(!span.contains(5), "empty until opened");
        span.open(10);
        assert!(span.contains(10) && span.contains(u64::MAX - 1) && !span.contains(9));
        span.close(20);
        assert!(span.contains(20) && !span.contains(21));

        let (a, b) = (Tally::default(), Tally::default());
        a.record(0, &[1_000]);
        b.record(3, &[2_000, 3_000]);
        assert_eq!(merged_latency(&[&a, &b]).count, 3);
        assert_eq!(a.latency().count, 1);
    }

    #[test]
    fn snapshots_tell_phases_apart() {
        let t = Tally::default();
        let empty = t.snapshot();
        t.record(0, &[1_000, 1_000]);
        let first = t.snapshot();
        t.record(1, &[50_000]);
        let later = t.snapshot().since(&first);
        assert_eq!(later.count, 1);
        assert!((later.p99_us - 50.0).abs() < 0.1, "{later:?}");
        assert_eq!(first.since(&empty).count, 2);
    }

    #[test]
    fn loadgen_cpu_grows() {
        let a = loadgen_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(loadgen_cpu() >= a);
    }
}
