//! The keepalive clock: one task for the whole server wakes the sessions whose client is
//! due a ping, or overdue with its answer.
//!
//! A timer in every session's task is what pinging used to cost: more than a hundred bytes
//! of every idle connection (W4), and a timer-wheel entry each. Here a session leaves its
//! alarm time in its sink ([`Sink::set_alarm`]), and the clock rings the sinks whose time
//! has passed, every [`tick`]. A ping goes out up to one tick late (a second with the
//! defaults, after 60 s idle), and a silent client is closed up to one tick late.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::ops::Ops;
use crate::path::sink::Sink;

/// The clock's resolution bounds: a fraction of the shortest wait it measures, but no
/// finer than 10 ms (tests ping every 200 ms) and no coarser than a second.
const FINEST: Duration = Duration::from_millis(10);
const COARSEST: Duration = Duration::from_secs(1);

/// How often the clock looks: an eighth of the shorter of the ping interval and timeout,
/// within [`FINEST`]..[`COARSEST`].
pub(crate) fn tick(config: &Config) -> Duration {
    (config.ping_interval.min(config.ping_timeout) / 8).clamp(FINEST, COARSEST)
}

/// `at` in the clock's milliseconds (since the first time anything asked).
pub(crate) fn at_ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1)
}

/// Rings every due sink in the registry each `tick`, until `stop`.
pub(crate) async fn run(ops: Arc<Ops>, tick: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = at_ms(Instant::now());
        ops.each_sink(|sink: &Sink| sink.ring(now));
    }
}
