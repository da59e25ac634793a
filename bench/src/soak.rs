//! Soak: rounds of connect/disconnect churn and chatter (the W6 workload), with the server's
//! open file descriptors and resident memory sampled after each round, once it has settled.
//!
//! A leak shows two ways: descriptors that do not return to the baseline taken after a
//! warm-up round, or memory that keeps climbing round after round. Memory is judged by its
//! plateau, not by a return to the very first figure: the allocator keeps some of what a
//! first peak needed, and that is reuse, not a leak.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Mode;
use crate::server_proc::ServerHandle;
use crate::workloads::{Params, Scale, Workload, churn};

/// How long the server gets after a round to close everything (it lingers up to 500 ms on a
/// closing connection).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Rounds whose end-of-round RSS may exceed the first round's by this much before it counts
/// as growth: allocator noise, not a leak.
const RSS_TOLERANCE_KIB: u64 = 2048;

/// One sample of the server process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the soak began.
    pub at_s: f64,
    /// Open file descriptors.
    pub fds: usize,
    /// Resident memory, KiB (0 for an in-process server, where it means nothing).
    pub rss_kib: u64,
}

/// What a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Wire mode of the load.
    pub mode: &'static str,
    /// After the warm-up round.
    pub baseline: Sample,
    /// After each round, settled.
    pub rounds: Vec<Sample>,
    /// Churn cycles (connect, log in, join, quit) completed in all rounds.
    pub cycles: u64,
    /// Deliveries owed in the busy room and never received, all rounds.
    pub lost: u64,
}

impl SoakReport {
    /// Every round ended with the descriptors of the baseline.
    pub fn fds_returned(&self) -> bool {
        self.rounds.iter().all(|r| r.fds <= self.baseline.fds)
    }

    /// Memory after the last round is within tolerance of memory after the first.
    pub fn rss_plateaued(&self) -> bool {
        match (self.rounds.first(), self.rounds.last()) {
            (Some(first), Some(last)) => last.rss_kib <= first.rss_kib + RSS_TOLERANCE_KIB,
            _ => true,
        }
    }

    /// A table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "soak {}: baseline {} fds, {} KiB RSS\n round   at_s   fds   rss_kib\n",
            self.mode, self.baseline.fds, self.baseline.rss_kib
        );
        for (i, r) in self.rounds.iter().enumerate() {
            out.push_str(&format!(
                "{:>6} {:>6.0} {:>5} {:>9}\n",
                i + 1,
                r.at_s,
                r.fds,
                r.rss_kib
            ));
        }
        out.push_str(&format!(
            "{} churn cycles, {} lost; descriptors back to baseline: {}; memory plateaued \
             (last round within {} KiB of the first): {}\n",
            self.cycles,
            self.lost,
            yes(self.fds_returned()),
            RSS_TOLERANCE_KIB,
            yes(self.rss_plateaued()),
        ));
        out
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// Open descriptors and RSS of the server: its own process, or this one when it runs in
/// process (then the load generator's sockets count too, and must have closed as well).
fn sample(target: &ServerHandle, started: Instant) -> Sample {
    let pid = target.pid().unwrap_or_else(std::process::id);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let rss_kib = target.sample().map_or(0, |s| s.rss_kib);
    Sample {
        at_s: started.elapsed().as_secs_f64(),
        fds,
        rss_kib,
    }
}

/// Waits until the descriptors are back to `baseline` (or the settle limit passes), then
/// samples.
async fn settled(target: &ServerHandle, started: Instant, baseline: usize) -> Sample {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let s = sample(target, started);
        if s.fds <= baseline || Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a warm-up round, then `rounds` rounds of `round` each.
///
/// # Errors
/// A round that fails (a login refused, a socket error).
pub async fn soak(
    target: &ServerHandle,
    mode: Mode,
    scale: Scale,
    round: Duration,
    rounds: usize,
) -> anyhow::Result<SoakReport> {
    let params = Params::of(Workload::W6, scale, Some(round), 1);
    let started = Instant::now();
    let before = sample(target, started).fds;
    churn(&params, target, mode).await?;
    let baseline = settled(target, started, before).await;
    let mut report = SoakReport {
        mode: mode.name(),
        baseline,
        rounds: Vec::with_capacity(rounds),
        cycles: 0,
        lost: 0,
    };
    for _ in 0..rounds {
        let out = churn(&params, target, mode).await?;
        report.cycles += out.churn.as_ref().map_or(0, |c| c.cycles);
        report.lost += out.expected.saturating_sub(out.delivered);
        report
            .rounds
            .push(settled(target, started, baseline.fds).await);
    }
    Ok(report)
}
